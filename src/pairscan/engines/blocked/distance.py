"""Distance on the blocked engine: the pairs whose normalized prices lie closest.

The sum of squared differences of two series over the timestamps both have is, with
``M`` the presence masks and ``X`` the values (0 where missing), three of the masked
products the correlation uses:

    SSD = (X_I * X_I)' M_J + M_I' (X_J * X_J) - 2 X_I' X_J      n = M_I' M_J

So the ``k`` smallest come from a pass over pairs of column blocks, each block pair
reduced to its ``k`` best candidates (:class:`NearestPairs`), with no n x n matrix.
The products lose about ``n eps (qa + qb) / SSD`` relative precision to cancellation;
the pairs kept are computed again from their own common timestamps, so the distances
reported are exact sums, and only the order of near ties among candidates can rest on
the products.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .. import Pairs
from .kernel import block_size_for, block_specs

SPARE = 10  # candidates kept beyond k, so that recomputing them exactly can reorder the boundary


def distance_blocks(vi: np.ndarray, vj: np.ndarray | None, min_periods: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ssd, n)`` of every pair of columns of ``vi`` and ``vj`` (``vi`` with itself when
    None): NaN where fewer than ``min_periods`` (and 1) common values."""
    pi = np.isfinite(vi)
    xi = np.where(pi, vi, 0.0)
    mi = pi.astype(np.float64)
    if vj is None:
        pj, xj, mj = pi, xi, mi
    else:
        pj = np.isfinite(vj)
        xj = np.where(pj, vj, 0.0)
        mj = pj.astype(np.float64)
    n = np.rint(mi.T @ mj).astype(np.int64)
    ssd = (xi * xi).T @ mj + mi.T @ (xj * xj) - 2.0 * (xi.T @ xj)
    np.maximum(ssd, 0.0, out=ssd)  # round-off below an exact 0
    ssd[n < max(1, min_periods)] = np.nan
    return ssd, n


def exact_distance(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """The sum of squared differences of two columns over their common values, and how many."""
    both = np.isfinite(a) & np.isfinite(b)
    diff = a[both] - b[both]
    return float(np.dot(diff, diff)), int(both.sum())


@dataclass(frozen=True)
class NearestPairs:
    """Reducer: the ``k`` pairs of smallest distance (held in ``Pairs.corr``), ties by
    ``(a, b)``, and how many pairs have a distance (``ranked``)."""

    k: int
    shrinks: ClassVar[bool] = True

    def block(self, ssd: np.ndarray, n: np.ndarray, i0: int, j0: int, same: bool) -> Pairs:
        keep = ~np.isnan(ssd)
        if same:
            keep &= np.triu(np.ones(ssd.shape, dtype=bool), 1)
        r, c = np.nonzero(keep)
        found = Pairs(i0 + r.astype(np.int64), j0 + c.astype(np.int64), ssd[r, c], n[r, c], len(r))
        return self.merge(found)

    def merge(self, *parts: Pairs) -> Pairs:
        ranked = sum(p.ranked for p in parts)
        pairs = Pairs.concat([Pairs(p.a, p.b, p.corr, p.n) for p in parts])
        order = np.lexsort((pairs.b, pairs.a, pairs.corr))[: self.k]
        return Pairs(pairs.a[order], pairs.b[order], pairs.corr[order], pairs.n[order], ranked)


def nearest_pairs(values: np.ndarray, k: int, min_periods: int, memory_limit: int = 256 * 2**20) -> Pairs:
    """The ``k`` pairs of columns of ``values`` (rows x columns, NaN missing) with the
    smallest sum of squared differences over at least ``min_periods`` common rows,
    smallest first (ties by column), with exact distances; ``ranked``: the pairs with
    enough common rows. Blocks of columns bounded by ``memory_limit``."""
    rows, columns = values.shape
    width = block_size_for(rows, columns, memory_limit)
    reducer = NearestPairs(k + SPARE)
    parts = []
    for i0, i1, j0, j1 in block_specs(columns, width):
        same = (i0, i1) == (j0, j1)
        ssd, n = distance_blocks(values[:, i0:i1], None if same else values[:, j0:j1], min_periods)
        parts.append(reducer.block(ssd, n, i0, j0, same))
        if len(parts) >= 8:
            parts = [reducer.merge(*parts)]
    found = reducer.merge(*parts) if parts else Pairs.empty()
    exact = np.array([exact_distance(values[:, i], values[:, j])[0] for i, j in zip(found.a, found.b)])
    order = np.lexsort((found.b, found.a, exact))[:k]
    return Pairs(found.a[order], found.b[order], exact[order], found.n[order], found.ranked)
