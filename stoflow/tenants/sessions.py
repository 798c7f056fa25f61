"""Server settings for this thread's database session: set for the length of a job, then put back; and whether
the session lasts from one transaction to the next at all (``transaction_pooled``)."""

import secrets
import select
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, nullcontext

import psycopg
from django.db import DatabaseError, connection
from psycopg import pq, sql

from stoflow.raw_sql import as_text, fetch_rows
from stoflow.tenants.citus import PROPAGATE_SET_LOCAL, is_citus


@contextmanager
def session_settings(settings: dict[str, str]) -> Iterator[int]:
    """``SET`` each setting for the session (``set_config(..., false)``), and on Citus ``SET LOCAL`` it again at the
    start of every transaction the session begins meanwhile; on leaving, the values it had come back. Yields the
    session's backend pid, read in the same statement.

    Session-level, so the job's statements outside a transaction and its transactions all run under them. The
    ``SET LOCAL`` is for Citus: the coordinator runs a statement on a worker through a connection of its own,
    which carries none of this session's settings (a batch waiting there for a row lock would wait until the
    coordinator's statement_timeout). With ``citus.propagate_set_commands = 'local'``, set here for the session
    when Citus is there, Citus sends a transaction's SET LOCALs to each worker connection it uses. Plain
    PostgreSQL, where the session's values hold in each transaction, is spared the round trip (two of a small
    tenant's statements, one per batch of a large one).
    """
    session = dict(settings)
    citus = is_citus()
    if citus:
        session.update(PROPAGATE_SET_LOCAL)
    previous, backend_pid = _apply(session)
    try:
        with connection.execute_wrapper(_set_local_in_each_transaction(settings)) if citus else nullcontext():
            yield backend_pid
    finally:
        try:
            _apply(previous)
        except DatabaseError:
            pass  # the session is gone (terminated, connection lost), and its settings with it


def set_local(settings: dict[str, str]) -> str:
    """``SET LOCAL`` statements for ``settings``, as one text (SET takes no query parameters: literals, quoted)."""
    return "; ".join(
        as_text(sql.SQL("SET LOCAL {} = {}").format(sql.Identifier(*name.split(".")), sql.Literal(value)))
        for name, value in settings.items()
    )


def _set_local_in_each_transaction(settings: dict[str, str]) -> Callable:
    """A Django execute wrapper: before a transaction's first statement, the settings as ``SET LOCAL``.

    Django begins a transaction lazily (``atomic()`` turns autocommit off; psycopg sends BEGIN with the first
    statement): a statement run with autocommit off on an idle connection is a transaction's first. The SET is
    sent on the raw connection, which begins the transaction, so the wrapped statement runs inside it."""
    statement = set_local(settings)

    def wrapper(execute, query, params, many, context):
        django_connection = context["connection"]
        raw = django_connection.connection
        if not raw.autocommit and raw.info.transaction_status == pq.TransactionStatus.IDLE:
            with django_connection.wrap_database_errors:  # raised as Django's errors, as the statement's would be
                raw.execute(statement)
        return execute(query, params, many, context)

    return wrapper


# Each setting's value is read before it is set: the CTE's row is computed before the outer row that sets it.
_APPLY = """WITH setting AS MATERIALIZED (
    SELECT s.name, s.value, current_setting(s.name) AS previous
    FROM unnest(%(names)s::text[], %(values)s::text[]) AS s(name, value)
)
SELECT name, previous, set_config(name, value, false), pg_backend_pid() FROM setting"""


def _apply(settings: dict[str, str]) -> tuple[dict[str, str], int]:
    """Set ``settings`` (at least one) for the session, in one statement; the values they had, and the session's
    backend pid."""
    rows = fetch_rows(sql.SQL(_APPLY), {"names": list(settings), "values": list(settings.values())})
    return {name: previous for name, previous, _, _ in rows}, rows[0][3]


