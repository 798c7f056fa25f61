"""Django settings for the Stoflow data platform."""

import os
from pathlib import Path

from django.urls import reverse_lazy

from stoflow.database_settings import database_settings
from stoflow.env import SettingsError, env_flag, env_int, env_list

BASE_DIR = Path(__file__).resolve().parent.parent

# Production unless DJANGO_DEBUG=1 (the demo, `make admin` and the tests turn it on: Makefile, tests/settings.py).
DEBUG = env_flag("DJANGO_DEBUG", False)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise SettingsError(
            "DJANGO_SECRET_KEY is not set. It is required unless DJANGO_DEBUG=1 (development): set it to a long "
            "random value kept secret, e.g. the output of "
            "`python -c 'from django.core.management.utils import get_random_secret_key as k; print(k())'`."
        )
    SECRET_KEY = "django-insecure-development-only-key"  # DJANGO_DEBUG=1 only

# Comma-separated; in production nothing is served until it names the site's host(s).
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# HTTPS: on by default outside debug, each can be turned off (e.g. DJANGO_SECURE_SSL_REDIRECT=0 when a proxy
# redirects already). HSTS preload is an explicit choice (DJANGO_SECURE_HSTS_PRELOAD=1): once a domain is on the
# browsers' preload lists it is hard to take off.
SECURE_SSL_REDIRECT = env_flag("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_flag("DJANGO_SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_flag("DJANGO_CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)  # a year
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_flag("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_flag("DJANGO_SECURE_HSTS_PRELOAD", False)
# Behind a proxy that ends TLS: the header it sets and its value for HTTPS, e.g. "HTTP_X_FORWARDED_PROTO,https".
_proxy_ssl_header = env_list("DJANGO_SECURE_PROXY_SSL_HEADER", [])
if _proxy_ssl_header and len(_proxy_ssl_header) != 2:
    raise SettingsError(
        f"DJANGO_SECURE_PROXY_SSL_HEADER={os.environ['DJANGO_SECURE_PROXY_SSL_HEADER']!r}: expected "
        "the header and its value for HTTPS, e.g. HTTP_X_FORWARDED_PROTO,https."
    )
SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header) or None

SHARED_APPS = [
    "django_tenants",
    "stoflow.tenants",
    "stoflow.tenants.sites.PublicAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]
TENANT_APPS = [
    "products",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_NAME = "public"
# A seller's pages live under /sellers/<schema>/ (its Domain row is named after the schema),
# so one host and one session cookie serve every seller; other paths are the public site.
TENANT_SUBFOLDER_PREFIX = "sellers"
# SET search_path once per schema switch, not before every cursor: 27 of a tenant's 54 statements in a
# migration were that SET (3 ms a tenant). django-tenants forgets the cached path on a rollback or a
# rollback to a savepoint, which undo a SET, so a rolled-back dry run batch sets it again.
TENANT_LIMIT_SET_CALLS = True

# Describes the database only: its backend, stoflow.db_backend, starts the embedded server on the first connection.
DATABASES = {"default": database_settings(BASE_DIR)}
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's CSS and scripts, the demo's thumbnails) straight from the process, before
    # sessions or tenants are looked at: production runs no separate web server for them.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # django-tenants' subfolder routing, after the user is known: a request under /sellers/ from anyone the seller
    # admin would refuse goes to the login page before the seller is looked up, so seller names cannot be probed.
    "stoflow.tenants.middleware.SellerSubfolderMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "stoflow.urls"  # a seller's URLs, served under its subfolder
PUBLIC_SCHEMA_URLCONF = "stoflow.urls_public"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "stoflow.wsgi.application"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where `manage.py collectstatic` gathers every app's static files, which WhiteNoise serves when DEBUG is off:
# a deployment runs collectstatic whenever the code changes. With DEBUG on, they are served from the apps.
STATIC_ROOT = BASE_DIR / "var" / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Collected files get a gzip copy, which WhiteNoise serves to browsers that accept it. Not the manifest
    # storage (hashed names, cached for ever): any page it renders with DEBUG off needs collectstatic run
    # first, and pytest-django runs every test with DEBUG off.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# After logging in without a safe `next` page: the public admin's index (the seller picker), not Django's
# default /accounts/profile/, which this project has no page for.
LOGIN_REDIRECT_URL = reverse_lazy("admin:index", urlconf=PUBLIC_SCHEMA_URLCONF)

# Product photos (products/images.py, products/selectors.py).
# The image service refuses to grow a product past this many images, its label included;
# products migrated with more keep them.
STOFLOW_MAX_IMAGES_PER_PRODUCT = 20
# Photos a listing may carry on each marketplace: the first ones in order, never the label.
STOFLOW_MARKETPLACE_PHOTO_LIMITS = {"vinted": 20, "ebay": 12, "etsy": 10}
