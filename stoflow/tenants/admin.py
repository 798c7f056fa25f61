"""The tenant registry in the public admin: read-only.

Tenants and their Domain rows are made by ``seed_demo``, ``register_tenants`` and the tenant services
(``stoflow/tenants/services.py``), which create the schema with them; a row added, edited or deleted here
would not (and deleting the ``public`` tenant would break routing). So the admin lists and shows them only.
"""

from django.contrib import admin

from stoflow.tenants.models import Domain, LedgerEntry, Tenant


class ReadOnlyAdmin(admin.ModelAdmin):
    """View only, whatever the user's permissions: no add, change or delete (nor the delete action)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Tenant)
class TenantAdmin(ReadOnlyAdmin):
    list_display = ["schema_name", "name", "created_on"]


@admin.register(Domain)
class DomainAdmin(ReadOnlyAdmin):
    list_display = ["domain", "tenant", "is_primary"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    """The run ledger, read-only: only the commands write it."""

    list_display = [
        "started_at",
        "schema_name",
        "command",
        "mode",
        "status",
        "last_product_id",
        "batches",
        "images_migrated",
        "errors",
        "finished_at",
    ]
    list_filter = ["status", "mode", "command", "schema_name"]
    search_fields = ["schema_name", "run_id", "message"]
    date_hierarchy = "started_at"
    ordering = ["-started_at", "schema_name"]

    @admin.display(description="images migrated")
    def images_migrated(self, entry: LedgerEntry):
        return entry.figures.get("images_migrated", "")

    @admin.display(description="errors")
    def errors(self, entry: LedgerEntry):
        return entry.figures.get("errors", "")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
