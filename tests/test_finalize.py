"""finalize_images: the gate and its refusals, the copy and the drop, its locks, and migrate_images afterwards.

Finalizing drops a column of the shared test tenants. Every test here but one runs in the ``tenant`` fixture's
transaction, which PostgreSQL rolls back DDL and all; the one that needs real commits restores the column
itself, and the module ends by checking both test tenants still have it.
"""

import sys
import threading
import time

import psycopg
import pytest
from django.db import connections
from psycopg import sql

from products.legacy_json import ARCHIVE_TABLE, has_archive, has_json_column
from products.lifecycle import finalize
from products.lifecycle.finalize import FinalizeExitCode
from products.lifecycle.restore import RestoreExitCode
from products.migration.report import ExitCode
from stoflow.tenants.models import LedgerEntry
from tests.helpers import (
    OTHER_TENANT,
    TENANT,
    WAIT_SECONDS,
    doc_section,
    entries,
    exit_status_table,
    image_rows,
    join_all,
    json_text,
    make_product,
    other_session,
    run_command,
    run_lifecycle,
    run_sql,
    set_json,
    sql_rows,
    tenant_locked_elsewhere,
    tenant_sql,
)

# Finalizing drops a column of the shared test tenants: checked as the session made them after the module.
pytestmark = pytest.mark.usefixtures("test_tenants_keep_their_json_column")

FINALIZE = "finalize_images"


def archive_rows(schema: str = TENANT) -> list[tuple]:
    return sql_rows(
        "SELECT product_id, images::text, image_rows FROM {schema}.{archive} ORDER BY product_id, copied_at",
        schema=schema,
        archive=ARCHIVE_TABLE,
    )


def move_label_to_first_image(product_id: int) -> None:
    """By hand, rows only: two statements, as the one-label index is checked row by row."""
    run_sql("UPDATE {images} SET is_label = false WHERE product_id = %(id)s", {"id": product_id})
    run_sql('UPDATE {images} SET is_label = true WHERE product_id = %(id)s AND "order" = 1', {"id": product_id})


def assert_left_as_it_was(schema: str = TENANT) -> None:
    assert has_json_column(schema) and not has_archive(schema)


# Finalizing


def test_finalize_copies_every_products_json_then_drops_the_column(finalizable):
    products = vars(finalizable).values()
    json_before = {product.pk: json_text(product.pk) for product in products}

    code, output = run_lifecycle(FINALIZE, "--schema", TENANT)

    assert code == FinalizeExitCode.OK, output
    assert f"{TENANT}: finalized: the JSON of 6 product(s) copied to {TENANT}.{ARCHIVE_TABLE}" in output
    assert not has_json_column(TENANT)
    # Every product, soft-deleted, empty and NULL ones included, with the rows it had when copied.
    assert archive_rows() == [
        (finalizable.a.pk, json_before[finalizable.a.pk], 4),
        (finalizable.b.pk, json_before[finalizable.b.pk], 3),
        (finalizable.single.pk, json_before[finalizable.single.pk], 1),
        (finalizable.deleted.pk, json_before[finalizable.deleted.pk], 2),
        (finalizable.empty.pk, "[]", 0),
        (finalizable.null.pk, None, 0),
    ]
    assert len(sql_rows("SELECT DISTINCT copied_at FROM {schema}.legacy_product_images")) == 1
    assert_left_as_it_was(OTHER_TENANT)  # only the tenant named
    assert len(image_rows(finalizable.a.pk)) == 4  # the rows are untouched


def test_a_dry_run_runs_the_gate_and_changes_nothing(finalizable):
    code, output = run_lifecycle(FINALIZE, "--schema", TENANT, "--dry-run")

    assert code == FinalizeExitCode.OK, output
    assert "Dry run: the gate only, nothing changed." in output
    assert f"{TENANT}: would finalize: the gate passes; the JSON of 6 product(s) would be copied" in output
    assert_left_as_it_was()


