"""The migration report: the command's --report / --json outputs, and the renderers on a hand-built report."""

import dataclasses
import json
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from products.migration.rendering import SUMMARY_COLUMNS, render_json, render_markdown, render_terminal, report_as_dict
from products.migration.report import (
    EMPTIED,
    SAMPLE_SIZE,
    Blocked,
    CheckResult,
    ExitCode,
    Interruption,
    MigrationReport,
    ProductError,
    Repair,
    SpotCheck,
    SpotRow,
    TenantReport,
    TenantRun,
    Validation,
)
from products.migration.source import REPAIR_CREATED_AT, REPAIR_ORDER_DUPLICATE
from stoflow.tenants.blocking import Blocker
from tests.helpers import entries, image_rows, make_product, run_command, sql_value, verbatim_rows

BAD_JSON_REASON = "images is a JSON object, not an array"


def md_table(markdown: str, after: str) -> tuple[list[str], list[list[str]]]:
    """The first Markdown table after the line ``after``: (header cells, body rows of cells)."""
    lines = markdown.splitlines()
    rest = lines[lines.index(after) + 1 :]
    start = next(i for i, line in enumerate(rest) if line.startswith("|"))
    table = []
    for line in rest[start:]:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip("|").split("|")])
    header, separator, *rows = table
    assert all(set(cell) <= {"-"} for cell in separator), separator
    return header, rows


