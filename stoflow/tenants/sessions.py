"""Server settings for this thread's database session: set for the length of a job, then put back."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DatabaseError
from psycopg import sql

from stoflow.raw_sql import fetch_rows


@contextmanager
def session_settings(settings: dict[str, str]) -> Iterator[None]:
    """``SET`` each setting for the session (``set_config(..., false)``); on leaving, the values it had come back.

    Session-level, not ``SET LOCAL``: the job's own transactions begin and end inside, and each of its
    statements runs under the values set here.
    """
    names = list(settings)
    previous = dict(
        fetch_rows(
            sql.SQL("SELECT name, current_setting(name) FROM unnest(%(names)s::text[]) AS name"), {"names": names}
        )
    )
    _apply(settings)
    try:
        yield
    finally:
        try:
            _apply(previous)
        except DatabaseError:
            pass  # the session is gone (terminated, connection lost), and its settings with it


def _apply(settings: dict[str, str]) -> None:
    fetch_rows(
        sql.SQL(
            "SELECT set_config(name, value, false) FROM unnest(%(names)s::text[], %(values)s::text[]) AS s(name, value)"
        ),
        {"names": list(settings), "values": list(settings.values())},
    )
