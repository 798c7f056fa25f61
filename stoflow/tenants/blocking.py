"""Who blocks a backend: the sessions holding the locks it waits for, named while it waits.

A statement that gives up on a lock (``lock_timeout``) no longer waits, so ``pg_blocking_pids`` says nothing
afterwards. ``BlockerWatch`` asks while it still waits: a thread with a connection of its own polls
``pg_blocking_pids`` for the watched backend whenever a unit of work (``watching``) has lasted longer than
``after`` seconds, and keeps the last blockers it saw (pid, state, query, since when) for the report.
The thread connects on its first poll only: a job whose statements never wait opens no second connection.

On Citus a statement waits on the worker holding the tenant, where the coordinator's ``pg_blocking_pids`` does
not look: the watch then asks ``citus_lock_waits`` (every node's waits, by global pid) for the watched
backend's global pid, and names each blocker by the session it started from (``citus_stat_activity``, not a
worker's connection serving it): its pid on the node it is connected to, the coordinator for the application.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import DatabaseError, connection
from psycopg import sql

from stoflow.raw_sql import fetch_rows

QUERY_CHARACTERS = 300  # of a blocker's query, in the report
LOOK_WAIT_SECONDS = 5  # at most, for a look in flight when its unit ends

_BLOCKERS = """SELECT b.pid,
       COALESCE(b.state, ''),
       left(COALESCE(b.query, ''), %(chars)s),
       COALESCE(to_char(b.xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'), ''),
       COALESCE(b.application_name, ''),
       COALESCE((SELECT string_agg(DISTINCT l.locktype
                                   || COALESCE(' on ' || l.relation::regclass::text, '') || ' (' || l.mode || ')', ', ')
                 FROM pg_locks AS l WHERE l.pid = %(pid)s AND NOT l.granted), '')
FROM pg_stat_activity AS b
WHERE b.pid = ANY (pg_blocking_pids(%(pid)s))
ORDER BY b.pid"""

# On Citus, first who blocks the backend with global pid %(gpid)s (pid %(pid)s here, on the coordinator), asked
# while it still waits, cheap first: pg_blocking_pids here (a table lock taken on the coordinator), then
# citus_lock_waits (waits on the workers; it asks every node, tens of milliseconds). As (node, pid) pairs.
_CITUS_BLOCKING = """SELECT citus_nodeid_for_gpid(%(gpid)s), here.pid
FROM unnest(pg_blocking_pids(%(pid)s)) AS here(pid)
UNION ALL
SELECT citus_nodeid_for_gpid(w.blocking_gpid), citus_pid_for_gpid(w.blocking_gpid)
FROM citus_lock_waits AS w
WHERE w.waiting_gpid = %(gpid)s"""
# Then _BLOCKERS' columns for those sessions (the ones they started from, not a worker's connection serving
# them); the lock waited for is named by the node's table (on a worker, the tenant's table with its shard
# number, e.g. tenant_a.products_102009).
_CITUS_BLOCKERS = """SELECT b.pid,
       COALESCE(b.state, ''),
       left(COALESCE(b.query, ''), %(chars)s),
       COALESCE(to_char(b.xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'), ''),
       COALESCE(b.application_name, ''),
       COALESCE((SELECT string_agg(DISTINCT l.locktype
                                   || COALESCE(' on ' || l.relation_name, '') || ' (' || l.mode || ')', ', ')
                 FROM citus_locks AS l WHERE l.global_pid = %(gpid)s AND NOT l.granted), '')
FROM citus_stat_activity AS b
WHERE (b.nodeid, b.pid) IN (SELECT * FROM unnest(%(nodes)s::integer[], %(pids)s::integer[]))
  AND NOT b.is_worker_query
ORDER BY b.pid"""


@dataclass(frozen=True)
class Blocker:
    """A session holding a lock the watched backend waited for."""

    pid: int
    state: str  # "idle in transaction", "active", ...
    query: str  # its current or last statement (the first QUERY_CHARACTERS)
    transaction_started: str  # "YYYY-MM-DD HH:MM:SS UTC", or "" outside a transaction
    application: str
    waited_for: str  # the lock the watched backend waited for, e.g. "transactionid (ShareLock)"


class BlockerWatch:
    """Polls, from a thread and a connection of its own, which sessions block ``backend_pid`` (on Citus, the
    backend with ``global_pid``, on any node)."""

    def __init__(self, backend_pid: int, after: float, every: float, global_pid: int | None = None):
        self.backend_pid = backend_pid
        self.global_pid = global_pid
        self.after = after
        self.every = every
        self.seen: list[Blocker] = []  # the blockers last seen during the current unit of work
        self._since: float | None = None
        self._looking: float | None = None  # the unit (its start) a look in flight is for
        self._look_done = threading.Condition()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._poll_while_open, name=f"blocker-watch-{backend_pid}", daemon=True)

    def __enter__(self) -> BlockerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._closed.set()
        self._thread.join(timeout=10)

    @contextmanager
    def watching(self) -> Iterator[None]:
        """A unit of work: blockers are looked for once it has lasted ``after`` seconds.

        A look still in flight when the unit ends is waited for (a few seconds at most), and its answer kept:
        on Citus a look asks every node and can outlast a short lock timeout (over 100 ms measured), so
        otherwise a unit that gave up on its lock would end with nobody named."""
        self.seen = []
        since = self._since = time.monotonic()
        try:
            yield
        finally:
            self._since = None
            with self._look_done:
                self._look_done.wait_for(lambda: self._looking != since, timeout=LOOK_WAIT_SECONDS)

    def _look(self) -> list[tuple]:
        if self.global_pid is not None:
            values = {"gpid": self.global_pid, "pid": self.backend_pid, "chars": QUERY_CHARACTERS}
            blocking = set(fetch_rows(sql.SQL(_CITUS_BLOCKING), values))
            if not blocking:
                return []
            nodes, pids = zip(*blocking, strict=True)
            return fetch_rows(sql.SQL(_CITUS_BLOCKERS), {**values, "nodes": list(nodes), "pids": list(pids)})
        return fetch_rows(sql.SQL(_BLOCKERS), {"pid": self.backend_pid, "chars": QUERY_CHARACTERS})

    def _poll_while_open(self) -> None:
        try:
            while not self._closed.wait(self.every):
                since = self._since
                if since is None or time.monotonic() - since < self.after:
                    continue
                self._looking = since
                try:
                    blockers = [Blocker(*row) for row in self._look()]
                except DatabaseError:
                    blockers = []  # a failed look leaves the last answer; the job itself is not disturbed
                with self._look_done:
                    # The unit, or the unit that just ended and waits for this answer (no other began since).
                    if blockers and self._since in (since, None):
                        self.seen = blockers
                    self._looking = None
                    self._look_done.notify_all()
        finally:
            connection.close()  # Django's connections are per thread: this one is the watch's own, if it opened one
