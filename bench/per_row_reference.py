"""The seed script's method, re-implemented faithfully, as the benchmark's reference.

``scripts/migrate_images_to_table.py`` (the seed report's run) worked row by row:
per schema it read the products, and per product it ran one SELECT count to
skip products already migrated, then one INSERT per image, sorted by order, the
last one a label when the product has two or more; one commit per schema. No
batching, no set-based SQL: that is the point of the comparison.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from psycopg import sql


def migrate_schema(conn: psycopg.Connection, schema: str) -> int:
    """Migrate one schema the seed script's way; returns the images inserted."""
    products = sql.Identifier(schema, "products")
    product_images = sql.Identifier(schema, "product_images")
    count_rows = sql.SQL("SELECT COUNT(*) FROM {} WHERE product_id = %s").format(product_images)
    insert_row = sql.SQL(
        'INSERT INTO {} (product_id, url, "order", is_label, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s)'
    ).format(product_images)
    inserted = 0
    with conn.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "SELECT id, images, created_at FROM {} "
                "WHERE images IS NOT NULL AND jsonb_typeof(images) = 'array' AND jsonb_array_length(images) > 0 "
                "ORDER BY id"
            ).format(products)
        )
        for product_id, images, product_created_at in cursor.fetchall():
            cursor.execute(count_rows, (product_id,))
            if cursor.fetchone()[0] > 0:
                continue
            ordered = sorted(images, key=lambda image: image.get("order", 0))
            for position, image in enumerate(ordered):
                is_label = len(ordered) >= 2 and position == len(ordered) - 1
                created_at = _parse_timestamp(image.get("created_at")) or product_created_at
                order = image.get("order", position)
                cursor.execute(insert_row, (product_id, image["url"], order, is_label, created_at, datetime.now(UTC)))
                inserted += 1
    conn.commit()
    return inserted


def migrate(conninfo: dict, schemas: list[str]) -> int:
    with psycopg.connect(**conninfo) as conn:
        return sum(migrate_schema(conn, schema) for schema in schemas)


def _parse_timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
