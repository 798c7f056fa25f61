"""Citus: whether this database runs it, known by its extension.

On Citus (schema-based sharding) each tenant schema lives whole on one worker, and a session connects to the
coordinator, which opens connections of its own to the workers. What a job sets on its own session stays on
the coordinator: ``stoflow.tenants.sessions`` repeats the job's timeouts in each transaction for the workers,
``stoflow.tenants.blocking`` asks Citus who blocks a backend on any node.
"""

from psycopg import sql

from stoflow.raw_sql import fetch_rows

# With this set on the coordinator's session, Citus sends each SET LOCAL of a transaction to every worker
# connection the transaction uses (its default, 'none', keeps them on the coordinator).
PROPAGATE_SET_LOCAL = {"citus.propagate_set_commands": "local"}


def citus_installed() -> bool:
    """Whether the current database has the Citus extension."""
    ((installed,),) = fetch_rows(sql.SQL("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')"))
    return installed
