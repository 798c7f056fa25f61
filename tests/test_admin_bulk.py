"""The admin at scale and in bulk: bulk label changes as jobs (typed number, batches, progress, undo of a whole
change, two tabs), the last-photo filter, bounded counts and pages, thousands separators, the URL search index,
held-back products and the product page's link to its images; on the real DB."""

import json
import re

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.template import Context, Template
from django.utils import timezone
from django_tenants.utils import schema_context

from products.admin import label_jobs, paging
from products.admin.paging import Grouped
from products.images import move_image
from products.models import LabelJob, Product, ProductImage, ProductJsonState
from stoflow.tenants.services import ensure_public_tenant
from stoflow.tenants.sites import seller_admin_site
from tests.helpers import TENANT, make_product, sql_rows

SELLER = f"/sellers/{TENANT}/admin"
PRODUCTS = f"{SELLER}/products/product/"
IMAGES = f"{SELLER}/products/productimage/"


@pytest.fixture(autouse=True)
def public_site(db):
    ensure_public_tenant()
    yield
    connection.set_schema_to_public()


def labelled_product(count: int, title: str = "", url: str = "/static/products/placeholders/{order}.svg") -> Product:
    """A product with ``count`` images, the last its label (two or more)."""
    product = make_product(title=title, images=[])
    with schema_context(TENANT):
        ProductImage.objects.bulk_create(
            ProductImage(
                product=product,
                url=url.format(order=order),
                order=order,
                is_label=count >= 2 and order == count,
                created_at=timezone.now(),
            )
            for order in range(1, count + 1)
        )
    return product


def labels(products) -> list[int | None]:
    """Each product's label, as its order (None: no label)."""
    with schema_context(TENANT):
        found = dict(ProductImage.objects.filter(is_label=True).values_list("product_id", "order"))
    return [found.get(product.pk) for product in products]


def all_label_ids() -> list[int]:
    with schema_context(TENANT):
        return list(ProductImage.objects.filter(is_label=True).order_by("pk").values_list("pk", flat=True))


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def clear(client, ids, **fields):
    data = {"action": "clear_label", "_selected_action": ids, "index": 0, **fields}
    return client.post(IMAGES, data, follow=True)


def advance_as_the_page_does(client, job_id: int) -> dict:
    response = client.post(f"{IMAGES}label-changes/{job_id}/advance/", headers={"Accept": "application/json"})
    assert response.status_code == 200
    return json.loads(response.content)


def test_a_bulk_change_past_the_bound_asks_for_the_number_then_runs_in_batches_and_is_undone_whole(
    admin_client, monkeypatch
):
    monkeypatch.setattr(label_jobs, "TYPED_CONFIRMATION_ABOVE", 2)
    monkeypatch.setattr(label_jobs, "BATCH_PRODUCTS", 2)
    products = [labelled_product(3, f"Lamp {n}") for n in range(5)]
    ids = all_label_ids()

    page = clear(admin_client, ids).content.decode()
    assert "This changes 5 products, a batch at a time, with its progress shown. To confirm, type the number" in page
    assert 'name="confirm_count"' in page
    # A wrong number changes nothing and says so.
    page = clear(admin_client, ids, post="yes", confirm_count="4").content.decode()
    assert "That is not the number of products this changes (5): nothing was changed." in page
    assert labels(products) == [3] * 5 and not LabelJob.objects.exists()

    response = clear(admin_client, ids, post="yes", confirm_count="5")
    with schema_context(TENANT):
        job = LabelJob.objects.get()
    assert response.redirect_chain == [(f"{IMAGES}label-changes/{job.pk}/", 302)]
    page = response.content.decode()
    assert "0 of 5 products." in page and 'id="job-advance"' in page  # nothing done in the confirming request
    assert labels(products) == [3] * 5
    # The page's script advances it a batch per request.
    assert advance_as_the_page_does(admin_client, job.pk) == {
        "done": 2,
        "total": 5,
        "finished": False,
        "summary": "2 of 5 products done so far.",
    }
    assert advance_as_the_page_does(admin_client, job.pk)["done"] == 4
    finished = advance_as_the_page_does(admin_client, job.pk)
    assert finished["finished"] and finished["summary"] == "Price labels cleared: 5 products changed."
    assert labels(products) == [None] * 5

    # The whole change, undone: confirmed as any bulk change, then batched too.
    page = admin_client.get(f"{IMAGES}label-changes/{job.pk}/").content.decode()
    assert f'href="{IMAGES}label-changes/{job.pk}/undo/" class="button" id="job-undo"' in page
    page = admin_client.get(f"{IMAGES}label-changes/{job.pk}/undo/").content.decode()
    assert "Undo label changes: what changes" in page and 'name="confirm_count"' in page
    assert "“3.svg” (photo 3) becomes the price label and moves last" in page
    response = admin_client.post(f"{IMAGES}label-changes/{job.pk}/undo/", {"post": "yes", "confirm_count": "5"})
    with schema_context(TENANT):
        undo = LabelJob.objects.get(undoes=job)
    assert response["Location"] == f"{IMAGES}label-changes/{undo.pk}/"
    while not advance_as_the_page_does(admin_client, undo.pk)["finished"]:
        pass
    assert labels(products) == [3] * 5
    page = admin_client.get(f"{IMAGES}label-changes/{job.pk}/").content.decode()
    assert f'Undone by <a href="{IMAGES}label-changes/{undo.pk}/">bulk change {undo.pk}</a>' in page
    listing = admin_client.get(f"{IMAGES}label-changes/").content.decode()
    assert f"{job.pk}: clear price labels" in listing and f"{undo.pk}: undo a bulk change" in listing


