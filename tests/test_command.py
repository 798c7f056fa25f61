"""migrate_images as an operator runs it: tenants, re-runs, --force, --dry-run, locks, interruptions."""

import json
import os
import subprocess
import sys
import threading
from io import StringIO

import pytest
from django.conf import settings
from django.db import connections
from django_tenants.utils import schema_context

from products.migration import batches
from products.migration.report import ExitCode
from products.models import Product, ProductImage
from tests.helpers import (
    OTHER_TENANT,
    TENANT,
    WAIT_SECONDS,
    doc_section,
    entries,
    exit_status_table,
    image_rows,
    join_all,
    ledger_entries,
    make_product,
    manage_py_environment,
    plant_failing_insert,
    run_command,
    run_sql,
    set_json,
    table_state,
    tenant_locked_elsewhere,
)


def row_count(schema: str) -> int:
    with schema_context(schema):
        return ProductImage.objects.count()


@pytest.mark.parametrize(
    "name",
    ["user_999", 'tenant_a"; DROP TABLE "tenant_a".products; --', "public", "tenant_a' OR '1'='1"],
)
def test_unknown_or_hostile_schema_is_refused_and_touches_nothing(tenant, tmp_path, name):
    product = make_product(images=entries(3))

    code, report, output = run_command("--schema", name, tmp_path=tmp_path)

    assert code == ExitCode.USAGE
    assert report is None
    assert "Unknown tenant schema" in output
    assert "Valid names: tenant_a, tenant_b" in output
    assert image_rows(product.id) == []
    with schema_context(tenant):
        assert Product.objects.count() == 1


def test_every_tenant_by_default_and_repeatable_schema_option(tenant, tmp_path):
    make_product(images=entries(2))
    make_product(OTHER_TENANT, images=entries(3))

    code, report, _ = run_command("--schema", OTHER_TENANT, "--schema", tenant, tmp_path=tmp_path)
    assert code == 0
    # The report follows the order asked for, each tenant once.
    assert [t["schema"] for t in report["tenants"]] == [OTHER_TENANT, tenant]
    assert report["total"]["images_migrated"] == 5

    code, report, _ = run_command(tmp_path=tmp_path)
    assert [t["schema"] for t in report["tenants"]] == [tenant, OTHER_TENANT]
    assert report["total"]["already_migrated"] == 2


def test_rerun_skips_migrated_products_and_changes_nothing(tenant, tmp_path):
    first = make_product(images=entries(4))
    make_product(images=entries(2))
    run_command("--schema", tenant)
    rows_before = image_rows(first.id)
    third = make_product(images=entries(3))

    code, report, _ = run_command("--schema", tenant, tmp_path=tmp_path)

    assert code == 0
    run = report["tenants"][0]["run"]
    assert (run["products"], run["already_migrated"], run["images_migrated"], run["labels_detected"]) == (3, 2, 3, 1)
    assert image_rows(first.id) == rows_before
    assert len(image_rows(third.id)) == 3
    assert row_count(tenant) == 9


def test_force_replaces_rows_from_the_current_json(tenant, tmp_path):
    product = make_product(images=entries(4))
    run_command("--schema", tenant)
    set_json(product.pk, entries(2, first_order=0))

    # Without --force the rows stay, and check 4 sees they no longer match the JSON.
    code, report, _ = run_command("--schema", tenant, tmp_path=tmp_path)
    assert code == ExitCode.CHECK_FAILED and report["tenants"][0]["run"]["already_migrated"] == 1
    assert len(image_rows(product.id)) == 4

    code, report, _ = run_command("--schema", tenant, "--force", tmp_path=tmp_path)
    assert code == 0
    # Brought to its JSON in place (no URL stayed: four rows out, two in), not migrated a second time.
    assert report["tenants"][0]["run"]["resynced"]["sample_ids"] == [product.pk]
    assert report["tenants"][0]["run"]["images_migrated"] == 0
    assert [(order, label) for order, label, *_ in image_rows(product.id)] == [(0, False), (1, True)]


