"""settings.DATABASES["default"], read from the environment: ``DATABASE_URL`` when set, else the embedded PostgreSQL.

Nothing here connects or starts a server: the config only describes the database. The project's
backend (``stoflow.db_backend``) acts on it when Django opens its first connection. Two keys of our
own, which Django ignores, tell it what to do then:

- ``EMBEDDED_PGDATA``: the embedded server's data directory. The backend starts that server
  (``stoflow.embedded_postgres``) unless it runs, and fills in ``HOST`` with its socket directory.
- ``CREATE_DATABASE``: create the database ``NAME`` on the server if it does not exist.

Environment:

- ``DATABASE_URL``: that server and database, parsed by dj-database-url. Unset: the embedded
  server, database ``stoflow``.
- ``STOFLOW_PGDATA``: the embedded server's data directory (default ``.pgdata/`` at the top of
  the checkout).
- ``STOFLOW_DATABASE_NAME``: another database on the same server, created when missing (the
  benchmark keeps its data sets apart from the demo's this way).
- ``STOFLOW_TEST_DATABASE``: the tests' database (default ``test_<name>``).
"""

import os
from pathlib import Path

import dj_database_url

ENGINE = "stoflow.db_backend"
DEFAULT_EMBEDDED_DATABASE_NAME = "stoflow"
EMBEDDED_PGDATA = "EMBEDDED_PGDATA"
CREATE_DATABASE = "CREATE_DATABASE"


def database_settings(base_dir: Path) -> dict:
    url = os.environ.get("DATABASE_URL")
    # The benchmark keeps its data sets apart from the demo's, in a database of its own.
    name = os.environ.get("STOFLOW_DATABASE_NAME")
    if url:
        config = dj_database_url.parse(url)
        if name:
            config["NAME"] = name
            config[CREATE_DATABASE] = True
    else:
        config = embedded_database_settings(embedded_pgdata(base_dir), name or DEFAULT_EMBEDDED_DATABASE_NAME)
    config["ENGINE"] = ENGINE
    # Tests use their own database, test_<name> unless named here (parallel runs need distinct names).
    if os.environ.get("STOFLOW_TEST_DATABASE"):
        config["TEST"] = {"NAME": os.environ["STOFLOW_TEST_DATABASE"]}
    return config


def embedded_pgdata(base_dir: Path) -> Path:
    """The embedded server's data directory: ``$STOFLOW_PGDATA``, else ``.pgdata/`` in ``base_dir``."""
    return Path(os.environ.get("STOFLOW_PGDATA") or base_dir / ".pgdata").expanduser().resolve()


def embedded_database_settings(pgdata: Path, name: str) -> dict:
    # HOST stays empty until the server runs: its socket directory is known then (stoflow.db_backend).
    return {
        "NAME": name,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": "",
        "PORT": "",
        EMBEDDED_PGDATA: str(pgdata),
        CREATE_DATABASE: True,
    }


# Keys of a PostgreSQL config's OPTIONS that Django's backend takes for itself, never passed to libpq.
DJANGO_ONLY_OPTIONS = frozenset({"isolation_level", "server_side_binding", "assume_role", "pool"})


def connection_kwargs(config: dict) -> dict:
    """psycopg.connect keywords for the server of a Django database config (no database name).

    For the embedded server, pass a connection's ``settings_dict`` once Django has connected: its
    ``HOST`` (the socket directory) is filled in then.
    """
    if config.get(EMBEDDED_PGDATA) and not config.get("HOST"):
        raise ValueError(
            f"The embedded PostgreSQL in {config[EMBEDDED_PGDATA]} has no socket directory in this config yet: "
            "pass connection.settings_dict after the connection is open (connection.ensure_connection())."
        )
    keys = {"USER": "user", "PASSWORD": "password", "HOST": "host", "PORT": "port"}
    # OPTIONS holds libpq's own keywords too (a DATABASE_URL's ``?host=/socket/dir`` lands there, not in HOST),
    # besides the ones only Django's backend reads.
    options = {key: value for key, value in config.get("OPTIONS", {}).items() if key not in DJANGO_ONLY_OPTIONS}
    return options | {keyword: config[key] for key, keyword in keys.items() if config.get(key)}
