"""What the image commands share: the tenants an operator names, checked against the registry, asking before
a change, and the exit status table their --help ends with.

Exit codes 2 (usage) and 5 (database failure) mean the same in migrate_images, finalize_images and
restore_images_json; the enums of the three say so, and a test checks it."""

import argparse
import enum
import sys
import textwrap

from django.core.management.base import CommandError, DjangoHelpFormatter
from django.db import OperationalError, ProgrammingError

from products.migration.report import ExitCode
from stoflow.tenants.selectors import tenant_schema_names


class HelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Django's option order, with the exit status table kept as written."""


def exit_status_help(codes: type[enum.IntEnum]) -> str:
    """The command's exit codes (an enum whose members carry ``meaning``) as --help's closing table."""
    return "exit status (the first that applies, in this order):\n" + "\n".join(
        textwrap.fill(code.meaning, width=79, initial_indent=f"  {code.value:>3}  ", subsequent_indent=" " * 7)
        for code in codes
    )


def selected_schemas(requested: list[str] | None) -> list[str]:
    """The tenants to work on (default: every tenant), checked against the registry before anything runs."""
    try:
        known = tenant_schema_names()
    except OperationalError as exc:
        raise CommandError(
            f"Cannot reach the database: {str(exc).strip().splitlines()[0]}. Nothing was done.",
            returncode=ExitCode.DATABASE_FAILURE,
        ) from exc
    except ProgrammingError as exc:
        raise CommandError(
            "No tenant registry in this database: run `manage.py migrate_schemas --shared` first. Nothing was done.",
            returncode=ExitCode.USAGE,
        ) from exc
    if not requested:
        return known
    unknown = [name for name in requested if name not in known]
    if unknown:
        raise CommandError(
            f"Unknown tenant schema(s): {', '.join(map(repr, unknown))}. "
            f"Valid names: {', '.join(known) or '(no tenants registered)'}. Nothing was done.",
            returncode=ExitCode.USAGE,
        )
    return list(dict.fromkeys(requested))


def confirm(question: str) -> None:
    """Ask on the terminal; anything but 'yes' cancels. With no terminal to ask on, refuse rather than guess."""
    if not sys.stdin.isatty():
        raise CommandError(
            "No terminal to ask for confirmation on: pass --no-input to go ahead without asking. Nothing was done.",
            returncode=ExitCode.USAGE,
        )
    if input(f"{question}\nType 'yes' to continue, or 'no' to cancel: ") != "yes":
        raise CommandError("Cancelled; nothing was done.", returncode=ExitCode.USAGE)
