"""A per-tenant advisory lock: one job at a time on a tenant's tables."""

from collections.abc import Iterator
from contextlib import contextmanager

from psycopg import sql

from stoflow.raw_sql import fetch_rows

# The tenant's advisory lock key: this namespace in the high 32 bits, the
# schema's OID (unique in the database, unlike a hash of its name) in the low ones.
ADVISORY_LOCK_NAMESPACE = 0x5709F10
LOCK_KEY_SQL = "(%(namespace)s::bigint << 32) | (SELECT oid::bigint FROM pg_namespace WHERE nspname = %(schema)s)"


@contextmanager
def tenant_lock(schema: str) -> Iterator[bool]:
    """A session-level advisory lock on the tenant: yields False when another job holds it."""
    key = {"namespace": ADVISORY_LOCK_NAMESPACE, "schema": schema}
    ((acquired,),) = fetch_rows(sql.SQL(f"SELECT pg_try_advisory_lock({LOCK_KEY_SQL})"), key)
    try:
        yield acquired
    finally:
        if acquired:
            fetch_rows(sql.SQL(f"SELECT pg_advisory_unlock({LOCK_KEY_SQL})"), key)