def test_finalizing_again_finds_the_tenant_already_finalized(finalizable):
    assert run_lifecycle(FINALIZE, "--schema", TENANT)[0] == FinalizeExitCode.OK
    archived = archive_rows()

    code, output = run_lifecycle(FINALIZE)  # every tenant: this one again, and the other one

    assert code == FinalizeExitCode.OK, output
    assert f"{TENANT}: already finalized: products.images is gone, nothing to do" in output
    assert f"{OTHER_TENANT}: finalized: the JSON of 0 product(s)" in output
    assert archive_rows() == archived


# The gate's refusals: each names the tenant, the reason and the first products, and changes nothing.


def error_product(products) -> list[str]:
    """A product whose JSON cannot be moved (an entry without url), listed as an error by the migration."""
    bad = make_product(images=[{"order": 1}])
    assert run_command("--schema", TENANT)[0] == ExitCode.PRODUCT_ERRORS
    return [
        "1 product(s) listed as errors by the source",
        f"run migrate_images): {bad.pk}; product {bad.pk}: entry 1 has no url",
    ]


def drifted_product(products) -> list[str]:
    """Its JSON changed after the migration: its rows no longer say what the JSON says."""
    set_json(products.a.pk, entries(2, first_order=0))
    return [
        "check 4 FAIL (Products whose rows differ from their JSON (url, order, label)): 1, expected 0; "
        f"first products at fault: {products.a.pk} (rows and JSON disagree: migrate_images --sync or --force rebuilds"
    ]


def pending_product(products) -> list[str]:
    """Added after the migration, never finalizable: JSON images, no rows."""
    pending = make_product(images=entries(2))
    return [f"1 product(s) pending, JSON images and no rows (run migrate_images): {pending.pk}", "check 1 FAIL"]


def label_off_the_last_image(products) -> list[str]:
    """A failing check on the rows themselves: b's label moved to its first image, by hand."""
    move_label_to_first_image(products.b.pk)
    return [f"check 5 FAIL (Labels not on highest order): 1, expected 0; first products at fault: {products.b.pk}"]


def label_on_another_product(products) -> list[str]:
    """As many labels in the rows as the JSON yields, on other products: a's JSON now marks none of its photos
    (its rows keep their label), b's rows lost their label (its JSON still yields one)."""
    set_json(products.a.pk, [{**entry, "is_label": False} for entry in entries(4)])
    run_sql("UPDATE {images} SET is_label = false WHERE product_id = %(id)s", {"id": products.b.pk})
    at_fault = f"first products at fault: {products.a.pk}, {products.b.pk}"
    return [
        f"check 2 FAIL (Label count (= labels the JSON yields, per product)): 2, expected 2; {at_fault}",
        f"check 4 FAIL (Products whose rows differ from their JSON (url, order, label)): 2, expected 0; {at_fault}",
    ]


@pytest.mark.parametrize(
    "plant",
    [error_product, drifted_product, pending_product, label_off_the_last_image, label_on_another_product],
    ids=lambda f: f.__name__,
)
@pytest.mark.parametrize("dry_run", [False, True], ids=["live", "dry-run"])
def test_the_gate_refuses_a_tenant_naming_why_and_changes_nothing(finalizable, plant, dry_run):
    reasons = plant(finalizable)

    code, output = run_lifecycle(FINALIZE, "--schema", TENANT, *(["--dry-run"] if dry_run else []))

    assert code == FinalizeExitCode.REFUSED == 6, output
    assert f"{TENANT}: refused, left as it was:" in output
    assert all(reason in output for reason in reasons), output
    assert f"refused by the gate: {TENANT}. Exit status 6" in output
    assert_left_as_it_was()


def test_a_refused_tenant_does_not_stop_the_others(finalizable):
    set_json(finalizable.a.pk, entries(2))
    make_product(OTHER_TENANT, images=entries(2))
    assert run_command("--schema", OTHER_TENANT)[0] == ExitCode.OK

    code, output = run_lifecycle(FINALIZE)

    assert code == FinalizeExitCode.REFUSED, output
    assert f"{TENANT}: refused" in output and f"{OTHER_TENANT}: finalized" in output
    assert has_json_column(TENANT) and not has_json_column(OTHER_TENANT)


