"""Reading rules: which JSON values move, how orders, labels and timestamps come out, what is refused."""

import json
import unicodedata
from datetime import UTC, datetime

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_config
from hypothesis import strategies as st

from products.image_urls import (
    CATEGORIES_BY_VERSION,
    HOST_START_REFUSED_CATEGORIES,
    REFUSED_CATEGORIES,
    REFUSED_CHARACTER_PROBLEM,
    SCHEME_PROBLEM,
    URL_WHITESPACE,
    read_categories,
    url_patterns,
    url_problem,
)
from products.migration.batches import MigrationOptions
from products.migration.report import ExitCode, ProductError
from products.migration.runs import migrate_images
from products.migration.source import (
    REPAIR_CREATED_AT,
    REPAIR_ENTRY_DECODED,
    REPAIR_LABEL_MOVED,
    REPAIR_ORDER_AS_NUMBER,
    REPAIR_ORDER_DUPLICATE,
    REPAIR_ORDER_INVALID,
    REPAIR_SINGLE_IMAGE_LABEL,
    REPAIR_URL_TRIMMED,
)
from products.models import Product, ProductImage
from products.selectors import listing_photos
from tests.helpers import TENANT, entries, image_rows, make_product, run_command, run_sql, sql_rows, store_json

PRODUCT_CREATED_AT = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
ENTRY_CREATED_AT = "2025-03-01T10:00:00Z"
MISSING = object()  # an entry without an "order" key


def _product(images, **fields) -> Product:
    """A product in TENANT whose created_at is PRODUCT_CREATED_AT."""
    product = make_product(images=images, **fields)
    with schema_context(TENANT):
        Product.objects.filter(pk=product.pk).update(created_at=PRODUCT_CREATED_AT)
    return product


def _store_raw(product: Product, json_text: str | None) -> None:
    """Write ``images`` as raw JSON text (None: SQL NULL), bypassing the JSONField's encoding."""
    run_sql("UPDATE {products} SET images = %(value)s::jsonb WHERE id = %(id)s", {"value": json_text, "id": product.pk})


def _migrate(**options):
    """Run the migration on TENANT; the six validation checks must pass whatever the data."""
    tenant = migrate_images([TENANT], MigrationOptions(**options)).tenants[0]
    assert tenant.validation.passed, [c for c in tenant.validation.checks if not c.passed]
    return tenant.run


def _rows(product: Product) -> list[tuple]:
    """(order, is_label, url) by order."""
    return [(order, is_label, url) for order, is_label, url, _ in image_rows(product.pk)]


def _repairs(run) -> dict[str, tuple[int, list[int]]]:
    return {repair.reason: (repair.products, repair.sample_ids) for repair in run.repairs}


def _url(position: int) -> str:
    return f"https://cdn.example/p{position}.jpeg"


def _object_entries(orders: list) -> list[dict]:
    """Object entries at positions 1..n with the given source orders."""
    built = []
    for position, order in enumerate(orders, start=1):
        entry = {"url": _url(position), "created_at": ENTRY_CREATED_AT}
        if order is not MISSING:
            entry["order"] = order
        built.append(entry)
    return built


def _expected(orders_by_position: list[int]) -> list[tuple]:
    """(order, is_label, url) by order, the entry at position i+1 stored with orders_by_position[i]."""
    labelled = max(orders_by_position) if len(orders_by_position) >= 2 else None
    return sorted((order, order == labelled, _url(position)) for position, order in enumerate(orders_by_position, 1))


# Labels


@pytest.mark.parametrize("count", [1, 2, 14])
def test_label_on_last_image_only_when_two_or_more(tenant, count):
    product = _product(entries(count))

    run = _migrate()

    rows = _rows(product)
    assert [order for order, _, _ in rows] == list(range(1, count + 1))
    assert [is_label for _, is_label, _ in rows] == [False] * (count - 1) + [count >= 2]
    assert (run.products, run.images_migrated, run.labels_detected) == (1, count, int(count >= 2))
    assert (run.repaired, run.repairs, run.errors) == (0, [], [])


def _flagged(orders: list[int], flags: list[bool | None]) -> list[dict]:
    """Object entries as the image service's JSON mirror writes them; None leaves ``is_label`` out."""
    built = _object_entries(orders)
    for entry, flag in zip(built, flags, strict=True):
        if flag is not None:
            entry["is_label"] = flag
    return built


def test_entries_marking_the_last_image_keep_their_orders_and_label(tenant):
    product = _product(_flagged([1, 2, 3], [False, False, True]))

    run = _migrate()

    assert _rows(product) == [(1, False, _url(1)), (2, False, _url(2)), (3, True, _url(3))]
    assert run.repaired == 0


def test_entries_all_false_give_no_label(tenant):
    product = _product(_flagged([0, 1, 2], [False, False, False]))

    run = _migrate()

    assert _rows(product) == [(0, False, _url(1)), (1, False, _url(2)), (2, False, _url(3))]
    assert (run.labels_detected, run.repaired) == (0, 0)


def test_a_marked_label_that_is_not_last_is_moved_last_and_counted_repaired(tenant):
    product = _product(_flagged([1, 2, 3, 4], [False, True, False, False]))

    run = _migrate()

    assert _rows(product) == [(0, False, _url(1)), (1, False, _url(3)), (2, False, _url(4)), (3, True, _url(2))]
    assert _repairs(run) == {REPAIR_LABEL_MOVED: (1, [product.pk])}


