"""The per-tenant preflight: a tenant whose tables the migration cannot trust is refused untouched (exit 2),
with the reason, and the other tenants go on. DDL here is rolled back with the test."""

import shlex

import pytest

from products.migration.preflight import check_tenant
from products.migration.report import ExitCode
from tests.helpers import (
    OTHER_TENANT,
    TENANT,
    entries,
    image_rows,
    ledger_entries,
    make_product,
    plant_failing_insert,
    run_command,
    run_sql,
)


def alter(statement: str, **names) -> None:
    # Earlier inserts may leave deferred foreign-key checks pending, which ALTER TABLE refuses to run past.
    run_sql("SET CONSTRAINTS ALL IMMEDIATE")
    run_sql(statement, **names)


REFUSALS = [
    pytest.param(
        "ALTER TABLE {products} ALTER COLUMN images TYPE text USING images::text",
        "products.images is text, not jsonb",
        id="images-is-text",
    ),
    pytest.param("ALTER TABLE {products} DROP COLUMN deleted_at", "products.deleted_at is missing", id="no-deleted-at"),
    pytest.param("ALTER TABLE {products} DROP COLUMN images", "products.images is missing", id="no-images-no-archive"),
    pytest.param(
        'ALTER TABLE {images} ALTER COLUMN "order" TYPE smallint',
        "product_images.order is smallint, not integer or bigint",
        id="order-is-smallint",
    ),
    pytest.param(
        "ALTER TABLE {images} ADD COLUMN source text NOT NULL",
        "product_images.source is NOT NULL without a default",
        id="not-null-column-the-migration-cannot-fill",
    ),
    pytest.param(
        "ALTER TABLE {images} ADD CONSTRAINT https_only CHECK (url ~ '^https://')",
        "product_images has a constraint the migration does not know, https_only: CHECK",
        id="unknown-check-constraint",
    ),
    pytest.param(
        "CREATE UNIQUE INDEX one_row_per_url ON {images} (url)",
        "product_images has a unique index the migration does not know, one_row_per_url",
        id="unknown-unique-index",
    ),
    pytest.param(
        "CREATE RULE no_inserts AS ON INSERT TO {images} DO INSTEAD NOTHING",
        "product_images has a rule the migration does not know, no_inserts",
        id="unknown-rule",
    ),
]


@pytest.mark.parametrize("statement, reason", REFUSALS)
def test_a_tenant_failing_its_preflight_is_refused_untouched_and_the_others_go_on(tenant, tmp_path, statement, reason):
    mine = make_product(images=entries(2))
    other = make_product(OTHER_TENANT, images=entries(3))
    alter(statement)

    code, report, output = run_command(tmp_path=tmp_path)

    assert code == ExitCode.USAGE, output
    refused, migrated = report["tenants"]
    assert (refused["status"], migrated["status"]) == ("refused", "done")
    assert any(reason in problem for problem in refused["refused"]), refused["refused"]
    assert refused["run"] is None and refused["validation"] is None
    flat = " ".join(output.split())  # the terminal wraps long cells
    assert reason in flat and "refused: not touched" in flat
    assert "to the product_images table across 1 schema(s);" in flat  # the refused one is not among them
    assert image_rows(mine.pk) == [] and ledger_entries(TENANT) == []
    assert len(image_rows(other.pk, OTHER_TENANT)) == 3


def test_an_unknown_trigger_is_refused_until_the_operator_allows_it(tenant, tmp_path):
    product = make_product(images=entries(2))
    plant_failing_insert(tenant, "boom", name="audit_images")

    code, report, output = run_command("--schema", tenant, tmp_path=tmp_path)

    assert code == ExitCode.USAGE
    [problem] = report["tenants"][0]["refused"]
    assert "product_images has a trigger the migration does not know, audit_images" in problem
    assert "--allow audit_images" in problem
    assert image_rows(product.pk) == []

    code, report, output = run_command("--schema", tenant, "--allow", "audit_images", tmp_path=tmp_path)
    assert code == ExitCode.OK, output
    assert len(image_rows(product.pk)) == 2


@pytest.mark.parametrize("name", ["one_row_per_url", "One row.per URL"], ids=["plain-name", "name-to-quote"])
def test_an_unknown_unique_index_is_allowed_by_the_name_the_refusal_gives_and_still_enforced(tenant, tmp_path, name):
    first = make_product(images=entries(2))
    twin = make_product(images=entries(1))  # its one URL is first's: the index refuses its row
    alter("CREATE UNIQUE INDEX {name} ON {images} (url)", name=name)

    code, report, _ = run_command("--schema", tenant, "--allow", "another_index", tmp_path=tmp_path)

    assert code == ExitCode.USAGE
    [problem] = report["tenants"][0]["refused"]
    assert f"product_images has a unique index the migration does not know, {name}: CREATE UNIQUE INDEX" in problem
    assert problem.endswith(f"(review it, then pass --allow {shlex.quote(name)})")  # as a shell takes it

    code, report, output = run_command("--schema", tenant, "--allow", name, tmp_path=tmp_path)

    # Allowed, not dropped nor bypassed: the rows it refuses make their product an error.
    assert code == ExitCode.PRODUCT_ERRORS, output
    assert len(image_rows(first.pk)) == 2 and image_rows(twin.pk) == []
    [error] = report["tenants"][0]["run"]["errors"]
    assert error["product_id"] == twin.pk and "duplicate key value violates unique constraint" in error["reason"]


def test_force_and_sync_also_need_the_table_of_removed_rows(tenant, tmp_path):
    make_product(images=entries(2))
    alter("ALTER TABLE {schema}.product_images_removed DROP COLUMN removed_by")

    assert run_command("--schema", tenant, tmp_path=tmp_path)[0] == ExitCode.OK
    code, report, _ = run_command("--schema", tenant, "--sync", tmp_path=tmp_path)
    assert code == ExitCode.USAGE
    assert report["tenants"][0]["refused"] == ["product_images_removed.removed_by is missing"]


def test_check_refuses_a_tenant_whose_json_it_cannot_read(tenant, tmp_path):
    make_product(images=entries(2))
    alter("ALTER TABLE {products} ALTER COLUMN images TYPE text USING images::text")

    code, report, _ = run_command("--check", "--schema", tenant, tmp_path=tmp_path)

    assert code == ExitCode.USAGE
    assert report["tenants"][0]["refused"] == ["products.images is text, not jsonb"]


def test_a_clean_tenant_passes_and_a_finalized_one_is_not_refused_for_its_missing_json(tenant):
    assert check_tenant(TENANT).problems == []
    assert check_tenant(TENANT).finalized is False

    # finalize_images: every product's JSON copied to legacy_product_images, then the column dropped.
    alter("CREATE TABLE {schema}.legacy_product_images (product_id bigint PRIMARY KEY, images jsonb)")
    alter("ALTER TABLE {products} DROP COLUMN images")

    preflight = check_tenant(TENANT)
    assert preflight.finalized is True
    assert preflight.problems == []
