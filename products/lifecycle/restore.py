"""restore_images_json: the rollback of finalize_images, tenant by tenant.

Per finalized tenant, under its advisory lock and in one transaction: the column ``products.images`` comes
back as migration 0001 made it (jsonb, nullable, no default) and is filled for every product:

- a product with rows gets them, by order, in the image service's mirror shape: ``url``, ``order``,
  ``created_at`` (ISO 8601, UTC) and ``is_label``; the migration reads that JSON back into the same rows;
- a product without rows gets what ``legacy_product_images`` kept for it at its latest finalization, if
  it had no rows then either (an empty, NULL or soft-deleted product comes back exactly as it was);
- any other product gets ``[]``: it had photos when finalized and they were all removed since, so the
  archived JSON is stale and would bring them back.

A tenant that still has the column is not finalized: nothing to restore.

Every phase (the looks at the column and the archive, the transaction) runs in the tenant's
``lifecycle_session`` (``table_locks.py``): a statement that waits longer than ``lock_timeout`` for a lock
another session holds gives up, and the tenant is reported busy, unchanged, naming the session that held it.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from django.db import transaction
from psycopg import sql

from products.legacy_json import ARCHIVE_TABLE, has_archive, has_json_column
from products.lifecycle.table_locks import (
    ANOTHER_JOB,
    BUSY_MEANING,
    DEFAULT_LOCK_TIMEOUT,
    USAGE_MEANING,
    blocked_reason,
    lifecycle_session,
    lock_for_column_change,
)
from products.migration import follower
from products.migration.batches import Guard, TenantBlocked
from products.migration.report import ExitCodeWithMeaning
from stoflow.raw_sql import execute, fetch_rows, table
from stoflow.tenants.locks import tenant_lock
from stoflow.tenants.runner import Interruption, for_each_tenant


class RestoreExitCode(ExitCodeWithMeaning):
    """Exit status of ``restore_images_json`` (the values it shares with migrate_images mean the same there).
    When several apply, the first listed wins."""

    OK = 0, "Every tenant has its JSON column: restored now, or never finalized"
    DATABASE_FAILURE = (
        5,
        "The database is unreachable, or failed mid-run: the tenant being restored was rolled back, tenants "
        "restored before it stay so; re-run to finish",
    )
    INTERRUPTED = 130, "Interrupted (Ctrl-C): the tenant in progress was rolled back; re-run to finish"
    TENANT_BUSY = 4, BUSY_MEANING
    USAGE = 2, USAGE_MEANING


class Outcome(enum.Enum):
    """What restore did with a tenant."""

    RESTORED = "restored"
    WOULD_RESTORE = "would restore"  # --dry-run
    NOT_FINALIZED = "not finalized"
    BUSY = "busy"


@dataclass
class TenantRestore:
    schema: str
    outcome: Outcome
    reasons: list[str] = field(default_factory=list)  # why busy
    from_rows: int = 0  # products whose JSON was rebuilt from their rows
    from_archive: int = 0  # products given back what legacy_product_images kept
    emptied: int = 0  # products given []
    seconds: float = 0.0


@dataclass
class Restoration:
    tenants: list[TenantRestore] = field(default_factory=list)
    interruption: Interruption | None = None

    def schemas(self, outcome: Outcome) -> list[str]:
        return [tenant.schema for tenant in self.tenants if tenant.outcome is outcome]

    @property
    def exit_code(self) -> RestoreExitCode:
        if self.interruption:
            return RestoreExitCode.INTERRUPTED
        if self.schemas(Outcome.BUSY):
            return RestoreExitCode.TENANT_BUSY
        return RestoreExitCode.OK


# ISO 8601 in UTC, as the legacy entries and the seed's JSON hold it ("2025-03-01T10:00:00Z"), with the
# microseconds when there are any: the migration parses them back to the very same timestamp.
_ISO_UTC = """to_char(i.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
    || CASE WHEN mod(date_part('microseconds', i.created_at)::bigint, 1000000) <> 0
            THEN to_char(i.created_at AT TIME ZONE 'UTC', '.US') ELSE '' END
    || 'Z'"""

# Which JSON each product gets back (``source``: rows, archive or empty), the one definition the restore and
# its dry run share.
_RESTORED = """WITH from_rows AS (
    SELECT i.product_id,
           jsonb_agg(jsonb_build_object('url', i.url, 'order', i."order", 'created_at', {iso_utc},
                                        'is_label', i.is_label) ORDER BY i."order") AS images
    FROM {product_images} AS i
    GROUP BY i.product_id
),
archived AS ({archived}),
restored AS (
    SELECT p.id,
           CASE WHEN r.product_id IS NOT NULL THEN 'rows'
                WHEN a.image_rows = 0 THEN 'archive'
                ELSE 'empty'
           END AS source,
           CASE WHEN r.product_id IS NOT NULL THEN r.images
                WHEN a.image_rows = 0 THEN a.images
                ELSE '[]'::jsonb
           END AS images
    FROM {products} AS p
    LEFT JOIN from_rows AS r ON r.product_id = p.id
    LEFT JOIN archived AS a ON a.product_id = p.id
)"""
_COUNTS = """SELECT count(*) FILTER (WHERE source = 'rows'),
       count(*) FILTER (WHERE source = 'archive'),
       count(*) FILTER (WHERE source = 'empty')"""
_FILL = """{restored},
updated AS (
    UPDATE {products} AS p SET images = restored.images
    FROM restored
    WHERE restored.id = p.id
    RETURNING restored.source
)
{counts}
FROM updated"""
# --dry-run: the same choice, counted, nothing written or locked beyond what a read takes.
_WOULD_FILL = """{restored}
{counts}
FROM restored"""
# The latest copy of each product (a tenant finalized twice has two).
_ARCHIVED = (
    "SELECT DISTINCT ON (product_id) product_id, images, image_rows FROM {archive} ORDER BY product_id, copied_at DESC"
)
# A tenant whose column went some other way than finalize_images has no archive.
_NO_ARCHIVE = "SELECT NULL::bigint AS product_id, NULL::jsonb AS images, NULL::integer AS image_rows WHERE false"


def restore_images_json(
    schemas: list[str], lock_timeout: float = DEFAULT_LOCK_TIMEOUT, follow: bool = False, dry_run: bool = False
) -> Restoration:
    restoration = Restoration()
    restoration.tenants, restoration.interruption = for_each_tenant(
        schemas, 1, lambda schema, stop: restore_tenant(schema, lock_timeout, follow, dry_run)
    )
    return restoration


def restore_tenant(
    schema: str, lock_timeout: float = DEFAULT_LOCK_TIMEOUT, follow: bool = False, dry_run: bool = False
) -> TenantRestore:
    started = time.perf_counter()
    with lifecycle_session(lock_timeout) as guard, tenant_lock(schema) as acquired:
        try:
            result = (
                _restore(schema, guard, follow, dry_run)
                if acquired
                else TenantRestore(schema, Outcome.BUSY, [ANOTHER_JOB])
            )
        except TenantBlocked as blocked:
            result = TenantRestore(schema, Outcome.BUSY, [blocked_reason(blocked.blocked)])
    result.seconds = time.perf_counter() - started
    return result


def _restore(schema: str, guard: Guard, follow: bool, dry_run: bool) -> TenantRestore:
    """The tenant's restore under its lock, each phase through ``guard`` (a lock not granted in time:
    TenantBlocked, nothing changed)."""
    if guard.run("the look for the JSON column", lambda: has_json_column(schema)):
        return TenantRestore(schema, Outcome.NOT_FINALIZED)
    archived = guard.run("the look for the archive", lambda: has_archive(schema))
    if dry_run:
        return guard.run("the count of what comes back", lambda: _would_fill(schema, archived))
    return guard.run("the restore of the column", lambda: _add_and_fill(schema, archived, follow))


def _fill_query(query: str, schema: str, archived: bool) -> sql.Composed:
    latest_copies = (
        sql.SQL(_ARCHIVED).format(archive=table(schema, ARCHIVE_TABLE)) if archived else sql.SQL(_NO_ARCHIVE)
    )
    products = table(schema, "products")
    restored = sql.SQL(_RESTORED).format(
        iso_utc=sql.SQL(_ISO_UTC),
        product_images=table(schema, "product_images"),
        products=products,
        archived=latest_copies,
    )
    return sql.SQL(query).format(restored=restored, counts=sql.SQL(_COUNTS), products=products)


def _would_fill(schema: str, archived: bool) -> TenantRestore:
    """--dry-run: what the restore would give each product, counted; nothing written."""
    ((from_rows, from_archive, emptied),) = fetch_rows(_fill_query(_WOULD_FILL, schema, archived))
    return TenantRestore(schema, Outcome.WOULD_RESTORE, from_rows=from_rows, from_archive=from_archive, emptied=emptied)


def _add_and_fill(schema: str, archived: bool, follow: bool) -> TenantRestore:
    """One transaction: the table locks, the column added, every product's JSON filled in (and with ``follow``
    the follower installed)."""
    products = table(schema, "products")
    with transaction.atomic():
        # The rows the JSON is built from cannot change before the commit, nor products be read without it.
        lock_for_column_change(schema)
        # As migration 0001 made it (a JSONField(null=True): jsonb, nullable, no database default).
        execute(sql.SQL("ALTER TABLE {} ADD COLUMN images jsonb NULL").format(products))
        ((from_rows, from_archive, emptied),) = fetch_rows(_fill_query(_FILL, schema, archived))
        if follow:
            # Old code may write the JSON again from the commit on: the follower is there before it can.
            follower.install_and_catch_up(schema, "restore_images_json --follow")
    return TenantRestore(schema, Outcome.RESTORED, from_rows=from_rows, from_archive=from_archive, emptied=emptied)


def describe(tenant: TenantRestore) -> str:
    """The tenant's outcome for the terminal, in one line."""
    if tenant.outcome in (Outcome.RESTORED, Outcome.WOULD_RESTORE):
        done = "restored" if tenant.outcome is Outcome.RESTORED else "would restore (dry run, nothing changed)"
        return (
            f"{tenant.schema}: {done} products.images: {tenant.from_rows:,} product(s) from their rows, "
            f"{tenant.from_archive:,} as {ARCHIVE_TABLE} kept them, {tenant.emptied:,} empty "
            f"({tenant.seconds:.2f} s)"
        )
    if tenant.outcome is Outcome.NOT_FINALIZED:
        return f"{tenant.schema}: not finalized (products.images is there): nothing to restore"
    return f"{tenant.schema}: busy, skipped (left as it was): {'; '.join(tenant.reasons)}"


def failure_message(restoration: Restoration) -> str:
    problems = []
    if restoration.interruption:
        problems.append("interrupted: the tenant in progress was rolled back, re-run to finish")
    if busy := restoration.schemas(Outcome.BUSY):
        problems.append(f"busy tenant(s) skipped: {', '.join(busy)}")
    code = restoration.exit_code
    return "; ".join(problems) + f". Exit status {int(code)}: {code.meaning}."
