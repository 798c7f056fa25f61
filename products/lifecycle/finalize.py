"""finalize_images: the gate, then the drop of a tenant's legacy JSON column (the seed report's Phase 5).

Per tenant, under its advisory lock (``tenant_lock``, the one migrate_images takes):

1. A tenant whose ``products.images`` is gone is already finalized: nothing to do.
2. The gate: every check of ``validate_tenant`` passes (check 4 compares each product's rows with what its
   JSON yields, so it catches products never migrated and products whose JSON changed since), no product is
   listed as an error by the source, and none is pending (JSON images, no rows). Any of these refuses the
   tenant, naming the reasons and the first products; nothing changes.
3. In one transaction: lock ``products`` (for the drop) and ``product_images`` (against writers), run
   the gate again, copy every product's ``(id, images)`` into ``legacy_product_images`` (soft-deleted products
   included), and drop the column. A failure anywhere rolls all of it back.

A dry run stops after the gate's first pass and reports what it would do. With ``--ready``, a tenant goes to
the gate only if its latest live migrate_images run (the run ledger) ended done with every check passing;
the others are listed as not ready and left as they are (``not_ready``).

Every phase (the first look, the gate's first pass, the dry run's count, the transaction) runs in the tenant's
``lifecycle_session`` (``table_locks.py``): a statement that waits longer than ``lock_timeout`` for a lock
another session holds gives up, and the tenant is reported busy, unchanged, naming the session that held it.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from django.db import transaction
from psycopg import sql

from products.legacy_json import ARCHIVE_TABLE, has_json_column
from products.lifecycle.table_locks import (
    ANOTHER_JOB,
    BUSY_MEANING,
    DEFAULT_LOCK_TIMEOUT,
    USAGE_MEANING,
    blocked_reason,
    lifecycle_session,
    lock_for_column_change,
)
from products.migration import follower, ledger
from products.migration.batches import Guard, TenantBlocked
from products.migration.report import SAMPLE_SIZE, ExitCodeWithMeaning
from products.migration.source import source_ctes
from products.migration.validation import validate_tenant
from stoflow.raw_sql import execute, fetch_rows, table
from stoflow.tenants.locks import tenant_lock
from stoflow.tenants.models import LedgerEntry
from stoflow.tenants.runner import Interruption, for_each_tenant


class FinalizeExitCode(ExitCodeWithMeaning):
    """Exit status of ``finalize_images`` (the values it shares with migrate_images mean the same there).
    When several apply, the first listed wins."""

    OK = (
        0,
        "Every tenant is finalized (now or before); with --dry-run, every tenant would be; with --ready, every "
        "tenant whose latest live run passed every check (the others are listed as not ready)",
    )
    DATABASE_FAILURE = (
        5,
        "The database is unreachable, or failed mid-run: the tenant being finalized was rolled back, tenants "
        "finalized before it stay so; re-run to finish",
    )
    INTERRUPTED = 130, "Interrupted (Ctrl-C): the tenant in progress was rolled back; re-run to finish"
    REFUSED = (
        6,
        "The gate refused a tenant (a check FAIL, products listed as errors, pending or drifted): it is named "
        "with the reasons and was left as it was",
    )
    TENANT_BUSY = 4, BUSY_MEANING
    USAGE = 2, USAGE_MEANING


class Outcome(enum.Enum):
    """What finalize did with a tenant."""

    FINALIZED = "finalized"
    WOULD_FINALIZE = "would finalize"  # a dry run whose gate passed
    ALREADY_FINALIZED = "already finalized"
    REFUSED = "refused"
    BUSY = "busy"
    NOT_READY = "not ready"  # --ready: its latest live run did not pass every check; not looked at further


@dataclass
class TenantFinalization:
    schema: str
    outcome: Outcome
    reasons: list[str] = field(default_factory=list)  # why refused, or busy
    products_copied: int = 0  # products whose JSON went (or, in a dry run, would go) to legacy_product_images
    seconds: float = 0.0


@dataclass
class Finalization:
    dry_run: bool
    tenants: list[TenantFinalization] = field(default_factory=list)
    interruption: Interruption | None = None

    def schemas(self, outcome: Outcome) -> list[str]:
        return [tenant.schema for tenant in self.tenants if tenant.outcome is outcome]

    @property
    def exit_code(self) -> FinalizeExitCode:
        if self.interruption:
            return FinalizeExitCode.INTERRUPTED
        if self.schemas(Outcome.REFUSED):
            return FinalizeExitCode.REFUSED
        if self.schemas(Outcome.BUSY):
            return FinalizeExitCode.TENANT_BUSY
        return FinalizeExitCode.OK


# The source's own verdict on every product: listed as an error (its JSON cannot be moved faithfully), or
# pending (JSON images and no row at all: never migrated). Check 4 counts pending products as differing
# too; they are named apart because the cure differs (run migrate_images, not --sync or --force).
_SOURCE_VERDICT = """WITH {source}
SELECT count(*) FILTER (WHERE s.error IS NOT NULL),
       (array_agg(s.id ORDER BY s.id) FILTER (WHERE s.error IS NOT NULL))[1:%(sample)s],
       (array_agg(s.error ORDER BY s.id) FILTER (WHERE s.error IS NOT NULL))[1],
       count(*) FILTER (WHERE s.error IS NULL AND s.image_count > 0 AND NOT s.has_rows),
       (array_agg(s.id ORDER BY s.id) FILTER (WHERE s.error IS NULL AND s.image_count > 0 AND NOT s.has_rows))
           [1:%(sample)s]
