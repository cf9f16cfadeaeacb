"""Load benchmark: correlate's load phase alone on the 3,000-ticker daily universe.

Run: ``python benchmarks/load.py [--executor processes] [--on returns] [--repeat 3]
[--start DATE] [--end DATE] [--resample RULE]`` (a period reads only its rows; a rule
resamples each ticker as it is read).

Times what ``pairscan correlate`` does before its engine starts, on a pool that is
already running: the store -> the panel of returns (in the file a local process pool
maps, or in memory for serial and threads), each ticker's count of values (the
``auto`` min-periods rule) and whether every timestamp has every ticker or none. It
prints the best of ``--repeat`` runs with this process's CPU time and the pool
workers' (a local process pool's), so that the work left in the parent shows.
The universe is ``benchmarks/universe.py``'s, built once and cached.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import psutil

import pairscan
from pairscan.executors import open_pool
from pairscan.shm import panel_allocator


def workers_cpu() -> float:
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            times = child.cpu_times()
            total += times.user + times.system
    return total


def load_once(store: str, on: str, pool, mapped: bool, cut=None) -> dict:
    """One load as correlate runs it: wall time, CPU here and in the workers."""
    with contextlib.ExitStack() as stack:
        allocate = panel_allocator(stack) if mapped else None
        wall, cpu, theirs = time.perf_counter(), time.process_time(), workers_cpu()
        panel = pairscan.load_panel(store, on=on, pool=pool, as_frame=False, allocate=allocate, cut=cut)
        counts, complete = panel.observations(), panel.full_overlap()
        return {"wall": time.perf_counter() - wall, "parent_cpu": time.process_time() - cpu,
                "workers_cpu": workers_cpu() - theirs, "shape": panel.values.shape,
                "median_count": float(sorted(counts)[len(counts) // 2]), "complete": complete}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executor", default="processes")
    parser.add_argument("--on", default="returns", choices=["prices", "returns"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tickers", type=int, default=3000)
    parser.add_argument("--days", type=int, default=5040)
    parser.add_argument("--start")
    parser.add_argument("--end")
    parser.add_argument("--resample")
    args = parser.parse_args()
    cut = pairscan.Selection(start=args.start, end=args.end, resample=args.resample).cut
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from universe import universe

    store = str(universe(args.tickers, args.days))
    with open_pool(args.executor) as pool:
        mapped = args.executor == "processes"
        runs = [load_once(store, args.on, pool, mapped, cut) for _ in range(args.repeat)]
    best = min(runs, key=lambda r: r["wall"])
    rows, tickers = best["shape"]
    question = f" ({cut})" if cut is not None else ""
    print(f"load of {tickers:,} tickers x {rows:,} timestamps on {args.on}{question}, {args.executor} "
          f"({pool.workers} workers, {os.cpu_count()} CPUs), best of {args.repeat}:")
    print(f"   wall {best['wall']:.3f} s   CPU: this process {best['parent_cpu']:.3f} s, "
          f"workers {best['workers_cpu']:.3f} s   (all runs: "
          + ", ".join(f"{r['wall']:.3f}" for r in runs) + " s)")
    print(f"   median values per ticker {best['median_count']:.0f}, complete {best['complete']}")


if __name__ == "__main__":
    main()
