"""Partners on the blocked engine: each named ticker's ``k`` best partners.

A few named tickers cost a few columns against all the others: one pass of tasks, each
the named columns against one block of the panel's columns (the kernel's counts, sums,
squares and cross products over the pairwise masks, as matrix-vector products with the
named columns: :func:`~.kernel.correlate_named`), never the n x n matrix. Every
ticker (``--with all``) is the blocked engine's pass over every pair of blocks with
:class:`BestPartners`, which keeps ``k`` per column (memory n x k).

Partners are *directed* pairs (:class:`~pairscan.engines.Pairs` with ``a`` the named
ticker's column and ``b`` its partner's), so ``a > b`` happens. Among partners of equal
correlation the lower column comes first: the order :func:`~pairscan.engines.top_k`
gives the same pairs (by ``(min, max)`` of the two columns).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ...executors import Pool, preload, share
from ...panel import InMemory
from ...placement import Layout, Plan, index_token
from ...selection import Cut
from .. import Pairs, tally
from .kernel import blas_threads, correlate_blocks, correlate_named
from .tasks import Block, BlockJob, BlockSource, StoreBlocks, _reduce, block_width, correlate_blocked

preload(__name__)  # what its process workers need


@dataclass(frozen=True)
class BestPartners:
    """Reducer: each column's ``k`` best partners (by ``|corr|`` with ``absolute``), as
    directed pairs, and the tally of every pair seen once."""

    k: int
    absolute: bool = False
    shrinks: ClassVar[bool] = True

    def block(self, block: Block) -> Pairs:
        corr, n = block.corr, block.n
        columns = block.j0 + np.arange(corr.shape[1])
        if block.rows is not None:
            # Named columns against a block: a pair of two named columns is in two rows
            # (and tallied once); a named column against itself is no pair.
            rows = np.asarray(block.rows)
            corr[rows[:, None] == columns[None, :]] = np.nan
            named = np.isin(columns, rows)
            once = ~named[None, :] | (rows[:, None] < columns[None, :])
            ranked, histogram = tally(corr[once])
            found = self._best(corr, n, rows, columns)
        elif block.same:
            upper = np.triu(np.ones(corr.shape, dtype=bool), 1)
            ranked, histogram = tally(corr[upper])
            full = np.where(upper, corr, corr.T)
            np.fill_diagonal(full, np.nan)
            found = self._best(full, np.where(upper, n, n.T), columns, columns)
        else:
            ranked, histogram = tally(corr.ravel())
            rows = block.i0 + np.arange(corr.shape[0])
            found = Pairs.concat([self._best(corr, n, rows, columns), self._best(corr.T, n.T, columns, rows)])
        found = self.merge(found)
        return Pairs(found.a, found.b, found.corr, found.n, ranked, histogram, block.nonfinite)

    def _best(self, corr: np.ndarray, n: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> Pairs:
        """Each row's candidates: its ``k`` best columns and everything tied with the k-th."""
        key = np.abs(corr) if self.absolute else corr
        defined = ~np.isnan(key)
        width = key.shape[1]
        if width > self.k:
            kth = np.partition(np.where(defined, key, -np.inf), width - self.k, axis=1)[:, width - self.k]
            defined &= key >= kth[:, None]
        r, c = np.nonzero(defined)
        return Pairs(rows[r].astype(np.int64), columns[c].astype(np.int64), corr[r, c], n[r, c].astype(np.int64))

    def merge(self, *parts: Pairs) -> Pairs:
        pairs = Pairs.concat(list(parts))
        keep = ~np.isnan(pairs.corr)
        a, b, corr, n = pairs.a[keep], pairs.b[keep], pairs.corr[keep], pairs.n[keep]
        key = np.abs(corr) if self.absolute else corr
        order = np.lexsort((b, -key, a))
        a = a[order]
        starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]]) if len(a) else np.empty(0, np.int64)
        sizes = np.diff(np.r_[starts, len(a)])
        rank = np.arange(len(a)) - np.repeat(starts, sizes)
        order = order[rank < self.k]
        return Pairs(pairs.a[keep][order], pairs.b[keep][order], corr[order], n[order], pairs.ranked,
                     pairs.histogram, pairs.nonfinite)


def directed(pairs: Pairs, named: np.ndarray | None) -> Pairs:
    """Pairs ``(i, j)`` as partners: ``(i, j)`` and ``(j, i)``, kept where the first is
    named (every column when ``named`` is None)."""
    a, b = np.r_[pairs.a, pairs.b], np.r_[pairs.b, pairs.a]
    keep = np.ones(len(a), bool) if named is None else np.isin(a, named)
    return Pairs(a[keep], b[keep], np.r_[pairs.corr, pairs.corr][keep], np.r_[pairs.n, pairs.n][keep],
                 pairs.ranked, pairs.histogram, pairs.nonfinite)


