"""Drift after the migration: the stronger checks see it, --sync rebuilds exactly what differs, --force clears
what the JSON emptied, and a removed photo whose URL left the JSON is copied aside first."""

from datetime import UTC, datetime

import pytest

from products.migration import follower
from products.migration.report import ExitCode
from tests.helpers import (
    OTHER_TENANT,
    TENANT,
    entries,
    image_rows,
    image_rows_with_ids,
    make_product,
    other_session,
    run_command,
    run_sql,
    sql_rows,
    sql_value,
    store_json,
    tenant_sql,
)


def rows_with_ids(product_id: int) -> list[tuple]:
    return sql_rows(
        'SELECT id, "order", is_label, url, updated_at FROM {images} WHERE product_id = %(id)s ORDER BY "order"',
        {"id": product_id},
    )


def kept_aside() -> list[tuple]:
    return sql_rows(
        'SELECT product_id, url, "order", is_label, removed_by FROM {schema}.product_images_removed '
        'ORDER BY product_id, "order"'
    )


def checks(report: dict) -> dict[int, dict]:
    return {check["number"]: check for check in report["tenants"][0]["validation"]["checks"]}


@pytest.fixture
def drifted(tenant, tmp_path):
    """Four products migrated, then the old code path kept writing JSON: changed, emptied, untouched, new."""
    changed = make_product(images=entries(3))
    emptied = make_product(images=entries(2))
    untouched = make_product(images=entries(4))
    assert run_command("--schema", tenant)[0] == ExitCode.OK
    photos = entries(3)
    photos[0]["url"] = "https://cdn.example/replaced.jpeg"
    photos[1], photos[2] = {**photos[2], "order": 2}, {**photos[1], "order": 3}  # same count, reordered
    store_json(changed.pk, photos)
    store_json(emptied.pk, [])
    new = make_product(images=entries(2))
    return changed, emptied, untouched, new


def test_check_names_the_drifted_and_pending_products(drifted, tenant, tmp_path):
    changed, emptied, _, new = drifted

    code, report, output = run_command("--check", "--schema", tenant, tmp_path=tmp_path)

    assert code == ExitCode.CHECK_FAILED
    assert checks(report)[4]["figure"] == 3
    assert checks(report)[4]["product_ids"] == [changed.pk, emptied.pk, new.pk]
    assert f"{changed.pk}, {emptied.pk}, {new.pk}" in output


def test_sync_rebuilds_exactly_the_products_that_differ(drifted, tenant, tmp_path):
    changed, emptied, untouched, new = drifted
    untouched_rows = rows_with_ids(untouched.pk)
    removed_rows = rows_with_ids(emptied.pk)
    changed_ids = {url: image_id for image_id, _, _, url, _ in rows_with_ids(changed.pk)}

    code, report, output = run_command("--sync", "--schema", tenant, tmp_path=tmp_path)

    assert code == ExitCode.OK, output
    run = report["tenants"][0]["run"]
    assert run["resynced"]["products"] == 2
    assert run["resynced"]["sample_ids"] == [changed.pk, emptied.pk]
    # The changed product is brought to its JSON in place: it counts as migrated before, the new one is migrated.
    assert (run["images_migrated"], run["already_migrated"]) == (2, 2)
    assert "Resynced products" in output
    assert rows_with_ids(untouched.pk) == untouched_rows  # same ids, same updated_at
    # The two photos whose URL stayed kept their ids through the reorder and the label's move.
    kept = {url: image_id for image_id, _, _, url, _ in rows_with_ids(changed.pk) if url in changed_ids}
    assert kept == {url: changed_ids[url] for url in kept} and len(kept) == 2
    assert [(o, label, url) for o, label, url, _ in image_rows(changed.pk)] == [
        (1, False, "https://cdn.example/replaced.jpeg"),
        (2, False, "https://cdn.example/3-2.jpeg"),
        (3, True, "https://cdn.example/2-1.jpeg"),
    ]
    assert image_rows(emptied.pk) == []
    assert len(image_rows(new.pk)) == 2
    # The photos whose URL left the JSON were copied aside before they went; the others are in the table.
    assert [row[:4] for row in kept_aside()] == [
        (changed.pk, "https://cdn.example/1-0.jpeg", 1, False),
        *((emptied.pk, url, order, is_label) for _, order, is_label, url, _ in removed_rows),
    ]
    assert all(row[4].startswith("migrate_images --sync, started ") for row in kept_aside())
    assert report["tenants"][0]["run"]["rows_kept_aside"] == 3
    assert run_command("--check", "--schema", tenant)[0] == ExitCode.OK
    # Nothing differs any more: a second --sync rebuilds nothing.
    again = run_command("--sync", "--schema", tenant, tmp_path=tmp_path)[1]["tenants"][0]["run"]
    assert again["resynced"]["products"] == 0 and again["images_migrated"] == 0


