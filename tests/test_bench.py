"""The benchmark's command line (python -m bench.run), in a fresh process: what it refuses before any database work,
and what its help and docs/benchmark.md say about its data sets and where it writes."""

import os
import re
import subprocess
import sys

from django.conf import settings

from tests.helpers import WAIT_SECONDS, doc_section


def run_bench(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """``python -m bench.run *args`` with an embedded server whose data directory would be made in ``tmp_path``: it
    stays absent as long as nothing connects to a database (DATABASE_URL unset, so no other server is used)."""
    environment = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    environment["STOFLOW_PGDATA"] = str(tmp_path / "pgdata")
    return subprocess.run(
        [sys.executable, "-m", "bench.run", *args],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )


def test_an_unknown_set_is_a_usage_error_before_any_database_is_made(tmp_path):
    result = run_bench(tmp_path, "--sets", "1x,bogus")

    assert result.returncode == 2
    assert "argument --sets: not a data set: 'bogus' (the sets: 1x, 30x, 100x, fanout, two-writers)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "pgdata").exists()


def test_help_and_the_docs_name_every_set_and_where_the_figures_go(tmp_path):
    refused = run_bench(tmp_path, "--sets", "bogus").stderr
    names = re.search(r"\(the sets: (.+)\)", refused).group(1).split(", ")
    help_text = " ".join(run_bench(tmp_path, "--help").stdout.split())
    benchmark_doc = doc_section("docs/benchmark.md", "# Benchmark")

    for name in names:
        assert f" {name}: " in help_text
        assert f"| `{name}` |" in benchmark_doc
    assert "(default: var/bench-results.md; bench/RESULTS.md refreshes the tracked figures)" in help_text
    assert "`--results bench/RESULTS.md`" in benchmark_doc
    assert not (tmp_path / "pgdata").exists()
