"""Demo data shaped like the seed report's real data (``docs/seed-migration-report.md``)."""

import random
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction
from django.templatetags.static import static
from psycopg import sql

from stoflow.raw_sql import execute, fetch_rows, table
from stoflow.tenants.services import ensure_public_tenant, ensure_tenant

# The seed report's image distribution: images per product -> products (3,281 products, 19,607 images).
SEED_DISTRIBUTION = {
    2: 22, 3: 276, 4: 499, 5: 653, 6: 606, 7: 490, 8: 395, 9: 222, 10: 76, 11: 23, 12: 12, 13: 5, 14: 2,
}  # fmt: skip
DEMO_TENANTS = ["user_1", "user_2", "user_4", "user_5"]
DEMO_CATALOGUE_TENANT = "user_1"
# Demo image URLs point at pictures the project serves itself (products/static/products/placeholders/
# 1.svg to 6.svg), so the admin shows them offline; the query string keeps every URL distinct.
PLACEHOLDER_PICTURES = 6
# The demo's staff login for the admin; seed_demo prints it. Demo databases only.
DEMO_STAFF_USERNAME = "staff"
DEMO_STAFF_PASSWORD = "stoflow-demo"

_FILL_PRODUCTS = """INSERT INTO {products} (title, images, created_at, updated_at, deleted_at)
SELECT 'Demo product ' || c.n,
       (SELECT jsonb_agg(jsonb_build_object(
                   'url', %(placeholders)s::text || (mod(c.n + k, %(pictures)s) + 1)
                          || '.svg?image=' || c.n || '-' || k,
                   'order', k,
                   'created_at', to_char(
                       (%(start)s::timestamptz + c.n * interval '1 hour' + k * interval '1 second') AT TIME ZONE 'UTC',
                       'YYYY-MM-DD"T"HH24:MI:SS"Z"')
               ) ORDER BY k)
        FROM generate_series(1, c.image_count) AS k),
       %(start)s::timestamptz + c.n * interval '1 hour',
       %(start)s::timestamptz + c.n * interval '1 hour',
       NULL
FROM unnest(%(counts)s::integer[]) WITH ORDINALITY AS c(image_count, n)
ORDER BY c.n"""


@dataclass
class DemoTenant:
    schema: str
    created: bool
    products_added: int


def demo_image_counts(distribution: dict[int, int] = SEED_DISTRIBUTION, seed: int = 2026) -> list[int]:
    """Images per product, one entry per product, following ``distribution`` exactly."""
    counts = [images for images, products in distribution.items() for _ in range(products)]
    random.Random(seed).shuffle(counts)
    # Product 1 gets four images, like the seed report's spot-check product.
    if 4 in counts:
        four = counts.index(4)
        counts[0], counts[four] = counts[four], counts[0]
    return counts


def fill_products(schema: str, image_counts: list[int]) -> int:
    """Insert one product per entry of ``image_counts``, images in the legacy JSON shape (1-based orders)."""
    query = sql.SQL(_FILL_PRODUCTS).format(products=table(schema, "products"))
    with transaction.atomic():
        execute(
            query,
            {
                "counts": image_counts,
                "start": "2025-06-01T08:00:00Z",
                "placeholders": static("products/placeholders/"),
                "pictures": PLACEHOLDER_PICTURES,
            },
        )
    return len(image_counts)


def seed_demo() -> list[DemoTenant]:
    """Create the demo tenants and fill the catalogue tenant once; re-running changes nothing."""
    ensure_public_tenant()
    result = []
    for schema in DEMO_TENANTS:
        created = ensure_tenant(schema)
        added = 0
        if schema == DEMO_CATALOGUE_TENANT and not fetch_rows(
            sql.SQL("SELECT 1 FROM {} LIMIT 1").format(table(schema, "products"))
        ):
            added = fill_products(schema, demo_image_counts())
        result.append(DemoTenant(schema, created, added))
    return result


def ensure_demo_staff() -> bool:
    """The demo staff user, a superuser whose password is the printed one; True when created."""
    user, created = get_user_model().objects.get_or_create(username=DEMO_STAFF_USERNAME)
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(DEMO_STAFF_PASSWORD)  # reset on every run, so the printed login always works
    user.save()
    return created