def test_sync_dry_run_shows_the_same_and_writes_nothing(drifted, tenant, tmp_path):
    changed, emptied, untouched, _ = drifted
    before = [rows_with_ids(product.pk) for product in (changed, emptied, untouched)]

    code, dry, _ = run_command("--sync", "--dry-run", "--schema", tenant, tmp_path=tmp_path)

    assert code == ExitCode.OK
    assert [rows_with_ids(product.pk) for product in (changed, emptied, untouched)] == before
    assert kept_aside() == []
    live = run_command("--sync", "--schema", tenant, tmp_path=tmp_path)[1]
    assert dry["tenants"][0]["run"] == live["tenants"][0]["run"]


def test_force_clears_the_rows_of_products_whose_json_was_emptied(tenant):
    emptied = make_product(images=entries(2))
    nulled = make_product(images=entries(3))
    assert run_command("--schema", tenant)[0] == ExitCode.OK
    store_json(emptied.pk, [])
    store_json(nulled.pk, None)
    assert run_command("--check", "--schema", tenant)[0] == ExitCode.CHECK_FAILED

    code, _, output = run_command("--force", "--schema", tenant)

    assert code == ExitCode.OK, output
    assert image_rows(emptied.pk) == image_rows(nulled.pk) == []
    assert sorted(product_id for product_id, *_ in kept_aside()) == [emptied.pk] * 2 + [nulled.pk] * 3
    assert all(row[4].startswith("migrate_images --force") for row in kept_aside())


def test_force_copies_aside_nothing_the_json_still_holds(tenant):
    make_product(images=entries(3))
    assert run_command("--schema", tenant)[0] == ExitCode.OK

    assert run_command("--force", "--schema", tenant)[0] == ExitCode.OK

    assert kept_aside() == []


def test_changed_photos_and_a_moved_label_with_the_same_count_fail_check_4(tenant, tmp_path):
    relabelled, renamed, clean = (make_product(images=entries(3)) for _ in range(3))
    assert run_command("--schema", tenant)[0] == ExitCode.OK
    # The label on the first photo (the mirror's is_label), and one URL changed: same counts as the rows.
    store_json(relabelled.pk, [{**entry, "is_label": i == 0} for i, entry in enumerate(entries(3))])
    store_json(renamed.pk, [{**entry, "url": entry["url"] + "?v=2"} for entry in entries(3)])

    code, report, _ = run_command("--check", "--schema", tenant, tmp_path=tmp_path)

    assert code == ExitCode.CHECK_FAILED
    assert {number: check["passed"] for number, check in checks(report).items()} == {
        1: True,
        2: True,
        3: True,
        4: False,
        5: True,
        6: True,
    }
    assert checks(report)[4]["product_ids"] == [relabelled.pk, renamed.pk]
    assert clean.pk not in checks(report)[4]["product_ids"]


def test_check_2_compares_labels_per_product_not_totals(tenant, tmp_path):
    single = make_product(images=entries(1))
    pair = make_product(images=entries(2))
    assert run_command("--schema", tenant)[0] == ExitCode.OK
    # A label on the one-image product and none on the pair: the totals still agree.
    store_json(single.pk, entries(1))
    sql_rows(
        "UPDATE {images} SET is_label = (product_id = %(single)s), updated_at = %(now)s RETURNING id",
        {"single": single.pk, "now": datetime.now(UTC)},
    )

    code, report, _ = run_command("--check", "--schema", tenant, tmp_path=tmp_path)

    assert code == ExitCode.CHECK_FAILED
    check_2 = checks(report)[2]
    assert (check_2["figure"], check_2["expected"], check_2["passed"]) == (1, 1, False)
    assert check_2["product_ids"] == [single.pk, pair.pk]


@pytest.mark.parametrize("flag", ["--force", "--sync"])
def test_a_migrated_product_whose_json_became_an_error_keeps_its_rows_and_is_reported(tenant, tmp_path, flag):
    broken = make_product(images=entries(3))
    clean = make_product(images=entries(2))
    assert run_command("--schema", tenant)[0] == ExitCode.OK
    rows = rows_with_ids(broken.pk)
    store_json(broken.pk, {"url": "https://cdn.example/1-0.jpeg"})  # an object, not an array: no rows to rebuild

    code, report, output = run_command(flag, "--schema", tenant, tmp_path=tmp_path)

    assert code == ExitCode.PRODUCT_ERRORS, output
    run = report["tenants"][0]["run"]
    assert [(error["product_id"], error["reason"]) for error in run["errors"]] == [
        (broken.pk, "images is a JSON object, not an array")
    ]
    # Neither rebuilt nor emptied: its rows stay as the last run left them, same ids, and nothing went aside.
    assert rows_with_ids(broken.pk) == rows
    assert kept_aside() == [] and run["rows_kept_aside"] == 0
    assert run["resynced"]["products"] == 0
    assert len(image_rows(clean.pk)) == 2


