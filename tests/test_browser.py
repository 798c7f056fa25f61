"""The admin in a real browser: Playwright drives Debian's Chromium against a live server.

Without /usr/bin/chromium the test is skipped, saying why, unless STOFLOW_REQUIRE_BROWSER=1
(CI sets it), where it fails. Screenshots are left in var/screenshots/.
"""

import os
import re
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections
from django.db.models import Q
from django.templatetags.static import static
from django_tenants.utils import get_public_schema_name, get_tenant_model, schema_context
from playwright.sync_api import expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

from products.admin import label_jobs
from products.admin.html import LABEL_BADGE_TEXT
from products.images import move_image
from products.models import Product, ProductImage
from stoflow.tenants.services import ensure_public_tenant, ensure_tenant
from tests.helpers import TENANT, join_all, make_product

# django_db: pytest-django creates the test database only for the tests that ask for one.
pytestmark = [pytest.mark.browser, pytest.mark.django_db]

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium stalls on a network that reaches none of its services.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"
SELLER = "user_1"
STAFF = ("browser-staff", "browser-staff-password")
# Titles and image counts; the migration makes the last image of a product with two or more its label.
CATALOGUE = {"Four photos": 4, "Three photos": 3, "Two photos": 2, "No photo": 0}
BROKEN_PHOTO = "Broken photo"  # one image whose URL does not load
WAITING = "Waiting"  # added after the migration: its photos are only in the legacy JSON
EXPECTED_LABELS = 3
# The seller picker's words for SELLER: its stage and its latest live run, from the run ledger.
EXPECTED_CAMPAIGN = {"stage": "In sync", "latest-run": "Done, every check PASS", "now": "No run now"}
DESKTOP, PHONE = {"width": 1366, "height": 900}, {"width": 375, "height": 800}


@pytest.fixture(scope="module")
def seller_catalogue(django_db_setup, django_db_blocker, tmp_path_factory):
    """user_1 with a small migrated catalogue (its run in the ledger, which the seller picker reads), and a
    staff login; committed, as the server runs in another thread."""
    with django_db_blocker.unblock():
        ensure_public_tenant()
        ensure_tenant(SELLER)
        for title, count in CATALOGUE.items():
            make_product(SELLER, title=title, images=legacy_images(count))
        make_product(SELLER, title=BROKEN_PHOTO, images=[{"url": static("products/missing.svg"), "order": 1}])
        call_command("migrate_images", "--schema", SELLER, "--no-input", "-v", "0")
        make_product(SELLER, title=WAITING, images=legacy_images(2))
        get_user_model().objects.create_superuser(STAFF[0], password=STAFF[1])
        try:
            yield
        finally:
            get_user_model().objects.filter(username=STAFF[0]).delete()
            get_tenant_model().objects.get(schema_name=SELLER).delete(force_drop=True)
            get_tenant_model().objects.filter(schema_name=get_public_schema_name()).delete()


def legacy_images(count: int) -> list[dict]:
    return [
        {"url": static(f"products/placeholders/{order}.svg"), "order": order, "created_at": "2025-06-01T08:00:00Z"}
        for order in range(1, count + 1)
    ]


@pytest.fixture(scope="module")
def server(seller_catalogue):
    """pytest-django's live server, serving static files. Not its live_server fixture: that one brings
    transactional_db, whose flush would empty the shared tables (users, the tenant registry) other tests use."""
    live = LiveServer("localhost")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        reason = f"Chromium not found at {CHROMIUM}: apt-get install chromium"
        if os.environ.get("STOFLOW_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason} (STOFLOW_REQUIRE_BROWSER=1: the browser test is mandatory)")
        pytest.skip(reason)
    # Playwright's sync API keeps an event loop in this thread, where Django then refuses the ORM (the test's
    # database set-up and teardown); nothing here is really async, so that check is lifted while it runs.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
        connections.close_all()  # the ones opened in Playwright's context, or the test database cannot be dropped


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    print(f"Screenshot: {path}")


def wait_for_images_loaded(page, selector: str) -> None:
    page.wait_for_function(
        "selector => [...document.querySelectorAll(selector)].every(img => img.complete && img.naturalWidth > 0)",
        arg=selector,
    )


def shoot(page, name: str, phone: bool = False) -> None:
    """A screenshot at a laptop's width (1366 px) and, for the list pages, at a phone's (375 px)."""
    screenshot(page, f"{name}-1366")
    if phone:
        page.set_viewport_size(PHONE)
        screenshot(page, f"{name}-375")
        page.set_viewport_size(DESKTOP)


