"""Test set-up: a real PostgreSQL (the same rule as the project), two tenants made once per session."""

import pytest
from django.db import connection

from stoflow.tenants.services import ensure_tenant
from tests.helpers import SESSION_OPTIONS, TENANT, TEST_TENANTS, run_sql


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
    """Real commits (for concurrency and batch tests); the test tenants and the run ledger are emptied afterwards
    (a run left unfinished in the ledger would make the next test's run resume after its last product)."""
    with django_db_blocker.unblock():
        try:
            yield
        finally:
            for schema in TEST_TENANTS:
                run_sql("TRUNCATE {images}, {products} RESTART IDENTITY CASCADE", schema=schema)
            run_sql("TRUNCATE public.run_ledger")
