"""What a section of the report holds, whichever output shows it: neutral blocks the formatters lay out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

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
