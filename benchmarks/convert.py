"""Convert benchmark: the seed's loop vs ``pairscan convert`` on each executor.

Run: ``python benchmarks/convert.py [--tickers 21] [--days 365] [--repeat 3]``

``--long [ROWS]``: instead, the peak memory of ``pairscan convert`` on a long CSV table
(ticker,date,open,high,low,close,volume; 10 million rows by default, made from the daily
sample once and kept in ``benchmarks/.cache/``), measured as the child process's
maximum resident set size (``wait4``'s ``ru_maxrss``). The goal is at most 1.5 GiB.

The seed's loop is the lesson's sequential code: ``json.loads`` per line,
``pd.DataFrame``, ``to_hdf``. pairscan's figure is the stage time that
``convert --json`` reports (``seconds``, without interpreter start-up), the best
of ``--repeat`` runs with ``--force``. Prints times and speed-ups side by side.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import tempfile
import time
import warnings

import pandas as pd

import pairscan


def seed_loop(folder: str, out: str) -> float:
    """The lesson's sequential conversion, timed."""
    filenames = sorted(glob.glob(os.path.join(folder, "*.json")))
    started = time.perf_counter()
    for fn in filenames:
        with open(fn) as f:
            data = [json.loads(line) for line in f]
        df = pd.DataFrame(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df.to_hdf(os.path.join(out, os.path.basename(fn)[:-5] + ".h5"), key="/data")
    return time.perf_counter() - started


def long_table_peak(rows: int) -> None:
    """Convert a ``rows``-row long CSV in a child process; print its peak RSS and wall time."""
    import subprocess
    import sys

    from long_table import write_long_csv

    cache = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache")
    os.makedirs(cache, exist_ok=True)
    table = os.path.join(cache, f"long-{rows}.csv")
    if not os.path.exists(table):
        write_long_csv(table, rows)
    with tempfile.TemporaryDirectory(prefix="pairscan-bench-") as tmp:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "pairscan", "convert", table, "--to", tmp, "--json",
                                  "--executor", "processes", "--quiet"], stdout=subprocess.PIPE)
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"convert failed with status {status}")
    summary = json.loads(out)
    peak = usage.ru_maxrss * 1024  # kilobytes on Linux
    print(f"long CSV: {os.path.getsize(table) / 2**20:.0f} MiB, {summary['rows']} rows, {summary['files']} tickers")
    print(f"peak RSS of convert (its largest process, main or worker): {peak / 2**30:.2f} GiB "
          f"(goal <= 1.5 GiB); wall {wall:.1f} s, convert's own seconds {summary['seconds']:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", nargs="?", type=int, const=10_000_000, default=None, metavar="ROWS",
                        help="measure the peak memory of converting a long CSV table of ROWS rows")
    parser.add_argument("--tickers", type=int, default=21)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    if args.long:
        long_table_peak(args.long)
        return

    with tempfile.TemporaryDirectory(prefix="pairscan-bench-") as tmp:
        source = os.path.join(tmp, "daily-stock")
        pairscan.sample(source, tickers=args.tickers, days=args.days)
        seed_out = os.path.join(tmp, "seed")
        os.mkdir(seed_out)
        seed = min(seed_loop(source, seed_out) for _ in range(max(1, args.repeat - 1)))
        rows = [("seed loop (json.loads, sequential)", "-", seed)]
        for executor in ("serial", "threads", "processes", "dask"):
            for fmt in ("hdf5", "parquet") if executor == "processes" else ("hdf5",):
                store = os.path.join(tmp, f"store-{executor}-{fmt}")
                best = min(
                    pairscan.convert(source, to=store, format=fmt, executor=executor,
                                     workers=args.workers, force=True, quiet=True)["seconds"]
                    for _ in range(args.repeat)
                )
                rows.append((f"pairscan convert --executor {executor} --format {fmt}", executor, best))
        print(f"{args.tickers} tickers x {args.days} days x 195 bars, {os.cpu_count()} CPUs, best of {args.repeat}")
        print(f"{'':56} {'seconds':>8} {'vs seed':>8}")
        for label, _, seconds in rows:
            print(f"{label:56} {seconds:8.3f} {seed / seconds:7.1f}x")


if __name__ == "__main__":
    main()
