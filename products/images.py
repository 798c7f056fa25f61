"""The image service: the one way to write ``product_images`` outside the migration.

A product's images are its photos in display order, then, when it has one, its price
label: the label is always the image with the highest order, and a product with a single
image has none. Every call below keeps that true, whatever came before it:

- orders are distinct (the database's unique (product, order) index);
- at most one label (the database's partial unique index), on the highest order;
- a product with one image has no label;
- a product never grows past ``settings.STOFLOW_MAX_IMAGES_PER_PRODUCT`` images (products
  migrated with more keep them: only ``add_image`` is refused).

Each call is one transaction that first locks the product's row (``SELECT ... FOR
UPDATE``), so two people editing one product's photos queue up instead of interleaving.
A call that is refused raises an ``ImageServiceError`` naming the product or image and
changes nothing; its ``code`` says which refusal it is, for callers (the admin) that put it in their own
words. A call with nothing to do (making the label the label, clearing a label
that is not there) writes nothing.

While ``products.images`` (the legacy JSON) exists, every write rewrites the product's JSON
from its rows in the same transaction, so the column stays a faithful fallback until it
is dropped.

A caller that showed someone the product's images and acts on what they saw passes ``expected``
(an ``Arrangement``): the call is refused (``ImagesChanged``) when the images are no longer so once
the product is locked, instead of acting on a list someone else changed in between.

Label changes (``set_label``, ``clear_label``, ``undo_label_change``) are recorded in the product's
label history (``products.models.LabelChange``) in the same transaction, with the ``actor`` the
caller names: the images before and after, which is what undoing the change puts back.

Products and images may be passed as model instances or as ids, inside a seller's schema
(``django_tenants.utils.schema_context``).
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import get_public_schema_name
from psycopg import sql

from products.image_timestamps import FIRST_YEAR, LAST_YEAR, created_at_accepted
from products.image_urls import URL_WHITESPACE, url_problem
from products.legacy_json import CONVENTIONS, LAST_PHOTO, MARKED, label_marks, rewrite_in_one_convention
from products.migration.reconcile import reconcile, record_json_state
from products.migration.source import json_digest
from products.models import LabelChange, LabelJob, Product, ProductImage
from stoflow.raw_sql import as_text, execute, fetch_rows, table

# product_images."order" is a PostgreSQL integer.
MAX_ORDER = 2_147_483_647
# A product's first image: the legacy app numbered photos from 1 (the seed report's product 1
# has orders 1..4), so a product that starts from nothing is numbered like most migrated ones.
FIRST_ORDER = 1


class ImageServiceError(ValueError):
    """A call the image service refused; nothing was changed. ``code`` names the refusal (stable, for callers
    that word it their own way); the message says it with the ids, for logs and developers."""

    code = "refused"


class ProductNotFound(ImageServiceError):
    code = "product_not_found"


class ImageNotFound(ImageServiceError):
    code = "image_not_found"


class InvalidImageUrl(ImageServiceError):
    code = "invalid_url"


class TooManyImages(ImageServiceError):
    code = "too_many_images"


class InvalidImageOrder(ImageServiceError):
    """A reorder list that is not exactly the product's photos, each once."""

    code = "invalid_order"


class InvalidPosition(ImageServiceError):
    """A move to a position the product's photos do not have, or of its label (which stays last)."""

    code = "invalid_position"


class LabelStaysLast(ImageServiceError):
    """The label is always the last image: it is not moved among the photos."""

    code = "label_stays_last"


class LabelNotAllowed(ImageServiceError):
    """Only a product with two or more images has a label."""

    code = "label_not_allowed"


class ImagesChanged(ImageServiceError):
    """The product's images are not as the caller saw them (``expected``): someone changed them in between."""

    code = "images_changed"


class NotUndoable(ImageServiceError):
    """The label change removed an image: undoing it would need the deleted image back."""

    code = "not_undoable"


class JsonChanged(ImageServiceError):
    """Old code changed the product's legacy JSON since its rows were reconciled with it (or wrote one the rule
    refuses): mirroring the rows over it would lose what it wrote."""

    code = "json_changed"


