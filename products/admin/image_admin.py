"""The seller admin's images: the list (a number searches ids, other text the URLs; the CSV export),
the image page, and the label actions with their confirmation page (each change one image service call)."""

import re

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from products.admin.csv_export import csv_lines
from products.admin.filters import IsLabelFilter, ProductFilter
from products.admin.html import label_badge, thumbnail
from products.admin.label_plans import LabelChange, plan_clear_labels, plan_make_labels, several_per_product
from products.admin.mixins import ADMIN_CSS, BrowseOnly, SellerHistory
from products.admin.selectors import image_title, images_with_position
from products.images import ImageServiceError, clear_label, set_label

BIGINT_MAX = 2**63 - 1  # ids are PostgreSQL bigints: a longer number is no id
# The confirmation page of a label change lists this many products; a longer selection says how many more.
PLANS_SHOWN = 100


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
