"""The web settings as a browser meets them: static files served with DEBUG off (WhiteNoise, after
collectstatic), password rules, where a login ends up, and seller paths no schema can be named by
(tests/test_seller_privacy.py)."""

import re

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.templatetags.static import static
from django.test import override_settings

from stoflow.tenants.services import ensure_public_tenant
from tests.helpers import public_url

PLACEHOLDER = "products/placeholders/1.svg"


@pytest.fixture
def public_site(db):
    ensure_public_tenant()


def test_collected_static_files_are_served_with_debug_off(tmp_path, client, public_site):
    static_root = tmp_path / "static"
    # Production's WhiteNoise: only the collected files (the tests' settings serve the apps' own).
    with override_settings(
        DEBUG=False, STATIC_ROOT=static_root, WHITENOISE_USE_FINDERS=False, WHITENOISE_AUTOREFRESH=False
    ):
        call_command("collectstatic", "--noinput", verbosity=0)
        assert (static_root / PLACEHOLDER).is_file()
        login_page = client.get(public_url("admin:login")).content.decode()
        stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+\.css)"', login_page)

        assert stylesheets, login_page
        for url in [*stylesheets, static(PLACEHOLDER)]:
            response = client.get(url)
            assert response.status_code == 200, url
            content_type = "image/svg+xml" if url.endswith(".svg") else 'text/css; charset="utf-8"'
            assert response["Content-Type"] == content_type, url
        # The gzip copy collectstatic made, for browsers that accept it.
        compressed = client.get(stylesheets[0], headers={"Accept-Encoding": "gzip"})
        assert compressed.status_code == 200 and compressed["Content-Encoding"] == "gzip"


@pytest.mark.parametrize("password", ["password", "12345678", "short", "alice-smith"])
def test_a_weak_password_is_refused(django_user_model, password):
    user = django_user_model(username="alice-smith", email="alice.smith@example.com")

    with pytest.raises(ValidationError):
        validate_password(password, user)


def test_a_strong_password_is_accepted(django_user_model):
    validate_password("umber-quiet-lantern-42", django_user_model(username="alice-smith"))


def test_after_logging_in_with_an_unsafe_next_page_the_user_lands_on_the_admin_index(
    client, django_user_model, public_site
):
    django_user_model.objects.create_superuser("support", password="umber-quiet-lantern-42")
    login = public_url("admin:login")

    response = client.post(
        f"{login}?next=https://evil.example/",
        {"username": "support", "password": "umber-quiet-lantern-42", "next": "https://evil.example/"},
    )

    assert response.status_code == 302
    assert response["Location"] == public_url("admin:index")
    assert client.get(response["Location"]).status_code == 200
