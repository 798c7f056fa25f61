"""restore_images_json, the rollback of finalize_images, and the whole lifecycle on the seed's distribution.

As in test_finalize.py, every test runs in the ``tenant`` fixture's transaction, which PostgreSQL rolls back
with its DDL: the shared test tenants keep their column.
"""

import json
import time
from datetime import UTC, datetime

import pytest
from django_tenants.utils import schema_context
from psycopg import sql

from products import images
from products.demo import SEED_DISTRIBUTION, demo_image_counts, fill_products
from products.legacy_json import has_json_column
from products.lifecycle.finalize import FinalizeExitCode
from products.lifecycle.restore import RestoreExitCode
from products.migration.report import ExitCode
from products.models import Product
from tests.helpers import (
    OTHER_TENANT,
    TENANT,
    entries,
    image_ids,
    json_from_rows,
    json_images,
    json_text,
    make_product,
    other_session,
    run_command,
    run_lifecycle,
    run_sql,
    set_json,
    sql_rows,
    store_json,
    tenant_locked_elsewhere,
    tenant_sql,
)

# Finalizing drops a column of the shared test tenants: checked as the session made them after the module.
pytestmark = pytest.mark.usefixtures("test_tenants_keep_their_json_column")

FINALIZE, RESTORE = "finalize_images", "restore_images_json"


def finalized() -> None:
    code, output = run_lifecycle(FINALIZE, "--schema", TENANT)
    assert code == FinalizeExitCode.OK, output
    assert not has_json_column(TENANT)


def all_rows(schema: str = TENANT) -> list[tuple]:
    """Every image row as (product_id, url, order, is_label, created_at): what a rebuild must give back."""
    return sql_rows(
        'SELECT product_id, url, "order", is_label, created_at FROM {images} ORDER BY product_id, "order"',
        schema=schema,
    )


def test_restore_rebuilds_the_json_from_the_rows_and_gives_empty_products_back_as_they_were(finalizable):
    finalized()

    code, output = run_lifecycle(RESTORE, "--schema", TENANT)

    assert code == RestoreExitCode.OK, output
    assert (
        f"{TENANT}: restored products.images: 4 product(s) from their rows, 2 as legacy_product_images kept them, "
        "0 empty" in output
    )
    assert has_json_column(TENANT)
    # The image service's mirror shape, by order: url, order, created_at (ISO 8601, UTC), is_label.
    assert json.loads(json_text(finalizable.a.pk)) == [
        {"url": entry["url"], "order": entry["order"], "created_at": entry["created_at"], "is_label": order == 4}
        for order, entry in enumerate(entries(4), start=1)
    ]
    assert json.loads(json_text(finalizable.single.pk))[0]["is_label"] is False
    assert len(json.loads(json_text(finalizable.deleted.pk))) == 2  # soft-deleted: back from its rows too
    assert (json_text(finalizable.empty.pk), json_text(finalizable.null.pk)) == ("[]", None)  # as they were
    # The column as migration 0001 made it.
    assert sql_rows(
        "SELECT data_type, is_nullable, column_default FROM information_schema.columns "
        "WHERE table_schema = %(schema)s AND table_name = 'products' AND column_name = 'images'",
        {"schema": TENANT},
    ) == [("jsonb", "YES", None)]


def test_a_dry_run_counts_what_the_restore_gives_back_and_changes_nothing(finalizable):
    finalized()
    run_sql("DELETE FROM {images} WHERE product_id = %(id)s", {"id": finalizable.a.pk})  # emptied since

    code, output = run_lifecycle(RESTORE, "--schema", TENANT, "--dry-run")

    assert code == RestoreExitCode.OK, output
    assert (
        f"{TENANT}: would restore (dry run, nothing changed) products.images: 3 product(s) from their rows, "
        "2 as legacy_product_images kept them, 1 empty" in output
    )
    assert not has_json_column(TENANT)
    code, output = run_lifecycle(RESTORE, "--schema", TENANT)
    assert code == RestoreExitCode.OK, output
    assert (
        "restored products.images: 3 product(s) from their rows, 2 as legacy_product_images kept them, 1 empty"
        in output
    )


