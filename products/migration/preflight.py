"""What must hold before migrate_images writes anything: on the server, then in each tenant.

``server_problems`` stops the whole command (exit 2, nothing done): an old server or a pooler in transaction mode
(``connection_problems``, which finalize_images and restore_images_json check too), no run ledger.

``check_tenant`` looks at one tenant's catalog, before any write and without locking its tables: the tables,
the columns the migration reads and writes with their types, NOT NULL columns it does not fill, and anything on
product_images that could refuse or rewrite its rows which Django's migrations did not create (triggers,
constraints, unique indexes, rules). A tenant with problems is refused with the reasons and not touched; the
run goes on with the others.

A finalized tenant (``finalize_images`` copied its JSON to ``legacy_product_images`` and dropped
``products.images``) is no problem here: ``TenantPreflight.finalized`` says so, and the products columns,
the JSON's among them, are not checked.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import connection
from psycopg import sql

from products import url_search_index
from stoflow.raw_sql import bind, fetch_result_sets, fetch_rows
from stoflow.tenants.sessions import transaction_pooled

MINIMUM_SERVER_VERSION = 160000  # pg_input_is_valid (bad JSON read safely), subqueries without an alias
ARCHIVE_TABLE = "legacy_product_images"  # finalize_images' copy of the JSON, present once a tenant is finalized

INTEGERS = ("smallint", "integer", "bigint")
TIMESTAMPS = ("timestamp with time zone", "timestamp without time zone")
TEXTS = ("text", "character varying")
# Columns the migration reads or writes, and the types it accepts (None: any type).
PRODUCTS_COLUMNS = {"id": INTEGERS, "images": ("jsonb",), "created_at": TIMESTAMPS, "deleted_at": None}
IMAGES_COLUMNS = {
    "id": INTEGERS,
    "product_id": ("integer", "bigint"),
    "url": TEXTS,
    "order": ("integer", "bigint"),
    "is_label": ("boolean",),
    "created_at": ("timestamp with time zone",),
    "updated_at": ("timestamp with time zone",),
}
REMOVED_COLUMNS = {  # --force and --sync copy removed rows there
    "image_id": INTEGERS,
    "product_id": INTEGERS,
    "url": TEXTS,
    "order": ("integer", "bigint"),
    "is_label": ("boolean",),
    "created_at": ("timestamp with time zone",),
    "updated_at": ("timestamp with time zone",),
    "removed_at": ("timestamp with time zone",),
    "removed_by": TEXTS,
}
# What Django's migrations put on product_images (pg_get_constraintdef / the tail of pg_get_indexdef).
KNOWN_CONSTRAINTS = {
    "PRIMARY KEY (id)",
    'UNIQUE (product_id, "order")',
    "CHECK ((NOT (url = ''::text)))",
    'CHECK (("order" >= 0))',
}
KNOWN_FOREIGN_KEY = re.compile(r"^FOREIGN KEY \(product_id\) REFERENCES (\S+\.)?products\(id\)")
KNOWN_UNIQUE_INDEXES = {"USING btree (product_id) WHERE is_label"}  # one label per product


@dataclass
class TenantPreflight:
    schema: str
    problems: list[str] = field(default_factory=list)  # why the tenant is refused; empty: it may be migrated
    finalized: bool = False  # no products.images and a legacy_product_images table: finalize_images ran
    # Other tables' foreign keys to product_images ("table(columns) ON DELETE action"): ids must survive.
    referencing_keys: list[str] = field(default_factory=list)
    follower_version: str | None = None  # the version the tenant's follower runs (None: it has none)
    url_index: url_search_index.IndexState | None = None  # the image list's URL search index (0006)


TRANSACTION_POOLED = (
    "The database connection goes through a pooler in transaction mode (PgBouncer pool_mode=transaction or "
    "statement): session settings (search_path, timeouts) and the tenant locks the image commands rely on do "
    "not survive between transactions. Connect directly to PostgreSQL, or through a session-mode pool."
)


def connection_problems() -> list[str]:
    """What keeps any of the image commands from running at all: an old server, or a pooler that hands out
    server sessions per transaction (their tenant locks and session settings would stay behind on one)."""
    problems = []
    if connection.pg_version < MINIMUM_SERVER_VERSION:
        problems.append(f"PostgreSQL 16 or newer is needed; this server is version {connection.pg_version}.")
    if transaction_pooled():
        problems.append(TRANSACTION_POOLED)
    return problems


def server_problems() -> list[str]:
    """What keeps migrate_images from running at all: ``connection_problems``, no run ledger."""
    problems = connection_problems()
    ((ledger,),) = fetch_rows(sql.SQL("SELECT to_regclass('public.run_ledger') IS NOT NULL"))
    if not ledger:
        problems.append("No run ledger (public.run_ledger): run `manage.py migrate_schemas --shared` first.")
    return problems


def check_tenant(
    schema: str, *, writes: bool = True, removes_rows: bool = False, accepted: Iterable[str] = ()
) -> TenantPreflight:
    """The tenant's problems, read from the catalog. ``writes``: also what could refuse or rewrite the rows
    (``--check`` only reads); ``removes_rows``: --force or --sync, which copy rows to product_images_removed;
    ``accepted``: names of triggers, constraints, indexes or rules on product_images the operator reviewed."""
    tables = ["products", "product_images", ARCHIVE_TABLE] + (["product_images_removed"] if removes_rows else [])
    params = {"schema": schema, "tables": tables}
    queries = [sql.SQL(text) for text in (_COLUMNS, REFERENCING_KEYS, FOLLOWER_VERSION)] + [url_search_index.STATE]
    queries += [sql.SQL(_OBJECTS_ON_PRODUCT_IMAGES)] if writes else []
    params |= {"trigger": FOLLOWER_TRIGGER, **url_search_index.STATE_PARAMS}
    # One round trip (a thousand small tenants: one statement fewer each); no table, no objects either.
    column_rows, key_rows, follower_rows, [index_row], *object_rows = fetch_result_sets(
        [bind(query, params) for query in queries]
    )
    columns: dict[str, dict[str, tuple[str, bool, bool]]] = {}
    for table, column, type_name, not_null, has_default in column_rows:
        columns.setdefault(table, {})[column] = (type_name, not_null, has_default)
    preflight = TenantPreflight(
        schema,
        referencing_keys=[describe_key(*row) for row in key_rows],
        follower_version=follower_rows[0][0] if follower_rows else None,
        url_index=url_search_index.IndexState.from_row(*index_row),
    )
    problems = preflight.problems
    missing = [table for table in ("products", "product_images") if table not in columns]
    if missing:
        problems.append(f"no {' or '.join(missing)} table: run `manage.py migrate_schemas` first")
        return preflight
    products = columns["products"]
    preflight.finalized = "images" not in products and ARCHIVE_TABLE in columns
    if not preflight.finalized:
        problems += _column_problems("products", products, PRODUCTS_COLUMNS, fills_rows=False)
    problems += _column_problems("product_images", columns["product_images"], IMAGES_COLUMNS, fills_rows=writes)
    if removes_rows:
        if "product_images_removed" not in columns:
            problems.append("no product_images_removed table (--force and --sync copy removed rows there)")
        else:
            problems += _column_problems("product_images_removed", columns["product_images_removed"], REMOVED_COLUMNS)
    if writes:
        problems += _unknown_objects(object_rows[0], set(accepted))
    return preflight


def _column_problems(
    table: str, present: dict[str, tuple[str, bool, bool]], wanted: dict[str, tuple[str, ...] | None], fills_rows=True
) -> list[str]:
    problems = []
    for column, types in wanted.items():
        if column not in present:
            problems.append(f"{table}.{column} is missing")
        elif types is not None and present[column][0] not in types:
            problems.append(f"{table}.{column} is {present[column][0]}, not {' or '.join(types)}")
    if fills_rows:
        for column, (_, not_null, has_default) in present.items():
            if column not in wanted and not_null and not has_default:
                problems.append(f"{table}.{column} is NOT NULL without a default: the migration's rows cannot fill it")
    return problems


_COLUMNS = """SELECT c.relname, a.attname, format_type(a.atttypid, NULL), a.attnotnull,
       a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_attribute AS a ON a.attrelid = c.oid