def md_section(markdown: str, heading: str) -> str:
    """The text of the ``## heading`` section, up to the next ``## `` heading."""
    start = markdown.index(f"\n## {heading}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end != -1 else None]


# Command level: a run over four products, one of which cannot be migrated.


@pytest.fixture
def catalogue(tenant):
    """4 + 2 + 1 images, and a product whose images value is no list (an error)."""
    first = make_product(images=entries(4))
    make_product(images=entries(2))
    make_product(images=entries(1))
    bad = make_product(images={"url": "https://cdn.example/not-a-list.jpeg"})
    return first, bad


def test_markdown_report_is_shaped_like_the_seed_report(catalogue, tenant, tmp_path):
    first, bad = catalogue
    path = tmp_path / "migration-report.md"

    code, report, out = run_command("--schema", tenant, "--report", str(path), tmp_path=tmp_path)

    assert code == ExitCode.PRODUCT_ERRORS, out
    markdown = path.read_text(encoding="utf-8")
    assert markdown.startswith("# Product Images Migration Report\n")

    header, rows = md_table(markdown, "## Results")
    assert header == SUMMARY_COLUMNS
    assert rows == [
        ["tenant_a", "4", "7", "2", "1", "0", "0", "0"],
        ["**TOTAL**", "**4**", "**7**", "**2**", "**1**", "**0**", "**0**", "**0**"],
    ]

    assert md_table(markdown, "**Image Distribution (tenant_a):**") == (
        ["Image Count", "Product Count"],
        [["1", "1"], ["2", "1"], ["4", "1"]],
    )
    assert "- tenant_a: 2 products with 2+ images, 2 labels" in markdown

    _, validation_rows = md_table(markdown, "## Validation")
    assert validation_rows == [
        ["tenant_a", "✅ PASS 7", "✅ PASS 2", "✅ PASS 0", "✅ PASS 0", "✅ PASS 0", "✅ PASS 0"]
    ]

    queries = md_section(markdown, "Validation Queries")
    for check in report["tenants"][0]["validation"]["checks"]:
        assert f"### Query {check['number']}: {check['name']}\n```sql\n{check['sql']}\n```\n" in queries
    assert '```sql\nSELECT COUNT(*) FROM "tenant_a"."product_images";\n```\n**Result:** tenant_a PASS 7\n' in queries
    assert 'SELECT COUNT(*) FROM "tenant_a"."product_images" WHERE is_label = true;' in queries

    spot = md_section(markdown, "Spot Check Sample")
    assert f"**Product ID: {first.id}** (4 images)" in spot
    block = spot.split("```\n")[1].splitlines()
    assert [cell.strip() for cell in block[0].split("|")] == ["order", "is_label", "url"]
    shown = [[cell.strip() for cell in line.split("|")] for line in block[2:]]
    expected = [
        [str(order), str(is_label).lower(), url + (" ← Label" if is_label else "")]
        for order, is_label, url, _ in image_rows(first.id)
    ]
    assert shown == expected
    assert shown[-1][2].endswith("4-3.jpeg ← Label")
    assert sum("← Label" in line for line in block) == 1

    assert md_table(markdown, "## Errors") == (
        ["Schema", "Product id", "Reason"],
        [["tenant_a", str(bad.id), BAD_JSON_REASON]],
    )
    assert "**Exit status:** 1 (PRODUCT_ERRORS)" in markdown


def test_json_report_figures_equal_the_run(catalogue, tenant, tmp_path):
    first, bad = catalogue

    code, report, out = run_command("--schema", tenant, tmp_path=tmp_path)

    assert code == ExitCode.PRODUCT_ERRORS, out
    assert report == json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["exit_code"] == code
    assert report["mode"] == "live"
    assert report["interruption"] is None
    assert datetime.fromisoformat(report["started_at"]).tzinfo is not None
    [tenant_report] = report["tenants"]
    assert tenant_report["schema"] == tenant and tenant_report["busy"] is False
    run = tenant_report["run"]
    assert run["products"] == 4
    assert run["images_migrated"] == sql_value("SELECT count(*) FROM {images}") == 7
    assert run["labels_detected"] == sql_value("SELECT count(*) FROM {images} WHERE is_label") == 2
    assert (run["already_migrated"], run["repaired"], run["soft_deleted"]) == (0, 0, 0)
    assert run["errors"] == [{"tenant": tenant, "product_id": bad.id, "reason": BAD_JSON_REASON}]
    assert report["total"] == run

    validation = tenant_report["validation"]
    assert validation["passed"] is True
    assert [(c["number"], c["figure"], c["expected"], c["passed"]) for c in validation["checks"]] == [
        (1, 7, 7, True),
        (2, 2, 2, True),
        (3, 0, 0, True),
        (4, 0, 0, True),
        (5, 0, 0, True),
        (6, 0, 0, True),
    ]
    assert validation["distribution"] == [[1, 1], [2, 1], [4, 1]]
    assert validation["spot_check"]["product_id"] == first.id
    assert [[r["order"], r["is_label"], r["url"]] for r in validation["spot_check"]["rows"]] == [
        [order, is_label, url] for order, is_label, url, _ in image_rows(first.id)
    ]
    assert set(tenant_report["seconds"]) == {"migrate", "validate"}


def test_json_on_stdout_is_only_json_and_the_readable_report_goes_to_stderr(tenant):
    make_product(images=entries(3))
    out, err = StringIO(), StringIO()

    call_command("migrate_images", "--schema", tenant, "--json", "-", "--no-input", stdout=out, stderr=err)

    report = json.loads(out.getvalue())
    assert report["exit_code"] == ExitCode.OK
    assert report["tenants"][0]["run"]["images_migrated"] == 3
    assert "Product images migration" in err.getvalue()
    assert "PASS 3" in err.getvalue()
    assert "Product images migration" not in out.getvalue()
    assert "All checks PASS" not in out.getvalue()


def test_json_on_stdout_stays_parseable_when_the_run_fails(tenant):
    make_product(images=entries(2))
    bad = make_product(images={"url": "https://cdn.example/not-a-list.jpeg"})
    out, err = StringIO(), StringIO()

    with pytest.raises(CommandError) as failure:
        call_command("migrate_images", "--schema", tenant, "--json", "-", "--no-input", stdout=out, stderr=err)

    assert failure.value.returncode == ExitCode.PRODUCT_ERRORS
    report = json.loads(out.getvalue())
    assert report["exit_code"] == ExitCode.PRODUCT_ERRORS
    assert [e["product_id"] for e in report["tenants"][0]["run"]["errors"]] == [bad.id]
    assert "Errors: products not migrated" in err.getvalue()


@pytest.mark.parametrize(
    "number",
    [
        1,
        2,
        3,
        4,
        5,
        6,
    ],
)
def test_the_reported_queries_reproduce_their_figures(catalogue, tenant, tmp_path, number):
    code, report, out = run_command("--schema", tenant, tmp_path=tmp_path)
    assert code == ExitCode.PRODUCT_ERRORS, out
    check = report["tenants"][0]["validation"]["checks"][number - 1]
    assert check["number"] == number

    # As a reader would: paste the query from the report and run it, verbatim on purpose (not through
    # run_sql/sql_rows, which would read it as a template).
    assert verbatim_rows(check["sql"])[0][0] == check["figure"]


def test_a_url_that_looks_like_console_markup_does_not_break_the_run(tenant, tmp_path):
    product = make_product(images=[{"url": "https://cdn.example/front[/x].jpeg", "order": 1}, *entries(1, 2)])
    path = tmp_path / "migration-report.md"

    code, report, out = run_command("--schema", tenant, "--report", str(path), tmp_path=tmp_path)

    assert code == ExitCode.OK
    assert report["tenants"][0]["run"]["images_migrated"] == 2
    assert "https://cdn.example/front[/x].jpeg" in out
    assert "https://cdn.example/front[/x].jpeg" in path.read_text(encoding="utf-8")
    assert len(image_rows(product.id)) == 2


# Unit level: a report built by hand, no database.

STARTED = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


def checks(failures: dict[int, tuple[int, int]] | None = None) -> list[CheckResult]:
    """Six checks, PASS unless ``failures`` gives {number: (figure, expected)}."""
    failures = failures or {}
    names = ["Total", "Labels", "Duplicates", "JSON vs table", "Label on highest", "Several labels"]
    return [
        CheckResult(number, name, *failures.get(number, (0, 0)), sql=f"SELECT {number};")
        for number, name in enumerate(names, start=1)
    ]


INTERRUPTED_IN_C = Interruption(stopped_in=["tenant_c"], not_started=["tenant_d"])


def busy_report(**changes) -> MigrationReport:
    """tenant_a migrated with an error, a repair and a FAIL check; tenant_b busy; tenant_c clean."""
    tenant_a = TenantReport(
        "tenant_a",
        run=TenantRun(
            products=3290,
            images_migrated=19_607,
            labels_detected=3281,
            already_migrated=1,
            repaired=1,
            soft_deleted=2,
            repairs=[Repair(REPAIR_ORDER_DUPLICATE, 1, [7])],
            errors=[ProductError("tenant_a", 9, BAD_JSON_REASON)],
        ),
        validation=Validation(
            checks=checks({5: (1, 0)}),
            distribution=[(1, 1), (3, 2), (4, 1)],
            products_with_several_images=3,
            labels=3,
            spot_check=SpotCheck(
                3,
                [
                    SpotRow(0, False, "https://cdn.example/a.jpeg"),
                    SpotRow(1, False, "https://cdn.example/b.jpeg"),
                    SpotRow(2, True, "https://cdn.example/étiquette.jpeg"),
                ],
            ),
        ),
        seconds={"migrate": 1.25, "validate": 0.5},
    )
    tenant_b = TenantReport("tenant_b", busy=True)
    tenant_c = TenantReport(
        "tenant_c",
        run=TenantRun(
            products=2,
            images_migrated=5,
            labels_detected=2,
            repaired=2,
            repairs=[Repair(REPAIR_ORDER_DUPLICATE, 1, [21]), Repair(REPAIR_CREATED_AT, 1, [22])],
        ),
        validation=Validation(
            checks=checks(),
            distribution=[(2, 1), (3, 1)],
            products_with_several_images=2,
            labels=2,
            spot_check=SpotCheck(21, [SpotRow(0, False, "https://cdn.example/c.jpeg")]),
        ),
        seconds={"migrate": 0.25, "validate": 0.5},
    )
    fields = {"mode": "live", "started_at": STARTED, "tenants": [tenant_a, tenant_b, tenant_c]} | changes
    return MigrationReport(**fields)


def test_total_adds_up_the_tenants_and_leaves_them_as_they_were():
    report = busy_report()
    tenant_a_run = dataclasses.replace(report.tenants[0].run, repairs=list(report.tenants[0].run.repairs))
    before = dataclasses.asdict(report)

    total = report.total

    assert (total.products, total.images_migrated, total.labels_detected) == (3292, 19_612, 3283)
    assert (total.already_migrated, total.repaired, total.soft_deleted) == (1, 3, 2)
    assert total.errors == [ProductError("tenant_a", 9, BAD_JSON_REASON)]
    assert total.repairs == [Repair(REPAIR_ORDER_DUPLICATE, 2, [7, 21]), Repair(REPAIR_CREATED_AT, 1, [22])]
    assert report.errors == total.errors
    assert report.busy_tenants == ["tenant_b"]
    assert report.failed_checks == [("tenant_a", report.tenants[0].validation.checks[4])]
    assert report.seconds == {"migrate": 1.5, "validate": 1.0}
    # Computing the total twice gives the same figures and changes no tenant.
    assert dataclasses.asdict(report.total) == dataclasses.asdict(total)
    assert dataclasses.asdict(report) == before
    assert report.tenants[0].run == tenant_a_run


def test_repair_samples_are_capped_when_tenants_add_up():
    tenants = [
        TenantReport(f"t{n}", run=TenantRun(repaired=8, repairs=[Repair(REPAIR_CREATED_AT, 8, list(range(n, n + 8)))]))
        for n in (0, 100)
    ]
    total = MigrationReport("live", STARTED, tenants).total
    assert total.repairs[0].products == 16
    assert total.repairs[0].sample_ids == [*range(8), 100, 101][:SAMPLE_SIZE]
    assert len(total.repairs[0].sample_ids) == SAMPLE_SIZE


def without_failed_check(report: MigrationReport) -> MigrationReport:
    report.tenants[0].validation.checks = checks()
    return report


def without_errors(report: MigrationReport) -> MigrationReport:
    report.tenants[0].run.errors = []
    return report


def without_busy(report: MigrationReport) -> MigrationReport:
    del report.tenants[1]
    return report


@pytest.mark.parametrize(
    ("remove", "interruption", "expected"),
    [
        ([], INTERRUPTED_IN_C, ExitCode.INTERRUPTED),
        ([], None, ExitCode.CHECK_FAILED),
        ([without_failed_check], None, ExitCode.PRODUCT_ERRORS),
        ([without_failed_check, without_errors], None, ExitCode.TENANT_BUSY),
        ([without_failed_check, without_errors, without_busy], None, ExitCode.OK),
        ([without_failed_check, without_errors, without_busy], INTERRUPTED_IN_C, ExitCode.INTERRUPTED),
    ],
)
def test_exit_code(remove, interruption, expected):
    report = busy_report(interruption=interruption)
    for change in remove:
        report = change(report)
    assert report.exit_code == expected
    assert report_as_dict(report)["exit_code"] == int(expected)
    assert f"**Exit status:** {int(expected)} ({expected.name})" in render_markdown(report)


def test_exit_code_precedence_is_the_order_exit_codes_are_listed_in():
    """ExitCode says: when several apply, the first listed wins (--help repeats it)."""

    def terminate(report):
        report.interruption = dataclasses.replace(report.interruption or INTERRUPTED_IN_C, signal="SIGTERM")

    blocked = Blocked("products (1, 2]", 2, 200, "canceling statement due to lock timeout")
    conditions = {
        ExitCode.DATABASE_FAILURE: lambda r: setattr(r, "failure", "t: server closed the connection"),
        ExitCode.TERMINATED: terminate,
        ExitCode.INTERRUPTED: lambda r: setattr(r, "interruption", r.interruption or INTERRUPTED_IN_C),
        ExitCode.USAGE: lambda r: r.tenants.append(TenantReport("refused", refused=["products.images is missing"])),
        ExitCode.BLOCKED: lambda r: r.tenants.append(TenantReport("blocked", run=TenantRun(), blocked=blocked)),
        ExitCode.CHECK_FAILED: lambda r: setattr(r.tenants[0].validation, "checks", checks({1: (1, 2)})),
        ExitCode.PRODUCT_ERRORS: lambda r: r.tenants[0].run.errors.append(ProductError("t", 1, "bad")),
        ExitCode.TENANT_BUSY: lambda r: r.tenants.append(TenantReport("busy", busy=True)),
    }
    listed = list(ExitCode)
    # 70 comes from the command, for an exception no report holds (tests/test_command.py).
    assert set(conditions) == set(ExitCode) - {ExitCode.OK, ExitCode.INTERNAL_ERROR}
    for first, make_first in conditions.items():
        for second, make_second in conditions.items():
            report = MigrationReport(
                "live",
                STARTED,
                [TenantReport("t", run=TenantRun(), validation=Validation(checks(), [], 0, 0, None))],
            )
            make_first(report)
            make_second(report)
            winner = min(first, second, key=listed.index)
            assert report.exit_code == winner, (first.name, second.name)


def test_markdown_rendering():
    markdown = render_markdown(busy_report())

    assert markdown.startswith("# Product Images Migration Report\n\n**Date:** 2026-01-15 09:30 UTC\n")
    assert "**Mode:** Product images migration\n" in markdown
    header, rows = md_table(markdown, "## Results")
    assert header == SUMMARY_COLUMNS
    assert rows == [
        ["tenant_a", "3290", "19,607", "3,281", "1", "1", "1", "2"],
        ["tenant_b", "busy: skipped", "", "", "", "", "", ""],
        ["tenant_c", "2", "5", "2", "0", "0", "2", "0"],
        ["**TOTAL**", "**3292**", "**19,612**", "**3,283**", "**1**", "**1**", "**3**", "**2**"],
    ]

    assert "- tenant_a: 3 products with 2+ images, 3 labels\n" in markdown
    assert (
        "- tenant_c: 2 products with 2+ images, 2 labels (2 of 2 products, 100%): every product has 2 or more "
        "images (minimum 2, maximum 3), so the rule marks the last image of every product as its label."
    ) in markdown
    assert md_table(markdown, "**Image Distribution (tenant_a):**")[1] == [["1", "1"], ["3", "2"], ["4", "1"]]
    assert md_table(markdown, "**Image Distribution (tenant_c):**")[1] == [["2", "1"], ["3", "1"]]

    header, rows = md_table(markdown, "## Validation")
    assert header[0] == "Schema" and header[5] == "5. Label on highest"
    assert rows == [
        ["tenant_a", "✅ PASS 0", "✅ PASS 0", "✅ PASS 0", "✅ PASS 0", "❌ FAIL 1 (expected 0)", "✅ PASS 0"],
        ["tenant_c"] + ["✅ PASS 0"] * 6,
    ]
    queries = md_section(markdown, "Validation Queries")
    assert "### Query 5: Label on highest\n```sql\nSELECT 5;\n```\n" in queries
    assert "**Result:** tenant_a FAIL 1 (expected 0), tenant_c PASS 0\n" in queries

    spot = md_section(markdown, "Spot Check Sample")
    assert "**Product ID: 3** (3 images)" in spot
    assert "https://cdn.example/étiquette.jpeg ← Label" in spot
    assert spot.count("← Label") == 1
    assert "cdn.example/c.jpeg" not in spot  # the first tenant's product only

    assert md_table(markdown, "## Repairs")[1] == [
        [REPAIR_ORDER_DUPLICATE, "2", "7, 21"],
        [REPAIR_CREATED_AT, "1", "22"],
    ]
    assert md_table(markdown, "## Errors")[1] == [["tenant_a", "9", BAD_JSON_REASON]]
    assert "## Skipped\n\n- tenant_b: busy (another run held its lock)\n" in markdown
    assert "- **migrate:** 1.50 s\n- **validate:** 1.00 s\n- **total:** 2.50 s\n" in markdown
    assert markdown.endswith("**Exit status:** 3 (CHECK_FAILED)\n")


def test_an_interrupted_run_names_its_tenant_in_every_rendering():
    report = busy_report(interruption=INTERRUPTED_IN_C)

    markdown = render_markdown(report)
    interrupted = md_section(markdown, "Interrupted")
    assert "Interrupted while migrating tenant_c" in interrupted and "Re-run to finish." in interrupted
    assert "1 tenant(s) not started" in interrupted
    assert markdown.endswith("**Exit status:** 130 (INTERRUPTED)\n")
    assert "Interrupted while migrating tenant_c" in " ".join(render_terminal(report).split())
    assert json.loads(render_json(report))["interruption"] == {
        "stopped_in": ["tenant_c"],
        "not_started": ["tenant_d"],
        "signal": "SIGINT",
        "cancelled_by": "",
    }
    assert "Interrupted" not in render_markdown(busy_report()) + render_terminal(busy_report())


def check_run_report() -> MigrationReport:
    """The hand-built report as ``--check`` makes it: validations only."""
    report = busy_report(mode="check")
    for tenant in report.tenants:
        tenant.run = None
        tenant.busy = False
    return report


def test_markdown_of_a_check_run_has_no_results_table():
    markdown = render_markdown(check_run_report())

    assert "**Mode:** Product images validation (--check, nothing written)" in markdown
    assert "## Results" not in markdown
    assert "## Errors" not in markdown and "## Repairs" not in markdown and "## Skipped" not in markdown
    assert "❌ FAIL 1 (expected 0)" in markdown
    assert markdown.endswith("**Exit status:** 3 (CHECK_FAILED)\n")


def test_json_rendering():
    report = busy_report()

    data = json.loads(render_json(report))

    assert data == json.loads(json.dumps(report_as_dict(report)))
    assert "étiquette" in render_json(report)  # kept as written, not \u-escaped
    assert data["mode"] == "live"
    assert data["started_at"] == "2026-01-15T09:30:00+00:00"
    assert data["exit_code"] == 3
    assert data["interruption"] is None
    assert data["seconds"] == {"migrate": 1.5, "validate": 1.0}
    assert data["total"] == dataclasses.asdict(report.total)
    assert data["total"]["images_migrated"] == 19_612
    a, b, c = data["tenants"]
    assert a["run"]["errors"] == [{"tenant": "tenant_a", "product_id": 9, "reason": BAD_JSON_REASON}]
    assert a["validation"]["passed"] is False
    assert [check["passed"] for check in a["validation"]["checks"]] == [True, True, True, True, False, True]
    assert a["validation"]["checks"][4] | {"sql": None} == {
        "number": 5,
        "name": "Label on highest",
        "figure": 1,
        "expected": 0,
        "sql": None,
        "products_at_fault": 0,
        "product_ids": [],
        "note": "",
        "passed": False,
    }
    assert a["validation"]["spot_check"]["rows"][2] == {
        "order": 2,
        "is_label": True,
        "url": "https://cdn.example/étiquette.jpeg",
    }
    assert b == {
        "schema": "tenant_b",
        "status": "busy",
        "busy": True,
        "finalized": False,
        "run": None,
        "validation": None,
        "seconds": {},
        "lock_holder": None,
        "lock_note": "",
        "refused": [],
        "blocked": None,
        "interrupted": False,
        "interrupted_by": "",
        "failure": "",
        "resumed_after": None,
        "resume_note": "",
        "referencing_keys": [],
        "pace": {
            "batch_sizes": {
                "target_ms": 0,
                "batches": 0,
                "products": 0,
                "smallest": 0,
                "largest": 0,
                "seconds": 0.0,
                "halved": 0,
            },
            "waits": [],
        },
        "follower": "",
        "ledger_entry_opened": False,
    }
    assert c["validation"]["passed"] is True
    assert c["run"]["repairs"] == [
        {"reason": REPAIR_ORDER_DUPLICATE, "products": 1, "sample_ids": [21]},
        {"reason": REPAIR_CREATED_AT, "products": 1, "sample_ids": [22]},
    ]


def test_terminal_rendering():
    text = render_terminal(busy_report(), width=200)

    assert "\x1b[" not in text
    lines = text.splitlines()
    assert "Product images migration" in lines[0]

    def line_with(*words: str) -> str:
        [line] = [line for line in lines if all(word in line for word in words)]
        return line

    assert line_with("tenant_a", "3290").split() == ["tenant_a", "3290", "19,607", "3,281", "1", "1", "1", "2"]
    assert line_with("tenant_b", "busy: skipped")
    assert line_with("TOTAL").split() == ["TOTAL", "3292", "19,612", "3,283", "1", "1", "3", "2"]
    assert "Image distribution: tenant_a" in text and "Image distribution: tenant_c" in text
    assert "tenant_c: 2 products with 2+ images, 2 labels (2 of 2 products, 100%): every product" in text
    validation_a = line_with("tenant_a", "PASS")
    assert "FAIL 1 (expected 0)" in validation_a and validation_a.count("PASS 0") == 5
    assert line_with("tenant_c", "PASS").count("PASS 0") == 6
    assert "5: Label on highest" in text
    assert "Spot check: product 3" in text
    assert line_with("étiquette.jpeg").split() == ["2", "true", "https://cdn.example/étiquette.jpeg", "<-", "label"]
    assert "<- label" not in line_with("cdn.example/a.jpeg")
    assert "Repaired products" in text
    assert line_with("duplicate orders").split()[-3:] == ["2", "7,", "21"]
    assert "Errors: products not migrated" in text
    assert line_with(BAD_JSON_REASON).split()[:2] == ["tenant_a", "9"]
    assert "tenant_b: busy, another migrate_images run holds its lock; skipped." in text
    assert lines[-1] == "Time: migrate 1.50 s, validate 1.00 s, total 2.50 s"


def test_terminal_colours_only_when_asked():
    assert "\x1b[" in render_terminal(busy_report(), color=True)


def test_terminal_of_a_check_run_has_no_results_table():
    text = render_terminal(check_run_report())

    assert "Product images validation (--check, nothing written)" in text.splitlines()[0]
    assert "Results" not in text and "TOTAL" not in text
    assert "FAIL 1 (expected 0)" in text


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://cdn.example/photo[front].jpeg", BAD_JSON_REASON),
        ("https://cdn.example/photo[/x].jpeg", BAD_JSON_REASON),
        ("https://cdn.example/a.jpeg", "database refused its rows: planted failure for https://x/[/b].jpeg"),
    ],
    ids=["url-style-tag-dropped", "url-closing-tag-crashes", "error-reason-crashes"],
)
def test_terminal_shows_urls_and_reasons_verbatim(url, reason):
    report = busy_report()
    report.tenants[0].validation.spot_check.rows[0].url = url
    report.tenants[0].run.errors[0].reason = reason

    text = render_terminal(report, width=200)

    assert url in text
    assert reason in text


