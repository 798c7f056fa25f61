"""The admin in a real browser: Playwright drives Debian's Chromium against a live server.

Without /usr/bin/chromium the test is skipped, saying why, unless STOFLOW_REQUIRE_BROWSER=1
(CI sets it), where it fails. Screenshots are left in var/screenshots/.
"""

import os
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections
from django.templatetags.static import static
from django_tenants.utils import get_public_schema_name, get_tenant_model, schema_context
from playwright.sync_api import expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

from products.admin_html import LABEL_BADGE_TEXT
from products.models import Product
from stoflow.tenants.services import ensure_public_tenant, ensure_tenant
from tests.helpers import TENANT

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
EXPECTED_LABELS = 3


@pytest.fixture(scope="module")
def seller_catalogue(django_db_setup, django_db_blocker):
    """user_1 with a small migrated catalogue, and a staff login; committed, as the server runs in another thread."""
    with django_db_blocker.unblock():
        ensure_public_tenant()
        ensure_tenant(SELLER)
        with schema_context(SELLER):
            for title, count in CATALOGUE.items():
                Product.objects.create(title=title, images=legacy_images(count))
            Product.objects.create(title=BROKEN_PHOTO, images=[{"url": static("products/missing.svg"), "order": 1}])
        call_command("migrate_images", "--schema", SELLER, "--no-input", "-v", "0")
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


def test_staff_browse_a_sellers_images_and_labels(server, chromium):
    page = chromium.new_page(viewport={"width": 1400, "height": 1400})
    page.set_default_timeout(20_000)

    page.goto(f"{server.url}/admin/")
    page.fill("#id_username", STAFF[0])
    page.fill("#id_password", STAFF[1])
    page.click("input[type=submit]")
    page.locator("#seller-picker").get_by_role("link", name=SELLER, exact=True).click()
    expect(page.locator("#current-seller")).to_have_text(f"Seller {SELLER}")
    expect(page.locator("#result_list tbody tr")).to_have_count(len(CATALOGUE) + 1)
    screenshot(page, "1-products")

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
    labelled_row = page.locator(".stoflow-images tr", has=page.locator(".stoflow-label-badge"))
    expect(labelled_row.locator("img")).to_have_attribute("alt", alts[3])
    expect(page.locator("#legacy-agrees")).to_be_visible()
    screenshot(page, "2-product-with-four-images")

    page.locator("#nav-sidebar").get_by_role("link", name="Product images").click()
    page.locator("#changelist-filter").get_by_role("link", name="Yes").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(EXPECTED_LABELS)
    expect(page.locator("#result_list .stoflow-label-badge")).to_have_count(EXPECTED_LABELS)
    expect(page.locator(".paginator")).to_contain_text(f"{EXPECTED_LABELS} product images")
    wait_for_images_loaded(page, "#result_list img")
    screenshot(page, "3-label-images")

    page.locator("#seller-switch").get_by_role("link", name=TENANT, exact=True).click()
    expect(page.locator("#current-seller")).to_have_text(f"Seller {TENANT}")
    assert page.url.endswith(f"/sellers/{TENANT}/admin/products/productimage/")


def test_an_image_that_does_not_load_is_named_instead(server, chromium):
    page = chromium.new_page()
    page.goto(f"{server.url}/admin/login/")
    page.fill("#id_username", STAFF[0])
    page.fill("#id_password", STAFF[1])
    page.click("input[type=submit]")
    page.goto(f"{server.url}/sellers/{SELLER}/admin/products/product/?q={BROKEN_PHOTO.replace(' ', '+')}")
    page.get_by_role("link", name=BROKEN_PHOTO).click()
    expect(page.locator(".stoflow-images .stoflow-thumb-fallback")).to_have_text("image not available: missing.svg")
    expect(page.locator(".stoflow-images img")).to_be_hidden()
