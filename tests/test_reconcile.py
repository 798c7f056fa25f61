"""Reconciling a product's rows with its JSON keeps the ids of rows whose URL stays (products.migration.reconcile)."""

from collections.abc import Iterator

from psycopg import sql

from products.migration.reconcile import PLAN_ARRAYS, plan_query, reconcile
from products.migration.source import MAX_ORDER
from stoflow.raw_sql import fetch_rows
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


# --- the free orders the moving rows pass through ----------------------------------------------------------------


def plan_arrays(product_ids: list[int]) -> dict:
    (plan,) = fetch_rows(plan_query(TENANT, sql.SQL("p.id = ANY(%(ids)s)")), {"ids": product_ids})
    return dict(zip(PLAN_ARRAYS, plan, strict=True))


def test_moving_rows_pass_through_the_smallest_orders_no_row_holds_or_will_hold(tenant):
    urls = [f"https://cdn.example/{name}.jpeg" for name in ("a", "b", "c", "d")]
    orders = [0, 1, 2, MAX_ORDER]
    product = make_product(images=[{"url": url, "order": order} for url, order in zip(urls, orders, strict=True)])
    assert run_command("--schema", TENANT)[0] == 0
    # Every row moves (and the label goes from d to a): orders 0, 1, 2, 5 and the maximum are held or will be.
    targets = [MAX_ORDER, 2, 1, 5]
    store_json(product.pk, [{"url": url, "order": order} for url, order in zip(urls, targets, strict=True)])

    arrays = plan_arrays([product.pk])

    assert sorted(zip(arrays["move_ids"], arrays["free_orders"], strict=True)) == [
        (image_id, free) for (image_id, *_), free in zip(image_rows_with_ids(product.pk), [3, 4, 6, 7], strict=True)
    ]
    reconcile_product(product.pk)
    assert [(url, order, label) for _, url, order, label in image_rows_with_ids(product.pk)] == [
        (urls[2], 1, False),
        (urls[1], 2, False),
        (urls[3], 5, False),
        (urls[0], MAX_ORDER, True),
    ]


def node_rows(node: dict) -> Iterator[tuple[str, float]]:
    """Each node of an EXPLAIN (ANALYZE, FORMAT JSON) plan: its type and the rows it produced over all its loops."""
    yield node["Node Type"], node["Actual Rows"] * node["Actual Loops"]
    for child in node.get("Plans", []):
        yield from node_rows(child)


def test_the_free_orders_cost_rows_in_proportion_to_the_photos_not_to_their_square(tenant):
    # Reversed, every row of these products moves. Searching each moving row's free order on its own, through
    # the product's used orders, produced rows in proportion to the square of the photos moving (reversing 2,000
    # photos took 3.8 s inside the writer's UPDATE, with the follower); set-based, each node produces a few rows
    # per photo. Rows, not seconds: the test does not depend on the machine's speed.
    photos_per_product, products = 150, 3
    ids = [make_product(images=entries(photos_per_product)).pk for _ in range(products)]
    assert run_command("--schema", TENANT)[0] == 0
    for product_id in ids:
        reversed_orders = [
            {**entry, "order": photos_per_product + 1 - entry["order"]} for entry in entries(photos_per_product)
        ]
        store_json(product_id, reversed_orders)
    assert len(plan_arrays(ids)["move_ids"]) == photos_per_product * products

    ((explained,),) = fetch_rows(
        sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + plan_query(TENANT, sql.SQL("p.id = ANY(%(ids)s)")), {"ids": ids}
    )

    heaviest = max(node_rows(explained[0]["Plan"]), key=lambda node: node[1])
    assert heaviest[1] <= 4 * photos_per_product * products, heaviest