def test_a_product_the_database_refuses_is_listed_and_its_batch_neighbours_migrate(tenant, tmp_path):
    before = make_product(images=entries(2))
    bad = make_product(images=[{"url": "https://cdn.example/boom.jpeg", "order": 1}, *entries(1, first_order=2)])
    after = make_product(images=entries(3))
    plant_failing_insert(tenant, "boom")

    # The preflight refuses a trigger it does not know, unless the operator reviewed it (--allow).
    code, report, output = run_command("--schema", tenant, "--allow", "refuse_image", tmp_path=tmp_path)

    assert code == ExitCode.PRODUCT_ERRORS
    [error] = report["tenants"][0]["run"]["errors"]
    assert error["product_id"] == bad.id and "planted failure" in error["reason"]
    assert str(bad.id) in output
    assert len(image_rows(before.id)) == 2 and len(image_rows(after.id)) == 3
    assert image_rows(bad.id) == []


def test_force_that_fails_keeps_the_old_rows(tenant, tmp_path):
    product = make_product(images=entries(3))
    run_command("--schema", tenant)
    old_rows = image_rows(product.id)
    set_json(product.pk, [{"url": "https://cdn.example/boom.jpeg", "order": 0}])
    plant_failing_insert(tenant, "boom")

    code, report, _ = run_command("--schema", tenant, "--force", "--allow", "refuse_image", tmp_path=tmp_path)

    assert code == ExitCode.PRODUCT_ERRORS
    assert [e["product_id"] for e in report["tenants"][0]["run"]["errors"]] == [product.id]
    assert image_rows(product.id) == old_rows


def test_force_asks_for_confirmation_unless_no_input(tenant, monkeypatch):
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    product = make_product(images=entries(2))
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    with pytest.raises(CommandError) as exc_info:
        call_command("migrate_images", "--schema", tenant, "--force", stdout=StringIO())
    assert exc_info.value.returncode == ExitCode.USAGE
    assert image_rows(product.id) == []

    monkeypatch.setattr("builtins.input", lambda prompt: "yes")
    call_command("migrate_images", "--schema", tenant, "--force", stdout=StringIO())
    assert len(image_rows(product.id)) == 2


def test_force_with_no_terminal_and_no_no_input_refuses_saying_to_pass_it(tenant, monkeypatch):
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    product = make_product(images=entries(2))
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(CommandError) as exc_info:
        call_command("migrate_images", "--schema", tenant, "--force", stdout=StringIO())
    assert exc_info.value.returncode == ExitCode.USAGE
    assert "pass --no-input" in str(exc_info.value)
    assert image_rows(product.id) == []


@pytest.mark.parametrize(
    "option, name, problem",
    [
        ("--report", "missing-folder/report.md", "which does not exist"),
        ("--json", "missing-folder/report.json", "which does not exist"),
        ("--report", ".", "is a directory"),
    ],
)
def test_an_output_file_that_cannot_be_written_is_refused_before_any_work(tenant, tmp_path, option, name, problem):
    product = make_product(images=entries(2))

    code, _, output = run_command("--schema", tenant, option, str(tmp_path / name))

    assert code == ExitCode.USAGE
    assert problem in output and "Nothing was done" in output
    assert image_rows(product.id) == []


def test_an_unexpected_error_has_its_own_exit_status_not_products_not_migrated(tenant, monkeypatch):
    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("products.management.commands.migrate_images.migrate_images", bug)
    make_product(images=entries(2))

    code, _, output = run_command("--schema", tenant)

    assert code == ExitCode.INTERNAL_ERROR == 70
    assert "Unexpected error: ZeroDivisionError('a bug')" in output
    assert "Traceback" in output