def test_label_analysis_does_not_claim_every_product_has_two_images_when_one_has_one():
    report = busy_report()
    # A 1-image product and a 2-image product carrying two labels: 2 labels for 2 products.
    report.tenants[2].validation = Validation(checks({6: (1, 0)}), [(1, 1), (2, 1)], 1, 2, None)

    text = render_markdown(report)

    assert "tenant_c: 1 products with 2+ images, 2 labels" in text
    assert "every product has 2 or more images" not in text


@pytest.mark.parametrize(
    ("mode", "opening"),
    [
        ("live", "Migrated 5 images (1 labels)"),
        ("dry-run", "Would migrate 5 images (1 labels)"),
        ("check", "Validated product_images in 1 schema(s)"),
    ],
)
def test_summary_sentence_opens_every_rendering(mode, opening):
    run = TenantRun(products=2, images_migrated=5, labels_detected=1) if mode != "check" else None
    validation = Validation(checks(), [(2, 1), (3, 1)], 2, 1, None)
    tenant = TenantReport("user_1", run=run, validation=validation)
    report = MigrationReport(mode, datetime(2026, 1, 15, tzinfo=UTC), [tenant])

    validation = Validation(checks(), [(2, 1)], 1, 1, None)
    report = MigrationReport(
        mode, datetime(2026, 1, 15, tzinfo=UTC), [TenantReport("user_1", run=run, validation=validation)]
    )

    assert render_markdown(report).split("## Summary\n\n")[1].startswith(opening)
    assert render_terminal(report).splitlines()[1].startswith(opening)
    assert "every check PASS" in render_markdown(report)


