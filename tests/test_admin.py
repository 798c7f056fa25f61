"""The admin across tenants: routing, access, lists, the product page and the label action, on the real DB."""

import csv
import io
import re

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.contrib.messages import get_messages
from django.db import connection
from django.db.models import Q
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import schema_context

import stoflow.tenants.sites
from products.admin import label_jobs
from products.admin.html import LABEL_BADGE_TEXT, thumbnail
from products.admin.image_actions import LABEL_BUTTONS, seen_token
from products.admin.refusals import SUPPORT_SENTENCES
from products.images import ImageServiceError, arrangement, move_image, remove_image
from products.models import LabelChange, LabelJob, Product, ProductImage
from stoflow.tenants.models import Domain
from stoflow.tenants.services import ensure_public_tenant
from tests.helpers import (
    OTHER_TENANT,
    TENANT,
    json_images,
    make_product,
    run_sql,
)

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


def test_staff_without_permissions_see_no_seller_links_that_would_answer_403(client, django_user_model):
    staff = django_user_model.objects.create_user("helper", password="x", is_staff=True)
    client.force_login(staff)
    page = client.get("/admin/").content.decode()
    assert "/sellers/" not in page
    assert 'id="no-seller-access"' in page
    assert "Products (about)" not in page  # no figures either

    staff.user_permissions.add(Permission.objects.get(codename="view_productimage"))
    staff = django_user_model.objects.get(pk=staff.pk)  # permissions are cached on the user
    client.force_login(staff)
    page = client.get("/admin/").content.decode()
    links = set(re.findall(r'href="(/sellers/[^"]*)"', page))
    assert IMAGES in links and PRODUCTS not in links
    for link in links:
        assert client.get(link).status_code == 200, link


def test_seller_index_offers_view_not_change(admin_client):
    page = admin_client.get(f"{SELLER}/").content.decode()
    assert page.count('class="viewlink"') == 2
    assert 'class="changelink"' not in page


def test_seller_pages_name_the_seller_and_switch_to_the_same_list_of_another(admin_client):
    page = admin_client.get(IMAGES).content.decode()
    assert f'id="current-seller">Seller <strong>{TENANT}</strong>' in page
    assert f'<a href="/sellers/{OTHER_TENANT}/admin/products/productimage/">{OTHER_TENANT}</a>' in page
    assert 'href="/admin/">all sellers</a>' in page
    assert "Users" not in page  # shared models stay on the public admin


def test_many_sellers_switch_from_a_list_that_opens_not_a_crowded_header(admin_client, monkeypatch):
    sellers = [TENANT, OTHER_TENANT] + [f"user_{n}" for n in range(1, 8)]
    monkeypatch.setattr(stoflow.tenants.sites, "tenant_schema_names", lambda: sellers)
    page = admin_client.get(f"{IMAGES}?label=yes").content.decode()
    switch = page.split('id="seller-switch"')[1].split("</nav>")[0]
    assert "<details><summary>9 sellers</summary>" in switch
    assert '<li><a href="/sellers/user_7/admin/products/productimage/?label=yes">user_7</a></li>' in switch
    assert f'<strong aria-current="page">{TENANT}</strong>' in switch


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
    assert f'src="{lamp_label}" alt="Product {lamp.pk}, price label" loading="lazy"' in page
    # The soft-deleted column: the date for a deleted product, blank for a live one (no red cross on every row).
    cells = re.findall(r'<td class="field-soft_deleted[^"]*">(.*?)</td>', page)
    assert len(cells) == 2 and cells.count("") == 1
    assert "alt=" not in "".join(cells) and str(timezone.now().year) in "".join(cells)


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


def test_a_product_id_searched_alone_opens_that_product(admin_client):
    lamp = product_with_images(3, title="Lamp")
    other = product_with_images(2, title=f"Other {lamp.pk}0")  # its title holds the number
    response = admin_client.get(f"{PRODUCTS}?q={lamp.pk}", follow=True)
    assert response.redirect_chain == [(f"{PRODUCTS}{lamp.pk}/change/", 302)]
    [message] = messages_of(response)
    titles = f"{PRODUCTS}?q={lamp.pk}&amp;titles=1"
    assert (
        message == f'Opened product {lamp.pk}, the id you searched for. <a href="{titles}">Titles holding {lamp.pk}</a>'
    )
    assert f'<a href="{titles}">' in response.content.decode()  # a link, not its text
    assert admin_client.get(f"{PRODUCTS}?q=%23{lamp.pk}").status_code == 302  # "#165" too
    # The message's link: the list, searching titles as well; paging or sorting a search stays on the list.
    assert listed_ids(admin_client.get(f"{PRODUCTS}?q={lamp.pk}&titles=1")) == sorted([lamp.pk, other.pk])
    assert admin_client.get(f"{PRODUCTS}?q={lamp.pk}&o=2").status_code == 200
    # No such product: the list, searching titles.
    assert listed_ids(admin_client.get(f"{PRODUCTS}?q=99999")) == []
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
    alts = [f"Product {product.pk}, photo {n}" for n in (1, 2, 3)] + [f"Product {product.pk}, price label"]
    positions = [page.index(f'alt="{alt}"') for alt in alts]
    assert positions == sorted(positions)
    assert page.count(f">{LABEL_BADGE_TEXT}</span>") == 1
    assert positions[2] < page.index(f">{LABEL_BADGE_TEXT}</span>") < positions[3]  # in the last row
    assert f"<h1>Product {product.pk}: Lamp</h1>" in page
    assert 'id="legacy-agrees"' in page and 'id="legacy-mismatch"' not in page
    assert "?image=Lamp-4" in page.split('id="legacy-json"')[1]  # the JSON itself, beside the images