def test_several_marked_labels_are_an_error_and_none_of_them_is_sent(tenant):
    # Keeping the last marked as the label would send the others, each marked as the label too.
    product = _product(_flagged([1, 2, 3, 4], [True, False, True, False]))

    run = _migrate()

    assert _rows(product) == []
    assert run.errors == [
        ProductError(TENANT, product.pk, "2 entries say is_label true, so any of them could be the price label")
    ]
    assert run.labels_detected == 0
    with schema_context(TENANT):
        assert listing_photos(product.pk, "ebay") == []


def test_a_one_image_product_marked_as_label_gets_none(tenant):
    product = _product(_flagged([1], [True]))

    run = _migrate()

    assert _rows(product) == [(1, False, _url(1))]
    assert _repairs(run) == {REPAIR_SINGLE_IMAGE_LABEL: (1, [product.pk])}


def test_entries_without_the_key_beside_flagged_products_follow_the_seed_rule(tenant):
    seed_rule = _product(_flagged([1, 2, 3], [None, None, None]))
    flagged = _product(_flagged([1, 2, 3], [False, False, False]))

    _migrate()

    assert [is_label for _, is_label, _ in _rows(seed_rule)] == [False, False, True]
    assert [is_label for _, is_label, _ in _rows(flagged)] == [False, False, False]


# Orders


@pytest.mark.parametrize(
    "source_orders",
    [
        pytest.param([0, 1, 2], id="0-based"),
        pytest.param([1, 2, 3], id="1-based"),
        pytest.param([5, 0, 2], id="distinct-unsorted"),
        pytest.param([0, 2_147_483_647], id="integer-maximum"),
    ],
)
def test_distinct_non_negative_orders_are_kept(tenant, source_orders):
    product = _product(_object_entries(source_orders))

    run = _migrate()

    assert _rows(product) == _expected(source_orders)
    assert (run.images_migrated, run.labels_detected, run.repaired, run.repairs) == (len(source_orders), 1, 0, [])


@pytest.mark.parametrize(
    "source_orders, stored_orders, reason",
    [
        pytest.param([1, 2, 3, 3], [0, 1, 2, 3], REPAIR_ORDER_DUPLICATE, id="duplicate-highest"),
        pytest.param([3, 3, 1, 2], [2, 3, 0, 1], REPAIR_ORDER_DUPLICATE, id="duplicate-highest-first"),
        pytest.param([0, 0, 0], [0, 1, 2], REPAIR_ORDER_DUPLICATE, id="all-zero"),
        pytest.param([2, -5, 1], [2, 0, 1], REPAIR_ORDER_INVALID, id="negative"),
        pytest.param([1.5, 0.5, 2], [1, 0, 2], REPAIR_ORDER_INVALID, id="fractional"),
        pytest.param(["b", "a"], [0, 1], REPAIR_ORDER_INVALID, id="non-numeric-string"),
        pytest.param([True, {"n": 1}], [0, 1], REPAIR_ORDER_INVALID, id="boolean-and-object"),
        pytest.param(["2.5", 1], [1, 0], REPAIR_ORDER_INVALID, id="fractional-string"),
        pytest.param([MISSING, MISSING, MISSING], [0, 1, 2], REPAIR_ORDER_INVALID, id="missing"),
        pytest.param([1, 3_000_000_000], [0, 1], REPAIR_ORDER_INVALID, id="huge-last"),
        pytest.param([2_147_483_648, 5], [1, 0], REPAIR_ORDER_INVALID, id="huge-first"),
    ],
)
def test_unusable_orders_are_renumbered_by_order_then_position(tenant, source_orders, stored_orders, reason):
    product = _product(_object_entries(source_orders))
    neighbour = _product(entries(2))

    run = _migrate()

    assert _rows(product) == _expected(stored_orders)
    assert [order for order, _, _ in _rows(neighbour)] == [1, 2]
    assert (run.images_migrated, run.labels_detected, run.repaired) == (len(source_orders) + 2, 2, 1)
    assert _repairs(run) == {reason: (1, [product.pk])}
    assert run.errors == []


# Timestamps


def test_entry_timestamps_are_kept_exactly(tenant):
    images = [
        {"url": _url(1), "order": 1, "created_at": "2019-12-31T23:59:59Z"},
        {"url": _url(2), "order": 2, "created_at": "2024-02-29T00:00:01Z"},
    ]
    product = _product(images)

    run = _migrate()

    assert [created_at for _, _, _, created_at in image_rows(product.pk)] == [
        datetime(2019, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2024, 2, 29, 0, 0, 1, tzinfo=UTC),
    ]
    assert (run.repaired, run.repairs) == (0, [])