def named_values(layout: Layout, named: list[int]) -> np.ndarray:
    """The named columns of the panel (rows x named), from the panel held here or read
    from the store as a block task reads them."""
    if layout.panel is not None:
        return np.asarray(layout.panel.values[:, named], dtype=np.float64, order="F")
    source = StoreBlocks({(c, c + 1): [layout.paths[c]] for c in named}, layout.column, layout.on, layout.index,
                         cut=layout.cut)
    return np.asfortranarray(np.column_stack([source.columns(c, c + 1)[:, 0] for c in named]))


def partner_task(source: BlockSource, values: np.ndarray, named: np.ndarray, spec: tuple[int, int],
                 job: BlockJob) -> Pairs:
    """Task: the named columns (``values``, the panel's columns ``named``) against the
    panel's columns ``spec = (j0, j1)``: the reducer's part."""
    j0, j1 = spec
    with blas_threads(1) if job.one_blas_thread else contextlib.nullcontext():
        vj = source.columns(j0, j1)
        if job.method == "pearson":
            corr, n = correlate_named(values, vj, job.min_periods)
        else:
            corr, n = correlate_blocks(values, vj, job.method, job.min_periods, job.threads)
    return job.reducer.block(Block(np.array(corr, dtype=np.float64), n, 0, j0, False, source.nonfinite(j0, j1),
                                   rows=np.asarray(named)))


def store_partner_task(paths: list[str], column: str, on: str, cut: Cut | None, index: np.ndarray, token: str,
                       values: np.ndarray, named: np.ndarray, spec: tuple[int, int], job: BlockJob) -> Pairs:
    """Task: :func:`partner_task` on a block the worker reads from the store itself (the
    selection's period and frequency with it)."""
    return partner_task(StoreBlocks({spec: paths}, column, on, index, token, cut), values, named, spec, job)


def panel_partner_task(panel: np.ndarray, values: np.ndarray, named: np.ndarray, spec: tuple[int, int],
                       job: BlockJob) -> Pairs:
    """Task: :func:`partner_task` on a panel the worker holds (a caller's DataFrame on Dask)."""
    return partner_task(InMemory(panel), values, named, spec, job)


def partners_blocked(plan: Plan, layout: Layout, pool: Pool, named: list[int] | None, *, k: int, absolute: bool,
                     method: str, min_periods: int | None, block_size: int | None = None, quiet: bool = True,
                     retries: int = 0) -> Pairs:
    """The ``k`` best partners of the columns ``named`` (every column when None), as
    directed pairs sorted by column, then rank."""
    reducer = BestPartners(k, absolute)
    if named is None:
        return correlate_blocked(plan, layout, pool, method=method, min_periods=min_periods, reducer=reducer,
                                 block_size=block_size, quiet=quiet, retries=retries)
    columns = len(layout.tickers)
    width = block_width(plan, len(layout.index), columns, block_size)
    if block_size is None and pool.workers > 1:
        width = min(width, max(64, -(-columns // (4 * pool.workers))))  # every worker busy
    specs = [(j0, min(j0 + width, columns)) for j0 in range(0, columns, width)]
    values = named_values(layout, named)
    rows = np.asarray(named, dtype=np.int64)
    parallel = len(specs) > 1 and pool.workers > 1
    tickers = layout.tickers
    labels = [f"partners x {tickers[j0]}..{tickers[j1 - 1]}" for j0, j1 in specs]
    if plan.tasks_fetch:
        job = BlockJob(method, min_periods, reducer)
        shared = share(pool, values)
        if layout.panel is None:
            index, token = share(pool, layout.index), index_token(layout.index)
            tasks = [(label, (layout.paths[j0:j1], layout.column, layout.on, layout.cut, index, token, shared, rows,
                              (j0, j1), job)) for label, (j0, j1) in zip(labels, specs)]
            fn = store_partner_task
        else:
            panel = share(pool, layout.panel.values)
            tasks = [(label, (panel, shared, rows, (j0, j1), job)) for label, (j0, j1) in zip(labels, specs)]
            fn = panel_partner_task
        with blas_threads(1 if plan.streamed and pool.in_process and pool.workers > 1 else None):
            return _reduce(pool, fn, tasks, reducer, quiet, retries)
    source = layout.block_source()
    job = BlockJob(method, min_periods, reducer, one_blas_thread=parallel and not pool.in_process,
                   threads=1 if parallel else pool.workers)
    tasks = [(label, (source, values, rows, (j0, j1), job)) for label, (j0, j1) in zip(labels, specs)]
    with blas_threads(1 if parallel and pool.in_process else None):
        return _reduce(pool, partner_task, tasks, reducer, quiet, retries)
