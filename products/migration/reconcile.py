"""A product's rows brought to what its JSON yields, keeping the ids of the rows whose URL stays.

Once ``product_images`` is the source of truth, other tables point at its ids (marketplace upload records,
say), so nothing rebuilds a product by deleting and inserting its rows. Each row is paired with an image
of the JSON by (product, url, occurrence): the k-th row of a URL by id with the k-th image of that URL by
order. Then

- a paired row keeps its id; a changed order or label is updated in place, and its ``created_at`` only when
  the JSON's entry gives one that differs (an entry without one keeps the row's own);
- a row left unpaired (its URL left the JSON, or fewer copies of it remain) is deleted, first copied to
  ``product_images_removed`` when its URL is nowhere in the product's JSON: no photo is lost;
- an image left unpaired is inserted.

A product whose JSON the rule refuses (``status.error``) keeps its rows as they are. Every product looked at
gets its ``product_json_state``: the digest of the JSON reconciled (``md5`` of its text), of the rows it yields
(``source.ROWS_DIGEST``, for the validation) and, if refused, why.

One query (``PLAN``) reads the JSON once, through ``source``, and returns what to do as arrays; the
statements (``STATEMENTS``) apply them, each a plain statement over ``unnest`` of those arrays. The same
text serves ``migrate_images --sync``/``--force`` (values bound as query parameters) and the follower's
trigger function (``follower``: the arrays are PL/pgSQL variables), so there is one rule and one way to
apply it.

Why two UPDATEs: a unique index that is not deferrable is checked row by row, so rows swapping orders in one
statement collide half-way. The rows that move go first to orders no row holds or will hold (the smallest
free ones, never past the integer maximum), all as photos, then to their final orders and labels, as the
image service does (``products.images._arrange``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from psycopg import sql

from products.migration.preflight import references_query
from products.migration.source import json_digest, source_ctes, status_rows_digest
from stoflow.raw_sql import as_text, execute, fetch_result_sets, fetch_rows, table

# The arrays PLAN returns, in this order; STATEMENTS name them with the same names.
PLAN_ARRAYS = (
    "product_ids",  # every product looked at
    "json_digests",  # its JSON's digest (uuid), same order
    "refusals",  # why its JSON was refused, or NULL, same order
    "rows_digests",  # the digest of the rows its JSON yields (source.ROWS_DIGEST), NULL where refused
    "changed_ids",  # the products whose rows change
    "emptied_ids",  # of those, the products whose JSON now yields no image: every row goes
    "aside_ids",  # rows deleted whose URL left the JSON: copied aside first
    "delete_ids",  # every row deleted
    "move_ids",  # rows whose order or label changes
    "free_orders",  # the free order each of them passes through, same order
    "update_ids",  # rows changed in place (moved, or a new created_at)
    "update_orders",
    "update_labels",
    "update_created_ats",
    "insert_product_ids",  # images inserted
    "insert_urls",
    "insert_orders",
    "insert_labels",
    "insert_created_ats",
)

# The casts PostgreSQL needs to read each array parameter (a NULL array has no type of its own).
ARRAY_TYPES = {
    "product_ids": "bigint[]",
    "json_digests": "uuid[]",
    "refusals": "text[]",
    "rows_digests": "uuid[]",
    "changed_ids": "bigint[]",
    "emptied_ids": "bigint[]",
    "aside_ids": "bigint[]",
    "delete_ids": "bigint[]",
    "move_ids": "bigint[]",
    "free_orders": "integer[]",
    "update_ids": "bigint[]",
    "update_orders": "integer[]",
    "update_labels": "boolean[]",
    "update_created_ats": "timestamptz[]",
    "insert_product_ids": "bigint[]",
    "insert_urls": "text[]",
    "insert_orders": "integer[]",
    "insert_labels": "boolean[]",
    "insert_created_ats": "timestamptz[]",
}

_PLAN = """WITH {source},
target AS (
    SELECT y.product_id, y.url, y."order", y.is_label, y.created_at, y.entry_created_at,
           row_number() OVER (PARTITION BY y.product_id, y.url ORDER BY y."order") AS occurrence
    FROM yielded AS y
),
current AS (
    SELECT pi.id, pi.product_id, pi.url, pi."order", pi.is_label, pi.created_at,
           row_number() OVER (PARTITION BY pi.product_id, pi.url ORDER BY pi.id) AS occurrence
    FROM {product_images} AS pi
    JOIN status AS s ON s.id = pi.product_id AND s.error IS NULL
),
paired AS (
    SELECT c.id,
           COALESCE(c.product_id, t.product_id) AS product_id,
           COALESCE(t.url, c.url) AS url,
           c.id IS NOT NULL AND t.url IS NOT NULL AS kept,
           t.url IS NULL AS deleted,
           c.id IS NULL AS inserted,
           c."order" AS current_order,
           t."order" AS target_order,
           (c."order", c.is_label) IS DISTINCT FROM (t."order", t.is_label) AS moves,
           c.is_label AS current_label,
           t.is_label AS target_label,
           CASE WHEN c.id IS NULL THEN t.created_at ELSE COALESCE(t.entry_created_at, c.created_at) END
               AS target_created_at,
           t.entry_created_at IS NOT NULL AND t.entry_created_at <> c.created_at AS retimed
    FROM current AS c
    FULL JOIN target AS t ON t.product_id = c.product_id AND t.url = c.url AND t.occurrence = c.occurrence
),
-- Orders held after the deletes, or to be held: the rows that move pass through others.
used AS (
    SELECT product_id, current_order AS "order" FROM paired WHERE kept
    UNION
    SELECT product_id, target_order FROM paired WHERE NOT deleted
),
movers AS (
    SELECT id, product_id, row_number() OVER (PARTITION BY product_id ORDER BY id) AS k
    FROM paired WHERE kept AND moves
),
-- Each moving row passes through the k-th smallest free order of its product (k: its rank by id among the
-- product's movers): k - 1 plus the used orders below it. Of the product's used orders u_1 < u_2 < ... (from 0),
-- u_i - (i - 1) free ones lie below u_i, so u_i is below the k-th free order exactly when that count is at most
-- k - 1: one sort of the used orders and the movers together, by that count (a used order first at a tie), gives
-- every mover its free order.
-- Free orders stay below (used orders + movers), far from the integer maximum a used order may be. No join: a
-- mover's own search through the used orders, or a join of movers to numbered free orders (planned on the
-- product alone, k left as a filter), took time quadratic in the rows moving (3.8 s reversing 2,000 photos).
ranked AS (
    SELECT product_id, "order" - row_number() OVER (PARTITION BY product_id ORDER BY "order") + 1 AS frees_below,
           0 AS kind, NULL::bigint AS id
    FROM used WHERE "order" >= 0 AND EXISTS (SELECT FROM movers)  -- nothing to sort when no row moves
    UNION ALL
    SELECT product_id, k - 1, 1, id FROM movers
),
passing AS (
    SELECT id, (frees_below + used_below)::integer AS free_order
    FROM (
        SELECT id, kind, frees_below,
               count(*) FILTER (WHERE kind = 0)
                   OVER (PARTITION BY product_id ORDER BY frees_below, kind ROWS UNBOUNDED PRECEDING) AS used_below
        FROM ranked
    ) AS r
    WHERE kind = 1
),
products_seen AS (
    SELECT s.id, j.json_digest, s.error,
           CASE WHEN s.error IS NULL THEN {rows_digest} END AS rows_digest
    FROM status AS s
    JOIN {products} AS p ON p.id = s.id
    CROSS JOIN LATERAL (SELECT {json_digest} AS json_digest) AS j
)
-- Three aggregations, one over each CTE: a subquery per array (seventeen, each set up and torn down on every
-- run) made the plan of a 10-photo product cost 1.03 ms of CPU against 0.79, on every row the follower follows.
-- Arrays aggregated together list their rows in the same order, which is all the statements need; inserts go
-- in display order (new ids ascending).
SELECT seen.product_ids, seen.json_digests, seen.refusals, seen.rows_digests,
       changes.changed_ids, changes.emptied_ids, changes.aside_ids, changes.delete_ids,
       moved.move_ids, moved.free_orders,
       changes.update_ids, changes.update_orders, changes.update_labels, changes.update_created_ats,
       changes.insert_product_ids, changes.insert_urls, changes.insert_orders, changes.insert_labels,
       changes.insert_created_ats
