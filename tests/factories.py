import json

import factory
from django.db import connection
from factory.django import DjangoModelFactory
from psycopg import sql

from products.models import Product
from stoflow.raw_sql import execute, table


def write_json(schema: str, product_id: int, images) -> None:
    """Store ``images`` in the product's legacy JSON column (None: SQL NULL), with raw SQL: it is no ORM field.

    Whatever Python value is given is stored as its JSON encoding, a str as a JSON string (a double-encoded
    array, as some legacy rows hold it)."""
    execute(
        sql.SQL("UPDATE {} SET images = %(images)s::jsonb WHERE id = %(id)s").format(table(schema, "products")),
        {"images": None if images is None else json.dumps(images), "id": product_id},
    )


class ProductFactory(DjangoModelFactory):
    """A product; create it inside the tenant's schema (``schema_context``).

    ``images`` (default ``[]``) goes into the legacy JSON column with raw SQL once the row exists, and stays on
    the instance as ``product.images``: the JSON the product was made with (not reloaded from the database)."""

    class Meta:
        model = Product

    title = factory.Sequence(lambda n: f"Product {n}")
    images = factory.LazyFunction(list)

    @classmethod
    def _create(cls, model_class, *args, images=None, **kwargs):
        product = super()._create(model_class, *args, **kwargs)
        write_json(connection.schema_name, product.pk, images)
        product.images = images
        return product
