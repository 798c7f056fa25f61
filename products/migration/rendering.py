"""The migration report rendered three ways: terminal (rich), Markdown (shaped like the seed report), JSON.

The terminal and the Markdown file show the same sections in the same order: ``report_sections`` walks the
report once and describes them as neutral blocks (paragraphs, tables, code), and the two formatters below
only lay those blocks out. Where the outputs differ on purpose, a block says which one shows it (``only``):
the file, a record kept after the run, adds the data-safety note and every check's SQL; the terminal, read
at a glance, keeps to shorter lines.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from products.migration.report import CheckResult, Interruption, MigrationReport, TenantReport, TenantRun, Validation

SUMMARY_COLUMNS = [
    "Schema",
    "Products",
    "Images Migrated",
    "Labels Detected",
    "Errors",
    "Already migrated",
    "Repaired",
    "Soft-deleted",
]
MODE_TITLES = {
    "live": "Product images migration",
    "dry-run": "Product images migration: DRY RUN (rolled back, nothing written)",
    "check": "Product images validation (--check, nothing written)",
}

DATA_SAFETY = (
    "The JSON column products.images is only read, never modified. Re-running skips migrated products; "
    "`--force` rebuilds their rows from the JSON."
)


# Blocks: what a section holds, whichever output shows it.

TERMINAL = "terminal"
MARKDOWN = "markdown"

# Tones colour text in the terminal; the Markdown file has no colours.
PLAIN = "plain"
OK = "ok"
WARNING = "warning"
ERROR = "error"


@dataclass(frozen=True)
class Block:
    """One piece of a section; both outputs show it unless ``only`` names one."""

    only: str | None = field(default=None, kw_only=True)  # TERMINAL or MARKDOWN


@dataclass(frozen=True)
class Paragraph(Block):
    """A line of text after an optional lead, which the file sets in bold ("**Data safety:** ...")."""

    text: str
    lead: str = ""
    tone: str = PLAIN


@dataclass(frozen=True)
class Bullets(Block):
    """A list: bulleted in the file, one line per item in the terminal."""

    items: list[str]
    tone: str = PLAIN


@dataclass(frozen=True)
class Figures(Block):
    """Named figures: one line in the terminal ("Time: migrate 1.50 s, ..."), a bulleted list in the file."""

    title: str
    figures: list[tuple[str, str]]


@dataclass(frozen=True)
class Outcome:
    """A check's result in a table cell: green or red in the terminal, marked ✅ or ❌ in the file."""

    text: str
    passed: bool


# A table cell: text as it is, a count (an int: the terminal writes 1,234, the file 1234), or an Outcome.
Cell = str | int | Outcome


@dataclass(frozen=True)
class Table(Block):
    """Rows under a header; the terminal prints the title over it, the file names it by its section's heading."""

    title: str
    header: list[str]
    rows: list[list[Cell]]
    caption: str = ""  # the file only: a bold line over the table, where a section holds several
    # (column, name) pairs: the file spells the names out in the header; the terminal, short of width,
    # keeps the columns' short names and prints the legend under the table.
    legend: Sequence[tuple[str, str]] = ()
    total_row: bool = False  # the last row is the total, set in bold
    headline: bool = False  # the terminal rules a headline table's header heavier
    tone: str = PLAIN  # colours every row in the terminal
    marks: Sequence[str] = ()  # per row, a word the terminal points at after the row ("<- label"), or ""


@dataclass(frozen=True)
class Code(Block):
    """Preformatted text, fenced; in the file only (the terminal shows tables)."""

    text: str
    language: str = ""


@dataclass(frozen=True)
class Heading(Block):
    """A heading inside a section: the file's "### ..." (the terminal titles its tables instead)."""

    text: str


@dataclass(frozen=True)
class Group(Block):
    """Blocks the file writes without blank lines between them: a query's heading, its SQL, its result.

    In the file only: the terminal prints no blank lines between blocks anyway.
    """

    blocks: list[Block]


@dataclass(frozen=True)
class Section:
    heading: str  # the file's "## heading"; the terminal has titled tables instead
    blocks: list[Block]


def shown_in(output: str, blocks: list[Block]) -> list[Block]:
    return [block for block in blocks if block.only in (None, output)]


# The sections, in reading order.


def interruption_note(interruption: Interruption) -> str:
    stopped = ", ".join(interruption.stopped_in) or "no tenant (between tenants)"
    return (
        f"Interrupted while migrating {stopped}: committed batches are kept; "
        f"{len(interruption.not_started)} tenant(s) not started. Re-run to finish."
    )


