"""Seller names cannot be probed: under /sellers/, anyone the seller admin refuses gets the same answer,
whether the seller exists or not; staff still reach real sellers. And the public admin's tenant registry
is read-only."""

from urllib.parse import quote, urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from stoflow.tenants.models import Domain, Tenant
from stoflow.tenants.services import ensure_public_tenant
from tests.helpers import TENANT, public_url

UNKNOWN = "user_404"
# Seller paths of every kind: the admin's pages and login, an object page, a catch-all, paths outside the admin.
PATHS = [
    "",
    "admin",
    "admin/",
    "admin/login/",
    "admin/logout/",
    "admin/products/product/",
    "admin/products/productimage/1/change/",
    "admin/no/such/page/",
    "no-such-page",
    "admin/products/product/?q=lamp&deleted=yes",
]


@pytest.fixture(autouse=True)
def public_site(db):
    """Paths outside /sellers/ are served by the public tenant; requests leave the connection on a seller."""
    ensure_public_tenant()
    yield
    connection.set_schema_to_public()


def answer(client, method: str, seller: str, path: str) -> tuple:
    """Everything a visitor sees of a response, with the seller's name written as <seller>."""
    response = getattr(client, method)(f"/sellers/{seller}/{path}")
    headers = {name: value.replace(seller, "<seller>") for name, value in response.headers.items()}
    cookies = sorted(response.cookies)
    return response.status_code, headers, cookies, response.content.decode().replace(seller, "<seller>")


@pytest.mark.parametrize("method", ["get", "post", "head"])
@pytest.mark.parametrize("path", PATHS)
def test_anonymous_visitors_get_the_same_answer_for_real_and_unknown_sellers(client, method, path):
    real = answer(client, method, TENANT, path)
    assert answer(client, method, UNKNOWN, path) == real
    status, headers, _, _ = real
    assert status == 302
    next_page = urlencode({"next": f"/sellers/{TENANT}/{path}"}, safe="/")  # the public login, then back
    assert headers["Location"] == f"{public_url('admin:login')}?{next_page}".replace(TENANT, "<seller>")


def test_logged_in_users_who_are_not_staff_get_the_same_answer_as_anonymous_ones(client, django_user_model):
    anonymous = answer(client, "get", TENANT, "admin/products/product/")
    client.force_login(django_user_model.objects.create_user("customer", password="x"))
    for seller in (TENANT, UNKNOWN):
        assert answer(client, "get", seller, "admin/products/product/")[:3] == anonymous[:3]


def test_after_logging_in_staff_come_back_to_the_seller_page_they_asked_for(client, django_user_model):
    django_user_model.objects.create_superuser("support", password="support-password")
    page = f"/sellers/{TENANT}/admin/products/product/"
    login = client.get(page)["Location"]

    response = client.post(login, {"username": "support", "password": "support-password", "next": page})

    assert response.status_code == 302 and response["Location"] == page
    assert client.get(page).status_code == 200


def test_staff_get_a_plain_not_found_for_an_unknown_seller_or_page(admin_client):
    for path in (f"/sellers/{UNKNOWN}/admin/", f"/sellers/{TENANT}/"):
        response = admin_client.get(path)
        assert response.status_code == 404, path
        assert "URLconf" not in response.content.decode()  # no debug page listing the URL patterns


MODELS = [
    ("tenant", lambda: Tenant.objects.get(schema_name=TENANT)),
    ("domain", lambda: Domain.objects.get(domain=TENANT)),
]


@pytest.mark.parametrize(("model", "get_object"), MODELS, ids=[model for model, _ in MODELS])
def test_tenants_and_domains_are_read_only_in_the_public_admin(admin_client, model, get_object):
    obj = get_object()
    before = list(type(obj).objects.values())
    changelist = public_url(f"admin:tenants_{model}_changelist")
    change = public_url(f"admin:tenants_{model}_change", obj.pk)
    delete = public_url(f"admin:tenants_{model}_delete", obj.pk)

    page = admin_client.get(changelist)
    assert page.status_code == 200
    assert TENANT in page.content.decode()
    assert public_url(f"admin:tenants_{model}_add") not in page.content.decode()
    assert "delete_selected" not in page.content.decode()

    view = admin_client.get(change)
    assert view.status_code == 200  # shown, read-only
    assert not view.context["has_change_permission"]
    assert 'name="_save"' not in view.content.decode()

    assert admin_client.get(public_url(f"admin:tenants_{model}_add")).status_code == 403
    assert admin_client.post(public_url(f"admin:tenants_{model}_add"), {}).status_code == 403
    assert admin_client.post(change, {"schema_name": "hacked", "domain": "hacked"}).status_code == 403
    assert admin_client.get(delete).status_code == 403
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    bulk_delete = {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"}
    admin_client.post(changelist, bulk_delete)
    assert list(type(obj).objects.values()) == before


@pytest.mark.parametrize(
    "seller",
    ["user_1\x00", "user'1", "user\\1", "user;1", "s" * 64],
    ids=["nul", "quote", "backslash", "semicolon", "64-chars"],
)
def test_staff_get_a_not_found_for_a_name_no_schema_can_have_without_looking_it_up(admin_client, seller):
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(f"/sellers/{quote(seller)}/admin/")  # the NUL as %00

    assert response.status_code == 404
    assert not [query for query in queries if Domain._meta.db_table in query["sql"]]