class HeldBack(JsonChanged):
    """The product's legacy JSON was refused (e.g. it mixes label conventions): held back from marketplaces."""

    code = "held_back"


class MarksUnreadable(ImageServiceError):
    """Settling by the marks refused: an is_label that is no boolean, or several true, could name another photo as
    the price label than the one the marks would keep."""

    code = "marks_unreadable"


class NotMigrated(ImageServiceError):
    """The product's photos are still only in the legacy JSON: writing rows would lose them."""

    code = "not_migrated"


@dataclass(frozen=True)
class Arrangement:
    """A product's images as a listing shows them: photo ids in display order, then the label's (None: none)."""

    photos: tuple[int, ...]
    label: int | None

    @classmethod
    def of(cls, images: list[ProductImage]) -> "Arrangement":
        photos, label = _split(images)
        return cls(tuple(photo.pk for photo in photos), label.pk if label else None)


def arrangement(product: Product | int) -> Arrangement:
    """The product's images as they are now (not locked: for showing them; pass it back as ``expected``)."""
    return Arrangement.of(_images(_id(product, Product)))


def add_image(product: Product | int, url: str, *, created_at: datetime | None = None) -> ProductImage:
    """Add a photo after the product's other photos, just before its label if it has one."""
    product_id = _id(product, Product)
    url = _checked_url(url, product_id)
    _check_created_at(created_at, product_id)
    with transaction.atomic():
        _lock_product(product_id)
        images = _images(product_id)
        limit = settings.STOFLOW_MAX_IMAGES_PER_PRODUCT
        if len(images) >= limit:
            raise TooManyImages(
                f"Product {product_id} has {len(images)} images and may not grow past {limit} "
                f"(STOFLOW_MAX_IMAGES_PER_PRODUCT): remove one first. Nothing was changed."
            )
        if not images:
            _refuse_unmigrated(product_id)
        photos, label = _split(images)
        orders = _orders_with_one_more(images)
        now = timezone.now()
        new = ProductImage(product_id=product_id, url=url, is_label=False, created_at=created_at or now)
        # The new photo takes the label's place and the label moves up one: existing rows first,
        # so the new photo's order is free by the time it is inserted.
        new.order = orders[len(photos)]
        _arrange(images, photos + ([label] if label else []), label, orders[: len(photos)] + orders[len(photos) + 1 :])
        new.save(force_insert=True)
        _mirror_json(product_id)
    return new


def remove_image(image: ProductImage | int, *, actor: str = "") -> LabelChange | None:
    """Delete an image. Removing the label leaves the product without one; a product left with
    a single image keeps no label. Either is a label change, recorded in the label history (it cannot be
    undone: the image is gone); returns that entry, None when the label stayed as it was."""
    image_id = _id(image, ProductImage)
    with transaction.atomic():
        product_id = _product_of(image_id)
        _lock_product(product_id)
        images = _images(product_id)
        _find(images, image_id, product_id)
        before = Arrangement.of(images)
        ProductImage.objects.filter(pk=image_id).delete()
        rest = [other for other in images if other.pk != image_id]
        if len(rest) == 1 and rest[0].is_label:
            ProductImage.objects.filter(pk=rest[0].pk).update(is_label=False, updated_at=timezone.now())
            rest[0].is_label = False
        _mirror_json(product_id)
        after = Arrangement.of(rest)
        if after.label == before.label:
            return None
        return _record_label_change(product_id, images, before, after, actor=actor, job=None)


