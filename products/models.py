from django.db import models
from django.db.models import Q


class Product(models.Model):
    title = models.CharField(max_length=500, blank=True, default="")
    # Legacy photo list, the source of the image migration. Only the image service
    # (products/images.py) writes it: a mirror of the product's image rows, until finalize drops it.
    images = models.JSONField(null=True, blank=True, default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "products"
        ordering = ["id"]

    def __str__(self):
        return self.title or f"Product {self.pk}"


class ProductImage(models.Model):
    # The unique (product, order) index serves lookups by product; no second index.
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="product_images", db_index=False)
    url = models.TextField()
    order = models.PositiveIntegerField()
    is_label = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "product_images"
        ordering = ["product_id", "order"]
        constraints = [
            models.UniqueConstraint(fields=["product", "order"], name="product_images_product_order_uniq"),
            models.UniqueConstraint(
                fields=["product"],
                condition=Q(is_label=True),
                name="product_images_one_label_per_product",
            ),
            models.CheckConstraint(condition=~Q(url=""), name="product_images_url_not_empty"),
        ]

    def __str__(self):
        return f"{self.product_id}#{self.order}"


class RemovedProductImage(models.Model):
    """A copy of an image row that ``migrate_images --force`` or ``--sync`` removed and whose URL the
    product's JSON no longer holds: a photo that left the JSON by mistake can still be brought back."""

    image_id = models.BigIntegerField()  # the removed row's id
    product_id = models.BigIntegerField()  # no foreign key: the copy outlives its product
    url = models.TextField()
    order = models.IntegerField()
    is_label = models.BooleanField()
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    removed_at = models.DateTimeField()
    removed_by = models.TextField()  # the run that removed it: command, mode and start time

    class Meta:
        db_table = "product_images_removed"
        ordering = ["product_id", "order"]

    def __str__(self):
        return f"{self.product_id}#{self.order} (removed {self.removed_at:%Y-%m-%d %H:%M})"