@pytest.fixture
def page(server, chromium):
    """A logged-in staff user's page at 1366 px."""
    page = chromium.new_page(viewport=DESKTOP)
    page.set_default_timeout(20_000)
    page.goto(f"{server.url}/admin/login/")
    page.fill("#id_username", STAFF[0])
    page.fill("#id_password", STAFF[1])
    page.click("input[type=submit]")
    expect(page.locator("#seller-picker")).to_be_visible()
    yield page
    page.close()


def seller_url(server, path: str = "") -> str:
    return f"{server.url}/sellers/{SELLER}/admin/products/{path}"


def four_photos() -> Product:
    with schema_context(SELLER):
        return Product.objects.get(title="Four photos")


def result_rows(page):
    return page.locator("#result_list tbody tr")


def test_the_seller_picker_shows_each_sellers_stage_and_latest_run(page):
    row = page.locator(f"#seller-{SELLER}")
    for figure, words in EXPECTED_CAMPAIGN.items():
        expect(row.locator(f'[data-figure="{figure}"]')).to_contain_text(words)
    expect(row.locator('[data-figure="latest-run"]')).to_contain_text("10 images migrated, 0 in error")
    expect(page.locator(f"#seller-{TENANT}")).to_contain_text("No live run on record")
    expect(page.locator("#campaign-summary")).to_contain_text("in sync at their latest live run")
    shoot(page, "0-sellers", phone=True)
    row.locator('[data-figure="products"]').get_by_role("link").click()
    expect(result_rows(page)).to_have_count(len(CATALOGUE) + 2)


def test_staff_browse_a_sellers_images_and_labels(page, server):
    page.locator("#seller-picker").get_by_role("link", name=SELLER, exact=True).click()
    expect(page.locator("#current-seller")).to_have_text(f"Seller {SELLER}")
    expect(page.locator("h1")).to_have_text("Products")
    expect(result_rows(page)).to_have_count(len(CATALOGUE) + 2)
    shoot(page, "1-products", phone=True)

    page.get_by_role("link", name="Four photos").click()
    thumbnails = page.locator(".stoflow-images img")
    expect(thumbnails).to_have_count(4)
    wait_for_images_loaded(page, ".stoflow-images img")
    alts = [thumbnails.nth(i).get_attribute("alt") for i in range(4)]
    assert [re.match(r"Product \d+, (.*)", alt).group(1) for alt in alts] == [
        "photo 1",
        "photo 2",
        "photo 3",
        "price label",
    ]
    assert [thumbnails.nth(i).get_attribute("src") for i in range(4)] == [i["url"] for i in legacy_images(4)]
    badges = page.locator(".stoflow-images .stoflow-label-badge")
    expect(badges).to_have_count(1)
    expect(badges).to_have_text(LABEL_BADGE_TEXT)
    labelled_row = page.locator("#product-photos tr", has=page.locator(".stoflow-label-badge"))
    expect(labelled_row.locator("img")).to_have_attribute("alt", alts[3])
    expect(page.locator("#legacy-agrees")).to_be_visible()
    expect(page.locator("#marketplace-photos li")).to_have_text(
        ["Vinted: photos 1-3, label left out", "eBay: photos 1-3, label left out", "Etsy: photos 1-3, label left out"]
    )
    shoot(page, "2-product-with-four-images", phone=True)

    page.locator("#nav-sidebar").get_by_role("link", name="Product images").click()
    expect(page.locator("h1")).to_have_text("Product images")
    page.locator("#changelist-filter").get_by_role("link", name="Yes").click()
    expect(result_rows(page)).to_have_count(EXPECTED_LABELS)
    expect(page.locator("#result_list .stoflow-label-badge")).to_have_count(EXPECTED_LABELS)
    expect(page.locator(".paginator")).to_contain_text(f"{EXPECTED_LABELS} product images")
    wait_for_images_loaded(page, "#result_list img")
    shoot(page, "3-label-images", phone=True)

    page.locator("#seller-switch").get_by_role("link", name=TENANT, exact=True).click()
    expect(page.locator("#current-seller")).to_have_text(f"Seller {TENANT}")
    assert page.url.endswith(f"/sellers/{TENANT}/admin/products/productimage/?label=yes")


