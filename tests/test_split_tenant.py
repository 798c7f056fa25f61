"""--jobs N on one large tenant: its ids cut into ranges worked at once, each on its own connection, under the
one tenant lock; the report, rows and exit code of a serial run."""

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import OperationalError, connection

from products.demo import demo_image_counts, fill_products
from products.migration import batches, split
from products.migration.batches import MigrationOptions
from products.migration.report import ExitCode
from stoflow.tenants.models import LedgerEntry
from tests.helpers import (
    TENANT,
    WAIT_SECONDS,
    ctrl_c_at_batch,
    entries,
    join_all,
    make_product,
    other_session,
    run_command,
    run_sql,
    sql_rows,
    sql_value,
    store_json,
    table_state,
    tenant_sql,
    wait_until_blocked_by,
)

SCHEMA = ["--schema", TENANT]


def comparable(report: dict) -> dict:
    """The report without what differs between any two runs: its id, when it started, how long it took and
    how its batches went (their pace)."""
    report = {key: value for key, value in report.items() if key not in ("started_at", "seconds", "run_id")}
    report["tenants"] = [
        {key: value for key, value in tenant.items() if key not in ("seconds", "pace")} for tenant in report["tenants"]
    ]
    return report


def seed_catalogue() -> int:
    """A tenth of the seed's products (every 10th of its distribution), with their image counts."""
    counts = demo_image_counts()[::10]
    fill_products(TENANT, counts)
    return sum(counts)


def hostile_catalogue():
    """Products of every kind a run meets, among plain ones; one migrated earlier whose JSON changed since."""
    for number in range(40):
        if number % 7 == 3:
            make_product(images=[{"order": 1}])  # an error from the JSON
        elif number % 7 == 5:
            make_product(images=[{"url": "/a.jpeg", "order": 0}, {"url": "/b.jpeg", "order": 0}])  # repaired
        elif number % 11 == 4:
            make_product(images=entries(2), deleted_at="2025-01-01T00:00:00Z")
        elif number % 13 == 6:
            make_product(images=[])
        else:
            make_product(images=entries(1 + number % 5))
    already = make_product(images=entries(3))
    for _ in range(6):
        make_product(images=entries(2))
    make_stale(already.pk)
    return already


def make_stale(already: int) -> None:
    """Only ``already`` migrated, its JSON changed since (check 4 names it; --sync rebuilds it); no ledger."""
    forget_the_run()
    store_json(already, entries(3))
    assert run_command(*SCHEMA)[0] == ExitCode.PRODUCT_ERRORS
    keep_only(already)
    store_json(already, entries(2))
    run_sql("TRUNCATE public.run_ledger")


def keep_only(product_id: int) -> None:
    run_sql("DELETE FROM {images} WHERE product_id <> %(id)s", {"id": product_id})


def forget_the_run() -> None:
    run_sql("TRUNCATE {images}")
    run_sql("TRUNCATE public.run_ledger")


@pytest.fixture
def batch_backends(monkeypatch):
    """The backend pid and thread of each batch written, by the first id after which it starts."""
    write_batch = batches._write_batch
    seen = []
    lock = threading.Lock()

    def record(schema, after, upto, options):
        with lock:
            seen.append((sql_value("SELECT pg_backend_pid()"), threading.current_thread().name, after, upto))
        return write_batch(schema, after, upto, options)

    monkeypatch.setattr(batches, "_write_batch", record)
    return seen


def range_workers(seen) -> set[int]:
    """The distinct backends that wrote batches in range workers (never the coordinator's connection)."""
    pids = {pid for pid, thread, _, _ in seen if thread.startswith("range-worker-")}
    assert connection.connection is None or connection.connection.info.backend_pid not in pids
    return pids


