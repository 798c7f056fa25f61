"""The trigram index on ``upper(url)`` that serves the image list's URL search (``icontains``), per tenant.

Tenant migration 0006 creates it. A first backfill of a large tenant sets it aside and builds it again once its
rows are in, when the tenant then holds enough images for a search to need it. Kept up row by row, it made every
inserted image about six times dearer: 588,210 rows of the 30x bench tenant took 26.1 s into a copy of
``product_images`` with the index against 4.2 s without it, and building it afterwards took 6.7 s (one run,
PostgreSQL 18, 2 cores): a GIN index takes each row's trigrams into its pending list and merges the list into
the tree whenever it passes ``gin_pending_list_limit`` (4 MB), hundreds of merges for a large tenant against one
sorted build.

Below INDEXED_FROM_IMAGES images a search needs no index: it scans every URL in about 1.8 us an image (31 ms
on the 19,607 images of the seed report's catalogue, 1.07 s on 588,210), and the build would cost more than
the backfill's rows (0.56 s for those 19,607 images against 0.19 s to insert them). A tenant left without it
that grows past the bound gets it on the next live run of migrate_images (from the table's statistics).

A server without pg_trgm (the pgserver wheel's PostgreSQL 16) gets no index and a search that scans; so does
one where the extension is not created yet and the migration's role may not create it. A run never creates
the extension: only the migration does.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from stoflow.raw_sql import execute, fetch_rows, table

INDEX = "product_images_url_trgm"
# A backfill of fewer products keeps the index up as it writes: for 20 products (120 images, about 5 ms of
# index upkeep) two DDL statements and a build cost more than they save.
SET_ASIDE_FROM_PRODUCTS = 1000
# From this many images a search without the index scans for about 90 ms, leaving the admin's page (its 300 ms
# target) room for its other queries and the rendering.
INDEXED_FROM_IMAGES = 50_000

# Read with the preflight's catalog queries, in its round trip: is the tenant's index there, in which schema is
# pg_trgm created (its operator class is named with it; NULL: not created, so no index is made), and about how
# many images the tenant holds (the statistics' estimate; -1 when never counted).
# The schema pg_trgm is created in, by name (no row: it is not created).
TRGM_SCHEMA = """SELECT n.nspname FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_trgm'"""
STATE = sql.SQL("""SELECT to_regclass(quote_ident(%(schema)s) || '.' || quote_ident(%(url_index)s)) IS NOT NULL,
       ({trgm_schema}),
       (SELECT c.reltuples::bigint FROM pg_class AS c
        WHERE c.oid = to_regclass(quote_ident(%(schema)s) || '.product_images'))""").format(
    trgm_schema=sql.SQL(TRGM_SCHEMA)
)
STATE_PARAMS = {"url_index": INDEX}

_FIRST_BACKFILL = """SELECT NOT EXISTS (SELECT FROM {images})
    AND (SELECT count(*) FROM (SELECT FROM {products} LIMIT %(enough)s) AS enough) >= %(enough)s"""


@dataclass(frozen=True)
class IndexState:
    present: bool
    trgm_in: str | None  # the schema pg_trgm is created in; None: it is not, and no index is made
    estimated_images: int  # from the statistics, 0 when never counted

    @classmethod
    def from_row(cls, present: bool, trgm_in: str | None, estimated_images: int | None) -> IndexState:
        return cls(present, trgm_in, max(estimated_images or 0, 0))


def definition(images: sql.Composable, trgm_in: str, index: str = INDEX) -> sql.Composed:
    """The index's CREATE INDEX statement on ``images`` (the bench's insert floor builds it on its copy too)."""
    return sql.SQL("CREATE INDEX IF NOT EXISTS {index} ON {images} USING gin (upper(url) {ops})").format(
        index=sql.Identifier(index), images=images, ops=sql.SQL("{}.gin_trgm_ops").format(sql.Identifier(trgm_in))
    )


def trgm_schema() -> str | None:
    """The schema pg_trgm is created in, None when it is not."""
    rows = fetch_rows(sql.SQL(TRGM_SCHEMA))
    return rows[0][0] if rows else None


def create(schema: str, trgm_in: str) -> None:
    """Create the index on the tenant's product_images if it is missing."""
    execute(definition(table(schema, "product_images"), trgm_in))


def drop(schema: str) -> None:
    execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(schema, INDEX)))


def set_aside_for_backfill(schema: str, state: IndexState) -> bool:
    """Before a run writes rows: drop the index when this is a first backfill of at least
    SET_ASIDE_FROM_PRODUCTS products (no image rows yet, so no search loses anything and the drop takes no
    time). True when dropped."""
    if state.trgm_in is None or not state.present:
        return False
    query = sql.SQL(_FIRST_BACKFILL).format(images=table(schema, "product_images"), products=table(schema, "products"))
    [(first_backfill,)] = fetch_rows(query, {"enough": SET_ASIDE_FROM_PRODUCTS})
    if first_backfill:
        drop(schema)
    return first_backfill


def build_if_needed(schema: str, state: IndexState, set_aside: bool, images_written: int) -> bool:
    """After a run wrote its rows: build the index where it is missing and the tenant holds at least
    INDEXED_FROM_IMAGES images (set aside by this run, which wrote every row there is, or missing since an
    interrupted backfill or a small tenant's that grew). True when built."""
    if state.trgm_in is None or (state.present and not set_aside):
        return False
    images = images_written if set_aside else state.estimated_images + images_written
    if images < INDEXED_FROM_IMAGES:
        return False
    create(schema, state.trgm_in)
    return True
