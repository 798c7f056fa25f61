"""Migration runs over tenants: migrate (live or dry run) or only validate, each tenant under its lock.

Per tenant: the lock (busy: who holds it), the preflight (refused: why; nothing touched), the ledger entry
(where an unfinished run stopped), then the batches and the validation under the job's timeouts. A tenant
blocked by another session's locks is reported so and the run goes on; a database failure stops the run
with the figures so far (``MigrationReport.failure``); Ctrl-C and SIGTERM stop it between batches.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime

from django.db import DatabaseError, connection, transaction
from psycopg import sql

from products import url_search_index
from products.migration import control, follower, ledger
from products.migration.batches import (
    STATEMENT_TIMEOUT,
    Guard,
    MigrationOptions,
    Progress,
    TenantBlocked,
    first_line,
    job_session,
    migrate_batches,
    sqlstate,
)
from products.migration.preflight import check_tenant, connection_problems
from products.migration.report import MigrationReport, TenantReport, TenantRun, WaveStop
from products.migration.split import IdRange, Slots, migrate_ranges, slot, split_points, validate_ranges
from products.migration.validation import RangeFigures, build_validation, validate_finalized, validate_tenant
from stoflow.raw_sql import execute, fetch_rows, table
from stoflow.tenants.locks import tenant_lock, tenant_lock_holder
from stoflow.tenants.runner import CANCEL, SIGINT, Stopped, TenantJobFailed, for_each_tenant, signal_name

SEARCH_INDEX_PHASE = "search index"  # the report's time of a URL search index build, when a run made one

# Fewer new rows than this and the validation plans well without fresh statistics; ANALYZE cost 0.6 ms of a
# twenty-product tenant's 18 (a thousand small tenants: 0.6 s).
ANALYZE_AFTER_IMAGES = 10_000


def migrate_images(schemas: list[str], options: MigrationOptions, progress: Progress | None = None) -> MigrationReport:
    """Migrate and validate each tenant; Ctrl-C, SIGTERM or a database failure end the run with what is done."""
    report = MigrationReport(mode="dry-run" if options.dry_run else "live", started_at=datetime.now(UTC))
    flag = " --force" if options.force else " --sync" if options.sync else ""
    options = replace(
        options,
        run_name=f"migrate_images{flag}, started {report.started_at:%Y-%m-%d %H:%M:%S} UTC",
        run_id=options.run_id or uuid.uuid4().hex,
    )
    report.run_id = options.run_id
    progress = progress or Progress()
    # With --jobs, at most that many walks at once, whether of tenants or of a large tenant's ranges.
    slots = Slots(options.jobs) if options.jobs > 1 else None
    failed: list[str] = []  # --max-failures: the tenants that count, as they end

    def stop_starting(tenant: TenantReport) -> bool:
        if tenant.wave_failure:
            failed.append(f"{tenant.schema} ({tenant.wave_failure})")
        return bool(options.max_failures) and len(failed) >= options.max_failures

    try:
        report.tenants, report.interruption = for_each_tenant(
            schemas,
            options.jobs,
            lambda schema, stop: migrate_tenant(schema, options, progress, stop, slots),
            stop_starting,
        )
    except TenantJobFailed as failure:
        report.tenants, report.failure = failure.results, str(failure)
    if report.interruption and report.interruption.signal == CANCEL:
        report.interruption.cancelled_by = control.who_cancelled(options.run_id)
    if options.max_failures and len(failed) >= options.max_failures and not report.failure:
        done = {tenant.schema for tenant in report.tenants}
        stopped = set(report.interruption.stopped_in) if report.interruption else set()
        not_started = [schema for schema in schemas if schema not in done and schema not in stopped]
        if not_started:
            report.wave_stop = WaveStop(options.max_failures, failed, not_started)
    return report


def _follow(tenant: TenantReport, options: MigrationOptions, guard: Guard) -> str:
    """--follow: install the follower once the tenant's checks pass (its rows are what its JSON yields)."""
    if tenant.validation is None or not tenant.validation.passed:
        # One installed before stays: it keeps following writes (what it applies, the checks measure).
        return f"{'left as it was' if follower.follows(tenant.schema) else 'not installed'}: the checks did not pass"
    caught_up = guard.run(
        "installing the follower", lambda: follower.install_and_catch_up(tenant.schema, options.run_name)
    )
    changed = len(caught_up.changed)
    return f"installed; {changed} product(s) changed since their batch were caught up first" if changed else "installed"


