"""Seller routing that does not tell who the sellers are.

django-tenants' subfolder middleware serves ``/sellers/<schema>/...`` from that seller's schema and
answers an unknown ``<schema>`` with a 404, while a real seller's pages send an anonymous visitor to
the login page: anyone could list the sellers by trying names. Here, a request under ``/sellers/``
from anyone the seller admin would refuse (anonymous, inactive or not staff) is sent to the login
page *before* the seller is looked up: the same redirect, to the public admin's login with the
requested path as ``next``, whether the seller exists or not, and without the lookup's query. After
logging in, the user comes back to the page they asked for.

Staff who may see no seller's catalogue (neither the "view product" nor the "view product image"
permission) get a 403, again before the lookup: the same answer for a real seller and an unknown one,
as the public admin shows them no seller names either. Other staff pass through to django-tenants'
routing: a real seller's pages, or a 404 for an unknown one (they see every seller in the public admin
anyway), also for a name no schema can have, which is not looked up.

Why a redirect for both rather than a 404 for both: a seller's pages are bookmarked and linked (the
seller picker, "Switch seller"); an expired session should lead to the login page and back, as the
admin does everywhere else.
"""

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.urls import reverse
from django_tenants.middleware.subfolder import TenantSubfolderMiddleware
from django_tenants.postgresql_backend.base import is_valid_schema_name
from django_tenants.utils import get_subfolder_prefix

from stoflow.tenants.sites import may_browse_sellers, seller_admin_site


def public_login_url() -> str:
    return reverse("admin:login", urlconf=settings.PUBLIC_SCHEMA_URLCONF)


class SellerSubfolderMiddleware(TenantSubfolderMiddleware):
    """``TenantSubfolderMiddleware`` behind a gate: seller paths are for the seller admin's users only.

    Needs ``request.user``: place it after ``AuthenticationMiddleware``.
    """

    def process_request(self, request):
        if request.path.startswith(f"/{get_subfolder_prefix()}/"):
            # Users and sessions live in the public schema; the previous request may have left a seller's.
            connection.set_schema_to_public()
            if not seller_admin_site.has_permission(request):
                return redirect_to_login(request.get_full_path(), public_login_url())
            if not may_browse_sellers(request):
                raise PermissionDenied("your account may not view sellers' catalogues")
        return super().process_request(request)

    def get_tenant(self, domain_model, hostname):
        """The tenant of a seller path; ``hostname`` is the path's seller name (its Domain row is the schema's name).

        A name the tenant model would refuse as a schema name (a NUL, a quote, over 63 characters, ...)
        names no seller: it is answered as an unknown one, a 404, without the query, which a NUL made fail.
        """
        if not is_valid_schema_name(hostname):
            raise domain_model.DoesNotExist(f"no seller can be named {hostname!r}")
        return super().get_tenant(domain_model, hostname)
