"""Test set-up: a real PostgreSQL (the same rule as the project), two tenants made once per session."""

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from django.db import connection

from products.legacy_json import ARCHIVE_TABLE, has_archive, has_json_column
from products.lifecycle.restore import restore_tenant
from products.migration import follower
from products.migration.report import ExitCode
from stoflow.tenants.citus import is_citus
from stoflow.tenants.services import ensure_tenant
from tests.helpers import SESSION_OPTIONS, TENANT, TEST_TENANTS, entries, make_product, run_command, run_sql


@pytest.fixture(scope="session")
def django_db_setup(request, django_test_environment, django_db_blocker, django_db_keepdb, django_db_createdb):
    """pytest-django's set-up, for the default database whatever tests were collected.

    pytest-django creates a test database only when a collected test asks for ``db``;
    ``committed_db`` tests run alone would otherwise reach the development database."""
    from django.test.utils import setup_databases, teardown_databases

    keepdb = django_db_keepdb and not django_db_createdb
    with django_db_blocker.unblock():
        config = setup_databases(verbosity=request.config.option.verbose, interactive=False, keepdb=keepdb)
        # Creating a tenant runs every tenant migration: make the few we need once.
        for schema in TEST_TENANTS:
            ensure_tenant(schema)
    # From here on, every connection Django opens to the test database (this thread's, the --jobs workers',
    # a test's threads', the live server's) gives up on a lock or a statement instead of waiting for ever.
    # Threads share these settings; this thread's connection reopens with them on its next use.
    connection.settings_dict["OPTIONS"]["options"] = SESSION_OPTIONS
    connection.close()
    yield
    if not keepdb:
        with django_db_blocker.unblock():
            teardown_databases(config, verbosity=request.config.option.verbose)


@pytest.fixture
def tenant(db):
    """The main test tenant's schema name, inside the test's rolled-back transaction."""
    return TENANT


@pytest.fixture
def committed_db(django_db_setup, django_db_blocker):
    """Real commits (for concurrency and batch tests); the test tenants, the run ledger and the runs' controls are
    emptied afterwards
    (a run left unfinished in the ledger would make the next test's run resume after its last product)."""
    with django_db_blocker.unblock():
        try:
            yield
        finally:
            for schema in TEST_TENANTS:
                follower.uninstall(schema)  # a test's follower would apply the next test's JSON writes
                run_sql(
                    "TRUNCATE {images}, {products}, {schema}.product_json_state, {schema}.product_images_removed, "
                    "{schema}.label_job_items, {schema}.label_changes, {schema}.label_jobs RESTART IDENTITY CASCADE",
                    schema=schema,
                )
            run_sql("TRUNCATE public.run_ledger, public.run_control")


@pytest.fixture
def finalizable(tenant, tmp_path):
    """Six products in TENANT, migrated cleanly, which finalize_images lets through: 4, 3 and 1 images, a
    soft-deleted one with 2, an empty one ([]) and one whose JSON is SQL NULL."""
    products = SimpleNamespace(
        a=make_product(images=entries(4)),
        b=make_product(images=entries(3)),
        single=make_product(images=entries(1)),
        deleted=make_product(images=entries(2), deleted_at=datetime(2025, 1, 1, tzinfo=UTC)),
        empty=make_product(images=[]),
        null=make_product(images=None),
    )
    code, _, output = run_command("--schema", tenant, tmp_path=tmp_path)
    assert code == ExitCode.OK, output
    return products


@pytest.fixture
def restores_the_column(committed_db):
    """For a test that finalizes TENANT for real (committed): its JSON column comes back and its
    legacy_product_images goes afterwards, as the session made the tenant."""
    yield
    restore_tenant(TENANT)
    run_sql("DROP TABLE IF EXISTS {schema}.{archive}", archive=ARCHIVE_TABLE)


@pytest.fixture(scope="module")
def test_tenants_keep_their_json_column(django_db_setup, django_db_blocker):
    """For a module that finalizes: after it, the test tenants are as the session made them (their JSON column
    there, no legacy_product_images), whether its tests rolled back or restored what they did."""
    yield
    with django_db_blocker.unblock():
        assert all(has_json_column(schema) for schema in TEST_TENANTS)
        assert not any(has_archive(schema) for schema in TEST_TENANTS)


@pytest.fixture(autouse=True)
def skip_where_citus_differs(request):
    """A test marked ``citus_incompatible(reason)`` is skipped on a Citus coordinator, with its reason."""
    marker = request.node.get_closest_marker("citus_incompatible")
    if marker is None:
        return
    with request.getfixturevalue("django_db_blocker").unblock():
        if is_citus():
            pytest.skip(f"not on Citus: {marker.args[0]}")
