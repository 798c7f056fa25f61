"""Product photos as marketplaces receive them: the only way photos leave the system.

A listing carries the product's photos in order, never its price label, and no more than
the marketplace takes (``settings.STOFLOW_MARKETPLACE_PHOTO_LIMITS``). Call these inside a
seller's schema (``django_tenants.utils.schema_context``).
"""

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import F, Window
from django.db.models.functions import RowNumber

from products.models import Product, ProductImage


class UnknownMarketplace(ValueError):
    pass


@dataclass(frozen=True)
class ListingPhotoSummary:
    """What one marketplace would receive for a product."""

    marketplace: str
    limit: int  # photos the marketplace takes
    photos_sent: int  # photos it would receive
    photos_left_out: int  # photos beyond its limit, not sent
    label_left_out: bool  # the product has a label, which is never sent


def photo_limit(marketplace: str) -> int:
    """How many photos a listing on ``marketplace`` may carry."""
    limits = settings.STOFLOW_MARKETPLACE_PHOTO_LIMITS
    if marketplace not in limits:
        raise UnknownMarketplace(
            f"Unknown marketplace {marketplace!r}: known marketplaces are {', '.join(sorted(limits))} "
            f"(STOFLOW_MARKETPLACE_PHOTO_LIMITS)."
        )
    return limits[marketplace]


def listing_photos(product: Product | int, marketplace: str) -> list[str]:
    """The photo URLs a listing of the product on ``marketplace`` carries, in order, label left out."""
    limit = photo_limit(marketplace)
    photos = ProductImage.objects.filter(product_id=_id(product), is_label=False).order_by("order")
    return list(photos.values_list("url", flat=True)[:limit])


def listing_photos_for(products: Iterable[Product | int], marketplace: str) -> dict[int, list[str]]:
    """``listing_photos`` for many products in one query: {product id: photo URLs}, every product
    given present (with [] when it has no photos)."""
    limit = photo_limit(marketplace)
    ids = list(dict.fromkeys(_id(product) for product in products))
    photos: dict[int, list[str]] = {product_id: [] for product_id in ids}
    if not ids:
        return photos
    # Each product's first ``limit`` photos, cut in the database: a product migrated with
    # 40 photos sends no more rows than one with ``limit``.
    position = Window(RowNumber(), partition_by=[F("product_id")], order_by=F("order").asc())
    rows = (
        ProductImage.objects.filter(product_id__in=ids, is_label=False)
        .annotate(position=position)
        .filter(position__lte=limit)
        .order_by("product_id", "order")
        .values_list("product_id", "url")
    )
    for product_id, url in rows:
        photos[product_id].append(url)
    return photos


def listing_photo_summary(product: Product | int) -> list[ListingPhotoSummary]:
    """For each known marketplace, what a listing of the product would receive (one query)."""
    images = ProductImage.objects.filter(product_id=_id(product)).order_by()
    labels = list(images.values_list("is_label", flat=True))
    photos = labels.count(False)
    has_label = True in labels
    return [
        ListingPhotoSummary(
            marketplace=marketplace,
            limit=limit,
            photos_sent=min(photos, limit),
            photos_left_out=max(photos - limit, 0),
            label_left_out=has_label,
        )
        for marketplace, limit in settings.STOFLOW_MARKETPLACE_PHOTO_LIMITS.items()
    ]


def _id(product: object) -> int:
    if isinstance(product, Product):
        return product.pk
    if isinstance(product, int) and not isinstance(product, bool):
        return product
    raise TypeError(f"Expected a Product or its id, got {product!r}.")
