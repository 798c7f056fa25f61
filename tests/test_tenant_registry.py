"""The tenant registry is read in natural order: user_2 before user_10."""

import pytest
from django_tenants.utils import get_tenant_model
from psycopg import sql

from products.migration.report import ExitCode
from stoflow.tenants.selectors import tenant_schema_names
from tests.helpers import TENANT, run_command, run_sql

REGISTERED_IN_THIS_ORDER = ["user_10", "user_2", "user_1"]
NATURAL_ORDER = ["user_1", "user_2", "user_10"]


def sellers(names: list[str]) -> list[str]:
    """The user_N names among ``names``, in the order given (the test tenants are named otherwise)."""
    return [name for name in names if name.startswith("user_")]


@pytest.fixture
def registered_sellers(tenant):
    """user_10, user_2 and user_1 in the registry, in that order; rows only, no schema (and so no migrations)."""
    for schema in REGISTERED_IN_THIS_ORDER:
        seller = get_tenant_model()(schema_name=schema, name=schema)
        seller.auto_create_schema = False
        seller.save(verbosity=0)
    return REGISTERED_IN_THIS_ORDER


def test_tenant_schema_names_are_in_natural_order(registered_sellers):
    assert sellers(tenant_schema_names()) == NATURAL_ORDER


def test_a_run_over_every_tenant_goes_in_natural_order(registered_sellers, tmp_path):
    # Empty copies of the test tenant's tables, inside the test's transaction: enough for a run.
    for schema in registered_sellers:
        run_sql("CREATE SCHEMA {schema}", schema=schema)
        run_sql(
            "CREATE TABLE {products} (LIKE {original} INCLUDING ALL)",
            schema=schema,
            original=sql.Identifier(TENANT, "products"),
        )
        # product_json_state: check 4 reads what the migration recorded there.
        for table in ("product_images", "product_images_removed", "product_json_state"):
            run_sql(
                "CREATE TABLE {copy} (LIKE {original} INCLUDING ALL)",
                schema=schema,
                copy=sql.Identifier(schema, table),
                original=sql.Identifier(TENANT, table),
            )

    code, report, output = run_command(tmp_path=tmp_path)

    assert code == ExitCode.OK, output
    assert sellers([tenant["schema"] for tenant in report["tenants"]]) == NATURAL_ORDER
