"""The six validation checks of ``migrate_images``: each one turns FAIL on the defect it is meant to catch.

Every test migrates a few products cleanly, plants one defect by hand with SQL in the tenant's schema
(DDL included: the ``tenant`` fixture rolls the whole test back), then validates with ``--check``.
"""

import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from django.db import connection
from django_tenants.utils import schema_context
from psycopg import sql

from products.images import set_label
from products.migration import runs, source
from products.migration.report import ExitCode
from products.migration.source import rows_digest, table_arrays
from products.migration.validation import JSON_VS_TABLE, _Queries, validate_tenant
from stoflow.tenants.citus import is_citus
from tests.factories import ProductFactory
from tests.helpers import (
    OTHER_TENANT,
    TENANT,
    entries,
    image_rows,
    make_product,
    run_command,
    run_sql,
    sql_rows,
    sql_value,
    store_json,
)


def all_rows(schema: str = TENANT) -> list[tuple]:
    return sql_rows(
        'SELECT id, product_id, "order", is_label, url, created_at, updated_at FROM {images} ORDER BY id', schema=schema
    )


def checks_of(report: dict, schema: str = TENANT) -> dict[int, dict]:
    """The JSON report's checks of ``schema``, by number."""
    (tenant,) = [t for t in report["tenants"] if t["schema"] == schema]
    return {check["number"]: check for check in tenant["validation"]["checks"]}


def failing(report: dict, schema: str = TENANT) -> dict[int, tuple[int, int]]:
    """The FAIL checks of ``schema`` as {number: (figure, expected)}."""
    return {
        number: (check["figure"], check["expected"])
        for number, check in checks_of(report, schema).items()
        if not check["passed"]
    }


@pytest.fixture
def migrated(tenant, tmp_path):
    """Four products migrated cleanly: 4 + 3 + 1 images, and a soft-deleted one with 2.

    10 rows, 3 labels (on the highest order of a, b and deleted), no label for the single-image product.
    """
    products = SimpleNamespace(
        a=make_product(images=entries(4)),
        b=make_product(images=entries(3)),
        single=make_product(images=entries(1)),
        deleted=make_product(images=entries(2), deleted_at=datetime(2025, 1, 1, tzinfo=UTC)),
    )
    code, report, out = run_command("--schema", tenant, tmp_path=tmp_path)
    assert code == ExitCode.OK, out
    assert report["tenants"][0]["run"]["images_migrated"] == 10
    assert report["tenants"][0]["run"]["labels_detected"] == 3
    assert [row[1] for row in image_rows(products.a.id)] == [False, False, False, True]
    return products


def alter_table(statement: str, params: dict | None = None, **names: str) -> None:
    # The test's earlier inserts left deferred foreign-key checks pending, which ALTER TABLE refuses to run past.
    run_sql("SET CONSTRAINTS ALL IMMEDIATE")
    run_sql(statement, params, **names)


def plant_orphan_rows(p):
    # The table keeps the rows of a product that is gone: no product's JSON accounts for them, so only
    # the total (check 1) can see them. Dropping the foreign key lets the product row go.
    foreign_key = sql_value(
        "SELECT conname FROM pg_constraint WHERE conrelid = %(table)s::regclass AND contype = 'f'",
        {"table": f"{TENANT}.product_images"},
    )
    alter_table("ALTER TABLE {images} DROP CONSTRAINT {fk}", fk=foreign_key)
    run_sql("DELETE FROM {products} WHERE id = %(id)s", {"id": p.single.id})


def plant_missing_label(p):
    run_sql("UPDATE {images} SET is_label = false WHERE product_id = %(id)s AND is_label", {"id": p.b.id})


def plant_duplicate_order(p):
    # Same row count, so checks 1 and 4 stay PASS; order 2 becomes a second order 1.
    alter_table("ALTER TABLE {images} DROP CONSTRAINT product_images_product_order_uniq")
    run_sql('UPDATE {images} SET "order" = 1 WHERE product_id = %(id)s AND "order" = 2', {"id": p.a.id})


def plant_moved_row(p):
    # One unlabelled row of a moves to b under a free, lowest order: a has 3 rows for 4 in its JSON, b 4 for 3,
    # while the total, the labels and their orders stay right.
    run_sql(
        'UPDATE {images} SET product_id = %(b)s, "order" = 0 WHERE product_id = %(a)s AND "order" = 1',
        {"a": p.a.id, "b": p.b.id},
    )


