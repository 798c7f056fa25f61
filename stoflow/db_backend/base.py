"""django-tenants' PostgreSQL backend, which prepares the server when Django opens a connection.

Settings only describe the database (``stoflow.database_settings``). Before each new connection
(the first one does the work, later ones find it done):

- a config holding ``EMBEDDED_PGDATA`` gets the embedded server started (``stoflow.embedded_postgres``)
  and its socket directory as ``HOST``;
- a config holding ``CREATE_DATABASE`` gets its database ``NAME`` created on the server if missing.

Everything else is django-tenants' backend (itself wrapping ``ORIGINAL_BACKEND``, Django's PostgreSQL
backend by default), so schemas and tenants work as they do with ``django_tenants.postgresql_backend``.
"""

import sys
import threading
from pathlib import Path

import psycopg
from django.db.utils import OperationalError
from django_tenants.postgresql_backend.base import DatabaseWrapper as TenantDatabaseWrapper
from psycopg import errors, sql

from stoflow import embedded_postgres
from stoflow.database_settings import CREATE_DATABASE, EMBEDDED_PGDATA, connection_kwargs

_lock = threading.Lock()
_databases_ensured: set[tuple] = set()  # (server keywords, database name), once per process


def prepare_server(settings_dict: dict) -> None:
    """Start the embedded server and create the database, as the config asks; fills in its ``HOST``."""
    pgdata = settings_dict.get(EMBEDDED_PGDATA)
    if pgdata:
        try:
            settings_dict["HOST"] = embedded_postgres.start(Path(pgdata))
        except (embedded_postgres.NotRunning, embedded_postgres.DataDirectoryMismatch) as exc:
            raise OperationalError(str(exc)) from exc
    # NAME is None on Django's connections to the 'postgres' database (creating the test database, ...).
    if settings_dict.get(CREATE_DATABASE) and settings_dict["NAME"]:
        ensure_database(connection_kwargs(settings_dict), settings_dict["NAME"])


def ensure_database(server: dict, name: str) -> None:
    """Create database ``name`` on the server unless it exists."""
    key = (tuple(sorted(server.items())), name)
    with _lock:
        if key in _databases_ensured:
            return
        with psycopg.connect(**server, dbname="postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                try:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                    print(f"PostgreSQL: created database {name!r}", file=sys.stderr)
                except (errors.DuplicateDatabase, errors.UniqueViolation):
                    pass  # another process created it meanwhile
        _databases_ensured.add(key)


class DatabaseClient(TenantDatabaseWrapper.client_class):
    def runshell(self, parameters):
        # dbshell runs psql with the config's HOST: the embedded server's socket, once it runs.
        prepare_server(self.connection.settings_dict)
        super().runshell(parameters)


class DatabaseWrapper(TenantDatabaseWrapper):
    client_class = DatabaseClient

    def get_connection_params(self):
        prepare_server(self.settings_dict)
        return super().get_connection_params()
