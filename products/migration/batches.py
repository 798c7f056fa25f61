"""The batch writer: one tenant's products, walked in batches of ids.

Each batch is one set-based INSERT ... SELECT over the legacy JSON (``source``),
in its own transaction, so an interrupted run leaves whole batches and a re-run
finishes the job. The JSON column is only ever read.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from django.db import DatabaseError, transaction
from psycopg import sql

from products.migration.report import ProductError, TenantRun
from products.migration.source import DIFFERING_CTE, source_ctes
from stoflow.raw_sql import fetch_rows, table


@dataclass(frozen=True)
class MigrationOptions:
    dry_run: bool = False
    force: bool = False
    batch_size: int = 1000
    sync: bool = False  # rebuild exactly the products whose rows differ from their JSON
    jobs: int = 1  # tenants migrated at once, each worker on its own database connection
    run_name: str = ""  # names the run in product_images_removed


class Progress:
    """Hooks the command uses to show progress; this base shows nothing."""

    def start_tenant(self, schema: str, products: int) -> None: ...

    def advance(self, schema: str, products: int) -> None: ...

    def finish_tenant(self, schema: str) -> None: ...


# SQLSTATE classes a product's own rows can cause: data exception, integrity
# constraint violation, an error raised by a trigger. Any other database error
# (connection lost, missing table, out of memory) stops the run.
ROW_ERROR_CLASSES = ("22", "23", "P0")

_BATCH_FILTER = sql.SQL("p.id > %(after)s AND p.id <= %(upto)s")

_MIGRATE_BATCH = """WITH {source},
todo AS (
    SELECT s.*,
           EXISTS (SELECT 1 FROM {product_images} AS pi WHERE pi.product_id = s.id) AS has_rows
    FROM status AS s
    WHERE s.image_count > 0 OR s.error IS NOT NULL
),
new_rows AS (
    SELECT y.*
    FROM yielded AS y
    JOIN todo AS t ON t.id = y.product_id
    WHERE %(force)s OR NOT t.has_rows
),
inserted AS (
    INSERT INTO {product_images} (product_id, url, "order", is_label, created_at, updated_at)
    SELECT product_id, url, "order", is_label, created_at, now()
    FROM new_rows
    RETURNING product_id, is_label
),
inserted_per_product AS (
    SELECT product_id, count(*) AS images, count(*) FILTER (WHERE is_label) AS labels
    FROM inserted
    GROUP BY product_id
)
SELECT t.error,
       t.repairs,
       t.is_deleted,
       t.has_rows AND NOT %(force)s AS already_migrated,
       count(*) AS products,
       COALESCE(sum(i.images), 0)::bigint AS images,
       COALESCE(sum(i.labels), 0)::bigint AS labels,
       array_agg(t.id ORDER BY t.id) FILTER (WHERE t.error IS NOT NULL OR cardinality(t.repairs) > 0) AS ids