@pytest.mark.parametrize(
    "bad_created_at",
    [
        pytest.param(MISSING, id="missing"),
        pytest.param(None, id="null"),
        pytest.param("", id="empty"),
        pytest.param("not a date", id="text"),
        pytest.param("now", id="now"),
        pytest.param("2025-02-30T10:00:00Z", id="impossible-date"),
        pytest.param("2025-03-01T25:00:00Z", id="impossible-hour"),
        pytest.param(1700000000, id="number"),
    ],
)
def test_unparseable_created_at_falls_back_to_products(tenant, bad_created_at):
    second = {"url": _url(2), "order": 2}
    if bad_created_at is not MISSING:
        second["created_at"] = bad_created_at
    product = _product([{"url": _url(1), "order": 1, "created_at": "2024-05-06T07:08:09Z"}, second])

    run = _migrate()

    assert [(order, created_at) for order, _, _, created_at in image_rows(product.pk)] == [
        (1, datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)),
        (2, PRODUCT_CREATED_AT),
    ]
    assert run.repaired == 1
    assert _repairs(run) == {REPAIR_CREATED_AT: (1, [product.pk])}


# Accepted shapes


ACCEPTED_TIMESTAMPS = {
    "2024-05-06T07:08:09": datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
    "2024-05-06 07:08:09Z": datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
    "2024-05-06T07:08:09.5Z": datetime(2024, 5, 6, 7, 8, 9, 500000, tzinfo=UTC),
    "2024-05-06T07:08:09.123456+02": datetime(2024, 5, 6, 5, 8, 9, 123456, tzinfo=UTC),
    "2024-05-06T07:08:09-0130": datetime(2024, 5, 6, 8, 38, 9, tzinfo=UTC),
    "2024-05-06T07:08:09+05:30": datetime(2024, 5, 6, 1, 38, 9, tzinfo=UTC),
}
REFUSED_TIMESTAMPS = [
    "2024-05-06",  # no time
    "2024-05-06T07:08",  # no seconds
    "20240506T070809Z",  # compact ISO 8601
    "2024-05-06T07:08:09.1234567Z",  # 7 digits of fraction
    "2024-05-06T07:08:09 PST",  # a zone name
    "2024-05-06T07:08:09+5",  # a one-digit offset
    " 2024-05-06T07:08:09Z",  # padded
    "2024-05-06T07:08:09z",  # lower-case zone
    "2024/05/06 07:08:09",  # another date layout
    "May 6 2024 07:08:09",  # a free-form date PostgreSQL would read
    "tomorrow",
    "epoch",
    "infinity",
    "２０２４-05-06T07:08:09Z",  # full-width digits
]


def test_only_iso_8601_date_and_time_shapes_are_read(tenant):
    # Each accepted shape keeps its instant; every other text PostgreSQL might parse takes the product's.
    texts = [*ACCEPTED_TIMESTAMPS, *REFUSED_TIMESTAMPS]
    product = _product([{"url": _url(order), "order": order, "created_at": text} for order, text in enumerate(texts)])

    _migrate()

    read = {texts[order]: created_at for order, _, _, created_at in image_rows(product.pk)}
    assert read == {**ACCEPTED_TIMESTAMPS, **dict.fromkeys(REFUSED_TIMESTAMPS, PRODUCT_CREATED_AT)}


@pytest.mark.parametrize("count", [1, 3])
def test_string_entries_take_their_position_as_order(tenant, count):
    product = _product([_url(position) for position in range(1, count + 1)])

    run = _migrate()

    assert _rows(product) == _expected(list(range(count)))
    assert [created_at for *_, created_at in image_rows(product.pk)] == [PRODUCT_CREATED_AT] * count
    assert (run.images_migrated, run.labels_detected) == (count, int(count >= 2))
    # String entries carry no timestamp: the product's is used, and said so.
    assert _repairs(run) == {REPAIR_CREATED_AT: (1, [product.pk])}


def test_string_and_object_entries_mix(tenant):
    product = _product([_url(1), {"url": _url(2), "order": 1, "created_at": ENTRY_CREATED_AT}, _url(3)])

    run = _migrate()

    assert image_rows(product.pk) == [
        (0, False, _url(1), PRODUCT_CREATED_AT),
        (1, False, _url(2), datetime(2025, 3, 1, 10, 0, tzinfo=UTC)),
        (2, True, _url(3), PRODUCT_CREATED_AT),
    ]
    assert (run.images_migrated, run.labels_detected) == (3, 1)
    assert _repairs(run) == {REPAIR_CREATED_AT: (1, [product.pk])}


@pytest.mark.parametrize(
    "images",
    [
        pytest.param(entries(3), id="objects"),
        pytest.param([_url(1), _url(2)], id="strings"),
        pytest.param(_object_entries([1, 1]), id="needs-renumbering"),
    ],
)
def test_double_encoded_array_migrates_like_the_array(tenant, images):
    plain = _product(images)
    encoded = _product(json.dumps(images))
    value_types = sql_rows("SELECT jsonb_typeof(images) FROM {products} WHERE id = %(id)s", {"id": encoded.pk})
    assert value_types == [("string",)]

    run = _migrate()

    assert image_rows(encoded.pk) == image_rows(plain.pk) != []
    assert (run.products, run.images_migrated, run.errors) == (2, 2 * len(images), [])
    assert all(products == 2 for products, _ in _repairs(run).values())


# Refused products


