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
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TypeVar

from django.db import DatabaseError, transaction
from psycopg import sql

from products.migration.pace import BatchSizer, Gate
from products.migration.reconcile import Reconciled, reconcile, reserve, stale
from products.migration.report import Blocked, Pace, ProductError, TenantRun
from products.migration.source import id_range, json_digest, rows_digest, source_ctes, yielded_rows
from products.migration.validation import RangeFigures, measure_range
from stoflow.raw_sql import execute, fetch_rows, table
from stoflow.tenants.blocking import Blocker, BlockerWatch
from stoflow.tenants.citus import is_citus
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
    # A statement running longer than this is cancelled (0: no limit; None: the session's own, as finalize_images
    # and restore_images_json keep it).
    statement_timeout_ms: int | None = 600_000
    retries: int = 3  # retries of a unit of work that failed on a lock, before the tenant is reported blocked
    pause_ms: int = 0  # pause between batches, leaving room to the application on a busy primary
    restart: bool = False  # walk every product, even where the ledger says an unfinished run stopped
    allowed: tuple[str, ...] = ()  # triggers/constraints/indexes/rules on product_images the preflight accepts
    follow: bool = False  # install the follower on each tenant whose checks pass (live runs)
    batch_time_ms: int = 0  # the time each batch should take: its size follows (0: batch_size, fixed)
    watch_health: bool = True  # wait before a batch while a health signal is over its limit (pace.py)
    max_replica_lag_ms: int = 5000  # the standbys' replay lag above which batches wait (0: not watched)
    max_lock_waiters: int = 0  # other sessions waiting for locks on the tenant's tables above which batches wait
    max_failures: int = 0  # start no further tenant once this many failed, were blocked or failed a check (0: no bound)

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
            batch_time_ms=options["batch_time"] or 0,
            watch_health=not options["ignore_health"],
            max_replica_lag_ms=options["max_replica_lag"],
            max_lock_waiters=options["max_lock_waiters"],
            max_failures=options["max_failures"],
        )


class Progress:
    """Hooks the command uses to show progress; this base shows nothing."""

    def start_tenant(self, schema: str, products: int) -> None: ...

    def advance(self, schema: str, products: int) -> None: ...

    def finish_tenant(self, schema: str) -> None: ...


# SQLSTATEs a unit of work is retried on: it waited too long for a lock (lock_timeout), or it lost to
# another transaction (deadlock, serialization failure).
RETRIED = {"55P03": "lock timeout", "40P01": "deadlock", "40001": "serialization failure"}
STATEMENT_TIMEOUT = "57014"  # query_canceled: statement_timeout (or a cancel from another session)
# A batch following --batch-time is also retried, halved, after its statement ran out of time.
RETRIED_HALVED = {**RETRIED, STATEMENT_TIMEOUT: "statement timeout"}


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

    def run(
        self,
        what: str,
        work: Callable[[], T],
        *,
        retried: Collection[str] = RETRIED,
        before_retry: Callable[[], None] | None = None,
    ) -> T:
        """``work()``, retried up to ``options.retries`` times on a lock timeout, deadlock or serialization
        failure (a unit that writes runs in its own transaction, rolled back by the failure).

        ``retried``: the SQLSTATEs retried instead; ``before_retry()`` runs after such a failure, before the
        backoff (a batch following --batch-time halves there)."""
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
                if sqlstate(exc) not in retried:
                    raise
                error = exc
                blockers.update((blocker.pid, blocker) for blocker in (self.watch.seen if self.watch else []))
                if before_retry is not None and attempt < attempts:
                    before_retry()
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
    statement_timeout = (
        {} if options.statement_timeout_ms is None else {"statement_timeout": f"{options.statement_timeout_ms}ms"}
    )
    return {
        "lock_timeout": f"{options.lock_timeout_ms}ms",
        **statement_timeout,
        "idle_in_transaction_session_timeout": IDLE_IN_TRANSACTION_TIMEOUT,
        **JOB_SESSION_SETTINGS,
    }


@contextmanager
def job_session(options: MigrationOptions, stop: threading.Event | None = None) -> Iterator[Guard]:
    """This thread's session under the job's timeouts (also in each of its transactions, for Citus' workers:
    ``session_settings``), watched for blockers: a Guard to run units of work.

    The blocker watch looks once a unit has waited half the lock timeout (at most a second; a quarter on Citus),
    every tenth of it."""
    with session_settings(session_timeouts(options)) as backend_pid:
        # On Citus the waits happen on the workers: the watch follows this backend by its global pid.
        global_pid = fetch_rows(sql.SQL("SELECT citus_backend_gpid()"))[0][0] if is_citus() else None
        timeout = options.lock_timeout_ms / 1000
        every = max(min(timeout / 10, 0.1), 0.01)
        # A look on Citus asks every node (over 100 ms): it starts at a quarter of the lock timeout there.
        after = min(timeout / (2 if global_pid is None else 4), 1.0)
        with BlockerWatch(backend_pid, after=after, every=every, global_pid=global_pid) as watch:
            yield Guard(options, watch, stop)


