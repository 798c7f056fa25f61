"""Is this database connection a server session of its own? Told from the client side.

A pooler in transaction or statement mode (PgBouncer ``pool_mode=transaction``) hands each transaction whichever
server session is free: session settings (the jobs' timeouts), session advisory locks (the tenant lock) and
django-tenants' ``search_path`` do not survive from one transaction to the next. Under light load it may keep
handing back the same session, and a run behaves by luck; so the mode is detected, not relied on. The
pooler's own console is not the application's to read: the probe watches the server sessions instead.

With a direct connection, or through a session-mode pool, two connections open at once are two server
sessions, and each keeps its own from one transaction to the next. In transaction mode, a connection's
transactions move between server sessions, or a second connection opened beside it lands on the same one
(PgBouncer reuses the server session released last).
"""

from django.db import connection

# The message the commands stop with (exit 2, nothing done).
TRANSACTION_POOLING = (
    "The database connection goes through a pooler in transaction mode (e.g. PgBouncer pool_mode=transaction): "
    "the session settings and the tenant locks these commands rely on do not survive from one transaction to "
    "the next. Connect directly to PostgreSQL, or through a session-mode pool (PgBouncer pool_mode=session)."
)
PROBES = 3  # transactions of each connection compared


def _backend_pid(cursor) -> int:
    cursor.execute("SELECT pg_backend_pid()")
    return cursor.fetchone()[0]


def shares_server_sessions() -> bool:
    """Whether this connection's transactions do not keep one server session of their own (see the module).

    Inside a transaction the question cannot be asked (its session is held to the end): no."""
    connection.ensure_connection()
    if connection.in_atomic_block:
        return False
    beside = connection.get_new_connection(connection.get_connection_params())
    try:
        beside.autocommit = True
        with connection.cursor() as own, beside.cursor() as other:
            own_pids = {_backend_pid(own)}
            for _ in range(PROBES):
                other_pid = _backend_pid(other)
                own_pids.add(_backend_pid(own))
                if other_pid in own_pids or len(own_pids) > 1:
                    return True
        return False
    finally:
        beside.close()
