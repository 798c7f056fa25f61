"""The run ledger: written as batches commit, read to resume an unfinished run, printed by --status, shown
read-only in the public admin."""

import pytest
from django.db import connection

from products.migration import batches
from products.migration.report import ExitCode
from stoflow.tenants.models import LedgerEntry
from stoflow.tenants.services import ensure_public_tenant
from tests.helpers import (
    OTHER_TENANT,
    TENANT,
    entries,
    ledger_entries,
    make_product,
    other_session,
    run_command,
    table_state,
)


def interrupt_batch(monkeypatch, number: int) -> list[tuple]:
    """Ctrl-C in the ``number``th batch (before its writes); returns the (after, upto) of every batch."""
    write_batch = batches._write_batch
    calls = []

    def interrupted(schema, after, upto, options):
        calls.append((after, upto))
        if len(calls) == number:
            raise KeyboardInterrupt
        return write_batch(schema, after, upto, options)

    monkeypatch.setattr(batches, "_write_batch", interrupted)
    return calls


def test_each_batch_is_in_the_ledger_once_committed_in_a_short_transaction_of_its_own(committed_db, monkeypatch):
    products = [make_product(images=entries(2)) for _ in range(5)]
    write_batch = batches._write_batch
    committed = []

    def read_the_ledger_from_elsewhere(schema, after, upto, options):
        with other_session() as session:
            committed.append(
                session.execute(
                    "SELECT status, last_product_id, batches FROM public.run_ledger WHERE schema_name = %(schema)s",
                    {"schema": schema},
                ).fetchall()
            )
        return write_batch(schema, after, upto, options)

    monkeypatch.setattr(batches, "_write_batch", read_the_ledger_from_elsewhere)
    code, _, output = run_command("--schema", TENANT, "--batch-size", "2", "--pause-ms", "1")

    assert code == ExitCode.OK, output
    # Another session sees the entry from the start, and each batch in it before the next batch begins.
    assert committed == [
        [("running", None, 0)],
        [("running", products[1].pk, 1)],
        [("running", products[3].pk, 2)],
    ]
    [entry] = ledger_entries()
    assert (entry["status"], entry["mode"], entry["command"]) == ("done", "live", "migrate_images")
    assert (entry["last_product_id"], entry["batches"], entry["checks_passed"]) == (products[-1].pk, 3, True)
    assert entry["figures"]["images_migrated"] == 10 and entry["figures"]["errors"] == 0
    assert entry["options"] | {"allowed": []} == {
        "force": False,
        "sync": False,
        "batch_size": 2,
        "batch_time_ms": 0,
        "jobs": 1,
        "lock_timeout_ms": 2000,
        "statement_timeout_ms": 600_000,
        "retries": 3,
        "pause_ms": 1,
        "restart": False,
        "allowed": [],
    }
    assert entry["finished_at"] >= entry["started_at"] and entry["backend_pid"] and ":" in entry["client"]
    assert len(entry["run_id"]) == 32


def test_one_entry_per_run_and_tenant_with_its_mode_and_status(tenant):
    make_product(images=entries(2))
    bad = make_product(images={"url": "https://cdn.example/a.jpeg"})
    make_product(OTHER_TENANT, images=entries(1))

    run_command("--dry-run")
    run_command()

    [dry, live] = ledger_entries(TENANT)
    assert (dry["mode"], dry["status"], live["mode"], live["status"]) == ("dry-run", "errors", "live", "errors")
    assert dry["run_id"] != live["run_id"]
    assert live["figures"]["error_ids"] == [bad.pk] and live["message"] == "1 product(s) not migrated"
    assert [(e["mode"], e["status"]) for e in ledger_entries(OTHER_TENANT)] == [("dry-run", "done"), ("live", "done")]
    assert ledger_entries(OTHER_TENANT)[1]["run_id"] == live["run_id"]  # one run over both tenants


def test_a_rerun_resumes_after_the_last_product_the_interrupted_run_committed(committed_db, monkeypatch, tmp_path):
    products = [make_product(images=entries(2)) for _ in range(7)]
    interrupt_batch(monkeypatch, 3)
    assert run_command("--schema", TENANT, "--batch-size", "2")[0] == ExitCode.INTERRUPTED
    [entry] = ledger_entries()
    assert (entry["status"], entry["last_product_id"]) == ("interrupted", products[3].pk)

    calls = interrupt_batch(monkeypatch, 0)
    code, report, output = run_command("--schema", TENANT, "--batch-size", "2", tmp_path=tmp_path)

    assert code == ExitCode.OK, output
    tenant = report["tenants"][0]
    assert tenant["resumed_after"] == products[3].pk
    assert f"resumes after product id {products[3].pk}, where the last run {entry['run_id']}" in tenant["resume_note"]
    assert f"resumes after product id {products[3].pk}" in " ".join(output.split())
    # Progress is read from the ledger: the walk starts after that id, and the whole tenant is validated.
    assert calls[0] == (products[3].pk, products[5].pk)
    assert tenant["run"]["images_migrated"] == 6
    assert tenant["validation"]["checks"][0]["figure"] == 14
    assert ledger_entries()[-1]["resumed_after"] == products[3].pk


