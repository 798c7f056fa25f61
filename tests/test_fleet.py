"""Operating the fleet migration unattended: waves that stop themselves (--max-failures, --limit, --sample), runs
paused, resumed and cancelled from another command, batches sized to a time (--batch-time), and batches that wait
for the database's health (lock waiters, a vacuum on product_images). The standby's replay lag:
test_replica_lag.py."""

import contextlib
import re
import threading
import time
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connection
from psycopg.rows import dict_row

from products.migration.report import ExitCode
from stoflow.tenants.locks import tenant_lock_holder
from stoflow.tenants.models import LedgerEntry, RunControl
from tests.helpers import (
    OTHER_TENANT,
    TENANT,
    WAIT_SECONDS,
    entries,
    join_all,
    ledger_entries,
    make_product,
    other_session,
    run_command,
    run_sql,
    tenant_sql,
    wait_until_blocked_by,
)

BOTH = ("--schema", TENANT, "--schema", OTHER_TENANT)


def flat(output: str) -> str:
    """The terminal report's words, its lines joined (it wraps long ones)."""
    return " ".join(output.split())


def catalogue(products: int, images: int = 2, schema: str = TENANT) -> list:
    return [make_product(schema, images=entries(images)) for _ in range(products)]


@contextmanager
def run_in_background(*args: str, tmp_path):
    """migrate_images in a thread of its own (its own connection), as on another host; yields a list that holds
    (exit code, report, output) once the thread ends, which the block waits for."""
    result = []

    def run():
        try:
            result.append(run_command(*args, tmp_path=tmp_path))
        finally:
            connection.close()

    thread = threading.Thread(target=run, name="migrate_images")
    thread.start()
    try:
        yield result
    finally:
        join_all([thread])


def entry_when(condition, schema: str = TENANT) -> dict:
    """The tenant's latest ledger entry, as another session sees it, once ``condition(entry)`` holds."""
    deadline = time.monotonic() + WAIT_SECONDS
    with other_session() as session:
        session.row_factory = dict_row
        while time.monotonic() < deadline:
            entry = session.execute(
                "SELECT * FROM public.run_ledger WHERE schema_name = %(schema)s ORDER BY started_at DESC, id DESC "
                "LIMIT 1",
                {"schema": schema},
            ).fetchone()
            if entry and condition(entry):
                return entry
            time.sleep(0.05)
    raise AssertionError(f"no ledger entry of {schema} met the condition within {WAIT_SECONDS} s")


# Waves


def test_max_failures_stops_starting_tenants_and_lists_those_not_started(committed_db, tmp_path):
    [locked, *_] = catalogue(3)
    catalogue(2, schema=OTHER_TENANT)
    with other_session() as app:
        app.execute("BEGIN")
        app.execute(tenant_sql("SELECT 1 FROM {products} WHERE id = %(id)s FOR UPDATE"), {"id": locked.pk})
        code, report, output = run_command(
            *BOTH, "--max-failures", "1", "--lock-timeout", "100ms", "--retries", "0", tmp_path=tmp_path
        )
        app.execute("ROLLBACK")

    # The exit status keeps its precedence: a blocked tenant is 7, whether or not the wave stopped.
    assert code == ExitCode.BLOCKED, output
    assert [tenant["schema"] for tenant in report["tenants"]] == [TENANT]
    assert report["wave_stop"] == {"max_failures": 1, "failed": [f"{TENANT} (blocked)"], "not_started": [OTHER_TENANT]}
    assert f"--max-failures 1: the run started no further tenant once {TENANT} (blocked)" in flat(output)
    assert f"1 tenant(s) not started: {OTHER_TENANT}." in flat(output)
    assert "stopped starting tenants once 1 had failed (--max-failures 1): 1 not started" in flat(output)
    assert ledger_entries(OTHER_TENANT) == []


def test_a_wave_under_its_bound_runs_every_tenant(committed_db, tmp_path):
    catalogue(2)
    catalogue(2, schema=OTHER_TENANT)

    code, report, output = run_command(*BOTH, "--max-failures", "1", "--jobs", "2", tmp_path=tmp_path)

    assert code == ExitCode.OK, output
    assert [tenant["status"] for tenant in report["tenants"]] == ["done", "done"]
    assert report["wave_stop"] is None


