"""Django settings for the Stoflow data platform."""

import os
from pathlib import Path

from stoflow.database_settings import database_settings

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-insecure-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")

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

# Describes the database only: its backend, stoflow.db_backend, starts the embedded server on the first connection.
DATABASES = {"default": database_settings(BASE_DIR)}
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

MIDDLEWARE = [
    "django_tenants.middleware.subfolder.TenantSubfolderMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
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

# Product photos (products/images.py, products/selectors.py).
# The image service refuses to grow a product past this many images, its label included;
# products migrated with more keep them.
STOFLOW_MAX_IMAGES_PER_PRODUCT = 20
# Photos a listing may carry on each marketplace: the first ones in order, never the label.
STOFLOW_MARKETPLACE_PHOTO_LIMITS = {"vinted": 20, "ebay": 12, "etsy": 10}
