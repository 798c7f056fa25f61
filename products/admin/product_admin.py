"""The seller admin's products: the list, and the product page with its images, their buttons (each one
image service call), what each marketplace would receive, and the legacy JSON."""

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from products.admin.filters import HasLabelFilter, MigratedFilter, SoftDeletedFilter
from products.admin.html import label_badge, thumbnail
from products.admin.image_actions import OPERATIONS as IMAGE_OPERATIONS
from products.admin.label_plans import listing_line
from products.admin.mixins import ADMIN_CSS, BrowseOnly, SellerHistory
from products.admin.selectors import (
    compare_with_legacy_json,
    image_title,
    product_image_rows,
    products_with_image_summary,
)
from products.images import ImageServiceError
from products.models import ProductImage
from products.selectors import listing_photo_summary


def may_change_images(request) -> bool:
    """Label and order changes, from the image list or the product page, need the image change permission."""
    opts = ProductImage._meta
    return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('change', opts)}")


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