FROM (
    SELECT array_agg(id ORDER BY id) AS product_ids,
           array_agg(json_digest ORDER BY id) AS json_digests,
           array_agg(error ORDER BY id) AS refusals,
           array_agg(rows_digest ORDER BY id) AS rows_digests
    FROM products_seen
) AS seen
CROSS JOIN (
    SELECT array_agg(DISTINCT product_id ORDER BY product_id) FILTER (WHERE deleted OR inserted OR moves OR retimed)
               AS changed_ids,
           array_agg(DISTINCT product_id ORDER BY product_id) FILTER (WHERE deleted AND NOT EXISTS (
               SELECT 1 FROM target AS t WHERE t.product_id = paired.product_id)) AS emptied_ids,
           array_agg(id) FILTER (WHERE deleted AND NOT EXISTS (
               SELECT 1 FROM target AS t WHERE t.product_id = paired.product_id AND t.url = paired.url)) AS aside_ids,
           array_agg(id) FILTER (WHERE deleted) AS delete_ids,
           array_agg(id) FILTER (WHERE kept AND (moves OR retimed)) AS update_ids,
           array_agg(target_order) FILTER (WHERE kept AND (moves OR retimed)) AS update_orders,
           array_agg(target_label) FILTER (WHERE kept AND (moves OR retimed)) AS update_labels,
           array_agg(target_created_at) FILTER (WHERE kept AND (moves OR retimed)) AS update_created_ats,
           array_agg(product_id ORDER BY product_id, target_order) FILTER (WHERE inserted) AS insert_product_ids,
           array_agg(url ORDER BY product_id, target_order) FILTER (WHERE inserted) AS insert_urls,
           array_agg(target_order ORDER BY product_id, target_order) FILTER (WHERE inserted) AS insert_orders,
           array_agg(target_label ORDER BY product_id, target_order) FILTER (WHERE inserted) AS insert_labels,
           array_agg(target_created_at ORDER BY product_id, target_order) FILTER (WHERE inserted)
               AS insert_created_ats
    FROM paired
) AS changes
CROSS JOIN (SELECT array_agg(id) AS move_ids, array_agg(free_order) AS free_orders FROM passing) AS moved"""


# Ids the statements give the rows they insert, reserved from each table's sequence once the plan is known
# (``RESERVE``): an identity default is volatile, and Citus would pull such an INSERT to the coordinator, where
# a row the database refuses loses its SQLSTATE. Name: (table, the plan's array with one slot per row).
RESERVED_IDS = {
    "insert_ids": ("product_images", "insert_product_ids"),
    "removed_ids": ("product_images_removed", "aside_ids"),
}
ARRAY_TYPES |= {name: "bigint[]" for name in RESERVED_IDS}
# ``count`` ids from ``table``'s sequence (none for a NULL count); the sequence looked up once, not per id.
RESERVE = """ARRAY(SELECT nextval(s.sequence)
      FROM (SELECT pg_get_serial_sequence({table}, 'id')::regclass AS sequence OFFSET 0) AS s,
           generate_series(1, {count}))"""

# Applied in this order: copy aside, delete (frees orders and the label), pass movers through free orders,
# final orders and labels, inserts, then the state. Each names its arrays as {name}; a statement with
# nothing to do touches no row. Sent through a Citus coordinator (``routed``: migrate_images, the image
# service), each reads a table of the tenant ({join_products}: the products the rows belong to, which the caller
# holds locked), gives new rows reserved ids ({..._id_column}, {..._id_value}) and writes the time as a value
# ({now}), so Citus runs it whole on the tenant's worker: it pulls an INSERT ... SELECT that reads only arrays,
# or relies on an identity default, to the coordinator, and rewrites one holding now() wrongly (Citus 13.1).
# The follower's trigger already runs on the worker, and Citus cannot plan its PL/pgSQL variables in those
# places: there the statements keep the identity defaults and now().
STATEMENTS = (
    """INSERT INTO {removed_images} ({removed_id_column}image_id, product_id, url, "order", is_label, created_at,
                              updated_at, removed_at, removed_by)
