"""The production settings, read from the environment in a fresh process as a server or a command starts.

The tests themselves run with the development settings (tests/settings.py); here each case starts
Python with only the variables it names (no DJANGO_* from the shell, no DATABASE_URL) and the
project's own settings module. None of these commands needs the database: none starts one.
"""

import json
import os
import subprocess
import sys

import dj_database_url
import pytest
from django.conf import settings
from django.core.management.utils import get_random_secret_key

from stoflow.database_settings import connection_kwargs

SECRET_KEY = get_random_secret_key()
PRODUCTION = {"DJANGO_SECRET_KEY": SECRET_KEY, "DJANGO_ALLOWED_HOSTS": "stoflow.example"}
PRINT_SETTINGS = (
    "import json, django; django.setup(); from django.conf import settings as s; print(json.dumps({name: "
    "getattr(s, name) for name in ('DEBUG', 'ALLOWED_HOSTS', 'CSRF_TRUSTED_ORIGINS', 'SECURE_SSL_REDIRECT', "
    "'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', "
    "'SECURE_HSTS_PRELOAD', 'SECURE_PROXY_SSL_HEADER')}))"
)
HTTPS_ON = {
    "SECURE_SSL_REDIRECT": True,
    "SESSION_COOKIE_SECURE": True,
    "CSRF_COOKIE_SECURE": True,
    "SECURE_HSTS_SECONDS": 31_536_000,
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
    "SECURE_HSTS_PRELOAD": False,
    "SECURE_PROXY_SSL_HEADER": None,
}
HTTPS_OFF = {**HTTPS_ON, **dict.fromkeys(["SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"], False)}
HTTPS_OFF.update(SECURE_HSTS_SECONDS=0, SECURE_HSTS_INCLUDE_SUBDOMAINS=False)


def run(tmp_path, env: dict, *args: str) -> subprocess.CompletedProcess:
    """``python *args`` in the checkout with ``env`` over the machine's environment less every DJANGO_* variable."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("DJANGO_")}
    clean.pop("DATABASE_URL", None)
    clean.update(DJANGO_SETTINGS_MODULE="stoflow.settings", STOFLOW_PGDATA=str(tmp_path / "pgdata"), **env)
    result = subprocess.run(
        [sys.executable, *args], cwd=settings.BASE_DIR, env=clean, capture_output=True, text=True, timeout=120
    )
    assert not (tmp_path / "pgdata").exists()  # nothing here needs the database
    return result


def read_settings(tmp_path, env: dict) -> dict:
    result = run(tmp_path, env, "-c", PRINT_SETTINGS)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_production_settings_pass_the_deploy_check_cleanly(tmp_path):
    result = run(tmp_path, {**PRODUCTION, "DJANGO_SECURE_HSTS_PRELOAD": "1"}, "manage.py", "check", "--deploy")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "System check identified no issues (0 silenced)."
    assert result.stderr == ""


def test_without_the_preload_choice_the_deploy_check_only_asks_for_it(tmp_path):
    result = run(tmp_path, PRODUCTION, "manage.py", "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 1
    assert result.stderr.count("(security.") == 1
    assert "(security.W021) You have not set the SECURE_HSTS_PRELOAD setting to True" in result.stderr


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param(
            {"DJANGO_SECRET_KEY": SECRET_KEY},
            {"DEBUG": False, "ALLOWED_HOSTS": [], "CSRF_TRUSTED_ORIGINS": [], **HTTPS_ON},
            id="production-by-default",
        ),
        pytest.param(
            {"DJANGO_DEBUG": "1"},
            {
                "DEBUG": True,
                "ALLOWED_HOSTS": ["localhost", "127.0.0.1", "[::1]"],
                "CSRF_TRUSTED_ORIGINS": [],
                **HTTPS_OFF,
            },
            id="debug-needs-no-key",
        ),
        pytest.param(
            {
                "DJANGO_DEBUG": "0",
                "DJANGO_SECRET_KEY": SECRET_KEY,
                "DJANGO_ALLOWED_HOSTS": "stoflow.example, admin.stoflow.example",
                "DJANGO_CSRF_TRUSTED_ORIGINS": "https://admin.stoflow.example",
                "DJANGO_SECURE_SSL_REDIRECT": "false",
                "DJANGO_SECURE_HSTS_SECONDS": "3600",
                "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "no",
                "DJANGO_SECURE_HSTS_PRELOAD": "yes",
                "DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
            },
            {
                "DEBUG": False,
                "ALLOWED_HOSTS": ["stoflow.example", "admin.stoflow.example"],
                "CSRF_TRUSTED_ORIGINS": ["https://admin.stoflow.example"],
                **HTTPS_ON,
                "SECURE_SSL_REDIRECT": False,
                "SECURE_HSTS_SECONDS": 3600,
                "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
                "SECURE_HSTS_PRELOAD": True,
                "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
            },
            id="each-from-its-variable",
        ),
    ],
)
def test_debug_is_off_and_https_on_unless_the_environment_says_otherwise(tmp_path, env, expected):
    assert read_settings(tmp_path, env) == expected


@pytest.mark.parametrize(
    "args",
    [["manage.py", "check"], ["manage.py", "migrate_images", "--check"], ["manage.py", "runserver", "--noreload"]],
    ids=["check", "migrate_images", "runserver"],
)
def test_without_a_secret_key_outside_debug_nothing_starts_and_the_error_names_the_variable(tmp_path, args):
    result = run(tmp_path, {}, *args)

    assert result.returncode == 1
    assert result.stderr.startswith("Error in the settings: DJANGO_SECRET_KEY is not set.")
    assert "DJANGO_DEBUG=1" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_wsgi_application_refuses_to_start_without_a_secret_key(tmp_path):
    result = run(tmp_path, {}, "-c", "import stoflow.wsgi")

    assert result.returncode == 1
    assert "stoflow.env.SettingsError: DJANGO_SECRET_KEY is not set." in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG='maybe': expected 1 or 0"),
        ({"DJANGO_DEBUG": "1", "DJANGO_SECURE_HSTS_SECONDS": "a year"}, "DJANGO_SECURE_HSTS_SECONDS='a year'"),
        ({"DJANGO_DEBUG": "1", "DJANGO_SECURE_PROXY_SSL_HEADER": "https"}, "DJANGO_SECURE_PROXY_SSL_HEADER='https'"),
    ],
)
def test_a_value_that_cannot_be_read_is_named(tmp_path, env, message):
    result = run(tmp_path, env, "manage.py", "check")

    assert result.returncode == 1
    assert result.stderr.startswith(f"Error in the settings: {message}")


def test_a_second_connection_reaches_the_server_a_database_url_names_in_its_query_string():
    # dj-database-url puts ``?host=/socket/dir`` in OPTIONS; the tests' and the database check's own connections
    # went to the default socket directory instead.
    config = dj_database_url.parse("postgresql://stoflow@/shop?host=/run/stoflow&sslmode=disable")
    config["OPTIONS"]["isolation_level"] = 1  # Django's own: not a libpq keyword

    assert connection_kwargs(config) == {"host": "/run/stoflow", "sslmode": "disable", "user": "stoflow"}
