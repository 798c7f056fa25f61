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

# The same columns on Citus, for the backend with global pid %(gpid)s; the lock it waits for is named by the
# worker's table (the tenant's table with its shard number, e.g. tenant_a.products_102009).
_CITUS_BLOCKERS = """SELECT b.pid,
       COALESCE(b.state, ''),
       left(COALESCE(b.query, ''), %(chars)s),
       COALESCE(to_char(b.xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'), ''),
       COALESCE(b.application_name, ''),
       COALESCE((SELECT string_agg(DISTINCT l.locktype
                                   || COALESCE(' on ' || l.relation_name, '') || ' (' || l.mode || ')', ', ')
                 FROM citus_locks AS l WHERE l.global_pid = %(gpid)s AND NOT l.granted), '')
FROM citus_stat_activity AS b
WHERE b.global_pid IN (SELECT w.blocking_gpid FROM citus_lock_waits AS w WHERE w.waiting_gpid = %(gpid)s)
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
        """A unit of work: blockers are looked for once it has lasted ``after`` seconds."""
        self.seen = []
        self._since = time.monotonic()
        try:
            yield
        finally:
            self._since = None

    def _look(self) -> list[tuple]:
        if self.global_pid is not None:
            return fetch_rows(sql.SQL(_CITUS_BLOCKERS), {"gpid": self.global_pid, "chars": QUERY_CHARACTERS})
        return fetch_rows(sql.SQL(_BLOCKERS), {"pid": self.backend_pid, "chars": QUERY_CHARACTERS})

    def _poll_while_open(self) -> None:
        try:
            while not self._closed.wait(self.every):
                since = self._since
                if since is None or time.monotonic() - since < self.after:
                    continue
                try:
                    blockers = [Blocker(*row) for row in self._look()]
                except DatabaseError:
                    continue  # a failed look leaves the last answer; the job itself is not disturbed
                if blockers and self._since is since:
                    self.seen = blockers
        finally:
            connection.close()  # Django's connections are per thread: this one is the watch's own, if it opened one
