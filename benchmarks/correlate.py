"""Correlate benchmark: pairscan's engines vs the lesson's per-pair loop, pandas and one DGEMM.

Run: ``python benchmarks/correlate.py [--quick] [--universe] [--only-universe]``

Data: ragged 2-minute samples (``pairscan.sample(..., ragged=True)``: 60 days of 195
bars, about 1 % of bars missing at random, histories starting and ending apart),
stored as HDF5. Four comparisons, printed as ratios:

1. compute only, n=200: the lesson's loop (``series[a].corr(series[b])`` on series
   already in memory; as the lesson wrote it, for every ordered pair a != b, and over
   each pair once, a < b) vs pairscan's ``timings.correlate``;
2. end to end from the store, n=500: pandas (``read_hdf`` per ticker, then
   ``DataFrame.corr``) vs pairscan's ``seconds`` (reading included);
3. the floor for any exact method, n=500: one general DGEMM ``Z.T @ Z2`` on the same
   panel vs pairscan's ``timings.correlate``;
4. n=2,000, top 10 with ``--memory-limit 200MB``: peak memory (max RSS) of a
   ``pairscan correlate`` process.
5. with ``--universe``: the 3,000-ticker, 20-year daily universe of
   ``benchmarks/universe.py`` (built once and cached), end to end on returns with the
   default ranking: pandas (``read_hdf`` per ticker, then
   ``np.log(series).diff()`` per ticker, aligned, ``.corr(min_periods=M)``, ``M`` the
   ``auto`` value pairscan used) against ``pairscan correlate --on returns --executor processes``, each in a
   process of its own, with the load/compute split, peak RSS and whether the top 10
   agree. The store is read once first, untimed, so that neither run pays for the disk.

Each pairscan figure is the best of ``--repeat`` runs on each executor. The Dask
executors (``dask``: a LocalCluster of one single-thread worker process per CPU;
``tcp://HOST:PORT``: an existing scheduler) are started, or connected to, before
any timed run. ``processes`` runs twice: with a new pool each run, and with one pool
kept across the runs (``processes, pool kept``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import pandas as pd

import pairscan
from pairscan.executors import open_pool
from pairscan.sample import iter_sample_frames
from pairscan.store import write_frame

DAYS = 60


def make_store(root: str, n: int) -> str:
    """A ragged store of ``n`` tickers, written straight from the sample's frames."""
    store = os.path.join(root, f"store-{n}")
    os.makedirs(store)
    for ticker, frame in iter_sample_frames(tickers=n, days=DAYS, ragged=True, seed=1):
        write_frame(frame, os.path.join(store, f"{ticker}.h5"))
    return store


