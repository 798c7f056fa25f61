"""migrate_images' entries in the run ledger (``stoflow.tenants.models.LedgerEntry``, in the public schema).

One entry per run and tenant, written as the run goes, each write a statement of its own (its own short
transaction: never inside a batch, nor inside a dry run's rehearsal): opened once the run holds the tenant's
lock, updated after each batch (the last product id committed, the figures so far), closed with its status.
A re-run reads the latest live entry: where an unfinished run stopped (interrupted, failed, blocked, or
still "running" though its client is gone), it resumes after the last product id that run committed.
"""

from __future__ import annotations

import functools
import os
import socket

from django.db import DatabaseError, connection
from django.utils import timezone
from psycopg import sql

from products.migration import control, follower
from products.migration.batches import MigrationOptions
from products.migration.reconcile import held_products
from products.migration.report import COUNTERS, TenantReport, TenantRun
from stoflow.raw_sql import as_text, execute, fetch_rows
from stoflow.tenants.locks import LockHolder, tenant_lock_holder
from stoflow.tenants.models import LedgerEntry
from stoflow.tenants.runner import CANCEL
from stoflow.tenants.sessions import session_settings

COMMAND = LedgerEntry.MIGRATE_IMAGES
LIVE = LedgerEntry.LIVE
DRY_RUN = LedgerEntry.DRY_RUN
# A lock holder idle this long, with no run of ours recorded for it, is called stale (tests lower it).
STALE_AFTER_SECONDS = 60.0

_STATUS_OF = {
    "failed": LedgerEntry.FAILED,
    "interrupted": LedgerEntry.INTERRUPTED,
    "blocked": LedgerEntry.BLOCKED,
    "errors": LedgerEntry.ERRORS,
    "done": LedgerEntry.DONE,
}


def options_record(options: MigrationOptions) -> dict:
    """The options a run was given, as the ledger keeps them."""
    kept = (
        "force",
        "sync",
        "batch_size",
        "batch_time_ms",
        "jobs",
        "lock_timeout_ms",
        "statement_timeout_ms",
        "retries",
        "pause_ms",
    )
    return {name: getattr(options, name) for name in kept} | {
        "restart": options.restart,
        "allowed": list(options.allowed),
    }


def figures_record(run: TenantRun) -> dict:
    return {name: getattr(run, name) for name in COUNTERS} | {
        "errors": len(run.errors),
        "error_ids": [error.product_id for error in run.errors[:100]],
    }


def open_entry(schema: str, options: MigrationOptions, resumed_after: int | None, backend_pid: int) -> LedgerEntry:
    """The tenant's entry for this run, status running; the caller's session (``backend_pid``) holds the tenant's
    lock."""
    now = timezone.now()
    entry = LedgerEntry(
        run_id=options.run_id,
        command=COMMAND,
        schema_name=schema,
        mode=DRY_RUN if options.dry_run else LIVE,
        options=options_record(options),
        status=LedgerEntry.RUNNING,
        started_at=now,
        heartbeat_at=now,
        resumed_after=resumed_after,
        # Products up to the resume point were committed by the run that stopped there.
        last_product_id=resumed_after,
        backend_pid=backend_pid,
        client=f"{socket.gethostname()}:{os.getpid()}",
    )
    fields = [field for field in LedgerEntry._meta.concrete_fields if not field.primary_key]
    values = {field.attname: field.get_db_prep_save(getattr(entry, field.attname), connection) for field in fields}
    ((entry.pk,),) = fetch_rows(_insert(), values)
    entry._state.adding, entry._state.db = False, connection.alias
    return entry


def record_batch(entry: LedgerEntry, last_product_id: int | None, run: TenantRun) -> None:
    """A batch is committed (or, in a dry run, rehearsed): every product up to ``last_product_id`` is done."""
    # The entry changes once the row did: a write that gave up on a lock is retried (Guard) with the same count.
    _record(entry, last_product_id, run, batches=entry.batches + 1)


def record_resume_point(entry: LedgerEntry, last_product_id: int | None, run: TenantRun) -> None:
    """Every product up to ``last_product_id`` is done, and the figures so far: when a split tenant's range
    finishes and moves the point without a batch of its own."""
    _record(entry, last_product_id, run, batches=entry.batches)


def _record(entry: LedgerEntry, last_product_id: int | None, run: TenantRun, *, batches: int) -> None:
    _update(
        entry.pk,
        last_product_id=last_product_id,
        batches=batches,
        figures=figures_record(run),
        heartbeat_at=timezone.now(),
    )
    entry.last_product_id, entry.batches = last_product_id, batches


