"""The constraints live in the database, not only in Python."""

from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, transaction
from django_tenants.utils import schema_context

from products.models import Product, ProductImage
from tests.helpers import TENANT, sql_rows, sql_value

NOW = datetime(2026, 1, 15, tzinfo=UTC)


def test_a_product_needs_nothing_and_its_legacy_json_is_outside_the_orm(tenant):
    with schema_context(TENANT):
        product = Product.objects.create()
        product.refresh_from_db()
        assert product.deleted_at is None and product.created_at is not None
    assert "images" not in {field.name for field in Product._meta.get_fields()}
    # The column is still in the tenant's table (migration 0004 changed Django's state only), as it was made:
    # jsonb, nullable, no database default; a product made through the ORM leaves it NULL, an empty value.
    assert sql_rows(
        "SELECT data_type, is_nullable, column_default FROM information_schema.columns "
        "WHERE table_schema = %(schema)s AND table_name = 'products' AND column_name = 'images'",
        {"schema": TENANT},
    ) == [("jsonb", "YES", None)]
    assert sql_value("SELECT images FROM {products} WHERE id = %(id)s", {"id": product.pk}) is None


@pytest.mark.parametrize(
    ("second", "constraint"),
    [
        ({"order": 0, "url": "b"}, "product_images_product_order_uniq"),
        ({"order": 1, "url": "b", "is_label": True}, "product_images_one_label_per_product"),
        ({"order": 1, "url": ""}, "product_images_url_not_empty"),
        ({"order": -1, "url": "b"}, "order_check"),
    ],
    ids=["duplicate-order", "second-label", "empty-url", "negative-order"],
)
def test_the_database_refuses_rows_that_break_the_rules(tenant, second, constraint):
    with schema_context(TENANT):
        product = Product.objects.create()
        ProductImage.objects.create(product=product, order=0, url="a", is_label=True, created_at=NOW)
        with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
            # bulk_create skips model validation: this is the database speaking.
            ProductImage.objects.bulk_create([ProductImage(product=product, created_at=NOW, **second)])


def test_deleting_a_product_deletes_its_images(tenant):
    with schema_context(TENANT):
        product = Product.objects.create()
        ProductImage.objects.create(product=product, order=0, url="a", created_at=NOW)
        product.delete()
        assert ProductImage.objects.count() == 0