def reorder_images(product: Product | int, image_ids: Iterable[ProductImage | int]) -> None:
    """Put the product's photos in the order of ``image_ids``; the label stays last.

    ``image_ids`` lists every photo (every image but the label) exactly once. The label's id
    may close the list (an editor showing every image sends it back where it is); anywhere
    else it is refused: making another image the label is ``set_label``'s job. The orders the
    product already uses are handed out again in the new order, so its numbering (0- or
    1-based, gaps) is kept."""
    product_id = _id(product, Product)
    if isinstance(image_ids, str | bytes) or not isinstance(image_ids, Iterable):
        raise InvalidImageOrder(f"reorder_images(product {product_id}) needs a list of image ids, got {image_ids!r}.")
    ids = [_id(image, ProductImage) for image in image_ids]
    with transaction.atomic():
        _lock_product(product_id)
        images = _images(product_id)
        photos, label = _split(images)
        if label is not None and ids and ids[-1] == label.pk:
            ids = ids[:-1]
        _check_reorder(product_id, ids, photos, label)
        by_id = {image.pk: image for image in images}
        new_photos = [by_id[pk] for pk in ids]
        if _arrange(images, new_photos + ([label] if label else []), label, [image.order for image in images]):
            _mirror_json(product_id)


def set_label(
    image: ProductImage | int,
    *,
    expected: Arrangement | None = None,
    actor: str = "",
    job: LabelJob | None = None,
) -> LabelChange | None:
    """Make the image its product's label: it moves to the end, and the former label, if any,
    becomes the last photo just before it. Returns the label history entry, None when it already was."""
    image_id = _id(image, ProductImage)
    with transaction.atomic():
        product_id = _product_of(image_id)
        _lock_product(product_id)
        images = _images(product_id)
        _check_expected(product_id, images, expected)
        chosen = _find(images, image_id, product_id)
        if len(images) < 2:
            raise LabelNotAllowed(
                f"Image {image_id} is the only image of product {product_id}: a product needs two or more "
                f"images to have a label. Nothing was changed."
            )
        photos, label = _split(images)
        sequence = [photo for photo in photos if photo.pk != image_id]
        if label is not None and label.pk != image_id:
            sequence.append(label)
        return _change_label(product_id, images, [*sequence, chosen], chosen, actor=actor, job=job)


def clear_label(
    product: Product | int,
    *,
    expected: Arrangement | None = None,
    actor: str = "",
    job: LabelJob | None = None,
) -> LabelChange | None:
    """The product keeps its images, all of them photos: none is held back as a label. Returns the label
    history entry, None when it had no label."""
    product_id = _id(product, Product)
    with transaction.atomic():
        _lock_product(product_id)
        images = _images(product_id)
        _check_expected(product_id, images, expected)
        photos, label = _split(images)
        if label is None:
            return None
        return _change_label(product_id, images, [*photos, label], None, actor=actor, job=job)


def undo_label_change(change: LabelChange, *, actor: str = "", job: LabelJob | None = None) -> LabelChange:
    """Put the product's images back as they were before ``change``: only while they are still exactly as the
    change left them (``ImagesChanged`` otherwise: undoing then would also undo what was done since). Recorded
    as a change of its own, which says what it undoes."""
    if not removed_nothing(change):
        raise NotUndoable(
            f"Label change {change.pk} removed an image of product {change.product_id}: a deleted image cannot "
            f"be put back. Nothing was changed."
        )
    expected = Arrangement(tuple(change.photos_after), change.label_after)
    with transaction.atomic():
        _lock_product(change.product_id)
        images = _images(change.product_id)
        if Arrangement.of(images) != expected:
            raise ImagesChanged(
                f"Product {change.product_id}'s images changed since label change {change.pk}: undoing it would "
                f"undo those changes too. Nothing was changed."
            )
        by_id = {image.pk: image for image in images}
        label = by_id[change.label_before] if change.label_before is not None else None
        sequence = [by_id[pk] for pk in change.photos_before] + ([label] if label else [])
        recorded = _change_label(change.product_id, images, sequence, label, actor=actor, job=job, undoes=change)
        if recorded is None:  # the change had changed nothing: its undo changes nothing either
            raise ImagesChanged(f"Label change {change.pk} changed nothing: nothing to undo. Nothing was changed.")
        return recorded