def _run_cells(run: TenantRun) -> list[str]:
    return [
        str(run.products),
        f"{run.images_migrated:,}",
        f"{run.labels_detected:,}",
        str(len(run.errors)),
        f"{run.already_migrated:,}",
        f"{run.repaired:,}",
        f"{run.soft_deleted:,}",
    ]


def summary_rows(report: MigrationReport) -> list[list[str]]:
    """One row per tenant, then TOTAL; a busy tenant's figures read 'busy'."""
    rows = []
    for tenant in report.tenants:
        if tenant.busy:
            rows.append([tenant.schema] + ["busy: skipped"] + [""] * (len(SUMMARY_COLUMNS) - 2))
        elif tenant.run:
            rows.append([tenant.schema] + _run_cells(tenant.run))
    rows.append(["TOTAL"] + _run_cells(report.total))
    return rows


def summary_sentence(report: MigrationReport) -> str:
    """The outcome in one sentence, as the seed report opens."""
    schemas = sum(1 for tenant in report.tenants if not tenant.busy)
    failed = len(report.failed_checks)
    verdict = "every check PASS" if not failed else f"{failed} check(s) FAIL"
    if report.mode == "check":
        return f"Validated product_images in {schemas} schema(s): {verdict}."
    total = report.total
    verb = "Would migrate" if report.mode == "dry-run" else "Migrated"
    return (
        f"{verb} {total.images_migrated:,} images ({total.labels_detected:,} labels) from the JSONB column "
        f"products.images to the product_images table across {schemas} schema(s); "
        f"{total.already_migrated:,} products already migrated, {len(total.errors):,} errors; {verdict}."
    )


def check_cell(check: CheckResult) -> str:
    if check.passed:
        return f"PASS {check.figure:,}"
    return f"FAIL {check.figure:,} (expected {check.expected:,})"


def label_analysis(tenant: TenantReport) -> str:
    """Products with 2+ images against labels, explained as the seed report does."""
    validation = tenant.validation
    with_images = sum(products for _, products in validation.distribution)
    text = (
        f"{tenant.schema}: {validation.products_with_several_images:,} products with 2+ images, "
        f"{validation.labels:,} labels"
    )
    if with_images and validation.labels == with_images == validation.products_with_several_images:
        low, high = validation.distribution[0][0], validation.distribution[-1][0]
        text += (
            f" ({validation.labels:,} of {with_images:,} products, 100%): every product has 2 or more images "
            f"(minimum {low}, maximum {high}), so the rule marks the last image of every product as its label."
        )
    return text


def _validated(report: MigrationReport) -> list[tuple[TenantReport, Validation]]:
    return [(tenant, tenant.validation) for tenant in report.tenants if tenant.validation]


def _summary(report: MigrationReport) -> Section:
    return Section(
        "Summary",
        [Paragraph(summary_sentence(report)), Paragraph(DATA_SAFETY, lead="Data safety:", only=MARKDOWN)],
    )


def _results(report: MigrationReport) -> Section | None:
    if report.mode == "check":
        return None  # --check migrates nothing
    table = Table("Results", SUMMARY_COLUMNS, summary_rows(report), total_row=True, headline=True)
    return Section("Results", [table])


def _label_analysis(report: MigrationReport) -> Section | None:
    blocks = []
    for tenant, validation in _validated(report):
        if not validation.distribution:
            continue
        finding = label_analysis(tenant)
        distribution = Table(
            f"Image distribution: {tenant.schema}",
            ["Image Count", "Product Count"],
            [[str(images), products] for images, products in validation.distribution],
            caption=f"Image Distribution ({tenant.schema}):",
        )
        # The file states the finding, then shows its table; the terminal shows the table, then the finding.
        blocks += [Bullets([finding], only=MARKDOWN), distribution, Paragraph(finding, only=TERMINAL)]
    return Section("Label Detection Analysis", blocks) if blocks else None


def _validation(report: MigrationReport) -> Section | None:
    validated = _validated(report)
    if not validated:
        return None
    checks = validated[0][1].checks  # every tenant runs the same checks
    table = Table(
        "Validation checks",
        ["Schema", *(str(check.number) for check in checks)],
        [
            [tenant.schema, *(Outcome(check_cell(check), check.passed) for check in validation.checks)]
            for tenant, validation in validated
        ],
        legend=[(str(check.number), check.name) for check in checks],
        headline=True,
    )
    return Section("Validation", [table])


