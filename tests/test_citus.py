"""On Citus only (.ci/citus-tests; skipped elsewhere): what schema-based sharding changes for the migration.

Each tenant schema lives whole on one worker; the tests connect to the coordinator. The batch statements run
as one task on the tenant's worker (EXPLAIN), a tenant moved to the other worker in the middle of the
transition (after the backfill, before finalize) carries on, and a row lock held on the worker ends the
tenant blocked within the lock timeout, its blocker named.
"""

import re
import time

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from products import images
from products.lifecycle.finalize import finalize_tenant
from products.lifecycle.restore import restore_tenant
from products.migration import batches
from products.migration.report import ExitCode
from products.models import ProductImage
from tests.helpers import (
    OTHER_TENANT,
    TENANT,
    entries,
    image_rows,
    make_product,
    other_session,
    run_command,
    sql_rows,
    sql_value,
    store_json,
    tenant_sql,
)


@pytest.fixture(autouse=True)
def _citus_only(on_citus):
    if not on_citus:
        pytest.skip("Citus only: these tests need a Citus cluster (.ci/citus-tests, make test-citus)")


def worker_of(schema: str) -> int:
    """The port of the worker holding the tenant's tables."""
    return sql_value(
        "SELECT DISTINCT nodeport FROM citus_shards WHERE table_name = %(table)s::regclass",
        {"table": f"{schema}.products"},
    )


def other_worker(schema: str) -> int:
    return sql_value(
        "SELECT nodeport FROM pg_dist_node WHERE noderole = 'primary' AND groupid > 0 AND nodeport <> %(port)s",
        {"port": worker_of(schema)},
    )


def batch_statements(monkeypatch) -> list[tuple[str, dict]]:
    """Every statement the batches run (their SQL and values), recorded as they run."""
    statements = []

    def record(execute, sql, params, many, context):
        statements.append((sql, dict(params or {})))
        return execute(sql, params, many, context)

    write_batch = batches._write_batch

    def recorded(*args, **kwargs):
        with connection.execute_wrapper(record):
            return write_batch(*args, **kwargs)

    monkeypatch.setattr(batches, "_write_batch", recorded)
    return statements


def plan(sql: str, params: dict) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (COSTS OFF) " + sql, params)
        return "\n".join(line for (line,) in cursor.fetchall())


def assert_one_task_each(statements: list[tuple[str, dict]], schema: str, *, pulled: tuple[str, ...] = ()) -> int:
    """Each statement that reads or writes the tenant's tables runs as one task on its worker, with no
    subplan: nothing travels through the coordinator. ``pulled``: words of the only statements allowed an
    INSERT ... SELECT whose SELECT is that one task, its rows then copied into the tenant's table. Returns how
    many statements were looked at."""
    worker = f"port={worker_of(schema)} "
    explained = 0
    for sql, params in statements:
        if not sql.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")):
            continue  # SET search_path, SAVEPOINT, ...
        with schema_context(schema):  # the ORM's statements name the tenant's tables unqualified
            shown = plan(sql, params)
        if "Citus" not in shown:
            continue  # no table of the tenant's: the coordinator's own (the ids reserved from a sequence)
        explained += 1
        assert "Distributed Subplan" not in shown, shown
        counts = [int(count) for count in re.findall(r"Task Count: (\d+)", shown)]
        assert counts and all(count == 1 for count in counts), shown
        assert all(worker in line for line in shown.splitlines() if "Node: host=" in line), shown
        if "pull to coordinator" in shown:
            assert pulled and all(word in sql for word in pulled), shown
    return explained


def test_each_batch_statement_runs_as_one_task_on_the_tenant_s_worker(tenant, tmp_path, monkeypatch):
    products = [make_product(images=entries(count)) for count in (1, 2, 3, 4)]
    statements = batch_statements(monkeypatch)
    assert run_command("--schema", tenant, "--batch-size", "2")[0] == ExitCode.OK
    # --sync: one product changed, one emptied (a row copied aside), so every statement of a reconciliation runs.
    changed = entries(3)
    changed[0]["url"] = "https://cdn.example/replaced.jpeg"
    store_json(products[2].pk, changed)
    store_json(products[3].pk, [])
    assert run_command("--schema", tenant, "--sync")[0] == ExitCode.OK

    # Only the reading of the JSON goes through the coordinator: one task on the worker (a SELECT: see
    # batches._READ_BATCH), its rows copied into product_images_batch there.
    explained = assert_one_task_each(statements, tenant, pulled=("MATERIALIZED", "INSERT INTO", "product_images_batch"))
    # The lock, the reading, the outcome, the rows, the state, the cleanup; --sync's plan and six statements.
    assert explained >= 12