def best(fn, repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def seed_loop(series: dict[str, pd.Series], ordered: bool) -> float:
    """The lesson's loop, timed: as written (every ordered pair a != b), or each pair once."""
    started = time.perf_counter()
    results = {}
    if ordered:
        for a in series:
            for b in series:
                if a != b:
                    results[a, b] = series[a].corr(series[b])
    else:
        for a, b in itertools.combinations(series, 2):
            results[a, b] = series[a].corr(series[b])
    max(results.items(), key=lambda kv: kv[1])
    return time.perf_counter() - started


def pandas_end_to_end(store: str) -> float:
    started = time.perf_counter()
    frames = {}
    for name in sorted(os.listdir(store)):
        if name.endswith(".h5"):
            frames[name[:-3]] = pd.read_hdf(os.path.join(store, name), "/data")["close"]
    matrix = pd.DataFrame(frames).corr()
    np.nanargmax(np.where(np.eye(len(matrix), dtype=bool), np.nan, matrix.to_numpy()))
    return time.perf_counter() - started


def dgemm(store: str) -> float:
    panel = pairscan.load_panel(store).to_numpy()
    z = np.nan_to_num(panel - np.nanmean(panel, axis=0))
    z2 = z.copy()
    started = time.perf_counter()
    z.T @ z2
    return time.perf_counter() - started


def high_water(pid: int) -> float:
    """The peak resident memory (MiB) of process ``pid`` so far (Linux's VmHWM), 0 if gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def peak_rss(store: str, limit: str) -> tuple[float, float, dict]:
    """Run ``pairscan correlate`` in its own process; its peak RSS (MiB) and wall time.

    The figure is that one process's own high-water mark, read while it runs: not
    ``wait4``'s ``ru_maxrss``, which for a process started from this (large) one keeps
    this one's size at the time it started.
    """
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pairscan", "correlate", store, "--top", "10", "--memory-limit", limit,
             "--json", "--quiet"], stdout=out)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, high_water(proc.pid))
            time.sleep(0.01)
        wall = time.perf_counter() - started
        if proc.returncode:
            raise SystemExit(f"pairscan correlate failed (exit status {proc.returncode})")
        out.seek(0)
        return peak, wall, json.loads(out.read())


def pandas_universe(store: str, min_periods: int) -> dict:
    """The oracle on the universe, timed: read_hdf per ticker, log returns, DataFrame.corr."""
    started = time.perf_counter()
    frames = {}
    for name in sorted(os.listdir(store)):
        if name.endswith(".h5"):
            # Each ticker's log returns on its own timestamps, then aligned (docs/semantics.md).
            frames[name[:-3]] = np.log(pd.read_hdf(os.path.join(store, name), "/data")["close"]).diff()
    panel = pd.DataFrame(frames)
    loaded = time.perf_counter()
    matrix = panel.corr(min_periods=min_periods).to_numpy()
    computed = time.perf_counter()
    upper = np.triu(np.ones(matrix.shape, dtype=bool), 1) & ~np.isnan(matrix)
    a, b = np.nonzero(upper)
    order = np.lexsort((b, a, -matrix[a, b]))[:10]
    names = list(panel.columns)
    top = [[names[a[i]], names[b[i]], float(matrix[a[i], b[i]])] for i in order]
    return {"load": loaded - started, "correlate": computed - loaded, "seconds": computed - started, "top": top}


def pairscan_universe(store: str, executor: str, memory_limit: str) -> dict:
    """``pairscan correlate --on returns`` on the universe, as the command line runs it."""
    started = time.perf_counter()
    out = pairscan.correlate(store, on="returns", executor=executor, memory_limit=memory_limit).to_dict()
    out["wall"] = time.perf_counter() - started
    out["top"] = [[r["a"], r["b"], r["corr"]] for r in out["top"]]
    return out


def in_own_process(what: str, *args: str) -> dict:
    """Run ``what`` (pandas or pairscan) in a fresh interpreter; its result, wall time and
    peak memory: the process's own peak RSS and its largest child's (pool workers; the
    pages they share with it, the mapped panel among them, count in both)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen([sys.executable, __file__, "--child", what, *args], stdout=out)
        if proc.wait():
            raise SystemExit(f"{what} on the universe failed (exit status {proc.returncode})")
        out.seek(0)
        result = json.loads(out.read())
    result["process_wall"] = time.perf_counter() - started
    return result


def child(what: str, args: list[str]) -> None:
    import threading

    import psutil

    warnings.simplefilter("ignore", RuntimeWarning)
    workers = {}  # pool workers' peak RSS, read while they run (they end before we could ask)
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for worker in psutil.Process().children(recursive=True):
                workers[worker.pid] = max(workers.get(worker.pid, 0.0), high_water(worker.pid))
            done.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    result = pandas_universe(args[0], int(args[1])) if what == "pandas" else pairscan_universe(*args)
    done.set()
    watcher.join()
    result["rss_self"] = high_water(os.getpid())
    result["rss_children"] = max(workers.values(), default=0.0)
    print(json.dumps(result))


def read_through(store: str) -> float:
    """Read every file of ``store`` once, untimed: both timed runs then find it in the
    page cache, so the one that runs first does not pay for the disk. Its seconds."""
    started = time.perf_counter()
    for name in os.listdir(store):
        with open(os.path.join(store, name), "rb") as f:
            while f.read(1 << 20):
                pass
    return time.perf_counter() - started


def universe_part(executor: str, memory_limit: str) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from universe import universe

    store = str(universe())
    files = [f for f in os.listdir(store) if f.endswith(".h5")]
    warmed = read_through(store)
    ours = in_own_process("pairscan", store, executor, memory_limit)
    theirs = in_own_process("pandas", store, str(ours["min_periods"]))
    rows = [("pandas: read_hdf + np.log(s).diff() + corr", theirs),
            (f"pairscan correlate --on returns, {executor}", ours)]
    print(f"5. the universe: {len(files):,} tickers, 20 years of daily bars, on returns, "
          f"min_periods auto = {ours['min_periods']}, --memory-limit {memory_limit}")
    print(f"   the store was read once before the timed runs ({warmed:.1f} s): both find it in the page cache")
    print(f"   {'':46} {'total':>8} {'load':>8} {'compute':>8} {'vs pandas':>9}  peak RSS (MiB)")
    for label, r in rows:
        total = r["seconds"]
        load = r["timings"]["load"] if "timings" in r else r["load"]
        compute = r["timings"]["correlate"] if "timings" in r else r["correlate"]
        rss = f"{r['rss_self']:.0f}" + (f", workers {r['rss_children']:.0f}" if r["rss_children"] > 1 else "")
        print(f"   {label:46} {total:7.2f}s {load:7.2f}s {compute:7.2f}s {theirs['seconds'] / total:8.1f}x  {rss}")
    same = [p[:2] for p in ours["top"]] == [p[:2] for p in theirs["top"]]
    close = same and all(abs(x[2] - y[2]) <= 1e-12 for x, y in zip(ours["top"], theirs["top"]))
    print(f"   top 10 {'equal' if close else 'DIFFERENT'} (pairs in order, |corr difference| <= 1e-12); "
          f"best {ours['top'][0][0]}~{ours['top'][0][1]} r={ours['top'][0][2]:.6f}")
    if ours.get("streamed"):
        print("   pairscan streamed blocks from the store (the panel does not fit the memory limit)")
    else:
        print("   pairscan loaded the panel whole (it fits the memory limit)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller n, for a smoke run")
    parser.add_argument("--executors", default="serial,threads,processes,dask",
                        help="comma-separated executors for pairscan's rows (also tcp://HOST:PORT)")
    parser.add_argument("--universe", action="store_true",
                        help="also run part 5, the 3,000-ticker daily universe (built once, cached)")
    parser.add_argument("--only-universe", action="store_true", help="run part 5 alone")
    parser.add_argument("--universe-executor", default="processes")
    parser.add_argument("--universe-memory-limit", default="1GB")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1:])
    if args.only_universe:
        return universe_part(args.universe_executor, args.universe_memory_limit)
    executors = args.executors.split(",")
    n_compute, n_end, n_big = (50, 100, 300) if args.quick else (200, 500, 2000)
    warnings.simplefilter("ignore", RuntimeWarning)

    with tempfile.TemporaryDirectory(prefix="pairscan-bench-") as root, contextlib.ExitStack() as clusters:
        # A cluster's start-up is not part of any timed run: start it once, pass its executor.
        dask = {ex: clusters.enter_context(open_pool(ex)).executor
                for ex in executors if ex == "dask" or ex.startswith(("tcp://", "tls://"))}
        if "processes" in executors:
            # A process pool both ways: a new one each run (what a `pairscan correlate`
            # process gets), and one kept across runs (a notebook or service passing its
            # executor): its workers are forked once, and the memory they share with this
            # process is copied on this side once, not again in every run.
            kept = "processes, pool kept"
            dask[kept] = clusters.enter_context(open_pool("processes")).executor
            executors.insert(executors.index("processes") + 1, kept)
        print(f"ragged 2-minute samples, {DAYS} days x 195 bars, {os.cpu_count()} CPUs, best of {args.repeat}")
        print()
        store = make_store(root, n_compute)
        series = {t: s for t, s in pairscan.load_panel(store).items()}
        series = {t: s.dropna() for t, s in series.items()}
        seed = seed_loop(series, ordered=True)
        once = seed_loop(series, ordered=False)
        print(f"1. compute only, n={n_compute} ({n_compute * (n_compute - 1) // 2} pairs)")
        print(f"   {'the lesson loop as written (a != b: every pair twice)':52} {seed:9.3f} s")
        print(f"   {'the lesson loop over each pair once (a < b)':52} {once:9.3f} s")
        print(f"   {'':52} {'':11} {'vs as written':>13} {'vs once':>8}")
        for ex in executors:
            t = best(lambda: pairscan.correlate(store, executor=dask.get(ex, ex)).timings["correlate"], args.repeat)
            print(f"   {'pairscan blocked, ' + ex:52} {t:9.4f} s  {seed / t:12.0f}x {once / t:7.0f}x")
        print()

        store = make_store(root, n_end)
        pd_time = best(lambda: pandas_end_to_end(store), max(1, args.repeat - 1))
        print(f"2. end to end from the store, n={n_end}")
        print(f"   {'pandas: read_hdf per ticker + DataFrame.corr':52} {pd_time:9.3f} s")
        compute = {}
        for ex in executors:
            runs = [pairscan.correlate(store, executor=dask.get(ex, ex)) for _ in range(args.repeat)]
            t = min(r.seconds for r in runs)
            compute[ex] = min(r.timings["correlate"] for r in runs)
            print(f"   {'pairscan correlate (seconds), ' + ex:52} {t:9.3f} s  {pd_time / t:8.1f}x")
        print()

        gemm = best(lambda: dgemm(store), args.repeat)
        print(f"3. compute vs one general DGEMM Z.T @ Z2 on the same panel, n={n_end}")
        print(f"   {'DGEMM (floor for any exact method)':52} {gemm:9.4f} s")
        for ex, t in compute.items():
            print(f"   {'pairscan timings.correlate, ' + ex:52} {t:9.4f} s  {t / gemm:8.2f}x the DGEMM")
        print()

        store = make_store(root, n_big)
        rss, wall, out = peak_rss(store, "200MB")
        print(f"4. n={n_big}, top 10, --memory-limit 200MB (threads)")
        print(f"   peak memory of the process (max RSS): {rss:.0f} MiB  "
              f"(wall {wall:.1f} s incl. start-up; pairscan seconds {out['seconds']:.1f})")
        print(f"   best pair {out['top'][0]['a']}~{out['top'][0]['b']} r={out['top'][0]['corr']:.6f}")
    if args.universe:
        print()
        universe_part(args.universe_executor, args.universe_memory_limit)


if __name__ == "__main__":
    main()
