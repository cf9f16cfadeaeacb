"""Placement: where the panel lives while it is correlated, decided once.

:func:`plan_placement` looks at what is correlated (a caller's DataFrame or a store), what the
pool can share with this process, and whether the panel fits the memory limit, and
returns a frozen :class:`Plan`:

- ``MEMORY``: this interpreter holds the panel (a caller's DataFrame; or, for serial
  and threads, the store loaded once) and block tasks take slices of it;
- ``FILE``: a local process pool: the store is loaded once, in parallel, into a file
  every worker maps (shared memory where it fits, see :mod:`pairscan.shm`);
- ``STORE``: the panel does not fit the limit: nothing is loaded, each block task reads
  the columns it needs from the store where it runs;
- ``CLUSTER``: workers elsewhere (Dask): tasks carry file paths and a reference to the
  union index (or to the caller's panel, sent to each worker once), never columns.

:meth:`Plan.load` then does what the plan says and returns a :class:`Layout`, the
panel's facts (tickers, union index, whether complete, each ticker's count of values)
and the panel itself where this process holds it. Engines take the plan and the
layout; a question that changes where the series are read (a period, a resample, a
subset of tickers) belongs here, not in ``correlate``.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import PairscanError
from .executors import Pool, reduce_tasks
from .panel import InFile, InMemory, Panel, finish, load_panel, read_chunk, union_of
from .selection import Cut, Selection
from .shm import panel_allocator
from .store import read_column_arrays, store_files

STEP = 64  # tickers per index task


class Where(enum.Enum):
    """Where the panel lives while it is correlated (see the module docstring)."""

    MEMORY = "memory"
    FILE = "file"
    STORE = "store"
    CLUSTER = "cluster"


@dataclass(frozen=True)
class Plan:
    """Where the panel lives, and what the pool running the tasks can share with it."""

    where: Where
    given: bool  # the panel is the caller's (a DataFrame), not read from a store
    workers: int
    shares_memory: bool  # tasks run in this interpreter (serial, threads)
    memory_limit: int  # bytes, for the panel and for the tasks' working sets

    @property
    def loads(self) -> bool:
        """Whether this process reads the store into a panel (in memory, or a mapped file)."""
        return not self.given and self.where in (Where.MEMORY, Where.FILE)

    @property
    def reads_store(self) -> bool:
        """Whether block tasks read their columns from the store themselves."""
        return not self.given and self.where in (Where.STORE, Where.CLUSTER)

    @property
    def tasks_fetch(self) -> bool:
        """Whether tasks carry references (paths, a scattered panel) and fetch their
        columns where they run, rather than a view of a panel held here."""
        return self.where in (Where.STORE, Where.CLUSTER)

    @property
    def streamed(self) -> bool:
        """The panel did not fit the memory limit: its blocks are read by the tasks."""
        return self.where is Where.STORE

    @property
    def concurrent(self) -> int:
        """How many tasks share this machine's memory at once (a cluster's run elsewhere)."""
        return self.workers if self.shares_memory or self.where in (Where.FILE, Where.STORE) else 1


def plan_placement(*, given: bool, shares_memory: bool, shares_files: bool, remote: bool, workers: int,
         memory_limit: int, fits: Callable[[], bool]) -> Plan:
    """Decide where the panel lives.

    ``given``: the panel is a caller's DataFrame. ``shares_memory``: the pool's tasks run
    in this interpreter; ``shares_files``: they run on this machine (a local process
    pool); ``remote``: on a cluster that can hold a copy of a value for its tasks.
    ``fits()`` says whether a store's panel may fit ``memory_limit``; it reads a file, so
    it is asked only where the answer matters.
    """
    if given:
        where = Where.CLUSTER if remote else Where.MEMORY
    elif not (shares_memory or shares_files):
        where = Where.CLUSTER
    elif not fits():
        where = Where.STORE
    else:
        where = Where.MEMORY if shares_memory else Where.FILE
    return Plan(where, given, workers, shares_memory, memory_limit)


@dataclass(frozen=True)
class Layout:
    """The panel as placed: its columns' tickers, the union index, whether every
    timestamp has every ticker's value or none (``complete``), each ticker's count of
    values where ``min_periods="auto"`` needs it, and either the panel (where this
    process holds it) or the stored files' paths (where the tasks read them)."""

    tickers: list[str]
    index: np.ndarray
    complete: bool
    counts: np.ndarray | None
    column: str
    on: str
    panel: Panel | None = None
    paths: list[str] | None = None
    mapped: bool = False  # the panel's values are a file the workers map
    cut: Cut | None = None  # the period and frequency of each ticker's series
    stored: int | None = None  # the tickers of the store (or columns of the frame) before the subset

    @property
    def nonfinite(self) -> int | None:
        """Non-finite values the load made missing (None: counted by the tasks instead)."""
        return self.panel.nonfinite if self.panel is not None else None

    def block_source(self) -> InMemory | InFile:
        """Where block tasks take the columns of the panel held here."""
        if self.mapped:
            self.panel.values.flush()  # the workers map the file: it must hold the whole panel
            return InFile(self.panel.values.filename, self.panel.values.shape)
        return InMemory(self.panel.values)


