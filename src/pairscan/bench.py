"""Bench: "How does performance vary?" -- the lesson's three kinds of work on every executor.

The lesson asked its reader to compare threads and processes and concluded only that
they "give some performance differences". ``pairscan bench`` measures it:

- ``sleep``: latency-bound tasks, the lesson's ``slowadd`` (8 tasks that sleep), with as
  many workers as tasks, as in the lesson.
- ``convert``: CPU-bound work per file, JSON Lines -> HDF5 with :func:`pairscan.convert`.
- ``correlate naive`` and ``correlate blocked``: every pair of a store, as the lesson did
  it (one task per pair of series) and with the blocked engine (a few block tasks of
  matrix products).

Every workload runs on ``serial``, ``threads``, ``processes`` and ``dask`` (a local
cluster), each from :func:`pairscan.executors.open_pool`. Starting a pool (forking
processes, starting a Dask cluster and importing pairscan in its workers) is timed
apart and left out of the rows: for Dask it takes seconds and would otherwise drown
what the rows show. The seconds of a row are its best of a few rounds, in which the
executors take turns, so that other work on the machine slows them alike.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .convert import convert
from .correlate import correlate
from .executors import NAMES, Pool, cpu_count, open_pool, parse_workers
from .outputs import PNG, check_output, printable
from .sample import sample

SLEEP_TASKS = 8
WORKLOADS = ("sleep", "convert", "correlate naive", "correlate blocked")

# What each row shows, in a few words: the mechanism the reader should see in its number.
SHOWS = {
    ("sleep", "serial"): "the lesson's slowadd: 8 sleeps, one after another",
    ("sleep", "threads"): "a sleeping thread releases the GIL: all 8 overlap",
    ("sleep", "processes"): "overlap too, at the cost of a process each",
    ("sleep", "dask"): "overlap too, plus a scheduler round trip per task",
    ("convert", "serial"): "parse and write each file in turn",
    ("convert", "threads"): "the parser runs outside the GIL; HDF5 writes take turns",
    ("convert", "processes"): "no GIL, no shared lock; tasks carry only paths",
    ("convert", "dask"): "as processes, plus a scheduler in the loop",
    ("correlate naive", "serial"): "the lesson's loop: one Series.corr per pair",
    ("correlate naive", "threads"): "pandas overhead holds the GIL; only numpy overlaps",
    ("correlate naive", "processes"): "every task pickles two series: pickling cost",
    ("correlate naive", "dask"): "tasks carry paths; scheduling per tiny task",
    ("correlate blocked", "serial"): "reading the store dominates; the products are ms",
    ("correlate blocked", "threads"): "a few coarse tasks: little to share out",
    ("correlate blocked", "processes"): "workers map one shared panel: nothing pickled",
    ("correlate blocked", "dask"): "workers read their blocks; few tasks to schedule",
}


@dataclass(frozen=True)
class Sizes:
    """How much work each workload does, and how many times it is timed."""

    delay: float  # seconds each slowadd task sleeps
    tickers: int
    days: int
    bars_per_day: int
    repeat: int  # the CPU-bound workloads' best of ``repeat``; sleeps are timed once


QUICK = Sizes(delay=0.25, tickers=21, days=10, bars_per_day=195, repeat=3)  # start-ups dominate
FULL = Sizes(delay=1.0, tickers=21, days=365, bars_per_day=195, repeat=3)  # the seed's data set


def slowadd(a, b, delay=1.0):
    """The seed's task: wait ``delay`` seconds (as on a network or a disk), then add."""
    time.sleep(delay)
    return a + b


def _ready(delay: float) -> int:
    """Warm-up task: imports what the workloads' tasks need, then holds its worker a moment.

    Holding it makes the warm-up tasks land on different workers, so every worker
    has started and imported before the clock runs.
    """
    import pairscan.convert  # noqa: F401
    import pairscan.correlate  # noqa: F401

    time.sleep(delay)
    return os.getpid()


WARM_UP_HOLD = 0.2


def _warm_up(pool: Pool) -> None:
    futures = [pool.executor.submit(_ready, WARM_UP_HOLD) for _ in range(pool.workers)]
    for future in futures:
        future.result()


