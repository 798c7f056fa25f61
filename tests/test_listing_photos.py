"""What marketplaces receive (products/selectors.py): photos in order, never the label, within each limit."""

import pytest
from django_tenants.utils import schema_context

from products.admin.label_plans import plan_make_labels
from products.image_urls import url_problem
from products.images import add_image, clear_label, set_label
from products.selectors import (
    ListingPhotoSummary,
    UnknownMarketplace,
    listing_photo_summary,
    listing_photos,
    listing_photos_for,
    photo_limit,
    sendable_urls,
)
from tests.helpers import (
    TENANT,
    entries,
    image_ids,
    image_rows,
    make_product,
    migrated_product,
    run_command,
    run_sql,
    store_json,
)


def urls(product_id: int) -> list[str]:
    return [url for _, _, url, _ in image_rows(product_id)]


# django-tenants sets the search path before every query: one query is two statements.
ONE_QUERY = 2


def selects(queries) -> list[str]:
    """The statements captured by django_assert_num_queries, the search path settings left out."""
    return [query["sql"] for query in queries.captured_queries if not query["sql"].startswith("SET search_path")]


def test_the_limits_come_from_the_setting():
    assert [photo_limit(name) for name in ("vinted", "ebay", "etsy")] == [20, 12, 10]


def test_listing_photos_are_the_photos_in_order_without_the_label(tenant):
    product = migrated_product(5)
    with schema_context(tenant):
        photos = listing_photos(product, "vinted")

    assert photos == urls(product.id)[:4]


@pytest.mark.parametrize(("marketplace", "sent"), [("vinted", 20), ("ebay", 12), ("etsy", 10)])
def test_listing_photos_stop_at_the_marketplace_s_limit(tenant, marketplace, sent):
    product = migrated_product(25)
    with schema_context(tenant):
        photos = listing_photos(product.id, marketplace)

    assert photos == urls(product.id)[:sent]


def test_the_label_is_never_sent_even_when_the_limit_would_reach_it(tenant):
    product = migrated_product(11)
    with schema_context(tenant):
        photos = listing_photos(product, "ebay")

    assert photos == urls(product.id)[:10]
    assert urls(product.id)[-1] not in photos


def test_a_chosen_label_is_left_out_and_a_cleared_one_is_sent(tenant):
    product = migrated_product(4)
    ids = image_ids(product.id)
    first = urls(product.id)[0]
    with schema_context(tenant):
        set_label(ids[0])
        assert first not in listing_photos(product, "etsy")
        clear_label(product)
        assert listing_photos(product, "etsy") == urls(product.id)


def test_a_single_image_is_a_photo(tenant):
    product = make_product()
    with schema_context(tenant):
        add_image(product, "/only")
        assert listing_photos(product, "vinted") == ["/only"]


def test_a_product_without_images_sends_nothing(tenant):
    product = make_product()
    with schema_context(tenant):
        assert listing_photos(product, "vinted") == []


@pytest.mark.parametrize("marketplace", ["amazon", "Vinted", ""])
def test_an_unknown_marketplace_is_refused_naming_the_known_ones(tenant, marketplace, django_assert_num_queries):
    with schema_context(tenant), django_assert_num_queries(0):
        with pytest.raises(UnknownMarketplace, match=r"known marketplaces are ebay, etsy, vinted"):
            listing_photos(1, marketplace)
        with pytest.raises(UnknownMarketplace, match=repr(marketplace)):
            listing_photos_for([1], marketplace)


@pytest.mark.parametrize("count", [1, 5, 40])
def test_listing_photos_for_many_products_is_one_query(tenant, count, django_assert_num_queries):
    products = [migrated_product(2 + i % 14) for i in range(count)]
    with schema_context(tenant):
        with django_assert_num_queries(ONE_QUERY) as queries:
            photos = listing_photos_for(products, "etsy")
        assert len(selects(queries)) == 1
        one_by_one = {product.id: listing_photos(product, "etsy") for product in products}

    assert photos == one_by_one
    assert list(photos) == [product.id for product in products]