def unfollow(schemas: list[str], options: MigrationOptions) -> Iterator[tuple[str, str]]:
    """Remove each tenant's follower under the job's timeouts; yields (schema, what happened)."""
    for schema in schemas:
        try:
            with job_session(options) as guard:
                if not follower.follows(schema):
                    yield schema, "no follower"
                    continue
                guard.run("removing the follower", lambda schema=schema: _uninstalled(schema))
                yield schema, "follower removed"
        except TenantBlocked as blocked:
            yield schema, f"blocked, follower kept: {blocked.blocked.what}"


def _uninstalled(schema: str) -> None:
    with transaction.atomic():
        follower.uninstall(schema)


def preflight_problems(schemas: list[str]) -> list[str]:
    """What keeps a command on the image tables from running at all: ``connection_problems`` (an old server, a
    pooler in transaction mode), tenants without the tables.

    A finalized tenant (its JSON column dropped) keeps both tables and passes. (migrate_images itself refuses
    a tenant without its tables alone, in ``check_tenant``, and goes on with the others.)"""
    problems = connection_problems()
    missing = fetch_rows(
        sql.SQL(
            "SELECT schema_name FROM unnest(%(schemas)s::text[]) AS schema_name "
            "WHERE to_regclass(quote_ident(schema_name) || '.products') IS NULL "
            "OR to_regclass(quote_ident(schema_name) || '.product_images') IS NULL "
            "OR to_regclass(quote_ident(schema_name) || '.product_images_removed') IS NULL"
        ),
        {"schemas": schemas},
    )
    if missing:
        names = ", ".join(name for (name,) in missing)
        problems.append(
            f"No products/product_images/product_images_removed tables in {names}: "
            "run `manage.py migrate_schemas` first."
        )
    return problems


def validate_images(schemas: list[str], jobs: int = 1, options: MigrationOptions | None = None) -> MigrationReport:
    """Validation only, nothing written (under the same timeouts as a migration): the six checks per tenant,
    or a finalized tenant's checks on the table."""
    options = options or MigrationOptions()
    report = MigrationReport(mode="check", started_at=datetime.now(UTC))
    try:
        report.tenants, report.interruption = for_each_tenant(
            schemas, jobs, lambda schema, stop: _validate_timed(schema, options, stop)
        )
    except TenantJobFailed as failure:
        report.tenants, report.failure = failure.results, str(failure)
    return report


def _validate_timed(schema: str, options: MigrationOptions, stop: threading.Event | None = None) -> TenantReport:
    """--check on one tenant: its read-only preflight, then its checks, under the job's timeouts."""
    with job_session(options, stop) as guard:
        return _validate(schema, options, guard)


def _validate(schema: str, options: MigrationOptions, guard: Guard, finalized: bool | None = None) -> TenantReport:
    """The tenant's checks, after its read-only preflight (unless the caller's preflight found it ``finalized``).

    Each unit runs through the Guard: a lock held elsewhere, on a table or on what the preflight reads of the
    catalog, blocks this tenant only, within the retries; the run goes on with the next."""
    tenant = TenantReport(schema)
    try:
        if finalized is None:
            preflight = guard.run("the preflight", lambda: check_tenant(schema, writes=False))
            if preflight.problems:
                return TenantReport(schema, refused=preflight.problems)
            finalized = preflight.finalized
        tenant.finalized = finalized
        with _timed(tenant, "validate"):
            tenant.validation = guard.run(
                "the validation", lambda: validate_finalized(schema) if finalized else validate_tenant(schema)
            )
    except TenantBlocked as blocked:
        tenant.blocked = blocked.blocked
    except DatabaseError as exc:
        tenant.failure = _failure(exc, options)
        raise TenantJobFailed(schema, exc, partial=tenant) from exc
    return tenant


