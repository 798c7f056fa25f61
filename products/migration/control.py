"""Pausing, resuming and cancelling a run from elsewhere: another host's command line, the public admin.

Asking is ``stoflow.tenants.run_control.ask`` (the public admin asks too). A request is a row of
``public.run_control`` per run (``RunControl``): the latest of pause, run (resume) or cancel, with who
asked. The run reads it before each batch (``pace.Gate``), so it obeys within a batch and a poll
(``POLL_SECONDS``): paused, it keeps its connection and the tenant's lock and says so in its ledger entries
(status "paused", by whom); cancelled, it stops as on Ctrl-C (``Cancelled``): whole batches kept, the report
written, a re-run resumes.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone
from psycopg import sql

from stoflow.raw_sql import fetch_rows
from stoflow.tenants.models import LedgerEntry, RunControl

# How often a paused or waiting run looks again (its ledger entry's sign of life is as fresh).
POLL_SECONDS = 0.5
PAUSE, RESUME, CANCEL = RunControl.PAUSE, RunControl.RUN, RunControl.CANCEL


@dataclass(frozen=True)
class Request:
    requested: str  # RunControl.RUN, PAUSE or CANCEL
    by: str
    at: object  # datetime


# Read before every batch: raw SQL, a tenth of the ORM's cost for one primary-key lookup.
_LATEST_REQUEST = "SELECT requested, requested_by, requested_at FROM {} WHERE run_id = %(run_id)s"


def latest_request(run_id: str) -> Request | None:
    """What was last asked of the run, if anything (one primary-key lookup)."""
    query = sql.SQL(_LATEST_REQUEST).format(sql.Identifier("public", RunControl._meta.db_table))
    rows = fetch_rows(query, {"run_id": run_id})
    return Request(*rows[0]) if rows else None


def who_cancelled(run_id: str) -> str:
    request = latest_request(run_id)
    return request.by if request and request.requested == CANCEL else ""


def note_on_entry(run_id: str, schema: str, status: str, message: str) -> None:
    """The run's entry for the tenant says it is paused, or waiting and why (``status`` running, ``message``
    the wait), or at work again (running, no message); its sign of life is now."""
    LedgerEntry.objects.filter(run_id=run_id, schema_name=schema, status__in=LedgerEntry.IN_PROGRESS).update(
        status=status, message=message, heartbeat_at=timezone.now()
    )
