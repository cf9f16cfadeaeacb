"""The naive engine: the seed's algorithm, one task per pair of pandas series.

It is the reference the blocked engine is checked against, so it is kept obviously
right: each task is ``Series.corr`` on the two series, which pandas aligns on
timestamp, dropping the timestamps where either is missing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..executors import Pool, run_tasks
from ..panel import Panel
from . import Pairs


def pair_corr(a: pd.Series, b: pd.Series, method: str, min_periods: int | None) -> tuple[float, int]:
    """Task: the correlation of two series and how many timestamps they share."""
    n = len(a.dropna().index.intersection(b.dropna().index))
    return float(a.corr(b, method=method, min_periods=min_periods)), n


def correlate_naive(
    panel: Panel,
    pool: Pool,
    method: str = "pearson",
    min_periods: int | None = None,
    quiet: bool = True,
    retries: int = 0,
) -> Pairs:
    """Every pair of the panel's columns, one ``Series.corr`` task each."""
    frame = panel.to_frame()
    # Each task gets its two series without missing values, as the seed's did.
    series = [frame.iloc[:, k].dropna() for k in range(frame.shape[1])]
    n = len(series)
    tasks = [
        (f"{panel.tickers[i]}~{panel.tickers[j]}", (series[i], series[j], method, min_periods))
        for i in range(n)
        for j in range(i + 1, n)
    ]
    index = {f"{panel.tickers[i]}~{panel.tickers[j]}": (i, j) for i in range(n) for j in range(i + 1, n)}
    a, b, corr, count = [], [], [], []
    for label, (r, overlap) in run_tasks(pool, pair_corr, tasks, desc="pairs", quiet=quiet, retries=retries):
        i, j = index[label]
        a.append(i)
        b.append(j)
        corr.append(r)
        count.append(overlap)
    return Pairs(np.array(a, np.int64), np.array(b, np.int64), np.array(corr, np.float64), np.array(count, np.int64))
