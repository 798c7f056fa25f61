"""The pace of a walk: what it waits for before each batch, and how large each batch is.

Before each batch, the walk's ``Gate`` reads what was asked of the run from elsewhere (``control``: pause,
cancel) and the health signals of the database it can see, and waits while any is over its limit, reporting
the wait (reason, how long) in the tenant's figures and its ledger entry:

- replication lag: the standbys' replay lag (``pg_stat_replication.replay_lag``) over ``--max-replica-lag``;
  a standby that replayed everything the primary has written lags by nothing, whatever replay_lag still shows
  (it keeps its last measure for a while);
- a VACUUM (autovacuum, mostly) working on the tenant's ``product_images``: GitLab's batched background
  migrations wait for it too; the batches' inserts would race it for the same pages;
- other sessions waiting for locks on the tenant's tables (``--max-lock-waiters``): the application is
  queueing there already, and a batch would add to it.

The primary-side views need the monitoring privileges (``pg_monitor``, or a superuser) to show other roles'
sessions: without them the signals read as healthy.

``BatchSizer`` sizes batches: a fixed ``--batch-size``, or with ``--batch-time`` a size that grows and shrinks
(between MIN_BATCH_SIZE and MAX_BATCH_SIZE) so each batch's transaction takes about that long, and halves
after a lock or statement timeout before the retry.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from django.db import connection
from psycopg import sql

from products.migration import control
from products.migration.report import LOCK_WAITS, PAUSED, REPLICA_LAG, VACUUM, Pace
from stoflow.raw_sql import fetch_rows
from stoflow.tenants.models import LedgerEntry, RunControl
from stoflow.tenants.runner import Cancelled

if TYPE_CHECKING:
    from products.migration.batches import MigrationOptions

MIN_BATCH_SIZE = 10
MAX_BATCH_SIZE = 50_000
# A batch's size changes at most by this factor at a time: one slow batch (a checkpoint, a cold cache) does
# not shrink the next to nothing.
MOST_CHANGE = 2.0

# One statement before each batch: what was last asked of the run (its control row) and the three health signals,
# read from the statistics functions rather than their views (the views join every backend's row to the roles
# and databases: pg_stat_replication cost 3.3 ms where its function costs under 1). Without --ignore-health the
# signals' scans are skipped (a false one-time filter). The lock waiters: sessions waiting for a lock (a row's,
# a table's) while they hold or want a lock on one of the tenant's tables; pg_locks is read only for them.
# A session (or a VACUUM) that waits for this run's own session is left out: waiting for it would wait for
# ever, as when the command runs inside a transaction of its caller that holds the locks (a test's, a script's).
_GATE = """SELECT c.requested, c.requested_by, c.requested_at, lag.seconds, lag.pid, vacuum.pid, waiters.sessions
FROM (SELECT
        to_regclass(format('%%I.products', %(schema)s::text)) AS products,
        to_regclass(format('%%I.product_images', %(schema)s::text)) AS product_images
     ) AS tenant
LEFT JOIN {run_control} AS c ON c.run_id = %(run_id)s
LEFT JOIN LATERAL (
    SELECT EXTRACT(epoch FROM w.replay_lag)::float8 AS seconds, w.pid
    FROM pg_stat_get_wal_senders() AS w
    WHERE %(watch)s AND w.replay_lsn IS DISTINCT FROM pg_current_wal_lsn() AND w.replay_lag IS NOT NULL
    ORDER BY w.replay_lag DESC
    LIMIT 1
) AS lag ON true
LEFT JOIN LATERAL (
    SELECT v.pid FROM pg_stat_get_progress_info('VACUUM') AS v
    WHERE %(watch)s AND v.relid = tenant.product_images AND pg_backend_pid() <> ALL (pg_blocking_pids(v.pid))
    LIMIT 1
) AS vacuum ON true
CROSS JOIN LATERAL (
    SELECT count(*) AS sessions
    FROM pg_stat_get_activity(NULL) AS a
    WHERE %(watch)s AND a.wait_event_type = 'Lock' AND a.pid <> pg_backend_pid()
      AND EXISTS (
          SELECT FROM pg_locks AS l
          WHERE l.pid = a.pid AND l.relation IN (tenant.products, tenant.product_images)
      )
      AND pg_backend_pid() <> ALL (pg_blocking_pids(a.pid))
) AS waiters"""

# Who a signal's backend is, asked only when the signal is over its limit.
_STANDBY = """SELECT COALESCE(NULLIF(application_name, ''), host(client_addr), 'pid ' || pid)
FROM pg_stat_replication WHERE pid = %(pid)s"""
_BACKEND_TYPE = "SELECT backend_type FROM pg_stat_activity WHERE pid = %(pid)s"


@dataclass(frozen=True)
class Signal:
    """A health signal over its limit: why the walk waits."""

    reason: str  # report.REPLICA_LAG, VACUUM or LOCK_WAITS
    detail: str


@dataclass(frozen=True)
class Reading:
    """What the gate reads before a batch: the run's latest control request, and the signals over their limits."""

    request: control.Request | None
    signals: list[Signal]


