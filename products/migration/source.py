"""The legacy ``products.images`` JSON, read as image rows, in SQL.

One definition serves the migration (which inserts from it) and the validation
(which compares the table against it), so both read the source the same way.

``source_ctes`` yields these CTEs, for the products matching a filter:

- ``decoded``: one row per product; ``images`` is the JSON array, decoded when the
  value is a JSON string holding an array, NULL when the value is no array at all
  (``too_nested``: its text holds too many brackets to be parsed safely, ``too_nested()``).
- ``status``: one row per product, its entries read in a LATERAL subquery (an entry
  stored as the JSON text of an object is read as that object; each entry's url
  trimmed, its source order: the position for plain string entries and for entries
  whose order is no number; its ``created_at``, in ``image_timestamps``' range only; the
  ``problem`` that stops the product from being moved faithfully, if any):
  ``image_count`` (entries in the JSON), the ``error`` that keeps it from being
  migrated, the ``repairs`` applied, whether its source orders are kept
  (``keeps_orders``), ``yields_label``, and the rows it yields as arrays, one slot
  per image in their final order: ``urls``, ``orders``, ``label_flags``,
  ``created_ats``.
- ``yielded`` (on request): those rows unnested, one per entry of every product
  without an error: ``product_id``, ``url``, ``order``, ``is_label``,
  ``created_at``, and ``entry_created_at`` (the entry's own, or NULL). The migration
  inserts them; ``reconcile`` compares them with the rows.

``DIFFERING_CTE`` compares each product's rows in the table with status's arrays:
the validation and ``--sync`` use it.

The label: a product with one image has none. Entries that carry ``is_label``
(the image service's JSON mirror writes it) decide: exactly one true is the
label (moved last if it is not), all false is no label. Entries without the key
follow the seed's rule: the last image by (order, position) of a product with two
or more.

Mixed conventions are an error, never a guess (docs/lifecycle.md, "Two writers"):
a product whose entries mix keyed and unkeyed ``is_label`` (old code appended a
photo to JSON the service wrote), or with an ``is_label`` that is not a JSON
boolean (``"true"``, 1, null), or with several entries marked true (old code
appended a copy of the marked last entry), yields no rows. Either convention, or
either mark, could name a different photo as the price label; the product keeps the rows it has and is
held back from marketplaces (``products.selectors``) until a person decides.
"""

import hashlib
import re
from functools import cache

from psycopg import sql

from products.image_timestamps import EARLIEST_CREATED_AT, FIRST_YEAR, LAST_YEAR, LATEST_CREATED_AT_EXCLUDED
from products.image_urls import REFUSED_CHARACTER_PROBLEM, SCHEME_PROBLEM, URL_WHITESPACE_SQL, url_patterns
from stoflow.raw_sql import table

# created_at strings we trust: ISO 8601 date and time, optional fraction and zone
# (none means UTC, the connection's time zone). A free-form value such as 'now'
# would parse in PostgreSQL, so the shape is checked first: YYYY-MM-DD, T or a space,
# hh:mm:ss, an optional fraction of 1 to 6 digits, an optional zone (Z, +hh, +hhmm,
# +hh:mm, or with -), each digit written 0 (the SQL compares the value with its digits
# turned to 0). The parsed value must also fall in the range the image service accepts
# (``image_timestamps``).
TIMESTAMP_SHAPES = frozenset(
    f"0000-00-00{separator}00:00:00{fraction}{zone}"
    for separator in ("T", " ")
    for fraction in ["", *("." + "0" * digits for digits in range(1, 7))]
    for zone in ("", "Z", *(sign + digits for sign in "+-" for digits in ("00", "0000", "00:00")))
)
MAX_ORDER = 2_147_483_647  # product_images."order" is a PostgreSQL integer
# An order written as text that is a plain decimal number ("3", " 2 ", "4.0"); bounded, so the cast cannot overflow.
NUMERIC_TEXT_PATTERN = r"^[+-]?([0-9]{1,20}([.][0-9]{0,20})?|[.][0-9]{1,20})$"

