"""The benchmark's command line (python -m bench.run), in a fresh process: what it refuses before any database work,
and what its help and docs/benchmark.md say about its data sets and where it writes."""

import os
import re
import subprocess
import sys

import pytest
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


def test_results_carry_the_written_cause_of_each_missed_target_and_none_for_a_met_one():
    from bench.report import at_least, at_most, missed_targets_section, written_causes

    causes = written_causes("Intro.\n\n### 1x: whole command\n\nStart-up is 0.8 s.\n\n### fanout\n\nLedger commits.\n")
    found = [
        at_most("1x: whole command", 2.65, 1.0, "s"),
        at_least("30x: faster than per-row", 4.45, 12, "x"),
        at_most("fanout", 9.0, 10, "s"),
    ]

    section = "\n".join(missed_targets_section(found, causes))

    assert section.startswith("## Missed targets: measured causes and what was tried")
    assert "### 1x: whole command\n\nStart-up is 0.8 s." in section
    assert (
        "### 30x: faster than per-row\n\nNo cause written down yet: add a `### 30x: faster than per-row` section "
        "to bench/MISSED_TARGETS.md." in section
    )
    assert "Ledger commits" not in section  # met: no section
    assert missed_targets_section(found[2:], causes) == []


def test_the_written_causes_parse_one_section_per_target():
    from bench.report import MISSED_TARGETS, written_causes

    causes = written_causes(MISSED_TARGETS.read_text())

    assert "two writers: the follower's cost per app UPDATE of a 10-photo product, median" in causes
    assert all(causes.values())
    with pytest.raises(ValueError, match="two sections for 'a'"):
        written_causes("### a\n\none\n\n### a\n\ntwo\n")
