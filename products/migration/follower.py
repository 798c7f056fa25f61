"""The follower: while old code still writes ``products.images``, each change reaches the rows at once.

Per tenant, a trigger on ``products`` (after INSERT, DELETE and UPDATE OF images, for each row) runs
``reconcile``'s plan and statements for that product in the writer's own transaction: the same SQL source,
the same rule, ids kept where the URL stays. It never fails the writer's statement: the rule reads bad
input with ``pg_input_is_valid`` instead of raising (and never parses JSON text that could exceed the stack,
``source.MAX_JSON_TEXT_BRACKETS``), a JSON it refuses leaves the rows as they were and is
recorded in ``product_json_state`` (``refused``: the product is held back from marketplaces), and a change
that would delete a photo another table points at by a key that keeps it from being deleted (NO ACTION,
RESTRICT, SET DEFAULT, SET NULL on a NOT NULL column: ``preflight.REFERENCES``) is refused the same way.
No EXCEPTION block: each would be a subtransaction, and an app transaction touching more than 64 products
would overflow the subtransaction cache, slowing every session and the standbys.

Writes that record their own ``product_json_state`` (the image service's JSON mirror, written from the rows)
do not bounce back: a JSON whose digest the state already holds, not refused, is skipped.

A deleted product's rows go with it, each copied to ``product_images_removed`` first.

``migrate_images --follow`` installs it on a tenant whose checks pass, ``--unfollow`` removes it,
``finalize_images`` removes it with the column, ``restore_images_json --follow`` puts it back. The function's
text is generated here; a tenant that follows an older text is listed by ``--status`` as needing
``--follow`` again.
"""

from __future__ import annotations

import functools
import hashlib

from django.db import connection, transaction
from psycopg import sql

from products.migration import reconcile
from products.migration.preflight import (
    FOLLOWER_DISABLED,
    FOLLOWER_TRIGGER,
    FOLLOWER_VERSION,
    FOLLOWER_VERSION_FOR,
    references_query,
)
from products.migration.source import json_digest
from stoflow.raw_sql import as_text, fetch_rows, table
from stoflow.tenants.citus import allow_triggers, is_citus

FUNCTION = "stoflow_follow_images"
TRIGGER = FOLLOWER_TRIGGER
REMOVED_BY = "follower"  # product_images_removed.removed_by of the rows the follower removes
OUTDATED = "outdated: run --follow again"  # installed by another version of this code
DISABLED = "disabled: run --follow again"  # there, but its trigger does not fire: JSON writes go unfollowed
# Written in the function's comment: which text a tenant runs (``--status`` compares it with this code's).
VERSION_PREFIX = "stoflow follower "

# One plan per statement and session: a custom plan of the plan query, made again on every row, cost more to make
# than to run (about 4 ms against 1 ms on the 30x set, bench/two_writers.py); the generic one uses the same
# indexes (the product's id, its rows by product). Not on Citus, which cannot plan a distributed statement
# whose values are parameters ("could not create distributed plan"): it plans each row's statements anew.
GENERIC_PLANS = "SET plan_cache_mode = force_generic_plan\n"

_FUNCTION = """CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
{plan_cache_mode}AS $follow$
DECLARE
    _product_id bigint;
    _digest uuid;
{declarations}
    _key record;
    _pointing record;
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO {removed_images} (image_id, product_id, url, "order", is_label, created_at, updated_at,
                                      removed_at, removed_by)
        SELECT pi.id, pi.product_id, pi.url, pi."order", pi.is_label, pi.created_at, pi.updated_at, now(),
               {removed_by_deleted}
        FROM {product_images} AS pi WHERE pi.product_id = OLD.id;
        DELETE FROM {product_images} WHERE product_id = OLD.id;
        DELETE FROM {json_state} WHERE product_id = OLD.id;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.images IS NOT DISTINCT FROM OLD.images THEN
        RETURN NULL;
    END IF;
    _product_id := NEW.id;
    _digest := {new_json_digest};
    -- Already reconciled with this JSON (the image service records the JSON it mirrors from the rows).
    IF EXISTS (SELECT 1 FROM {json_state} AS st
               WHERE st.product_id = _product_id AND st.refused IS NULL
                 AND st.json_digest IS NOT DISTINCT FROM _digest) THEN
        RETURN NULL;
    END IF;
    SELECT * INTO {targets} FROM ({plan}) AS plan;
    -- A photo another table points at by a key that keeps it from being deleted (preflight.REFERENCES says which):
    -- deleting it would fail the writer's statement. The product keeps its rows and is recorded as refused. With
    -- no key, nothing else is read.
    IF _delete_ids IS NOT NULL THEN
        FOR _key IN {references} LOOP
            CONTINUE WHEN NOT _key.blocks;
            FOR _pointing IN EXECUTE _key.count_query USING _delete_ids LOOP
                _product_ids := ARRAY[_product_id];
                _json_digests := ARRAY[_digest];
                _rows_digests := ARRAY[NULL::uuid];  -- the rows stay as they were, not what the JSON yields
                _refusals := ARRAY[{refusal}];
                {record_state};
                RETURN NULL;
            END LOOP;
        END LOOP;
    END IF;
{statements}
    RETURN NULL;
END
$follow$"""