def close_entry(entry: LedgerEntry, tenant: TenantReport, *, best_effort: bool = False) -> None:
    """The run on this tenant ended: its status, figures and what stopped it.

    ``best_effort``: after a failure, the session may be gone; then try once on a new connection, and leave
    the entry "running" if that fails too (the next run sees no session holds the lock, and says so)."""
    now = timezone.now()
    fields = {
        "status": _STATUS_OF[tenant.status],
        "finished_at": now,
        "heartbeat_at": now,
        "figures": figures_record(tenant.run) if tenant.run else {},
        "checks_passed": tenant.validation.passed if tenant.validation else None,
        "message": _message(tenant, entry.run_id),
    }
    try:
        _update(entry.pk, **fields)
    except DatabaseError:
        if not best_effort or connection.in_atomic_block:
            if best_effort:
                return
            raise
        connection.close()
        try:
            # A new session, without the job's settings: its wait for a lock ends within the run's lock timeout too.
            with session_settings({"lock_timeout": f"{entry.options['lock_timeout_ms']}ms"}):
                _update(entry.pk, **fields)
        except DatabaseError:
            return


def _message(tenant: TenantReport, run_id: str) -> str:
    if tenant.failure:
        return f"database failure: {tenant.failure}"
    if tenant.interrupted and tenant.interrupted_by == CANCEL:
        return f"cancelled by {control.who_cancelled(run_id) or 'someone'} after its last committed batch"
    if tenant.interrupted:
        return "interrupted (Ctrl-C or SIGTERM) after its last committed batch"
    if tenant.blocked:
        blocked = tenant.blocked
        return (
            f"blocked on {blocked.what} after {blocked.attempts} attempt(s) ({blocked.error}); "
            f"held by {blocked.held_by}"
        )
    if tenant.run and tenant.run.errors:
        return f"{len(tenant.run.errors)} product(s) not migrated"
    return ""


def resume_point(schema: str, options: MigrationOptions) -> tuple[int | None, str]:
    """Where a live run on the tenant begins (None: the first product), and what the report says about it.

    Read from the tenant's latest live entry: after an unfinished run, the product id it committed last,
    if it ran with the same --force/--sync; ``--restart`` walks every product all the same. The caller holds
    the tenant's lock, so an entry still "running" belongs to a run whose client is gone: it is closed as
    interrupted here."""
    if options.dry_run:
        return None, ""
    last = latest_entry(schema, LIVE)
    if last is None or last.status not in LedgerEntry.UNFINISHED:
        return None, ""
    if last.status in LedgerEntry.IN_PROGRESS:
        last.status = LedgerEntry.INTERRUPTED
        last.message = "its client vanished (killed?) before recording its end; no session held the tenant's lock"
        LedgerEntry.objects.filter(pk=last.pk).update(
            status=last.status, message=last.message, finished_at=timezone.now()
        )
    what = f"run {last.run_id} ({last.status}, started {last.started_at:%Y-%m-%d %H:%M:%S} UTC)"
    if options.restart:
        return None, f"--restart: walks every product (the last {what} stopped after product id {last.last_product_id})"
    if (last.options.get("force"), last.options.get("sync")) != (options.force, options.sync):
        return None, f"the last {what} ran with other options: this run walks every product"
    if last.last_product_id is None:
        return None, f"the last {what} stopped before committing a batch: this run walks every product"
    return last.last_product_id, f"resumes after product id {last.last_product_id}, where the last {what} stopped"


def latest_entry(schema: str, mode: str | None = None) -> LedgerEntry | None:
    params = {"schema": schema, "command": COMMAND} | ({"mode": mode} if mode else {})
    return next(iter(LedgerEntry.objects.raw(_latest(bool(mode)), params)), None)


# A tenant's ledger statements as text rendered once (from the model's fields): the ORM compiled each anew,
# about 1 ms of CPU a statement and four a tenant, which --jobs' threads pay one after the other (one interpreter).
@functools.cache
def _latest(of_mode: bool) -> str:
    mode = sql.SQL(" AND mode = %(mode)s") if of_mode else sql.SQL("")
    return as_text(
        sql.SQL(
            "SELECT * FROM {table} WHERE schema_name = %(schema)s AND command = %(command)s{mode} "
            "ORDER BY started_at DESC, id DESC LIMIT 1"
        ).format(table=sql.Identifier(LedgerEntry._meta.db_table), mode=mode)
    )


@functools.cache
def _insert() -> sql.SQL:
    fields = [field for field in LedgerEntry._meta.concrete_fields if not field.primary_key]
    return _rendered(
        sql.SQL("INSERT INTO {table} ({columns}) VALUES ({values}) RETURNING {id}").format(
            table=sql.Identifier(LedgerEntry._meta.db_table),
            columns=sql.SQL(", ").join(sql.Identifier(field.column) for field in fields),
            values=sql.SQL(", ").join(sql.Placeholder(field.attname) for field in fields),
            id=sql.Identifier(LedgerEntry._meta.pk.column),
        )
    )


@functools.cache
def _update_statement(names: tuple[str, ...]) -> sql.SQL:
    columns = [LedgerEntry._meta.get_field(name).column for name in names]
    return _rendered(
        sql.SQL("UPDATE {table} SET {assignments} WHERE {id} = %(pk)s").format(
            table=sql.Identifier(LedgerEntry._meta.db_table),
            assignments=sql.SQL(", ").join(
                sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(name))
                for column, name in zip(columns, names, strict=True)
            ),
            id=sql.Identifier(LedgerEntry._meta.pk.column),
        )
    )


