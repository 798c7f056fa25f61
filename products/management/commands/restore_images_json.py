import textwrap

from django.core.management.base import CommandError

from products.legacy_json import ARCHIVE_TABLE
from products.lifecycle.restore import RestoreExitCode, describe, failure_message, restore_images_json
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
    exit_codes = RestoreExitCode
    help = textwrap.fill(
        "The rollback of finalize_images: put the JSON column products.images back in every finalized tenant "
        "(or those named by --schema) and fill it from the product_images rows, by order, with url, order, "
        f"created_at and is_label; a product without rows gets what {ARCHIVE_TABLE} kept for it, if it had "
        "no rows then either, else []. One transaction per tenant; a tenant that has the column is left as it is.",
        width=79,
    )

    def add_arguments(self, parser):
        add_schema_option(parser, "Restore")
        add_no_input_option(parser)
        add_lock_timeout_option(parser)
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Change nothing: per finalized tenant, say how many products would get their JSON from their rows, "
            f"from {ARCHIVE_TABLE}, or empty.",
        )
        parser.add_argument(
            "--follow",
            action="store_true",
            help="Also put the follower back (migrate_images --follow): old code writing products.images again "
            "reaches the rows at once.",
        )

    def handle(self, *args, **options):
        schemas = lifecycle_schemas(options["schemas"])
        if options["interactive"] and not options["dry_run"]:
            confirm(
                f"restore_images_json puts products.images back in the finalized tenants of {', '.join(schemas)}, "
                "filled from their image rows."
            )
        with stopped_by_database_failure(self.exit_codes):
            restoration = restore_images_json(
                schemas, options["lock_timeout"] / 1000, follow=options["follow"], dry_run=options["dry_run"]
            )

        for tenant in restoration.tenants:
            self.stdout.write(describe(tenant))
        if restoration.exit_code != RestoreExitCode.OK:
            raise CommandError(failure_message(restoration), returncode=restoration.exit_code)
