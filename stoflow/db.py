"""Running psycopg ``sql`` compositions on Django's connection."""

from django.db import connection
from psycopg import ClientCursor, sql


def as_text(query: sql.Composable) -> str:
    """The query as a string, identifiers quoted by psycopg, ready for Django's cursor."""
    connection.ensure_connection()
    return query.as_string(connection.connection)


def fetchall(query: sql.Composable, params: dict | None = None) -> list[tuple]:
    """Execute ``query`` with ``params`` (values, never spliced in) and return its rows, if any."""
    with connection.cursor() as cursor:
        cursor.execute(as_text(query), params or {})
        return cursor.fetchall() if cursor.description else []


def bind(query: sql.Composable, params: dict) -> str:
    """The query with its values filled in by psycopg's quoting: for showing a query as it ran."""
    return ClientCursor(connection.connection).mogrify(as_text(query), params)