def test_dry_run_writes_nothing_and_reports_what_the_live_run_writes(tenant, tmp_path):
    make_product(images=entries(4))
    make_product(images=[{"url": "/a.jpeg", "order": 0}, {"url": "/b.jpeg", "order": 0}])  # repaired
    make_product(images=[{"order": 1}])  # error
    make_product(images=entries(2), deleted_at="2025-01-01T00:00:00Z")

    code_dry, dry, _ = run_command("--schema", tenant, "--dry-run", tmp_path=tmp_path)
    assert row_count(tenant) == 0
    code_live, live, _ = run_command("--schema", tenant, tmp_path=tmp_path)

    assert dry["mode"] == "dry-run" and live["mode"] == "live"
    assert code_dry == code_live == ExitCode.PRODUCT_ERRORS
    assert dry["tenants"][0]["run"] == live["tenants"][0]["run"]
    assert dry["tenants"][0]["run"]["images_migrated"] == 8
    assert [c["figure"] for c in dry["tenants"][0]["validation"]["checks"]] == [
        c["figure"] for c in live["tenants"][0]["validation"]["checks"]
    ]
    assert row_count(tenant) == 8


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch-size", "0"], "argument --batch-size: must be at least 1, not 0"),
        (["--jobs", "two"], "argument --jobs: 'two' is not a whole number"),
        (["--check", "--force"], "cannot be combined with --force"),
    ],
)
def test_bad_options_are_usage_errors(tenant, args, message):
    code, _, output = run_command(*args)
    assert code == ExitCode.USAGE
    assert message in output


def test_a_tenant_locked_by_another_run_is_reported_busy_and_skipped(tenant, tmp_path):
    product = make_product(images=entries(2))
    other = make_product(OTHER_TENANT, images=entries(2))
    with tenant_locked_elsewhere(tenant):
        code, report, output = run_command(tmp_path=tmp_path)

    assert code == ExitCode.TENANT_BUSY
    assert [t["busy"] for t in report["tenants"]] == [True, False]
    assert "tenant_a: busy" in output
    assert image_rows(product.id) == []
    assert len(image_rows(other.id, OTHER_TENANT)) == 2


def test_two_runs_at_once_leave_no_duplicates(committed_db, tmp_path):
    for count in [2, 5, 14] * 100:
        make_product(images=entries(count))
    codes = []

    def run():
        try:
            codes.append(run_command("--batch-size", "20")[0])
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, name=f"migrate_images run {number}") for number in (1, 2)]
    for thread in threads:
        thread.start()
    join_all(threads)

    # Either the second run found the tenant busy, or it came after and found everything migrated.
    assert sorted(codes) in ([0, 0], [0, ExitCode.TENANT_BUSY])
    code, report, _ = run_command("--check", tmp_path=tmp_path)
    assert code == 0
    assert report["tenants"][0]["validation"]["checks"][0]["figure"] == 100 * (2 + 5 + 14)
    assert report["tenants"][0]["validation"]["checks"][2]["figure"] == 0


def test_batches_commit_separately_and_an_interrupted_run_resumes_to_the_clean_state(committed_db, monkeypatch):
    counts = [3, 2, 4, 5, 2, 6, 2, 3, 7, 2]
    for count in counts:
        make_product(images=entries(count))
        make_product(OTHER_TENANT, images=entries(count))
    write_batch = batches._write_batch
    calls = []

    def interrupt_third_batch(*args, **kwargs):
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return write_batch(*args, **kwargs)

    monkeypatch.setattr(batches, "_write_batch", interrupt_third_batch)
    code, _, output = run_command("--schema", "tenant_a", "--batch-size", "3")
    assert code == ExitCode.INTERRUPTED
    assert "interrupted in tenant_a" in output and "re-run to finish" in output
    # Two whole batches (six products) committed, nothing of the third.
    assert row_count("tenant_a") == sum(counts[:6])

    monkeypatch.setattr(batches, "_write_batch", write_batch)
    assert run_command("--schema", "tenant_a", "--batch-size", "3")[0] == 0
    assert run_command("--schema", OTHER_TENANT)[0] == 0
    assert table_state("tenant_a") == table_state(OTHER_TENANT)
    assert row_count("tenant_a") == sum(counts)