SELECT {removed_id_value}pi.id, pi.product_id, pi.url, pi."order", pi.is_label, pi.created_at, pi.updated_at, {now},
       {run_name}
FROM {product_images} AS pi WHERE pi.id = ANY({aside_ids})""",
    """DELETE FROM {product_images} WHERE id = ANY({delete_ids})""",
    """UPDATE {product_images} AS pi SET "order" = m.free_order, is_label = false
FROM unnest({move_ids}, {free_orders}) AS m(id, free_order) WHERE pi.id = m.id""",
    """UPDATE {product_images} AS pi
SET "order" = u."order", is_label = u.is_label, created_at = u.created_at, updated_at = {now}
FROM unnest({update_ids}, {update_orders}, {update_labels}, {update_created_ats})
    AS u(id, "order", is_label, created_at)
WHERE pi.id = u.id""",
    """INSERT INTO {product_images} ({insert_id_column}product_id, url, "order", is_label, created_at, updated_at)
SELECT {insert_id_value}n.product_id, n.url, n."order", n.is_label, n.created_at, {now}
FROM unnest({insert_product_ids}, {insert_urls}, {insert_orders}, {insert_labels}, {insert_created_ats})
    WITH ORDINALITY AS n(product_id, url, "order", is_label, created_at, k)
{join_products}""",
    """INSERT INTO {json_state} AS st (product_id, json_digest, rows_digest, refused, recorded_at)
