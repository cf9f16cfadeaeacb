"""Pearson on one slice of a backtest: the formation's top pairs, or the trading slice's
mean correlation of every ranked pair, without an n x n pass of elementwise work.

The blocked engine's sums (:mod:`pairscan.engines.blocked.kernel`) for columns
centred on their means over the slice (0 where missing):

- columns present on every row of the slice (most of them) pair with each other by
  one product of their standardized values ``Z' Z``; the mean of all their pairs
  needs no product at all, ``(|sum_j z_j|^2 - sum_j |z_j|^2) / 2``;
- a column with a hole pairs with every column through the sums over their overlap,
  each a column's whole sum less its sum over the other's absent rows. A column is
  absent before its first value, after its last and in a few holes between (a
  listing, a delisting, halts): its absent rows' sums are a sum of the rows before one
  edge, of those after another (sums of the rows between consecutive edges, added up
  from either end) and a sparse product with the holes. With ``[x | x*x | 1]`` summed
  so, one gather gives the sums, sums of squares and exact counts of every pair of
  a column with a hole, and the dense ``sab = X_i' X_j`` remains. Against a column
  present everywhere the overlap is the holed column's own rows: its own sums are its
  whole sums, and the arithmetic per pair is half.

The pairs the sums cannot give exactly (two points, a variance lost to cancellation, an
overlap holding a small part of a column's sum of squares, a constant one among them)
are computed again from their own overlap, as the engine does. Constant columns have no
correlation. Columns whose magnitude needs scaling are left to the engine
(:func:`slice_pearson` returns None).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse

from ..engines import Pairs, top_k
from ..engines.blocked.kernel import CONDITION, LIMIT, overlap_corr, pearson_of_sums

# A pair whose overlap holds less than 2**-PART_BITS of a column's sum of squares is
# computed again from its overlap (its sums are a difference of two larger ones).
PART_BITS = 6
ROWS = 256  # complete columns taken this many at a time against the others
CELLS = 2**17  # pairs of a column with a hole and another at a time: their arrays stay in cache


@dataclass
class SliceCorrelation:
    """What a slice's pairs came to: the columns with a value (``keep``, indices of the
    slice's columns), ``min_periods`` in force, the pairs ranked, and either their top
    ``k`` (indices into ``keep``) or, without ``k``, the sum of their correlations
    (``total``, NaN with ``k``)."""

    keep: np.ndarray
    min_periods: int
    ranked: int
    top: Pairs | None
    total: float

    @property
    def mean(self) -> float:
        return self.total / self.ranked if self.ranked else float("nan")


def slice_pearson(series: np.ndarray, resolve, k: int | None, absolute: bool = False) -> SliceCorrelation | None:
    """Pearson of every pair of columns of ``series`` (rows x columns, NaN missing,
    finite elsewhere) with a value in the slice, ranked at ``resolve(counts)`` common
    values or more (and 2); the top ``k`` (by ``|r|`` with ``absolute``) when ``k`` is
    given, else the sum of every ranked pair's correlation. None where a column needs
    scaling (the engine then)."""
    present = ~np.isnan(series)
    counts = np.count_nonzero(present, axis=0)
    keep = np.flatnonzero(counts)
    counts = counts[keep]
    periods = int(resolve(counts))
    if len(keep) < 2:
        return SliceCorrelation(keep, periods, 0, Pairs.empty() if k else None, float("nan") if k else 0.0)
    some = np.flatnonzero(present.any(axis=1))
    rows = len(some)
    need = max(2, periods)
    low, high = np.fmin.reduce(series, axis=0)[keep], np.fmax.reduce(series, axis=0)[keep]  # NaN ignored
    peak = np.maximum(np.abs(low), np.abs(high))
    if ((peak > 2.0**LIMIT) | ((peak > 0) & (peak < 2.0**-LIMIT))).any():
        return None  # the engine scales such columns first
    # Constant columns have no correlation with anything: left out here.
    varies = np.flatnonzero(low != high)
    # Over two rows every pair is two points: exactly +-1, from the overlap (as with holes).
    whole = (counts[varies] == rows) & (rows > 2)
    # The columns with a hole first, then the others: each block below is a slice of them.
    varies = np.concatenate([varies[~whole], varies[whole]])
    h = len(varies) - int(np.count_nonzero(whole))
    values = series[np.ix_(some, keep[varies])]  # the rows where any column has a value
    present = ~np.isnan(values)
    x = np.where(present, values, 0.0)
    x -= x.sum(axis=0) / counts[varies]
    x *= present  # exactly 0 where missing
    found = _Found(varies, k, absolute)
    if len(varies) - h >= 2 and rows >= need:
        _full_pairs(x[:, h:], h, rows, found)
    if h:
        given = _Holed(x, present, values, h)
        step = max(64, CELLS // x.shape[1])
        for r0 in range(0, h, step):
            given.pairs(r0, min(h, r0 + step), need, found)
    top = top_k(Pairs.concat(found.parts), k, absolute) if k else None
    return SliceCorrelation(keep, periods, found.ranked, top, float("nan") if k else found.total)


class _Found:
    """What the blocks of pairs add up to: the pairs ranked, and the top ``k``
    candidates (every pair at or above the ``k``-th best so far: later blocks are read
    only at that floor) or, without ``k``, the sum of the correlations."""

    def __init__(self, varies: np.ndarray, k: int | None, absolute: bool):
        self.varies, self.k, self.absolute = varies, k, absolute
        self.ranked, self.total, self.parts, self.floor = 0, 0.0, [], -np.inf
        self.keys: list[np.ndarray] = []

    def add(self, corr: np.ndarray, r: int, c: int, n, ranked: int | None = None) -> None:
        """A block: ``corr[i, j]`` (NaN: not a ranked pair) is the pair of columns
        ``r + i`` and ``c + j`` with ``n`` (broadcast) common values. ``ranked``: the
        block's ranked pairs where the caller knows them."""
        if self.k is None:
            missing = np.isnan(corr)
            if missing.any():
                self.ranked += corr.size - int(np.count_nonzero(missing))
                self.total += float(corr.sum(where=~missing))
            else:
                self.ranked += corr.size
                self.total += float(corr.sum())
            return
        self.ranked += corr.size - int(np.count_nonzero(np.isnan(corr))) if ranked is None else ranked
        key = np.abs(corr) if self.absolute else corr
        if len(key) >= self.k:
            # Each row's best is a pair of its own: the k-th best of them is a floor already.
            best = np.fmax.reduce(key, axis=1)
            best = best[~np.isnan(best)]
            if len(best) >= self.k:
                self.floor = max(self.floor, np.partition(best, len(best) - self.k)[len(best) - self.k])
        pick = np.flatnonzero(key >= self.floor)  # NaN never
        if len(pick) > self.k:
            kth = np.partition(key.flat[pick], len(pick) - self.k)[len(pick) - self.k]
            pick = pick[key.flat[pick] >= kth]
        if not len(pick):
            return
        ii, jj = np.divmod(pick, corr.shape[1])
        a, b = self.varies[r + ii], self.varies[c + jj]
        self.parts.append(Pairs(np.minimum(a, b), np.maximum(a, b), corr.flat[pick],
                                np.broadcast_to(n, corr.shape)[ii, jj].astype(np.int64)))
        self.keys.append(key.flat[pick])
        keys = np.concatenate(self.keys)
        if len(keys) >= self.k:
            self.floor = np.partition(keys, len(keys) - self.k)[len(keys) - self.k]


