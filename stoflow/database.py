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
EMBEDDED_DATABASE_NAME = "stoflow"


def database_settings(base_dir: Path) -> dict:
    url = os.environ.get("DATABASE_URL")
    if url:
        config = dj_database_url.parse(url)
    else:
        config = embedded_database_settings(base_dir / ".pgdata")
    config["ENGINE"] = ENGINE
    # Tests use their own database, test_<name> unless named here (parallel runs need distinct names).
    if os.environ.get("STOFLOW_TEST_DATABASE"):
        config["TEST"] = {"NAME": os.environ["STOFLOW_TEST_DATABASE"]}
    return config


def embedded_database_settings(pgdata: Path) -> dict:
    # Imported here: pgserver is only needed when DATABASE_URL is unset.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver
    import psycopg
    from psycopg import sql

    was_running = (pgdata / "postmaster.pid").exists()
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    socket_dir = str(server.get_postmaster_info().socket_dir)
    if not was_running:
        print(f"Embedded PostgreSQL 16 started: data in {pgdata}, socket in {socket_dir}", file=sys.stderr)
    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [EMBEDDED_DATABASE_NAME]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(EMBEDDED_DATABASE_NAME)))
            print(f"Embedded PostgreSQL: created database {EMBEDDED_DATABASE_NAME!r}", file=sys.stderr)
    return {
        "NAME": EMBEDDED_DATABASE_NAME,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": socket_dir,
        "PORT": "",
    }