def test_the_spot_check_shows_at_most_20_rows_the_label_among_them(tenant, tmp_path):
    make_product(images=entries(50))
    path = tmp_path / "migration-report.md"

    code, report, out = run_command("--schema", tenant, "--report", str(path), tmp_path=tmp_path)

    assert code == ExitCode.OK, out
    spot = report["tenants"][0]["validation"]["spot_check"]
    assert (spot["total_rows"], len(spot["rows"])) == (50, 20)
    assert [row["order"] for row in spot["rows"]] == [*range(1, 11), *range(41, 51)]
    assert [row["is_label"] for row in spot["rows"]] == [False] * 19 + [True]
    assert "(50 images, the first 10 and the last 10 shown)" in " ".join(out.split())
    assert "(50 images, the first 10 and the last 10 shown)" in path.read_text()
    assert path.read_text().count("← Label") == 1


def test_blocked_refused_failed_and_resumed_tenants_in_every_rendering():
    blocker = Blocker(
        4242,
        "idle in transaction",
        "SELECT 1 FROM tenant_a.products WHERE id = 50 FOR UPDATE",
        "2026-01-15 09:29:00 UTC",
        "psql",
        "transactionid (ShareLock)",
    )
    blocked = Blocked("products (2, 5]", 2, 200, "canceling statement due to lock timeout", [blocker])
    report = MigrationReport(
        "live",
        STARTED,
        [
            TenantReport("tenant_a", run=TenantRun(products=3, images_migrated=6), blocked=blocked),
            TenantReport("tenant_b", refused=["products.images is text, not jsonb"]),
            TenantReport(
                "tenant_c",
                run=TenantRun(products=1, images_migrated=2),
                failure="server closed the connection",
                resumed_after=9,
                resume_note="resumes after product id 9, where the last run x stopped",
            ),
        ],
        failure="tenant_c: server closed the connection",
    )

    markdown = render_markdown(report)
    terminal = " ".join(render_terminal(report, width=200).split())

    for text in (" ".join(markdown.split()), terminal):
        assert "tenant_a: blocked on products (2, 5]: 2 attempt(s), each waiting 200 ms for a lock" in text
        assert "4242" in text and "SELECT 1 FROM tenant_a.products WHERE id = 50 FOR UPDATE" in text
        assert "products.images is text, not jsonb" in text
        assert "Stopped by a database failure in tenant_c: server closed the connection" in text
        assert "tenant_c: resumes after product id 9" in text
    assert [row[:3] for row in md_table(markdown, "## Results")[1][:3]] == [
        ["tenant_a (blocked)", "3", "6"],
        ["tenant_b", "refused: not touched", ""],
        ["tenant_c (failed)", "1", "2"],
    ]
    assert markdown.endswith("**Exit status:** 5 (DATABASE_FAILURE)\n")
    data = json.loads(render_json(report))
    assert [tenant["status"] for tenant in data["tenants"]] == ["blocked", "refused", "failed"]
    assert data["tenants"][0]["blocked"]["blockers"][0]["pid"] == 4242


