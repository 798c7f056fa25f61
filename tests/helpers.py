"""What tests share: the test tenants, product and entry builders, raw SQL in a tenant, running the command."""

import json
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

from django.core.management import call_command
from django.core.management.base import CommandError
from django_tenants.utils import schema_context
from psycopg import sql

from products.models import ProductImage
from stoflow.raw_sql import fetch_rows
from tests.factories import ProductFactory

TENANT = "tenant_a"
OTHER_TENANT = "tenant_b"
TEST_TENANTS = [TENANT, OTHER_TENANT]


def make_product(schema: str = TENANT, **fields):
    with schema_context(schema):
        return ProductFactory(**fields)


def entries(count: int, first_order: int = 1) -> list[dict]:
    """``count`` image entries in the legacy shape, orders from ``first_order``."""
    return [
        {
            "url": f"https://cdn.example/{first_order + i}-{i}.jpeg",
            "order": first_order + i,
            "created_at": f"2025-03-0{1 + i % 9}T10:00:0{i % 10}Z",
        }
        for i in range(count)
    ]


def image_rows(product_id: int, schema: str = TENANT) -> list[tuple]:
    """The product's rows as (order, is_label, url, created_at), by order."""
    query = sql.SQL('SELECT "order", is_label, url, created_at FROM {} WHERE product_id = %(id)s ORDER BY "order"')
    return fetch_rows(query.format(sql.Identifier(schema, "product_images")), {"id": product_id})


def run_command(*args: str, tmp_path: Path | None = None) -> tuple[int, dict | None, str]:
    """Run migrate_images; returns (exit code, JSON report or None, terminal output)."""
    out, err = StringIO(), StringIO()
    argv = list(args)
    json_path = None
    if tmp_path is not None:
        json_path = tmp_path / "report.json"
        argv += ["--json", str(json_path)]
    try:
        call_command("migrate_images", *argv, "--no-input", stdout=out, stderr=err)
        code = 0
    except CommandError as exc:
        code = exc.returncode
        err.write(str(exc))
    report = json.loads(json_path.read_text()) if json_path and json_path.exists() else None
    return code, report, out.getvalue() + err.getvalue()


def table_state(schema: str) -> list[tuple]:
    """Every image row but its id and updated_at: what a clean run and a resumed run must agree on."""
    query = sql.SQL(
        'SELECT dense_rank() OVER (ORDER BY i.product_id), i."order", i.is_label, i.url, i.created_at '
        'FROM {} AS i ORDER BY i.product_id, i."order"'
    )
    return fetch_rows(query.format(sql.Identifier(schema, "product_images")))


def migrated_product(count: int, first_order: int = 1, schema: str = TENANT):
    """A product as migrate_images leaves it: legacy JSON entries and their rows, the last one the label
    when there are two or more."""
    items = entries(count, first_order)
    product = make_product(schema, images=items)
    with schema_context(schema):
        ProductImage.objects.bulk_create(
            ProductImage(
                product=product,
                url=item["url"],
                order=item["order"],
                is_label=count >= 2 and position == count - 1,
                created_at=datetime.fromisoformat(item["created_at"]),
            )
            for position, item in enumerate(items)
        )
    return product


def image_ids(product_id: int, schema: str = TENANT) -> list[int]:
    """The product's image ids, by order."""
    with schema_context(schema):
        return list(ProductImage.objects.filter(product_id=product_id).order_by("order").values_list("pk", flat=True))


def image_state(product_id: int, schema: str = TENANT) -> tuple[list[tuple], object]:
    """Everything a refused call must leave alone: the product's rows, every column, and its legacy JSON."""
    query = sql.SQL(
        'SELECT id, "order", is_label, url, created_at, updated_at FROM {} WHERE product_id = %(id)s ORDER BY "order"'
    )
    rows = fetch_rows(query.format(sql.Identifier(schema, "product_images")), {"id": product_id})
    return rows, json_images(product_id, schema)


def json_images(product_id: int, schema: str = TENANT) -> object:
    """The product's legacy images JSON, parsed."""
    query = sql.SQL("SELECT images::text FROM {} WHERE id = %(id)s").format(sql.Identifier(schema, "products"))
    ((text,),) = fetch_rows(query, {"id": product_id})
    return None if text is None else json.loads(text)


def json_from_rows(product_id: int, schema: str = TENANT) -> list[dict]:
    """What the image service's JSON mirror must hold for the product, computed here from its rows."""
    return [
        {"url": url, "order": order, "created_at": iso_utc(created_at), "is_label": is_label}
        for order, is_label, url, created_at in image_rows(product_id, schema)
    ]


def iso_utc(moment: datetime) -> str:
    """ "YYYY-MM-DDTHH:MM:SS[.ffffff]Z", the fraction only when there is one."""
    moment = moment.astimezone(UTC)
    fraction = f".{moment.microsecond:06d}" if moment.microsecond else ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"