def removed_nothing(change: LabelChange) -> bool:
    """Whether every image ``change`` found is still there after it: only then can it be undone."""
    after = {*change.photos_after, change.label_after}
    return all(pk in after for pk in (*change.photos_before, change.label_before) if pk is not None)


def move_image(image: ProductImage | int, to_position: int, *, expected: Arrangement | None = None) -> None:
    """Move a photo to ``to_position`` (1-based, among the photos) in one step, the others closing up; the
    label stays last. The photo list is read under the product's lock, so two people moving photos of one
    product each move what is there when their turn comes."""
    image_id = _id(image, ProductImage)
    with transaction.atomic():
        product_id = _product_of(image_id)
        _lock_product(product_id)
        images = _images(product_id)
        _check_expected(product_id, images, expected)
        chosen = _find(images, image_id, product_id)
        photos, label = _split(images)
        if chosen is label:
            raise LabelStaysLast(
                f"Image {image_id} is product {product_id}'s label: the label stays last (set_label, clear_label). "
                f"Nothing was changed."
            )
        if isinstance(to_position, bool) or not isinstance(to_position, int) or not 1 <= to_position <= len(photos):
            raise InvalidPosition(
                f"Product {product_id} has photos 1 to {len(photos)}: no position {to_position!r} to move image "
                f"{image_id} to. Nothing was changed."
            )
        others = [photo for photo in photos if photo is not chosen]
        sequence = others[: to_position - 1] + [chosen] + others[to_position - 1 :]
        if _arrange(images, sequence + ([label] if label else []), label, [image.order for image in images]):
            _mirror_json(product_id)


def settle_label_convention(product: Product | int, convention: str) -> str | None:
    """A person's choice for a product held back because its legacy JSON mixes the two label conventions:
    rewrite every entry by one of them (``legacy_json.LAST_PHOTO``: the last photo is the price label;
    ``legacy_json.MARKED``: the photo marked is_label is), then bring the rows to it (ids kept where the URL
    stays). Nothing is lost: every photo of the JSON stays in it. Returns why the product is still held back
    (another problem of its JSON), or None when it is released. By the marks it refuses (``MarksUnreadable``)
    marks that do not say exactly which photo is the label (``_check_marks_readable``)."""
    product_id = _id(product, Product)
    if convention not in CONVENTIONS:
        raise ImageServiceError(f"Unknown label convention {convention!r}: {', '.join(CONVENTIONS)}.")
    with transaction.atomic():
        _lock_product(product_id, refuse_unreconciled=False)
        schema = connection.schema_name
        has_json = _has_json_column()
        if has_json and convention == MARKED:
            _check_marks_readable(schema, product_id)
        if not has_json or not rewrite_in_one_convention(schema, product_id, convention):
            raise ImageServiceError(
                f"Product {product_id} has no list of photos in its old images JSON to settle. Nothing was changed."
            )
        outcome = reconcile(
            schema, sql.SQL("p.id = %(id)s"), {"id": product_id}, f"settle_label_convention {convention}"
        )
        return outcome.refused.get(product_id)


# --- checks -------------------------------------------------------------------------------


def _check_marks_readable(schema: str, product_id: int) -> None:
    """Settling by the marks keeps a photo from marketplaces only if the marks say exactly which one: every
    ``is_label`` a JSON boolean, at most one true. A mark such as "true", 1 or null, read as false, would send the
    photo it may mark; of several true, any could be the label (the rule refuses them too)."""
    marks = label_marks(schema, product_id)
    malformed = [(position, kind) for position, kind in marks if kind != "boolean"]
    if malformed:
        named = "; ".join(f"entry {position} is_label is a JSON {kind}" for position, kind in malformed)
        raise MarksUnreadable(
            f"Product {product_id} cannot be settled by the marks: {named}, not true or false, so it could mark the "
            f"price label. Write true or false there in its old images JSON, or settle by {LAST_PHOTO!r}. "
            f"Nothing was changed."
        )
    marked = [position for position, _ in marks]
    if len(marked) > 1:
        raise MarksUnreadable(
            f"Product {product_id} cannot be settled by the marks: entries {_and_list(marked)} say is_label true; "
            f"any of them could be the price label, and all but the last would be sent to marketplaces. Keep one "
            f"mark in its old images JSON, or settle by {LAST_PHOTO!r}. Nothing was changed."
        )