def test_help_documents_every_exit_status():
    from products.management.commands.migrate_images import Command

    help_text = Command().create_parser("manage.py", "migrate_images").format_help()
    for code in ExitCode:
        assert f"{code.value:>5}  " in help_text
    assert "--dry-run" in help_text and "--no-input" in help_text


def test_the_documented_exit_status_table_is_the_enum_s():
    section = doc_section("docs/migrate_images.md", "## Exit status")
    assert exit_status_table(section) == {int(code): code.meaning for code in ExitCode}
    precedence = ", ".join(str(int(code)) for code in ExitCode if code != ExitCode.OK)
    assert f"the first in this order wins: {precedence}." in section


def test_a_server_older_than_postgresql_16_is_refused_before_anything_runs(tenant, tmp_path, monkeypatch):
    product = make_product(images=entries(2))
    # Django reads the server version once per connection (a cached property); this server is 16 or newer.
    monkeypatch.setattr(connections["default"], "pg_version", 150000)

    code, report, output = run_command("--schema", tenant, tmp_path=tmp_path)

    assert code == ExitCode.USAGE and report is None
    assert "PostgreSQL 16 or newer is needed; this server is version 150000." in output
    assert "Nothing was done." in output
    assert image_rows(product.id) == []


def test_a_tenant_without_the_tables_is_refused_untouched_and_the_others_go_on(tenant, tmp_path):
    product = make_product(images=entries(2))
    run_sql("ALTER TABLE {images} RENAME TO product_images_old", schema=OTHER_TENANT)

    code, report, output = run_command(tmp_path=tmp_path)

    assert code == ExitCode.USAGE
    assert [(t["schema"], t["status"]) for t in report["tenants"]] == [(tenant, "done"), (OTHER_TENANT, "refused")]
    assert report["tenants"][1]["refused"] == ["no product_images table: run `manage.py migrate_schemas` first"]
    assert f"{OTHER_TENANT}" in output and "migrate_schemas" in output and "refused" in output
    assert len(image_rows(product.id)) == 2