# --ready: the run ledger first, then the gate


def test_ready_finalizes_the_tenants_whose_latest_live_run_passed_and_leaves_the_others(finalizable):
    make_product(OTHER_TENANT, images=entries(2))  # never migrated: no live run on record

    code, output = run_lifecycle(FINALIZE, "--ready")

    assert code == FinalizeExitCode.OK, output
    assert f"{TENANT}: finalized" in output
    assert f"{OTHER_TENANT}: not ready, left as it was: no live migrate_images run on record" in output
    assert not has_json_column(TENANT)
    assert_left_as_it_was(OTHER_TENANT)


@pytest.mark.parametrize(
    "entry, why",
    [
        ({"checks_passed": False}, "has a failing check"),
        ({"status": LedgerEntry.ERRORS}, "is done, with products not migrated"),
        ({"status": LedgerEntry.BLOCKED}, "is blocked by another session's locks"),
        ({"status": LedgerEntry.RUNNING}, "is running"),
    ],
)
def test_ready_leaves_a_tenant_whose_latest_live_run_did_not_pass(finalizable, entry, why):
    LedgerEntry.objects.filter(schema_name=TENANT).update(**entry)

    code, output = run_lifecycle(FINALIZE, "--schema", TENANT, "--ready")

    assert code == FinalizeExitCode.OK, output
    assert f"{TENANT}: not ready, left as it was: its latest live run (" in output and why in output
    assert_left_as_it_was()


def test_ready_still_runs_the_gate_on_what_the_rows_and_json_say_now(finalizable):
    set_json(finalizable.a.pk, entries(2))  # changed since the run that passed

    code, output = run_lifecycle(FINALIZE, "--schema", TENANT, "--ready")

    assert code == FinalizeExitCode.REFUSED, output
    assert f"{TENANT}: refused" in output and "check 4 FAIL" in output
    assert_left_as_it_was()


def test_a_write_between_the_gate_and_the_locks_is_caught_by_the_second_pass(finalizable, monkeypatch):
    # The first pass runs while writers are free; one writes just after it. Under the locks, the gate runs again.
    gate = finalize.gate_refusals
    passes = []

    def gate_then_a_write(schema):
        refusals = gate(schema)
        passes.append(refusals)
        if len(passes) == 1:
            set_json(finalizable.b.pk, entries(5))
        return refusals

    monkeypatch.setattr(finalize, "gate_refusals", gate_then_a_write)
    code, output = run_lifecycle(FINALIZE, "--schema", TENANT)

    assert [bool(refusals) for refusals in passes] == [False, True]
    assert code == FinalizeExitCode.REFUSED, output
    assert "check 4 FAIL" in output and str(finalizable.b.pk) in output
    assert_left_as_it_was()


# Busy tenants


def test_a_tenant_another_job_holds_is_busy_and_skipped(finalizable):
    with tenant_locked_elsewhere(TENANT):
        code, output = run_lifecycle(FINALIZE)

    assert code == FinalizeExitCode.TENANT_BUSY == 4, output
    assert f"{TENANT}: busy, skipped (left as it was): another job" in output
    assert f"{OTHER_TENANT}: finalized" in output
    assert_left_as_it_was()


