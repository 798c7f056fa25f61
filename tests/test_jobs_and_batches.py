"""--jobs (tenants in parallel, each on its own connection) and --batch-size (each batch its own commit)."""

import pytest
from django.db import connection

from products.migration import batches, runs
from products.migration.report import ExitCode
from tests.helpers import (
    OTHER_TENANT,
    TENANT,
    ctrl_c_at_batch,
    entries,
    make_product,
    other_session,
    run_command,
    run_sql,
    sql_value,
    table_state,
    tenant_sql,
)

IMAGE_COUNTS = [3, 1, 4, 2, 6, 2, 5, 3, 2]
BOTH_TENANTS = ["--schema", TENANT, "--schema", OTHER_TENANT]


def seller_catalogues() -> None:
    """Both tenants hold the same catalogue, one product with bad JSON (an error) among them."""
    for schema in (TENANT, OTHER_TENANT):
        for count in IMAGE_COUNTS:
            make_product(schema, images=entries(count))
        make_product(schema, images=[{"order": 1}])


def comparable(report: dict) -> dict:
    """The report without what differs between any two runs: its id, when it started, how long it took and
    how its batches went (their pace)."""
    report = {key: value for key, value in report.items() if key not in ("started_at", "seconds", "run_id")}
    report["tenants"] = [
        {key: value for key, value in tenant.items() if key not in ("seconds", "pace")} for tenant in report["tenants"]
    ]
    return report


def empty_product_images() -> None:
    for schema in (TENANT, OTHER_TENANT):
        run_sql("TRUNCATE {images}", schema=schema)


def test_jobs_gives_the_serial_run_s_report_and_rows(committed_db, tmp_path):
    seller_catalogues()
    serial_code, serial, _ = run_command(*BOTH_TENANTS, tmp_path=tmp_path)
    serial_rows = [table_state(schema) for schema in (TENANT, OTHER_TENANT)]
    empty_product_images()

    parallel_code, parallel, _ = run_command(*BOTH_TENANTS, "--jobs", "2", tmp_path=tmp_path)

    assert serial_code == parallel_code == ExitCode.PRODUCT_ERRORS
    assert [tenant["schema"] for tenant in parallel["tenants"]] == [TENANT, OTHER_TENANT]
    assert parallel["total"]["images_migrated"] == 2 * sum(IMAGE_COUNTS)
    assert comparable(parallel) == comparable(serial)
    assert [table_state(schema) for schema in (TENANT, OTHER_TENANT)] == serial_rows


def test_jobs_uses_one_connection_per_worker(committed_db, monkeypatch):
    seller_catalogues()
    migrate_tenant = runs.migrate_tenant
    backends = {}

    def record_backend(schema, *args, **kwargs):
        backends[schema] = sql_value("SELECT pg_backend_pid()")
        return migrate_tenant(schema, *args, **kwargs)

    monkeypatch.setattr(runs, "migrate_tenant", record_backend)
    run_command(*BOTH_TENANTS, "--jobs", "2")

    assert set(backends) == {TENANT, OTHER_TENANT}
    assert len(set(backends.values())) == 2
    assert connection.connection is None or connection.connection.info.backend_pid not in backends.values()


def test_check_with_jobs_gives_the_serial_check(committed_db, tmp_path):
    seller_catalogues()
    run_command(*BOTH_TENANTS, tmp_path=tmp_path)

    serial = run_command(*BOTH_TENANTS, "--check", tmp_path=tmp_path)
    parallel = run_command(*BOTH_TENANTS, "--check", "--jobs", "2", tmp_path=tmp_path)

    assert serial[0] == parallel[0]
    assert comparable(parallel[1]) == comparable(serial[1])


def test_ctrl_c_with_jobs_stops_the_workers_between_batches_and_a_rerun_finishes(committed_db, tmp_path, monkeypatch):
    seller_catalogues()
    written = ctrl_c_at_batch(monkeypatch, 2)
    code, report, output = run_command(*BOTH_TENANTS, "--jobs", "2", "--batch-size", "2", tmp_path=tmp_path)

    assert code == ExitCode.INTERRUPTED
    assert "re-run to finish" in output
    interruption = report["interruption"]
    assert interruption["stopped_in"] and interruption["signal"] == "SIGINT"
    # The tenants stopped part-way are reported with what their committed batches did, not validated.
    assert [t["schema"] for t in report["tenants"]] == interruption["stopped_in"]
    assert all(t["status"] == "interrupted" and t["validation"] is None for t in report["tenants"])
    assert sorted(interruption["stopped_in"] + interruption["not_started"]) == [TENANT, OTHER_TENANT]
    # Each worker finishes the batch it is in, then stops (2 tenants x 5 batches were due).
    assert len(written) <= 4

    monkeypatch.undo()  # batches written as usual again
    rerun = run_command(*BOTH_TENANTS, "--jobs", "2", tmp_path=tmp_path)
    assert rerun[0] == ExitCode.PRODUCT_ERRORS, rerun[2]
    assert table_state(TENANT) == table_state(OTHER_TENANT)
    assert len(table_state(TENANT)) == sum(IMAGE_COUNTS)


def test_a_database_failure_in_one_worker_stops_the_run(committed_db, monkeypatch):
    from django.db import OperationalError

    seller_catalogues()

    def fail_in_other_tenant(schema, *args, **kwargs):
        if schema == OTHER_TENANT:
            raise OperationalError("server closed the connection unexpectedly")
        return write_batch(schema, *args, **kwargs)

    write_batch = batches._write_batch
    monkeypatch.setattr(batches, "_write_batch", fail_in_other_tenant)
    code, _, output = run_command(*BOTH_TENANTS, "--jobs", "2")

    assert code == ExitCode.DATABASE_FAILURE
    assert f"database failure in {OTHER_TENANT}" in output
    assert table_state(OTHER_TENANT) == []


def committed_rows(schema: str) -> int:
    """Rows another session sees: only what is committed."""
    with other_session() as session:
        return session.execute(tenant_sql("SELECT count(*) FROM {images}", schema)).fetchone()[0]


@pytest.mark.parametrize("batch_size", [1, 4, 100])
def test_each_batch_of_batch_size_products_commits_before_the_next_starts(committed_db, monkeypatch, batch_size):
    products = [make_product(images=entries(count)) for count in IMAGE_COUNTS]
    ids = [product.pk for product in products]
    write_batch = batches._write_batch
    seen = []

    def record(schema, after, upto, options):
        seen.append((after, upto, committed_rows(schema)))
        return write_batch(schema, after, upto, options)

    monkeypatch.setattr(batches, "_write_batch", record)
    assert run_command("--schema", TENANT, "--batch-size", str(batch_size))[0] == ExitCode.OK

    # Batches of batch_size ids, the first from below the lowest id (no lower bound), each (after, upto].
    uppers = ids[batch_size - 1 :: batch_size] + ([ids[-1]] if len(ids) % batch_size else [])
    assert [(after, upto) for after, upto, _ in seen] == list(zip([None, *uppers], uppers, strict=False))
    # Before each batch, another session already sees every earlier batch's images.
    committed = [
        sum(count for id_, count in zip(ids, IMAGE_COUNTS, strict=True) if after and id_ <= after) for after, *_ in seen
    ]
    assert [rows for *_, rows in seen] == committed