def test_a_resumed_run_stopped_before_its_first_batch_passes_its_resume_point_on(committed_db, monkeypatch, tmp_path):
    products = [make_product(images=entries(2)) for _ in range(7)]
    interrupt_batch(monkeypatch, 3)
    assert run_command("--schema", TENANT, "--batch-size", "2")[0] == ExitCode.INTERRUPTED
    monkeypatch.undo()
    interrupt_batch(monkeypatch, 1)
    assert run_command("--schema", TENANT, "--batch-size", "2")[0] == ExitCode.INTERRUPTED

    # The resumed run committed nothing: its entry still says where the first one stopped.
    resumed = ledger_entries()[-1]
    assert (resumed["status"], resumed["batches"]) == ("interrupted", 0)
    assert resumed["resumed_after"] == resumed["last_product_id"] == products[3].pk
    monkeypatch.undo()
    calls = interrupt_batch(monkeypatch, 0)
    code, report, output = run_command("--schema", TENANT, "--batch-size", "2", tmp_path=tmp_path)

    assert code == ExitCode.OK, output
    assert calls[0] == (products[3].pk, products[5].pk)
    assert report["tenants"][0]["resumed_after"] == products[3].pk
    assert len(table_state(TENANT)) == 14


def test_an_interrupted_dry_run_never_decides_where_a_live_run_resumes(committed_db, monkeypatch, tmp_path):
    products = [make_product(images=entries(2)) for _ in range(7)]
    interrupt_batch(monkeypatch, 3)
    assert run_command("--schema", TENANT, "--batch-size", "2")[0] == ExitCode.INTERRUPTED
    monkeypatch.undo()
    interrupt_batch(monkeypatch, 2)
    assert run_command("--schema", TENANT, "--batch-size", "2", "--dry-run")[0] == ExitCode.INTERRUPTED
    dry = ledger_entries()[-1]
    assert (dry["mode"], dry["status"], dry["last_product_id"]) == ("dry-run", "interrupted", products[1].pk)

    monkeypatch.undo()
    calls = interrupt_batch(monkeypatch, 0)
    code, report, output = run_command("--schema", TENANT, "--batch-size", "2", tmp_path=tmp_path)

    # The live run resumes where the last live run stopped, not where the rehearsal did.
    assert code == ExitCode.OK, output
    assert calls[0] == (products[3].pk, products[5].pk)
    assert report["tenants"][0]["resumed_after"] == products[3].pk
    assert len(table_state(TENANT)) == 14


@pytest.mark.parametrize(
    "interrupted, args, note",
    [
        ([], ["--restart"], "--restart: walks every product"),
        ([], ["--force"], "ran with other options: this run walks every product"),
        (["--sync"], [], "ran with other options: this run walks every product"),
    ],
    ids=["restart", "force-after-a-plain-run", "plain-after-a-sync-run"],
)
def test_restart_or_other_options_walk_every_product(committed_db, monkeypatch, tmp_path, interrupted, args, note):
    products = [make_product(images=entries(2)) for _ in range(5)]
    interrupt_batch(monkeypatch, 2)
    assert run_command("--schema", TENANT, "--batch-size", "2", *interrupted)[0] == ExitCode.INTERRUPTED

    calls = interrupt_batch(monkeypatch, 0)
    code, report, output = run_command("--schema", TENANT, "--batch-size", "2", *args, tmp_path=tmp_path)

    assert code == ExitCode.OK, output
    assert calls[0] == (None, products[1].pk)
    assert report["tenants"][0]["resumed_after"] is None
    assert note in report["tenants"][0]["resume_note"]


def test_status_prints_the_latest_state_per_tenant(committed_db, monkeypatch, tmp_path):
    products = [make_product(images=entries(2)) for _ in range(5)]
    interrupt_batch(monkeypatch, 2)
    run_command("--schema", TENANT, "--batch-size", "2")
    monkeypatch.undo()
    run_command("--schema", TENANT, "--dry-run")

    code, _, output = run_command("--status")

    assert code == ExitCode.OK
    lines = output.splitlines()
    [live] = [line for line in lines if line.split()[:3] == [TENANT, "live", "interrupted"]]
    assert str(products[1].pk) in live.split()
    assert f"a re-run resumes after product id {products[1].pk}" in " ".join(output.split())
    [dry] = [line for line in lines if line.split()[:2] == [TENANT, "dry-run"]]
    assert "done" in dry.split()
    assert [line.split()[:3] for line in lines if line.split()[:1] == [OTHER_TENANT]] == [
        [OTHER_TENANT, "never", "run"]
    ]
    assert table_state(TENANT) != [] and len(ledger_entries()) == 2  # --status itself writes nothing


def test_status_says_when_a_running_entry_has_no_session_behind_it(tenant):
    LedgerEntry.objects.create(
        run_id="b" * 32,
        schema_name=tenant,
        mode="live",
        status=LedgerEntry.RUNNING,
        started_at="2026-01-15T09:30:00Z",
        heartbeat_at="2026-01-15T09:31:00Z",
        last_product_id=12,
        backend_pid=1,
    )

    code, _, output = run_command("--status", "--schema", tenant)

    assert code == ExitCode.OK
    flat = " ".join(output.split())
    assert "running?" in flat and "no session holds the tenant's lock" in flat


def test_the_public_admin_shows_the_ledger_read_only(tenant, admin_client):
    ensure_public_tenant()
    make_product(images=entries(2))
    run_command("--schema", tenant)
    [entry] = LedgerEntry.objects.filter(schema_name=tenant)
    try:
        listing = admin_client.get("/admin/tenants/ledgerentry/")
        detail = admin_client.get(f"/admin/tenants/ledgerentry/{entry.pk}/change/")
        add = admin_client.get("/admin/tenants/ledgerentry/add/")
        delete = admin_client.get(f"/admin/tenants/ledgerentry/{entry.pk}/delete/")
    finally:
        connection.set_schema_to_public()

    assert listing.status_code == 200 and tenant in listing.content.decode()
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()  # no form to change it
    assert (add.status_code, delete.status_code) == (403, 403)
