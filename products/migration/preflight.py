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
from stoflow.raw_sql import as_text, bind, fetch_result_sets, fetch_rows, table
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
    # The keys' counts are not run here (no ids); REFERENCES' format() strings hold % signs, which bind() would
    # read as placeholders.
    keys = sql.SQL(as_text(references_query(schema, sql.Literal("NULL"))).replace("%", "%%"))
    queries = [sql.SQL(_COLUMNS), keys, sql.SQL(FOLLOWER_VERSION), url_search_index.STATE]
    queries += [sql.SQL(_OBJECTS_ON_PRODUCT_IMAGES)] if writes else []
    params |= {"trigger": FOLLOWER_TRIGGER, **url_search_index.STATE_PARAMS}
    # One round trip (a thousand small tenants: one statement fewer each); no table, no objects either.
    column_rows, key_rows, follower_rows, [index_row], *object_rows = fetch_result_sets(
        [bind(query, params) for query in queries]
    )
    columns: dict[str, dict[str, tuple[str, bool, bool]]] = {}
    for table_name, column, type_name, not_null, has_default in column_rows:
        columns.setdefault(table_name, {})[column] = (type_name, not_null, has_default)
    preflight = TenantPreflight(
        schema,
        referencing_keys=[f"{key} ON DELETE {on_delete}" for key, on_delete, _, _ in key_rows],
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

ON_DELETE = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
# Other tables' foreign keys pointing at the tenant's product_images ({product_images}, the table's name as a
# literal; none without the table), one row per key: the key (schema.table(columns)), its ON DELETE action, whether
# deleting a photo it points at fails (``blocks``), and the query counting, per product, the photos of the image ids
# {ids} that rows point at and those rows. The preflight lists the keys in the report; the follower runs it before
# it deletes (PL/pgSQL, the ids as $1), --sync, --force and the follower's catch-up before theirs
# (products.migration.reconcile): a product whose delete would fail keeps its rows and is recorded as refused, so
# nothing fails the writer's statement or stops a run. A delete fails for NO ACTION and RESTRICT; for SET NULL on a
# NOT NULL column (of the ones it sets); and is taken to fail for SET DEFAULT, whose default may name no image.
# CASCADE and SET NULL remove or clear the pointing rows, counted in the report. (Not followed: a CASCADE whose
# rows other keys, in turn, keep from being deleted; the database then refuses the writer's statement.)
# Found through the ON DELETE trigger each key puts on product_images (pg_trigger is indexed by table;
# pg_constraint is not by the referenced one, and its scan grew with every tenant's constraints, PostgreSQL 18
# adding one per NOT NULL column: 24 ms a tenant with a thousand tenants, against 0.2 ms); a key inherited by a
# partition is its parent's, listed and counted once, through the parent.
REFERENCES = """SELECT format('%s.%s(%s)', rn.nspname, rc.relname, referencing.columns) AS key,
       {on_delete} AS on_delete,
       c.confdeltype IN ('a', 'r', 'd') OR (c.confdeltype = 'n' AND EXISTS (
           SELECT 1 FROM pg_attribute AS a
           WHERE a.attrelid = c.conrelid AND a.attnotnull
             AND a.attnum = ANY(COALESCE(NULLIF(c.confdelsetcols, '{{}}'), c.conkey)))) AS blocks,
       format('SELECT pi.product_id, count(DISTINCT pi.id) AS photos, count(*) AS pointing_rows '
              'FROM %s AS r JOIN %s AS pi ON (%s) = (%s) WHERE pi.id = ANY(%s) GROUP BY pi.product_id',
              c.conrelid::regclass, c.confrelid::regclass, referencing.qualified, referenced.qualified, {ids})
           AS count_query
FROM pg_trigger AS t
JOIN pg_constraint AS c ON c.oid = t.tgconstraint
JOIN pg_class AS rc ON rc.oid = c.conrelid
JOIN pg_namespace AS rn ON rn.oid = rc.relnamespace
CROSS JOIN LATERAL (
    SELECT string_agg(a.attname::text, ', ' ORDER BY k.n) AS columns,
           string_agg('r.' || quote_ident(a.attname), ', ' ORDER BY k.n) AS qualified
    FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
    JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
) AS referencing
CROSS JOIN LATERAL (
    SELECT string_agg('pi.' || quote_ident(a.attname), ', ' ORDER BY k.n) AS qualified
    FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, n)
    JOIN pg_attribute AS a ON a.attrelid = c.confrelid AND a.attnum = k.attnum
) AS referenced
WHERE t.tgrelid = to_regclass({product_images})
  AND t.tgfoid IN ('pg_catalog."RI_FKey_noaction_del"'::regproc, 'pg_catalog."RI_FKey_restrict_del"'::regproc,
                   'pg_catalog."RI_FKey_cascade_del"'::regproc, 'pg_catalog."RI_FKey_setnull_del"'::regproc,
                   'pg_catalog."RI_FKey_setdefault_del"'::regproc)
  AND c.conparentid = 0
ORDER BY rn.nspname, rc.relname, referencing.columns"""
# The ON DELETE action of a key ``c`` in words (ON_DELETE).
_ON_DELETE_WORD = (
    "CASE c.confdeltype " + " ".join(f"WHEN '{code}' THEN '{word}'" for code, word in ON_DELETE.items()) + " END"
)


def references_query(schema: str, ids: sql.Composable) -> sql.Composed:
    """REFERENCES for the tenant's product_images, its count queries reading the image ids ``ids`` (the SQL text
    of a bigint[] as a literal: ``$1`` in the follower, an ARRAY[...] in reconcile)."""
    return sql.SQL(REFERENCES).format(
        product_images=sql.Literal(as_text(table(schema, "product_images"))),
        on_delete=sql.SQL(_ON_DELETE_WORD),
        ids=ids,
    )


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