def test_a_split_tenant_gives_the_serial_run_s_report_and_rows_on_the_seed_distribution(
    committed_db, tmp_path, batch_backends
):
    images = seed_catalogue()
    serial_code, serial, _ = run_command(*SCHEMA, "--batch-size", "20", tmp_path=tmp_path)
    serial_rows = table_state(TENANT)
    assert {thread for _, thread, _, _ in batch_backends} == {threading.current_thread().name}
    forget_the_run()
    batch_backends.clear()

    split_code, parallel, output = run_command(*SCHEMA, "--batch-size", "20", "--jobs", "2", tmp_path=tmp_path)

    assert serial_code == split_code == ExitCode.OK, output
    assert parallel["total"]["images_migrated"] == images
    assert comparable(parallel) == comparable(serial)
    assert table_state(TENANT) == serial_rows
    assert len(range_workers(batch_backends)) == 2
    # Each worker walked its own range: no batch crosses the cut.
    cut = min(after for _, thread, after, _ in batch_backends if thread == "range-worker-1")
    assert all(upto <= cut for _, thread, _, upto in batch_backends if thread == "range-worker-0")


@pytest.mark.parametrize("flags", [[], ["--sync"], ["--force"]], ids=["first-run", "sync", "force"])
def test_a_split_tenant_gives_the_serial_run_s_report_and_rows_on_hostile_data(
    committed_db, tmp_path, batch_backends, flags
):
    already = hostile_catalogue()
    args = [*SCHEMA, *flags, "--batch-size", "3"]
    serial_code, serial, _ = run_command(*args, tmp_path=tmp_path)
    serial_rows = table_state(TENANT)
    make_stale(already.pk)
    batch_backends.clear()

    split_code, parallel, output = run_command(*args, "--jobs", "3", tmp_path=tmp_path)

    assert serial_code == split_code, output
    assert parallel["total"]["errors"] and parallel["total"]["repaired"] and parallel["total"]["soft_deleted"]
    assert comparable(parallel) == comparable(serial)
    assert table_state(TENANT) == serial_rows
    assert len(range_workers(batch_backends)) == 3


def test_more_jobs_than_batches_cut_one_range_per_batch_and_give_the_serial_run_s_report_and_rows(
    committed_db, tmp_path, batch_backends
):
    already = hostile_catalogue()  # 47 products: three batches of 15 and a bit, fewer than --jobs 4
    args = [*SCHEMA, "--batch-size", "15"]
    serial_code, serial, _ = run_command(*args, tmp_path=tmp_path)
    serial_rows = table_state(TENANT)
    make_stale(already.pk)
    batch_backends.clear()

    split_code, parallel, output = run_command(*args, "--jobs", "4", tmp_path=tmp_path)

    assert serial_code == split_code, output
    assert comparable(parallel) == comparable(serial)
    assert table_state(TENANT) == serial_rows
    assert len(range_workers(batch_backends)) == 3
    # Three ranges, one after the other: each worker walks on from where the worker below it stopped.
    walks = {}
    for _, thread, after, upto in batch_backends:  # a worker's batches, in the order it wrote them
        walks[thread] = (walks.get(thread, (after,))[0], upto)
    (first, second, third) = (walks[f"range-worker-{number}"] for number in range(3))
    assert (first[0], second[0], third[0]) == (None, first[1], second[1])


def test_a_split_dry_run_gives_the_serial_dry_run_s_figures_and_writes_nothing(committed_db, tmp_path, batch_backends):
    hostile_catalogue()
    before = table_state(TENANT)
    args = [*SCHEMA, "--dry-run", "--batch-size", "3"]
    serial_code, serial, _ = run_command(*args, tmp_path=tmp_path)
    batch_backends.clear()

    split_code, parallel, output = run_command(*args, "--jobs", "2", tmp_path=tmp_path)

    assert serial_code == split_code == ExitCode.CHECK_FAILED, output
    assert comparable(parallel) == comparable(serial)
    assert table_state(TENANT) == before
    assert len(range_workers(batch_backends)) == 2
    assert not LedgerEntry.objects.filter(mode="live").exists()


