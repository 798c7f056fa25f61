"""The transition on a real Citus cluster (schema-based sharding): `make test-citus` / `.ci/citus-tests`.

Skipped, saying so, on plain PostgreSQL. On Citus each tenant schema lives whole on one worker; these tests run
the commands through the coordinator and move a tenant between workers in the middle of the transition, check
with EXPLAIN that each batch and image-service statement runs as one task on the tenant's worker, and that a
row lock held on the worker ends the tenant blocked within the lock timeout, its blocker named.
"""

import re
import time

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from products import images
from products.migration import batches, follower
from products.migration.report import ExitCode
from products.models import ProductImage
from products.selectors import listing_photos
from stoflow.tenants.citus import is_citus
from tests.helpers import (
    TENANT,
    entries,
    image_rows,
    make_product,
    other_session,
    run_command,
    run_lifecycle,
    sql_rows,
    sql_value,
    store_json,
    tenant_sql,
)


@pytest.fixture(autouse=True)
def citus_only(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        if not is_citus():
            pytest.skip("not a Citus coordinator: `make test-citus` runs these on a real cluster")


def ids_by_url(product_id: int) -> dict[str, int]:
    return dict(sql_rows("SELECT url, id FROM {images} WHERE product_id = %(id)s", {"id": product_id}))


def worker_of(schema: str) -> int:
    return sql_value(
        "SELECT p.nodeport FROM citus_shards AS p WHERE p.table_name = %(table)s::regclass",
        {"table": f"{schema}.products"},
    )


def test_the_transition_runs_on_a_cluster_with_a_tenant_moved_between_workers(restores_the_column, tmp_path):
    changed = make_product(images=entries(3))
    untouched = make_product(images=entries(2))
    assert run_command("--schema", TENANT)[0] == ExitCode.OK
    assert run_command("--check", "--schema", TENANT)[0] == ExitCode.OK
    before = ids_by_url(changed.pk)

    # After the backfill, before finalize: the tenant moves to the other worker.
    source = worker_of(TENANT)
    target = sql_value(
        "SELECT nodeport FROM pg_dist_node WHERE noderole = 'primary' AND nodeport <> %(p)s "
        "AND groupid > 0 ORDER BY nodeport LIMIT 1",
        {"p": source},
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT citus_schema_move(%s::regnamespace, 'localhost', %s, 'block_writes')", [TENANT, target])
    assert worker_of(TENANT) == target

    photos = entries(3) + [{"url": "https://cdn.example/price-tag.jpeg", "order": 9}]
    store_json(changed.pk, photos)
    code, report, output = run_command("--sync", "--schema", TENANT, tmp_path=tmp_path)

    assert code == ExitCode.OK, output
    assert report["tenants"][0]["run"]["resynced"]["sample_ids"] == [changed.pk]
    after = ids_by_url(changed.pk)
    assert {url: after[url] for url in before} == before  # ids kept on the worker too
    assert [url for _, is_label, url, _ in image_rows(changed.pk) if is_label] == ["https://cdn.example/price-tag.jpeg"]
    assert len(image_rows(untouched.pk)) == 2
    assert run_lifecycle("finalize_images", "--schema", TENANT)[0] == 0
    assert run_lifecycle("restore_images_json", "--schema", TENANT)[0] == 0
    assert run_command("--check", "--schema", TENANT)[0] == ExitCode.OK


def test_the_follower_runs_on_the_tenant_s_worker(committed_db):
    product = make_product(images=entries(2))
    assert run_command("--schema", TENANT, "--follow")[0] == ExitCode.OK
    assert follower.describe(TENANT) == "on"
    before = ids_by_url(product.pk)

    store_json(product.pk, entries(2) + [{"url": "https://cdn.example/price-tag.jpeg", "order": 9}])

    after = ids_by_url(product.pk)
    assert {url: after[url] for url in before} == before
    with schema_context(TENANT):
        assert "https://cdn.example/price-tag.jpeg" not in listing_photos(product.pk, "ebay")
    assert run_command("--check", "--schema", TENANT)[0] == ExitCode.OK


def batch_statements(monkeypatch) -> list[tuple[str, dict | None]]:
    """Every statement the batches run (their SQL and values), recorded as they run."""
    statements = []

    def record(execute, sql, params, many, context):
        # None stays None: a statement sent without values is sent as it is (its % signs are no placeholders).
        statements.append((sql, None if params is None else dict(params)))
        return execute(sql, params, many, context)

    write_batch = batches._write_batch

    def recorded(*args, **kwargs):
        with connection.execute_wrapper(record):
            return write_batch(*args, **kwargs)

    monkeypatch.setattr(batches, "_write_batch", recorded)
    return statements


def plan(sql: str, params: dict | None) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (COSTS OFF) " + sql, params)
        return "\n".join(line for (line,) in cursor.fetchall())


def assert_one_task_each(
    statements: list[tuple[str, dict | None]], schema: str, *, pulled: tuple[str, ...] = ()
) -> int:
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
