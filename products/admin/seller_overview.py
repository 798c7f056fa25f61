"""The seller picker's figures (the public admin's index): per seller, its products, images, labels,
products not migrated yet, and how the last migration run went for it.

The figures are counted in each seller's schema with raw SQL (``stoflow.raw_sql``, schema names as
quoted identifiers): two queries in all, whatever the number of sellers (one more per
``SELLERS_PER_QUERY`` sellers beyond that). The last run comes from the JSON report ``migrate_images
--json`` wrote (``make demo`` writes ``var/migration-report.json``; ``STOFLOW_MIGRATION_REPORT_JSON``
names another file); nothing records runs in the database yet."""

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from psycopg import sql

from products.legacy_json import JSON_HOLDS_PHOTOS
from stoflow.raw_sql import fetch_rows, table

SELLERS_PER_QUERY = 200

# Which seller schemas have the tables, and still the legacy JSON column (finalize drops it).
_TABLES = """SELECT s.name,
       to_regclass(format('%%I.products', s.name)) IS NOT NULL
           AND to_regclass(format('%%I.product_images', s.name)) IS NOT NULL,
       EXISTS (
           SELECT FROM pg_attribute
           WHERE attrelid = to_regclass(format('%%I.products', s.name)) AND attname = 'images' AND NOT attisdropped
       )
FROM unnest(%(schemas)s::text[]) AS s(name)"""

# One seller's figures. Not migrated: photos in the legacy JSON (SQL NULL, JSON null, [] and "[]" are
# none, as for the migration and the image service) and no image row; soft-deleted products included.
_FIGURES = """SELECT {number}::int,
       (SELECT count(*) FROM {products}),
       (SELECT count(*) FROM {images}),
       (SELECT count(*) FROM {images} WHERE is_label),
       (SELECT count(*) FROM {products} AS p
        WHERE {waiting} AND NOT EXISTS (SELECT FROM {images} AS i WHERE i.product_id = p.id))"""


@dataclass(frozen=True)
class LastRun:
    """How the last ``migrate_images`` run (its JSON report) went for one seller."""

    started_at: datetime | None
    mode: str  # "live", "dry-run" or "check"
    outcome: str
    ok: bool

    @property
    def title(self) -> str:
        return {"live": "Migration", "dry-run": "Dry run", "check": "Check"}.get(self.mode, self.mode)


@dataclass(frozen=True)
class SellerFigures:
    schema: str
    has_tables: bool  # False: the schema lacks the product tables (run migrate_schemas); figures are 0
    products: int = 0
    images: int = 0
    labels: int = 0
    not_migrated: int = 0
    last_run: LastRun | None = None


def seller_figures(schemas: list[str]) -> dict[str, SellerFigures]:
    """Every seller's figures, by schema name."""
    runs = last_runs()
    ready = {name: json_column for name, has_tables, json_column in _tables(schemas) if has_tables}
    counts: dict[str, tuple[int, int, int, int]] = {}
    names = [name for name in schemas if name in ready]
    for start in range(0, len(names), SELLERS_PER_QUERY):
        chunk = names[start : start + SELLERS_PER_QUERY]
        branches = [
            sql.SQL(_FIGURES).format(
                number=sql.Literal(number),
                products=table(name, "products"),
                images=table(name, "product_images"),
                waiting=sql.SQL(JSON_HOLDS_PHOTOS if ready[name] else "false"),
            )
            for number, name in enumerate(chunk)
        ]
        for number, *figures in fetch_rows(sql.SQL(" UNION ALL ").join(branches)):
            counts[chunk[number]] = tuple(figures)
    return {
        name: SellerFigures(name, name in counts, *counts.get(name, (0, 0, 0, 0)), last_run=runs.get(name))
        for name in schemas
    }


def _tables(schemas: list[str]) -> list[tuple[str, bool, bool]]:
    return fetch_rows(sql.SQL(_TABLES), {"schemas": schemas}) if schemas else []


def report_path() -> Path:
    return Path(
        getattr(settings, "STOFLOW_MIGRATION_REPORT_JSON", Path(settings.BASE_DIR) / "var" / "migration-report.json")
    )


def last_runs() -> dict[str, LastRun]:
    """Each seller's part of the last JSON report; {} when there is none (or it cannot be read)."""
    try:
        report = json.loads(report_path().read_text())
        started_at = datetime.fromisoformat(report["started_at"])
        mode = report["mode"]
        tenants = report["tenants"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    interruption = report.get("interruption") or {}
    runs = {}
    for tenant in tenants:
        schema = tenant.get("schema")
        if isinstance(schema, str):
            outcome, ok = _outcome(tenant, interruption)
            runs[schema] = LastRun(started_at, mode, outcome, ok)
    for schema in interruption.get("not_started", []):
        runs.setdefault(schema, LastRun(started_at, mode, "not started: the run was interrupted", False))
    return runs


def _outcome(tenant: dict, interruption: dict) -> tuple[str, bool]:
    if tenant.get("busy"):
        return "skipped: another run held the seller's lock", False
    problems = []
    if tenant.get("schema") in interruption.get("stopped_in", []):
        problems.append("interrupted part-way")
    errors = len((tenant.get("run") or {}).get("errors") or [])
    if errors:
        problems.append(f"{errors:,} product{'s' if errors != 1 else ''} could not be migrated")
    checks = (tenant.get("validation") or {}).get("checks") or []
    failed = [str(check.get("number")) for check in checks if not check.get("passed")]
    if failed:
        problems.append(f"check{'s' if len(failed) != 1 else ''} {', '.join(failed)} FAIL")
    if problems:
        return "; ".join(problems), False
    if not checks:
        return "done, not validated", True
    return f"every check PASS ({len(checks)})", True
