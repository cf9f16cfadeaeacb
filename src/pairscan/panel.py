"""Panel: the store -> one aligned array of a column, timestamps x tickers.

The panel is the union of every ticker's timestamps, NaN where a ticker has no bar.
With ``on="returns"`` it holds log returns on that union index,
``np.log(panel).diff()`` with no filling, as the oracle in DESIGN.md defines them.
A non-finite value (an infinite price; the log return of a zero or negative price)
is missing, as ``DataFrame.corr`` treats it, and counted (``Panel.nonfinite``).
Loading is split into tasks of a few tickers each, so it runs in parallel on the
pool, and reads only the one column it needs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import PairscanError
from .executors import Pool, open_pool, run_tasks
from .selection import ON
from .store import empty_store_error, read_column_arrays, store_files

TICKERS_PER_TASK = 16


@dataclass
class Panel:
    """A column of every ticker on the union of their timestamps.

    ``values`` has shape (timestamps, tickers), Fortran order (one ticker's history
    is contiguous), NaN where a ticker has no value.
    """

    tickers: list[str]
    index: np.ndarray  # datetime64[ns], sorted, unique
    values: np.ndarray
    column: str = "close"
    on: str = "prices"
    nonfinite: int = 0  # non-finite values (prices or returns) made missing

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            self.values, index=pd.DatetimeIndex(self.index, name="timestamp"), columns=self.tickers
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, column: str = "close", on: str = "prices") -> "Panel":
        frame = frame.sort_index(axis=1)
        return cls(
            [str(c) for c in frame.columns],
            np.asarray(pd.DatetimeIndex(frame.index).as_unit("ns").values),
            np.asfortranarray(frame.to_numpy(dtype=np.float64)),
            column,
            on,
        )


def read_chunk(paths: Sequence[str], column: str) -> tuple[np.ndarray, np.ndarray]:
    """Task: read ``column`` of a few stored tickers, aligned on their own union index.

    Returns ``(index, values)`` with values of shape (len(index), len(paths)).
    """
    series = [read_column_arrays(p, column) for p in paths]
    return align([index for index, _ in series], [values for _, values in series])


def union_of(indexes: Sequence[np.ndarray]) -> np.ndarray:
    """The sorted union of sorted, unique timestamp arrays."""
    if len(indexes) == 1:
        return indexes[0]
    # A stable sort merges the sorted runs it finds: much faster than np.unique here.
    merged = np.sort(np.concatenate(indexes), kind="stable")
    keep = np.empty(len(merged), dtype=bool)
    keep[:1] = True
    np.not_equal(merged[1:], merged[:-1], out=keep[1:])
    return merged[keep]


def align(indexes: Sequence[np.ndarray], columns: Sequence[np.ndarray], union: np.ndarray | None = None):
    """Place columns (each on its own sorted index) on the union of the indexes."""
    if union is None:
        union = union_of(indexes)
    out = np.full((len(union), len(columns)), np.nan, order="F")
    for k, (idx, col) in enumerate(zip(indexes, columns)):
        if len(idx) == len(union):
            out[:, k] = col  # the common case: every ticker has every bar
        else:
            out[np.searchsorted(union, idx), k] = col
    return union, out


def to_returns(values: np.ndarray) -> np.ndarray:
    """Log returns down the rows, ``np.log(panel).diff()`` with no filling, in place.

    Non-finite returns are made missing (see :func:`log_returns`).
    """
    return log_returns(values)[0]


def log_returns(values: np.ndarray) -> tuple[np.ndarray, int]:
    """:func:`to_returns`, and how many returns of two present prices were not finite.

    A zero price gives -inf and +inf returns, a negative one NaN: a bad tick, not a
    reason to lose the ticker's pairs, so those returns become missing, and are counted.
    """
    count = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(values.shape[1]):  # a column at a time: no second panel in memory
            column = values[:, k]
            present = ~np.isnan(column)
            np.log(column, out=column)
            column[1:] = column[1:] - column[:-1]
            bad = present[1:] & present[:-1] & ~np.isfinite(column[1:])
            if bad.any():
                column[1:][bad] = np.nan
                count += int(bad.sum())
    values[:1] = np.nan
    return values, count


def mask_nonfinite(values: np.ndarray) -> int:
    """Make infinite values missing (NaN), in place; how many there were."""
    count = 0
    for k in range(values.shape[1]):
        column = values[:, k]
        bad = np.isinf(column)
        if bad.any():
            column[bad] = np.nan
            count += int(bad.sum())
    return count


def finish(values: np.ndarray, on: str) -> tuple[np.ndarray, int]:
    """Prices -> prices or log returns, non-finite values missing, in place; and their count."""
    if on == "returns":
        return log_returns(values)
    return values, mask_nonfinite(values)


def select_tickers(files: dict[str, Path], tickers: Sequence[str] | None) -> dict[str, Path]:
    if tickers is None:
        return files
    missing = [t for t in tickers if t not in files]
    if missing:
        raise PairscanError(f"no ticker {missing[0]!r} in the store")
    return {t: files[t] for t in sorted(tickers)}


def _return_freed_memory() -> None:
    """Hand the memory of the freed chunks back to the operating system (glibc only).

    The chunks are small enough for malloc to carve them from its per-thread heaps,
    which keep them after they are freed; the block tasks that follow may or may not
    reuse that memory, so without this a large panel's process can hold about two panels.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to do


def load_panel(
    store: str | os.PathLike,
    column: str = "close",
    on: str = "prices",
    tickers: Sequence[str] | None = None,
    executor="threads",
    workers: int | None = None,
    quiet: bool = True,
    pool: Pool | None = None,
    as_frame: bool = True,
    allocate=None,
):
    """Load ``column`` of every ticker in ``store`` into one aligned panel.

    Returns a DataFrame (timestamps x tickers, sorted by ticker) or, with
    ``as_frame=False``, a :class:`Panel`. With ``on="returns"`` the values are log
    returns on the union-aligned panel. ``allocate(shape)``, if given, makes the
    Fortran-ordered float64 array the values go into (a memory map, say).
    """
    if on not in ON:
        raise PairscanError(f"--on must be prices or returns, not {on!r}")
    files = select_tickers(store_files(store), tickers)
    if not files:
        raise empty_store_error(store)
    names = list(files)
    paths = [str(p) for p in files.values()]
    chunks = [
        (names[i], (paths[i : i + TICKERS_PER_TASK], column))
        for i in range(0, len(paths), TICKERS_PER_TASK)
    ]
    if pool is None:
        with open_pool(executor, workers) as own:
            results = dict(run_tasks(own, read_chunk, chunks, desc="load", quiet=quiet))
    else:
        results = dict(run_tasks(pool, read_chunk, chunks, desc="load", quiet=quiet))
    ordered = [results.pop(label) for label, _ in chunks]
    index = union_of([idx for idx, _ in ordered])
    shape = (len(index), len(names))
    values = np.empty(shape, order="F") if allocate is None else allocate(shape)
    start = 0
    for k, (idx, chunk) in enumerate(ordered):
        stop = start + chunk.shape[1]
        if len(idx) == len(index):
            values[:, start:stop] = chunk
        else:
            values[:, start:stop] = np.nan
            values[np.searchsorted(index, idx), start:stop] = chunk
        ordered[k] = None  # free each chunk once it is placed: peak memory ~ one panel
        start = stop
    _return_freed_memory()
    values, nonfinite = finish(values, on)
    panel = Panel(names, index, values, column, on, nonfinite)
    return panel.to_frame() if as_frame else panel