_TRIGGER = """CREATE OR REPLACE TRIGGER {trigger}
AFTER INSERT OR DELETE OR UPDATE OF images ON {products}
FOR EACH ROW EXECUTE FUNCTION {function}()"""


def _variable(name: str) -> sql.Composable:
    return sql.Identifier("_" + name)


def function_sql(schema: str) -> sql.Composed:
    """The CREATE FUNCTION of the tenant's follower, generated from ``reconcile``."""
    # On the worker, in the trigger: the identity defaults and now() (reconcile.STATEMENTS says why).
    statements = reconcile.statements(schema, _variable, sql.Literal(REMOVED_BY), sql.SQL("now()"), routed=False)
    declarations = sql.SQL("\n").join(
        sql.SQL("    {} {};").format(_variable(name), sql.SQL(reconcile.ARRAY_TYPES[name]))
        for name in reconcile.PLAN_ARRAYS
    )
    return sql.SQL(_FUNCTION).format(
        function=sql.Identifier(schema, FUNCTION),
        plan_cache_mode=sql.SQL("" if is_citus() else GENERIC_PLANS),
        declarations=declarations,
        removed_images=table(schema, "product_images_removed"),
        product_images=table(schema, "product_images"),
        references=references_query(schema, sql.Literal("$1")),
        refusal=reconcile.refusal(
            *(sql.SQL(name) for name in ("_pointing.photos", "_pointing.pointing_rows", "_key.key", "_key.on_delete"))
        ),
        json_state=table(schema, "product_json_state"),
        new_json_digest=json_digest(sql.SQL("NEW.images")),
        removed_by_deleted=sql.Literal(f"{REMOVED_BY}: product deleted"),
        targets=sql.SQL(", ").join(_variable(name) for name in reconcile.PLAN_ARRAYS),
        plan=reconcile.plan_query(schema, sql.SQL("p.id = _product_id")),
        record_state=statements[-1],
        statements=sql.SQL("\n").join(sql.SQL("    {};").format(statement) for statement in statements),
    )


@functools.cache
def version() -> str:
    """The digest of the follower's text with its schema name left out: the same for every tenant, so it is
    rendered once per process (``--status`` and the preflight ask it for every tenant)."""
    schema = "tenant"
    text = as_text(function_sql(schema)).replace(as_text(sql.Identifier(schema)), "{schema}")
    return VERSION_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:16]


def install(schema: str) -> None:
    """Create or replace the tenant's follower function and trigger (in the caller's transaction, if any)."""
    with transaction.atomic(), connection.cursor() as cursor:
        allow_triggers()
        # No parameters: the text is sent as it is (its regexes and format strings hold % signs).
        cursor.execute(as_text(function_sql(schema)))
        cursor.execute(
            as_text(
                sql.SQL("COMMENT ON FUNCTION {}() IS {}").format(
                    sql.Identifier(schema, FUNCTION), sql.Literal(version())
                )
            )
        )
        cursor.execute(
            as_text(
                sql.SQL(_TRIGGER).format(
                    trigger=sql.Identifier(TRIGGER),
                    products=table(schema, "products"),
                    function=sql.Identifier(schema, FUNCTION),
                )
            )
        )


def install_and_catch_up(schema: str, run_name: str) -> reconcile.Reconciled:
    """Install the follower, then reconcile the products whose JSON changed before it was there, in one
    transaction: creating the trigger locks products against writes until the commit, so no write falls
    between the last batch and the trigger."""
    with transaction.atomic():
        install(schema)
        return reconcile.reconcile(schema, reconcile.stale(schema), {}, run_name)


def uninstall(schema: str) -> None:
    """Drop the tenant's follower trigger and function, if there (in the caller's transaction, if any)."""
    with transaction.atomic(), connection.cursor() as cursor:
        allow_triggers()
        cursor.execute(
            as_text(
                sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(TRIGGER), table(schema, "products"))
            )
        )
        cursor.execute(as_text(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(sql.Identifier(schema, FUNCTION))))


def installed_version(schema: str) -> str | None:
    """The version the tenant's follower runs (None: no follower: no trigger on products, or no function)."""
    rows = fetch_rows(sql.SQL(FOLLOWER_VERSION), {"schema": schema, "trigger": TRIGGER})
    if not rows:
        return None
    return rows[0][0]


def follows(schema: str) -> bool:
    return installed_version(schema) is not None


def describe(schema: str) -> str:
    """The tenant's follower in a word or two, for ``--status`` and the admin: on, off, or outdated."""
    return described(installed_version(schema), version())


def describe_many(schemas: list[str]) -> dict[str, str]:
    """``describe`` for many tenants in one query (the admin's seller picker, a page of sellers at a time)."""
    if not schemas:
        return {}
    rows = fetch_rows(
        sql.SQL(
            "SELECT s.name, (" + FOLLOWER_VERSION_FOR.format(schema="s.name") + ") "
            "FROM unnest(%(schemas)s::text[]) AS s(name)"
        ),
        {"schemas": schemas, "trigger": TRIGGER},
    )
    current = version()
    return {schema: described(installed, current) for schema, installed in rows}


def described(installed: str | None, current: str) -> str:
    """A follower that runs ``installed`` (None: none), in a word or two: on, off, disabled or outdated."""
    if installed is None:
        return "off"
    if installed == FOLLOWER_DISABLED:
        return DISABLED
    return "on" if installed == current else OUTDATED