def sqlstate(exc: DatabaseError) -> str:
    return getattr(exc.__cause__, "sqlstate", None) or ""


def first_line(exc: BaseException | None) -> str:
    return str(exc).strip().splitlines()[0] if exc and str(exc).strip() else type(exc).__name__


# SQLSTATE classes a product's own rows can cause: data exception, integrity
# constraint violation, an error raised by a trigger. Any other database error
# (connection lost, missing table, out of memory) stops the run.
ROW_ERROR_CLASSES = ("22", "23", "P0")

# A first migration of the batch's products that have no rows. The JSON is read once into ``batch`` (one row per
# product: its outcome, and its rows as arrays where it has none yet); the outcome is counted there; the rows and
# each product's product_json_state (the digest of the JSON read: --sync later finds the products whose JSON
# changed since; the digest of the rows it yields: the validation skips decoding the JSON again) are inserted
# from it. The same fragments make two statements' shapes:
#
# - on PostgreSQL, one statement: ``batch`` a MATERIALIZED CTE, the inserts CTEs of the outcome's SELECT;
# - on Citus, plain statements each run whole on the tenant's worker (one task: tests/test_citus.py), because
#   Citus cuts a statement with INSERTs in CTEs into subplans whose results travel to the coordinator and back,
#   once per CTE that reads them. ``batch`` is the tenant's product_images_batch table, written by the reading
#   and emptied at the end of the batch's transaction; the rows get ids reserved from their sequence in a
#   statement of its own (an identity default is volatile: Citus would pull the INSERT to the coordinator, where
#   a row the database refuses loses its SQLSTATE, and a batch could no longer be halved down to the products
#   at fault) and the transaction's time as a value. Citus 13.1 rewrites an INSERT ... SELECT it sends to a
#   worker when the SELECT holds functions whose value may change (now(), the reading's timestamp casts), and
#   rewrites it wrong (a filter on a distribution column schema-distributed tables do not have, a simple CASE
#   evaluated away): the reading stays a MATERIALIZED CTE, which Citus runs as a SELECT on the worker before
#   copying its result into the table (the one statement whose data passes through the coordinator).
_READ_BATCH = """WITH {source}
SELECT s.id, s.product_created_at, s.is_deleted, s.error, s.repairs, r.has_rows,
       {json_digest} AS json_digest,
       -- The rows only where they will be inserted: --sync reads products that have rows.
       CASE WHEN NOT r.has_rows THEN s.urls END AS urls,
       CASE WHEN NOT r.has_rows THEN s.orders END AS orders,
       CASE WHEN NOT r.has_rows THEN s.label_flags END AS label_flags,
       CASE WHEN NOT r.has_rows THEN s.created_ats END AS created_ats
FROM status AS s
JOIN {products} AS p ON p.id = s.id
CROSS JOIN LATERAL (
    -- One probe of the index per product. Without the fences (OFFSET 0) PostgreSQL repeats the EXISTS at each of
    -- the five references to has_rows, and, trusting statistics taken while the table was empty, runs each as a
    -- hashed subplan: a scan of all of product_images, five times a batch. The 61st batch of the 30x tenant spent
    -- 375 ms of its 1,033 hashing the 358,720 rows written before it; the whole tenant's first backfill did work
    -- growing with the square of its size.
    SELECT EXISTS (SELECT 1 FROM {product_images} AS pi WHERE pi.product_id = s.id OFFSET 0) AS has_rows
    OFFSET 0
) AS r
WHERE s.image_count > 0 OR s.error IS NOT NULL"""

# The batch's outcome grouped by (error, repairs, soft-deleted, already migrated); images and labels are those
# the rows insert writes (a product without an error yields one row per url, its label last).
_BATCH_OUTCOME = """SELECT b.error,
       b.repairs,
       b.is_deleted,
       b.has_rows AS already_migrated,
       count(*) AS products,
       COALESCE(sum(cardinality(b.urls)) FILTER (WHERE NOT b.has_rows AND b.error IS NULL), 0)::bigint AS images,
       count(*) FILTER (WHERE NOT b.has_rows AND b.error IS NULL AND b.label_flags[cardinality(b.label_flags)])
           AS labels,
       array_agg(b.id ORDER BY b.id) FILTER (WHERE b.error IS NOT NULL OR cardinality(b.repairs) > 0) AS ids
FROM {batch} AS b
WHERE {batch_filter}
GROUP BY 1, 2, 3, 4"""

