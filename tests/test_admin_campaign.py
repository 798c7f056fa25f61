"""The campaign as the admin shows it: the seller picker and a seller's index read the run ledger and the
statistics (not a report file, not exact counts), paged and searchable; the run ledger's page in words, with
the controls of a run in progress; "My actions" naming each seller's object; staff who may not see sellers see
no seller names anywhere."""

import re
import threading

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import stoflow.tenants.sites
from products.admin.seller_overview import (
    BACKFILLED,
    FINALIZED,
    FOLLOWING,
    IN_SYNC,
    NOT_MIGRATED,
    PARTLY_BACKFILLED,
    seller_figures,
)
from products.migration.report import ExitCode
from products.models import Product
from stoflow.tenants.models import LedgerEntry, RunControl
from stoflow.tenants.services import ensure_public_tenant
from stoflow.tenants.sites import seller_log_prefix
from tests.helpers import (
    OTHER_TENANT,
    TENANT,
    TEST_TENANTS,
    entries,
    join_all,
    make_product,
    migrated_product,
    run_command,
    run_lifecycle,
    run_sql,
    set_json,
)

UNKNOWN = "user_404"


@pytest.fixture(autouse=True)
def public_site(request):
    """Paths outside /sellers/ are served by the public tenant; requests leave the connection on a seller.
    Inside the test's transaction, unless the test commits (``committed_db``)."""
    if "committed_db" not in request.fixturenames:
        request.getfixturevalue("db")
    else:
        request.getfixturevalue("committed_db")
    ensure_public_tenant()
    yield
    connection.set_schema_to_public()


def picker_rows(response) -> dict:
    return {row.schema: row.figures for row in response.context["sellers"] if row.schema in TEST_TENANTS}


def row_html(page: str, schema: str) -> str:
    return page.split(f'id="seller-{schema}"')[1].split("</tr>")[0]


