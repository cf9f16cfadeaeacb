"""The blocked engine's tasks: the panel cut into pairs of column blocks, one task each.

A task takes its two blocks from a :class:`BlockSource` (a slice of the panel this
process holds, the file a local process pool maps, or the store, read by the worker
itself), computes their correlations and overlap counts (:mod:`.kernel`), and hands
the matrices to a :class:`Reducer`, which keeps what the question needs of them and
merges the tasks' parts: :class:`TopPairs` (the ``k`` best pairs),
:class:`EveryPair` (``--matrix``) or :class:`~.partners.BestPartners` (``--with all``). Another question over every pair (the partners of
each ticker, a spanning forest) is another reducer, not another pass.

Where the panel lives is the :class:`~pairscan.placement.Plan`'s answer; this module
only turns it into tasks. On a Dask cluster a task carries the paths of its blocks and
a reference to the union index, and a shrinking reducer's parts are merged on the
cluster, so only the final part comes back.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from ...executors import Pool, preload, reduce_tasks, run_tasks, share
from ...panel import InMemory, align, finish, read_selected
from ...placement import Layout, Plan, Where, index_token
from ...selection import Cut
from .. import Pairs, top_k
from .kernel import blas_threads, block_pairs, block_size_for, block_specs, correlate_blocks

preload(__name__)  # what its process workers need


class BlockSource(Protocol):
    """Where a block task takes the panel's columns."""

    def columns(self, start: int, stop: int) -> np.ndarray:
        """The panel's columns ``start:stop`` (rows x columns, NaN where missing)."""

    def nonfinite(self, start: int, stop: int) -> int:
        """How many non-finite values this source made missing in columns ``start:stop``
        (0 where the load counted them)."""


@dataclass
class Block:
    """One pair of column blocks' results: ``corr[i, j]`` and ``n[i, j]`` are those of the
    panel's columns ``i0 + i`` and ``j0 + j``. ``same``: a block with itself (only the
    upper triangle is meaningful; ``corr`` is the reducer's to change).
    ``nonfinite``: values the task's source made missing (each block counted once).
    ``rows``: where the rows are a few named columns rather than a block (partners:
    :mod:`.partners`), their column indices; ``i0`` then means nothing."""

    corr: np.ndarray
    n: np.ndarray
    i0: int
    j0: int
    same: bool
    nonfinite: int = 0
    rows: np.ndarray | None = None


class Reducer(Protocol):
    """What a pass over the blocks keeps. ``block`` runs in the task, where the
    matrices are, and returns a part; ``merge(*parts)`` combines one or more parts into
    one, associative and in any order. ``shrinks``: a merged part is small (merge
    parts where the tasks run, as they finish); else they are merged once, here."""

    shrinks: ClassVar[bool]

    def block(self, block: Block) -> Any: ...

    def merge(self, *parts: Any) -> Any: ...


@dataclass(frozen=True)
class TopPairs:
    """The ``k`` best pairs (by ``|corr|`` with ``absolute``), and the tally of them all."""

    k: int
    absolute: bool = False
    shrinks: ClassVar[bool] = True

    def block(self, block: Block) -> Pairs:
        pairs = block_pairs(block.corr, block.n, block.i0, block.j0, block.same, self.k, self.absolute)
        pairs.nonfinite = block.nonfinite
        return pairs

    def merge(self, *parts: Pairs) -> Pairs:
        return top_k(Pairs.concat(list(parts)), self.k, self.absolute)


@dataclass(frozen=True)
class EveryPair:
    """Every pair (for the full matrix)."""

    shrinks: ClassVar[bool] = False

    def block(self, block: Block) -> Pairs:
        pairs = block_pairs(block.corr, block.n, block.i0, block.j0, block.same, None, False)
        pairs.nonfinite = block.nonfinite
        return pairs

    def merge(self, *parts: Pairs) -> Pairs:
        return Pairs.concat(list(parts))