def test_sync_keeps_the_ids_other_tables_point_at_and_counts_the_references_it_removes(tenant, tmp_path):
    product = make_product(images=entries(3))
    other = make_product(images=entries(2))
    assert run_command("--schema", tenant)[0] == ExitCode.OK
    run_sql(
        "CREATE TABLE {schema}.uploads (id bigserial PRIMARY KEY, "
        "image_id bigint NOT NULL REFERENCES {images}(id) ON DELETE CASCADE)"
    )
    run_sql("INSERT INTO {schema}.uploads (image_id) SELECT id FROM {images}")
    photos = entries(3)
    photos[0]["url"] = "https://cdn.example/replaced.jpeg"  # one URL changes; the two others stay
    store_json(product.pk, photos)

    dry = run_command("--sync", "--dry-run", "--schema", tenant, tmp_path=tmp_path)[1]
    code, report, output = run_command("--sync", "--schema", tenant, tmp_path=tmp_path)

    assert code == ExitCode.OK, output
    assert report["tenants"][0]["referencing_keys"] == [f"{tenant}.uploads(image_id) ON DELETE CASCADE"]
    # Before (the dry run) and after: the one reference to the replaced photo, nothing else.
    assert dry["tenants"][0]["run"]["references_removed"] == report["tenants"][0]["run"]["references_removed"] == 1
    assert "1 of their rows pointed at the rows removed here" in " ".join(output.split())
    assert sql_value("SELECT count(*) FROM {schema}.uploads") == 5 - 1
    assert (
        sql_value(
            "SELECT count(*) FROM {schema}.uploads AS u JOIN {images} AS i ON i.id = u.image_id "
            "WHERE i.product_id = %(id)s",
            {"id": other.pk},
        )
        == 2
    )


@pytest.mark.parametrize("flag", ["--force", "--sync"])
def test_the_report_names_the_products_whose_rows_went_because_their_json_was_emptied(tenant, tmp_path, flag):
    emptied = make_product(images=entries(2))
    nulled = make_product(images=entries(3))
    kept = make_product(images=entries(2))
    assert run_command("--schema", tenant)[0] == ExitCode.OK
    store_json(emptied.pk, [])
    store_json(nulled.pk, None)

    code, report, output = run_command(flag, "--schema", tenant, tmp_path=tmp_path)

    assert code == ExitCode.OK, output
    assert image_rows(emptied.pk) == image_rows(nulled.pk) == [] and len(image_rows(kept.pk)) == 2
    assert report["tenants"][0]["run"]["emptied"]["sample_ids"] == [emptied.pk, nulled.pk]
    assert report["tenants"][0]["run"]["emptied"]["products"] == 2
    assert "2 product(s) whose JSON is now empty or null had every row removed" in " ".join(output.split())


def test_sync_counts_the_products_it_leaves_as_they_are_as_a_plain_re_run_does(tenant, tmp_path):
    """--sync reads only the products whose JSON changed (or that have no rows): the others are counted all the
    same, soft-deleted ones apart."""
    changed = make_product(images=entries(3))
    make_product(images=entries(2))
    make_product(images=entries(4), deleted_at=datetime(2025, 1, 1, tzinfo=UTC))
    make_product(images=[])
    assert run_command("--schema", tenant)[0] == ExitCode.OK
    store_json(changed.pk, entries(2))
    figures = ("products", "already_migrated", "soft_deleted", "images_migrated", "errors")

    synced = run_command("--sync", "--schema", tenant, tmp_path=tmp_path)[1]["tenants"][0]["run"]
    plain = run_command("--schema", tenant, tmp_path=tmp_path)[1]["tenants"][0]["run"]

    assert synced["resynced"]["sample_ids"] == [changed.pk]
    assert {name: synced[name] for name in figures} == {name: plain[name] for name in figures}
    assert (synced["products"], synced["already_migrated"], synced["soft_deleted"]) == (3, 3, 1)


def test_sync_does_not_lock_the_products_it_leaves_as_they_are(committed_db):
    """An app session holding a product whose JSON did not change does not block --sync: it locks only the
    products it may write."""
    busy, changed = make_product(images=entries(3)), make_product(images=entries(2))
    assert run_command("--schema", TENANT)[0] == ExitCode.OK
    store_json(changed.pk, entries(3))
    with other_session() as app, app.transaction():
        app.execute(tenant_sql("SELECT 1 FROM {products} WHERE id = %(id)s FOR UPDATE"), {"id": busy.pk})

        code, _, output = run_command("--sync", "--schema", TENANT, "--lock-timeout", "200ms", "--retries", "0")

    assert code == ExitCode.OK, output
    assert len(image_rows(changed.pk)) == 3


