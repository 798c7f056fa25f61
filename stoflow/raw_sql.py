"""Raw SQL on Django's connection: psycopg ``sql`` compositions, values always passed as parameters."""

from django.db import connection
from psycopg import ClientCursor, sql


def table(schema: str, name: str) -> sql.Identifier:
    """A schema-qualified table name, quoted."""
    return sql.Identifier(schema, name)


def as_text(query: sql.Composable) -> str:
    """The query as a string, identifiers quoted by psycopg, ready for Django's cursor."""
    connection.ensure_connection()
    return query.as_string(connection.connection)


def fetch_rows(query: sql.Composable, params: dict | None = None) -> list[tuple]:
    """Run a query that returns rows (values in ``params``, never spliced in) and return them."""
    with connection.cursor() as cursor:
        cursor.execute(as_text(query), params or {})
        return cursor.fetchall()


def fetch_result_sets(bound_queries: list[str]) -> list[list[tuple]]:
    """Run queries whose values ``bind`` filled in, in one round trip, and return each one's rows in order.

    Without parameters psycopg sends the text as one simple query, which may hold several statements."""
    with connection.cursor() as cursor:
        cursor.execute(";\n".join(query.strip().rstrip(";") for query in bound_queries))
        result_sets = [cursor.fetchall()]
        while cursor.nextset():
            result_sets.append(cursor.fetchall())
        return result_sets


def execute(query: sql.Composable, params: dict | None = None) -> None:
    """Run a statement that returns no rows (DDL, ANALYZE, DELETE, ...)."""
    with connection.cursor() as cursor:
        cursor.execute(as_text(query), params or {})


def bind(query: sql.Composable, params: dict) -> str:
    """The query with its values filled in by psycopg's quoting: for showing a query as it ran."""
    return ClientCursor(connection.connection).mogrify(as_text(query), params)