FROM todo AS t
LEFT JOIN inserted_per_product AS i ON i.product_id = t.id
GROUP BY 1, 2, 3, 4"""

# --force: the rows of every product that migrates cleanly go, in the batch's
# transaction, so a failure before the INSERT leaves the old rows in place.
# --force and --sync: the rows of the products to rebuild go (--force: every product that
# is no error, an emptied JSON included; --sync: those whose rows differ from their JSON),
# in the batch's transaction, so a failure before the INSERT leaves the old rows in place.
# A removed row whose URL the JSON no longer holds is first copied aside, in the same
# statement: no run deletes a photo that exists nowhere else.
_REMOVE_BATCH = """WITH {source},
table_rows AS (
    SELECT pi.product_id, pi.url, pi."order", pi.is_label
    FROM {product_images} AS pi
    JOIN status AS s ON s.id = pi.product_id
),
{differing},
rebuilt AS (
    SELECT s.id FROM status AS s
    WHERE s.error IS NULL AND (%(force)s OR s.id IN (SELECT product_id FROM differing))
),
removed AS (
    DELETE FROM {product_images} AS pi
    USING rebuilt AS r
    WHERE pi.product_id = r.id
    RETURNING pi.*
),
kept_aside AS (
    INSERT INTO {removed_images} (image_id, product_id, url, "order", is_label, created_at, updated_at,
                                  removed_at, removed_by)
    SELECT r.id, r.product_id, r.url, r."order", r.is_label, r.created_at, r.updated_at, now(), %(run_name)s
    FROM removed AS r
    WHERE NOT EXISTS (SELECT 1 FROM yielded AS y WHERE y.product_id = r.product_id AND y.url = r.url)
    RETURNING 1
)
SELECT (SELECT array_agg(DISTINCT product_id ORDER BY product_id) FROM removed),
       (SELECT count(*) FROM kept_aside)"""

# The batch's products, locked as the image service locks a product before it
# writes: a service call and a batch on the same product queue up, and the
# batch's later statements read the JSON the service committed.
_LOCK_BATCH = """SELECT count(*) FROM (
    SELECT 1 FROM {products} AS p WHERE {product_filter} ORDER BY p.id FOR UPDATE
) AS locked"""

_BATCH_END = """SELECT max(id) FROM (
    SELECT id FROM {products} WHERE id > %(after)s ORDER BY id LIMIT %(batch_size)s
) AS batch"""


def migrate_batches(schema: str, options: MigrationOptions, progress: Progress, stop: threading.Event) -> TenantRun:
    products = table(schema, "products")
    run = TenantRun()
    remaining = fetch_rows(sql.SQL("SELECT count(*) FROM {}").format(products), {})[0][0]
    progress.start_tenant(schema, remaining)
    batch_end = sql.SQL(_BATCH_END).format(products=products)
    after = 0
    while True:
        if stop.is_set():
            raise KeyboardInterrupt
        (upto,) = fetch_rows(batch_end, {"after": after, "batch_size": options.batch_size})[0]
        if upto is None:
            break
        _migrate_batch(schema, after, upto, options, run)
        # Every batch but the last holds exactly batch_size products.
        progress.advance(schema, min(options.batch_size, remaining))
        remaining -= options.batch_size
        after = upto
    progress.finish_tenant(schema)
    return run


def _migrate_batch(schema: str, after: int, upto: int, options: MigrationOptions, run: TenantRun) -> None:
    """One transaction for products with ids in (after, upto]."""
    try:
        with transaction.atomic():
            _tally(schema, _write_batch(schema, after, upto, options), run, options)
        return
    except DatabaseError as exc:
        if not _caused_by_rows(exc):
            raise
        # Some row broke the statement: redo the batch one product at a time,
        # so only the product at fault stays behind, named in the report.
    product_ids = [
        row[0]
        for row in fetch_rows(
            sql.SQL("SELECT p.id FROM {} AS p WHERE {} ORDER BY p.id").format(table(schema, "products"), _BATCH_FILTER),
            {"after": after, "upto": upto},
        )
    ]
    for product_id in product_ids:
        try:
            with transaction.atomic():
                _tally(schema, _write_batch(schema, product_id - 1, product_id, options), run, options)
        except DatabaseError as exc:
            if not _caused_by_rows(exc):
                raise
            run.products += 1
            reason = f"database refused its rows: {str(exc).splitlines()[0]}"
            run.errors.append(ProductError(schema, product_id, reason))


def _caused_by_rows(exc: DatabaseError) -> bool:
    sqlstate = getattr(exc.__cause__, "sqlstate", None) or ""
    return sqlstate[:2] in ROW_ERROR_CLASSES


def _write_batch(schema: str, after: int, upto: int, options: MigrationOptions) -> list[tuple]:
    params = {"after": after, "upto": upto, "force": options.force, "run_name": options.run_name}
    source = source_ctes(schema, _BATCH_FILTER, yielded=True)
    product_images = table(schema, "product_images")
    fetch_rows(sql.SQL(_LOCK_BATCH).format(products=table(schema, "products"), product_filter=_BATCH_FILTER), params)
    removal = ((), 0)
    if options.force or options.sync:
        query = sql.SQL(_REMOVE_BATCH).format(
            source=source,
            product_images=product_images,
            removed_images=table(schema, "product_images_removed"),
            differing=sql.SQL(DIFFERING_CTE),
        )
        ((rebuilt_ids, kept_aside),) = fetch_rows(query, params)
        removal = (rebuilt_ids or (), kept_aside)
    # --sync then migrates like a first run: the products it emptied and the new ones have no rows.
    groups = fetch_rows(sql.SQL(_MIGRATE_BATCH).format(source=source, product_images=product_images), params)
    return groups, removal


def _tally(schema: str, written: tuple[list[tuple], tuple], run: TenantRun, options: MigrationOptions) -> None:
    """Add one batch's outcome (the migration's groups, what --force or --sync removed) to the tenant's figures."""
    groups, (rebuilt_ids, kept_aside) = written
    run.rows_kept_aside += kept_aside
    if options.sync and rebuilt_ids:
        run.resynced.add(len(rebuilt_ids), list(rebuilt_ids))
    errors = []
    for error, repairs, is_deleted, already_migrated, products, images, labels, ids in groups:
        run.products += products
        run.soft_deleted += products if is_deleted else 0
        if error is not None:
            errors.extend(ProductError(schema, product_id, error) for product_id in ids)
        elif already_migrated:
            run.already_migrated += products
        else:
            run.images_migrated += images
            run.labels_detected += labels
            if repairs:
                run.repaired += products
                for reason in repairs:
                    run.repair(reason).add(products, ids)
    run.errors.extend(sorted(errors, key=lambda product_error: product_error.product_id))