# No CTE here: Citus plans an INSERT ... SELECT with one as a pull to the coordinator.
_INSERT_ROWS = """INSERT INTO {product_images} ({id_column}product_id, url, "order", is_label, created_at, updated_at)
SELECT {id_value}y.product_id, y.url, y."order", y.is_label, y.created_at, {now}
FROM ({yielded}) AS y"""
_NEW_PRODUCTS = "(SELECT * FROM {batch} AS b WHERE {batch_filter} AND NOT b.has_rows)"

_RECORD_STATE = """INSERT INTO {json_state} AS st (product_id, json_digest, rows_digest, refused, recorded_at)
SELECT b.id, b.json_digest, CASE WHEN b.error IS NULL THEN {rows_digest} END, b.error, {now}
FROM {batch} AS b
WHERE {batch_filter} AND NOT b.has_rows
ON CONFLICT (product_id) DO UPDATE
SET json_digest = EXCLUDED.json_digest, rows_digest = EXCLUDED.rows_digest, refused = EXCLUDED.refused,
    recorded_at = EXCLUDED.recorded_at"""

# On PostgreSQL: the whole first migration in one statement.
_MIGRATE_BATCH = """WITH batch AS MATERIALIZED (
{read}
),
inserted AS (
{insert_rows}
),
recorded AS (
{record_state}
)
{outcome}"""

# On Citus: the reading into the tenant's table, the transaction's time and the rows' ids (as the array's
# text, handed back as it came: a batch's thousands of ids are never made Python ints), the cleanup. The rows
# digest is computed here, in the MATERIALIZED CTE, from the reading's arrays (OFFSET 0: each array built once):
# in the state's INSERT ... SELECT, its casts of arrays to text (stable functions) had Citus 13.1 rewrite that
# statement wrong ("syntax error at or near NOT": a filter on a distribution column without its column).
_READ_INTO_TABLE = """WITH batch AS MATERIALIZED (
SELECT r.*, CASE WHEN NOT r.has_rows AND r.error IS NULL THEN {rows_digest} END AS rows_digest
FROM (
{read}
OFFSET 0
) AS r
)
INSERT INTO {batch} (id, product_created_at, is_deleted, error, repairs, has_rows, json_digest,
                     urls, orders, label_flags, created_ats, rows_digest)
SELECT * FROM batch"""
_RESERVE_IDS = "SELECT now(), {reserve}::text"
_FORGET_BATCH = "DELETE FROM {batch} AS b WHERE {batch_filter}"

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
       count(*) FILTER (WHERE has_rows AND NOT is_stale AND is_deleted),
       array_agg(id ORDER BY id) FILTER (WHERE has_rows AND is_stale AND is_deleted)
FROM split"""

# The batch's products, locked as the image service locks a product before it
# writes: a service call and a batch on the same product queue up, and the
# batch's later statements read the JSON the service committed.
_LOCK_BATCH = """SELECT count(*) FROM (
    SELECT 1 FROM {products} AS p WHERE {product_filter} ORDER BY p.id FOR UPDATE
) AS locked"""

_BATCH_END = """SELECT max(id), count(*) FROM (
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
    pace: Pace | None = None,
) -> TenantRun:
    """Walk the tenant's products with ids in (``after``, ``upto``] (None: no bound), one batch after the other.

    ``run`` collects the figures as batches finish (given, it holds them even if the walk stops part-way);
    ``on_batch(last id)`` is called after each batch, outside its transaction, through the Guard (the ledger:
    a write a lock held elsewhere makes wait is retried, then the tenant is blocked); a dry run passes
    ``rehearsal``, which collects the checks measured in each batch's rehearsal and over the ids past the last;
    ``product_count``: how many the walk will meet, for its progress bar, when the caller counted them already;
    ``pace`` collects the batches' sizes and the waits before them (``pace.py``).
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
    pace = pace if pace is not None else Pace()
    gate = Gate(schema, options, stop, pace)
    sizer = BatchSizer(options, pace)
    try:
        while True:
            batch = _Batch(walk, sizer, products, after, bound, sizer.size)
            if batch.upto is None:
                break
            # Ctrl-C, a pause or cancel asked from elsewhere, the database's health: between batches only.
            gate.before_batch()
            started = time.perf_counter()
            _migrate_range(walk, after, batch.upto, batch.shrink if sizer.adaptive else None)
            sizer.measured(batch.products, time.perf_counter() - started, batch.asked)
            if on_batch:
                guard.run("recording the batch in the ledger", lambda last_id=batch.upto: on_batch(last_id))
            progress.advance(schema, batch.products)
            after = batch.upto
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


class _Batch:
    """The next batch of a walk: up to ``asked`` products after ``after`` (none past ``bound``); ``upto`` its last
    id (None: no product left). Following --batch-time, ``shrink`` cuts it to half the size after a timeout."""

    def __init__(
        self,
        walk: _Walk,
        sizer: BatchSizer,
        products: sql.Composable,
        after: int | None,
        bound: int | None,
        asked: int,
    ):
        self.walk, self.sizer, self.products_table = walk, sizer, products
        self.after, self.bound, self.asked = after, bound, asked
        self.upto, self.products = self._end(asked)

    def _end(self, size: int) -> tuple[int | None, int]:
        query = sql.SQL(_BATCH_END).format(products=self.products_table, after=id_range("p.id", self.after, self.bound))
        params = {"after": self.after, "upto": self.bound, "batch_size": size}
        return self.walk.guard.run("finding the next batch", lambda: fetch_rows(query, params)[0])

    def shrink(self) -> int:
        """After the batch's transaction was rolled back on a timeout: half as many products; the new last id."""
        self.asked = self.sizer.halve()
        self.upto, self.products = self._end(self.asked)
        return self.upto