def migrate_tenant(
    schema: str,
    options: MigrationOptions,
    progress: Progress,
    stop: threading.Event | None = None,
    slots: Slots | None = None,
) -> TenantReport:
    stop = stop or threading.Event()
    # Every statement of the job, from the lock on, runs under its timeouts (job_session), and each unit of
    # work through the Guard, the preflight's and the ledger's included: a lock held elsewhere blocks this
    # tenant within the retries (reported with the blocker), never the run.
    with job_session(options, stop) as guard, tenant_lock(schema) as acquired:
        tenant = TenantReport(schema)
        entry = None
        try:
            if not acquired:
                tenant.busy = True
                tenant.lock_holder = guard.run("naming the holder of its lock", lambda: tenant_lock_holder(schema))
                tenant.lock_note = guard.run(
                    "naming the holder of its lock", lambda: ledger.describe_lock_holder(schema, tenant.lock_holder)
                )
                return tenant
            # Before any write: a tenant whose tables the migration cannot trust is refused, untouched.
            preflight = guard.run(
                "the preflight",
                lambda: check_tenant(schema, removes_rows=options.force or options.sync, accepted=options.allowed),
            )
            if preflight.problems:
                return TenantReport(schema, refused=preflight.problems)
            tenant.referencing_keys = preflight.referencing_keys
            installed = preflight.follower_version
            # (Its own version rendered only where a follower is there to compare: 4 ms of a run without any.)
            if installed is not None and installed != follower.version() and not options.follow:
                # Installed by another version of this code (it applies another rule than this run's), or disabled.
                tenant.follower = follower.described(installed, follower.version())
            if preflight.finalized:
                # finalize_images dropped the JSON (seen under the lock, which finalize holds while it drops):
                # nothing is left to migrate from, whatever the options; the checks on the table still run.
                return _validate(schema, options, guard, finalized=True)
            resumed_after, resume_note = guard.run("reading the ledger", lambda: ledger.resume_point(schema, options))
            entry = guard.run(
                "opening the ledger entry",
                lambda: ledger.open_entry(schema, options, resumed_after, guard.watch.backend_pid),
            )
            # The walk begins: from here on the ledger entry says where a re-run resumes.
            tenant.run, tenant.ledger_entry_opened = TenantRun(), True
            tenant.resumed_after, tenant.resume_note = resumed_after, resume_note
            _migrate_and_validate(tenant, options, progress, stop, guard, entry, slots, preflight.url_index)
            if options.follow and not options.dry_run:
                tenant.follower = _follow(tenant, options, guard)
        except TenantBlocked as blocked:
            tenant.blocked = blocked.blocked  # the run goes on with the next tenant
        except KeyboardInterrupt as interrupt:
            tenant.interrupted, tenant.interrupted_by = True, _stopped_by(interrupt, options)
            if entry:
                ledger.close_entry(entry, tenant, best_effort=True)
            raise Stopped(tenant, tenant.interrupted_by) from interrupt
        except DatabaseError as exc:
            tenant.failure = _failure(exc, options)
            if entry:
                ledger.close_entry(entry, tenant, best_effort=True)
            raise TenantJobFailed(schema, exc, partial=tenant) from exc
        if entry:
            try:
                guard.run("closing the ledger entry", lambda: ledger.close_entry(entry, tenant))
            except TenantBlocked as blocked:
                # Left "running": the next run finds no session holding the tenant's lock, closes it and resumes.
                tenant.blocked = tenant.blocked or blocked.blocked
        return tenant


def _stopped_by(interrupt: KeyboardInterrupt, options: MigrationOptions) -> str:
    """What stopped a tenant's work: SIGINT, SIGTERM, or CANCEL, also for a worker another worker's cancel
    stopped (it sees only the shared stop event)."""
    name = signal_name(interrupt)
    if name == SIGINT and options.run_id:
        try:
            return CANCEL if control.who_cancelled(options.run_id) else name
        except DatabaseError:
            return name
    return name


def _migrate_and_validate(
    tenant: TenantReport,
    options: MigrationOptions,
    progress: Progress,
    stop: threading.Event,
    guard: Guard,
    entry,
    slots: Slots | None = None,
    url_index: url_search_index.IndexState | None = None,
) -> None:
    schema = tenant.schema
    # The URL search index is built once a first backfill's rows are in, not kept up row by row (six times the
    # cost of the insert: products/url_search_index.py); a build is a phase of its own in the report's times.
    # Not inside a caller's transaction: its batches' deferred foreign key checks are still pending there, and
    # PostgreSQL refuses to index a table with pending trigger events.
    search_index = url_index if url_index and not options.dry_run and not connection.in_atomic_block else None
    set_aside = search_index is not None and guard.run(
        "setting the URL search index aside", lambda: url_search_index.set_aside_for_backfill(schema, search_index)
    )

    def written() -> None:
        if search_index is None:
            return
        started = time.perf_counter()
        built = guard.run(
            "building the URL search index",
            lambda: url_search_index.build_if_needed(schema, search_index, set_aside, tenant.run.images_migrated),
        )
        if built:
            tenant.seconds[SEARCH_INDEX_PHASE] = time.perf_counter() - started

    # --jobs N: a large tenant's ids are cut into ranges worked at once, each on its own connection (split.py).
    ranges = guard.run("cutting the products into ranges", lambda: split_points(schema, tenant.resumed_after, options))
    if len(ranges) > 1:
        _migrate_and_validate_ranges(tenant, ranges, options, progress, stop, guard, entry, slots, written)
        return
    with slot(slots, stop):
        _migrate_and_validate_serially(tenant, options, progress, stop, guard, entry, written, ranges[0].product_count)