@pytest.mark.parametrize("entry_opened", [False, True], ids=["before-the-ledger-entry", "after"])
def test_tenants_stopped_before_their_walk_are_listed_and_the_ledger_is_named_only_where_it_has_an_entry(entry_opened):
    blocked = Blocked("the preflight", 2, 200, "canceling statement due to lock timeout", [])
    failed = TenantReport(
        "tenant_b",
        run=TenantRun() if entry_opened else None,
        failure="canceling statement due to statement timeout",
        ledger_entry_opened=entry_opened,
    )
    report = MigrationReport(
        "live",
        STARTED,
        [TenantReport("tenant_a", blocked=blocked), failed],
        failure="tenant_b: canceling statement due to statement timeout",
    )

    markdown = render_markdown(report)
    for text in (" ".join(markdown.split()), " ".join(render_terminal(report, width=200).split())):
        assert "tenant_a: blocked on the preflight: 2 attempt(s)" in text
        assert "Nothing was written, the tenant is not validated" in text
        assert "Committed batches are kept" not in text
        assert ("The ledger says where a re-run resumes." in text) is entry_opened
        assert "0 of 2 tenant(s) checked, no check ran" in text and "every check PASS" not in text
    assert [row[:2] for row in md_table(markdown, "## Results")[1][:2]] == [
        ["tenant_a", "blocked: not started"],
        ["tenant_b (failed)", "0"] if entry_opened else ["tenant_b", "failed: not started"],
    ]
    assert "across 1 schema(s)" in markdown if entry_opened else "across 0 schema(s)" in markdown


