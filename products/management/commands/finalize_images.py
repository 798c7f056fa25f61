import textwrap

from django.core.management.base import CommandError

from products.legacy_json import ARCHIVE_TABLE
from products.lifecycle.finalize import FinalizeExitCode, describe, failure_message, finalize_images
from products.management.command_support import (
    ImageCommand,
    add_lock_timeout_option,
    add_no_input_option,
    add_schema_option,
    confirm,
    lifecycle_schemas,
    stopped_by_database_failure,
)


class Command(ImageCommand):
    exit_codes = FinalizeExitCode
    help = textwrap.fill(
        "Drop the legacy JSON column products.images of every tenant (or those named by --schema) once the "
        "gate lets it: every validation check of migrate_images passes, no product is listed as an error, "
        "none is pending (JSON but no rows) or drifted (rows that differ from its JSON). In one transaction "
        f"per tenant, every product's JSON is first copied to {ARCHIVE_TABLE} (kept for ever); "
        "restore_images_json puts the column back. A tenant already finalized is left as it is.",
        width=79,
    )

    def add_arguments(self, parser):
        add_schema_option(parser, "Finalize")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Run the gate only and say, per tenant, whether it would be finalized or why not; change nothing.",
        )
        parser.add_argument(
            "--ready",
            action="store_true",
            help="Finalize only the tenants whose latest live migrate_images run (the run ledger) ended done with "
            "every check passing, and which the gate lets through now; list the others as not ready and leave "
            "them as they are.",
        )
        add_no_input_option(parser)
        add_lock_timeout_option(parser)

    def handle(self, *args, **options):
        schemas = lifecycle_schemas(options["schemas"])
        if options["interactive"] and not options["dry_run"]:
            ready = " (and whose latest live run passed every check)" if options["ready"] else ""
            confirm(
                f"finalize_images drops the JSON column products.images in {', '.join(schemas)}, in each tenant "
                f"the gate lets through{ready}, after copying it to {ARCHIVE_TABLE}."
            )
        with stopped_by_database_failure(self.exit_codes):
            finalization = finalize_images(
                schemas, options["dry_run"], options["lock_timeout"] / 1000, ready_only=options["ready"]
            )

        if options["dry_run"]:
            self.stdout.write("Dry run: the gate only, nothing changed.")
        for tenant in finalization.tenants:
            for line in describe(tenant):
                self.stdout.write(line)
        if finalization.exit_code != FinalizeExitCode.OK:
            raise CommandError(failure_message(finalization), returncode=finalization.exit_code)