SELECT n.product_id, n.json_digest, n.rows_digest, n.refused, {now}
FROM unnest({product_ids}, {json_digests}, {rows_digests}, {refusals})
    AS n(product_id, json_digest, rows_digest, refused)
{join_products}
ON CONFLICT (product_id) DO UPDATE
SET json_digest = EXCLUDED.json_digest, rows_digest = EXCLUDED.rows_digest, refused = EXCLUDED.refused,
    recorded_at = EXCLUDED.recorded_at""",
)
# The array each of STATEMENTS reads its rows from, in the same order: empty, the statement has nothing to do,
# and reconcile() does not send it (on Citus each is a round trip to the tenant's worker: a --sync of the demo
# catalogue's 33 changed products cost 1.76x plain PostgreSQL's time with every statement sent).
DRIVING_ARRAYS = ("aside_ids", "delete_ids", "move_ids", "update_ids", "insert_product_ids", "product_ids")
assert len(DRIVING_ARRAYS) == len(STATEMENTS)
# What ``routed`` fills in (the follower: nothing, and now()).
_ROUTED = {
    "removed_id_column": "id, ",
    "removed_id_value": "({removed_ids})[row_number() OVER (ORDER BY pi.id)], ",
    "insert_id_column": "id, ",
    "insert_id_value": "({insert_ids})[n.k], ",
    "join_products": "JOIN {products} AS p ON p.id = n.product_id",
}


# Products whose rows are not known to be what their JSON yields: the JSON changed since it was last reconciled,
# was refused then, or was never recorded (``p``: the products table). --sync and the follower's catch-up
# reconcile only these.
STALE = """NOT EXISTS (
    SELECT 1 FROM {json_state} AS st
    WHERE st.product_id = p.id AND st.refused IS NULL AND st.json_digest IS NOT DISTINCT FROM {json_digest}
)"""


# Why a product keeps its rows when a key that blocks points at photos its JSON drops.
REFUSAL = """format('its JSON drops %s photo(s) that %s row(s) of %s point at (ON DELETE %s): rows kept',
       {photos}, {rows}, {key}, {on_delete})"""


def stale(schema: str) -> sql.Composed:
    """``STALE`` for the tenant."""
    return sql.SQL(STALE).format(
        json_state=table(schema, "product_json_state"), json_digest=json_digest(sql.SQL("p.images"))
    )


def plan_query(schema: str, product_filter: sql.Composable) -> sql.Composed:
    """The plan for the tenant's products matching ``product_filter`` (alias ``p``): one row of PLAN_ARRAYS."""
    return sql.SQL(_PLAN).format(
        source=source_ctes(schema, product_filter, yielded=True),
        product_images=table(schema, "product_images"),
        products=table(schema, "products"),
        rows_digest=status_rows_digest(sql.SQL("j.json_digest")),
        json_digest=json_digest(sql.SQL("p.images")),
    )


def statements(
    schema: str,
    array: Callable[[str], sql.Composable],
    run_name: sql.Composable,
    now: sql.Composable,
    *,
    routed: bool = True,
) -> list[sql.Composed]:
    """STATEMENTS for the tenant, each array written by ``array(name)`` (a query parameter, a PL/pgSQL variable);
    ``routed``: with the reserved ids (RESERVED_IDS) and the join that let Citus run them whole on the worker."""
    names = {name: array(name) for name in (*PLAN_ARRAYS, *(RESERVED_IDS if routed else ()))}
    tables = {
        "product_images": table(schema, "product_images"),
        "removed_images": table(schema, "product_images_removed"),
        "json_state": table(schema, "product_json_state"),
        "products": table(schema, "products"),
    }
    fills = {key: sql.SQL(text if routed else "").format(**names, **tables) for key, text in _ROUTED.items()}
    return [
        sql.SQL(text).format(
            run_name=run_name,
            now=now,
            **{key: value for key, value in {**tables, **fills}.items() if "{" + key + "}" in text},
            **{name: value for name, value in names.items() if "{" + name + "}" in text},
        )
        for text in STATEMENTS
    ]