def _migrate_range(walk: _Walk, after: int | None, upto: int, shrink: Callable[[], int] | None = None) -> None:
    """Products with ids in (after, upto]: one transaction; on a row the database refuses, the two halves.

    ``shrink`` (a walk following --batch-time): a lock or statement timeout halves the batch before the retry;
    it returns the batch's new last id."""
    bound = [upto]

    def smaller() -> None:
        bound[0] = shrink()

    try:
        written, figures = walk.guard.run(
            _products_in(after, upto),
            lambda: _attempt(walk, after, bound[0]),
            retried=RETRIED_HALVED if shrink else RETRIED,
            before_retry=smaller if shrink else None,
        )
    except DatabaseError as exc:
        upto = bound[0]
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
        ((stale_ids, read_ids, kept, kept_deleted, stale_deleted),) = fetch_rows(split, params)
        stale_ids, params["read_ids"] = stale_ids or [], read_ids or []
        written_filter = sql.SQL("p.id = ANY(%(read_ids)s::bigint[])")
        left_as_they_are = _already_migrated(kept, kept_deleted)
        if not read_ids:
            return left_as_they_are, Reconciled()
    fetch_rows(sql.SQL(_LOCK_BATCH).format(products=products, product_filter=written_filter), params)
    reconciled = Reconciled()
    if options.force:
        product_filter = sql.SQL(_RECONCILED).format(batch=batch_filter, product_images=product_images)
        reconciled = reconcile(schema, product_filter, params, options.run_name)
    elif stale_ids:
        reconciled = reconcile(schema, sql.SQL("p.id = ANY(%(ids)s::bigint[])"), {"ids": stale_ids}, options.run_name)
        # The products reconciled that still have rows are counted from what reconcile read (the same rule's
        # refusals), not read a second time by the first migration, which would find them migrated: on Citus
        # that reading is three statements a batch (the demo's --sync: 1.69x plain PostgreSQL's time).
        still_rows = set(stale_ids) - set(reconciled.emptied)
        left_as_they_are += _reconciled_groups(still_rows, set(stale_deleted or []), reconciled.refused)
        params["read_ids"] = [product_id for product_id in params["read_ids"] if product_id not in still_rows]
        if not params["read_ids"]:
            return left_as_they_are, reconciled
    # Then a first migration of the products that have no rows (new products, and those --force or --sync left
    # without rows because their JSON is empty).
    return _migrate_first(schema, written_filter, params) + left_as_they_are, reconciled


def _reconciled_groups(product_ids: set[int], deleted: set[int], refused: dict[int, str]) -> list[tuple]:
    """The outcome groups (shaped as _BATCH_OUTCOME's) of products --sync reconciled that keep rows: migrated
    already, or refused with the rule's reason (their rows kept), as the first migration's reading lists them."""
    groups = [
        (refused[product_id], [], product_id in deleted, True, 1, 0, 0, [product_id])
        for product_id in sorted(product_ids & refused.keys())
    ]
    accepted = product_ids - refused.keys()
    return groups + _already_migrated(len(accepted - deleted), len(accepted & deleted))