def plant_label_not_on_highest(p):
    run_sql("UPDATE {images} SET is_label = false WHERE product_id = %(id)s AND is_label", {"id": p.a.id})
    run_sql('UPDATE {images} SET is_label = true WHERE product_id = %(id)s AND "order" = 2', {"id": p.a.id})


def plant_second_label(p):
    # Two labels on one product cannot both be on its (single) highest order: check 5 fails with 6,
    # and the extra label makes check 2 one label too many.
    alter_table("DROP INDEX {schema}.product_images_one_label_per_product")
    run_sql('UPDATE {images} SET is_label = true WHERE product_id = %(id)s AND "order" = 1', {"id": p.a.id})


# Check 4 compares each product's rows (url, order, label) with its JSON's, so every planted
# defect fails it too, naming the products.
# These plant their defect by dropping a constraint inside the test's transaction.
CITUS_ALTER = pytest.mark.citus_incompatible(
    "drops a constraint of product_images in the test's transaction: Citus refuses ALTER TABLE on a shard "
    "with pending deferred foreign-key events"
)
DEFECTS = [
    pytest.param(1, plant_orphan_rows, {1: (10, 9), 4: (1, 0)}, ["single"], id="1-total-images", marks=CITUS_ALTER),
    pytest.param(2, plant_missing_label, {2: (2, 3), 4: (1, 0)}, ["b"], id="2-label-count"),
    pytest.param(3, plant_duplicate_order, {3: (1, 0), 4: (1, 0)}, ["a"], id="3-duplicates", marks=CITUS_ALTER),
    pytest.param(4, plant_moved_row, {4: (2, 0)}, ["a", "b"], id="4-json-vs-table"),
    pytest.param(5, plant_label_not_on_highest, {4: (1, 0), 5: (1, 0)}, ["a"], id="5-label-not-highest"),
    pytest.param(6, plant_second_label, {2: (4, 3), 4: (1, 0), 5: (1, 0), 6: (1, 0)}, ["a"], id="6-several-labels"),
]


@pytest.mark.parametrize(("number", "plant", "expected_failures", "at_fault"), DEFECTS)
def test_check_fails_on_its_defect(migrated, tenant, tmp_path, number, plant, expected_failures, at_fault):
    code, before, out = run_command("--check", "--schema", tenant, tmp_path=tmp_path)
    assert code == ExitCode.OK, out
    assert checks_of(before)[number]["passed"] is True
    assert failing(before) == {}

    plant(migrated)

    code, report, out = run_command("--check", "--schema", tenant, tmp_path=tmp_path)
    assert code == ExitCode.CHECK_FAILED, out
    assert report["exit_code"] == ExitCode.CHECK_FAILED
    assert report["mode"] == "check"
    assert failing(report) == expected_failures
    assert checks_of(report)[number]["passed"] is False
    assert report["tenants"][0]["validation"]["passed"] is False
    figure, expected = expected_failures[number]
    assert f"FAIL {figure} (expected {expected})" in out
    # Check 4 names the products whose rows differ from their JSON, in the data and in the output.
    at_fault_ids = sorted(getattr(migrated, name).id for name in at_fault)
    assert checks_of(report)[4]["product_ids"] == at_fault_ids
    assert "Failing checks" in out and ", ".join(map(str, at_fault_ids)) in out

    # A live run migrates nothing more (every product has rows) and validates again: same verdict.
    code, live, out = run_command("--schema", tenant, tmp_path=tmp_path)
    assert code == ExitCode.CHECK_FAILED, out
    assert live["mode"] == "live"
    assert live["tenants"][0]["run"]["images_migrated"] == 0
    assert failing(live) == expected_failures


def test_check_on_clean_tenant_passes_and_writes_nothing(migrated, tenant, tmp_path):
    rows = all_rows()
    products = sql_value("SELECT count(*) FROM {products}")

    code, report, out = run_command("--check", "--schema", tenant, tmp_path=tmp_path)

    assert code == ExitCode.OK, out
    assert report["exit_code"] == ExitCode.OK
    assert report["tenants"][0]["run"] is None
    assert report["tenants"][0]["validation"]["passed"] is True
    assert [check["figure"] for check in checks_of(report).values()] == [10, 3, 0, 0, 0, 0]
    assert [check["expected"] for check in checks_of(report).values()] == [10, 3, 0, 0, 0, 0]
    assert "All checks PASS" in out
    assert all_rows() == rows
    assert sql_value("SELECT count(*) FROM {products}") == products


