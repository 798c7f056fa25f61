import getpass
import random
import shutil
import socket
import sys
import textwrap
import traceback
from contextlib import nullcontext
from datetime import UTC, datetime

from django.core.management.base import CommandError
from django.db import DatabaseError

from products.management.command_support import (
    ImageCommand,
    add_no_input_option,
    add_schema_option,
    at_least,
    check_writable,
    confirm,
    duration_ms,
    selected_schemas,
)
from products.migration import control, ledger
from products.migration.batches import MigrationOptions
from products.migration.preflight import server_problems
from products.migration.progress import RichProgress
from products.migration.rendering import (
    failure_message,
    render_json,
    render_status,
    render_terminal,
    write_report_files,
)
from products.migration.report import ExitCode, MigrationReport
from products.migration.runs import migrate_images, unfollow, validate_images
from stoflow.tenants.run_control import NoSuchRun, ask
from stoflow.tenants.runner import Interruption, TenantJobFailed, signal_name, sigterm_interrupts

DEFAULT_LOCK_TIMEOUT = "2s"
DEFAULT_STATEMENT_TIMEOUT = "10min"
DEFAULT_MAX_REPLICA_LAG = f"{MigrationOptions.max_replica_lag_ms / 1000:g}s"
# What --pause, --resume and --cancel ask of a run (control.py), by option name.
CONTROLS = {"pause": control.PAUSE, "resume": control.RESUME, "cancel": control.CANCEL}
# The options that ask for something --unfollow does not do (it removes the followers, nothing else).
UNFOLLOW_EXCLUDES = ("dry_run", "check", "force", "sync", "follow")


def wave(schemas: list[str], limit: int | None, sample: int | None) -> list[str]:
    """--limit: the first N tenants; --sample: N at random, kept in their natural order; else all of them."""
    if limit:
        return schemas[:limit]
    if sample and sample < len(schemas):
        chosen = set(random.sample(schemas, sample))
        return [schema for schema in schemas if schema in chosen]
    return schemas


