"""migrate_images on a live database: timeouts, sessions holding locks, killed clients, SIGTERM, failures mid-run.

Blocking sessions are real second connections (``other_session``): a row locked FOR UPDATE as the admin's
label action does, an uncommitted insert into product_images as the app does, a LOCK TABLE. Runs use a short
``--lock-timeout`` and one retry so each test stays well under a few seconds.
"""

import json
import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest
from django.conf import settings
from django.db import OperationalError, connection
from psycopg import sql

from products.migration import batches, ledger
from products.migration.report import ExitCode
from stoflow.tenants.models import LedgerEntry
from tests.helpers import (
    OTHER_TENANT,
    TENANT,
    WAIT_SECONDS,
    entries,
    image_rows,
    ledger_entries,
    make_product,
    manage_py_environment,
    migrated_product,
    other_session,
    plant_failing_insert,
    plant_insert_trigger,
    run_command,
    sql_rows,
    store_json,
    table_state,
    tenant_sql,
    wait_until_blocked_by,
)

FAST = ["--lock-timeout", "200ms", "--retries", "1"]
# For a test that needs every attempt's blockers seen: the watch looks after half the lock timeout, and its
# first look opens its connection, which on a loaded machine can outlast FAST's 100 ms window.
WATCHED = ["--lock-timeout", "1s", "--retries", "1"]
SESSION = (
    "SELECT current_setting('lock_timeout'), current_setting('statement_timeout'), "
    "current_setting('idle_in_transaction_session_timeout'), current_setting('client_connection_check_interval')"
)


def record_calls(monkeypatch, before=None) -> list[tuple]:
    """Every _write_batch call's (after, upto); ``before(call number, after, upto)`` runs first."""
    write_batch = batches._write_batch
    calls = []

    def record(schema, after, upto, options):
        calls.append((after, upto))
        if before:
            before(len(calls), after, upto)
        return write_batch(schema, after, upto, options)

    monkeypatch.setattr(batches, "_write_batch", record)
    return calls


# Timeouts


def test_the_run_s_statements_run_under_its_timeouts_and_the_session_gets_its_own_back(tenant, monkeypatch):
    make_product(images=entries(2))
    before = sql_rows(SESSION)
    seen = []
    record_calls(monkeypatch, lambda *_: seen.extend(sql_rows(SESSION)))

    code, _, output = run_command("--schema", tenant, "--lock-timeout", "300ms", "--statement-timeout", "45s")

    assert code == ExitCode.OK, output
    assert seen == [("300ms", "45s", "30s", "1s")]
    assert sql_rows(SESSION) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lock-timeout", "soon"], "argument --lock-timeout: takes a duration such as 200ms, 2s or 10min"),
        (["--lock-timeout", "0"], "argument --lock-timeout: must be at least 1 ms"),
        (["--statement-timeout", "1 day"], "argument --statement-timeout: takes a duration"),
        (["--retries", "-1"], "argument --retries: must be at least 0, not -1"),
        (["--pause-ms", "-5"], "argument --pause-ms: must be at least 0, not -5"),
    ],
)
def test_bad_timeouts_and_throttles_are_usage_errors(tenant, args, message):
    code, _, output = run_command(*args)
    assert code == ExitCode.USAGE
    assert message in output


BLOCKERS = [
    pytest.param("SELECT 1 FROM {products} WHERE id = %(id)s FOR UPDATE", "FOR UPDATE", id="row-locked-for-update"),
    pytest.param(
        'INSERT INTO {images} (product_id, url, "order", is_label, created_at, updated_at) '
        "VALUES (%(id)s, 'https://cdn.example/app.jpeg', 1, false, now(), now())",
        "INSERT INTO",
        id="uncommitted-insert-into-product-images",
    ),
    pytest.param("LOCK TABLE {products} IN ACCESS EXCLUSIVE MODE", "LOCK TABLE", id="lock-table"),
]


