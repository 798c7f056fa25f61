"""Where the database is: ``DATABASE_URL`` when set, else an embedded PostgreSQL.

The embedded server comes from the ``pgserver`` wheel (PostgreSQL 16). Its data
lives in ``.pgdata/`` at the top of the checkout (git-ignored); it is started on
first use and left running, so later commands reuse it.
"""

import os
import sys
import warnings
from pathlib import Path

import dj_database_url

ENGINE = "django_tenants.postgresql_backend"
DEFAULT_EMBEDDED_DATABASE_NAME = "stoflow"


def database_settings(base_dir: Path) -> dict:
    url = os.environ.get("DATABASE_URL")
    # The benchmark keeps its data sets apart from the demo's, in a database of its own.
    name = os.environ.get("STOFLOW_DATABASE_NAME")
    if url:
        config = dj_database_url.parse(url)
        if name:
            config["NAME"] = name
            ensure_database(connection_kwargs(config), name)
    else:
        config = embedded_database_settings(base_dir / ".pgdata", name or DEFAULT_EMBEDDED_DATABASE_NAME)
    config["ENGINE"] = ENGINE
    # Tests use their own database, test_<name> unless named here (parallel runs need distinct names).
    if os.environ.get("STOFLOW_TEST_DATABASE"):
        config["TEST"] = {"NAME": os.environ["STOFLOW_TEST_DATABASE"]}
    return config


def embedded_database_settings(pgdata: Path, name: str) -> dict:
    # Imported here: pgserver is only needed when DATABASE_URL is unset.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver

    was_running = (pgdata / "postmaster.pid").exists()
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    socket_dir = str(server.get_postmaster_info().socket_dir)
    if not was_running:
        print(f"Embedded PostgreSQL 16 started: data in {pgdata}, socket in {socket_dir}", file=sys.stderr)
    config = {"NAME": name, "USER": "postgres", "PASSWORD": "", "HOST": socket_dir, "PORT": ""}
    ensure_database(connection_kwargs(config), name)
    return config


def ensure_database(server: dict, name: str) -> None:
    """Create database ``name`` on the server unless it exists."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(**server, dbname="postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"PostgreSQL: created database {name!r}", file=sys.stderr)


def connection_kwargs(config: dict) -> dict:
    """psycopg.connect keywords for the server of a Django database config (no database name)."""
    keys = {"USER": "user", "PASSWORD": "password", "HOST": "host", "PORT": "port"}
    return {keyword: config[key] for key, keyword in keys.items() if config.get(key)}
