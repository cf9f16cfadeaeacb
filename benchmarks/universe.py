"""A large daily universe for benchmarks, built once and kept.

``universe(tickers=3000, days=5040)`` writes twenty years of daily bars for 3,000
tickers (``pairscan.sample(..., daily=True)``: late listings, delistings, halts, a few
histories of a handful of days), converts them to an HDF5 store and returns the
store's folder. The result is cached in ``benchmarks/.universe/`` (ignored by git),
one folder per size and seed, and reused by every benchmark that asks for the same
universe; a folder whose conversion did not finish is built again.

Run it alone to build the cache ahead of time::

    python benchmarks/universe.py [--tickers 3000] [--days 5040] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import pairscan

CACHE = Path(__file__).resolve().parent / ".universe"


def universe(tickers: int = 3000, days: int = 5040, seed: int = 0, executor: str = "processes",
             echo: bool = True) -> Path:
    """The store folder of a ``tickers`` x ``days`` daily universe, built on first use."""
    folder = CACHE / f"daily-{tickers}x{days}-seed{seed}"
    done = folder / ".built.json"  # a dotfile: never taken for a ticker
    if done.exists():
        return folder
    if folder.exists():
        shutil.rmtree(folder)  # a build that was interrupted
    started = time.perf_counter()
    if echo:
        print(f"building a {tickers:,}-ticker, {days:,}-day daily universe in {folder} (once) ...", flush=True)
    pairscan.sample(folder, tickers=tickers, days=days, daily=True, seed=seed)
    summary = pairscan.convert(folder, executor=executor)
    for source in folder.glob("*.json"):
        if not source.name.startswith("."):  # the manifest stays: a store as convert leaves it
            source.unlink()  # the store is what benchmarks read; the JSON Lines are twice its size
    done.write_text(json.dumps({"tickers": tickers, "days": days, "seed": seed, "rows": summary["rows"],
                                "seconds": round(time.perf_counter() - started, 1)}))
    if echo:
        print(f"built in {time.perf_counter() - started:.0f} s: {summary['rows']:,} rows", flush=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=3000)
    parser.add_argument("--days", type=int, default=5040)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(universe(args.tickers, args.days, args.seed))


if __name__ == "__main__":
    main()