def test_ctrl_c_stops_every_range_between_batches_and_a_rerun_ends_in_the_serial_state(
    committed_db, tmp_path, monkeypatch
):
    images = seed_catalogue()
    assert run_command(*SCHEMA, "--batch-size", "20")[0] == ExitCode.OK
    serial_rows = table_state(TENANT)
    forget_the_run()
    written = ctrl_c_at_batch(monkeypatch, 3)
    code, report, output = run_command(*SCHEMA, "--batch-size", "20", "--jobs", "2", tmp_path=tmp_path)

    assert code == ExitCode.INTERRUPTED, output
    assert report["interruption"]["stopped_in"] == [TENANT]
    (tenant,) = report["tenants"]
    assert tenant["status"] == "interrupted" and tenant["validation"] is None
    # Each worker finishes the batch it is in, then stops; the report counts the committed batches.
    assert len(written) <= 5
    committed = len(table_state(TENANT))
    assert 0 < committed < images
    assert report["total"]["images_migrated"] == committed
    (entry,) = LedgerEntry.objects.filter(schema_name=TENANT)
    assert entry.status == LedgerEntry.INTERRUPTED
    # The resume point is conservative: every product up to it is committed.
    below = sql_value(
        "SELECT count(*) FROM {products} AS p WHERE p.id <= %(id)s AND jsonb_array_length(p.images) > 0 "
        "AND NOT EXISTS (SELECT 1 FROM {images} AS i WHERE i.product_id = p.id)",
        {"id": entry.last_product_id or 0},
    )
    assert below == 0

    monkeypatch.undo()  # batches written as usual again
    rerun_code, rerun, output = run_command(*SCHEMA, "--batch-size", "20", "--jobs", "2", tmp_path=tmp_path)
    assert rerun_code == ExitCode.OK, output
    assert table_state(TENANT) == serial_rows
    assert rerun["total"]["images_migrated"] == images - committed
    # The re-run's validation covers the whole tenant, not only the ids it walked.
    (check_1,) = [check for check in rerun["tenants"][0]["validation"]["checks"] if check["number"] == 1]
    assert check_1["figure"] == check_1["expected"] == images


def test_ctrl_c_while_the_range_workers_start_stops_every_worker_before_the_lock_goes(
    committed_db, tmp_path, monkeypatch
):
    images = seed_catalogue()
    write_batch = batches._write_batch

    def slow(*args, **kwargs):
        time.sleep(0.2)  # the first worker is surely mid-walk when the command returns
        return write_batch(*args, **kwargs)

    class CtrlCAfterTheFirstStart(threading.Thread):
        def start(self):
            super().start()
            if self.name == "range-worker-0":
                # A real Ctrl-C before the next worker starts. The coordinator runs in a tenant worker thread
                # (any --jobs above 1), so the signal reaches the main thread, which sets the run's stop event;
                # the coordinator starts the rest, then passes the stop on to every range worker it started.
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)

    monkeypatch.setattr(batches, "_write_batch", slow)
    monkeypatch.setattr(split.threading, "Thread", CtrlCAfterTheFirstStart)
    code, report, output = run_command(*SCHEMA, "--batch-size", "20", "--jobs", "2", tmp_path=tmp_path)

    assert code == ExitCode.INTERRUPTED, output
    # Every worker started was stopped and waited for: none writes once the coordinator has let the lock go.
    assert [thread.name for thread in threading.enumerate() if thread.name.startswith("range-worker-")] == []
    committed = len(table_state(TENANT))
    assert report["total"]["images_migrated"] == committed < images
    assert LedgerEntry.objects.get(schema_name=TENANT).status == LedgerEntry.INTERRUPTED

    monkeypatch.undo()
    rerun_code, _, output = run_command(*SCHEMA, "--batch-size", "20", "--jobs", "2")
    assert rerun_code == ExitCode.OK, output
    assert len(table_state(TENANT)) == images