def test_limit_and_sample_choose_the_wave_s_tenants(committed_db, tmp_path):
    catalogue(1)
    catalogue(1, schema=OTHER_TENANT)

    _, limited, _ = run_command(*BOTH, "--limit", "1", "--dry-run", tmp_path=tmp_path)
    _, sampled, _ = run_command(*BOTH, "--sample", "1", "--dry-run", tmp_path=tmp_path)
    code, _, output = run_command(*BOTH, "--limit", "1", "--sample", "1")

    assert [tenant["schema"] for tenant in limited["tenants"]] == [TENANT]
    assert [tenant["schema"] for tenant in sampled["tenants"]] in ([TENANT], [OTHER_TENANT])
    assert code == ExitCode.USAGE and "not allowed with argument" in output


# Control from elsewhere


def test_a_run_paused_from_another_command_keeps_its_lock_and_goes_on_once_resumed(committed_db, tmp_path):
    catalogue(40)
    slow = ("--schema", TENANT, "--batch-size", "1", "--pause-ms", "30")
    with run_in_background(*slow, tmp_path=tmp_path) as result:
        running = entry_when(lambda entry: entry["batches"] >= 2)
        code, _, said = run_command("--pause", running["run_id"][:8])
        assert code == ExitCode.OK and f"Asked run {running['run_id']} to pause" in said
        paused = entry_when(lambda entry: entry["status"] == LedgerEntry.PAUSED)
        time.sleep(1.2)
        still = entry_when(lambda entry: True)
        holder = tenant_lock_holder(TENANT)
        run_command("--resume", running["run_id"])

    code, report, output = result[0]
    assert code == ExitCode.OK, output
    # Paused between batches: no batch while paused, the tenant's lock kept by the run's session.
    assert still["status"] == LedgerEntry.PAUSED and still["batches"] == paused["batches"] < 40
    assert holder is not None and holder.pid == paused["backend_pid"]
    assert paused["message"].startswith("paused by ") and "@" in paused["message"]
    # The sign of life goes on while paused.
    assert still["heartbeat_at"] > paused["heartbeat_at"]
    [wait] = report["tenants"][0]["pace"]["waits"]
    assert wait["reason"] == "paused" and wait["seconds"] >= 1.0 and wait["times"] == 1
    assert re.search(r"The batches waited \d+\.\d s in all for the database's health or a pause", flat(output))
    [entry] = ledger_entries()
    assert (entry["status"], entry["message"], entry["batches"]) == ("done", "", 40)


def test_a_run_cancelled_from_another_command_ends_as_an_interrupted_one_and_resumes(committed_db, tmp_path):
    products = catalogue(40)
    slow = ("--schema", TENANT, "--schema", OTHER_TENANT, "--batch-size", "1", "--pause-ms", "30")
    with run_in_background(*slow, tmp_path=tmp_path) as result:
        running = entry_when(lambda entry: entry["batches"] >= 2)
        code, _, _ = run_command("--cancel", running["run_id"])
        assert code == ExitCode.OK

    code, report, output = result[0]
    assert code == ExitCode.INTERRUPTED, output
    interruption = report["interruption"]
    assert (interruption["signal"], interruption["stopped_in"], interruption["not_started"]) == (
        "cancel",
        [TENANT],
        [OTHER_TENANT],
    )
    assert interruption["cancelled_by"] and "@" in interruption["cancelled_by"]
    assert f"Cancelled by {interruption['cancelled_by']} while migrating {TENANT}" in output
    [entry] = ledger_entries()
    assert entry["status"] == LedgerEntry.INTERRUPTED and entry["message"].startswith("cancelled by ")
    assert entry["last_product_id"] < products[-1].pk

    # Resumable: the next run starts after the cancelled run's last batch.
    code, report, output = run_command("--schema", TENANT, tmp_path=tmp_path)
    assert code == ExitCode.OK, output
    assert report["tenants"][0]["resumed_after"] == entry["last_product_id"]


@pytest.mark.parametrize(
    "schemas, pace",
    [
        # Two tenants worked at once, each in one walk (under two batches of 20 each: not split), slowly: the
        # cancel stops both workers.
        ((TENANT, OTHER_TENANT), ("--batch-size", "20", "--pause-ms", "400")),
        # One tenant split in two ranges worked at once: the cancel stops both ranges.
        ((TENANT,), ("--batch-size", "1", "--pause-ms", "30")),
    ],
)
def test_a_cancel_stops_every_worker_of_a_parallel_run(committed_db, tmp_path, schemas, pace):
    for schema in schemas:
        catalogue(30, schema=schema)
    selected = [argument for schema in schemas for argument in ("--schema", schema)]
    with run_in_background(*selected, "--jobs", "2", *pace, tmp_path=tmp_path) as result:
        running = entry_when(lambda entry: entry["batches"] >= 1)
        run_command("--cancel", running["run_id"])

    code, report, output = result[0]
    assert code == ExitCode.INTERRUPTED, output
    assert report["interruption"]["signal"] == "cancel"
    assert report["interruption"]["stopped_in"] == list(schemas)
    for schema in schemas:
        [entry] = ledger_entries(schema)
        assert entry["status"] == LedgerEntry.INTERRUPTED and entry["message"].startswith("cancelled by ")