def test_listing_photos_for_gives_every_product_asked_for(tenant, django_assert_num_queries):
    with_photos, without = migrated_product(3), make_product()
    with schema_context(tenant):
        with django_assert_num_queries(ONE_QUERY):
            photos = listing_photos_for([without.id, with_photos, without.id, 999_999], "ebay")
        with django_assert_num_queries(0):
            assert listing_photos_for([], "ebay") == {}

    assert photos == {without.id: [], with_photos.id: urls(with_photos.id)[:2], 999_999: []}


def test_listing_photo_summary_says_what_each_marketplace_receives(tenant, django_assert_num_queries):
    product = migrated_product(16)
    with schema_context(tenant):
        with django_assert_num_queries(ONE_QUERY) as queries:
            summary = listing_photo_summary(product)
        assert len(selects(queries)) == 1
        sent = {marketplace: len(listing_photos(product, marketplace)) for marketplace in ("vinted", "ebay", "etsy")}

    assert summary == [
        ListingPhotoSummary("vinted", limit=20, photos_sent=15, photos_left_out=0, label_left_out=True),
        ListingPhotoSummary("ebay", limit=12, photos_sent=12, photos_left_out=3, label_left_out=True),
        ListingPhotoSummary("etsy", limit=10, photos_sent=10, photos_left_out=5, label_left_out=True),
    ]
    assert {line.marketplace: line.photos_sent for line in summary} == sent


def test_listing_photo_summary_without_a_label(tenant):
    product = migrated_product(1)
    with schema_context(tenant):
        summary = listing_photo_summary(product.id)

    assert {(line.photos_sent, line.photos_left_out, line.label_left_out) for line in summary} == {(1, 0, False)}


def test_a_product_id_of_another_type_is_a_type_error(tenant):
    with schema_context(tenant), pytest.raises(TypeError, match="Expected a Product or its id"):
        listing_photos("12", "ebay")


# Rows the service and the migration would never write, put there by raw SQL.
HOSTILE_URLS = [
    "data:text/html,<script>alert(1)</script>",
    "JaVaScRiPt:alert(1)",
    "//evil.test/x.jpg",
    "/\\evil.test/x.jpg",  # browsers read /\ as //
    " https://cdn.example/untrimmed.jpeg",
    "https://cdn.example/p\u2028.jpeg",
    "https://cdn.example/\u202egepj.exe",
]


def insert_rows(product_id: int, rows: list[tuple[str, bool]]) -> None:
    """(url, is_label) rows with orders 1, 2, ..., written by raw SQL around the service's checks."""
    for order, (url, is_label) in enumerate(rows, 1):
        run_sql(
            'INSERT INTO {images} (product_id, url, "order", is_label, created_at, updated_at) '
            "VALUES (%(product)s, %(url)s, %(order)s, %(is_label)s, now(), now())",
            {"product": product_id, "url": url, "order": order, "is_label": is_label},
        )


def test_a_url_the_rule_refuses_is_never_sent_and_takes_no_photo_s_place(tenant, settings):
    settings.STOFLOW_MARKETPLACE_PHOTO_LIMITS = {**settings.STOFLOW_MARKETPLACE_PHOTO_LIMITS, "tiny": 2}
    product, other = make_product(), make_product()
    hostile = [(url, False) for url in HOSTILE_URLS]
    insert_rows(product.id, [("/first", False), *hostile, ("/second", False), ("/third", False), ("/label", True)])
    insert_rows(other.id, [*hostile, ("javascript:alert(2)", True)])
    with schema_context(tenant):
        photos = {marketplace: listing_photos(product, marketplace) for marketplace in ("vinted", "tiny")}
        many = listing_photos_for([product, other], "tiny")
        summary = {line.marketplace: line for line in listing_photo_summary(product)}
        other_summary = listing_photo_summary(other)

    assert all(url_problem(url) for url in HOSTILE_URLS)
    assert photos == {"vinted": ["/first", "/second", "/third"], "tiny": ["/first", "/second"]}
    assert many == {product.id: ["/first", "/second"], other.id: []}
    assert summary["tiny"] == ListingPhotoSummary("tiny", 2, photos_sent=2, photos_left_out=1, label_left_out=True)
    assert summary["vinted"].photos_sent == 3
    assert {(line.photos_sent, line.label_left_out) for line in other_summary} == {(0, True)}