@pytest.mark.parametrize("statement, words", BLOCKERS)
def test_a_tenant_blocked_by_another_session_is_reported_with_its_pid_and_query_and_the_run_goes_on(
    committed_db, tmp_path, statement, words
):
    first = make_product(images=entries(3))
    make_product(images=entries(2))
    other = make_product(OTHER_TENANT, images=entries(2))
    with other_session() as app:
        app_pid = app.info.backend_pid
        app.execute("BEGIN")
        app.execute(tenant_sql(statement), {"id": first.pk})
        started = time.monotonic()
        code, report, output = run_command(*FAST, tmp_path=tmp_path)
        elapsed = time.monotonic() - started
        app.execute("ROLLBACK")

    assert code == ExitCode.BLOCKED, output
    blocked_tenant, other_tenant = report["tenants"]
    assert (blocked_tenant["status"], other_tenant["status"]) == ("blocked", "done")
    blocked = blocked_tenant["blocked"]
    assert (blocked["attempts"], blocked["lock_timeout_ms"]) == (2, 200)
    assert "lock timeout" in blocked["error"]
    [blocker] = blocked["blockers"]
    assert blocker["pid"] == app_pid
    assert words in blocker["query"] and blocker["state"] == "idle in transaction"
    assert blocked_tenant["validation"] is None
    # Within the lock timeout and its retry (and the run's other work), not for ever.
    assert elapsed < 10
    assert f"{TENANT} blocked on" in output and f"by pid {app_pid}" in output
    assert "Blocking sessions" in output
    assert len(image_rows(other.pk, OTHER_TENANT)) == 2
    assert [entry["status"] for entry in ledger_entries()] == [LedgerEntry.BLOCKED]
    assert f"pid {app_pid}" in ledger_entries()[0]["message"]

    # The blocker gone, a re-run finishes the tenant.
    code, report, output = run_command("--schema", TENANT, tmp_path=tmp_path)
    assert code == ExitCode.OK, output
    assert len(image_rows(first.pk)) == 3


def test_blockers_seen_on_any_attempt_are_reported_when_the_last_attempt_saw_none(committed_db, tmp_path, monkeypatch):
    product = make_product(images=entries(2))
    with other_session() as app:
        app_pid = app.info.backend_pid
        app.execute("BEGIN")
        app.execute(tenant_sql("SELECT 1 FROM {products} WHERE id = %(id)s FOR UPDATE"), {"id": product.pk})

        def release_then_lose_a_deadlock(number, after, upto):
            # The first attempt waits for the app's lock; the second meets no lock, it loses at once.
            if number == 2:
                app.execute("ROLLBACK")
                raise OperationalError("deadlock detected") from psycopg.errors.DeadlockDetected("lost")

        calls = record_calls(monkeypatch, release_then_lose_a_deadlock)
        code, report, output = run_command("--schema", TENANT, *WATCHED, tmp_path=tmp_path)

    assert code == ExitCode.BLOCKED, output
    assert len(calls) == 2
    blocked = report["tenants"][0]["blocked"]
    assert blocked["error"] == "deadlock detected"
    assert [blocker["pid"] for blocker in blocked["blockers"]] == [app_pid]
    assert f"pid {app_pid}" in ledger_entries()[0]["message"]


def test_blockers_of_every_attempt_are_reported_not_only_the_last_attempt_s(committed_db, tmp_path, monkeypatch):
    product = make_product(images=entries(2))
    lock_row = tenant_sql("SELECT 1 FROM {products} WHERE id = %(id)s FOR UPDATE")
    with other_session() as first, other_session() as second:
        pids = [first.info.backend_pid, second.info.backend_pid]
        first.execute("BEGIN")
        first.execute(lock_row, {"id": product.pk})

        def hand_the_lock_over(number, after, upto):
            # The first attempt waits for one session, the second for another.
            if number == 2:
                first.execute("ROLLBACK")
                second.execute("BEGIN")
                second.execute(lock_row, {"id": product.pk})

        record_calls(monkeypatch, hand_the_lock_over)
        code, report, output = run_command("--schema", TENANT, *WATCHED, tmp_path=tmp_path)
        second.execute("ROLLBACK")

    assert code == ExitCode.BLOCKED, output
    assert [blocker["pid"] for blocker in report["tenants"][0]["blocked"]["blockers"]] == pids
    assert all(f"pid {pid}" in ledger_entries()[0]["message"] for pid in pids)