def test_past_ten_tenants_the_label_analysis_adds_them_up_and_each_tenant_stays_in_the_json():
    def tenant(number: int) -> TenantReport:
        validation = Validation(checks(), [(1, 1), (2 + number % 2, 3)], 3, 3, None)
        return TenantReport(f"user_{number}", run=TenantRun(products=4), validation=validation)

    report = MigrationReport("live", datetime(2026, 1, 15, tzinfo=UTC), [tenant(number) for number in range(11)])

    markdown, text = render_markdown(report), render_terminal(report, width=200)

    # 11 tenants: 11 one-image products, 18 with two images (6 tenants), 15 with three (5 tenants).
    assert md_table(markdown, "**Image Distribution (all 11 tenants):**")[1] == [["1", "11"], ["2", "18"], ["3", "15"]]
    assert "all 11 tenants: 33 products with 2+ images, 33 labels" in markdown
    assert "Image distribution: user_" not in text and "Image Distribution (user_" not in markdown
    tenants = json.loads(render_json(report))["tenants"]
    assert [tenant["validation"]["distribution"] for tenant in tenants][:2] == [[[1, 1], [2, 3]], [[1, 1], [3, 3]]]
    # Ten tenants keep a table each.
    report.tenants = report.tenants[:10]
    assert "Image Distribution (user_9):" in render_markdown(report)