@dataclass(frozen=True)
class BlockJob:
    """What every block task of a pass computes. ``one_blas_thread`` keeps BLAS to one
    thread in the task: the executor already runs a task per core, and BLAS threads
    competing for the same cores spin and slow everything down many times over.
    ``threads``: the cores a task alone on the machine may use itself (its rows split
    across as many threads, :func:`~.kernel.correlate_split`)."""

    method: str
    min_periods: int | None
    reducer: Reducer
    one_blas_thread: bool = False
    threads: int = 1


def block_task(source: BlockSource, spec: tuple[int, int, int, int], job: BlockJob) -> Any:
    """Task: the reducer's part of one block pair ``spec = (i0, i1, j0, j1)``."""
    if job.one_blas_thread:
        with blas_threads(1):
            return _block(source, spec, job)
    return _block(source, spec, job)


def _block(source: BlockSource, spec: tuple[int, int, int, int], job: BlockJob) -> Any:
    i0, i1, j0, j1 = spec
    same = (i0, i1) == (j0, j1)
    vi = source.columns(i0, i1)
    vj = None if same else source.columns(j0, j1)
    corr, n = correlate_blocks(vi, vj, job.method, job.min_periods, job.threads)
    # Each block is the diagonal of exactly one task, which reports what it made missing.
    return job.reducer.block(Block(corr, n, i0, j0, same, source.nonfinite(i0, i1) if same else 0))


class StoreBlocks:
    """Block source that reads the store where the task runs (a Dask cluster, or a
    panel too large for the memory limit).

    Carries only the paths of the blocks its task needs, the selection's cut and the
    union index (named by ``token``); the worker reads each ticker's series (cut, its
    returns taken on its own timestamps) and aligns it on that index itself.
    """

    def __init__(self, paths: dict[tuple[int, int], list[str]], column: str, on: str, index: np.ndarray,
                 token: str | None = None, cut: Cut | None = None):
        self.paths, self.column, self.on, self.index, self.cut = paths, column, on, index, cut
        self.token = token if token is not None else index_token(index)
        self.counts: dict[tuple[int, int], int] = {}

    def columns(self, start: int, stop: int) -> np.ndarray:
        paths = self.paths[start, stop]
        # Workers outlive a run: a rewritten file or another index must not hit the cache.
        key = (tuple(paths), tuple(_stamp(p) for p in paths), self.column, self.on, self.cut, self.token)
        with _CACHE_LOCK:
            cached = _BLOCK_CACHE.get(key)
        if cached is None:
            series = [read_selected(p, self.column, self.on, self.cut) for p in paths]
            _, values = align([i for i, _ in series], [v for _, v in series], self.index)
            cached = finish(values)
            with _CACHE_LOCK:
                _BLOCK_CACHE[key] = cached
                while len(_BLOCK_CACHE) > 2:  # a worker keeps the last blocks it read
                    _BLOCK_CACHE.popitem(last=False)
        self.counts[start, stop] = cached[1]
        return cached[0]

    def nonfinite(self, start: int, stop: int) -> int:
        """How many non-finite values (prices or returns) block ``start:stop`` made missing."""
        return self.counts[start, stop]


_BLOCK_CACHE: OrderedDict = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None  # read_selected names the problem
    return stat.st_mtime_ns, stat.st_size


def store_block_task(paths: dict, column: str, on: str, cut: Cut | None, index: np.ndarray, token: str,
                     spec: tuple[int, int, int, int], job: BlockJob) -> Any:
    """Task: :func:`block_task` on blocks the worker reads from the store itself.

    The index is an argument of its own (not inside the block source) so that on Dask
    it can be a reference to the copy every worker already holds.
    """
    return block_task(StoreBlocks(paths, column, on, index, token, cut), spec, job)


def panel_block_task(values: np.ndarray, spec: tuple[int, int, int, int], job: BlockJob) -> Any:
    """Task: :func:`block_task` on a panel the worker holds (a caller's DataFrame on Dask)."""
    return block_task(InMemory(values), spec, job)