def _and_list(numbers: list[int]) -> str:
    """1, 2 and 4."""
    texts = [str(number) for number in numbers]
    return ", ".join(texts[:-1]) + " and " + texts[-1]


def _id(value: object, model: type[Product] | type[ProductImage]) -> int:
    if isinstance(value, model):
        if value.pk is None:
            raise ImageServiceError(f"This {model.__name__} is not saved: it has no id.")
        return value.pk
    # bool is an int in Python; True is no product id.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ImageServiceError(f"Expected a {model.__name__} or its id, got {value!r}.")


def _checked_url(url: object, product_id: int) -> str:
    """The URL as stored: trimmed, and allowed by the one rule the migration reads too (``image_urls``)."""
    if not isinstance(url, str):
        raise InvalidImageUrl(
            f"The URL of a new image of product {product_id} must be a string, got {type(url).__name__} {url!r}. "
            f"Nothing was changed."
        )
    trimmed = url.strip(URL_WHITESPACE)
    if not trimmed:
        raise InvalidImageUrl(
            f"The URL of a new image of product {product_id} is empty or blank ({url!r}). Nothing was changed."
        )
    # PostgreSQL text cannot hold a NUL character: refused here rather than as a database error.
    if "\x00" in trimmed:
        raise InvalidImageUrl(
            f"The URL of a new image of product {product_id} holds a NUL character ({url!r}). Nothing was changed."
        )
    problem = url_problem(trimmed)
    if problem:
        raise InvalidImageUrl(
            f"The URL of a new image of product {product_id} {problem} ({url!r}). Nothing was changed."
        )
    return trimmed


def _check_created_at(created_at: object, product_id: int) -> None:
    if created_at is None:
        return
    if not isinstance(created_at, datetime) or timezone.is_naive(created_at):
        raise ImageServiceError(
            f"created_at of a new image of product {product_id} must be a timezone-aware datetime, "
            f"got {created_at!r}. Nothing was changed."
        )
    if not created_at_accepted(created_at):
        raise ImageServiceError(
            f"created_at of a new image of product {product_id} must fall in the years {FIRST_YEAR} to {LAST_YEAR} "
            f"(UTC), the range the migration reads, got {created_at.isoformat()}. Nothing was changed."
        )


def _check_reorder(product_id: int, ids: list[int], photos: list[ProductImage], label: ProductImage | None) -> None:
    """``ids`` (the label's closing id removed) must be exactly the product's photos, each once."""
    problems = []
    duplicated = sorted(pk for pk, count in Counter(ids).items() if count > 1)
    if duplicated:
        problems.append(f"listed more than once: {_join(duplicated)}")
    if label is not None and label.pk in ids:
        problems.append(f"image {label.pk} is the label: it may only close the list (set_label changes the label)")
    photo_ids = {photo.pk for photo in photos}
    strangers = sorted({pk for pk in ids if pk not in photo_ids and (label is None or pk != label.pk)})
    if strangers:
        owners = dict(ProductImage.objects.filter(pk__in=strangers).values_list("pk", "product_id"))
        for pk in strangers:
            where = f"belongs to product {owners[pk]}" if pk in owners else "does not exist"
            problems.append(f"image {pk} {where}")
    missing = [photo.pk for photo in photos if photo.pk not in ids]
    if missing:
        problems.append(f"missing: {_join(missing)}")
    if problems:
        raise InvalidImageOrder(
            f"reorder_images(product {product_id}) needs each of its photos exactly once "
            f"({_join([photo.pk for photo in photos]) or 'it has none'}): {'; '.join(problems)}. Nothing was changed."
        )


