"""How long does a killed client's session advisory lock outlive it? (the measurement behind stoflow/tenants/locks.py)

    .venv/bin/python -m bench.stale_lock

A client takes a session advisory lock, as migrate_images takes the tenant's, then runs a statement that waits
on a row another session holds FOR UPDATE (or a long pg_sleep, or nothing); it is killed with SIGKILL half a
second later, and the script times how long the lock stays held, 12 s at most, under each session setting.
Works in a database of its own (``stoflow_stale_lock``) on the server Django is configured for.
"""

import json
import os
import signal
import subprocess
import sys
import time

import django
import psycopg
from psycopg import sql

DATABASE = "stoflow_stale_lock"
KEY = 42
LIMIT = 12.0

# The killed client: connects, applies the settings, takes the lock, says so, then waits as asked.
CLIENT = """
import json, sys, time, psycopg
server, kind, settings = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3:]
conn = psycopg.connect(**server, autocommit=True)
for setting in settings:
    conn.execute(setting)
conn.execute("SELECT pg_advisory_lock(%s)" % {key})
print(conn.info.backend_pid, flush=True)
if kind == "row lock wait":
    conn.execute("SELECT * FROM probe WHERE id = 1 FOR UPDATE")
elif kind == "long statement":
    conn.execute("SELECT pg_sleep(60)")
else:
    time.sleep(60)
""".replace("{key}", str(KEY))

CASES = [
    ("idle between statements", []),
    ("row lock wait", []),
    ("row lock wait", ["SET lock_timeout = '2s'"]),
    ("row lock wait", ["SET client_connection_check_interval = '1s'"]),
    ("long statement", []),
    ("long statement", ["SET client_connection_check_interval = '1s'"]),
]


def server() -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stoflow.settings")
    django.setup()
    from django.db import connection

    from stoflow.database_settings import connection_kwargs

    connection.ensure_connection()  # starts the embedded server if need be, fills in its socket directory
    return connection_kwargs(connection.settings_dict)


def measure(server_kwargs: dict, kind: str, settings: list[str]) -> float | None:
    """Seconds the lock outlived its killed client (None: still held after LIMIT seconds)."""
    probe = {**server_kwargs, "dbname": DATABASE}
    with psycopg.connect(**probe) as holder, psycopg.connect(**probe, autocommit=True) as watcher:
        holder.execute("SELECT * FROM probe WHERE id = 1 FOR UPDATE")
        client = subprocess.Popen(
            [sys.executable, "-c", CLIENT, json.dumps(probe), kind, *settings], stdout=subprocess.PIPE, text=True
        )
        client_pid = int(client.stdout.readline())
        time.sleep(0.5)
        client.send_signal(signal.SIGKILL)
        client.wait()
        killed = time.monotonic()
        held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND granted"
        while watcher.execute(held, [KEY]).fetchone()[0] and time.monotonic() - killed < LIMIT:
            time.sleep(0.02)
        outlived = time.monotonic() - killed
        still_held = watcher.execute(held, [KEY]).fetchone()[0]
        holder.rollback()
        watcher.execute("SELECT pg_terminate_backend(%s)", [client_pid])  # leave nothing behind
        time.sleep(0.2)
    return None if still_held else outlived


def main() -> None:
    server_kwargs = server()
    with psycopg.connect(**server_kwargs, dbname="postgres", autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    with psycopg.connect(**server_kwargs, dbname=DATABASE, autocommit=True) as setup:
        setup.execute("CREATE TABLE IF NOT EXISTS probe (id int PRIMARY KEY)")
        setup.execute("INSERT INTO probe VALUES (1) ON CONFLICT DO NOTHING")
    print("A client killed (SIGKILL) 0.5 s into its wait: how long its session advisory lock stayed held")
    for kind, settings in CASES:
        outlived = measure(server_kwargs, kind, settings)
        result = f"held > {LIMIT:.0f} s (for ever)" if outlived is None else f"released {outlived:.2f} s after the kill"
        print(f"  {kind:<24} {', '.join(settings) or '(defaults)':<48} {result}")


if __name__ == "__main__":
    main()