def record_json_state(schema: str) -> sql.Composed:
    """The last of STATEMENTS alone, its arrays and the time as query parameters (``product_ids``,
    ``json_digests``, ``rows_digests``, ``refusals``, ``now``): the image service's mirror records the JSON it
    writes."""
    return statements(schema, parameter, sql.Literal(""), sql.Placeholder("now"))[-1]


def reserve(schema: str, table_name: str, count: sql.Composable) -> sql.Composed:
    """An array of ``count`` new ids from the sequence of the tenant's ``table_name`` (``RESERVE``)."""
    return sql.SQL(RESERVE).format(table=sql.Literal(as_text(table(schema, table_name))), count=count)


def reservations(schema: str, array: Callable[[str], sql.Composable]) -> dict[str, sql.Composed]:
    """For each of RESERVED_IDS, the expression reserving its ids (``array(name)`` as in ``statements``)."""
    return {
        name: reserve(schema, table_name, sql.SQL("cardinality({})").format(array(rows)))
        for name, (table_name, rows) in RESERVED_IDS.items()
    }


def parameter(name: str) -> sql.Composable:
    """An array as a query parameter, typed (``%(name)s::type``)."""
    return sql.SQL("{}::{}").format(sql.Placeholder(name), sql.SQL(ARRAY_TYPES[name]))


@dataclass
class Reconciled:
    """What one reconciliation did."""

    products: list[int] = field(default_factory=list)  # products looked at
    refused: dict[int, str] = field(default_factory=dict)  # product id: why its JSON was refused
    changed: list[int] = field(default_factory=list)  # products whose rows changed
    emptied: list[int] = field(default_factory=list)  # of those, products left without a row (JSON empty or null)
    rows_deleted: int = 0
    rows_kept_aside: int = 0  # of those, copied aside (their URL left the JSON)
    rows_updated: int = 0
    rows_inserted: int = 0
    references_removed: int = 0  # rows of other tables pointing at the deleted rows


def reconcile(schema: str, product_filter: sql.Composable, params: dict, run_name: str) -> Reconciled:
    """Bring the rows of the products matching ``product_filter`` (alias ``p``, values in ``params``) to what
    their JSON yields, in the caller's transaction (the caller holds their row locks)."""
    (plan,) = fetch_rows(plan_query(schema, product_filter), params)
    arrays = dict(zip(PLAN_ARRAYS, plan, strict=True))
    pointing = references(schema, arrays["delete_ids"]) if arrays["delete_ids"] else []
    held = held_by_references(pointing)
    if held:
        # Planned again without them (what the others do does not depend on them); they are recorded as refused,
        # with the JSON they have, as the follower records them.
        digests = dict(zip(arrays["product_ids"], arrays["json_digests"], strict=True))
        product_filter = sql.SQL("({}) AND p.id <> ALL(%(held_ids)s::bigint[])").format(product_filter)
        (plan,) = fetch_rows(plan_query(schema, product_filter), {**params, "held_ids": sorted(held)})
        arrays = dict(zip(PLAN_ARRAYS, plan, strict=True))
        held_ids = sorted(held)
        for name, values in (
            ("product_ids", held_ids),
            ("json_digests", [digests[product_id] for product_id in held_ids]),
            ("rows_digests", [None] * len(held)),  # the rows stay as they were, not what the JSON yields
            ("refusals", [held[product_id] for product_id in held_ids]),
        ):
            arrays[name] = (arrays[name] or []) + values
    references_removed = sum(
        pointing_rows
        for reference in pointing
        if not reference.blocks
        for product_id, (_, pointing_rows) in reference.pointing.items()
        if product_id not in held
    )
    reserved = reservations(schema, parameter)
    now, *ids = fetch_rows(
        sql.SQL("SELECT now(), {}").format(sql.SQL(", ").join(reserved.values())),
        {rows: arrays[rows] for _, rows in RESERVED_IDS.values()},
    )[0]
    values = {**arrays, **dict(zip(reserved, ids, strict=True)), "run_name": run_name, "now": now}
    applied = statements(schema, parameter, sql.Placeholder("run_name"), sql.Placeholder("now"))
    for statement, driving_array in zip(applied, DRIVING_ARRAYS, strict=True):
        if values[driving_array]:
            execute(statement, values)
    outcome = Reconciled(products=list(arrays["product_ids"] or []))
    outcome.refused = {
        product_id: reason
        for product_id, reason in zip(arrays["product_ids"] or [], arrays["refusals"] or [], strict=True)
        if reason is not None
    }
    outcome.rows_deleted = len(arrays["delete_ids"] or [])
    outcome.rows_kept_aside = len(arrays["aside_ids"] or [])
    outcome.rows_updated = len(arrays["update_ids"] or [])
    outcome.rows_inserted = len(arrays["insert_product_ids"] or [])
    outcome.changed = list(arrays["changed_ids"] or [])
    outcome.emptied = list(arrays["emptied_ids"] or [])
    outcome.references_removed = references_removed
    return outcome


