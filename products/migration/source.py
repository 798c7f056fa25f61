"""The legacy ``products.images`` JSON, read as image rows, in SQL.

One definition serves the migration (which inserts from it) and the validation
(which compares the table against it), so both read the source the same way.

``source_ctes`` yields these CTEs, for the products matching a filter:

- ``decoded``: one row per product; ``images`` is the JSON array, decoded when the
  value is a JSON string holding an array, NULL when the value is no array at all.
- ``checked``: one row per array entry: its url, its source order (the position
  for plain string entries), its parsed ``created_at``, and the ``problem`` that
  stops the product from being moved faithfully, if any.
- ``status``: one row per product: ``image_count`` (entries in the JSON), the
  ``error`` that keeps it from being migrated, the ``repairs`` applied,
  whether its source orders are kept (``keeps_orders``), and its label: the
  array ``label_position`` of the entry that becomes the label (NULL: none),
  ``yields_label``.
- ``yielded`` (on request): the image rows the JSON yields, one per entry of every product
  without an error: ``product_id``, ``url``, ``order``, ``is_label``,
  ``created_at``. The migration inserts them; the validation compares the
  table with them.

The label: a product with one image has none. Entries that carry ``is_label``
(the image service's JSON mirror writes it) decide: exactly one true is the
label (moved last if it is not), all false is no label, several true keep the
last of them. Entries without the key follow the seed's rule: the last image by
(order, position) of a product with two or more.
"""

from psycopg import sql

from stoflow.raw_sql import table

# created_at strings we trust: ISO 8601 date and time, optional fraction and zone
# (none means UTC, the connection's time zone). A free-form value such as 'now'
# would parse in PostgreSQL, so the shape is checked first.
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}(:?\d{2})?)?$"
MAX_ORDER = 2_147_483_647  # product_images."order" is a PostgreSQL integer

REPAIR_ORDER_INVALID = "order missing, negative or not an integer: renumbered 0..n-1"
REPAIR_ORDER_DUPLICATE = "duplicate orders: renumbered 0..n-1"
REPAIR_CREATED_AT = "created_at missing or unparseable: product's created_at used"
REPAIR_SEVERAL_LABELS = "several entries marked is_label: the last of them kept as the label"
REPAIR_LABEL_MOVED = "is_label marked on a photo that is not the last: label moved last, renumbered 0..n-1"
REPAIR_SINGLE_IMAGE_LABEL = "the only image marked is_label: a one-image product has no label"

# decoded is read twice; NOT MATERIALIZED keeps PostgreSQL from spooling every
# product's JSON to a temporary store (and sorting it) where an index scan serves.
_SOURCE_CTES = """
decoded AS NOT MATERIALIZED (
    SELECT p.id,
           p.created_at AS product_created_at,
           p.deleted_at IS NOT NULL AS is_deleted,
           jsonb_typeof(p.images) AS value_type,
           CASE jsonb_typeof(p.images)
               WHEN 'array' THEN p.images
               WHEN 'string' THEN
                   CASE WHEN pg_input_is_valid(p.images #>> '{{}}', 'jsonb') THEN
                       CASE WHEN jsonb_typeof((p.images #>> '{{}}')::jsonb) = 'array'
                            THEN (p.images #>> '{{}}')::jsonb
                       END
                   END
           END AS images
    FROM {products} AS p
    WHERE {product_filter}
),
entries AS (
    SELECT d.id AS product_id,
           e.position,
           jsonb_typeof(e.entry) AS entry_type,
           CASE jsonb_typeof(e.entry)
               WHEN 'object' THEN e.entry -> 'url'
               WHEN 'string' THEN e.entry
           END AS url,
           CASE jsonb_typeof(e.entry)
               WHEN 'object' THEN
                   CASE WHEN jsonb_typeof(e.entry -> 'order') = 'number' THEN (e.entry -> 'order')::numeric END
               WHEN 'string' THEN e.position - 1
           END AS source_order,
           CASE WHEN jsonb_typeof(e.entry -> 'created_at') = 'string'
                THEN e.entry ->> 'created_at'
           END AS created_at_text,
           -- Written by the image service's JSON mirror; NULL when the entry does not say.
           CASE WHEN jsonb_typeof(e.entry -> 'is_label') = 'boolean'
                THEN (e.entry -> 'is_label')::boolean
           END AS label_flag
    FROM decoded AS d
    CROSS JOIN LATERAL jsonb_array_elements(d.images) WITH ORDINALITY AS e(entry, position)
),
checked AS (
    SELECT en.product_id,
           en.position,
           en.url #>> '{{}}' AS url,
           en.source_order,
           en.label_flag,
           CASE
               WHEN en.entry_type NOT IN ('object', 'string')
                   THEN 'entry ' || en.position || ' is a JSON ' || en.entry_type || ', not an object or a string'
               WHEN en.url IS NULL THEN 'entry ' || en.position || ' has no url'
               WHEN jsonb_typeof(en.url) <> 'string'
                   THEN 'entry ' || en.position || ' url is a JSON ' || jsonb_typeof(en.url) || ', not a string'
               WHEN btrim(en.url #>> '{{}}') = '' THEN 'entry ' || en.position || ' url is empty'
           END AS problem,
           en.source_order IS NOT NULL AND en.source_order >= 0 AND en.source_order <= {max_order}
               AND en.source_order = trunc(en.source_order) AS order_is_valid,
           CASE WHEN en.created_at_text ~ {timestamp_pattern}
                     AND pg_input_is_valid(en.created_at_text, 'timestamptz')
                THEN en.created_at_text::timestamptz
           END AS created_at
    FROM entries AS en
),
product_entries AS (
    SELECT c.product_id,
           count(*) AS image_count,
           (array_agg(c.problem ORDER BY c.position) FILTER (WHERE c.problem IS NOT NULL))[1] AS problem,
           bool_and(c.order_is_valid) AS orders_are_valid,
           count(DISTINCT c.source_order) = count(*) AS orders_are_distinct,
           bool_and(c.created_at IS NOT NULL) AS created_at_all_valid,
           bool_or(c.label_flag IS NOT NULL) AS says_which_is_label,
           count(*) FILTER (WHERE c.label_flag) AS marked_labels,
           -- The label by the seed's rule: the last entry by (order, position).
           (array_agg(c.position ORDER BY c.source_order DESC NULLS FIRST, c.position DESC))[1] AS last_position,
           -- The label the entries mark; of several, the last of them.
           (array_agg(c.position ORDER BY c.source_order DESC NULLS FIRST, c.position DESC)
                FILTER (WHERE c.label_flag))[1] AS marked_position
    FROM checked AS c
    GROUP BY c.product_id
),
labelled AS (
    SELECT pe.*,
           CASE WHEN pe.image_count < 2 THEN NULL
                WHEN pe.says_which_is_label THEN pe.marked_position
                ELSE pe.last_position
           END AS label_position
    FROM product_entries AS pe
),
status AS (
    SELECT d.id,
           d.is_deleted,
           d.product_created_at,
           COALESCE(pe.image_count, 0) AS image_count,
           CASE
               WHEN d.value_type IS NULL OR d.value_type = 'null' THEN NULL
               WHEN d.images IS NULL AND d.value_type = 'string'
                   THEN 'images is a JSON string that does not hold an array'
               WHEN d.images IS NULL THEN 'images is a JSON ' || d.value_type || ', not an array'
               ELSE pe.problem
           END AS error,
           array_remove(ARRAY[
               CASE WHEN NOT pe.orders_are_valid THEN {repair_order_invalid}
                    WHEN NOT pe.orders_are_distinct THEN {repair_order_duplicate}
               END,
               CASE WHEN NOT pe.created_at_all_valid THEN {repair_created_at} END,
               CASE WHEN pe.image_count >= 2 AND pe.marked_labels > 1 THEN {repair_several_labels} END,
               CASE WHEN pe.image_count >= 2 AND pe.label_position <> pe.last_position THEN {repair_label_moved} END,
               CASE WHEN pe.image_count = 1 AND pe.marked_labels > 0 THEN {repair_single_image_label} END
           ], NULL) AS repairs,
           -- Orders are kept when valid, distinct and the label (if any) is already the last.
           COALESCE(pe.orders_are_valid AND pe.orders_are_distinct
                    AND pe.label_position IS NOT DISTINCT FROM
                        CASE WHEN pe.label_position IS NOT NULL THEN pe.last_position END, false) AS keeps_orders,
           pe.label_position,
           pe.label_position IS NOT NULL AS yields_label
    FROM decoded AS d
    LEFT JOIN labelled AS pe ON pe.product_id = d.id

)"""