def staff_with(client, django_user_model, *codenames: str):
    staff = django_user_model.objects.create_user("helper", password="x", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(staff)
    return staff


# The picker: the ledger's latest run, the stage, the statistics


def test_the_picker_shows_each_seller_s_stage_and_latest_live_run_from_the_ledger(admin_client, tmp_path):
    migrated_product(3)
    make_product(title="Legacy only", images=entries(2))  # migrated by the run
    code, _, _ = run_command("--schema", TENANT)
    assert code == ExitCode.OK
    make_product(OTHER_TENANT, images=entries(2))

    page = admin_client.get("/admin/")
    figures = picker_rows(page)
    assert (figures[TENANT].stage, figures[OTHER_TENANT].stage) == (IN_SYNC, NOT_MIGRATED)
    latest = figures[TENANT].latest
    assert (latest.status, latest.checks_passed, latest.images) == (LedgerEntry.DONE, True, 2)
    assert figures[OTHER_TENANT].latest is None and figures[OTHER_TENANT].now is None
    html = page.content.decode()
    row = row_html(html, TENANT)
    assert "In sync" in row and "Done, every check PASS" in row and "2 images migrated, 0 in error" in row
    assert f'href="/admin/tenants/ledgerentry/{latest.entry_id}/change/"' in row
    assert "No live run on record" in row_html(html, OTHER_TENANT)
    assert "Products (about)" in html and "the database's statistics" in html


def test_the_stages_of_a_seller_through_the_campaign(tenant):
    assert seller_figures([TENANT])[TENANT].stage == NOT_MIGRATED
    product = make_product(images=entries(2))
    run_command("--schema", TENANT)
    assert seller_figures([TENANT])[TENANT].stage == IN_SYNC
    # Rows and JSON apart: the next run's check 4 fails, its products are not rebuilt without --sync.
    set_json(product.pk, entries(3))
    run_command("--schema", TENANT)
    assert seller_figures([TENANT])[TENANT].stage == BACKFILLED
    run_command("--schema", TENANT, "--sync", "--follow")
    assert (seller_figures([TENANT])[TENANT].stage, seller_figures([TENANT])[TENANT].follower) == (FOLLOWING, "on")
    code, output = run_lifecycle("finalize_images", "--schema", TENANT)
    assert code == 0, output
    assert seller_figures([TENANT])[TENANT].stage == FINALIZED


def test_an_unfinished_latest_run_is_partly_backfilled(tenant):
    make_product(images=entries(2))
    run_command("--schema", TENANT)
    LedgerEntry.objects.filter(schema_name=TENANT).update(status=LedgerEntry.INTERRUPTED)
    assert seller_figures([TENANT])[TENANT].stage == PARTLY_BACKFILLED


def test_the_picker_costs_four_queries_whatever_the_number_of_sellers(tenant):
    make_product(images=entries(2))
    run_command("--schema", TENANT)
    for schemas in ([TENANT], TEST_TENANTS):
        with CaptureQueriesContext(connection) as queries:
            figures = seller_figures(schemas)
        # django-tenants sets the search path before a query: count the queries proper.
        assert sum(not query["sql"].startswith("SET search_path") for query in queries.captured_queries) == 4
        assert sorted(figures) == sorted(schemas)


def test_products_and_images_are_the_statistics_once_the_server_has_them(committed_db):
    for _ in range(3):
        make_product(images=entries(2))
    run_command("--schema", TENANT)
    # What autovacuum's ANALYZE does in time: the statistics' live rows set from a count of the tables (the
    # inserts and TRUNCATEs of earlier tests leave them off until then), once this session's counts are in.
    run_sql("SELECT pg_stat_force_next_flush()")
    run_sql("SELECT 1")
    run_sql("ANALYZE {products}")
    run_sql("ANALYZE {images}")

    figures = seller_figures([TENANT])[TENANT]

    assert (figures.products, figures.images) == (3, 6)


@pytest.fixture
def committed_superuser(committed_db):
    """A logged-in superuser's client, outside any test transaction (a run in another thread sees the data):
    not pytest-django's admin_client nor django_user_model, which bring one."""
    user = get_user_model().objects.create_superuser("committed-admin", password="x")
    client = Client()
    client.force_login(user)
    try:
        yield client
    finally:
        user.delete()


def test_the_picker_shows_a_run_going_on_now_with_its_progress_and_controls(committed_superuser):
    admin_client = committed_superuser
    ensure_public_tenant()
    for _ in range(30):
        make_product(images=entries(2))
    result = []

    def run():
        try:
            result.append(run_command("--schema", TENANT, "--batch-size", "1", "--pause-ms", "50"))
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        entry = None
        for _ in range(200):
            entry = LedgerEntry.objects.filter(schema_name=TENANT, batches__gte=2).first()
            if entry:
                break
            threading.Event().wait(0.05)
        assert entry is not None, result
        page = admin_client.get("/admin/").content.decode()
        now = row_html(page, TENANT)
        assert "Running" in now and "batches, up to product" in now and "last sign of life" in now
        assert "Partly backfilled" in now
        assert "with a run going on now" in page

        # The entry's page: its controls, for a user with the permission (a superuser here).
        entry_page = admin_client.get(f"/admin/tenants/ledgerentry/{entry.pk}/change/").content.decode()
        assert 'value="pause"' in entry_page and 'value="cancel"' in entry_page and 'value="resume"' not in entry_page
        response = admin_client.post(f"/admin/tenants/ledgerentry/{entry.pk}/control/", {"control": "cancel"})
        assert response.status_code == 302
        control = RunControl.objects.get(run_id=entry.run_id)
        assert (control.requested, control.requested_by) == (RunControl.CANCEL, "committed-admin (admin)")
    finally:
        join_all([thread])
    code, _, output = result[0]
    assert code == ExitCode.INTERRUPTED, output
    closed = LedgerEntry.objects.get(pk=entry.pk)
    assert closed.status == LedgerEntry.INTERRUPTED and closed.message.startswith(
        "cancelled by committed-admin (admin)"
    )


def test_controls_need_the_control_run_permission(client, django_user_model, tenant):
    make_product(images=entries(2))
    run_command("--schema", TENANT)
    entry = LedgerEntry.objects.get(schema_name=TENANT)
    LedgerEntry.objects.filter(pk=entry.pk).update(status=LedgerEntry.RUNNING)
    staff_with(client, django_user_model, "view_ledgerentry")

    page = client.get(f"/admin/tenants/ledgerentry/{entry.pk}/change/").content.decode()
    response = client.post(f"/admin/tenants/ledgerentry/{entry.pk}/control/", {"control": "pause"})

    assert 'id="run-controls"' not in page
    assert response.status_code == 403
    assert not RunControl.objects.exists()


def test_the_ledger_entry_page_reads_as_a_support_agent_reads_it(admin_client, tenant):
    make_product(images=entries(2))
    run_command("--schema", TENANT, "--batch-time", "200ms")
    entry = LedgerEntry.objects.get(schema_name=TENANT)
    LedgerEntry.objects.filter(pk=entry.pk).update(
        client="vm:8666", figures={**entry.figures, "images_migrated": 12345}
    )

    page = admin_client.get(f"/admin/tenants/ledgerentry/{entry.pk}/change/").content.decode()

    assert "The database session that held the lock" in page and f"process {entry.backend_pid} on the database" in page
    assert "Last sign of life" in page and "Heartbeat" not in page
    assert "Started from" in page and "host vm, process 8666" in page and "vm:8666" not in page
    assert "Backend pid" not in page
    # Figures as a small table, one number format.
    assert "<th scope='row'>Images migrated</th><td class='stoflow-number'>12,345</td>" in page
    assert '{"products"' not in page
    assert "batch time 200 ms" in page
    assert 'id="run-controls"' not in page  # done: nothing to control


def test_the_picker_is_paged_and_searchable(admin_client, monkeypatch):
    monkeypatch.setattr(stoflow.tenants.sites, "SELLERS_PER_PAGE", 1)

    first = admin_client.get("/admin/")
    second = admin_client.get("/admin/?p=2")
    searched = admin_client.get(f"/admin/?q={OTHER_TENANT[-3:]}")
    nothing = admin_client.get("/admin/?q=no-such-seller")

    assert [row.schema for row in first.context["sellers"]] == [TENANT]
    assert [row.schema for row in second.context["sellers"]] == [OTHER_TENANT]
    assert 'href="?p=2"' in first.content.decode()
    assert [row.schema for row in searched.context["sellers"]] == [OTHER_TENANT]
    assert "No seller matches “no-such-seller”." in nothing.content.decode()


def test_the_seller_s_index_shows_its_campaign(admin_client, tenant):
    make_product(images=entries(2))
    run_command("--schema", TENANT)

    page = admin_client.get(f"/sellers/{TENANT}/admin/").content.decode()

    campaign = page.split('id="seller-campaign"')[1].split("</table>")[0]
    assert f"Photo migration of {TENANT}" in campaign
    assert "In sync" in campaign and "Done, every check PASS" in campaign and "No run now" in campaign


# "My actions" on the public index, and staff who may not see sellers


def seller_log_entry(user, product) -> LogEntry:
    return LogEntry.objects.create(
        user=user,
        content_type=ContentType.objects.get_for_model(Product),
        object_id=str(product.pk),
        object_repr=f"Product {product.pk}",
        action_flag=CHANGE,
        change_message=seller_log_prefix(TENANT) + "Made image 1 the label.",
        action_time=timezone.now(),
    )


def test_my_actions_on_the_public_index_name_the_seller_and_link_to_the_object(admin_client, django_user_model):
    product = make_product(images=entries(2))
    seller_log_entry(django_user_model.objects.get(username="admin"), product)

    page = admin_client.get("/admin/").content.decode()

    actions = page.split('id="recent-actions-module"')[1]
    assert (
        f'<a href="/sellers/{TENANT}/admin/products/product/{product.pk}/change/">Product {product.pk}</a>' in actions
    )
    assert f"Product of seller {TENANT}" in actions


def test_staff_who_may_not_see_sellers_see_no_seller_name_anywhere(client, django_user_model):
    product = make_product(images=entries(2))
    staff = staff_with(client, django_user_model)
    seller_log_entry(staff, product)

    page = client.get("/admin/").content.decode()
    real = client.get(f"/sellers/{TENANT}/admin/products/product/")
    unknown = client.get(f"/sellers/{UNKNOWN}/admin/products/product/")

    assert TENANT not in page and OTHER_TENANT not in page
    assert f"Product {product.pk}" in page and "Product of a seller," in page  # their action, not the seller
    assert real.status_code == unknown.status_code == 403
    assert real.content.decode().replace(TENANT, UNKNOWN) == unknown.content.decode()
    assert TENANT not in real.content.decode()


def test_the_seller_switch_lists_sellers_only_to_those_who_may_see_them(client, django_user_model):
    staff_with(client, django_user_model, "view_product")
    page = client.get(f"/sellers/{TENANT}/admin/products/product/").content.decode()
    assert re.search(rf'<a href="/sellers/{OTHER_TENANT}/admin/products/product/">{OTHER_TENANT}</a>', page)


def test_the_registry_speaks_of_sellers(admin_client):
    index = admin_client.get("/admin/").content.decode()
    tenants = admin_client.get("/admin/tenants/tenant/").content.decode()

    assert "Sellers and migration runs" in index and "Sellers (tenants)" not in index
    assert "Seller (database schema)" in tenants and "Schema name" not in tenants
