"""Planning past one machine: one Dask worker's measured throughput, projected to n tickers.

Run: ``python benchmarks/plan.py STORE [--memory-limit 4GB] [--repeat 3]``

``STORE`` is a store of at least two blocks of tickers, e.g. the sample's year of
2-minute bars with ragged histories::

    pairscan sample data --tickers 440 --ragged && pairscan convert data --to store

Measured here, in one process with one BLAS thread (what a Dask worker runs with):

- read: the seconds a block task spends reading one block of ``b`` tickers from the
  store and aligning it on the union index (``StoreBlocks.columns``);
- compute: the seconds of one off-diagonal block task on two blocks already read,
  and so the GFLOP/s of its products;
- memory: the peak of one whole task (reading both blocks, then the products), with
  tracemalloc.

Then, for 10,000 and 100,000 tickers of ``--rows`` timestamps, it prints the FLOPs,
the block width that ``--memory-limit`` allows per task, the memory per task, the
number of tasks and the expected time on N workers, each worker one thread. A task
reads one or two blocks (one when its worker still holds the other from its last
task), so the time is given as a range.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import tracemalloc

import numpy as np

from pairscan.correlate import parse_size
from pairscan.engines.blocked import BlockJob, StoreBlocks, TopPairs, blas_threads, block_size_for, block_task
from pairscan.engines.blocked.tasks import cluster_block_width
from pairscan.panel import InMemory
from pairscan.placement import index_chunk, union_index
from pairscan.store import store_files

YEAR_OF_2_MINUTE_BARS = 365 * 195  # the sample's year, as the lesson's data
TICKERS = (10_000, 100_000)
WORKERS = (8, 32, 128, 512)


def measure(store: str, block: int | None, repeat: int) -> dict:
    paths = [os.path.abspath(p) for p in store_files(store).values()]
    index, _, _ = union_index(*(index_chunk(paths[i:i + 64], "close") for i in range(0, len(paths), 64)))
    rows = len(index)
    b = block or block_size_for(rows, len(paths), parse_size("1GB"))
    if 2 * b > len(paths):
        raise SystemExit(f"the store needs at least {2 * b} tickers for two blocks of {b}")
    blocks = {(0, b): paths[:b], (b, 2 * b): paths[b:2 * b]}
    spec = (0, b, b, 2 * b)
    job = BlockJob("pearson", None, TopPairs(10))

    def read(attempt: int) -> float:
        # A token of its own: the worker's cache of blocks cannot answer, the store must.
        source = StoreBlocks(blocks, "close", "prices", index, f"read {attempt}")
        started = time.perf_counter()
        source.columns(0, b)
        return time.perf_counter() - started

    with blas_threads(1):
        read_s = min(read(attempt) for attempt in range(repeat))
        both = StoreBlocks(blocks, "close", "prices", index)
        values = np.hstack([both.columns(0, b), both.columns(b, 2 * b)])
        ragged = bool(np.isnan(values).any())
        in_memory = InMemory(values)
        compute_s = math.inf
        for _ in range(repeat):
            started = time.perf_counter()
            block_task(in_memory, spec, job)
            compute_s = min(compute_s, time.perf_counter() - started)
        tracemalloc.start()
        block_task(StoreBlocks(blocks, "close", "prices", index, "peak"), spec, job)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    products = 6 if ragged else 1  # GEMMs of rows x b x b per off-diagonal task
    flops = products * 2 * rows * b * b
    file_bytes = sum(os.path.getsize(p) for p in paths) / len(paths)
    return dict(n=len(paths), rows=rows, b=b, ragged=ragged, read_s=read_s, compute_s=compute_s,
                gflops=flops / compute_s / 1e9, peak=peak, products=products, file_bytes=file_bytes)


def project(m: dict, n: int, rows: int, limit: int, workers: int) -> dict:
    """What correlate would do for ``n`` tickers on ``workers`` single-thread workers."""
    b = block_size_for(rows, n, limit)
    b = min(b, cluster_block_width(n, workers))  # as correlate chooses on a cluster
    blocks = math.ceil(n / b)
    tasks = blocks * (blocks + 1) // 2
    scale = (b / m["b"]) * (rows / m["rows"])
    compute = m["compute_s"] * (b / m["b"]) * scale  # products grow with rows * b^2
    read = m["read_s"] * scale
    waves = math.ceil(tasks / workers)
    return dict(
        b=b, tasks=tasks, memory=m["peak"] * scale,
        # Every pair once: products * 2 * rows FLOPs per pair, n^2 / 2 pairs.
        flops=m["products"] * rows * n * n,
        low=waves * (compute + read), high=waves * (compute + 2 * read),
        read_bytes=(tasks * b * m["file_bytes"] * rows / m["rows"], 2 * tasks * b * m["file_bytes"] * rows / m["rows"]),
    )


def hours(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--block", type=int, default=None, help="block width to measure (default: 1GB's)")
    parser.add_argument("--rows", type=int, default=YEAR_OF_2_MINUTE_BARS, help="timestamps to plan for")
    parser.add_argument("--memory-limit", default="4GB", help="per task, as correlate's --memory-limit")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    m = measure(args.store, args.block, args.repeat)
    kind = "ragged (6 products per block pair)" if m["ragged"] else "aligned (1 product per block pair)"
    print(f"measured: {m['rows']} rows, blocks of {m['b']} tickers, {kind}, one thread")
    print(f"  read one block    {m['read_s']:7.2f} s   ({m['b'] / m['read_s']:.0f} tickers/s, "
          f"{m['file_bytes'] / 2**20:.1f} MiB per stored ticker)")
    print(f"  compute one task  {m['compute_s']:7.2f} s   ({m['gflops']:.1f} GFLOP/s)")
    print(f"  peak memory       {m['peak'] / 2**30:7.2f} GiB per task")
    print()
    # Something to check the model against: pairscan correlate STORE --executor dask --workers W
    # (its timings.correlate), with the default --memory-limit.
    for workers in (1, 2):
        p = project(m, m["n"], m["rows"], parse_size("1GB"), workers)
        print(f"  this store on {workers} worker(s): {p['tasks']} tasks, {hours(p['low'])} to {hours(p['high'])}")
    print()
    limit = parse_size(args.memory_limit)
    print(f"plan: {args.rows} rows, --memory-limit {args.memory_limit} per task, one thread per worker")
    for n in TICKERS:
        first = project(m, n, args.rows, limit, WORKERS[0])
        print(f"  n={n:,}: {first['flops'] / 1e12:,.0f} TFLOP; the panel alone {n * args.rows * 8 / 2**30:,.0f} GiB")
        for workers in WORKERS:
            p = project(m, n, args.rows, limit, workers)
            print(f"    {workers:4} workers: blocks of {p['b']:4}, {p['tasks']:>9,} tasks, "
                  f"{p['memory'] / 2**30:4.1f} GiB per task, files read {p['read_bytes'][0] / 2**40:5.1f}-"
                  f"{p['read_bytes'][1] / 2**40:5.1f} TiB, {hours(p['low'])} to {hours(p['high'])}")


if __name__ == "__main__":
    main()
