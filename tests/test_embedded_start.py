"""The embedded PostgreSQL starts when Django first connects, not when settings are imported.

Each test runs ``manage.py`` as a user does, with ``DATABASE_URL`` unset and the embedded data
directory (``STOFLOW_PGDATA``) in a fresh temporary directory; a server started there is stopped
afterwards.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.conf import settings

STARTED = "Embedded PostgreSQL 16 started"
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


def stop_server(pgdata: Path) -> None:
    """``pg_ctl stop`` from the pgserver wheel, as the user owning the data directory (pgserver's when root)."""
    if not (pgdata / "postmaster.pid").exists():
        return
    pg_ctl = Path(importlib.util.find_spec("pgserver").origin).parent / "pginstall" / "bin" / "pg_ctl"
    user = pgdata.stat().st_uid if os.geteuid() == 0 else None
    subprocess.run(
        [str(pg_ctl), "-D", str(pgdata), "-m", "fast", "-w", "stop"],
        user=user,
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def pgdata():
    """A data directory that does not exist yet; a server started in it is stopped and its data removed.

    Not under pytest's tmp_path: when run as root the server runs as another user (pgserver's), and
    any pytest session resets the permissions of pytest's root temporary directory, which that
    user must traverse.
    """
    parent = Path(tempfile.mkdtemp(prefix="stoflow-pgdata-")).resolve()
    path = parent / "pgdata"
    try:
        yield path
    finally:
        stop_server(path)
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
