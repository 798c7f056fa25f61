"""Yes/No list filters on the admin's annotations (see products.admin_selectors)."""

from django.contrib import admin
from django.db.models import Q


class YesNoFilter(admin.SimpleListFilter):
    """Keeps the rows matching ``condition`` (Yes) or the others (No)."""

    condition: Q

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(self.condition)
        if self.value() == "no":
            return queryset.exclude(self.condition)
        return queryset


class SoftDeletedFilter(YesNoFilter):
    title = "soft-deleted"
    parameter_name = "deleted"
    condition = Q(deleted_at__isnull=False)


class HasLabelFilter(YesNoFilter):
    title = "has a label"
    parameter_name = "has_label"
    condition = Q(has_label=True)


class MigratedFilter(YesNoFilter):
    title = "migrated (has image rows)"
    parameter_name = "migrated"
    condition = Q(has_rows=True)


class IsLabelFilter(YesNoFilter):
    title = "price label"
    parameter_name = "label"
    condition = Q(is_label=True)
