"""The report as a Markdown file shaped like the seed report: a header, the sections, the exit status."""

from __future__ import annotations

from products.migration.rendering.blocks import (
    MARKDOWN,
    Block,
    Bullets,
    Cell,
    Code,
    Figures,
    Group,
    Heading,
    Outcome,
    Paragraph,
    Table,
    shown_in,
)
from products.migration.rendering.sections import MODE_TITLES, report_sections
from products.migration.report import MigrationReport


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
