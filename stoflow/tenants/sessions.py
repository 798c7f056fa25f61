"""Server settings for this thread's database session: set for the length of a job, then put back."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import DatabaseError, connection
from psycopg import pq, sql

from stoflow.citus import PROPAGATE_SET_LOCAL, citus_installed
from stoflow.raw_sql import as_text, fetch_rows


@contextmanager
def session_settings(settings: dict[str, str]) -> Iterator[None]:
    """``SET`` each setting for the session (``set_config(..., false)``), and ``SET LOCAL`` it again at the start
    of every transaction the session begins meanwhile; on leaving, the values it had come back.

    Session-level, so the job's statements outside a transaction and its transactions all run under them. The
    ``SET LOCAL`` is for Citus: the coordinator runs a statement on a worker through a connection of its own,
    which carries none of this session's settings (a batch waiting there for a row lock would wait until the
    coordinator's statement_timeout). With ``citus.propagate_set_commands = 'local'``, set here for the session
    when Citus is there, Citus sends a transaction's SET LOCALs to each worker connection it uses. Plain
    PostgreSQL gets the same statement (one short round trip per transaction), so both run one path.
    """
    session = dict(settings)
    if citus_installed():
        session.update(PROPAGATE_SET_LOCAL)
    previous = dict(
        fetch_rows(
            sql.SQL("SELECT name, current_setting(name) FROM unnest(%(names)s::text[]) AS name"),
            {"names": list(session)},
        )
    )
    _apply(session)
    try:
        with connection.execute_wrapper(_set_local_in_each_transaction(settings)):
            yield
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


def _apply(settings: dict[str, str]) -> None:
    fetch_rows(
        sql.SQL(
            "SELECT set_config(name, value, false) FROM unnest(%(names)s::text[], %(values)s::text[]) AS s(name, value)"
        ),
        {"names": list(settings), "values": list(settings.values())},
    )