def test_a_database_failure_stops_the_run_keeping_committed_batches(tenant, monkeypatch):
    from django.db import OperationalError

    for count in [2, 3, 4]:
        make_product(images=entries(count))
    write_batch = batches._write_batch
    calls = []

    def lose_connection_on_second_batch(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise OperationalError("server closed the connection unexpectedly")
        return write_batch(*args, **kwargs)

    monkeypatch.setattr(batches, "_write_batch", lose_connection_on_second_batch)
    code, _, output = run_command("--schema", tenant, "--batch-size", "1")

    assert code == ExitCode.DATABASE_FAILURE
    assert "database failure in tenant_a: server closed the connection" in output
    # No product is blamed for it, one at a time: the first batch stays, the run stops.
    assert len(calls) == 2
    assert row_count(tenant) == 2


class TerminalOutput(StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize(
    ("stream", "args", "shows_progress"),
    [(TerminalOutput, [], True), (StringIO, [], False), (TerminalOutput, ["-v", "0"], False)],
    ids=["terminal", "pipe", "verbosity-0"],
)
def test_progress_bars_only_on_a_terminal(tenant, stream, args, shows_progress):
    from django.core.management import call_command

    make_product(images=entries(2))
    out = stream()
    call_command("migrate_images", "--schema", tenant, *args, stdout=out)
    assert ("all tenants" in out.getvalue()) is shows_progress
    assert row_count(tenant) == 2


def test_an_unreachable_database_is_a_clear_error_not_a_traceback():
    env = {**os.environ, "DATABASE_URL": "postgres://nobody@127.0.0.1:1/stoflow"}
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate_images"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
    assert result.returncode == ExitCode.DATABASE_FAILURE
    assert "Cannot reach the database" in result.stderr and "Nothing was done" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_database_without_the_tenant_registry_is_a_clear_error(tenant):
    run_sql("ALTER TABLE tenants_tenant RENAME TO tenants_tenant_elsewhere")

    code, _, output = run_command()

    assert code == ExitCode.USAGE
    assert "migrate_schemas --shared" in output


# A reader that leaves early (`| head -1`): its choice, not a failure of the command.


def manage_py_read_by(reader: str, *args: str) -> subprocess.CompletedProcess:
    """``manage.py args`` with its stdout read by ``reader``: "gone" closes the pipe before the command writes a
    line (the worst case of `| head -1`); "head -1" is the real thing, done whenever head has its line."""
    command = [sys.executable, "manage.py", *args]
    environment = manage_py_environment()
    if reader == "gone":
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            return subprocess.run(
                command,
                cwd=settings.BASE_DIR,
                env=environment,
                stdout=write_end,
                stderr=subprocess.PIPE,
                text=True,
                timeout=WAIT_SECONDS,
            )
        finally:
            os.close(write_end)
    process = subprocess.Popen(
        command, cwd=settings.BASE_DIR, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    head = subprocess.Popen(["head", "-1"], stdin=process.stdout, stdout=subprocess.DEVNULL)
    process.stdout.close()  # head alone reads it now: when head ends, the pipe's reader is gone
    try:
        head.wait(timeout=WAIT_SECONDS)
        _, stderr = process.communicate(timeout=WAIT_SECONDS)
    finally:
        process.kill()
        head.kill()
    return subprocess.CompletedProcess(command, process.returncode, None, stderr)


@pytest.mark.parametrize("reader", ["gone", "head -1"])
def test_a_reader_that_leaves_early_is_no_bug_the_run_ends_with_its_own_exit_code(committed_db, tmp_path, reader):
    products = [make_product(images=entries(2)) for _ in range(3)]
    markdown, json_path = tmp_path / "report.md", tmp_path / "report.json"

    result = manage_py_read_by(
        reader, "migrate_images", "--schema", TENANT, "--no-input", "--report", str(markdown), "--json", str(json_path)
    )

    assert result.returncode == ExitCode.OK, result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
    assert result.stderr == ""
    assert all(len(image_rows(product.pk)) == 2 for product in products)
    assert markdown.read_text(encoding="utf-8").endswith("**Exit status:** 0 (OK)\n")
    assert json.loads(json_path.read_text(encoding="utf-8"))["total"]["images_migrated"] == 6
    assert [entry["status"] for entry in ledger_entries()] == ["done"]


def test_a_reader_that_leaves_early_keeps_a_failing_run_s_exit_code_and_message(committed_db, tmp_path):
    make_product(images=entries(2))
    bad = make_product(images={"url": "https://cdn.example/not-a-list.jpeg"})
    json_path = tmp_path / "report.json"

    result = manage_py_read_by("gone", "migrate_images", "--schema", TENANT, "--no-input", "--json", "-")
    with_file = manage_py_read_by("gone", "migrate_images", "--schema", TENANT, "--no-input", "--json", str(json_path))

    for run in (result, with_file):
        assert run.returncode == ExitCode.PRODUCT_ERRORS, run.stderr
        assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr
        assert "CommandError: 1 product(s) not migrated (listed above). Exit status 1:" in run.stderr
    assert [error["product_id"] for error in json.loads(json_path.read_text())["tenants"][0]["run"]["errors"]] == [
        bad.pk
    ]


@pytest.mark.parametrize(
    "args",
    [["migrate_images", "--status"], ["finalize_images", "--dry-run"], ["restore_images_json"]],
    ids=["status", "finalize", "restore"],
)
def test_the_other_image_commands_end_with_their_own_exit_code_when_their_reader_leaves(committed_db, args):
    make_product(images=entries(2))  # not migrated: the finalize gate refuses the tenant
    argv = [sys.executable, "manage.py", *args, "--schema", TENANT, "--no-input"]
    read_whole = subprocess.run(
        argv, cwd=settings.BASE_DIR, env=manage_py_environment(), capture_output=True, text=True, timeout=WAIT_SECONDS
    )
    assert read_whole.stdout

    result = manage_py_read_by("gone", *args, "--schema", TENANT, "--no-input")

    assert result.returncode == read_whole.returncode, result.stderr
    assert result.stderr == read_whole.stderr
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
