"""The legacy ``products.images`` JSON, read as image rows, in SQL.

One definition serves the migration (which inserts from it) and the validation
(which compares the table against it), so both read the source the same way.

``source_ctes`` yields these CTEs, for the products matching a filter:

- ``decoded``: one row per product; ``images`` is the JSON array, decoded when the
  value is a JSON string holding an array, NULL when the value is no array at all.
- ``checked``: one row per array entry (an entry stored as the JSON text of an
  object is read as that object): its url (trimmed), its source order (the position
  for plain string entries and for entries whose order is no number), its parsed
  ``created_at`` (years 1900 to 2100 only), and the ``problem`` that stops the
  product from being moved faithfully, if any.
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

from products.image_urls import (
    CONTROL_CHARACTER_PROBLEM,
    SCHEME_PROBLEM,
    URL_CONTROL_CHARACTER,
    URL_HTTP,
    URL_SITE_RELATIVE,
    URL_WHITESPACE_SQL,
)
from stoflow.raw_sql import table

# created_at strings we trust: ISO 8601 date and time, optional fraction and zone
# (none means UTC, the connection's time zone). A free-form value such as 'now'
# would parse in PostgreSQL, so the shape is checked first. The parsed value must
# also fall in 1900-2100 (UTC): '0001-01-01T00:30:00+01:00' parses as 1 BC and
# '9999-12-31T23:30:00-01:00' as year 10000, which Python (Django) cannot read.
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}(:?\d{2})?)?$"
EARLIEST_CREATED_AT = "1900-01-01 00:00:00+00"
LATEST_CREATED_AT = "2101-01-01 00:00:00+00"  # excluded: 2100-12-31T23:59:59Z is the last accepted
MAX_ORDER = 2_147_483_647  # product_images."order" is a PostgreSQL integer
# An order written as text that is a plain decimal number ("3", " 2 ", "4.0"); bounded, so the cast cannot overflow.
NUMERIC_TEXT_PATTERN = r"^[+-]?([0-9]{1,20}([.][0-9]{0,20})?|[.][0-9]{1,20})$"

REPAIR_ORDER_INVALID = "order missing, negative or not an integer: renumbered 0..n-1"
REPAIR_ORDER_DUPLICATE = "duplicate orders: renumbered 0..n-1"
REPAIR_ORDER_AS_NUMBER = 'order written as text or as a whole-number float ("3", 2.0): read as the number'
REPAIR_CREATED_AT = "created_at missing, unparseable or outside 1900-2100: product's created_at used"
REPAIR_SEVERAL_LABELS = "several entries marked is_label: the last of them kept as the label"
REPAIR_LABEL_MOVED = "is_label marked on a photo that is not the last: label moved last, renumbered 0..n-1"
REPAIR_SINGLE_IMAGE_LABEL = "the only image marked is_label: a one-image product has no label"
REPAIR_ENTRY_DECODED = "entry stored as the JSON text of an object: decoded"
REPAIR_URL_TRIMMED = "url with surrounding whitespace: trimmed"

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
entries AS {entries_materialized} (
    -- One row per array entry, each value read from the JSON once. ``checked`` refers to these columns many
    -- times and an inlined CTE recomputes them at each reference: with ``yielded`` (every column needed)
    -- materializing is twice as fast; without, inlining lets PostgreSQL skip what the query does not read.
    SELECT d.id AS product_id,
           e.position,
           jsonb_typeof(x.entry) AS entry_type,
           jsonb_typeof(e.entry) = 'string' AND jsonb_typeof(x.entry) = 'object' AS decoded_from_text,
           jsonb_typeof(CASE jsonb_typeof(x.entry) WHEN 'object' THEN x.entry -> 'url' ELSE x.entry END) AS url_type,
           CASE jsonb_typeof(x.entry)
               WHEN 'object' THEN x.entry ->> 'url'
               WHEN 'string' THEN x.entry #>> '{{}}'
           END AS url_text,
           -- An object entry's order: a JSON number, or a string holding a decimal number ("3"), read as it.
           CASE WHEN jsonb_typeof(x.entry) = 'object' THEN
               CASE jsonb_typeof(x.entry -> 'order')
                   WHEN 'number' THEN (x.entry -> 'order')::numeric
                   WHEN 'string' THEN
                       CASE WHEN btrim(x.entry ->> 'order') ~ {numeric_text}
                            THEN btrim(x.entry ->> 'order')::numeric
                       END
               END
           END AS order_value,
           COALESCE(jsonb_typeof(x.entry -> 'order') = 'string', false) AS order_is_text,
           CASE WHEN jsonb_typeof(x.entry -> 'created_at') = 'string'
                     AND (x.entry ->> 'created_at') ~ {timestamp_pattern} THEN
               CASE WHEN pg_input_is_valid(x.entry ->> 'created_at', 'timestamptz')
                    THEN (x.entry ->> 'created_at')::timestamptz
               END
           END AS parsed_created_at,
           -- Written by the image service's JSON mirror; NULL when the entry does not say.
           CASE WHEN jsonb_typeof(x.entry -> 'is_label') = 'boolean'
                THEN (x.entry -> 'is_label')::boolean
           END AS label_flag
    FROM decoded AS d
    CROSS JOIN LATERAL jsonb_array_elements(d.images) WITH ORDINALITY AS e(entry, position)
    -- An entry stored as a JSON string holding the JSON text of an object is read as that object
    -- (nested CASEs: the text is only cast once it is known to parse; other entries take the first branch).
    CROSS JOIN LATERAL (
        SELECT CASE WHEN jsonb_typeof(e.entry) <> 'string' OR left(ltrim(e.entry #>> '{{}}'), 1) <> '{{' THEN e.entry
                    WHEN NOT pg_input_is_valid(e.entry #>> '{{}}', 'jsonb') THEN e.entry
                    WHEN jsonb_typeof((e.entry #>> '{{}}')::jsonb) = 'object' THEN (e.entry #>> '{{}}')::jsonb
                    ELSE e.entry
               END AS entry
    ) AS x
),
checked AS (
    SELECT en.product_id,
           en.position,
           u.url,
           -- Plain string entries, and entries whose order is no number ("abc", true, missing), take their position.
           CASE WHEN en.entry_type = 'string' THEN en.position - 1
                ELSE COALESCE(en.order_value, en.position - 1)
           END AS source_order,
           en.label_flag,
           en.decoded_from_text,
           u.url <> en.url_text AND u.url <> '' AS url_trimmed,
           CASE
               WHEN en.entry_type NOT IN ('object', 'string')
                   THEN 'entry ' || en.position || ' is a JSON ' || en.entry_type || ', not an object or a string'
               WHEN en.url_type IS NULL THEN 'entry ' || en.position || ' has no url'
               WHEN en.url_type <> 'string'
                   THEN 'entry ' || en.position || ' url is a JSON ' || en.url_type || ', not a string'
               WHEN u.url = '' THEN 'entry ' || en.position || ' url is empty'
               WHEN u.url ~ {url_control_character}
                   THEN 'entry ' || en.position || ' url ' || {control_character_problem}
               WHEN NOT (u.url ~* {url_http} OR u.url ~ {url_site_relative})
                   THEN 'entry ' || en.position || ' url ' || {scheme_problem}
           END AS problem,
           o.order_is_valid,
           o.order_is_valid AND en.entry_type = 'object'
               AND (en.order_is_text OR scale(en.order_value) > 0) AS order_read_as_number,
           CASE WHEN en.parsed_created_at >= '{earliest_created_at}' AND en.parsed_created_at < '{latest_created_at}'
                THEN en.parsed_created_at
           END AS created_at
    FROM entries AS en
    CROSS JOIN LATERAL (
        SELECT CASE WHEN en.url_type = 'string' THEN btrim(en.url_text, {url_whitespace}) END AS url
    ) AS u
    CROSS JOIN LATERAL (
        SELECT en.entry_type = 'string'
               OR COALESCE(en.order_value >= 0 AND en.order_value <= {max_order}
                           AND en.order_value = trunc(en.order_value), false) AS order_is_valid
    ) AS o
),
product_entries AS (
    SELECT c.product_id,
           count(*) AS image_count,
           (array_agg(c.problem ORDER BY c.position) FILTER (WHERE c.problem IS NOT NULL))[1] AS problem,
           bool_and(c.order_is_valid) AS orders_are_valid,
           count(DISTINCT c.source_order) = count(*) AS orders_are_distinct,
           bool_and(c.created_at IS NOT NULL) AS created_at_all_valid,
           bool_or(c.order_read_as_number) AS orders_read_as_numbers,
           bool_or(c.decoded_from_text) AS entries_decoded,
           bool_or(c.url_trimmed) AS urls_trimmed,
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
               CASE WHEN pe.image_count = 1 AND pe.marked_labels > 0 THEN {repair_single_image_label} END,
               CASE WHEN pe.orders_read_as_numbers THEN {repair_order_as_number} END,
               CASE WHEN pe.entries_decoded THEN {repair_entry_decoded} END,
               CASE WHEN pe.urls_trimmed THEN {repair_url_trimmed} END
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
        entries_materialized=sql.SQL("MATERIALIZED" if yielded else "NOT MATERIALIZED"),
        product_filter=product_filter,
        max_order=sql.Literal(MAX_ORDER),
        timestamp_pattern=sql.Literal(TIMESTAMP_PATTERN),
        earliest_created_at=sql.SQL(EARLIEST_CREATED_AT),
        latest_created_at=sql.SQL(LATEST_CREATED_AT),
        numeric_text=sql.Literal(NUMERIC_TEXT_PATTERN),
        url_whitespace=URL_WHITESPACE_SQL,
        url_control_character=sql.Literal(URL_CONTROL_CHARACTER),
        control_character_problem=sql.Literal(CONTROL_CHARACTER_PROBLEM),
        scheme_problem=sql.Literal(SCHEME_PROBLEM),
        url_http=sql.Literal(URL_HTTP),
        url_site_relative=sql.Literal(URL_SITE_RELATIVE),
        repair_order_invalid=sql.Literal(REPAIR_ORDER_INVALID),
        repair_order_duplicate=sql.Literal(REPAIR_ORDER_DUPLICATE),
        repair_created_at=sql.Literal(REPAIR_CREATED_AT),
        repair_several_labels=sql.Literal(REPAIR_SEVERAL_LABELS),
        repair_label_moved=sql.Literal(REPAIR_LABEL_MOVED),
        repair_single_image_label=sql.Literal(REPAIR_SINGLE_IMAGE_LABEL),
        repair_order_as_number=sql.Literal(REPAIR_ORDER_AS_NUMBER),
        repair_entry_decoded=sql.Literal(REPAIR_ENTRY_DECODED),
        repair_url_trimmed=sql.Literal(REPAIR_URL_TRIMMED),
    )


def id_range(column: str, after: int | None, upto: int | None) -> sql.Composable:
    """``column`` in (after, upto], taking the values from the parameters ``after`` and ``upto``.

    None leaves that bound out, so the walk over a tenant covers every id, bigint minimum and maximum
    included (no sentinel such as 0 to start from); both None is every row.
    """
    bounds = []
    if after is not None:
        bounds.append(sql.SQL("{} > %(after)s").format(sql.SQL(column)))
    if upto is not None:
        bounds.append(sql.SQL("{} <= %(upto)s").format(sql.SQL(column)))
    return sql.SQL(" AND ").join(bounds) if bounds else sql.SQL("TRUE")


def images_in_range(schema: str, after: int | None, upto: int | None) -> sql.Composable:
    """The tenant's product_images, or only the rows of products with ids in (after, upto], to put where a
    query names the table (a subquery without an alias: PostgreSQL 16)."""
    if after is None and upto is None:
        return table(schema, "product_images")
    return sql.SQL("(SELECT * FROM {} WHERE {})").format(
        table(schema, "product_images"), id_range("product_id", after, upto)
    )
