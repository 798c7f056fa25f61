"""The dry run on a live database: each batch rehearsed in its own short transaction, validated before its
rollback, the batches' checks added up to the very figures a live run reports; nobody waits on it."""

import json

from django.db import connection

from products.migration import batches
from products.migration.report import ExitCode
from tests.helpers import (
    OTHER_TENANT,
    TENANT,
    entries,
    make_product,
    other_session,
    plant_failing_insert,
    run_command,
    run_sql,
    sql_value,
    store_json,
    table_state,
    tenant_sql,
)


def comparable(report: dict) -> dict:
    """The report without what differs between a dry and a live run of the same data."""
    report = {key: value for key, value in report.items() if key not in ("started_at", "seconds", "mode", "run_id")}
    report["tenants"] = [
        {key: value for key, value in tenant.items() if key not in ("seconds", "pace")} for tenant in report["tenants"]
    ]
    return report


def test_dry_run_figures_and_checks_equal_the_live_run_s(tenant, tmp_path):
    make_product(images=entries(4))
    make_product(images=[{"url": "/a.jpeg", "order": 0}, {"url": "/b.jpeg", "order": 0}])  # repaired
    make_product(images=[{"order": 1}])  # an error from the JSON
    refused = make_product(images=[{"url": "https://cdn.example/boom.jpeg", "order": 1}, *entries(1, 2)])
    make_product(images=entries(2), deleted_at="2025-01-01T00:00:00Z")
    already = make_product(images=entries(3))
    make_product(images=entries(30))  # a spot check cut to 20 rows, if it were the first
    for _ in range(5):
        make_product(images=entries(2))
    # Migrated earlier, then its JSON changed (check 4 names it), and rows whose product is gone, below the
    # first id and past the last (check 1 names them): what the validation of ranges must not miss.
    assert run_command("--schema", tenant, "--batch-size", "1000")[0] == ExitCode.PRODUCT_ERRORS
    run_sql("DELETE FROM {images} WHERE product_id <> %(id)s", {"id": already.pk})
    store_json(already.pk, entries(2))
    run_sql("SET CONSTRAINTS ALL IMMEDIATE")
    foreign_key = sql_value(
        "SELECT conname FROM pg_constraint WHERE conrelid = %(table)s::regclass AND contype = 'f'",
        {"table": f"{tenant}.product_images"},
    )
    run_sql("ALTER TABLE {images} DROP CONSTRAINT {fk}", fk=foreign_key)
    for orphan in (-7, 10**12):
        run_sql(
            'INSERT INTO {images} (product_id, url, "order", is_label, created_at, updated_at) '
            "VALUES (%(id)s, 'https://cdn.example/orphan.jpeg', 0, false, now(), now())",
            {"id": orphan},
        )
    plant_failing_insert(tenant, "boom")
    before = table_state(tenant)

    args = ["--schema", tenant, "--batch-size", "3", "--allow", "refuse_image"]
    dry_code, dry, _ = run_command(*args, "--dry-run", tmp_path=tmp_path)
    assert table_state(tenant) == before
    live_code, live, _ = run_command(*args, tmp_path=tmp_path)

    assert (dry["mode"], live["mode"]) == ("dry-run", "live")
    assert dry_code == live_code == ExitCode.CHECK_FAILED
    assert comparable(dry) == comparable(live)
    validation = dry["tenants"][0]["validation"]
    assert [error["product_id"] for error in dry["tenants"][0]["run"]["errors"]][-1] == refused.pk
    checks = {check["number"]: check for check in validation["checks"]}
    assert -7 in checks[1]["product_ids"] and 10**12 in checks[1]["product_ids"]
    assert already.pk in checks[4]["product_ids"]


def test_the_dry_run_holds_no_transaction_across_batches_nor_any_savepoint(committed_db, monkeypatch, tmp_path):
    products = [make_product(images=entries(2)) for _ in range(6)]
    write_batch = batches._write_batch
    seen = []

    def look_from_outside(schema, after, upto, options):
        # Inside the rehearsal of this batch: one real transaction, no savepoint (nothing to overflow
        # PostgreSQL's 64-subtransaction cache), and the earlier batches' products are free for the app.
        seen.append((connection.in_atomic_block, list(connection.savepoint_ids)))
        if after is not None:
            with other_session() as app:
                app.execute("BEGIN")
                app.execute("SET LOCAL lock_timeout = '100ms'")
                app.execute(
                    tenant_sql("SELECT 1 FROM {products} WHERE id = %(id)s FOR UPDATE NOWAIT"), {"id": products[0].pk}
                )
                app.execute(
                    tenant_sql(
                        'INSERT INTO {images} (product_id, url, "order", is_label, created_at, updated_at) '
                        "VALUES (%(id)s, 'https://cdn.example/app.jpeg', 1, false, now(), now())"
                    ),
                    {"id": products[0].pk},
                )
                app.execute("ROLLBACK")
        return write_batch(schema, after, upto, options)

    monkeypatch.setattr(batches, "_write_batch", look_from_outside)
    code, report, output = run_command("--schema", TENANT, "--dry-run", "--batch-size", "2", tmp_path=tmp_path)

    assert code == ExitCode.OK, output
    assert seen == [(True, [])] * 3
    assert report["tenants"][0]["run"]["images_migrated"] == 12
    assert [check["figure"] for check in report["tenants"][0]["validation"]["checks"]] == [12, 6, 0, 0, 0, 0]
    assert table_state(TENANT) == []


def test_a_dry_run_leaves_the_other_tenant_and_the_json_untouched(tenant, tmp_path):
    make_product(images=entries(3))
    other = make_product(OTHER_TENANT, images=entries(2))
    json_before = json.dumps(other.images)

    code, report, _ = run_command("--dry-run", "--batch-size", "1", tmp_path=tmp_path)

    assert code == ExitCode.OK
    assert [t["run"]["images_migrated"] for t in report["tenants"]] == [3, 2]
    assert table_state(tenant) == table_state(OTHER_TENANT) == []
    assert json.dumps(other.images) == json_before