GOOD = {"url": _url(1), "order": 1, "created_at": ENTRY_CREATED_AT}
# JSON text nested deeper than PostgreSQL's parser can follow: casting it, or even pg_input_is_valid, raises "stack
# depth limit exceeded" (PostgreSQL 18: 16,000 levels parse, 32,000 raise) instead of saying it does not parse.
TOO_NESTED_ARRAY = "[" * 100_000 + "]" * 100_000
TOO_NESTED_ENTRY = '{"url": "https://cdn.example/x.jpg", "n": ' + TOO_NESTED_ARRAY + "}"


@pytest.mark.parametrize(
    "images, reason_words",
    [
        pytest.param({"url": _url(1), "order": 1}, ["object", "not an array"], id="object"),
        pytest.param(42, ["number", "not an array"], id="number"),
        pytest.param(True, ["boolean", "not an array"], id="boolean"),
        pytest.param("https://cdn.example/p1.jpeg", ["string", "array"], id="string-not-json"),
        pytest.param(json.dumps({"url": _url(1)}), ["string", "array"], id="string-holding-object"),
        pytest.param([GOOD, 7], ["entry 2", "number"], id="entry-number"),
        pytest.param([GOOD, None], ["entry 2", "null"], id="entry-null"),
        pytest.param([GOOD, [_url(2)]], ["entry 2", "array"], id="entry-array"),
        pytest.param([GOOD, {"order": 2}], ["entry 2", "no url"], id="url-missing"),
        pytest.param([GOOD, {"url": "", "order": 2}], ["entry 2", "url", "empty"], id="url-empty"),
        pytest.param([GOOD, ""], ["entry 2", "url", "empty"], id="string-entry-empty"),
        pytest.param([GOOD, {"url": None, "order": 2}], ["entry 2", "url"], id="url-null"),
        pytest.param([GOOD, {"url": 5, "order": 2}], ["entry 2", "url", "number"], id="url-number"),
        pytest.param([GOOD, {"url": [_url(2)], "order": 2}], ["entry 2", "url", "array"], id="url-array"),
        pytest.param(json.dumps([GOOD, {"order": 2}]), ["entry 2", "no url"], id="double-encoded-url-missing"),
        pytest.param([GOOD, TOO_NESTED_ENTRY], ["entry 2", "nested too deeply", "10000"], id="entry-text-too-nested"),
        pytest.param(TOO_NESTED_ARRAY, ["JSON string", "nested too deeply", "10000"], id="string-too-nested"),
    ],
)
def test_product_that_cannot_move_faithfully_is_listed_and_neighbours_migrate(tenant, images, reason_words):
    before = _product(entries(2))
    bad = _product(images)
    after = _product(entries(3))

    run = _migrate()

    assert image_rows(bad.pk) == []
    assert [error.product_id for error in run.errors] == [bad.pk]
    error = run.errors[0]
    assert error == ProductError(TENANT, bad.pk, error.reason)
    assert all(word in error.reason for word in reason_words), error.reason
    assert len(_rows(before)) == 2 and len(_rows(after)) == 3
    assert (run.products, run.images_migrated, run.labels_detected, run.repaired) == (3, 5, 2, 0)


@pytest.mark.parametrize(
    "images", [pytest.param([TOO_NESTED_ENTRY, _url(2)], id="entry"), pytest.param(TOO_NESTED_ARRAY, id="string")]
)
def test_json_text_too_nested_to_parse_is_listed_like_any_refused_product_and_check_runs(tenant, images, tmp_path):
    bad = _product(images)
    good = _product(entries(2))

    code, report, output = run_command("--schema", TENANT, tmp_path=tmp_path)

    assert code == ExitCode.PRODUCT_ERRORS, output
    [error] = report["tenants"][0]["run"]["errors"]
    assert error["product_id"] == bad.pk and "nested too deeply" in error["reason"]
    assert image_rows(bad.pk) == [] and len(_rows(good)) == 2
    assert run_command("--check", "--schema", TENANT)[0] == ExitCode.OK


def test_json_text_nested_up_to_the_limit_is_read(tenant):
    # 9,999 objects one inside the other, and the entry's own braces: as many as the guard lets through, which
    # PostgreSQL must parse without reaching its stack's limit (objects cost it the most stack per level).
    deep = '{"a": ' * 9_999 + "1" + "}" * 9_999
    product = _product([json.dumps(GOOD), '{"url": "' + _url(2) + '", "order": 2, "n": ' + deep + "}"])

    run = _migrate()

    assert run.errors == []
    assert _rows(product) == [(1, False, _url(1)), (2, True, _url(2))]


def test_a_product_with_several_bad_entries_is_refused_naming_the_first(tenant):
    # Entries 2 and 4 are both bad, each in its own way; the report names entry 2.
    bad = _product([GOOD, {"order": 2}, {"url": _url(3), "order": 3}, {"url": "", "order": 4}])

    run = _migrate()

    assert run.errors == [ProductError(TENANT, bad.pk, "entry 2 has no url")]
    assert image_rows(bad.pk) == []


# Which products are read


def test_soft_deleted_products_are_migrated_and_counted(tenant):
    deleted = _product(entries(2), deleted_at=timezone.now())
    live = _product(entries(1))

    run = _migrate()

    assert _rows(deleted) == [(1, False, entries(2)[0]["url"]), (2, True, entries(2)[1]["url"])]
    assert len(_rows(live)) == 1
    assert (run.products, run.soft_deleted, run.images_migrated, run.labels_detected) == (2, 1, 3, 1)