REPAIR_ORDER_INVALID = "order missing, negative or not an integer: renumbered 0..n-1"
REPAIR_ORDER_DUPLICATE = "duplicate orders: renumbered 0..n-1"
REPAIR_ORDER_AS_NUMBER = 'order written as text or as a whole-number float ("3", 2.0): read as the number'
REPAIR_CREATED_AT = f"created_at missing, unparseable or outside {FIRST_YEAR}-{LAST_YEAR}: product's created_at used"
REPAIR_LABEL_MOVED = "is_label marked on a photo that is not the last: label moved last, renumbered 0..n-1"
REPAIR_SINGLE_IMAGE_LABEL = "the only image marked is_label: a one-image product has no label"
REPAIR_ENTRY_DECODED = "entry stored as the JSON text of an object: decoded"
REPAIR_URL_TRIMMED = "url with surrounding whitespace: trimmed"

# Every entry's source order, position and values are aggregated per product in a LATERAL subquery, in one
# sort by (order, position): the arrays it yields are already in the rows' final order (the label moved
# last), so the rows come from unnest, the label from the array's last slot, and the comparison with the
# table (DIFFERING_CTE) is per product, arrays against arrays. Measured on 588,210 images: reading the JSON
# took 2.9 s as CTEs with windows and GROUP BY over the whole set, and EXCEPT ALL over every row 1.1 s more.
_SOURCE_CTES = """
decoded AS NOT MATERIALIZED (
    SELECT p.id,
           p.created_at AS product_created_at,
           p.deleted_at IS NOT NULL AS is_deleted,
           jsonb_typeof(p.images) AS value_type,
           jsonb_typeof(p.images) = 'string' AND {value_too_nested} AS too_nested,
           {decoded_value} AS images
    FROM {products} AS p
    WHERE {product_filter}
),
status AS (
    SELECT d.id,
           d.is_deleted,
           d.product_created_at,
           pe.image_count,
           CASE
               WHEN d.value_type IS NULL OR d.value_type = 'null' THEN NULL
               WHEN d.images IS NULL AND d.too_nested THEN 'images is a JSON string whose text ' || {too_nested_problem}
               WHEN d.images IS NULL AND d.value_type = 'string'
                   THEN 'images is a JSON string that does not hold an array'
               WHEN d.images IS NULL THEN 'images is a JSON ' || d.value_type || ', not an array'
               -- An entry's own problem first, then a product whose entries disagree on how they say which photo
               -- is the price label (LABEL_CONVENTIONS_MIXED).
               ELSE COALESCE(pe.problem,
                             CASE WHEN pe.keyed_entries > 0 AND pe.keyed_entries < pe.image_count
                                  THEN 'entries mix the two label conventions: ' || pe.keyed_entries || ' of '
                                       || pe.image_count || ' say is_label, entry ' || pe.first_unkeyed_position
                                       || ' does not, so either could be the price label'
                                  -- Keeping the last of them would send the others, each marked as the label.
                                  WHEN pe.image_count >= 2 AND pe.marked_labels > 1
                                  THEN pe.marked_labels || ' entries say is_label true, so any of them could be the '
                                       || 'price label'
                             END)
           END AS error,
           array_remove(ARRAY[
               CASE WHEN NOT pe.orders_are_valid THEN {repair_order_invalid}
                    WHEN NOT pe.orders_are_distinct THEN {repair_order_duplicate}
               END,
               {created_at_repair},
               CASE WHEN pe.image_count >= 2 AND l.label_index < pe.image_count THEN {repair_label_moved} END,
               CASE WHEN pe.image_count = 1 AND pe.marked_labels > 0 THEN {repair_single_image_label} END,
               CASE WHEN pe.orders_read_as_numbers THEN {repair_order_as_number} END,
               CASE WHEN pe.entries_decoded THEN {repair_entry_decoded} END,
               CASE WHEN pe.urls_trimmed THEN {repair_url_trimmed} END
           ], NULL) AS repairs,
           l.keeps_orders,
           l.label_index IS NOT NULL AS yields_label,
           -- The rows the JSON yields, one slot per image in their final order: by (order, position),
           -- the label moved last (a product with an error yields none, whatever these hold).
           CASE WHEN l.label_index < pe.image_count
                THEN pe.urls[:l.label_index - 1] || pe.urls[l.label_index + 1:] || pe.urls[l.label_index]
                ELSE pe.urls
           END AS urls,
           CASE WHEN l.keeps_orders THEN pe.source_orders::integer[]
                ELSE ARRAY(SELECT generate_series(0, pe.image_count - 1))
           END AS orders,
           CASE WHEN pe.image_count > 0
                THEN array_fill(false, ARRAY[pe.image_count - 1]) || (l.label_index IS NOT NULL)
                ELSE '{{}}'::boolean[]
           END AS label_flags,
           CASE WHEN l.label_index < pe.image_count
                THEN pe.created_ats[:l.label_index - 1] || pe.created_ats[l.label_index + 1:]
                     || pe.created_ats[l.label_index]
                ELSE pe.created_ats
           END AS created_ats
    FROM decoded AS d
    CROSS JOIN LATERAL (
        SELECT count(*)::integer AS image_count,
               -- The first problem by position, without a sort of its own (a second sort key per product cost
               -- more than all the arrays): the position, zero-padded, leads the text the minimum is taken of.
               substr(min(lpad(c.position::text, 20, '0') || c.problem COLLATE "C")
                      FILTER (WHERE c.problem IS NOT NULL), 21) AS problem,
               bool_and(c.order_is_valid) AS orders_are_valid,
               count(DISTINCT c.source_order) = count(*) AS orders_are_distinct,
               bool_and(c.created_at IS NOT NULL) AS created_at_all_valid,
               bool_or(c.order_read_as_number) AS orders_read_as_numbers,
               bool_or(c.decoded_from_text) AS entries_decoded,
               bool_or(c.url_trimmed) AS urls_trimmed,
               bool_or(c.label_flag IS NOT NULL) AS says_which_is_label,
               count(*) FILTER (WHERE c.label_key IS NOT NULL) AS keyed_entries,
               min(c.position) FILTER (WHERE c.label_key IS NULL) AS first_unkeyed_position,
               count(*) FILTER (WHERE c.label_flag) AS marked_labels,
               -- One sort key for every array, so PostgreSQL sorts the entries once.
               array_agg(c.position ORDER BY c.source_order, c.position) AS positions,
               array_agg(c.position ORDER BY c.source_order, c.position) FILTER (WHERE c.label_flag)
                   AS marked_positions,
               array_agg(c.url ORDER BY c.source_order, c.position) AS urls,
               array_agg(c.source_order ORDER BY c.source_order, c.position) AS source_orders,
               array_agg(c.created_at ORDER BY c.source_order, c.position) AS created_ats
        FROM (
            SELECT en.position,
                   en.url,
                   -- Plain string entries, and entries whose order is no number ("abc", true, missing),
                   -- take their position.
                   CASE WHEN en.entry_type = 'string' THEN en.position - 1
                        ELSE COALESCE(en.order_value, en.position - 1)
                   END AS source_order,
                   en.label_flag,
                   en.label_key,
                   en.decoded_from_text,
                   en.url <> en.url_text AND en.url <> '' AS url_trimmed,
                   CASE
                       WHEN en.entry_type NOT IN ('object', 'string')
                           THEN 'entry ' || en.position || ' is a JSON ' || en.entry_type
                                || ', not an object or a string'
                       WHEN en.url_type IS NULL THEN 'entry ' || en.position || ' has no url'
                       WHEN en.url_type <> 'string'
                           THEN 'entry ' || en.position || ' url is a JSON ' || en.url_type || ', not a string'
                       WHEN en.url = '' THEN 'entry ' || en.position || ' url is empty'
                       WHEN en.url !~ {url_accepted} THEN
                           -- A string left undecoded by DECODED_ENTRY's guard (no URL starts with "{{"): why.
                           CASE WHEN left(en.url, 1) = '{{' AND {url_too_nested}
                                    THEN 'entry ' || en.position || ' is JSON text that ' || {too_nested_problem}
                                WHEN en.url ~ {url_refused_character}
                                THEN 'entry ' || en.position || ' url ' || {refused_character_problem}
                                ELSE 'entry ' || en.position || ' url ' || {scheme_problem}
                           END
                   WHEN en.label_key <> 'boolean'
                       THEN 'entry ' || en.position || ' is_label is a JSON ' || en.label_key
                            || ', not true or false'
                   END AS problem,
                   en.order_is_valid,
                   en.order_is_valid AND en.entry_type = 'object'
                       AND (en.order_is_text OR scale(en.order_value) > 0) AS order_read_as_number,
                   CASE WHEN en.parsed_created_at >= {earliest_created_at}
                             AND en.parsed_created_at < {latest_created_at_excluded}
                        THEN en.parsed_created_at
                   END AS created_at
            FROM (
                -- Each value read from the JSON once: the columns are referenced many times above, and
                -- without the fence (OFFSET 0) PostgreSQL would recompute them at each reference.
                SELECT v.*,
                       CASE WHEN v.url_type = 'string' THEN btrim(v.url_text, {url_whitespace}) END AS url,
                       v.entry_type = 'string'
                           OR COALESCE(v.order_value >= 0 AND v.order_value <= {max_order}
                                       AND v.order_value = trunc(v.order_value), false) AS order_is_valid,
                       {parsed_created_at}
                FROM (
                    SELECT k.position,
                           k.entry_type,
                           jsonb_typeof(k.stored_entry) = 'string' AND k.entry_type = 'object' AS decoded_from_text,
                           jsonb_typeof(CASE k.entry_type WHEN 'object' THEN k.url_json ELSE k.entry END) AS url_type,
                           CASE k.entry_type
                               WHEN 'object' THEN k.url_json #>> '{{}}'
                               WHEN 'string' THEN k.entry #>> '{{}}'
                           END AS url_text,
                           -- An object entry's order: a JSON number, or a string holding a decimal number ("3").
                           CASE WHEN k.entry_type = 'object' THEN
                               CASE jsonb_typeof(k.order_json)
                                   WHEN 'number' THEN k.order_json::numeric
                                   WHEN 'string' THEN
                                       CASE WHEN btrim(k.order_json #>> '{{}}') ~ {numeric_text}
                                            THEN btrim(k.order_json #>> '{{}}')::numeric
                                       END
                               END
                           END AS order_value,
                           COALESCE(jsonb_typeof(k.order_json) = 'string', false) AS order_is_text,
                           CASE WHEN jsonb_typeof(k.created_at_json) = 'string'
                                THEN k.created_at_json #>> '{{}}'
                           END AS created_at_text,
                           -- Written by the image service's JSON mirror; NULL when the entry does not say.
                           CASE WHEN jsonb_typeof(k.label_json) = 'boolean' THEN k.label_json::boolean
                           END AS label_flag,
                           -- The key's JSON type, whatever its value ("true", 1, null): NULL when the key is absent.
                           jsonb_typeof(k.label_json) AS label_key
                    FROM (
                        -- Each key looked up once (a lookup searches the entry and copies the value out; the
                        -- columns above read them several times each): NULL where the entry is no object.
                        SELECT x.position,
                               x.stored_entry,
                               x.entry,
                               jsonb_typeof(x.entry) AS entry_type,
                               x.entry -> 'url' AS url_json,
                               x.entry -> 'order' AS order_json,
                               x.entry -> 'created_at' AS created_at_json,
                               x.entry -> 'is_label' AS label_json
                        FROM (
                            -- An entry stored as a JSON string holding the JSON text of an object is read as that
                            -- object (nested CASEs: the text is only cast once it is known to parse).
                            SELECT e.position,
                                   e.entry AS stored_entry,
                                   {decoded_entry} AS entry
                            FROM jsonb_array_elements(d.images) WITH ORDINALITY AS e(entry, position)
                            OFFSET 0
                        ) AS x
                        OFFSET 0
                    ) AS k
                    OFFSET 0
                ) AS v
                OFFSET 0
            ) AS en
        ) AS c
    ) AS pe
    CROSS JOIN LATERAL (
        -- The label's slot in the sorted entries (NULL: no label): one image has none; entries that say
        -- decide (of several marked, the last); otherwise the last entry by (order, position).
        SELECT label_index,
               COALESCE(pe.orders_are_valid AND pe.orders_are_distinct
                        AND (label_index IS NULL OR label_index = pe.image_count), false) AS keeps_orders
        FROM (SELECT CASE WHEN pe.image_count < 2 THEN NULL
                          WHEN pe.says_which_is_label
                              THEN array_position(pe.positions, pe.marked_positions[cardinality(pe.marked_positions)])
                          ELSE pe.image_count
                     END::integer AS label_index) AS label
    ) AS l
)"""


