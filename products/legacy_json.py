"""The legacy JSON column ``products.images``, outside the ORM: is it still there, and what does it hold.

Migration 0004 took the column out of Django's state; each tenant keeps it in its table until
``finalize_images`` copies it into ``legacy_product_images`` and drops it. Code that reads it asks
``has_json_column`` first, since one tenant may be finalized while its neighbours are not.
"""

import json

from psycopg import sql

from stoflow.raw_sql import fetch_rows, table

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
