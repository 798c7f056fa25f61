from django.db import models
from django_tenants.models import DomainMixin, TenantMixin


class Tenant(TenantMixin):
    """One seller: its PostgreSQL schema (``user_N``) holds its catalogue."""

    name = models.CharField(max_length=100)
    created_on = models.DateTimeField(auto_now_add=True)

    auto_create_schema = True

    def __str__(self):
        return self.schema_name


class Domain(DomainMixin):
    pass