# The shape the seed wrote every created_at in (2024-05-06T07:08:09Z): tested first, by cheaper means than the
# general test below, which only the other texts reach.
COMMON_TIMESTAMP_SHAPE = "0000-00-00T00:00:00Z"
assert COMMON_TIMESTAMP_SHAPE in TIMESTAMP_SHAPES

# An entry's created_at: the accepted shapes, then parsed once it is known to parse; bounded where it is used.
# The general shape test turns the text's digits to 0 and looks the result up among the shapes: translate()
# walks the text character by character against its list (a regex cost more still) and was most of the cost of
# reading a timestamp (the 30x tenant's 588,210 entries, under load: 1.4-1.8 s of 2.1-2.6 s over extracting the
# text). The common shape is tested first with byte-wise operations that prove the same thing: its layout
# (LIKE: as many characters, the separators in place), as many bytes (so every character is one byte and the
# LIKE positions are byte positions), and digits in every digit slot (the slots' bytes, trimmed of digits, leave
# nothing): 0.4-1.3 s on the same entries.
_PARSED_CREATED_AT = """CASE WHEN CASE WHEN v.created_at_text LIKE {common_like}
                      AND octet_length(v.created_at_text) = {common_length}
                      AND btrim({common_digit_slots}, {digits}) = ''::bytea
                 THEN true
                 ELSE translate(v.created_at_text, '123456789', '000000000') = ANY ({timestamp_shapes})
            END
            AND pg_input_is_valid(v.created_at_text, 'timestamptz')
       THEN v.created_at_text::timestamptz
  END AS parsed_created_at"""