def _already_migrated(live: int, soft_deleted: int) -> list[tuple]:
    """Outcome groups of products counted as migrated already, live and soft-deleted: (error, repairs,
    soft-deleted, already migrated, products, images, labels, ids)."""
    return [
        (None, [], is_deleted, True, count, 0, 0, None)
        for is_deleted, count in ((False, live), (True, soft_deleted))
        if count
    ]


def _migrate_first(schema: str, batch_filter: sql.Composable, params: dict) -> list[tuple]:
    """The first migration of the batch's products without rows (``_READ_BATCH`` and what follows it); returns
    the outcome's groups: error, repairs, is_deleted, already_migrated, products, images, labels, ids."""
    read = sql.SQL(_READ_BATCH).format(
        source=source_ctes(schema, batch_filter),
        products=table(schema, "products"),
        product_images=table(schema, "product_images"),
        json_digest=json_digest(sql.SQL("p.images")),
    )
    if not is_citus():
        names = {"batch": sql.Identifier("batch"), "batch_filter": sql.SQL("TRUE"), "now": sql.SQL("now()")}
        query = sql.SQL(_MIGRATE_BATCH).format(
            read=read,
            insert_rows=_insert_rows(schema, names, sql.SQL(""), sql.SQL("")),
            record_state=_record_state(schema, names),
            outcome=sql.SQL(_BATCH_OUTCOME).format(**names),
        )
        return fetch_rows(query, params)
    names = {
        "batch": table(schema, "product_images_batch"),
        "batch_filter": id_range("b.id", params["after"], params["upto"]),
        "now": sql.Placeholder("now"),
    }
    digest = rows_digest(sql.SQL("r.json_digest"), sql.SQL("r.urls"), sql.SQL("r.orders"), sql.SQL("r.label_flags"))
    execute(sql.SQL(_READ_INTO_TABLE).format(read=read, batch=names["batch"], rows_digest=digest), params)
    groups = fetch_rows(sql.SQL(_BATCH_OUTCOME).format(**names), params)
    if any(not already_migrated for _, _, _, already_migrated, *_ in groups):
        rows = sum(images for *_, images, _, _ in groups)
        reserved = reserve(schema, "product_images", sql.Placeholder("rows"))
        ((now, ids),) = fetch_rows(sql.SQL(_RESERVE_IDS).format(reserve=reserved), {"rows": rows})
        values = {**params, "now": now, "ids": ids}
        if rows:
            id_value = sql.SQL("(%(ids)s::bigint[])[row_number() OVER ()], ")
            execute(_insert_rows(schema, names, sql.SQL("id, "), id_value), values)
        execute(_record_state(schema, names, sql.SQL("b.rows_digest")), values)
    execute(sql.SQL(_FORGET_BATCH).format(**names), params)
    return groups


def _record_state(schema: str, names: dict, digest: sql.Composable | None = None) -> sql.Composed:
    """``_RECORD_STATE`` from ``names["batch"]``: the rows digest ``digest``, or computed from the batch's arrays,
    which hold each new product's rows once (computed in the reading, it built every array a second time: +1.1 s
    of CPU on the 30x set's 588,210 images)."""
    if digest is None:
        digest = rows_digest(sql.SQL("b.json_digest"), sql.SQL("b.urls"), sql.SQL("b.orders"), sql.SQL("b.label_flags"))
    return sql.SQL(_RECORD_STATE).format(json_state=table(schema, "product_json_state"), rows_digest=digest, **names)


def _insert_rows(schema: str, names: dict, id_column: sql.Composable, id_value: sql.Composable) -> sql.Composed:
    """``_INSERT_ROWS`` from ``names["batch"]``: with the given ids, or (both empty) the identity default's."""
    yielded = yielded_rows(sql.SQL(_NEW_PRODUCTS).format(**names), names["now"])
    return sql.SQL(_INSERT_ROWS).format(
        product_images=table(schema, "product_images"),
        id_column=id_column,
        id_value=id_value,
        yielded=yielded,
        now=names["now"],
    )


def _tally(schema: str, written: tuple[list[tuple], Reconciled], run: TenantRun, options: MigrationOptions) -> None:
    """Add one batch's outcome (the migration's groups, what --force or --sync reconciled) to the tenant's figures."""
    groups, reconciled = written
    run.rows_kept_aside += reconciled.rows_kept_aside
    run.references_removed += reconciled.references_removed
    if reconciled.changed:
        run.resynced.add(len(reconciled.changed), reconciled.changed)
    if reconciled.emptied:
        run.emptied.add(len(reconciled.emptied), reconciled.emptied)
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
