"""The product page's buttons: each is one image service call (products/images.py), said in a sentence
for the message and the admin history. A call the service refuses raises its ImageServiceError."""

from collections.abc import Callable
from dataclasses import dataclass

from django.utils.text import capfirst

from products import images
from products.admin.label_plans import image_name, plan_clear_labels, plan_make_labels
from products.images import ImageServiceError
from products.models import Product, ProductImage


@dataclass(frozen=True)
class Done:
    changed: bool
    message: str


def make_label(product: Product, image_id: str) -> Done:
    image = _image_of(product, image_id)
    [plan] = plan_make_labels(ProductImage.objects.filter(pk=image.pk))
    images.set_label(image)  # a single image is refused by the service, with its reason
    return Done(True, plan.done) if plan.changes else Done(False, plan.sentences[0])


def clear_label(product: Product, _value: str = "") -> Done:
    [plan] = plan_clear_labels([product.pk])
    images.clear_label(product)
    return Done(True, plan.done) if plan.changes else Done(False, plan.sentences[0])


def move_up(product: Product, image_id: str) -> Done:
    return _move(product, image_id, -1)


def move_down(product: Product, image_id: str) -> Done:
    return _move(product, image_id, +1)


def _move(product: Product, image_id: str, step: int) -> Done:
    image = _image_of(product, image_id)
    if image.is_label:
        raise ImageServiceError(
            f"{capfirst(image_name(image))} is the price label: it stays last. Make another image the label, "
            "or clear the label, to move it. Nothing was changed."
        )
    photos = list(
        ProductImage.objects.filter(product=product, is_label=False).order_by("order").values_list("pk", flat=True)
    )
    here = photos.index(image.pk)
    there = here + step
    if not 0 <= there < len(photos):
        where = "first" if step < 0 else "last"
        raise ImageServiceError(f"{capfirst(image_name(image))} is already the {where} photo. Nothing was changed.")
    photos[here], photos[there] = photos[there], photos[here]
    images.reorder_images(product, photos)
    return Done(True, f"Moved {image_name(image)} {'up' if step < 0 else 'down'}: it is photo {there + 1} now.")


def _image_of(product: Product, image_id: str) -> ProductImage:
    """The image the button names, if it is one of the product's (the page may be out of date)."""
    image = None
    if image_id.isdigit():
        image = ProductImage.objects.filter(pk=int(image_id), product=product).first()
    if image is None:
        raise ImageServiceError(
            f"Image {image_id} is not an image of product {product.pk} (any more?): reload the page. "
            "Nothing was changed."
        )
    return image


OPERATIONS: dict[str, Callable[[Product, str], Done]] = {
    "make_label": make_label,
    "clear_label": clear_label,
    "move_up": move_up,
    "move_down": move_down,
}
