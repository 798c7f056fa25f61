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

from psycopg import sql

from products.migration import control
from products.migration.report import LOCK_WAITS, PAUSED, REPLICA_LAG, VACUUM, Pace
from stoflow.raw_sql import fetch_rows
from stoflow.tenants.models import LedgerEntry
from stoflow.tenants.runner import Cancelled

if TYPE_CHECKING:
    from products.migration.batches import MigrationOptions

MIN_BATCH_SIZE = 10
MAX_BATCH_SIZE = 50_000
# A batch's size changes at most by this factor at a time: one slow batch (a checkpoint, a cold cache) does
# not shrink the next to nothing.
MOST_CHANGE = 2.0

# One query per batch for the three signals. The lock waiters: sessions waiting for a lock (any: a row's,
# a table's) while they hold or want a lock on one of the tenant's tables.
_HEALTH = """SELECT lag.seconds, lag.standby, vacuum.backends, waiters.sessions
FROM (SELECT
        to_regclass(format('%%I.products', %(schema)s::text)) AS products,
        to_regclass(format('%%I.product_images', %(schema)s::text)) AS product_images
     ) AS tenant
LEFT JOIN LATERAL (
    SELECT EXTRACT(epoch FROM r.replay_lag)::float8 AS seconds,
           COALESCE(NULLIF(r.application_name, ''), host(r.client_addr), 'pid ' || r.pid) AS standby
    FROM pg_stat_replication AS r
    WHERE r.replay_lsn IS DISTINCT FROM pg_current_wal_lsn() AND r.replay_lag IS NOT NULL
    ORDER BY r.replay_lag DESC
    LIMIT 1
) AS lag ON true
CROSS JOIN LATERAL (
    SELECT string_agg(DISTINCT a.backend_type, ', ') AS backends
    FROM pg_stat_progress_vacuum AS v JOIN pg_stat_activity AS a ON a.pid = v.pid
    WHERE v.relid = tenant.product_images
) AS vacuum
CROSS JOIN LATERAL (
    SELECT count(*) AS sessions
    FROM pg_stat_activity AS a
    WHERE a.wait_event_type = 'Lock' AND a.pid <> pg_backend_pid()
      AND EXISTS (
          SELECT FROM pg_locks AS l
          WHERE l.pid = a.pid AND l.relation IN (tenant.products, tenant.product_images)
      )
) AS waiters"""


@dataclass(frozen=True)
class Signal:
    """A health signal over its limit: why the walk waits."""

    reason: str  # report.REPLICA_LAG, VACUUM or LOCK_WAITS
    detail: str


def unhealthy(schema: str, options: MigrationOptions) -> list[Signal]:
    """The signals over their limits now, for a walk on ``schema``."""
    ((lag, standby, vacuum, waiters),) = fetch_rows(sql.SQL(_HEALTH), {"schema": schema})
    signals = []
    limit = options.max_replica_lag_ms / 1000
    if limit and lag is not None and lag > limit:
        signals.append(Signal(REPLICA_LAG, f"standby {standby} replays {lag:.1f} s behind (limit {limit:g} s)"))
    if vacuum:
        signals.append(Signal(VACUUM, f"{vacuum} on {schema}.product_images"))
    if waiters > options.max_lock_waiters:
        signals.append(
            Signal(LOCK_WAITS, f"{waiters} other session(s) wait for locks (limit {options.max_lock_waiters})")
        )
    return signals


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
        try:
            while True:
                if self.stop.is_set():
                    raise KeyboardInterrupt
                reason, detail, status = self._why_wait()
                now = time.monotonic()
                if waiting:
                    self.pace.wait(waiting).seconds += now - last
                last = now
                if not reason:
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
        finally:
            if noted:
                self._note(LedgerEntry.RUNNING, "")

    def _why_wait(self) -> tuple[str, str, str]:
        """(reason, detail, the entry's status while waiting); no reason: go on."""
        if self.options.run_id:
            request = control.latest_request(self.options.run_id)
            if request and request.requested == control.CANCEL:
                raise Cancelled(control.CANCEL)
            if request and request.requested == control.PAUSE:
                return PAUSED, f"paused by {request.by} at {request.at:%Y-%m-%d %H:%M:%S} UTC", LedgerEntry.PAUSED
        if self.options.watch_health:
            signals = unhealthy(self.schema, self.options)
            if signals:
                return signals[0].reason, "; ".join(signal.detail for signal in signals), LedgerEntry.RUNNING
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