def _check_expected(product_id: int, images: list[ProductImage], expected: Arrangement | None) -> None:
    """Under the product's lock: refuse when the caller saw the images otherwise."""
    if expected is None:
        return
    if not isinstance(expected, Arrangement):
        raise ImageServiceError(f"expected must be an Arrangement, got {expected!r}.")
    now = Arrangement.of(images)
    if now != expected:
        raise ImagesChanged(
            f"Product {product_id}'s images are {_describe(now)}, not {_describe(expected)} as the caller saw them: "
            f"someone changed them in between. Nothing was changed."
        )


def _describe(images: Arrangement) -> str:
    label = f", label {images.label}" if images.label is not None else ", no label"
    return f"photos ({_join(list(images.photos))}){label}"


def _join(ids: list[int]) -> str:
    return ", ".join(map(str, ids))


# --- reading and locking ------------------------------------------------------------------


def _lock_product(product_id: int, *, refuse_unreconciled: bool = True) -> None:
    """Lock the product's row for the rest of the transaction; every write below happens under it.

    Only the id is selected: the legacy ``images`` column may already be gone in this tenant."""
    if connection.schema_name == get_public_schema_name():
        raise ImageServiceError(
            "No seller schema is selected: product images live in a seller's schema (use schema_context)."
        )
    if not list(Product.objects.select_for_update().filter(pk=product_id).values_list("pk", flat=True)):
        raise ProductNotFound(f"Product {product_id} does not exist. Nothing was changed.")
    if refuse_unreconciled:
        _refuse_unreconciled(product_id)


def _refuse_unreconciled(product_id: int) -> None:
    """While old code may still write the JSON: a product whose JSON changed since its rows were last reconciled
    with it (``product_json_state``), or was refused, is not written. The mirror would overwrite the JSON with
    the rows, and a photo the old code added exists nowhere else. A product never recorded (rows made before
    the state existed) is written as before."""
    if not _has_json_column():
        return
    query = sql.SQL(
        "SELECT st.refused, st.json_digest IS NOT DISTINCT FROM {json_digest} "
        "FROM {products} AS p JOIN {json_state} AS st ON st.product_id = p.id WHERE p.id = %(id)s"
    ).format(
        json_digest=json_digest(sql.SQL("p.images")),
        products=table(connection.schema_name, "products"),
        json_state=table(connection.schema_name, "product_json_state"),
    )
    for refused, same_json in fetch_rows(query, {"id": product_id}):
        if refused is not None:
            raise HeldBack(
                f"Product {product_id}'s photo list in the old images JSON was refused ({refused}): it is held back "
                f"from marketplaces until the list is fixed or the choice is made. Nothing was changed."
            )
        if not same_json:
            raise JsonChanged(
                f"Product {product_id}'s photo list was changed by the old code since its image rows were last "
                f"brought up to date: run migrate_images --sync (or turn the follower on with --follow), then "
                f"retry. Nothing was changed."
            )


def _images(product_id: int) -> list[ProductImage]:
    return list(ProductImage.objects.filter(product_id=product_id).order_by("order"))


def _product_of(image_id: int) -> int:
    """The product of an image, read before locking that product (an image never changes product)."""
    product_id = ProductImage.objects.filter(pk=image_id).values_list("product_id", flat=True).first()
    if product_id is None:
        raise ImageNotFound(f"Image {image_id} does not exist (deleted?). Nothing was changed.")
    return product_id


def _find(images: list[ProductImage], image_id: int, product_id: int) -> ProductImage:
    """The image among the locked product's images: it may have been deleted while we waited."""
    for image in images:
        if image.pk == image_id:
            return image
    raise ImageNotFound(f"Image {image_id} of product {product_id} no longer exists. Nothing was changed.")


def _split(images: list[ProductImage]) -> tuple[list[ProductImage], ProductImage | None]:
    """The photos in display order, and the label if there is one."""
    label = next((image for image in images if image.is_label), None)
    return [image for image in images if not image.is_label], label


