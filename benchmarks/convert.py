"""Convert benchmark: the seed's loop vs ``pairscan convert`` on each executor.

Run: ``python benchmarks/convert.py [--tickers 21] [--days 365] [--repeat 3]``

``--universe``: instead, a real universe's shape: 3,000 tickers of twenty years of daily
bars (``pairscan.sample(..., daily=True)``: late listings, delistings, halts; about 10
million rows, 1 GB of JSON Lines), generated once and kept in ``benchmarks/.cache/``
(ignored by git). The seed's loop against ``pairscan convert --force --executor
processes`` to HDF5 and to Parquet, side by side (with the CPU time of the main process
and of the pool's workers), then the CPU cost of one file split into read, parse, checks,
building each format's file in memory and writing it, from a serial run over
``--profile`` files (300 by default).
``--tickers``/``--days`` change its size.

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
import shutil
import tempfile
import time
import warnings
from pathlib import Path

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


CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache")


def universe_sources(tickers: int, days: int, seed: int = 0) -> str:
    """The folder of a ``tickers`` x ``days`` daily universe as JSON Lines, written on first use."""
    folder = os.path.join(CACHE, f"universe-jsonl-{tickers}x{days}-seed{seed}")
    done = os.path.join(folder, ".built.json")  # a dotfile: never taken for a ticker
    if not os.path.exists(done):
        shutil.rmtree(folder, ignore_errors=True)  # a build that was interrupted
        print(f"writing a {tickers:,}-ticker, {days:,}-day daily universe to {folder} (once) ...", flush=True)
        started = time.perf_counter()
        pairscan.sample(folder, tickers=tickers, days=days, daily=True, seed=seed)
        with open(done, "w") as f:
            json.dump({"tickers": tickers, "days": days, "seed": seed,
                       "seconds": round(time.perf_counter() - started, 1)}, f)
    return folder


def per_file_split(folder: str, out: str, files: int) -> dict[str, float]:
    """CPU milliseconds (``process_time``: every thread, user and system) a file spends in
    each step of a serial convert, over the first ``files`` files: reading its bytes,
    polars' parse (to an Arrow table), the checks and normalisation (to the arrays or frame
    that is stored), building each format's file in memory, and writing the file."""
    from pairscan.readers import jsonl
    from pairscan.readers.base import read_bytes
    from pairscan.store import _hdf5_image, _parquet_image, write_atomically

    paths = sorted(glob.glob(os.path.join(folder, "*.json")))[:files]
    spent = {"read": 0.0, "parse": 0.0, "checks": 0.0, "build hdf5": 0.0, "build parquet": 0.0, "file write": 0.0}
    clock = time.process_time
    for path in paths:
        t0 = clock()
        data = read_bytes(Path(path))
        t1 = clock()
        table = jsonl.parse_table(data)
        t2 = clock()
        parsed = jsonl.check_table(table, data, "error", path)
        t3 = clock()
        stem = os.path.join(out, os.path.basename(path)[:-5])
        _hdf5_image(parsed.data, stem + ".h5")
        t4 = clock()
        image = _parquet_image(parsed.data)
        t5 = clock()
        write_atomically(stem + ".parquet", image)
        t6 = clock()
        for step, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
            spent[step] += seconds
    return {step: seconds / len(paths) * 1000 for step, seconds in spent.items()}


def universe(tickers: int, days: int, repeat: int, workers: int | None, files: int) -> None:
    """The seed's loop against convert --executor processes on a daily universe, and the per-file split."""
    # The split runs here, serially: polars on one thread, as in a pool's worker (its idle
    # threads' spinning would count in the steps after each parse).
    os.environ.setdefault("POLARS_MAX_THREADS", "1")
    source = universe_sources(tickers, days)
    size = sum(os.path.getsize(p) for p in glob.glob(os.path.join(source, "*.json")))
    os.makedirs(CACHE, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pairscan-bench-", dir=CACHE) as tmp:
        seed_out = os.path.join(tmp, "seed")
        os.mkdir(seed_out)
        seed = seed_loop(source, seed_out)
        shutil.rmtree(seed_out)
        rows = [("seed loop (json.loads, sequential)", seed)]
        cpu = {}
        for fmt in ("hdf5", "parquet"):
            store = os.path.join(tmp, f"store-{fmt}")
            runs = []
            for _ in range(repeat):
                before = _cpu()
                summary = pairscan.convert(source, to=store, format=fmt, executor="processes", workers=workers,
                                           force=True, quiet=True)
                runs.append((summary["seconds"], *(b - a for a, b in zip(before, _cpu()))))
            shutil.rmtree(store)
            best = min(runs)
            rows.append((f"pairscan convert --executor processes --format {fmt}", best[0]))
            cpu[fmt] = best[1:]
        profile_out = os.path.join(tmp, "profile")
        os.mkdir(profile_out)
        split = per_file_split(source, profile_out, files)
    print(f"daily universe: {tickers:,} tickers x {days:,} days, {size / 2**20:,.0f} MiB of JSON Lines, "
          f"{os.cpu_count()} CPUs, pairscan best of {repeat}")
    print(f"{'':56} {'seconds':>8} {'vs seed':>8}")
    for label, seconds in rows:
        print(f"{label:56} {seconds:8.3f} {seed / seconds:7.1f}x")
    print(f"{summary['rows']:,} rows; CPU seconds of the best runs, main process / workers: "
          + ", ".join(f"{fmt} {main:.1f} / {pool:.1f}" for fmt, (main, pool) in cpu.items()))
    print(f"per file, serial, mean of {min(files, tickers)} files (CPU ms): "
          + ", ".join(f"{step} {ms:.2f}" for step, ms in split.items()))
    parse = sum(split[s] for s in ("read", "parse", "checks"))
    print(f"  a file to HDF5 {parse + split['build hdf5'] + split['file write']:.2f} ms, "
          f"to Parquet {parse + split['build parquet'] + split['file write']:.2f} ms")


def _cpu() -> tuple[float, float]:
    """CPU seconds so far of this process and of its ended children (a convert's pool workers)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def long_table_peak(rows: int) -> None:
    """Convert a ``rows``-row long CSV in a child process; print its peak RSS and wall time."""
    import subprocess
    import sys

    from long_table import write_long_csv

    os.makedirs(CACHE, exist_ok=True)
    table = os.path.join(CACHE, f"long-{rows}.csv")
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
    parser.add_argument("--universe", action="store_true",
                        help="the 3,000-ticker, 20-year daily universe (generated once, about 1 GB)")
    parser.add_argument("--profile", type=int, default=300, metavar="FILES",
                        help="with --universe: files in the serial per-file split")
    parser.add_argument("--tickers", type=int, default=None, help="21 (the sample), 3000 with --universe")
    parser.add_argument("--days", type=int, default=None, help="365 (the sample), 5040 with --universe")
    parser.add_argument("--repeat", type=int, default=None, help="3 (the sample), 1 with --universe")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    if args.long:
        long_table_peak(args.long)
        return
    if args.universe:
        universe(args.tickers or 3000, args.days or 5040, args.repeat or 1, args.workers, args.profile)
        return
    args.tickers, args.days, args.repeat = args.tickers or 21, args.days or 365, args.repeat or 3

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
