"""Bulk label changes from the image list (``LabelJob``): what a selection would change, the job that changes
it a batch of products at a time (each product in a transaction of its own, through the image service, which
records each change in the label history under the job), and the undo of a whole job.

A job's products are written into ``label_job_items`` by one INSERT ... SELECT from the selection, whatever
its size; ``advance`` then takes pending items with FOR UPDATE SKIP LOCKED, so two tabs advancing one job
never change a product twice."""

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from psycopg import sql

from products import images
from products.admin.label_plans import LabelPlan, bulk_outlook, plan_clear_labels, plan_make_labels, plan_undo
from products.admin.paging import Grouped
from products.admin.refusals import support_sentence
from products.images import ImageServiceError
from products.models import LabelChange, LabelJob, LabelJobItem, ProductImage, ProductJsonState
from stoflow.raw_sql import as_text, table

# Past this many products a bulk change asks for their number to be typed, and runs a batch per request
# with its progress shown; up to it, it runs in the request that confirms it.
TYPED_CONFIRMATION_ABOVE = 50
# A batch: this many products, or this many seconds, whichever comes first (a request stays short).
BATCH_PRODUCTS = 100
BATCH_SECONDS = 2.0
# The confirmation page spells out this many products; the rest are counted.
PLANS_SHOWN = 100

Outcome = LabelJobItem.Outcome


@dataclass(frozen=True)
class Outlook:
    """What a bulk change would do, for its confirmation page."""

    action: str
    selected: int  # products selected
    changing: int  # products it changes (the number an agent types to confirm a large change)
    held_back: int  # products held back from marketplaces: the image service leaves them as they are
    plans: list[LabelPlan]  # the first PLANS_SHOWN products, spelt out
    afterwards: list[str]  # what marketplaces receive afterwards, across the selection

    @property
    def typed(self) -> bool:
        """Past the bound: the number is typed to confirm, and the job runs a batch per request."""
        return self.changing > TYPED_CONFIRMATION_ABOVE


def make_label_outlook(selected: QuerySet[ProductImage]) -> Outlook:
    chosen = selected.order_by("product_id").values_list("product_id", "pk", "is_label")
    counts = _image_counts(selected.values("product_id"))
    held = _held(selected.values("product_id"))
    changing, positions = 0, Counter()
    for product_id, _, is_label in chosen.iterator(chunk_size=5000):
        image_count, has_label = counts.get(product_id, (0, False))
        if is_label or image_count < 2 or product_id in held:
            continue
        changing += 1
        if has_label:
            positions[image_count - 1] += 1  # the former label, the last photo before the new one
    shown = dict((product_id, pk) for product_id, pk, _ in chosen[:PLANS_SHOWN])
    return Outlook(
        "make_label", len(counts), changing, len(held), plan_make_labels(shown), bulk_outlook(positions, changing)
    )


def clear_label_outlook(selected: QuerySet[ProductImage]) -> Outlook:
    product_ids = selected.values("product_id")
    counts = _image_counts(product_ids)
    held = _held(product_ids)
    labelled = {product_id: count for product_id, (count, has_label) in counts.items() if has_label}
    changing = [product_id for product_id in labelled if product_id not in held]
    positions = Counter(labelled[product_id] for product_id in changing)  # the former label, the last photo
    shown = sorted(counts)[:PLANS_SHOWN]
    return Outlook(
        "clear_label",
        len(counts),
        len(changing),
        len(held),
        plan_clear_labels(shown),
        bulk_outlook(positions, len(changing)),
    )


def undo_outlook(job: LabelJob) -> Outlook:
    changed = job.items.filter(outcome=Outcome.CHANGED).select_related("change__undoes").order_by("product_id")
    plans = [plan_undo(item.change) for item in changed[:PLANS_SHOWN]]
    total = changed.count()
    return Outlook("undo", total, total, 0, plans, [])


def _image_counts(product_ids: QuerySet) -> dict[int, tuple[int, bool]]:
    """{product id: (its images, whether it has a label)} for the selected products, one query."""
    rows = (
        ProductImage.objects.filter(product_id__in=product_ids)
        .values("product_id")
        .annotate(images=Count("pk"), labels=Count("pk", filter=Q(is_label=True)))
        .values_list("product_id", "images", "labels")
        .order_by()
    )
    return {product_id: (count, labels > 0) for product_id, count, labels in rows.iterator(chunk_size=5000)}


