"""The seller admin's products: the list (a product id searched alone opens that product), and the product
page: its photos with their buttons (each one image service call on the photos as the page showed them; label
changes confirmed first), what each marketplace receives, the label history with its undo, and the photos as
first imported."""

import re

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from products.admin import image_actions
from products.admin.confirmation import confirmation_context
from products.admin.filters import HasLabelFilter, MigratedFilter, SoftDeletedFilter
from products.admin.html import label_badge, short_url, thumbnail
from products.admin.label_jobs import Outlook
from products.admin.label_plans import describe_change, listing_line
from products.admin.mixins import ADMIN_CSS, BrowseOnly, QuickLists, SellerHistory
from products.admin.paging import Grouped
from products.admin.refusals import support_sentence
from products.admin.selectors import (
    compare_with_legacy_json,
    image_title,
    product_image_rows,
    products_with_image_summary,
)
from products.images import Arrangement, ImageServiceError, removed_nothing
from products.models import LabelChange, Product, ProductImage
from products.selectors import held_back, listing_photo_summary

BIGINT_MAX = 2**63 - 1
# The product page lists this many label changes, newest first.
HISTORY_SHOWN = 20
# Search parameters under which a number is looked for in titles too, not opened as an id: the link the
# "opened" message offers, and a list being paged or sorted.
STAY_ON_THE_LIST = ("titles", "p", "o")


def may_change_images(request) -> bool:
    """Label and order changes, from the image list or the product page, need the image change permission."""
    opts = ProductImage._meta
    return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('change', opts)}")