def test_a_database_failure_in_one_range_worker_stops_the_run_and_keeps_committed_batches(
    committed_db, tmp_path, monkeypatch
):
    images = seed_catalogue()
    write_batch = batches._write_batch
    second_range = []

    def fail_in_the_second_range(schema, after, upto, options):
        if threading.current_thread().name == "range-worker-1":
            second_range.append(after)
            if len(second_range) == 2:
                raise OperationalError("server closed the connection unexpectedly")
        return write_batch(schema, after, upto, options)

    monkeypatch.setattr(batches, "_write_batch", fail_in_the_second_range)
    code, report, output = run_command(*SCHEMA, "--batch-size", "20", "--jobs", "2", tmp_path=tmp_path)

    assert code == ExitCode.DATABASE_FAILURE, output
    assert f"database failure in {TENANT}" in output
    committed = len(table_state(TENANT))
    assert 0 < committed < images
    assert report["total"]["images_migrated"] == committed
    (entry,) = LedgerEntry.objects.filter(schema_name=TENANT)
    assert entry.status == LedgerEntry.FAILED

    monkeypatch.setattr(batches, "_write_batch", write_batch)
    rerun_code, _, output = run_command(*SCHEMA, "--batch-size", "20", "--jobs", "2")
    assert rerun_code == ExitCode.OK, output
    assert len(table_state(TENANT)) == images


def test_a_small_tenant_keeps_one_worker(committed_db, batch_backends):
    products = split.MINIMUM_BATCHES_TO_SPLIT * 2 - 1  # one product short of two batches of 2
    for count in range(1, products + 1):
        make_product(images=entries(count))

    assert run_command(*SCHEMA, "--batch-size", "2", "--jobs", "2")[0] == ExitCode.OK
    assert not range_workers(batch_backends)


def test_a_tenant_of_exactly_the_minimum_batches_is_split(committed_db, batch_backends):
    products = split.MINIMUM_BATCHES_TO_SPLIT * 2  # exactly that many batches of 2
    for count in range(1, products + 1):
        make_product(images=entries(count))

    assert run_command(*SCHEMA, "--batch-size", "2", "--jobs", "2")[0] == ExitCode.OK
    assert len(range_workers(batch_backends)) == 2


# The ledger's resume point when the ranges finish in any order


def product_ids() -> list[int]:
    return [product_id for (product_id,) in sql_rows("SELECT id FROM {products} ORDER BY id")]


def lock_product(session, product_id: int) -> None:
    """``product_id`` locked by ``session`` as an editor would, until it rolls back."""
    session.execute("BEGIN")
    session.execute(tenant_sql("SELECT 1 FROM {products} WHERE id = %(id)s FOR UPDATE"), {"id": product_id})


@contextmanager
def lower_range_finishing_last(first_id: int, ranges_above: list[split.IdRange]) -> Iterator[None]:
    """The lower range held back on its first product, locked by another session, until every range above it
    has migrated its products and its worker thread has ended: the lower range finishes last."""
    locked, problems = threading.Event(), []
    workers_above = {f"range-worker-{number}" for number in range(1, len(ranges_above) + 1)}
    bounds = {"after": ranges_above[0].after, "upto": ranges_above[-1].upto}

    def hold_back() -> None:
        try:
            with other_session() as editor:
                lock_product(editor, first_id)
                locked.set()
                wait_until_blocked_by(editor.info.backend_pid)  # the lower range waits on it
                deadline = time.monotonic() + WAIT_SECONDS
                while time.monotonic() < deadline:
                    (missing,) = editor.execute(
                        tenant_sql(
                            "SELECT count(*) FROM {products} AS p "
                            "WHERE p.id > %(after)s AND (%(upto)s::bigint IS NULL OR p.id <= %(upto)s) "
                            "AND NOT EXISTS (SELECT 1 FROM {images} AS i WHERE i.product_id = p.id)"
                        ),
                        bounds,
                    ).fetchone()
                    running = workers_above & {thread.name for thread in threading.enumerate()}
                    if not missing and not running:
                        break
                    time.sleep(0.05)
                else:
                    problems.append("the ranges above the lower one did not finish")
                editor.execute("ROLLBACK")
        except Exception as exc:  # reported by the test, not lost in the thread
            problems.append(repr(exc))
            locked.set()

    holder = threading.Thread(target=hold_back, name="lower-range-holder")
    holder.start()
    assert locked.wait(WAIT_SECONDS)
    try:
        yield
    finally:
        join_all([holder])
    assert not problems, problems


