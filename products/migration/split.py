"""One large tenant worked by several connections at once (``--jobs N``): its product ids cut into ranges.

The coordinating connection holds the tenant's lock (``runs.migrate_tenant``); here it only cuts the ids
(``split_points``: id quantiles, computed once) and waits. Each range runs in a worker thread on its own
connection, under the job's session settings (``job_session``: timeouts, blocker watch, Guard), and walks
its range with the serial batch walk (``migrate_batches`` with an upper bound): each batch its own
transaction, a dry run's rehearsal one batch rolled back, as in a serial run. The workers never take the
tenant's lock: the coordinator's covers them, and it outlives them.

Every figure of a run (``TenantRun.add``) and of the checks (``RangeFigures.add``) is a sum or a per-product
property, so the ranges' figures, added in id order, are the serial run's.

A worker's Ctrl-C, database failure or block stops the other workers between batches (a shared event);
the coordinator then raises the first failure (a database error before a block before an interruption),
with the figures of every committed batch added to the tenant's.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field

from django.db import DatabaseError, connection
from psycopg import sql

from products.migration.batches import (
    Guard,
    MigrationOptions,
    Progress,
    TenantBlocked,
    job_session,
    migrate_batches,
)
from products.migration.report import Pace, TenantRun
from products.migration.source import id_range
from products.migration.validation import RangeFigures, measure_range
from stoflow.raw_sql import fetch_rows, table
from stoflow.tenants.runner import CANCEL, SIGINT, SIGTERM, Cancelled, Terminated, signal_name

# A tenant with fewer products than this many batches keeps one worker: a split would not pay for itself.
MINIMUM_BATCHES_TO_SPLIT = 2

_CUTS = """SELECT count(*), percentile_disc(%(fractions)s::float8[]) WITHIN GROUP (ORDER BY p.id)
FROM {products} AS p WHERE {after}"""


class Slots:
    """At most ``jobs`` walks (a serial tenant's, or one range's) at once in a run: with several tenants in
    parallel, each split into ranges, the connections at work stay ``jobs``, not ``jobs`` squared. A tenant's
    coordinating connection, which only holds the lock and waits, takes none."""

    def __init__(self, jobs: int):
        self._free = threading.BoundedSemaphore(jobs)

    @contextmanager
    def held(self, stop: threading.Event) -> Iterator[None]:
        while not self._free.acquire(timeout=0.1):
            if stop.is_set():
                raise KeyboardInterrupt
        try:
            yield
        finally:
            self._free.release()


def slot(slots: Slots | None, stop: threading.Event):
    return slots.held(stop) if slots else nullcontext()


@dataclass
class IdRange:
    """Products with ids in (after, upto]; None: no bound."""

    after: int | None
    upto: int | None
    run: TenantRun = field(default_factory=TenantRun)
    pace: Pace = field(default_factory=Pace)
    rehearsal: RangeFigures | None = None
    last_committed: int | None = None  # the last id of this range's last committed batch
    finished: bool = False
    product_count: int | None = None  # how many, when known from the cutting (a serial walk need not count them)


def split_points(schema: str, after: int | None, options: MigrationOptions) -> list[IdRange]:
    """The ranges to work the tenant's products above ``after`` in: one (no split) unless ``--jobs`` > 1 and
    the tenant holds at least MINIMUM_BATCHES_TO_SPLIT batches; at most one range per job and no more ranges
    than whole batches the tenant holds. With a range per job, each holds about the same number of products
    (id quantiles); with fewer ranges than jobs, the cuts are every few of those quantiles, so ranges may
    differ by up to a quantile's worth (47 products, --batch-size 15, --jobs 4: ranges of 12, 24 and 11)."""
    if options.jobs <= 1:
        return [IdRange(after, None)]
    fractions = [k / options.jobs for k in range(1, options.jobs)]
    query = sql.SQL(_CUTS).format(products=table(schema, "products"), after=id_range("p.id", after, None))
    ((products, cuts),) = fetch_rows(query, {"fractions": fractions, "after": after})
    if products < MINIMUM_BATCHES_TO_SPLIT * options.batch_size:
        return [IdRange(after, None, product_count=products)]
    parts = max(1, min(options.jobs, products // options.batch_size))
    cuts = sorted(set(cuts[: parts - 1] if parts == options.jobs else _fewer_cuts(cuts, parts)))
    bounds = [after, *cuts, None]
    return [IdRange(low, high) for low, high in zip(bounds, bounds[1:], strict=False)]


def _fewer_cuts(cuts: list[int], parts: int) -> list[int]:
    """``parts`` - 1 of the N - 1 quantile cuts, evenly spaced (fewer products than jobs x batch size)."""
    step = (len(cuts) + 1) / parts
    return [cuts[round(step * k) - 1] for k in range(1, parts)]


def resume_point(ranges: Sequence[IdRange], after: int | None) -> int | None:
    """The last product id below which every product is committed: the ledger's resume point.

    Conservative: a range committed past a range still unfinished below it is walked again by a re-run (its
    products then show as already migrated, or are rebuilt again with --force/--sync, to the same rows).
    One resume point per entry keeps the ledger's shape, --status and older runs' entries as they are."""
    point = after
    for part in ranges:
        if not part.finished or part.upto is None:
            # A range still at work, or the last (open-ended) one: up to its last committed batch, if any.
            return part.last_committed if part.last_committed is not None else point
        point = part.upto
    return point


class _RangeProgress(Progress):
    """A range's bar hooks: the tenant's one bar, started and finished by the coordinator."""

    def __init__(self, progress: Progress, lock: threading.Lock):
        self.progress, self.lock = progress, lock

    def advance(self, schema: str, products: int) -> None:
        with self.lock:
            self.progress.advance(schema, products)


def migrate_ranges(
    schema: str,
    ranges: list[IdRange],
    options: MigrationOptions,
    progress: Progress,
    stop: threading.Event,
    run: TenantRun,
    on_batch: Callable[[int | None, TenantRun], None],
    on_resume_point: Callable[[int | None, TenantRun], None],
    guard: Guard,
    slots: Slots | None = None,
    pace: Pace | None = None,
) -> None:
    """Migrate (or rehearse) each range on its own connection at once; their figures added to ``run`` (and their
    batches and waits to ``pace``), in id order, also when the walk stops part-way. ``on_batch(resume point,
    figures so far)`` after each batch; ``on_resume_point(resume point, figures so far)`` when a range finishes,
    and once more when every range has ended: a range finishing moves the point (a lower range finishing last
    lets it reach the ranges above it), with no batch committed. ``guard``: the coordinating connection's, for
    what it reads itself."""
    lock, coordinator = threading.Lock(), guard
    count = sql.SQL("SELECT count(*) FROM {} AS p WHERE {}").format(
        table(schema, "products"), id_range("p.id", ranges[0].after, None)
    )
    products = guard.run("counting the products", lambda: fetch_rows(count, {"after": ranges[0].after})[0][0])
    progress.start_tenant(schema, products)
    range_progress = _RangeProgress(progress, lock)

    def so_far() -> tuple[int | None, TenantRun]:
        """The resume point and the figures of every range as they stand (the caller holds ``lock``)."""
        total = TenantRun()
        for each in ranges:
            total.add(each.run)
        return resume_point(ranges, ranges[0].after), total

    def batch_done(part: IdRange, last_id: int) -> None:
        with lock:
            part.last_committed = last_id
            on_batch(*so_far())

    def range_done(part: IdRange) -> None:
        with lock:
            part.finished = True
            on_resume_point(*so_far())

    def work(part: IdRange, worker_stop: threading.Event, guard) -> None:
        migrate_batches(
            schema,
            options,
            range_progress,
            worker_stop,
            run=part.run,
            guard=guard,
            after=part.after,
            upto=part.upto,
            on_batch=lambda last_id: batch_done(part, last_id),
            rehearsal=part.rehearsal,
            pace=part.pace,
        )
        guard.run("recording the resume point in the ledger", lambda: range_done(part))

    def ended(stopped_part_way: bool) -> None:
        for part in ranges:
            run.add(part.run)
            if pace is not None:
                pace.add(part.pace)
        progress.finish_tenant(schema)
        # Every range has ended: the point where they all stand. When the walk stopped on a failure, failing to
        # record this loses nothing the ranges' own records did not keep (a more cautious point): the failure
        # that stopped the walk is the one to report.
        with suppress(DatabaseError, TenantBlocked) if stopped_part_way else nullcontext():
            point = resume_point(ranges, ranges[0].after)
            coordinator.run("recording the resume point in the ledger", lambda: on_resume_point(point, run))

    try:
        in_parallel(ranges, options, stop, work, slots)
    except BaseException:
        ended(stopped_part_way=True)
        raise
    ended(stopped_part_way=False)


def validate_ranges(
    schema: str,
    ranges: list[IdRange],
    options: MigrationOptions,
    stop: threading.Event,
    excluded: list[int],
    slots: Slots | None = None,
) -> RangeFigures:
    """The checks measured per range at once, each on its own connection, added up in id order.

    The whole tenant, whatever the walk covered: the first range reaches down from no bound (the products a
    resumed run does not walk again, rows below the first id)."""
    measured: dict[int, RangeFigures] = {}
    whole = [IdRange(None, ranges[0].upto), *(IdRange(part.after, part.upto) for part in ranges[1:])]

    def work(part: IdRange, worker_stop: threading.Event, guard) -> None:
        measured[whole.index(part)] = guard.run(
            "the validation", lambda: measure_range(schema, part.after, part.upto, excluded)
        )

    in_parallel(whole, options, stop, work, slots)
    figures = RangeFigures()
    for number in range(len(whole)):
        figures.add(measured[number])
    return figures


def in_parallel(
    ranges: list[IdRange],
    options: MigrationOptions,
    stop: threading.Event,
    work: Callable[[IdRange, threading.Event, object], None],
    slots: Slots | None = None,
) -> None:
    """``work(range, stop, guard)`` for each range, each in a thread on its own connection under the job's
    session settings; returns when all are done. Raises the first database error, else the first block,
    else KeyboardInterrupt if the run was interrupted (Ctrl-C here, or ``stop`` set by the tenant runner)."""
    workers_stop = threading.Event()
    cancelled = threading.Event()
    errors: list[BaseException] = []
    finished: queue.SimpleQueue[int] = queue.SimpleQueue()

    def worker(part: IdRange) -> None:
        try:
            with slot(slots, workers_stop), job_session(options, workers_stop) as guard:
                work(part, workers_stop, guard)
        except KeyboardInterrupt as interrupt:
            # Stopped by the shared event (the cause is recorded where it was set), or cancelled from elsewhere:
            # then it stops the other ranges.
            if signal_name(interrupt) == CANCEL:
                cancelled.set()
                workers_stop.set()
        except (DatabaseError, TenantBlocked) as exc:
            errors.append(exc)
            workers_stop.set()
        except BaseException as exc:  # a bug in a worker stops the others and reaches the coordinator
            errors.append(exc)
            workers_stop.set()
        finally:
            connection.close()  # this thread opened its own
            finished.put(ranges.index(part))

    for number, part in enumerate(ranges):
        threading.Thread(target=worker, args=(part,), name=f"range-worker-{number}").start()
    running, interrupted = len(ranges), None
    while running:
        try:
            # A short wait, so Ctrl-C is handled promptly whichever thread the signal reached.
            finished.get(timeout=0.1)
            running -= 1
        except queue.Empty:
            if stop.is_set() and not workers_stop.is_set():
                interrupted = interrupted or SIGINT
                workers_stop.set()
        except KeyboardInterrupt as interrupt:
            interrupted = interrupted or signal_name(interrupt)
            workers_stop.set()
    database = [error for error in errors if isinstance(error, DatabaseError)]
    if database:
        raise database[0]
    blocked = [error for error in errors if isinstance(error, TenantBlocked)]
    if blocked:
        raise blocked[0]
    if errors:
        raise errors[0]
    if interrupted == SIGTERM:
        raise Terminated(SIGTERM)
    if cancelled.is_set():
        raise Cancelled(CANCEL)
    if interrupted:
        raise KeyboardInterrupt(SIGINT)
