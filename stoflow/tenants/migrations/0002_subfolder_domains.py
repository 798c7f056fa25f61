"""Subfolder routing finds a tenant by a Domain row named after its schema: give one to
every seller registered before it (new tenants get theirs from the tenants services)."""

from django.db import migrations
from django_tenants.utils import get_public_schema_name


def add_subfolder_domains(apps, schema_editor):
    Tenant = apps.get_model("tenants", "Tenant")
    Domain = apps.get_model("tenants", "Domain")
    for tenant in Tenant.objects.exclude(schema_name=get_public_schema_name()):
        has_primary = Domain.objects.filter(tenant=tenant, is_primary=True).exists()
        Domain.objects.get_or_create(
            domain=tenant.schema_name, defaults={"tenant": tenant, "is_primary": not has_primary}
        )


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]

    operations = [migrations.RunPython(add_subfolder_domains, migrations.RunPython.noop)]
