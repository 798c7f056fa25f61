"""Choosing a product's price label by hand (the image admin's action)."""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.db.models.functions import Now

from products.models import Product, ProductImage


class SeveralImagesOfOneProduct(ValueError):
    """A product has one label: a selection holding two of its images is refused whole."""

    def __init__(self, product_ids: list[int]):
        self.product_ids = product_ids
        super().__init__(
            "A product has exactly one label: select one image per product. Several images were selected for "
            f"product {', '.join(map(str, product_ids))}; no label was changed."
        )


@dataclass(frozen=True)
class LabelChange:
    made_labels: int  # images that became their product's label
    already_labels: int  # selected images that were their product's label already


def make_labels(image_ids: Iterable[int]) -> LabelChange:
    """Make each image its product's label, in one transaction.

    The product's current label is cleared first: the one-label-per-product index is
    checked after every statement. The products are locked, so two people labelling
    one product at the same time queue up instead of colliding on that index."""
    with transaction.atomic():
        images = list(ProductImage.objects.filter(pk__in=list(image_ids)).values_list("pk", "product_id"))
        per_product = Counter(product_id for _, product_id in images)
        crowded = sorted(product_id for product_id, count in per_product.items() if count > 1)
        if crowded:
            raise SeveralImagesOfOneProduct(crowded)
        list(Product.objects.select_for_update().filter(pk__in=per_product).order_by("pk").values_list("pk"))
        ids = [pk for pk, _ in images]
        ProductImage.objects.filter(product_id__in=per_product, is_label=True).exclude(pk__in=ids).update(
            is_label=False, updated_at=Now()
        )
        made = ProductImage.objects.filter(pk__in=ids, is_label=False).update(is_label=True, updated_at=Now())
    return LabelChange(made_labels=made, already_labels=len(ids) - made)