def test_undoing_a_bulk_change_leaves_a_product_changed_since_as_it_is_and_says_why(admin_client):
    products = [labelled_product(3, f"Lamp {n}") for n in range(3)]
    response = clear(admin_client, all_label_ids(), post="yes")
    assert messages_of(response) == ["Price labels cleared: 3 products changed."]
    with schema_context(TENANT):
        job = LabelJob.objects.get()
        moved = ProductImage.objects.filter(product=products[1]).order_by("order").first()
        move_image(moved, 2)  # someone reordered one product's photos since
    response = admin_client.post(f"{IMAGES}label-changes/{job.pk}/undo/", {"post": "yes"}, follow=True)
    assert messages_of(response) == ["Label changes undone: 2 products changed, 1 refused (listed on the page)."]
    assert labels(products) == [3, None, 3]
    page = response.content.decode()
    assert f"Product {products[1].pk}</a>: Someone changed this product&#x27;s photos a moment ago" in page


def test_the_last_photo_filter_selects_each_products_last_photo(admin_client):
    lamp, desk, single = labelled_product(4, "Lamp"), labelled_product(3, "Desk"), labelled_product(1, "Single")
    clear(admin_client, all_label_ids(), post="yes")
    response = admin_client.get(f"{IMAGES}?label=last_photo")
    with schema_context(TENANT):
        expected = [ProductImage.objects.filter(product=p).order_by("order").last().pk for p in (lamp, desk, single)]
    assert sorted(image.pk for image in response.context["cl"].result_list) == sorted(expected)
    assert "Last photo of each product" in response.content.decode()


def test_counts_stop_at_a_bound_and_deep_pages_are_not_served(admin_client, monkeypatch):
    monkeypatch.setattr(paging, "COUNT_BOUND", 5)
    monkeypatch.setattr(seller_admin_site._registry[Product], "list_per_page", 2)
    for n in range(12):
        make_product(title=f"Item {n}", images=[])
    response = admin_client.get(f"{PRODUCTS}?p=10")
    cl = response.context["cl"]
    assert cl.count_is_estimate and cl.result_count > 5 and cl.paginator.num_pages == 3
    assert cl.page_num == 3 and len(cl.result_list) == 2  # the last page served, not an error
    page = response.content.decode()
    assert re.search(r'<span id="result-count">About [0-9,]+ products</span>', page)
    assert "(the first 3 pages: search, filter or sort to reach the others)" in page
    assert messages_of(response) == [
        "Only the first 3 pages are shown: search, filter or sort the other way to reach the others."
    ]
    # Under the bound, the count is exact.
    response = admin_client.get(f"{PRODUCTS}?q=Item+1")
    assert not response.context["cl"].count_is_estimate and response.context["cl"].result_count == 3


def test_counts_print_with_thousands_separators():
    count = Grouped(19607)
    assert str(count) == "19,607" and f"{count} images" == "19,607 images" and count == 19607
    assert Template("{{ n }} {% if n == 19607 %}equal{% endif %}").render(Context({"n": count})) == "19,607 equal"


def test_the_url_search_reads_a_trigram_index(tenant):
    [(available,)] = sql_rows("SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'pg_trgm')")
    if not available:
        pytest.skip("this PostgreSQL has no pg_trgm (the migration then makes no index)")
    labelled_product(3)
    # On a few rows the planner rightly prefers a scan; with scans off, only an index the search's condition
    # fits can serve it (a bitmap scan), and the trigram index is the one.
    with schema_context(TENANT), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        plan = ProductImage.objects.filter(url__icontains="3.svg").order_by().explain()
    assert "product_images_url_trgm" in plan


def test_a_held_back_product_says_so_and_why(admin_client):
    lamp = labelled_product(3, "Lamp")
    with schema_context(TENANT):
        ProductJsonState.objects.create(
            product_id=lamp.pk, refused="its entries mix two label conventions", recorded_at=timezone.now()
        )
    page = admin_client.get(f"{PRODUCTS}{lamp.pk}/change/").content.decode()
    assert "<strong>Held back from marketplaces:</strong> its entries mix two label conventions." in page
    assert "Vinted: no photo, label left out" in page
    with schema_context(TENANT):
        photo = ProductImage.objects.filter(product=lamp).order_by("order").first()
    data = {"make_label": photo.pk, "seen": "", "confirmed": "yes"}
    response = admin_client.post(f"{PRODUCTS}{lamp.pk}/images/", data, follow=True)
    assert messages_of(response) == [
        "This product is held back from marketplaces until its original photo list is fixed: its photos cannot be "
        "changed here until then."
    ]


def test_the_product_page_links_to_its_images_and_lists_show_short_urls(admin_client):
    url = "https://cdn.example/sellers/2024/11/very/long/path/{order}-photo.jpeg"
    lamp = labelled_product(2, "Lamp", url=url)
    page = admin_client.get(f"{PRODUCTS}{lamp.pk}/change/").content.decode()
    assert f'<a href="{IMAGES}?product={lamp.pk}" id="product-images-link">Its 2 images in the image list</a>' in page
    page = admin_client.get(f"{IMAGES}?product={lamp.pk}").content.decode()
    full = url.format(order=1)
    assert f'<span class="stoflow-url" title="{full}">cdn.example/…/1-photo.jpeg</span>' in page