class ProductAdmin(QuickLists, SellerHistory, BrowseOnly, admin.ModelAdmin):
    list_display = ["id", "title", "image_count", "label_thumbnail", "created_at", "soft_deleted"]
    list_display_links = ["id", "title"]
    list_filter = [SoftDeletedFilter, HasLabelFilter, MigratedFilter]
    search_fields = ["title", "=id"]
    search_help_text = "A product id opens that product; other text finds the titles holding it."
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
        """A product id searched alone opens that product: "165" is product 165, not the 14 products whose id
        or title holds the digits. The message offers the titles holding the number instead."""
        opened = self._product_searched_for(request)
        if opened is not None:
            titles = f"{request.path}?q={opened}&titles=1"
            self.message_user(
                request,
                format_html(
                    'Opened product {}, the id you searched for. <a href="{}">Titles holding {}</a>',
                    opened,
                    titles,
                    opened,
                ),
                messages.INFO,
            )
            return HttpResponseRedirect(self._product_url(opened))
        if "titles" in request.GET:  # not a filter: the list is the title search the message's link asks for
            request.GET = request.GET.copy()
            del request.GET["titles"]
        return super().changelist_view(request, {"title": "Products", **(extra_context or {})})

    def _product_searched_for(self, request) -> int | None:
        term = request.GET.get("q", "").strip().lstrip("#")
        if not re.fullmatch(r"[0-9]{1,19}", term) or any(name in request.GET for name in STAY_ON_THE_LIST):
            return None
        number = int(term)
        if number > BIGINT_MAX or not self.get_queryset(request).filter(pk=number).exists():
            return None
        return number

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}_images"
        view = self.admin_site.admin_view(self.image_change_view)
        return [path("<path:object_id>/images/", view, name=name), *super().get_urls()]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        """The product page: its photos in display order with their buttons, what each marketplace receives,
        the label history, and the photos as first imported beside them."""
        site = self.admin_site.name
        rows = product_image_rows(obj)
        seen = Arrangement(
            tuple(row.image.pk for row in rows if not row.image.is_label),
            next((row.image.pk for row in rows if row.image.is_label), None),
        )
        may_change = may_change_images(request)
        context.update(
            title=f"Product {obj.pk}: {obj}",
            subtitle=None,
            legacy=compare_with_legacy_json(obj),
            held_back=held_back(obj),
            image_rows=[
                {
                    "row": row,
                    "thumbnail": thumbnail(row.image.url, row.title),
                    "badge": label_badge(row.image.is_label),
                    "short_url": short_url(row.image.url),
                    "url": reverse(f"{site}:products_productimage_change", args=[row.image.pk]),
                }
                for row in rows
            ],
            photo_count=len(seen.photos),
            seen=image_actions.seen_token(seen),
            listing_lines=[listing_line(summary) for summary in listing_photo_summary(obj)],
            history=self._history(obj, seen, may_change),
            may_change_images=may_change,
            image_change_url=reverse(f"{site}:products_product_images", args=[obj.pk]),
            images_list_url=reverse(f"{site}:products_productimage_changelist") + f"?product={obj.pk}",
            image_count=Grouped(len(rows)),
        )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _history(self, product: Product, now: Arrangement, may_change: bool) -> list[dict]:
        """The product's label changes, newest first; the newest may be undone while the photos are still as
        it left them."""
        changes = LabelChange.objects.filter(product_id=product.pk).select_related("undoes")[:HISTORY_SHOWN]
        entries = []
        for number, change in enumerate(changes):
            newest = number == 0
            in_force = newest and now == Arrangement(tuple(change.photos_after), change.label_after)
            photo_deleted = newest and not removed_nothing(change)  # a deleted image cannot be put back
            entries.append(
                {
                    "change": change,
                    "text": describe_change(change),
                    "may_undo": may_change and in_force and not photo_deleted,
                    "photo_deleted": photo_deleted,
                    "changed_since": newest and not in_force and not photo_deleted,
                }
            )
        return entries

    def image_change_view(self, request, object_id):
        """The product page's buttons (POST only): a label change shows its confirmation page first; once
        confirmed, or for a move, one image service call, then back to the page with what was done, or the
        refusal in a support agent's words (the page shows the photos as they are now)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not may_change_images(request):
            raise PermissionDenied
        product = self.get_object(request, unquote(object_id))
        if product is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        back = self._product_url(product.pk) + "#product-images"
        button = image_actions.pressed(request.POST)
        if button is None:
            self.message_user(request, "No known button was pressed: nothing was changed.", messages.ERROR)
            return HttpResponseRedirect(back)
        try:
            if button in image_actions.LABEL_BUTTONS and request.POST.get("confirmed") != "yes":
                return self._confirm(request, product, button)
            done = image_actions.apply(product, button, request.POST, request.user.get_username())
        except ImageServiceError as error:
            self.message_user(request, support_sentence(error), messages.WARNING)
            return HttpResponseRedirect(back)
        if done.changed:
            self.log_seller_change(request, product, done.message)
        self.message_user(request, done.message, messages.SUCCESS if done.changed else messages.INFO)
        return HttpResponseRedirect(back)

    def _confirm(self, request, product: Product, button: str):
        """A label change of this product, said before it is made: confirming posts it back with the photos
        the page showed, so a change made in between is refused, not overwritten."""
        value = request.POST[button]
        label_plan = image_actions.plan(product, button, value)
        outlook = Outlook(button, 1, int(label_plan.changes), 0, [label_plan], [])
        fields = [(button, value), ("seen", request.POST.get("seen", "")), ("confirmed", "yes")]
        context = {
            **self.admin_site.each_context(request),
            **confirmation_context(outlook, fields, typed_wrong=False),
            "opts": ProductImage._meta,
            "form_url": reverse(f"{self.admin_site.name}:products_product_images", args=[product.pk]),
            "back_url": self._product_url(product.pk) + "#product-images",
            "product": product,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/products/productimage/label_confirmation.html", context)

    def _product_url(self, product_id: int) -> str:
        return reverse(f"{self.admin_site.name}:products_product_change", args=[product_id])

    @admin.display(description="Images", ordering="image_count")
    def image_count(self, product):
        return Grouped(product.image_count)

    @admin.display(description="Images", ordering="image_count")
    def images_link(self, product):
        label = f"{product.image_count:,} image{'s' if product.image_count != 1 else ''}"
        if not product.image_count:
            return label
        url = reverse(f"{self.admin_site.name}:products_productimage_changelist")
        return format_html(
            '<a href="{}?product={}" title="Product {}\'s images">{}</a>', url, product.pk, product.pk, label
        )

    @admin.display(description="Label")
    def label_thumbnail(self, product):
        return thumbnail(product.label_url, image_title(product.pk, product.image_count, True))

    @admin.display(description="Soft-deleted", ordering="deleted_at", empty_value="")
    def soft_deleted(self, product):
        """When the product was deleted; blank for a live product (no red cross on every live row)."""
        return product.deleted_at
