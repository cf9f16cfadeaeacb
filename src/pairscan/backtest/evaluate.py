"""One window of a backtest, as a task: its rows read once, the pairs chosen in
formation, judged in trading.

A task gets the window's rows of every selected ticker's prices (the selection's
column, cut to ``--start/--end`` and resampled) from a :class:`PanelRows` (a panel
this process holds: serial, threads), a :class:`MappedRows` (a panel in a file the
workers of a local process pool map) or a :class:`StoreRows` (the stored files, read
where the task runs: Dask), reading only ``[F0, T1)``. From them:

- formation ``[F0, F1)``: :func:`~pairscan.correlate.correlate` on the slice, with
  the same selection (``min_periods="auto"`` counted on the slice; tickers with no
  value there left out), top ``k``; or with ``rank="distance"`` the ``k`` pairs of
  smallest sum of squared differences of normalized prices
  (:mod:`pairscan.engines.blocked.distance`);
- trading ``[F1, T1)``: each chosen pair's correlation (pandas ``A.corr(B, method)``
  of its selected series on the slice), the trading rule (:mod:`.rule`), and the mean
  correlation of every pair ranked on the slice by the same rule.

On returns, each ticker's log returns are taken on its own timestamps within the
slice, as ``correlate`` on the slice takes them: the first price of a slice has no
return.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from ..correlate import choose_engine, correlate
from ..engines.blocked.distance import nearest_pairs
from ..engines.blocked.kernel import blas_threads
from ..engines.blocked.tasks import Block, correlate_blocked
from ..engines.naive import correlate_naive
from ..executors import Execution, Pool, SerialExecutor, preload, run_tasks
from ..panel import align, read_selected
from ..placement import load, plan_placement
from ..selection import Cut, Selection
from ..store import read_column_period
from .pearson import slice_pearson
from .rule import formation_sigma, trade
from .windows import Window, rows

preload(__name__)  # what its process workers need
MEMORY_LIMIT = 256 * 2**20  # a window task's engine working set
CHANGES_COLUMNS = 64  # tickers whose returns are taken at once
NS = np.timedelta64(1, "ns")


@dataclass(frozen=True)
class WindowJob:
    """What every window task computes."""

    selection: Selection  # column, on, method, min_periods, absolute (the period and subset are applied by the reader)
    rank: str
    k: int
    entry: float
    one_blas_thread: bool = False


class PanelRows:
    """A window's rows from a panel of prices this process holds (a view, no copy), and
    with ``on="returns"`` the returns of the whole panel (:func:`changes_of`), taken once,
    :data:`CHANGES_COLUMNS` columns at a time (their temporaries stay in the cache): side
    by side on ``pool`` when its tasks share this process's memory (threads)."""

    def __init__(self, index: np.ndarray, values: np.ndarray, tickers: list[str], on: str = "prices",
                 pool: Pool | None = None):
        self.index, self.values, self.tickers = index, values, tickers
        self.changes = None
        if on == "returns":
            self.changes = np.empty(values.shape, order="F")
            width = values.shape[1]
            tasks = [(f"returns {a}", (values, self.changes, a, min(a + CHANGES_COLUMNS, width)))
                     for a in range(0, width, CHANGES_COLUMNS)]
            if pool is None or not pool.can.shares_memory or pool.workers < 2 or len(tasks) < 2:
                for _, args in tasks:
                    _changes_part(*args)
            else:  # np.log, most of the work, lets go of the interpreter's lock
                for _ in run_tasks(pool, _changes_part, tasks, desc="returns", quiet=True):
                    pass

    def read(self, low: np.datetime64, high: np.datetime64, on: str = "prices"):
        """``(timestamps, prices, returns or None)`` of the rows in ``[low, high)``."""
        span = rows(self.index, low, high)
        if on != "returns":
            return self.index[span], self.values[span], None
        changes = changes_of(self.values[span]) if self.changes is None else self.changes[span]
        return self.index[span], self.values[span], changes


def _changes_part(prices: np.ndarray, out: np.ndarray, start: int, stop: int) -> None:
    """Task: :func:`changes_of` of the columns ``start:stop`` of ``prices``, into ``out``'s."""
    changes_of(prices[:, start:stop], out[:, start:stop])


class MappedRows:
    """A window's rows from a panel of prices in a file every worker of a local process
    pool maps (:func:`~pairscan.shm.panel_allocator`; the store read once, by the pool):
    the window's rows copied out of the map, and their returns taken there."""

    def __init__(self, path: str, index: np.ndarray, tickers: list[str]):
        self.path, self.index, self.tickers = path, index, tickers

    def read(self, low: np.datetime64, high: np.datetime64, on: str = "prices"):
        """``(timestamps, prices, returns or None)`` of the rows in ``[low, high)``."""
        span = rows(self.index, low, high)
        mapped = np.memmap(self.path, np.float64, "r", shape=(len(self.index), len(self.tickers)), order="F")
        values = np.array(mapped[span], order="F")
        del mapped
        return self.index[span], values, changes_of(values) if on == "returns" else None


