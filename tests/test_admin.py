"""The admin across tenants: routing, access, lists, the product page and the label action, on the real DB."""

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import schema_context

from products.admin_html import LABEL_BADGE_TEXT, thumbnail
from products.labels import make_labels
from products.models import ProductImage
from stoflow.tenants.models import Domain
from stoflow.tenants.services import ensure_public_tenant
from tests.helpers import OTHER_TENANT, TENANT, make_product, run_sql

SELLER = f"/sellers/{TENANT}/admin"
PRODUCTS = f"{SELLER}/products/product/"
IMAGES = f"{SELLER}/products/productimage/"


@pytest.fixture(autouse=True)
def public_site(db):
    """Paths outside /sellers/ are served by the public tenant; requests leave the connection on a seller."""
    ensure_public_tenant()
    yield
    connection.set_schema_to_public()


def product_with_images(count: int, title: str = "", label: int | None = None, json_count: int | None = None, **kw):
    """A product whose legacy JSON lists ``json_count`` (default ``count``) of its ``count`` rows' URLs;
    the image of order ``label`` (default: the last, when there are two or more) is the label."""
    label = label if label is not None else (count if count >= 2 else 0)
    urls = [f"/static/products/placeholders/{order}.svg?image={title}-{order}" for order in range(1, count + 1)]
    legacy = [{"url": url, "order": order} for order, url in enumerate(urls, start=1)][: json_count or count]
    product = make_product(title=title, images=legacy, **kw)
    with schema_context(TENANT):
        for order, url in enumerate(urls, start=1):
            ProductImage.objects.create(
                product=product, url=url, order=order, is_label=order == label, created_at=timezone.now()
            )
    return product


def labelled_orders(product_id: int) -> list[int]:
    with schema_context(TENANT):
        return list(ProductImage.objects.filter(product_id=product_id, is_label=True).values_list("order", flat=True))


def image_ids(product, *orders: int) -> list[int]:
    with schema_context(TENANT):
        return [ProductImage.objects.get(product=product, order=order).pk for order in orders]


def listed_ids(response) -> list[int]:
    return sorted(obj.pk for obj in response.context["cl"].result_list)


def admin_pages(product) -> list[str]:
    image = image_ids(product, 1)[0]
    return ["/admin/", f"{SELLER}/", PRODUCTS, f"{PRODUCTS}{product.pk}/change/", IMAGES, f"{IMAGES}{image}/change/"]


def test_every_page_serves_staff(admin_client):
    product = product_with_images(3, title="Lamp")
    for url in admin_pages(product):
        response = admin_client.get(url)
        assert response.status_code == 200, url


def test_anonymous_users_are_sent_to_the_login_page(client):
    product = product_with_images(3, title="Lamp")
    for url in admin_pages(product):
        response = client.get(url)
        assert response.status_code == 302, url
        assert "/admin/login/?next=" in response["Location"], url


def test_non_staff_users_get_nothing(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("customer", password="x"))
    product = product_with_images(3, title="Lamp")
    for url in admin_pages(product):
        response = client.get(url)
        assert response.status_code == 302, url
        assert "/admin/login/?next=" in response["Location"], url
        assert "Lamp" not in response.content.decode()


def test_unknown_seller_is_not_found(admin_client):
    assert admin_client.get("/sellers/user_404/admin/").status_code == 404


def test_public_admin_lists_the_sellers_with_links_to_their_catalogues(admin_client):
    page = admin_client.get("/admin/").content.decode()
    assert f'href="/sellers/{TENANT}/admin/products/product/"' in page
    assert f'href="/sellers/{OTHER_TENANT}/admin/products/productimage/"' in page
    assert "Products and images" not in page  # seller models are not offered outside a seller


