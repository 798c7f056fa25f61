"""The embedded PostgreSQL 16 (the ``pgserver`` wheel), used when ``DATABASE_URL`` is unset.

The project's database backend (``stoflow.db_backend``) calls ``start`` when Django opens its first
connection, never on importing settings. The server is left running, so later commands reuse it.
Its data directory is ``.pgdata/`` at the top of the checkout unless ``STOFLOW_PGDATA`` names
another (``stoflow.database_settings``).
"""

import os
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_lock = threading.Lock()
_socket_dirs: dict[Path, str] = {}  # per data directory, once this process has found or started its server
_starting_allowed = True


class NotRunning(Exception):
    """The server is stopped and this process may not start it (``not_started``)."""


def start(pgdata: Path) -> str:
    """Start the server on ``pgdata`` unless it runs (creating the directory when new); its socket directory.

    Says on stderr, once, when it starts the server. Within ``not_started``, raises ``NotRunning``
    instead of starting a stopped server.
    """
    with _lock:
        if pgdata not in _socket_dirs:
            was_running = is_running(pgdata)
            if not was_running and not _starting_allowed:
                raise NotRunning(f"the embedded PostgreSQL in {pgdata} is not running (not started by this command)")
            # Imported here: pgserver is only needed when DATABASE_URL is unset.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import pgserver

            server = pgserver.get_server(pgdata, cleanup_mode=None)
            socket_dir = str(server.get_postmaster_info().socket_dir)
            if not was_running:
                print(f"Embedded PostgreSQL 16 started: data in {pgdata}, socket in {socket_dir}", file=sys.stderr)
            _socket_dirs[pgdata] = socket_dir
        return _socket_dirs[pgdata]


def is_running(pgdata: Path) -> bool:
    """Whether a server runs on ``pgdata``: its ``postmaster.pid`` names a live process."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


@contextmanager
def not_started() -> Iterator[None]:
    """Within: a stopped server stays stopped; ``start`` raises ``NotRunning`` (a running one is used)."""
    global _starting_allowed
    allowed, _starting_allowed = _starting_allowed, False
    try:
        yield
    finally:
        _starting_allowed = allowed
