"""The image migration: legacy ``products.images`` JSON to ``product_images`` rows.

Per tenant: take the tenant's advisory lock (or report it busy), walk its
products in batches of ids, and run one set-based INSERT ... SELECT per batch,
each batch in its own transaction, so an interrupted run leaves whole batches
and a re-run finishes the job. The JSON column is only ever read.

With ``jobs`` > 1, tenants run in worker threads, each on its own database
connection (Django's connections are per thread); the report keeps tenant order.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import DatabaseError, connection, transaction
from psycopg import sql

from products.image_source import source_ctes, table
from products.report import Interruption, MigrationReport, ProductError, TenantReport, TenantRun
from products.selectors import validate_tenant
from stoflow.db import fetchall

# The tenant's advisory lock key: this namespace in the high 32 bits, the
# schema's OID (unique in the database, unlike a hash of its name) in the low ones.
ADVISORY_LOCK_NAMESPACE = 0x5709F10
LOCK_KEY_SQL = "(%(namespace)s::bigint << 32) | (SELECT oid::bigint FROM pg_namespace WHERE nspname = %(schema)s)"
MINIMUM_SERVER_VERSION = 160000  # pg_input_is_valid, used to read bad JSON without failing


class MigrationAborted(Exception):
    """The database failed in a way no single product explains; the run stops."""

    def __init__(self, schema: str, cause: DatabaseError):
        super().__init__(f"{schema}: {str(cause).strip()}")
        self.schema = schema


@dataclass(frozen=True)
class MigrationOptions:
    dry_run: bool = False
    force: bool = False
    batch_size: int = 1000
    jobs: int = 1  # tenants migrated at once, each worker on its own database connection


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
    SELECT c.product_id,
           c.url,
           CASE WHEN t.keeps_orders THEN c.source_order::integer
                ELSE (row_number() OVER (PARTITION BY c.product_id
                                         ORDER BY c.source_order NULLS LAST, c.position) - 1)::integer
           END AS "order",
           COALESCE(c.created_at, t.product_created_at, now()) AS created_at,
           t.image_count
    FROM checked AS c
    JOIN todo AS t ON t.id = c.product_id
    WHERE t.error IS NULL AND (%(force)s OR NOT t.has_rows)
),
inserted AS (
    INSERT INTO {product_images} (product_id, url, "order", is_label, created_at, updated_at)
    SELECT product_id, url, "order",
           image_count >= 2 AND "order" = max("order") OVER (PARTITION BY product_id),
           created_at, now()
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
_DELETE_BATCH = """WITH {source}
DELETE FROM {product_images} AS pi
USING status AS s
WHERE pi.product_id = s.id AND s.error IS NULL AND s.image_count > 0"""

_BATCH_END = """SELECT max(id) FROM (
    SELECT id FROM {products} WHERE id > %(after)s ORDER BY id LIMIT %(batch_size)s
) AS batch"""


def migrate_images(schemas: list[str], options: MigrationOptions, progress: Progress | None = None) -> MigrationReport:
    """Migrate and validate each tenant; Ctrl-C ends the run with what is done."""
    report = MigrationReport(mode="dry-run" if options.dry_run else "live", started_at=datetime.now(UTC))
    progress = progress or Progress()
    report.tenants, report.interruption = for_each_tenant(
        schemas, options.jobs, lambda schema, stop: migrate_tenant(schema, options, progress, stop)
    )
    return report


TenantWork = Callable[[str, threading.Event], TenantReport]


def for_each_tenant(schemas: list[str], jobs: int, work: TenantWork) -> tuple[list[TenantReport], Interruption | None]:
    """Run ``work`` on each tenant, ``jobs`` at a time; reports come back in the order of ``schemas``.

    ``work`` gets an event set on Ctrl-C (parallel workers never see the signal
    themselves) and stops between batches by raising KeyboardInterrupt.
    """
    if jobs == 1:
        # In the calling thread and on its connection (tests run inside their transaction).
        reports = []
        for number, schema in enumerate(schemas):
            try:
                reports.append(_run_work(work, schema, threading.Event()))
            except KeyboardInterrupt:
                return reports, Interruption(stopped_in=[schema], not_started=schemas[number + 1 :])
        return reports, None
    return _for_each_tenant_in_parallel(schemas, jobs, work)


def _for_each_tenant_in_parallel(
    schemas: list[str], jobs: int, work: TenantWork
) -> tuple[list[TenantReport], Interruption | None]:
    pending: queue.SimpleQueue[str] = queue.SimpleQueue()
    for schema in schemas:
        pending.put(schema)
    stop = threading.Event()
    done: dict[str, TenantReport] = {}
    stopped_in: list[str] = []
    failures: list[MigrationAborted] = []

    def worker() -> None:
        try:
            while not stop.is_set():
                try:
                    schema = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    done[schema] = _run_work(work, schema, stop)
                except KeyboardInterrupt:
                    stopped_in.append(schema)
                except MigrationAborted as exc:
                    failures.append(exc)
                    stop.set()
        finally:
            connection.close()  # each worker thread opened its own
            finished.put(threading.current_thread().name)

    # Workers report their end on a queue rather than being joined: on Python 3.11
    # a join cut short by Ctrl-C can mark a thread that is still running as stopped.
    finished: queue.SimpleQueue[str] = queue.SimpleQueue()
    running = min(jobs, len(schemas))
    for number in range(running):
        threading.Thread(target=worker, name=f"migrate_images-{number}").start()
    interrupted = False
    while running:
        try:
            # A short wait, so Ctrl-C is handled promptly whichever thread the signal reached.
            finished.get(timeout=0.1)
        except queue.Empty:
            continue
        except KeyboardInterrupt:
            interrupted = True
            stop.set()
            continue
        running -= 1
    if failures:
        raise failures[0]
    reports = [done[schema] for schema in schemas if schema in done]
    if not interrupted:
        return reports, None
    not_started = [schema for schema in schemas if schema not in done and schema not in stopped_in]
    return reports, Interruption(stopped_in=sorted(stopped_in, key=schemas.index), not_started=not_started)


def _run_work(work: TenantWork, schema: str, stop: threading.Event) -> TenantReport:
    try:
        return work(schema, stop)
    except DatabaseError as exc:
        raise MigrationAborted(schema, exc) from exc


def preflight_problems(schemas: list[str]) -> list[str]:
    """What keeps the migration from running at all: an old server, tenants without the tables."""
    problems = []
    if connection.pg_version < MINIMUM_SERVER_VERSION:
        problems.append(f"PostgreSQL 16 or newer is needed; this server is version {connection.pg_version}.")
    missing = fetchall(
        sql.SQL(
            "SELECT schema_name FROM unnest(%(schemas)s::text[]) AS schema_name "
            "WHERE to_regclass(quote_ident(schema_name) || '.products') IS NULL "
            "OR to_regclass(quote_ident(schema_name) || '.product_images') IS NULL"
        ),
        {"schemas": schemas},
    )
    if missing:
        names = ", ".join(name for (name,) in missing)
        problems.append(f"No products/product_images tables in {names}: run `manage.py migrate_schemas` first.")
    return problems


def check_images(schemas: list[str], jobs: int = 1) -> MigrationReport:
    """Validation only: the six checks per tenant, nothing written."""
    report = MigrationReport(mode="check", started_at=datetime.now(UTC))
    report.tenants, report.interruption = for_each_tenant(schemas, jobs, lambda schema, stop: check_tenant(schema))
    return report


def check_tenant(schema: str) -> TenantReport:
    tenant = TenantReport(schema)
    with _timed(tenant, "validate"):
        tenant.validation = validate_tenant(schema)
    return tenant


def migrate_tenant(
    schema: str, options: MigrationOptions, progress: Progress, stop: threading.Event | None = None
) -> TenantReport:
    with tenant_lock(schema) as acquired:
        if not acquired:
            return TenantReport(schema, busy=True)
        # A dry run makes the very same writes, then rolls them back.
        with transaction.atomic() if options.dry_run else nullcontext():
            tenant = TenantReport(schema)
            with _timed(tenant, "migrate"):
                tenant.run = _migrate_batches(schema, options, progress, stop or threading.Event())
            with _timed(tenant, "validate"):
                if tenant.run.images_migrated:
                    # Fresh statistics: planned on those of an empty table, the validation
                    # joins of a large tenant run for hours instead of seconds.
                    fetchall(sql.SQL("ANALYZE {}").format(table(schema, "product_images")))
                tenant.validation = validate_tenant(schema, [error.product_id for error in tenant.run.errors])
            if options.dry_run:
                transaction.set_rollback(True)
        return tenant


@contextmanager
def _timed(tenant: TenantReport, phase: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    tenant.seconds[phase] = time.perf_counter() - started


@contextmanager
def tenant_lock(schema: str) -> Iterator[bool]:
    """A session-level advisory lock on the tenant: yields False when another run holds it."""
    key = {"namespace": ADVISORY_LOCK_NAMESPACE, "schema": schema}
    ((acquired,),) = fetchall(sql.SQL(f"SELECT pg_try_advisory_lock({LOCK_KEY_SQL})"), key)
    try:
        yield acquired
    finally:
        if acquired:
            fetchall(sql.SQL(f"SELECT pg_advisory_unlock({LOCK_KEY_SQL})"), key)


def _migrate_batches(schema: str, options: MigrationOptions, progress: Progress, stop: threading.Event) -> TenantRun:
    products = table(schema, "products")
    run = TenantRun()
    remaining = fetchall(sql.SQL("SELECT count(*) FROM {}").format(products), {})[0][0]
    progress.start_tenant(schema, remaining)
    batch_end = sql.SQL(_BATCH_END).format(products=products)
    after = 0
    while True:
        if stop.is_set():
            raise KeyboardInterrupt
        (upto,) = fetchall(batch_end, {"after": after, "batch_size": options.batch_size})[0]
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
            _tally(schema, _write_batch(schema, after, upto, options), run)
        return
    except DatabaseError as exc:
        if not _caused_by_rows(exc):
            raise
        # Some row broke the statement: redo the batch one product at a time,
        # so only the product at fault stays behind, named in the report.
    product_ids = [
        row[0]
        for row in fetchall(
            sql.SQL("SELECT p.id FROM {} AS p WHERE {} ORDER BY p.id").format(table(schema, "products"), _BATCH_FILTER),
            {"after": after, "upto": upto},
        )
    ]
    for product_id in product_ids:
        try:
            with transaction.atomic():
                _tally(schema, _write_batch(schema, product_id - 1, product_id, options), run)
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
    params = {"after": after, "upto": upto, "force": options.force}
    source = source_ctes(schema, _BATCH_FILTER)
    product_images = table(schema, "product_images")
    if options.force:
        fetchall(sql.SQL(_DELETE_BATCH).format(source=source, product_images=product_images), params)
    return fetchall(sql.SQL(_MIGRATE_BATCH).format(source=source, product_images=product_images), params)


def _tally(schema: str, groups: list[tuple], run: TenantRun) -> None:
    """Add one batch's outcome, grouped by the statement, to the tenant's figures."""
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