# --- a photo holding the label's own file (the same URL, whatever its letter case) -------------------------------

A = "https://cdn.example/a.jpg"
B = "https://cdn.example/b.jpg"

LABEL_FILE_AS_PHOTO = {
    "the last entry repeats the first": [{"url": A, "order": 1}, {"url": B, "order": 2}, {"url": A, "order": 3}],
    "in another letter case": [
        {"url": "HTTPS://CDN.EXAMPLE/a.jpg", "order": 1},
        {"url": B, "order": 2},
        {"url": A, "order": 3},
    ],
    "the label in upper case": [{"url": A, "order": 1}, {"url": B, "order": 2}, {"url": A.upper(), "order": 3}],
    "is_label keyed": [{"url": A, "order": 1, "is_label": False}, {"url": A, "order": 2, "is_label": True}],
}


def sent_everywhere(product_id: int) -> tuple:
    """What the product sends: listing_photos, listing_photos_for and the summary's figure, on vinted."""
    with schema_context(TENANT):
        summary = {line.marketplace: line for line in listing_photo_summary(product_id)}["vinted"]
        return (
            listing_photos(product_id, "vinted"),
            listing_photos_for([product_id], "vinted")[product_id],
            summary.photos_sent,
        )


def photos_then_label(product_id: int) -> list[tuple[str, bool]]:
    return [(url, is_label) for _, is_label, url, _ in image_rows(product_id)]


@pytest.mark.parametrize("images", LABEL_FILE_AS_PHOTO.values(), ids=LABEL_FILE_AS_PHOTO.keys())
def test_a_photo_holding_the_label_s_file_is_never_sent_after_the_first_migration(tenant, images):
    product = make_product(images=images)
    assert run_command("--schema", TENANT)[0] == 0
    assert photos_then_label(product.pk)[-1] == (images[-1]["url"], True)

    expected = [entry["url"] for entry in images[:-1] if entry["url"].upper() != images[-1]["url"].upper()]
    assert sent_everywhere(product.pk) == (expected, expected, len(expected))


@pytest.mark.parametrize("images", LABEL_FILE_AS_PHOTO.values(), ids=LABEL_FILE_AS_PHOTO.keys())
def test_a_photo_holding_the_label_s_file_is_never_sent_once_the_follower_wrote_it(tenant, images):
    product = make_product(images=entries(2))
    assert run_command("--schema", TENANT, "--follow")[0] == 0

    store_json(product.pk, images)

    assert photos_then_label(product.pk)[-1] == (images[-1]["url"], True)
    expected = [entry["url"] for entry in images[:-1] if entry["url"].upper() != images[-1]["url"].upper()]
    assert sent_everywhere(product.pk) == (expected, expected, len(expected))


def test_the_label_s_file_is_left_out_only_for_its_own_product(tenant):
    product = migrated_product(3)
    other = make_product()
    first, second, label = urls(product.id)
    # Another product's label holding this product's first photo, and duplicated photos without a label.
    insert_rows(other.id, [(second, False), (second, False), (first, True)])
    with schema_context(tenant):
        photos = listing_photos_for([product, other], "vinted")

    assert photos == {product.id: [first, second], other.id: [second, second]}
    assert sent_everywhere(product.id) == ([first, second], [first, second], 2)


def test_what_a_label_change_would_send_leaves_the_label_s_file_out_too(tenant):
    product = make_product()
    insert_rows(product.id, [(A, False), (B, False), (A.upper(), False)])
    *_, third = image_ids(product.id)
    with schema_context(tenant):
        assert sendable_urls([A, B], product, label=A.upper()) == [B]
        assert sendable_urls([A, B], product) == [A, B]
        (plan,) = plan_make_labels({product.id: third})

    assert plan.afterwards[0] == "Vinted: photo 1, label left out"  # B alone: the label's file stays home