@contextlib.contextmanager
def _started(name: str, workers: int, startup: dict[str, float]) -> Iterator[Pool]:
    """An executor's pool, started and warmed up; adds the seconds that took to ``startup``."""
    started = time.perf_counter()
    with _pool(name, workers) as pool:
        _warm_up(pool)
        # Every worker held its warm-up task for WARM_UP_HOLD at the same time.
        held = WARM_UP_HOLD * (pool.workers if name == "serial" else 1)
        startup[name] = startup.get(name, 0.0) + max(0.0, time.perf_counter() - started - held)
        yield pool


@contextlib.contextmanager
def _pool(name: str, workers: int) -> Iterator[Pool]:
    if name != "dask" or workers <= cpu_count():
        with open_pool(name, workers) as pool:
            yield pool
        return
    # More sleeping tasks than CPUs: as many Dask worker processes as CPUs, with
    # threads enough for every task, as Dask itself would set it up. A process per
    # task would take seconds to start and measure nothing more.
    from distributed import Client

    from .executors.dask import local_cluster

    processes = cpu_count()
    with local_cluster(processes, threads=-(-workers // processes)) as cluster, \
            Client(cluster, set_as_default=False) as client, open_pool(client.get_executor()) as pool:
        yield pool


def _sleep_work(pool: Pool, delay: float) -> Callable[[], list]:
    def work():
        # As in the seed: submit every task, then collect every result.
        futures = [pool.executor.submit(slowadd, i, i, delay=delay) for i in range(SLEEP_TASKS)]
        return [f.result() for f in futures]

    return work


def bench(
    quick: bool = False,
    workers: int | str | None = None,
    quiet: bool = False,
    plot: str | os.PathLike | None = None,
    echo: bool = True,
    executors: tuple[str, ...] = NAMES,
) -> dict:
    """Time the four workloads on each executor; return (and with ``echo`` print) the table.

    Returns ``{"rows": [{"workload", "executor", "workers", "seconds", "speedup"}, ...],
    "cpus", "quick", "repeat", "startup"}``: ``speedup`` is the serial row's seconds
    over this row's for the same workload; ``startup`` the seconds each executor took
    to start and warm up, kept out of the rows. ``workers`` sets the pools of the
    CPU-bound workloads (default: one per CPU); the sleeping tasks always get one
    worker each. ``plot`` writes the bar chart there.
    """
    n = parse_workers(workers) or cpu_count()
    if plot is not None:
        check_output(plot, "plot", PNG)  # before minutes of timing
    sizes = QUICK if quick else FULL
    if "serial" not in executors:
        executors = ("serial", *executors)
    seconds: dict[tuple[str, str], float] = {}
    used: dict[tuple[str, str], int] = {}
    startup: dict[str, float] = {}
    say = _progress(quiet)
    with tempfile.TemporaryDirectory(prefix="pairscan-bench-") as tmp:
        folder = sample(Path(tmp) / "daily-stock", tickers=sizes.tickers, days=sizes.days,
                        bars_per_day=sizes.bars_per_day)
        rows_in = sizes.tickers * sizes.days * sizes.bars_per_day
        # Sleeping is the same on a busy machine as on an idle one: one executor at a time.
        for name in executors:
            say(f"sleep on {name}")
            with _started(name, 1 if name == "serial" else SLEEP_TASKS, startup) as pool:
                started = time.perf_counter()
                result = _sleep_work(pool, sizes.delay)()
                took = time.perf_counter() - started
                if result != [2 * i for i in range(SLEEP_TASKS)]:
                    raise RuntimeError(f"slowadd on {name} returned {result}")
                seconds["sleep", name], used["sleep", name] = took, pool.workers
        say("starting the pools")
        with contextlib.ExitStack() as stack:
            pools = {name: stack.enter_context(_started(name, 1 if name == "serial" else n, startup))
                     for name in executors}
            stores = {name: Path(tmp) / f"store-{name}" for name in executors}

            def convert_on(name):
                summary = convert(folder, stores[name], force=True, quiet=True, pool=pools[name])
                if summary["rows"] != rows_in:
                    raise RuntimeError(f"convert on {name} stored {summary['rows']} rows, not {rows_in}")

            reference = []

            def correlate_on(name, engine):
                found = correlate(stores["serial"], k=1, engine=engine, quiet=True, pool=pools[name])
                best = (found.top.a[0], found.top.b[0], float(found.top["corr"][0]))
                reference.append(best)
                if best[:2] != reference[0][:2] or abs(best[2] - reference[0][2]) > 1e-9:
                    raise RuntimeError(f"correlate {engine} on {name} found {best}, not {reference[0]}")

            work = {"convert": convert_on,
                    "correlate naive": lambda name: correlate_on(name, "naive"),
                    "correlate blocked": lambda name: correlate_on(name, "blocked")}
            for workload, run in work.items():
                say(workload)
                # Round after round over every executor, so that a burst of other work on
                # the machine slows them alike; each keeps its best round.
                for _ in range(sizes.repeat):
                    for name in executors:
                        started = time.perf_counter()
                        run(name)
                        took = time.perf_counter() - started
                        seconds[workload, name] = min(took, seconds.get((workload, name), took))
                        used[workload, name] = pools[name].workers
    rows = [
        {
            "workload": workload,
            "executor": name,
            "workers": used[workload, name],
            "seconds": round(seconds[workload, name], 4),
            "speedup": round(seconds[workload, "serial"] / seconds[workload, name], 2),
        }
        for workload in WORKLOADS
        for name in executors
    ]
    out = {
        "rows": rows,
        "cpus": cpu_count(),
        "quick": quick,
        "repeat": sizes.repeat,
        "startup": {k: round(v, 3) for k, v in startup.items()},
    }
    caption = describe(sizes)
    if plot is not None:
        from .plot import bench_figure, save_figure

        save_figure(bench_figure(rows, f"pairscan bench{' --quick' if quick else ''}: {out['cpus']} CPUs\n{caption}"),
                    plot)
    if echo:
        print(table(out, caption))
        if plot is not None:
            print(f"\nbar chart: {printable(plot)}")
    return out


def describe(sizes: Sizes) -> str:
    """One line on what the workloads did."""
    rows = sizes.days * sizes.bars_per_day
    pairs = sizes.tickers * (sizes.tickers - 1) // 2
    return (f"sleep: {SLEEP_TASKS} tasks x {sizes.delay:g} s; convert: {sizes.tickers} files x {rows:,} lines; "
            f"correlate: {pairs} pairs x {rows:,} rows")


def table(out: dict, caption: str = "") -> str:
    """The bench result as the text table ``pairscan bench`` prints."""
    rows = out["rows"]
    lines = [
        f"pairscan bench{' --quick' if out['quick'] else ''}: {out['cpus']} CPUs; "
        f"best of {out['repeat']} rounds, executors taking turns (sleep: 1 round)",
    ]
    if caption:
        lines.append(caption)
    lines += ["", f"{'workload':<18} {'executor':<10} {'workers':>7} {'seconds':>8} {'speed-up':>8}  shows"]
    previous = None
    for r in rows:
        workload = r["workload"] if r["workload"] != previous else ""
        if previous is not None and workload:
            lines.append("")
        previous = r["workload"]
        lines.append(f"{workload:<18} {r['executor']:<10} {r['workers']:>7} {r['seconds']:>8.3f} "
                     f"{r['speedup']:>7.2f}x  {SHOWS.get((r['workload'], r['executor']), '')}")
    by = {(r["workload"], r["executor"]): r["seconds"] for r in rows}
    names = list(dict.fromkeys(r["executor"] for r in rows))
    gains = ", ".join(f"{name} {by['correlate naive', name] / by['correlate blocked', name]:.1f}x" for name in names)
    lines += [
        "",
        f"blocked engine over naive per-pair tasks, same executor: {gains}.",
        "speed-up: the serial row's seconds over this row's, for the same workload.",
        "start-up, not in the seconds above (pool start and warm-up): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in out["startup"].items()),
    ]
    return "\n".join(lines)


def _progress(quiet: bool) -> Callable[[str], None]:
    if quiet or not sys.stderr.isatty():
        return lambda message: None
    return lambda message: print(f"bench: {message}...", file=sys.stderr, flush=True)