def _migrate_and_validate_serially(
    tenant: TenantReport,
    options: MigrationOptions,
    progress: Progress,
    stop: threading.Event,
    guard: Guard,
    entry,
    written: Callable[[], None],
    product_count: int | None = None,
) -> None:
    schema, run = tenant.schema, tenant.run
    # A dry run rehearses each batch and measures its checks before the rollback; they add up to the tenant's.
    rehearsal = RangeFigures() if options.dry_run else None
    with _timed(tenant, "migrate"):
        migrate_batches(
            schema,
            options,
            progress,
            stop,
            run=run,
            guard=guard,
            after=tenant.resumed_after,
            on_batch=lambda last_id: ledger.record_batch(entry, last_id, run),
            rehearsal=rehearsal,
            product_count=product_count,
            pace=tenant.pace,
        )
    written()
    excluded = [error.product_id for error in run.errors]
    with _timed(tenant, "validate"):
        if rehearsal is not None:
            tenant.validation = build_validation(schema, rehearsal, excluded)
            return

        def validate():
            refresh_statistics(schema, run)
            return validate_tenant(schema, excluded)

        tenant.validation = guard.run("the validation", validate)


def _migrate_and_validate_ranges(
    tenant: TenantReport,
    ranges: list[IdRange],
    options: MigrationOptions,
    progress: Progress,
    stop: threading.Event,
    guard: Guard,
    entry,
    slots: Slots | None,
    written: Callable[[], None],
) -> None:
    """``_migrate_and_validate`` with the tenant's ids in ranges, each worked and validated on its own connection
    while this one holds the tenant's lock. The ledger keeps one resume point per entry, the conservative one:
    the last id below which every range committed everything (``split.resume_point``)."""
    schema, run = tenant.schema, tenant.run
    for part in ranges:
        part.rehearsal = RangeFigures() if options.dry_run else None
    with _timed(tenant, "migrate"):
        migrate_ranges(
            schema,
            ranges,
            options,
            progress,
            stop,
            run,
            on_batch=lambda resume_after, so_far: ledger.record_batch(entry, resume_after, so_far),
            on_resume_point=lambda resume_after, so_far: ledger.record_resume_point(entry, resume_after, so_far),
            guard=guard,
            slots=slots,
            pace=tenant.pace,
        )
    written()
    excluded = [error.product_id for error in run.errors]
    with _timed(tenant, "validate"):
        if options.dry_run:
            figures = RangeFigures()
            for part in ranges:
                figures.add(part.rehearsal)
        else:
            guard.run("the validation", lambda: refresh_statistics(schema, run))
            figures = validate_ranges(schema, ranges, options, stop, excluded, slots)
        tenant.validation = build_validation(schema, figures, excluded)


def refresh_statistics(schema: str, run: TenantRun) -> None:
    """ANALYZE product_images and product_json_state once a run has written many rows: planned on the statistics
    of empty tables, the validation joins of a large tenant run for hours instead of seconds (autovacuum analyzes
    them too, but on its own schedule: on the 30x tenant, sometimes during the validation, sometimes after it)."""
    if run.images_migrated >= ANALYZE_AFTER_IMAGES:
        execute(sql.SQL("ANALYZE {}, {}").format(table(schema, "product_images"), table(schema, "product_json_state")))


def _failure(exc: DatabaseError, options: MigrationOptions) -> str:
    message = first_line(exc)
    if sqlstate(exc) == STATEMENT_TIMEOUT:
        message += f" (a statement ran longer than --statement-timeout, {options.statement_timeout_ms} ms)"
    return message


@contextmanager
def _timed(tenant: TenantReport, phase: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        tenant.seconds[phase] = tenant.seconds.get(phase, 0.0) + time.perf_counter() - started