def _validation_queries(report: MigrationReport) -> Section | None:
    """Each check's SQL and its figure per tenant, in the file only: a reader can paste and re-run them."""
    validated = _validated(report)
    if not validated:
        return None
    blocks = []
    for check in validated[0][1].checks:
        figures = ", ".join(
            f"{tenant.schema} {check_cell(validation.checks[check.number - 1])}" for tenant, validation in validated
        )
        query = [
            Heading(f"Query {check.number}: {check.name}"),
            Code(check.sql, "sql"),
            Paragraph(figures, lead="Result:"),
        ]
        blocks.append(Group(query, only=MARKDOWN))
    return Section("Validation Queries", blocks)


def _spot_check(report: MigrationReport) -> Section | None:
    """The first validated tenant's sample product, image by image."""
    spot = next((v.spot_check for _, v in _validated(report) if v.spot_check), None)
    if not spot:
        return None
    table = Table(
        f"Spot check: product {spot.product_id}",
        ["order", "is_label", "url"],
        [[str(row.order), str(row.is_label).lower(), row.url] for row in spot.rows],
        marks=["label" if row.is_label else "" for row in spot.rows],
        only=TERMINAL,
    )
    # The file shows the rows as psql prints them, as the seed report does.
    psql = [" order | is_label | url", "-------+----------+-----"] + [
        f" {row.order:>5} | {str(row.is_label).lower():<8} | {row.url}" + (" ← Label" if row.is_label else "")
        for row in spot.rows
    ]
    caption = Paragraph(f"({len(spot.rows)} images)", lead=f"Product ID: {spot.product_id}")
    return Section("Spot Check Sample", [table, Group([caption, Code("\n".join(psql))], only=MARKDOWN)])


def _repairs(report: MigrationReport) -> Section | None:
    repairs = report.total.repairs
    if not repairs:
        return None
    rows = [[repair.reason, repair.products, ", ".join(map(str, repair.sample_ids))] for repair in repairs]
    return Section("Repairs", [Table("Repaired products", ["Repair", "Products", "Sample ids"], rows)])


def _errors(report: MigrationReport) -> Section | None:
    if not report.errors:
        return None
    rows = [[error.tenant, str(error.product_id), error.reason] for error in report.errors]
    table = Table("Errors: products not migrated", ["Schema", "Product id", "Reason"], rows, tone=ERROR)
    return Section("Errors", [table])


def _skipped(report: MigrationReport) -> Section | None:
    busy = report.busy_tenants
    if not busy:
        return None
    # The terminal speaks while the run is on; the file, read afterwards, in the past.
    return Section(
        "Skipped",
        [
            Bullets(
                [f"{schema}: busy, another migrate_images run holds its lock; skipped." for schema in busy],
                tone=WARNING,
                only=TERMINAL,
            ),
            Bullets([f"{schema}: busy (another run held its lock)" for schema in busy], only=MARKDOWN),
        ],
    )


def _interruption(report: MigrationReport) -> Section | None:
    if not report.interruption:
        return None
    return Section("Interrupted", [Paragraph(interruption_note(report.interruption), tone=WARNING)])


def _performance(report: MigrationReport) -> Section:
    seconds = report.seconds  # per phase, summed over tenants
    phases = [*seconds.items(), ("total", sum(seconds.values()))]
    return Section("Performance", [Figures("Time", [(phase, f"{time:.2f} s") for phase, time in phases])])


def report_sections(report: MigrationReport) -> list[Section]:
    """The sections both outputs show, in reading order; one with nothing to say is left out."""
    sections = [
        _summary(report),
        _results(report),
        _label_analysis(report),
        _validation(report),
        _validation_queries(report),
        _spot_check(report),
        _repairs(report),
        _errors(report),
        _skipped(report),
        _interruption(report),
        _performance(report),
    ]
    return [section for section in sections if section]


# Terminal


COLOURS = {OK: "green", WARNING: "yellow", ERROR: "red"}


def _markup(text: str, tone: str = PLAIN) -> str:
    """Text as rich markup: printed as written (a url may hold "[/x]"), in its tone's colour."""
    text = escape(text)
    return f"[{COLOURS[tone]}]{text}[/]" if tone in COLOURS else text


def _terminal_cell(cell: Cell) -> str:
    if isinstance(cell, Outcome):
        return _markup(cell.text, OK if cell.passed else ERROR)
    if isinstance(cell, int):
        return f"{cell:,}"
    return _markup(cell)


