"""The tenant registry and the run ledger in the public admin.

Tenants and their Domain rows are made by ``seed_demo``, ``register_tenants`` and the tenant services
(``stoflow/tenants/services.py``), which create the schema with them; a row added, edited or deleted here
would not (and deleting the ``public`` tenant would break routing). So the admin lists and shows them only.

The run ledger is written by the commands only; its page reads as a support agent reads it (figures as a
table, words for the session and the client), and a run in progress can be paused, resumed or cancelled
from it by users with the ``tenants.control_run`` permission (``run_control.ask``, as ``migrate_images
--pause/--resume/--cancel RUN`` does).
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from stoflow.tenants.models import Domain, LedgerEntry, RunControl, Tenant
from stoflow.tenants.run_control import NoSuchRun, ask
from stoflow.tenants.templatetags.stoflow_figures import figure, seconds_ago

CONTROL_PERMISSION = "tenants.control_run"
# The buttons of a run in progress: what each asks (RunControl), what the run then does, and when it shows.
CONTROLS = {
    "pause": (RunControl.PAUSE, "pauses before its next batch, keeping its locks", LedgerEntry.RUNNING),
    "resume": (RunControl.RUN, "goes on with its next batch", LedgerEntry.PAUSED),
    "cancel": (RunControl.CANCEL, "stops before its next batch and writes its report; a re-run resumes", None),
}
# The ledger's figures, in the words the report uses (a key not listed shows as it is).
FIGURE_WORDS = {
    "products": "Products walked",
    "images_migrated": "Images migrated",
    "labels_detected": "Labels detected",
    "already_migrated": "Products already migrated",
    "repaired": "Products repaired",
    "soft_deleted": "Soft-deleted products",
    "rows_kept_aside": "Removed rows kept aside",
    "references_removed": "References to removed rows",
    "errors": "Products in error",
}


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
    list_display = ["seller", "name", "created_on"]
    search_fields = ["schema_name", "name"]

    @admin.display(description="seller (database schema)", ordering="schema_name")
    def seller(self, tenant: Tenant) -> str:
        return tenant.schema_name


@admin.register(Domain)
class DomainAdmin(ReadOnlyAdmin):
    list_display = ["domain", "tenant", "is_primary"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    """The run ledger, read-only (only the commands write it), with the controls of a run in progress."""

    change_form_template = "admin/tenants/ledgerentry/change_form.html"
    list_display = [
        "started_at",
        "schema_name",
        "mode",
        "status",
        "batches",
        "images_migrated",
        "errors",
        "last_sign_of_life",
        "finished_at",
    ]
    list_filter = ["status", "mode", "command"]
    search_fields = ["schema_name", "run_id", "message"]
    date_hierarchy = "started_at"
    ordering = ["-started_at", "schema_name"]
    fieldsets = [
        (None, {"fields": ["schema_name", "run_id", "command", "mode", "status", "message", "checks"]}),
        ("When", {"fields": ["started_at", "finished_at", "last_sign_of_life"]}),
        ("How far", {"fields": ["resumed_after", "last_product_id", "batches", "figures_table"]}),
        ("Who ran it", {"fields": ["options_in_words", "session", "started_from"]}),
    ]
    readonly_fields = ["checks", "last_sign_of_life", "figures_table", "options_in_words", "session", "started_from"]

    @admin.display(description="images migrated")
    def images_migrated(self, entry: LedgerEntry) -> str:
        return figure(entry.figures.get("images_migrated"))

    @admin.display(description="products in error")
    def errors(self, entry: LedgerEntry) -> str:
        return figure(entry.figures.get("errors"))

    @admin.display(description="checks")
    def checks(self, entry: LedgerEntry) -> str:
        return {True: "every check PASS", False: "a check FAIL", None: "not validated"}[entry.checks_passed]

    @admin.display(description="last sign of life", ordering="heartbeat_at")
    def last_sign_of_life(self, entry: LedgerEntry) -> str:
        ago = seconds_ago((timezone.now() - entry.heartbeat_at).total_seconds())
        return f"{entry.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC ({ago} ago)"

    @admin.display(description="figures")
    def figures_table(self, entry: LedgerEntry) -> str:
        rows = [
            (FIGURE_WORDS.get(key, key.replace("_", " ").capitalize()), figure(value))
            for key, value in entry.figures.items()
            if key in FIGURE_WORDS or isinstance(value, int)
        ]
        ids = entry.figures.get("error_ids") or []
        if ids:
            rows.append(("First products in error", ", ".join(str(product_id) for product_id in ids[:20])))
        if not rows:
            return "none yet"
        body = format_html_join("", "<tr><th scope='row'>{}</th><td class='stoflow-number'>{}</td></tr>", rows)
        return format_html("<table class='stoflow-figures'><tbody>{}</tbody></table>", body)

    @admin.display(description="options")
    def options_in_words(self, entry: LedgerEntry) -> str:
        words = []
        for key, value in entry.options.items():
            name = key.removesuffix("_ms").replace("_", " ")
            if value is True:
                words.append(name)
            elif value in (False, None, [], 0) and key not in ("jobs", "batch_size"):
                continue
            elif isinstance(value, int):
                words.append(f"{name} {figure(value)}{' ms' if key.endswith('_ms') else ''}")
            else:
                words.append(f"{name} {', '.join(value) if isinstance(value, list) else value}")
        return "; ".join(words) or "the defaults"

    @admin.display(description="the database session that held the lock")
    def session(self, entry: LedgerEntry) -> str:
        if entry.backend_pid is None:
            return "not recorded"
        return f"process {entry.backend_pid} on the database server (pg_stat_activity.pid)"

    @admin.display(description="started from")
    def started_from(self, entry: LedgerEntry) -> str:
        host, _, pid = entry.client.rpartition(":")
        return f"host {host}, process {pid}" if host and pid.isdigit() else entry.client or "not recorded"

    # The controls of a run in progress.

    def get_urls(self):
        control = self.admin_site.admin_view(self.control_view)
        return [path("<int:object_id>/control/", control, name="tenants_ledgerentry_control")] + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        entry = self.get_object(request, object_id)
        controls = []
        if entry is not None and entry.status in LedgerEntry.IN_PROGRESS and request.user.has_perm(CONTROL_PERMISSION):
            controls = [name for name, (_, _, shown) in CONTROLS.items() if shown in (None, entry.status)]
        return super().change_view(request, object_id, form_url, {"run_controls": controls, **(extra_context or {})})

    def control_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm(CONTROL_PERMISSION):
            raise PermissionDenied
        entry = get_object_or_404(LedgerEntry, pk=object_id)
        name = request.POST.get("control", "")
        if name not in CONTROLS:
            raise PermissionDenied
        requested, obeys, _ = CONTROLS[name]
        try:
            ask(entry.run_id, requested, by=f"{request.user.get_username()} (admin)")
        except NoSuchRun as exc:
            self.message_user(request, f"Nothing asked: {exc}.", messages.WARNING)
        else:
            self.message_user(request, f"Asked run {entry.run_id} to {name}: it {obeys}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:tenants_ledgerentry_change", args=[entry.pk]))
