from django.db import models
from django_tenants.models import DomainMixin, TenantMixin


class Tenant(TenantMixin):
    """One seller: its PostgreSQL schema (``user_N``) holds its catalogue."""

    name = models.CharField(max_length=100)
    created_on = models.DateTimeField(auto_now_add=True)

    auto_create_schema = True

    class Meta:
        verbose_name = "seller"
        verbose_name_plural = "sellers"

    def __str__(self):
        return self.schema_name


class Domain(DomainMixin):
    """The address a seller's admin is served under (``/sellers/<domain>/``): its schema's name."""

    class Meta:
        verbose_name = "seller address"
        verbose_name_plural = "seller addresses"


# A run in progress, by status: module-level, as the ledger's Meta (its partial index) reads them too.
_RUNNING, _PAUSED = "running", "paused"


class LedgerEntry(models.Model):
    """The run ledger: one row per run of a per-tenant job (``migrate_images``) and tenant, in the public schema.

    Written by the job as it goes, each write its own short transaction: created when the job starts on the
    tenant, updated after each batch (last product id committed, figures so far), closed with its status.
    A re-run reads it to know where the last one stopped; ``migrate_images --status`` prints the latest
    entry per tenant; the public admin shows it read-only.
    """

    MIGRATE_IMAGES = "migrate_images"  # the command that writes the ledger
    LIVE = "live"
    DRY_RUN = "dry-run"

    RUNNING = _RUNNING
    PAUSED = _PAUSED
    DONE = "done"
    ERRORS = "errors"
    BLOCKED = "blocked"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    STATUSES = [
        (RUNNING, "running"),
        (PAUSED, "paused (keeps the seller's lock)"),
        (DONE, "done"),
        (ERRORS, "done, with products not migrated"),
        (BLOCKED, "blocked by another session's locks"),
        (INTERRUPTED, "interrupted"),
        (FAILED, "failed (database)"),
    ]
    UNFINISHED = (RUNNING, PAUSED, BLOCKED, INTERRUPTED, FAILED)
    IN_PROGRESS = (RUNNING, PAUSED)  # the run is on (or its client vanished without closing the entry)

    run_id = models.CharField(max_length=32, db_index=True, help_text="One run of the command, over its tenants.")
    command = models.CharField(max_length=50, default=MIGRATE_IMAGES)
    schema_name = models.CharField("seller", max_length=63, help_text="The seller's database schema.")
    mode = models.CharField(max_length=20, help_text="live or dry-run")
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=STATUSES, default=RUNNING)
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField(
        "last sign of life", help_text="The run's last write here: its start, a batch, a wait, its end."
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    resumed_after = models.BigIntegerField(
        null=True, blank=True, help_text="Product id after which this run began, where an unfinished run stopped."
    )
    last_product_id = models.BigIntegerField(
        null=True, blank=True, help_text="Every product up to this id was committed (rehearsed, in a dry run)."
    )
    batches = models.PositiveIntegerField(default=0)
    figures = models.JSONField(default=dict, blank=True)
    checks_passed = models.BooleanField(null=True, blank=True)
    message = models.TextField(blank=True, default="")
    backend_pid = models.IntegerField(
        "database session",
        null=True,
        blank=True,
        help_text="The database session that held the seller's lock (its process id on the database server).",
    )
    client = models.CharField(
        "started from", max_length=300, blank=True, default="", help_text="host:pid of the command"
    )

    class Meta:
        db_table = "run_ledger"
        ordering = ["-started_at", "schema_name"]
        indexes = [
            models.Index(fields=["schema_name", "command", "-started_at"], name="run_ledger_latest"),
            # The campaign over the fleet (the seller picker): every seller's latest live entry, read in order.
            models.Index(
                fields=["command", "mode", "schema_name", "-started_at", "-id"], name="run_ledger_latest_live"
            ),
            # The runs going on now: a handful of rows among a fleet's entries.
            models.Index(
                fields=["schema_name"],
                name="run_ledger_in_progress",
                condition=models.Q(status__in=[_RUNNING, _PAUSED]),
            ),
        ]
        verbose_name = "run ledger entry"
        verbose_name_plural = "run ledger"
        permissions = [("control_run", "Can pause, resume and cancel a migration run")]

    def __str__(self):
        return f"{self.command} {self.mode} on {self.schema_name}, {self.started_at:%Y-%m-%d %H:%M} UTC: {self.status}"


class RunControl(models.Model):
    """What was last asked of a run from elsewhere: pause, resume (run) or cancel; one row per run.

    Written by ``migrate_images --pause/--resume/--cancel RUN`` and the run ledger's buttons in the public
    admin; read by the run between batches (``products.migration.control``). A run's tenants come and go,
    so the request is kept per run, not on a ledger entry.
    """

    RUN = "run"
    PAUSE = "pause"
    CANCEL = "cancel"
    REQUESTS = [(RUN, "run (resume)"), (PAUSE, "pause"), (CANCEL, "cancel")]

    run_id = models.CharField(max_length=32, primary_key=True)
    requested = models.CharField(max_length=10, choices=REQUESTS)
    requested_by = models.CharField(max_length=300, help_text="Who asked: an admin user, or user@host.")
    requested_at = models.DateTimeField()

    class Meta:
        db_table = "run_control"

    def __str__(self):
        return f"{self.requested} run {self.run_id}, asked by {self.requested_by}"