_CREATED_AT_REPAIR = "CASE WHEN NOT pe.created_at_all_valid THEN {repair_created_at} END"
_NO_CREATED_AT = ("NULL::timestamptz AS parsed_created_at", "NULL")


# JSON text is only cast (or given to pg_input_is_valid) when it holds at most this many "[" and "{": PostgreSQL
# parses JSON text recursively and raises "stack depth limit exceeded" past some depth, an error pg_input_is_valid
# does not report softly (PostgreSQL 18 with the default max_stack_depth of 2MB: 14,500 nested objects or 16,300
# nested arrays parse, more raise). The rule must never raise (the follower runs it in the application's own
# UPDATE; a migration's batch would fail at every retry), so such text is refused like any unreadable input. The
# depth is at most the count, and the count is what can be computed without a parser; counting strings' brackets
# too only matters for a value no real product holds (the text of one entry, or of an array of 10,000 photos).
MAX_JSON_TEXT_BRACKETS = 10_000
TOO_NESTED_PROBLEM = (
    f"holds more than {MAX_JSON_TEXT_BRACKETS} '[' and '{{': possibly nested too deeply for PostgreSQL to read, "
    "so it is not read"
)
# Whether the text ``{text}`` holds more "[" and "{" than the limit; never raises. Text of at most that many bytes
# cannot: its length, which PostgreSQL knows without reading it, spares the count to every usual entry.
_TOO_NESTED = "(octet_length({text}) > {limit} AND length({text}) - length(translate({text}, '[{{', '')) > {limit})"