def test_a_product_a_restrict_key_holds_is_listed_and_sync_follow_goes_on_with_every_tenant(tenant, tmp_path):
    held = make_product(images=entries(3))
    changed = make_product(images=entries(2))
    elsewhere = make_product(OTHER_TENANT, images=entries(2))
    assert run_command("--schema", TENANT, "--schema", OTHER_TENANT)[0] == ExitCode.OK
    run_sql(
        "CREATE TABLE {schema}.uploads (id bigserial PRIMARY KEY, "
        "image_id bigint NOT NULL REFERENCES {images}(id) ON DELETE RESTRICT)"
    )
    run_sql(
        "INSERT INTO {schema}.uploads (image_id) SELECT id FROM {images} WHERE product_id = %(id)s", {"id": held.pk}
    )
    kept_rows = image_rows_with_ids(held.pk)
    store_json(held.pk, entries(3)[1:])  # drops a photo an upload points at
    store_json(changed.pk, entries(3))
    store_json(elsewhere.pk, entries(3), schema=OTHER_TENANT)

    # The runbook's step: --sync then the follower, tenant after tenant.
    code, report, output = run_command(
        "--sync", "--follow", "--schema", TENANT, "--schema", OTHER_TENANT, tmp_path=tmp_path
    )

    assert code != ExitCode.DATABASE_FAILURE, output
    assert [tenant_report["schema"] for tenant_report in report["tenants"]] == [TENANT, OTHER_TENANT]
    assert f"{held.pk}" in output and "point at (ON DELETE RESTRICT): rows kept" in " ".join(output.split())
    assert image_rows_with_ids(held.pk) == kept_rows
    assert len(image_rows_with_ids(changed.pk)) == 3
    assert len(image_rows_with_ids(elsewhere.pk, OTHER_TENANT)) == 3
    assert follower.describe(TENANT) == follower.describe(OTHER_TENANT) == "on"
    # Held, not failing: the checks pass, and the runbook's step run again ends the same way.
    assert run_command("--check", "--schema", TENANT)[0] == ExitCode.OK
    assert run_command("--sync", "--follow", "--schema", TENANT)[0] == code
    assert image_rows_with_ids(held.pk) == kept_rows


def test_references_through_a_two_column_key_and_a_partitioned_table_are_counted_once(tenant, tmp_path):
    # Made before any row: under the test's transaction, a table with pending checks takes no index.
    run_sql("CREATE UNIQUE INDEX uploads_key ON {images} (id, product_id)")
    product = make_product(images=entries(3))
    assert run_command("--schema", tenant, "--allow", "uploads_key")[0] == ExitCode.OK
    run_sql(
        "CREATE TABLE {schema}.uploads (image_id bigint, product_id bigint, "
        "FOREIGN KEY (image_id, product_id) REFERENCES {images}(id, product_id) ON DELETE CASCADE)"
    )
    run_sql(
        "CREATE TABLE {schema}.listings (image_id bigint REFERENCES {images}(id) ON DELETE CASCADE, market text) "
        "PARTITION BY LIST (market)"
    )
    run_sql("CREATE TABLE {schema}.listings_ebay PARTITION OF {schema}.listings FOR VALUES IN ('ebay')")
    run_sql("CREATE TABLE {schema}.listings_vinted PARTITION OF {schema}.listings FOR VALUES IN ('vinted')")
    first = image_rows_with_ids(product.pk)[0][0]
    run_sql("INSERT INTO {schema}.uploads SELECT id, product_id FROM {images}")
    run_sql("INSERT INTO {schema}.listings VALUES (%(id)s, 'ebay'), (%(id)s, 'vinted')", {"id": first})
    store_json(product.pk, entries(3)[1:])

    code, report, output = run_command("--sync", "--allow", "uploads_key", "--schema", tenant, tmp_path=tmp_path)

    assert code == ExitCode.OK, output
    assert report["tenants"][0]["referencing_keys"] == [
        f"{tenant}.listings(image_id) ON DELETE CASCADE",
        f"{tenant}.uploads(image_id, product_id) ON DELETE CASCADE",
    ]
    assert report["tenants"][0]["run"]["references_removed"] == 1 + 2  # one upload, a listing in each partition
    assert sql_value("SELECT count(*) FROM {schema}.uploads") + sql_value("SELECT count(*) FROM {schema}.listings") == 2
