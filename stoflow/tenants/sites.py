"""The two admin sites. django-tenants routes by subfolder: /admin/ is the public site
(users, tenants, and the seller picker), /sellers/<schema>/admin/ is one seller's
catalogue. Sessions and users live in the public schema, so one login serves both."""

import re
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig
from django.contrib.admin.views.main import ERROR_FLAG, PAGE_VAR
from django.core.paginator import Paginator
from django.urls import NoReverseMatch, reverse
from django_tenants.utils import get_subfolder_prefix

from stoflow.tenants.selectors import campaign_counts, matching_seller_schemas, tenant_schema_names

SELLER_ADMIN = "seller_admin"
SELLER_LANDING_PAGE = f"{SELLER_ADMIN}:products_product_changelist"
SELLER_IMAGES_PAGE = f"{SELLER_ADMIN}:products_productimage_changelist"


# The seller picker shows this many sellers a page: its figures cost the same whatever the fleet's size.
SELLERS_PER_PAGE = 50
SEARCH_VAR = "q"


def seller_admin_url(schema: str, viewname: str = SELLER_LANDING_PAGE, args: tuple = ()) -> str:
    """A seller admin page's path under the seller's subfolder (its Domain row is named after the schema)."""
    return f"/{get_subfolder_prefix()}/{schema}" + reverse(viewname, args=args, urlconf=settings.ROOT_URLCONF)


def ledger_entry_url(entry_id: int) -> str:
    """A run ledger entry's page in the public admin (from a seller's pages too)."""
    return reverse("admin:tenants_ledgerentry_change", args=[entry_id], urlconf=settings.PUBLIC_SCHEMA_URLCONF)


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


@dataclass(frozen=True)
class RecentAction:
    """A line of "My actions": the object, and for a seller's object the seller and the page in its admin."""

    text: str
    kind: str  # the object's type, e.g. "Product"
    action_time: datetime
    flag: str  # addlink, changelink or deletelink
    url: str = ""  # "" when the object is gone or the user may not see it
    seller: str = ""  # "" for a shared object, or when the user may not see sellers


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
        may_see_products = may_view_seller_page(request, SELLER_LANDING_PAGE)
        may_see_images = may_view_seller_page(request, SELLER_IMAGES_PAGE)
        may_browse = may_see_products or may_see_images
        context = {"may_browse_sellers": may_browse, "recent_actions": recent_actions(request, may_browse)}
        # A staff user who may see neither list gets no seller at all: no names, links (they would answer 403)
        # nor figures.
        if may_browse:
            search = request.GET.get(SEARCH_VAR, "").strip()
            page = Paginator(matching_seller_schemas(search), SELLERS_PER_PAGE).get_page(request.GET.get(PAGE_VAR))
            schemas = list(page.object_list)
            figures = self.seller_figures(schemas) if self.seller_figures is not None else {}
            context["sellers"] = [
                SellerRow(
                    schema,
                    seller_admin_url(schema) if may_see_products else "",
                    seller_admin_url(schema, SELLER_IMAGES_PAGE) if may_see_images else "",
                    figures.get(schema),
                )
                for schema in schemas
            ]
            context.update(
                seller_page=page,
                seller_search=search,
                search_var=SEARCH_VAR,
                page_var=PAGE_VAR,
                campaign=campaign_counts(),
                sellers_in_all=matching_seller_schemas().count() if search else page.paginator.count,
            )
        return super().index(request, {**context, **(extra_context or {})})


def may_browse_sellers(request) -> bool:
    """Whether the user may see some seller's catalogue (its products or its images), and so the sellers' names."""
    return may_view_seller_page(request, SELLER_LANDING_PAGE) or may_view_seller_page(request, SELLER_IMAGES_PAGE)


def recent_actions(request, may_browse: bool, limit: int = 10) -> list[RecentAction]:
    """The user's latest admin history entries, each naming and linking its seller's object where it is one
    (their history lives in the public schema, shared); to a user who may not browse sellers, no seller name."""
    from django.contrib.admin.models import LogEntry  # a model: this module loads before the app registry

    actions = []
    for entry in LogEntry.objects.filter(user=request.user).select_related("content_type")[:limit]:
        flag = "addlink" if entry.is_addition() else "deletelink" if entry.is_deletion() else "changelink"
        kind = entry.content_type.name.capitalize() if entry.content_type else ""
        seller = seller_of_log_message(entry.change_message)
        if seller is None:
            url = "" if entry.is_deletion() else entry.get_admin_url() or ""
            actions.append(RecentAction(entry.object_repr, kind, entry.action_time, flag, url))
        elif not may_browse:
            actions.append(RecentAction(entry.object_repr, f"{kind} of a seller", entry.action_time, flag))
        else:
            url = ""
            if not entry.is_deletion() and entry.content_type:
                viewname = f"{SELLER_ADMIN}:{entry.content_type.app_label}_{entry.content_type.model}_change"
                try:
                    url = seller_admin_url(seller, viewname, (entry.object_id,))
                except NoReverseMatch:
                    url = ""
            actions.append(RecentAction(entry.object_repr, kind, entry.action_time, flag, url, seller))
    return actions


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


_SELLER_LOG_PREFIX = re.compile(r"^Seller (\S+): ")


def seller_of_log_message(change_message: str) -> str | None:
    """The seller an admin history entry's message names (``seller_log_prefix``); None: a shared object's."""
    match = _SELLER_LOG_PREFIX.match(change_message or "")
    return match[1] if match else None


class SellerAdminSite(AdminSite):
    """One seller's admin: every page names the seller and links to the same page for the others."""

    site_header = "Stoflow admin"
    site_title = "Stoflow seller admin"
    site_url = None
    index_title = "Seller catalogue"
    index_template = "admin/stoflow/seller_index.html"
    # The seller's migration campaign on its index: the public site's ``seller_figures``, for this seller.
    seller_figures = None

    def index(self, request, extra_context=None):
        from django.contrib.admin.models import LogEntry  # a model: this module loads before the app registry

        schema = request.tenant.schema_name
        # "My actions": this seller's entries only (Django's list would mix every seller's).
        entries = LogEntry.objects.filter(user=request.user, change_message__startswith=seller_log_prefix(schema))
        log = entries.select_related("content_type").order_by("-action_time")[:10]
        context = {"seller_log": log}
        if self.seller_figures is not None:
            context["campaign"] = self.seller_figures([schema]).get(schema)
        return super().index(request, {**context, **(extra_context or {})})

    def each_context(self, request):
        context = super().each_context(request)
        context["seller"] = request.tenant.schema_name
        # The login page lists no sellers, nor a page to a user who may browse none (the middleware refuses it).
        if self.has_permission(request) and may_browse_sellers(request):
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
