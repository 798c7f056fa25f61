"""Reconciling a product's rows with its JSON keeps the ids of rows whose URL stays (products.migration.reconcile)."""

from psycopg import sql

from products.migration.reconcile import reconcile
from tests.helpers import TENANT, entries, image_rows_with_ids, make_product, run_command, sql_rows, store_json


def reconcile_product(product_id: int):
    return reconcile(TENANT, sql.SQL("p.id = %(id)s"), {"id": product_id}, "test")


def test_unchanged_urls_keep_their_ids_through_a_reorder_a_new_label_and_a_replaced_photo(committed_db):
    product = make_product(images=entries(4))
    assert run_command("--schema", TENANT)[0] == 0
    before = {url: image_id for image_id, url, _, _ in image_rows_with_ids(product.pk)}
    photos = entries(4)
    # Old convention: no is_label; photos 2 and 3 swap, photo 1 replaced, the former label becomes a photo
    # and a new last photo is the price label.
    photos[1]["order"], photos[2]["order"] = 3, 2
    photos[0]["url"] = "https://cdn.example/new-first.jpeg"
    photos.append({"url": "https://cdn.example/new-label.jpeg", "order": 9})
    store_json(product.pk, photos)

    outcome = reconcile_product(product.pk)

    after = image_rows_with_ids(product.pk)
    assert [(url, order, label) for _, url, order, label in after] == [
        ("https://cdn.example/new-first.jpeg", 1, False),
        ("https://cdn.example/3-2.jpeg", 2, False),
        ("https://cdn.example/2-1.jpeg", 3, False),
        ("https://cdn.example/4-3.jpeg", 4, False),
        ("https://cdn.example/new-label.jpeg", 9, True),
    ]
    for image_id, url, _, _ in after:
        if url in before:
            assert before[url] == image_id, url
    assert outcome.changed == [product.pk]
    assert (outcome.rows_deleted, outcome.rows_kept_aside, outcome.rows_inserted) == (1, 1, 2)
    # A second pass has nothing to do.
    again = reconcile_product(product.pk)
    assert again.changed == [] and image_rows_with_ids(product.pk) == after


def test_mixed_conventions_are_refused_and_the_rows_stay(committed_db):
    product = make_product(images=entries(3))
    assert run_command("--schema", TENANT)[0] == 0
    before = image_rows_with_ids(product.pk)
    keyed = [{**entry, "is_label": index == 2} for index, entry in enumerate(entries(3))]
    store_json(product.pk, keyed + [{"url": "https://cdn.example/price-tag.jpeg", "order": 10}])

    outcome = reconcile_product(product.pk)

    assert image_rows_with_ids(product.pk) == before
    assert "mix the two label conventions" in outcome.refused[product.pk]
    assert sql_rows(
        "SELECT refused IS NOT NULL FROM {schema}.product_json_state WHERE product_id = %(id)s", {"id": product.pk}
    ) == [(True,)]
