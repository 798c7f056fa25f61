"""A seller's URLs: django-tenants serves them under /sellers/<schema>/ (TENANT_SUBFOLDER_PREFIX)."""

from django.urls import path

from stoflow.tenants.sites import seller_admin_site

urlpatterns = [
    path("admin/", seller_admin_site.urls),
]