WHERE n.nspname = %(schema)s AND c.relname = ANY(%(tables)s) AND c.relkind IN ('r', 'p')
  AND a.attnum > 0 AND NOT a.attisdropped"""

_OBJECTS_ON_PRODUCT_IMAGES = """
-- The table's oid, looked up once: compared row by row, to_regclass ran for every trigger and constraint of
-- every tenant (4 ms a tenant with a thousand tenants) instead of an index lookup.
WITH target AS (SELECT to_regclass(quote_ident(%(schema)s) || '.product_images') AS oid)
SELECT 'trigger', t.tgname, pg_get_triggerdef(t.oid)
FROM target JOIN pg_trigger AS t ON t.tgrelid = target.oid WHERE NOT t.tgisinternal
UNION ALL
SELECT 'constraint', c.conname, pg_get_constraintdef(c.oid)
FROM target JOIN pg_constraint AS c ON c.conrelid = target.oid
-- NOT NULL constraints (in pg_constraint from PostgreSQL 18 on) are the columns' business, checked above.
WHERE c.contype <> 'n'
UNION ALL
-- The index's bare name, as --allow takes it (regclass::text would qualify and quote it: tenant_a."Url.Key").
SELECT 'unique index', ic.relname, pg_get_indexdef(i.indexrelid)
FROM target JOIN pg_index AS i ON i.indrelid = target.oid JOIN pg_class AS ic ON ic.oid = i.indexrelid
WHERE i.indisunique
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conrelid = target.oid AND c.conindid = i.indexrelid)
UNION ALL
SELECT 'rule', r.rulename, r.definition FROM pg_rules AS r
WHERE r.schemaname = %(schema)s AND r.tablename = 'product_images'
ORDER BY 1, 2"""


# The follower (products/migration/follower.py): its trigger on products, and the version its function's comment
# names. The preflight reads it with the rest of the catalog; the follower module installs and compares it.
FOLLOWER_TRIGGER = "stoflow_follow_images"
# What a follower trigger (``t``, its function ``f``) runs: its function's comment ('' without one), or
# FOLLOWER_DISABLED for a trigger that does not fire in the app's sessions (ALTER TABLE ... DISABLE TRIGGER, or
# ENABLE REPLICA): there, writes of the JSON go unfollowed although the trigger is there. One row, or none without
# the trigger, for the tenant whose schema name ``{schema}`` gives: the preflight's query, and a scalar subquery
# per tenant for the admin's pages.
FOLLOWER_DISABLED = "disabled"
FOLLOWER_VERSION_FOR = """SELECT COALESCE(CASE WHEN t.tgenabled IN ('O', 'A') THEN obj_description(f.oid, 'pg_proc')
                    ELSE {disabled} END, '')
