"""The table locks finalize_images and restore_images_json take to change ``products``' columns beside the
running application, and the session every statement of theirs runs in: each wait for a lock is bounded."""

from collections.abc import Iterator
from contextlib import contextmanager

from psycopg import sql

from products.migration.batches import Guard, MigrationOptions, job_session
from products.migration.report import Blocked
from stoflow.raw_sql import execute, table

# How long to wait for the locks before giving the tenant up. Waiting longer would stall the application:
# once a lock request queues on a table, every later query on it queues behind the request.
DEFAULT_LOCK_TIMEOUT = 5.0  # seconds

# What finalize_images and restore_images_json both mean by exit statuses 4 and 2 (their enums).
BUSY_MEANING = (
    "A tenant was skipped: another job holds its lock, or its tables could not be locked within "
    "--lock-timeout; it was left as it was, re-run"
)
USAGE_MEANING = (
    "Usage error: bad option, unknown `--schema`, not confirmed (or no terminal to ask on: pass `--no-input`), "
    "server older than PostgreSQL 16, a pooler in transaction mode in between, a tenant without its tables. "
    "Nothing was done"
)

# The busy tenant that another job's advisory lock keeps out (finalize's and restore's words for it).
ANOTHER_JOB = "another job (migrate_images, ...) holds its lock"


@contextmanager
def lifecycle_session(lock_timeout: float) -> Iterator[Guard]:
    """This thread's session for finalize_images or restore_images_json: a Guard to run each phase through.

    Every statement, from the first look at the tenant to the drop, gives up on a lock after ``lock_timeout``
    (``job_session``'s settings, set for the session: the gate's passes and the dry run's wait no longer than
    the table locks), and the sessions it waited for are named (its ``BlockerWatch``). One attempt: each retry
    would queue the application's queries on the table behind the lock request again. The statement timeout
    stays the session's own."""
    options = MigrationOptions(lock_timeout_ms=max(1, round(lock_timeout * 1000)), statement_timeout_ms=None, retries=0)
    with job_session(options) as guard:
        yield guard


def blocked_reason(blocked: Blocked) -> str:
    """Why a tenant is skipped as busy when a phase waited too long for a lock: which, and who held it."""
    return (
        f"{blocked.what} waited longer than --lock-timeout ({blocked.lock_timeout_ms / 1000:g} s) for a lock "
        f"({blocked.error}), held by {blocked.held_by}; nothing changed"
    )


def lock_for_column_change(schema: str) -> None:
    """Lock the tenant's two tables until the end of the current transaction (call inside one, in a
    ``lifecycle_session``: each wait ends within its lock timeout).

    ``products`` first, in ACCESS EXCLUSIVE, the lock DROP/ADD COLUMN needs: nothing reads or writes the
    table (the JSON column above all) between this call and the commit, so what is checked and copied is
    what is dropped, and what is filled is what stays. Taken up front rather than upgraded to at the ALTER:
    an upgrade deadlocks with a transaction holding a weaker lock on products (a product row locked FOR
    UPDATE) and waiting for ours. Then ``product_images`` in SHARE: its writers wait, so the rows compared
    with the JSON, or turned into it, cannot change meanwhile; readers carry on. That is the image service's
    order (the product row, then its images): a service call has either finished before we get products, or
    waits at its first statement holding nothing we need.

    The price of the locks is that this tenant's product queries wait until the commit, once.
    """
    execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table(schema, "products")))
    execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(table(schema, "product_images")))