@pytest.mark.parametrize("mode", [[], ["--dry-run"], ["--check"]], ids=["live", "dry-run", "check"])
@pytest.mark.parametrize("locked", ["product_images", "products"])
def test_a_table_locked_elsewhere_blocks_its_tenant_wherever_the_job_meets_it_and_the_next_tenant_runs(
    committed_db, tmp_path, locked, mode
):
    # Under --check the tenants are migrated already, so their checks pass; otherwise both have a run to do.
    first = migrated_product(3) if mode == ["--check"] else make_product(images=entries(3))
    other = migrated_product(2, schema=OTHER_TENANT) if mode == ["--check"] else None
    other = other or make_product(OTHER_TENANT, images=entries(2))
    with other_session() as holder, holder.transaction():
        holder_pid = holder.info.backend_pid
        # ACCESS EXCLUSIVE: even the preflight's reading of the table's definitions in the catalog waits.
        holder.execute(tenant_sql("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE", table=sql.Identifier(TENANT, locked)))
        started = time.monotonic()
        code, report, output = run_command(*mode, "--lock-timeout", "200ms", "--retries", "1", tmp_path=tmp_path)
        elapsed = time.monotonic() - started

    assert code == ExitCode.BLOCKED, output
    blocked_tenant, other_tenant = report["tenants"]
    assert (blocked_tenant["schema"], other_tenant["schema"]) == (TENANT, OTHER_TENANT)
    assert (blocked_tenant["status"], other_tenant["status"]) == ("blocked", "done")
    assert [blocker["pid"] for blocker in blocked_tenant["blocked"]["blockers"]] == [holder_pid]
    assert f"{TENANT} blocked on" in output and f"by pid {holder_pid}" in output
    assert other_tenant["validation"]["passed"] is True
    # The lock timeout and one retry, not as long as the holder holds the lock.
    assert elapsed < 5
    assert "Database failure" not in output and "re-run resumes" not in output
    expected_rows = 0 if mode == ["--dry-run"] else 2
    assert len(image_rows(other.pk, OTHER_TENANT)) == expected_rows
    # A blocked entry where the tenant's walk began; none where it stopped before (the preflight).
    assert [entry["status"] for entry in ledger_entries()] == (
        [LedgerEntry.BLOCKED] if blocked_tenant["ledger_entry_opened"] else []
    )

    # The holder gone, a re-run finishes the tenant.
    code, report, output = run_command(*mode, "--schema", TENANT, tmp_path=tmp_path)
    assert code == ExitCode.OK, output
    assert len(image_rows(first.pk)) == (0 if mode == ["--dry-run"] else 3)


def test_a_ledger_locked_elsewhere_blocks_each_tenant_before_its_walk_within_the_retries(committed_db, tmp_path):
    first, other = make_product(images=entries(2)), make_product(OTHER_TENANT, images=entries(2))
    with other_session() as holder, holder.transaction():
        holder_pid = holder.info.backend_pid
        # SHARE: the ledger can be read (where to resume), not written (the run's entry).
        holder.execute("LOCK TABLE public.run_ledger IN SHARE MODE")
        started = time.monotonic()
        code, report, output = run_command(*FAST, tmp_path=tmp_path)
        elapsed = time.monotonic() - started

    assert code == ExitCode.BLOCKED, output
    assert [(tenant["status"], tenant["blocked"]["what"]) for tenant in report["tenants"]] == [
        ("blocked", "opening the ledger entry")
    ] * 2
    assert all(tenant["blocked"]["blockers"][0]["pid"] == holder_pid for tenant in report["tenants"])
    assert elapsed < 5
    assert image_rows(first.pk) == image_rows(other.pk, OTHER_TENANT) == []
    assert "re-run resumes" not in output
    assert ledger_entries() == []


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(psycopg.errors.DeadlockDetected, id="deadlock"),
        pytest.param(psycopg.errors.SerializationFailure, id="serialization-failure"),
    ],
)
def test_deadlocks_and_serialization_failures_are_retried(tenant, monkeypatch, error):
    make_product(images=entries(2))

    def lose_the_first_attempt(number, after, upto):
        if number == 1:
            raise OperationalError("lost to another transaction") from error("lost")

    calls = record_calls(monkeypatch, lose_the_first_attempt)
    code, report, output = run_command("--schema", tenant, *FAST)

    assert code == ExitCode.OK, output
    assert len(calls) == 2
    assert len(table_state(tenant)) == 2