def _full_pairs(x: np.ndarray, offset: int, rows: int, found: _Found) -> None:
    """Pairs of columns present on every row (``x``, the columns from ``offset``):
    the sum of their correlations from one product-free formula, or their top
    candidates from products a block of columns at a time."""
    x = x - x.mean(axis=0)  # centred again on the rounded mean: the sums over the rows are ~0
    z = x / np.sqrt(np.einsum("ij,ij->j", x, x))
    m = z.shape[1]
    if found.k is None:
        s = z.sum(axis=1)
        found.ranked += m * (m - 1) // 2
        found.total += (float(s @ s) - float(np.einsum("ij,ij->", z, z))) / 2
        return
    for i0 in range(0, m, ROWS):
        g = z[:, i0 : i0 + ROWS].T @ z[:, i0:]  # rows i0.., columns i0..
        np.clip(g, -1.0, 1.0, out=g)
        g[np.tri(*g.shape, dtype=bool)] = np.nan  # the pairs i <= j (diagonal and below)
        b = g.shape[0]
        found.add(g, offset + i0, offset + i0, rows, ranked=b * (m - i0) - b * (b + 1) // 2)


class _Holed:
    """The slice's varying columns, those with a hole first (``h`` of them): centred
    values (0 where missing), values, each column's sum, sum of squares and count, and
    what gives each column's sums of ``y = [x | x*x | 1]`` (the ones of the holed
    columns alone) over its absent rows (:meth:`absent`)."""

    def __init__(self, x: np.ndarray, present: np.ndarray, values: np.ndarray, h: int):
        rows, m = x.shape
        self.x, self.values, self.h, self.m = x, values, h, m
        self.s, self.q = x.sum(axis=0), np.einsum("ij,ij->j", x, x)
        self.count = np.count_nonzero(present, axis=0)
        self.y = np.concatenate([x, x * x, present[:, :h]], axis=1, dtype=np.float64)
        first = present.argmax(axis=0)  # every column has a value in the slice
        stop = rows - present[::-1].argmax(axis=0)  # one past its last
        edges = np.unique(np.concatenate([[0], first, stop]))
        edges = edges[edges < rows]
        # The rows from each edge to the next, summed (a sparse product: faster than
        # np.add.reduceat on rows), then added up from the top and from the bottom.
        segment = np.searchsorted(edges, np.arange(rows), side="right") - 1
        between = scipy.sparse.csr_matrix((np.ones(rows), (segment, np.arange(rows))), shape=(len(edges), rows)) @ self.y
        # before[e]: the rows before edges[e]; after[e]: the rows from edges[e] on (after[-1]: none).
        self.before = np.zeros((len(edges) + 1, self.y.shape[1]))
        self.after = np.zeros_like(self.before)
        self.before[1:], self.after[:-1] = between, between
        for e in range(1, len(edges)):  # a few edges, long rows: faster than np.cumsum on axis 0
            self.before[e + 1] += self.before[e]
            self.after[-e - 2] += self.after[-e - 1]
        self.first, self.stop = np.searchsorted(edges, first), np.searchsorted(edges, stop)
        self.listed, self.delisted = first > 0, stop < rows
        row, column = np.nonzero(~present[:, :h])  # the holes of the holed columns (the others have none)
        inside = (row >= first[column]) & (row < stop[column])
        self.holes = scipy.sparse.csr_matrix((np.ones(np.count_nonzero(inside)), (column[inside], row[inside])),
                                             shape=(h, rows))  # (holed columns, rows)

    def absent(self, columns: slice, of: slice | np.ndarray) -> np.ndarray:
        """The sums of ``y[:, of]`` over the absent rows of each of ``columns``: (columns, of)."""
        out = self.holes[columns] @ self.y[:, of]
        for edge, ends, sums in ((self.first, self.listed, self.before), (self.stop, self.delisted, self.after)):
            some = np.flatnonzero(ends[columns])  # most columns neither list nor delist in a slice
            if len(some):
                out[some] += sums[:, of][edge[columns][some]]
        return out

    def pairs(self, r0: int, r1: int, need: int, found: _Found) -> None:
        """The pairs of the holed columns ``r0:r1`` with the later holed ones and with the
        full ones, each pair once, into ``found``: NaN where a pair is not ranked (below
        ``need`` common values, constant on the overlap)."""
        h, m, chunk = self.h, self.m, slice(r0, r1)
        # The later columns' sums, sums of squares and counts over the chunk's absent rows.
        sx, sq = self.absent(chunk, slice(r0, m)), self.absent(chunk, slice(m + r0, 2 * m))
        s1 = self.absent(chunk, slice(2 * m + r0, None))
        self._with_holed(chunk, sx[:, : h - r0], sq[:, : h - r0], s1, need, found)
        if h < m:
            self._with_full(chunk, sx[:, h - r0 :], sq[:, h - r0 :], need, found)

    def _with_holed(self, chunk: slice, sx: np.ndarray, sq: np.ndarray, s1: np.ndarray, need: int,
                    found: _Found) -> None:
        """The chunk against the holed columns from its own first one on: every sum over
        the overlap is a column's whole sum less its sum over the other's absent rows."""
        r0, r1, h, m = chunk.start, chunk.stop, self.h, self.m
        later = slice(r0, h)
        mine = self.absent(later, np.r_[r0:r1, m + r0 : m + r1]).T  # the chunk's sums over later columns' absences
        b = r1 - r0
        s, q = self.s[chunk][:, None], self.q[chunk][:, None]
        sa, qa = s - mine[:b], q - mine[b:]
        sb, qb = np.subtract(self.s[later], sx, out=sx), np.subtract(self.q[later], sq, out=sq)
        n = np.subtract(self.count[later], s1, out=s1)
        sab = self.x[:, chunk].T @ self.x[:, later]
        corr, va, vb = pearson_of_sums(n, sa, sb, qa, qb, sab)
        # Each pair once: with a later column (the chunk's own block: above the diagonal).
        enough = (n >= need) & ~np.tri(b, h - r0, dtype=bool)
        again = (n == 2) | (va <= CONDITION * qa) | (vb <= CONDITION * qb)
        again |= qa < q * 2.0**-PART_BITS
        again |= qb < self.q[later] * 2.0**-PART_BITS
        again &= enough
        self._again(corr, again, r0, later)
        corr[~enough] = np.nan
        np.clip(corr, -1.0, 1.0, out=corr)
        found.add(corr, r0, r0, n)

    def _with_full(self, chunk: slice, sx: np.ndarray, sq: np.ndarray, need: int, found: _Found) -> None:
        """The chunk against the full columns: the overlap is each holed column's own
        rows, so its sums are its whole sums, and its count, the checks on it and the
        pairs below ``need`` go by rows."""
        h, m = self.h, self.m
        full = slice(h, m)
        n = self.count[chunk][:, None]
        s, q = self.s[chunk][:, None], self.q[chunk][:, None]
        sb, qb = np.subtract(self.s[full], sx, out=sx), np.subtract(self.q[full], sq, out=sq)
        sab = self.x[:, chunk].T @ self.x[:, full]
        corr, va, vb = pearson_of_sums(n, s, sb, q, qb, sab)  # va: (b, 1)
        qb *= CONDITION  # both checks against it (powers of two: exact)
        again = vb <= qb
        again |= qb < self.q[full] * (CONDITION * 2.0**-PART_BITS)  # qb below q / 2**PART_BITS
        rows_out = (n < need)[:, 0]
        again[((n == 2) | (va <= CONDITION * q))[:, 0]] = True
        again[rows_out] = False
        self._again(corr, again, chunk.start, full)
        corr[rows_out] = np.nan
        np.clip(corr, -1.0, 1.0, out=corr)
        found.add(corr, chunk.start, h, n)

    def _again(self, corr: np.ndarray, again: np.ndarray, r0: int, columns: slice) -> None:
        """The pairs flagged ``again`` computed again from their own overlap."""
        for i in np.flatnonzero(again.any(axis=1)):
            js = np.flatnonzero(again[i])
            corr[i, js] = overlap_corr(self.values[:, r0 + i], self.values[:, columns.start + js])
