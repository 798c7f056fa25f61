"""The report's files: Markdown (``--report``) and JSON (``--json``), written after a run however it ended."""

from __future__ import annotations

from pathlib import Path

from products.migration.rendering.json import render_json
from products.migration.rendering.markdown import render_markdown
from products.migration.report import MigrationReport


def write_report_files(report: MigrationReport, *, markdown: str | None = None, json: str | None = None) -> None:
    """Write the report as Markdown to the path ``markdown`` and as JSON to the path ``json``, each when given."""
    if markdown:
        Path(markdown).write_text(render_markdown(report), encoding="utf-8")
    if json:
        Path(json).write_text(render_json(report), encoding="utf-8")
