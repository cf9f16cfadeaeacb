"""Pearson on one slice of a backtest: the formation's top pairs, or the trading slice's
mean correlation of every ranked pair, without an n x n pass of elementwise work.

The blocked engine's sums (:mod:`pairscan.engines.blocked.kernel`) for columns
centred on their means, with ``A`` the absence masks (1 where a column has no value
on a row of the slice, a sparse matrix: a slice of real histories is mostly whole):

- columns present on every row of the slice (most of them) pair with each other by
  one product of their standardized values ``Z' Z``; the mean of all their pairs
  needs no product at all, ``(|sum_j z_j|^2 - sum_j |z_j|^2) / 2``;
- a column with a hole pairs with every column through the sums over the overlap,
  each the column's whole sum less a sparse product with the other's absences:
  ``sa = s_i - X_i' A_j``, ``qa = q_i - (X_i*X_i)' A_j``; the counts ``n = M_i' M_j``
  (a product of the presence masks in single precision: sums of ones, exact) and the
  dense ``sab = X_i' X_j``.

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
from ..engines.blocked.kernel import CONDITION, LIMIT, candidates, overlap_corr

# A pair whose overlap holds less than 2**-PART_BITS of a column's sum of squares is
# computed again from its overlap (its sums are a difference of two larger ones).
PART_BITS = 6
ROWS = 256  # complete columns taken this many at a time against the others
CELLS = 2**17  # pairs of a column with a hole and another at a time: their arrays stay in cache


@dataclass
class SliceCorrelation:
    """What a slice's pairs came to: the columns with a value (``keep``, indices of the
    slice's columns), ``min_periods`` in force, the pairs ranked, their top ``k``
    (indices into ``keep``; None unless asked), and the sum of their correlations."""

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
    given. None where a column needs scaling (the engine then)."""
    present = ~np.isnan(series)
    keep = np.flatnonzero(present.any(axis=0))
    values, present = series[:, keep], present[:, keep]
    counts = np.count_nonzero(present, axis=0)
    periods = int(resolve(counts))
    if len(keep) < 2:
        return SliceCorrelation(keep, periods, 0, Pairs.empty() if k else None, 0.0)
    some = present.any(axis=1)
    if not some.all():
        values, present = values[some], present[some]
    rows = len(values)
    need = max(2, periods)
    part = np.where(present, values, 0.0)
    peak = np.abs(part).max(axis=0)
    if ((peak > 2.0**LIMIT) | ((peak > 0) & (peak < 2.0**-LIMIT))).any():
        return None  # the engine scales such columns first
    low = np.min(part, axis=0, where=present, initial=np.inf)
    high = np.max(part, axis=0, where=present, initial=-np.inf)
    # Constant columns have no correlation with anything: left out here.
    varies = np.flatnonzero(low != high)
    part, present = part[:, varies], present[:, varies]
    x = part - part.sum(axis=0) / counts[varies]
    x *= present  # exactly 0 where missing
    # Over two rows every pair is two points: exactly +-1, from the overlap (as with holes).
    whole = present.all(axis=0) & (rows > 2)
    full, holed = np.flatnonzero(whole), np.flatnonzero(~whole)
    parts, ranked, total = [], 0, 0.0
    if len(full) >= 2 and rows >= need:
        found = _full_pairs(x[:, full], k, absolute)
        ranked += len(full) * (len(full) - 1) // 2
        total += found[1]
        if k:
            a, b, corr = found[0]
            parts.append(Pairs(varies[full[a]], varies[full[b]], corr, np.full(len(a), rows, np.int64)))
    if len(holed):
        given = _Columns(x, present, values[:, varies], ~whole)
        step = max(64, CELLS // x.shape[1])
        for r0 in range(0, len(holed), step):
            found = _holed_pairs(given, holed[r0 : r0 + step], need, k, absolute)
            ranked += found[0]
            total += found[1]
            if k:
                a, b, corr, n = found[2]
                parts.append(Pairs(varies[a], varies[b], corr, n))
    top = top_k(Pairs.concat(parts), k, absolute) if k else None
    return SliceCorrelation(keep, periods, ranked, top, total)


def _full_pairs(x: np.ndarray, k: int | None, absolute: bool):
    """Pairs of columns present on every row: their top ``k`` candidates (column
    indices ``a < b`` and correlations) when asked, and the sum of all their correlations."""
    x = x - x.mean(axis=0)  # centred again on the rounded mean: the sums over the rows are ~0
    z = x / np.sqrt(np.einsum("ij,ij->j", x, x))
    s = z.sum(axis=1)
    total = (float(s @ s) - float(np.einsum("ij,ij->", z, z))) / 2
    if not k:
        return None, total
    m = z.shape[1]
    a, b, corr = [], [], []
    for i0 in range(0, m, ROWS):
        g = z[:, i0 : i0 + ROWS].T @ z[:, i0:]  # rows i0.., columns i0..
        np.clip(g, -1.0, 1.0, out=g)
        g[np.tri(*g.shape, dtype=bool)] = np.nan  # the pairs i <= j (diagonal and below)
        ii, jj, cc = _candidates(g, k, absolute)
        a.append(ii + i0)
        b.append(jj + i0)
        corr.append(cc)
    return (np.concatenate(a), np.concatenate(b), np.concatenate(corr)), total


class _Columns:
    """The slice's varying columns: centred (0 where missing), their absences (sparse),
    presence (single precision: counts of ones are exact), values, which have a hole,
    ``[x | x*x]``, and their sums, sums of squares and absences."""

    def __init__(self, x: np.ndarray, present: np.ndarray, values: np.ndarray, holed: np.ndarray):
        self.x, self.values, self.holed = x, values, holed
        self.absent = scipy.sparse.csc_matrix(~present, dtype=np.float64)
        self.ones = present.astype(np.float32 if len(x) < 2**24 else np.float64)
        self.yy = np.concatenate([x, x * x], axis=1)
        self.s, self.q = x.sum(axis=0), np.einsum("ij,ij->j", x, x)


def _holed_pairs(given: _Columns, rows_of: np.ndarray, need: int, k: int | None, absolute: bool):
    """Pairs of the columns ``rows_of`` (each with a hole) with every column (once each
    pair: with another holed column only when it comes later): ``(ranked, sum of the
    correlations, top candidates (a, b, corr, n) or None)``."""
    x, absent, s, q = given.x, given.absent, given.s, given.q
    xi = x[:, rows_of]
    b = len(rows_of)
    # sa, qa: sums of the holed columns over each other column's rows; sb, qb the other way.
    mine = (absent.T @ np.concatenate([xi, xi * xi], axis=1)).T  # (2b, columns)
    sa = s[rows_of][:, None] - mine[:b]
    qa = q[rows_of][:, None] - mine[b:]
    theirs = absent[:, rows_of].T @ given.yy  # (b, 2 columns)
    columns = x.shape[1]
    sb = s[None, :] - theirs[:, :columns]
    qb = q[None, :] - theirs[:, columns:]
    n = (given.ones[:, rows_of].T @ given.ones).astype(np.float64)  # counts of ones: exact
    sab = xi.T @ x
    with np.errstate(invalid="ignore", divide="ignore"):
        va = qa - sa * sa / n
        vb = qb - sb * sb / n
        corr = (sab - sa * sb / n) / np.sqrt(va * vb)
    # Each pair once: a holed column meets a column present everywhere, or a later holed one.
    counted = (np.arange(columns)[None, :] > rows_of[:, None]) | ~given.holed[None, :]
    enough = (n >= need) & counted
    # Every column varies (q > 0): one constant on the overlap has qa about 0, and is done again.
    again = (n == 2) | (va <= CONDITION * qa) | (vb <= CONDITION * qb)
    again |= qa * 2.0**PART_BITS < q[rows_of][:, None]
    again |= qb * 2.0**PART_BITS < q[None, :]
    again &= enough
    for i in np.flatnonzero(again.any(axis=1)):
        js = np.flatnonzero(again[i])
        corr[i, js] = overlap_corr(given.values[:, rows_of[i]], given.values[:, js])
    corr[~enough] = np.nan
    np.clip(corr, -1.0, 1.0, out=corr)
    defined = ~np.isnan(corr)
    ranked = int(np.count_nonzero(defined))
    total = float(corr[defined].sum())
    if not k:
        return ranked, total, None
    ii, jj, cc = _candidates(corr, k, absolute)
    first, second = rows_of[ii], jj
    return ranked, total, (np.minimum(first, second), np.maximum(first, second), cc, n[ii, jj].astype(np.int64))


def _candidates(corr: np.ndarray, k: int, absolute: bool):
    """The entries of ``corr`` (NaN: not a pair) that can be among the top ``k``,
    everything tied with the ``k``-th best among them: ``(rows, columns, corr)``."""
    flat = corr.ravel()
    pick = candidates(flat, k, absolute)
    ii, jj = np.divmod(pick, corr.shape[1])
    return ii, jj, flat[pick]