def too_nested(text: sql.Composable) -> sql.Composed:
    """The guard ``_TOO_NESTED`` on the JSON text ``text``, to test before any cast of it to jsonb."""
    return sql.SQL(_TOO_NESTED).format(text=text, limit=sql.Literal(MAX_JSON_TEXT_BRACKETS))


VALUE_TOO_NESTED = too_nested(sql.SQL("(p.images #>> '{}')"))
# ``p.images`` as the rule reads it: the JSON array, or the array a JSON string holds, decoded (the guard first:
# text nested too deeply makes even pg_input_is_valid raise; then nested CASEs, the text only cast once it is known
# to parse); NULL when the value is no array at all. Settling a product's label convention reads the value the
# same way (``legacy_json``).
DECODED_VALUE = sql.SQL("""CASE jsonb_typeof(p.images)
               WHEN 'array' THEN p.images
               WHEN 'string' THEN
                   CASE WHEN {too_nested} THEN NULL
                        WHEN pg_input_is_valid(p.images #>> '{{}}', 'jsonb') THEN
                       CASE WHEN jsonb_typeof((p.images #>> '{{}}')::jsonb) = 'array'
                            THEN (p.images #>> '{{}}')::jsonb
                       END
                   END
           END""").format(too_nested=VALUE_TOO_NESTED)


