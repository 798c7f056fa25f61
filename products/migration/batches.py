"""The batch writer: one tenant's products, walked in batches of ids.

Each batch is one set-based INSERT ... SELECT over the legacy JSON (``source``),
in its own transaction, so an interrupted run leaves whole batches and a re-run
finishes the job. The JSON column is only ever read.

On a live database:

- every statement runs under the job's ``lock_timeout`` and ``statement_timeout`` (``job_session``); a unit
  of work that fails on a lock (timeout, deadlock, serialization failure) is rolled back and retried after a
  backoff, and after ``retries`` retries the tenant is given up as blocked (``TenantBlocked``), naming the
  sessions seen holding the lock (``BlockerWatch``);
- a batch that fails on a row is split in halves, recursively, until the products at fault stand alone:
  a few bad products among thousands cost a few statements each, not one statement per product;
- a dry run rehearses each batch in its own transaction: the batch's writes, then the checks measured on its
  rows (``measure_range``), then a rollback. No transaction spans more than a batch, none holds a savepoint.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TypeVar

from django.db import DatabaseError, transaction
from psycopg import sql

from products.migration.reconcile import Reconciled, reconcile, stale
from products.migration.report import Blocked, ProductError, TenantRun
from products.migration.source import id_range, source_ctes
from products.migration.validation import RangeFigures, measure_range
from stoflow.raw_sql import fetch_rows, table
from stoflow.tenants.blocking import Blocker, BlockerWatch
from stoflow.tenants.locks import JOB_SESSION_SETTINGS
from stoflow.tenants.sessions import session_settings

T = TypeVar("T")

# A session of the job idle inside its own transaction this long is ended by the server: a client frozen
# mid-batch (stopped, swapping) does not keep the batch's row locks. Between statements of a batch the
# client needs milliseconds.
IDLE_IN_TRANSACTION_TIMEOUT = "30s"


@dataclass(frozen=True)
class MigrationOptions:
    dry_run: bool = False
    force: bool = False
    batch_size: int = 1000
    sync: bool = False  # rebuild exactly the products whose rows differ from their JSON
    jobs: int = 1  # tenants migrated at once, each worker on its own database connection
    run_name: str = ""  # names the run in product_images_removed
    run_id: str = ""  # names the run in the ledger
    lock_timeout_ms: int = 2000  # a statement waiting longer than this for a lock gives up (then retries)
    statement_timeout_ms: int = 600_000  # a statement running longer than this is cancelled (0: no limit)
    retries: int = 3  # retries of a unit of work that failed on a lock, before the tenant is reported blocked
    pause_ms: int = 0  # pause between batches, leaving room to the application on a busy primary
    restart: bool = False  # walk every product, even where the ledger says an unfinished run stopped
    allowed: tuple[str, ...] = ()  # triggers/constraints/indexes/rules on product_images the preflight accepts
    follow: bool = False  # install the follower on each tenant whose checks pass (live runs)

    @classmethod
    def from_command_options(cls, options: dict) -> MigrationOptions:
        """migrate_images' parsed options (its durations already in milliseconds) as the engine's options."""
        return cls(
            dry_run=options["dry_run"],
            force=options["force"],
            sync=options["sync"],
            batch_size=options["batch_size"],
            jobs=options["jobs"],
            lock_timeout_ms=options["lock_timeout"],
            statement_timeout_ms=options["statement_timeout"],
            retries=options["retries"],
            pause_ms=options["pause_ms"],
            restart=options["restart"],
            allowed=tuple(options["allow"]),
            follow=options["follow"],
        )


class Progress:
    """Hooks the command uses to show progress; this base shows nothing."""

    def start_tenant(self, schema: str, products: int) -> None: ...

    def advance(self, schema: str, products: int) -> None: ...

    def finish_tenant(self, schema: str) -> None: ...


# SQLSTATEs a unit of work is retried on: it waited too long for a lock (lock_timeout), or it lost to
# another transaction (deadlock, serialization failure).
RETRIED = {"55P03": "lock timeout", "40P01": "deadlock", "40001": "serialization failure"}


class TenantBlocked(Exception):
    """A unit of work failed on locks on every attempt: the tenant is given up, the run goes on."""

    def __init__(self, blocked: Blocked):
        super().__init__(blocked.what)
        self.blocked = blocked


class Guard:
    """Runs units of work, retrying those that fail on a lock, with a backoff; gives up with TenantBlocked."""

    def __init__(
        self, options: MigrationOptions, watch: BlockerWatch | None = None, stop: threading.Event | None = None
    ):
        self.options = options
        self.watch = watch
        self.stop = stop or threading.Event()

    def run(self, what: str, work: Callable[[], T]) -> T:
        """``work()``, retried up to ``options.retries`` times on a lock timeout, deadlock or serialization
        failure (a unit that writes runs in its own transaction, rolled back by the failure)."""
        error: DatabaseError | None = None
        # Every session seen holding the lock, on any attempt (by pid, its latest sighting): an attempt that
        # lost at once (a deadlock) or met another holder does not hide the ones an earlier attempt waited for.
        blockers: dict[int, Blocker] = {}
        attempts = self.options.retries + 1
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                self.pause(self.backoff(attempt - 1))
            try:
                with self.watch.watching() if self.watch else nullcontext():
                    return work()
            except DatabaseError as exc:
                if sqlstate(exc) not in RETRIED:
                    raise
                error = exc
                blockers.update((blocker.pid, blocker) for blocker in (self.watch.seen if self.watch else []))
        raise TenantBlocked(
            Blocked(what, attempts, self.options.lock_timeout_ms, first_line(error), list(blockers.values()))
        )

    def backoff(self, retry: int) -> float:
        """Seconds before retry number ``retry``: the lock timeout (1 s at most), doubled at each retry."""
        return min(self.options.lock_timeout_ms / 1000, 1.0) * 2 ** (retry - 1)

    def pause(self, seconds: float) -> None:
        """Sleep, unless the run is being stopped (parallel workers); Ctrl-C interrupts it in the main thread."""
        if self.stop.wait(seconds):
            raise KeyboardInterrupt


def session_timeouts(options: MigrationOptions) -> dict[str, str]:
    """The settings every statement of a job runs under, set on its session (see ``job_session``)."""
    return {
        "lock_timeout": f"{options.lock_timeout_ms}ms",
        "statement_timeout": f"{options.statement_timeout_ms}ms",
        "idle_in_transaction_session_timeout": IDLE_IN_TRANSACTION_TIMEOUT,
        **JOB_SESSION_SETTINGS,
    }


@contextmanager
def job_session(options: MigrationOptions, stop: threading.Event | None = None) -> Iterator[Guard]:
    """This thread's session under the job's timeouts, watched for blockers: a Guard to run units of work.

    The blocker watch looks once a unit has waited half the lock timeout (at most a second), every tenth of it."""
    with session_settings(session_timeouts(options)):
        ((backend_pid,),) = fetch_rows(sql.SQL("SELECT pg_backend_pid()"))
        timeout = options.lock_timeout_ms / 1000
        with BlockerWatch(backend_pid, after=min(timeout / 2, 1.0), every=max(min(timeout / 10, 0.1), 0.01)) as watch:
            yield Guard(options, watch, stop)


def sqlstate(exc: DatabaseError) -> str:
    return getattr(exc.__cause__, "sqlstate", None) or ""


def first_line(exc: BaseException | None) -> str:
    return str(exc).strip().splitlines()[0] if exc and str(exc).strip() else type(exc).__name__


# SQLSTATE classes a product's own rows can cause: data exception, integrity
# constraint violation, an error raised by a trigger. Any other database error
# (connection lost, missing table, out of memory) stops the run.
ROW_ERROR_CLASSES = ("22", "23", "P0")

# A first migration of the batch's products that have no rows. Each product it inserts (or refuses) gets its
# product_json_state, the digest of the JSON read: --sync later finds the products whose JSON changed since.
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
    WHERE NOT t.has_rows
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
),
recorded AS (
    INSERT INTO {json_state} AS st (product_id, json_digest, refused, recorded_at)
    SELECT t.id, md5(p.images::text)::uuid, t.error, now()
    FROM todo AS t JOIN {products} AS p ON p.id = t.id
    WHERE NOT t.has_rows
    ON CONFLICT (product_id) DO UPDATE
    SET json_digest = EXCLUDED.json_digest, refused = EXCLUDED.refused, recorded_at = EXCLUDED.recorded_at
)
SELECT t.error,
       t.repairs,
       t.is_deleted,
       t.has_rows AS already_migrated,
       count(*) AS products,
       COALESCE(sum(i.images), 0)::bigint AS images,
       COALESCE(sum(i.labels), 0)::bigint AS labels,
       array_agg(t.id ORDER BY t.id) FILTER (WHERE t.error IS NOT NULL OR cardinality(t.repairs) > 0) AS ids
FROM todo AS t
LEFT JOIN inserted_per_product AS i ON i.product_id = t.id
GROUP BY 1, 2, 3, 4"""

