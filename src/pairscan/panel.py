"""Panel: the store -> one aligned array of a column, timestamps x tickers.

The panel is the union of every ticker's timestamps, NaN where a ticker has no bar.
Each ticker's series is read as the selection defines it (:func:`read_selected`: cut
to a period, resampled, and with ``on="returns"`` its log returns on its own
timestamps, ``np.log(series).diff()``), then aligned, as docs/semantics.md defines it:
a pair's values never depend on the other tickers.
A non-finite value (an infinite price; the log return of a zero or negative price)
is missing, as ``DataFrame.corr`` treats it, and counted (``Panel.nonfinite``).
Loading is split into tasks of a few tickers each, so it runs in parallel on the
pool, and reads only the one column it needs; where the tasks share the panel with
this process (threads, or a local process pool mapping its file) they write into it
themselves, and count what the correlation needs on the way (see :func:`load_panel`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import mmap
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import checks
from .errors import PairscanError
from .executors import Execution, Pool, SerialExecutor, preload, run_tasks, share
from .selection import ON, Cut, selected
from .shm import discard, panel_allocator
from .store import (empty_store_error, read_column_arrays, read_column_period, read_index_array, read_manifest,
                    recorded_layouts, seem_cached, store_paths, will_read)
from .store.formats.hdf5 import SUFFIX as HDF5_SUFFIX

TICKERS_PER_TASK = 32
GUESS_FILES = 32  # the largest files whose timestamps are the first guess of the union
if importlib.util.find_spec("h5py") is not None:
    preload("h5py")  # what reads HDF5 files: imported as a process worker starts, not by its first task


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

    def drop_empty(self) -> "Panel":
        """Without the tickers that have no value (a period or frequency they have no bar
        in): their columns go, the others move left in place (no second panel)."""
        counts = self.observations()
        keep = np.flatnonzero(counts > 0)
        if len(keep) == len(self.tickers):
            return self
        for to, k in enumerate(keep):
            if to != k:
                self.values[:, to] = self.values[:, k]
        self.values = self.values[:, : len(keep)]
        self.tickers = [self.tickers[k] for k in keep]
        self.counts = counts[keep]
        self.complete = None
        return self

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            self.values, index=pd.DatetimeIndex(self.index, name="timestamp"), columns=self.tickers
        )

    @classmethod
    def from_selected(cls, frame: pd.DataFrame, column: str = "close", on: str = "prices",
                      cut: Cut | None = None) -> "Panel":
        """A caller's panel as a selection has it: each column's values (its own
        timestamps are where it has one) cut, and for returns its log returns on them;
        then aligned again. A new array."""
        frame = frame.sort_index(axis=1)
        stamps = np.asarray(pd.DatetimeIndex(frame.index).as_unit("ns").values)
        series = []
        for name in frame.columns:
            col = frame[name].to_numpy(dtype=np.float64)
            present = ~np.isnan(col)
            series.append(selected(stamps[present], col[present], on, cut))
        index, values = align([i for i, _ in series], [v for _, v in series])
        return cls([str(c) for c in frame.columns], index, values, column, on)

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


def read_selected(path, column: str, on: str = "prices", cut: Cut | None = None,
                  record=None) -> tuple[np.ndarray, np.ndarray]:
    """One stored ticker's series as the selection has it (:func:`~pairscan.selection.selected`),
    reading only the rows of its period where the format allows (:func:`~pairscan.store.read_column_period`);
    ``record`` is the manifest's of its file (:func:`~pairscan.store.recorded_layouts`), or None."""
    if cut is not None and cut.period and cut.bounds() is not None:
        index, values = read_column_period(path, column, *cut.bounds(), record=record)
        return selected(index, values, on, Cut(resample=cut.resample) if cut.resample is not None else None)
    return selected(*read_column_arrays(path, column, record), on, cut)


