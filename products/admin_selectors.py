"""Read queries for the admin: list annotations (a fixed number of queries per page) and the
product page's comparison of the image rows with the legacy JSON."""

import json
from collections import Counter
from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, Exists, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from products.legacy_json import ARCHIVE_TABLE, has_json_column, product_json
from products.models import Product, ProductImage

FINALIZED_NOTE = (
    "Finalized: the JSON column products.images was dropped (finalize_images); the image rows are the only "
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
            problems.append(f"The legacy JSON lists {self.json_count} images, the table holds {self.table_count}.")
        if self.only_in_json:
            problems.append("In the JSON, not in the table: " + ", ".join(self.only_in_json))
        if self.only_in_table:
            problems.append("In the table, not in the JSON: " + ", ".join(self.only_in_table))
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
