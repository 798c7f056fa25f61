"""The two admin sites. django-tenants routes by subfolder: /admin/ is the public site
(users, tenants, and the seller picker), /sellers/<schema>/admin/ is one seller's
catalogue. Sessions and users live in the public schema, so one login serves both."""

from dataclasses import dataclass

from django.conf import settings
from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig
from django.contrib.admin.views.main import ERROR_FLAG, PAGE_VAR
from django.urls import NoReverseMatch, reverse
from django_tenants.utils import get_subfolder_prefix

from stoflow.tenants.selectors import tenant_schema_names

SELLER_ADMIN = "seller_admin"
SELLER_LANDING_PAGE = f"{SELLER_ADMIN}:products_product_changelist"
SELLER_IMAGES_PAGE = f"{SELLER_ADMIN}:products_productimage_changelist"


def seller_admin_url(schema: str, viewname: str = SELLER_LANDING_PAGE) -> str:
    """A seller admin page's path under the seller's subfolder (its Domain row is named after the schema)."""
    return f"/{get_subfolder_prefix()}/{schema}" + reverse(viewname, urlconf=settings.ROOT_URLCONF)


@dataclass(frozen=True)
class SellerLink:
    schema: str
    url: str


@dataclass(frozen=True)
class SellerRow:
    """A line of the seller picker: links to the seller's lists the user may see, and its figures."""

    schema: str
    products_url: str  # "" when the user may not see the list
    images_url: str
    figures: object = None  # what ``PublicAdminSite.seller_figures`` gives for the seller


class PublicAdminSite(AdminSite):
    """The admin outside /sellers/: its index lists the sellers, each a link to its catalogue."""

    site_header = "Stoflow admin"
    site_title = "Stoflow admin"
    site_url = None  # the public site has no pages of its own
    index_title = "Sellers and shared settings"
    index_template = "admin/stoflow/public_index.html"
    # The picker's figures: a function of the seller schema names returning {schema: figures}. The
    # products app sets it (stoflow never imports products); without it the picker lists links only.
    seller_figures = None

    def index(self, request, extra_context=None):
        schemas = tenant_schema_names()
        may_see_products = may_view_seller_page(request, SELLER_LANDING_PAGE)
        may_see_images = may_view_seller_page(request, SELLER_IMAGES_PAGE)
        # A staff user who may see neither list gets no links (they would answer 403) and no figures.
        figures = {}
        if (may_see_products or may_see_images) and self.seller_figures is not None:
            figures = self.seller_figures(schemas)
        sellers = [
            SellerRow(
                schema,
                seller_admin_url(schema) if may_see_products else "",
                seller_admin_url(schema, SELLER_IMAGES_PAGE) if may_see_images else "",
                figures.get(schema),
            )
            for schema in schemas
        ]
        context = {"sellers": sellers, "may_browse_sellers": may_see_products or may_see_images}
        return super().index(request, {**context, **(extra_context or {})})


def may_view_seller_page(request, viewname: str) -> bool:
    """Whether the user may see a seller admin list (``seller_admin:<app>_<model>_changelist``)."""
    for model, model_admin in seller_admin_site._registry.items():
        if viewname == f"{SELLER_ADMIN}:{model._meta.app_label}_{model._meta.model_name}_changelist":
            return model_admin.has_view_permission(request)
    return False


def seller_log_prefix(schema: str) -> str:
    """How an admin history entry (LogEntry) names its seller. The history lives in the public schema,
    shared by every seller, and product 2 of one seller is not product 2 of another: a seller's pages
    write entries starting with this and show only theirs."""
    return f"Seller {schema}: "


class SellerAdminSite(AdminSite):
    """One seller's admin: every page names the seller and links to the same page for the others."""

    site_header = "Stoflow admin"
    site_title = "Stoflow seller admin"
    site_url = None
    index_title = "Seller catalogue"
    index_template = "admin/stoflow/seller_index.html"

    def index(self, request, extra_context=None):
        from django.contrib.admin.models import LogEntry  # a model: this module loads before the app registry

        # "My actions": this seller's entries only (Django's list would mix every seller's).
        entries = LogEntry.objects.filter(
            user=request.user, change_message__startswith=seller_log_prefix(request.tenant.schema_name)
        )
        log = entries.select_related("content_type").order_by("-action_time")[:10]
        return super().index(request, {"seller_log": log, **(extra_context or {})})

    def each_context(self, request):
        context = super().each_context(request)
        context["seller"] = request.tenant.schema_name
        if self.has_permission(request):  # the login page lists no sellers
            same_page = self._same_page_viewname(request)
            query = self._same_page_query(request, same_page)
            context["seller_switch"] = [
                SellerLink(schema, seller_admin_url(schema, same_page) + query) for schema in tenant_schema_names()
            ]
            context["public_admin_url"] = reverse("admin:index", urlconf=settings.PUBLIC_SCHEMA_URLCONF)
        return context

    @staticmethod
    def _same_page_viewname(request) -> str:
        # Lists and the index exist for every seller; an object page does not, so it switches to the product list.
        match = request.resolver_match
        if match is None:
            return SELLER_LANDING_PAGE
        viewname = f"{SELLER_ADMIN}:{match.url_name}"
        try:
            reverse(viewname, urlconf=settings.ROOT_URLCONF)
        except NoReverseMatch:
            return SELLER_LANDING_PAGE
        return viewname

    @staticmethod
    def _same_page_query(request, same_page: str) -> str:
        """A list keeps its filters, search and ordering across sellers; not its page number (another
        seller's list may be shorter) nor its error flag. An object page switches to a bare list."""
        match = request.resolver_match
        if match is None or same_page != f"{SELLER_ADMIN}:{match.url_name}":
            return ""
        query = request.GET.copy()
        for name in (PAGE_VAR, ERROR_FLAG):
            query.pop(name, None)
        return f"?{query.urlencode()}" if query else ""


seller_admin_site = SellerAdminSite(name=SELLER_ADMIN)


class PublicAdminConfig(AdminConfig):
    """django.contrib.admin, with the public site as its default site (``admin.site``)."""

    default_site = "stoflow.tenants.sites.PublicAdminSite"