def _rich_table(table: Table) -> RichTable:
    rich_table = RichTable(*table.header, title=table.title, box=box.SIMPLE_HEAVY if table.headline else box.SIMPLE)
    marks = table.marks or [""] * len(table.rows)
    for number, (row, mark) in enumerate(zip(table.rows, marks, strict=True), start=1):
        cells = [_terminal_cell(cell) for cell in row]
        if mark:
            cells[-1] += f"  <- {mark}"
        is_total = table.total_row and number == len(table.rows)
        rich_table.add_row(*cells, style="bold" if is_total else COLOURS.get(table.tone))
    return rich_table


def _print_block(console: Console, block: Block) -> None:
    if isinstance(block, Paragraph):
        console.print(_markup(f"{block.lead} {block.text}" if block.lead else block.text, block.tone))
    elif isinstance(block, Bullets):
        for item in block.items:
            console.print(_markup(item, block.tone))
    elif isinstance(block, Figures):
        console.print(_markup(f"{block.title}: " + ", ".join(f"{name} {value}" for name, value in block.figures)))
    elif isinstance(block, Table):
        console.print(_rich_table(block))
        if block.legend:
            console.print("  " + _markup("; ".join(f"{column}: {name}" for column, name in block.legend)))
    else:
        raise TypeError(f"the terminal has no layout for {type(block).__name__}")


def render_terminal(report: MigrationReport, *, width: int = 120, color: bool = False) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False)
    console.rule(MODE_TITLES[report.mode])
    for section in report_sections(report):
        for block in shown_in(TERMINAL, section.blocks):
            _print_block(console, block)
    return buffer.getvalue()


# Markdown


def _markdown_cell(cell: Cell) -> str:
    if isinstance(cell, Outcome):
        return f"{'✅' if cell.passed else '❌'} {cell.text}"
    return str(cell)


def _markdown_table(table: Table) -> list[str]:
    names = dict(table.legend)
    header = [f"{column}. {names[column]}" if column in names else column for column in table.header]
    rows = [[_markdown_cell(cell) for cell in row] for row in table.rows]
    if table.total_row:
        rows[-1] = [f"**{cell}**" if cell else cell for cell in rows[-1]]
    lines = [f"**{table.caption}**"] if table.caption else []
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("-" * (len(h) + 2) for h in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _markdown_lines(block: Block) -> list[str]:
    if isinstance(block, Paragraph):
        return [f"**{block.lead}** {block.text}" if block.lead else block.text]
    if isinstance(block, Bullets):
        return [f"- {item}" for item in block.items]
    if isinstance(block, Figures):
        return [f"- **{name}:** {value}" for name, value in block.figures]
    if isinstance(block, Table):
        return _markdown_table(block)
    if isinstance(block, Code):
        return [f"```{block.language}", block.text, "```"]
    if isinstance(block, Heading):
        return [f"### {block.text}"]
    if isinstance(block, Group):
        return [line for member in shown_in(MARKDOWN, block.blocks) for line in _markdown_lines(member)]
    raise TypeError(f"the file has no layout for {type(block).__name__}")


def render_markdown(report: MigrationReport) -> str:
    lines = [
        "# Product Images Migration Report",
        "",
        f"**Date:** {report.started_at:%Y-%m-%d %H:%M} UTC",
        "**Command:** `python manage.py migrate_images`",
        f"**Mode:** {MODE_TITLES[report.mode]}",
        "",
    ]
    for section in report_sections(report):
        lines += [f"## {section.heading}", ""]
        for block in shown_in(MARKDOWN, section.blocks):
            lines += _markdown_lines(block) + [""]
    lines += [f"**Exit status:** {int(report.exit_code)} ({report.exit_code.name})", ""]
    return "\n".join(lines)


# JSON


def report_as_dict(report: MigrationReport) -> dict:
    data = dataclasses.asdict(report)
    data["started_at"] = report.started_at.isoformat()
    data["total"] = dataclasses.asdict(report.total)
    data["seconds"] = report.seconds
    data["exit_code"] = int(report.exit_code)
    for tenant, tenant_data in zip(report.tenants, data["tenants"], strict=True):
        if tenant.validation:
            tenant_data["validation"]["passed"] = tenant.validation.passed
            for check, check_data in zip(tenant.validation.checks, tenant_data["validation"]["checks"], strict=True):
                check_data["passed"] = check.passed
    return data


def render_json(report: MigrationReport) -> str:
    return json.dumps(report_as_dict(report), indent=2, ensure_ascii=False) + "\n"