def test_soft_deleted_products_are_counted_one_by_one_within_a_batch(tenant):
    # One batch, whose statement returns its products in groups (error, repairs, deleted, already migrated):
    # two soft-deleted products share a group, a third is in a group of its own (repaired), a live one in another.
    same_group = [_product(entries(2), deleted_at=timezone.now()), _product(entries(3), deleted_at=timezone.now())]
    repaired = _product(_object_entries([1, 1]), deleted_at=timezone.now())
    _product(entries(1))

    run = _migrate()

    assert run.soft_deleted == 3
    assert (run.products, run.images_migrated, run.repaired) == (4, 8, 1)
    assert _repairs(run) == {REPAIR_ORDER_DUPLICATE: (1, [repaired.pk])}
    assert all(len(_rows(product)) == len(product.images) for product in same_group)


@pytest.mark.parametrize(
    "raw, stored_as",
    [
        pytest.param(None, (True, None), id="sql-null"),
        pytest.param("null", (False, "null"), id="json-null"),
        pytest.param("[]", (False, "array"), id="empty-array"),
    ],
)
def test_empty_values_are_not_counted(tenant, raw, stored_as):
    empty = _product([])
    _store_raw(empty, raw)
    deleted_empty = _product([], deleted_at=timezone.now())
    _store_raw(deleted_empty, raw)
    good = _product(entries(2))
    stored = sql_rows("SELECT images IS NULL, jsonb_typeof(images) FROM {products} WHERE id = %(id)s", {"id": empty.pk})
    assert stored == [stored_as]

    run = _migrate()

    assert image_rows(empty.pk) == image_rows(deleted_empty.pk) == []
    assert len(_rows(good)) == 2
    assert (run.products, run.soft_deleted, run.images_migrated, run.errors) == (1, 0, 2, [])


# What the migration must not touch, and must not depend on


def _json_column() -> list[tuple]:
    return sql_rows("SELECT id, images::text FROM {products} ORDER BY id")


def _mixed_products() -> list[Product]:
    """Good, repaired, refused, soft-deleted and empty products, interleaved."""
    return [
        _product(entries(3)),
        _product({"url": _url(1)}),
        _product(_object_entries([1, 1, 0])),
        _product([_url(1), _url(2)]),
        _product([GOOD, {"order": 2}]),
        _product(json.dumps(entries(2))),
        _product(None),
        _product(_object_entries([-1, 4]), deleted_at=timezone.now()),
        _product([]),
        _product("not json"),
        _product(entries(14, first_order=0)),
    ]


def test_json_column_is_left_byte_for_byte(tenant):
    _mixed_products()
    before = _json_column()

    run = _migrate()

    assert run.images_migrated > 0 and len(run.errors) == 3
    assert _json_column() == before


def _image_table() -> list[tuple]:
    return sql_rows('SELECT product_id, "order", is_label, url, created_at FROM {images} ORDER BY product_id, "order"')


def _figures(run) -> tuple:
    counters = (run.products, run.images_migrated, run.labels_detected, run.repaired, run.soft_deleted)
    repairs = sorted((r.reason, r.products, sorted(r.sample_ids)) for r in run.repairs)
    errors = sorted((e.product_id, e.reason) for e in run.errors)
    return counters, repairs, errors


def test_small_batches_give_the_same_rows_and_figures(tenant):
    _mixed_products()

    small = _migrate(batch_size=2)
    rows = _image_table()
    run_sql("DELETE FROM {images}")
    large = _migrate(batch_size=1000)

    assert rows != [] and len(small.errors) == 3
    assert _image_table() == rows
    assert _figures(small) == _figures(large)


# Hostile inputs: each is repaired (and listed) or refused (and listed), never mis-migrated in silence.


def test_entries_stored_as_json_text_of_objects_are_decoded_and_listed(tenant):
    objects = _object_entries([1, 2, 3])
    product = _product([json.dumps(objects[0]), objects[1], json.dumps(objects[2])])
    neighbour = _product(objects)  # the same entries as plain objects

    run = _migrate()

    assert _rows(product) == _rows(neighbour) == [(1, False, _url(1)), (2, False, _url(2)), (3, True, _url(3))]
    assert _repairs(run) == {REPAIR_ENTRY_DECODED: (1, [product.pk])}


def test_an_entry_of_json_text_that_does_not_parse_is_a_url_and_refused(tenant):
    bad = _product([GOOD, '{"url": "https://cdn.example/p2.jpeg", "order": '])

    run = _migrate()

    assert [error.product_id for error in run.errors] == [bad.pk]
    assert "entry 2 url is neither an http(s) URL nor a site-relative path" in run.errors[0].reason


@pytest.mark.parametrize(
    "orders, stored",
    [
        pytest.param(["3", "1", "2"], [3, 1, 2], id="numeric-strings"),
        pytest.param([" 2 ", "10"], [2, 10], id="padded-strings"),
        pytest.param([2.0, 1.0, 0.0], [2, 1, 0], id="whole-number-floats"),
        pytest.param(["4.0", 1], [4, 1], id="whole-number-float-string"),
    ],
)
def test_orders_written_as_text_or_whole_floats_are_read_as_numbers_and_listed(tenant, orders, stored):
    product = _product(_object_entries(orders))

    run = _migrate()

    # Orders kept as the numbers they spell, so the label is on the highest of them, not on the last entry.
    assert _rows(product) == _expected(stored)
    [label] = [url for _, is_label, url in _rows(product) if is_label]
    assert label == _url(stored.index(max(stored)) + 1)
    assert _repairs(run) == {REPAIR_ORDER_AS_NUMBER: (1, [product.pk])}


