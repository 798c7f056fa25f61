"""The benchmark's figures, its targets (issue 3, then issue 12) and their rendering."""

from __future__ import annotations

import os
import platform
import re
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from django.db import connection
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from bench.fleet import PaceFigures, PickerFigures
    from bench.run import SetResult
    from bench.two_writers import TwoWritersResult


@dataclass(frozen=True)
class Figures:
    """One data set's medians with one --jobs value, and what follows from them."""

    name: str
    tenants: int
    products: int
    images: int
    jobs: int
    migrate: float
    dry_run: float  # the dry run's migrate and validate: it rehearses both, batch by batch
    validate: float
    whole: float
    peak_rss_mb: float
    reference: float | None  # the per-row method, when the set times it
    floor: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.migrate

    @property
    def speedup_over_reference(self) -> float | None:
        """The whole command (a process: start-up, migrate, validate, report) against the per-row method."""
        return self.reference / self.whole if self.reference else None

    @property
    def ratio_to_floor(self) -> float:
        return self.migrate / self.floor

    @property
    def per_tenant_ms(self) -> float:
        return 1000 * (self.migrate + self.validate) / self.tenants


# Written by hand: for each target, when missed, its measured cause and what was tried (a section per target,
# headed by its name); RESULTS.md carries the sections of the targets its run missed.
MISSED_TARGETS = Path(__file__).resolve().parent / "MISSED_TARGETS.md"
MISSED_TARGETS_TITLE = "Missed targets: measured causes and what was tried"


@dataclass(frozen=True)
class Target:
    name: str  # what is measured, as MISSED_TARGETS.md heads its section
    limit: str  # "<= 1 s", ">= 12 x"
    measured: str
    met: bool
    shortfall: str = ""

    @property
    def description(self) -> str:
        return f"{self.name} {self.limit}"


def figures(result: SetResult) -> Figures:
    data_set = result.data_set
    return Figures(
        name=data_set.name,
        tenants=len(data_set.schemas),
        products=data_set.products,
        images=data_set.images,
        jobs=result.jobs,
        migrate=result.median("live", "migrate"),
        dry_run=statistics.median(run.migrate + run.validate for run in result.dry_run),
        validate=result.median("live", "validate"),
        whole=result.median("live", "wall"),
        peak_rss_mb=max(run.peak_rss_mb for run in result.live + result.dry_run),
        reference=result.median("reference") if result.reference else None,
        floor=result.median("floor"),
    )


def targets(
    results: list[SetResult], pace: PaceFigures | None = None, picker: PickerFigures | None = None
) -> list[Target]:
    """The targets for the sets and --jobs values measured in this run (issue 12's, and issue 3's dry run), and
    issue 22's and 23's for the pace, the health checks and the seller picker."""
    found = _fleet_targets(pace, picker)
    measured = {(values.name, values.jobs): values for values in map(figures, results)}
    if one := measured.get(("1x", 1)):
        found.append(at_most("1x: whole command (start-up, migrate, validate, report)", one.whole, 1.0, "s"))
    serial, split = measured.get(("30x", 1)), measured.get(("30x", 2))
    if serial:
        found += [
            at_most("30x serial: migrate time / insert floor", serial.ratio_to_floor, 1.5, "x"),
            at_most("30x serial: validation of the tenant", serial.validate, 1.5, "s"),
            # A dry run rehearses the migration and its checks: it costs what a live run's migrate and validate
            # cost (medians of separate runs jitter by a few percent: 5% counts as equal).
            at_most(
                "30x serial: dry run / live migrate and validate (5% noise allowed)",
                serial.dry_run / (serial.migrate + serial.validate),
                1.05,
                "x",
            ),
        ]
    if split and split.speedup_over_reference:
        found.append(
            at_least(
                "30x --jobs 2: whole command faster than the per-row method", split.speedup_over_reference, 12, "x"
            )
        )
    if serial and split:
        found += [
            at_most("30x --jobs 2: whole command / serial whole command", split.whole / serial.whole, 0.6, "x"),
            at_most("30x --jobs 2: validation / serial validation", split.validate / serial.validate, 0.6, "x"),
        ]
    hundred = measured.get(("100x", 2))
    if hundred:
        found.append(at_most("100x --jobs 2: peak RSS of the command", hundred.peak_rss_mb, 150, "MB"))
        if one:
            growth = hundred.peak_rss_mb / one.peak_rss_mb - 1
            found.append(at_most("100x --jobs 2: peak RSS growth over 1x", 100 * growth, 30, "%"))
    for fan_out in (values for values in measured.values() if values.tenants > 1):
        found.append(at_most(f"{fan_out.name} --jobs {fan_out.jobs}: whole command", fan_out.whole, 10, "s"))
    return found