# Rows the database refuses


def test_a_batch_failing_on_a_few_rows_is_halved_not_redone_one_product_at_a_time(tenant, tmp_path, monkeypatch):
    products = [make_product(images=entries(2)) for _ in range(64)]
    bad = [products[5], products[40], products[41]]
    for product in bad:
        store_json(product.pk, [{"url": f"https://cdn.example/boom-{product.pk}.jpeg", "order": 1}, *entries(1, 2)])
    plant_failing_insert(tenant, "boom")
    calls = record_calls(monkeypatch)

    code, report, _ = run_command(
        "--schema", tenant, "--batch-size", "64", "--allow", "refuse_image", tmp_path=tmp_path
    )

    assert code == ExitCode.PRODUCT_ERRORS
    assert [error["product_id"] for error in report["tenants"][0]["run"]["errors"]] == [p.pk for p in bad]
    assert all("planted failure" in error["reason"] for error in report["tenants"][0]["run"]["errors"])
    assert report["tenants"][0]["run"]["images_migrated"] == 2 * 61
    # One product at a time took 1 + 64 statements; halving 64 ids (6 levels) around 3 products, at most
    # 1 + 2 x 3 x 6, and here fewer (two of them are neighbours).
    assert len(calls) <= 1 + 2 * len(bad) * 6
    assert len(calls) < 64 // 2


# The session lock: a killed client, a lock nobody recorded, a backend terminated mid-run


def advisory_locks_of(pid: int) -> int:
    with other_session() as session:
        return session.execute(
            "SELECT count(*) FROM pg_locks WHERE pid = %(pid)s AND locktype = 'advisory'", {"pid": pid}
        ).fetchone()[0]


