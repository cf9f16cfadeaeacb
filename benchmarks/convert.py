"""Convert benchmark: the seed's loop vs ``pairscan convert`` on each executor.

Run: ``python benchmarks/convert.py [--tickers 21] [--days 365] [--repeat 3]``

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=21)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()

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