def read_gate(schema: str, options: MigrationOptions) -> Reading:
    """One statement: the run's control row and, unless --ignore-health, the health signals for ``schema``."""
    query = sql.SQL(_GATE).format(run_control=sql.Identifier("public", RunControl._meta.db_table))
    # Called inside a transaction of its caller (a test's, a script's), the batches commit nothing and their locks
    # stay held: waiting for the database's health can only wait for sessions that wait for the run itself (two
    # CI runs hung 120 s so). Pause and cancel are still read.
    watch = options.watch_health and not connection.in_atomic_block
    params = {"schema": schema, "run_id": options.run_id, "watch": watch}
    ((requested, by, at, lag, standby_pid, vacuum_pid, waiters),) = fetch_rows(query, params)
    request = control.Request(requested, by, at) if requested else None
    signals = []
    limit = options.max_replica_lag_ms / 1000
    if limit and lag is not None and lag > limit:
        standby = _named(_STANDBY, standby_pid) or f"pid {standby_pid}"
        signals.append(Signal(REPLICA_LAG, f"standby {standby} replays {lag:.1f} s behind (limit {limit:g} s)"))
    if vacuum_pid is not None:
        backend = _named(_BACKEND_TYPE, vacuum_pid) or "VACUUM"
        signals.append(Signal(VACUUM, f"{backend} on {schema}.product_images"))
    if waiters > options.max_lock_waiters:
        signals.append(
            Signal(LOCK_WAITS, f"{waiters} other session(s) wait for locks (limit {options.max_lock_waiters})")
        )
    return Reading(request, signals)


def _named(query: str, pid: int) -> str | None:
    rows = fetch_rows(sql.SQL(query), {"pid": pid})
    return rows[0][0] if rows else None


class Gate:
    """Before each batch of a walk: Ctrl-C, what was asked of the run from elsewhere, the database's health.

    ``before_batch`` returns once the walk may go on; it raises KeyboardInterrupt when the run is stopped and
    ``Cancelled`` when it is cancelled, also while waiting. The time waited goes to ``pace.waits``."""

    def __init__(self, schema: str, options: MigrationOptions, stop: threading.Event, pace: Pace):
        self.schema, self.options, self.stop, self.pace = schema, options, stop, pace

    def before_batch(self) -> None:
        waiting = ""  # the reason of the wait in progress
        noted = False  # whether the ledger entry says the run waits
        last = time.monotonic()
        while True:
            if self.stop.is_set():
                raise KeyboardInterrupt
            reason, detail, status = self._why_wait()
            now = time.monotonic()
            if waiting:
                self.pace.wait(waiting).seconds += now - last
            last = now
            if not reason:
                if noted:  # at work again (a run stopped while waiting closes its entry with its own words)
                    self._note(LedgerEntry.RUNNING, "")
                return
            if reason != waiting:
                wait = self.pace.wait(reason)
                wait.times += 1
                wait.detail = detail
                waiting, since = reason, datetime.now(UTC)
            # Written at each poll: the entry's sign of life stays fresh while the run holds the lock idle.
            message = detail if reason == PAUSED else f"waiting since {since:%H:%M:%S} UTC: {detail}"
            noted = self._note(status, message) or noted
            if self.stop.wait(control.POLL_SECONDS):
                raise KeyboardInterrupt

    def _why_wait(self) -> tuple[str, str, str]:
        """(reason, detail, the entry's status while waiting); no reason: go on."""
        reading = read_gate(self.schema, self.options)
        request = reading.request
        if request and request.requested == control.CANCEL:
            raise Cancelled(control.CANCEL)
        if request and request.requested == control.PAUSE:
            return PAUSED, f"paused by {request.by} at {request.at:%Y-%m-%d %H:%M:%S} UTC", LedgerEntry.PAUSED
        if reading.signals:
            return (
                reading.signals[0].reason,
                "; ".join(signal.detail for signal in reading.signals),
                LedgerEntry.RUNNING,
            )
        return "", "", ""

    def _note(self, status: str, message: str) -> bool:
        if not self.options.run_id:
            return False
        control.note_on_entry(self.options.run_id, self.schema, status, message)
        return True


class BatchSizer:
    """The size of the walk's next batch: fixed (``--batch-size``), or following ``--batch-time``."""

    def __init__(self, options: MigrationOptions, pace: Pace):
        self.size = options.batch_size
        self.target = options.batch_time_ms / 1000
        self.sizes = pace.batch_sizes
        self.sizes.target_ms = options.batch_time_ms

    @property
    def adaptive(self) -> bool:
        return bool(self.target)

    def measured(self, products: int, seconds: float, asked: int) -> None:
        """A batch of ``products`` (of ``asked``) took ``seconds``: the next one's size follows the target."""
        self.sizes.add_batch(products, seconds)
        if not self.adaptive or products < asked:
            return  # a walk's last, short batch says little about the next tenant's
        ratio = min(max(self.target / max(seconds, 0.001), 1 / MOST_CHANGE), MOST_CHANGE)
        self.size = min(max(round(asked * ratio), MIN_BATCH_SIZE), MAX_BATCH_SIZE)

    def halve(self) -> int:
        """After a lock or statement timeout, before the retry: half the size (MIN_BATCH_SIZE at least)."""
        self.size = max(self.size // 2, MIN_BATCH_SIZE)
        self.sizes.halved += 1
        return self.size
