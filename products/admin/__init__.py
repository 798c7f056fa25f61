"""A seller's catalogue in the seller admin (/sellers/<schema>/admin/): browse products and their
images. The changes offered (make or clear a label, move a photo up or down) all go through the
image service (products/images.py) and are logged in the admin history."""

import csv
import io
import re

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import LogEntry
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponseNotAllowed, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from products.admin.filters import HasLabelFilter, IsLabelFilter, MigratedFilter, ProductFilter, SoftDeletedFilter
from products.admin.html import label_badge, thumbnail
from products.admin.image_actions import OPERATIONS as IMAGE_OPERATIONS
from products.admin.label_plans import (
    LabelChange,
    listing_line,
    plan_clear_labels,
    plan_make_labels,
    several_per_product,
)
from products.admin.selectors import (
    compare_with_legacy_json,
    image_title,
    images_with_position,
    product_image_rows,
    products_with_image_summary,
)
from products.admin.seller_overview import seller_figures
from products.images import ImageServiceError, clear_label, set_label
from products.models import Product, ProductImage
from products.selectors import listing_photo_summary
from stoflow.tenants.sites import seller_admin_site, seller_log_prefix

ADMIN_CSS = {"all": ["products/admin.css"]}
# The public admin's seller picker shows each seller's figures (stoflow.tenants.sites never imports products).
admin.site.seller_figures = seller_figures
BIGINT_MAX = 2**63 - 1  # ids are PostgreSQL bigints: a longer number is no id
# The confirmation page of a label change lists this many products; a longer selection says how many more.
PLANS_SHOWN = 100


CSV_COLUMNS = ["image_id", "product_id", "product_title", "position", "order", "is_label", "url", "created_at"]