def test_check_on_unmigrated_tenant_fails_and_migrates_nothing(tenant, tmp_path):
    make_product(images=entries(4))
    make_product(images=entries(2))

    code, report, out = run_command("--check", "--schema", tenant, tmp_path=tmp_path)

    assert code == ExitCode.CHECK_FAILED, out
    # Check 2 expects the labels the JSON yields, as checks 1 and 4 expect its images.
    assert failing(report) == {1: (0, 6), 2: (0, 2), 4: (2, 0)}
    assert all_rows() == []


def test_check_reports_each_tenant_on_its_own(migrated, tenant, tmp_path):
    make_product(schema=OTHER_TENANT, images=entries(3))
    code, _, out = run_command("--schema", OTHER_TENANT, tmp_path=tmp_path)
    assert code == ExitCode.OK, out
    plant_missing_label(migrated)

    code, report, out = run_command("--check", "--schema", tenant, "--schema", OTHER_TENANT, tmp_path=tmp_path)

    assert code == ExitCode.CHECK_FAILED, out
    assert failing(report, TENANT) == {2: (2, 3), 4: (1, 0)}
    assert failing(report, OTHER_TENANT) == {}
    assert checks_of(report, OTHER_TENANT)[1]["figure"] == 3


def test_check_4_counts_soft_deleted_products(migrated, tenant, tmp_path):
    # One of its photos goes (not the label): the labels still match the JSON's, only the counts are off.
    run_sql(
        'DELETE FROM {images} WHERE product_id = %(id)s AND "order" = '
        '(SELECT min("order") FROM {images} WHERE product_id = %(id)s)',
        {"id": migrated.deleted.id},
    )

    code, report, out = run_command("--check", "--schema", tenant, tmp_path=tmp_path)

    assert code == ExitCode.CHECK_FAILED, out
    # One row fewer in the table (check 1) and one product, the soft-deleted one, off by one (check 4).
    assert failing(report) == {1: (9, 10), 4: (1, 0)}


def test_error_products_are_listed_not_counted_as_check_failures(tenant, tmp_path):
    make_product(images=entries(3))
    bad = make_product(images={"url": "https://cdn.example/a.jpeg"})

    code, report, out = run_command("--schema", tenant, tmp_path=tmp_path)

    # The product is listed as an error (exit 1), not counted as a validation failure (exit 3).
    assert code == ExitCode.PRODUCT_ERRORS, out
    assert [error["product_id"] for error in report["tenants"][0]["run"]["errors"]] == [bad.id]
    assert failing(report) == {}
    assert checks_of(report)[1]["figure"] == checks_of(report)[1]["expected"] == 3

    code, report, out = run_command("--check", "--schema", tenant, tmp_path=tmp_path)
    assert code == ExitCode.OK, out
    assert failing(report) == {}


# Check 4 without decoding: a product whose JSON and rows are those product_json_state recorded is vouched for by
# its rows digest (source.ROWS_DIGEST) and its JSON is not decoded again. Whatever changed behind the state's back,
# the figures, the products at fault and their ids must be exactly those the full decoding gives.
STATE = sql.Identifier(TENANT, "product_json_state")
# The digests the state would hold for the table's rows of product %(id)s and its JSON today (read, then written as
# values: Citus refuses an UPDATE calling stable functions, the casts of arrays to text, on column references).
FORGED_DIGESTS = """SELECT md5(p.images::text)::uuid, {digest}
FROM (SELECT pi.product_id, {arrays} FROM {images} AS pi WHERE pi.product_id = %(id)s GROUP BY pi.product_id) AS t
JOIN {products} AS p ON p.id = t.product_id"""


def forge_state(product_id: int) -> None:
    """Record, as the writers would, that the rule yields the product's rows from its JSON today."""
    digest = rows_digest(
        sql.SQL("md5(p.images::text)::uuid"), sql.SQL("t.urls"), sql.SQL("t.orders"), sql.SQL("t.label_flags")
    )
    ((json_digest, recorded),) = sql_rows(FORGED_DIGESTS, {"id": product_id}, digest=digest, arrays=table_arrays("pi"))
    run_sql(
        "UPDATE {state} SET json_digest = %(json)s, rows_digest = %(rows)s WHERE product_id = %(id)s",
        {"json": json_digest, "rows": recorded, "id": product_id},
        state=STATE,
    )


def validation_figures() -> list[tuple]:
    """Every check of the tenant's validation as data, without its SQL."""
    return [
        (check.number, check.figure, check.expected, check.products_at_fault, check.product_ids, check.note)
        for check in validate_tenant(TENANT).checks
    ]


def fully_decoded() -> list[tuple]:
    """The same once no rows digest vouches for any product: every JSON decoded, as before the digests."""
    run_sql("UPDATE {state} SET rows_digest = NULL", state=STATE)
    return validation_figures()


