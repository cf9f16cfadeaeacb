"""``backtest``: choose pairs in a formation window, judge them in the trading window
that follows, rolling forward through the history (docs/backtest.md)."""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import checks
from ..engines.blocked.kernel import blas_threads
from ..errors import PairscanError
from ..executors import Execution, Pool, run_tasks
from ..panel import load_panel
from ..placement import store_index
from ..selection import Selection
from ..shm import panel_allocator
from ..store import empty_store_error, read_manifest, store_paths
from .evaluate import MappedRows, PanelRows, StoreRows, WindowJob, window_task
from .windows import Length, Window, parse_length, windows

RANKS = ("correlation", "distance")
PAIR_COLUMNS = ["window", "rank", "a", "b", "in_corr", "in_n", "distance", "out_corr", "out_n", "trades", "return"]
WINDOW_COLUMNS = ["window", "formation_start", "formation_end", "trading_start", "trading_end", "tickers",
                  "pairs_ranked", "min_periods", "in_corr_mean", "out_corr_mean", "out_corr_mean_all", "return",
                  "trades"]


@dataclass(frozen=True)
class Backtest:
    """What ``backtest`` found.

    ``windows``: one row per window (:data:`WINDOW_COLUMNS`: bounds, tickers, pairs
    ranked, the means); ``pairs``: the chosen pairs of every window
    (:data:`PAIR_COLUMNS`; ``distance`` only with ``rank="distance"``); ``summary``:
    the means over the windows where each is defined, and the trades of all of them.
    """

    windows: pd.DataFrame
    pairs: pd.DataFrame
    summary: dict
    formation: str
    trading: str
    step: str
    rank: str
    entry: float
    top: int
    selection: Selection
    executor: str
    workers: int
    seconds: float
    timings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The ``backtest --json`` object: times as ISO strings, NaN as None."""
        out = []
        for w in self.windows.to_dict(orient="records"):
            chosen = self.pairs[self.pairs["window"] == w["window"]].drop(columns="window")
            out.append({
                "formation": [_iso(w["formation_start"]), _iso(w["formation_end"])],
                "trading": [_iso(w["trading_start"]), _iso(w["trading_end"])],
                "tickers": int(w["tickers"]), "pairs_ranked": int(w["pairs_ranked"]),
                "min_periods": _plain(w["min_periods"]),
                "pairs": [{k: _plain(v) for k, v in p.items()} for p in chosen.to_dict(orient="records")],
                **{k: _plain(w[k]) for k in ("in_corr_mean", "out_corr_mean", "out_corr_mean_all", "return")},
                "trades": int(w["trades"]),
            })
        sel = self.selection
        return {
            "formation": self.formation, "trading": self.trading, "step": self.step, "rank": self.rank,
            "entry": self.entry, "top": self.top,
            "column": sel.column, "on": sel.on, "method": sel.method, "min_periods_auto": sel.auto,
            "start": sel.start, "end": sel.end, "resample": sel.resample,
            "executor": self.executor, "workers": self.workers,
            "windows": out,
            "summary": {k: _plain(v) for k, v in self.summary.items()},
            "seconds": round(self.seconds, 4),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


def _iso(stamp) -> str:
    return pd.Timestamp(stamp).isoformat()


def _plain(value):
    if value is None:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value


def backtest(
    store,
    *,
    formation: str = "12M",
    trading: str = "6M",
    step: str | None = None,
    k: int = 20,
    rank: str = "correlation",
    entry: float = 2.0,
    selection: Selection | None = None,
    execution: Execution | None = None,
    **options,
) -> Backtest:
    """Out-of-sample vetting of pairs (Gatev, Goetzmann & Rouwenhorst 2006).

    ``store`` is a store folder. Windows of ``formation`` then ``trading`` (lengths like
    ``"12M"``, ``"26W"``, ``"1Y"``, ``"90D"``) start every ``step`` (default: ``trading``);
    in each, the top ``k`` pairs of the formation slice (``rank="correlation"``: exactly
    :func:`~pairscan.correlate.correlate` on the slice; ``"distance"``: the smallest sums
    of squared differences of normalized prices) are judged on the trading slice: their
    correlation there and the trading rule (open beyond ``entry`` formation standard
    deviations, close at the crossing or the end). Selection options (``column``, ``on``,
    ``method``, ``min_periods``, ``absolute``, ``start``, ``end``, ``resample``,
    ``tickers``, ``exclude``) and execution options (``executor``, ``workers``,
    ``retries``, ``quiet``, ``connect_timeout``, ``pool``) as in ``correlate``.
    Windows run as tasks on the executor.
    """
    checks.path("store", store)
    checks.integer("k", k)
    if k < 1:
        raise PairscanError(f"k must be at least 1, not {k}")
    selection_options = {n: options.pop(n) for n in list(options) if n in Selection.__dataclass_fields__}
    execution = Execution.of(execution, **options)
    selection = Selection.of(selection, **selection_options)
    lengths = [parse_length(formation, "formation"), parse_length(trading, "trading")]
    lengths.append(parse_length(step, "step") if step is not None else lengths[1])
    if rank not in RANKS:
        raise PairscanError(f"rank must be correlation or distance, not {rank!r}")
    if rank == "distance" and selection.on == "returns":
        raise PairscanError("rank distance compares normalized prices: drop --on returns, or use --rank correlation")
    if isinstance(entry, bool) or not isinstance(entry, (int, float)) or not math.isfinite(entry) or entry < 0:
        raise PairscanError(f"entry must be a number of standard deviations >= 0, like 2.0, not {entry!r}")
    # The store's manifest read and its files listed once, for the load too: timed with it
    # (``seconds`` and ``timings["load"]``: all but opening the pool).
    listed = time.perf_counter()
    manifest = read_manifest(store)
    files = store_paths(store, manifest)
    if not files:
        raise empty_store_error(store)
    chosen = selection.universe(files) if selection.subset else list(files)
    stored = {t: files[t] for t in chosen}
    listing = time.perf_counter() - listed
    job = WindowJob(Selection(selection.column, selection.on, selection.method, selection.min_periods,
                              selection.absolute), rank, k, float(entry))
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(execution.opened())
        started = time.perf_counter() - listing
        source, first, last = _rows(pool, stored, manifest, selection, execution.quiet, store, stack)
        cut = windows(first, last, *lengths)
        if not cut:
            days = (pd.Timestamp(last) - pd.Timestamp(first)).days + 1
            raise PairscanError(
                f"the selected history runs {pd.Timestamp(first).date()} to {pd.Timestamp(last).date()} ({days:,} "
                f"days), shorter than one window of {lengths[0]} formation and {lengths[1]} trading: use shorter "
                "--formation/--trading, or a longer --start/--end", store)
        read_seconds = time.perf_counter() - started
        found = _run(pool, source, cut, job, execution)
        seconds = time.perf_counter() - started
    return _result(found, cut, lengths, rank, float(entry), k, selection, pool, seconds,
                   {"load": read_seconds, "windows": seconds - read_seconds})


def _rows(pool: Pool, files: dict[str, str], manifest: dict, selection: Selection, quiet: bool, store,
          stack: contextlib.ExitStack):
    """Where the window tasks take their rows, and the first and last selected timestamps,
    from the selected tickers' ``files`` (ticker -> stored file) and the store's ``manifest``.

    A pool that shares this process's memory (serial, threads) reads the store once
    into a panel of prices and the tasks take views of it; a local process pool reads it
    once into a file its workers map, and each task copies its rows from there;
    elsewhere (Dask) each task reads its own rows from the store, after one pass here
    for the first and last timestamps."""
    cut = selection.cut
    if pool.can.shares_memory or pool.can.maps_files:
        allocate = None if pool.can.shares_memory else panel_allocator(stack)
        panel = load_panel(store, selection.column, "prices", list(files), pool=pool, quiet=quiet, as_frame=False,
                           cut=cut, allocate=allocate, files=files, manifest=manifest)
        filename = getattr(panel.values, "filename", None)
        panel.drop_empty()  # its columns move left in place: the file's first columns
        _enough(len(panel.tickers), store)
        first, last = panel.index[0], panel.index[-1]
        if allocate is None:
            return PanelRows(panel.index, panel.values, panel.tickers, selection.on, pool), first, last
        panel.values.flush()
        return MappedRows(str(filename), panel.index, panel.tickers), first, last
    tickers, paths = list(files), [os.path.abspath(p) for p in files.values()]
    index, _, counts = store_index(paths, selection.column, "prices", pool, quiet, cut)
    keep = np.flatnonzero(counts > 0)
    _enough(len(keep), store)
    return (StoreRows([paths[i] for i in keep], [tickers[i] for i in keep], selection.column, cut), index[0],
            index[-1])


def _enough(tickers: int, store) -> None:
    if tickers < 2:
        raise PairscanError(f"need at least two tickers with prices in the selection to backtest pairs, found "
                            f"{tickers}", store)


def _run(pool: Pool, source, cut: list[Window], job: WindowJob, execution: Execution) -> list[dict]:
    parallel = pool.workers > 1 and len(cut) > 1
    if not pool.can.shares_memory:
        job = WindowJob(job.selection, job.rank, job.k, job.entry, one_blas_thread=parallel)
    tasks = [(f"window {w.number} {w.start.date()}..{w.stop.date()}", (source, w, job)) for w in cut]
    # Windows run side by side: in this process, one BLAS thread each.
    with blas_threads(1 if parallel and pool.can.shares_memory else None):
        done = dict(run_tasks(pool, window_task, tasks, desc="windows", quiet=execution.quiet,
                              retries=execution.retries))
    return [done[label] for label, _ in tasks]


def _result(found: list[dict], cut: list[Window], lengths: list[Length], rank: str, entry: float, k: int,
            selection: Selection, pool: Pool, seconds: float, timings: dict) -> Backtest:
    rows, pairs = [], []
    for w in found:
        rows.append({"window": w["window"], "formation_start": w["formation"][0], "formation_end": w["formation"][1],
                     "trading_start": w["trading"][0], "trading_end": w["trading"][1], "tickers": w["tickers"],
                     "pairs_ranked": w["pairs_ranked"], "min_periods": w["min_periods"],
                     **{c: w[c] for c in ("in_corr_mean", "out_corr_mean", "out_corr_mean_all", "return", "trades")}})
        pairs.extend({"window": w["window"], **p} for p in w["pairs"])
    columns = PAIR_COLUMNS if rank == "distance" else [c for c in PAIR_COLUMNS if c != "distance"]
    pair_frame = pd.DataFrame(pairs, columns=columns)
    window_frame = pd.DataFrame(rows, columns=WINDOW_COLUMNS)
    summary = {"windows": len(cut),
               "in_corr_mean": _nanmean(window_frame["in_corr_mean"]),
               "out_corr_mean": _nanmean(window_frame["out_corr_mean"]),
               "out_corr_mean_all": _nanmean(window_frame["out_corr_mean_all"]),
               "return_mean": _nanmean(window_frame["return"]),
               "trades": int(window_frame["trades"].sum())}
    formation, trading, step = (str(x) for x in lengths)
    return Backtest(window_frame, pair_frame, summary, formation, trading, step, rank, entry, k, selection,
                    pool.name, pool.workers, seconds, timings)


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")
