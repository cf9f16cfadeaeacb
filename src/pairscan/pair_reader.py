"""One way to read a pair: two stored series, cached, aligned on their common timestamps
(or two columns of a caller's panel, :class:`PairSource`).

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
from .selection import Cut, selected
from .store import empty_store_error, store_files, ticker_file

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


def frame_series(column: pd.Series, on: str = "prices", cut: Cut | None = None) -> pd.Series:
    """One column of a caller's panel as :func:`stored_series` has a stored ticker: its
    own timestamps (where it has a value), cut, for returns its log returns on them,
    non-finite values missing and dropped."""
    values = column.to_numpy(dtype=np.float64)
    present = ~np.isnan(values)
    stamps = np.asarray(pd.DatetimeIndex(column.index).as_unit("ns").values)
    index, values = selected(stamps[present], values[present], on, cut)
    values, _ = finish(values.reshape(-1, 1))
    return pd.Series(values[:, 0], index=pd.DatetimeIndex(index, name="timestamp")).dropna()


class PairSource:
    """Where the series of named tickers come from: a store (a folder) or a caller's
    panel (a DataFrame of one column per ticker, timestamps as its index).

    ``tickers`` are the names (a panel's columns as strings); :meth:`check` raises bad
    input naming the closest ticker; :meth:`series` is a ticker's series as correlate
    sees it; :meth:`path` its stored file (None for a panel, whose pairs are read here).
    """

    def __init__(self, source):
        if isinstance(source, pd.DataFrame):
            self.frame = source
            self.where = None
            self.names = {str(c): c for c in source.columns}
            self.files = None
        else:
            files = store_files(source)
            if not files:
                raise empty_store_error(source)
            self.frame = None
            self.where = source
            self.names = self.files = {t: os.path.abspath(p) for t, p in files.items()}

    @property
    def tickers(self) -> list[str]:
        return list(self.names)

    def check(self, ticker: str) -> None:
        ticker_file(self.names, ticker, self.where if self.where is not None else "the panel")

    def path(self, ticker: str) -> str | None:
        return None if self.files is None else self.files[ticker]

    def series(self, ticker: str, column: str = "close", on: str = "prices", cut: Cut | None = None) -> pd.Series:
        self.check(ticker)
        if self.frame is None:
            return stored_series(self.files[ticker], column, on, cut)
        return frame_series(self.frame[self.names[ticker]], on, cut)