# ``e.entry`` as the rule reads it: an entry stored as a JSON string holding the JSON text of an object is read
# as that object (nested CASEs: the text is only cast once it is known to parse, and first known not to be nested
# too deeply to try, ``too_nested``; an AND would not promise the order). Settling a product's label convention
# rewrites its entries read the same way (``legacy_json``).
DECODED_ENTRY = sql.SQL("""CASE WHEN jsonb_typeof(e.entry) <> 'string'
                                         OR left(ltrim(e.entry #>> '{{}}'), 1) <> '{{' THEN e.entry
                                    WHEN {too_nested} THEN e.entry
                                    WHEN NOT pg_input_is_valid(e.entry #>> '{{}}', 'jsonb') THEN e.entry
                                    WHEN jsonb_typeof((e.entry #>> '{{}}')::jsonb) = 'object'
                                        THEN (e.entry #>> '{{}}')::jsonb
                                    ELSE e.entry
                               END""").format(too_nested=too_nested(sql.SQL("(e.entry #>> '{}')")))


# The rows, unnested from status's arrays (``{status}``: where they are read from).
_YIELDED = """SELECT s.id AS product_id,
           r.url,
           r."order",
           r.is_label,
           COALESCE(r.created_at, s.product_created_at, {now}) AS created_at,
           r.created_at AS entry_created_at  -- NULL: the entry gives none (reconcile keeps a row's own)
    FROM {status} AS s
    CROSS JOIN LATERAL unnest(s.urls, s.orders, s.label_flags, s.created_ats) AS r(url, "order", is_label, created_at)
    WHERE s.error IS NULL"""
# Only added when asked for.
_YIELDED_CTE = ",\nyielded AS (\n    " + _YIELDED + "\n)"


# Products whose rows differ from what their JSON yields (url, order, label; a missing or extra row counts),
# over ``status`` and a ``table_rows`` CTE the query defines: each product's rows as arrays sorted like
# status's (by order; url and label break ties), compared with status's arrays. A product with rows whose JSON
# yields none (listed as an error, or not in ``status``) counts; the queries leave errors out themselves.
DIFFERING_CTE = """table_products AS (
    SELECT product_id,
           count(*) AS table_count,
           count(*) FILTER (WHERE is_label) AS table_labels,
           array_agg(url ORDER BY "order", is_label, url) AS urls,
           array_agg("order" ORDER BY "order", is_label, url) AS orders,
           array_agg(is_label ORDER BY "order", is_label, url) AS label_flags
    FROM table_rows
    GROUP BY product_id
),
differing AS (
    SELECT COALESCE(s.id, t.product_id) AS product_id
    FROM (SELECT id, image_count, urls, orders, label_flags FROM status WHERE error IS NULL) AS s
    FULL JOIN table_products AS t ON t.product_id = s.id
    WHERE CASE WHEN s.id IS NULL THEN true
               WHEN t.product_id IS NULL THEN s.image_count > 0
               ELSE (s.urls, s.orders, s.label_flags) IS DISTINCT FROM (t.urls, t.orders, t.label_flags)
          END
)"""


