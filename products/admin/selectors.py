"""Read queries for the admin: list annotations (a fixed number of queries per page), the product
page's images with their positions, and its comparison of the image rows with the legacy JSON."""

import json
from collections import Counter
from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, Exists, OuterRef, QuerySet, Subquery, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from psycopg import sql

from products.legacy_json import ARCHIVE_TABLE, JSON_HOLDS_PHOTOS, has_json_column, product_json
from products.models import Product, ProductImage
from stoflow.raw_sql import as_text, table

FINALIZED_NOTE = (
    "The original list was retired once every photo was imported (finalize_images): the photo rows are the only "
    f"source. Its last value is kept in {ARCHIVE_TABLE}."
)


def products_with_image_summary(products: QuerySet[Product]) -> QuerySet[Product]:
    """Each product with ``image_count`` (its rows), ``label_url``, ``has_rows`` and ``has_label``.

    Correlated subqueries rather than a join and GROUP BY: they run for the listed page only."""
    images = ProductImage.objects.filter(product=OuterRef("pk")).order_by()
    labels = images.filter(is_label=True)
    return products.annotate(
        image_count=Coalesce(Subquery(images.values("product").annotate(count=Count("*")).values("count")), 0),
        label_url=Subquery(labels.values("url")[:1]),
        has_rows=Exists(images),
        has_label=Exists(labels),
    )


def images_with_position(images: QuerySet[ProductImage]) -> QuerySet[ProductImage]:
    """Each image with ``position``: 1 + the photos before it in its product, whatever the list's filter
    (a correlated count on the (product, order) index, for the listed page only). A photo's position is
    where a listing shows it; the label, last, gets the number of photos + 1."""
    earlier = (
        ProductImage.objects.filter(product=OuterRef("product_id"), order__lt=OuterRef("order"), is_label=False)
        .order_by()
        .values("product")
        .annotate(count=Count("*"))
        .values("count")
    )
    return images.annotate(position=Coalesce(Subquery(earlier), 0) + Value(1))


def image_title(product_id: int, position: int, is_label: bool) -> str:
    """How the admin names an image: "Product 2, photo 3", or "Product 2, price label"."""
    return f"Product {product_id}, {position_name(position, is_label)}"


def position_name(position: int, is_label: bool) -> str:
    return "price label" if is_label else f"photo {position}"


@dataclass(frozen=True)
class ImageRow:
    """One image on the product page, with what its buttons may do."""

    image: ProductImage
    position: int  # 1-based among the photos; the label's is the number of images
    photos: int  # the product's photos, label excluded

    @property
    def title(self) -> str:
        return image_title(self.image.product_id, self.position, self.image.is_label)

    @property
    def name(self) -> str:
        return position_name(self.position, self.image.is_label).capitalize()

    @property
    def can_move_up(self) -> bool:
        return not self.image.is_label and self.position > 1

    @property
    def can_move_down(self) -> bool:
        return not self.image.is_label and self.position < self.photos


def product_image_rows(product: Product) -> list[ImageRow]:
    """The product's images in display order (photos, then the label), one query."""
    images = list(ProductImage.objects.filter(product=product).order_by("order"))
    photos = [image for image in images if not image.is_label]
    rows = [ImageRow(image, position, len(photos)) for position, image in enumerate(photos, start=1)]
    return rows + [ImageRow(image, len(images), len(photos)) for image in images if image.is_label]


@dataclass(frozen=True)
class LegacyComparison:
    """The product's image rows against its legacy JSON, for the product page."""

    json_text: str
    json_count: int
    table_count: int
    only_in_json: list[str]
    only_in_table: list[str]
    finalized: bool = False  # the tenant's JSON column is gone: nothing to compare with

    @property
    def finalized_note(self) -> str:
        return FINALIZED_NOTE if self.finalized else ""

    @property
    def problems(self) -> list[str]:
        problems = []
        if self.json_count != self.table_count:
            problems.append(f"The original list has {self.json_count:,} photos, the photo rows {self.table_count:,}.")
        if self.only_in_json:
            problems.append("Only in the original list: " + ", ".join(self.only_in_json))
        if self.only_in_table:
            problems.append("Only in the photo rows: " + ", ".join(self.only_in_table))
        return problems


def compare_with_legacy_json(product: Product) -> LegacyComparison:
    """Compare counts and URLs (as multisets: the migration may renumber orders, never URLs).

    The JSON is read with raw SQL (it is no ORM field), in the seller's schema the request runs in; a
    finalized seller has no JSON column left and gets the ``finalized`` comparison."""
    table_urls = list(product.product_images.values_list("url", flat=True))
    schema = connection.schema_name
    if not has_json_column(schema):
        return LegacyComparison("", 0, len(table_urls), [], [], finalized=True)
    images = product_json(schema, product.pk)
    entries = legacy_entries(images)
    json_urls = [url for url in map(_entry_url, entries) if url is not None]
    json_only = Counter(json_urls) - Counter(table_urls)
    table_only = Counter(table_urls) - Counter(json_urls)
    return LegacyComparison(
        json_text=json.dumps(images, indent=2, ensure_ascii=False),
        json_count=len(entries),
        table_count=len(table_urls),
        only_in_json=sorted(json_only.elements()),
        only_in_table=sorted(table_only.elements()),
    )


def legacy_entries(images) -> list:
    """The JSON's entries: the array itself, or the array a JSON string holds (legacy rows have both)."""
    if isinstance(images, str):
        try:
            images = json.loads(images)
        except ValueError:
            return []
    return images if isinstance(images, list) else []


def _entry_url(entry) -> str | None:
    url = entry.get("url") if isinstance(entry, dict) else entry
    return url if isinstance(url, str) else None


def products_holding_json_photos() -> RawSQL | list:
    """The ids of this seller's products whose legacy JSON holds photos, as a subquery; none once finalized."""
    schema = connection.schema_name
    if not has_json_column(schema):
        return []
    query = sql.SQL("SELECT p.id FROM {} AS p WHERE {}").format(table(schema, "products"), sql.SQL(JSON_HOLDS_PHOTOS))
    return RawSQL(as_text(query), ())