# --force: the batch's products that have rows, brought to their JSON keeping the ids of the rows whose URL
# stays (reconcile).
_RECONCILED = """{batch}
AND EXISTS (SELECT 1 FROM {product_images} AS pi WHERE pi.product_id = p.id)"""

# --sync: of the batch's products, those whose rows it reconciles (they have rows, and their JSON changed since,
# was refused or was never recorded: reconcile.STALE), those it locks and whose JSON it reads (those, and the
# products without rows: new, or emptied), and how many it leaves as they are, not soft-deleted and soft-deleted
# (rows reconciled with the JSON they still have: already migrated). Each product's digest is read once; the JSON
# of the products left as they are is never decoded, nor are they locked, so a day of changes costs what the
# changed products cost.
# (Materialized: otherwise each reference below would compute the digest again, four times a product.)
_SYNC_SPLIT = """WITH split AS MATERIALIZED (
    SELECT p.id, p.deleted_at IS NOT NULL AS is_deleted, {stale} AS is_stale,
           EXISTS (SELECT 1 FROM {product_images} AS pi WHERE pi.product_id = p.id) AS has_rows
    FROM {products} AS p
    WHERE {batch}
)
SELECT array_agg(id ORDER BY id) FILTER (WHERE has_rows AND is_stale),
       array_agg(id ORDER BY id) FILTER (WHERE is_stale OR NOT has_rows),
       count(*) FILTER (WHERE has_rows AND NOT is_stale AND NOT is_deleted),
       count(*) FILTER (WHERE has_rows AND NOT is_stale AND is_deleted)
FROM split"""