def test_the_image_service_s_statements_run_as_one_task_each(tenant):
    product = make_product(images=entries(3))
    assert run_command("--schema", tenant)[0] == ExitCode.OK
    statements = []

    def record(execute, sql, params, many, context):
        if not many:
            statements.append((sql, params))
        return execute(sql, params, many, context)

    with schema_context(tenant), connection.execute_wrapper(record):
        added = images.add_image(product.pk, "https://cdn.example/added.jpeg")
        photos = [image.pk for image in ProductImage.objects.filter(product_id=product.pk, is_label=False)]
        images.reorder_images(product.pk, list(reversed(photos)))
        images.set_label(added)
        images.remove_image(added)

    assert assert_one_task_each(statements, tenant) >= 10


def test_a_tenant_moved_to_the_other_worker_between_backfill_and_finalize_carries_on(restores_the_column, tmp_path):
    products = [make_product(images=entries(count)) for count in (2, 3, 4)]
    make_product(OTHER_TENANT, images=entries(2))
    code, report, output = run_command(tmp_path=tmp_path)
    assert code == ExitCode.OK, output
    before = {product.pk: image_rows(product.pk) for product in products}
    source = worker_of(TENANT)

    sql_rows(
        "SELECT citus_schema_move(%(schema)s, 'localhost', %(port)s)", {"schema": TENANT, "port": other_worker(TENANT)}
    )

    assert worker_of(TENANT) != source
    assert {product.pk: image_rows(product.pk) for product in products} == before
    code, report, output = run_command("--check", tmp_path=tmp_path)
    assert code == ExitCode.OK, output
    # The old code keeps writing JSON on the new worker: --sync, the follower, finalize and restore work there.
    changed = entries(3)
    changed[1]["url"] = "https://cdn.example/moved.jpeg"
    store_json(products[0].pk, changed)
    code, report, output = run_command("--sync", tmp_path=tmp_path)
    assert code == ExitCode.OK, output
    assert [url for _, _, url, *_ in image_rows(products[0].pk)][1] == "https://cdn.example/moved.jpeg"
    code, report, output = run_command("--follow", tmp_path=tmp_path)
    assert code == ExitCode.OK, output
    store_json(products[1].pk, entries(2))
    assert len(image_rows(products[1].pk)) == 2
    assert finalize_tenant(TENANT, dry_run=False).outcome.name == "FINALIZED"
    restore_tenant(TENANT)
    assert sql_value("SELECT count(*) FROM {products} WHERE images IS NOT NULL") == 3


def test_a_row_lock_held_on_the_worker_ends_the_tenant_blocked_within_the_lock_timeout(committed_db, tmp_path):
    first = make_product(images=entries(3))
    make_product(images=entries(2))
    with other_session() as app:
        app_pid = app.info.backend_pid
        app.execute("BEGIN")
        app.execute(tenant_sql("SELECT 1 FROM {products} WHERE id = %(id)s FOR UPDATE"), {"id": first.pk})
        started = time.monotonic()
        code, report, output = run_command(
            "--schema", TENANT, "--lock-timeout", "1s", "--retries", "1", tmp_path=tmp_path
        )
        elapsed = time.monotonic() - started
        app.execute("ROLLBACK")

    assert code == ExitCode.BLOCKED, output
    blocked = report["tenants"][0]["blocked"]
    assert "lock timeout" in blocked["error"]
    # Two attempts of a second each and the backoff between them, not the statement timeout (10 minutes).
    assert elapsed < 8, elapsed
    [blocker] = blocked["blockers"]
    assert blocker["pid"] == app_pid and "FOR UPDATE" in blocker["query"]
    assert f"by pid {app_pid}" in output