def load(plan: Plan, source, *, column: str, on: str, auto: bool, pool: Pool, stack: contextlib.ExitStack,
         quiet: bool = True, selection: Selection | None = None) -> Layout:
    """Do what ``plan`` says with ``source`` (a store or a DataFrame): the :class:`Layout`.

    ``auto``: count each ticker's values (prices or returns) for ``min_periods="auto"``.
    ``selection``: its period, frequency and subset of tickers (``column`` and ``on``
    are given apart). With a period or a frequency, tickers with no value in it leave
    the panel. A mapped file lives until ``stack`` closes.
    """
    selection = selection or Selection(column, on)
    cut = selection.cut
    if plan.given:
        stored = source.shape[1]
        frame = source[selection.universe([str(c) for c in source.columns])] if selection.subset else source
        if cut is None and on == "prices":
            panel = Panel.from_frame(frame, column, on)
            panel.values = panel.values.copy(order="F")
        else:
            panel = Panel.from_selected(frame, column, on, cut)
        panel.values, panel.nonfinite = finish(panel.values)
        if cut is not None:
            panel.drop_empty()
        _enough(panel.tickers, None)
        return Layout(panel.tickers, panel.index, panel.full_overlap(), panel.observations() if auto else None,
                      column, on, panel=panel, cut=cut, stored=stored)
    files = store_files(source)
    stored = len(files)
    tickers = selection.universe(files) if selection.subset else None
    if plan.loads:
        # The workers share this machine: read the store in parallel once (into a file
        # they map, for a process pool) instead of each block task reading it again.
        allocate = panel_allocator(stack) if plan.where is Where.FILE else None
        panel = load_panel(source, column, on, tickers, executor=None, pool=pool, quiet=quiet, as_frame=False,
                           allocate=allocate, cut=cut)
        if cut is not None:
            panel.drop_empty()
        _enough(panel.tickers, source)
        return Layout(panel.tickers, panel.index, panel.full_overlap(), panel.observations() if auto else None,
                      column, on, panel=panel, mapped=allocate is not None, cut=cut, stored=stored)
    # Workers elsewhere (or a panel too large for the limit) read the store
    # themselves: tasks carry paths they can open, and hold only their blocks.
    files = {t: os.path.abspath(p) for t, p in files.items() if tickers is None or t in tickers}
    tickers, paths = list(files), list(files.values())
    _enough(tickers, source)
    index, complete, counts = store_index(paths, column, on, pool, quiet, cut)
    if cut is not None and not counts.all():
        keep = np.flatnonzero(counts > 0)
        tickers, paths, counts = [tickers[k] for k in keep], [paths[k] for k in keep], counts[keep]
        _enough(tickers, source)
        index, complete, _ = store_index(paths, column, on, pool, quiet, cut)
    return Layout(tickers, index, complete, counts, column, on, paths=paths, cut=cut, stored=stored)


def _enough(tickers: list[str], where) -> None:
    if len(tickers) < 2:
        raise PairscanError(f"need at least two tickers to correlate, found {len(tickers)}", where)


def panel_fits(store, column: str, limit: int) -> bool:
    """Whether the panel of ``store`` may fit in ``limit`` bytes.

    The panel has at least as many rows as the longest history, which the largest file
    holds: read that one file. False means it certainly does not fit (``tickers x
    rows x 8`` bytes is more than the limit), and then the blocks are read from the
    store by the tasks that need them instead (``Where.STORE``).
    """
    files = store_files(store)
    if len(files) < 2:
        return True  # too few tickers to correlate: load_panel says so
    sizes = {}
    for path in files.values():
        with contextlib.suppress(OSError):
            sizes[path] = os.stat(path).st_size
    if not sizes:
        return True
    rows = len(read_column_arrays(max(sizes, key=sizes.get), column)[1])
    return len(files) * rows * 8 <= limit


def index_token(index: np.ndarray) -> str:
    """A short name for a union index, so workers can tell one index from another."""
    return hashlib.blake2b(np.ascontiguousarray(index).view(np.uint8), digest_size=16).hexdigest()


def index_chunk(paths: list[str], column: str, on: str = "prices",
                cut: Cut | None = None) -> tuple[np.ndarray, bool, dict[str, int]]:
    """Task: the union index of a few tickers' series (:func:`~pairscan.panel.read_selected`),
    whether all have a finite value at every timestamp (returns: at every one but the
    first, which none has), and how many finite values each has (by path)."""
    index, values = read_chunk(paths, column, on, cut)
    finite = np.isfinite(values)
    usable = finite[1:] if on == "returns" else finite
    counts = np.count_nonzero(finite, axis=0)
    return index, bool(usable.all()), dict(zip(paths, counts.tolist()))


def union_index(*parts: tuple[np.ndarray, bool, dict]) -> tuple[np.ndarray, bool, dict[str, int]]:
    """Task: merge :func:`index_chunk` results, in any order. Complete when every part
    is complete and all have the same timestamps."""
    if not parts:
        return np.empty(0, "datetime64[ns]"), True, {}
    first = parts[0][0]
    complete = all(full and np.array_equal(idx, first) for idx, full, _ in parts)
    index = first if complete else union_of([idx for idx, _, _ in parts])
    return index, complete, {path: n for _, _, counts in parts for path, n in counts.items()}


def store_index(paths: list[str | Path], column: str, on: str, pool: Pool, quiet: bool, cut: Cut | None = None):
    """The union index of the stored files' series ``paths``, whether it is complete, and
    each one's count of values (prices or returns, in ``paths``' order), read where the
    tasks run."""
    paths = [str(p) for p in paths]
    tasks = [(f"index {paths[i]}", (paths[i : i + STEP], column, on, cut)) for i in range(0, len(paths), STEP)]
    # On Dask the chunks' indexes are merged on the cluster; one index comes back.
    index, complete, counts = reduce_tasks(pool, index_chunk, tasks, union_index, desc="index", quiet=quiet)
    return index, complete, np.array([counts[p] for p in paths], dtype=np.int64)


def is_frame(source) -> bool:
    """Whether ``source`` is a caller's panel (a DataFrame) rather than a store."""
    return isinstance(source, pd.DataFrame)
