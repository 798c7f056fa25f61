"""The first-backfill report of a catalogue of hostile JSON, one product per kind of trouble the rule knows (each
repaired and listed, or refused and listed), kept byte for byte in tests/golden/ (``assert_golden_report``): work
on speed must not change what the report says about any of them."""

import json
from datetime import UTC, datetime

from django_tenants.utils import schema_context

from products.models import Product
from tests.helpers import GOLDEN, TENANT, assert_golden_report, make_product, run_command, run_sql

HOSTILE_FIRST_BACKFILL_REPORT = GOLDEN / "hostile-first-backfill.md"
PRODUCT_CREATED_AT = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
AT = "2025-03-01T10:00:00Z"


def _url(n: int) -> str:
    return f"https://cdn.example/p{n}.jpeg"


def _entry(n: int, order=None, **extra) -> dict:
    return {"url": _url(n), "order": n if order is None else order, "created_at": AT, **extra}


# Each product's images as the JSON text stored (raw: some are no JSON a client library would write), by id.
HOSTILE_CATALOGUE = {
    1: [_entry(1), _entry(2), _entry(3)],  # clean: the last one the label
    2: [json.dumps(_entry(1)), _entry(2), json.dumps(_entry(3))],  # entries stored as the JSON text of objects
    3: [_entry(1), '{"url": "https://cdn.example/p2.jpeg", "order": '],  # JSON text that does not parse
    4: [_entry(1, "3"), _entry(2, "1"), _entry(3, " 2 ")],  # orders written as text
    5: [_entry(1, 2.0), _entry(2, 1.0), _entry(3, 0.0)],  # orders written as whole-number floats
    6: [_entry(1, 1), _entry(2, "abc"), _entry(3, 5)],  # an order that is no number
    7: [_entry(1, -1), _entry(2, 2), _entry(3, 2)],  # a negative order, duplicate orders
    8: [_entry(1, 2_147_483_648), _entry(2, 1)],  # an order past the integer maximum
    9: [
        {"url": _url(1), "order": 1, "created_at": "now"},  # free-form: parses in PostgreSQL, refused by shape
        {"url": _url(2), "order": 2, "created_at": "1899-12-31T23:59:59Z"},  # outside 1900-2100
        {"url": _url(3), "order": 3},  # missing
    ],
    10: [{"url": "  " + _url(1) + "\n", "order": 1, "created_at": AT}, _entry(2)],  # whitespace around a url
    11: [_entry(1), {"url": "https://cdn.example/p\u200b2.jpeg", "order": 2}],  # an invisible character
    12: [_entry(1), {"url": "https://cdn.example\\p2.jpeg", "order": 2}],  # a backslash
    13: [_entry(1), {"url": "ftp://cdn.example/p2.jpeg", "order": 2}],  # neither http(s) nor site-relative
    14: [_entry(1), {"url": "", "order": 2}],  # an empty url
    15: [_entry(1), {"order": 2}],  # no url
    16: [_entry(1), {"url": 7, "order": 2}],  # a url that is no string
    17: [_entry(1), 7],  # an entry that is a number
    18: [_entry(1), None],  # an entry that is null
    19: {"url": _url(1), "order": 1},  # an object, not an array
    20: 42,  # a number
    21: "https://cdn.example/p1.jpeg",  # a string holding no JSON
    22: json.dumps([_entry(1), _entry(2)]),  # a string holding an array
    23: [],  # an empty array
    24: None,  # JSON null
    25: [_entry(1, is_label=False), _entry(2, is_label=True), _entry(3)],  # keyed and unkeyed is_label mixed
    26: [_entry(1, is_label=False), _entry(2, is_label="true")],  # an is_label that is no boolean
    27: [_entry(1, is_label=True), _entry(2, is_label=True), _entry(3, is_label=False)],  # several labels
    28: [_entry(1, is_label=True), _entry(2, is_label=False), _entry(3, is_label=False)],  # the label not last
    29: [_entry(1, is_label=True)],  # the only image marked as the label
    30: [_entry(1, is_label=False), _entry(2, is_label=False)],  # the label cleared on purpose
    31: [_entry(1), _entry(2), _entry(1, 3)],  # a url twice
    32: ["https://cdn.example/p1.jpeg", "/media/p2.jpeg"],  # plain string entries, one site-relative
}
SOFT_DELETED = 33  # a soft-deleted product keeps its photos (migrated like any other)


def test_the_first_backfill_of_hostile_json_reports_what_it_always_reported(tenant, tmp_path):
    for product_id, images in {**HOSTILE_CATALOGUE, SOFT_DELETED: [_entry(1), _entry(2)]}.items():
        make_product(id=product_id, images=[])
        run_sql(
            "UPDATE {products} SET images = %(images)s::jsonb, created_at = %(created_at)s WHERE id = %(id)s",
            {"images": json.dumps(images), "created_at": PRODUCT_CREATED_AT, "id": product_id},
        )
    with schema_context(TENANT):
        Product.objects.filter(pk=SOFT_DELETED).update(deleted_at=PRODUCT_CREATED_AT)

    code, report, output = run_command("--schema", TENANT, "--report", str(tmp_path / "report.md"), tmp_path=tmp_path)

    # Every kind above is listed: the refused ones as errors (exit 1: some products not migrated), the repaired
    # ones with their repairs; the checks pass.
    assert code == 1, output
    assert len(report["tenants"][0]["run"]["errors"]) > 10
    assert all(check["passed"] for check in report["tenants"][0]["validation"]["checks"])
    assert_golden_report((tmp_path / "report.md").read_text(), HOSTILE_FIRST_BACKFILL_REPORT)
