"""The legacy JSON column ``products.images``, outside the ORM: is it still there, and what does it hold.

Migration 0004 took the column out of Django's state; each tenant keeps it in its table until
``finalize_images`` copies it into ``legacy_product_images`` and drops it. Code that reads it asks
``has_json_column`` first, since one tenant may be finalized while its neighbours are not.
"""

import json

from psycopg import sql

from products.migration.source import DECODED_ENTRY, DECODED_VALUE
from stoflow.raw_sql import execute, fetch_rows, table

# A product (alias p) whose JSON holds photos: SQL NULL, JSON null, [] and "[]" hold none, as for the
# migration and the image service.
JSON_HOLDS_PHOTOS = "p.images IS NOT NULL AND p.images NOT IN ('null'::jsonb, '[]'::jsonb, '\"[]\"'::jsonb)"

# Where finalize_images keeps every product's last JSON value, for ever; restore_images_json reads it back.
ARCHIVE_TABLE = "legacy_product_images"


def has_json_column(schema: str) -> bool:
    """Whether the tenant's products table still has its JSON column, i.e. the tenant is not finalized."""
    ((present,),) = fetch_rows(
        sql.SQL(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute "
            "WHERE attrelid = to_regclass(quote_ident(%(schema)s) || '.products') "
            "AND attname = 'images' AND NOT attisdropped)"
        ),
        {"schema": schema},
    )
    return present


def has_archive(schema: str) -> bool:
    """Whether the tenant has a ``legacy_product_images`` table (it was finalized at least once)."""
    ((present,),) = fetch_rows(
        sql.SQL("SELECT to_regclass(quote_ident(%(schema)s) || '.' || %(archive)s) IS NOT NULL"),
        {"schema": schema, "archive": ARCHIVE_TABLE},
    )
    return present


def product_json(schema: str, product_id: int):
    """The product's JSON value as Python data (SQL NULL: None); the column must exist (``has_json_column``)."""
    # As text: decoded here the way the admin shows it, whatever loader the connection has for jsonb.
    rows = fetch_rows(
        sql.SQL("SELECT images::text FROM {} WHERE id = %(id)s").format(table(schema, "products")), {"id": product_id}
    )
    if not rows or rows[0][0] is None:
        return None
    return json.loads(rows[0][0])


# The two ways to settle a product whose entries mix the label conventions (docs/migrate_images.md, "Two
# writers"): every entry rewritten by one of them. The value and its entries are read as the migration reads them
# (``DECODED_VALUE``: the array a JSON string holds is that array; ``DECODED_ENTRY``: an entry stored as the JSON
# text of an object is that object), and written back as a plain array of them; anything else is left as it is
# (the rule then says what is wrong).
LAST_PHOTO = "last-photo"  # the old convention: no is_label anywhere, the last photo by order is the label
MARKED = "marked"  # the marks: is_label true where it is JSON true, false everywhere else
CONVENTIONS = (LAST_PHOTO, MARKED)

# The product's entries as the rule reads them (alias x: position, entry); none when its value holds no array.
_ENTRIES = """SELECT e.position, {decoded_entry} AS entry
        FROM jsonb_array_elements({decoded_value}) WITH ORDINALITY AS e(entry, position)"""

# jsonb_array_length only ever sees an array or NULL (``DECODED_VALUE``): a test of the value's type beside it in
# an AND would not be evaluated first for sure.
# Read first, then written (``rewrite_in_one_convention``): in one UPDATE, Citus refuses the rule's decoding
# (pg_input_is_valid is not IMMUTABLE) inside CASE. Returned as text, so the JSON's numbers go back as they were.
_SETTLED = """SELECT (
    SELECT jsonb_agg(
        CASE WHEN jsonb_typeof(x.entry) <> 'object' THEN x.entry
             WHEN %(convention)s = 'last-photo' THEN x.entry - 'is_label'
             ELSE jsonb_set(x.entry, '{{is_label}}', to_jsonb(COALESCE(x.entry -> 'is_label' = 'true'::jsonb, false)))
        END
        ORDER BY x.position)
    FROM ({entries}) AS x
)::text
FROM {products} AS p
WHERE p.id = %(id)s AND jsonb_array_length({decoded_value}) > 0"""
_WRITE_SETTLED = "UPDATE {products} SET images = %(images)s::jsonb WHERE id = %(id)s"

# The entries whose is_label is anything but JSON false, by position, with the mark's JSON type ('boolean': true).
_MARKS = """SELECT x.position, jsonb_typeof(x.entry -> 'is_label')
FROM {products} AS p
CROSS JOIN LATERAL ({entries}) AS x
WHERE p.id = %(id)s AND jsonb_typeof(x.entry) = 'object' AND x.entry -> 'is_label' <> 'false'::jsonb
ORDER BY x.position"""


def _settle_sql(statement: str, schema: str) -> sql.Composed:
    entries = sql.SQL(_ENTRIES).format(decoded_entry=DECODED_ENTRY, decoded_value=DECODED_VALUE)
    return sql.SQL(statement).format(products=table(schema, "products"), entries=entries, decoded_value=DECODED_VALUE)


def label_marks(schema: str, product_id: int) -> list[tuple[int, str]]:
    """The product's entries whose ``is_label`` is anything but false, read as the rule reads them: (position from 1,
    the mark's JSON type; ``'boolean'`` is true). The caller holds the product's row lock."""
    return [tuple(row) for row in fetch_rows(_settle_sql(_MARKS, schema), {"id": product_id})]


def rewrite_in_one_convention(schema: str, product_id: int, convention: str) -> bool:
    """Rewrite the product's JSON array in one label convention (``CONVENTIONS``); False when it holds no list
    of photos to rewrite. The caller holds the product's row lock."""
    if convention not in CONVENTIONS:
        raise ValueError(f"Unknown label convention {convention!r}: {', '.join(CONVENTIONS)}.")
    settled = fetch_rows(_settle_sql(_SETTLED, schema), {"id": product_id, "convention": convention})
    if not settled:
        return False
    execute(_settle_sql(_WRITE_SETTLED, schema), {"id": product_id, "images": settled[0][0]})
    return True