def _rendered(statement: sql.Composed) -> sql.SQL:
    return sql.SQL(as_text(statement))


def _update(pk: int, **values) -> None:
    """``LedgerEntry.objects.filter(pk=pk).update(**values)``, its text rendered once per set of fields."""
    prepared = {
        name: LedgerEntry._meta.get_field(name).get_db_prep_save(value, connection) for name, value in values.items()
    }
    execute(_update_statement(tuple(values)), {**prepared, "pk": pk})


def describe_lock_holder(schema: str, holder: LockHolder | None) -> str:
    """What holds a busy tenant's lock: a run in progress (from the ledger), or a lock no run recorded,
    and how to clear it."""
    if holder is None:
        return "its lock was released meanwhile: re-run"
    entry = (
        LedgerEntry.objects.filter(
            schema_name=schema, command=COMMAND, status__in=LedgerEntry.IN_PROGRESS, backend_pid=holder.pid
        )
        .order_by("-started_at")
        .first()
    )
    clear = f"SELECT pg_terminate_backend({holder.pid});"
    if entry:
        note = (
            f"run {entry.run_id} ({entry.mode}, client {entry.client}, backend pid {holder.pid}) is migrating it "
            f"since {entry.started_at:%Y-%m-%d %H:%M:%S} UTC, last batch at {entry.heartbeat_at:%H:%M:%S} UTC "
            f"(up to product id {entry.last_product_id})"
        )
        silent = (timezone.now() - entry.heartbeat_at).total_seconds()
        if holder.state == "idle" and min(silent, holder.seconds_in_state) > STALE_AFTER_SECONDS:
            note += f"; no sign of life for {silent:.0f} s: if its client is gone, clear the lock with {clear}"
        return note
    whose = (
        f"backend pid {holder.pid} ({holder.state or 'state unknown'} since {holder.state_since}, "
        f"client {holder.client}, last query: {holder.query!r})"
    )
    if holder.state == "idle" and holder.seconds_in_state > STALE_AFTER_SECONDS:
        return f"stale lock: held by {whose}, idle, which no migrate_images run recorded. Clear it with: {clear}"
    return (
        f"held by {whose}, which no migrate_images run recorded: another job on the tenant, or a stale lock. "
        f"If none is running, clear it with: {clear}"
    )


def status_rows(schemas: list[str]) -> list[dict]:
    """``migrate_images --status``: per tenant, its latest live entry and, if newer, its latest dry run."""
    rows = []
    for schema in schemas:
        entries = [entry for entry in (latest_entry(schema, LIVE), latest_entry(schema, DRY_RUN)) if entry]
        if len(entries) == 2 and entries[1].started_at < entries[0].started_at:
            entries = entries[:1]
        # Not the ledger's: what the tenant's tables say now.
        now = {"follower": follower.describe(schema), "held": held_products(schema)}
        if not entries:
            rows.append({"schema": schema, "status": "never run", **now})
        for entry in entries:
            rows.append({**_status_row(schema, entry), **now})
    return rows


def _status_row(schema: str, entry: LedgerEntry) -> dict:
    status = entry.status
    note = entry.message
    if status in LedgerEntry.IN_PROGRESS:
        holder = tenant_lock_holder(schema)
        if holder is None or holder.pid != entry.backend_pid:
            status = f"{status}?"
            note = "no session holds the tenant's lock: its client vanished; the next run closes it and resumes"
    if entry.mode == LIVE and status not in LedgerEntry.IN_PROGRESS and entry.status in LedgerEntry.UNFINISHED:
        resume = f"a re-run resumes after product id {entry.last_product_id}" if entry.last_product_id else ""
        note = "; ".join(part for part in (note, resume) if part)
    return {
        "schema": schema,
        "mode": entry.mode,
        "status": status,
        "run": entry.run_id,
        "started": f"{entry.started_at:%Y-%m-%d %H:%M:%S}",
        "finished": f"{entry.finished_at:%Y-%m-%d %H:%M:%S}" if entry.finished_at else "",
        "last_product_id": entry.last_product_id,
        "batches": entry.batches,
        "images": entry.figures.get("images_migrated", 0),
        "errors": entry.figures.get("errors", 0),
        "checks": {True: "PASS", False: "FAIL", None: ""}[entry.checks_passed],
        "note": note,
        "options": options_flags(entry.options),
    }


def options_flags(options: dict) -> str:
    if not options:
        return ""
    flags = [f"--{name}" for name in ("force", "sync", "restart") if options.get(name)]
    size = f"--batch-time {options['batch_time_ms']}ms" if options.get("batch_time_ms") else ""
    return " ".join(flags + [size or f"--batch-size {options.get('batch_size')}"])