def marketplace_lines(page: str) -> list[str]:
    section = page.split('id="marketplace-photos"')[1].split("</ul>")[0]
    return re.findall(r"<li>(.*?)</li>", section)


def test_product_page_says_what_each_marketplace_receives(admin_client, settings):
    settings.STOFLOW_MARKETPLACE_PHOTO_LIMITS = {"vinted": 20, "ebay": 3, "etsy": 1}
    lamp = product_with_images(5, title="Lamp")
    single = product_with_images(1, title="Single")
    legacy_only = make_product(title="Legacy only", images=[{"url": "/a.jpeg", "order": 1}])
    assert marketplace_lines(admin_client.get(f"{PRODUCTS}{lamp.pk}/change/").content.decode()) == [
        "Vinted: photos 1-4, label left out",
        "eBay: photos 1-3, photo 4 left out (it takes 3), label left out",
        "Etsy: photo 1, photos 2-4 left out (it takes 1), label left out",
    ]
    assert marketplace_lines(admin_client.get(f"{PRODUCTS}{single.pk}/change/").content.decode()) == [
        "Vinted: photo 1",
        "eBay: photo 1",
        "Etsy: photo 1",
    ]
    page = admin_client.get(f"{PRODUCTS}{legacy_only.pk}/change/").content.decode()
    assert marketplace_lines(page) == ["Vinted: no photo", "eBay: no photo", "Etsy: no photo"]
    assert "No photos here: its photos are only in the original list, not imported yet." in page


def seen(product) -> str:
    """The photos as the product page shows them now, as its forms post them back."""
    with schema_context(TENANT):
        return seen_token(arrangement(product))


def press(client, product, button: str, value: int | str = "", confirmed: bool = True, page_seen=None, **fields):
    """A button of the product page, as its forms post it (with the photos the page showed), followed back to
    the page; a label button confirmed as its confirmation page posts it, unless ``confirmed=False``."""
    data = {button: value, "seen": seen(product) if page_seen is None else page_seen, **fields}
    if confirmed and button in LABEL_BUTTONS:
        data["confirmed"] = "yes"
    return client.post(f"{PRODUCTS}{product.pk}/images/", data, follow=True)


def test_product_page_buttons_make_a_label_move_photos_and_clear_the_label_through_the_service(admin_client):
    lamp = product_with_images(4, title="Lamp")
    one, two, three, four = image_ids(lamp, 1, 2, 3, 4)
    page = admin_client.get(f"{PRODUCTS}{lamp.pk}/change/").content.decode()
    assert f'<form id="image-actions" method="post" action="{PRODUCTS}{lamp.pk}/images/">' in page
    assert f'<input type="hidden" name="seen" value="{one},{two},{three};{four}">' in page
    assert f'form="image-actions" name="make_label" value="{two}"' in page
    assert f'form="image-actions" name="clear_label" value="{four}"' in page

    response = press(admin_client, lamp, "make_label", two)
    assert response.redirect_chain == [(f"{PRODUCTS}{lamp.pk}/change/#product-images", 302)]
    made = (
        "“2.svg” (photo 2) became the price label, moved last: marketplaces no longer receive it. “4.svg”, the "
        "label until then, became photo 3: marketplaces will receive it (Vinted, eBay and Etsy)."
    )
    assert messages_of(response) == [made]
    assert sequence(lamp) == [(one, False), (three, False), (four, False), (two, True)]

    assert messages_of(press(admin_client, lamp, "move_image", four, direction="up")) == [
        "Moved photo 3 to position 2."
    ]
    assert messages_of(press(admin_client, lamp, "move_image", one, direction="down")) == [
        "Moved photo 1 to position 2."
    ]
    assert sequence(lamp) == [(four, False), (one, False), (three, False), (two, True)]
    # A position typed in the photo's box: one step, however far.
    assert messages_of(press(admin_client, lamp, "move_image", three, to_position="1")) == [
        "Moved photo 3 to position 1."
    ]
    assert sequence(lamp) == [(three, False), (four, False), (one, False), (two, True)]

    cleared = "“2.svg”, the price label, became photo 4: marketplaces will receive it (Vinted, eBay and Etsy)."
    assert messages_of(press(admin_client, lamp, "clear_label", two)) == [cleared]
    assert sequence(lamp) == [(three, False), (four, False), (one, False), (two, False)]
    # The service mirrored every change into the legacy JSON.
    assert [entry["url"].rsplit("-", 1)[1] for entry in json_images(lamp.pk)] == ["3", "4", "1", "2"]
    assert [message for _, message in history(lamp)] == [
        f"Seller {TENANT}: {made}",
        f"Seller {TENANT}: Moved photo 3 to position 2.",
        f"Seller {TENANT}: Moved photo 1 to position 2.",
        f"Seller {TENANT}: Moved photo 3 to position 1.",
        f"Seller {TENANT}: {cleared}",
    ]