FROM pg_trigger AS t JOIN pg_proc AS f ON f.oid = t.tgfoid
WHERE t.tgrelid = to_regclass(quote_ident({schema}) || '.products') AND t.tgname = %(trigger)s""".replace(
    "{disabled}", f"'{FOLLOWER_DISABLED}'"
)
FOLLOWER_VERSION = FOLLOWER_VERSION_FOR.format(schema="%(schema)s")

# Other tables' foreign keys that point at the tenant's product_images: schema, table, columns, ON DELETE.
# Found through pg_depend (a foreign key depends on the columns it references; indexed by the referenced table):
# pg_constraint has no index on confrelid, and its scan grew with every tenant's constraints (PostgreSQL 18 adds
# one per NOT NULL column): 24 ms a tenant with a thousand tenants, against 0.2 ms.
REFERENCING_KEYS = """WITH target AS (SELECT to_regclass(quote_ident(%(schema)s) || '.product_images') AS oid)
SELECT n.nspname, r.relname,
       (SELECT array_agg(a.attname::text ORDER BY k.n)
        FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
        JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.attnum),
       c.confdeltype
FROM target
JOIN pg_constraint AS c ON c.oid IN (
    SELECT d.objid FROM pg_depend AS d
    WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = target.oid AND d.classid = 'pg_constraint'::regclass
)
JOIN pg_class AS r ON r.oid = c.conrelid
JOIN pg_namespace AS n ON n.oid = r.relnamespace
WHERE c.contype = 'f' AND c.confrelid = target.oid
  AND c.conparentid = 0  -- a partition's key is its parent's, listed once
ORDER BY 1, 2, 3"""
ON_DELETE = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def describe_key(schema: str, table: str, columns: list[str], on_delete: str) -> str:
    return f"{schema}.{table}({', '.join(columns)}) ON DELETE {ON_DELETE.get(on_delete, on_delete)}"


def _unknown_objects(objects: list[tuple], accepted: set[str]) -> list[str]:
    """Triggers, constraints, unique indexes and rules on product_images that Django's migrations did not make."""
    problems = []
    for kind, name, definition in objects:
        if name in accepted or _known(kind, definition):
            continue
        problems.append(
            f"product_images has a {kind} the migration does not know, {name}: {definition[:200]} "
            f"(review it, then pass --allow {shlex.quote(name)})"
        )
    return problems


def _known(kind: str, definition: str) -> bool:
    if kind == "constraint":
        return definition in KNOWN_CONSTRAINTS or bool(KNOWN_FOREIGN_KEY.match(definition))
    if kind == "unique index":
        return any(definition.endswith(tail) for tail in KNOWN_UNIQUE_INDEXES)
    return False
