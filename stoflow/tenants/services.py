"""Registering sellers as tenants."""

from django.db import transaction
from django_tenants.utils import get_public_schema_name, get_tenant_domain_model, get_tenant_model

PUBLIC_DOMAIN = "localhost"


def ensure_tenant(schema: str) -> bool:
    """Register the tenant (creating and migrating its schema) unless it exists; True when created.

    Either way the tenant ends up with its subfolder domain, so tenants registered
    before subfolder routing get one too."""
    tenant_model = get_tenant_model()
    tenant = tenant_model.objects.filter(schema_name=schema).first()
    created = tenant is None
    if created:
        tenant = tenant_model(schema_name=schema, name=schema)
        tenant.save(verbosity=0)
    ensure_subfolder_domain(tenant)
    return created


def ensure_subfolder_domain(tenant) -> None:
    """Requests under /sellers/<schema>/ reach the tenant whose Domain row is named after its schema."""
    domains = get_tenant_domain_model().objects
    if not domains.filter(domain=tenant.schema_name).exists():
        # Primary unless the tenant has a host name already (which saving a primary would demote).
        domains.create(domain=tenant.schema_name, tenant=tenant, is_primary=not tenant.domains.exists())


def ensure_public_tenant() -> None:
    """The public tenant serves every path outside /sellers/: the shared admin and the seller picker."""
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
            ensure_subfolder_domain(tenant)
