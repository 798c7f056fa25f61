"""The table locks finalize_images and restore_images_json take to change ``products``' columns beside the
running application, with a bounded wait."""

from django.db import DatabaseError
from psycopg import sql

from stoflow.citus import PROPAGATE_SET_LOCAL, citus_installed
from stoflow.raw_sql import execute, table
from stoflow.tenants.sessions import set_local

# How long to wait for the locks before giving the tenant up. Waiting longer would stall the application:
# once a lock request queues on a table, every later query on it queues behind the request.
DEFAULT_LOCK_TIMEOUT = 5.0  # seconds

# What finalize_images and restore_images_json both mean by exit statuses 4 and 2 (their enums).
BUSY_MEANING = (
    "A tenant was skipped: another job holds its lock, or its tables could not be locked within "
    "--lock-timeout; it was left as it was, re-run"
)
USAGE_MEANING = (
    "Usage error: bad option, unknown `--schema`, not confirmed (or no terminal to ask on: pass "
    "`--no-input`), server older than PostgreSQL 16, a tenant without its tables. Nothing was done"
)

# SQLSTATEs that mean "the locks were not granted": lock_not_available (lock_timeout), deadlock_detected.
_NOT_GRANTED = ("55P03", "40P01")


def lock_for_column_change(schema: str, lock_timeout: float) -> None:
    """Lock the tenant's two tables until the end of the current transaction (call inside one).

    ``products`` first, in ACCESS EXCLUSIVE, the lock DROP/ADD COLUMN needs: nothing reads or writes the
    table (the JSON column above all) between this call and the commit, so what is checked and copied is
    what is dropped, and what is filled is what stays. Taken up front rather than upgraded to at the ALTER:
    an upgrade deadlocks with a transaction holding a weaker lock on products (a product row locked FOR
    UPDATE) and waiting for ours. Then ``product_images`` in SHARE: its writers wait, so the rows compared
    with the JSON, or turned into it, cannot change meanwhile; readers carry on. That is the image service's
    order (the product row, then its images): a service call has either finished before we get products, or
    waits at its first statement holding nothing we need.

    Each wait is bounded by ``lock_timeout`` (this transaction only, ``SET LOCAL``); the price of the locks is
    that this tenant's product queries wait until the commit, once. On Citus the tables' shards are locked on
    the tenant's worker too, through the coordinator's connection there: the SET LOCAL reaches it only when
    Citus propagates it (``citus.propagate_set_commands``, set first, for this transaction as well).
    """
    settings = {
        **(PROPAGATE_SET_LOCAL if citus_installed() else {}),
        "lock_timeout": f"{max(1, round(lock_timeout * 1000))}ms",
    }
    execute(sql.SQL(set_local(settings)))
    execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table(schema, "products")))
    execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(table(schema, "product_images")))


def locks_not_granted(exc: DatabaseError, lock_timeout: float) -> str | None:
    """Why the tenant is skipped, when ``exc`` says the locks were not granted in time; None for any other error."""
    if (getattr(exc.__cause__, "sqlstate", None) or "") not in _NOT_GRANTED:
        return None
    return (
        f"could not lock products and product_images within {lock_timeout:g} s "
        f"({str(exc).strip().splitlines()[0]}): writers or long queries on them; nothing changed"
    )