class StoreRows:
    """A window's rows read from the stored files where the task runs: only the rows of
    ``[low, high)`` (within ``--start/--end``), or the whole period when resampled
    (a bin's label can lie apart from its rows)."""

    def __init__(self, paths: list[str], tickers: list[str], column: str, cut: Cut | None):
        self.paths, self.tickers, self.column, self.cut = paths, tickers, column, cut

    def read(self, low: np.datetime64, high: np.datetime64, on: str = "prices"):
        """``(timestamps, prices, returns or None)`` of the rows in ``[low, high)``."""
        series = [self._one(path, low, high) for path in self.paths]
        index, values = align([i for i, _ in series], [v for _, v in series])
        values[~np.isfinite(values)] = np.nan  # a non-finite price is missing, as the panel makes it
        return index, values, changes_of(values) if on == "returns" else None

    def _one(self, path: str, low: np.datetime64, high: np.datetime64):
        cut = self.cut
        bounds = cut.bounds() if cut is not None else (None, None)
        if bounds is not None and (cut is None or cut.resample is None):
            first, last = bounds
            first = low if first is None else max(first, low)
            last = high - NS if last is None else min(last, high - NS)
            if last < first:
                return np.empty(0, "datetime64[ns]"), np.empty(0)
            return read_column_period(path, self.column, first, last)
        index, values = read_selected(path, self.column, "prices", cut)
        span = rows(index, low, high)
        return index[span], values[span]


@dataclass(frozen=True)
class PairMean:
    """Reducer: the sum and count of the defined correlations of every pair."""

    shrinks: ClassVar[bool] = True

    def block(self, block: Block) -> tuple[float, int]:
        corr = block.corr[np.triu(np.ones(block.corr.shape, dtype=bool), 1)] if block.same else block.corr
        defined = corr[~np.isnan(corr)]
        return float(defined.sum()), len(defined)

    def merge(self, *parts: tuple[float, int]) -> tuple[float, int]:
        return sum(p[0] for p in parts), sum(p[1] for p in parts)


def window_task(source, window: Window, job: WindowJob) -> dict:
    """Task: window ``window`` of the backtest, from ``source``'s rows (see the module)."""
    with blas_threads(1) if job.one_blas_thread else contextlib.nullcontext():
        return evaluate(source, window, job)


def evaluate(source, window: Window, job: WindowJob) -> dict:
    """The window's record: bounds, tickers, pairs ranked, the chosen pairs and the means."""
    f0, f1, t1 = window.bounds()
    index, values, changes = source.read(f0, t1, job.selection.on)
    tickers = list(source.tickers)
    sel = job.selection
    f, t = rows(index, f0, f1), rows(index, f1, t1)
    prices = {"formation": values[f], "trading": values[t]}
    series = {name: slice_series(prices[name], None if changes is None else changes[part], sel.on)
              for name, part in (("formation", f), ("trading", t))}
    stamps = {"formation": index[f], "trading": index[t]}
    if job.rank == "distance":
        chosen, facts = _by_distance(prices["formation"], tickers, sel, job.k)
    else:
        chosen, facts = _by_correlation(series["formation"], stamps["formation"], tickers, sel, job.k)
    column = {ticker: c for c, ticker in enumerate(tickers)}
    pairs = []
    for rank, (a, b, fields) in enumerate(chosen, 1):
        i, j = column[a], column[b]
        out_corr, out_n = pair_corr(series["trading"][:, i], series["trading"][:, j], sel.method)
        sigma = formation_sigma(prices["formation"][:, i], prices["formation"][:, j])
        trades, gain = trade(prices["trading"][:, i], prices["trading"][:, j], sigma, job.entry)
        pairs.append({"rank": rank, "a": a, "b": b, **fields, "out_corr": out_corr, "out_n": out_n,
                      "trades": trades, "return": gain})
    return {
        "window": window.number, "formation": [window.start, window.split], "trading": [window.split, window.stop],
        **facts, "pairs": pairs,
        "in_corr_mean": _mean([p["in_corr"] for p in pairs]),
        "out_corr_mean": _mean([p["out_corr"] for p in pairs]),
        "out_corr_mean_all": mean_correlation(series["trading"], stamps["trading"], tickers, sel),
        "return": float(np.mean([p["return"] for p in pairs])) if pairs else float("nan"),
        "trades": int(sum(p["trades"] for p in pairs)),
    }


