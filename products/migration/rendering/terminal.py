"""The report for the terminal (rich): a rule with the mode, then the sections' blocks."""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from products.migration.rendering.blocks import (
    ERROR,
    OK,
    PLAIN,
    TERMINAL,
    WARNING,
    Block,
    Bullets,
    Cell,
    Figures,
    Outcome,
    Paragraph,
    Table,
    shown_in,
)
from products.migration.rendering.sections import MODE_TITLES, report_sections
from products.migration.report import MigrationReport

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
