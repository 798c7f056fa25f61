"""The image commands through a real PgBouncer (Debian's /usr/sbin/pgbouncer) in front of the test database.

Through a session-mode pool they work as on a direct connection. Through transaction (or statement) pooling a
client's transactions may each get another server session, and its session settings, django-tenants'
search_path and its tenant locks stay behind on one: the commands detect it and refuse at once (exit 2),
before anything is written. Each pool mode gets a PgBouncer of its own, started on a free port for the module;
the commands run in subprocesses whose DATABASE_URL points at it.

Without pgbouncer the module is skipped, saying why, unless STOFLOW_REQUIRE_PGBOUNCER=1 (CI sets it), where it
fails.
"""

import os
import pwd
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from products.legacy_json import has_archive, has_json_column
from products.migration.preflight import TRANSACTION_POOLED
from products.migration.report import ExitCode
from stoflow.tenants.models import LedgerEntry
from stoflow.tenants.sessions import SESSION_PROBE, transaction_pooled
from tests.helpers import (
    TENANT,
    WAIT_SECONDS,
    doc_section,
    entries,
    ledger_entries,
    make_product,
    manage_py_environment,
    run_command,
    run_lifecycle,
    sql_rows,
    sql_value,
)

PGBOUNCER = Path("/usr/sbin/pgbouncer")  # Debian's package
LIBPQ_SOCKET_DIR = "/var/run/postgresql"  # where libpq looks when the settings name no host (Debian's default)

ManagePy = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="module")
def through_pgbouncer(tmp_path_factory) -> Iterator[ManagePy]:
    """``through_pgbouncer(pool_mode, command, *args)`` runs ``manage.py command *args --no-input`` with its
    DATABASE_URL on a PgBouncer in ``pool_mode`` in front of the test database; one PgBouncer per mode,
    started when a test first asks for it, stopped after the module."""
    if not PGBOUNCER.exists():
        reason = f"PgBouncer not found at {PGBOUNCER}: apt-get install pgbouncer"
        if os.environ.get("STOFLOW_REQUIRE_PGBOUNCER") == "1":
            pytest.fail(f"{reason} (STOFLOW_REQUIRE_PGBOUNCER=1: the PgBouncer tests are mandatory)")
        pytest.skip(reason)
    with ExitStack() as running:
        urls: dict[str, str] = {}

        def manage_py(pool_mode: str, command: str, *args: str) -> subprocess.CompletedProcess:
            if pool_mode not in urls:
                directory = tmp_path_factory.mktemp(f"pgbouncer-{pool_mode}")
                urls[pool_mode] = running.enter_context(pgbouncer(pool_mode, directory))
            return subprocess.run(
                [sys.executable, "manage.py", command, *args, "--no-input"],
                cwd=settings.BASE_DIR,
                env={**manage_py_environment(), "DATABASE_URL": urls[pool_mode]},
                capture_output=True,
                text=True,
                timeout=WAIT_SECONDS,
            )

        yield manage_py


