"""A per-tenant advisory lock: one job at a time on a tenant's tables.

The lock is session-level, held for a whole job on the tenant (its batches and its validation), so a second
job never interleaves with the first. A session lock lives as long as its backend, so a job must make sure
its backend goes when its client does: the job's session runs with ``client_connection_check_interval``
(``JOB_SESSION_SETTINGS``), so a backend whose client was killed (SIGKILL, a crashed host over TCP with the
keepalives) ends within about a second even while it waits on a row lock or runs a long statement, and the
lock goes with it. Measured on PostgreSQL 16 (bench/stale_lock.py), a client SIGKILLed while its backend
waited on a row lock: without the setting the lock stayed held as long as the row lock did (over 12 s,
i.e. for ever); with ``lock_timeout = 2s`` alone it went when the wait timed out (1.5 s after the kill);
with ``client_connection_check_interval = 1s`` 0.5 s after the kill (the next check), also during a
60 s ``pg_sleep``; an idle backend goes at once. A transaction-level lock per batch would not do better:
the backend of a killed client stuck in a lock wait keeps its transaction, and its transaction locks, just
as long; and between batches it would let another run in.

``tenant_lock_holder`` names the session holding the lock, so a run that finds it held can say who holds it
and how to clear a lock left behind by something else (``pg_terminate_backend``).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import DatabaseError, connection
from psycopg import sql

from stoflow.raw_sql import fetch_rows

# The tenant's advisory lock key: this namespace in the high 32 bits, the
# schema's OID (unique in the database, unlike a hash of its name) in the low ones.
ADVISORY_LOCK_NAMESPACE = 0x5709F10
LOCK_KEY_SQL = "(%(namespace)s::bigint << 32) | (SELECT oid::bigint FROM pg_namespace WHERE nspname = %(schema)s)"

# What a job holding the lock sets on its session so its backend cannot outlive its client (see above).
# The keepalives matter over TCP only (a vanished client host sends no FIN): dead after about 30 + 3 x 10 s.
JOB_SESSION_SETTINGS = {
    "client_connection_check_interval": "1s",
    "tcp_keepalives_idle": "30",
    "tcp_keepalives_interval": "10",
    "tcp_keepalives_count": "3",
}


@contextmanager
def tenant_lock(schema: str) -> Iterator[bool]:
    """A session-level advisory lock on the tenant: yields False when another job holds it."""
    key = {"namespace": ADVISORY_LOCK_NAMESPACE, "schema": schema}
    ((acquired,),) = fetch_rows(sql.SQL(f"SELECT pg_try_advisory_lock({LOCK_KEY_SQL})"), key)
    try:
        yield acquired
    finally:
        if acquired:
            _unlock(key)


def _unlock(key: dict) -> None:
    try:
        fetch_rows(sql.SQL(f"SELECT pg_advisory_unlock({LOCK_KEY_SQL})"), key)
    except DatabaseError:
        # The session is gone (terminated, connection lost), and its locks with it; or it cannot run a
        # statement: closing it releases the lock (not inside a transaction we do not own, e.g. a test's).
        if not connection.in_atomic_block:
            connection.close()


@dataclass(frozen=True)
class LockHolder:
    """The session holding a tenant's lock, as pg_stat_activity shows it."""

    pid: int
    state: str  # "active", "idle", "idle in transaction", ...
    query: str  # its current or last statement (the first 300 characters)
    state_since: str  # "YYYY-MM-DD HH:MM:SS UTC"
    seconds_in_state: float
    application: str
    client: str  # address:port, or "local socket"


def tenant_lock_holder(schema: str) -> LockHolder | None:
    """Who holds the tenant's advisory lock (None: nobody, or it was released meanwhile)."""
    rows = fetch_rows(
        sql.SQL(
            "SELECT a.pid, COALESCE(a.state, ''), left(COALESCE(a.query, ''), 300), "
            """COALESCE(to_char(a.state_change AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'), ''), """
            "COALESCE(extract(epoch FROM now() - a.state_change), 0)::float, COALESCE(a.application_name, ''), "
            "COALESCE(host(a.client_addr) || ':' || a.client_port, 'local socket') "
            "FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND ((l.classid::bigint << 32) | l.objid::bigint) = {key}"
        ).format(key=sql.SQL(LOCK_KEY_SQL)),
        {"namespace": ADVISORY_LOCK_NAMESPACE, "schema": schema},
    )
    return LockHolder(*rows[0]) if rows else None
