"""Django's makemigrations, which never starts the embedded PostgreSQL.

makemigrations reads the database only to check that the applied migrations are consistent (none
applied before its dependencies), and Django skips that check with a warning when it cannot
connect. Writing or checking migration files should not start a server: with the embedded server
stopped the check is skipped, quietly (said at -v 2); with it running the check runs as in Django.
"""

import warnings
from pathlib import Path

from django.core.management.commands.makemigrations import Command as DjangoMakemigrations
from django.db import connections

from stoflow import embedded_postgres
from stoflow.database_settings import EMBEDDED_PGDATA

# Django's warning when the check cannot connect, with the error raised by stoflow.db_backend.
SKIPPED_CHECK_WARNING = (
    "Got an error checking a consistent migration history .*: the embedded PostgreSQL in .* is not running"
)


class Command(DjangoMakemigrations):
    def handle(self, *app_labels, **options):
        for alias in connections:
            pgdata = connections[alias].settings_dict.get(EMBEDDED_PGDATA)
            if pgdata and not embedded_postgres.is_running(Path(pgdata)) and options["verbosity"] >= 2:
                self.stdout.write(
                    f"Database {alias!r}: the embedded PostgreSQL is not running, so the consistency check of "
                    "the applied migrations is skipped (makemigrations does not start it)."
                )
        with embedded_postgres.not_started(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=SKIPPED_CHECK_WARNING, category=RuntimeWarning)
            return super().handle(*app_labels, **options)
