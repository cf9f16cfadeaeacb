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

import contextlib
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import PairscanError
from .executors import Pool, open_pool, run_tasks, share
from .selection import ON
from .shm import discard, panel_allocator
from .store import empty_store_error, read_column_arrays, read_index_array, store_files

TICKERS_PER_TASK = 32
GUESS_FILES = 32  # the largest files whose timestamps are the first guess of the union


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
    counts: np.ndarray | None = None  # each ticker's values, when the load counted them
    complete: bool | None = None  # every timestamp has every ticker's value or none, likewise

    def observations(self) -> np.ndarray:
        """The number of values (not missing) of each ticker."""
        if self.counts is None:
            self.counts = np.count_nonzero(~np.isnan(self.values), axis=0)
        return self.counts

    def full_overlap(self) -> bool:
        """True when every timestamp has either every ticker's value or none."""
        if self.complete is None:
            self.complete = every_or_none(np.count_nonzero(~np.isnan(self.values), axis=1), self.values.shape[1])
        return self.complete

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


def every_or_none(present_per_row: np.ndarray, tickers: int) -> bool:
    """Whether each row's count of present tickers is 0 or all ``tickers``."""
    return bool(np.all((present_per_row == 0) | (present_per_row == tickers)))


def guess_index(paths: Sequence[str], column: str, files: int) -> np.ndarray:
    """The union of the timestamps of the ``files`` largest stored files: a part of the
    store's union, and on real data (a calendar every long history shares, gaps here
    and there) usually all of it."""
    sizes = {}
    for path in paths:
        with contextlib.suppress(OSError):
            sizes[path] = os.stat(path).st_size
    largest = sorted(sizes, key=sizes.get, reverse=True)[:files] or list(paths[:1])
    return union_of([read_index_array(p, column) for p in largest])


class InMemory:
    """Where load tasks put their columns: a panel this interpreter holds (serial, threads)."""

    def __init__(self, values: np.ndarray):
        self.values = values

    def columns(self, start: int, stop: int) -> np.ndarray:
        return self.values[:, start:stop]


class InFile:
    """Where load tasks put their columns: a panel in a file every worker of a local
    process pool maps, so no column travels back through the pool."""

    def __init__(self, path: str, shape: tuple[int, int]):
        self.path, self.shape = path, shape

    def columns(self, start: int, stop: int) -> np.ndarray:
        rows = self.shape[0]
        # Map only these columns (one ticker's history is contiguous, Fortran order).
        return np.memmap(self.path, dtype=np.float64, mode="r+", offset=8 * rows * start,
                         shape=(rows, stop - start), order="F")


@dataclass
class Placed:
    """What :func:`place_chunk` did with its tickers."""

    values: np.ndarray | None  # the chunk, when the caller cannot share memory with the task
    nonfinite: int  # non-finite values made missing
    counts: np.ndarray  # values (not missing) of each ticker
    per_row: np.ndarray  # tickers with a value, at each timestamp of the index
    outside: np.ndarray | None = None  # the chunk's own union, when the index does not hold it


