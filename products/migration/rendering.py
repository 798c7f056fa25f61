"""The migration report rendered three ways: terminal (rich), Markdown (shaped like the seed report), JSON."""

from __future__ import annotations

import dataclasses
import io
import json

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

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


# Pieces shared by the terminal and Markdown renderings.


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


def _first_spot_check(report: MigrationReport):
    return next((v.spot_check for _, v in _validated(report) if v.spot_check), None)


def _phase_rows(report: MigrationReport) -> list[tuple[str, float]]:
    phases = report.seconds
    return [(phase, seconds) for phase, seconds in phases.items()] + [("total", sum(phases.values()))]


# Terminal


def render_terminal(report: MigrationReport, *, width: int = 120, color: bool = False) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False)
    console.rule(MODE_TITLES[report.mode])
    console.print(summary_sentence(report))
    if report.mode != "check":
        table = Table(*SUMMARY_COLUMNS, title="Results", box=box.SIMPLE_HEAVY)
        rows = summary_rows(report)
        for row in rows[:-1]:
            table.add_row(*row)
        table.add_row(*rows[-1], style="bold")
        console.print(table)

    for tenant, validation in _validated(report):
        if validation.distribution:
            dist = Table("Image Count", "Product Count", title=f"Image distribution: {tenant.schema}", box=box.SIMPLE)
            for images, products in validation.distribution:
                dist.add_row(str(images), f"{products:,}")
            console.print(dist)
            console.print(label_analysis(tenant))

    checks = Table("Schema", *(f"{n}" for n in range(1, 7)), title="Validation checks", box=box.SIMPLE_HEAVY)
    for tenant, validation in _validated(report):
        checks.add_row(
            tenant.schema,
            *(f"[{'green' if c.passed else 'red'}]{check_cell(c)}[/]" for c in validation.checks),
        )
    if checks.row_count:
        console.print(checks)
        first = _validated(report)[0][1].checks
        console.print("  " + "; ".join(f"{c.number}: {c.name}" for c in first))

    spot = _first_spot_check(report)
    if spot:
        table = Table("order", "is_label", "url", title=f"Spot check: product {spot.product_id}", box=box.SIMPLE)
        for row in spot.rows:
            table.add_row(
                str(row.order), str(row.is_label).lower(), escape(row.url) + ("  <- label" if row.is_label else "")
            )
        console.print(table)

    total = report.total
    if total.repairs:
        table = Table("Repair", "Products", "Sample ids", title="Repaired products", box=box.SIMPLE)
        for repair in total.repairs:
            table.add_row(escape(repair.reason), f"{repair.products:,}", ", ".join(map(str, repair.sample_ids)))
        console.print(table)
    if report.errors:
        table = Table("Schema", "Product id", "Reason", title="Errors: products not migrated", box=box.SIMPLE)
        for error in report.errors:
            table.add_row(escape(error.tenant), str(error.product_id), escape(error.reason), style="red")
        console.print(table)
    for schema in report.busy_tenants:
        console.print(f"[yellow]{schema}: busy, another migrate_images run holds its lock; skipped.[/]")
    if report.interruption:
        console.print(f"[yellow]{escape(interruption_note(report.interruption))}[/]")

    console.print("Time: " + ", ".join(f"{phase} {seconds:.2f} s" for phase, seconds in _phase_rows(report)))
    return buffer.getvalue()


# Markdown


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("-" * (len(h) + 2) for h in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _mark(passed: bool) -> str:
    return "✅" if passed else "❌"


def render_markdown(report: MigrationReport) -> str:
    lines = [
        "# Product Images Migration Report",
        "",
        f"**Date:** {report.started_at:%Y-%m-%d %H:%M} UTC",
        "**Command:** `python manage.py migrate_images`",
        f"**Mode:** {MODE_TITLES[report.mode]}",
        "",
        "## Summary",
        "",
        summary_sentence(report),
        "",
        f"**Data safety:** {DATA_SAFETY}",
        "",
    ]
    if report.mode != "check":
        rows = summary_rows(report)
        rows[-1] = [f"**{cell}**" if cell else cell for cell in rows[-1]]
        lines += ["## Results", ""] + _md_table(SUMMARY_COLUMNS, rows) + [""]

    validated = _validated(report)
    if any(v.distribution for _, v in validated):
        lines += ["## Label Detection Analysis", ""]
        for tenant, validation in validated:
            if validation.distribution:
                lines += [f"- {label_analysis(tenant)}", ""]
                lines += [f"**Image Distribution ({tenant.schema}):**"]
                lines += _md_table(
                    ["Image Count", "Product Count"], [[str(i), str(p)] for i, p in validation.distribution]
                )
                lines.append("")

    if validated:
        lines += ["## Validation", ""]
        header = ["Schema"] + [f"{c.number}. {c.name}" for c in validated[0][1].checks]
        rows = [[t.schema] + [f"{_mark(c.passed)} {check_cell(c)}" for c in v.checks] for t, v in validated]
        lines += _md_table(header, rows) + [""]
        lines += ["## Validation Queries", ""]
        for check in validated[0][1].checks:
            lines += [f"### Query {check.number}: {check.name}", "```sql", check.sql, "```"]
            results = ", ".join(f"{t.schema} {check_cell(v.checks[check.number - 1])}" for t, v in validated)
            lines += [f"**Result:** {results}", ""]

    spot = _first_spot_check(report)
    if spot:
        lines += ["## Spot Check Sample", "", f"**Product ID: {spot.product_id}** ({len(spot.rows)} images)", "```"]
        lines += [" order | is_label | url", "-------+----------+-----"]
        for row in spot.rows:
            label = " ← Label" if row.is_label else ""
            lines.append(f" {row.order:>5} | {str(row.is_label).lower():<8} | {row.url}{label}")
        lines += ["```", ""]

    total = report.total
    if total.repairs:
        lines += ["## Repairs", ""]
        rows = [[r.reason, str(r.products), ", ".join(map(str, r.sample_ids))] for r in total.repairs]
        lines += _md_table(["Repair", "Products", "Sample ids"], rows) + [""]
    if report.errors:
        lines += ["## Errors", ""]
        rows = [[e.tenant, str(e.product_id), e.reason] for e in report.errors]
        lines += _md_table(["Schema", "Product id", "Reason"], rows) + [""]
    if report.busy_tenants:
        lines += ["## Skipped", ""] + [f"- {s}: busy (another run held its lock)" for s in report.busy_tenants] + [""]

    if report.interruption:
        lines += ["## Interrupted", "", interruption_note(report.interruption), ""]
    lines += ["## Performance", ""] + [f"- **{phase}:** {seconds:.2f} s" for phase, seconds in _phase_rows(report)]
    lines += ["", f"**Exit status:** {int(report.exit_code)} ({report.exit_code.name})", ""]
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
