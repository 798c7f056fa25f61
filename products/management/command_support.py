"""What the image commands share: the tenants an operator names, checked against the registry, asking before
a change, and the exit status table their --help ends with.

Exit codes 2 (usage) and 5 (database failure) mean the same in migrate_images, finalize_images and
restore_images_json; the enums of the three say so, and a test checks it."""

import argparse
import enum
import os
import re
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser, DjangoHelpFormatter
from django.db import OperationalError, ProgrammingError

from products.lifecycle.table_locks import DEFAULT_LOCK_TIMEOUT
from products.migration.report import ExitCode
from products.migration.runs import preflight_problems
from stoflow.tenants.runner import TenantJobFailed
from stoflow.tenants.selectors import tenant_schema_names


class HelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Django's option order, with the exit status table kept as written."""


class UsageParser(CommandParser):
    """Django's parser, whose errors are usage errors (exit 2) from call_command too, as on the command line."""

    def error(self, message):
        if self.called_from_command_line:
            super().error(message)  # argparse prints the usage and exits 2
        raise CommandError(f"Error: {message}. Nothing was done.", returncode=ExitCode.USAGE)


class OutputReaderMayLeave:
    """An output stream whose reader may go before the command is done (``| head -1``): the reader's choice,
    not a failure of the command. From the first write or flush that finds the pipe closed, the rest of the
    output goes nowhere; the command carries on (its report files, the ledger, the rows) and ends with its own
    exit status, without a traceback."""

    def __init__(self, stream):
        self._stream = stream
        self.reader_left = False

    def write(self, text: str) -> int:
        if not self.reader_left:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._reader_gone()
        return len(text)

    def flush(self) -> None:
        if not self.reader_left:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._reader_gone()

    def _reader_gone(self) -> None:
        self.reader_left = True
        # What the stream still buffers goes to /dev/null when the interpreter flushes it at exit, instead of
        # the closed pipe, which would raise once more there and turn the exit status into 120.
        try:
            descriptor = self._stream.fileno()
        except (AttributeError, OSError, ValueError):  # no file behind it (a StringIO): nothing left to flush
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, descriptor)
        finally:
            os.close(devnull)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)  # isatty(), fileno(), encoding ... of the stream itself


class ImageCommand(BaseCommand):
    """The image commands' parser: Django's option order, the exit status table of ``exit_codes`` closing
    --help, and bad options as usage errors (exit 2) however the command is called. Their output may be read by
    a reader that leaves early (``OutputReaderMayLeave``)."""

    exit_codes: type[enum.IntEnum]

    def __init__(self, stdout=None, stderr=None, no_color=False, force_color=False):
        super().__init__(
            OutputReaderMayLeave(stdout or sys.stdout),
            OutputReaderMayLeave(stderr or sys.stderr),
            no_color,
            force_color,
        )

    def execute(self, *args, **options):
        for name in ("stdout", "stderr"):
            if options.get(name):
                options[name] = OutputReaderMayLeave(options[name])
        try:
            return super().execute(*args, **options)
        finally:
            # A reader gone is found now, while the command ends on its own terms, not by the interpreter's
            # flush at exit.
            self.stdout.flush()
            self.stderr.flush()

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(
            prog_name, subcommand, formatter_class=HelpFormatter, epilog=exit_status_help(self.exit_codes), **kwargs
        )
        parser.__class__ = UsageParser  # Django builds a CommandParser; its errors become usage errors here
        return parser


def add_schema_option(parser, verb: str) -> None:
    """--schema NAME, repeatable, as the image commands name it; checked by ``selected_schemas``."""
    parser.add_argument(
        "--schema",
        action="append",
        dest="schemas",
        metavar="NAME",
        help=f"{verb} only this tenant schema (repeatable). Default: every tenant.",
    )


def add_no_input_option(parser) -> None:
    """--no-input (Django's spelling, with its --noinput alias): never ask (``confirm``)."""
    parser.add_argument(
        "--no-input",
        "--noinput",
        action="store_false",
        dest="interactive",
        help="Do not ask for confirmation (needed when there is no terminal to ask on).",
    )


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


def at_least(minimum: int):
    """An argparse type: an integer no smaller than ``minimum``; a bad value is a usage error before any work."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def check_writable(path: str | None, option: str) -> None:
    """Refuse, before any work, an output file the command could not write at the end ('-' is stdout)."""
    if not path or path == "-":
        return
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        problem = "is a directory"
    elif not folder.is_dir():
        problem = f"is in {folder}, which does not exist"
    elif not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        problem = "cannot be written (permissions)"
    else:
        return
    raise CommandError(f"{option} {path}: the file {problem}. Nothing was done.", returncode=ExitCode.USAGE)


DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|h)?\s*$")
UNIT_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, None: 1}


def duration_ms(minimum: int):
    """An argparse type: a duration as PostgreSQL writes them ("200ms", "2s", "10min", "1h"; a bare number
    is milliseconds), in milliseconds, no shorter than ``minimum``. Every --*-timeout option takes it."""

    def parse(text: str) -> int:
        match = DURATION.match(text or "")
        if not match:
            raise argparse.ArgumentTypeError(f"takes a duration such as 200ms, 2s or 10min, not {text!r}")
        value = round(float(match[1]) * UNIT_MS[match[2]])
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum} ms")
        return value

    parse.__name__ = "duration"
    return parse


def add_lock_timeout_option(parser) -> None:
    """finalize_images and restore_images_json: how long any of their statements may wait for a lock."""
    default = f"{DEFAULT_LOCK_TIMEOUT:g}s"
    parser.add_argument(
        "--lock-timeout",
        type=duration_ms(minimum=1),
        default=default,
        metavar="DURATION",
        help=f"How long any statement on a tenant (the gate, the copy, the drop, the restore) may wait for a lock "
        f"another session holds before the tenant is skipped as busy, naming that session (200ms, 2s, 1min; "
        f"default {default}); the application's queries on the table queue meanwhile.",
    )


def lifecycle_schemas(requested: list[str] | None) -> list[str]:
    """finalize_images and restore_images_json: the tenants to work on (``selected_schemas``), none of them
    when the server or a tenant's tables cannot take the command (``preflight_problems``)."""
    schemas = selected_schemas(requested)
    problems = preflight_problems(schemas)
    if problems:
        raise CommandError(" ".join(problems) + " Nothing was done.", returncode=ExitCode.USAGE)
    return schemas


@contextmanager
def stopped_by_database_failure(exit_codes: type[enum.IntEnum]) -> Iterator[None]:
    """finalize_images and restore_images_json: a tenant's database failure stops the command with exit 5,
    in the words of the command's own ``exit_codes`` (what a failure leaves differs between the two)."""
    try:
        yield
    except TenantJobFailed as exc:
        raise CommandError(
            f"Stopped by a database failure in {exc}. {exit_codes.DATABASE_FAILURE.meaning}.",
            returncode=exit_codes.DATABASE_FAILURE,
        ) from exc
