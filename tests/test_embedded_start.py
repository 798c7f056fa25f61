"""The embedded PostgreSQL starts when Django first connects, not when settings are imported.

Each test runs ``manage.py`` as a user does, with ``DATABASE_URL`` unset and the embedded data
directory (``STOFLOW_PGDATA``) in a fresh temporary directory; a server started there is stopped
afterwards.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from django.conf import settings

from stoflow import embedded_postgres
from tests.helpers import WAIT_SECONDS

STARTED = f"Embedded PostgreSQL {embedded_postgres.server_version()} started"
# Prints the database it reached and the socket directory the backend filled in, after a second connection.
QUERY = (
    "from django.db import connection; "
    "connection.ensure_connection(); connection.close(); "
    "cursor = connection.cursor(); cursor.execute('SELECT current_database()'); "
    "print(cursor.fetchone()[0], connection.settings_dict['HOST'])"
)


def manage_environment(pgdata: Path) -> dict[str, str]:
    """A user's environment for ``manage.py``: no ``DATABASE_URL``, the embedded server's data in ``pgdata``."""
    env = {**os.environ, "STOFLOW_PGDATA": str(pgdata)}
    for name in ("DATABASE_URL", "STOFLOW_DATABASE_NAME", "STOFLOW_TEST_DATABASE"):
        env.pop(name, None)
    return env


def manage(pgdata: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=manage_environment(pgdata),
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


COMMANDS_AT_ONCE = 12


def test_a_dozen_commands_starting_together_start_one_server_and_all_succeed(pgdata):
    """Each process waits, Django loaded, for a file to appear, then connects: their starts overlap.

    Every other process has a runtime directory of its own (``XDG_RUNTIME_DIR``), as a command from
    a desktop terminal and one from an IDE or cron do: the wheel's own lock lies there, so it does not
    keep these apart (without our lock, they ran initdb together and failed).
    """
    gate = pgdata.parent / "go"
    ready_files = [pgdata.parent / f"ready-{number}" for number in range(COMMANDS_AT_ONCE)]
    processes = []
    for number, ready in enumerate(ready_files):
        env = manage_environment(pgdata)
        if number % 2:
            runtime_dir = pgdata.parent / f"runtime-{number}"
            runtime_dir.mkdir(mode=0o700)  # platformdirs ignores a runtime directory others may read
            env["XDG_RUNTIME_DIR"] = str(runtime_dir)
        waiting_then_query = (
            f"import pathlib, time; pathlib.Path({str(ready)!r}).touch()\n"
            f"while not pathlib.Path({str(gate)!r}).exists(): time.sleep(0.005)\n"
            f"{QUERY}"
        )
        processes.append(
            subprocess.Popen(
                [sys.executable, "manage.py", "shell", "-c", waiting_then_query],
                cwd=settings.BASE_DIR,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while not all(ready.exists() for ready in ready_files):
            assert time.monotonic() < deadline, "the processes did not all load Django in time"
            assert all(process.poll() is None for process in processes), "a process ended before the gate opened"
            time.sleep(0.05)
        gate.touch()
        outputs = [process.communicate(timeout=WAIT_SECONDS) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
        assert stdout.split()[-2] == "stoflow"
    every_stderr = "".join(stderr for _, stderr in outputs)
    assert every_stderr.count(STARTED) == 1  # the others attached to the running server
    assert every_stderr.count("created database 'stoflow'") == 1
    assert "Traceback" not in every_stderr
    # Each process left the wheel's handle list as it exited.
    assert json.loads((pgdata / embedded_postgres.PID_LIST_NAME).read_text()) == []

    later = manage(pgdata, "shell", "-c", QUERY)
    assert later.returncode == 0, later.stderr
    assert later.stderr == ""


@pytest.mark.parametrize("damaged", ["", "[4242, 42"], ids=["empty", "garbage"])
def test_a_damaged_handle_list_is_rewritten_saying_so_once(pgdata, damaged):
    assert manage(pgdata, "shell", "-c", QUERY).returncode == 0
    pid_list = pgdata / embedded_postgres.PID_LIST_NAME
    pid_list.write_text(damaged)

    repaired = manage(pgdata, "shell", "-c", QUERY)

    assert repaired.returncode == 0, repaired.stderr
    assert repaired.stdout.split()[-2] == "stoflow"
    damage = "empty" if not damaged else "not a JSON list of process ids"
    assert repaired.stderr == (
        f"Embedded PostgreSQL: {pid_list} was {damage}; rewritten as an empty list of handles.\n"
    )
    assert json.loads(pid_list.read_text()) == []
    after = manage(pgdata, "shell", "-c", QUERY)
    assert after.returncode == 0, after.stderr
    assert after.stderr == ""
