"""The follower: legacy JSON writes reach the rows in the writer's own transaction (products.migration.follower)."""

import threading
import time

from django_tenants.utils import schema_context
from psycopg import sql
from psycopg.types.json import Jsonb

from products.migration import follower
from products.selectors import listing_photos
from tests.helpers import (
    TENANT,
    entries,
    join_all,
    make_product,
    other_session,
    run_command,
    run_sql,
    sql_rows,
    sql_value,
    store_json,
)


def rows(product_id: int) -> list[tuple]:
    return sql_rows(
        'SELECT id, url, "order", is_label FROM {images} WHERE product_id = %(id)s ORDER BY "order"', {"id": product_id}
    )


def test_an_old_convention_write_reaches_the_rows_keeping_ids(committed_db):
    product = make_product(images=entries(3))
    assert run_command("--schema", TENANT)[0] == 0
    follower.install(TENANT)
    before = {url: image_id for image_id, url, _, _ in rows(product.pk)}
    photos = entries(3) + [{"url": "https://cdn.example/price-tag.jpeg", "order": 7}]

    store_json(product.pk, photos)

    after = rows(product.pk)
    assert [(url, label) for _, url, _, label in after][-1] == ("https://cdn.example/price-tag.jpeg", True)
    assert {url: image_id for image_id, url, _, _ in after if url in before} == before
    with schema_context(TENANT):
        assert "https://cdn.example/price-tag.jpeg" not in listing_photos(product.pk, "ebay")
    assert follower.installed_version(TENANT) == follower.version()
    assert follower.describe(TENANT) == "on"


def test_a_mixed_write_keeps_the_rows_and_holds_the_product(committed_db):
    product = make_product(images=entries(3))
    assert run_command("--schema", TENANT)[0] == 0
    follower.install(TENANT)
    before = rows(product.pk)
    keyed = [{**entry, "is_label": index == 2} for index, entry in enumerate(entries(3))]

    store_json(product.pk, keyed + [{"url": "https://cdn.example/price-tag.jpeg", "order": 9}])

    assert rows(product.pk) == before
    refused = sql_value("SELECT refused FROM {schema}.product_json_state WHERE product_id = %(id)s", {"id": product.pk})
    assert "mix the two label conventions" in refused


def test_deleting_a_product_takes_its_rows_copied_aside(committed_db):
    product = make_product(images=entries(2))
    assert run_command("--schema", TENANT)[0] == 0
    follower.install(TENANT)

    run_sql("DELETE FROM {products} WHERE id = %(id)s", {"id": product.pk})

    assert rows(product.pk) == []
    assert (
        sql_value("SELECT count(*) FROM {schema}.product_images_removed WHERE product_id = %(id)s", {"id": product.pk})
        == 2
    )


# How long the legacy writer keeps writing while --check runs again and again (the issue asks a minute of an
# operator; a few seconds hold hundreds of writes and dozens of checks here).
WRITING_SECONDS = 4


def test_check_stays_green_while_old_code_keeps_writing_json(committed_db):
    products = [make_product(images=entries(3)) for _ in range(5)]
    assert run_command("--schema", TENANT, "--follow")[0] == 0
    writes, stop = [0], threading.Event()

    def legacy_writer():
        # The old code path: its own session, its own commits, the old convention (no is_label).
        with other_session() as session:
            while not stop.is_set():
                product = products[writes[0] % len(products)]
                count = 2 + writes[0] % 4
                session.execute(
                    sql.SQL("UPDATE {} SET images = %(images)s WHERE id = %(id)s").format(
                        sql.Identifier(TENANT, "products")
                    ),
                    {"images": Jsonb(entries(count, first_order=writes[0] % 3)), "id": product.pk},
                )
                writes[0] += 1

    writer = threading.Thread(target=legacy_writer)
    writer.start()
    checks = []
    try:
        deadline = time.monotonic() + WRITING_SECONDS
        while time.monotonic() < deadline:
            checks.append(run_command("--check", "--schema", TENANT))
    finally:
        stop.set()
        join_all([writer])

    assert writes[0] > 20 and len(checks) > 3
    assert [code for code, _, _ in checks] == [0] * len(checks), next(out for code, _, out in checks if code)
    # Nothing is left for --sync to do.
    code, report, _ = run_command("--sync", "--schema", TENANT, tmp_path=None)
    assert code == 0


def test_a_follower_of_another_version_is_named_by_the_run_and_by_status(committed_db):
    make_product(images=entries(2))
    assert run_command("--schema", TENANT, "--follow")[0] == 0
    # As another version of this code would have left it: same trigger, another text.
    run_sql("COMMENT ON FUNCTION {schema}.stoflow_follow_images() IS 'stoflow follower 0000000000000000'")

    code, report, output = run_command("--schema", TENANT, tmp_path=None)
    status = run_command("--status", "--schema", TENANT)[2]

    assert code == 0
    assert "follower outdated: run --follow again" in output
    assert "outdated: run --follow again" in " ".join(status.split())
    assert run_command("--schema", TENANT, "--follow")[0] == 0
    assert follower.describe(TENANT) == "on"
