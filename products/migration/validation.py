"""Read-only queries: the validation of a migrated tenant."""

from collections.abc import Sequence

from psycopg import sql

from products.migration.report import SAMPLE_SIZE, CheckResult, SpotCheck, SpotRow, Validation
from products.migration.source import DIFFERING_CTE, source_ctes
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
# Every product against the JSON it has today, set-based: the seed's count comparison,
# the labels per product, and the rows themselves (url, order, label).
JSON_VS_TABLE = """WITH {source},
excluded AS (
    -- Products listed as errors keep whatever rows they have.
    SELECT id FROM status WHERE error IS NOT NULL
    UNION
    SELECT unnest(%(excluded_ids)s::bigint[])
),
table_rows AS (
    SELECT product_id, url, "order", is_label FROM {product_images}
),
table_counts AS (
    SELECT product_id, COUNT(*) AS table_count, COUNT(*) FILTER (WHERE is_label) AS table_labels
    FROM table_rows
    GROUP BY product_id
),
compared AS (
    SELECT s.id,
           s.image_count AS json_count,
           s.yields_label,
           COALESCE(t.table_count, 0) AS table_count,
           COALESCE(t.table_labels, 0) AS table_labels,
           s.id IN (SELECT id FROM excluded) AS is_error
    FROM status AS s
    LEFT JOIN table_counts AS t ON s.id = t.product_id
),
{differing}
SELECT COUNT(*) FILTER (WHERE NOT is_error AND json_count != table_count) AS count_mismatches,
       (array_agg(id ORDER BY id) FILTER (WHERE NOT is_error AND json_count != table_count))[1:%(sample)s],
       COALESCE(SUM(CASE WHEN is_error THEN table_count ELSE json_count END), 0)::bigint AS expected_images,
       COALESCE(SUM(CASE WHEN is_error THEN table_labels ELSE yields_label::int END), 0)::bigint AS expected_labels,
       COUNT(*) FILTER (WHERE NOT is_error AND table_labels != yields_label::int) AS label_mismatches,
       (array_agg(id ORDER BY id) FILTER (WHERE NOT is_error AND table_labels != yields_label::int))[1:%(sample)s],
       (SELECT COUNT(*) FROM differing WHERE product_id NOT IN (SELECT id FROM excluded)) AS differing_products,
       (SELECT (array_agg(product_id ORDER BY product_id))[1:%(sample)s] FROM differing
        WHERE product_id NOT IN (SELECT id FROM excluded))
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
# Check 7, for finalized tenants: a label on a product's only image (check 2 saw to it while there was JSON).
SINGLE_IMAGE_LABELS = """SELECT COUNT(*) FROM (
    SELECT product_id
    FROM {product_images}
    GROUP BY product_id
    HAVING COUNT(*) = 1 AND bool_or(is_label)
) AS single_image_labels;"""
DISTRIBUTION = """SELECT image_count, COUNT(*) FROM (
    SELECT product_id, COUNT(*) AS image_count
    FROM {product_images}
    GROUP BY product_id
) AS per_product
GROUP BY image_count
ORDER BY image_count;"""
# The first products at fault, asked for only when a check on the table alone fails.
DUPLICATE_IDS = """SELECT DISTINCT product_id FROM (
    SELECT product_id FROM {product_images} GROUP BY product_id, "order" HAVING COUNT(*) > 1
) AS duplicates ORDER BY product_id LIMIT %(sample)s"""
LABEL_NOT_HIGHEST_IDS = """SELECT l.product_id FROM {product_images} AS l
WHERE l.is_label AND l."order" != (SELECT MAX("order") FROM {product_images} WHERE product_id = l.product_id)
ORDER BY l.product_id LIMIT %(sample)s"""
MULTIPLE_LABEL_IDS = """SELECT product_id FROM {product_images} WHERE is_label
GROUP BY product_id HAVING COUNT(*) > 1 ORDER BY product_id LIMIT %(sample)s"""
SINGLE_IMAGE_LABEL_IDS = """SELECT product_id FROM {product_images}
GROUP BY product_id HAVING COUNT(*) = 1 AND bool_or(is_label) ORDER BY product_id LIMIT %(sample)s"""
SPOT_CHECK = """SELECT product_id, "order", is_label, url
FROM {product_images}
WHERE product_id = (SELECT MIN(product_id) FROM {product_images})
ORDER BY "order";"""


def validate_tenant(schema: str, excluded_ids: Sequence[int] = ()) -> Validation:
    """Run the checks on ``schema``; ``excluded_ids`` are products listed as errors."""
    queries = _Queries(schema, excluded_ids)
    total_sql, (total_images,) = queries.run(TOTAL_IMAGES)
    labels_sql, (labels,) = queries.run(LABEL_COUNT)
    json_sql, compared = queries.run(
        JSON_VS_TABLE, source=source_ctes(schema, sql.SQL("TRUE"), yielded=True), differing=sql.SQL(DIFFERING_CTE)
    )
    (count_mismatches, count_ids, expected_images, expected_labels) = compared[:4]
    (label_mismatches, label_ids, differing, differing_ids) = compared[4:]

    checks = [
        # Passes on the totals, as the seed's; names the products whose counts differ when it fails.
        CheckResult(1, "Total images (table = JSON)", total_images, expected_images, total_sql, 0, count_ids or []),
        CheckResult(
            2,
            "Label count (= labels the JSON yields, per product)",
            labels,
            expected_labels,
            labels_sql,
            label_mismatches,
            label_ids or [],
        ),
        queries.table_check(3, "Duplicate (product_id, order)", DUPLICATES, DUPLICATE_IDS),
        CheckResult(
            4,
            "Products whose rows differ from their JSON (url, order, label)",
            differing,
            0,
            json_sql,
            differing,
            differing_ids or [],
            # The seed's query 4, kept beside the stronger comparison.
            note=f"{count_mismatches:,} product(s) with another image count than their JSON (the seed's query 4)",
        ),
        queries.table_check(5, "Labels not on highest order", LABEL_ON_HIGHEST_ORDER, LABEL_NOT_HIGHEST_IDS),
        queries.table_check(6, "Products with several labels", MULTIPLE_LABELS, MULTIPLE_LABEL_IDS),
    ]
    return queries.validation(checks, labels)


def validate_finalized(schema: str) -> Validation:
    """The checks that still mean something once the tenant's JSON column is dropped (``finalize_images``).

    Checks 1, 2 and 4 compare the table with the JSON: gone, they no longer apply. Checks 3, 5 and 6 read the
    table alone and keep their numbers; check 7 stands in for the half of check 2 the table can still answer:
    a product with one image has no label."""
    queries = _Queries(schema)
    _, (labels,) = queries.run(LABEL_COUNT)
    checks = [
        queries.table_check(3, "Duplicate (product_id, order)", DUPLICATES, DUPLICATE_IDS),
        queries.table_check(5, "Labels not on highest order", LABEL_ON_HIGHEST_ORDER, LABEL_NOT_HIGHEST_IDS),
        queries.table_check(6, "Products with several labels", MULTIPLE_LABELS, MULTIPLE_LABEL_IDS),
        queries.table_check(7, "Labels on one-image products", SINGLE_IMAGE_LABELS, SINGLE_IMAGE_LABEL_IDS),
    ]
    return queries.validation(checks, labels)


class _Queries:
    """One tenant's validation queries, run with the same parameters."""

    def __init__(self, schema: str, excluded_ids: Sequence[int] = ()):
        self.schema = schema
        self.product_images = table(schema, "product_images")
        self.params = {"excluded_ids": list(excluded_ids), "sample": SAMPLE_SIZE}

    def run(self, template: str, **extra) -> tuple[str, tuple]:
        # The report shows the query exactly as run, values filled in, so it can be pasted into psql.
        query = bind(sql.SQL(template).format(product_images=self.product_images, **extra), self.params)
        return query, fetch_rows(sql.SQL(query))[0]

    def first_ids(self, template: str) -> list[int]:
        query = sql.SQL(template).format(product_images=self.product_images)
        return [product_id for (product_id,) in fetch_rows(query, self.params)]

    def table_check(self, number: int, name: str, template: str, ids_template: str) -> CheckResult:
        """A check on the table alone: a count of products at fault, 0 expected; the first ids when it fails."""
        query, (figure,) = self.run(template)
        return CheckResult(number, name, figure, 0, query, figure, self.first_ids(ids_template) if figure else [])

    def validation(self, checks: list[CheckResult], labels: int) -> Validation:
        distribution = fetch_rows(sql.SQL(DISTRIBUTION).format(product_images=self.product_images))
        return Validation(
            checks=checks,
            distribution=distribution,
            products_with_several_images=sum(products for count, products in distribution if count >= 2),
            labels=labels,
            spot_check=spot_check(self.schema),
        )


def spot_check(schema: str) -> SpotCheck | None:
    """The rows of the tenant's first migrated product, as the seed report shows them."""
    rows = fetch_rows(sql.SQL(SPOT_CHECK).format(product_images=table(schema, "product_images")))
    if not rows:
        return None
    return SpotCheck(product_id=rows[0][0], rows=[SpotRow(order, is_label, url) for _, order, is_label, url in rows])