# Only added when asked for: a CTE referenced twice is materialized, and a
# reference from an unused CTE still counts (validation took twice as long).
_YIELDED_CTE = """,
yielded AS (
    SELECT c.product_id,
           c.url,
           CASE WHEN s.keeps_orders THEN c.source_order::integer
                -- Renumbered by (order, position), the label last.
                ELSE (row_number() OVER (PARTITION BY c.product_id
                                         ORDER BY c.position IS NOT DISTINCT FROM s.label_position,
                                                  c.source_order NULLS LAST, c.position) - 1)::integer
           END AS "order",
           c.position IS NOT DISTINCT FROM s.label_position AS is_label,
           COALESCE(c.created_at, s.product_created_at, now()) AS created_at
    FROM checked AS c
    JOIN status AS s ON s.id = c.product_id
    WHERE s.error IS NULL
)"""


# Products whose rows differ from what their JSON yields (url, order, label; a missing
# or extra row counts), over ``yielded`` and a ``table_rows`` CTE the query defines.
DIFFERING_CTE = """differing AS (
    SELECT DISTINCT product_id FROM (
        (SELECT product_id, url, "order", is_label FROM yielded
         EXCEPT ALL SELECT product_id, url, "order", is_label FROM table_rows)
        UNION ALL
        (SELECT product_id, url, "order", is_label FROM table_rows
         EXCEPT ALL SELECT product_id, url, "order", is_label FROM yielded)
    ) AS differences
)"""


def source_ctes(schema: str, product_filter: sql.Composable, *, yielded: bool = False) -> sql.Composed:
    """The CTEs described in the module docstring, without the leading WITH; ``yielded`` on request."""
    return sql.SQL(_SOURCE_CTES + (_YIELDED_CTE if yielded else "")).format(
        products=table(schema, "products"),
        product_filter=product_filter,
        max_order=sql.Literal(MAX_ORDER),
        timestamp_pattern=sql.Literal(TIMESTAMP_PATTERN),
        repair_order_invalid=sql.Literal(REPAIR_ORDER_INVALID),
        repair_order_duplicate=sql.Literal(REPAIR_ORDER_DUPLICATE),
        repair_created_at=sql.Literal(REPAIR_CREATED_AT),
        repair_several_labels=sql.Literal(REPAIR_SEVERAL_LABELS),
        repair_label_moved=sql.Literal(REPAIR_LABEL_MOVED),
        repair_single_image_label=sql.Literal(REPAIR_SINGLE_IMAGE_LABEL),
    )
