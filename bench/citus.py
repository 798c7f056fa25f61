"""Plain PostgreSQL against Citus, side by side: ``make bench-citus`` (``python -m bench.citus --help``).

``.ci/with-citus`` starts the cluster and sets DATABASE_URL to its coordinator. The same data sets, the demo's
catalogue (``1x``: 3,281 products, 19,607 images) and the ``30x`` tenant (98,430 products, 588,210 images),
are built in two databases of that coordinator: ``stoflow_plain``, plain PostgreSQL 16.2 (the same server and
settings; the extension is not created there), and ``stoflow``, Citus with schema-based sharding (each tenant
on a worker). Per set, the two sides take turns, each run timed from the command's own JSON report: a first
migration (rows emptied first), ``--sync`` once 1% of the products' JSON changed (put back afterwards), and
``--check``. The medians, their ratios and the targets (Citus at most 1.3x plain to migrate, 1.5x to sync) are
printed and written to ``var/bench-citus.md``; ``docs/scaling.md`` quotes them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import dj_database_url
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "var" / "bench-citus.md"
PLAIN_DATABASE = "stoflow_plain"
SETS = {"1x": 1, "30x": 30}
STEPS = ("migrate", "sync", "check")
TARGETS = {"migrate": 1.3, "sync": 1.5}  # Citus over plain, at most
CHANGED_EVERY = 100  # --sync: one product in this many has its JSON changed (its entries reversed)


def side_environment(side: str) -> dict[str, str]:
    environment = {**os.environ, "DJANGO_DEBUG": "1"}
    environment.pop("STOFLOW_DATABASE_NAME", None)
    if side == "plain":
        environment["STOFLOW_DATABASE_NAME"] = PLAIN_DATABASE  # created on the coordinator when missing
    return environment


def connect(side: str) -> psycopg.Connection:
    config = dj_database_url.parse(os.environ["DATABASE_URL"])
    name = PLAIN_DATABASE if side == "plain" else config["NAME"]
    return psycopg.connect(host=config["HOST"], port=config["PORT"], user=config["USER"], dbname=name, autocommit=True)


def build(factor: int) -> None:
    """In this process's database (DATABASE_URL, STOFLOW_DATABASE_NAME): the schemas, then the data set."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stoflow.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from bench.datasets import ensure_data_set, prepare_database, scaled_set

    prepare_database()
    call_command("migrate_schemas", interactive=False, verbosity=0)
    ensure_data_set(scaled_set(factor))


def command(side: str, schema: str, *options: str) -> dict:
    """One migrate_images process on the side's database; its JSON report."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        argv = [sys.executable, "manage.py", "migrate_images", "--no-input", "--schema", schema, "--json", str(report)]
        exit_code = subprocess.run(
            [*argv, *options], cwd=ROOT, env=side_environment(side), stdout=subprocess.DEVNULL
        ).returncode
        if exit_code != 0:
            raise SystemExit(f"migrate_images {' '.join(options)} on {side} {schema} exited {exit_code}")
        return json.loads(report.read_text())


def reverse_some_json(side: str, schema: str) -> None:
    """Reverse the entries of one product's JSON in CHANGED_EVERY (twice: as they were)."""
    with connect(side) as conn:
        conn.execute(
            sql.SQL(
                "UPDATE {} SET images = (SELECT jsonb_agg(e ORDER BY n DESC) "
                "FROM jsonb_array_elements(images) WITH ORDINALITY AS x(e, n)) "
                "WHERE id %% %(every)s = 0 AND jsonb_typeof(images) = 'array' AND jsonb_array_length(images) > 1"
            ).format(sql.Identifier(schema, "products")),
            {"every": CHANGED_EVERY},
        )


def empty_rows(side: str, schema: str) -> None:
    tables = ("product_images", "product_json_state", "product_images_removed")
    with connect(side) as conn:
        conn.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY").format(
                sql.SQL(", ").join(sql.Identifier(schema, name) for name in tables)
            )
        )


def measure(schema: str, runs: int) -> dict[str, dict[str, list[float]]]:
    seconds = {side: {step: [] for step in STEPS} for side in ("plain", "citus")}
    for _ in range(runs):
        for side, figures in seconds.items():
            empty_rows(side, schema)
            figures["migrate"].append(command(side, schema)["seconds"]["migrate"])
            reverse_some_json(side, schema)
            synced = command(side, schema, "--sync")
            figures["sync"].append(synced["seconds"]["migrate"])
            reverse_some_json(side, schema)
            command(side, schema, "--sync")  # back to the data set as built
            figures["check"].append(command(side, schema, "--check")["seconds"]["validate"])
    return seconds


def render(results: dict[str, dict[str, dict[str, list[float]]]], runs: int) -> str:
    lines = [
        "# Plain PostgreSQL 16.2 and Citus 13.1.1, side by side",
        "",
        f"`make bench-citus` (bench/citus.py), medians of {runs} run(s); seconds from the command's JSON report.",
        "",
        "| Set | Step | Plain s | Citus s | Citus / plain | Target |",
        "|---|---|---|---|---|---|",
    ]
    for name, seconds in results.items():
        for step in STEPS:
            plain = statistics.median(seconds["plain"][step])
            citus = statistics.median(seconds["citus"][step])
            ratio = citus / plain if plain else float("inf")
            target = TARGETS.get(step)
            verdict = f"<= {target}x: {'met' if ratio <= target else 'MISSED'}" if target else "-"
            lines.append(f"| {name} | {step} | {plain:.2f} | {citus:.2f} | {ratio:.2f}x | {verdict} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.citus", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="1x,30x", help="Data sets, comma-separated: 1x (the demo's), 30x.")
    parser.add_argument("--runs", type=int, default=3, help="Timed runs of each step on each side; medians reported.")
    parser.add_argument("--build", type=int, help=argparse.SUPPRESS)  # internal: build one set in this database
    args = parser.parse_args(argv)
    if args.build:
        build(args.build)
        return 0
    if "DATABASE_URL" not in os.environ:
        raise SystemExit("DATABASE_URL must name the Citus coordinator: run `make bench-citus` (.ci/with-citus)")
    results = {}
    for name in args.sets.split(","):
        if name not in SETS:
            raise SystemExit(f"not a data set: {name!r} (the sets: {', '.join(SETS)})")
        for side in ("plain", "citus"):
            subprocess.run(
                [sys.executable, "-m", "bench.citus", "--build", str(SETS[name])],
                cwd=ROOT,
                env=side_environment(side),
                check=True,
            )
        results[name] = measure(f"bench_{name}", args.runs)
        print(f"measured {name}", file=sys.stderr)
    text = render(results, args.runs)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(f"Figures written to {RESULTS.relative_to(ROOT)}")
    met = all(
        statistics.median(seconds["citus"][step]) <= target * statistics.median(seconds["plain"][step])
        for seconds in results.values()
        for step, target in TARGETS.items()
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