def test_tables_a_writer_holds_make_the_tenant_busy_within_the_lock_timeout(finalizable):
    with other_session() as writer, writer.transaction():
        writer_pid = writer.info.backend_pid
        # A writer in the middle of its transaction: it holds products until it commits.
        writer.execute(tenant_sql("LOCK TABLE {products} IN ROW EXCLUSIVE MODE"))
        started = time.monotonic()
        code, output = run_lifecycle(FINALIZE, "--schema", TENANT, "--lock-timeout", "300ms")
        waited = time.monotonic() - started

    assert code == FinalizeExitCode.TENANT_BUSY, output
    assert (
        f"{TENANT}: busy, skipped (left as it was): the copy and the drop waited longer than --lock-timeout (0.3 s) "
        "for a lock" in output
    )
    assert "lock timeout" in output
    assert f"held by pid {writer_pid} (idle in transaction): LOCK TABLE" in output
    assert waited < 5
    assert_left_as_it_was()


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["live", "dry-run"])
@pytest.mark.parametrize("locked", ["products", "product_images"])
def test_a_table_locked_elsewhere_stops_the_gate_s_first_pass_within_the_lock_timeout(
    restores_the_column, locked, dry_run
):
    # Committed: the holder's LOCK TABLE would otherwise wait for the test's own transaction.
    product = make_product(images=entries(3))
    assert run_command("--schema", TENANT)[0] == ExitCode.OK
    rows_before, json_before = image_rows(product.pk), json_text(product.pk)
    with other_session() as holder, holder.transaction():
        holder_pid = holder.info.backend_pid
        holder.execute(tenant_sql("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE", table=sql.Identifier(TENANT, locked)))
        started = time.monotonic()
        code, output = run_lifecycle(FINALIZE, "--schema", TENANT, *dry_run, "--lock-timeout", "200ms")
        waited = time.monotonic() - started

    assert code == FinalizeExitCode.TENANT_BUSY, output
    assert (
        f"{TENANT}: busy, skipped (left as it was): the gate waited longer than --lock-timeout (0.2 s) for a lock"
        in output
    )
    assert f"held by pid {holder_pid} (idle in transaction): LOCK TABLE" in output
    # The lock timeout, not as long as the holder holds the table.
    assert waited < 5
    assert has_json_column(TENANT) and not has_archive(TENANT)
    assert (image_rows(product.pk), json_text(product.pk)) == (rows_before, json_before)

    # The holder gone, a re-run goes through.
    code, output = run_lifecycle(FINALIZE, "--schema", TENANT, *dry_run, "--lock-timeout", "200ms")
    assert code == FinalizeExitCode.OK, output
    assert has_json_column(TENANT) is bool(dry_run)


def test_a_writer_of_images_waits_for_finalize_and_then_finds_the_column_gone(restores_the_column, monkeypatch):
    product = make_product(images=entries(3))
    assert run_command("--schema", TENANT)[0] == ExitCode.OK
    json_before = json_text(product.pk)
    holding_the_locks, release = threading.Event(), threading.Event()
    gate = finalize.gate_refusals
    passes = []

    def second_pass_waits(schema):
        passes.append(schema)
        if len(passes) == 2:  # under the table locks
            holding_the_locks.set()
            release.wait(WAIT_SECONDS)
        return gate(schema)

    monkeypatch.setattr(finalize, "gate_refusals", second_pass_waits)
    codes, writer_errors = [], []

    def finalize_run():
        try:
            codes.append(run_lifecycle(FINALIZE, "--schema", TENANT)[0])
        finally:
            connections.close_all()

    def write_images():
        with other_session() as writer:
            try:
                writer.execute(
                    tenant_sql("UPDATE {products} SET images = '[]'::jsonb WHERE id = %(id)s"), {"id": product.pk}
                )
            except psycopg.Error as exc:
                writer_errors.append(exc)

    finalizer = threading.Thread(target=finalize_run, name="finalize_images")
    finalizer.start()
    assert holding_the_locks.wait(WAIT_SECONDS), "finalize never reached its second pass"
    writer = threading.Thread(target=write_images, name="writer of images")
    writer.start()
    with other_session() as watcher:
        deadline = time.monotonic() + WAIT_SECONDS
        while not watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE %images%'"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the writer never waited for finalize's locks"
            time.sleep(0.05)
    release.set()
    join_all([finalizer, writer])

    assert codes == [FinalizeExitCode.OK]
    # The writer waited for the commit, then its statement found no column: nothing slipped in between.
    [error] = writer_errors
    assert isinstance(error, psycopg.errors.UndefinedColumn), error
    assert archive_rows() == [(product.pk, json_before, 3)]


