"""No mix of label conventions sends a price tag to a marketplace (docs/migrate_images.md, "Two writers").

Hypothesis writes random JSON of keyed (``is_label`` true or false), unkeyed and malformed (``"true"``, 1,
null) entries in random order, as a first migration reads it and as the follower reads a legacy write over a
product the image service wrote. After each, ``listing_photos`` must never return the photo the documented
rule calls the label nor, in a mixed or malformed product, a photo either convention calls the label.
"""

import json

import pytest
from django.db import transaction
from django_tenants.utils import schema_context
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_config
from hypothesis import strategies as st

from products.images import ImageServiceError, set_label, settle_label_convention
from products.legacy_json import LAST_PHOTO, MARKED
from products.migration import follower
from products.models import ProductImage
from products.selectors import held_back, listing_photos
from tests.helpers import TENANT, entries, image_rows, json_images, make_product, run_command, store_json

ABSENT = object()  # the entry has no is_label key
MARKS = st.sampled_from([ABSENT, True, False, "true", "false", 1, 0, None])

# Each example runs in a savepoint of the test's transaction, rolled back at its end: the fixture's tenant is
# the same for every example, its rows are not.
EXAMPLES = {
    "max_examples": 60,
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture],
}
ENTRIES = st.lists(st.tuples(MARKS, st.integers(0, 6)), min_size=0, max_size=6)


def json_of(marks_and_orders: list[tuple]) -> list[dict]:
    images = []
    for position, (mark, order) in enumerate(marks_and_orders):
        entry = {"url": f"https://cdn.example/p{position}.jpeg", "order": order}
        if mark is not ABSENT:
            entry["is_label"] = mark
        images.append(entry)
    return images


def forbidden(images: list[dict]) -> set[str]:
    """The URLs a marketplace must never receive from this JSON."""
    if len(images) < 2:
        return set()
    # Both conventions read the images by (order, position): the old one takes the last, the marks the one marked
    # (several marked: any of them).
    by_order = [image for _, image in sorted(enumerate(images), key=lambda pair: (pair[1]["order"], pair[0]))]
    last_by_order = by_order[-1]["url"]
    keyed = [image for image in by_order if "is_label" in image]
    marked = [image["url"] for image in keyed if image["is_label"] in (True, "true", 1)]
    well_formed = all(isinstance(image["is_label"], bool) for image in keyed)
    if keyed and len(keyed) == len(images) and well_formed and len(marked) <= 1:
        return set(marked)  # the marks decide
    if not keyed:
        return {last_by_order}
    return {last_by_order, *marked}  # mixed, malformed or several marked: no label of any reading may go out


def sent(product_id: int) -> set[str]:
    with schema_context(TENANT):
        return set(listing_photos(product_id, "vinted"))


@hypothesis_config(**EXAMPLES)
@given(ENTRIES)
def test_a_first_migration_never_sends_a_label_of_either_convention(tenant, marks_and_orders):
    images = json_of(marks_and_orders)
    with transaction.atomic():
        product = make_product(images=images)
        run_command("--schema", TENANT, "-v", "0")

        assert not sent(product.pk) & forbidden(images), images
        transaction.set_rollback(True)


@hypothesis_config(**EXAMPLES)
@given(ENTRIES, st.integers(0, 3))
def test_a_legacy_write_over_the_service_s_json_never_sends_a_label_of_either_convention(
    tenant, marks_and_orders, label_position
):
    images = json_of(marks_and_orders)
    with transaction.atomic():
        # The image service wrote this product (its mirror: is_label on every entry), then the follower came.
        product = make_product(images=entries(4))
        run_command("--schema", TENANT, "-v", "0", "--follow")
        with schema_context(TENANT):
            set_label(ProductImage.objects.filter(product_id=product.pk).order_by("order")[label_position].pk)

        store_json(product.pk, images)  # the old code's write, reaching the rows through the follower

        assert not sent(product.pk) & forbidden(images), images
        transaction.set_rollback(True)


def test_the_follower_is_what_the_property_test_runs_against(tenant):
    """The property above holds through the follower, not because nothing followed."""
    product = make_product(images=entries(2))
    run_command("--schema", TENANT, "-v", "0", "--follow")
    assert follower.follows(TENANT)

    store_json(product.pk, entries(3))

    assert sent(product.pk) == {entry["url"] for entry in entries(3)[:2]}


def held_product():
    """A migrated product whose JSON old code then appended a photo to, by its convention: held back."""
    product = make_product(images=[{**entry, "is_label": False} for entry in entries(3)])
    run_command("--schema", TENANT, "-v", "0")
    mixed = json_images(product.pk) + [{"url": "https://cdn.example/price-tag.jpeg", "order": 9}]
    store_json(product.pk, mixed)
    run_command("--sync", "--schema", TENANT, "-v", "0")
    with schema_context(TENANT):
        assert held_back(product.pk) and listing_photos(product.pk, "vinted") == []
    return product


@pytest.mark.parametrize(
    ("convention", "label"),
    [(LAST_PHOTO, "https://cdn.example/price-tag.jpeg"), (MARKED, None)],
    ids=["last-photo", "marked"],
)
def test_a_person_settles_a_held_product_by_one_convention_and_nothing_is_lost(tenant, convention, label):
    product = held_product()

    with schema_context(TENANT):
        still_held = settle_label_convention(product.pk, convention)
        photos = listing_photos(product.pk, "vinted")

    assert still_held is None
    urls = [url for _, _, url, _ in image_rows(product.pk)]
    assert urls == [entry["url"] for entry in entries(3)] + ["https://cdn.example/price-tag.jpeg"]
    assert [url for _, is_label, url, _ in image_rows(product.pk) if is_label] == ([label] if label else [])
    assert photos == [url for url in urls if url != label]
    assert run_command("--check", "--schema", TENANT)[0] == 0


