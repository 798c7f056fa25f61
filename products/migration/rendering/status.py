"""migrate_images --status: the ledger's latest entries per tenant (``ledger.status_rows``) as a plain table."""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

# Thirteen columns with timestamps and notes: narrower than this, rich would wrap every row.
MIN_WIDTH = 180


def render_status(rows: list[dict], *, width: int = MIN_WIDTH) -> str:
    """The rows as a table at least ``MIN_WIDTH`` wide, without colour; a missing figure is an empty cell."""
    table = Table(
        "Schema",
        "Mode",
        "Status",
        "Started (UTC)",
        "Finished",
        "Last product id",
        "Batches",
        "Images",
        "Errors",
        "Checks",
        "Follower",
        "Held",
        "Note",
        title="migrate_images: latest state per tenant (run ledger)",
        box=box.SIMPLE,
    )
    for row in rows:
        cells = [
            row.get("mode", ""),
            row["status"],
            row.get("started", ""),
            row.get("finished", ""),
            "" if row.get("last_product_id") is None else str(row["last_product_id"]),
            str(row.get("batches", "")),
            f"{row['images']:,}" if "images" in row else "",
            str(row.get("errors", "")),
            row.get("checks", ""),
            row.get("follower", ""),
            str(row.get("held", "")),
            row.get("note", ""),
        ]
        table.add_row(escape(row["schema"]), *(escape(cell) for cell in cells))
    buffer = io.StringIO()
    Console(file=buffer, width=max(width, MIN_WIDTH), no_color=True).print(table)
    return buffer.getvalue()
