"""The two writers' figures (issue 19): ``python -m bench.run --sets two-writers``.

On the 30x set's tenant, side by side in one run, each timed ``--runs`` times:

- the first backfill (``migrate_images``, serial), against the 30x serial figure tracked in bench/RESULTS.md:
  recording each product's JSON digest must not slow it;
- a full ``--sync``: every digest cleared (``TRUNCATE product_json_state``), so it reconciles every product,
  as ``--sync`` did before the digests; and ``--force``, which walks and reconciles every product;
- ``--sync`` after the old code changed 10 products (one photo each), the follower off: it reconciles those 10;
- the same with the follower on (``--sync --follow`` installed it): the follower already applied them;
- an app's ``UPDATE products SET images = ...`` of a 10-photo product, changing one photo each time, 2,000
  times with the follower and 2,000 times without, alternating. "Without" is a second session with
  ``session_replication_role = replica`` (superuser only), where no ordinary trigger fires, on another
  10-photo product: both sessions keep their plans, and every update is its own transaction, as an app's.

Every change made here is undone at the end (the follower removed, the products' JSON put back, the tables
emptied), so the other sets find the 30x set as it was built.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from django.db import connection
from psycopg import sql
from psycopg.types.json import Jsonb

from bench.datasets import DataSet
from bench.report import Target, at_most
from products.migration import follower
from stoflow.database_settings import connection_kwargs
from stoflow.raw_sql import execute, fetch_rows, table

TRACKED_RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
CHANGED_PRODUCTS = 10  # products the old code changes before each --sync
UPDATES = 2000  # app updates timed with the follower, and as many without, per run
WARM_UP_UPDATES = 50  # per session, untimed: the plans are cached before the clock starts
PHOTOS = 10  # photos of each product the app updates


@dataclass
class TwoWritersResult:
    """Seconds (the command's own migrate phase, and its whole process) and update latencies, per run."""

    tracked_backfill: float | None  # bench/RESULTS.md's 30x serial migrate seconds
    backfill: list[float] = field(default_factory=list)
    full_sync: list[float] = field(default_factory=list)
    force: list[float] = field(default_factory=list)
    sync_off: list[float] = field(default_factory=list)
    sync_on: list[float] = field(default_factory=list)
    whole: dict[str, list[float]] = field(default_factory=dict)  # each command's whole process, by figure
    update_ms_with: list[float] = field(default_factory=list)  # every timed update, all runs
    update_ms_without: list[float] = field(default_factory=list)
    # The server process's CPU per update, with and without (one figure per run; none when the server is not a
    # local Linux process): what the follower costs whatever else the machine runs, which the clock does not say.
    update_cpu_ms_with: list[float] = field(default_factory=list)
    update_cpu_ms_without: list[float] = field(default_factory=list)

    def median(self, figure: str) -> float:
        return statistics.median(getattr(self, figure))

    def targets(self) -> list[Target]:
        found = [
            at_most(
                "two writers: the follower's cost per app UPDATE of a 10-photo product, median",
                statistics.median(self.update_ms_with) - statistics.median(self.update_ms_without),
                1,
                "ms",
            ),
            at_most(
                "two writers: the follower's cost per app UPDATE of a 10-photo product, p99",
                p99(self.update_ms_with) - p99(self.update_ms_without),
                3,
                "ms",
            ),
            at_most(
                "two writers: --sync of 10 changed products, follower off / full --sync (30x)",
                self.median("sync_off") / self.median("full_sync"),
                0.3,
                "x",
            ),
            at_most(
                "two writers: --sync of 10 changed products, follower on / full --sync (30x)",
                self.median("sync_on") / self.median("full_sync"),
                0.1,
                "x",
            ),
        ]
        if self.tracked_backfill:
            found.append(
                at_most(
                    "two writers: first backfill (30x serial migrate) / bench/RESULTS.md's",
                    self.median("backfill") / self.tracked_backfill,
                    1.05,
                    "x",
                )
            )
        return found

    def rows(self) -> list[tuple[str, str]]:
        """(what, figure) for the results."""
        tracked = f"{self.tracked_backfill:.2f} s" if self.tracked_backfill else "not found"
        rows = [
            ("First backfill, migrate (bench/RESULTS.md: " + tracked + ")", self._seconds("backfill")),
            ("Full --sync (every digest cleared), migrate", self._seconds("full_sync")),
            ("--force, migrate", self._seconds("force")),
            (f"--sync, {CHANGED_PRODUCTS} products changed, follower off, migrate", self._seconds("sync_off")),
            (f"--sync, {CHANGED_PRODUCTS} products changed, follower on, migrate", self._seconds("sync_on")),
        ]
        for label, values, cpu in (
            ("with the follower", self.update_ms_with, self.update_cpu_ms_with),
            ("without", self.update_ms_without, self.update_cpu_ms_without),
        ):
            figure = f"median {statistics.median(values):.2f} ms, p99 {p99(values):.2f} ms"
            if cpu:
                figure += f"; server CPU {statistics.median(cpu):.2f} ms an update"
            rows.append((f"App UPDATE of a {PHOTOS}-photo product, {label} ({len(values):,} updates)", figure))
        return rows

    def _seconds(self, figure: str) -> str:
        return f"{self.median(figure):.2f} s (whole command {statistics.median(self.whole[figure]):.2f} s)"


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def tracked_figure(set_name: str, jobs: int, column: str) -> float | None:
    """A figure of bench/RESULTS.md's table (None: no such row or column, or no file)."""
    if not TRACKED_RESULTS.exists():
        return None
    lines = TRACKED_RESULTS.read_text().splitlines()
    header = next((line for line in lines if line.startswith("| Data set |")), None)
    if header is None:
        return None
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    for line in lines:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[:2] == [set_name, str(jobs)] and column in columns:
            return float(cells[columns.index(column)])
    return None


def measure(data_set: DataSet, runs: int, command_options: list[str], run_command: Callable) -> TwoWritersResult:
    """The figures on ``data_set`` (the 30x set); ``run_command(data_set, options, migrates_the_set)`` runs the command
    as a process (bench.run's)."""
    schema = data_set.schemas[0]
    result = TwoWritersResult(tracked_backfill=tracked_figure("30x", 1, "Migrate s"))
    products = table(schema, "products")
    ids = [product_id for (product_id,) in fetch_rows(sql.SQL("SELECT id FROM {} ORDER BY id").format(products))]
    # Changes spread over the tenant: the first product of each of 2 x 10 equal parts of its ids.
    spread = [ids[part * len(ids) // (2 * CHANGED_PRODUCTS)] for part in range(2 * CHANGED_PRODUCTS)]
    changed_off, changed_on = spread[0::2], spread[1::2]
    updated = [
        product_id
        for (product_id,) in fetch_rows(
            sql.SQL(
                "SELECT id FROM {} WHERE jsonb_array_length(images) = %(photos)s AND id <> ALL(%(spread)s) "
                "ORDER BY id LIMIT 2"
            ).format(products),
            {"photos": PHOTOS, "spread": spread},
        )
    ]
    # The JSON's text, parsed here: the connection hands jsonb over as text.
    originals = {
        product_id: json.loads(images)
        for product_id, images in fetch_rows(
            sql.SQL("SELECT id, images::text FROM {} WHERE id = ANY(%(ids)s)").format(products),
            {"ids": changed_off + changed_on + updated},
        )
    }
    try:
        for run in range(runs):
            _reset(schema, originals)
            backfill = run_command(data_set, command_options)
            execute(sql.SQL("TRUNCATE {}").format(table(schema, "product_json_state")))
            full_sync = run_command(data_set, ["--sync", *command_options], migrates_the_set=False)
            force = run_command(data_set, ["--force", *command_options], migrates_the_set=False)
            _old_code_changes(schema, changed_off, run)
            sync_off = run_command(data_set, ["--sync", *command_options], migrates_the_set=False)
            run_command(data_set, ["--sync", "--follow", *command_options], migrates_the_set=False)
            _old_code_changes(schema, changed_on, run)
            sync_on = run_command(data_set, ["--sync", *command_options], migrates_the_set=False)
            for figure, command_run in (
                ("backfill", backfill),
                ("full_sync", full_sync),
                ("force", force),
                ("sync_off", sync_off),
                ("sync_on", sync_on),
            ):
                getattr(result, figure).append(command_run.migrate)
                result.whole.setdefault(figure, []).append(command_run.wall)
            (with_follower, with_cpu), (without, without_cpu) = _time_updates(schema, updated, originals)
            result.update_ms_with += with_follower
            result.update_ms_without += without
            if with_cpu is not None and without_cpu is not None:
                result.update_cpu_ms_with.append(with_cpu)
                result.update_cpu_ms_without.append(without_cpu)
    finally:
        _reset(schema, originals)
    return result


def _reset(schema: str, originals: dict) -> None:
    """The tenant as the set was built: no follower, the products' JSON as it was, no rows, no state."""
    follower.uninstall(schema)
    for product_id, images in originals.items():
        execute(
            sql.SQL("UPDATE {} SET images = %(images)s WHERE id = %(id)s").format(table(schema, "products")),
            {"images": Jsonb(images), "id": product_id},
        )
    tables = [table(schema, name) for name in ("product_images", "product_json_state", "product_images_removed")]
    execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(sql.SQL(", ").join(tables)))


def _old_code_changes(schema: str, product_ids: list[int], run: int) -> None:
    """The old code's write: one photo's URL changed in each product's JSON (no is_label), in one statement."""
    execute(
        sql.SQL(
            "UPDATE {} SET images = jsonb_set(images, '{{0,url}}', to_jsonb((images -> 0 ->> 'url') || %(suffix)s)) "
            "WHERE id = ANY(%(ids)s)"
        ).format(table(schema, "products")),
        {"ids": product_ids, "suffix": f"&changed={run}"},
    )


def _time_updates(schema: str, product_ids: list[int], originals: dict) -> list[tuple[list[float], float | None]]:
    """With the follower (the first product) and without (the second, from a session where no trigger fires),
    alternating: the milliseconds of each app UPDATE, and its server process's CPU milliseconds per update (None
    when not known). Each update swaps one photo's URL, in its own transaction."""
    update = sql.SQL("UPDATE {} SET images = %(images)s WHERE id = %(id)s").format(table(schema, "products"))
    connection.ensure_connection()
    conninfo = {**connection_kwargs(connection.settings_dict), "dbname": connection.settings_dict["NAME"]}
    timings: dict[bool, list[float]] = {True: [], False: []}
    cpu_at_start: dict[bool, float | None] = {}
    with psycopg.connect(**conninfo, autocommit=True) as app, psycopg.connect(**conninfo, autocommit=True) as bare:
        try:
            bare.execute("SET session_replication_role = replica")
        except psycopg.errors.InsufficientPrivilege as exc:
            raise SystemExit(
                "the two-writers set times updates without the trigger in a session with "
                "session_replication_role = replica, which needs a superuser"
            ) from exc
        sessions = {True: (app, product_ids[0]), False: (bare, product_ids[1])}
        for number in range(WARM_UP_UPDATES + UPDATES):
            for followed, (session, product_id) in sessions.items():
                if number == WARM_UP_UPDATES:
                    cpu_at_start[followed] = _cpu_seconds(session.info.backend_pid)
                images = [dict(entry) for entry in originals[product_id]]
                if number % 2 == 0:
                    images[PHOTOS // 2]["url"] += "&swapped"
                started = time.perf_counter()
                session.execute(update, {"images": Jsonb(images), "id": product_id})
                if number >= WARM_UP_UPDATES:
                    timings[followed].append(1000 * (time.perf_counter() - started))
        cpu = {}
        for followed, (session, _) in sessions.items():
            now = _cpu_seconds(session.info.backend_pid)
            start = cpu_at_start[followed]
            cpu[followed] = None if now is None or start is None else 1000 * (now - start) / UPDATES
    return [(timings[True], cpu[True]), (timings[False], cpu[False])]


def _cpu_seconds(pid: int) -> float | None:
    """User and system CPU seconds of a backend of the embedded server (a process of this machine), or None
    (with DATABASE_URL the pid may be another server's, or this machine's for another process)."""
    if os.environ.get("DATABASE_URL"):
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime, the 14th and 15th fields of the line (the 12th and 13th after the command's name).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