@contextmanager
def pgbouncer(pool_mode: str, directory: Path) -> Iterator[str]:
    """A PgBouncer in ``pool_mode`` in front of the test database's server, its files in ``directory``; yields
    the test database's URL through it."""
    connection.ensure_connection()  # the embedded server's socket directory is in HOST from then on
    server = connection.settings_dict
    host, user, password = server["HOST"] or LIBPQ_SOCKET_DIR, server["USER"], server["PASSWORD"] or ""
    port = free_port()
    auth_file = directory / "users.txt"
    # With auth_type = trust the client's name must still be listed; the password is what PgBouncer logs in
    # to the server with (none needed on the embedded server's socket).
    auth_file.write_text(f'"{user}" "{password}"\n')
    ini = directory / "pgbouncer.ini"
    lines = [
        "[databases]",
        f"* = host='{host}' port={server['PORT'] or 5432}",  # any database name, the same on the server
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        "auth_type = trust",
        f"auth_file = {auth_file}",
        f"pool_mode = {pool_mode}",
    ]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root. It reads its files before it switches user (tmp_path's folders are
        # root's alone); it must reach the server's socket as that user.
        lines.append(f"user = {pgbouncer_user(host)}")
    ini.write_text("\n".join(lines) + "\n")
    log_path = directory / "pgbouncer.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([str(PGBOUNCER), str(ini)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_listening(port, process, log_path)
        yield f"postgres://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{port}/{quote(server['NAME'])}"
    finally:
        process.terminate()  # SIGTERM: PgBouncer's immediate shutdown
        try:
            process.wait(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pgbouncer_user(host: str) -> str:
    """Who PgBouncer runs as when the tests run as root: the owner of the server's socket directory (as root the
    embedded server runs as the user embedded_postgres, its directory that user's alone), else nobody."""
    if host.startswith("/") and Path(host).is_dir():
        owner = Path(host).stat().st_uid
        if owner != 0:
            return pwd.getpwuid(owner).pw_name
    return "nobody"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_listening(port: int, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"PgBouncer exited with status {process.returncode}:\n{log_path.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"PgBouncer did not listen on port {port} within {WAIT_SECONDS} s:\n{log_path.read_text()}")


def catalogue() -> None:
    """Products with 4, 3, 1 and no images: 8 images of 3 products to migrate, 2 labels."""
    for count in (4, 3, 1, 0):
        make_product(images=entries(count))


def image_count() -> int:
    return sql_value("SELECT count(*) FROM {images}")


def test_a_direct_connection_is_not_taken_for_a_pooler(db):
    assert transaction_pooled() is False
    # A direct connection is told by its cancel key alone: no marker is set on the session.
    assert sql_rows("SELECT current_setting(%(name)s, true)", {"name": SESSION_PROBE}) == [(None,)]


def test_through_a_session_pool_migrate_images_runs_and_its_check_passes(committed_db, through_pgbouncer, tmp_path):
    catalogue()
    json_path = tmp_path / "report.json"
    # --jobs 2 on a tenant of two batches: the ranges' worker connections go through the pool too.
    run = through_pgbouncer(
        "session", "migrate_images", "--schema", TENANT, "--jobs", "2", "--batch-size", "2", "--json", str(json_path)
    )
    assert run.returncode == ExitCode.OK, run.stdout + run.stderr
    assert "All checks PASS, no errors." in run.stdout
    assert json_path.exists()
    assert image_count() == 8
    assert sql_value("SELECT count(*) FROM {images} WHERE is_label") == 2
    [entry] = ledger_entries()
    assert entry["status"] == LedgerEntry.DONE

    check = through_pgbouncer("session", "migrate_images", "--schema", TENANT, "--check")
    assert check.returncode == ExitCode.OK, check.stdout + check.stderr
    assert "All checks PASS, no errors." in check.stdout


@pytest.mark.parametrize("pool_mode", ["transaction", "statement"])
def test_through_transaction_pooling_migrate_images_refuses_at_once(
    committed_db, through_pgbouncer, tmp_path, pool_mode
):
    catalogue()
    json_path = tmp_path / "report.json"
    run = through_pgbouncer(pool_mode, "migrate_images", "--schema", TENANT, "--json", str(json_path))

    assert run.returncode == ExitCode.USAGE == 2, run.stdout + run.stderr
    assert f"{TRANSACTION_POOLED} Nothing was done." in run.stderr
    # Refused before the run: no rows, no ledger entry, no report.
    assert image_count() == 0
    assert ledger_entries() == []
    assert not json_path.exists()


def test_through_transaction_pooling_finalize_and_restore_refuse(restores_the_column, through_pgbouncer, tmp_path):
    catalogue()
    code, _, output = run_command("--schema", TENANT, tmp_path=tmp_path)  # directly: a tenant ready to finalize
    assert code == ExitCode.OK, output

    finalize = through_pgbouncer("transaction", "finalize_images", "--schema", TENANT)
    assert finalize.returncode == 2, finalize.stdout + finalize.stderr
    assert TRANSACTION_POOLED in finalize.stderr
    assert has_json_column(TENANT) and not has_archive(TENANT)

    code, output = run_lifecycle("finalize_images", "--schema", TENANT)  # directly: a tenant to restore
    assert code == 0, output
    restore = through_pgbouncer("transaction", "restore_images_json", "--schema", TENANT)
    assert restore.returncode == 2, restore.stdout + restore.stderr
    assert TRANSACTION_POOLED in restore.stderr
    assert not has_json_column(TENANT)


def test_the_docs_quote_the_refusal_as_the_commands_print_it():
    quoted = " ".join(doc_section("docs/settings.md", "## PgBouncer").split())
    assert f"CommandError: {TRANSACTION_POOLED} Nothing was done." in quoted