# A product's JSON as product_json_state records it (``json_digest``): the md5 of its text, as a uuid. Written by
# the first migration, reconcile, the follower and the image service's mirror; compared by --sync, the follower,
# the mirror and the validation, so every one of them must compute it the same way: ``{images}`` is the JSON.
JSON_DIGEST = "md5({images}::text)::uuid"


def json_digest(images: sql.Composable) -> sql.Composed:
    """``JSON_DIGEST`` of the JSON value ``images`` (a column, a subquery in parentheses)."""
    return sql.SQL(JSON_DIGEST).format(images=images)


# A product's rows as one digest: their urls, orders and labels in display order (arrays as ``status`` holds them),
# with the rule's version and the digest of the JSON they come from. Recorded in product_json_state.rows_digest
# beside the JSON's digest wherever the rows the JSON yields are read (the first migration, reconcile, the
# follower); the validation computes it again from the table (``table_arrays``) and, where the JSON and the
# rows are still those recorded, knows the rows are what the JSON yields without decoding it again. The rule's
# version in it: a changed rule matches no digest recorded before; the JSON's digest: a state whose json_digest
# was rewritten by a writer that leaves rows_digest as it was (code from before this column) matches none either.
# The arrays' texts concatenated: each is self-delimiting (its braces close it, its elements quoted where need be),
# so no two different rows give one text; as a ROW's text, quoted once more, the digest cost twice the CPU (0.68 s
# against 0.35 s on the 30x set's 98,430 products).
ROWS_DIGEST = (
    "md5({rule_version} || {json_digest}::text || {urls}::text || {orders}::text || {label_flags}::text)::uuid"
)
# A product's rows in the table as those arrays (aggregates over ``alias``, grouped by product). Sorted by
# order alone: when the rows are what a JSON yields their orders are distinct; when two rows share an order the
# arrays can match no yield (its orders strictly increase), whatever the tie's order.
_TABLE_ARRAYS = {
    "urls": 'array_agg({alias}.url ORDER BY {alias}."order")',
    "orders": 'array_agg({alias}."order" ORDER BY {alias}."order")',
    "label_flags": 'array_agg({alias}.is_label ORDER BY {alias}."order")',
}


@cache
def rule_version() -> str:
    """The rule's version: the digest of its SQL as rendered (every pattern and constant in it), so that any
    change to the rule makes it another (cached: the URL patterns are built once per process too)."""
    text = source_ctes("rule", sql.SQL("TRUE"), yielded=True).as_string(None)
    return hashlib.md5(text.encode()).hexdigest()


def rows_digest(
    json_digest: sql.Composable, urls: sql.Composable, orders: sql.Composable, label_flags: sql.Composable
) -> sql.Composed:
    """``ROWS_DIGEST`` of the rows held in these three arrays (status's), read from the JSON of ``json_digest``."""
    return sql.SQL(ROWS_DIGEST).format(
        rule_version=sql.Literal(rule_version()),
        json_digest=json_digest,
        urls=urls,
        orders=orders,
        label_flags=label_flags,
    )


def status_rows_digest(json_digest: sql.Composable) -> sql.Composed:
    """``ROWS_DIGEST`` of the rows ``status`` (alias ``s``) yields for a product whose JSON has ``json_digest``."""
    return rows_digest(json_digest, sql.SQL("s.urls"), sql.SQL("s.orders"), sql.SQL("s.label_flags"))


