"""Two writers, one truth: random interleavings of the old code's JSON writes, the image service and
``migrate_images --sync``, with and without the follower (docs/migrate_images.md, "Two writers").

Hypothesis drives, on a few products migrated by a first backfill:

- legacy writes by raw SQL, as the old code makes them (no ``is_label``): append a photo, remove one, reorder,
  replace a URL, rewrite the whole list; sometimes a mixed or malformed one (an ``is_label`` beside entries
  without it, ``"true"``, 1, null); a new product inserted with its JSON;
- image service calls (add, remove, reorder, set and clear the label), refused with ``JsonChanged`` when the
  product's JSON changed since its rows were reconciled (no follower ran) or was refused: a correct refusal;
- ``migrate_images --sync``, ``--sync --follow`` (installs the follower) and ``--unfollow``.

A model kept beside the rows says, from the documented rule alone (``yielded_by`` below, not the SQL), what each
product's rows are, whether it is held back and which service calls are refused. After every step: the rows
are the model's; at most one label per product, on its highest order, none on a one-image product; a row
whose URL stayed in the product's list kept its id; ``listing_photos`` sends no label, and nothing of a
product held back; and the six validation checks pass whenever the follower is on or a --sync just ran.

Each example runs in a savepoint of the test's transaction, rolled back at its end (the follower's trigger
with it), so every example starts from the same empty tenant.
"""

from __future__ import annotations

import json as json_module
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
from psycopg.types.json import Jsonb

from products import images
from products.migration import follower
from products.migration.report import ExitCode
from products.migration.validation import validate_tenant
from products.selectors import listing_photos
from tests.helpers import (
    TENANT,
    json_from_rows,
    json_images,
    make_product,
    run_command,
    sql_rows,
    sql_value,
    store_json,
)

LIMIT = 6  # STOFLOW_MAX_IMAGES_PER_PRODUCT here: small, so the old code's appends pass it
MARKETPLACES = {"vinted": 20, "ebay": 3}
MAX_PRODUCTS = 4
MAX_EXAMPLES, STEPS = 25, 15
CREATED_AT = "2025-03-01T10:00:00Z"
REFUSED = "refused"  # the rule's verdict on mixed or malformed JSON: no rows, the product held back
NOT_RECORDED = object()  # a product whose JSON no reconciliation has recorded yet


def text(json: list[dict]) -> str:
    """A JSON value as one text per value (keys sorted, as jsonb keeps them): 1 and true differ, as in jsonb."""
    return json_module.dumps(json, sort_keys=True)


def yielded_by(json: list[dict]) -> list[tuple[str, bool]] | str:
    """The rows a JSON list yields, as (url, is_label) in order, or REFUSED: docs/migrate_images.md's rule."""
    keyed = [entry for entry in json if "is_label" in entry]
    if keyed and (len(keyed) < len(json) or any(not isinstance(entry["is_label"], bool) for entry in keyed)):
        return REFUSED
    by_order = [entry["url"] for _, entry in sorted(enumerate(json), key=lambda pair: (pair[1]["order"], pair[0]))]
    if len(by_order) < 2:
        return [(url, False) for url in by_order]
    if keyed:
        marked = [
            entry["url"]
            for _, entry in sorted(enumerate(json), key=lambda p: (p[1]["order"], p[0]))
            if entry["is_label"]
        ]
        if len(marked) > 1:
            return REFUSED  # several marked: any of them could be the label
        label = marked[0] if marked else None  # all false: no label
    else:
        label = by_order[-1]  # the old convention: the last photo of two or more
    return [(url, False) for url in by_order if url != label] + ([(label, True)] if label else [])


@dataclass
class Expected:
    """What a product should look like: its rows (url, is_label) in order, the JSON its rows were last
    reconciled with (or mirrored), and whether it is held back."""

    rows: list[tuple[str, bool]]
    recorded: object = NOT_RECORDED  # the recorded JSON's text()
    held: bool = False


