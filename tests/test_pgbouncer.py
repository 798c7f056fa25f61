"""Through a real PgBouncer: session pooling works as a direct connection does; transaction pooling is refused.

Each test starts Debian's ``pgbouncer`` on a free port in front of the tests' server and runs the commands in a
``manage.py`` subprocess whose DATABASE_URL points at it. Without pgbouncer the tests skip, saying so, unless
STOFLOW_REQUIRE_PGBOUNCER=1 (CI installs it and sets that).
"""

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from stoflow.tenants.pooling import TRANSACTION_POOLING
from tests.helpers import TENANT, WAIT_SECONDS, entries, image_rows, make_product, manage_py_environment

PGBOUNCER = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)
if PGBOUNCER is None:
    if os.environ.get("STOFLOW_REQUIRE_PGBOUNCER"):
        raise RuntimeError(
            "STOFLOW_REQUIRE_PGBOUNCER is set but pgbouncer is not installed (apt-get install pgbouncer)"
        )
    pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)", allow_module_level=True)

_INI = """[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {directory}/users.txt
pool_mode = {mode}
default_pool_size = 10
max_client_conn = 100
ignore_startup_parameters = extra_float_digits, options
logfile = {directory}/pgbouncer.log
pidfile = {directory}/pgbouncer.pid
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_pgbouncer(directory: Path, mode: str) -> tuple[subprocess.Popen, int]:
    """PgBouncer in ``mode`` in front of the tests' server; (its process, its port)."""
    connection.ensure_connection()
    server = connection.settings_dict
    host, port = server["HOST"] or "localhost", server["PORT"] or "5432"
    listen_port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "users.txt").write_text(f'"{server["USER"]}" ""\n')
    ini = directory / "pgbouncer.ini"
    ini.write_text(_INI.format(host=host, port=port, listen_port=listen_port, directory=directory, mode=mode))
    argv = [PGBOUNCER, str(ini)]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root: it runs as the user that may reach the server's socket directory.
        user = pwd.getpwuid(os.stat(host).st_uid).pw_name if os.path.isdir(host) else "nobody"
        shutil.chown(directory, user)
        for path in directory.iterdir():
            shutil.chown(path, user)
        argv[1:1] = ["-u", user]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            with psycopg.connect(host="127.0.0.1", port=listen_port, user=server["USER"], dbname=server["NAME"]):
                return process, listen_port
        except psycopg.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                log = directory / "pgbouncer.log"
                raise RuntimeError(
                    f"pgbouncer did not start: {process.stdout.read()} {log.read_text() if log.exists() else ''}"
                ) from None
            time.sleep(0.1)


@pytest.fixture(params=["session", "transaction"])
def pooled(request, committed_db):
    """(pool mode, a DATABASE_URL through PgBouncer in that mode)."""
    # Not under tmp_path: pytest's directories are the test user's alone, and pgbouncer runs as another.
    directory = Path(tempfile.mkdtemp(prefix="stoflow-pgbouncer-"))
    process, port = start_pgbouncer(directory, request.param)
    try:
        server = connection.settings_dict
        yield request.param, f"postgres://{server['USER']}@127.0.0.1:{port}/{server['NAME']}"
    finally:
        process.terminate()
        process.wait(timeout=WAIT_SECONDS)
        shutil.rmtree(directory, ignore_errors=True)


def manage(database_url: str, *args: str) -> subprocess.CompletedProcess:
    environment = {**manage_py_environment(), "DATABASE_URL": database_url}
    environment.pop("STOFLOW_DATABASE_NAME", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )


def test_migrate_images_runs_through_session_pooling_and_refuses_transaction_pooling(pooled):
    mode, database_url = pooled
    product = make_product(images=entries(3))

    migrated = manage(database_url, "migrate_images", "--schema", TENANT, "--no-input")
    checked = manage(database_url, "migrate_images", "--check", "--schema", TENANT)

    if mode == "session":
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        assert "Migrated 3 images (1 labels)" in " ".join(migrated.stdout.split())
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert len(image_rows(product.pk)) == 3
    else:
        for result in (migrated, checked):
            assert result.returncode == 2, result.stdout + result.stderr
            assert TRANSACTION_POOLING in " ".join(result.stderr.split())
        assert image_rows(product.pk) == []  # nothing written


@pytest.mark.parametrize("pooled", ["transaction"], indirect=True)
@pytest.mark.parametrize("command", ["finalize_images", "restore_images_json"])
def test_the_lifecycle_commands_refuse_transaction_pooling(pooled, command):
    _, database_url = pooled

    result = manage(database_url, command, "--schema", TENANT, "--no-input")

    assert result.returncode == 2, result.stdout + result.stderr
    assert TRANSACTION_POOLING in " ".join(result.stderr.split())
