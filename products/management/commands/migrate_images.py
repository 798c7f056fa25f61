import shutil
import sys
import textwrap
from contextlib import nullcontext
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from products.management.command_support import HelpFormatter, exit_status_help, selected_schemas
from products.migration.batches import MigrationOptions
from products.migration.progress import RichProgress
from products.migration.rendering import render_json, render_markdown, render_terminal
from products.migration.report import ExitCode, MigrationReport
from products.migration.runs import migrate_images, preflight_problems, validate_images
from stoflow.tenants.runner import TenantJobFailed

EXIT_STATUS_HELP = exit_status_help(ExitCode)


class Command(BaseCommand):
    help = textwrap.fill(
        "Copy product photos from the legacy JSON column products.images into the product_images table "
        "of every tenant (or those named by --schema), marking the last image of each product with two or "
        "more images as its price label, then validate the result with the six checks of the seed report. "
        "Safe to re-run: products that already have rows are skipped. The JSON column is never modified.",
        width=79,
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        return super().create_parser(
            prog_name, subcommand, formatter_class=HelpFormatter, epilog=EXIT_STATUS_HELP, **kwargs
        )

    def add_arguments(self, parser):
        parser.add_argument(
            "--schema",
            action="append",
            dest="schemas",
            metavar="NAME",
            help="Migrate only this tenant schema (repeatable). Default: every tenant.",
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--dry-run",
            action="store_true",
            help="Make the very same writes inside a transaction that is rolled back: the report shows "
            "exactly what a live run would write; nothing persists.",
        )
        mode.add_argument(
            "--check",
            action="store_true",
            help="Write nothing: run the validation checks only; exit non-zero when one fails.",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Replace the rows of products that already have some (delete and insert in one "
            "transaction per batch). Asks for confirmation unless --no-input.",
        )
        parser.add_argument(
            "--sync",
            action="store_true",
            help="Rebuild exactly the products whose rows differ from their JSON today (changed, reordered, "
            "relabelled or emptied since they were migrated), and migrate new ones; every other row is left "
            "untouched. With --dry-run, shows the same without writing.",
        )
        parser.add_argument(
            "--no-input",
            "--noinput",
            action="store_false",
            dest="interactive",
            help="Do not prompt the user for input of any kind.",
        )
        parser.add_argument(
            "--jobs",
            type=int,
            default=MigrationOptions.jobs,
            metavar="N",
            help="Tenants to work on at once, each on its own database connection (default "
            f"{MigrationOptions.jobs}). The report is the same as a serial run's, in tenant order.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=MigrationOptions.batch_size,
            metavar="N",
            help=f"Products per batch; each batch commits on its own (default {MigrationOptions.batch_size}).",
        )
        parser.add_argument("--report", metavar="PATH", help="Also write the report as Markdown to PATH.")
        parser.add_argument("--json", metavar="PATH", help="Also write the report as JSON to PATH ('-' for stdout).")

    def handle(self, *args, **options):
        for option in ("batch_size", "jobs"):
            if options[option] < 1:
                raise CommandError(f"--{option.replace('_', '-')} must be at least 1.", returncode=ExitCode.USAGE)
        if options["check"] and (options["force"] or options["sync"]):
            raise CommandError(
                "--check writes nothing; it cannot be combined with --force or --sync.", returncode=ExitCode.USAGE
            )
        if options["force"] and options["sync"]:
            raise CommandError(
                "--force rebuilds every product and --sync only those that differ: choose one.",
                returncode=ExitCode.USAGE,
            )
        schemas = selected_schemas(options["schemas"])
        problems = preflight_problems(schemas)
        if problems:
            raise CommandError(" ".join(problems) + " Nothing was done.", returncode=ExitCode.USAGE)
        if options["force"] and not options["dry_run"] and options["interactive"]:
            self.confirm_force(schemas)

        try:
            if options["check"]:
                report = validate_images(schemas, options["jobs"])
            else:
                migration_options = MigrationOptions(
                    dry_run=options["dry_run"],
                    force=options["force"],
                    sync=options["sync"],
                    batch_size=options["batch_size"],
                    jobs=options["jobs"],
                )
                with self.progress(options, len(schemas)) as progress:
                    report = migrate_images(schemas, migration_options, progress)
        except TenantJobFailed as exc:
            raise CommandError(
                f"Stopped by a database failure in {exc}. {ExitCode.DATABASE_FAILURE.meaning}.",
                returncode=ExitCode.DATABASE_FAILURE,
            ) from exc
        self.write_report(report, options)

        if report.exit_code != ExitCode.OK:
            raise CommandError(self.failure_message(report), returncode=report.exit_code)

    def confirm_force(self, schemas: list[str]) -> None:
        answer = input(
            f"--force replaces the product_images rows of every product in {', '.join(schemas)}.\n"
            "Type 'yes' to continue, or 'no' to cancel: "
        )
        if answer != "yes":
            raise CommandError("Cancelled; nothing was done.", returncode=ExitCode.USAGE)

    def progress(self, options: dict, tenants: int):
        # Bars only on a terminal, so reports piped to files stay clean; beside the
        # readable report, so JSON on stdout stays clean too.
        out = self.stderr if options["json"] == "-" else self.stdout
        if options["verbosity"] == 0 or not out.isatty():
            return nullcontext()
        # Rich writes partial lines: give it the raw stream, not Django's line-ending wrapper.
        return RichProgress(getattr(out, "_out", sys.stdout), tenants)

    def write_report(self, report: MigrationReport, options: dict) -> None:
        json_to_stdout = options["json"] == "-"
        if options["verbosity"] > 0:
            # With JSON on stdout, the readable report moves to stderr.
            out = self.stderr if json_to_stdout else self.stdout
            tty = out.isatty()
            width = shutil.get_terminal_size((120, 24)).columns if tty else 120
            out.write(render_terminal(report, width=width, color=tty), style_func=str, ending="")
        if options["report"]:
            Path(options["report"]).write_text(render_markdown(report), encoding="utf-8")
        if options["json"]:
            if json_to_stdout:
                self.stdout.write(render_json(report), ending="")
            else:
                Path(options["json"]).write_text(render_json(report), encoding="utf-8")
        if report.exit_code == ExitCode.OK and options["verbosity"] > 0 and not json_to_stdout:
            self.stdout.write(self.style.SUCCESS("All checks PASS, no errors."))

    @staticmethod
    def failure_message(report: MigrationReport) -> str:
        problems = []
        if report.interruption:
            stopped = ", ".join(report.interruption.stopped_in) or "between tenants"
            problems.append(f"interrupted in {stopped}: committed batches are kept, re-run to finish")
        if report.failed_checks:
            problems.append(f"{len(report.failed_checks)} check(s) FAIL")
        if report.errors:
            problems.append(f"{len(report.errors)} product(s) not migrated (listed above)")
        if report.busy_tenants:
            problems.append(f"busy tenant(s) skipped: {', '.join(report.busy_tenants)}")
        return "; ".join(problems) + f". Exit status {int(report.exit_code)}: {report.exit_code.meaning}."