def _fleet_targets(pace: PaceFigures | None, picker: PickerFigures | None) -> list[Target]:
    found = []
    if pace:
        found += [
            at_most(
                f"30x --batch-time {pace.batch_time}: migrate / best fixed --batch-size ({pace.best_size})",
                pace.ratio_to_best,
                1.10,
                "x",
            ),
            at_most(f"30x --batch-time {pace.batch_time}: health checks' share of migrate", pace.health_share, 2, "%"),
        ]
    if picker:
        found += [
            at_most(f"seller picker, {picker.sellers:,} sellers: first page", picker.first_page_ms, 300, "ms"),
            at_most(f"seller picker, {picker.sellers:,} sellers: a search", picker.search_ms, 300, "ms"),
        ]
    return found


def fleet_lines(pace: PaceFigures | None, picker: PickerFigures | None) -> list[str]:
    """The pace and the picker in sentences, for both outputs."""
    lines = []
    if pace:
        lines += [
            f"--batch-time {pace.batch_time} on 30x: migrate {pace.migrate:.2f} s (best fixed --batch-size "
            f"{pace.best_size}: {pace.best_migrate:.2f} s, ratio {pace.ratio_to_best:.2f}); {pace.batches} batches "
            f"of {pace.smallest:,} to {pace.largest:,} products (average {pace.average:,.0f}).",
            f"Health checks: {pace.check_ms:.2f} ms per batch (the control row and the health signals, {pace.batches} "
            f"batches): {pace.health_share:.2f}% of migrate; the same runs with --ignore-health: "
            f"{pace.ignore_health_migrate:.2f} s.",
        ]
    if picker:
        lines.append(
            f"Seller picker, {picker.sellers:,} sellers (50 a page): first page {picker.first_page_ms:.0f} ms, "
            f"last page {picker.later_page_ms:.0f} ms, a search {picker.search_ms:.0f} ms (medians, Django's test "
            "client in the benchmark's process)."
        )
    return lines


def at_most(description: str, measured: float, limit: float, unit: str) -> Target:
    met = measured <= limit
    over = f"{measured - limit:.2f} {unit} over ({(measured / limit - 1) * 100:.0f}% above the limit)"
    return Target(description, f"<= {limit:g} {unit}", f"{measured:.2f} {unit}", met, "" if met else over)


def at_least(description: str, measured: float, limit: float, unit: str) -> Target:
    met = measured >= limit
    under = f"{limit - measured:.2f} {unit} short ({(1 - measured / limit) * 100:.0f}% below the target)"
    return Target(description, f">= {limit:g} {unit}", f"{measured:.2f} {unit}", met, "" if met else under)


def written_causes(text: str) -> dict[str, str]:
    """MISSED_TARGETS.md's sections by target name: each ``### name`` heading's text up to the next heading."""
    parts = re.split(r"^### (.+)$", text, flags=re.MULTILINE)
    causes: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name.strip() in causes:
            raise ValueError(f"bench/{MISSED_TARGETS.name}: two sections for {name.strip()!r}")
        causes[name.strip()] = body.strip()
    return causes


