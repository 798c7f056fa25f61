"""List filters: Yes/No on the admin's annotations (see products.admin.selectors), and a product's images."""

import re

from django.contrib import admin
from django.db.models import Exists, OuterRef, Q

from products.admin.selectors import products_holding_json_photos
from products.models import Product, ProductImage


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
    """Yes: has image rows (imported). No: has none. Waiting: has none while its legacy JSON (the original list)
    holds photos, what the seller picker counts as not migrated (SQL NULL, JSON null, [] and "[]" hold none)."""

    title = "photos imported"
    parameter_name = "migrated"
    condition = Q(has_rows=True)

    def lookups(self, request, model_admin):
        return [*super().lookups(request, model_admin), ("waiting", "Not yet: photos only in the original list")]

    def queryset(self, request, queryset):
        if self.value() == "waiting":
            return queryset.filter(has_rows=False, pk__in=products_holding_json_photos())
        return super().queryset(request, queryset)


class IsLabelFilter(YesNoFilter):
    """Yes: the labels. No: the photos. Last photo: each product's last photo, the one just before its label
    (or last of all), which is what a cleared label became, and what "Make label" takes back to a label."""

    title = "price label"
    parameter_name = "label"
    condition = Q(is_label=True)

    def lookups(self, request, model_admin):
        return [*super().lookups(request, model_admin), ("last_photo", "Last photo of each product")]

    def queryset(self, request, queryset):
        if self.value() == "last_photo":
            later = ProductImage.objects.filter(
                product=OuterRef("product_id"), order__gt=OuterRef("order"), is_label=False
            )
            return queryset.filter(is_label=False).exclude(Exists(later))
        return super().queryset(request, queryset)


class ProductFilter(admin.SimpleListFilter):
    """The images of one product, by its id (``?product=2``): a box to type the id in, since a seller may
    have thousands of products to choose from. An id that is not a number matches nothing."""

    title = "product"
    parameter_name = "product"
    template = "admin/products/product_filter.html"

    def lookups(self, request, model_admin):
        value = self.value()
        if value is None:
            return []
        product = _product_id(value)
        title = Product.objects.filter(pk=product).values_list("title", flat=True).first() if product else None
        if title is None:
            return [(value, f"Product {value} (no such product)")]
        return [(value, f"Product {value}: {title}" if title else f"Product {value}")]

    def has_output(self):
        return True  # the box, even when no product is chosen

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        product = _product_id(value)
        return queryset.filter(product_id=product) if product else queryset.none()

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "All products",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": True,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }
        # The box's form replaces the query string: it carries the list's other parameters along.
        yield {
            "form": True,
            "value": self.value() or "",
            "keep": [(name, value) for name, value in changelist.params.items() if name != self.parameter_name],
        }


def _product_id(value: str) -> int | None:
    """A product id typed by hand: digits only, within PostgreSQL's bigint."""
    if not re.fullmatch(r"[0-9]{1,18}", value.strip()):
        return None
    return int(value)
