"""Product photos as marketplaces receive them: the only way photos leave the system.

A listing carries the product's photos in order, never its price label, and no more than
the marketplace takes (``settings.STOFLOW_MARKETPLACE_PHOTO_LIMITS``). Nor a photo whose URL is the
label's, compared without letter case: it is the label's file under a photo's row. A photo whose URL the
URL rule refuses (``image_urls``) is never sent: the service and the migration store none, but
a row written around them by raw SQL (``javascript:``, ``//host``, ``/\\host``) would be. A
product held back (its legacy JSON was refused: ``ProductJsonState.refused``, e.g. entries
mixing the two label conventions, where either could name another photo as the label) sends no
photo at all. Call these inside a seller's schema (``django_tenants.utils.schema_context``).
"""

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Exists, F, OuterRef, Q, Window
from django.db.models.functions import RowNumber

from products.image_urls import url_patterns, url_problem
from products.models import Product, ProductImage, ProductJsonState


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
    photos = ProductImage.objects.filter(_sendable(), product_id=_id(product)).order_by("order")
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
        ProductImage.objects.filter(_sendable(), product_id__in=ids)
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
    counts = ProductImage.objects.filter(product_id=_id(product)).aggregate(
        photos=Count("pk", filter=_sendable()), labels=Count("pk", filter=Q(is_label=True))
    )
    return listing_summaries(counts["photos"], counts["labels"] > 0)


def listing_summaries(photos: int, has_label: bool) -> list[ListingPhotoSummary]:
    """For each known marketplace, what a product with ``photos`` sendable photos (and a label or not) sends:
    the product as it is (``listing_photo_summary``) or as a change would leave it (the admin's plans)."""
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


def sendable_urls(urls: Iterable[str], product: Product | int, label: str | None = None) -> list[str]:
    """Of a product's photo ``urls`` (say, as a change would order them), those a listing would carry: the URL
    rule's, not the ``label``'s file, none when the product is held back; the same rule as ``_sendable``, asked
    in Python."""
    if held_back(product) is not None:
        return []
    return [url for url in urls if url_problem(url) is None and not _is_label_file(url, label)]


def _is_label_file(url: str, label: str | None) -> bool:
    # _sendable's url__iexact (UPPER() = UPPER()) in Python: they agree on the ASCII of URLs.
    return label is not None and url.upper() == label.upper()


def _sendable() -> Q:
    """Photos (never the label) whose URL the rule accepts: the same operator (~) and pattern as the
    migration's SQL, of products not held back, and not holding the label's own file. Applied before any
    limit, so a refused URL takes no photo's place."""
    held = ProductJsonState.objects.filter(refused__isnull=False).values("product_id")
    # A JSON may list the label's URL among the photos too ([A, B, A] migrates to photos A, B and label A), and a
    # URL differing only in letter case may well name the same file (hosts, and many stores, ignore case): such
    # a photo would send the price tag. Still one query: an anti-join reaching the product's label through
    # the one-label-per-product index.
    label_file = ProductImage.objects.filter(
        product_id=OuterRef("product_id"), is_label=True, url__iexact=OuterRef("url")
    )
    return Q(is_label=False, url__regex=url_patterns().accepted) & ~Q(product_id__in=held) & ~Exists(label_file)


def held_back(product: Product | int) -> str | None:
    """Why the product is held back from marketplaces (its refused JSON's reason), or None."""
    return ProductJsonState.objects.filter(product_id=_id(product)).values_list("refused", flat=True).first()


def _id(product: object) -> int:
    if isinstance(product, Product):
        return product.pk
    if isinstance(product, int) and not isinstance(product, bool):
        return product
    raise TypeError(f"Expected a Product or its id, got {product!r}.")