def test_make_a_label_on_the_product_page_and_the_badge_moves_to_the_last_image(page, server):
    product = four_photos()
    page.goto(seller_url(server, f"product/{product.pk}/change/"))
    first = page.locator("#product-photos tbody tr").first
    first_src = first.locator("img").get_attribute("src")
    first.get_by_role("button", name="Make label…").click()
    # Asked first: what changes, and what each marketplace receives afterwards.
    expect(page.locator("h1")).to_have_text("Make the price label: what changes")
    expect(page.locator(".stoflow-afterwards-lines li")).to_have_text(
        ["Vinted: photos 1-3, label left out", "eBay: photos 1-3, label left out", "Etsy: photos 1-3, label left out"]
    )
    shoot(page, "4a-make-label-confirmation", phone=True)
    page.get_by_role("button", name="Yes, make this label").click()
    expect(page.locator(".messagelist .success")).to_contain_text("became the price label, moved last")
    rows = page.locator("#product-photos tbody tr")
    expect(rows).to_have_count(4)
    badges = page.locator(".stoflow-images .stoflow-label-badge")
    expect(badges).to_have_count(1)
    last = rows.last
    expect(last.locator(".stoflow-label-badge")).to_have_text(LABEL_BADGE_TEXT)
    expect(last.locator("img")).to_have_attribute("src", first_src)
    expect(last.locator("img")).to_have_attribute("alt", f"Product {product.pk}, price label")
    # The former label (4.svg) is now the last photo, which marketplaces receive.
    expect(rows.nth(2).locator("img")).to_have_attribute("src", legacy_images(4)[3]["url"])
    wait_for_images_loaded(page, ".stoflow-images img")
    shoot(page, "4-product-after-make-label")

    rows.nth(2).get_by_role("button", name="Move photo 3 up").click()
    expect(page.locator(".messagelist .success")).to_have_text("Moved photo 3 to position 2.")
    expect(page.locator("#product-photos tbody tr").nth(1).locator("img")).to_have_attribute(
        "src", legacy_images(4)[3]["url"]
    )
    page.get_by_role("link", name="History").click()
    expect(page.locator("#change-history tbody tr")).to_have_count(2)
    shoot(page, "5-product-history")


def test_image_search_a_number_is_an_id_text_is_in_urls(page, server):
    product = four_photos()
    with schema_context(SELLER):
        by_number = ProductImage.objects.filter(Q(product_id=product.pk) | Q(pk=product.pk)).count()
        by_text = ProductImage.objects.filter(url__contains="3.svg").count()
    page.goto(seller_url(server, "productimage/"))
    page.fill("#searchbar", str(product.pk))
    page.press("#searchbar", "Enter")
    expect(result_rows(page)).to_have_count(by_number)
    expect(page.locator("#result_list")).to_contain_text(f"{product.pk}: Four photos")
    shoot(page, "6-images-search-number", phone=True)
    page.fill("#searchbar", "3.svg")
    page.press("#searchbar", "Enter")
    expect(result_rows(page)).to_have_count(by_text)
    assert by_text == 2  # Four photos' and Three photos' third image


def test_the_product_filter_survives_a_seller_switch(page, server):
    product = four_photos()
    page.goto(seller_url(server, "product/"))
    page.get_by_role("link", name="4 images").first.click()
    expect(result_rows(page)).to_have_count(4)
    page.locator("#changelist-filter").get_by_role("link", name="Yes").click()
    expect(result_rows(page)).to_have_count(1)
    expect(page.locator("#product-filter .selected")).to_have_text(f"Product {product.pk}: Four photos")
    shoot(page, "7-images-of-one-product", phone=True)
    page.locator("#seller-switch").get_by_role("link", name=TENANT, exact=True).click()
    expect(page.locator("#current-seller")).to_have_text(f"Seller {TENANT}")
    url = urlsplit(page.url)
    assert url.path == f"/sellers/{TENANT}/admin/products/productimage/"
    assert parse_qs(url.query) == {"product": [str(product.pk)], "label": ["yes"]}
    expect(page.locator("#product-filter-id")).to_have_value(str(product.pk))
    page.locator("#seller-switch").get_by_role("link", name=SELLER, exact=True).click()
    expect(result_rows(page)).to_have_count(1)
    # Typing another product's id keeps the label filter.
    page.fill("#product-filter-id", "2")
    page.locator("#product-filter").get_by_role("button", name="Show").click()
    assert parse_qs(urlsplit(page.url).query) == {"product": ["2"], "label": ["yes"]}
    expect(result_rows(page)).to_have_count(1)


def test_the_seller_index_and_an_image_page_say_what_they_are(page, server):
    page.goto(seller_url(server).removesuffix("products/"))
    expect(page.locator("#content-main .viewlink")).to_have_count(2)
    shoot(page, "9-seller-index", phone=True)
    product = four_photos()
    with schema_context(SELLER):
        image = ProductImage.objects.filter(product=product, is_label=False).order_by("order")[1]
    page.goto(seller_url(server, f"productimage/{image.pk}/change/"))
    expect(page.locator("h1")).to_have_text(f"Product {product.pk}, photo 2")
    expect(page.locator(".field-full_url label")).to_have_text("URL:")
    shoot(page, "10-image-page")