def _held(product_ids: QuerySet) -> set[int]:
    held = ProductJsonState.objects.filter(refused__isnull=False, product_id__in=product_ids)
    return set(held.values_list("product_id", flat=True))


def start_job(
    action: str, actor: str, selected: QuerySet[ProductImage] | None = None, undoes: LabelJob | None = None
) -> LabelJob:
    """The job and its items (one per product), written in one transaction; nothing is changed yet."""
    with transaction.atomic():
        job = LabelJob.objects.create(action=action, actor=actor, created_at=timezone.now(), undoes=undoes)
        if action == "undo":
            rows = undoes.items.filter(outcome=Outcome.CHANGED).values_list("product_id", "change_id")
            _insert_items(job, rows, ["product_id", "undoes_id"])
        elif action == "make_label":
            _insert_items(job, selected.order_by().values_list("product_id", "pk"), ["product_id", "image_id"])
        else:
            _insert_items(job, selected.order_by().values_list("product_id").distinct(), ["product_id"])
    return job


def _insert_items(job: LabelJob, rows: QuerySet, columns: list[str]) -> None:
    """INSERT ... SELECT the selection's rows as the job's items: no round trip per product."""
    selected, params = rows.query.sql_with_params()
    insert = sql.SQL("INSERT INTO {items} (job_id, note, {columns}) SELECT %s, '', selected.* FROM (").format(
        items=table(connection.schema_name, "label_job_items"),
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
    )
    # The selection's SQL is Django's, its values in ``params``: appended as text, not run through format().
    with connection.cursor() as cursor:
        cursor.execute(as_text(insert) + selected + ") AS selected", [job.pk, *params])


def advance(
    job: LabelJob,
    on_change: Callable[[LabelJobItem, LabelChange], None] | None = None,
    products: int | None = None,
    seconds: float | None = None,
) -> int:
    """Change the next pending products of ``job`` (a batch: ``products`` of them, or ``seconds``), each in a
    transaction of its own; returns how many were done. ``on_change`` is told of each change made (the admin
    history)."""
    products = BATCH_PRODUCTS if products is None else products
    deadline = time.monotonic() + (BATCH_SECONDS if seconds is None else seconds)
    done = 0
    while done < products and time.monotonic() < deadline:
        with transaction.atomic():
            pending = job.items.select_for_update(skip_locked=True, of=("self",)).filter(outcome__isnull=True)
            item = pending.select_related("undoes__undoes").order_by("product_id").first()
            if item is None:
                break
            try:
                change = _apply(job, item)
            except ImageServiceError as error:
                item.outcome, item.note, change = Outcome.REFUSED, support_sentence(error), None
            else:
                item.outcome = Outcome.CHANGED if change else Outcome.UNCHANGED
                item.change = change
            item.save(update_fields=["outcome", "note", "change"])
        if change is not None and on_change is not None:
            on_change(item, change)
        done += 1
    if not job.finished_at and not job.items.filter(outcome__isnull=True).exists():
        job.finished_at = timezone.now()
        LabelJob.objects.filter(pk=job.pk, finished_at__isnull=True).update(finished_at=job.finished_at)
    return done


def _apply(job: LabelJob, item: LabelJobItem) -> LabelChange | None:
    if job.action == "undo":
        return images.undo_label_change(item.undoes, actor=job.actor, job=job)
    if job.action == "make_label":
        return images.set_label(item.image_id, actor=job.actor, job=job)
    return images.clear_label(item.product_id, actor=job.actor, job=job)


@dataclass(frozen=True)
class Progress:
    """A job's products by outcome (counts print with thousands separators)."""

    total: Grouped
    changed: Grouped
    unchanged: Grouped
    refused: Grouped

    @property
    def done(self) -> Grouped:
        return Grouped(self.changed + self.unchanged + self.refused)

    @property
    def as_numbers(self) -> dict[str, int]:
        """For the progress bar's attributes and the script: digits only."""
        return {"done": int(self.done), "total": int(self.total)}


def progress(job: LabelJob) -> Progress:
    counts = dict(job.items.order_by().values_list("outcome").annotate(count=Count("pk")))
    return Progress(
        total=Grouped(sum(counts.values())),
        changed=Grouped(counts.get(Outcome.CHANGED, 0)),
        unchanged=Grouped(counts.get(Outcome.UNCHANGED, 0)),
        refused=Grouped(counts.get(Outcome.REFUSED, 0)),
    )