# The batch's products, locked as the image service locks a product before it
# writes: a service call and a batch on the same product queue up, and the
# batch's later statements read the JSON the service committed.
_LOCK_BATCH = """SELECT count(*) FROM (
    SELECT 1 FROM {products} AS p WHERE {product_filter} ORDER BY p.id FOR UPDATE
) AS locked"""

_BATCH_END = """SELECT max(id) FROM (
    SELECT p.id FROM {products} AS p WHERE {after} ORDER BY p.id LIMIT %(batch_size)s
) AS batch"""
_COUNT = "SELECT count(*) FROM {products} AS p WHERE {after}"
_IDS = "SELECT p.id FROM {products} AS p WHERE {product_filter} ORDER BY p.id"


@dataclass
class _Walk:
    schema: str
    options: MigrationOptions
    run: TenantRun
    guard: Guard
    rehearsal: RangeFigures | None  # a dry run's checks, measured batch by batch

    def error_ids(self) -> list[int]:
        return [error.product_id for error in self.run.errors]


def migrate_batches(
    schema: str,
    options: MigrationOptions,
    progress: Progress,
    stop: threading.Event,
    *,
    run: TenantRun | None = None,
    guard: Guard | None = None,
    after: int | None = None,
    upto: int | None = None,
    on_batch: Callable[[int], None] | None = None,
    rehearsal: RangeFigures | None = None,
    product_count: int | None = None,
) -> TenantRun:
    """Walk the tenant's products with ids in (``after``, ``upto``] (None: no bound), one batch after the other.

    ``run`` collects the figures as batches finish (given, it holds them even if the walk stops part-way);
    ``on_batch(last id)`` is called after each batch, outside its transaction (the ledger); a dry run passes
    ``rehearsal``, which collects the checks measured in each batch's rehearsal and over the ids past the last;
    ``product_count``: how many the walk will meet, for its progress bar, when the caller counted them already.
    """
    run = run if run is not None else TenantRun()
    guard = guard or Guard(options, stop=stop)
    walk = _Walk(schema, options, run, guard, rehearsal)
    products = table(schema, "products")
    bound = upto
    count = sql.SQL(_COUNT).format(products=products, after=id_range("p.id", after, bound))
    remaining = product_count
    if remaining is None:
        remaining = guard.run("counting the products", lambda: fetch_rows(count, {"after": after, "upto": bound})[0][0])
    progress.start_tenant(schema, remaining)
    try:
        while True:
            if stop.is_set():
                raise KeyboardInterrupt
            batch_end = sql.SQL(_BATCH_END).format(products=products, after=id_range("p.id", after, bound))
            params = {"after": after, "upto": bound, "batch_size": options.batch_size}
            (upto,) = guard.run("finding the next batch", lambda query=batch_end, p=params: fetch_rows(query, p)[0])
            if upto is None:
                break
            _migrate_range(walk, after, upto)
            if on_batch:
                on_batch(upto)
            # Every batch but the last holds exactly batch_size products.
            progress.advance(schema, min(options.batch_size, remaining))
            remaining -= options.batch_size
            after = upto
            if options.pause_ms:
                guard.pause(options.pause_ms / 1000)
        if rehearsal is not None and (bound is None or after != bound):
            # What lies past the last product (rows whose product is gone), as a live run's validation counts it.
            rehearsal.add(
                guard.run("validating the rehearsal", lambda: measure_range(schema, after, bound, walk.error_ids()))
            )
    finally:
        progress.finish_tenant(schema)  # also when the walk stops part-way: its bar goes
    return run