def vouched_for() -> list[int]:
    """The products whose recorded rows digest matches their rows and JSON today (JSON_VS_TABLE's ``recorded``)."""
    digest = rows_digest(
        sql.SQL("md5(p.images::text)::uuid"), sql.SQL("t.urls"), sql.SQL("t.orders"), sql.SQL("t.label_flags")
    )
    return [
        product_id
        for (product_id,) in sql_rows(
            "SELECT t.product_id FROM (SELECT pi.product_id, {arrays} FROM {images} AS pi GROUP BY pi.product_id) AS t "
            "JOIN {state} AS st ON st.product_id = t.product_id JOIN {products} AS p ON p.id = t.product_id "
            "WHERE st.refused IS NULL AND st.rows_digest = {digest} ORDER BY 1",
            state=STATE,
            arrays=table_arrays("pi"),
            digest=digest,
        )
    ]


def failing_checks(figures: list[tuple]) -> dict[int, tuple]:
    """{number: (figure, expected, product ids)} of the checks that fail."""
    return {number: (figure, expected, ids) for number, figure, expected, _, ids, _ in figures if figure != expected}


def test_migration_records_the_rows_digest_that_vouches_for_each_product(migrated, tenant):
    # Every migrated product (the one-image product and the soft-deleted one included) is vouched for.
    products = [migrated.a.id, migrated.b.id, migrated.single.id, migrated.deleted.id]
    assert vouched_for() == sorted(products)
    figures = validation_figures()
    assert failing_checks(figures) == {}
    assert figures == fully_decoded()


def change_json(p):
    # The JSON loses its first image by SQL, the rows stay: the state's JSON digest no longer matches.
    store_json(p.a.id, entries(4)[1:])


def change_rows(p):
    # A row's URL changes by SQL, the JSON stays: the rows' digest no longer matches.
    run_sql("UPDATE {images} SET url = url || '?v=2' WHERE product_id = %(id)s AND \"order\" = 1", {"id": p.a.id})


def change_json_and_rewrite_state(p):
    # A writer records the new JSON's digest but leaves rows_digest as it was (code from before the column).
    store_json(p.a.id, entries(4)[1:])
    run_sql(
        "UPDATE {state} AS st SET json_digest = md5(p.images::text)::uuid FROM {products} AS p "
        "WHERE p.id = st.product_id AND p.id = %(id)s",
        {"id": p.a.id},
        state=STATE,
    )


def delete_state(p):
    # No state: the product is decoded, and its rows are still right.
    run_sql("DELETE FROM {state} WHERE product_id = %(id)s", {"id": p.a.id}, state=STATE)


def refuse_in_state(p):
    # A refused state never vouches: the product is decoded (its rows are still what its JSON yields).
    run_sql("UPDATE {state} SET refused = 'refused' WHERE product_id = %(id)s", {"id": p.a.id}, state=STATE)


@pytest.mark.parametrize(
    ("change", "expected_failures"),
    [
        pytest.param(change_json, {1: (10, 9), 4: (1, 0)}, id="json-changed"),
        pytest.param(change_rows, {4: (1, 0)}, id="rows-changed"),
        pytest.param(change_json_and_rewrite_state, {1: (10, 9), 4: (1, 0)}, id="state-half-rewritten"),
        pytest.param(delete_state, {}, id="state-deleted"),
        pytest.param(refuse_in_state, {}, id="state-refused"),
    ],
)
def test_products_changed_behind_the_state_are_decoded(migrated, tenant, change, expected_failures):
    change(migrated)

    figures = validation_figures()

    assert migrated.a.id not in vouched_for()
    assert {number: (figure, expected) for number, (figure, expected, _) in failing_checks(figures).items()} == (
        expected_failures
    )
    if 4 in expected_failures:
        assert failing_checks(figures)[4][2] == [migrated.a.id]
    # Exactly what decoding every product gives: figures, products at fault, their ids, the notes.
    assert figures == fully_decoded()


def test_a_rows_digest_recorded_under_another_rule_vouches_for_nothing(migrated, tenant, monkeypatch):
    # a's JSON loses an image; its state is then forged to say the rule yielded a's rows (all four) from that JSON.
    change_json(migrated)
    # Recorded under this rule, the state is believed (it is what the writers record): a passes unread.
    forge_state(migrated.a.id)
    assert migrated.a.id in vouched_for()
    assert failing_checks(validation_figures()) == {}
    # Recorded under another version of the rule, it vouches for nothing: a is decoded and caught.
    with monkeypatch.context() as patched:
        patched.setattr(source, "rule_version", lambda: "another rule")
        forge_state(migrated.a.id)
    assert migrated.a.id not in vouched_for()
    figures = validation_figures()
    assert failing_checks(figures)[4] == (1, 0, [migrated.a.id])
    assert figures == fully_decoded()


