from django.core.management.base import BaseCommand, CommandError

from stoflow.tenants.selectors import unregistered_seller_schemas
from stoflow.tenants.services import register_existing_schemas


class Command(BaseCommand):
    help = (
        "Register the seller schemas (user_N) already present in the database as tenants, without "
        "creating or migrating them. Then run `migrate_schemas --tenant --fake-initial`: the existing "
        "products table is kept and product_images is created."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="List the schemas that would be registered.")

    def handle(self, *args, **options):
        schemas = unregistered_seller_schemas()
        if not schemas:
            self.stdout.write("No unregistered user_N schema found.")
            return
        if options["dry_run"]:
            self.stdout.write("Would register: " + ", ".join(schemas))
            return
        try:
            register_existing_schemas(schemas)
        except Exception as exc:
            raise CommandError(f"Could not register {', '.join(schemas)}: {exc}") from exc
        self.stdout.write(self.style.SUCCESS("Registered: " + ", ".join(schemas)))