def test_a_non_numeric_order_falls_back_to_the_entry_s_position(tenant):
    # Entry 2's order says nothing: it takes its position (1, 0-based) and the product is renumbered by
    # (order, position): entry 1 (1, pos 1), entry 2 (1, pos 2), entry 3 (5): the label stays on entry 3.
    product = _product(_object_entries([1, "abc", 5]))

    run = _migrate()

    assert _rows(product) == [(0, False, _url(1)), (1, False, _url(2)), (2, True, _url(3))]
    assert _repairs(run) == {REPAIR_ORDER_INVALID: (1, [product.pk])}


@pytest.mark.parametrize(
    "created_at",
    [
        pytest.param("0001-01-01T00:30:00+01:00", id="year-1-with-offset"),
        pytest.param("9999-12-31T23:30:00-01:00", id="year-9999-with-offset"),
        pytest.param("1899-12-31T23:59:59Z", id="before-1900"),
        pytest.param("2101-01-01T00:00:00Z", id="after-2100"),
        pytest.param("1900-01-01T00:30:00+01:00", id="1900-with-offset-is-1899-utc"),
    ],
)
def test_timestamps_outside_1900_to_2100_take_the_product_s(tenant, created_at):
    product = _product([GOOD, {"url": _url(2), "order": 2, "created_at": created_at}])

    run = _migrate()

    assert [row[3] for row in image_rows(product.pk)] == [datetime(2025, 3, 1, 10, tzinfo=UTC), PRODUCT_CREATED_AT]
    assert _repairs(run) == {REPAIR_CREATED_AT: (1, [product.pk])}
    # Django reads every row back (a year 10000 or BC timestamp would fail here).
    with schema_context(TENANT):
        assert len(list(ProductImage.objects.filter(product_id=product.pk))) == 2


def test_timestamps_at_the_edges_of_1900_to_2100_are_kept(tenant):
    product = _product(
        [
            {"url": _url(1), "order": 1, "created_at": "1900-01-01T00:00:00Z"},
            {"url": _url(2), "order": 2, "created_at": "2100-12-31T23:59:59Z"},
        ]
    )

    run = _migrate()

    assert [row[3] for row in image_rows(product.pk)] == [
        datetime(1900, 1, 1, tzinfo=UTC),
        datetime(2100, 12, 31, 23, 59, 59, tzinfo=UTC),
    ]
    assert run.repairs == []


@pytest.mark.parametrize(
    "url, stored",
    [
        pytest.param("  https://cdn.example/p1.jpeg", "https://cdn.example/p1.jpeg", id="leading-spaces"),
        pytest.param("https://cdn.example/p1.jpeg\n", "https://cdn.example/p1.jpeg", id="trailing-newline"),
        pytest.param("\t\r\n/media/p1.jpeg ", "/media/p1.jpeg", id="site-relative-with-whitespace"),
    ],
)
def test_urls_are_trimmed_and_listed(tenant, url, stored):
    product = _product([{"url": url, "order": 0, "created_at": ENTRY_CREATED_AT}, url.replace("p1", "p2")])

    run = _migrate()

    assert [row_url for _, _, row_url in _rows(product)] == [stored, stored.replace("p1", "p2")]
    assert _repairs(run) == {REPAIR_URL_TRIMMED: (1, [product.pk]), REPAIR_CREATED_AT: (1, [product.pk])}


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("/media/p2.jpeg", id="site-relative"),
        pytest.param("HTTP://CDN.EXAMPLE/P2.JPEG", id="upper-case-scheme"),
        pytest.param("https://cdn.example/a photo.jpeg", id="inner-space"),
    ],
)
def test_http_and_site_relative_urls_are_accepted(tenant, url):
    product = _product([GOOD, {"url": url, "order": 2, "created_at": ENTRY_CREATED_AT}])

    run = _migrate()

    assert _rows(product)[-1] == (2, True, url)
    assert (run.errors, run.repairs) == ([], [])