def test_a_split_run_whose_lower_range_finishes_last_records_the_serial_run_s_last_id(committed_db, tmp_path):
    for number in range(40):
        make_product(images=entries(1 + number % 3))
    args = [*SCHEMA, "--batch-size", "5"]
    assert run_command(*args)[0] == ExitCode.OK
    serial_last = LedgerEntry.objects.get(schema_name=TENANT).last_product_id
    ids = product_ids()
    assert serial_last == ids[-1]
    forget_the_run()
    lower, upper = split.split_points(TENANT, None, MigrationOptions(jobs=2, batch_size=5))

    with lower_range_finishing_last(ids[0], [upper]):
        code, report, output = run_command(*args, "--jobs", "2", "--lock-timeout", "20s", tmp_path=tmp_path)

    assert code == ExitCode.OK, output
    assert report["total"]["images_migrated"] == sql_value("SELECT count(*) FROM {images}")
    entry = LedgerEntry.objects.get(schema_name=TENANT)
    assert (entry.status, entry.last_product_id, entry.batches) == (LedgerEntry.DONE, serial_last, 8)
    code, _, status = run_command("--status", *SCHEMA)
    [line] = [line for line in status.splitlines() if line.split()[:3] == [TENANT, "live", "done"]]
    assert str(serial_last) in line.split()


def test_a_blocked_split_run_resumes_after_every_id_below_which_everything_committed(committed_db, tmp_path):
    for number in range(30):
        make_product(images=entries(1 + number % 3))
    ids = product_ids()
    lower, middle, upper = split.split_points(TENANT, None, MigrationOptions(jobs=3, batch_size=5))
    args = [*SCHEMA, "--batch-size", "5", "--jobs", "3"]

    # The upper range waits on its first product until it is given up as blocked (4 attempts of 1 s, and
    # backoffs of 1, 2 and 4 s); the lower one is held back meanwhile until the middle one has finished.
    with other_session() as editor:
        lock_product(editor, ids[ids.index(upper.after) + 1])
        with lower_range_finishing_last(ids[0], [middle]):
            code, report, output = run_command(*args, "--lock-timeout", "1s", "--retries", "3", tmp_path=tmp_path)
        editor.execute("ROLLBACK")

    assert code == ExitCode.BLOCKED, output
    assert report["tenants"][0]["status"] == "blocked"
    entry = LedgerEntry.objects.get(schema_name=TENANT)
    # Every product of the lower and middle ranges is committed, none of the upper one's: the point is the cut.
    assert entry.status == LedgerEntry.BLOCKED and entry.last_product_id == upper.after == middle.upto
    committed = {product_id for (product_id,) in sql_rows("SELECT DISTINCT product_id FROM {images}")}
    assert committed == {product_id for product_id in ids if product_id <= upper.after}
    _, _, status = run_command("--status", *SCHEMA)
    assert f"a re-run resumes after product id {upper.after}" in " ".join(status.split())

    rerun_code, rerun, output = run_command(*args, tmp_path=tmp_path)
    assert rerun_code == ExitCode.OK, output
    assert rerun["tenants"][0]["resumed_after"] == upper.after
    # The re-run walks the upper range only: nothing below the point is met again.
    assert rerun["total"]["products"] == len([product_id for product_id in ids if product_id > upper.after])
    assert rerun["total"]["already_migrated"] == 0
