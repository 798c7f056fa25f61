import os

from django.core.management.base import BaseCommand
from django.db import connection

from products.demo import (
    DEMO_CATALOGUE_TENANT,
    DEMO_STAFF_PASSWORD,
    DEMO_STAFF_USERNAME,
    ensure_demo_staff,
    seed_demo,
)


def admin_url() -> str:
    """Where `make admin` serves the admin: port ADMIN_PORT (the Makefile's, from the environment), 8000 by default."""
    return f"http://127.0.0.1:{os.environ.get('ADMIN_PORT') or 8000}/admin/"


class Command(BaseCommand):
    help = (
        "Create the demo tenants (user_1, user_2, user_4, user_5) and fill user_1 with 3,281 products "
        "holding 19,607 images in the legacy JSON shape, and a demo staff login for the admin. "
        "Safe to re-run: existing data is left alone."
    )

    def handle(self, *args, **options):
        for tenant in seed_demo():
            state = "created" if tenant.created else "exists"
            line = f"Tenant {tenant.schema}: {state}"
            if tenant.products_added:
                line += f", {tenant.products_added:,} products added"
            elif tenant.schema == DEMO_CATALOGUE_TENANT:
                line += ", products already there"
            self.stdout.write(line)
        state = "created" if ensure_demo_staff() else "exists"
        self.stdout.write(
            f"Staff user {DEMO_STAFF_USERNAME!r}: {state}, password {DEMO_STAFF_PASSWORD!r}. "
            f"Admin: `make admin`, then {admin_url()}"
        )
        database = connection.settings_dict
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready in database {database['NAME']!r} on {database['HOST'] or 'localhost'}."
            )
        )
