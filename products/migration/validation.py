"""Read-only queries: the validation of a migrated tenant, whole or one range of product ids at a time.

Every check is a sum over products or a property of each product, so a tenant's figures are the sum of
its ranges' (``RangeFigures.add``): the dry run measures each batch inside its rehearsal, before rolling it
back, and adds them up to the figures a live run's validation of the whole tenant gives.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import connection, transaction
from psycopg import sql

from products.migration.report import SAMPLE_SIZE, SPOT_CHECK_ROWS, CheckResult, SpotCheck, SpotRow, Validation
from products.migration.source import (
    DIFFERING_CTE,
    id_range,
    images_in_range,
    json_digest,
    rows_digest,
    source_ctes,
    table_arrays,
)
from stoflow.raw_sql import bind, execute, fetch_result_sets, fetch_rows, table

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
# A product whose JSON and rows are those product_json_state recorded (``recorded``: the same JSON digest, and the
# rows' digest with the rule's version what the JSON yielded, source.ROWS_DIGEST) has the rows its JSON yields:
# its counts come from the table and its JSON is not decoded again. Every other product (never recorded, refused,
# listed as an error, its JSON or its rows changed since, the rule changed) is decoded and compared as before.
JSON_VS_TABLE = """WITH checked AS MATERIALIZED (
    -- Every product with rows: its counts, and whether what product_json_state recorded vouches for them.
    SELECT t.product_id, t.table_count, t.table_labels,
           COALESCE(s.same_json AND s.rows_digest = {rows_digest}, false) AS is_recorded
    FROM (
        SELECT pi.product_id, count(*) AS table_count, count(*) FILTER (WHERE pi.is_label) AS table_labels,
               {table_arrays}
        FROM {product_images} AS pi
        GROUP BY pi.product_id
    ) AS t
    LEFT JOIN (
        -- Whether the JSON is still the one recorded is a column, not a join condition: as a condition between the
        -- two tables the planner guessed that one row in all would pass, joined the products with rows to this
        -- one row by a nested loop, and on the 30x tenant compared every product with every other one (the
        -- validation ran past ten minutes).
        SELECT st.product_id, st.json_digest, st.rows_digest, st.json_digest = {json_digest} AS same_json
        FROM {json_state} AS st
        JOIN {products} AS p ON p.id = st.product_id
        WHERE st.refused IS NULL
          AND st.product_id <> ALL(%(excluded_ids)s::bigint[]) AND {state_range} AND {products_range}
        OFFSET 0  -- joined whole, by a hash: looked up product by product, the JSON cost twice the time
    ) AS s ON s.product_id = t.product_id
),
recorded AS (
    SELECT product_id AS id, table_count, table_labels FROM checked WHERE is_recorded
),
{source},
excluded AS (
    -- Products listed as errors keep whatever rows they have, as do products held back with the JSON they have
    -- now because a key points at photos it drops (preflight.REFERENCES; the rule's own refusals are errors).
    SELECT id FROM status WHERE error IS NOT NULL
    UNION
    SELECT st.product_id FROM {json_state} AS st
    JOIN {products} AS p ON p.id = st.product_id
    WHERE st.refused IS NOT NULL AND st.json_digest = {json_digest} AND {state_range} AND {products_range}
    UNION
    SELECT unnest(%(excluded_ids)s::bigint[])
),
table_rows AS (
    SELECT product_id, url, "order", is_label FROM {product_images}
    WHERE product_id IN (SELECT product_id FROM checked WHERE NOT is_recorded)
),
{differing},
compared AS (
    SELECT s.id,
           s.image_count AS json_count,
           s.yields_label,
           COALESCE(t.table_count, 0) AS table_count,
           COALESCE(t.table_labels, 0) AS table_labels,
           s.id IN (SELECT id FROM excluded) AS is_error
    FROM status AS s
    LEFT JOIN table_products AS t ON s.id = t.product_id
)
SELECT COUNT(*) FILTER (WHERE NOT is_error AND json_count != table_count) AS count_mismatches,
       (array_agg(id ORDER BY id) FILTER (WHERE NOT is_error AND json_count != table_count))[1:%(sample)s],
       COALESCE(SUM(CASE WHEN is_error THEN table_count ELSE json_count END), 0)::bigint
           + (SELECT COALESCE(SUM(table_count), 0) FROM recorded)::bigint AS expected_images,
       COALESCE(SUM(CASE WHEN is_error THEN table_labels ELSE yields_label::int END), 0)::bigint
           + (SELECT COALESCE(SUM(table_labels), 0) FROM recorded)::bigint AS expected_labels,
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
SPOT_CHECK = """WITH spot AS (
    SELECT product_id, "order", is_label, url,
           row_number() OVER (ORDER BY "order") AS position, count(*) OVER () AS total
    FROM {product_images}
    WHERE product_id = (SELECT MIN(product_id) FROM {product_images})
)
SELECT product_id, "order", is_label, url, total FROM spot
WHERE position <= %(head)s OR position > total - %(tail)s
ORDER BY "order";"""
# Rows whose product is gone (no JSON accounts for them): check 1 names their product ids.
ORPHAN_IDS = """SELECT DISTINCT pi.product_id FROM {product_images} AS pi
WHERE NOT EXISTS (SELECT 1 FROM {products} AS p WHERE p.id = pi.product_id)
ORDER BY pi.product_id LIMIT %(sample)s"""


# The checks group every image row by product (and check 3 by order): with the default 4 MB these hashes and sorts
# spilled to disk. On the 30x set (588,210 images), check 3 took 0.57-0.64 s instead of 1.40-1.66 s, check 4
# 3.5-5.0 s instead of 6.2-7.1 s (EXPLAIN ANALYZE, alternating, load average 3.5-4.5 on 2 cores). For the
# validation's own transaction only (SET LOCAL), one per range with --jobs.
VALIDATION_WORK_MEM = "32MB"


def _first(ids: list[int], more: list[int]) -> list[int]:
    return sorted(set(ids) | set(more))[:SAMPLE_SIZE]


@dataclass
class RangeFigures:
    """What the checks measure over products with ids in a range; ranges add up to the tenant's figures."""

    total_images: int = 0
    expected_images: int = 0
    labels: int = 0
    expected_labels: int = 0
    label_mismatches: int = 0
    duplicates: int = 0
    count_mismatches: int = 0
    differing: int = 0
    incorrect_labels: int = 0
    multiple_labels: int = 0
    # The first product ids at fault (SAMPLE_SIZE at most), per check.
    count_ids: list[int] = field(default_factory=list)
    orphan_ids: list[int] = field(default_factory=list)
    label_ids: list[int] = field(default_factory=list)
    duplicate_ids: list[int] = field(default_factory=list)
    differing_ids: list[int] = field(default_factory=list)
    incorrect_label_ids: list[int] = field(default_factory=list)
    multiple_label_ids: list[int] = field(default_factory=list)
    distribution: dict[int, int] = field(default_factory=dict)  # images per product -> products
    spot_check: SpotCheck | None = None  # the lowest product id with rows

    def add(self, other: RangeFigures) -> None:
        for name in (
            "total_images",
            "expected_images",
            "labels",
            "expected_labels",
            "label_mismatches",
            "duplicates",
            "count_mismatches",
            "differing",
            "incorrect_labels",
            "multiple_labels",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in (
            "count_ids",
            "orphan_ids",
            "label_ids",
            "duplicate_ids",
            "differing_ids",
            "incorrect_label_ids",
            "multiple_label_ids",
        ):
            setattr(self, name, _first(getattr(self, name), getattr(other, name)))
        for images, products in other.distribution.items():
            self.distribution[images] = self.distribution.get(images, 0) + products
        if other.spot_check and (not self.spot_check or other.spot_check.product_id < self.spot_check.product_id):
            self.spot_check = other.spot_check


class _Queries:
    """The check queries for products with ids in (after, upto] (None: unbounded), values bound in."""

    def __init__(self, schema: str, after: int | None, upto: int | None, excluded_ids: Sequence[int]):
        self.fields = {
            "product_images": images_in_range(schema, after, upto),
            "products": table(schema, "products"),
            "json_state": table(schema, "product_json_state"),
        }
        # The products ``recorded`` (JSON_VS_TABLE) vouches for are not read again.
        self.source = source_ctes(
            schema,
            sql.SQL("{} AND p.id NOT IN (SELECT id FROM recorded)").format(id_range("p.id", after, upto)),
            with_created_at=False,
        )
        self.params = {
            "excluded_ids": list(excluded_ids),
            "sample": SAMPLE_SIZE,
            "after": after,
            "upto": upto,
            "head": SPOT_CHECK_ROWS // 2,
            "tail": SPOT_CHECK_ROWS - SPOT_CHECK_ROWS // 2,
        }
        self._texts: dict[str, str] = {}

    def text(self, template: str) -> str:
        """The query exactly as run, values filled in, so the report's reader can paste it into psql."""
        if template not in self._texts:  # run, then shown in the report: bound once
            extra = self._comparison() if template is JSON_VS_TABLE else {}
            self._texts[template] = bind(sql.SQL(template).format(**self.fields, **extra), self.params)
        return self._texts[template]

    def _comparison(self) -> dict[str, sql.Composable]:
        """What JSON_VS_TABLE names besides the tables."""
        return {
            "source": self.source,
            "differing": sql.SQL(DIFFERING_CTE),
            "table_arrays": table_arrays("pi"),
            "state_range": id_range("st.product_id", self.params["after"], self.params["upto"]),
            # Both sides bounded: the JSON of products outside the range is never digested.
            "products_range": id_range("p.id", self.params["after"], self.params["upto"]),
            "json_digest": json_digest(sql.SQL("p.images")),
            "rows_digest": rows_digest(
                sql.SQL("s.json_digest"), sql.SQL("t.urls"), sql.SQL("t.orders"), sql.SQL("t.label_flags")
            ),
        }

    def rows(self, template: str) -> list[tuple]:
        return fetch_rows(sql.SQL(self.text(template)))

    def ids(self, template: str) -> list[int]:
        return [product_id for (product_id,) in self.rows(template)]

    def table_check(self, number: int, name: str, template: str, ids_template: str) -> CheckResult:
        """A check on the table alone: a count of products at fault, 0 expected; the first ids when it fails."""
        ((figure,),) = self.rows(template)
        return CheckResult(
            number, name, figure, 0, self.text(template), figure, self.ids(ids_template) if figure else []
        )


def measure_range(
    schema: str, after: int | None, upto: int | None, excluded_ids: Sequence[int] = (), *, spot_check: bool = True
) -> RangeFigures:
    """The checks' figures over products with ids in (after, upto]; ``excluded_ids`` are products listed as
    errors. Read-only: run inside a dry run's rehearsal, it sees the batch's rows before they are rolled back."""
    return _measure(_Queries(schema, after, upto, excluded_ids), spot_check=spot_check)


@contextmanager
def one_snapshot() -> Iterator[None]:
    """Every statement inside sees the same committed state (REPEATABLE READ, READ ONLY): the checks compare
    the JSON with the rows, and with the follower on a writer changes both in one commit, which one check
    must not see half of (counted before it in one statement, after it in the next). Inside a caller's
    transaction (a dry run's rehearsal), the caller's."""
    if connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        execute(sql.SQL("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
        execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(VALIDATION_WORK_MEM)))
        yield


def _measure(queries: _Queries, *, spot_check: bool = True) -> RangeFigures:
    with one_snapshot():
        return _measure_in_one_snapshot(queries, spot_check=spot_check)


def _measure_in_one_snapshot(queries: _Queries, *, spot_check: bool) -> RangeFigures:
    figures = RangeFigures()
    # The checks in one round trip: a small tenant's validation was eight, most of its time spent between them.
    templates = [DISTRIBUTION, TOTAL_IMAGES, LABEL_COUNT, DUPLICATES, JSON_VS_TABLE, LABEL_ON_HIGHEST_ORDER]
    templates += [MULTIPLE_LABELS] + ([SPOT_CHECK] if spot_check else [])
    distribution, totals, labels, duplicates, (compared,), incorrect, multiple, *spot = fetch_result_sets(
        [queries.text(template) for template in templates]
    )
    figures.distribution = dict(distribution)
    ((figures.total_images,),), ((figures.labels,),), ((figures.duplicates,),) = totals, labels, duplicates
    (figures.count_mismatches, count_ids, figures.expected_images, figures.expected_labels) = compared[:4]
    (figures.label_mismatches, label_ids, figures.differing, differing_ids) = compared[4:]
    figures.count_ids, figures.label_ids, figures.differing_ids = count_ids or [], label_ids or [], differing_ids or []
    ((figures.incorrect_labels,),), ((figures.multiple_labels,),) = incorrect, multiple
    # The first products at fault, asked for only where a check on the table alone fails.
    if figures.total_images != figures.expected_images:
        figures.orphan_ids = queries.ids(ORPHAN_IDS)
    if figures.duplicates:
        figures.duplicate_ids = queries.ids(DUPLICATE_IDS)
    if figures.incorrect_labels:
        figures.incorrect_label_ids = queries.ids(LABEL_NOT_HIGHEST_IDS)
    if figures.multiple_labels:
        figures.multiple_label_ids = queries.ids(MULTIPLE_LABEL_IDS)
    if spot:
        figures.spot_check = _spot_check(spot[0])
    return figures


def validate_tenant(schema: str, excluded_ids: Sequence[int] = ()) -> Validation:
    """Run the checks on ``schema``; ``excluded_ids`` are products listed as errors."""
    queries = _Queries(schema, None, None, excluded_ids)
    return build_validation(schema, _measure(queries), excluded_ids, queries)


def build_validation(
    schema: str, figures: RangeFigures, excluded_ids: Sequence[int] = (), queries: _Queries | None = None
) -> Validation:
    """The six checks from a tenant's figures (measured whole, or added up range by range), each with the
    query that measures it over the whole tenant (``queries``, when the caller has them)."""
    queries = queries or _Queries(schema, None, None, excluded_ids)
    checks = [
        # Passes on the totals, as the seed's; names the products whose counts differ (or whose rows are
        # orphans) when it fails.
        CheckResult(
            1,
            "Total images (table = JSON)",
            figures.total_images,
            figures.expected_images,
            queries.text(TOTAL_IMAGES),
            0,
            _first(figures.count_ids, figures.orphan_ids),
        ),
        CheckResult(
            2,
            "Label count (= labels the JSON yields, per product)",
            figures.labels,
            figures.expected_labels,
            queries.text(LABEL_COUNT),
            figures.label_mismatches,
            figures.label_ids,
        ),
        CheckResult(
            3,
            "Duplicate (product_id, order)",
            figures.duplicates,
            0,
            queries.text(DUPLICATES),
            figures.duplicates,
            figures.duplicate_ids,
        ),
        CheckResult(
            4,
            "Products whose rows differ from their JSON (url, order, label)",
            figures.differing,
            0,
            queries.text(JSON_VS_TABLE),
            figures.differing,
            figures.differing_ids,
            # The seed's query 4, kept beside the stronger comparison.
            note=f"{figures.count_mismatches:,} product(s) with another image count than their JSON "
            "(the seed's query 4)",
        ),
        CheckResult(
            5,
            "Labels not on highest order",
            figures.incorrect_labels,
            0,
            queries.text(LABEL_ON_HIGHEST_ORDER),
            figures.incorrect_labels,
            figures.incorrect_label_ids,
        ),
        CheckResult(
            6,
            "Products with several labels",
            figures.multiple_labels,
            0,
            queries.text(MULTIPLE_LABELS),
            figures.multiple_labels,
            figures.multiple_label_ids,
        ),
    ]
    distribution = sorted(figures.distribution.items())
    return Validation(
        checks=checks,
        distribution=distribution,
        products_with_several_images=sum(products for count, products in distribution if count >= 2),
        labels=figures.labels,
        spot_check=figures.spot_check,
    )


def validate_finalized(schema: str) -> Validation:
    """The checks that still mean something once the tenant's JSON column is dropped (``finalize_images``).

    Checks 1, 2 and 4 compare the table with the JSON: gone, they no longer apply. Checks 3, 5 and 6 read the
    table alone and keep their numbers; check 7 stands in for the half of check 2 the table can still answer:
    a product with one image has no label."""
    queries = _Queries(schema, None, None, ())
    ((labels,),) = queries.rows(LABEL_COUNT)
    checks = [
        queries.table_check(3, "Duplicate (product_id, order)", DUPLICATES, DUPLICATE_IDS),
        queries.table_check(5, "Labels not on highest order", LABEL_ON_HIGHEST_ORDER, LABEL_NOT_HIGHEST_IDS),
        queries.table_check(6, "Products with several labels", MULTIPLE_LABELS, MULTIPLE_LABEL_IDS),
        queries.table_check(7, "Labels on one-image products", SINGLE_IMAGE_LABELS, SINGLE_IMAGE_LABEL_IDS),
    ]
    distribution = sorted(queries.rows(DISTRIBUTION))
    return Validation(
        checks=checks,
        distribution=distribution,
        products_with_several_images=sum(products for count, products in distribution if count >= 2),
        labels=labels,
        spot_check=_spot_check(queries.rows(SPOT_CHECK)),
    )


def spot_check(schema: str) -> SpotCheck | None:
    """The rows of the tenant's first migrated product, as the seed report shows them (20 at most)."""
    return _spot_check(_Queries(schema, None, None, ()).rows(SPOT_CHECK))


def _spot_check(rows: list[tuple]) -> SpotCheck | None:
    if not rows:
        return None
    return SpotCheck(
        product_id=rows[0][0],
        rows=[SpotRow(order, is_label, url) for _, order, is_label, url, _ in rows],
        total_rows=rows[0][4],
    )
