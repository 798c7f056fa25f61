"""Random sequences of image service calls on real PostgreSQL rows: every rule holds after every step.

Hypothesis drives add / remove / reorder / set_label / clear_label, good calls and refused ones,
on one or two products as migrate_images leaves them (0- or 1-based, with or without gaps in
their orders, some above the image limit). A model of what each product should look like is
kept beside the rows; after every step the rows must match it and keep every rule, the legacy
JSON must mirror them, no marketplace may receive a label, and the migration's validation
checks must pass.

Each example runs in a savepoint of the test's transaction, rolled back at its end, so every
example starts from fresh rows.
"""

import unicodedata
from dataclasses import dataclass

import pytest
from django.db import transaction
from django_tenants.utils import schema_context
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_config
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from products.images import (
    ImageNotFound,
    ImageServiceError,
    InvalidImageOrder,
    InvalidImageUrl,
    LabelNotAllowed,
    TooManyImages,
    add_image,
    clear_label,
    remove_image,
    reorder_images,
    set_label,
)
from products.migration.validation import validate_tenant
from products.models import Product, ProductImage
from products.selectors import listing_photos, listing_photos_for
from tests.helpers import (
    TENANT,
    image_ids,
    image_rows,
    image_state,
    json_from_rows,
    json_images,
    migrated_product,
    store_json,
)

LIMIT = 6  # STOFLOW_MAX_IMAGES_PER_PRODUCT here: small, so the limit is reached often
MARKETPLACES = {"vinted": 20, "ebay": 3, "etsy": 2}  # small limits too, so they cut
NEVER_AN_IMAGE = 2_000_000_000
MAX_EXAMPLES, STEPS = 40, 15


@dataclass
class Expected:
    """What a product should look like: its photos' ids in order, then its label's."""

    photos: list[int]
    label: int | None
    legacy_json: object  # the JSON as migrated, kept until the service first writes
    migrated_count: int  # a product may keep more than the limit, never grow past it
    written: bool = False

    @property
    def ids(self) -> list[int]:
        return self.photos + ([self.label] if self.label is not None else [])


