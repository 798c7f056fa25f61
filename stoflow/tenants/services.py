"""Registering sellers as tenants."""

from django.db import transaction
from django_tenants.utils import get_public_schema_name, get_tenant_domain_model, get_tenant_model

PUBLIC_DOMAIN = "localhost"


def ensure_tenant(schema: str) -> bool:
    """Register the tenant (creating and migrating its schema) unless it exists; True when created."""
    tenant_model = get_tenant_model()
    if tenant_model.objects.filter(schema_name=schema).exists():
        return False
    tenant_model(schema_name=schema, name=schema).save(verbosity=0)
    return True


def ensure_public_tenant() -> None:
    """django-tenants routes requests by domain: localhost is the public site (and the admin)."""
    tenant, _ = get_tenant_model().objects.get_or_create(
        schema_name=get_public_schema_name(), defaults={"name": "Stoflow"}
    )
    get_tenant_domain_model().objects.get_or_create(
        domain=PUBLIC_DOMAIN, defaults={"tenant": tenant, "is_primary": True}
    )


def register_existing_schemas(schemas: list[str]) -> None:
    """Register schemas that already hold a seller's tables, leaving them as they are."""
    tenant_model = get_tenant_model()
    with transaction.atomic():
        for schema in schemas:
            tenant = tenant_model(schema_name=schema, name=schema)
            tenant.auto_create_schema = False
            tenant.save(verbosity=0)