def _refuse_unmigrated(product_id: int) -> None:
    """A product with no rows but photos in its legacy JSON has not been migrated (or could not
    be): its first row would rewrite the JSON with that one photo and lose the others."""
    if not _has_json_column():
        return
    query = sql.SQL(
        "SELECT images IS NULL OR images IN ('null'::jsonb, '[]'::jsonb, '\"[]\"'::jsonb) FROM {} WHERE id = %(id)s"
    ).format(table(connection.schema_name, "products"))
    ((empty,),) = fetch_rows(query, {"id": product_id})
    if not empty:
        raise NotMigrated(
            f"Product {product_id} has photos in its legacy images JSON but no image rows: run migrate_images "
            f"first (or fix the errors it lists for this product). Nothing was changed."
        )


# --- writing ------------------------------------------------------------------------------


def _orders_with_one_more(images: list[ProductImage]) -> list[int]:
    """The product's orders, ascending, with one more slot for a new image."""
    orders = [image.order for image in images]
    if not orders:
        return [FIRST_ORDER]
    if orders[-1] < MAX_ORDER:
        return orders + [orders[-1] + 1]
    # A migrated product whose last order is the largest integer: renumber it in one run,
    # from its lowest order when that fits.
    start = min(orders[0], MAX_ORDER - len(orders))
    return list(range(start, start + len(orders) + 1))


def _arrange(
    images: list[ProductImage], sequence: list[ProductImage], label: ProductImage | None, orders: list[int]
) -> bool:
    """Give ``sequence`` (every image of ``images``, in display order, label last) the ascending
    ``orders`` and the label flag; returns whether any row changed.

    Why two UPDATEs: PostgreSQL checks a unique index that is not DEFERRABLE row by row during
    an UPDATE, so moving rows onto each other's orders in one statement (reversing 14 photos)
    fails half-way on (product, order), and handing the label from one row to another fails on
    the one-label index. So the rows that change first move to orders no row holds or will
    hold, all as photos, then to their final orders and flags. The alternative, making
    (product, order) DEFERRABLE and deferring it here, was measured on 1.96 million rows: same
    insert speed for the migration, 0.5 ms against 0.8 ms to reverse 14 photos. It was not
    chosen because PostgreSQL 16 cannot alter a unique constraint's deferrability (every
    tenant's index would be dropped and rebuilt), a deferrable constraint cannot serve ON
    CONFLICT, SET CONSTRAINTS ... DEFERRED would outlive this call in a caller's transaction,
    and the partial one-label index cannot be deferred at all, so two steps were needed anyway.
    Free orders are the smallest ones unused, not an offset, so nothing can pass the integer
    maximum."""
    targets = {image.pk: (order, image is label) for image, order in zip(sequence, orders, strict=True)}
    changed = [image for image in images if (image.order, image.is_label) != targets[image.pk]]
    if not changed:
        return False
    now = timezone.now()
    if len(changed) > 1:
        taken = {image.order for image in images} | {order for order, _ in targets.values()}
        for image, free in zip(changed, _free_orders(taken, len(changed)), strict=True):
            image.order, image.is_label, image.updated_at = free, False, now
        ProductImage.objects.bulk_update(changed, ["order", "is_label", "updated_at"])
    for image in changed:
        (image.order, image.is_label), image.updated_at = targets[image.pk], now
    ProductImage.objects.bulk_update(changed, ["order", "is_label", "updated_at"])
    return True


def _free_orders(taken: set[int], count: int) -> list[int]:
    free, candidate = [], 0
    while len(free) < count:
        if candidate not in taken:
            free.append(candidate)
        candidate += 1
    return free


def _change_label(
    product_id: int,
    images: list[ProductImage],
    sequence: list[ProductImage],
    label: ProductImage | None,
    *,
    actor: str,
    job: LabelJob | None,
    undoes: LabelChange | None = None,
) -> LabelChange | None:
    """Arrange the locked product's ``images`` as ``sequence`` with ``label``, mirror the JSON and record the
    change in the label history (the same transaction); None when nothing changed."""
    before = Arrangement.of(images)
    if not _arrange(images, sequence, label, [image.order for image in images]):
        return None
    _mirror_json(product_id)
    after = Arrangement(tuple(image.pk for image in sequence if image is not label), label.pk if label else None)
    return _record_label_change(product_id, images, before, after, actor=actor, job=job, undoes=undoes)