def test_pausing_a_run_that_is_not_in_progress_is_a_usage_error(db):
    code, _, output = run_command("--pause", "0123456789abcdef")

    assert code == ExitCode.USAGE
    assert "no run in progress has the id '0123456789abcdef'" in output
    assert not RunControl.objects.exists()


# Batches sized to a time


def test_batch_time_grows_small_batches_and_shrinks_large_ones(committed_db, tmp_path):
    catalogue(300, images=1)

    code, grown, output = run_command("--schema", TENANT, "--batch-size", "10", "--batch-time", "2s", tmp_path=tmp_path)
    assert code == ExitCode.OK, output
    run_sql("TRUNCATE {images}")
    run_sql("TRUNCATE public.run_ledger")
    code, shrunk, output = run_command(
        "--schema", TENANT, "--batch-size", "100", "--batch-time", "1ms", tmp_path=tmp_path
    )
    assert code == ExitCode.OK, output

    # Batches far shorter than the target double at each step; far longer ones halve.
    sizes = grown["tenants"][0]["pace"]["batch_sizes"]
    assert (sizes["target_ms"], sizes["smallest"], sizes["products"]) == (2000, 10, 300)
    assert sizes["largest"] >= 80 and sizes["batches"] <= 6
    sizes = shrunk["tenants"][0]["pace"]["batch_sizes"]
    assert sizes["largest"] == 100 and sizes["smallest"] <= 25
    assert "Pace" in output and "1 ms" in output
    assert ledger_entries()[0]["options"]["batch_time_ms"] == 1


def test_batch_time_halves_a_batch_after_a_statement_timeout_before_the_retry(committed_db, tmp_path):
    catalogue(60, images=1)
    # Every row costs 10 ms to insert: 60 rows in one statement outlive its 300 ms, 15 rows do not.
    run_sql(
        "CREATE FUNCTION {schema}.slow_image() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_sleep(0.01); RETURN NEW; END $$"
    )
    run_sql("CREATE TRIGGER slow_image BEFORE INSERT ON {images} FOR EACH ROW EXECUTE FUNCTION {schema}.slow_image()")
    try:
        code, report, output = run_command(
            *("--schema", TENANT, "--allow", "slow_image", "--batch-size", "60", "--batch-time", "100ms"),
            *("--statement-timeout", "300ms", "--retries", "3"),
            tmp_path=tmp_path,
        )
    finally:
        run_sql("DROP TRIGGER slow_image ON {images}")
        run_sql("DROP FUNCTION {schema}.slow_image()")

    assert code == ExitCode.OK, output
    sizes = report["tenants"][0]["pace"]["batch_sizes"]
    assert sizes["halved"] >= 2 and sizes["largest"] <= 15 and sizes["products"] == 60
    assert report["tenants"][0]["run"]["images_migrated"] == 60


def test_a_fixed_batch_size_is_not_halved_and_a_statement_timeout_stops_the_run(committed_db, tmp_path):
    catalogue(40, images=1)
    run_sql(
        "CREATE FUNCTION {schema}.slow_image() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_sleep(0.01); RETURN NEW; END $$"
    )
    run_sql("CREATE TRIGGER slow_image BEFORE INSERT ON {images} FOR EACH ROW EXECUTE FUNCTION {schema}.slow_image()")
    try:
        code, report, output = run_command(
            "--schema", TENANT, "--allow", "slow_image", "--batch-size", "40", "--statement-timeout", "200ms"
        )
    finally:
        run_sql("DROP TRIGGER slow_image ON {images}")
        run_sql("DROP FUNCTION {schema}.slow_image()")

    assert code == ExitCode.DATABASE_FAILURE, output
    assert "statement timeout" in output


# Health


