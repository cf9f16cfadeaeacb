"""The command line, run as a user runs it: a real process, exit statuses, JSON output."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

import pairscan

from conftest import oracle_pairs, oracle_series, run_cli


def cli(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "pairscan", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


def test_run_from_an_archive_end_to_end(tmp_path):
    archive = pairscan.sample(tmp_path / "daily-stock", tickers=6, days=3, bars_per_day=40, archive=True)
    assert archive.name == "daily-stock.tgz"
    work = tmp_path / "work"
    done = cli("run", archive, "--workdir", work, "--json", "--top", "3", "--executor", "processes")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["series"] == 6 and out["pairs_considered"] == 15 and out["engine"] == "blocked"
    assert out["convert"]["converted"] == 6 and out["convert"]["rows"] == 6 * 3 * 40
    assert set(out["plots"]) - {"spread"} == {"pair", "heatmap"}  # spread: the best cointegrated pair
    for path in out["plots"].values():
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    expected = oracle_pairs(oracle_series(work / "store"))
    best = max((v, k) for k, v in expected.items())
    assert (out["top"][0]["a"], out["top"][0]["b"]) == best[1]
    assert out["top"][0]["corr"] == pytest.approx(best[0], abs=1e-9)
    # The human-readable form prints the same best pair in a table.
    text = cli("run", archive, "--workdir", work, "--top", "3", "--quiet")
    assert text.returncode == 0, text.stderr
    assert f"1  {best[1][0]}" in text.stdout and "pair plot:" in text.stdout


def test_correlate_json_has_the_contract_fields(aligned_store, tmp_path):
    done = cli("correlate", aligned_store, "--json", "--top", "2", "--out", tmp_path / "pairs.csv")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert set(out) >= {"series", "pairs_considered", "column", "on", "method", "engine", "executor",
                        "workers", "min_periods", "pairs_ranked", "top", "seconds", "timings"}
    assert set(out["timings"]) == {"load", "correlate"}
    assert list(out["top"][0]) == ["a", "b", "corr", "n", "p", "ci_low", "ci_high"]
    pairs = pd.read_csv(tmp_path / "pairs.csv")
    assert list(pairs.columns) == ["a", "b", "corr", "n", "p", "ci_low", "ci_high"]
    assert list(pairs.a) == [p["a"] for p in out["top"]]
    assert pairs["p"].tolist() == pytest.approx([p["p"] for p in out["top"]], rel=1e-15)


def test_convert_json_has_the_contract_fields(tmp_path):
    folder = pairscan.sample(tmp_path / "d", tickers=3, days=1, bars_per_day=10)
    done = cli("convert", folder, "--json", "--executor", "serial")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert {k: out[k] for k in ("files", "converted", "up_to_date", "failed", "rows", "format", "executor")} == {
        "files": 3, "converted": 3, "up_to_date": 0, "failed": [], "rows": 30, "format": "hdf5",
        "executor": "serial"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["correlate", "{store}", "--column", "nope"], "no column 'nope'"),
        (["correlate", "{tmp}/missing"], "no such store"),
        (["correlate", "{store}", "--workers", "zero"], "--workers"),
        (["correlate", "{store}", "--executor", "gpu"], "unknown executor"),
        (["correlate", "{store}", "--memory-limit", "lots"], "--memory-limit"),
        (["correlate", "{store}", "--method", "kendall", "--engine", "blocked"], "not exact for kendall"),
        (["correlate", "{store}", "--out", "{tmp}/no/such/dir/p.csv"], "cannot write"),
        (["convert", "{tmp}/missing"], "no such file"),
        (["extract", "{tmp}/missing.tgz"], "no such archive"),
        (["plot", "{store}", "aet"], "two tickers"),
        (["plot", "{store}", "aet", "zzz"], "no ticker 'zzz'"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(aligned_store, tmp_path, args, message):
    # What each command says, in this process; the tests around these run real processes
    # (an exit status of 2 from a usage error, bad input, a damaged file).
    args = [a.format(store=aligned_store, tmp=tmp_path) for a in args]
    done = run_cli(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_store_with_one_ticker_is_bad_input(tmp_path):
    folder = pairscan.sample(tmp_path / "d", tickers=1, days=1, bars_per_day=10)
    pairscan.convert(folder, executor="serial")
    done = cli("correlate", folder)
    assert done.returncode == 2 and "at least two tickers" in done.stderr


def test_usage_errors_exit_2():
    assert cli("correlate").returncode == 2
    assert cli("frobnicate").returncode == 2


def test_plot_writes_pngs(aligned_store, tmp_path):
    pair = cli("plot", aligned_store, "aet", "afl", "--out", tmp_path / "p.png")
    assert pair.returncode == 0, pair.stderr
    heat = cli("plot", aligned_store, "--heatmap", "--out", tmp_path / "h.png")
    assert heat.returncode == 0, heat.stderr
    for name in ("p.png", "h.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_a_damaged_stored_file_is_bad_input(aligned_store, tmp_path):
    import shutil

    store = tmp_path / "store"
    shutil.copytree(aligned_store, store)
    (store / "aet.h5").write_bytes((store / "aet.h5").read_bytes()[:3000])
    for executor in ("threads", "processes"):
        done = cli("correlate", store, "--executor", executor, "--quiet")
        assert done.returncode == 2, done.stderr
        assert "aet.h5: cannot read stored frame" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_a_reader_that_goes_away_stops_the_command_quietly(tmp_path):
    # `pairscan correlate ... --json | head -1`: the pipe closes after the first line, while
    # the command still has far more to write than a pipe holds (780 pairs: about 170 kB).
    folder = pairscan.sample(tmp_path / "d", tickers=40, days=1, bars_per_day=30)
    pairscan.convert(folder, executor="serial", quiet=True)
    process = subprocess.Popen([sys.executable, "-m", "pairscan", "correlate", str(folder), "--json",
                                "--top", "780", "--executor", "serial", "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "{\n"
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=120) == 141 and err == ""


def test_version(capsys):
    import importlib.metadata

    from pairscan.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert pairscan.__version__ == importlib.metadata.version("pairscan")
    assert capsys.readouterr().out == f"pairscan {pairscan.__version__}\n"


def test_counts_of_one_are_singular(tmp_path, capsys):
    from pairscan.cli import main

    one = pairscan.sample(tmp_path / "one", tickers=1, days=1, bars_per_day=5)
    [source] = one.glob("*.json")
    with open(source, "a") as f:
        f.write("not json\n")
    assert main(["convert", str(one), "--on-bad-lines", "skip", "--executor", "serial"]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"converted 1 of 1 file (0 up to date) to hdf5 in {one}: 5 rows; "
                           f"skipped 1 bad line ({source.name}: 1); serial x1, "), line
    two = pairscan.sample(tmp_path / "two", tickers=2, days=1, bars_per_day=5)
    pairscan.convert(two, executor="serial")
    assert main(["correlate", str(two), "--executor", "serial"]) == 0
    assert capsys.readouterr().out.startswith("2 tickers, 1 pair: pearson on close prices; ")


def test_run_with_its_report_inside_the_work_folder(tmp_path):
    source = pairscan.sample(tmp_path / "daily-stock", tickers=4, days=1, bars_per_day=20)
    work = tmp_path / "work"
    done = cli("run", source, "--workdir", work, "--report", work / "report.html", "--quiet", "--executor", "serial")
    assert done.returncode == 0, done.stderr
    assert (work / "report.html").read_text().lstrip().lower().startswith("<!doctype html")


FREED_AGAIN = """
import resource, sys
import numpy as np
from pairscan.heap import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
def touched():  # 3 MB, below numpy's huge-page size: one fault a page
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = np.ones(3 * 2**20 // 8)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, block
first, block = touched()
del block
second, block = touched()
del block
third, _ = touched()
print(kept, first, second, third)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_the_commands_process_keeps_the_memory_it_frees():
    # The pages of a freed temporary serve the next one, rather than going back to the
    # kernel to be faulted in again (a block's temporaries, block after block).
    def run(how: str) -> list[int]:
        done = subprocess.run([sys.executable, "-c", FREED_AGAIN, how], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        kept, *faults = done.stdout.split()
        return kept, [int(f) for f in faults]

    kept, (first, second, third) = run("keep")
    assert kept == "True"
    assert first >= 500  # 768 pages touched for the first time
    assert second < first / 10 and third < first / 10
    # Left as glibc has it, a block of this size is given back, and its pages faulted again.
    _, (first, second, _) = run("default")
    assert first >= 500 and second >= first / 2