def read_chunk(paths: Sequence[str], column: str, on: str = "prices",
               cut: Cut | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Task: read ``column`` of a few stored tickers (:func:`read_selected`), aligned on
    their own union index.

    Returns ``(index, values)`` with values of shape (len(index), len(paths)).
    """
    series = [read_selected(p, column, on, cut) for p in paths]
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


def mask_nonfinite(values: np.ndarray) -> int:
    """Make infinite values missing (NaN), in place; how many there were."""
    bad = np.isinf(values)
    count = int(np.count_nonzero(bad))
    if count:
        values[bad] = np.nan
    return count


def finish(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Aligned series (prices, or returns taken on each ticker's own timestamps) with
    non-finite values missing, in place; and their count. A return of two present
    prices that was not finite (a zero or negative price: a bad tick, not a reason to
    lose the ticker's pairs) was marked infinite when it was taken, so it is counted here."""
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


def guess_index(paths: Sequence[str], column: str, files: int, on: str = "prices",
                cut: Cut | None = None, records: dict | None = None) -> np.ndarray:
    """The union of the timestamps of the ``files`` largest stored files: a part of the
    store's union, and on real data (a calendar every long history shares, gaps here
    and there) usually all of it. ``records`` as for :func:`place_chunk`."""
    records = records or {}
    sizes = {}
    for path in paths:
        record = records.get(path)
        if record is not None and type(record[0]) is int:
            sizes[path] = record[0]  # its recorded size: the size of the file a read accepts
            continue
        with contextlib.suppress(OSError):
            sizes[path] = os.stat(path).st_size
    largest = sorted(sizes, key=sizes.get, reverse=True)[:files] or list(paths[:1])
    if cut is not None:  # the cut series' timestamps, not the stored ones
        return union_of([read_selected(p, column, on, cut, records.get(p))[0] for p in largest])
    return union_of([read_column_arrays(p, column, records[p])[0] if p in records else read_index_array(p, column)
                     for p in largest])


class InMemory:
    """A panel this interpreter holds (serial, threads): where load tasks put their
    columns, and where block tasks take theirs."""

    def __init__(self, values: np.ndarray):
        self.values = values

    def columns(self, start: int, stop: int) -> np.ndarray:
        return self.values[:, start:stop]

    def nonfinite(self, start: int, stop: int) -> int:
        return 0  # the load counted them (Panel.nonfinite)


class InFile:
    """A panel in a file every worker of a local process pool maps: where load tasks put
    their columns and block tasks take theirs, so no column travels through the pool
    (a task carries only the file's name and the panel's shape)."""

    def __init__(self, path: str, shape: tuple[int, int]):
        self.path, self.shape = path, shape

    def columns(self, start: int, stop: int) -> np.ndarray:
        """Columns ``start:stop``, mapped (one ticker's history is contiguous, Fortran
        order), their pages mapped at once rather than one fault at a time."""
        rows = self.shape[0]
        offset = 8 * rows * start
        aligned = offset - offset % mmap.ALLOCATIONGRANULARITY
        length = max(1, 8 * rows * (stop - start) + offset - aligned)
        with open(self.path, "r+b") as file:
            mapped = mmap.mmap(file.fileno(), length, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                               offset=aligned)
        return np.ndarray((rows, stop - start), np.float64, buffer=mapped, offset=offset - aligned, order="F")

    def nonfinite(self, start: int, stop: int) -> int:
        return 0  # the load counted them (Panel.nonfinite)


def place_chunk(paths: Sequence[str], column: str, index: np.ndarray, target, start: int, on: str = "prices",
                cut: Cut | None = None, records: dict | None = None, check: bool = False):
    """Task (first pass): read ``column`` of a few stored tickers and place their series
    (:func:`read_selected`, with ``records[path]`` where there is one)
    on ``index`` in the columns ``start:`` of ``target`` (:class:`InMemory`,
    :class:`InFile`, or None: a new array, returned).

    A ticker with a timestamp ``index`` lacks is left out (its column all missing).
    With ``check``, its columns are then finished as :func:`finish_chunk` finishes them
    (while they are in the cache), and their counts returned.
    Returns ``(values or None, {column: timestamps} of the tickers left out, counts or None)``.
    """
    values = np.empty((len(index), len(paths)), order="F") if target is None else \
        target.columns(start, start + len(paths))
    outside = {}
    rows = Rows(index)
    plain = on == "prices" and cut is None  # the stored column as it is: placed without a copy first
    for k, path in enumerate(paths):
        record = records.get(path) if records else None
        idx, col = read_column_arrays(path, column, record) if plain else read_selected(path, column, on, cut, record)
        if not rows.place(values[:, k], idx, col):
            outside[start + k] = idx
    return (values if target is None else None), outside, _finished(values) if check else None


LOOKUP_SLOTS = 8  # a table of at most this many slots per timestamp of the index (see Rows)


class Rows:
    """Where a ticker's timestamps lie in a sorted, unique ``index``: its values placed there.

    Most tickers of a universe have every timestamp of the index (one copy), or a run of
    them (listed late, delisted early: a slice); the others, with halts, have a few
    gaps. Their rows come from a table of the index's grid when its timestamps are
    whole steps of one unit apart (days, minutes) and the grid is not much larger than
    the index (:data:`LOOKUP_SLOTS`), else by binary search. Either way every
    timestamp is checked to be the index's at the row it is put in.
    """

    def __init__(self, index: np.ndarray):
        self.index = index
        self.stamps = stamps = index.view(np.int64)
        self.table = None
        if len(stamps) >= 2:
            first, span = int(stamps[0]), int(stamps[-1]) - int(stamps[0])
            unit = int(np.gcd.reduce(np.diff(stamps)))
            if unit > 0 and span // unit < LOOKUP_SLOTS * len(stamps):
                self.first, self.unit = first, unit
                self.table = np.full(span // unit + 1, -1, dtype=np.intp)
                self.table[(stamps - first) // unit] = np.arange(len(stamps))

    def place(self, out: np.ndarray, idx: np.ndarray, col: np.ndarray) -> bool:
        """Put ``col`` (on ``idx``) in ``out`` (on the index), missing elsewhere; False (all
        missing) when ``idx`` has a timestamp the index lacks."""
        stamps, n, size = self.stamps, len(idx), len(self.stamps)
        if not n or not size:
            out[:] = np.nan
            return not n
        given = idx.view(np.int64)
        # Its first and last timestamps say which case it can be; all of them are compared.
        start = int(given[0])
        if self.table is None:
            low = int(np.searchsorted(stamps, start))
        else:
            slot = (start - self.first) // self.unit
            low = int(self.table[slot]) if 0 <= slot < len(self.table) else -1
        if 0 <= low and low + n <= size and given[-1] == stamps[low + n - 1] and _same(stamps[low : low + n], given):
            out[:low] = np.nan  # every timestamp of the index, or a run of them
            out[low : low + n] = col
            out[low + n :] = np.nan
            return True
        if self.table is not None:
            slot = given - self.first
            slot //= self.unit
            try:
                at = self.table.take(slot)  # -1: no timestamp there; checked below
            except IndexError:  # past the grid's end (before its start wraps: checked too)
                at = self.table.take(slot, mode="clip")
        else:
            at = np.searchsorted(stamps, given)
            at[at == size] = -1  # past the end: checked below
        out[:] = np.nan
        if not _same(stamps.take(at), given):
            return False
        out[at] = np.ascontiguousarray(col)  # a strided column (a block's) is put there slowly
        return True


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two int64 arrays of the same length hold the same values: the same bytes
    (compared faster than element by element)."""
    return a.tobytes() == b.tobytes()


@dataclass
class Moved:
    """A first pass's columns on a guess of the index that missed timestamps: where they
    are (``source``, on ``index``), and the tickers left out, to read again."""

    source: object  # InMemory or InFile; None when every ticker is read again
    index: np.ndarray
    column: str
    left_out: dict[int, str]  # panel column -> stored file
    on: str = "prices"
    cut: Cut | None = None
    records: dict | None = None  # stored file -> where its arrays lie (place_chunk's)


def finish_chunk(target, start: int, stop: int, index: np.ndarray, moved: Moved | None = None):
    """Task (second pass): make the non-finite values of the columns ``start:stop`` of
    ``target`` (on ``index``) missing (:func:`finish`) and count them. With ``moved``, first move
    them there from the first pass's panel, and read the tickers it left out again.

    Returns ``(non-finite values made missing, values of each ticker, tickers with a
    value at each timestamp)``.
    """
    values = target.columns(start, stop)
    if moved is not None:
        inside = [k for k in range(stop - start) if start + k not in moved.left_out]
        if inside:
            source = moved.source.columns(start, stop)
            at = np.searchsorted(index, moved.index)
        rows = Rows(index)
        for k in range(stop - start):
            path = moved.left_out.get(start + k)
            if path is None:
                values[:, k] = np.nan
                values[at, k] = source[:, k]
            elif not rows.place(values[:, k], *read_selected(path, moved.column, moved.on, moved.cut,
                                                             (moved.records or {}).get(path))):
                raise PairscanError("the stored frame changed while the store was read; run again", path)
    return _finished(values)


def _finished(values: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """:func:`finish` ``values`` (a panel's columns) in place: ``(non-finite values made
    missing, values of each column, columns with a value at each row)``."""
    values, nonfinite = finish(values)
    present = ~np.isnan(values)
    return nonfinite, np.count_nonzero(present, axis=0), np.count_nonzero(present, axis=1).astype(np.int32)


def _moved(source, index: np.ndarray, column: str, left_out: dict[int, str], on: str, cut: Cut | None,
           records: dict) -> Moved:
    """:class:`Moved`, with the records of the files it reads again alone."""
    return Moved(source, index, column, left_out, on, cut,
                 {p: records[p] for p in left_out.values() if p in records} or None)


def _reading_pool(pool: Pool, paths: Sequence[str]) -> Pool:
    """Where the stored files are read: HDF5 files in this thread when the pool's workers
    are threads. Every HDF5 call holds one lock (and the interpreter's), so threads only
    take turns at it, and lose time handing it over; a read from the manifest's records
    is mostly the interpreter's work between short system calls, and loses as much."""
    if pool.can.shares_memory and pool.workers > 1 and paths and all(p.endswith(HDF5_SUFFIX) for p in paths):
        return Pool(SerialExecutor(), pool.name, 1, pool.can)
    return pool


def load_panel(
    store: str | os.PathLike,
    column: str = "close",
    on: str = "prices",
    tickers: Sequence[str] | None = None,
    executor=None,
    workers: int | None = None,
    quiet: bool | None = None,
    pool: Pool | None = None,
    as_frame: bool = True,
    allocate=None,
    *,
    execution: Execution | None = None,
    cut: Cut | None = None,
    files: dict | None = None,
    manifest: dict | None = None,
):
    """Load ``column`` of every ticker in ``store`` (or of ``tickers``) into one aligned panel.

    Returns a DataFrame (timestamps x tickers, sorted by ticker) or, with
    ``as_frame=False``, a :class:`Panel`. ``cut`` keeps a period and resamples (see
    :class:`~pairscan.selection.Cut`); with ``on="returns"`` the values are each
    ticker's log returns on its own timestamps, aligned. ``allocate(shape)``, if given, makes the
    Fortran-ordered float64 array the values go into (a memory map, say; for a local
    process pool, a ``np.memmap`` of a file its workers write into). ``files`` and
    ``manifest``: the store's listing (:func:`~pairscan.store.store_paths` or
    :func:`~pairscan.store.store_files`) and manifest (:func:`~pairscan.store.read_manifest`)
    where the caller has them (the listing made with that manifest): neither is read again.

    The store is read once, in tasks of a few tickers each, on a guess of the union of
    their timestamps (:func:`guess_index`): each task writes its tickers' prices,
    aligned, straight into the panel (in this process's memory, or the file a local
    process pool maps); only on a cluster do the columns come back to this process. A
    second round of tasks, over the panel alone, makes them returns and counts what the
    correlation needs. When the guess lacks timestamps, that round moves the columns
    onto the whole union (and reads the few tickers that have those timestamps again;
    all of them where there is no room for the second panel beside the first).
    """
    checks.path("store", store)
    checks.text("column", column)
    checks.texts("tickers", tickers, optional=True)
    checks.boolean("as_frame", as_frame)
    execution = Execution.of(execution, executor=executor, workers=workers, quiet=quiet, pool=pool)
    quiet = execution.quiet
    if on not in ON:
        raise PairscanError(f"--on must be prices or returns, not {on!r}")
    if manifest is None:
        manifest = read_manifest(store)  # read once: the files, and where their arrays lie
    if files is None:
        files = store_paths(store, manifest)
    files = select_tickers(files, tickers)
    if not files:
        raise empty_store_error(store)
    names = list(files)
    paths = [os.fspath(p) for p in files.values()]
    step = TICKERS_PER_TASK
    starts = {names[i]: i for i in range(0, len(paths), step)}
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(execution.opened())
        local = pool.can.maps_files
        own_file = allocate is None and local
        if own_file:
            allocate = panel_allocator(stack)  # the file goes when the load ends; the mapping stays

        def panel_on(index: np.ndarray):
            values = np.empty((len(index), len(names)), order="F") if allocate is None else \
                allocate((len(index), len(names)))
            filename = getattr(values, "filename", None)
            if pool.can.shares_memory or not local or filename is None:
                return values, InMemory(values)  # a cluster's columns come back to this process
            return values, InFile(str(filename), values.shape)

        ahead = None
        if (pool.can.shares_memory or local) and not seem_cached(paths):
            # Files not in the page cache come in while the first are parsed.
            ahead = threading.Thread(target=will_read, args=(paths,), name="pairscan-read-ahead", daemon=True)
            ahead.start()
        # Where each file's arrays lie, from the manifest read once: tasks read those without HDF5.
        records = recorded_layouts(manifest, files)
        guess = guess_index(paths, column, GUESS_FILES, on, cut, records)
        first, first_target = panel_on(guess)
        shared = pool.can.shares_memory or isinstance(first_target, InFile)  # tasks write into the panel
        target = first_target if shared else None
        index_arg = guess if shared else share(pool, guess)
        # In this process's memory, the first pass finishes its columns too (see finish_chunk):
        # a second pass then runs only where the guess missed timestamps.
        check = pool.can.shares_memory
        tasks = [(label, (paths[i : i + step], column, index_arg, target, i, on, cut,
                          {p: records[p] for p in paths[i : i + step] if p in records}, check))
                 for label, i in starts.items()]
        left_out: dict[int, np.ndarray] = {}
        nonfinite, counts, per_row = 0, np.empty(len(names), dtype=np.int64), np.zeros(len(guess), np.int64)
        for label, (chunk, outside, checked) in run_tasks(_reading_pool(pool, paths), place_chunk, tasks,
                                                          desc="load", quiet=quiet):
            if chunk is not None:
                first[:, starts[label] : starts[label] + chunk.shape[1]] = chunk
            left_out.update(outside)
            if checked is not None:
                bad, found, present = checked
                nonfinite += bad  # a column left out has none: its values are read again below
                counts[starts[label] : starts[label] + len(found)] = found
                per_row += present

        index, values, final = guess, first, first_target
        if left_out:  # the guess missed timestamps: the panel on the whole union
            index = union_of([guess, *left_out.values()])
            try:
                values, final = panel_on(index)
            except PairscanError:
                if not isinstance(first, np.memmap):
                    raise
                # No room for it beside the first panel: that one goes, every ticker is read again.
                discard(first)
                first = first_target = None
                left_out = dict.fromkeys(range(len(paths)))
                nonfinite = 0  # counted again as they are read again
                values, final = panel_on(index)
        # Over the panel alone: a few large tasks for each worker where they share it, else here.
        wide = max(step, -(-len(paths) // (4 * pool.workers)))
        spans = {names[i]: (i, min(i + wide, len(paths))) for i in range(0, len(paths), wide)}
        tasks = [(label, (final, i, j, index, _moved(first_target, guess, column, {
            k: paths[k] for k in left_out if i <= k < j}, on, cut, records) if left_out else None))
            for label, (i, j) in spans.items()] if left_out or not check else []
        if tasks:  # the columns moved keep the first pass's count of non-finite values made missing
            counts, per_row = np.empty(len(names), dtype=np.int64), np.zeros(len(index), np.int64)
        done = run_tasks(pool, finish_chunk, tasks, desc="check", quiet=True) \
            if shared else ((label, finish_chunk(*args)) for label, args in tasks)
        for label, (bad, found, present) in done:
            nonfinite += bad
            counts[spans[label][0] : spans[label][1]] = found
            per_row += present
        if left_out and isinstance(first, np.memmap):
            discard(first)  # the first pass's panel: its memory goes now
        del first, first_target, tasks
        if ahead is not None:
            ahead.join()
    if own_file:
        values = values.view(np.ndarray)  # its file is gone: a plain array (of the mapping) now
    panel = Panel(names, index, values, column, on, nonfinite, counts, every_or_none(per_row, len(names)))
    return panel.to_frame() if as_frame else panel