def test_a_database_failure_at_the_drop_rolls_the_whole_tenant_back(finalizable, monkeypatch):
    from django.db import OperationalError

    execute = finalize.execute

    def connection_lost_at_the_drop(query, params=None):
        if "DROP COLUMN" in query.as_string(None):
            raise OperationalError("server closed the connection unexpectedly")
        execute(query, params)

    monkeypatch.setattr(finalize, "execute", connection_lost_at_the_drop)
    code, output = run_lifecycle(FINALIZE, "--schema", TENANT)

    assert code == FinalizeExitCode.DATABASE_FAILURE == 5, output
    assert "Stopped by a database failure in tenant_a: server closed the connection unexpectedly" in output
    assert_left_as_it_was()  # the archive table and its copy went with the transaction


# migrate_images once a tenant is finalized


def test_migrate_images_on_a_finalized_tenant_has_nothing_to_migrate_and_runs_the_table_checks(finalizable, tmp_path):
    assert run_lifecycle(FINALIZE, "--schema", TENANT)[0] == FinalizeExitCode.OK

    for options in ([], ["--dry-run"], ["--force"], ["--check"]):
        code, report, output = run_command("--schema", TENANT, *options, tmp_path=tmp_path)
        assert code == ExitCode.OK, (options, output)
        [tenant] = report["tenants"]
        assert tenant["finalized"] is True and tenant["run"] is None
        assert [(check["number"], check["passed"]) for check in tenant["validation"]["checks"]] == [
            (3, True),
            (5, True),
            (6, True),
            (7, True),
        ]
        assert f"{TENANT}: finalized: finalize_images dropped its JSON column" in output
    code, report, output = run_command("--schema", TENANT, tmp_path=tmp_path)
    assert "finalized   nothing to migrate" in output  # the Results row
    assert "across 0 schema(s) (plus 1 finalized, nothing to migrate)" in " ".join(output.split())  # the summary
    assert len(image_rows(finalizable.a.pk)) == 4


def test_a_run_over_finalized_and_unfinalized_tenants_shows_each_its_checks(finalizable, tmp_path):
    assert run_lifecycle(FINALIZE, "--schema", TENANT)[0] == FinalizeExitCode.OK
    make_product(OTHER_TENANT, images=entries(2))
    report_path = tmp_path / "report.md"

    code, report, _ = run_command("--report", str(report_path), tmp_path=tmp_path)

    assert code == ExitCode.OK
    numbers = {t["schema"]: [c["number"] for c in t["validation"]["checks"]] for t in report["tenants"]}
    assert numbers == {TENANT: [3, 5, 6, 7], OTHER_TENANT: [1, 2, 3, 4, 5, 6]}
    assert report["total"]["images_migrated"] == 2
    markdown = report_path.read_text()
    assert f"| {TENANT} | n/a | n/a | ✅ PASS 0 | n/a | ✅ PASS 0 | ✅ PASS 0 | ✅ PASS 0 |" in markdown
    assert (
        f"| {OTHER_TENANT} | ✅ PASS 2 | ✅ PASS 1 | ✅ PASS 0 | ✅ PASS 0 | ✅ PASS 0 | ✅ PASS 0 | n/a |" in markdown
    )
    assert "### Query 7: Labels on one-image products" in markdown


@pytest.mark.parametrize("number", [7, 5], ids=["label-on-a-one-image-product", "label-not-last"])
def test_check_on_a_finalized_tenant_still_catches_faults_in_the_rows(finalizable, tmp_path, number):
    assert run_lifecycle(FINALIZE, "--schema", TENANT)[0] == FinalizeExitCode.OK
    at_fault = finalizable.single if number == 7 else finalizable.a
    move_label_to_first_image(at_fault.pk)

    code, report, output = run_command("--schema", TENANT, "--check", tmp_path=tmp_path)

    assert code == ExitCode.CHECK_FAILED, output
    failing = [c for c in report["tenants"][0]["validation"]["checks"] if not c["passed"]]
    assert [(c["number"], c["product_ids"]) for c in failing] == [(number, [at_fault.pk])]


