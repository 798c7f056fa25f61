from django.contrib.postgres.fields import ArrayField
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
    # The rows that JSON yields under the rule (source.ROWS_DIGEST, the rule's version in it); NULL where nothing
    # read them from the JSON (refused, or recorded by the image service's mirror): the validation decodes those.
    rows_digest = models.UUIDField(null=True)
    # The rule's reason; NULL (not ""): the rows are what the JSON yields. The SQL writes and tests it as NULL.
    refused = models.TextField(null=True, blank=True)  # noqa: DJ001
    recorded_at = models.DateTimeField()

    class Meta:
        db_table = "product_json_state"

    def __str__(self):
        return f"product {self.product_id}" + (f" (refused: {self.refused})" if self.refused else "")


class LabelJob(models.Model):
    """A label change over many products, made from the image list (or the undo of one): its products
    (``LabelJobItem``) are changed a batch at a time, each in a transaction of its own, so a change over
    thousands of products is many short requests with progress shown, never one long one."""

    class Action(models.TextChoices):
        MAKE_LABEL = "make_label", "make price labels"
        CLEAR_LABEL = "clear_label", "clear price labels"
        UNDO = "undo", "undo a bulk change"

    action = models.CharField(max_length=20, choices=Action.choices)
    actor = models.TextField()  # the staff user's name
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)  # every item done
    # An undo job takes back the changes another job made.
    undoes = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="undone_by")

    class Meta:
        db_table = "label_jobs"
        ordering = ["-id"]

    def __str__(self):
        return f"bulk change {self.pk} ({self.get_action_display()})"


class LabelChange(models.Model):
    """One product's label change, as the image service made it under the product's lock: who, when, and the
    product's images before and after (photo ids in display order, then the label), which is what undoing it
    puts back. No foreign keys to products or images: the history outlives them, and the migration's
    preflight refuses unknown foreign keys to product_images."""

    product_id = models.BigIntegerField()
    made_at = models.DateTimeField()
    actor = models.TextField(blank=True)  # the staff user's name; "" when the caller named nobody
    job = models.ForeignKey(LabelJob, null=True, blank=True, on_delete=models.PROTECT, related_name="changes")
    undoes = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="undone_by")
    photos_before = ArrayField(models.BigIntegerField())
    label_before = models.BigIntegerField(null=True, blank=True)
    photos_after = ArrayField(models.BigIntegerField())
    label_after = models.BigIntegerField(null=True, blank=True)
    # The URLs of the images named above, by id: the change can still be told once an image is deleted.
    urls = models.JSONField(default=dict)

    class Meta:
        db_table = "label_changes"
        ordering = ["-id"]
        indexes = [models.Index(fields=["product_id", "-id"], name="label_changes_product_idx")]

    def __str__(self):
        return f"label change {self.pk} of product {self.product_id}"


class LabelJobItem(models.Model):
    """One product of a bulk label change: what to do, and once done, what came of it."""

    class Outcome(models.TextChoices):
        CHANGED = "changed", "changed"
        UNCHANGED = "unchanged", "already so"
        REFUSED = "refused", "refused"

    job = models.ForeignKey(LabelJob, on_delete=models.CASCADE, related_name="items")
    product_id = models.BigIntegerField()
    image_id = models.BigIntegerField(null=True, blank=True)  # make_label: the image that becomes the label
    undoes = models.ForeignKey(LabelChange, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    outcome = models.CharField(max_length=20, choices=Outcome.choices, null=True, blank=True)  # noqa: DJ001
    note = models.TextField(blank=True, default="")  # why it was refused
    change = models.ForeignKey(LabelChange, null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        db_table = "label_job_items"
        ordering = ["job_id", "product_id"]
        constraints = [models.UniqueConstraint(fields=["job", "product_id"], name="label_job_items_one_per_product")]
        indexes = [
            models.Index(
                fields=["job", "product_id"], condition=Q(outcome__isnull=True), name="label_job_items_pending_idx"
            )
        ]

    def __str__(self):
        return f"product {self.product_id} of {self.job}"
