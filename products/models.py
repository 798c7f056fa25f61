from django.db import models
from django.db.models import Q


class Product(models.Model):
    title = models.CharField(max_length=500, blank=True, default="")
    # No `images` field: the legacy JSON column products.images is outside the ORM (migration 0004). It stays
    # in a tenant's table until `finalize_images` drops it, read and written by raw SQL only
    # (products/legacy_json.py), so no ORM query can depend on a column that goes away tenant by tenant.
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


class ProductJsonState(models.Model):
    """Per product, what its rows were last reconciled with: the digest of its legacy JSON (``md5`` of the
    value's text), and why that JSON was refused, if it was.

    ``migrate_images`` (first run, ``--sync``, ``--force``) and the follower write it; ``--sync`` reads it to
    find the products whose JSON changed without decoding every product's JSON. A refused product keeps the
    rows it had and is held back from marketplaces (``products.selectors``) until its JSON is fixed or a
    person decides in the admin: whichever convention the JSON mixes could name another photo as the label."""

    product_id = models.BigIntegerField(primary_key=True)  # no foreign key: written in the products' triggers
    json_digest = models.UUIDField(null=True)  # md5 of products.images::text; NULL for SQL NULL
    # The rule's reason; NULL (not ""): the rows are what the JSON yields. The SQL writes and tests it as NULL.
    refused = models.TextField(null=True, blank=True)  # noqa: DJ001
    recorded_at = models.DateTimeField()

    class Meta:
        db_table = "product_json_state"

    def __str__(self):
        return f"product {self.product_id}" + (f" (refused: {self.refused})" if self.refused else "")
