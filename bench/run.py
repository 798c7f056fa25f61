"""Benchmark of ``migrate_images``: ``make bench`` (or ``python -m bench.run --help``).

On the same rows, in one run, it times three things per data set:

- our command, run as a user runs it (a separate process; live and dry run),
- the seed script's per-row method (``bench/per_row_reference.py``),
- the insert floor: one INSERT ... SELECT from generate_series of as many rows
  into a table shaped like product_images (same constraints, indexes, foreign key).

Each is timed ``--runs`` times, interleaved, and the medians are reported, with
the targets of issue 12 and, when one is missed, by how much. The ``two-writers``
set times, on the 30x set, what the old code and the follower cost (issue 19,
``bench/two_writers.py``). The figures and the
machine's description go to ``var/bench-results.md``, or where ``--results`` says
(``--results bench/RESULTS.md`` refreshes the tracked figures).

The data sets live in a database of their own (``stoflow_bench``), built on the
first run and reused afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A partial run (one set, one run) must not overwrite the tracked figures: those are written only when asked.
DEFAULT_RESULTS = ROOT / "var" / "bench-results.md"
os.environ.setdefault("STOFLOW_DATABASE_NAME", "stoflow_bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stoflow.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")  # a development tool: the development settings, as before (no secret key)
sys.path.insert(0, str(ROOT))

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from django.db import connection  # noqa: E402
from psycopg import sql  # noqa: E402

from bench import per_row_reference, two_writers  # noqa: E402
from bench.datasets import DataSet, ensure_data_set, fan_out_set, prepare_database, scaled_set  # noqa: E402
from bench.fleet import PaceFigures, ensure_fleet, time_gate_checks, time_picker  # noqa: E402
from bench.report import all_targets, machine_description, render_markdown, render_terminal  # noqa: E402
from products import url_search_index  # noqa: E402
from products.migration.batches import MigrationOptions  # noqa: E402
from products.migration.runs import SEARCH_INDEX_PHASE  # noqa: E402
from stoflow.database_settings import connection_kwargs  # noqa: E402
from stoflow.raw_sql import execute  # noqa: E402


@dataclass(frozen=True)
class SetPlan:
    build: Callable[[], DataSet]
    jobs: tuple[int, ...]  # --jobs values the command is timed with, each against the same reference and floor
    reference: bool  # time the per-row method too (6 minutes a run on 100x, which no target reads)
    contents: str  # what --help says the set holds


SET_PLANS = {
    "1x": SetPlan(lambda: scaled_set(1), (1,), True, "the seed report's catalogue in one tenant"),
    # The seed's shape, one large tenant: serial, then split in two ranges.
    "30x": SetPlan(lambda: scaled_set(30), (1, 2), True, "that catalogue 30 times over, in one tenant"),
    "100x": SetPlan(lambda: scaled_set(100), (2,), False, "that catalogue 100 times over, in one tenant"),
    "fanout": SetPlan(fan_out_set, (2,), True, "1,000 tenants of 20 products"),
}
# Not a set of its own shape: the 30x set, timed for the two writers (bench/two_writers.py).
TWO_WRITERS = "two-writers"
TWO_WRITERS_CONTENTS = (
    "the 30x set's tenant: first backfill, full --sync, --sync of 10 changed products with the follower off "
    "and on, the follower's cost per app UPDATE"
)
SET_NAMES = [*SET_PLANS, TWO_WRITERS]


@dataclass
class CommandRun:
    wall: float  # the whole process: Django start-up, migrate, validate, report
    migrate: float  # summed over tenants, from the command's own JSON report
    validate: float
    peak_rss_mb: float
    batch_sizes: dict = field(default_factory=dict)  # the first tenant's (its JSON report's pace.batch_sizes)


@dataclass
class SetResult:
    data_set: DataSet
    jobs: int
    live: list[CommandRun] = field(default_factory=list)
    dry_run: list[CommandRun] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)

    def median(self, runs: str, figure: str | None = None) -> float:
        values = getattr(self, runs)
        return statistics.median(getattr(value, figure) for value in values) if figure else statistics.median(values)


def set_names(value: str) -> list[str]:
    """--sets, checked while parsing: a bad name must stop the run before it creates or fills any database."""
    names = value.split(",")
    unknown = [name for name in names if name not in SET_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"not a data set: {', '.join(map(repr, unknown))} (the sets: {', '.join(SET_NAMES)})"
        )
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    contents = {**{name: plan.contents for name, plan in SET_PLANS.items()}, TWO_WRITERS: TWO_WRITERS_CONTENTS}
    sets_help = "; ".join(f"{name}: {text}" for name, text in contents.items())
    parser.add_argument(
        "--sets",
        type=set_names,
        default=SET_NAMES,
        help=f"Data sets to run, comma-separated (default: all). {sets_help}.",
    )
    parser.add_argument("--runs", type=int, default=3, help="Timed runs of each thing; medians reported.")
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="--jobs for every set, a large tenant then split in ranges (default: 1 on 1x, 1 and 2 on 30x, "
        "2 on 100x and on fanout).",
    )
    parser.add_argument("--batch-size", type=int, help="--batch-size for the command (default: its own).")
    parser.add_argument(
        "--batch-sizes",
        default="500,1000,2500,5000",
        help="--batch-size values timed on the 30x set, to choose the default ('' to skip).",
    )
    parser.add_argument(
        "--batch-time",
        default="200ms",
        help="--batch-time timed on the 30x set beside the --batch-sizes sweep (with and without the health "
        "checks), and the cost of one health check ('' to skip).",
    )
    parser.add_argument(
        "--picker-sellers",
        type=int,
        default=10_000,
        help="Sellers of the generated fleet the public admin's seller picker is timed on (0 to skip).",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=DEFAULT_RESULTS,
        help=f"Markdown output (default: {DEFAULT_RESULTS.relative_to(ROOT)}; bench/RESULTS.md refreshes the "
        "tracked figures).",
    )
    args = parser.parse_args(argv)

    prepare_database()
    command_options = ["--batch-size", str(args.batch_size)] if args.batch_size else []
    results, two_writers_result = [], None
    for name in args.sets:
        plan = SET_PLANS["30x" if name == TWO_WRITERS else name]
        data_set = plan.build()
        started = time.perf_counter()
        if ensure_data_set(data_set):
            print(f"built data set {data_set.name} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        if name == TWO_WRITERS:
            two_writers_result = two_writers.measure(data_set, args.runs, command_options, run_command)
            print(f"measured {name}", file=sys.stderr)
            continue
        job_counts = (args.jobs,) if args.jobs is not None else plan.jobs
        results += measure(data_set, args.runs, command_options, job_counts, plan.reference)
        print(f"measured {data_set.name}", file=sys.stderr)
    batch_sizes = [int(size) for size in args.batch_sizes.split(",") if size]
    sweep, pace = {}, None
    if batch_sizes or args.batch_time:
        sweep, pace = sweep_batch_sizes(SET_PLANS["30x"].build(), batch_sizes, args.runs, args.batch_time)
    picker = None
    if args.picker_sellers:
        started = time.perf_counter()
        if ensure_fleet(args.picker_sellers):
            print(
                f"built a fleet of {args.picker_sellers:,} sellers in {time.perf_counter() - started:.0f} s",
                file=sys.stderr,
            )
        picker = time_picker(max(args.runs, 5), args.picker_sellers)
        print("measured the seller picker", file=sys.stderr)

    machine = machine_description()
    print(render_terminal(results, sweep, machine, pace, picker, two_writers_result))
    options = argv if argv is not None else sys.argv[1:]
    command = f"make bench BENCH_ARGS={shlex.quote(shlex.join(options))}" if options else "make bench"
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(render_markdown(results, sweep, machine, command, pace, picker, two_writers_result))
    print(f"Figures written to {args.results}")
    return 0 if all(target.met for target in all_targets(results, pace, picker, two_writers_result)) else 1


def measure(
    data_set: DataSet, runs: int, command_options: list[str], job_counts: tuple[int, ...], reference: bool
) -> list[SetResult]:
    """One result per --jobs value, runs interleaved; the per-row reference and the floor are timed once per
    run and shared by them."""
    reference_seconds, floor_seconds = [], []  # one list each, which every result reads
    results = [SetResult(data_set, jobs, reference=reference_seconds, floor=floor_seconds) for jobs in job_counts]
    conninfo = {**connection_kwargs(connection.settings_dict), "dbname": connection.settings_dict["NAME"]}
    for _ in range(runs):
        for result in results:
            options = [*command_options, "--jobs", str(result.jobs)]
            reset(data_set)
            result.dry_run.append(run_command(data_set, ["--dry-run", *options]))
            result.live.append(run_command(data_set, options))
        if reference:
            reset(data_set)
            started = time.perf_counter()
            inserted = per_row_reference.migrate(conninfo, data_set.schemas)
            reference_seconds.append(time.perf_counter() - started)
            assert inserted == data_set.images, f"reference inserted {inserted} images, expected {data_set.images}"
        floor_seconds.append(time_insert_floor(data_set, conninfo))
    return results


def sweep_batch_sizes(
    data_set: DataSet, batch_sizes: list[int], runs: int, batch_time: str
) -> tuple[dict[int, float], PaceFigures | None]:
    """Median migrate seconds of the live command per --batch-size, and --batch-time's pace against the best of
    them (with and without the health checks), runs interleaved."""
    ensure_data_set(data_set)
    variants = {str(size): ["--batch-size", str(size)] for size in batch_sizes}
    if batch_time:
        variants["time"] = ["--batch-time", batch_time]
        variants["time, no health"] = ["--batch-time", batch_time, "--ignore-health"]
        if not batch_sizes:
            variants[str(MigrationOptions.batch_size)] = []  # the default, to compare with
    timed: dict[str, list[CommandRun]] = {label: [] for label in variants}
    for _ in range(runs):
        for label, options in variants.items():
            reset(data_set)
            timed[label].append(run_command(data_set, options))
    print("measured batch sizes", file=sys.stderr)
    sweep = {
        int(label): statistics.median(run.migrate for run in runs) for label, runs in timed.items() if label.isdigit()
    }
    if not batch_time:
        return sweep, None
    best_size = min(sweep, key=sweep.get)
    sizes = timed["time"][-1].batch_sizes
    pace = PaceFigures(
        batch_time=batch_time,
        migrate=statistics.median(run.migrate for run in timed["time"]),
        best_size=best_size,
        best_migrate=sweep[best_size],
        ignore_health_migrate=statistics.median(run.migrate for run in timed["time, no health"]),
        batches=sizes["batches"],
        smallest=sizes["smallest"],
        largest=sizes["largest"],
        average=sizes["products"] / max(sizes["batches"], 1),
        check_ms=time_gate_checks(data_set.schemas[0]),
    )
    if not batch_sizes:
        sweep = {}  # only the default size was timed, to compare with: no sweep to show
    return sweep, pace


def run_command(data_set: DataSet, options: list[str], migrates_the_set: bool = True) -> CommandRun:
    """One ``migrate_images`` process, as a user runs it, reporting its own peak RSS; unless told otherwise (a
    --sync or --force over rows already there), it must have migrated every image of the set."""
    with tempfile.TemporaryDirectory() as scratch:
        report_path, rss_path = Path(scratch) / "report.json", Path(scratch) / "peak_rss"
        argv = [sys.executable, str(ROOT / "bench" / "peak_rss.py"), "migrate_images", "--no-input"]
        argv += ["--json", str(report_path)]
        argv += [argument for schema in data_set.schemas for argument in ("--schema", schema)] + options
        started = time.perf_counter()
        exit_code = subprocess.run(
            argv, stdout=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, "PEAK_RSS_FILE": str(rss_path)}
        ).returncode
        wall = time.perf_counter() - started
        if exit_code != 0:
            raise SystemExit(f"migrate_images {' '.join(options)} exited {exit_code} on {data_set.name}")
        report = json.loads(report_path.read_text())
        peak_rss_mb = int(rss_path.read_text()) / 1024
    expected = data_set.images
    migrated = report["total"]["images_migrated"]
    if migrates_the_set and migrated != expected:
        raise SystemExit(f"migrate_images migrated {migrated} images of {data_set.name}, expected {expected}")
    batch_sizes = report["tenants"][0]["pace"]["batch_sizes"]
    # A first backfill's URL search index build is part of migrating (a phase of its own in the report).
    migrate = report["seconds"]["migrate"] + report["seconds"].get(SEARCH_INDEX_PHASE, 0.0)
    return CommandRun(wall, migrate, report["seconds"]["validate"], peak_rss_mb, batch_sizes)


def reset(data_set: DataSet) -> None:
    """Empty the set's product_images, without the URL search index: the seed script's table had none (the per-row
    reference runs on it as it was), and our command builds it where the tenant needs it."""
    tables = sql.SQL(", ").join(sql.Identifier(schema, "product_images") for schema in data_set.schemas)
    execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(tables))
    for schema in data_set.schemas:
        url_search_index.drop(schema)


def time_insert_floor(data_set: DataSet, conninfo: dict) -> float:
    """The fastest way to write as many rows: one INSERT ... SELECT, no JSON to read. The URL search index ends as
    a first backfill leaves it (products/url_search_index.py): built after the insert on a tenant with enough
    images for a search to need it, else not there."""
    schema = data_set.schemas[0]
    names = {
        "floor": sql.Identifier(schema, "insert_floor"),
        "product_images": sql.Identifier(schema, "product_images"),
        "products": sql.Identifier(schema, "products"),
    }
    # The copy below takes the tenant's indexes: not the URL search index, built after the insert if at all.
    url_search_index.drop(schema)
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {floor}").format(**names))
        conn.execute(sql.SQL("CREATE TABLE {floor} (LIKE {product_images} INCLUDING ALL)").format(**names))
        conn.execute(
            sql.SQL(
                "ALTER TABLE {floor} ADD FOREIGN KEY (product_id) REFERENCES {products} (id) "
                "DEFERRABLE INITIALLY DEFERRED"
            ).format(**names)
        )
        trgm_in = url_search_index.trgm_schema()
        bounds = sql.SQL("SELECT min(id), count(*) FROM {products}").format(**names)
        first_id, products = conn.execute(bounds).fetchone()
        started = time.perf_counter()
        conn.execute(
            sql.SQL(
                'INSERT INTO {floor} (product_id, url, "order", is_label, created_at, updated_at) '
                "SELECT %(first_id)s + g %% %(products)s, "
                "'https://cdn.stoflow.example/products/' || md5(g::text) || '.jpeg', "
                "g / %(products)s, g / %(products)s = 0, now(), now() "
                "FROM generate_series(0, %(rows)s - 1) AS g"
            ).format(**names),
            {"first_id": first_id, "products": products, "rows": data_set.images},
        )
        # (Per tenant: the 1,000 small tenants' images go into one copy here, but none of them would have it.)
        if trgm_in and data_set.images / len(data_set.schemas) >= url_search_index.INDEXED_FROM_IMAGES:
            conn.execute(url_search_index.definition(names["floor"], trgm_in, "insert_floor_url_trgm"))
        seconds = time.perf_counter() - started
        conn.execute(sql.SQL("DROP TABLE {floor}").format(**names))
    return seconds


if __name__ == "__main__":
    sys.exit(main())
