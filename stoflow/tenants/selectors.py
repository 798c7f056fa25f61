"""The tenant registry, read."""

from django_tenants.utils import get_public_schema_name, get_tenant_model
from psycopg import sql

from stoflow.raw_sql import fetch_rows


def tenant_schema_names() -> list[str]:
    """Every registered seller schema, public excluded, in natural order (user_2 before user_10)."""
    names = (
        get_tenant_model().objects.exclude(schema_name=get_public_schema_name()).values_list("schema_name", flat=True)
    )
    return sorted(names, key=_natural_key)


def _natural_key(schema: str) -> tuple[int, str]:
    return len(schema), schema


def unregistered_seller_schemas() -> list[str]:
    """Seller schemas (user_N) present in the database but not registered as tenants."""
    present = fetch_rows(sql.SQL(r"SELECT nspname FROM pg_namespace WHERE nspname ~ '^user_\d+$'"))
    registered = set(tenant_schema_names())
    return sorted((name for (name,) in present if name not in registered), key=_natural_key)
