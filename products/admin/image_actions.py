"""The product page's buttons: each one image service call (products/images.py) on the images as the page
showed them (``seen``: the service refuses when someone changed them in between), said in a sentence for the
message and the admin history. Label changes (make, clear, undo) are confirmed first: ``plan`` says what the
confirmation page shows, ``apply`` makes the change once confirmed."""

from dataclasses import dataclass

from products import images
from products.admin.label_plans import LabelPlan, describe_change, plan_clear_labels, plan_make_labels, plan_undo
from products.images import Arrangement, ImageNotFound, ImagesChanged, ImageServiceError, InvalidPosition
from products.models import LabelChange, Product, ProductImage

LABEL_BUTTONS = ("make_label", "clear_label", "undo")  # confirmed first
MOVE_BUTTON = "move_image"


@dataclass(frozen=True)
class Done:
    changed: bool
    message: str


def seen_token(images_now: Arrangement) -> str:
    """The arrangement as the page's forms carry it: "12,13,14;15" (photos; label), "12,13;" without a label."""
    label = "" if images_now.label is None else str(images_now.label)
    return ",".join(map(str, images_now.photos)) + ";" + label


def parse_seen(token: str) -> Arrangement:
    """The arrangement a form carried back; a token that is no arrangement reads as one no product has."""
    photos, _, label = (token or "").partition(";")
    try:
        return Arrangement(tuple(int(pk) for pk in photos.split(",") if pk), int(label) if label else None)
    except ValueError:
        return Arrangement((), -1)


def pressed(post) -> str | None:
    """Which button was pressed."""
    return next((name for name in (*LABEL_BUTTONS, MOVE_BUTTON) if name in post), None)


def plan(product: Product, button: str, value: str) -> LabelPlan:
    """What the label button would do, for its confirmation page."""
    if button == "undo":
        return plan_undo(_change_of(product, value))
    if button == "make_label":
        image = _image_of(product, value)
        [label_plan] = plan_make_labels({product.pk: image.pk})
        return label_plan
    [label_plan] = plan_clear_labels([product.pk])
    return label_plan


def apply(product: Product, button: str, post, actor: str) -> Done:
    """The pressed button's service call, on the images as the page showed them."""
    seen = parse_seen(post.get("seen", ""))
    value = post[button]
    if button == MOVE_BUTTON:
        return _move(product, value, post, seen)
    if button == "undo":
        change = images.undo_label_change(_change_of(product, value), actor=actor)
    elif button == "make_label":
        change = images.set_label(_image_of(product, value), expected=seen, actor=actor)
    else:
        change = images.clear_label(product, expected=seen, actor=actor)
    if change is None:
        return Done(False, "Nothing to change: the label already was as asked.")
    return Done(True, describe_change(change))


def _move(product: Product, value: str, post, seen: Arrangement) -> Done:
    """Up, Down (one place, from where the page showed the photo) or a position typed in the photo's box."""
    image = _image_of(product, value)
    if image.pk not in seen.photos:
        raise ImagesChanged("The photo is not among the photos the page showed.")
    here = seen.photos.index(image.pk) + 1
    direction = post.get("direction")
    if direction in ("up", "down"):
        to_position = here - 1 if direction == "up" else here + 1
    else:
        typed = post.get("to_position", "").strip()
        if not typed.isdigit():
            raise InvalidPosition(f"{typed!r} is no position.")
        to_position = int(typed)
    if to_position == here:
        return Done(False, f"Photo {here} stays where it is.")
    images.move_image(image, to_position, expected=seen)
    return Done(True, f"Moved photo {here} to position {to_position}.")


def _image_of(product: Product, image_id: str) -> ProductImage:
    """The image the button names, if it is one of the product's (the page may be out of date)."""
    image = None
    if image_id.isdigit():
        image = ProductImage.objects.filter(pk=int(image_id), product=product).first()
    if image is None:
        raise ImageNotFound(f"Image {image_id} is not an image of product {product.pk} (any more?).")
    return image


def _change_of(product: Product, change_id: str) -> LabelChange:
    change = None
    if change_id.isdigit():
        change = LabelChange.objects.select_related("undoes").filter(pk=int(change_id), product_id=product.pk).first()
    if change is None:
        raise ImageServiceError(f"Label change {change_id} is not one of product {product.pk}'s.")
    return change
