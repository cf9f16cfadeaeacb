"""One way to read a pair: two stored series, cached, aligned on their common timestamps.

The naive engine and ``analyze`` read pairs of tickers from the store where their task
runs. Consecutive pairs share a ticker, so a worker keeps the last series it read; the
cache key carries the file's size and mtime and the selection's cut, because workers
outlive a run and must not serve a rewritten file or another question.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import numpy as np
import pandas as pd

from .panel import finish, read_selected
from .selection import Cut

# A worker keeps the last series it read: consecutive pairs share a ticker.
SERIES_CACHE = 32

_SERIES: OrderedDict = OrderedDict()
_CACHE_LOCK = threading.Lock()


def stored_series(path: str, column: str, on: str = "prices", cut: Cut | None = None) -> pd.Series:
    """One ticker's series as the panel has it (:func:`~pairscan.panel.read_selected`:
    cut, and for returns its log returns on its own timestamps), without missing
    values. Non-finite values count as missing (see :func:`stored_series_counted`).
    """
    return stored_series_counted(path, column, on, cut)[0]


def stored_series_counted(path: str, column: str, on: str = "prices",
                          cut: Cut | None = None) -> tuple[pd.Series, int]:
    """:func:`stored_series`, and how many non-finite values it made missing."""
    try:
        stat = os.stat(path)
        stamp = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        stamp = None  # read_column names the problem
    key = (path, stamp, column, on, cut)
    with _CACHE_LOCK:
        cached = _SERIES.get(key)
        if cached is not None:
            _SERIES.move_to_end(key)
            return cached
    index, values = read_selected(path, column, on, cut)
    values, missing = finish(values.reshape(-1, 1))
    cached = pd.Series(values[:, 0], index=pd.DatetimeIndex(index, name="timestamp")).dropna(), missing
    with _CACHE_LOCK:
        _SERIES[key] = cached
        while len(_SERIES) > SERIES_CACHE:
            _SERIES.popitem(last=False)
    return cached


def common(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The timestamps two series (sorted, unique, no missing values) share, and their values there."""
    index, ia, ib = np.intersect1d(a.index.values, b.index.values, assume_unique=True, return_indices=True)
    return index, a.to_numpy()[ia], b.to_numpy()[ib]


def read_pair(path_a: str, path_b: str, column: str, cut: Cut | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two stored tickers' ``column`` (cut to a selection's period and frequency) on
    their common timestamps: ``(index, a, b)``."""
    return common(stored_series(path_a, column, cut=cut), stored_series(path_b, column, cut=cut))