def cluster_block_width(n: int, workers: int, tasks_per_worker: int = 4) -> int:
    """The widest blocks that still give each of ``workers`` about ``tasks_per_worker`` tasks.

    A block is read from the store once for each task that holds it, so fewer, wider
    blocks read less; a few tasks per worker keep every worker busy to the end.
    """
    blocks = 1
    while blocks * (blocks + 1) // 2 < tasks_per_worker * workers:
        blocks += 1
    return max(16, -(-n // blocks))


def block_width(plan: Plan, rows: int, columns: int, block_size: int | None = None) -> int:
    """The block width for ``plan``: ``block_size`` if given, else the widest whose
    tasks' working sets fit the memory limit, and on workers that do not share this
    process's memory or a mapped panel, no wider than keeps every worker busy."""
    size = block_size or block_size_for(rows, columns, plan.memory_limit, plan.concurrent,
                                        reads_store=plan.reads_store)
    if not plan.shares_memory and plan.where is not Where.FILE and block_size is None:
        size = min(size, cluster_block_width(columns, plan.workers))
    return size


def correlate_blocked(plan: Plan, layout: Layout, pool: Pool, *, method: str, min_periods: int | None,
                      reducer: Reducer, block_size: int | None = None, quiet: bool = True,
                      retries: int = 0) -> Any:
    """The blocked engine over every pair of ``layout``'s columns: ``reducer``'s merged part."""
    tickers = layout.tickers
    specs = block_specs(len(tickers), block_width(plan, len(layout.index), len(tickers), block_size))
    if plan.tasks_fetch:
        # Threads reading the store share this process's BLAS: one thread each.
        with blas_threads(1 if plan.streamed and pool.can.shares_memory and pool.workers > 1 else None):
            return _fetching(layout, specs, pool, BlockJob(method, min_periods, reducer), quiet, retries)
    parallel = len(specs) > 1 and pool.workers > 1
    source = layout.block_source()
    job = BlockJob(method, min_periods, reducer, one_blas_thread=parallel and not pool.can.shares_memory,
                   threads=1 if parallel else pool.workers)
    tasks = [(_label(tickers, spec), (source, spec, job)) for spec in specs]
    # With several tasks, parallelism comes from the executor: one BLAS thread per task.
    # A single task uses every core itself: its rows split across threads.
    with blas_threads(1 if parallel and pool.can.shares_memory else None):
        return _reduce(pool, block_task, tasks, reducer, quiet, retries)


def _fetching(layout: Layout, specs: list, pool: Pool, job: BlockJob, quiet: bool, retries: int) -> Any:
    """Block tasks that fetch their columns where they run. A task carries the paths of
    its two blocks and a reference to the union index, so the workers read the store
    themselves; a caller's panel (a DataFrame) goes to each worker once."""
    if layout.panel is None:
        paths = layout.paths
        shared, token = share(pool, layout.index), index_token(layout.index)
        fn = store_block_task

        def args(i0, i1, j0, j1):
            return ({(i0, i1): paths[i0:i1], (j0, j1): paths[j0:j1]}, layout.column, layout.on, layout.cut, shared,
                    token)
    else:
        shared = share(pool, layout.panel.values)
        fn = panel_block_task

        def args(i0, i1, j0, j1):
            return (shared,)
    tasks = [(_label(layout.tickers, spec), (*args(*spec), spec, job)) for spec in specs]
    return _reduce(pool, fn, tasks, job.reducer, quiet, retries)


def _reduce(pool: Pool, fn, tasks: list, reducer: Reducer, quiet: bool, retries: int) -> Any:
    """The tasks' parts merged: as they finish (on a Dask cluster, there) when the
    reducer shrinks them, else all at once here."""
    if reducer.shrinks:
        return reduce_tasks(pool, fn, tasks, reducer.merge, desc="blocks", quiet=quiet, retries=retries)
    return reducer.merge(*(part for _, part in run_tasks(pool, fn, tasks, desc="blocks", quiet=quiet,
                                                          retries=retries)))


def _label(tickers: list[str], spec: tuple[int, int, int, int]) -> str:
    i0, i1, j0, j1 = spec
    return f"block {tickers[i0]}..{tickers[i1 - 1]} x {tickers[j0]}..{tickers[j1 - 1]}"