def test_past_ten_tenants_the_terminal_lists_the_tenants_that_need_a_look_and_the_file_lists_all():
    def tenant(number: int) -> TenantReport:
        failing = {4: (1, 0)} if number == 3 else None
        errors = [ProductError(f"user_{number}", 5, BAD_JSON_REASON)] if number == 7 else []
        validation = Validation(checks(failing), [(2, 1)], 1, 1, None)
        return TenantReport(f"user_{number}", run=TenantRun(products=1, errors=errors), validation=validation)

    report = MigrationReport("live", datetime(2026, 1, 15, tzinfo=UTC), [tenant(number) for number in range(12)])

    text, markdown = render_terminal(report, width=200), render_markdown(report)

    listed = {line.split()[0] for line in text.splitlines() if line.strip().startswith("user_")}
    assert listed == {"user_3", "user_7"}  # a failing check; a product in error
    assert "11 other tenant(s) not listed here: migrated whole" in text
    assert "11 other tenant(s): every check PASS (each in the JSON" in text
    assert len(md_table(markdown, "## Results")[1]) == 13  # every tenant and TOTAL
    assert len(md_table(markdown, "## Validation")[1]) == 12
    assert "other tenant(s)" not in markdown


# The summary sentence states which tenants were checked: PASS is never claimed for checks that did not run.


def checked_tenant(schema: str, failures: dict[int, tuple[int, int]] | None = None) -> TenantReport:
    """A tenant migrated whole (2 products, 5 images) and validated."""
    validation = Validation(checks(failures), [(2, 1), (3, 1)], 2, 2, None)
    return TenantReport(schema, run=TenantRun(products=2, images_migrated=5, labels_detected=2), validation=validation)


BLOCKED_ON_A_BATCH = Blocked("products (2, 5]", 2, 200, "canceling statement due to lock timeout")
UNCHECKED = {
    "busy": TenantReport("user_9", busy=True),
    "refused": TenantReport("user_9", refused=["products.images is text, not jsonb"]),
    "failed": TenantReport("user_9", run=TenantRun(products=1, images_migrated=1), failure="server closed"),
    "interrupted": TenantReport("user_9", run=TenantRun(products=1, images_migrated=1), interrupted=True),
    "blocked": TenantReport("user_9", run=TenantRun(products=1, images_migrated=1), blocked=BLOCKED_ON_A_BATCH),
}


def summary_of(report: MigrationReport) -> tuple[str, str]:
    """The summary sentence as the terminal (wide enough not to wrap it) and the Markdown file show it."""
    markdown = render_markdown(report).split("## Summary\n\n")[1].split("\n")[0]
    return render_terminal(report, width=1000).splitlines()[1], markdown


def test_the_summary_names_the_tenants_not_checked_and_counts_only_the_migrated_schemas():
    blocked = TenantReport("user_4", run=TenantRun(products=1, images_migrated=3), blocked=BLOCKED_ON_A_BATCH)
    refused = TenantReport("user_5", refused=["products.images is missing"])
    tenants = [checked_tenant("user_1"), checked_tenant("user_2"), checked_tenant("user_3"), blocked, refused]
    report = MigrationReport("live", STARTED, tenants)

    expected = (
        "Migrated 18 images (6 labels) from the JSONB column products.images to the product_images table across "
        "4 schema(s); 0 products already migrated, 0 errors; 3 of 5 tenant(s) checked, every check passed; "
        "not checked: user_4 (blocked), user_5 (refused)."
    )
    assert summary_of(report) == (expected, expected)
    # The JSON keeps its data: each tenant as it was, the unchecked ones without a validation.
    data = json.loads(render_json(report))
    assert [(t["schema"], t["status"], t["validation"] is None) for t in data["tenants"]] == [
        ("user_1", "done", False),
        ("user_2", "done", False),
        ("user_3", "done", False),
        ("user_4", "blocked", True),
        ("user_5", "refused", True),
    ]
    assert data["exit_code"] == ExitCode.USAGE


@pytest.mark.parametrize("status", list(UNCHECKED))
def test_a_tenant_whose_checks_did_not_run_is_named_with_why_in_the_summary(status):
    report = MigrationReport("live", STARTED, [checked_tenant("user_1"), UNCHECKED[status]])
    assert report.tenants[1].status == status

    for sentence in summary_of(report):
        assert sentence.endswith(f"; 1 of 2 tenant(s) checked, every check passed; not checked: user_9 ({status}).")
        assert "PASS" not in sentence
        migrated = 1 if status in ("busy", "refused") else 2
        assert f" across {migrated} schema(s);" in sentence