def changes_of(prices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Each ticker's log returns on its own timestamps over all the rows of ``prices``
    (rows x tickers, NaN missing), non-finite ones missing: :func:`series_of` on
    returns, the same numbers, before a slice's first value of each ticker is made
    missing (:func:`slice_series`). The difference of each row's logs and the row
    before's, then, at a price that follows a missing one, the last price before it.
    Into ``out`` (of the shape of ``prices``) when given. Each column's returns are its
    own: those of some columns are the same columns of the whole's."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(prices)
        out = np.empty_like(logs) if out is None else out
        out[:1] = np.nan
        np.subtract(logs[1:], logs[:-1], out=out[1:])
        present = ~np.isnan(prices)
        after_gap = present[1:] & ~present[:-1]  # (r, c): a price at r + 1, none at r
        if after_gap.any():
            # All columns at once, in column order: each price after a gap takes the last
            # price before that gap (a price at r, none at r + 1), if its column has one.
            before_gap = present[:-1] & ~present[1:]
            height = len(prices) - 1
            ends = np.flatnonzero(after_gap.ravel(order="F"))
            starts = np.flatnonzero(before_gap.ravel(order="F"))
            last = np.searchsorted(starts, ends) - 1
            start = starts[np.maximum(last, 0)] if len(starts) else np.zeros_like(ends)
            column, row = np.divmod(ends, height)
            known = (last >= 0) & (start // height == column) if len(starts) else np.zeros(len(ends), bool)
            previous = np.where(known, logs[start % height, column], np.nan)
            out[row + 1, column] = logs[row + 1, column] - previous
    out[~np.isfinite(out)] = np.nan
    return out


def slice_series(prices: np.ndarray, changes: np.ndarray | None, on: str) -> np.ndarray:
    """:func:`series_of` of a slice's ``prices``, from ``changes`` (:func:`changes_of`
    of rows around it, the same rows as ``prices``) when given: each ticker's
    return at a row is the one taken on the whole rows, except at its first price of
    the slice, which has none."""
    if on != "returns" or changes is None:
        return series_of(prices, on)
    out = np.array(changes)
    present = ~np.isnan(prices)
    first = np.argmax(present, axis=0)
    some = np.flatnonzero(present[first, np.arange(prices.shape[1])])
    out[first[some], some] = np.nan
    return out


def series_of(prices: np.ndarray, on: str) -> np.ndarray:
    """The selected series of a slice's prices (rows x tickers, NaN missing): the prices,
    or each ticker's log returns on its own timestamps within the slice,
    ``np.log(series.dropna()).diff()`` column by column; non-finite values missing.
    A new array."""
    if on == "returns":
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log(prices)
        present = ~np.isnan(prices)
        # Each row's previous present row, per column (-1: none yet).
        last = np.where(present, np.arange(len(prices))[:, None], -1)
        np.maximum.accumulate(last, axis=0, out=last)
        before = np.full_like(last, -1)
        before[1:] = last[:-1]
        columns = np.arange(prices.shape[1])[None, :]
        previous = np.where(before >= 0, logs[np.maximum(before, 0), columns], np.nan)
        with np.errstate(invalid="ignore"):
            out = np.where(present, logs - previous, np.nan)
    else:
        out = np.array(prices, dtype=np.float64)
    out[~np.isfinite(out)] = np.nan
    return out


def pair_corr(a: np.ndarray, b: np.ndarray, method: str) -> tuple[float, int]:
    """pandas ``A.corr(B, method)`` of two aligned series (NaN missing), and their
    common observations."""
    both = ~np.isnan(a) & ~np.isnan(b)
    n = int(both.sum())
    if not n:
        return float("nan"), 0
    if method == "pearson":  # pandas' value to round-off, without its Series
        return _pearson_of(a[both], b[both]), n
    return float(pd.Series(a[both]).corr(pd.Series(b[both]), method=method)), n


def _pearson_of(a: np.ndarray, b: np.ndarray) -> float:
    """pandas' Pearson of two series without missing values, without its Series: centred,
    scaled by their largest magnitude, NaN below two values or where either is constant."""
    if len(a) < 2:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    a_scale, b_scale = np.max(np.abs(a)), np.max(np.abs(b))
    if a_scale == 0 or b_scale == 0:
        return float("nan")
    a, b = a / a_scale, b / b_scale
    fact = len(a) - 1
    a_spread, b_spread = np.sqrt(np.dot(a, a) / fact), np.sqrt(np.dot(b, b) / fact)
    if a_spread == 0 or b_spread == 0:
        return float("nan")
    return float(np.clip(np.dot(a, b) / fact / a_spread / b_spread, -1.0, 1.0))


def _mean(values) -> float:
    defined = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def _serial() -> Execution:
    return Execution(SerialExecutor(), quiet=True)


def _ranked_frame(series: np.ndarray, stamps: np.ndarray, tickers: list[str]) -> pd.DataFrame:
    """The slice's selected series of the tickers that have a value there (the others
    leave the panel and the median, as a period makes them), as ``correlate`` takes a
    panel."""
    keep = np.flatnonzero((~np.isnan(series)).any(axis=0))
    return pd.DataFrame(series[:, keep], index=pd.DatetimeIndex(stamps, name="timestamp"),
                        columns=[tickers[c] for c in keep])


def _as_given(sel: Selection) -> Selection:
    """The selection for a panel of already selected series: ``correlate`` takes its
    values as they are (no period, no resample, no returns taken again)."""
    return Selection(sel.column, "prices", sel.method, sel.min_periods, sel.absolute)


def _by_correlation(series: np.ndarray, stamps: np.ndarray, tickers: list[str], sel: Selection, k: int):
    found = _pearson(series, tickers, sel, k)
    if found is not None:
        chosen = [(tickers[found.keep[a]], tickers[found.keep[b]], {"in_corr": float(c), "in_n": int(n)})
                  for a, b, c, n in zip(found.top.a, found.top.b, found.top.corr, found.top.n)]
        return chosen, {"tickers": len(found.keep), "pairs_ranked": found.ranked, "min_periods": found.min_periods}
    frame = _ranked_frame(series, stamps, tickers)
    if frame.shape[1] < 2:
        return [], {"tickers": frame.shape[1], "pairs_ranked": 0, "min_periods": None}
    found = correlate(frame, k, selection=_as_given(sel), execution=_serial())
    chosen = [(r["a"], r["b"], {"in_corr": float(r["corr"]), "in_n": int(r["n"])})
              for r in found.top.to_dict(orient="records")]
    return chosen, {"tickers": found.series, "pairs_ranked": found.pairs_ranked, "min_periods": found.min_periods}


def _pearson(series: np.ndarray, tickers: list[str], sel: Selection, k: int | None):
    """:func:`~.pearson.slice_pearson` where it gives what ``correlate`` on the slice
    gives (Pearson, tickers in order), else None."""
    if sel.method != "pearson" or list(tickers) != sorted(tickers):
        return None
    return slice_pearson(series, sel.resolve, k, sel.absolute)


def _by_distance(prices: np.ndarray, tickers: list[str], sel: Selection, k: int):
    keep = np.flatnonzero((~np.isnan(prices)).any(axis=0))
    values = prices[:, keep]
    counts = np.count_nonzero(~np.isnan(values), axis=0)
    periods = sel.resolve(counts)
    if len(keep) < 2:
        return [], {"tickers": len(keep), "pairs_ranked": 0, "min_periods": periods}
    firsts = values[np.argmax(~np.isnan(values), axis=0), np.arange(values.shape[1])]
    found = nearest_pairs(values / firsts, k, periods, MEMORY_LIMIT)
    chosen = []
    for i, j, distance, n in zip(found.a, found.b, found.corr, found.n):
        corr, _ = pair_corr(values[:, i], values[:, j], sel.method)
        chosen.append((tickers[keep[i]], tickers[keep[j]], {"in_corr": corr, "in_n": int(n),
                                                            "distance": float(distance)}))
    return chosen, {"tickers": len(keep), "pairs_ranked": found.ranked, "min_periods": periods}


def mean_correlation(series: np.ndarray, stamps: np.ndarray, tickers: list[str], sel: Selection) -> float:
    """The mean correlation of every pair ranked on the trading slice by the rule that
    ranks the formation (``min_periods`` auto counted on this slice): what a pair picked
    at random would have shown. Pearson: :mod:`.pearson`; else the blocked engine with a
    reducer that sums them."""
    found = _pearson(series, tickers, sel, None)
    if found is not None:
        return found.mean if len(found.keep) >= 2 else float("nan")
    frame = _ranked_frame(series, stamps, tickers)
    if frame.shape[1] < 2:
        return float("nan")
    given = _as_given(sel)
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(_serial().opened())
        plan = plan_placement(given=True, shares_memory=True, shares_files=True, remote=False, workers=1,
                              memory_limit=MEMORY_LIMIT, fits=lambda: True)
        layout = load(plan, frame, column=sel.column, on="prices", auto=given.auto, pool=pool, stack=stack,
                      quiet=True, selection=given)
        periods = given.resolve(layout.counts)
        if choose_engine("auto", sel.method, layout.complete) == "blocked":
            total, count = correlate_blocked(plan, layout, pool, method=sel.method, min_periods=periods,
                                             reducer=PairMean())
        else:
            found = correlate_naive(layout, pool, method=sel.method, min_periods=periods, quiet=True)
            defined = found.corr[~np.isnan(found.corr)]
            total, count = float(defined.sum()), len(defined)
    return total / count if count else float("nan")