def missed_targets_section(found: list[Target], causes: dict[str, str]) -> list[str]:
    """The Markdown section listing each missed target with its written cause (none when every target was met)."""
    missed = [target for target in found if not target.met]
    if not missed:
        return []
    lines = [
        f"## {MISSED_TARGETS_TITLE}",
        "",
        f"From `bench/{MISSED_TARGETS.name}`, written by hand from measurements.",
        "",
    ]
    for target in missed:
        cause = causes.get(target.name)
        if cause is None:
            cause = f"No cause written down yet: add a `### {target.name}` section to bench/{MISSED_TARGETS.name}."
        lines += [f"### {target.name}", "", cause, ""]
    return lines


def machine_description() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (server_version,) = cursor.fetchone()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": _memory(),
        "python": platform.python_version(),
        "postgresql": f"{server_version} ({'DATABASE_URL' if os.environ.get('DATABASE_URL') else 'embedded, local'})",
        "os": platform.platform(),
    }


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):  # noqa: SIM115
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return "unknown"
    return f"{pages * page_size / 2**30:.0f} GiB"


FIGURE_COLUMNS = [
    ("Data set", lambda f: f.name),
    ("Jobs", lambda f: str(f.jobs)),
    ("Tenants", lambda f: f"{f.tenants:,}"),
    ("Products", lambda f: f"{f.products:,}"),
    ("Images", lambda f: f"{f.images:,}"),
    ("Migrate s", lambda f: f"{f.migrate:.2f}"),
    ("Dry run s", lambda f: f"{f.dry_run:.2f}"),
    ("Validate s", lambda f: f"{f.validate:.2f}"),
    ("Whole s", lambda f: f"{f.whole:.2f}"),
    ("Images/s", lambda f: f"{f.images_per_second:,.0f}"),
    ("Per-row s", lambda f: f"{f.reference:.2f}" if f.reference else "not timed"),
    ("Whole vs per-row", lambda f: f"{f.speedup_over_reference:.1f}x faster" if f.reference else "-"),
    ("Floor s", lambda f: f"{f.floor:.2f}"),
    ("vs floor", lambda f: f"{f.ratio_to_floor:.2f}x"),
    ("Peak RSS MB", lambda f: f"{f.peak_rss_mb:.0f}"),
    ("Per tenant ms", lambda f: f"{f.per_tenant_ms:.1f}"),
]

SWEEP_TITLE = "Batch size (30x set, live migrate, medians)"
TWO_WRITERS_TITLE = "Two writers (30x set)"
TWO_WRITERS_NOTE = (
    "Migrate: the command's own --sync/--force/first-run phase (its JSON report); the whole command adds start-up, "
    "the six checks (the same in each) and the report. Full --sync: every digest cleared "
    "(TRUNCATE product_json_state), so it reconciles every product, as --sync did before the digests. App UPDATE: "
    "client-side time of one autocommit statement, and its server process's CPU (the embedded server); without: a "
    "session with session_replication_role = replica (no trigger fires), alternating with the follower's."
)
NOTES = [
    "Migrate and validate: the live command's own phase timings (its JSON report): a tenant's wall clock, "
    "summed over tenants; dry run: its migrate and validate together (it rehearses both, batch by batch).",
    "Whole: the live command as a process, Django start-up and report included. Jobs: its --jobs (a tenant of "
    "at least two batches is then split in ranges worked at once; many tenants are worked that many at a time).",
    "Whole vs per-row: the per-row method's time over the whole command's (not timed on 100x: six minutes a "
    "run, and no target reads it).",
    "Per-row: bench/per_row_reference.py, the seed script's method. Floor: one INSERT ... SELECT from "
    "generate_series of as many rows into a copy of product_images (constraints, indexes, foreign key).",
    "Per tenant: (migrate + validate) / tenants; on the many-tenant set it is almost all per-tenant overhead.",
]


def all_targets(
    results: list[SetResult],
    pace: PaceFigures | None = None,
    picker: PickerFigures | None = None,
    two_writers: TwoWritersResult | None = None,
) -> list[Target]:
    return targets(results, pace, picker) + (two_writers.targets() if two_writers else [])


