"""Asking a run in progress to pause, resume or cancel: a row of ``public.run_control`` per run (``RunControl``).

Written by ``migrate_images --pause/--resume/--cancel RUN`` and the buttons of the run ledger in the public admin;
the run reads it before each batch (``products.migration.control``). Here, so the public admin asks without
importing the migration engine.
"""

from django.db import transaction
from django.utils import timezone

from stoflow.tenants.models import LedgerEntry, RunControl

# A run named by the start of its id, as --status shows it, must give at least this many characters.
SHORTEST_RUN_PREFIX = 6


class NoSuchRun(Exception):
    """No run in progress answers to the id given (or several do)."""


def run_in_progress(run_id: str) -> str:
    """The full id of the run in progress (an entry running or paused) whose id is or starts with ``run_id``."""
    if len(run_id) < SHORTEST_RUN_PREFIX:
        raise NoSuchRun(f"give at least {SHORTEST_RUN_PREFIX} characters of the run's id, not {run_id!r}")
    entries = LedgerEntry.objects.filter(run_id__startswith=run_id, status__in=LedgerEntry.IN_PROGRESS)
    runs = sorted(set(entries.values_list("run_id", flat=True)))
    if not runs:
        raise NoSuchRun(f"no run in progress has the id {run_id!r} (migrate_images --status lists the runs)")
    if len(runs) > 1:
        raise NoSuchRun(f"several runs in progress have ids starting with {run_id!r}: {', '.join(runs)}")
    return runs[0]


def ask(run_id: str, requested: str, by: str) -> str:
    """Record ``requested`` (RunControl.PAUSE, RUN or CANCEL) for the run in progress named by ``run_id``;
    returns its full id. Raises NoSuchRun."""
    full_id = run_in_progress(run_id)
    with transaction.atomic():
        RunControl.objects.update_or_create(
            run_id=full_id, defaults={"requested": requested, "requested_by": by, "requested_at": timezone.now()}
        )
    return full_id