def place_chunk(paths: Sequence[str], column: str, on: str, index: np.ndarray, target, start: int) -> Placed:
    """Task: read ``column`` of a few stored tickers, place them on ``index`` in the
    columns ``start:`` of ``target`` (:class:`InMemory`, :class:`InFile`, or None: a
    new array, returned), make them prices or log returns there (:func:`finish`), and
    count what the correlation needs.

    When a ticker has a timestamp ``index`` lacks, nothing is counted, and the union of
    the chunk's timestamps comes back instead (``Placed.outside``).
    """
    stop = start + len(paths)
    values = np.empty((len(index), len(paths)), order="F") if target is None else target.columns(start, stop)
    indexes = []
    outside = False
    for k, path in enumerate(paths):
        idx, col = read_column_arrays(path, column)
        indexes.append(idx)
        if outside:
            continue
        out = values[:, k]
        if len(idx) == len(index) and np.array_equal(idx, index):
            out[:] = col  # every timestamp of the index
            continue
        at = np.searchsorted(index, idx)
        if len(idx) and (at[-1] >= len(index) or not np.array_equal(index[at], idx)):
            outside = True
            continue
        out[:] = np.nan
        out[at] = col
    if outside:
        return Placed(None, 0, np.zeros(0, np.int64), np.zeros(0, np.int32), union_of(indexes))
    values, nonfinite = finish(values, on)
    present = ~np.isnan(values)
    counts = np.count_nonzero(present, axis=0)
    per_row = np.count_nonzero(present, axis=1).astype(np.int32)
    return Placed(values if target is None else None, nonfinite, counts, per_row)


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
    Fortran-ordered float64 array the values go into (a memory map, say; for a local
    process pool, a ``np.memmap`` of a file its workers write into).

    One pass over the store, in tasks of a few tickers each, on a guess of the union
    of their timestamps (:func:`guess_index`): each task reads its tickers' column and
    writes it, aligned, as prices or returns, straight into the panel (in this
    process's memory, or the file a local process pool maps), with the counts the
    correlation needs; only on a cluster do the columns come back to this process.
    A ticker with a timestamp the guess lacks makes it a second pass, on the union.
    """
    if on not in ON:
        raise PairscanError(f"--on must be prices or returns, not {on!r}")
    files = select_tickers(store_files(store), tickers)
    if not files:
        raise empty_store_error(store)
    names = list(files)
    paths = [str(p) for p in files.values()]
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(open_pool(executor, workers))
        local = isinstance(pool.executor, ProcessPoolExecutor)
        own_file = allocate is None and local
        if own_file:
            allocate = panel_allocator(stack)  # the file goes when the load ends; the mapping stays
        index = guess_index(paths, column, GUESS_FILES)
        placed = _place(pool, names, paths, column, on, index, allocate, local, quiet)
        if isinstance(placed, np.ndarray):  # the guess missed timestamps: their union now
            index = placed
            placed = _place(pool, names, paths, column, on, index, allocate, local, quiet)
            if isinstance(placed, np.ndarray):
                raise PairscanError("the store changed while it was read; run again", store)
    values, nonfinite, counts, per_row = placed
    if own_file:
        values = values.view(np.ndarray)  # its file is gone: a plain array (of the mapping) now
    panel = Panel(names, index, values, column, on, nonfinite, counts, every_or_none(per_row, len(names)))
    return panel.to_frame() if as_frame else panel


def _place(pool: Pool, names: list[str], paths: list[str], column: str, on: str, index: np.ndarray,
           allocate, local: bool, quiet: bool):
    """One pass of :func:`place_chunk` tasks over the store, on ``index``: the panel,
    with its counts; or, when some ticker has a timestamp ``index`` lacks, the union of
    ``index`` and every timestamp of the store."""
    shape = (len(index), len(names))
    values = np.empty(shape, order="F") if allocate is None else allocate(shape)
    filename = getattr(values, "filename", None)
    if pool.in_process:
        target = InMemory(values)
    elif local and filename is not None:
        target = InFile(str(filename), shape)
    else:
        target = None  # a cluster's workers: the columns come back here
    shared = index if target is not None else share(pool, index)
    step = TICKERS_PER_TASK
    starts = {names[i]: i for i in range(0, len(paths), step)}
    tasks = [(names[i], (paths[i : i + step], column, on, shared, target, i)) for i in starts.values()]
    nonfinite = 0
    counts = np.empty(len(names), dtype=np.int64)
    per_row = np.zeros(len(index), dtype=np.int64)
    missed = []
    for label, part in run_tasks(pool, place_chunk, tasks, desc="load", quiet=quiet):
        start = starts[label]
        if part.outside is not None:
            missed.append(part.outside)
            continue
        if part.values is not None:
            values[:, start : start + part.values.shape[1]] = part.values
        nonfinite += part.nonfinite
        counts[start : start + len(part.counts)] = part.counts
        per_row += part.per_row
    if missed:
        if filename is not None:
            discard(values)  # a panel of the wrong shape: free its memory now
        return union_of([index, *missed])
    return values, nonfinite, counts, per_row
