"""The image service (products/images.py): one test per rule, one per refused call, on real rows."""

import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from django.db import connection, connections
from django_tenants.utils import schema_context
from psycopg import sql

from products import images
from products.images import (
    MAX_ORDER,
    ImageNotFound,
    ImageServiceError,
    InvalidImageOrder,
    InvalidImageUrl,
    LabelNotAllowed,
    NotMigrated,
    ProductNotFound,
    TooManyImages,
    add_image,
    clear_label,
    remove_image,
    reorder_images,
    set_label,
)
from products.models import ProductImage
from stoflow.database_settings import connection_kwargs
from stoflow.raw_sql import execute
from stoflow.tenants.citus import is_citus
from tests.helpers import (
    TENANT,
    image_ids,
    image_rows,
    image_state,
    iso_utc,
    json_from_rows,
    json_images,
    make_product,
    migrated_product,
    run_command,
)

T0 = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)


def layout(product_id: int) -> list[tuple[int, bool, str]]:
    """The product's images as (order, is_label, url), by order; the JSON mirror checked on the way."""
    assert json_images(product_id) == json_from_rows(product_id)
    return [(order, is_label, url) for order, is_label, url, _ in image_rows(product_id)]


def urls(product_id: int) -> list[str]:
    """The product's image URLs by order (the JSON not checked: before a write it is the legacy one)."""
    return [url for _, _, url, _ in image_rows(product_id)]


def label_url(product_id: int) -> str | None:
    return next((url for _, is_label, url in layout(product_id) if is_label), None)


# --- add_image ----------------------------------------------------------------------------


def test_the_first_image_of_a_product_gets_order_1_and_no_label(tenant):
    product = make_product()
    with schema_context(tenant):
        image = add_image(product, "https://cdn.example/a.jpeg", created_at=T0)

    assert layout(product.id) == [(1, False, "https://cdn.example/a.jpeg")]
    assert (image.order, image.is_label, image.product_id, image.created_at) == (1, False, product.id, T0)


def test_a_second_image_makes_two_photos_and_no_label(tenant):
    product = make_product()
    with schema_context(tenant):
        add_image(product, "/a")
        add_image(product, "/b")

    assert layout(product.id) == [(1, False, "/a"), (2, False, "/b")]


def test_add_image_puts_the_new_photo_just_before_the_label(tenant):
    product = migrated_product(4)
    before = urls(product.id)
    with schema_context(tenant):
        add_image(product.id, "/new")

    assert layout(product.id) == [
        (1, False, before[0]),
        (2, False, before[1]),
        (3, False, before[2]),
        (4, False, "/new"),
        (5, True, before[3]),
    ]


def test_add_image_keeps_0_based_numbering(tenant):
    product = migrated_product(3, first_order=0)
    with schema_context(tenant):
        add_image(product, "/new")

    assert [(order, is_label) for order, is_label, _ in layout(product.id)] == [
        (0, False),
        (1, False),
        (2, False),
        (3, True),
    ]
    assert urls(product.id)[2] == "/new"


def test_add_image_defaults_created_at_to_now_and_keeps_a_given_one(tenant):
    product = make_product()
    given = datetime(2025, 12, 24, 18, 0, 5, 123456, tzinfo=UTC)
    with schema_context(tenant):
        before = datetime.now(UTC)
        add_image(product, "/a")
        add_image(product, "/b", created_at=given)

    (_, _, _, first), (_, _, _, second) = image_rows(product.id)
    assert before <= first <= datetime.now(UTC)
    assert second == given
    assert json_images(product.id)[1]["created_at"] == "2025-12-24T18:00:05.123456Z"