def test_a_label_button_asks_first_and_says_what_marketplaces_receive_afterwards(admin_client, settings):
    settings.STOFLOW_MARKETPLACE_PHOTO_LIMITS = {"vinted": 20, "ebay": 3, "etsy": 2}
    lamp = product_with_images(4, title="Lamp")
    before = sequence(lamp)
    response = press(admin_client, lamp, "clear_label", image_ids(lamp, 4)[0], confirmed=False)
    page = response.content.decode()
    assert "<h1>Clear the price label: what changes</h1>" in page
    assert (
        "“4.svg”, the price label, becomes photo 4: Vinted will receive it (eBay and Etsy take fewer photos)." in page
    )
    lines = re.findall(r"<li>(.*?)</li>", page.split('class="stoflow-afterwards-lines"')[1].split("</ul>")[0])
    assert lines == [
        "Vinted: photos 1-4",
        "eBay: photos 1-3, photo 4 left out (it takes 3)",
        "Etsy: photos 1-2, photos 3-4 left out (it takes 2)",
    ]
    # The confirmation posts the button back, confirmed, with the photos the page showed.
    assert f'<input type="hidden" name="seen" value="{seen(lamp)}">' in page
    assert '<input type="hidden" name="confirmed" value="yes">' in page
    assert f'action="{PRODUCTS}{lamp.pk}/images/"' in page
    assert sequence(lamp) == before and history(lamp) == []


def test_the_newest_label_change_is_undone_from_the_product_page_after_a_confirmation(admin_client):
    lamp = product_with_images(4, title="Lamp")
    before = sequence(lamp)
    press(admin_client, lamp, "make_label", image_ids(lamp, 1)[0])
    page = admin_client.get(f"{PRODUCTS}{lamp.pk}/change/").content.decode()
    with schema_context(TENANT):
        change = LabelChange.objects.get(product_id=lamp.pk)
    assert change.actor == "admin"
    row = page.split(f'id="label-change-{change.pk}"')[1].split("</tr>")[0]
    assert "<td>admin</td>" in row and "“1.svg” (photo 1) became the price label" in row
    assert f'name="undo" value="{change.pk}"' in row

    confirmation = press(admin_client, lamp, "undo", change.pk, confirmed=False).content.decode()
    assert "Undo the label change: what changes" in confirmation
    assert "“4.svg” (photo 3) becomes the price label and moves last" in confirmation
    assert "“1.svg”, the label until now, becomes photo 1" in confirmation
    [message] = messages_of(press(admin_client, lamp, "undo", change.pk))
    assert message.startswith(f"Undid the change of {change.made_at:%Y-%m-%d %H:%M} UTC by admin: “4.svg”")
    assert sequence(lamp) == before
    # The undo is the newest change now: it may be undone (the change made again), the older one no more.
    page = admin_client.get(f"{PRODUCTS}{lamp.pk}/change/").content.decode()
    assert page.count('name="undo"') == 1 and f'name="undo" value="{change.pk}"' not in page


def test_the_label_history_says_why_its_newest_change_has_no_undo(admin_client):
    lamp = product_with_images(4, title="Lamp")
    one, two, three, four = image_ids(lamp, 1, 2, 3, 4)
    press(admin_client, lamp, "make_label", one)
    with schema_context(TENANT):
        move_image(two, 3)  # a photo moved since: undoing the label change would undo the move too
    page = admin_client.get(f"{PRODUCTS}{lamp.pk}/change/").content.decode()
    assert 'name="undo"' not in page and "Photos changed since: no undo" in page

    with schema_context(TENANT):
        remove_image(one, actor="agent-a")  # the label itself deleted: recorded, never undone
        removal = LabelChange.objects.filter(product_id=lamp.pk).first()
    page = admin_client.get(f"{PRODUCTS}{lamp.pk}/change/").content.decode()
    row = page.split(f'id="label-change-{removal.pk}"')[1].split("</tr>")[0]
    assert "“1.svg”, the price label, was deleted: the product has no label now." in row
    assert "A photo was deleted: no undo" in row and 'name="undo"' not in page
    assert messages_of(press(admin_client, lamp, "undo", removal.pk)) == [
        "That change deleted a photo, which cannot be put back from here."
    ]


