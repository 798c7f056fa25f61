"""Benchmark of the seller admin's lists on a large seller: ``python -m bench.admin_pages`` (docs/benchmark.md).

It builds, once, a tenant ``bench_admin`` in the benchmark's database (``stoflow_bench``) holding the seed
catalogue 100 times over as image rows (328,100 products, 1,960,700 images, written by SQL, not migrated),
then times the pages a support agent opens, through Django's test client with a staff login (the whole
request: middleware, session, queries, templates), and prints the medians against the issue's figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("STOFLOW_DATABASE_NAME", "stoflow_bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stoflow.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")
sys.path.insert(0, str(ROOT))

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402
from psycopg import sql  # noqa: E402

from bench.datasets import prepare_database, scaled_set  # noqa: E402
from stoflow.raw_sql import execute, fetch_rows, table  # noqa: E402
from stoflow.tenants.services import ensure_tenant  # noqa: E402

SCHEMA = "bench_admin"
STAFF = "bench-staff"
# The figures before this work, and the target for the URL search.
URL_SEARCH_TARGET_MS = 300

_FILL_PRODUCTS = """INSERT INTO {products} (title, images, created_at, updated_at)
SELECT 'Bench product ' || n, NULL, now(), now() FROM generate_series(1, %(products)s) AS n"""
# Each product's images, its last one the label (two or more images), with URLs a CDN would have.
_FILL_IMAGES = """INSERT INTO {images} (product_id, url, "order", is_label, created_at, updated_at)
SELECT c.n, 'https://cdn.stoflow.example/products/' || c.n || '/' || md5(c.n || '-' || k) || '.jpeg',
       k, c.image_count >= 2 AND k = c.image_count, now(), now()
FROM unnest(%(counts)s::integer[]) WITH ORDINALITY AS c(image_count, n), generate_series(1, c.image_count) AS k"""


@dataclass(frozen=True)
class Page:
    name: str
    path: str  # under /sellers/bench_admin/admin/products/
    before: str  # what the issue measured, or "" when it did not


def pages(sample_url_fragment: str, product_id: int) -> list[Page]:
    return [
        Page("images, first page", "productimage/", ""),
        Page("image search by URL text (one product's)", f"productimage/?q={sample_url_fragment}", "1.6 s"),
        Page("image search by URL text (every image: 'jpeg')", "productimage/?q=jpeg", ""),
        Page("images, page 19,000 (past the bound: the last page served)", "productimage/?p=19000", "3.9 s"),
        Page("products, first page", "product/", ""),
        Page("products, page 3,000 (past the bound: the last page served)", "product/?p=3000", "2.0 s"),
        Page("products, sorted by id descending, page 2", "product/?o=-1&p=2", ""),
        Page("a product id searched (opens the product)", f"product/?q={product_id}", ""),
        Page("a product's page", f"product/{product_id}/change/", ""),
        Page("a product's images", f"productimage/?product={product_id}", ""),
    ]


def ensure_tenant_data() -> tuple[int, int]:
    """The tenant with its rows (built unless already there, whole); returns (products, images)."""
    counts = scaled_set(100).image_counts
    ensure_tenant(SCHEMA)
    names = {"products": table(SCHEMA, "products"), "images": table(SCHEMA, "product_images")}
    [(products, images)] = fetch_rows(
        sql.SQL("SELECT (SELECT count(*) FROM {products}), (SELECT count(*) FROM {images})").format(**names)
    )
    if products == len(counts) and images == sum(counts):
        return products, images
    started = time.perf_counter()
    execute(sql.SQL("TRUNCATE {images}, {products} RESTART IDENTITY CASCADE").format(**names))
    # The trigram index is rebuilt once after the insert, not row by row during it.
    indexes = fetch_rows(
        sql.SQL("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %(schema)s AND indexname LIKE %(like)s"),
        {"schema": SCHEMA, "like": "%trgm%"},
    )
    for name, _ in indexes:
        execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(SCHEMA, name)))
    execute(sql.SQL(_FILL_PRODUCTS).format(**names), {"products": len(counts)})
    execute(sql.SQL(_FILL_IMAGES).format(**names), {"counts": counts})
    for _, definition in indexes:
        execute(sql.SQL(definition))  # pg_indexes' own text, identifiers already quoted
    execute(sql.SQL("VACUUM ANALYZE {products}").format(**names))
    execute(sql.SQL("VACUUM ANALYZE {images}").format(**names))
    print(f"built {SCHEMA} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return len(counts), sum(counts)


def staff_client() -> Client:
    user, _ = get_user_model().objects.get_or_create(username=STAFF, defaults={"is_staff": True, "is_superuser": True})
    client = Client(SERVER_NAME="localhost")
    client.force_login(user)
    return client


def time_page(client: Client, path: str, runs: int) -> tuple[float, int]:
    """Median milliseconds of ``runs`` requests (after one to warm the caches), and the status."""
    url = f"/sellers/{SCHEMA}/admin/products/{path}"
    status = client.get(url).status_code
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        client.get(url)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds) * 1000, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.admin_pages", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="Timed requests per page; the median is reported.")
    args = parser.parse_args(argv)

    prepare_database()
    products, images = ensure_tenant_data()
    [(fragment,)] = fetch_rows(
        sql.SQL("SELECT substr(url, 50, 12) FROM {} WHERE product_id = 123456 LIMIT 1").format(
            table(SCHEMA, "product_images")
        )
    )
    client = staff_client()
    print(f"Seller {SCHEMA}: {products:,} products, {images:,} images; median of {args.runs} requests")
    print(f"{'page':<62} {'ms':>7}  {'before':>7}  status")
    met = True
    for page in pages(fragment, 165):
        milliseconds, status = time_page(client, page.path, args.runs)
        print(f"{page.name:<62} {milliseconds:>7.0f}  {page.before:>7}  {status}")
        if page.path.startswith("productimage/?q=") and milliseconds > URL_SEARCH_TARGET_MS:
            met = False
    print(f"URL search under {URL_SEARCH_TARGET_MS} ms: {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