def table_arrays(alias: str) -> sql.Composed:
    """A product's rows in product_images (``alias``) as the three arrays ``ROWS_DIGEST`` reads (``urls``,
    ``orders``, ``label_flags``): a select list of aggregates, grouped by product."""
    return sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(sql.SQL(text.format(alias=alias)), sql.Identifier(name))
        for name, text in _TABLE_ARRAYS.items()
    )


def yielded_rows(status: sql.Composable, now: sql.Composable) -> sql.Composed:
    """``yielded``'s query over ``status``, a relation with status's columns, as a subquery's text: for a statement
    that reads the arrays from where an earlier statement kept them (batches). ``now``: the time written where
    nothing else gives one (a value there: Citus would rewrite a statement holding now(), wrongly)."""
    return sql.SQL(_YIELDED).format(status=status, now=now)


def _timestamp_shape_tests() -> dict[str, sql.Composable]:
    """The values ``_PARSED_CREATED_AT`` is rendered with: the common shape's tests, and the general one's shapes."""
    # The runs of digits in the common shape, as slices of the text's bytes (substr counts from 1).
    digit_slots = [
        sql.SQL("substr(textsend(v.created_at_text), {}, {})").format(run.start() + 1, len(run.group()))
        for run in re.finditer("0+", COMMON_TIMESTAMP_SHAPE)
    ]
    return {
        "common_like": sql.Literal(COMMON_TIMESTAMP_SHAPE.replace("0", "_")),
        "common_length": sql.Literal(len(COMMON_TIMESTAMP_SHAPE)),
        "common_digit_slots": sql.SQL(" || ").join(digit_slots),
        "digits": sql.Literal(b"0123456789"),
        "timestamp_shapes": sql.Literal(sorted(TIMESTAMP_SHAPES)),
    }


def source_ctes(
    schema: str, product_filter: sql.Composable, *, yielded: bool = False, with_created_at: bool = True
) -> sql.Composed:
    """The CTEs described in the module docstring, without the leading WITH; ``yielded`` on request.

    ``with_created_at=False`` leaves the entries' created_at unread (``created_ats`` NULL, the created_at repair
    never listed), for the comparisons with the table, which look at url, order and label only: parsing and
    bounding the timestamps was a quarter of the reading.
    """
    parsed_created_at, created_at_repair = (
        (_PARSED_CREATED_AT, _CREATED_AT_REPAIR) if with_created_at else _NO_CREATED_AT
    )
    return sql.SQL(_SOURCE_CTES + (_YIELDED_CTE if yielded else "")).format(
        status=sql.SQL("status"),
        now=sql.SQL("now()"),
        parsed_created_at=sql.SQL(parsed_created_at).format(**_timestamp_shape_tests()),
        earliest_created_at=sql.Literal(EARLIEST_CREATED_AT),
        latest_created_at_excluded=sql.Literal(LATEST_CREATED_AT_EXCLUDED),
        created_at_repair=sql.SQL(created_at_repair).format(repair_created_at=sql.Literal(REPAIR_CREATED_AT)),
        products=table(schema, "products"),
        product_filter=product_filter,
        decoded_entry=DECODED_ENTRY,
        decoded_value=DECODED_VALUE,
        value_too_nested=VALUE_TOO_NESTED,
        url_too_nested=too_nested(sql.SQL("en.url")),
        too_nested_problem=sql.Literal(TOO_NESTED_PROBLEM),
        max_order=sql.Literal(MAX_ORDER),
        numeric_text=sql.Literal(NUMERIC_TEXT_PATTERN),
        url_whitespace=URL_WHITESPACE_SQL,
        url_refused_character=sql.Literal(url_patterns().refused_character),
        refused_character_problem=sql.Literal(REFUSED_CHARACTER_PROBLEM),
        scheme_problem=sql.Literal(SCHEME_PROBLEM),
        url_accepted=sql.Literal(url_patterns().accepted),
        repair_order_invalid=sql.Literal(REPAIR_ORDER_INVALID),
        repair_order_duplicate=sql.Literal(REPAIR_ORDER_DUPLICATE),
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