@pytest.mark.parametrize(
    "url, problem",
    [
        pytest.param("javascript:alert(1)", SCHEME_PROBLEM, id="javascript"),
        pytest.param("  JavaScript:alert(1)", SCHEME_PROBLEM, id="javascript-padded"),
        pytest.param("data:image/png;base64,AAAA", SCHEME_PROBLEM, id="data"),
        pytest.param("ftp://cdn.example/p2.jpeg", SCHEME_PROBLEM, id="ftp"),
        pytest.param("//evil.example/p2.jpeg", SCHEME_PROBLEM, id="protocol-relative"),
        pytest.param("cdn.example/p2.jpeg", SCHEME_PROBLEM, id="no-scheme"),
        pytest.param("https://", SCHEME_PROBLEM, id="no-host"),
        pytest.param("https://cdn.example/p2\n.jpeg", REFUSED_CHARACTER_PROBLEM, id="inner-newline"),
        pytest.param("https://cdn.example/p2\u0007.jpeg", REFUSED_CHARACTER_PROBLEM, id="bell"),
        pytest.param("https://cdn.example/p2\u0085.jpeg", REFUSED_CHARACTER_PROBLEM, id="c1-next-line"),
        # Browsers read "/\" as "//": another host.
        pytest.param("/\\evil.example.com/x.jpg", REFUSED_CHARACTER_PROBLEM, id="slash-backslash"),
        pytest.param("https://cdn.example\\@evil.example/p2.jpeg", REFUSED_CHARACTER_PROBLEM, id="inner-backslash"),
        pytest.param("https://cdn.example/p2\u2028.jpeg", REFUSED_CHARACTER_PROBLEM, id="line-separator"),
        pytest.param("/media/p2\u2029.jpeg", REFUSED_CHARACTER_PROBLEM, id="paragraph-separator"),
        pytest.param("https://cdn.example/\u202egpj.exe", REFUSED_CHARACTER_PROBLEM, id="right-to-left-override"),
        pytest.param("https://cdn.example/\u2066p2.jpeg", REFUSED_CHARACTER_PROBLEM, id="left-to-right-isolate"),
        pytest.param("https://cdn\u200b.example/p2.jpeg", REFUSED_CHARACTER_PROBLEM, id="zero-width-space"),
        pytest.param("\ufeffhttps://cdn.example/p2.jpeg", REFUSED_CHARACTER_PROBLEM, id="byte-order-mark"),
        pytest.param("https://cdn.exam\u00adple/p2.jpeg", REFUSED_CHARACTER_PROBLEM, id="soft-hyphen"),
        pytest.param(" \n ", "is empty", id="only-whitespace"),
    ],
)
def test_urls_that_are_no_http_or_site_path_or_hold_refused_characters_are_refused(tenant, url, problem):
    before = _product(entries(2))
    bad = _product([GOOD, {"url": url, "order": 2}])
    string_entry = _product([url])

    run = _migrate()

    assert run.errors == [
        ProductError(TENANT, bad.pk, f"entry 2 url {problem}"),
        ProductError(TENANT, string_entry.pk, f"entry 1 url {problem}"),
    ]
    assert image_rows(bad.pk) == image_rows(string_entry.pk) == []
    assert len(_rows(before)) == 2


def _sql_verdict(url: str) -> str | None:
    """The migration SQL's verdict on ``url``: its two patterns, asked in the order its CASE asks them."""
    patterns = url_patterns()
    accepted, holds_refused = sql_rows(
        "SELECT %(url)s ~ %(accepted)s, %(url)s ~ %(refused)s",
        {"url": url, "accepted": patterns.accepted, "refused": patterns.refused_character},
    )[0]
    if accepted:
        return None
    return REFUSED_CHARACTER_PROBLEM if holds_refused else SCHEME_PROBLEM


@pytest.mark.parametrize(
    "url, problem",
    [
        ("https://cdn.example/p.jpeg", None),
        ("HTTP://CDN.EXAMPLE/P.JPEG", None),
        ("hTtPs://cdn.example/p.jpeg", None),
        ("http://x", None),
        ("/media/p.jpeg", None),
        ("/x", None),
        ("/p\u00a0.jpeg", None),  # a no-break space is visible space, no refused character
        ("https://cdn.example/caf\u00e9 \u4e2d.jpeg", None),
        ("https://cdn.example/\U0001f4f7.jpeg", None),
        ("https://", SCHEME_PROBLEM),
        ("https:///p.jpeg", SCHEME_PROBLEM),
        ("https:// cdn.example/p.jpeg", SCHEME_PROBLEM),
        ("https://\u00a0cdn.example/p.jpeg", SCHEME_PROBLEM),  # no host starts with a space of any kind
        ("https://\u3000cdn.example/p.jpeg", SCHEME_PROBLEM),
        ("//cdn.example/p.jpeg", SCHEME_PROBLEM),
        ("/", SCHEME_PROBLEM),
        ("ftp://cdn.example/p.jpeg", SCHEME_PROBLEM),
        ("mailto:someone@example.com", SCHEME_PROBLEM),
        ("javascript:alert(1)", SCHEME_PROBLEM),
        ("JaVaScRiPt:alert(1)", SCHEME_PROBLEM),
        ("data:text/html,<script>alert(1)</script>", SCHEME_PROBLEM),
        ("http\u017f://cdn.example/p.jpeg", SCHEME_PROBLEM),  # the long s folds to s in Python's re.I: no folding
        ("\u212aTTP://cdn.example/p.jpeg", SCHEME_PROBLEM),  # nor the Kelvin sign to k
        ("https://\u0001cdn.example/p.jpeg", REFUSED_CHARACTER_PROBLEM),
        ("/\u0007p.jpeg", REFUSED_CHARACTER_PROBLEM),
        ("/p\u009f.jpeg", REFUSED_CHARACTER_PROBLEM),
        ("/p.jpeg\n", REFUSED_CHARACTER_PROBLEM),  # Python's $ would match before it: the rule ends with \Z
        ("ftp://cdn.example/p\u0007.jpeg", REFUSED_CHARACTER_PROBLEM),  # a refused character is named first
        ("/\\evil.example.com/x.jpg", REFUSED_CHARACTER_PROBLEM),
        ("https:\\\\evil.example.com/x.jpg", REFUSED_CHARACTER_PROBLEM),
        ("\\\\evil.example.com\\x.jpg", REFUSED_CHARACTER_PROBLEM),
        ("https://cdn.example/p\u2028.jpeg", REFUSED_CHARACTER_PROBLEM),
        ("https://cdn.example/p\u2029.jpeg", REFUSED_CHARACTER_PROBLEM),
        *((f"https://cdn.example/{chr(c)}p.jpeg", REFUSED_CHARACTER_PROBLEM) for c in range(0x202A, 0x202F)),
        *((f"https://cdn.example/{chr(c)}p.jpeg", REFUSED_CHARACTER_PROBLEM) for c in range(0x2066, 0x206A)),
        *((f"https://cdn{chr(c)}.example/p.jpeg", REFUSED_CHARACTER_PROBLEM) for c in range(0x200B, 0x200E)),
        ("/\ufeffp.jpeg", REFUSED_CHARACTER_PROBLEM),
        ("/p\u00ad.jpeg", REFUSED_CHARACTER_PROBLEM),
        ("/p\u061c.jpeg", REFUSED_CHARACTER_PROBLEM),  # Arabic letter mark
        ("/p\U000e0001.jpeg", REFUSED_CHARACTER_PROBLEM),  # language tag, outside the BMP
    ],
)
def test_the_url_rule_the_service_and_the_migration_ask(db, url, problem):
    # The service asks url_problem (Python's re); the migration's SQL asks PostgreSQL the same two patterns.
    assert url_problem(url) == problem
    assert _sql_verdict(url) == problem


