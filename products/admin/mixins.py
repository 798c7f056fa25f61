"""What both seller ModelAdmins are made of: the admin history kept per seller, browse-only pages, lists
that stay quick on millions of rows, and the stylesheet they load."""

from django.contrib.admin.models import LogEntry

from products.admin.paging import BoundedPaginator, PageFirstChangeList
from stoflow.tenants.sites import seller_log_prefix

ADMIN_CSS = {"all": ["products/admin.css"]}


def seller_prefix(request) -> str:
    return seller_log_prefix(request.tenant.schema_name)


class SellerHistory:
    """The admin history (LogEntry) lives in the public schema, shared by every seller, and product 2 of
    one seller is not product 2 of another: entries written here start with their seller, and an object's
    history page lists its own seller's entries only."""

    def log_seller_change(self, request, obj, message: str) -> None:
        self.log_change(request, obj, seller_prefix(request) + message)

    def get_paginator(self, request, queryset, per_page, *args, **kwargs):
        if queryset.model is LogEntry:  # history_view pages the object's entries through here
            queryset = queryset.filter(change_message__startswith=seller_prefix(request))
        return super().get_paginator(request, queryset, per_page, *args, **kwargs)


class BrowseOnly:
    """Object pages are read-only and nothing is added or deleted; list actions still need the change permission."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)

    def get_model_perms(self, request):
        # The index and the sidebar offer "View", not "Change": the pages show; the changes are buttons.
        return {**super().get_model_perms(request), "change": False}


class QuickLists:
    """The bounded count, the pages within it, the costly columns for the page's rows only (paging.py); no
    second count of the whole table for "(N total)"."""

    paginator = BoundedPaginator
    show_full_result_count = False

    def get_changelist(self, request, **kwargs):
        return PageFirstChangeList