def _record_label_change(
    product_id: int,
    images: list[ProductImage],
    before: Arrangement,
    after: Arrangement,
    *,
    actor: str,
    job: LabelJob | None,
    undoes: LabelChange | None = None,
) -> LabelChange:
    """The label history's entry for a change of the product from ``before`` to ``after`` (``images``: its
    images before, whose URLs the entry keeps for the images it names)."""
    named = {before.label, after.label} - {None}
    return LabelChange.objects.create(
        product_id=product_id,
        made_at=timezone.now(),
        actor=actor,
        job=job,
        undoes=undoes,
        photos_before=list(before.photos),
        label_before=before.label,
        photos_after=list(after.photos),
        label_after=after.label,
        urls={str(image.pk): image.url for image in images if image.pk in named},
    )


# The product's rows as the legacy JSON array, in order. created_at is ISO 8601 UTC,
# "YYYY-MM-DDTHH:MM:SS[.ffffff]Z", the fraction only when there is one: the legacy entries'
# shape, which the migration's source reads. The JSON written is recorded as reconciled with the rows
# (product_json_state), in the same statement: --sync and the follower leave it alone (no bounce back).
_MIRRORED = """(
    SELECT COALESCE(
        jsonb_agg(
            jsonb_build_object(
                'url', i.url,
                'order', i."order",
                'created_at', to_char(i.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
                    || CASE WHEN date_trunc('second', i.created_at) = i.created_at THEN ''
                            ELSE to_char(i.created_at AT TIME ZONE 'UTC', '.US') END
                    || 'Z',
                'is_label', i.is_label
            )
            ORDER BY i."order"
        ),
        '[]'::jsonb
    )
    FROM {product_images} AS i
    WHERE i.product_id = %(product_id)s
)"""
# The JSON about to be written is recorded first, as reconciled with the rows it comes from: when the UPDATE
# then fires the follower, it finds that digest and leaves the product alone (no bounce back). Plain statements,
# the state written from values (batches._JSON_DIGESTS says why): Citus runs each whole on the worker.
_MIRRORED_DIGEST = "SELECT {json_digest}, now()"  # the time recorded, as a value (Citus)
_MIRROR_JSON = "UPDATE {products} SET images = {mirrored} WHERE id = %(product_id)s"

_HAS_JSON_COLUMN = """SELECT EXISTS (
    SELECT FROM pg_attribute
    WHERE attrelid = to_regclass(%(products)s) AND attname = 'images' AND NOT attisdropped
)"""


def _has_json_column() -> bool:
    """Whether this tenant still has the legacy column (finalize drops it tenant by tenant).

    One catalog lookup by the table's OID, cheaper than information_schema.columns; not cached,
    as the column may be dropped while the process runs."""
    ((exists,),) = fetch_rows(
        sql.SQL(_HAS_JSON_COLUMN), {"products": as_text(table(connection.schema_name, "products"))}
    )
    return exists


def _mirror_json(product_id: int) -> None:
    """Rewrite the product's legacy JSON from its rows, in the caller's transaction."""
    if not _has_json_column():
        return
    schema = connection.schema_name
    mirrored = sql.SQL(_MIRRORED).format(product_images=table(schema, "product_images"))
    ((digest, now),) = fetch_rows(
        sql.SQL(_MIRRORED_DIGEST).format(json_digest=json_digest(mirrored)), {"product_id": product_id}
    )
    execute(
        record_json_state(schema),
        # No rows digest: this JSON is written from the rows, not read by the rule; the validation decodes it.
        {"product_ids": [product_id], "json_digests": [digest], "rows_digests": [None], "refusals": [None], "now": now},
    )
    execute(
        sql.SQL(_MIRROR_JSON).format(products=table(schema, "products"), mirrored=mirrored), {"product_id": product_id}
    )
