"""The migration report rendered three ways: terminal (rich), Markdown (shaped like the seed report), JSON.

The terminal and Markdown renderings share one description of the report's sections (``sections.py``, made
of the blocks in ``blocks.py``); ``terminal.py`` and ``markdown.py`` only lay it out. JSON is the report's
dataclasses as they are. ``files.py`` writes the Markdown and JSON files; ``status.py`` lays out the run
ledger's rows for ``migrate_images --status``; ``failure.py`` words the command's closing error.
"""

from products.migration.rendering.failure import failure_message
from products.migration.rendering.files import write_report_files
from products.migration.rendering.json import render_json, report_as_dict
from products.migration.rendering.markdown import render_markdown
from products.migration.rendering.sections import SUMMARY_COLUMNS
from products.migration.rendering.status import render_status
from products.migration.rendering.terminal import render_terminal

__all__ = [
    "SUMMARY_COLUMNS",
    "failure_message",
    "render_json",
    "render_markdown",
    "render_status",
    "render_terminal",
    "report_as_dict",
    "write_report_files",
]
