"""Read-only queries: the validation of a migrated tenant."""

from collections.abc import Sequence

from psycopg import sql

from products.migration.report import CheckResult, SpotCheck, SpotRow, Validation
from products.migration.source import source_ctes
from stoflow.raw_sql import bind, fetch_rows, table

# The seed report's six queries, schema-qualified. Queries 1-3, 5 and 6 are the
# seed's own; query 4 is widened to every product (soft-deleted ones included,
# whose images the seed's run lost) and reads the JSON as the migration does.
TOTAL_IMAGES = "SELECT COUNT(*) FROM {product_images};"
LABEL_COUNT = "SELECT COUNT(*) FROM {product_images} WHERE is_label = true;"
DUPLICATES = """SELECT COUNT(*) FROM (
    SELECT product_id, COUNT(*)
    FROM {product_images}
    GROUP BY product_id, "order"
    HAVING COUNT(*) > 1
) AS duplicates;"""
JSON_VS_TABLE = """WITH {source},
table_counts AS (
    SELECT product_id, COUNT(*) AS table_count, COUNT(*) FILTER (WHERE is_label) AS table_labels
    FROM {product_images}
    GROUP BY product_id
),
compared AS (
    SELECT s.image_count AS json_count,
           s.yields_label,
           COALESCE(t.table_count, 0) AS table_count,
           COALESCE(t.table_labels, 0) AS table_labels,
           s.error IS NOT NULL OR s.id = ANY(%(excluded_ids)s) AS is_error
    FROM status AS s
    LEFT JOIN table_counts AS t ON s.id = t.product_id
)
SELECT COUNT(*) FILTER (WHERE NOT is_error AND json_count != table_count) AS mismatches,
       -- Products listed as errors keep whatever rows they have.
       COALESCE(SUM(CASE WHEN is_error THEN table_count ELSE json_count END), 0)::bigint AS expected_images,
       COALESCE(SUM(CASE WHEN is_error THEN table_labels ELSE yields_label::int END), 0)::bigint AS expected_labels
FROM compared;"""
LABEL_ON_HIGHEST_ORDER = """WITH max_orders AS (
    SELECT product_id, MAX("order") as max_order
    FROM {product_images}
    GROUP BY product_id
),
labels AS (
    SELECT product_id, "order"
    FROM {product_images}
    WHERE is_label = true
)
SELECT COUNT(*) as incorrect_labels
FROM labels l
JOIN max_orders m ON l.product_id = m.product_id
WHERE l."order" != m.max_order;"""
MULTIPLE_LABELS = """SELECT COUNT(*) FROM (
    SELECT product_id, COUNT(*)
    FROM {product_images}
    WHERE is_label = true
    GROUP BY product_id
    HAVING COUNT(*) > 1
) AS multiple_labels;"""
DISTRIBUTION = """SELECT image_count, COUNT(*) FROM (
    SELECT product_id, COUNT(*) AS image_count
    FROM {product_images}
    GROUP BY product_id
) AS per_product
GROUP BY image_count
ORDER BY image_count;"""
SPOT_CHECK = """SELECT product_id, "order", is_label, url
FROM {product_images}
WHERE product_id = (SELECT MIN(product_id) FROM {product_images})
ORDER BY "order";"""


def validate_tenant(schema: str, excluded_ids: Sequence[int] = ()) -> Validation:
    """Run the six checks on ``schema``; ``excluded_ids`` are products listed as errors."""
    product_images = table(schema, "product_images")

    def run(template: str, **extra) -> tuple[str, tuple]:
        # The report shows the query exactly as run, values filled in, so it can be pasted into psql.
        query = bind(
            sql.SQL(template).format(product_images=product_images, **extra), {"excluded_ids": list(excluded_ids)}
        )
        return query, fetch_rows(sql.SQL(query))[0]

    distribution = fetch_rows(sql.SQL(DISTRIBUTION).format(product_images=product_images))
    several = sum(products for count, products in distribution if count >= 2)

    total_sql, (total_images,) = run(TOTAL_IMAGES)
    labels_sql, (labels,) = run(LABEL_COUNT)
    duplicates_sql, (duplicates,) = run(DUPLICATES)
    json_sql, (mismatches, expected_images, expected_labels) = run(
        JSON_VS_TABLE, source=source_ctes(schema, sql.SQL("TRUE"))
    )
    highest_sql, (incorrect_labels,) = run(LABEL_ON_HIGHEST_ORDER)
    multiple_sql, (multiple_labels,) = run(MULTIPLE_LABELS)

    checks = [
        CheckResult(1, "Total images (table = JSON)", total_images, expected_images, total_sql),
        CheckResult(2, "Label count (= labels the JSON yields)", labels, expected_labels, labels_sql),
        CheckResult(3, "Duplicate (product_id, order)", duplicates, 0, duplicates_sql),
        CheckResult(4, "JSON count vs table count mismatches", mismatches, 0, json_sql),
        CheckResult(5, "Labels not on highest order", incorrect_labels, 0, highest_sql),
        CheckResult(6, "Products with several labels", multiple_labels, 0, multiple_sql),
    ]
    return Validation(
        checks=checks,
        distribution=distribution,
        products_with_several_images=several,
        labels=labels,
        spot_check=spot_check(schema),
    )


def spot_check(schema: str) -> SpotCheck | None:
    """The rows of the tenant's first migrated product, as the seed report shows them."""
    rows = fetch_rows(sql.SQL(SPOT_CHECK).format(product_images=table(schema, "product_images")))
    if not rows:
        return None
    return SpotCheck(product_id=rows[0][0], rows=[SpotRow(order, is_label, url) for _, order, is_label, url in rows])