def test_a_page_showing_photos_someone_changed_since_is_told_so_in_one_sentence(admin_client):
    lamp = product_with_images(4, title="Lamp")
    one, two, three, four = image_ids(lamp, 1, 2, 3, 4)
    page_seen = seen(lamp)
    with schema_context(TENANT):
        move_image(three, 1)  # another agent, a moment ago
    state = sequence(lamp)
    for button, value, fields in [
        ("move_image", one, {"direction": "down"}),
        ("move_image", two, {"to_position": "1"}),
        ("make_label", two, {}),
        ("clear_label", four, {}),
    ]:
        response = press(admin_client, lamp, button, value, page_seen=page_seen, **fields)
        assert messages_of(response) == ["Someone changed this product's photos a moment ago; here they are now."]
        assert response.redirect_chain == [(f"{PRODUCTS}{lamp.pk}/change/#product-images", 302)]
        # The page it lands on shows the photos as they are now, with a fresh token.
        assert f'name="seen" value="{seen(lamp)}"' in response.content.decode()
    assert sequence(lamp) == state and history(lamp) == []


def test_product_page_buttons_show_why_a_call_is_refused_and_change_nothing(admin_client):
    lamp = product_with_images(3, title="Lamp")
    single = product_with_images(1, title="Single")
    desk = product_with_images(2, title="Desk")
    one, two, three = image_ids(lamp, 1, 2, 3)
    before = sequence(lamp)
    refusals = {
        (
            "move_image",
            one,
            "up",
        ): "There is no such position among this product's photos: type a number from the list.",
        ("move_image", three, "down"): "Someone changed this product's photos a moment ago; here they are now.",
        (
            "make_label",
            image_ids(desk, 1)[0],
            "",
        ): "That photo was removed a moment ago; here are the product's photos now.",
        ("make_label", "x", ""): "That photo was removed a moment ago; here are the product's photos now.",
    }
    for (button, image, direction), expected in refusals.items():
        assert messages_of(press(admin_client, lamp, button, image, direction=direction)) == [expected], button
    assert messages_of(press(admin_client, lamp, "move_image", one, to_position="9")) == [
        "There is no such position among this product's photos: type a number from the list."
    ]
    [message] = messages_of(press(admin_client, single, "make_label", image_ids(single, 1)[0]))
    assert message == "A product needs two or more photos to have a price label."
    assert sequence(lamp) == before
    assert history(lamp) == [] and history(single) == []


def test_every_refusal_code_of_the_image_service_has_a_support_sentence():
    codes = {cls.code for cls in _refusal_classes(ImageServiceError)}
    assert codes <= set(SUPPORT_SENTENCES), codes - set(SUPPORT_SENTENCES)