# The command as an operator runs it


class Terminal:
    """stdin as a terminal, for the confirmation prompt."""

    def isatty(self):
        return True


@pytest.mark.parametrize("answer, code", [("no", FinalizeExitCode.USAGE), ("yes", FinalizeExitCode.OK)])
def test_finalize_asks_for_confirmation_on_a_terminal(finalizable, monkeypatch, answer, code):
    monkeypatch.setattr(sys, "stdin", Terminal())
    prompts = []
    monkeypatch.setattr("builtins.input", lambda prompt: prompts.append(prompt) or answer)

    result, output = run_lifecycle(FINALIZE, "--schema", TENANT, no_input=False)

    assert result == code, output
    assert "drops the JSON column products.images in tenant_a" in prompts[0]
    assert has_json_column(TENANT) is (answer == "no")


def test_without_a_terminal_finalize_wants_no_input_but_a_dry_run_needs_none(finalizable, monkeypatch):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)

    code, output = run_lifecycle(FINALIZE, "--schema", TENANT, no_input=False)
    assert code == FinalizeExitCode.USAGE
    assert "pass --no-input" in output and "Nothing was done." in output
    assert_left_as_it_was()

    code, output = run_lifecycle(FINALIZE, "--schema", TENANT, "--dry-run", no_input=False)
    assert code == FinalizeExitCode.OK and "would finalize" in output


@pytest.mark.parametrize("command", [FINALIZE, "restore_images_json"])
@pytest.mark.parametrize(
    "args, message",
    [
        (["--schema", "user_999"], "Unknown tenant schema(s): 'user_999'"),
        (["--lock-timeout", "0"], "argument --lock-timeout: must be at least 1 ms"),
    ],
)
def test_usage_errors_change_nothing(finalizable, command, args, message):
    code, output = run_lifecycle(command, *args)
    assert code == 2
    assert message in output
    assert_left_as_it_was()


def test_a_tenant_without_its_tables_is_refused_before_anything_runs(finalizable):
    run_sql("ALTER TABLE {images} RENAME TO product_images_old", schema=OTHER_TENANT)

    code, output = run_lifecycle(FINALIZE)

    assert code == FinalizeExitCode.USAGE
    assert f"No products/product_images/product_images_removed tables in {OTHER_TENANT}" in output
    assert_left_as_it_was()


@pytest.mark.parametrize("codes", [FinalizeExitCode, RestoreExitCode], ids=["finalize", "restore"])
def test_codes_shared_with_migrate_images_mean_the_same_there(codes):
    for name in ("OK", "DATABASE_FAILURE", "INTERRUPTED", "TENANT_BUSY", "USAGE"):
        assert codes[name].value == ExitCode[name].value
    # A refusal of the gate has a code of its own, used by no migrate_images outcome.
    assert {code.value for code in codes} - {code.value for code in ExitCode} == (
        {6} if codes is FinalizeExitCode else set()
    )


@pytest.mark.parametrize(
    "command, codes",
    [(FINALIZE, FinalizeExitCode), ("restore_images_json", RestoreExitCode)],
    ids=["finalize", "restore"],
)
def test_help_and_the_docs_document_every_exit_status(command, codes):
    from django.core.management import load_command_class

    help_text = load_command_class("products", command).create_parser("manage.py", command).format_help()
    for code in codes:
        assert f"{code.value:>5}  " in help_text
    assert "--no-input" in help_text and "--schema" in help_text

    section = doc_section("docs/lifecycle.md", f"### Exit status of `{command}`")
    assert exit_status_table(section) == {int(code): code.meaning for code in codes}
    precedence = ", ".join(str(int(code)) for code in codes if code not in (codes.OK, codes.USAGE))
    assert f"the first in this order wins: {precedence}." in section