def test_seller_pages_name_the_seller_and_switch_to_the_same_list_of_another(admin_client):
    page = admin_client.get(IMAGES).content.decode()
    assert f'id="current-seller">Seller <strong>{TENANT}</strong>' in page
    assert f'<a href="/sellers/{OTHER_TENANT}/admin/products/productimage/">{OTHER_TENANT}</a>' in page
    assert 'href="/admin/">all sellers</a>' in page
    assert "Users" not in page  # shared models stay on the public admin


def test_the_seller_routing_domain_is_made_with_the_tenant():
    assert Domain.objects.filter(domain=TENANT, tenant__schema_name=TENANT).exists()


def test_product_list_shows_counts_labels_and_deleted_state(admin_client):
    lamp = product_with_images(3, title="Lamp")
    gone = product_with_images(2, title="Gone", deleted_at=timezone.now())
    response = admin_client.get(PRODUCTS)
    rows = {p.pk: (p.image_count, p.label_url) for p in response.context["cl"].result_list}
    lamp_label = "/static/products/placeholders/3.svg?image=Lamp-3"
    assert rows == {lamp.pk: (3, lamp_label), gone.pk: (2, "/static/products/placeholders/2.svg?image=Gone-2")}
    page = response.content.decode()
    assert f'src="{lamp_label}" alt="Label of product {lamp.pk}" loading="lazy"' in page
    assert page.count('alt="True"') == 1  # the soft-deleted column: one product is


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("deleted=yes", ["gone"]),
        ("deleted=no", ["lamp", "single", "legacy_only"]),
        ("has_label=yes", ["lamp", "gone"]),
        ("has_label=no", ["single", "legacy_only"]),
        ("migrated=yes", ["lamp", "gone", "single"]),
        ("migrated=no", ["legacy_only"]),
        ("q=lam", ["lamp"]),
    ],
)
def test_product_list_filters(admin_client, query, expected):
    products = {
        "lamp": product_with_images(3, title="Lamp"),
        "gone": product_with_images(2, title="Gone", deleted_at=timezone.now()),
        "single": product_with_images(1, title="Single"),
        "legacy_only": make_product(title="Legacy only", images=[{"url": "/a.jpeg", "order": 1}]),
    }
    response = admin_client.get(f"{PRODUCTS}?{query}")
    assert listed_ids(response) == sorted(products[name].pk for name in expected)


def test_product_list_searches_by_id(admin_client):
    product_with_images(2, title="Other")
    lamp = product_with_images(3, title="Lamp")
    assert listed_ids(admin_client.get(f"{PRODUCTS}?q={lamp.pk}")) == [lamp.pk]
    assert listed_ids(admin_client.get(f"{PRODUCTS}?q=no-such-title")) == []


def test_product_list_query_count_does_not_grow_with_the_products(admin_client):
    def queries_for_the_list() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(PRODUCTS).status_code == 200
        # django-tenants sets the search path before each query: count the queries proper.
        return sum(not query["sql"].startswith("SET search_path") for query in queries.captured_queries)

    product_with_images(3, title="First")
    admin_client.get(PRODUCTS)  # first request: session and content types warm up
    with_one = queries_for_the_list()
    for n in range(8):
        product_with_images(2 + n % 3, title=f"More {n}")
    assert queries_for_the_list() == with_one
    # Domain, session, user, two counts, the sellers for the switch, the page of products.
    assert with_one == 7


def test_product_page_shows_the_images_in_order_with_one_label_and_the_json_agreeing(admin_client):
    product = product_with_images(4, title="Lamp")
    response = admin_client.get(f"{PRODUCTS}{product.pk}/change/")
    page = response.content.decode()
    positions = [page.index(f'alt="Image {order} of product {product.pk}"') for order in range(1, 5)]
    assert positions == sorted(positions)
    assert page.count(f">{LABEL_BADGE_TEXT}</span>") == 1
    assert page.index(f">{LABEL_BADGE_TEXT}</span>") > positions[3]
    assert 'id="legacy-agrees"' in page and 'id="legacy-mismatch"' not in page
    assert "?image=Lamp-4" in page.split('id="legacy-json"')[1]  # the JSON itself, beside the images


