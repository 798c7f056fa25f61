"""Citus, when the database is a Citus coordinator (schema-based sharding: each tenant schema whole on one
worker). What the jobs do differently there is asked here, once per connection."""

from django.db import connection
from psycopg import sql

from stoflow.raw_sql import execute, fetch_rows

# With this set on the coordinator's session, Citus sends each SET LOCAL of a transaction to every worker
# connection the transaction uses (its default, 'none', keeps them on the coordinator): the job's timeouts
# reach the statements it runs on the workers (``stoflow.tenants.sessions``).
PROPAGATE_SET_LOCAL = {"citus.propagate_set_commands": "local"}


def is_citus() -> bool:
    """Whether the connection's database has the citus extension (cached on the connection)."""
    connection.ensure_connection()
    known = getattr(connection, "_stoflow_is_citus", None)
    if known is None:
        ((known,),) = fetch_rows(sql.SQL("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')"))
        connection._stoflow_is_citus = known
    return known


def allow_triggers() -> None:
    """In this transaction, let Citus create or drop a trigger on a distributed table (the follower's).

    Citus refuses triggers on distributed tables unless ``citus.enable_unsafe_triggers`` is on: a trigger
    runs on the worker against the shard, and one that wrote to a table of another colocation group could
    not be kept consistent. The follower writes only its own tenant's tables, which schema-based sharding
    keeps together on one worker."""
    if is_citus():
        execute(sql.SQL("SELECT set_config('citus.enable_unsafe_triggers', 'on', true)"))