def _refusal_classes(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _refusal_classes(sub)


def test_product_page_buttons_only_post_with_a_csrf_token_and_the_change_permission(client, django_user_model):
    lamp = product_with_images(3, title="Lamp")
    before = sequence(lamp)
    admin_user = django_user_model.objects.create_superuser("boss", password="x")
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(admin_user)
    assert csrf_client.post(f"{PRODUCTS}{lamp.pk}/images/", {"make_label": image_ids(lamp, 1)[0]}).status_code == 403
    assert csrf_client.get(f"{PRODUCTS}{lamp.pk}/images/").status_code == 405

    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_product", "view_productimage"]))
    client.force_login(viewer)
    page = client.get(f"{PRODUCTS}{lamp.pk}/change/").content.decode()
    assert 'id="image-actions"' not in page and "Make label" not in page and 'name="undo"' not in page
    assert client.post(f"{PRODUCTS}{lamp.pk}/images/", {"make_label": image_ids(lamp, 1)[0]}).status_code == 403
    assert sequence(lamp) == before


def test_product_page_warns_when_the_table_and_the_json_disagree(admin_client):
    product = product_with_images(4, title="Lamp", json_count=3)
    page = admin_client.get(f"{PRODUCTS}{product.pk}/change/").content.decode()
    assert 'id="legacy-mismatch"' in page
    assert "The original list has 3 photos, the photo rows 4." in page
    assert "Only in the photo rows: /static/products/placeholders/4.svg?image=Lamp-4" in page


def test_a_finalized_seller_s_pages_work_and_say_the_json_column_is_gone(admin_client):
    product = product_with_images(3, title="Lamp")
    run_sql("ALTER TABLE {products} DROP COLUMN images")  # as finalize_images leaves it (rolled back after the test)

    assert admin_client.get(PRODUCTS).status_code == 200
    page = admin_client.get(f"{PRODUCTS}{product.pk}/change/").content.decode()
    assert 'id="legacy-finalized"' in page
    assert "The original list was retired once every photo was imported (finalize_images)" in page
    assert 'id="legacy-mismatch"' not in page and 'id="legacy-agrees"' not in page
    assert page.count(f">{LABEL_BADGE_TEXT}</span>") == 1  # the rows, as before


def test_image_list_filters_labels_and_names_each_image_by_product_and_position(admin_client):
    lamp = product_with_images(3, title="Lamp")
    desk = product_with_images(2, title="Desk")
    labels = admin_client.get(f"{IMAGES}?label=yes")
    assert listed_ids(labels) == sorted(image_ids(lamp, 3) + image_ids(desk, 2))
    page = labels.content.decode()
    assert f'href="{PRODUCTS}{lamp.pk}/change/">{lamp.pk}: Lamp</a>' in page
    assert f'alt="Product {lamp.pk}, price label"' in page
    page = admin_client.get(f"{IMAGES}?product={lamp.pk}").content.decode()
    assert [f'alt="Product {lamp.pk}, photo {n}"' in page for n in (1, 2)] == [True, True]
    assert "<h1>Product images</h1>" in page and "to change" not in page
    assert '<th scope="col" class="sortable column-url_text">' in page and ">URL</a>" in page
    image = image_ids(lamp, 2)[0]
    page = admin_client.get(f"{IMAGES}{image}/change/").content.decode()
    assert f"<h1>Product {lamp.pk}, photo 2</h1>" in page
    assert f"&rsaquo; Product {lamp.pk}, photo 2\n</div>" in page  # the breadcrumbs too
    assert "<label>URL:</label>" in page


def in_url(text: str) -> set[int]:
    with schema_context(TENANT):
        return set(ProductImage.objects.filter(url__contains=text).values_list("pk", flat=True))


def test_image_search_a_number_finds_the_product_and_the_image_with_that_id_not_every_url_holding_it(admin_client):
    desk = product_with_images(3, title="Desk")
    lamp = product_with_images(2, title=f"Lamp{desk.pk}")  # its URLs hold the desk's id
    with schema_context(TENANT):
        expected = set(ProductImage.objects.filter(Q(product_id=desk.pk) | Q(pk=desk.pk)).values_list("pk", flat=True))
    found = set(listed_ids(admin_client.get(f"{IMAGES}?q={desk.pk}")))
    assert found == expected
    assert set(image_ids(desk, 1, 2, 3)) <= found
    # Not the URLs holding the number (unless the image's id is that number).
    assert set(image_ids(lamp, 1, 2)) <= in_url(str(desk.pk))
    assert not (set(image_ids(lamp, 1, 2)) - {desk.pk}) & found
    assert listed_ids(admin_client.get(f"{IMAGES}?q=+{desk.pk}+")) == sorted(found)  # spaces around it


def test_image_search_text_matches_urls(admin_client):
    lamp = product_with_images(3, title="Lamp")
    desk = product_with_images(2, title="Desk")
    assert listed_ids(admin_client.get(f"{IMAGES}?q=Desk-1")) == image_ids(desk, 1)
    assert listed_ids(admin_client.get(f"{IMAGES}?q=placeholders/2.svg")) == sorted(
        image_ids(lamp, 2) + image_ids(desk, 2)
    )
    assert listed_ids(admin_client.get(f"{IMAGES}?q=lamp-3")) == image_ids(lamp, 3)  # any case
    assert listed_ids(admin_client.get(f"{IMAGES}?q=99999999999999999999999")) == []  # no id that long


def test_image_list_filters_by_product_id(admin_client):
    lamp = product_with_images(3, title="Lamp")
    desk = product_with_images(2, title="Desk")
    response = admin_client.get(f"{IMAGES}?product={lamp.pk}")
    assert listed_ids(response) == image_ids(lamp, 1, 2, 3)
    page = response.content.decode()
    assert f'<li class="selected"><a href="?product={lamp.pk}">Product {lamp.pk}: Lamp</a></li>' in page
    assert listed_ids(admin_client.get(f"{IMAGES}?product={lamp.pk}&label=yes")) == image_ids(lamp, 3)
    assert listed_ids(admin_client.get(f"{IMAGES}?product={desk.pk}&q=Desk-2")) == image_ids(desk, 2)
    # The box to type an id in keeps the list's other parameters.
    page = admin_client.get(f"{IMAGES}?label=yes&q=svg&product={desk.pk}").content.decode()
    form = page.split('class="stoflow-product-filter"')[1].split("</form>")[0]
    assert '<input type="hidden" name="label" value="yes">' in form
    assert '<input type="hidden" name="q" value="svg">' in form
    assert f'name="product" inputmode="numeric" pattern="[0-9]*" size="8" value="{desk.pk}"' in form
    assert listed_ids(admin_client.get(f"{IMAGES}?product=abc")) == []
    assert "Product 999999 (no such product)" in admin_client.get(f"{IMAGES}?product=999999").content.decode()


def test_the_filtered_image_list_exports_as_csv(admin_client, django_user_model):
    lamp = product_with_images(3, title="=cmd|lamp")  # a title a spreadsheet would run as a formula
    product_with_images(2, title="Desk")
    page = admin_client.get(f"{IMAGES}?product={lamp.pk}&o=-5").content.decode()
    link = f'<a href="{IMAGES}export.csv?o=-5&amp;product={lamp.pk}" id="export-csv">'
    assert f"{link}Export these 3 images as CSV</a>" in page
    response = admin_client.get(f"{IMAGES}export.csv?product={lamp.pk}&o=-5")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="{TENANT}-product-images.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["image_id", "product_id", "product_title", "position", "order", "is_label", "url", "created_at"]
    # Ordered as the list was (order, descending), the label first.
    assert [(row[0], row[3], row[4], row[5]) for row in rows[1:]] == [
        (str(image_ids(lamp, 3)[0]), "price label", "3", "True"),
        (str(image_ids(lamp, 2)[0]), "photo 2", "2", "False"),
        (str(image_ids(lamp, 1)[0]), "photo 1", "1", "False"),
    ]
    assert {row[2] for row in rows[1:]} == {"'=cmd|lamp"}

    staff = django_user_model.objects.create_user("helper", password="x", is_staff=True)
    admin_client.force_login(staff)
    assert admin_client.get(f"{IMAGES}export.csv").status_code == 403


def test_product_list_links_each_product_to_its_images(admin_client):
    lamp = product_with_images(3, title="Lamp")
    single = product_with_images(1, title="Single")
    page = admin_client.get(PRODUCTS).content.decode()
    assert "<h1>Products</h1>" in page
    assert f'<a href="{IMAGES}?product={lamp.pk}" title="Product {lamp.pk}\'s images">3 images</a>' in page
    assert f'<a href="{IMAGES}?product={single.pk}" title="Product {single.pk}\'s images">1 image</a>' in page


def test_switching_seller_keeps_the_lists_filters_search_and_ordering(admin_client):
    lamp = product_with_images(3, title="Lamp")
    page = admin_client.get(f"{IMAGES}?product={lamp.pk}&label=yes&q=svg&o=2&p=1").content.decode()
    other = f"/sellers/{OTHER_TENANT}/admin/products/productimage/?product={lamp.pk}&amp;label=yes&amp;q=svg&amp;o=2"
    assert f'<a href="{other}">{OTHER_TENANT}</a>' in page
    # An object page switches to the other seller's bare product list.
    page = admin_client.get(f"{PRODUCTS}{lamp.pk}/change/?_changelist_filters=q%3Dx").content.decode()
    assert f'<a href="/sellers/{OTHER_TENANT}/admin/products/product/">{OTHER_TENANT}</a>' in page


def label_action(client, action: str, ids: list[int], confirm: bool = True, messages: bool = True, **extra):
    """The image list's action on ``ids``, as the list's Go button posts it: the confirmation page
    (``confirm=False``), or, confirmed as its form posts it, the change made (its messages, or with
    ``messages=False`` the response, followed to the bulk change's page)."""
    if not confirm:
        data = {"action": action, "_selected_action": ids, "index": 0, **extra}
        return client.post(IMAGES, data, follow=True)
    data = {"action": action, "_selected_action": ids, "post": "yes", **extra}
    response = client.post(IMAGES, data, follow=True)
    return messages_of(response) if messages else response


def messages_of(response) -> list[str]:
    assert response.status_code == 200
    return [str(message) for message in get_messages(response.wsgi_request)]


def sequence(product) -> list[tuple[int, bool]]:
    """The product's images as (id, is_label), in display order."""
    with schema_context(TENANT):
        return list(product.product_images.order_by("order").values_list("pk", "is_label"))


def history(product) -> list[tuple[str, str]]:
    """The product's admin history: (username, message)."""
    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(Product), object_id=str(product.pk)
    ).order_by("action_time")
    return [(entry.user.username, entry.change_message) for entry in entries]