class Command(ImageCommand):
    exit_codes = ExitCode
    help = textwrap.fill(
        "Copy product photos from the legacy JSON column products.images into the product_images table "
        "of every tenant (or those named by --schema), marking the last image of each product with two or "
        "more images as its price label, then validate the result with the six checks of the seed report. "
        "Safe to re-run: products that already have rows are skipped. The JSON column is never modified.",
        width=79,
    )

    def execute(self, *args, **options):
        # An exception nobody expected is a bug, not "products not migrated" (exit 1): its own exit status,
        # with the traceback for the report of it.
        try:
            return super().execute(*args, **options)
        except (CommandError, KeyboardInterrupt, SystemExit):
            raise
        except DatabaseError as exc:
            raise CommandError(
                f"Stopped by a database failure: {str(exc).strip()}. {ExitCode.DATABASE_FAILURE.meaning}.",
                returncode=ExitCode.DATABASE_FAILURE,
            ) from exc
        except Exception as exc:
            self.stderr.write(traceback.format_exc(), ending="")
            raise CommandError(
                f"Unexpected error: {exc!r}. {ExitCode.INTERNAL_ERROR.meaning}.", returncode=ExitCode.INTERNAL_ERROR
            ) from exc

    def add_arguments(self, parser):
        add_schema_option(parser, "Migrate")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--dry-run",
            action="store_true",
            help="Make the very same writes, each batch in its own short transaction that is rolled back once "
            "the batch's checks are measured: the report shows exactly what a live run would write and report; "
            "nothing persists.",
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
            "--follow",
            action="store_true",
            help="Once a tenant's checks pass, install its follower: a trigger that applies each later write of "
            "products.images by the old code to the rows in the writer's own transaction (ids kept where the "
            "URL stays; a JSON the rule refuses keeps the rows and holds the product back from marketplaces). "
            "Products changed before it was there are caught up when it is installed.",
        )
        parser.add_argument(
            "--unfollow",
            action="store_true",
            help="Remove the follower from the tenants and exit; migrates nothing.",
        )
        add_no_input_option(parser)
        parser.add_argument(
            "--jobs",
            type=at_least(1),
            default=MigrationOptions.jobs,
            metavar="N",
            help="Tenants to work on at once, each on its own database connection (default "
            f"{MigrationOptions.jobs}). The report is the same as a serial run's, in tenant order.",
        )
        parser.add_argument(
            "--batch-size",
            type=at_least(1),
            default=MigrationOptions.batch_size,
            metavar="N",
            help=f"Products per batch; each batch commits on its own (default {MigrationOptions.batch_size}).",
        )
        parser.add_argument(
            "--lock-timeout",
            type=duration_ms(minimum=1),
            default=DEFAULT_LOCK_TIMEOUT,
            metavar="DURATION",
            help="Longest wait of any statement for a lock another session holds (a row the app or the admin is "
            "editing, an uncommitted insert, LOCK TABLE), e.g. 200ms, 2s (default "
            f"{DEFAULT_LOCK_TIMEOUT}). The batch is then rolled back and retried (--retries); after the last retry "
            "the tenant is reported blocked, naming the blocking pid and query, and the run goes on.",
        )
        parser.add_argument(
            "--statement-timeout",
            type=duration_ms(minimum=0),
            default=DEFAULT_STATEMENT_TIMEOUT,
            metavar="DURATION",
            help=f"Longest run of any statement (default {DEFAULT_STATEMENT_TIMEOUT}; 0: no limit): a runaway "
            "statement is cancelled and the run stops with exit 5 instead of hanging.",
        )
        parser.add_argument(
            "--retries",
            type=at_least(0),
            default=MigrationOptions.retries,
            metavar="N",
            help="Retries of a batch that timed out on a lock, deadlocked or lost a serialization conflict, "
            f"after 1, 2, 4... x the lock timeout (1 s at most) (default {MigrationOptions.retries}).",
        )
        parser.add_argument(
            "--pause-ms",
            type=at_least(0),
            default=MigrationOptions.pause_ms,
            metavar="N",
            help="Pause between batches, in milliseconds (default 0): room for the application on a busy primary.",
        )
        parser.add_argument(
            "--batch-time",
            type=duration_ms(minimum=1),
            metavar="DURATION",
            help="Size batches so each transaction takes about this long, e.g. 200ms: the size starts at "
            "--batch-size, grows and shrinks between 10 and 50,000 products, and halves after a lock or statement "
            "timeout before the retry. The report shows the sizes used. Default: a fixed --batch-size.",
        )
        parser.add_argument(
            "--max-replica-lag",
            type=duration_ms(minimum=0),
            default=DEFAULT_MAX_REPLICA_LAG,
            metavar="DURATION",
            help="Before each batch, wait while a standby replays further behind than this (pg_stat_replication "
            f"replay lag; default {DEFAULT_MAX_REPLICA_LAG}; 0: not watched). Batches also wait while a VACUUM works "
            "on the tenant's product_images, and while other sessions wait for locks on its tables "
            "(--max-lock-waiters). The report says how long it waited and why.",
        )
        parser.add_argument(
            "--max-lock-waiters",
            type=at_least(0),
            default=MigrationOptions.max_lock_waiters,
            metavar="N",
            help="Before each batch, wait while more than N other sessions wait for locks on the tenant's tables "
            f"(default {MigrationOptions.max_lock_waiters}).",
        )
        parser.add_argument(
            "--ignore-health",
            action="store_true",
            help="Do not wait for the database's health before batches (replica lag, vacuum, lock waiters).",
        )
        parser.add_argument(
            "--max-failures",
            type=at_least(1),
            default=0,
            metavar="N",
            help="Start no further tenant once N tenants failed, were blocked or have a failing check; those "
            "at work finish, the rest are listed as not started. Default: no bound.",
        )
        wave = parser.add_mutually_exclusive_group()
        wave.add_argument(
            "--limit",
            type=at_least(1),
            metavar="N",
            help="Work on the first N of the selected tenants only (in their natural order): a wave.",
        )
        wave.add_argument(
            "--sample",
            type=at_least(1),
            metavar="N",
            help="Work on N of the selected tenants chosen at random: a canary wave (the report names them).",
        )
        for name, what in (
            (
                "pause",
                "Pause the run in progress RUN (its id, or its first 6+ characters, as --status shows it) "
                "between batches: it keeps its connection and the tenants' locks; the ledger shows it paused, by "
                "whom. Works from any host that reaches the database; exits at once.",
            ),
            ("resume", "Resume the paused run RUN; exits at once."),
            (
                "cancel",
                "Cancel the run RUN: it stops between batches as on Ctrl-C (whole batches kept, its report "
                "written, exit 130; a re-run resumes); exits at once.",
            ),
        ):
            parser.add_argument(f"--{name}", metavar="RUN", help=what)
        parser.add_argument(
            "--restart",
            action="store_true",
            help="Walk every product, even where the ledger says an unfinished run stopped (default: resume there).",
        )
        parser.add_argument(
            "--allow",
            action="append",
            default=[],
            metavar="NAME",
            help="A trigger, constraint, unique index or rule on product_images you have reviewed: the preflight "
            "accepts it instead of refusing the tenant (repeatable).",
        )
        parser.add_argument(
            "--status",
            action="store_true",
            help="Print the latest state of each tenant from the run ledger (status, last product id committed, "
            "where a re-run resumes) and exit; migrates nothing.",
        )
        parser.add_argument("--report", metavar="PATH", help="Also write the report as Markdown to PATH.")
        parser.add_argument("--json", metavar="PATH", help="Also write the report as JSON to PATH ('-' for stdout).")

    def handle(self, *args, **options):
        asked = [name for name in CONTROLS if options[name]]
        if asked:
            self.control_run(asked, options)
            return
        check_writable(options["report"], "--report")
        check_writable(options["json"], "--json")
        if options["check"] and (options["force"] or options["sync"]):
            raise CommandError(
                "--check writes nothing; it cannot be combined with --force or --sync.", returncode=ExitCode.USAGE
            )
        if options["unfollow"]:
            # --unfollow only removes followers: a mode or a migration asked with it would be ignored, and a
            # --dry-run or --check that removed them anyway would do what its name promises not to.
            combined = [f"--{name.replace('_', '-')}" for name in UNFOLLOW_EXCLUDES if options[name]]
            if combined:
                raise CommandError(
                    f"--unfollow removes the followers and migrates nothing: it cannot be combined with "
                    f"{', '.join(combined)}.",
                    returncode=ExitCode.USAGE,
                )
        if options["force"] and options["sync"]:
            raise CommandError(
                "--force rebuilds every product and --sync only those that differ: choose one.",
                returncode=ExitCode.USAGE,
            )
        mode = "check" if options["check"] else "dry-run" if options["dry_run"] else "live"
        try:
            schemas = wave(selected_schemas(options["schemas"]), options["limit"], options["sample"])
        except CommandError as exc:
            if exc.returncode == ExitCode.DATABASE_FAILURE:
                # Nothing ran, but a report file asked for still says so (exit status 5, no tenant).
                self.write_report(MigrationReport(mode, datetime.now(UTC), failure=str(exc)), options, files_only=True)
            raise
        problems = server_problems()
        if problems:
            raise CommandError(" ".join(problems) + " Nothing was done.", returncode=ExitCode.USAGE)
        if options["follow"] and (options["check"] or options["dry_run"]):
            raise CommandError(
                "--follow installs the follower after a live run's checks pass: it cannot be combined with "
                "--check or --dry-run.",
                returncode=ExitCode.USAGE,
            )
        if options["unfollow"]:
            for schema, outcome in unfollow(schemas, MigrationOptions.from_command_options(options)):
                self.stdout.write(f"{schema}: {outcome}")
            return
        if options["status"]:
            # render_status keeps to its minimum width on a narrower terminal, or with none.
            width = shutil.get_terminal_size().columns
            self.stdout.write(render_status(ledger.status_rows(schemas), width=width), ending="")
            return
        if options["force"] and not options["dry_run"] and options["interactive"]:
            self.confirm_force(schemas)

        migration_options = MigrationOptions.from_command_options(options)
        # SIGTERM stops the run as Ctrl-C does (exit 143): whole batches kept, the report written.
        with sigterm_interrupts():
            try:
                if options["check"]:
                    report = validate_images(schemas, options["jobs"], migration_options)
                else:
                    with self.progress(options, len(schemas)) as progress:
                        report = migrate_images(schemas, migration_options, progress)
            except KeyboardInterrupt as interrupt:  # before or after the tenants' loop
                report = MigrationReport(mode, datetime.now(UTC))
                report.interruption = Interruption([], schemas, signal=signal_name(interrupt))
            except TenantJobFailed as failure:  # not expected: the runs report it
                report = MigrationReport(mode, datetime.now(UTC), failure.results, failure=str(failure))
        self.write_report(report, options)

        if report.exit_code != ExitCode.OK:
            raise CommandError(failure_message(report), returncode=report.exit_code)

    def control_run(self, asked: list[str], options: dict) -> None:
        """--pause, --resume or --cancel RUN: ask it of a run in progress, maybe on another host, and exit."""
        if len(asked) > 1:
            raise CommandError(
                f"--{asked[0]} and --{asked[1]}: ask one thing of a run at a time.", returncode=ExitCode.USAGE
            )
        name = asked[0]
        try:
            run_id = ask(options[name], CONTROLS[name], by=f"{getpass.getuser()}@{socket.gethostname()}")
        except NoSuchRun as exc:
            raise CommandError(f"--{name}: {exc}. Nothing was done.", returncode=ExitCode.USAGE) from exc
        obeys = {
            "pause": "pauses before its next batch (within a batch and a second), keeping its locks",
            "resume": "goes on with its next batch within a second",
            "cancel": "stops before its next batch, keeps what it committed and writes its report",
        }[name]
        self.stdout.write(self.style.SUCCESS(f"Asked run {run_id} to {name}: it {obeys}."))

    def confirm_force(self, schemas: list[str]) -> None:
        confirm(f"--force replaces the product_images rows of every product in {', '.join(schemas)}.")

    def progress(self, options: dict, tenants: int):
        # Bars only on a terminal, so reports piped to files stay clean; beside the
        # readable report, so JSON on stdout stays clean too.
        out = self.stderr if options["json"] == "-" else self.stdout
        if options["verbosity"] == 0 or not out.isatty():
            return nullcontext()
        # Rich writes partial lines: give it the raw stream, not Django's line-ending wrapper.
        return RichProgress(getattr(out, "_out", sys.stdout), tenants)

    def write_report(self, report: MigrationReport, options: dict, files_only: bool = False) -> None:
        json_to_stdout = options["json"] == "-"
        if not files_only and options["verbosity"] > 0:
            # With JSON on stdout, the readable report moves to stderr.
            out = self.stderr if json_to_stdout else self.stdout
            tty = out.isatty()
            width = shutil.get_terminal_size((120, 24)).columns if tty else 120
            out.write(render_terminal(report, width=width, color=tty), style_func=str, ending="")
        # JSON asked on stdout ('-') is no file: printed below, after the readable report, unless files only.
        write_report_files(report, markdown=options["report"], json=None if json_to_stdout else options["json"])
        if files_only:
            return
        if json_to_stdout:
            self.stdout.write(render_json(report), ending="")
        if report.exit_code == ExitCode.OK and options["verbosity"] > 0 and not json_to_stdout:
            self.stdout.write(self.style.SUCCESS("All checks PASS, no errors."))