def test_the_rule_version_changes_with_the_rule(monkeypatch):
    version = source.rule_version.__wrapped__()
    assert version == source.rule_version()
    monkeypatch.setattr(source, "REPAIR_URL_TRIMMED", source.REPAIR_URL_TRIMMED + " ")
    assert source.rule_version.__wrapped__() != version


def test_sync_records_the_rows_digest_of_the_json_it_reconciles(migrated, tenant, tmp_path):
    change_json(migrated)
    assert migrated.a.id not in vouched_for()

    code, report, out = run_command("--sync", "--schema", tenant, tmp_path=tmp_path)

    assert code == ExitCode.OK, out
    assert migrated.a.id in vouched_for()
    figures = validation_figures()
    assert failing_checks(figures) == {}
    assert figures == fully_decoded()


def test_the_image_services_mirror_records_no_rows_digest_and_its_product_is_decoded(migrated, tenant):
    # The mirror writes the JSON from the rows: nothing read that JSON with the rule, so nothing vouches for it.
    first_photo = sql_value('SELECT id FROM {images} WHERE product_id = %(id)s AND "order" = 1', {"id": migrated.a.id})
    with schema_context(tenant):
        set_label(first_photo)
    assert (
        sql_value("SELECT rows_digest FROM {state} WHERE product_id = %(id)s", {"id": migrated.a.id}, state=STATE)
        is None
    )
    assert migrated.a.id not in vouched_for()

    figures = validation_figures()

    assert failing_checks(figures) == {}
    assert figures == fully_decoded()


def _plan_nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


def test_check_4_plans_the_recorded_state_as_the_rows_it_holds(tenant, tmp_path):
    # The products whose recorded state vouches for their rows are joined to the table's products by id. Were the
    # JSON's digest compared in that join, the planner would count one such product in all, whatever the table
    # holds, and could join the two sides by a nested loop: on the 30x tenant, every product compared with every
    # other one, the validation past its ten-minute statement timeout.
    if is_citus():
        pytest.skip("not on Citus: the coordinator's plan of check 4 is Citus's own, the join is planned on the worker")
    with schema_context(TENANT):
        ProductFactory.create_batch(300, images=entries(2))
    code, _, output = run_command("--schema", TENANT, tmp_path=tmp_path)
    assert code == ExitCode.OK, output
    run_sql("ANALYZE {images}")
    run_sql("ANALYZE {products}")
    run_sql("ANALYZE {state}", state=STATE)

    query = _Queries(TENANT, None, None, []).text(JSON_VS_TABLE)
    with connection.cursor() as cursor:  # the text as run, values bound in: no parameters to parse
        cursor.execute(f"EXPLAIN (FORMAT JSON) {query}")
        ((explained,),) = cursor.fetchall()
    plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]

    # The join at the top of ``checked``: its side that reads product_json_state is the recorded state.
    (checked,) = [node for node in _plan_nodes(plan) if node.get("Subplan Name") == "CTE checked"]
    (recorded_state,) = [
        side
        for side in checked["Plans"]
        if any(scan.get("Relation Name") == "product_json_state" for scan in _plan_nodes(side))
    ]
    assert recorded_state["Plan Rows"] >= 100  # 300 recorded, not 1


def test_a_run_that_wrote_many_rows_analyzes_both_tables_the_validation_joins(tenant, tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "ANALYZE_AFTER_IMAGES", 2)  # a tenant of many images, made small
    make_product(images=entries(3))
    started = sql_value("SELECT clock_timestamp()")

    code, _, output = run_command("--schema", TENANT, tmp_path=tmp_path)

    assert code == ExitCode.OK, output
    if not is_citus():  # on Citus the statistics are the shards', on the worker
        # Analyzed by the run itself (last_analyze: not autovacuum's, which may have analyzed any table before).
        run_sql("SELECT pg_stat_clear_snapshot()")
        analyzed = sql_rows(
            "SELECT relname FROM pg_stat_user_tables WHERE schemaname = %(schema)s AND last_analyze >= %(started)s "
            "ORDER BY 1",
            {"schema": TENANT, "started": started},
        )
        assert analyzed == [("product_images",), ("product_json_state",)]