def test_make_label_first_says_per_product_what_changes_and_changes_nothing(admin_client):
    lamp = product_with_images(4, title="Lamp")
    desk = product_with_images(3, title="Desk", label=0)
    chair = product_with_images(3, title="Chair")
    before = [sequence(lamp), sequence(desk), sequence(chair)]
    ids = image_ids(lamp, 2) + image_ids(desk, 1) + image_ids(chair, 3)
    page = label_action(admin_client, "make_label", ids, confirm=False).content.decode()
    assert "Make price labels: what changes" in page
    assert (
        "2 of the 3 products selected change as below; the others stay as they are. Nothing is written until you "
        "confirm." in page
    )
    assert "“2.svg” (photo 2) becomes the price label and moves last: marketplaces will no longer receive it." in page
    assert (
        "“4.svg”, the label until now, becomes photo 3: marketplaces will receive it (Vinted, eBay and Etsy)." in page
    )
    assert "The product had no label until now." in page  # the desk
    assert "“3.svg” already is the label." in page
    # Across the selection: where the former labels go.
    assert "Afterwards the former price label of 1 of them becomes a photo, sent to marketplaces: Vinted for 1 " in page
    assert page.count('name="_selected_action"') == 3
    assert 'name="post" value="yes"' in page and "Yes, make these labels" in page
    assert 'name="confirm_count"' not in page  # a few products: no number to type
    assert [sequence(lamp), sequence(desk), sequence(chair)] == before
    assert LogEntry.objects.count() == 0