def _migrate_range(walk: _Walk, after: int | None, upto: int) -> None:
    """Products with ids in (after, upto]: one transaction; on a row the database refuses, the two halves."""
    try:
        written, figures = walk.guard.run(_products_in(after, upto), lambda: _attempt(walk, after, upto))
    except DatabaseError as exc:
        if not _caused_by_rows(exc):
            raise
        product_ids = _ids_in_range(walk, after, upto)
        if len(product_ids) > 1:
            # Some row broke the statement: each half on its own, so only the products at fault stay behind.
            middle = product_ids[len(product_ids) // 2 - 1]
            _migrate_range(walk, after, middle)
            _migrate_range(walk, middle, upto)
            return
        for product_id in product_ids:
            walk.run.products += 1
            reason = f"database refused its rows: {first_line(exc)}"
            walk.run.errors.append(ProductError(walk.schema, product_id, reason))
        if walk.rehearsal is not None:
            # Its rows (if any) are left as they are; the checks still count them, as a live run's would.
            walk.rehearsal.add(
                walk.guard.run(
                    _products_in(after, upto), lambda: measure_range(walk.schema, after, upto, walk.error_ids())
                )
            )
        return
    _tally(walk.schema, written, walk.run, walk.options)
    if figures is not None:
        walk.rehearsal.add(figures)


def _attempt(walk: _Walk, after: int | None, upto: int) -> tuple[tuple, RangeFigures | None]:
    """One transaction for products with ids in (after, upto]; a dry run measures its checks, then rolls back."""
    with transaction.atomic():
        written = _write_batch(walk.schema, after, upto, walk.options)
        if walk.rehearsal is None:
            return written, None
        figures = measure_range(
            walk.schema, after, upto, walk.error_ids(), spot_check=walk.rehearsal.spot_check is None
        )
        transaction.set_rollback(True)
        return written, figures


def _ids_in_range(walk: _Walk, after: int | None, upto: int) -> list[int]:
    query = sql.SQL(_IDS).format(products=table(walk.schema, "products"), product_filter=id_range("p.id", after, upto))
    rows = walk.guard.run(_products_in(after, upto), lambda: fetch_rows(query, {"after": after, "upto": upto}))
    return [product_id for (product_id,) in rows]


def _products_in(after: int | None, upto: int | None) -> str:
    return f"products ({'-inf' if after is None else after}, {'+inf' if upto is None else upto}]"


def _caused_by_rows(exc: DatabaseError) -> bool:
    sqlstate = getattr(exc.__cause__, "sqlstate", None) or ""
    return sqlstate[:2] in ROW_ERROR_CLASSES


def _write_batch(schema: str, after: int | None, upto: int, options: MigrationOptions) -> tuple:
    params = {"after": after, "upto": upto, "run_name": options.run_name}
    products, product_images = table(schema, "products"), table(schema, "product_images")
    batch_filter = id_range("p.id", after, upto)
    written_filter = batch_filter  # the products locked, then read by the first migration below
    left_as_they_are = []  # --sync: the groups of the products it does not read, shaped as _MIGRATE_BATCH's
    stale_ids = []
    if options.sync:
        # Read before the lock, so that only the products --sync may write are locked: a product whose JSON
        # changes in between is the next run's, as one written after the batch.
        split = sql.SQL(_SYNC_SPLIT).format(
            products=products, product_images=product_images, stale=stale(schema), batch=batch_filter
        )
        ((stale_ids, read_ids, kept, kept_deleted),) = fetch_rows(split, params)
        stale_ids, params["read_ids"] = stale_ids or [], read_ids or []
        written_filter = sql.SQL("p.id = ANY(%(read_ids)s::bigint[])")
        # (error, repairs, soft-deleted, already migrated, products, images, labels, ids)
        left_as_they_are = [
            (None, [], deleted, True, count, 0, 0, None)
            for deleted, count in ((False, kept), (True, kept_deleted))
            if count
        ]
        if not read_ids:
            return left_as_they_are, Reconciled()
    fetch_rows(sql.SQL(_LOCK_BATCH).format(products=products, product_filter=written_filter), params)
    reconciled = Reconciled()
    if options.force:
        product_filter = sql.SQL(_RECONCILED).format(batch=batch_filter, product_images=product_images)
        reconciled = reconcile(schema, product_filter, params, options.run_name)
    elif stale_ids:
        reconciled = reconcile(schema, sql.SQL("p.id = ANY(%(ids)s::bigint[])"), {"ids": stale_ids}, options.run_name)
    # Then a first migration of the products that have no rows (new products, and those --force or --sync left
    # without rows because their JSON is empty).
    query = sql.SQL(_MIGRATE_BATCH).format(
        source=source_ctes(schema, written_filter, yielded=True),
        product_images=product_images,
        products=products,
        json_state=table(schema, "product_json_state"),
    )
    return fetch_rows(query, params) + left_as_they_are, reconciled


def _tally(schema: str, written: tuple[list[tuple], Reconciled], run: TenantRun, options: MigrationOptions) -> None:
    """Add one batch's outcome (the migration's groups, what --force or --sync reconciled) to the tenant's figures."""
    groups, reconciled = written
    run.rows_kept_aside += reconciled.rows_kept_aside
    run.references_removed += reconciled.references_removed
    if reconciled.changed:
        run.resynced.add(len(reconciled.changed), reconciled.changed)
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
