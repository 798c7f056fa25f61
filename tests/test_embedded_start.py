"""The embedded PostgreSQL starts when Django first connects, not when settings are imported.

Each test runs ``manage.py`` as a user does, with ``DATABASE_URL`` unset and the embedded data
directory (``STOFLOW_PGDATA``) in a fresh temporary directory; a server started there is stopped
afterwards.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.conf import settings

from stoflow import embedded_postgres

STARTED = f"Embedded PostgreSQL {embedded_postgres.server_version()} started"
# Prints the database it reached and the socket directory the backend filled in, after a second connection.
QUERY = (
    "from django.db import connection; "
    "connection.ensure_connection(); connection.close(); "
    "cursor = connection.cursor(); cursor.execute('SELECT current_database()'); "
    "print(cursor.fetchone()[0], connection.settings_dict['HOST'])"
)


def manage(pgdata: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "STOFLOW_PGDATA": str(pgdata)}
    for name in ("DATABASE_URL", "STOFLOW_DATABASE_NAME", "STOFLOW_TEST_DATABASE"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def pgdata():
    """A data directory that does not exist yet; a server started in it is stopped and its data removed.

    Not under pytest's tmp_path: when run as root the server runs as another user (the wheel's), and
    any pytest session resets the permissions of pytest's root temporary directory, which that
    user must traverse.
    """
    parent = Path(tempfile.mkdtemp(prefix="stoflow-pgdata-")).resolve()
    path = parent / "pgdata"
    try:
        yield path
    finally:
        embedded_postgres.stop(path)
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.parametrize(
    "command",
    [["--help"], ["check"], ["makemigrations", "--check", "--dry-run"]],
    ids=["help", "check", "makemigrations-check"],
)
def test_a_command_without_the_database_starts_no_server(pgdata, command):
    result = manage(pgdata, *command)

    assert result.returncode == 0, result.stderr
    assert not pgdata.exists()
    assert STARTED not in result.stderr
    # makemigrations skips its check of the applied migrations quietly rather than warn it cannot connect.
    assert "Warning" not in result.stderr


def test_a_command_using_the_database_starts_the_server_once_in_its_data_directory(pgdata):
    first = manage(pgdata, "shell", "-c", QUERY)

    assert first.returncode == 0, first.stderr
    assert (pgdata / "postmaster.pid").exists()
    database, socket_dir = first.stdout.split()[-2:]
    assert database == "stoflow"
    assert first.stderr.count(STARTED) == 1
    assert f"{STARTED}: data in {pgdata}, socket in {socket_dir}" in first.stderr
    assert "created database 'stoflow'" in first.stderr

    # Later commands use the running server and say nothing of it; makemigrations checks against it.
    again = manage(pgdata, "shell", "-c", QUERY)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split()[-2:] == ["stoflow", socket_dir]
    assert again.stderr == ""
    makemigrations = manage(pgdata, "makemigrations", "--check", "--dry-run", "-v", "2")
    assert makemigrations.returncode == 0, makemigrations.stderr
    assert "skipped" not in makemigrations.stdout and makemigrations.stderr == ""


def embedded_cli(pgdata: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m stoflow.embedded_postgres`` (the ``make db-*`` targets) on ``pgdata``."""
    env = {**os.environ, "STOFLOW_PGDATA": str(pgdata)}
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "stoflow.embedded_postgres", *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_data_directory_of_another_major_version_is_refused_saying_what_to_do(pgdata):
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("16\n")

    result = manage(pgdata, "shell", "-c", QUERY)

    assert result.returncode != 0
    assert (
        f"The embedded PostgreSQL data in {pgdata} was made by PostgreSQL 16; this checkout runs "
        f"PostgreSQL {embedded_postgres.server_version()}"
    ) in result.stderr
    assert "`make db-reset`" in result.stderr and "STOFLOW_PGDATA" in result.stderr
    assert STARTED not in result.stderr
    assert sorted(path.name for path in pgdata.iterdir()) == ["PG_VERSION"]  # left as it was
    status = embedded_cli(pgdata, "status")
    assert f"data directory: {pgdata} (PostgreSQL 16)" in status.stdout


def test_the_server_can_be_inspected_stopped_and_reset(pgdata):
    assert manage(pgdata, "shell", "-c", QUERY).returncode == 0
    status = embedded_cli(pgdata, "status")
    assert f"data directory: {pgdata} (PostgreSQL {embedded_postgres.server_major()})" in status.stdout
    assert "server: running" in status.stdout

    stop = embedded_cli(pgdata, "stop")
    assert stop.returncode == 0, stop.stderr
    assert f"Stopped the embedded PostgreSQL in {pgdata}." in stop.stdout
    assert not embedded_postgres.is_running(pgdata)
    assert "server: stopped" in embedded_cli(pgdata, "status").stdout

    # psql from the wheel starts the server again and reaches the project's database by default.
    psql = embedded_cli(pgdata, "psql", "-At", "-c", "SELECT current_database(), current_setting('server_version')")
    assert psql.returncode == 0, psql.stderr
    assert psql.stdout.strip() == f"stoflow|{embedded_postgres.server_version()}"
    assert STARTED in psql.stderr

    reset = embedded_cli(pgdata, "reset")
    assert reset.returncode == 0, reset.stderr
    assert not pgdata.exists()
    assert embedded_cli(pgdata, "reset").stdout.startswith("Nothing to delete")
