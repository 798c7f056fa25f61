"""Migration runs over tenants: migrate (live or dry run) or only validate, each tenant under its lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from datetime import UTC, datetime

from django.db import connection, transaction
from psycopg import sql

from products.legacy_json import has_json_column
from products.migration.batches import MigrationOptions, Progress, migrate_batches
from products.migration.report import MigrationReport, TenantReport
from products.migration.validation import validate_finalized, validate_tenant
from stoflow.raw_sql import execute, fetch_rows, table
from stoflow.tenants.locks import tenant_lock
from stoflow.tenants.runner import for_each_tenant

MINIMUM_SERVER_VERSION = 160000  # pg_input_is_valid, used to read bad JSON without failing


def migrate_images(schemas: list[str], options: MigrationOptions, progress: Progress | None = None) -> MigrationReport:
    """Migrate and validate each tenant; Ctrl-C ends the run with what is done."""
    report = MigrationReport(mode="dry-run" if options.dry_run else "live", started_at=datetime.now(UTC))
    flag = " --force" if options.force else " --sync" if options.sync else ""
    options = replace(options, run_name=f"migrate_images{flag}, started {report.started_at:%Y-%m-%d %H:%M:%S} UTC")
    progress = progress or Progress()
    report.tenants, report.interruption = for_each_tenant(
        schemas, options.jobs, lambda schema, stop: migrate_tenant(schema, options, progress, stop)
    )
    return report


def preflight_problems(schemas: list[str]) -> list[str]:
    """What keeps the migration from running at all: an old server, tenants without the tables.

    A finalized tenant (its JSON column dropped) keeps both tables and passes: the run reports it finalized."""
    problems = []
    if connection.pg_version < MINIMUM_SERVER_VERSION:
        problems.append(f"PostgreSQL 16 or newer is needed; this server is version {connection.pg_version}.")
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


def validate_images(schemas: list[str], jobs: int = 1) -> MigrationReport:
    """Validation only, nothing written: the six checks per tenant, or a finalized tenant's checks on the table."""
    report = MigrationReport(mode="check", started_at=datetime.now(UTC))
    report.tenants, report.interruption = for_each_tenant(
        schemas, jobs, lambda schema, stop: _validate_timed(schema, finalized=not has_json_column(schema))
    )
    return report


def _validate_timed(schema: str, finalized: bool) -> TenantReport:
    tenant = TenantReport(schema, finalized=finalized)
    with _timed(tenant, "validate"):
        tenant.validation = validate_finalized(schema) if finalized else validate_tenant(schema)
    return tenant


def migrate_tenant(
    schema: str, options: MigrationOptions, progress: Progress, stop: threading.Event | None = None
) -> TenantReport:
    with tenant_lock(schema) as acquired:
        if not acquired:
            return TenantReport(schema, busy=True)
        if not has_json_column(schema):
            # finalize_images dropped the JSON (asked under the lock, which finalize holds while it drops):
            # nothing is left to migrate from, whatever the options; the checks on the table still run.
            return _validate_timed(schema, finalized=True)
        # A dry run makes the very same writes, then rolls them back.
        with transaction.atomic() if options.dry_run else nullcontext():
            tenant = TenantReport(schema)
            with _timed(tenant, "migrate"):
                tenant.run = migrate_batches(schema, options, progress, stop or threading.Event())
            with _timed(tenant, "validate"):
                if tenant.run.images_migrated:
                    # Fresh statistics: planned on those of an empty table, the validation
                    # joins of a large tenant run for hours instead of seconds.
                    execute(sql.SQL("ANALYZE {}").format(table(schema, "product_images")))
                tenant.validation = validate_tenant(schema, [error.product_id for error in tenant.run.errors])
            if options.dry_run:
                transaction.set_rollback(True)
        return tenant


@contextmanager
def _timed(tenant: TenantReport, phase: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    tenant.seconds[phase] = time.perf_counter() - started