class ImageEditing(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self._savepoint = transaction.atomic()
        self._savepoint.__enter__()
        self._schema = schema_context(TENANT)
        self._schema.__enter__()
        self.expected: dict[int, Expected] = {}
        self.removed: list[int] = []
        self.added = 0

    def teardown(self):
        self._schema.__exit__(None, None, None)
        transaction.set_rollback(True)
        self._savepoint.__exit__(None, None, None)

    # --- set-up ---------------------------------------------------------------------------

    @initialize(
        products=st.lists(
            st.tuples(
                # Mostly small products, where a step crosses the one-image and two-image rules;
                # sometimes up to past the limit.
                st.one_of(st.integers(1, 3), st.integers(0, LIMIT + 2)),
                st.sampled_from([0, 1]),
                st.sampled_from([1, 3]),
            ),
            min_size=1,
            max_size=2,
        )
    )
    def migrated_products(self, products):
        for count, first_order, step in products:
            product = migrated_product(count, first_order)
            ids = image_ids(product.id)
            # Gaps between orders (step 3): from the last image down, so no two rows meet.
            for position in reversed(range(count)):
                ProductImage.objects.filter(pk=ids[position]).update(order=first_order + position * step)
            # The legacy JSON says the same, as it would have when the product was migrated.
            store_json(
                product.id,
                [
                    {**entry, "order": first_order + position * step}
                    for position, entry in enumerate(json_images(product.id))
                ],
            )
            label = ids[-1] if count >= 2 else None
            self.expected[product.id] = Expected(
                photos=[pk for pk in ids if pk != label],
                label=label,
                legacy_json=json_images(product.id),
                migrated_count=count,
            )

    # --- helpers --------------------------------------------------------------------------

    def product(self, data) -> int:
        return data.draw(st.sampled_from(sorted(self.expected)), label="product")

    def product_argument(self, data, product_id: int) -> Product | int:
        """The services take a product or its id: both are exercised."""
        return Product.objects.get(pk=product_id) if data.draw(st.booleans(), label="as instance") else product_id

    def image(self, data, product_id: int) -> int:
        return data.draw(st.sampled_from(self.expected[product_id].ids), label="image")

    def has_images(self) -> bool:
        return any(expected.ids for expected in self.expected.values())

    def product_with_images(self, data) -> int:
        return data.draw(st.sampled_from(sorted(p for p, e in self.expected.items() if e.ids)), label="product")

    def refused(self, error: type[ImageServiceError], call, *args, **kwargs) -> None:
        """The call raises ``error`` and leaves every product's rows and JSON as they were."""
        before = {product_id: image_state(product_id) for product_id in self.expected}
        with pytest.raises(error):
            call(*args, **kwargs)
        assert {product_id: image_state(product_id) for product_id in self.expected} == before

    # --- the calls ------------------------------------------------------------------------

    @rule(data=st.data(), text=st.text(max_size=12))
    def add_an_image(self, data, text):
        product_id = self.product(data)
        expected = self.expected[product_id]
        self.added += 1
        # Unique URLs, so a label can be told from a photo by its URL.
        url = f"https://cdn.example/added/{self.added}/{text}"
        # Once trimmed, a backslash or an invisible character (Unicode Cc, Cf, Zl, Zp) is refused: the URL rule
        # the migration reads too.
        if any(c == "\\" or unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"} for c in url.strip(" \t\n\r\f\v")):
            self.refused(InvalidImageUrl, add_image, product_id, url)
        elif len(expected.ids) >= LIMIT:
            self.refused(TooManyImages, add_image, product_id, url)
        else:
            image = add_image(self.product_argument(data, product_id), url)
            expected.photos.append(image.pk)
            expected.written = True

    @precondition(lambda self: self.has_images())
    @rule(data=st.data(), as_instance=st.booleans())
    def remove_an_image(self, data, as_instance):
        product_id = self.product_with_images(data)
        expected = self.expected[product_id]
        image_id = self.image(data, product_id)
        remove_image(ProductImage.objects.get(pk=image_id) if as_instance else image_id)
        self.removed.append(image_id)
        if image_id == expected.label:
            expected.label = None
        else:
            expected.photos.remove(image_id)
        if len(expected.ids) == 1:
            expected.photos, expected.label = expected.ids, None
        expected.written = True

    @rule(data=st.data(), label_closes_the_list=st.booleans())
    def reorder_the_photos(self, data, label_closes_the_list):
        product_id = self.product(data)
        expected = self.expected[product_id]
        photos = data.draw(st.permutations(expected.photos), label="new order")
        ids = photos + ([expected.label] if label_closes_the_list and expected.label is not None else [])
        reorder_images(self.product_argument(data, product_id), ids)
        if photos != expected.photos:
            expected.photos = photos
            expected.written = True

    # One rule for every refused call, so good calls keep most of the steps.
    @rule(
        data=st.data(),
        how=st.sampled_from(
            [
                "blank url",
                "url not a string",
                "deleted image",
                "partial list",
                "duplicated id",
                "foreign id",
                "label first",
                "not a list",
            ]
        ),
    )
    def a_refused_call(self, data, how):
        product_id = self.product(data)
        expected = self.expected[product_id]
        if how == "blank url":
            blank = data.draw(st.text(alphabet=" \t\n\r\x0b\x0c\u00a0\u2003", max_size=4), label="url")
            self.refused(InvalidImageUrl, add_image, product_id, blank)
            return
        if how == "url not a string":
            url = data.draw(st.one_of(st.none(), st.integers(), st.binary(max_size=8), st.lists(st.text())))
            self.refused(InvalidImageUrl, add_image, product_id, url)
            return
        if how == "deleted image":
            image_id = data.draw(st.sampled_from(self.removed + [NEVER_AN_IMAGE]), label="gone")
            self.refused(ImageNotFound, data.draw(st.sampled_from([remove_image, set_label])), image_id)
            return
        photos = data.draw(st.permutations(expected.photos), label="new order")
        if how == "partial list" and photos:
            ids = photos[:-1]
        elif how == "duplicated id" and photos:
            ids = photos + [photos[0]]
        elif how == "label first" and photos and expected.label is not None:
            ids = [expected.label] + photos
        elif how == "not a list":
            ids = ",".join(map(str, photos))
        else:  # a foreign id, also for the cases above that this product cannot make
            strangers = self.removed + [NEVER_AN_IMAGE]
            strangers += [pk for other, e in self.expected.items() if other != product_id for pk in e.ids]
            ids = photos + [data.draw(st.sampled_from(strangers), label="stranger")]
        self.refused(InvalidImageOrder, reorder_images, product_id, ids)

    @precondition(lambda self: self.has_images())
    @rule(data=st.data())
    def label_an_image(self, data):
        product_id = self.product_with_images(data)
        expected = self.expected[product_id]
        image_id = self.image(data, product_id)
        if len(expected.ids) < 2:
            self.refused(LabelNotAllowed, set_label, image_id)
            return
        if image_id == expected.label:
            set_label(image_id)
            return
        set_label(ProductImage.objects.get(pk=image_id) if data.draw(st.booleans()) else image_id)
        expected.photos.remove(image_id)
        if expected.label is not None:
            expected.photos.append(expected.label)
        expected.label = image_id
        expected.written = True

    @rule(data=st.data())
    def clear_the_label(self, data):
        product_id = self.product(data)
        expected = self.expected[product_id]
        clear_label(self.product_argument(data, product_id))
        if expected.label is not None:
            expected.photos, expected.label = expected.ids, None
            expected.written = True

    # --- after every step -----------------------------------------------------------------

    @invariant()
    def every_rule_holds(self):
        for product_id, expected in self.expected.items():
            rows = image_rows(product_id)
            orders = [order for order, _, _, _ in rows]
            labels = [position for position, (_, is_label, _, _) in enumerate(rows) if is_label]
            assert len(set(orders)) == len(orders), "two images share an order"
            assert len(labels) <= 1, "several labels"
            assert labels in ([], [len(rows) - 1]), "the label is not the last image"
            assert not (len(rows) == 1 and labels), "a single image is a label"
            assert len(rows) <= max(LIMIT, expected.migrated_count), "grew past the limit"
            assert image_ids(product_id) == expected.ids
            assert bool(labels) == (expected.label is not None)

    @invariant()
    def the_json_mirrors_the_rows(self):
        for product_id, expected in self.expected.items():
            if expected.written:
                assert json_images(product_id) == json_from_rows(product_id)
            else:
                assert json_images(product_id) == expected.legacy_json

    @invariant()
    def no_marketplace_receives_a_label(self):
        urls = dict(ProductImage.objects.filter(product_id__in=list(self.expected)).values_list("pk", "url"))
        for marketplace, limit in MARKETPLACES.items():
            bulk = listing_photos_for(list(self.expected), marketplace)
            for product_id, expected in self.expected.items():
                photos = listing_photos(product_id, marketplace)
                assert photos == [urls[pk] for pk in expected.photos[:limit]]
                assert expected.label is None or urls[expected.label] not in photos
                assert bulk[product_id] == photos

    @invariant()
    def the_migration_s_checks_pass(self):
        # What `migrate_images --check` runs: the six checks, the JSON mirror read as the migration reads it.
        failing = [
            (check.number, check.name, check.figure, check.expected, check.product_ids)
            for check in validate_tenant(TENANT).checks
            if not check.passed
        ]
        assert not failing, f"validation checks failing: {failing}"


def test_random_image_editing_keeps_every_rule(tenant, settings):
    settings.STOFLOW_MAX_IMAGES_PER_PRODUCT = LIMIT
    settings.STOFLOW_MARKETPLACE_PHOTO_LIMITS = MARKETPLACES
    run_state_machine_as_test(ImageEditing, settings=hypothesis_settings())


def hypothesis_settings() -> hypothesis_config:
    return hypothesis_config(
        max_examples=MAX_EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        database=None,  # nothing written to .hypothesis/: each run explores afresh
        suppress_health_check=[HealthCheck.too_slow],
    )