def test_clear_label_from_the_image_list_asks_first(page, server):
    page.goto(seller_url(server, "productimage/?label=yes"))
    result_rows(page).first.locator("input.action-select").check()
    page.select_option("select[name=action]", "clear_label")
    page.get_by_role("button", name="Go", exact=True).click()
    expect(page.locator("h1")).to_have_text("Clear the price label: what changes")
    expect(page.locator("#label-plan li.stoflow-plan-changes")).to_have_count(1)
    shoot(page, "8-clear-label-confirmation", phone=True)
    page.get_by_role("link", name="No, take me back").click()
    expect(result_rows(page)).to_have_count(EXPECTED_LABELS)


def test_an_image_that_does_not_load_is_named_instead(page, server):
    page.goto(f"{server.url}/sellers/{SELLER}/admin/products/product/?q={BROKEN_PHOTO.replace(' ', '+')}")
    page.get_by_role("link", name=BROKEN_PHOTO).click()
    expect(page.locator(".stoflow-images .stoflow-thumb-fallback")).to_have_text("image not available: missing.svg")
    expect(page.locator(".stoflow-images img")).to_be_hidden()


def product_titled(title: str) -> Product:
    with schema_context(SELLER):
        return Product.objects.get(title=title)


def test_a_label_change_is_undone_from_the_product_page_after_a_confirmation(page, server):
    product = product_titled("Three photos")
    page.goto(seller_url(server, f"product/{product.pk}/change/"))
    label_row = page.locator("#product-photos tbody tr").last
    label_row.get_by_role("button", name="Clear label…").click()
    expect(page.locator("#label-plan")).to_contain_text("the price label, becomes photo 3")
    page.get_by_role("button", name="Yes, clear this label").click()
    expect(page.locator(".stoflow-images .stoflow-label-badge")).to_have_count(0)
    history = page.locator("#label-history tbody tr")
    expect(history).to_have_count(1)
    expect(history.first).to_contain_text(STAFF[0])
    shoot(page, "11-label-history-with-undo")
    history.first.get_by_role("button", name="Undo…").click()
    expect(page.locator("h1")).to_have_text("Undo the label change: what changes")
    shoot(page, "12-undo-confirmation")
    page.get_by_role("button", name="Yes, undo this change").click()
    expect(page.locator(".messagelist .success")).to_contain_text("Undid the change of")
    expect(page.locator("#product-photos tbody tr").last.locator(".stoflow-label-badge")).to_have_text(LABEL_BADGE_TEXT)
    expect(page.locator("#label-history tbody tr")).to_have_count(2)


def test_a_product_id_searched_opens_the_product(page, server):
    product = product_titled("Two photos")
    page.goto(seller_url(server, "product/"))
    page.fill("#searchbar", str(product.pk))
    page.press("#searchbar", "Enter")
    expect(page.locator("h1")).to_have_text(f"Product {product.pk}: Two photos")
    expect(page.locator(".messagelist .info")).to_contain_text(f"Opened product {product.pk}")
    expect(page.locator("#product-images-link")).to_have_text("Its 2 images in the image list")
    shoot(page, "13-opened-by-id")
    page.locator(".messagelist .info").get_by_role("link", name=f"Titles holding {product.pk}").click()
    expect(page.locator("h1")).to_have_text("Products")


def test_a_photo_moves_to_a_typed_position_in_one_step_from_the_keyboard(page, server):
    product = four_photos()
    with schema_context(SELLER):
        photos = list(ProductImage.objects.filter(product=product, is_label=False).order_by("order"))
    last = photos[-1]
    page.goto(seller_url(server, f"product/{product.pk}/change/"))
    box = page.locator(f"#position-{last.pk}")
    box.focus()
    page.keyboard.press("Control+A")
    page.keyboard.type("1")
    page.keyboard.press("Enter")  # the photo's own form: Enter moves this photo
    expect(page.locator(".messagelist .success")).to_have_text(f"Moved photo {len(photos)} to position 1.")
    expect(page.locator("#product-photos tbody tr").first.locator("img")).to_have_attribute("src", last.url)
    shoot(page, "14-moved-to-position-1")