def test_every_character_of_the_refused_categories_is_refused_by_both(db):
    refused = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) in REFUSED_CATEGORIES] + ["\\"]
    urls = [f"/p{character}.jpeg" for character in refused if character != "\x00"]  # PostgreSQL text holds no NUL

    accepted_by_sql = sql_rows(
        "SELECT url FROM unnest(%(urls)s::text[]) AS url WHERE url ~ %(accepted)s",
        {"urls": urls, "accepted": url_patterns().accepted},
    )

    assert len(refused) > 200  # 230 in Unicode 14
    assert {url_problem(url) for url in urls} == {REFUSED_CHARACTER_PROBLEM}
    assert url_problem("/p\x00.jpeg") == REFUSED_CHARACTER_PROBLEM
    assert accepted_by_sql == []


def test_the_categories_kept_for_this_unicode_version_are_unicodedata_s():
    # The rule's categories are kept per Unicode version only to spare each process reading them all (0.27 s).
    version = unicodedata.unidata_version
    assert version in CATEGORIES_BY_VERSION, f"add Unicode {version}'s to CATEGORIES_BY_VERSION (read_categories)"
    kept = CATEGORIES_BY_VERSION[version]
    read = read_categories(REFUSED_CATEGORIES | HOST_START_REFUSED_CATEGORIES)
    assert {
        category: {c for first, last in kept[category] for c in range(first, last + 1)} for category in read
    } == read


# Random URLs: a scheme or a slash, then characters weighted towards the ones the rule is about.
_URL_STARTS = st.sampled_from(["https://", "http://", "HTTPS://", "hTTp://", "/", "//", "https:", "", "https:/"])
_URL_CHARACTERS = st.one_of(
    st.sampled_from(["\\", "/", " ", ":", "a", "\u00a0", "\u3000", "\u017f", "\u212a", *URL_WHITESPACE]),
    st.characters(categories=[*REFUSED_CATEGORIES, "Zs"], exclude_characters="\x00"),
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
)


@hypothesis_config(
    max_examples=300,
    deadline=None,
    database=None,  # nothing written to .hypothesis/: each run explores afresh
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(start=_URL_STARTS, rest=st.text(_URL_CHARACTERS, max_size=8))
def test_the_sql_rule_and_the_python_rule_agree_on_random_urls(db, start, rest):
    url = start + rest
    assert url_problem(url) == _sql_verdict(url)


@pytest.mark.parametrize("batch_size", [1, 2, 1000])
def test_every_id_is_walked_zero_negatives_and_bigint_extremes_included(tenant, batch_size):
    ids = [-(2**63), -5, 0, 7, 2**63 - 1]
    for product_id in ids:
        make_product(id=product_id, images=entries(2))

    run = _migrate(batch_size=batch_size)

    assert (run.products, run.images_migrated, run.labels_detected) == (5, 10, 5)
    assert [len(image_rows(product_id)) for product_id in ids] == [2] * 5
    # --force reaches them too: each brought to its new JSON.
    for product_id in ids:
        store_json(product_id, entries(3))
    assert _migrate(batch_size=batch_size, force=True).resynced.sample_ids == ids
    assert [len(image_rows(product_id)) for product_id in ids] == [3] * 5


def test_urls_are_trimmed_of_whitespace_only(tenant):
    # Letters that spell escapes (t, n, r, f, v) are not whitespace: "clip.mov" keeps its v.
    product = _product([{"url": " https://cdn.example/clip.mov\t", "order": 1}, {"url": "/v\n", "order": 2}])

    _migrate()

    assert [url for _, _, url in _rows(product)] == ["https://cdn.example/clip.mov", "/v"]