PLUS_ONE, MINUS_ONE = timezone(timedelta(hours=1)), timezone(timedelta(hours=-1))
# At and just inside the bounds the migration reads (image_timestamps: 1900-2100, UTC), in several zones.
CREATED_AT_INSIDE = [
    datetime(1900, 1, 1, tzinfo=UTC),  # the first instant
    datetime(1900, 1, 1, 1, tzinfo=PLUS_ONE),  # the same, written in +01:00
    datetime(1900, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    datetime(2100, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # the last instant
    datetime(2101, 1, 1, 0, 59, 59, 999999, tzinfo=PLUS_ONE),  # the same, written in +01:00 (year 2101 there)
    datetime(2100, 12, 31, 22, 59, 59, tzinfo=MINUS_ONE),
]
CREATED_AT_OUTSIDE = [
    datetime(1899, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # just before
    datetime(1900, 1, 1, 0, 30, tzinfo=PLUS_ONE),  # 1899 in UTC
    datetime(2101, 1, 1, tzinfo=UTC),  # just after
    datetime(2100, 12, 31, 23, 30, tzinfo=MINUS_ONE),  # 2101 in UTC
    datetime(1, 1, 1, 0, 30, tzinfo=PLUS_ONE),  # 1 BC in UTC: once stored, the ORM could not read the row
    datetime.min.replace(tzinfo=UTC),
    datetime(9999, 12, 31, 23, 30, tzinfo=MINUS_ONE),  # year 10000 in UTC
    datetime.max.replace(tzinfo=UTC),
]


def test_add_image_takes_the_timestamps_the_migration_reads_and_refuses_the_others(tenant):
    product = make_product()
    with schema_context(tenant):
        for created_at in CREATED_AT_OUTSIDE:
            with pytest.raises(ImageServiceError, match=f"product {product.id} must fall in the years 1900 to 2100"):
                add_image(product, "/refused", created_at=created_at)
        assert image_rows(product.id) == [] and json_images(product.id) == []

        for number, created_at in enumerate(CREATED_AT_INSIDE):
            add_image(product, f"/{number}", created_at=created_at)
        read_by_the_orm = list(
            ProductImage.objects.filter(product_id=product.id).order_by("order").values_list("created_at", flat=True)
        )
    mirrored = [datetime.fromisoformat(entry["created_at"]) for entry in json_images(product.id)]

    # Aware datetimes compare as instants, whatever their zone.
    assert read_by_the_orm == mirrored == CREATED_AT_INSIDE
    # The migration reads the mirror back to the same instants: rebuilt from it, the rows are unchanged.
    before = image_rows(product.id)
    code, report, _ = run_command("--force", "--schema", tenant)
    assert code == 0 and report is None
    assert image_rows(product.id) == before


def test_add_image_up_to_the_limit(tenant, settings):
    settings.STOFLOW_MAX_IMAGES_PER_PRODUCT = 3
    product = make_product()
    with schema_context(tenant):
        for url in ["/a", "/b", "/c"]:
            add_image(product, url)

    assert urls(product.id) == ["/a", "/b", "/c"]


def test_a_product_migrated_with_more_than_the_limit_keeps_them_shrinks_and_grows_back_to_it(tenant, settings):
    settings.STOFLOW_MAX_IMAGES_PER_PRODUCT = 3
    product = migrated_product(5)
    ids = image_ids(product.id)
    with schema_context(tenant):
        reorder_images(product, list(reversed(ids[:-1])))
        with pytest.raises(TooManyImages):
            add_image(product, "/refused")
        for image_id in ids[:3]:
            remove_image(image_id)
        add_image(product, "/back")
        with pytest.raises(TooManyImages):
            add_image(product, "/refused")

    assert len(layout(product.id)) == 3
    assert label_url(product.id) == urls(product.id)[-1]


def test_add_image_after_the_largest_order_renumbers_the_product(tenant):
    product = migrated_product(2)
    with schema_context(tenant):
        ProductImage.objects.filter(product=product, is_label=True).update(order=MAX_ORDER)
        add_image(product, "/new")

    # Renumbered in one run from its lowest order, which fits below the maximum.
    assert [(order, is_label) for order, is_label, _ in layout(product.id)] == [(1, False), (2, False), (3, True)]
    assert urls(product.id)[1] == "/new"


# --- remove_image -------------------------------------------------------------------------


@pytest.mark.parametrize("removed", [0, 1], ids=["the-photo", "the-label"])
def test_removing_an_image_of_a_two_image_product_leaves_one_image_and_no_label(tenant, removed):
    product = migrated_product(2)
    ids = image_ids(product.id)
    kept = urls(product.id)[1 - removed]
    with schema_context(tenant):
        remove_image(ids[removed])

    assert [(is_label, url) for _, is_label, url in layout(product.id)] == [(False, kept)]


def test_removing_a_photo_keeps_the_label_last_and_the_other_orders(tenant):
    product = migrated_product(4)
    ids = image_ids(product.id)
    with schema_context(tenant):
        remove_image(ProductImage.objects.get(pk=ids[1]))

    assert [(order, is_label) for order, is_label, _ in layout(product.id)] == [(1, False), (3, False), (4, True)]


def test_removing_the_label_of_a_three_image_product_leaves_no_label(tenant):
    product = migrated_product(3)
    with schema_context(tenant):
        remove_image(image_ids(product.id)[-1])

    assert [is_label for _, is_label, _ in layout(product.id)] == [False, False]


def test_removing_the_last_image_leaves_an_empty_json_array(tenant):
    product = migrated_product(1)
    with schema_context(tenant):
        remove_image(image_ids(product.id)[0])

    assert layout(product.id) == []
    assert json_images(product.id) == []


# --- reorder_images -----------------------------------------------------------------------


def test_reversing_14_images_in_one_call(tenant):
    product = migrated_product(15)
    ids = image_ids(product.id)
    before = urls(product.id)
    with schema_context(tenant):
        reorder_images(product, list(reversed(ids[:-1])))

    assert urls(product.id) == list(reversed(before[:-1])) + [before[-1]]
    assert [order for order, _, _ in layout(product.id)] == list(range(1, 16))
    assert label_url(product.id) == before[-1]


def test_reorder_hands_out_the_orders_the_product_already_has(tenant):
    product = migrated_product(4, first_order=0)
    with schema_context(tenant):
        ProductImage.objects.filter(product=product, order=1).update(order=7)
        ProductImage.objects.filter(product=product, order=3).update(order=9)
    ids = image_ids(product.id)
    before = urls(product.id)
    with schema_context(tenant):
        reorder_images(product, [ids[2], ids[0], ids[1]])

    assert layout(product.id) == [
        (0, False, before[2]),
        (2, False, before[0]),
        (7, False, before[1]),
        (9, True, before[3]),
    ]


def test_reorder_accepts_the_label_s_id_closing_the_list(tenant):
    product = migrated_product(3)
    ids = image_ids(product.id)
    before = urls(product.id)
    with schema_context(tenant):
        reorder_images(product, [ids[1], ids[0], ids[2]])

    assert urls(product.id) == [before[1], before[0], before[2]]
    assert label_url(product.id) == before[2]


def test_reorder_of_a_product_without_label(tenant):
    product = migrated_product(3)
    with schema_context(tenant):
        clear_label(product)
    ids = image_ids(product.id)
    with schema_context(tenant):
        reorder_images(product, [ids[2], ids[0], ids[1]])

    assert [is_label for _, is_label, _ in layout(product.id)] == [False, False, False]
    assert image_ids(product.id) == [ids[2], ids[0], ids[1]]


def test_reorder_in_the_same_order_writes_nothing(tenant):
    product = migrated_product(3)
    before = image_state(product.id)
    with schema_context(tenant):
        reorder_images(product, image_ids(product.id)[:-1])

    assert image_state(product.id) == before


# --- set_label and clear_label ------------------------------------------------------------


def test_set_label_moves_the_image_to_the_end_and_the_former_label_becomes_the_last_photo(tenant):
    product = migrated_product(4)
    ids = image_ids(product.id)
    a, b, c, old_label = urls(product.id)
    with schema_context(tenant):
        set_label(ids[1])

    assert layout(product.id) == [(1, False, a), (2, False, c), (3, False, old_label), (4, True, b)]


def test_set_label_on_a_product_without_label(tenant):
    product = migrated_product(3)
    a, b, c = urls(product.id)
    with schema_context(tenant):
        clear_label(product)
        set_label(ProductImage.objects.get(pk=image_ids(product.id)[0]))

    assert layout(product.id) == [(1, False, b), (2, False, c), (3, True, a)]


def test_set_label_on_the_label_writes_nothing(tenant):
    product = migrated_product(3)
    before = image_state(product.id)
    with schema_context(tenant):
        set_label(image_ids(product.id)[-1])

    assert image_state(product.id) == before


def test_clear_label_keeps_every_image_as_a_photo(tenant):
    product = migrated_product(3)
    before = urls(product.id)
    with schema_context(tenant):
        clear_label(product.id)

    assert layout(product.id) == [(1, False, before[0]), (2, False, before[1]), (3, False, before[2])]


def test_clear_label_without_a_label_writes_nothing(tenant):
    product = migrated_product(1)
    before = image_state(product.id)
    with schema_context(tenant):
        clear_label(product)

    assert image_state(product.id) == before


# --- the JSON mirror ----------------------------------------------------------------------


def test_every_write_rewrites_the_json_from_the_rows(tenant):
    product = migrated_product(3)
    with schema_context(tenant):
        add_image(product, "https://cdn.example/new.jpeg", created_at=datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=UTC))

    first, second, new, label = json_images(product.id)
    assert first == {
        "url": "https://cdn.example/1-0.jpeg",
        "order": 1,
        "created_at": "2025-03-01T10:00:00Z",
        "is_label": False,
    }
    assert new == {
        "url": "https://cdn.example/new.jpeg",
        "order": 3,
        "created_at": "2026-03-01T12:00:00.000005Z",
        "is_label": False,
    }
    assert label == {
        "url": "https://cdn.example/3-2.jpeg",
        "order": 4,
        "created_at": "2025-03-03T10:00:02Z",
        "is_label": True,
    }


def test_the_mirror_skips_a_tenant_whose_json_column_is_gone(tenant):
    product = migrated_product(3)
    ids = image_ids(product.id)
    # What finalize will do; the test's transaction rolls it back.
    execute(sql.SQL("ALTER TABLE {} DROP COLUMN images").format(sql.Identifier(tenant, "products")))
    with schema_context(tenant):
        new = add_image(product.id, "/new")
        reorder_images(product.id, [ids[1], new.id, ids[0]])
        set_label(ids[0])
        remove_image(ids[2])
        clear_label(product.id)

    assert [(is_label, url) for _, is_label, url, _ in image_rows(product.id)] == [
        (False, "https://cdn.example/2-1.jpeg"),
        (False, "/new"),
        (False, "https://cdn.example/1-0.jpeg"),
    ]


def test_iso_utc_matches_the_legacy_shape():
    assert iso_utc(datetime(2025, 3, 1, 10, 0, 0, tzinfo=UTC)) == "2025-03-01T10:00:00Z"


# --- refused calls change nothing -----------------------------------------------------------


@pytest.fixture
def two_products(tenant, settings):
    """Product ``a`` (4 images, the last the label), product ``b`` (3), a one-image product and an
    unmigrated one; the limit is 4, which ``a`` reached."""
    settings.STOFLOW_MAX_IMAGES_PER_PRODUCT = 4
    a, b, single = migrated_product(4), migrated_product(3), migrated_product(1)
    unmigrated = make_product(images=[{"url": "https://cdn.example/legacy.jpeg", "order": 1}])
    gone = migrated_product(2)
    gone_id, gone_ids = gone.id, image_ids(gone.id)
    with schema_context(tenant):
        gone.delete()
    return {
        "a": a.id,
        "a_ids": image_ids(a.id),
        "b": b.id,
        "b_ids": image_ids(b.id),
        "single": single.id,
        "single_id": image_ids(single.id)[0],
        "unmigrated": unmigrated.id,
        "gone": gone_id,
        "gone_id": gone_ids[0],
    }


REFUSED = {
    "reorder-with-an-image-of-another-product": (
        lambda p: reorder_images(p["a"], [p["a_ids"][1], p["b_ids"][0], p["a_ids"][2]]),
        InvalidImageOrder,
        "image {b_ids[0]} belongs to product {b}",
    ),
    "reorder-with-a-deleted-image": (
        lambda p: reorder_images(p["a"], p["a_ids"][:3] + [p["gone_id"]]),
        InvalidImageOrder,
        "image {gone_id} does not exist",
    ),
    "reorder-with-a-partial-list": (
        lambda p: reorder_images(p["a"], p["a_ids"][:2]),
        InvalidImageOrder,
        "missing: {a_ids[2]}",
    ),
    "reorder-with-a-duplicated-id": (
        lambda p: reorder_images(p["a"], [p["a_ids"][0], p["a_ids"][0], p["a_ids"][1], p["a_ids"][2]]),
        InvalidImageOrder,
        "listed more than once: {a_ids[0]}",
    ),
    "reorder-with-the-label-not-last": (
        lambda p: reorder_images(p["a"], [p["a_ids"][3], p["a_ids"][0], p["a_ids"][1], p["a_ids"][2]]),
        InvalidImageOrder,
        "image {a_ids[3]} is the label",
    ),
    "reorder-with-a-string": (
        lambda p: reorder_images(p["a"], "1,2,3"),
        InvalidImageOrder,
        "product {a}",
    ),
    "reorder-of-a-deleted-product": (
        lambda p: reorder_images(p["gone"], []),
        ProductNotFound,
        "Product {gone} does not exist",
    ),
    "remove-a-deleted-image": (lambda p: remove_image(p["gone_id"]), ImageNotFound, "Image {gone_id} does not exist"),
    "set-label-on-a-deleted-image": (lambda p: set_label(p["gone_id"]), ImageNotFound, "Image {gone_id}"),
    "set-label-on-the-only-image": (
        lambda p: set_label(p["single_id"]),
        LabelNotAllowed,
        "Image {single_id} is the only image of product {single}",
    ),
    "clear-label-of-a-deleted-product": (lambda p: clear_label(p["gone"]), ProductNotFound, "Product {gone}"),
    "add-an-empty-url": (lambda p: add_image(p["b"], ""), InvalidImageUrl, "product {b} is empty or blank"),
    "add-a-blank-url": (lambda p: add_image(p["b"], " \t\n"), InvalidImageUrl, "product {b} is empty or blank"),
    "add-a-url-with-a-nul": (lambda p: add_image(p["b"], "https://x/\x00.jpeg"), InvalidImageUrl, "NUL character"),
    "add-a-url-with-a-control-character": (
        lambda p: add_image(p["b"], "https://cdn.example/a\x07.jpeg"),
        InvalidImageUrl,
        "product {b} holds a backslash or an invisible character",
    ),
    "add-a-url-with-a-backslash": (
        lambda p: add_image(p["b"], "/\\evil.example.com/x.jpg"),
        InvalidImageUrl,
        "product {b} holds a backslash or an invisible character",
    ),
    "add-a-url-with-a-line-separator": (
        lambda p: add_image(p["b"], "https://cdn.example/a\u2028.jpeg"),
        InvalidImageUrl,
        "product {b} holds a backslash or an invisible character",
    ),
    "add-a-url-with-a-bidi-override": (
        lambda p: add_image(p["b"], "https://cdn.example/\u202egepj.exe"),
        InvalidImageUrl,
        "product {b} holds a backslash or an invisible character",
    ),
    "add-a-javascript-url": (
        lambda p: add_image(p["b"], "javascript:alert(1)"),
        InvalidImageUrl,
        "product {b} is neither an http(s) URL nor a site-relative path",
    ),
    "add-a-none-url": (lambda p: add_image(p["b"], None), InvalidImageUrl, "product {b} must be a string"),
    "add-a-number-url": (lambda p: add_image(p["b"], 42), InvalidImageUrl, "product {b} must be a string, got int"),
    "add-a-bytes-url": (lambda p: add_image(p["b"], b"https://x"), InvalidImageUrl, "got bytes"),
    "add-past-the-limit": (lambda p: add_image(p["a"], "/fifth"), TooManyImages, "Product {a} has 4 images"),
    "add-with-a-naive-created-at": (
        lambda p: add_image(p["b"], "/x", created_at=datetime(2026, 1, 1)),
        ImageServiceError,
        "product {b} must be a timezone-aware datetime",
    ),
    "add-with-a-created-at-in-1-bc-utc": (
        lambda p: add_image(p["b"], "/x", created_at=datetime(1, 1, 1, 0, 30, tzinfo=PLUS_ONE)),
        ImageServiceError,
        "product {b} must fall in the years 1900 to 2100 (UTC)",
    ),
    "add-to-a-deleted-product": (lambda p: add_image(p["gone"], "/x"), ProductNotFound, "Product {gone}"),
    "add-to-an-unmigrated-product": (
        lambda p: add_image(p["unmigrated"], "/x"),
        NotMigrated,
        "Product {unmigrated} has photos in its legacy images JSON",
    ),
    "a-string-for-an-id": (lambda p: clear_label(str(p["a"])), ImageServiceError, "Expected a Product or its id"),
    "true-for-an-id": (lambda p: remove_image(True), ImageServiceError, "Expected a ProductImage or its id"),
}


@pytest.mark.parametrize(("call", "error", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_call_raises_and_changes_neither_rows_nor_json(tenant, two_products, call, error, message):
    products = [two_products[key] for key in ("a", "b", "single", "unmigrated")]
    before = [image_state(product_id) for product_id in products]
    with schema_context(tenant):
        with pytest.raises(error) as raised:
            call(two_products)

    assert isinstance(raised.value, ImageServiceError) and isinstance(raised.value, ValueError)
    assert message.format(**two_products) in str(raised.value)
    assert [image_state(product_id) for product_id in products] == before


def test_outside_a_seller_schema_the_service_refuses(tenant):
    product = migrated_product(2)
    with pytest.raises(ImageServiceError, match="No seller schema is selected"):
        clear_label(product.id)


def test_a_database_refusal_rolls_the_whole_call_back(tenant, monkeypatch):
    # If the mirror (the last statement) fails, the rows moved before it are restored too.
    product = migrated_product(4)
    before = image_state(product.id)

    def broken_mirror(product_id):
        execute(sql.SQL("SELECT 1 / 0"))

    monkeypatch.setattr(images, "_mirror_json", broken_mirror)
    with schema_context(tenant), pytest.raises(Exception, match="division by zero"):
        set_label(image_ids(product.id)[0])

    assert image_state(product.id) == before


# --- two editors of one product -------------------------------------------------------------


def other_session() -> psycopg.Connection:
    """A second connection; a lock it waits for more than 5 s is an error rather than a hung test."""
    settings = connection.settings_dict
    session = psycopg.connect(**connection_kwargs(settings), dbname=settings["NAME"])
    session.execute("SET lock_timeout = '5s'")
    session.commit()
    return session


def in_thread(call) -> tuple[threading.Thread, threading.Event, dict]:
    """Run ``call`` in the tenant on a thread (its own Django connection); returns the thread, an
    event set when it is about to call, and a dict receiving the outcome and when it ended."""
    started, outcome = threading.Event(), {}

    def run():
        try:
            with schema_context(TENANT):
                with connection.cursor() as cursor:
                    cursor.execute("SET lock_timeout = '10s'")
                started.set()
                outcome["result"] = call()
        except Exception as exc:  # reported to the test below
            outcome["error"] = exc
        finally:
            outcome["ended"] = time.monotonic()
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, started, outcome


def waiting_for_a_lock_on_products(seconds: float = 10) -> bool:
    """Whether some session comes to wait for a lock while running a SELECT ... FOR UPDATE on products.

    Asked from a session of its own in autocommit: within a transaction PostgreSQL keeps showing
    the pg_stat_activity it saw first."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s"
    if is_citus():
        # The wait is on the tenant's worker; Citus names it by the statement sent to the coordinator.
        query = "SELECT count(*) FROM citus_lock_waits WHERE blocked_statement LIKE %s"
    deadline = time.monotonic() + seconds
    with other_session() as observer:
        observer.autocommit = True
        while time.monotonic() < deadline:
            if observer.execute(query, ['%"products"%FOR UPDATE%']).fetchone()[0]:
                return True
            time.sleep(0.02)
    return False


def test_a_call_waits_for_another_session_s_lock_on_the_product(committed_db):
    product = migrated_product(3)
    with other_session() as holder:
        holder.execute(
            sql.SQL("SELECT id FROM {} WHERE id = %s FOR UPDATE").format(sql.Identifier(TENANT, "products")),
            [product.id],
        )
        thread, started, outcome = in_thread(lambda: add_image(product.id, "/from-the-service"))
        assert started.wait(10)
        assert waiting_for_a_lock_on_products(), "add_image never queued for the product's lock"
        assert thread.is_alive() and not outcome, "add_image went ahead while the product was locked"
        # The other editor adds a photo of its own (order 4, the label moved to 5) and commits.
        holder.execute(
            sql.SQL('UPDATE {} SET "order" = 5 WHERE product_id = %s AND is_label').format(
                sql.Identifier(TENANT, "product_images")
            ),
            [product.id],
        )
        holder.execute(
            sql.SQL(
                'INSERT INTO {} (product_id, url, "order", is_label, created_at, updated_at) '
                "VALUES (%s, 'from-the-other-editor', 4, false, now(), now())"
            ).format(sql.Identifier(TENANT, "product_images")),
            [product.id],
        )
        released = time.monotonic()
        holder.commit()
        thread.join(10)

    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["ended"] >= released
    # The service saw the other editor's photo: its own went after it, the label still last.
    assert [url for _, _, url in layout(product.id)][2:] == [
        "from-the-other-editor",
        "/from-the-service",
        "https://cdn.example/3-2.jpeg",
    ]
    assert [is_label for _, is_label, _ in layout(product.id)] == [False] * 4 + [True]


def test_two_service_calls_on_one_product_queue_up(committed_db):
    # Unlocked, both calls would read the same last order and one would fail on the unique index.
    product = migrated_product(6)
    label = urls(product.id)[-1]
    barrier = threading.Barrier(3)

    def add(url):
        barrier.wait(10)
        return add_image(product.id, url)

    runs = [in_thread(lambda url=url: add(url)) for url in ("/first", "/second", "/third")]
    for thread, _, _ in runs:
        thread.join(20)

    assert not any(thread.is_alive() for thread, _, _ in runs)
    assert [outcome.get("error") for _, _, outcome in runs] == [None, None, None]
    rows = layout(product.id)
    assert sorted(url for _, _, url in rows[5:8]) == ["/first", "/second", "/third"]
    assert rows[-1] == (9, True, label) and not any(is_label for _, is_label, _ in rows[:-1])


def test_add_image_trims_the_url_as_the_migration_reads_it(tenant):
    product = make_product()
    with schema_context(tenant):
        add_image(product, "  https://cdn.example/spaced.jpeg\n")

    assert urls(product.id) == ["https://cdn.example/spaced.jpeg"]
    assert run_command("--check", "--schema", tenant)[0] == 0
