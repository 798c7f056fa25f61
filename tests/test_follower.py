"""The follower: legacy JSON writes reach the rows in the writer's own transaction (products.migration.follower)."""

from django_tenants.utils import schema_context

from products.migration import follower
from products.selectors import listing_photos
from tests.helpers import TENANT, entries, make_product, run_command, run_sql, sql_rows, sql_value, store_json


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
    assert follower.installed_version(TENANT) == follower.version(TENANT)


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
