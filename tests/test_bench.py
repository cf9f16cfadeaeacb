"""``pairscan bench``: every executor on every workload, measured by a real run of the command."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest

from pairscan.bench import SHOWS, SLEEP_TASKS, WORKLOADS, table

EXECUTORS = ["serial", "threads", "processes", "dask"]
PNG = b"\x89PNG\r\n\x1a\n"


def cli(*args, timeout=150):
    return subprocess.run([sys.executable, "-m", "pairscan", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One ``bench --quick --json --plot`` run, shared by the tests below (it takes ~30 s)."""
    chart = tmp_path_factory.mktemp("bench") / "bench.png"
    done = cli("bench", "--quick", "--json", "--quiet", "--plot", chart)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), chart


def test_quick_json_has_a_row_for_every_executor_and_workload(quick):
    out, _ = quick
    rows = out["rows"]
    assert [(r["workload"], r["executor"]) for r in rows] == list(itertools.product(WORKLOADS, EXECUTORS))
    # The three kinds of work: latency-bound, CPU-bound, and the correlation two ways.
    assert {w.split()[0] for w in WORKLOADS} == {"sleep", "convert", "correlate"}
    for row in rows:
        assert set(row) == {"workload", "executor", "workers", "seconds", "speedup"}
        assert row["seconds"] > 0
    by = {(r["workload"], r["executor"]): r for r in rows}
    for workload in WORKLOADS:
        serial = by[workload, "serial"]
        assert serial["workers"] == 1 and serial["speedup"] == 1.0
        for executor in EXECUTORS[1:]:
            row = by[workload, executor]
            # As many sleeping workers as tasks, as in the seed; one per CPU for the rest.
            assert row["workers"] == (SLEEP_TASKS if workload == "sleep" else out["cpus"])
            assert row["speedup"] == pytest.approx(serial["seconds"] / row["seconds"], rel=0.02, abs=0.01)
    assert out["quick"] is True and out["repeat"] >= 1
    assert set(out["startup"]) == set(EXECUTORS) and all(s >= 0 for s in out["startup"].values())


def test_sleeping_tasks_overlap_on_threads(quick):
    # 8 tasks that sleep 0.25 s: serial sleeps 2 s; 8 threads sleep side by side, since a
    # sleeping thread releases the GIL. Well over 3x on any machine that is not stalled.
    out, _ = quick
    by = {(r["workload"], r["executor"]): r for r in out["rows"]}
    assert by["sleep", "serial"]["seconds"] >= SLEEP_TASKS * 0.25
    assert by["sleep", "threads"]["speedup"] > 3


def test_the_chart_is_written(quick):
    _, chart = quick
    assert chart.read_bytes()[:8] == PNG


def test_the_table_says_what_each_row_shows(quick):
    out, _ = quick
    text = table(out, "caption")
    lines = text.splitlines()
    assert lines[1] == "caption"
    for row in out["rows"]:
        assert SHOWS[row["workload"], row["executor"]] in text
    assert "GIL" in text and "pickl" in text and "tiny task" in text
    assert sum(1 for line in lines if line.startswith("sleep ")) == 1
    assert lines[-1].startswith("start-up, not in the seconds above")


def test_bench_refuses_a_chart_it_cannot_write_before_measuring(tmp_path):
    done = cli("bench", "--quick", "--plot", tmp_path / "no" / "such" / "bench.png", timeout=60)
    assert done.returncode == 2
    assert "cannot write" in done.stderr and len(done.stderr.strip().splitlines()) == 1