def csv_lines(images):
    """The images as CSV lines, header first, read in chunks. A text cell a spreadsheet would take for a
    formula (=, +, -, @ first) is quoted with a leading apostrophe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield line(CSV_COLUMNS)
    for image in images.iterator(chunk_size=2000):
        yield line(
            [
                image.pk,
                image.product_id,
                _cell(image.product.title),
                "price label" if image.is_label else f"photo {image.position}",
                image.order,
                image.is_label,
                _cell(image.url),
                image.created_at.isoformat(),
            ]
        )


def _cell(text: str) -> str:
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def may_change_images(request) -> bool:
    """Label and order changes, from the image list or the product page, need the image change permission."""
    opts = ProductImage._meta
    return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('change', opts)}")


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


@admin.register(Product, site=seller_admin_site)
class ProductAdmin(SellerHistory, BrowseOnly, admin.ModelAdmin):
    list_display = ["id", "title", "image_count", "label_thumbnail", "created_at", "soft_deleted"]
    list_display_links = ["id", "title"]
    list_filter = [SoftDeletedFilter, HasLabelFilter, MigratedFilter]
    search_fields = ["title", "=id"]
    search_help_text = "Title, or a product id."
    fields = ["title", "created_at", "updated_at", "deleted_at"]
    readonly_fields = fields

    class Media:
        css = ADMIN_CSS

    def get_queryset(self, request):
        return products_with_image_summary(super().get_queryset(request))

    def get_list_display(self, request):
        """The image count links to the product's images for those who may see them."""
        if not self.admin_site._registry[ProductImage].has_view_permission(request):
            return self.list_display
        return ["images_link" if name == "image_count" else name for name in self.list_display]

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {"title": "Products", **(extra_context or {})})

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}_images"
        view = self.admin_site.admin_view(self.image_change_view)
        return [path("<path:object_id>/images/", view, name=name), *super().get_urls()]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        """The product page: its images in display order, each with its buttons, what each marketplace
        would receive, and the legacy JSON beside them."""
        site = self.admin_site.name
        context.update(
            title=f"Product {obj.pk}: {obj}",
            subtitle=None,
            legacy=compare_with_legacy_json(obj),
            image_rows=[
                {
                    "row": row,
                    "thumbnail": thumbnail(row.image.url, row.title),
                    "badge": label_badge(row.image.is_label),
                    "url": reverse(f"{site}:products_productimage_change", args=[row.image.pk]),
                }
                for row in product_image_rows(obj)
            ],
            listing_lines=[listing_line(summary) for summary in listing_photo_summary(obj)],
            may_change_images=may_change_images(request),
            image_change_url=reverse(f"{site}:products_product_images", args=[obj.pk]),
        )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def image_change_view(self, request, object_id):
        """The product page's buttons (POST only): each calls the image service once, then comes back to
        the page with what was done, or the service's reason for refusing."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not may_change_images(request):
            raise PermissionDenied
        product = self.get_object(request, unquote(object_id))
        if product is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        back = reverse(f"{self.admin_site.name}:products_product_change", args=[product.pk]) + "#product-images"
        operation = next((name for name in IMAGE_OPERATIONS if name in request.POST), None)
        try:
            if operation is None:
                raise ImageServiceError("No known button was pressed: nothing was changed.")
            done = IMAGE_OPERATIONS[operation](product, request.POST[operation])
        except ImageServiceError as error:
            self.message_user(request, str(error), messages.ERROR)
            return HttpResponseRedirect(back)
        if done.changed:
            self.log_seller_change(request, product, done.message)
        self.message_user(request, done.message, messages.SUCCESS if done.changed else messages.INFO)
        return HttpResponseRedirect(back)

    @admin.display(description="Images", ordering="image_count")
    def image_count(self, product):
        return product.image_count

    @admin.display(description="Images", ordering="image_count")
    def images_link(self, product):
        label = f"{product.image_count} image{'s' if product.image_count != 1 else ''}"
        if not product.image_count:
            return label
        url = reverse(f"{self.admin_site.name}:products_productimage_changelist")
        return format_html(
            '<a href="{}?product={}" title="Product {}\'s images">{}</a>', url, product.pk, product.pk, label
        )

    @admin.display(description="Label")
    def label_thumbnail(self, product):
        return thumbnail(product.label_url, image_title(product.pk, product.image_count, True))

    @admin.display(description="Soft-deleted", boolean=True, ordering="deleted_at")
    def soft_deleted(self, product):
        return product.deleted_at is not None


@admin.register(ProductImage, site=seller_admin_site)
class ProductImageAdmin(SellerHistory, BrowseOnly, admin.ModelAdmin):
    list_display = ["id", "thumbnail", "product_link", "position", "order", "url_text"]
    list_filter = [ProductFilter, IsLabelFilter]
    list_select_related = ["product"]
    search_fields = ["url"]  # shows the search box; get_search_results decides what a term matches
    search_help_text = (
        "A number finds that product's images (and the image with that id); other text, the URLs holding it."
    )
    fields = ["thumbnail", "product_link", "position", "order", "url_text", "created_at", "updated_at"]
    readonly_fields = fields
    actions = ["make_label", "clear_label"]

    class Media:
        css = ADMIN_CSS

    def get_queryset(self, request):
        return images_with_position(super().get_queryset(request))

    def get_urls(self):
        view = self.admin_site.admin_view(self.export_csv_view)
        return [path("export.csv", view, name="products_productimage_export"), *super().get_urls()]

    def export_csv_view(self, request):
        """The image list as it is filtered, searched and ordered, every page of it, as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            images = self.get_changelist_instance(request).queryset
        except IncorrectLookupParameters:
            return HttpResponseRedirect(reverse(f"{self.admin_site.name}:products_productimage_changelist"))
        response = StreamingHttpResponse(csv_lines(images), content_type="text/csv; charset=utf-8")
        name = f"{request.tenant.schema_name}-product-images.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    def get_search_results(self, request, queryset, search_term):
        """A number is an id: the product's images, and the image with that id (not every URL holding
        the digits); anything else is looked for in the URLs."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if re.fullmatch(r"[0-9]+", term):
            number = int(term)
            if number > BIGINT_MAX:
                return queryset.none(), False
            return queryset.filter(Q(product_id=number) | Q(pk=number)), False
        return queryset.filter(url__icontains=term), False

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {"title": "Product images", **(extra_context or {})})

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context.update(title=image_title(obj.product_id, obj.position, obj.is_label), subtitle=None)
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description="Image")
    def thumbnail(self, image):
        return thumbnail(image.url, image_title(image.product_id, image.position, image.is_label))

    @admin.display(description="Product", ordering="product_id")
    def product_link(self, image):
        url = reverse(f"{self.admin_site.name}:products_product_change", args=[image.product_id])
        return format_html('<a href="{}">{}: {}</a>', url, image.product_id, image.product)

    @admin.display(description="Position")
    def position(self, image):
        return label_badge(True) if image.is_label else f"Photo {image.position}"

    @admin.display(description="URL", ordering="url")
    def url_text(self, image):
        return format_html('<span class="stoflow-url">{}</span>', image.url)

    @admin.action(description="Make the selected images their products' price labels", permissions=["change"])
    def make_label(self, request, queryset):
        several = several_per_product(queryset)
        if several:
            self.message_user(request, several.message, messages.ERROR)
            return None
        return self._change_labels(request, "make_label", plan_make_labels(queryset))

    @admin.action(description="Clear the price label of the selected images' products", permissions=["change"])
    def clear_label(self, request, queryset):
        product_ids = queryset.order_by().values_list("product_id", flat=True).distinct()
        return self._change_labels(request, "clear_label", plan_clear_labels(product_ids))

    def _change_labels(self, request, action: str, plans: list[LabelChange]):
        """First a confirmation page saying what changes per product; once confirmed, one service call
        per product that changes, each logged in the admin history."""
        if request.POST.get("post") != "yes":
            return self._confirm_labels(request, action, plans)
        changed, refused = 0, []
        for plan in plans:
            if not plan.changes:
                continue
            try:
                if action == "make_label":
                    set_label(plan.image_id)
                else:
                    clear_label(plan.product_id)
            except ImageServiceError as error:
                refused.append(str(error))
                continue
            self.log_seller_change(request, plan.product, plan.done)
            changed += 1
        unchanged = sum(not plan.changes for plan in plans)
        message = f"{changed:,} product{'s have' if changed != 1 else ' has'} {LABEL_ACTIONS[action]['done']}."
        if unchanged:
            message += f" {unchanged:,} left as {'they were' if unchanged != 1 else 'it was'}."
        self.message_user(request, message, messages.SUCCESS if changed else messages.INFO)
        if refused:
            self.message_user(
                request, f"{len(refused):,} refused by the image service, the first: {refused[0]}", messages.ERROR
            )
        return None

    def _confirm_labels(self, request, action: str, plans: list[LabelChange]):
        changing = sum(plan.changes for plan in plans)
        wording = LABEL_ACTIONS[action]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": wording["title"],
            "summary": confirmation_summary(changing, len(plans)),
            "changing": changing,
            "plans": plans[:PLANS_SHOWN],
            "more": max(len(plans) - PLANS_SHOWN, 0),
            "action": action,
            "confirm": wording["confirm"][changing != 1],
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "back_url": request.get_full_path(),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/products/productimage/label_confirmation.html", context)


def confirmation_summary(changing: int, selected: int) -> str:
    if selected == 1:
        what = "The selected product changes as below." if changing else "The selected product stays as it is."
    elif changing == selected:
        what = f"All {selected:,} products selected change as below."
    else:
        what = f"{changing:,} of the {selected:,} products selected change as below; the others stay as they are."
    return what + (" Nothing is written until you confirm." if changing else "")


LABEL_ACTIONS = {
    "make_label": {
        "title": "Make price labels: what changes",
        "confirm": ("Yes, make this label", "Yes, make these labels"),
        "done": "a new price label, moved last",
    },
    "clear_label": {
        "title": "Clear price labels: what changes",
        "confirm": ("Yes, clear this label", "Yes, clear these labels"),
        "done": "no price label any more: the former label is the last photo",
    },
}
