"""What a label change does, in words: before it is made (the confirmation pages, with what each marketplace
receives afterwards), and once made (the label history, the messages and the admin history). Read-only: the
image service (``products/images.py``) makes the change and records it; this module reads the rows and
describes the service's rule (the new label moves last, the former label becomes the last photo before it, a
product with one image has no label)."""

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, QuerySet
from django.utils.text import capfirst

from products.images import Arrangement
from products.models import LabelChange, Product, ProductImage
from products.selectors import ListingPhotoSummary, listing_summaries, sendable_urls

# How the admin names the marketplaces of settings.STOFLOW_MARKETPLACE_PHOTO_LIMITS.
MARKETPLACE_NAMES = {"vinted": "Vinted", "ebay": "eBay", "etsy": "Etsy"}


def marketplace_name(key: str) -> str:
    return MARKETPLACE_NAMES.get(key, key.capitalize())


def listing_line(summary: ListingPhotoSummary) -> str:
    """What one marketplace receives, in a line: "Vinted: photos 1-4, label left out"."""
    sent = summary.photos_sent
    parts = ["no photo" if sent == 0 else "photo 1" if sent == 1 else f"photos 1-{sent}"]
    if summary.photos_left_out:
        first, last = sent + 1, sent + summary.photos_left_out
        beyond = f"photo {first}" if first == last else f"photos {first}-{last}"
        parts.append(f"{beyond} left out (it takes {summary.limit})")
    if summary.label_left_out:
        parts.append("label left out")
    return f"{marketplace_name(summary.marketplace)}: {', '.join(parts)}"


def image_name(url: str) -> str:
    """An image as a support agent tells it from its neighbours: its file name, “2.svg”."""
    file_name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or url
    return f"“{file_name}”"


@dataclass(frozen=True)
class LabelPlan:
    """One product's part of a label change, before it is made."""

    product: Product
    image_id: int | None  # make: the image that becomes the label; clear: the label cleared (None: no label)
    changes: bool  # False: nothing to do (already so, no label to clear, or a single image)
    sentences: tuple[str, ...]  # what happens
    afterwards: tuple[str, ...] = ()  # what each marketplace receives once it is made (when it changes)

    @property
    def product_id(self) -> int:
        return self.product.pk


@dataclass(frozen=True)
class SeveralPerProduct:
    """Products holding two or more of the selected images: making labels refuses the selection."""

    products: int
    examples: list[int]  # the lowest few product ids

    @property
    def message(self) -> str:
        advice = "select one image per product to make labels. No label was changed."
        if self.products == 1:
            return f"Product {self.examples[0]} has several images selected: {advice}"
        more = self.products - len(self.examples)
        named = ", ".join(map(str, self.examples)) + (f" and {more:,} more" if more else "")
        return f"{self.products:,} products have several images selected (products {named}): {advice}"


def several_per_product(images: QuerySet[ProductImage], examples: int = 3) -> SeveralPerProduct | None:
    """The products holding several of ``images`` (counted in the database, whatever the selection's size)."""
    crowded = images.order_by().values("product_id").annotate(selected=Count("pk")).filter(selected__gt=1)
    ids = list(crowded.order_by("product_id").values_list("product_id", flat=True)[:examples])
    if not ids:
        return None
    return SeveralPerProduct(products=len(ids) if len(ids) < examples else crowded.count(), examples=ids)


def plan_make_labels(chosen: dict[int, int]) -> list[LabelPlan]:
    """Making each chosen image ({product id: image id}, one per product) its product's label."""
    return [_make_label(product, rows, chosen[product.pk]) for product, rows in _products_with_images(chosen)]


def plan_clear_labels(product_ids: Iterable[int]) -> list[LabelPlan]:
    """Clearing the label of each product."""
    return [_clear_label(product, rows) for product, rows in _products_with_images(product_ids)]


def plan_undo(change: LabelChange) -> LabelPlan:
    """Undoing ``change``: its product's images back as they were before it."""
    [(product, rows)] = _products_with_images([change.product_id])
    now = Arrangement.of(rows)
    if now != Arrangement(tuple(change.photos_after), change.label_after):
        sentence = "Its photos changed since: undoing this change would undo those changes too. Nothing changes."
        return LabelPlan(product, change.label_before, False, (sentence,))
    return _plan(product, rows, now, Arrangement(tuple(change.photos_before), change.label_before))


def _products_with_images(product_ids: Iterable[int]) -> list[tuple[Product, list[ProductImage]]]:
    """The products (id order) with their images in display order: two queries, whatever their number."""
    ids = sorted(set(product_ids))
    rows: dict[int, list[ProductImage]] = {product_id: [] for product_id in ids}
    images = ProductImage.objects.filter(product_id__in=ids).order_by("product_id", "order")
    for image in images.only("pk", "product_id", "order", "is_label", "url"):
        rows[image.product_id].append(image)
    products = Product.objects.filter(pk__in=ids).only("pk", "title").order_by("pk")
    return [(product, rows[product.pk]) for product in products]


