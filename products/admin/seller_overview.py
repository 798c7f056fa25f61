"""The campaign as the admin shows it, per seller: its stage, its latest migration run, a run going on now.

Read from the run ledger (``public.run_ledger``, which every run writes as it goes) and the catalogue's own
state (the JSON column there or dropped, the archive a finalize left, the follower), never from a report
file: the latest run is the ledger's latest, whoever started it and wherever its report went. Products and
images are the database's statistics (``pg_stat_get_live_tuples``: kept by the server as rows come and go),
labelled as such, not counted on each load: the picker pages through 10,000 sellers without reading their
tables. One page of sellers costs four queries, whatever its size (``seller_figures``).

Stages, in the order a seller goes through them (``stage``):

- not migrated: no live run on record;
- partly backfilled: the latest live run stopped part-way (interrupted, blocked, failed) or is going on;
- backfilled: the latest live run ended, with products in error or a failing check;
- in sync: the latest live run ended done, every check passing (rows agreed with the JSON then);
- following: the follower applies the old code's JSON writes to the rows as they happen;
- finalized: the JSON column is gone (``finalize_images``);
- restored: the column is back (``restore_images_json``) after a finalization.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q
from django.utils import timezone
from psycopg import sql

from products.legacy_json import ARCHIVE_TABLE
from products.migration import follower, ledger
from stoflow.raw_sql import fetch_rows
from stoflow.tenants.models import LedgerEntry
from stoflow.tenants.sites import ledger_entry_url

NOT_MIGRATED = "not migrated"
PARTLY_BACKFILLED = "partly backfilled"
BACKFILLED = "backfilled"
IN_SYNC = "in sync"
FOLLOWING = "following"
FINALIZED = "finalized"
RESTORED = "restored"

# A run in progress silent this long (no batch, no wait written) is said to show no sign of life.
SILENT_AFTER_SECONDS = ledger.STALE_AFTER_SECONDS

# Per seller of the page: its tables, the JSON column, the archive, and the statistics' row counts.
_CATALOGUE = """SELECT s.name,
       t.products IS NOT NULL AND t.images IS NOT NULL,
       EXISTS (SELECT FROM pg_attribute WHERE attrelid = t.products AND attname = 'images' AND NOT attisdropped),
       to_regclass(format('%%I.%%I', s.name, %(archive)s::text)) IS NOT NULL,
       pg_stat_get_live_tuples(t.products),
       pg_stat_get_live_tuples(t.images)
FROM unnest(%(schemas)s::text[]) AS s(name)
CROSS JOIN LATERAL (
    SELECT to_regclass(format('%%I.products', s.name)) AS products,
           to_regclass(format('%%I.product_images', s.name)) AS images
) AS t"""


@dataclass(frozen=True)
class LatestRun:
    """A seller's latest live migrate_images run, from its ledger entry."""

    entry_id: int
    run_id: str
    status: str  # LedgerEntry.STATUSES
    status_words: str
    started_at: datetime
    finished_at: datetime | None
    checks_passed: bool | None
    message: str  # what stopped it, what blocked it (the blockers), or products in error
    images: int  # images migrated, as the entry's figures say
    errors: int

    @property
    def ledger_url(self) -> str:
        return ledger_entry_url(self.entry_id)

    @property
    def ok(self) -> bool:
        return self.status == LedgerEntry.DONE and bool(self.checks_passed)

    @property
    def checks(self) -> str:
        return {True: "every check PASS", False: "a check FAIL", None: "not validated"}[self.checks_passed]


@dataclass(frozen=True)
class RunNow:
    """A run on the seller now (running or paused), from its ledger entry."""

    entry_id: int
    run_id: str
    mode: str
    status: str  # running or paused
    batches: int
    last_product_id: int | None
    images: int
    heartbeat_at: datetime
    message: str  # paused by whom, or what it waits for

    @property
    def ledger_url(self) -> str:
        return ledger_entry_url(self.entry_id)

    @property
    def silent_seconds(self) -> float:
        return (timezone.now() - self.heartbeat_at).total_seconds()

    @property
    def silent(self) -> bool:
        return self.silent_seconds > SILENT_AFTER_SECONDS


@dataclass(frozen=True)
class SellerFigures:
    schema: str
    has_tables: bool  # False: the schema lacks the product tables (run migrate_schemas)
    stage: str = NOT_MIGRATED
    follower: str = "off"  # follower.describe's words
    products: int | None = None  # the statistics' estimate (None: no tables)
    images: int | None = None
    latest: LatestRun | None = None
    now: RunNow | None = None


def seller_figures(schemas: list[str]) -> dict[str, SellerFigures]:
    """The campaign of each seller named (a page of the picker, or one seller), by schema name."""
    if not schemas:
        return {}
    catalogue = {
        row[0]: row[1:] for row in fetch_rows(sql.SQL(_CATALOGUE), {"schemas": schemas, "archive": ARCHIVE_TABLE})
    }
    latest = latest_live_runs(schemas)
    now = runs_in_progress(schemas)
    ready = [schema for schema in schemas if catalogue[schema][0]]
    followers = follower.describe_many(ready)
    figures = {}
    for schema in schemas:
        has_tables, json_column, archive, products, images = catalogue[schema]
        if not has_tables:
            figures[schema] = SellerFigures(schema, False)
            continue
        words = followers[schema]
        figures[schema] = SellerFigures(
            schema,
            True,
            stage(json_column, archive, words, latest.get(schema)),
            words,
            products,
            images,
            latest.get(schema),
            now.get(schema),
        )
    return figures


def stage(json_column: bool, archive: bool, follower_words: str, latest: LatestRun | None) -> str:
    if not json_column:
        return FINALIZED
    if follower_words != "off":
        return FOLLOWING
    if archive:
        return RESTORED
    if latest is None:
        return NOT_MIGRATED
    if latest.status in LedgerEntry.UNFINISHED:
        return PARTLY_BACKFILLED
    return IN_SYNC if latest.ok else BACKFILLED


def latest_live_runs(schemas: list[str]) -> dict[str, LatestRun]:
    """Each seller's latest live migrate_images entry (one query: the ledger's index per seller)."""
    entries = (
        LedgerEntry.objects.filter(schema_name__in=schemas, command=ledger.COMMAND, mode=ledger.LIVE)
        .order_by("schema_name", "-started_at", "-pk")
        .distinct("schema_name")
    )
    return {
        entry.schema_name: LatestRun(
            entry.pk,
            entry.run_id,
            entry.status,
            entry.get_status_display(),
            entry.started_at,
            entry.finished_at,
            entry.checks_passed,
            entry.message,
            entry.figures.get("images_migrated", 0),
            entry.figures.get("errors", 0),
        )
        for entry in entries
    }


def runs_in_progress(schemas: list[str]) -> dict[str, RunNow]:
    """The run going on now on each seller, if any (live or dry run; its newest, if its client vanished before)."""
    entries = (
        LedgerEntry.objects.filter(
            Q(schema_name__in=schemas), command=ledger.COMMAND, status__in=LedgerEntry.IN_PROGRESS
        )
        .order_by("schema_name", "-started_at", "-pk")
        .distinct("schema_name")
    )
    return {
        entry.schema_name: RunNow(
            entry.pk,
            entry.run_id,
            entry.mode,
            entry.status,
            entry.batches,
            entry.last_product_id,
            entry.figures.get("images_migrated", 0),
            entry.heartbeat_at,
            entry.message,
        )
        for entry in entries
    }
