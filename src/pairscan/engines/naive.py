"""The naive engine: the seed's algorithm, one task per pair of pandas series.

It is the reference the blocked engine is checked against, so it is kept obviously
right: each task is ``Series.corr`` on the two series, which pandas aligns on
timestamp, dropping the timestamps where either is missing. Non-finite values are
missing too (as ``DataFrame.corr`` has them). For Pearson each series is first scaled
by a power of two and shifted by its first value on the overlap: exact for the values
near that one, so the correlation is the same, but ``np.corrcoef`` can neither overflow
(a price near 1e308) nor round the spread of a near-constant series into a made-up
correlation (two distinct points give exactly +1 or -1). In-process executors hand
each task its two series; on a Dask cluster a task carries the two tickers' paths and
its worker reads them from the store.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..executors import Pool, run_tasks, share
from ..pair_reader import stored_series_counted
from ..panel import Panel
from ..placement import Layout
from ..selection import Cut
from . import Pairs


def pair_corr(a: pd.Series, b: pd.Series, method: str, min_periods: int | None) -> tuple[float, int]:
    """Task: the correlation of two series and how many timestamps they share."""
    a, b = a.align(b, join="inner")
    both = np.isfinite(a.to_numpy()) & np.isfinite(b.to_numpy())
    a, b = a[both], b[both]
    if method == "pearson":
        a, b = _steady(a), _steady(b)
        if len(a) == 2 and len(a) >= (min_periods or 0):
            # Two distinct points lie on a line: exactly +1 or -1 (np.corrcoef divides
            # twice and can round that to 0.9999999999999999); NaN if either is constant.
            return float(np.sign(np.diff(a.to_numpy())[0] * np.diff(b.to_numpy())[0]) or np.nan), 2
    return float(a.corr(b, method=method, min_periods=min_periods)), int(both.sum())


def _steady(series: pd.Series) -> pd.Series:
    """The series times a power of two, minus its first value (see the module docstring)."""
    values = series.to_numpy(dtype=np.float64)
    if not len(values):
        return series
    _, exponent = np.frexp(np.max(np.abs(values)))
    values = np.ldexp(values, -exponent)
    return pd.Series(values - values[0], index=series.index)


def stored_pair_corr(
    path_a: str, path_b: str, column: str, on: str, cut: Cut | None,
    method: str, min_periods: int | None, report: tuple[bool, bool] = (False, False),
) -> tuple[float, int, int]:
    """Task: :func:`pair_corr` of two stored tickers, read from the store where it runs.

    Each series is as the panel has it (cut; returns on the ticker's own timestamps).
    The third value counts the non-finite values made missing in the tickers
    ``report`` names (each ticker is reported by one task).
    """
    a, missing_a = stored_series_counted(path_a, column, on, cut)
    b, missing_b = stored_series_counted(path_b, column, on, cut)
    return (*pair_corr(a, b, method, min_periods), missing_a * report[0] + missing_b * report[1])


def panel_pair_corr(frame: pd.DataFrame, i: int, j: int, method: str, min_periods: int | None) -> tuple[float, int]:
    """Task: :func:`pair_corr` of columns ``i`` and ``j`` of a panel the worker holds."""
    return pair_corr(frame.iloc[:, i].dropna(), frame.iloc[:, j].dropna(), method, min_periods)


def correlate_naive(layout: Layout, pool: Pool, *, method: str = "pearson", min_periods: int | None = None,
                    quiet: bool = True, retries: int = 0, pairs: list[tuple[int, int]] | None = None) -> Pairs:
    """Every pair of ``layout``'s columns (or only ``pairs``, ``(i, j)`` with ``i < j``),
    one ``Series.corr`` task each: on the panel held here, or, where it is not (Dask, a
    panel too large for the limit), on the two stored tickers the task reads itself."""
    if layout.panel is None:
        return _store_pairs(layout, pool, method, min_periods, quiet, retries, pairs)
    return _panel_pairs(layout.panel, pool, method, min_periods, quiet, retries, pairs)


def _store_pairs(layout: Layout, pool: Pool, method: str, min_periods: int | None, quiet: bool,
                 retries: int, pairs: list[tuple[int, int]] | None = None) -> Pairs:
    """Every pair of stored tickers, one task each that reads its two tickers itself.

    For executors whose workers do not share this interpreter's memory (Dask): a task
    carries two paths and the selection's cut, never data.
    """
    paths, column, on, cut = layout.paths, layout.column, layout.on, layout.cut
    return _run_pairs(
        layout.tickers, pool, stored_pair_corr,
        lambda i, j: (paths[i], paths[j], column, on, cut,
                      method, min_periods, (j == i + 1, j == i + 1 == len(paths) - 1)),
        quiet, retries, pairs,
    )


def _panel_pairs(panel: Panel, pool: Pool, method: str, min_periods: int | None, quiet: bool,
                 retries: int, pairs: list[tuple[int, int]] | None = None) -> Pairs:
    """Every pair of the panel's columns, one ``Series.corr`` task each."""
    frame = panel.to_frame()
    if pool.can.remote:
        # On a cluster the panel goes to each worker once, not with every pair.
        shared = share(pool, frame)
        return _run_pairs(panel.tickers, pool, panel_pair_corr,
                          lambda i, j: (shared, i, j, method, min_periods), quiet, retries, pairs)
    # Each task gets its two series without missing values, as the seed's did.
    series = [frame.iloc[:, k].dropna() for k in range(frame.shape[1])]
    return _run_pairs(panel.tickers, pool, pair_corr,
                      lambda i, j: (series[i], series[j], method, min_periods), quiet, retries, pairs)


def _run_pairs(tickers: list[str], pool: Pool, fn, args, quiet: bool, retries: int,
               pairs: list[tuple[int, int]] | None = None) -> Pairs:
    n = len(tickers)
    if pairs is None:
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    tasks = [(f"{tickers[i]}~{tickers[j]}", args(i, j)) for i, j in pairs]
    where = {label: pair for (label, _), pair in zip(tasks, pairs)}
    a, b, corr, count = [], [], [], []
    nonfinite = 0
    for label, (r, overlap, *missing) in run_tasks(pool, fn, tasks, desc="pairs", quiet=quiet, retries=retries):
        i, j = where[label]
        a.append(i)
        b.append(j)
        corr.append(r)
        count.append(overlap)
        nonfinite += sum(missing)  # tasks that read the store count what they made missing
    return Pairs(np.array(a, np.int64), np.array(b, np.int64), np.array(corr, np.float64), np.array(count, np.int64),
                 nonfinite=nonfinite)
