"""A seller's catalogue in the seller admin (/sellers/<schema>/admin/): browse products and
their images as the migration left them; the one change offered is choosing a label."""

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from products.admin_filters import HasLabelFilter, IsLabelFilter, MigratedFilter, SoftDeletedFilter
from products.admin_html import label_badge, thumbnail
from products.admin_selectors import compare_with_legacy_json, products_with_image_summary
from products.labels import SeveralImagesOfOneProduct, make_labels
from products.models import Product, ProductImage
from stoflow.tenants.sites import seller_admin_site

ADMIN_CSS = {"all": ["products/admin.css"]}


class BrowseOnly:
    """Object pages are read-only and nothing is added or deleted; list actions still need the change permission."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)


class ImageColumns:
    @admin.display(description="Image")
    def thumbnail(self, image):
        return thumbnail(image.url, f"Image {image.order} of product {image.product_id}")

    @admin.display(description="Label", ordering="is_label")
    def label(self, image):
        return label_badge(image.is_label)


class ProductImageInline(ImageColumns, admin.TabularInline):
    model = ProductImage
    fields = ["thumbnail", "order", "label", "url"]
    readonly_fields = fields
    ordering = ["order"]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Product, site=seller_admin_site)
class ProductAdmin(BrowseOnly, admin.ModelAdmin):
    list_display = ["id", "title", "image_count", "label_thumbnail", "created_at", "soft_deleted"]
    list_display_links = ["id", "title"]
    list_filter = [SoftDeletedFilter, HasLabelFilter, MigratedFilter]
    search_fields = ["title", "=id"]
    search_help_text = "Title, or a product id."
    fields = ["title", "created_at", "updated_at", "deleted_at"]
    readonly_fields = fields
    inlines = [ProductImageInline]

    class Media:
        css = ADMIN_CSS

    def get_queryset(self, request):
        return products_with_image_summary(super().get_queryset(request))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["legacy"] = compare_with_legacy_json(obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description="Images", ordering="image_count")
    def image_count(self, product):
        return product.image_count

    @admin.display(description="Label")
    def label_thumbnail(self, product):
        return thumbnail(product.label_url, f"Label of product {product.pk}")

    @admin.display(description="Soft-deleted", boolean=True, ordering="deleted_at")
    def soft_deleted(self, product):
        return product.deleted_at is not None


@admin.register(ProductImage, site=seller_admin_site)
class ProductImageAdmin(ImageColumns, BrowseOnly, admin.ModelAdmin):
    list_display = ["id", "thumbnail", "product_link", "order", "label"]
    list_filter = [IsLabelFilter]
    list_select_related = ["product"]
    search_fields = ["url", "=product__id"]
    search_help_text = "Part of the URL, or a product id."
    fields = ["thumbnail", "product_link", "order", "label", "url", "created_at", "updated_at"]
    readonly_fields = fields
    actions = ["make_label"]

    class Media:
        css = ADMIN_CSS

    @admin.display(description="Product", ordering="product_id")
    def product_link(self, image):
        url = reverse(f"{self.admin_site.name}:products_product_change", args=[image.product_id])
        return format_html('<a href="{}">{}: {}</a>', url, image.product_id, image.product)

    @admin.action(description="Make the selected image its product's label", permissions=["change"])
    def make_label(self, request, queryset):
        try:
            change = make_labels(queryset.values_list("pk", flat=True))
        except SeveralImagesOfOneProduct as refused:
            self.message_user(request, str(refused), messages.ERROR)
            return
        message = f"{change.made_labels} image(s) made their product's label."
        if change.already_labels:
            message += f" {change.already_labels} already were."
        self.message_user(request, message, messages.SUCCESS)
