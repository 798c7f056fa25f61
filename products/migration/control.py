"""Pausing, resuming and cancelling a run from elsewhere: another host's command line, the public admin.

A request is a row of ``public.run_control`` per run (``RunControl``): the latest of pause, run (resume) or
cancel, with who asked. The run reads it before each batch (``pace.Gate``), so it obeys within a batch and a
poll (``POLL_SECONDS``): paused, it keeps its connection and the tenant's lock and says so in its ledger
entries (status "paused", by whom); cancelled, it stops as on Ctrl-C (``Cancelled``): whole batches kept,
the report written, a re-run resumes.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from stoflow.tenants.models import LedgerEntry, RunControl

# How often a paused or waiting run looks again (its ledger entry's sign of life is as fresh).
POLL_SECONDS = 0.5
# A run named by the start of its id, as --status shows it, must give at least this many characters.
SHORTEST_RUN_PREFIX = 6

PAUSE, RESUME, CANCEL = RunControl.PAUSE, RunControl.RUN, RunControl.CANCEL


class NoSuchRun(Exception):
    """No run in progress answers to the id given (or several do)."""


@dataclass(frozen=True)
class Request:
    requested: str  # RunControl.RUN, PAUSE or CANCEL
    by: str
    at: object  # datetime


def run_in_progress(run_id: str) -> str:
    """The full id of the run in progress (an entry running or paused) whose id is or starts with ``run_id``."""
    if len(run_id) < SHORTEST_RUN_PREFIX:
        raise NoSuchRun(f"give at least {SHORTEST_RUN_PREFIX} characters of the run's id, not {run_id!r}")
    runs = sorted(
        set(
            LedgerEntry.objects.filter(run_id__startswith=run_id, status__in=LedgerEntry.IN_PROGRESS).values_list(
                "run_id", flat=True
            )
        )
    )
    if not runs:
        raise NoSuchRun(f"no run in progress has the id {run_id!r} (migrate_images --status lists the runs)")
    if len(runs) > 1:
        raise NoSuchRun(f"several runs in progress have ids starting with {run_id!r}: {', '.join(runs)}")
    return runs[0]


def ask(run_id: str, requested: str, by: str) -> str:
    """Record ``requested`` (PAUSE, RESUME or CANCEL) for the run in progress named by ``run_id``; its full id."""
    full_id = run_in_progress(run_id)
    with transaction.atomic():
        RunControl.objects.update_or_create(
            run_id=full_id, defaults={"requested": requested, "requested_by": by, "requested_at": timezone.now()}
        )
    return full_id


def latest_request(run_id: str) -> Request | None:
    """What was last asked of the run, if anything (one primary-key lookup: read before every batch)."""
    row = RunControl.objects.filter(run_id=run_id).values_list("requested", "requested_by", "requested_at").first()
    return Request(*row) if row else None


def who_cancelled(run_id: str) -> str:
    request = latest_request(run_id)
    return request.by if request and request.requested == CANCEL else ""


def note_on_entry(run_id: str, schema: str, status: str, message: str) -> None:
    """The run's entry for the tenant says it is paused, or waiting and why (``status`` running, ``message``
    the wait), or at work again (running, no message); its sign of life is now."""
    LedgerEntry.objects.filter(run_id=run_id, schema_name=schema, status__in=LedgerEntry.IN_PROGRESS).update(
        status=status, message=message, heartbeat_at=timezone.now()
    )