def test_make_label_confirmed_goes_through_the_image_service_as_a_bulk_change_and_is_logged(admin_client):
    lamp = product_with_images(4, title="Lamp")
    desk = product_with_images(3, title="Desk", label=0)
    chair = product_with_images(3, title="Chair")
    lamp_1, lamp_2, lamp_3, lamp_4 = image_ids(lamp, 1, 2, 3, 4)
    desk_1, desk_2, desk_3 = image_ids(desk, 1, 2, 3)
    response = label_action(admin_client, "make_label", [lamp_2, desk_1] + image_ids(chair, 3), messages=False)
    with schema_context(TENANT):
        job = LabelJob.objects.get()
    assert response.redirect_chain == [(f"{IMAGES}label-changes/{job.pk}/", 302)]
    assert messages_of(response) == ["Price labels made: 2 products changed, 1 already as asked."]
    assert (job.action, job.actor, job.finished_at is not None) == ("make_label", "admin", True)
    # The chosen image moves last; the former label becomes the last photo before it.
    assert sequence(lamp) == [(lamp_1, False), (lamp_3, False), (lamp_4, False), (lamp_2, True)]
    assert sequence(desk) == [(desk_2, False), (desk_3, False), (desk_1, True)]
    # The service rewrote the legacy JSON: the admin wrote through it.
    assert [entry["is_label"] for entry in json_images(lamp.pk)] == [False, False, False, True]
    assert history(lamp) == [
        (
            "admin",
            f"Seller {TENANT}: “2.svg” (photo 2) became the price label, moved last: marketplaces no longer receive "
            "it. “4.svg”, the label until then, became photo 3: marketplaces will receive it (Vinted, eBay and Etsy).",
        )
    ]
    assert history(desk) == [
        (
            "admin",
            f"Seller {TENANT}: “1.svg” (photo 1) became the price label, moved last: marketplaces no longer receive "
            "it. The product had no label until then.",
        )
    ]
    assert history(chair) == []
    page = response.content.decode()
    assert "Done: 3 of 3 products." in page and 'id="job-undo"' in page


def test_clear_label_says_what_changes_then_clears_through_the_service(admin_client):
    lamp = product_with_images(4, title="Lamp")
    single = product_with_images(1, title="Single")
    ids = image_ids(lamp, 1, 4) + image_ids(single, 1)  # two of the lamp's: clearing is per product
    page = label_action(admin_client, "clear_label", ids, confirm=False).content.decode()
    assert "1 of the 2 products selected change as below" in page
    assert "“4.svg”, the price label, becomes photo 4: marketplaces will receive it" in page
    assert "The product has no label: nothing changes." in page
    assert "Afterwards the former price label becomes a photo, sent to marketplaces: Vinted for 1 product, " in page
    assert labelled_orders(lamp.pk) == [4]
    assert label_action(admin_client, "clear_label", ids) == [
        "Price labels cleared: 1 product changed, 1 already as asked."
    ]
    assert labelled_orders(lamp.pk) == []
    assert json_images(lamp.pk)[-1]["is_label"] is False
    assert history(lamp) == [
        (
            "admin",
            f"Seller {TENANT}: “4.svg”, the price label, became photo 4: marketplaces will receive it (Vinted, eBay "
            "and Etsy).",
        )
    ]


def test_a_former_label_beyond_a_marketplace_limit_is_said_to_reach_only_the_others(admin_client, settings):
    settings.STOFLOW_MARKETPLACE_PHOTO_LIMITS = {"vinted": 20, "ebay": 3, "etsy": 2}
    lamp = product_with_images(5, title="Lamp")
    page = label_action(admin_client, "make_label", image_ids(lamp, 1), confirm=False).content.decode()
    assert "becomes photo 4: Vinted will receive it (eBay and Etsy take fewer photos)." in page
    assert "sent to marketplaces: Vinted for 1 product, eBay for 0 products and Etsy for 0 products." in page


