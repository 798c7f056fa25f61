"""The report's sections, described once for the terminal and the Markdown file.

``report_sections`` walks the report and describes each section as neutral blocks (``blocks.py``); the
terminal and Markdown formatters only lay those blocks out. Where the outputs differ on purpose, a block says
which one shows it (``only``): the file, a record kept after the run, adds the data-safety note and every
check's SQL; the terminal, read at a glance, keeps to shorter lines.
"""

from __future__ import annotations

from products.migration.rendering.blocks import (
    ERROR,
    MARKDOWN,
    TERMINAL,
    WARNING,
    Bullets,
    Code,
    Figures,
    Group,
    Heading,
    Outcome,
    Paragraph,
    Section,
    Table,
)
from products.migration.report import (
    CheckResult,
    Interruption,
    MigrationReport,
    Pace,
    TenantReport,
    TenantRun,
    Validation,
)
from stoflow.tenants.runner import CANCEL

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

NOT_RUN = "n/a"  # the cell of a check a tenant does not run
MANY_TENANTS = 10  # more tenants than this: the label analysis adds them up, the terminal lists fewer
EACH_IN_THE_FILES = "(each in the JSON and Markdown reports)"

DATA_SAFETY = (
    "The JSON column products.images is only read, never modified. Re-running skips migrated products; "
    "`--force` rebuilds their rows from the JSON."
)