class TwoWriters(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self._savepoint = transaction.atomic()
        self._savepoint.__enter__()
        self._schema = schema_context(TENANT)
        self._schema.__enter__()
        self.expected: dict[int, Expected] = {}
        self.follows = False
        self.just_synced = False
        self.ids: dict[int, dict[str, int]] = {}  # the ids of the rows by URL after the last step
        self.urls = 0

    def teardown(self):
        self._schema.__exit__(None, None, None)
        transaction.set_rollback(True)
        self._savepoint.__exit__(None, None, None)

    # --- the model ------------------------------------------------------------------------

    def new_url(self) -> str:
        self.urls += 1
        return f"https://cdn.example/two-writers/{self.urls}.jpeg"

    def old_entries(self, count: int) -> list[dict]:
        return [{"url": self.new_url(), "order": order, "created_at": CREATED_AT} for order in range(1, count + 1)]

    def reconciled(self, product_id: int, json: list[dict]) -> None:
        """The product's rows brought to ``json`` (--sync, the follower): refused JSON keeps them, held back."""
        expected = self.expected[product_id]
        yielded = yielded_by(json)
        expected.recorded = text(json)
        expected.held = yielded == REFUSED
        if yielded != REFUSED:
            expected.rows = yielded

    def stale(self, product_id: int) -> bool:
        """Its JSON changed since it was recorded, or was refused: the image service refuses it."""
        expected = self.expected[product_id]
        return expected.recorded is not NOT_RECORDED and (
            expected.held or expected.recorded != text(json_images(product_id))
        )

    def synced(self, *, catch_up: bool) -> None:
        """--sync: products with rows whose JSON changed (or was refused, or never recorded) are reconciled, and
        products without rows but with JSON are migrated. The follower's catch-up reconciles every such product."""
        for product_id, expected in self.expected.items():
            json = json_images(product_id)
            changed = expected.recorded is NOT_RECORDED or expected.held or expected.recorded != text(json)
            if changed and (catch_up or expected.rows or json):
                self.reconciled(product_id, json)

    def row_ids(self, product_id: int) -> list[int]:
        return [
            image_id
            for (image_id,) in sql_rows(
                'SELECT id FROM {images} WHERE product_id = %(id)s ORDER BY "order"', {"id": product_id}
            )
        ]

    # --- set-up ---------------------------------------------------------------------------

    @initialize(counts=st.lists(st.integers(0, 4), min_size=1, max_size=3), follow=st.booleans())
    def first_backfill(self, counts, follow):
        for count in counts:
            product = make_product(images=self.old_entries(count))
            self.expected[product.pk] = Expected(rows=[])
        code, _, output = run_command("--schema", TENANT, "-v", "0", *(["--follow"] if follow else []))
        assert code == ExitCode.OK, output
        self.synced(catch_up=False)
        if follow:
            self.synced(catch_up=True)
            self.follows = True
        self.just_synced = True

    # --- the old code: raw SQL, no is_label --------------------------------------------------

    def product(self, data) -> int:
        return data.draw(st.sampled_from(sorted(self.expected)), label="product")

    def legacy_write(self, product_id: int, json: list[dict]) -> None:
        before = json_images(product_id)
        store_json(product_id, json)
        expected = self.expected[product_id]
        # The follower runs on a changed value only, and skips JSON already reconciled (the service's mirror).
        if self.follows and text(json) != text(before) and (expected.held or text(json) != expected.recorded):
            self.reconciled(product_id, json)

    @rule(data=st.data(), how=st.sampled_from(["append", "remove", "reorder", "replace", "rewrite", "malformed"]))
    def old_code_writes_the_json(self, data, how):
        product_id = self.product(data)
        json = [dict(entry) for entry in json_images(product_id)]
        if how == "append" or (not json and how != "rewrite"):
            # Old code knows no is_label: after the service wrote the JSON, this mixes the two conventions.
            json.append(
                {
                    "url": self.new_url(),
                    "order": max([e["order"] for e in json], default=0) + 1,
                    "created_at": CREATED_AT,
                }
            )
        elif how == "remove":
            json.pop(data.draw(st.integers(0, len(json) - 1), label="removed"))
        elif how == "reorder":
            orders = data.draw(st.permutations([entry["order"] for entry in json]), label="orders")
            for entry, order in zip(json, orders, strict=True):
                entry["order"] = order
        elif how == "replace":
            json[data.draw(st.integers(0, len(json) - 1), label="replaced")]["url"] = self.new_url()
        elif how == "rewrite":
            kept = (
                data.draw(st.lists(st.sampled_from([e["url"] for e in json]), unique=True), label="kept")
                if json
                else []
            )
            urls = kept + [self.new_url() for _ in range(data.draw(st.integers(0, 3), label="new"))]
            json = [{"url": url, "order": order, "created_at": CREATED_AT} for order, url in enumerate(urls, start=1)]
        else:
            mark = data.draw(st.sampled_from(["true", 1, None, True, False]), label="is_label")
            json[data.draw(st.integers(0, len(json) - 1), label="marked")]["is_label"] = mark
        self.legacy_write(product_id, json)
        self.just_synced = False

    @precondition(lambda self: len(self.expected) < MAX_PRODUCTS)
    @rule(count=st.integers(0, 4))
    def old_code_inserts_a_product(self, count):
        json = self.old_entries(count)
        product_id = sql_value(
            "INSERT INTO {products} (title, created_at, updated_at, images) VALUES ('new', now(), now(), %(json)s) "
            "RETURNING id",
            {"json": Jsonb(json)},
        )
        self.expected[product_id] = Expected(rows=[])
        if self.follows:
            self.reconciled(product_id, json)
        self.just_synced = False

    # --- the image service ------------------------------------------------------------------

    def service(self, product_id: int, call, *args, refused_by: type[images.ImageServiceError] | None = None) -> bool:
        """Make the call; the model says whether it is refused (the product's JSON changed under it: JsonChanged
        first, or ``refused_by``). Returns whether it went through."""
        if self.stale(product_id):
            refused_by = images.JsonChanged
        rows_before, json_before = self.row_ids(product_id), json_images(product_id)
        if refused_by:
            with pytest.raises(refused_by):
                call(*args)
            assert (self.row_ids(product_id), json_images(product_id)) == (rows_before, json_before)
            return False
        call(*args)
        return True

    def mirrored(self, product_id: int, rows: list[tuple[str, bool]]) -> None:
        """A service write went through: the rows are ``rows`` and the JSON mirrors them, recorded."""
        expected = self.expected[product_id]
        if rows != expected.rows:
            expected.rows = rows
            assert json_images(product_id) == json_from_rows(product_id)
            expected.recorded = text(json_images(product_id))
        self.just_synced = False

    def photos_and_label(self, product_id: int) -> tuple[list[str], str | None]:
        rows = self.expected[product_id].rows
        return [url for url, label in rows if not label], next((url for url, label in rows if label), None)

    @rule(data=st.data())
    def service_adds_an_image(self, data):
        product_id = self.product(data)
        url = self.new_url()
        photos, label = self.photos_and_label(product_id)
        refused_by = None
        if len(self.expected[product_id].rows) >= LIMIT:
            refused_by = images.TooManyImages
        elif not self.expected[product_id].rows and json_images(product_id):
            refused_by = images.NotMigrated  # no rows yet, photos in the JSON: a --sync migrates them first
        if self.service(product_id, images.add_image, product_id, url, refused_by=refused_by):
            self.mirrored(product_id, [(u, False) for u in photos + [url]] + ([(label, True)] if label else []))

    @precondition(lambda self: any(expected.rows for expected in self.expected.values()))
    @rule(data=st.data())
    def service_removes_an_image(self, data):
        product_id = data.draw(st.sampled_from(sorted(p for p, e in self.expected.items() if e.rows)), label="product")
        position = data.draw(st.integers(0, len(self.expected[product_id].rows) - 1), label="removed")
        image_id = self.row_ids(product_id)[position]
        if self.service(product_id, images.remove_image, image_id):
            rows = self.expected[product_id].rows[:position] + self.expected[product_id].rows[position + 1 :]
            self.mirrored(product_id, [(url, False) for url, _ in rows] if len(rows) == 1 else rows)

    @rule(data=st.data())
    def service_reorders_the_photos(self, data):
        product_id = self.product(data)
        photos, label = self.photos_and_label(product_id)
        ids_by_url = dict(
            zip([url for url, _ in self.expected[product_id].rows], self.row_ids(product_id), strict=True)
        )
        new_order = data.draw(st.permutations(photos), label="new order")
        if self.service(product_id, images.reorder_images, product_id, [ids_by_url[url] for url in new_order]):
            self.mirrored(product_id, [(url, False) for url in new_order] + ([(label, True)] if label else []))

    @precondition(lambda self: any(expected.rows for expected in self.expected.values()))
    @rule(data=st.data())
    def service_sets_the_label(self, data):
        product_id = data.draw(st.sampled_from(sorted(p for p, e in self.expected.items() if e.rows)), label="product")
        rows = self.expected[product_id].rows
        position = data.draw(st.integers(0, len(rows) - 1), label="new label")
        chosen = rows[position][0]
        refused_by = images.LabelNotAllowed if len(rows) < 2 else None
        if self.service(product_id, images.set_label, self.row_ids(product_id)[position], refused_by=refused_by):
            photos, label = self.photos_and_label(product_id)
            others = [url for url in photos if url != chosen] + ([label] if label and label != chosen else [])
            self.mirrored(product_id, [(url, False) for url in others] + [(chosen, True)])

    @rule(data=st.data())
    def service_clears_the_label(self, data):
        product_id = self.product(data)
        if self.service(product_id, images.clear_label, product_id):
            self.mirrored(product_id, [(url, False) for url, _ in self.expected[product_id].rows])

    # --- the migration ----------------------------------------------------------------------

    def sync_exit_code(self) -> int:
        """--sync lists every product whose JSON the rule refuses as an error (exit 1)."""
        refused = any(yielded_by(json_images(product_id)) == REFUSED for product_id in self.expected)
        return ExitCode.PRODUCT_ERRORS if refused else ExitCode.OK

    @rule()
    def sync(self):
        expected_code = self.sync_exit_code()
        code, _, output = run_command("--sync", "--schema", TENANT, "-v", "0")
        assert code == expected_code, output
        self.synced(catch_up=False)
        self.just_synced = True

    @precondition(lambda self: not self.follows)
    @rule()
    def sync_and_follow(self):
        expected_code = self.sync_exit_code()
        code, _, output = run_command("--sync", "--follow", "--schema", TENANT, "-v", "0")
        assert code == expected_code, output
        self.synced(catch_up=False)
        self.synced(catch_up=True)
        assert follower.follows(TENANT)
        self.follows = self.just_synced = True

    @precondition(lambda self: self.follows)
    @rule()
    def unfollow(self):
        code, _, output = run_command("--unfollow", "--schema", TENANT)
        assert code == ExitCode.OK and "follower removed" in output, output
        self.follows = False

    # --- after every step -----------------------------------------------------------------

    @invariant()
    def the_rows_are_the_model_s_and_keep_the_label_rule(self):
        for product_id, expected in self.expected.items():
            rows = sql_rows(
                'SELECT url, is_label, "order" FROM {images} WHERE product_id = %(id)s ORDER BY "order"',
                {"id": product_id},
            )
            assert [(url, label) for url, label, _ in rows] == expected.rows, (product_id, json_images(product_id))
            labels = [position for position, (_, label, _) in enumerate(rows) if label]
            assert labels in ([], [len(rows) - 1]), "several labels, or not on the highest order"
            assert not (len(rows) == 1 and labels), "a one-image product has a label"
            held = sql_value(
                "SELECT count(*) FROM {schema}.product_json_state WHERE product_id = %(id)s AND refused IS NOT NULL",
                {"id": product_id},
            )
            assert held == expected.held

    @invariant()
    def unchanged_urls_keep_their_ids(self):
        for product_id in self.expected:
            ids = dict(sql_rows("SELECT url, id FROM {images} WHERE product_id = %(id)s", {"id": product_id}))
            before = self.ids.get(product_id, {})
            assert {url: ids[url] for url in before if url in ids} == {url: before[url] for url in before if url in ids}
            self.ids[product_id] = ids

    @invariant()
    def no_label_is_ever_sent(self):
        for product_id, expected in self.expected.items():
            photos, label = self.photos_and_label(product_id)
            json = json_images(product_id)
            for marketplace, limit in MARKETPLACES.items():
                sent = listing_photos(product_id, marketplace)
                assert sent == ([] if expected.held else photos[:limit])
                assert label not in sent
                # Rows in step with the JSON: the rule's label, read from the JSON, is not sent either.
                if not self.stale(product_id) and yielded_by(json) != REFUSED:
                    assert not [url for url, is_label in yielded_by(json) if is_label and url in sent]

    @invariant()
    def the_checks_pass_with_the_follower_or_after_a_sync(self):
        if not (self.follows or self.just_synced):
            return
        failing = [
            (check.number, check.name, check.figure, check.expected, check.product_ids)
            for check in validate_tenant(TENANT).checks
            if not check.passed
        ]
        assert not failing, f"validation checks failing: {failing}"


def test_two_writers_keep_one_truth(tenant, settings):
    settings.STOFLOW_MAX_IMAGES_PER_PRODUCT = LIMIT
    settings.STOFLOW_MARKETPLACE_PHOTO_LIMITS = MARKETPLACES
    run_state_machine_as_test(
        TwoWriters,
        settings=hypothesis_config(
            max_examples=MAX_EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,  # nothing written to .hypothesis/: each run explores afresh
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