def test_make_label_refuses_several_images_of_one_product_in_one_short_message(admin_client):
    products = [product_with_images(3, title=f"Lamp {n}") for n in range(30)]
    desk = product_with_images(3, title="Desk")
    before = [sequence(product) for product in products]
    ids = [pk for product in products for pk in image_ids(product, 1, 2)] + image_ids(desk, 1)
    response = label_action(admin_client, "make_label", ids, confirm=False)
    [message] = messages_of(response)
    first = sorted(product.pk for product in products)[:3]
    assert message == (
        f"30 products have several images selected (products {', '.join(map(str, first))} and 27 more): select one "
        "image per product to make labels. No label was changed."
    )
    assert len(message) < 170
    assert "Make price labels" not in response.content.decode()  # no confirmation page
    assert [sequence(product) for product in products] == before
    assert labelled_orders(desk.pk) == [3]


def test_a_selection_across_every_page_is_refused_as_shortly(admin_client):
    products = [product_with_images(2, title=f"Lamp {n}") for n in range(3)]
    [message] = messages_of(
        admin_client.post(
            IMAGES,
            {"action": "make_label", "_selected_action": image_ids(products[0], 1), "select_across": "1", "index": 0},
            follow=True,
        )
    )
    ids = ", ".join(str(product.pk) for product in products)
    assert message == (
        f"3 products have several images selected (products {ids}): select one image per product to make labels. "
        "No label was changed."
    )


def test_one_product_with_several_selected_is_named(admin_client):
    lamp = product_with_images(3, title="Lamp")
    [message] = messages_of(label_action(admin_client, "make_label", image_ids(lamp, 1, 2), confirm=False))
    assert message == (
        f"Product {lamp.pk} has several images selected: select one image per product to make labels. "
        "No label was changed."
    )


def test_the_confirmation_lists_a_long_selection_in_part_and_confirms_it_whole(admin_client, monkeypatch):
    monkeypatch.setattr(label_jobs, "PLANS_SHOWN", 3)
    products_ = [product_with_images(2, title=f"Lamp {n}") for n in range(5)]
    ids = [image_ids(product, 1)[0] for product in products_]
    page = label_action(admin_client, "make_label", ids, confirm=False).content.decode()
    assert page.count('class="stoflow-plan-changes"') == 3
    assert "… and 2 more products, not listed here." in page
    assert label_action(admin_client, "make_label", ids) == ["Price labels made: 5 products changed."]
    assert all(labelled_orders(product.pk) == [2] for product in products_)  # the chosen image, moved last


def test_an_object_history_lists_its_own_sellers_entries_only(admin_client, django_user_model):
    lamp = product_with_images(2, title="Lamp")
    label_action(admin_client, "clear_label", image_ids(lamp, 1))
    # Product ids restart in every seller's schema: another seller's product with the same id.
    LogEntry.objects.create(
        user=django_user_model.objects.get(username="admin"),
        content_type=ContentType.objects.get_for_model(Product),
        object_id=str(lamp.pk),
        object_repr="Other seller's product",
        action_flag=CHANGE,
        change_message=f"Seller {OTHER_TENANT}: Cleared the price label of another seller's product.",
    )
    page = admin_client.get(f"{PRODUCTS}{lamp.pk}/history/").content.decode()
    assert "“2.svg”, the price label, became photo 2" in page
    assert "another seller" not in page
    # The seller's index lists its own entries under "My actions", linked to its own product.
    page = admin_client.get(f"{SELLER}/").content.decode()
    assert f'<a href="{PRODUCTS}{lamp.pk}/change/">' in page
    assert "Other seller&#x27;s product" not in page
    page = admin_client.get(f"/sellers/{OTHER_TENANT}/admin/").content.decode()
    assert "Other seller&#x27;s product" in page


def test_staff_who_may_only_view_get_no_label_actions(client, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_product", "view_productimage"]))
    client.force_login(viewer)
    lamp = product_with_images(3, title="Lamp")
    response = client.get(IMAGES)
    assert response.status_code == 200
    assert 'value="make_label"' not in response.content.decode()
    label_action(client, "make_label", image_ids(lamp, 1), confirm=False)
    assert labelled_orders(lamp.pk) == [3]


def test_thumbnail_escapes_the_url_and_names_the_file_when_it_does_not_load():
    html = thumbnail('https://cdn.example/a"b/photo<1>.jpeg', "Image 1")
    assert 'src="https://cdn.example/a&quot;b/photo&lt;1&gt;.jpeg"' in html
    assert 'loading="lazy"' in html
    assert "image not available: photo&lt;1&gt;.jpeg" in html
    assert thumbnail(None, "none") == "-"