def interruption_note(interruption: Interruption) -> str:
    stopped = ", ".join(interruption.stopped_in) or "no tenant (between tenants)"
    if interruption.signal == CANCEL:
        what = f"Cancelled by {interruption.cancelled_by or 'someone'}"
    else:
        what = "Interrupted" + (" by SIGTERM" if interruption.signal == "SIGTERM" else "")
    return (
        f"{what} while migrating {stopped}: committed batches are kept; "
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


# Tenants whose figures stop short of the whole tenant: the Schema cell says why.
PARTIAL_STATUSES = ("blocked", "interrupted", "failed")


def summary_rows(report: MigrationReport, tenants: list[TenantReport] | None = None) -> list[list[str]]:
    """One row per tenant (``tenants``: these only), then TOTAL; a busy, refused or finalized tenant's figures
    say so, a partial run's are marked."""
    rows = []
    for tenant in report.tenants if tenants is None else tenants:
        if tenant.busy or tenant.refused:
            what = "busy: skipped" if tenant.busy else "refused: not touched"
            rows.append([tenant.schema] + [what] + [""] * (len(SUMMARY_COLUMNS) - 2))
        elif tenant.finalized:
            # Under Products and Images Migrated: "finalized", "nothing to migrate".
            rows.append([tenant.schema, "finalized", "nothing to migrate"] + [""] * (len(SUMMARY_COLUMNS) - 3))
        elif tenant.run:
            schema = tenant.schema + (f" ({tenant.status})" if tenant.status in PARTIAL_STATUSES else "")
            rows.append([schema] + _run_cells(tenant.run))
        else:
            # Blocked, failed or interrupted before its walk began (the preflight, the ledger): nothing written.
            rows.append([tenant.schema, f"{tenant.status}: not started"] + [""] * (len(SUMMARY_COLUMNS) - 2))
    rows.append(["TOTAL"] + _run_cells(report.total))
    return rows


def summary_sentence(report: MigrationReport) -> str:
    """The outcome in one sentence, as the seed report opens: what was migrated (or validated), and the checks'
    verdict over the tenants they ran in."""
    verdict = checks_verdict(report)
    finalized = len(report.finalized_tenants)
    if report.mode == "check":
        validated = sum(1 for tenant in report.tenants if tenant.validation)
        finalized_note = f" ({finalized} finalized: checks on the table only)" if finalized else ""
        return f"Validated product_images in {validated} schema(s){finalized_note}: {verdict}."
    total = report.total
    verb = "Would migrate" if report.mode == "dry-run" else "Migrated"
    # The tenants whose figures make up the total: walked, if only part-way; a finalized one had nothing to walk.
    migrated = sum(1 for tenant in report.tenants if tenant.run)
    finalized_note = f" (plus {finalized} finalized, nothing to migrate)" if finalized else ""
    return (
        f"{verb} {total.images_migrated:,} images ({total.labels_detected:,} labels) from the JSONB column "
        f"products.images to the product_images table across {migrated} schema(s){finalized_note}; "
        f"{total.already_migrated:,} products already migrated, {len(total.errors):,} errors; {verdict}."
    )


# Why a tenant has no validation, for the statuses that say so; any other tenant without one is "not validated".
UNCHECKED_STATUSES = ("busy", "refused", *PARTIAL_STATUSES)


def unchecked_tenants(report: MigrationReport) -> list[str]:
    """Each tenant of the run whose checks did not run, as "schema (why)": skipped, refused, stopped part-way,
    and, after an interruption, those stopped before they had a report and those never started."""
    unchecked = [
        f"{tenant.schema} ({tenant.status if tenant.status in UNCHECKED_STATUSES else 'not validated'})"
        for tenant in report.tenants
        if not tenant.validation
    ]
    if report.interruption:
        reported = {tenant.schema for tenant in report.tenants}
        unchecked += [f"{schema} (interrupted)" for schema in report.interruption.stopped_in if schema not in reported]
        unchecked += [f"{schema} (not started)" for schema in report.interruption.not_started]
    return unchecked


def checks_verdict(report: MigrationReport) -> str:
    """The checks' verdict: PASS or how many FAIL when every tenant was checked; otherwise how many tenants were
    checked out of how many, and which were not and why. PASS is never claimed for checks that did not run."""
    failed = len(report.failed_checks)
    unchecked = unchecked_tenants(report)
    checked = sum(1 for tenant in report.tenants if tenant.validation)
    if checked and not unchecked:
        return "every check PASS" if not failed else f"{failed} check(s) FAIL"
    tenants = checked + len(unchecked)
    if not tenants:
        return "no tenant to check"
    if not checked:
        outcome = "no check ran"
    else:
        outcome = "every check passed" if not failed else f"{failed} check(s) FAIL"
    named = ", ".join(unchecked[:MANY_TENANTS])
    if len(unchecked) > MANY_TENANTS:
        named += f" and {len(unchecked) - MANY_TENANTS:,} more (each in the JSON report)"
    return f"{checked} of {tenants} tenant(s) checked, {outcome}; not checked: {named}"


def check_cell(check: CheckResult) -> str:
    if check.passed:
        return f"PASS {check.figure:,}"
    return f"FAIL {check.figure:,} (expected {check.expected:,})"


def label_analysis(name: str, validation: Validation) -> str:
    """Products with 2+ images against labels, explained as the seed report does; ``name``: whose."""
    with_images = sum(products for _, products in validation.distribution)
    text = f"{name}: {validation.products_with_several_images:,} products with 2+ images, {validation.labels:,} labels"
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


def needs_attention(tenant: TenantReport) -> bool:
    """Not migrated whole and clean: skipped, refused, stopped part-way, or with products in error."""
    return bool(
        tenant.busy or tenant.refused or tenant.status in PARTIAL_STATUSES or (tenant.run and tenant.run.errors)
    )


def _listed_in_the_terminal(items: list, needs_a_look) -> tuple[list, int] | None:
    """Past MANY_TENANTS, the terminal (read at a glance) lists only the items that need a look, and says how
    many it leaves out: (those items, how many left out). None: it lists them all, as the file and the JSON
    always do."""
    if len(items) <= MANY_TENANTS:
        return None
    kept = [item for item in items if needs_a_look(item)]
    return kept, len(items) - len(kept)


def _results(report: MigrationReport) -> Section | None:
    if report.mode == "check":
        return None  # --check migrates nothing
    rows = summary_rows(report)
    listed = _listed_in_the_terminal(report.tenants, needs_attention)
    if listed is None:
        return Section("Results", [Table("Results", SUMMARY_COLUMNS, rows, total_row=True, headline=True)])
    kept, left = listed
    blocks = [
        Table("Results", SUMMARY_COLUMNS, rows, total_row=True, headline=True, only=MARKDOWN),
        Table("Results", SUMMARY_COLUMNS, summary_rows(report, kept), total_row=True, headline=True, only=TERMINAL),
    ]
    if left:
        line = f"{left:,} other tenant(s) not listed here: migrated whole, no product in error {EACH_IN_THE_FILES}."
        blocks.append(Paragraph(line, only=TERMINAL))
    return Section("Results", blocks)


def added_up(validations: list[Validation]) -> Validation:
    """The distribution, products with 2+ images and labels of several tenants together (no checks)."""
    distribution: dict[int, int] = {}
    for validation in validations:
        for images, products in validation.distribution:
            distribution[images] = distribution.get(images, 0) + products
    return Validation(
        checks=[],
        distribution=sorted(distribution.items()),
        products_with_several_images=sum(validation.products_with_several_images for validation in validations),
        labels=sum(validation.labels for validation in validations),
        spot_check=None,
    )


def _label_analysis(report: MigrationReport) -> Section | None:
    analysed = [(tenant.schema, validation) for tenant, validation in _validated(report) if validation.distribution]
    if len(analysed) > MANY_TENANTS:
        # One table for them all: a thousand tables is no analysis to read (and took 7 s to lay out). Each
        # tenant's distribution is in the JSON report.
        analysed = [(f"all {len(analysed):,} tenants", added_up([validation for _, validation in analysed]))]
    blocks = []
    for name, validation in analysed:
        finding = label_analysis(name, validation)
        distribution = Table(
            f"Image distribution: {name}",
            ["Image Count", "Product Count"],
            [[str(images), products] for images, products in validation.distribution],
            caption=f"Image Distribution ({name}):",
        )
        # The file states the finding, then shows its table; the terminal shows the table, then the finding.
        blocks += [Bullets([finding], only=MARKDOWN), distribution, Paragraph(finding, only=TERMINAL)]
    return Section("Label Detection Analysis", blocks) if blocks else None


def _checks_run(validated: list[tuple[TenantReport, Validation]]) -> list[CheckResult]:
    """One of each check some tenant ran, by number: the six, and a finalized tenant's check 7.

    Of a check several tenants ran, the first tenant's stands for it (its SQL is the one the file shows)."""
    checks = {check.number: check for _, validation in reversed(validated) for check in validation.checks}
    return [checks[number] for number in sorted(checks)]


def _check_outcome(validation: Validation, number: int) -> Outcome | str:
    check = validation.check(number)
    # A check the tenant does not run: one comparing with the JSON in a finalized tenant, or check 7 elsewhere.
    return Outcome(check_cell(check), check.passed) if check else NOT_RUN


def _validation(report: MigrationReport) -> Section | None:
    validated = _validated(report)
    if not validated:
        return None
    checks = _checks_run(validated)

    def table(rows: list[tuple[TenantReport, Validation]], only: str | None = None) -> Table:
        return Table(
            "Validation checks",
            ["Schema", *(str(check.number) for check in checks)],
            [
                [tenant.schema, *(_check_outcome(validation, check.number) for check in checks)]
                for tenant, validation in rows
            ],
            legend=[(str(check.number), check.name) for check in checks],
            headline=True,
            only=only,
        )

    failing = [(tenant, check) for tenant, validation in validated for check in validation.checks if not check.passed]
    listed = _listed_in_the_terminal(validated, lambda tenant_validation: not tenant_validation[1].passed)
    if listed is None:
        blocks = [table(validated)]
    else:
        # The terminal lists the tenants with a failing check; the file lists every tenant.
        kept, left = listed
        blocks = [table(validated, only=MARKDOWN)] + ([table(kept, only=TERMINAL)] if kept else [])
        if left:
            blocks.append(Paragraph(f"{left:,} other tenant(s): every check PASS {EACH_IN_THE_FILES}.", only=TERMINAL))
    if not failing:
        return Section("Validation", blocks)
    details = Table(
        "Failing checks",
        ["Schema", "Check", "Result", "First products at fault", "Also"],
        [
            [tenant.schema, f"{check.number}: {check.name}", check_cell(check), products_at_fault(check), check.note]
            for tenant, check in failing
        ],
        tone=ERROR,
        caption="Failing checks:",
    )
    return Section("Validation", [*blocks, details])


def _with_note(check: CheckResult) -> str:
    return check_cell(check) + (f" ({check.note})" if check.note else "")


def products_at_fault(check: CheckResult) -> str:
    """The first product ids, and how many more there are."""
    return first_ids(check.product_ids, check.products_at_fault)


def first_ids(ids: list[int], products: int) -> str:
    """``ids``, the first few of ``products`` products, and how many more there are."""
    more = max(products, len(ids)) - len(ids)
    return ", ".join(map(str, ids)) + (f" (+{more:,} more)" if more else "")


def _validation_queries(report: MigrationReport) -> Section | None:
    """Each check's SQL and its figure per tenant, in the file only: a reader can paste and re-run them."""
    validated = _validated(report)
    if not validated:
        return None
    blocks = []
    for check in _checks_run(validated):
        figures = ", ".join(
            f"{tenant.schema} {_with_note(validation.check(check.number))}"
            for tenant, validation in validated
            if validation.check(check.number)
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
    shown = len(spot.rows)
    part = f"the first {shown // 2} and the last {shown - shown // 2} shown" if spot.image_count > shown else ""
    table = Table(
        f"Spot check: product {spot.product_id}" + (f" ({spot.image_count:,} images, {part})" if part else ""),
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
    caption = Paragraph(
        f"({spot.image_count:,} images" + (f", {part})" if part else ")"), lead=f"Product ID: {spot.product_id}"
    )
    return Section("Spot Check Sample", [table, Group([caption, Code("\n".join(psql))], only=MARKDOWN)])


def _repairs(report: MigrationReport) -> Section | None:
    repairs = report.total.repairs
    if not repairs:
        return None
    rows = [[repair.reason, repair.products, ", ".join(map(str, repair.sample_ids))] for repair in repairs]
    return Section("Repairs", [Table("Repaired products", ["Repair", "Products", "Sample ids"], rows)])


def _resynced(report: MigrationReport) -> Section | None:
    """What --sync rebuilt and what --force or --sync copied aside before removing it."""
    total = report.total
    blocks = []
    if total.resynced.products:
        resynced = total.resynced
        rows = [[resynced.reason, resynced.products, ", ".join(map(str, resynced.sample_ids))]]
        blocks.append(Table("Resynced products", ["Why", "Products", "Sample ids"], rows))
    if total.rows_kept_aside:
        blocks.append(
            Paragraph(
                f"{total.rows_kept_aside:,} removed row(s) whose URL is no longer in the JSON were first copied to "
                "each tenant's product_images_removed table, named by this run.",
                tone=WARNING,
            )
        )
    keys = sorted({key for tenant in report.tenants for key in tenant.referencing_keys})
    if keys and (total.resynced.products or total.references_removed):
        blocks.append(
            Paragraph(
                f"Other tables point at product_images ({'; '.join(keys)}): {total.references_removed:,} of their "
                "rows pointed at the rows removed here. Rows whose URL stayed kept their ids.",
                tone=WARNING if total.references_removed else None,
            )
        )
    return Section("Resynced", blocks) if blocks else None


def _following(report: MigrationReport) -> Section | None:
    """--follow: which tenants now follow the legacy JSON's writes, and which do not, with why."""
    notes = [f"{tenant.schema}: follower {tenant.follower}" for tenant in report.tenants if tenant.follower]
    return Section("Follower", [Bullets(notes)]) if notes else None


def _emptied(report: MigrationReport) -> Section | None:
    """The products --force or --sync left without a row because their JSON is now empty or null, per tenant."""
    emptied = [
        (tenant.schema, tenant.run.emptied) for tenant in report.tenants if tenant.run and tenant.run.emptied.products
    ]
    if not emptied:
        return None
    products = sum(repair.products for _, repair in emptied)
    removed = "would have every row removed" if report.mode == "dry-run" else "had every row removed"
    sentence = f"{products:,} product(s) whose JSON is now empty or null {removed} from product_images:"
    rows = [[schema, repair.products, first_ids(repair.sample_ids, repair.products)] for schema, repair in emptied]
    table = Table("Emptied products", ["Schema", "Products", "Product ids"], rows, tone=WARNING)
    return Section("Emptied", [Paragraph(sentence, tone=WARNING), table])


def _errors(report: MigrationReport) -> Section | None:
    if not report.errors:
        return None
    rows = [[error.tenant, str(error.product_id), error.reason] for error in report.errors]
    table = Table("Errors: products not migrated", ["Schema", "Product id", "Reason"], rows, tone=ERROR)
    return Section("Errors", [table])


def _skipped(report: MigrationReport) -> Section | None:
    busy = [tenant for tenant in report.tenants if tenant.busy]
    if not busy:
        return None

    def note(tenant: TenantReport) -> str:
        return f" ({tenant.lock_note})" if tenant.lock_note else ""

    # The terminal speaks while the run is on; the file, read afterwards, in the past.
    return Section(
        "Skipped",
        [
            Bullets(
                [f"{t.schema}: busy, another migrate_images run holds its lock; skipped.{note(t)}" for t in busy],
                tone=WARNING,
                only=TERMINAL,
            ),
            Bullets([f"{t.schema}: busy (another run held its lock){note(t)}" for t in busy], only=MARKDOWN),
        ],
    )


def _refused(report: MigrationReport) -> Section | None:
    """Tenants the preflight refused: not touched, with every reason."""
    rows = [[tenant.schema, reason] for tenant in report.tenants for reason in tenant.refused]
    if not rows:
        return None
    table = Table("Refused by the preflight (not touched)", ["Schema", "Reason"], rows, tone=ERROR)
    return Section("Refused", [table])


def blocked_note(tenant: TenantReport) -> str:
    blocked = tenant.blocked
    # Before its walk began (the preflight, the ledger; --check), the tenant has no batch to keep.
    kept = "Committed batches are kept" if tenant.ledger_entry_opened else "Nothing was written"
    return (
        f"{tenant.schema}: blocked on {blocked.what}: {blocked.attempts} attempt(s), each waiting "
        f"{blocked.lock_timeout_ms:,} ms for a lock ({blocked.error}). {kept}, the tenant is "
        "not validated; re-run once the blocker is gone."
    )


def _blocked(report: MigrationReport) -> Section | None:
    """Tenants given up on because of another session's locks, with the sessions that held them."""
    blocked = [tenant for tenant in report.tenants if tenant.blocked]
    if not blocked:
        return None
    blocks = []
    for tenant in blocked:
        blocks.append(Paragraph(blocked_note(tenant), tone=WARNING))
        rows = [
            [str(b.pid), b.state, b.transaction_started, b.waited_for, b.application, b.query]
            for b in tenant.blocked.blockers
        ]
        if rows:
            header = ["Blocking pid", "State", "Transaction since", "Waited for", "Application", "Query"]
            blocks.append(Table(f"Blocking sessions: {tenant.schema}", header, rows, tone=WARNING))
        else:
            blocks.append(Paragraph("No blocking session was seen (the lock was released between looks)."))
    return Section("Blocked", blocks)


def _failure(report: MigrationReport) -> Section | None:
    if not report.failure:
        return None
    failed = next((tenant for tenant in report.tenants if tenant.failure), None)
    text = f"Stopped by a database failure in {report.failure}. "
    if report.mode == "check":
        text += "--check writes nothing; the checks above are those of the tenants validated before the failure."
    elif failed and failed.ledger_entry_opened:
        text += (
            "Whole batches already committed are kept; the figures above are those of the run up to the failure. "
            "The ledger says where a re-run resumes."
        )
    else:
        # No ledger entry was opened for the tenant: the ledger has nothing to say about this run there.
        text += (
            "It came before the tenant's walk began: nothing was written there, no ledger entry was opened; "
            "the figures above are those of the tenants before it."
        )
    return Section("Database failure", [Paragraph(text, tone=ERROR)])


def _resumed(report: MigrationReport) -> Section | None:
    notes = [f"{tenant.schema}: {tenant.resume_note}" for tenant in report.tenants if tenant.resume_note]
    return Section("Resumed", [Bullets(notes)]) if notes else None


def _finalized(report: MigrationReport) -> Section | None:
    finalized = report.finalized_tenants
    if not finalized:
        return None
    note = (
        "finalized: finalize_images dropped its JSON column products.images, so there is nothing to migrate; "
        "checks 1, 2 and 4 compared with the JSON and no longer apply, checks 3, 5, 6 and 7 ran on the table."
    )
    return Section("Finalized", [Bullets([f"{schema}: {note}" for schema in finalized])])


def _interruption(report: MigrationReport) -> Section | None:
    if not report.interruption:
        return None
    return Section("Interrupted", [Paragraph(interruption_note(report.interruption), tone=WARNING)])


def batch_sizes_cell(pace: Pace) -> str:
    sizes = pace.batch_sizes
    if not sizes.batches:
        return "no batch"
    average = sizes.products / sizes.batches
    if sizes.smallest == sizes.largest:
        return f"{sizes.batches:,} x {sizes.largest:,} products"
    return f"{sizes.batches:,} batches, {sizes.smallest:,} to {sizes.largest:,} products (average {average:,.0f})"


def waits_cell(pace: Pace) -> str:
    return "; ".join(f"{wait.reason}: {wait.seconds:,.1f} s ({wait.detail})" for wait in pace.waits) or "none"


def _pace(report: MigrationReport) -> Section | None:
    """How the batches went where it was not the fixed pace: --batch-time's sizes, and every wait before a batch."""
    paced = [
        tenant for tenant in report.tenants if tenant.pace.waits or (tenant.pace.batch_sizes.target_ms and tenant.run)
    ]
    if not paced:
        return None
    rows = []
    for tenant in paced:
        sizes = tenant.pace.batch_sizes
        per_batch = f"{sizes.seconds / sizes.batches * 1000:,.0f} ms" if sizes.batches else ""
        target = f"{sizes.target_ms:,} ms" if sizes.target_ms else "fixed size"
        halved = f"{sizes.halved:,}" if sizes.halved else ""
        rows.append([tenant.schema, batch_sizes_cell(tenant.pace), target, per_batch, halved, waits_cell(tenant.pace)])
    table = Table(
        "Pace",
        [
            "Schema",
            "Batches",
            "Batch time aimed at",
            "Average batch",
            "Halved after a timeout",
            "Waited before batches",
        ],
        rows,
    )
    waited = sum(tenant.pace.seconds_waited for tenant in paced)
    blocks = [table]
    if waited:
        blocks.append(
            Paragraph(f"The batches waited {waited:,.1f} s in all for the database's health or a pause.", tone=WARNING)
        )
    return Section("Pace", blocks)


def _wave_stop(report: MigrationReport) -> Section | None:
    stop = report.wave_stop
    if not stop:
        return None
    text = (
        f"--max-failures {stop.max_failures}: the run started no further tenant once {', '.join(stop.failed)} "
        f"had ended so; {len(stop.not_started):,} tenant(s) not started: {', '.join(stop.not_started)}."
    )
    return Section("Stopped starting tenants", [Paragraph(text, tone=WARNING)])


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
        _resynced(report),
        _following(report),
        _emptied(report),
        _errors(report),
        _resumed(report),
        _refused(report),
        _blocked(report),
        _finalized(report),
        _skipped(report),
        _failure(report),
        _interruption(report),
        _wave_stop(report),
        _pace(report),
        _performance(report),
    ]
    return [section for section in sections if section]
