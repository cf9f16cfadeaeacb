"""The minimum spanning forest on the blocked engine, without the n x n matrix (Boruvka).

Edges are ranked pairs; a shorter edge is a higher correlation (``|corr|`` with
``absolute``), since the distance ``sqrt(2 (1 - r))`` falls as ``r`` rises. Edges of
equal correlation are ordered by their columns ``(min, max)``: one strict order, so
that the forest is unique and every way of finding it (Kruskal on every pair, these
rounds) finds the same one.

Boruvka: while components have edges between them, each one's shortest edge to
another belongs to the forest (the cut property); merging along all of them at least
halves the number of components. A pass over every pair of blocks finds those edges
with :class:`NearestOutside`, which keeps, for every column, its ``k`` shortest edges
to columns of *other* components (memory ``n x k``, whatever the size of the blocks).
The lists outlive the pass: as components grow, a column's shortest edge leaving its
component is still the first of its list that leaves it, unless none does and the list
was cut at ``k`` (the column has edges beyond it). A component whose shortest edge is
known that way (every column's unseen edges ranking after it) merges without another
pass; only when none does is the panel read again. Most forests take two or three
passes where plain Boruvka takes about ``log2(n)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ...executors import Pool, preload
from ...placement import Layout, Plan
from .. import Pairs
from .partners import BestPartners
from .tasks import Block, correlate_blocked

preload(__name__)  # what its process workers need

NEAREST = 16  # edges kept per column and pass: more, fewer passes


@dataclass(frozen=True)
class NearestOutside:
    """Reducer: each column's ``k`` shortest edges to columns of other components
    (``labels[i]``: the component of column ``i``), as directed pairs sorted by column,
    then shortest first (ties by the other column), and the tally of every pair seen
    (meaningful on the first pass, where every column is its own component)."""

    labels: np.ndarray
    k: int = NEAREST
    absolute: bool = False
    shrinks: ClassVar[bool] = True

    def block(self, block: Block) -> Pairs:
        corr = block.corr
        rows = self.labels[block.i0 : block.i0 + corr.shape[0]]
        columns = self.labels[block.j0 : block.j0 + corr.shape[1]]
        # Edges inside a component are no candidates (a block with itself reads its
        # upper triangle, and the mask is symmetric there).
        corr[rows[:, None] == columns[None, :]] = np.nan
        return BestPartners(self.k, self.absolute).block(block)

    def merge(self, *parts: Pairs) -> Pairs:
        return BestPartners(self.k, self.absolute).merge(*parts)


def edge_order(key: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The order of edges, shortest first: ``key`` (the correlation, or ``|corr|``) highest
    first, ties by ``(min, max)`` of their columns."""
    return np.lexsort((np.maximum(a, b), np.minimum(a, b), -key))


def _before(x: tuple, y: tuple) -> np.ndarray:
    """Whether edges ``x = (key, lo, hi)`` come before edges ``y`` in :func:`edge_order`."""
    (kx, lx, hx), (ky, ly, hy) = x, y
    return (kx > ky) | ((kx == ky) & ((lx < ly) | ((lx == ly) & (hx < hy))))


class Forest:
    """Union-find over ``n`` columns: which component each is in."""

    def __init__(self, n: int):
        self.parent = np.arange(n)

    def roots(self) -> np.ndarray:
        parent = self.parent
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                return parent
            parent = self.parent = grand

    def union(self, a: int, b: int) -> bool:
        ra, rb = self._find(a), self._find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True

    def _find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return int(i)


def _first_per(groups: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Of the indices ``order``, the first of each value of ``groups[order]``."""
    if not len(order):
        return order
    seen = groups[order]
    _, first = np.unique(seen, return_index=True)
    return order[first]


def boruvka_rounds(forest: Forest, found: Pairs, k: int, absolute: bool) -> tuple[list[tuple], bool]:
    """Merge components along the shortest edges leaving them that ``found`` (one pass's
    :class:`NearestOutside` lists, cut at ``k``) proves, as long as some are proven.

    Returns the edges added, ``(a, b, corr, n)``, and whether a component remains whose
    shortest edge the lists cannot tell (another pass is needed).
    """
    n = len(forest.parent)
    a, b, corr, count = found.a, found.b, found.corr, found.n
    key = np.abs(corr) if absolute else corr
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    sizes = np.bincount(a, minlength=n)
    # The last entry of a full list: the column's unseen edges all rank after it.
    ends = np.cumsum(sizes) - 1
    cut = np.flatnonzero(sizes >= k)
    added = []
    while True:
        comp = forest.roots()
        outside = np.flatnonzero(comp[a] != comp[b])
        best_of_column = _first_per(a, outside)  # lists are sorted: the first that leaves is the shortest
        has_best = np.zeros(n, bool)
        has_best[a[best_of_column]] = True
        blind = cut[~has_best[cut]]  # columns whose every listed edge stays inside
        bound = ends[blind]
        order = best_of_column[edge_order(key[best_of_column], a[best_of_column], b[best_of_column])]
        best = _first_per(comp[a], order)  # each component's shortest known edge
        limits = bound[edge_order(key[bound], a[bound], b[bound])]
        limit = _first_per(comp[a], limits)  # each component's earliest unseen edge is after this
        limit_of = dict(zip(comp[a[limit]].tolist(), limit.tolist()))
        proven = []
        for e in best.tolist():
            c = int(comp[a[e]])
            f = limit_of.get(c)
            if f is None or bool(_before((key[e], lo[e], hi[e]), (key[f], lo[f], hi[f]))):
                proven.append(e)
        merged = False
        for e in proven:
            if forest.union(int(a[e]), int(b[e])):
                added.append((int(lo[e]), int(hi[e]), float(corr[e]), int(count[e])))
                merged = True
        if not merged:
            # Nothing proven: what is left are components with no edge out at all, and
            # those whose lists cannot tell (another pass).
            return added, bool(limit_of)


def spanning_forest_blocked(plan: Plan, layout: Layout, pool: Pool, *, method: str, min_periods: int | None,
                            absolute: bool, block_size: int | None = None, quiet: bool = True, retries: int = 0,
                            k: int | None = None) -> tuple[Pairs, int, int]:
    """The minimum spanning forest of ``layout``'s ranked pairs by passes over the blocks.

    Returns the forest's edges (``a < b``, in the order they were found), the number of
    ranked pairs (from the first pass), and the number of passes.
    """
    k = NEAREST if k is None else k
    n = len(layout.tickers)
    forest = Forest(n)
    edges: list[tuple] = []
    passes, ranked, histogram, nonfinite = 0, 0, None, 0
    while True:
        reducer = NearestOutside(forest.roots().copy(), k, absolute)
        found = correlate_blocked(plan, layout, pool, method=method, min_periods=min_periods, reducer=reducer,
                                  block_size=block_size, quiet=quiet, retries=retries)
        if passes == 0:
            ranked, histogram, nonfinite = found.ranked, found.histogram, found.nonfinite
        passes += 1
        added, again = boruvka_rounds(forest, found, k, absolute)
        edges += added
        if not again:
            break
    a, b, corr, count = (np.array(x) for x in zip(*edges)) if edges else (np.empty(0, np.int64),) * 2 + (
        np.empty(0), np.empty(0, np.int64))
    return Pairs(a.astype(np.int64), b.astype(np.int64), corr.astype(float), count.astype(np.int64), ranked,
                 histogram, nonfinite), ranked, passes