def render_terminal(
    results: list[SetResult],
    sweep: dict[int, float],
    machine: dict[str, str],
    pace: PaceFigures | None = None,
    picker: PickerFigures | None = None,
    two_writers: TwoWritersResult | None = None,
) -> str:
    console = Console(record=True, width=200)
    with console.capture() as capture:
        if results:
            table = Table(title=f"migrate_images benchmark (medians of {len(results[0].live)} runs)")
            for header, _ in FIGURE_COLUMNS:
                table.add_column(header, justify="left" if header == "Data set" else "right")
            for result in results:
                values = figures(result)
                table.add_row(*(cell(values) for _, cell in FIGURE_COLUMNS))
            console.print(table)
        if two_writers:
            console.print(f"{TWO_WRITERS_TITLE} (medians of {len(two_writers.backfill)} runs):")
            for what, figure in two_writers.rows():
                console.print(f"  {what}: {figure}")
        if sweep:
            console.print(f"{SWEEP_TITLE}: " + ", ".join(f"{size}: {seconds:.2f} s" for size, seconds in sweep.items()))
        for line in fleet_lines(pace, picker):
            console.print(line)
        console.print("Machine: " + ", ".join(f"{key} {value}" for key, value in machine.items()))
        for target in all_targets(results, pace, picker, two_writers):
            verdict = "[green]MET[/]" if target.met else f"[red]MISSED[/] by {target.shortfall}"
            console.print(f"  {target.description}: {target.measured} {verdict}")
    return capture.get()


def render_markdown(
    results: list[SetResult],
    sweep: dict[int, float],
    machine: dict[str, str],
    command: str,
    pace: PaceFigures | None = None,
    picker: PickerFigures | None = None,
    two_writers: TwoWritersResult | None = None,
) -> str:
    lines = ["# migrate_images benchmark results", "", f"Produced by `{command}` (see `bench/run.py`).", ""]
    lines += ["## Machine", ""] + [f"- **{key}:** {value}" for key, value in machine.items()] + [""]
    if results:
        lines += [f"## Figures (medians of {len(results[0].live)} runs)", ""]
        lines += ["| " + " | ".join(header for header, _ in FIGURE_COLUMNS) + " |"]
        lines += ["|" + "|".join("---" for _ in FIGURE_COLUMNS) + "|"]
        for result in results:
            values = figures(result)
            lines.append("| " + " | ".join(cell(values) for _, cell in FIGURE_COLUMNS) + " |")
        lines += [""] + [f"- {note}" for note in NOTES] + [""]
    if two_writers:
        lines += [f"## {TWO_WRITERS_TITLE} (medians of {len(two_writers.backfill)} runs)", ""]
        lines += ["| Measured | Figure |", "|---|---|"]
        lines += [f"| {what} | {figure} |" for what, figure in two_writers.rows()]
        lines += ["", f"- {TWO_WRITERS_NOTE}", ""]
    if sweep:
        lines += [f"## {SWEEP_TITLE}", "", "| --batch-size | Migrate s |", "|---|---|"]
        lines += [f"| {size} | {seconds:.2f} |" for size, seconds in sweep.items()] + [""]
    if pace or picker:
        lines += ["## Pace, health checks and the seller picker", ""] + [
            f"- {line}" for line in fleet_lines(pace, picker)
        ]
        lines += [""]
    lines += ["## Targets", "", "| Target | Measured | Result |"]
    lines += ["|---|---|---|"]
    found = all_targets(results, pace, picker, two_writers)
    for target in found:
        verdict = "met" if target.met else f"MISSED by {target.shortfall}"
        lines.append(f"| {target.description} | {target.measured} | {verdict} |")
    lines += [""] + missed_targets_section(found, written_causes(MISSED_TARGETS.read_text()))
    return "\n".join(lines).rstrip("\n") + "\n"
