"""The transition on a real Citus cluster (schema-based sharding): `make test-citus` / `.ci/citus-tests`.

Skipped, saying so, on plain PostgreSQL. On Citus each tenant schema lives whole on one worker; these tests run
the commands through the coordinator and move a tenant between workers in the middle of the transition.
"""

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from products.migration import follower
from products.migration.report import ExitCode
from products.selectors import listing_photos
from stoflow.tenants.citus import is_citus
from tests.helpers import (
    TENANT,
    entries,
    image_rows,
    make_product,
    run_command,
    run_lifecycle,
    sql_rows,
    sql_value,
    store_json,
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


def test_the_transition_runs_on_a_cluster_with_a_tenant_moved_between_workers(committed_db, tmp_path):
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