def test_someone_elses_change_in_between_is_said_in_one_sentence_and_the_page_shows_the_photos_now(page, server):
    product = four_photos()
    page.goto(seller_url(server, f"product/{product.pk}/change/"))
    expect(page.locator("#product-photos tbody tr")).to_have_count(4)
    with schema_context(SELLER):
        first, second = ProductImage.objects.filter(product=product, is_label=False).order_by("order")[:2]
    committed_elsewhere(lambda: move_image(second, 1))  # another agent, a moment ago
    page.locator("#product-photos tbody tr").nth(2).get_by_role("button", name="Move photo 3 up").click()
    expect(page.locator(".messagelist .warning")).to_have_text(
        "Someone changed this product's photos a moment ago; here they are now."
    )
    expect(page.locator("#product-photos tbody tr").first.locator("img")).to_have_attribute("src", second.url)
    shoot(page, "15-changed-meanwhile", phone=True)


def committed_elsewhere(call) -> None:
    """Run ``call`` in the seller's schema on a thread of its own, whose connection commits (the test's own
    transaction would hold the product's lock from the server until the test ends)."""
    failures = []

    def run():
        try:
            with schema_context(SELLER):
                call()
        except Exception as error:  # reported below
            failures.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name="another agent")
    thread.start()
    join_all([thread])
    assert not failures, failures


def assert_fits(page) -> None:
    """The list's table fits its box: nothing clipped, no sideways scrolling."""
    widths = page.locator("#changelist .results").evaluate("box => [box.scrollWidth, box.clientWidth]")
    assert widths[0] <= widths[1], f"the list is {widths[0]} px wide in a box of {widths[1]} px"


def right_edge(locator) -> float:
    box = locator.bounding_box()
    return box["x"] + box["width"]


def test_the_lists_read_on_a_phone_and_on_a_laptop_with_the_side_navigation_open(page, server):
    page.set_viewport_size(PHONE)
    page.goto(seller_url(server, "productimage/"))
    filters, table = page.locator("#changelist-filter"), page.locator("#result_list")
    assert filters.bounding_box()["y"] < table.bounding_box()["y"]  # the filters first
    assert_fits(page)
    row = result_rows(page).first
    visible = right_edge(page.locator("#changelist .results"))
    for cell in ("td.field-position", "td.field-url_text", "td.field-product_link"):
        expect(row.locator(cell)).to_be_visible()
        assert right_edge(row.locator(cell)) <= visible, cell
    label_row = result_rows(page).filter(has=page.locator(".stoflow-label-badge")).first
    assert right_edge(label_row.locator(".stoflow-label-badge")) <= visible
    expect(row.locator("td.field-url_text")).to_contain_text("/…/")
    screenshot(page, "16-images-375")
    page.goto(seller_url(server, "product/"))
    assert page.locator("#changelist-filter").bounding_box()["y"] < page.locator("#result_list").bounding_box()["y"]
    assert_fits(page)
    screenshot(page, "17-products-375")

    page.set_viewport_size(DESKTOP)
    page.goto(seller_url(server, "productimage/"))
    expect(page.locator("#nav-sidebar")).to_be_visible()
    assert_fits(page)
    screenshot(page, "18-images-navigation-open-1366")


def test_a_large_bulk_change_asks_for_the_number_runs_in_batches_and_is_undone_whole(page, server, monkeypatch):
    # The live server runs in this process: a bound of 1 and batches of 1 product make three products "large".
    monkeypatch.setattr(label_jobs, "TYPED_CONFIRMATION_ABOVE", 1)
    monkeypatch.setattr(label_jobs, "BATCH_PRODUCTS", 1)
    page.goto(seller_url(server, "productimage/?label=yes"))
    labels = result_rows(page).count()
    page.locator("#action-toggle").check()
    page.select_option("select[name=action]", "clear_label")
    page.get_by_role("button", name="Go", exact=True).click()
    expect(page.locator("#label-plan-afterwards")).to_contain_text("Afterwards the former price label becomes a photo")
    page.fill("#confirm-count", str(labels))
    shoot(page, "19-bulk-confirmation-typed", phone=True)
    page.get_by_role("button", name="Yes, clear these labels").click()
    # The page's script advances it a batch per request, then shows the outcome.
    expect(page.locator("#job-outcome")).to_contain_text(f"{labels} changed")
    expect(page.locator("#job-progress-text")).to_have_text(f"Done: {labels} of {labels} products.")
    shoot(page, "20-bulk-change-done", phone=True)
    page.locator("#job-undo").click()
    expect(page.locator("h1")).to_have_text("Undo label changes: what changes")
    page.fill("#confirm-count", str(labels))
    page.get_by_role("button", name="Yes, undo these changes").click()
    expect(page.locator("#job-outcome")).to_contain_text(f"{labels} changed")
    page.goto(seller_url(server, "productimage/?label=yes"))
    expect(result_rows(page)).to_have_count(labels)
