"""The URL search index (tenant migration 0006) during a backfill: set aside by a first backfill of a large
tenant and built once its rows are in, also after an interrupted run; left alone everywhere else."""

import pytest
from django.db import transaction

from products import url_search_index
from products.migration.report import ExitCode
from products.migration.runs import SEARCH_INDEX_PHASE
from tests.helpers import (
    TENANT,
    ctrl_c_at_batch,
    entries,
    make_product,
    migrated_product,
    run_command,
    run_sql,
    sql_rows,
    sql_value,
)


def index_oid(schema: str = TENANT) -> int | None:
    """The index's oid (a new one after each build), None when it is missing."""
    return sql_value("SELECT to_regclass(%(name)s)::oid", {"name": f"{schema}.{url_search_index.INDEX}"})


def searched_by_index(schema: str = TENANT) -> bool:
    """Whether the image list's search condition can be served by the index (scans off, as on a few rows the
    planner rightly prefers one)."""
    run_sql("SET LOCAL enable_seqscan = off")
    plan = sql_rows("EXPLAIN SELECT id FROM {images} WHERE upper(url) LIKE '%%3-2.JPEG%%'", schema=schema)
    return url_search_index.INDEX in "\n".join(line for (line,) in plan)


@pytest.fixture(autouse=True)
def trgm_created(django_db_setup, django_db_blocker):
    """Skips where pg_trgm is not created; afterwards, the test tenant has its index again (as tenant migration
    0006 made it: the other tests' tenant has one)."""
    with django_db_blocker.unblock():
        trgm_in = url_search_index.trgm_schema()
    if trgm_in is None:
        pytest.skip("pg_trgm is not created on this server (no index to set aside: tenant migration 0006)")
    yield
    with django_db_blocker.unblock():
        url_search_index.create(TENANT, trgm_in)


@pytest.fixture
def small_threshold(monkeypatch):
    """A first backfill counts as large from three products (a thousand in production), and a tenant needs the
    index from five images (a hundred thousand)."""
    monkeypatch.setattr(url_search_index, "SET_ASIDE_FROM_PRODUCTS", 3)
    monkeypatch.setattr(url_search_index, "INDEXED_FROM_IMAGES", 5)


@pytest.mark.parametrize("split", [False, True], ids=["serially", "in ranges with --jobs"])
def test_a_first_backfill_builds_the_index_again_once_its_rows_are_in(committed_db, small_threshold, tmp_path, split):
    for _ in range(4):
        make_product(images=entries(3))
    before = index_oid()
    jobs = ["--jobs", "2", "--batch-size", "1"] if split else []  # 4 products: two ranges (split.split_points)
    code, report, output = run_command("--schema", TENANT, *jobs, tmp_path=tmp_path)
    assert code == ExitCode.OK and report["tenants"][0]["run"]["images_migrated"] == 12, output
    after = index_oid()
    assert after is not None and after != before  # dropped before the rows, made again after them
    assert report["seconds"][SEARCH_INDEX_PHASE] > 0 and "search index" in output  # timed on its own
    assert sql_value("SELECT indisvalid FROM pg_index WHERE indexrelid = %(oid)s", {"oid": after})
    with transaction.atomic():
        assert searched_by_index()


@pytest.mark.parametrize(
    "case",
    ["fewer products than the threshold", "rows already there", "dry run"],
)
def test_the_index_is_left_alone_unless_a_large_first_backfill(committed_db, small_threshold, tmp_path, case):
    products = 2 if case == "fewer products than the threshold" else 4
    for _ in range(products):
        make_product(images=entries(3))
    if case == "rows already there":
        migrated_product(3)
    before = index_oid()
    code, _, _ = run_command("--schema", TENANT, *(["--dry-run"] if case == "dry run" else []), tmp_path=tmp_path)
    assert code == ExitCode.OK
    assert index_oid() == before


def test_a_first_backfill_of_too_few_images_for_a_search_to_need_it_ends_without_it(
    committed_db, small_threshold, monkeypatch, tmp_path
):
    monkeypatch.setattr(url_search_index, "INDEXED_FROM_IMAGES", 13)
    for _ in range(4):
        make_product(images=entries(3))
    code, report, _ = run_command("--schema", TENANT, tmp_path=tmp_path)
    assert code == ExitCode.OK and index_oid() is None and SEARCH_INDEX_PHASE not in report["seconds"]
    with transaction.atomic():
        assert sql_value("SELECT count(*) FROM {images} WHERE upper(url) LIKE '%%3-2.JPEG%%'") == 4


def test_a_tenant_grown_past_the_bound_gets_the_index_on_its_next_run(committed_db, small_threshold, tmp_path):
    migrated_product(3)
    url_search_index.drop(TENANT)
    make_product(images=entries(1))
    code, _, _ = run_command("--schema", TENANT, tmp_path=tmp_path)
    assert code == ExitCode.OK and index_oid() is None  # 4 images: too few
    run_sql("ANALYZE {images}")
    make_product(images=entries(1))  # the statistics say 4, the run writes 1: 5
    code, _, _ = run_command("--schema", TENANT, tmp_path=tmp_path)
    assert code == ExitCode.OK and index_oid() is not None


def test_inside_a_callers_transaction_the_index_is_kept_up_as_rows_are_written(tenant, small_threshold, tmp_path):
    """(Its batches' deferred checks are pending there, and PostgreSQL cannot build an index then.)"""
    for _ in range(4):
        make_product(images=entries(3))
    before = index_oid()
    code, _, _ = run_command("--schema", tenant, tmp_path=tmp_path)
    assert code == ExitCode.OK and index_oid() == before and searched_by_index()


def test_an_interrupted_first_backfill_leaves_the_index_to_its_re_run(committed_db, small_threshold, monkeypatch):
    # (The re-run writes what the first run did not, which depends on when the signal lands: any row will do.)
    monkeypatch.setattr(url_search_index, "INDEXED_FROM_IMAGES", 1)
    for _ in range(6):
        make_product(images=entries(2))
    with pytest.MonkeyPatch.context() as interrupting:
        ctrl_c_at_batch(interrupting, 2)
        code, _, _ = run_command("--schema", TENANT, "--batch-size", "2")
    assert code == ExitCode.INTERRUPTED
    assert index_oid() is None  # set aside; the rows written so far are kept
    code, _, _ = run_command("--schema", TENANT)
    assert code == ExitCode.OK and index_oid() is not None
    assert sql_value("SELECT count(*) FROM {images}") == 12