def test_product_page_warns_when_the_table_and_the_json_disagree(admin_client):
    product = product_with_images(4, title="Lamp", json_count=3)
    page = admin_client.get(f"{PRODUCTS}{product.pk}/change/").content.decode()
    assert 'id="legacy-mismatch"' in page
    assert "The legacy JSON lists 3 images, the table holds 4." in page
    assert "In the table, not in the JSON: /static/products/placeholders/4.svg?image=Lamp-4" in page


def test_a_finalized_seller_s_pages_work_and_say_the_json_column_is_gone(admin_client):
    product = product_with_images(3, title="Lamp")
    run_sql("ALTER TABLE {products} DROP COLUMN images")  # as finalize_images leaves it (rolled back after the test)

    assert admin_client.get(PRODUCTS).status_code == 200
    page = admin_client.get(f"{PRODUCTS}{product.pk}/change/").content.decode()
    assert 'id="legacy-finalized"' in page
    assert "Finalized: the JSON column products.images was dropped (finalize_images)" in page
    assert 'id="legacy-mismatch"' not in page and 'id="legacy-agrees"' not in page
    assert page.count(f">{LABEL_BADGE_TEXT}</span>") == 1  # the rows, as before


def test_image_list_filters_labels_and_searches_by_url_or_product(admin_client):
    lamp = product_with_images(3, title="Lamp")
    desk = product_with_images(2, title="Desk")
    labels = admin_client.get(f"{IMAGES}?label=yes")
    assert listed_ids(labels) == sorted(image_ids(lamp, 3) + image_ids(desk, 2))
    assert listed_ids(admin_client.get(f"{IMAGES}?q=Desk-1")) == image_ids(desk, 1)
    assert listed_ids(admin_client.get(f"{IMAGES}?q={lamp.pk}")) == image_ids(lamp, 1, 2, 3)
    page = labels.content.decode()
    assert f'href="{PRODUCTS}{lamp.pk}/change/">{lamp.pk}: Lamp</a>' in page


def make_label(client, ids: list[int]):
    response = client.post(IMAGES, {"action": "make_label", "_selected_action": ids}, follow=True)
    assert response.status_code == 200
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_label_action_moves_the_label_of_each_selected_product(admin_client):
    lamp = product_with_images(4, title="Lamp")
    desk = product_with_images(3, title="Desk")
    messages = make_label(admin_client, image_ids(lamp, 2) + image_ids(desk, 3))
    assert messages == ["1 image(s) made their product's label. 1 already were."]
    assert labelled_orders(lamp.pk) == [2]
    assert labelled_orders(desk.pk) == [3]


def test_label_action_refuses_several_images_of_one_product_and_changes_nothing(admin_client):
    lamp = product_with_images(4, title="Lamp")
    desk = product_with_images(3, title="Desk")
    messages = make_label(admin_client, image_ids(lamp, 1, 2) + image_ids(desk, 1))
    assert messages == [
        "A product has exactly one label: select one image per product. Several images were selected for "
        f"product {lamp.pk}; no label was changed."
    ]
    assert labelled_orders(lamp.pk) == [4]
    assert labelled_orders(desk.pk) == [3]


def test_make_labels_gives_a_product_without_label_one(tenant):
    single = product_with_images(2, title="Unlabelled", label=0)
    with schema_context(tenant):
        change = make_labels(image_ids(single, 1))
    assert (change.made_labels, change.already_labels) == (1, 0)
    assert labelled_orders(single.pk) == [1]


def test_thumbnail_escapes_the_url_and_names_the_file_when_it_does_not_load():
    html = thumbnail('https://cdn.example/a"b/photo<1>.jpeg', "Image 1")
    assert 'src="https://cdn.example/a&quot;b/photo&lt;1&gt;.jpeg"' in html
    assert 'loading="lazy"' in html
    assert "image not available: photo&lt;1&gt;.jpeg" in html
    assert thumbnail(None, "none") == "-"
