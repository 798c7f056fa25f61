"""What a label change will do, said per product: before it is made (the admin's confirmation page)
and once made (the admin history). Read-only: the image service (``products/images.py``) makes the
change; this module only reads the rows and describes the service's rule (the new label moves last,
the former label becomes the last photo before it, a product with one image has no label)."""

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, QuerySet
from django.utils.text import capfirst

from products.models import Product, ProductImage
from products.selectors import ListingPhotoSummary

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


@dataclass(frozen=True)
class LabelChange:
    """One product's part of a label change."""

    product: Product
    image_id: int | None  # make: the image that becomes the label; clear: the label cleared (None: no label)
    changes: bool  # False: nothing to do (already so, no label to clear, or a single image)
    sentences: tuple[str, ...]  # what happens, for the confirmation page
    done: str  # what happened, for the admin history (meaningful when ``changes``)

    @property
    def product_id(self) -> int:
        return self.product.pk


@dataclass(frozen=True)
class SeveralPerProduct:
    """Products holding two or more of the selected images: a label change refuses the selection."""

    products: int
    examples: list[int]  # the lowest few product ids

    @property
    def message(self) -> str:
        have = "product has" if self.products == 1 else "products have"
        example = ", ".join(map(str, self.examples)) + (", ..." if self.products > len(self.examples) else "")
        label = "e.g. " if self.products > 1 else ""
        return (
            f"Select one image per product: {self.products:,} {have} several selected ({label}{example}). "
            "No label was changed."
        )


def several_per_product(images: QuerySet[ProductImage], examples: int = 3) -> SeveralPerProduct | None:
    """The products holding several of ``images`` (counted in the database, whatever the selection's size)."""
    crowded = images.order_by().values("product_id").annotate(selected=Count("pk")).filter(selected__gt=1)
    ids = list(crowded.order_by("product_id").values_list("product_id", flat=True)[:examples])
    if not ids:
        return None
    return SeveralPerProduct(products=len(ids) if len(ids) < examples else crowded.count(), examples=ids)


def plan_make_labels(images: QuerySet[ProductImage]) -> list[LabelChange]:
    """Making each of ``images`` (one per product) its product's label, product by product."""
    chosen = dict(images.order_by().values_list("product_id", "pk"))
    return [_make_label(product, rows, chosen[product.pk]) for product, rows in _products_with_images(chosen)]


def plan_clear_labels(product_ids: Iterable[int]) -> list[LabelChange]:
    """Clearing the label of each product."""
    return [_clear_label(product, rows) for product, rows in _products_with_images(product_ids)]


def _products_with_images(product_ids: Iterable[int]) -> list[tuple[Product, list[ProductImage]]]:
    """The products (id order) with their images in display order: two queries, whatever their number."""
    ids = sorted(set(product_ids))
    rows: dict[int, list[ProductImage]] = {product_id: [] for product_id in ids}
    images = ProductImage.objects.filter(product_id__in=ids).order_by("product_id", "order")
    for image in images.only("pk", "product_id", "order", "is_label", "url"):
        rows[image.product_id].append(image)
    products = Product.objects.filter(pk__in=ids).only("pk", "title").order_by("pk")
    return [(product, rows[product.pk]) for product in products]


def _make_label(product: Product, images: list[ProductImage], image_id: int) -> LabelChange:
    chosen = next(image for image in images if image.pk == image_id)
    former = next((image for image in images if image.is_label), None)
    if len(images) < 2:
        sentence = f"{image_name(chosen)} is the product's only image: a product needs two or more to have a label."
        return LabelChange(product, image_id, False, (capfirst(sentence) + " Nothing changes.",), "")
    if former is not None and former.pk == image_id:
        return LabelChange(product, image_id, False, (capfirst(f"{image_name(chosen)} already is the label."),), "")
    photos = [image for image in images if not image.is_label]
    becomes = capfirst(
        f"{image_name(chosen)} (photo {photos.index(chosen) + 1}) becomes the price label and moves last: "
        "marketplaces will no longer receive it."
    )
    if former is None:
        return LabelChange(
            product,
            image_id,
            True,
            (becomes, "The product had no label until now."),
            f"Made {image_name(chosen)} the price label (moved last); the product had none.",
        )
    # The service keeps the former label as the last photo, just before the new label.
    position = len(photos)
    return LabelChange(
        product,
        image_id,
        True,
        (
            becomes,
            capfirst(f"{image_name(former)}, the label until now, becomes photo {position}: {_received_by(position)}."),
        ),
        f"Made {image_name(chosen)} the price label (moved last); the former label, {image_name(former)}, "
        f"became photo {position}: {_received_by(position)}.",
    )


def _clear_label(product: Product, images: list[ProductImage]) -> LabelChange:
    label = next((image for image in images if image.is_label), None)
    if label is None:
        return LabelChange(product, None, False, ("The product has no label: nothing changes.",), "")
    position = len(images)
    effect = f"becomes photo {position}: {_received_by(position)}"
    return LabelChange(
        product,
        label.pk,
        True,
        (capfirst(f"{image_name(label)}, the price label, {effect}."),),
        f"Cleared the price label: {image_name(label)} {effect.replace('becomes', 'became')}.",
    )


def image_name(image: ProductImage) -> str:
    """ "image 57 (2.svg)": the id finds it, the file name tells it apart from its neighbours."""
    file_name = image.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or image.url
    return f"image {image.pk} ({file_name})"


def _received_by(position: int) -> str:
    """Which marketplaces a listing's photo ``position`` (1-based) reaches, given their photo limits."""
    limits = settings.STOFLOW_MARKETPLACE_PHOTO_LIMITS
    taking = [marketplace_name(key) for key, limit in limits.items() if position <= limit]
    if not taking:
        return "no marketplace takes that many photos, so none will receive it"
    if len(taking) == len(limits):
        return f"marketplaces will receive it ({_and(taking)})"
    others = [marketplace_name(key) for key, limit in limits.items() if position > limit]
    return f"{_and(taking)} will receive it ({_and(others)} take{'s' if len(others) == 1 else ''} fewer photos)"


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