def test_a_client_killed_while_its_backend_waits_leaves_no_lock_behind(committed_db, tmp_path):
    first = make_product(images=entries(3))
    make_product(images=entries(2))
    with other_session() as editor:
        editor.execute("BEGIN")
        editor.execute(tenant_sql("SELECT 1 FROM {products} WHERE id = %(id)s FOR UPDATE"), {"id": first.pk})
        # A lock timeout longer than the test: only the client check can free the tenant's lock.
        process = subprocess.Popen(
            [sys.executable, "manage.py", "migrate_images", "--schema", TENANT, "--lock-timeout", "60s", "--no-input"],
            cwd=settings.BASE_DIR,
            env=manage_py_environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            run_backend = wait_until_blocked_by(editor.info.backend_pid)
            assert advisory_locks_of(run_backend) == 1
        finally:
            process.kill()  # SIGKILL: the client cannot say goodbye
            process.wait(timeout=WAIT_SECONDS)
        killed = time.monotonic()
        while advisory_locks_of(run_backend) and time.monotonic() - killed < WAIT_SECONDS:
            time.sleep(0.05)
        released_after = time.monotonic() - killed
        editor.execute("ROLLBACK")

    # The row lock was still held: the backend went because its client did (client_connection_check_interval).
    assert released_after < 5
    code, report, output = run_command("--schema", TENANT, tmp_path=tmp_path)
    assert code == ExitCode.OK, output
    assert report["tenants"][0]["busy"] is False
    killed_entry, rerun_entry = ledger_entries()
    assert killed_entry["status"] == LedgerEntry.INTERRUPTED and "vanished" in killed_entry["message"]
    assert rerun_entry["status"] == LedgerEntry.DONE
    assert "stopped before committing a batch" in report["tenants"][0]["resume_note"]
    assert len(image_rows(first.pk)) == 3


def test_a_lock_no_run_recorded_is_reported_stale_with_how_to_clear_it(tenant, tmp_path, monkeypatch):
    product = make_product(images=entries(2))
    monkeypatch.setattr(ledger, "STALE_AFTER_SECONDS", 0.0)
    lock = sql_rows(
        "SELECT (%(namespace)s::bigint << 32) | (SELECT oid::bigint FROM pg_namespace WHERE nspname = %(schema)s)",
        {"namespace": 0x5709F10, "schema": tenant},
    )[0][0]
    with other_session() as holder:
        holder_pid = holder.info.backend_pid
        holder.execute("SELECT pg_advisory_lock(%(key)s)", {"key": lock})
        time.sleep(0.05)  # idle since: longer than the (lowered) staleness threshold

        code, report, output = run_command("--schema", tenant, tmp_path=tmp_path)

        assert code == ExitCode.TENANT_BUSY
        assert report["tenants"][0]["lock_holder"]["pid"] == holder_pid
        clear = f"SELECT pg_terminate_backend({holder_pid});"
        assert "stale lock" in report["tenants"][0]["lock_note"] and clear in report["tenants"][0]["lock_note"]
        assert "stale lock" in output and clear in output
        assert image_rows(product.pk) == []
        # Doing as told frees the tenant.
        with other_session() as admin:
            admin.execute(clear)
        deadline = time.monotonic() + WAIT_SECONDS
        while advisory_locks_of(holder_pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    code, _, output = run_command("--schema", tenant)
    assert code == ExitCode.OK, output


def test_a_lock_held_by_a_recorded_run_is_reported_busy_with_that_run(tenant, tmp_path):
    make_product(images=entries(2))
    with other_session() as holder:
        holder.execute(
            "SELECT pg_advisory_lock((%(namespace)s::bigint << 32) | "
            "(SELECT oid::bigint FROM pg_namespace WHERE nspname = %(schema)s))",
            {"namespace": 0x5709F10, "schema": tenant},
        )
        running = LedgerEntry.objects.create(
            run_id="a" * 32,
            schema_name=tenant,
            mode="live",
            status=LedgerEntry.RUNNING,
            started_at="2026-01-15T09:30:00Z",
            heartbeat_at="2026-01-15T09:31:00Z",
            last_product_id=41,
            backend_pid=holder.info.backend_pid,
            client="host:123",
        )

        code, report, output = run_command("--schema", tenant, tmp_path=tmp_path)

    assert code == ExitCode.TENANT_BUSY
    note = report["tenants"][0]["lock_note"]
    assert f"run {running.run_id}" in note and "host:123" in note and "up to product id 41" in note
    assert "stale" not in note


def test_a_backend_terminated_mid_run_stops_it_with_a_partial_report_and_the_next_run_resumes(
    committed_db, tmp_path, monkeypatch
):
    products = [make_product(images=entries(count)) for count in (2, 3, 4)]
    report_path = tmp_path / "report.md"

    def terminate_own_backend(number, after, upto):
        if number == 2:
            with other_session() as admin:
                # ::integer: Citus adds pg_terminate_backend(bigint global pid), which a small int matches as well.
                admin.execute(
                    "SELECT pg_terminate_backend(%(pid)s::integer)", {"pid": connection.connection.info.backend_pid}
                )

    record_calls(monkeypatch, terminate_own_backend)
    code, report, output = run_command(
        "--schema", TENANT, "--batch-size", "1", "--report", str(report_path), tmp_path=tmp_path
    )

    assert code == ExitCode.DATABASE_FAILURE, output
    assert "Stopped by a database failure in tenant_a" in output
    assert report["exit_code"] == ExitCode.DATABASE_FAILURE and report["failure"].startswith("tenant_a: ")
    [tenant] = report["tenants"]
    assert tenant["status"] == "failed" and tenant["run"]["images_migrated"] == 2
    assert "Database failure" in report_path.read_text()
    [entry] = ledger_entries()
    assert (entry["status"], entry["last_product_id"], entry["batches"]) == (LedgerEntry.FAILED, products[0].pk, 1)

    monkeypatch.undo()
    code, report, output = run_command("--schema", TENANT, tmp_path=tmp_path)
    assert code == ExitCode.OK, output
    assert report["tenants"][0]["resumed_after"] == products[0].pk
    assert f"resumes after product id {products[0].pk}" in output
    assert [len(image_rows(product.pk)) for product in products] == [2, 3, 4]


def test_a_database_failure_writes_the_partial_report_and_the_ledger_says_where_to_resume(
    committed_db, tmp_path, monkeypatch
):
    products = [make_product(images=entries(count)) for count in (2, 3, 4)]
    markdown = tmp_path / "report.md"

    def lose_connection(number, after, upto):
        if number == 2:
            raise OperationalError("server closed the connection unexpectedly")

    record_calls(monkeypatch, lose_connection)
    code, report, output = run_command(
        "--schema", TENANT, "--batch-size", "1", "--report", str(markdown), tmp_path=tmp_path
    )

    assert code == ExitCode.DATABASE_FAILURE
    assert report["failure"] == "tenant_a: server closed the connection unexpectedly"
    assert report["tenants"][0]["run"]["images_migrated"] == 2
    assert "Stopped by a database failure in tenant_a" in markdown.read_text()
    assert markdown.read_text().endswith("**Exit status:** 5 (DATABASE_FAILURE)\n")
    assert [(e["status"], e["last_product_id"]) for e in ledger_entries()] == [(LedgerEntry.FAILED, products[0].pk)]


def test_a_statement_over_the_statement_timeout_stops_the_run_with_exit_5_and_says_why(tenant, tmp_path):
    make_product(images=entries(2))
    plant_insert_trigger(tenant, "slow_image", "PERFORM pg_sleep(0.5); RETURN NEW;")

    code, report, output = run_command(
        "--schema", tenant, "--statement-timeout", "100ms", "--allow", "slow_image", tmp_path=tmp_path
    )

    assert code == ExitCode.DATABASE_FAILURE
    assert "statement timeout" in report["tenants"][0]["failure"]
    assert "--statement-timeout, 100 ms" in report["tenants"][0]["failure"]


def test_an_unreachable_database_still_writes_the_report_files(tmp_path):
    env = {**os.environ, "DATABASE_URL": "postgres://nobody@127.0.0.1:1/stoflow"}
    json_path, markdown = tmp_path / "report.json", tmp_path / "report.md"
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate_images", "--json", str(json_path), "--report", str(markdown)],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
    assert result.returncode == ExitCode.DATABASE_FAILURE
    report = json.loads(json_path.read_text())
    assert report["exit_code"] == ExitCode.DATABASE_FAILURE and report["tenants"] == []
    assert "Cannot reach the database" in report["failure"]
    assert "**Exit status:** 5" in markdown.read_text()


# SIGTERM, the throttle


def test_sigterm_stops_the_run_between_batches_writes_the_report_and_exits_143(committed_db, tmp_path):
    products = [make_product(images=entries(2)) for _ in range(8)]
    json_path, markdown = tmp_path / "report.json", tmp_path / "report.md"
    process = subprocess.Popen(
        [sys.executable, "manage.py", "migrate_images", "--schema", TENANT, "--batch-size", "1", "--pause-ms", "300"]
        + ["--json", str(json_path), "--report", str(markdown), "--no-input"],
        cwd=settings.BASE_DIR,
        env=manage_py_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            with other_session() as session:
                batches_done = session.execute(
                    "SELECT max(batches) FROM public.run_ledger WHERE schema_name = %(schema)s", {"schema": TENANT}
                ).fetchone()[0]
            if batches_done:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=WAIT_SECONDS)
    finally:
        process.kill()

    assert process.returncode == ExitCode.TERMINATED == 143, stderr
    assert "interrupted by SIGTERM in tenant_a" in stderr
    report = json.loads(json_path.read_text())
    assert report["exit_code"] == 143 and report["interruption"]["signal"] == "SIGTERM"
    [tenant] = report["tenants"]
    assert tenant["status"] == "interrupted" and 2 <= tenant["run"]["images_migrated"] < 16
    assert "Interrupted by SIGTERM while migrating tenant_a" in markdown.read_text()
    [entry] = ledger_entries()
    assert entry["status"] == LedgerEntry.INTERRUPTED and entry["last_product_id"] < products[-1].pk

    code, report, output = run_command("--schema", TENANT, tmp_path=tmp_path)
    assert code == ExitCode.OK, output
    assert report["tenants"][0]["resumed_after"] == entry["last_product_id"]
    assert len(table_state(TENANT)) == 16


def test_pause_ms_leaves_room_between_batches(tenant, monkeypatch):
    for _ in range(3):
        make_product(images=entries(2))
    times = []
    record_calls(monkeypatch, lambda *_: times.append(time.monotonic()))

    code, _, output = run_command("--schema", tenant, "--batch-size", "1", "--pause-ms", "200")

    assert code == ExitCode.OK, output
    assert all(later - earlier >= 0.19 for earlier, later in zip(times, times[1:], strict=False))
    assert ledger_entries()[0]["options"]["pause_ms"] == 200