def _make_label(product: Product, images: list[ProductImage], image_id: int) -> LabelPlan:
    chosen = next(image for image in images if image.pk == image_id)
    now = Arrangement.of(images)
    if len(images) < 2:
        sentence = f"{image_name(chosen.url)} is the product's only image: a product needs two or more to have a label."
        return LabelPlan(product, image_id, False, (capfirst(sentence) + " Nothing changes.",))
    if now.label == image_id:
        return LabelPlan(product, image_id, False, (capfirst(f"{image_name(chosen.url)} already is the label."),))
    # The service keeps the former label as the last photo, just before the new label.
    photos = [pk for pk in now.photos if pk != image_id] + ([now.label] if now.label is not None else [])
    return _plan(product, images, now, Arrangement(tuple(photos), image_id))


def _clear_label(product: Product, images: list[ProductImage]) -> LabelPlan:
    now = Arrangement.of(images)
    if now.label is None:
        return LabelPlan(product, None, False, ("The product has no label: nothing changes.",))
    return _plan(product, images, now, Arrangement((*now.photos, now.label), None))


def _plan(product: Product, images: list[ProductImage], now: Arrangement, after: Arrangement) -> LabelPlan:
    urls = {image.pk: image.url for image in images}
    label = urls[after.label] if after.label is not None else None
    sent = sendable_urls([urls[pk] for pk in after.photos], product, label)
    afterwards = tuple(listing_line(summary) for summary in listing_summaries(len(sent), after.label is not None))
    changed_label = after.label if after.label is not None else now.label
    return LabelPlan(product, changed_label, True, tuple(label_sentences(now, after, urls, past=False)), afterwards)


def label_sentences(before: Arrangement, after: Arrangement, urls: dict, past: bool) -> list[str]:
    """What going from ``before`` to ``after`` does to the label, in sentences (``urls``: image id → URL, keys
    may be strings, as a LabelChange keeps them): a plan's future, or a history's past."""

    def name(pk: int) -> str:
        return image_name(urls.get(pk) or urls.get(str(pk)) or f"image {pk}")

    tense = PAST if past else FUTURE
    sentences = []
    if after.label is not None and after.label != before.label:
        was = f" (photo {before.photos.index(after.label) + 1})" if after.label in before.photos else ""
        sentences.append(f"{name(after.label)}{was} {tense['becomes label']}.")
    if before.label is not None and before.label != after.label and before.label not in after.photos:
        sentences.append(f"{name(before.label)}, the price label, {tense['removed']}: the product has no label now.")
    elif before.label is not None and before.label != after.label:
        position = after.photos.index(before.label) + 1
        role = tense["former label"] if after.label else "the price label"
        sentences.append(
            f"{name(before.label)}, {role}, {tense['becomes']} photo {position}: {_received_by(position)}."
        )
    elif before.label is None and after.label is not None:
        sentences.append(tense["had none"])
    if sorted(before.photos) == sorted(after.photos) and before.photos != after.photos:
        sentences.append(tense["photos back"])
    return [capfirst(sentence) for sentence in sentences]


FUTURE = {
    "becomes label": "becomes the price label and moves last: marketplaces will no longer receive it",
    "former label": "the label until now",
    "becomes": "becomes",
    "removed": "is deleted",
    "had none": "The product had no label until now.",
    "photos back": "The photos go back to the order they had.",
}
PAST = {
    "becomes label": "became the price label, moved last: marketplaces no longer receive it",
    "former label": "the label until then",
    "becomes": "became",
    "removed": "was deleted",
    "had none": "The product had no label until then.",
    "photos back": "The photos went back to the order they had.",
}


def describe_change(change: LabelChange) -> str:
    """A label history entry in a sentence or two, for the product page, the messages and the admin history."""
    before = Arrangement(tuple(change.photos_before), change.label_before)
    after = Arrangement(tuple(change.photos_after), change.label_after)
    text = " ".join(label_sentences(before, after, change.urls, past=True))
    if change.undoes_id is not None:
        undone = change.undoes
        text = (
            f"Undid the change of {undone.made_at:%Y-%m-%d %H:%M} UTC by {undone.actor or 'an unnamed caller'}: {text}"
        )
    return text


def _received_by(position: int) -> str:
    """Which marketplaces a listing's photo ``position`` (1-based) reaches, given their photo limits."""
    limits = settings.STOFLOW_MARKETPLACE_PHOTO_LIMITS
    taking = [marketplace_name(key) for key, limit in limits.items() if position <= limit]
    if not taking:
        return "no marketplace takes that many photos, so none will receive it"
    if len(taking) == len(limits):
        return f"marketplaces will receive it ({and_list(taking)})"
    others = [marketplace_name(key) for key, limit in limits.items() if position > limit]
    return f"{and_list(taking)} will receive it ({and_list(others)} take{'s' if len(others) == 1 else ''} fewer photos)"


def and_list(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def bulk_outlook(former_label_positions: dict[int, int], products_changing: int) -> list[str]:
    """For a bulk change: which marketplaces receive the former labels as photos afterwards.
    ``former_label_positions``: {the position a former label takes among the photos: products}, held-back
    products left out (they send nothing)."""
    total = sum(former_label_positions.values())
    if not total:
        return []
    limits = settings.STOFLOW_MARKETPLACE_PHOTO_LIMITS
    parts = []
    for key, limit in limits.items():
        products = sum(count for position, count in former_label_positions.items() if position <= limit)
        parts.append(f"{marketplace_name(key)} for {products:,} product{'s' if products != 1 else ''}")
    lead = (
        "the former price label becomes a photo"
        if total == products_changing
        else (f"the former price label of {total:,} of them becomes a photo")
    )
    return [f"Afterwards {lead}, sent to marketplaces: {and_list(parts)}."]