def test_microseconds_survive_the_round_trip(finalizable):
    created_at = datetime(2026, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
    run_sql(
        "UPDATE {images} SET created_at = %(at)s WHERE product_id = %(id)s", {"at": created_at, "id": finalizable.b.pk}
    )
    run_sql(
        "UPDATE {products} SET images = (SELECT jsonb_agg(e || jsonb_build_object('created_at', %(at)s::text)) "
        "FROM jsonb_array_elements(images) AS e) WHERE id = %(id)s",
        {"at": "2026-02-03T04:05:06.789012Z", "id": finalizable.b.pk},
    )
    finalized()

    assert run_lifecycle(RESTORE, "--schema", TENANT)[0] == RestoreExitCode.OK

    assert {entry["created_at"] for entry in json.loads(json_text(finalizable.b.pk))} == {"2026-02-03T04:05:06.789012Z"}
    assert run_command("--schema", TENANT, "--force")[0] == ExitCode.OK
    assert {at for product_id, *_, at in all_rows() if product_id == finalizable.b.pk} == {created_at}


def test_photos_removed_after_finalize_do_not_come_back(finalizable):
    finalized()
    # After finalize, the rows are the only truth: a's photos all removed, a product added (no JSON to write).
    run_sql("DELETE FROM {images} WHERE product_id = %(id)s", {"id": finalizable.a.pk})
    with schema_context(TENANT):
        added = Product.objects.create(title="Added after finalize")

    code, output = run_lifecycle(RESTORE, "--schema", TENANT)

    assert code == RestoreExitCode.OK, output
    assert "3 product(s) from their rows, 2 as legacy_product_images kept them, 2 empty" in output
    # Not the archived JSON of a: its four photos would come back with it, and migrate_images would re-add them.
    assert (json_text(finalizable.a.pk), json_text(added.pk)) == ("[]", "[]")
    assert run_command("--schema", TENANT, "--check")[0] == ExitCode.OK


def test_restore_is_idempotent_and_a_tenant_never_finalized_has_nothing_to_restore(finalizable):
    code, output = run_lifecycle(RESTORE)
    assert code == RestoreExitCode.OK, output
    assert f"{TENANT}: not finalized (products.images is there): nothing to restore" in output
    assert f"{OTHER_TENANT}: not finalized" in output

    finalized()
    assert run_lifecycle(RESTORE, "--schema", TENANT)[0] == RestoreExitCode.OK
    restored = {product.pk: json_text(product.pk) for product in vars(finalizable).values()}
    code, output = run_lifecycle(RESTORE, "--schema", TENANT)
    assert code == RestoreExitCode.OK and "nothing to restore" in output
    assert {product.pk: json_text(product.pk) for product in vars(finalizable).values()} == restored


def test_a_tenant_finalized_twice_keeps_both_copies_and_comes_back_from_the_latest(finalizable):
    finalized()
    assert run_lifecycle(RESTORE, "--schema", TENANT)[0] == RestoreExitCode.OK
    set_json(finalizable.empty.pk, None)  # still no image: the gate lets it through
    finalized()

    assert run_lifecycle(RESTORE, "--schema", TENANT)[0] == RestoreExitCode.OK

    archived = sql_rows(
        "SELECT images::text FROM {schema}.legacy_product_images WHERE product_id = %(id)s ORDER BY copied_at",
        {"id": finalizable.empty.pk},
    )
    assert archived == [("[]",), (None,)]
    assert json_text(finalizable.empty.pk) is None


def test_a_busy_tenant_is_skipped_and_left_finalized(finalizable):
    finalized()

    with tenant_locked_elsewhere(TENANT):
        code, output = run_lifecycle(RESTORE)

    assert code == RestoreExitCode.TENANT_BUSY == 4, output
    assert f"{TENANT}: busy, skipped (left as it was): another job" in output
    assert not has_json_column(TENANT)


@pytest.mark.parametrize(
    "locked, mode",
    [("products", "ACCESS SHARE"), ("products", "ACCESS EXCLUSIVE"), ("product_images", "ACCESS EXCLUSIVE")],
    ids=["a-long-query-on-products", "products-locked", "product-images-locked"],
)
def test_a_table_another_session_holds_makes_the_restore_busy_within_the_lock_timeout(
    restores_the_column, locked, mode
):
    # Committed: inside a test's transaction, finalize's own locks would stay held until the test ends.
    product = make_product(images=entries(3))
    assert run_command("--schema", TENANT)[0] == ExitCode.OK
    finalized()
    rows_before = all_rows()
    with other_session() as holder, holder.transaction():
        holder_pid = holder.info.backend_pid
        holder.execute(
            tenant_sql("LOCK TABLE {table} IN {mode} MODE", table=sql.Identifier(TENANT, locked), mode=sql.SQL(mode))
        )
        started = time.monotonic()
        code, output = run_lifecycle(RESTORE, "--lock-timeout", "300ms")
        waited = time.monotonic() - started

    assert code == RestoreExitCode.TENANT_BUSY, output
    assert "the restore of the column waited longer than --lock-timeout (0.3 s) for a lock" in output
    assert f"held by pid {holder_pid} (idle in transaction): LOCK TABLE" in output
    assert waited < 5
    assert not has_json_column(TENANT) and all_rows() == rows_before

    # The holder gone, a re-run restores the column from the rows.
    code, output = run_lifecycle(RESTORE, "--lock-timeout", "300ms")
    assert code == RestoreExitCode.OK, output
    assert json_images(product.pk) == json_from_rows(product.pk)


def test_without_a_terminal_restore_wants_no_input(finalizable):
    finalized()
    code, output = run_lifecycle(RESTORE, no_input=False)
    assert code == RestoreExitCode.USAGE and "pass --no-input" in output
    assert not has_json_column(TENANT)


# The whole lifecycle


def test_the_lifecycle_from_the_json_to_rows_only_and_back(tenant, tmp_path):
    # The seed's distribution scaled down 20 times (161 products, 2 to 14 images), as seed_demo writes it.
    scaled = {images: max(1, products // 20) for images, products in SEED_DISTRIBUTION.items()}
    fill_products(TENANT, demo_image_counts(scaled))
    catalogue = [product_id for (product_id,) in sql_rows("SELECT id FROM {products} ORDER BY id")]
    deleted = make_product(images=entries(5), deleted_at=datetime(2025, 1, 1, tzinfo=UTC))
    empty_deleted = make_product(images=[], deleted_at=datetime(2025, 1, 1, tzinfo=UTC))
    null = make_product(images=None)
    json_null = make_product()
    run_sql("UPDATE {products} SET images = 'null'::jsonb WHERE id = %(id)s", {"id": json_null.pk})
    make_product(images=entries(1))
    # Repaired by the migration: duplicate orders and no created_at; a double-encoded array; a label marked
    # on the first of three photos (moved last).
    make_product(
        images=[{"url": "https://cdn.example/r1.jpeg", "order": 3}, {"url": "https://cdn.example/r2.jpeg", "order": 3}]
    )
    make_product(images=json.dumps(entries(3)))
    make_product(images=[{**entry, "is_label": position == 0} for position, entry in enumerate(entries(3))])

    code, report, output = run_command("--schema", TENANT, tmp_path=tmp_path)
    assert code == ExitCode.OK, output
    assert report["total"]["repaired"] == 2 and report["total"]["soft_deleted"] == 1

    # Edits through the image service, which keeps the JSON mirror.
    with schema_context(TENANT):
        images.set_label(image_ids(catalogue[0])[0])  # label moved
        images.remove_image(image_ids(catalogue[1])[1])  # photo removed
        images.add_image(catalogue[2], "https://cdn.example/added.jpeg")  # photo added
        for image_id in image_ids(deleted.pk):  # every photo of a soft-deleted product removed
            images.remove_image(image_id)
    # The old code path, still deployed, rewrites one product's JSON: --sync catches the drift.
    drifted = [{**entry, "url": entry["url"] + "?v=2"} for entry in entries(3)]
    store_json(catalogue[3], drifted)
    code, report, output = run_command("--schema", TENANT, "--sync", tmp_path=tmp_path)
    assert code == ExitCode.OK, output
    assert report["total"]["resynced"]["sample_ids"] == [catalogue[3]]
    code, _, output = run_command("--schema", TENANT, "--check", tmp_path=tmp_path)
    assert code == ExitCode.OK, output
    rows_before = all_rows()
    without_rows = [deleted.pk, empty_deleted.pk, null.pk, json_null.pk]
    json_before = {product_id: json_text(product_id) for product_id in without_rows}
    assert json_before == {deleted.pk: "[]", empty_deleted.pk: "[]", null.pk: None, json_null.pk: "null"}

    assert run_lifecycle(FINALIZE, "--schema", TENANT, "--dry-run")[0] == FinalizeExitCode.OK
    finalized()
    code, report, output = run_command("--schema", TENANT, tmp_path=tmp_path)
    assert code == ExitCode.OK and report["tenants"][0]["finalized"], output
    assert all_rows() == rows_before

    code, output = run_lifecycle(RESTORE, "--schema", TENANT)
    assert code == RestoreExitCode.OK, output

    code, report, output = run_command("--schema", TENANT, "--check", tmp_path=tmp_path)
    assert code == ExitCode.OK, output
    assert [check["number"] for check in report["tenants"][0]["validation"]["checks"]] == [1, 2, 3, 4, 5, 6]
    # Rebuilding every row from the restored JSON gives back the very rows finalize left.
    code, report, output = run_command("--schema", TENANT, "--force", tmp_path=tmp_path)
    assert code == ExitCode.OK, output
    assert report["total"]["repaired"] == 0
    assert all_rows() == rows_before
    assert {product_id: json_text(product_id) for product_id in without_rows} == json_before