# The probe's marker: a setting of our own namespace, set for the session and read back.
SESSION_PROBE = "stoflow.session_probe"
# Rounds of looking for the marker: a transaction pooler under other clients' load can dodge one by chance.
PROBE_ROUNDS = 3
# How long the probe's second connection waits for a server session. A transaction pooler hands out the one this
# connection just released at once; a full session-mode pool would keep it waiting (PgBouncer: up to its
# query_wait_timeout, 120 s by default), and a session-mode pool is what the probe is there to let through.
PROBE_WAIT_SECONDS = 2.0


def transaction_pooled() -> bool:
    """Whether Django's connection goes through a pooler that hands out server sessions per transaction
    (PgBouncer's pool_mode=transaction or statement): there a ``SET``, django-tenants' ``search_path`` and a
    session advisory lock stay behind on a server session the next transaction may not get, and another client
    may. Call it outside a transaction, before any work.

    Told from the client side (a pooler's admin console is not the application's to read):

    - PostgreSQL gives a client its backend's pid in the cancel key; a pooler gives its own (a transaction pooler
      cannot do otherwise: the client has no one backend). The server's pid there: a direct connection, done.
    - Otherwise a random marker is set for this session (``set_config(..., false)``), then looked for, a few
      times, by a second connection opened meanwhile (found there: both were handed the same server session, as
      PgBouncer hands the session just released to the next client) and by this connection in its next
      transaction (gone, or another backend pid: another server session).

    A direct connection or a session-mode pool keeps one server session per client connection for its life, and
    two connections open at once never share one: neither sign can show there, so no false alarm. A transaction
    pooler shows one each round unless other clients' transactions take the session in between every time.
    """
    connection.ensure_connection()
    ((server_pid,),) = fetch_rows(sql.SQL("SELECT pg_backend_pid()"))
    if server_pid == connection.connection.info.backend_pid:
        return False
    marker = {"name": SESSION_PROBE, "token": secrets.token_hex(16)}
    ((first_pid,),) = fetch_rows(sql.SQL("SELECT pg_backend_pid() FROM set_config(%(name)s, %(token)s, false)"), marker)
    read_back = sql.SQL("SELECT current_setting(%(name)s, true), pg_backend_pid()")
    try:
        with closing(psycopg.connect(**connection.get_connection_params(), autocommit=True)) as other:
            for _ in range(PROBE_ROUNDS):
                if not other.closed and _marker_seen_by(other, marker["token"]):
                    return True
                if fetch_rows(read_back, marker) != [(marker["token"], first_pid)]:
                    return True
        return False
    finally:
        fetch_rows(sql.SQL("SELECT set_config(%(name)s, '', false)"), marker)  # nothing left on a kept session


def _marker_seen_by(other: psycopg.Connection, token: str) -> bool:
    """Whether ``other`` reads the marker ``token``; no answer within PROBE_WAIT_SECONDS (no free server session
    in a session-mode pool) is a no, and closes ``other``: its query cannot be taken back."""
    pgconn = other.pgconn  # libpq itself: psycopg's own calls wait for an answer without an end
    pgconn.send_query_params(b"SELECT current_setting($1, true)", [SESSION_PROBE.encode()])
    deadline = time.monotonic() + PROBE_WAIT_SECONDS
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            other.close()
            return False
        if pgconn.flush():  # nonblocking libpq: some of the query is still to send
            select.select([], [pgconn.socket], [], remaining)
            continue
        pgconn.consume_input()
        if not pgconn.is_busy():
            break
        select.select([pgconn.socket], [], [], remaining)
    answer = pgconn.get_result()
    while pgconn.get_result() is not None:
        pass  # the end of the query's results: the connection is ready for the next round
    if answer.status != pq.ExecStatus.TUPLES_OK:
        raise psycopg.OperationalError(f"probing the session: {answer.error_message.decode(errors='replace')}")
    return answer.get_value(0, 0) == token.encode()