def held_with(images) -> object:
    """A migrated product whose JSON old code then rewrote to ``images``, which the rule refuses: held back."""
    product = make_product(images=entries(3))
    run_command("--schema", TENANT, "-v", "0")
    store_json(product.pk, images)
    run_command("--sync", "--schema", TENANT, "-v", "0")
    with schema_context(TENANT):
        assert held_back(product.pk) and listing_photos(product.pk, "vinted") == []
    return product


TAG = "https://cdn.example/price-tag.jpeg"


def marked(marks: list) -> list[dict]:
    """Three photos and the tag, each with ``is_label`` set to its mark (ABSENT: no key)."""
    photos = [*entries(3), {"url": TAG, "order": 9}]
    return [entry if mark is ABSENT else {**entry, "is_label": mark} for entry, mark in zip(photos, marks, strict=True)]


@pytest.mark.parametrize(
    "marks, words",
    [
        # The tag's mark is no boolean: read as false, the tag was released as a photo.
        pytest.param([False, False, False, "true"], ["entry 4", "is_label", "string"], id="string"),
        pytest.param([False, False, False, 1], ["entry 4", "is_label", "number"], id="number"),
        pytest.param([False, False, False, None], ["entry 4", "is_label", "null"], id="null"),
        pytest.param([False, False, False, []], ["entry 4", "is_label", "array"], id="array"),
        pytest.param([False, False, False, {}], ["entry 4", "is_label", "object"], id="object"),
        # Mixed, with two marks true: the earlier marked photo was sent.
        pytest.param([True, False, ABSENT, True], ["entries 1 and 4", "is_label true"], id="two-true"),
    ],
)
def test_settling_by_the_marks_refuses_marks_it_cannot_read_exactly_and_the_product_stays_held(tenant, marks, words):
    product = held_with(marked(marks))
    before = (json_images(product.pk), image_rows(product.pk))

    with schema_context(TENANT), pytest.raises(ImageServiceError) as refusal:
        settle_label_convention(product.pk, MARKED)

    message = str(refusal.value)
    assert f"Product {product.pk}" in message and "Nothing was changed" in message, message
    assert all(word in message for word in words), message
    assert (json_images(product.pk), image_rows(product.pk)) == before
    with schema_context(TENANT):
        assert held_back(product.pk) and TAG not in listing_photos(product.pk, "vinted")


@pytest.mark.parametrize(("convention", "label"), [(LAST_PHOTO, TAG), (MARKED, None)], ids=["last-photo", "marked"])
def test_a_held_product_whose_json_is_a_string_holding_its_array_is_settled(tenant, convention, label):
    mixed = [{**entry, "is_label": False} for entry in entries(3)] + [{"url": TAG, "order": 9}]
    product = held_with(json.dumps(mixed))

    with schema_context(TENANT):
        still_held = settle_label_convention(product.pk, convention)
        photos = listing_photos(product.pk, "vinted")

    assert still_held is None
    assert [entry["url"] for entry in json_images(product.pk)] == [entry["url"] for entry in mixed]  # the array
    urls = [url for _, _, url, _ in image_rows(product.pk)]
    assert urls == [entry["url"] for entry in mixed]
    assert [url for _, is_label, url, _ in image_rows(product.pk) if is_label] == ([label] if label else [])
    assert photos == [url for url in urls if url != label]
    assert run_command("--check", "--schema", TENANT)[0] == 0


def truthy_marks(images: list[dict]) -> set[str]:
    """The photos any reading of their marks may call the label: true, and what reads as true ("true", 1); a
    one-image product has no label, whatever its mark."""
    if len(images) < 2:
        return set()
    return {image["url"] for image in images if "is_label" in image and image["is_label"] in (True, "true", 1)}


@hypothesis_config(**EXAMPLES)
@given(ENTRIES)
def test_settling_by_the_marks_never_sends_a_photo_a_mark_may_call_the_label(tenant, marks_and_orders):
    images = json_of(marks_and_orders)
    with transaction.atomic():
        product = make_product(images=images)
        run_command("--schema", TENANT, "-v", "0")
        before = (json_images(product.pk), sent(product.pk))

        try:
            with schema_context(TENANT):
                settle_label_convention(product.pk, MARKED)
        except ImageServiceError:
            # Refused: nothing changed (a product marked true twice is held by the rule already).
            assert (json_images(product.pk), sent(product.pk)) == before, images
        else:
            assert not sent(product.pk) & truthy_marks(images), images
        transaction.set_rollback(True)


def test_a_held_product_whose_json_string_is_nested_too_deeply_to_read_is_refused_clearly(tenant):
    # Its text is never parsed (PostgreSQL's parser would exceed its stack): settling finds no list of photos.
    product = held_with("[" * 100_000 + "]" * 100_000)
    before = json_images(product.pk)

    with schema_context(TENANT), pytest.raises(ImageServiceError, match="no list of photos"):
        settle_label_convention(product.pk, LAST_PHOTO)

    assert json_images(product.pk) == before
    with schema_context(TENANT):
        assert "nested too deeply" in held_back(product.pk)