def test_an_interrupted_run_names_the_tenants_it_did_not_start():
    report = MigrationReport(
        "live",
        STARTED,
        [checked_tenant("user_1"), UNCHECKED["interrupted"]],
        interruption=Interruption(stopped_in=["user_9"], not_started=["user_10", "user_11"]),
    )

    for sentence in summary_of(report):
        assert sentence.endswith(
            "; 1 of 4 tenant(s) checked, every check passed; "
            "not checked: user_9 (interrupted), user_10 (not started), user_11 (not started)."
        )


def test_a_failing_check_is_counted_beside_the_tenants_not_checked():
    report = MigrationReport("live", STARTED, [checked_tenant("user_1", {4: (1, 0)}), UNCHECKED["busy"]])

    for sentence in summary_of(report):
        assert sentence.endswith("; 1 of 2 tenant(s) checked, 1 check(s) FAIL; not checked: user_9 (busy).")


@pytest.mark.parametrize("mode", ["live", "dry-run", "check"])
def test_when_no_tenant_was_checked_the_summary_claims_no_pass(mode):
    blocked = UNCHECKED["blocked"] if mode != "check" else TenantReport("user_9", blocked=BLOCKED_ON_A_BATCH)
    report = MigrationReport(mode, STARTED, [blocked, TenantReport("user_10", busy=True)])

    for sentence in summary_of(report):
        assert "PASS" not in sentence and "passed" not in sentence
        assert sentence.endswith(
            ": 0 of 2 tenant(s) checked, no check ran; not checked: user_9 (blocked), user_10 (busy)."
            if mode == "check"
            else "; 0 of 2 tenant(s) checked, no check ran; not checked: user_9 (blocked), user_10 (busy)."
        )
    if mode == "check":
        assert summary_of(report)[0].startswith("Validated product_images in 0 schema(s): ")
    else:
        assert " across 1 schema(s);" in summary_of(report)[0]

    empty = MigrationReport(mode, STARTED, [])
    for sentence in summary_of(empty):
        assert sentence.endswith("no tenant to check.") and "PASS" not in sentence


def test_a_run_with_every_tenant_checked_keeps_its_summary():
    report = MigrationReport("live", STARTED, [checked_tenant("user_1"), checked_tenant("user_2")])

    expected = (
        "Migrated 10 images (4 labels) from the JSONB column products.images to the product_images table across "
        "2 schema(s); 0 products already migrated, 0 errors; every check PASS."
    )
    assert summary_of(report) == (expected, expected)


def test_past_ten_tenants_not_checked_the_summary_names_ten_and_counts_the_others():
    busy = [TenantReport(f"user_{number}", busy=True) for number in range(1, 13)]
    report = MigrationReport("live", STARTED, [checked_tenant("user_0"), *busy])

    for sentence in summary_of(report):
        named = ", ".join(f"user_{number} (busy)" for number in range(1, 11))
        assert sentence.endswith(
            f"; 1 of 13 tenant(s) checked, every check passed; not checked: {named} and 2 more (each in the JSON "
            "report)."
        )


# --force and --sync: the products whose rows all went because their JSON is now empty or null.


def test_the_emptied_products_are_named_with_their_ids_in_every_rendering():
    emptied_a = TenantRun(products=12, emptied=Repair(EMPTIED, 12, list(range(101, 111))))
    emptied_c = TenantRun(products=1, emptied=Repair(EMPTIED, 1, [7]))
    report = MigrationReport(
        "live",
        STARTED,
        [
            TenantReport("tenant_a", run=emptied_a, validation=Validation(checks(), [], 0, 0, None)),
            TenantReport("tenant_b", run=TenantRun(products=3), validation=Validation(checks(), [], 0, 0, None)),
            TenantReport("tenant_c", run=emptied_c, validation=Validation(checks(), [], 0, 0, None)),
        ],
    )
    sentence = "13 product(s) whose JSON is now empty or null had every row removed from product_images:"

    markdown = render_markdown(report)
    assert f"## Emptied\n\n{sentence}\n" in markdown
    assert md_table(markdown, "## Emptied") == (
        ["Schema", "Products", "Product ids"],
        [["tenant_a", "12", "101, 102, 103, 104, 105, 106, 107, 108, 109, 110 (+2 more)"], ["tenant_c", "1", "7"]],
    )
    terminal = render_terminal(report, width=200)
    assert sentence in terminal and "Emptied products" in terminal
    lines = terminal.splitlines()
    assert [line.split()[:3] for line in lines if line.strip().startswith("tenant_c") and "7" in line.split()] == [
        ["tenant_c", "1", "7"]
    ]
    assert any("101, 102" in line and "(+2 more)" in line for line in lines)
    data = json.loads(render_json(report))
    assert data["tenants"][0]["run"]["emptied"] == {"reason": EMPTIED, "products": 12, "sample_ids": [*range(101, 111)]}
    assert data["tenants"][1]["run"]["emptied"]["products"] == 0
    assert data["total"]["emptied"] == {"reason": EMPTIED, "products": 13, "sample_ids": [7, *range(101, 110)]}

    report.mode = "dry-run"
    assert "13 product(s) whose JSON is now empty or null would have every row removed" in render_markdown(report)
    # A run that emptied nothing has no such section.
    assert "Emptied" not in render_markdown(busy_report()) + render_terminal(busy_report())