FROM (SELECT status.*, EXISTS (SELECT 1 FROM {product_images} AS pi WHERE pi.product_id = status.id) AS has_rows
      FROM status) AS s"""

# Kept for ever, one row per product per finalization (a tenant restored and finalized again keeps both):
# restore_images_json reads the latest. image_rows (the product's rows when copied) tells it whether this
# JSON can come back as it is (0 rows: an empty, null or NULL value, the only kind the gate lets through
# without rows) or only mirrored rows that may have changed since. No foreign key: an archive neither
# blocks nor follows a product's deletion.
_CREATE_ARCHIVE = """CREATE TABLE IF NOT EXISTS {archive} (
    product_id bigint NOT NULL,
    images jsonb,
    image_rows integer NOT NULL,
    copied_at timestamptz NOT NULL,
    PRIMARY KEY (product_id, copied_at)
)"""
_ARCHIVE_COMMENT = (
    "products.images as finalize_images found it before dropping the column: every product, soft-deleted "
    "included, per finalization. Kept for ever; restore_images_json reads it."
)
_COPY = """WITH copied AS (
    INSERT INTO {archive} (product_id, images, image_rows, copied_at)
    SELECT p.id, p.images, COALESCE(r.image_rows, 0), %(copied_at)s
    FROM {products} AS p
    LEFT JOIN (SELECT product_id, count(*) AS image_rows FROM {product_images} GROUP BY product_id) AS r
        ON r.product_id = p.id
    RETURNING 1
)
SELECT count(*) FROM copied"""


def finalize_images(
    schemas: list[str], dry_run: bool, lock_timeout: float = DEFAULT_LOCK_TIMEOUT, ready_only: bool = False
) -> Finalization:
    """Finalize each tenant in turn (one at a time: each holds table locks while it drops); ``ready_only``
    (--ready): only those whose latest live run passed every check."""
    finalization = Finalization(dry_run=dry_run)
    finalization.tenants, finalization.interruption = for_each_tenant(
        schemas, 1, lambda schema, stop: finalize_tenant(schema, dry_run, lock_timeout, ready_only)
    )
    return finalization


def not_ready(schema: str) -> str:
    """Why the tenant's latest live migrate_images run does not let --ready through ("" when it does): it must
    have ended done, no product in error, every check passing. A finalized tenant is let through (the gate
    says it is already finalized)."""
    if not has_json_column(schema):
        return ""
    entry = ledger.latest_entry(schema, ledger.LIVE)
    if entry is None:
        return "no live migrate_images run on record"
    run = f"its latest live run ({entry.run_id}, started {entry.started_at:%Y-%m-%d %H:%M} UTC)"
    if entry.status != LedgerEntry.DONE:
        return f"{run} is {entry.get_status_display()}"
    if not entry.checks_passed:
        return f"{run} has a failing check"
    return ""


def finalize_tenant(
    schema: str, dry_run: bool, lock_timeout: float = DEFAULT_LOCK_TIMEOUT, ready_only: bool = False
) -> TenantFinalization:
    started = time.perf_counter()
    if ready_only and (why := not_ready(schema)):
        return TenantFinalization(schema, Outcome.NOT_READY, [why])
    with lifecycle_session(lock_timeout) as guard, tenant_lock(schema) as acquired:
        try:
            result = (
                _finalize(schema, dry_run, guard)
                if acquired
                else TenantFinalization(schema, Outcome.BUSY, [ANOTHER_JOB])
            )
        except TenantBlocked as blocked:
            result = TenantFinalization(schema, Outcome.BUSY, [blocked_reason(blocked.blocked)])
    result.seconds = time.perf_counter() - started
    return result


def _finalize(schema: str, dry_run: bool, guard: Guard) -> TenantFinalization:
    """The tenant's finalization under its lock, each phase through ``guard`` (a lock not granted in time:
    TenantBlocked, nothing changed)."""
    if not guard.run("the look for the JSON column", lambda: has_json_column(schema)):
        return TenantFinalization(schema, Outcome.ALREADY_FINALIZED)
    # A first pass without table locks: a refused tenant (the common case while drift is being fixed) never
    # holds up the application's writers.
    refusals = guard.run("the gate", lambda: gate_refusals(schema))
    if refusals:
        return TenantFinalization(schema, Outcome.REFUSED, refusals)
    if dry_run:
        products = guard.run("the count of the products", lambda: _product_count(schema))
        return TenantFinalization(schema, Outcome.WOULD_FINALIZE, products_copied=products)
    return guard.run("the copy and the drop", lambda: _copy_and_drop(schema))


def gate_refusals(schema: str) -> list[str]:
    """Why the tenant cannot be finalized yet, in words naming the first products; empty when it can."""
    reasons = []
    query = sql.SQL(_SOURCE_VERDICT).format(
        source=source_ctes(schema, sql.SQL("TRUE"), with_created_at=False),
        product_images=table(schema, "product_images"),
    )
    ((errors, error_ids, first_error, pending, pending_ids),) = fetch_rows(query, {"sample": SAMPLE_SIZE})
    if errors:
        reasons.append(
            f"{errors:,} product(s) listed as errors by the source (their JSON cannot be moved faithfully; "
            f"fix or empty it, then run migrate_images): {_ids(error_ids, errors)}; "
            f"product {error_ids[0]}: {first_error}"
        )
    if pending:
        reasons.append(
            f"{pending:,} product(s) pending, JSON images and no rows (run migrate_images): "
            f"{_ids(pending_ids, pending)}"
        )
    for check in validate_tenant(schema).checks:
        if not check.passed:
            reason = f"check {check.number} FAIL ({check.name}): {check.figure:,}, expected {check.expected:,}"
            if check.product_ids:
                reason += f"; first products at fault: {_ids(check.product_ids, check.products_at_fault)}"
            if check.number == 4:
                reason += " (rows and JSON disagree: migrate_images --sync or --force rebuilds the rows from the JSON)"
            reasons.append(reason)
    return reasons


def _copy_and_drop(schema: str) -> TenantFinalization:
    """One transaction: the table locks, the gate again, the copy, the drop; any failure rolls it all back."""
    products, product_images = table(schema, "products"), table(schema, "product_images")
    archive = table(schema, ARCHIVE_TABLE)
    with transaction.atomic():
        # No writer of images (nor of the rows) gets in between the gate below, the copy and the drop.
        lock_for_column_change(schema)
        # The gate again, on what can no longer change: the first pass ran while writers were free.
        refusals = gate_refusals(schema)
        if refusals:
            transaction.set_rollback(True)
            return TenantFinalization(schema, Outcome.REFUSED, refusals)
        execute(sql.SQL(_CREATE_ARCHIVE).format(archive=archive))
        execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(archive, sql.Literal(_ARCHIVE_COMMENT)))
        ((copied_at,),) = fetch_rows(sql.SQL("SELECT clock_timestamp()"))
        ((copied,),) = fetch_rows(
            sql.SQL(_COPY).format(archive=archive, products=products, product_images=product_images),
            {"copied_at": copied_at},
        )
        # The follower's trigger fires on UPDATE OF images: it goes with the column (it would block the drop).
        follower.uninstall(schema)
        # A catalogue change only (no table rewrite): instant under the lock already held.
        execute(sql.SQL("ALTER TABLE {} DROP COLUMN images").format(products))
    return TenantFinalization(schema, Outcome.FINALIZED, products_copied=copied)


def _product_count(schema: str) -> int:
    ((count,),) = fetch_rows(sql.SQL("SELECT count(*) FROM {}").format(table(schema, "products")))
    return count


def _ids(ids: list[int], total: int) -> str:
    more = total - len(ids)
    return ", ".join(map(str, ids)) + (f" (+{more:,} more)" if more > 0 else "")


def describe(tenant: TenantFinalization) -> list[str]:
    """The tenant's outcome for the terminal: one line, then one per reason."""
    schema = tenant.schema
    archive = f"{schema}.{ARCHIVE_TABLE}"
    if tenant.outcome is Outcome.FINALIZED:
        return [
            f"{schema}: finalized: the JSON of {tenant.products_copied:,} product(s) copied to {archive}, "
            f"column products.images dropped ({tenant.seconds:.2f} s)"
        ]
    if tenant.outcome is Outcome.WOULD_FINALIZE:
        return [
            f"{schema}: would finalize: the gate passes; the JSON of {tenant.products_copied:,} product(s) would "
            f"be copied to {archive} and products.images dropped"
        ]
    if tenant.outcome is Outcome.ALREADY_FINALIZED:
        return [f"{schema}: already finalized: products.images is gone, nothing to do"]
    if tenant.outcome is Outcome.BUSY:
        return [f"{schema}: busy, skipped (left as it was): {'; '.join(tenant.reasons)}"]
    if tenant.outcome is Outcome.NOT_READY:
        return [f"{schema}: not ready, left as it was: {'; '.join(tenant.reasons)}"]
    return [f"{schema}: refused, left as it was:"] + [f"  - {reason}" for reason in tenant.reasons]


def failure_message(finalization: Finalization) -> str:
    problems = []
    if finalization.interruption:
        problems.append("interrupted: the tenant in progress was rolled back, re-run to finish")
    if refused := finalization.schemas(Outcome.REFUSED):
        problems.append(f"refused by the gate: {', '.join(refused)}")
    if busy := finalization.schemas(Outcome.BUSY):
        problems.append(f"busy tenant(s) skipped: {', '.join(busy)}")
    code = finalization.exit_code
    return "; ".join(problems) + f". Exit status {int(code)}: {code.meaning}."