def ids_array(ids: list[int]) -> str:
    """The SQL text of a bigint[] holding ``ids`` (integers only), for REFERENCES' count queries."""
    return "ARRAY[" + ",".join(str(int(image_id)) for image_id in ids) + "]::bigint[]"


def references(schema: str, image_ids: list[int]) -> list[Reference]:
    """Each foreign key pointing at the tenant's product_images, with the rows of each product that point at
    ``image_ids`` (preflight.REFERENCES, the follower's own query): two statements, one for the keys, one for all the
    counts (none without a key)."""
    # Sent without parameters (fetch_result_sets): the queries' format() strings hold % signs.
    (keys,) = fetch_result_sets([as_text(references_query(schema, sql.Literal(ids_array(image_ids))))])
    if not keys:
        return []
    counts = fetch_result_sets([count_query for _, _, _, count_query in keys])
    return [
        Reference(key, on_delete, blocks, {product_id: (photos, rows) for product_id, photos, rows in rows_by_product})
        for (key, on_delete, blocks, _), rows_by_product in zip(keys, counts, strict=True)
    ]


def held_by_references(pointing: list[Reference]) -> dict[int, str]:
    """The products whose deletes a key blocks, and why (REFUSAL; the first such key, as the follower names)."""
    blocked = {}
    for reference in pointing:
        if reference.blocks:
            for product_id, (photos, pointing_rows) in reference.pointing.items():
                blocked.setdefault(product_id, (photos, pointing_rows, reference.key, reference.on_delete))
    if not blocked:
        return {}
    columns = list(zip(*((product_id, *details) for product_id, details in sorted(blocked.items())), strict=True))
    # REFUSAL's format() holds % signs, which psycopg would read as placeholders next to the parameters here.
    reasons = sql.SQL(
        "SELECT h.product_id, {} FROM unnest(%(ids)s::bigint[], %(photos)s::bigint[], %(rows)s::bigint[], "
        "%(keys)s::text[], %(on_deletes)s::text[]) AS h(product_id, photos, pointing_rows, key, on_delete)"
    ).format(
        sql.SQL(
            as_text(
                refusal(sql.SQL("h.photos"), sql.SQL("h.pointing_rows"), sql.SQL("h.key"), sql.SQL("h.on_delete"))
            ).replace("%", "%%")
        )
    )
    names = ("ids", "photos", "rows", "keys", "on_deletes")
    return dict(fetch_rows(reasons, {name: list(values) for name, values in zip(names, columns, strict=True)}))


def refusal(
    photos: sql.Composable, rows: sql.Composable, key: sql.Composable, on_delete: sql.Composable
) -> sql.Composed:
    """REFUSAL: why a product keeps its rows, as an SQL expression over its parts."""
    return sql.SQL(REFUSAL).format(photos=photos, rows=rows, key=key, on_delete=on_delete)


@dataclass
class Reference:
    """A foreign key pointing at product_images, and the rows that point at the images a reconciliation would
    delete: {product id: (its photos pointed at, rows pointing at them)}."""

    key: str  # schema.table(columns)
    on_delete: str
    blocks: bool  # deleting a photo it points at fails (REFERENCES says when): such a product keeps its rows
    pointing: dict[int, tuple[int, int]]


def held_products(schema: str) -> int:
    """How many of the tenant's products are held back from marketplaces: their JSON was refused."""
    ((count,),) = fetch_rows(
        sql.SQL("SELECT count(*) FROM {} WHERE refused IS NOT NULL").format(table(schema, "product_json_state"))
    )
    return count