def test_batches_wait_while_other_sessions_wait_for_locks_on_the_tenant_s_tables(committed_db, tmp_path):
    [product, *_] = catalogue(5)
    with other_session() as holder, other_session() as waiter:
        holder.execute("BEGIN")
        holder.execute(tenant_sql("SELECT 1 FROM {products} WHERE id = %(id)s FOR UPDATE"), {"id": product.pk})
        waiting = threading.Thread(
            target=waiter.execute,
            args=(tenant_sql("UPDATE {products} SET title = title || '!' WHERE id = %(id)s"), {"id": product.pk}),
        )
        waiting.start()
        with run_in_background("--schema", TENANT, tmp_path=tmp_path) as result:
            entry = entry_when(lambda entry: entry["message"].startswith("waiting since"))
            time.sleep(1.0)
            holder.execute("COMMIT")  # the waiter goes on and commits; no one waits any more
        join_all([waiting])

    code, report, output = result[0]
    assert code == ExitCode.OK, output
    assert "1 other session(s) wait for locks (limit 0)" in entry["message"]
    assert entry["status"] == LedgerEntry.RUNNING and entry["batches"] == 0
    [wait] = report["tenants"][0]["pace"]["waits"]
    assert wait["reason"] == "lock waits on the tenant's tables" and wait["seconds"] >= 0.9
    assert re.search(r"The batches waited \d+\.\d s in all for the database's health or a pause", flat(output))
    assert ledger_entries()[0]["message"] == ""


def test_batches_wait_while_a_vacuum_works_on_the_tenant_s_product_images(committed_db, tmp_path):
    catalogue(300, images=5)
    code, _, output = run_command("--schema", TENANT)
    assert code == ExitCode.OK, output
    catalogue(3)
    with other_session() as vacuum:
        # A vacuum slowed down to a page or so per 100 ms: it takes seconds over product_images' pages.
        vacuum.execute("SET vacuum_cost_delay = 100")
        vacuum.execute("SET vacuum_cost_limit = 1")
        vacuuming = threading.Thread(
            target=vacuum.execute, args=(tenant_sql("VACUUM (INDEX_CLEANUP OFF) {images}"),), name="vacuum"
        )
        vacuuming.start()
        with other_session() as watcher:
            deadline = time.monotonic() + WAIT_SECONDS
            while not watcher.execute("SELECT count(*) FROM pg_stat_progress_vacuum").fetchone()[0]:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        code, report, output = run_command("--schema", TENANT, tmp_path=tmp_path)
        join_all([vacuuming])

    assert code == ExitCode.OK, output
    [wait] = report["tenants"][0]["pace"]["waits"]
    assert wait["reason"] == "vacuum on product_images" and wait["seconds"] >= 0.5
    assert wait["detail"] == f"client backend on {TENANT}.product_images"


@pytest.mark.timeout(60)  # the defect this guards against is a wait without end
def test_batches_do_not_wait_for_a_session_that_waits_for_the_run_itself(tenant, tmp_path):
    # The command runs in its caller's transaction (the test's), which holds a lock on the products; a second
    # session waits for it. Waiting for the waiter would be waiting for ever: it waits for the run.
    catalogue(3)
    run_sql("LOCK TABLE {products} IN EXCLUSIVE MODE")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [run_pid] = cursor.fetchone()
    with other_session() as waiter:

        def wait_for_the_run():
            with contextlib.suppress(psycopg.errors.QueryCanceled):  # cancelled once the run is over
                waiter.execute(tenant_sql("UPDATE {products} SET title = title || '!' WHERE false"))

        waiting = threading.Thread(target=wait_for_the_run)
        waiting.start()
        wait_until_blocked_by(run_pid)
        try:
            code, report, output = run_command("--schema", TENANT, tmp_path=tmp_path)
        finally:
            waiter.cancel()
            join_all([waiting])

    assert code == ExitCode.OK, output
    assert report["tenants"][0]["pace"]["waits"] == []
    assert report["tenants"][0]["run"]["images_migrated"] == 6


def test_ignore_health_goes_on_whatever_the_signals(committed_db, tmp_path):
    [product, *_] = catalogue(3)
    with other_session() as holder, other_session() as waiter:
        holder.execute("BEGIN")
        holder.execute(tenant_sql("SELECT 1 FROM {products} WHERE id = %(id)s FOR SHARE"), {"id": product.pk})
        waiting = threading.Thread(
            target=waiter.execute,
            args=(tenant_sql("UPDATE {products} SET title = title || '!' WHERE id = %(id)s"), {"id": product.pk}),
        )
        waiting.start()
        time.sleep(0.3)
        code, report, output = run_command(
            "--schema", TENANT, "--ignore-health", "--lock-timeout", "100ms", "--retries", "0", tmp_path=tmp_path
        )
        holder.execute("ROLLBACK")
        join_all([waiting])

    # It did not wait for the waiter: its batch met the share lock and was blocked instead.
    assert report["tenants"][0]["pace"]["waits"] == []
    assert code == ExitCode.BLOCKED, output
