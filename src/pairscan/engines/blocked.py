"""The blocked engine: exact pairwise-complete Pearson correlation from matrix products.

For two column blocks I and J of the panel, with ``M`` the presence mask (1.0 or 0.0)
and ``X`` the values centred on each column's mean (0 where missing), everything the
correlation of a pair needs over the timestamps both have is a matrix product:

    n   = M_I' M_J       overlap counts
    sa  = X_I' M_J       sum of a over the overlap      qa = (X_I*X_I)' M_J
    sb  = M_I' X_J       sum of b over the overlap      qb = M_I' (X_J*X_J)
    sab = X_I' X_J       cross products

    corr = (sab - sa sb / n) / sqrt((qa - sa^2 / n) (qb - sb^2 / n))

Centring first keeps this exact for prices far from zero. Where a block pair has no
missing values, it is one product ``X_I' X_J`` (and the column sums ``sa``, ``sb``,
which centring on a rounded mean leaves a little off zero).

Real histories are mostly whole: a ticker lists, trades every day but a few, and
delists. Then each column of a mask is its lifetime (an interval of rows) minus a few
holes, ``M_J = L_J - H_J``, and every product with a mask is cheap: ``Y' L_J`` is a
difference of prefix sums of ``Y`` at the lifetimes' ends (summed in extended
precision), ``Y' H_J`` a sparse product. Only ``X_I' X_J`` remains a dense product. Each pair of blocks is
one task that returns its own top-k (or its whole block for ``--matrix``); the caller
merges them.

Numerical rules (the same as the naive engine's, and pandas' ``DataFrame.corr``'s
wherever pandas' own answer is not round-off):

- Missing means NaN or any non-finite value (``inf``, ``-inf``): it leaves the pair's
  overlap, as ``DataFrame.corr`` masks it.
- A series is constant on an overlap only when all its values there are equal: its
  correlations are NaN. Any other series, however near constant (a halted stock with
  float noise, a price of 1e8 moving in its last digits), gets the correlation of its
  values as they are: two distinct points give exactly +1 or -1 (pairs of two points
  are always computed from their overlap).
- ``qa - sa^2 / n`` loses about ``log2(qa / va)`` bits to cancellation when a pair's
  overlap sits far from the column mean, relative to its spread (a short overlap of a
  long trending history, a near-constant stretch). Pairs that would lose more than
  ``1 / CONDITION`` of their precision are computed again from their own overlap:
  shifted by the overlap's first value (exact for values within a factor of two of it),
  then centred on the overlap mean with the correction term. The others are within
  about ``rows * eps * qa / va`` of the exact result. Where the mask products come
  from prefix sums, their error scales with the column's whole sum of squares ``Q``
  instead of the overlap's ``qa``, at 2**-11 of double's round-off: pairs whose
  ``qa`` is below ``Q / 2**11`` are computed again too.
- No finite input overflows: a column whose magnitude could overflow the sums of
  squares (or underflow them) is first scaled by a power of two, which is exact and
  leaves every correlation unchanged.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse
from threadpoolctl import threadpool_limits

from . import Pairs, top_k

# A pair whose variance on the overlap is below this fraction of its sum of squares
# about the column mean has lost more than ~1e-13 of its precision to cancellation in
# ``qa - sa^2 / n`` (round-off ~ rows * eps * qa): it is computed again from its overlap.
CONDITION = 2.0**-10
# Columns whose largest magnitude is outside [2**-LIMIT, 2**LIMIT] are scaled by a power
# of two first, so that no sum of squares of any finite input overflows or underflows.
LIMIT = 400
BYTES = 8
# Mask products go through lifetimes and holes when at most this fraction of the
# lifetimes' cells are holes (sparse products cost a few times a dense one per cell),
# and only where long double carries more bits than double (x86: 64 against 53).
HOLES = 0.1
EXTENDED = np.finfo(np.longdouble).nmant >= 63
PREFIX_BITS = 11  # long double's extra bits: pairs with qa < Q / 2**11 are done again
PREFIX_CHUNK = 256  # columns per prefix sum: bounded extra memory


def block_size_for(rows: int, columns: int, memory_limit: int, concurrent: int = 1, reads_store: bool = False) -> int:
    """The largest block width whose working set fits ``memory_limit`` bytes.

    A task holds, for each of its two blocks, the presence mask in three types and
    the centred values, and for a moment their squares: 8 numbers per cell of a
    block pair at the peak (56 bytes measured with tracemalloc), plus about ten
    ``b x b`` result matrices; ``concurrent`` tasks run at once. A task that reads
    the store itself also holds the blocks it read and, for a moment, the series
    they came from: 11 numbers per cell.
    """
    budget = memory_limit / max(1, concurrent) / BYTES
    per_cell = 11 if reads_store else 8
    # per_cell rows b + 10 b^2 <= budget
    b = (-per_cell * rows + math.sqrt((per_cell * rows) ** 2 + 40 * budget)) / 20
    return int(max(1, min(columns, b)))


def block_specs(columns: int, block: int) -> list[tuple[int, int, int, int]]:
    """Every pair of column blocks ``(i0, i1, j0, j1)`` with ``i0 <= j0``."""
    edges = list(range(0, columns, block)) + [columns]
    spans = list(zip(edges[:-1], edges[1:]))
    return [(i0, i1, j0, j1) for k, (i0, i1) in enumerate(spans) for (j0, j1) in spans[k:]]


@dataclass
class Prepared:
    """One block ready for the products."""

    mask: np.ndarray  # float64 0/1, (rows, b)
    x: np.ndarray  # centred values, 0 where missing
    full: bool  # no missing values at all
    count_mask: np.ndarray | None = None  # float32 0/1: counts in single precision are exact
    values: np.ndarray | None = None  # what x was made from (values or ranks), for pairs done again
    life: "Lifetimes | None" = None  # the mask as lifetimes minus holes, where that is cheaper


@dataclass
class Lifetimes:
    """A mask as intervals of rows minus a few holes: ``M[:, j] = 1`` on rows
    ``start[j]:stop[j]`` except ``holes[j]`` (a sparse ``b x rows`` matrix of ones)."""

    start: np.ndarray
    stop: np.ndarray
    holes: scipy.sparse.csr_matrix

    @classmethod
    def of(cls, present: np.ndarray) -> "Lifetimes | None":
        """The lifetimes of a presence mask (rows x b), or None where holes are too many."""
        rows, b = present.shape
        if not EXTENDED or rows == 0 or b == 0:
            return None
        by_column = np.ascontiguousarray(present.T)  # scans along each column's rows
        some = by_column.any(axis=1)
        start = np.where(some, by_column.argmax(axis=1), 0)
        stop = np.where(some, rows - by_column[:, ::-1].argmax(axis=1), 0)
        cells = int((stop - start).sum())
        count = cells - int(np.count_nonzero(by_column))  # holes: absent rows inside a lifetime
        if count > HOLES * cells:
            return None
        if count:
            row = np.arange(rows)
            cols, at = np.nonzero(~by_column & (row >= start[:, None]) & (row < stop[:, None]))
        else:
            cols = at = np.empty(0, np.int64)
        holes = scipy.sparse.csr_matrix((np.ones(len(at)), (cols, at)), shape=(b, rows))
        return cls(start, stop, holes)

    def __post_init__(self):
        # The rows where some lifetime starts or stops cut the rows into segments; a
        # lifetime's sum is the sum of its segments' sums, a difference of two prefix
        # sums over the segments (in extended precision).
        rows = self.holes.shape[1]
        self.edges = np.unique(np.concatenate([self.start, self.stop, [0]]))
        self.edges = self.edges[self.edges < rows]
        self.first = np.searchsorted(self.edges, self.start)
        self.last = np.searchsorted(self.edges, self.stop)
        # Each row's segment, as a sparse sum: faster than np.add.reduceat on rows.
        segment = np.searchsorted(self.edges, np.arange(rows), side="right") - 1
        self.segments = scipy.sparse.csr_matrix((np.ones(rows), (segment, np.arange(rows))),
                                                shape=(len(self.edges), rows))

    def times(self, y: np.ndarray) -> np.ndarray:
        """``y' M`` for ``y`` of shape (rows, a), best in C order: shape (a, b)."""
        out = np.empty((y.shape[1], len(self.start)))
        segments = self.segments @ y
        for c0 in range(0, y.shape[1], PREFIX_CHUNK):
            part = segments[:, c0 : c0 + PREFIX_CHUNK]
            prefix = np.zeros((len(self.edges) + 1, part.shape[1]), np.longdouble)
            np.cumsum(part, axis=0, dtype=np.longdouble, out=prefix[1:])
            out[c0 : c0 + PREFIX_CHUNK] = (prefix[self.last] - prefix[self.first]).T
        if self.holes.nnz:
            out -= (self.holes @ y).T
        return out


def prepare(values: np.ndarray, rank: bool = False) -> Prepared:
    """Mask and centre a block of columns (rows x b, NaN or any non-finite value = missing)."""
    # Row-major from here on: the sums over segments of rows and the sparse products
    # of the mask products read rows; the dense products take either order.
    original, values = values, _row_major(values)
    present = np.isfinite(values)
    full = bool(present.all())
    mask = present.astype(np.float64)
    # A column whose values are all equal is constant on every overlap: its centred
    # values must be exactly 0, not the round-off of subtracting an inexact mean.
    # (A column holding an infinity is not caught here; the pairs done again are.)
    constant = np.fmin.reduce(values, axis=0, initial=np.inf) == np.fmax.reduce(values, axis=0, initial=-np.inf)
    x = _ranks(np.where(present, values, np.nan)) if rank else np.where(present, values, 0.0)
    if not rank:
        _scale_extremes(x)
    counts = mask.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = x.sum(axis=0) / counts
    x -= np.where(constant | (counts == 0), 0.0, means)
    if not full:
        x *= mask  # back to exactly 0 where missing
    x[:, constant] = 0.0
    # Lifetimes scan each column: from the block as given (a column-major panel's
    # columns are contiguous), so that no mask needs transposing.
    life = None if full else Lifetimes.of(np.isfinite(original))
    # Overlap counts are sums of ones: exact in float32 below 2**24 rows, at twice the speed.
    count_mask = mask.astype(np.float32) if not full and life is None and len(present) < 2**24 else None
    # Pairs done again start from the values (ranks: the centred ranks, exact halves).
    base = original if not rank else x if full else np.where(present, x, np.nan)
    return Prepared(mask, x, full, count_mask, base, life)


def _row_major(values: np.ndarray, width: int = 32) -> np.ndarray:
    """``values`` in C order; a column-major block is copied a few columns at a time,
    which keeps both sides of the transposition in cache (several times faster)."""
    if values.flags.c_contiguous:
        return values
    out = np.empty(values.shape)
    for c0 in range(0, values.shape[1], width):
        out[:, c0 : c0 + width] = values[:, c0 : c0 + width]
    return out


def _scale_extremes(x: np.ndarray) -> None:
    """Scale, in place, each column whose magnitude is extreme into [0.5, 1) by a power of two."""
    if x.size == 0:
        return
    peak = np.maximum(x.max(axis=0), -x.min(axis=0))
    extreme = (peak > 2.0**LIMIT) | ((peak > 0) & (peak < 2.0**-LIMIT))
    if extreme.any():
        _, exponent = np.frexp(peak[extreme])
        x[:, extreme] = np.ldexp(x[:, extreme], -exponent)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks of each column's present values (as scipy's spearmanr ranks)."""
    frame = pd.DataFrame(values)
    return np.array(frame.rank(method="average").fillna(0.0).to_numpy(), order="C")  # a writable copy


def correlate_block(bi: Prepared, bj: Prepared | None, min_periods: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Correlations and overlap counts of every column of ``bi`` with every column of ``bj``.

    ``bj=None`` means the block with itself (the products are then symmetric).
    """
    same = bj is None
    bj = bi if same else bj
    rows = bi.x.shape[0]
    coarse = False
    if bi.full and bj.full:
        sab = bi.x.T @ bi.x if same else bi.x.T @ bj.x
        qa = np.einsum("ij,ij->j", bi.x, bi.x)
        qb = qa if same else np.einsum("ij,ij->j", bj.x, bj.x)
        # Centring on a rounded mean leaves the sums a little off zero: correct for them,
        # or a near-constant series gets a made-up correlation.
        sa = bi.x.sum(axis=0)
        sb = sa if same else bj.x.sum(axis=0)
        n = np.full(sab.shape, rows, dtype=np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            va = (qa - sa * sa / rows)[:, None]
            vb = (qb - sb * sb / rows)[None, :]
            corr = (sab - np.outer(sa, sb) / rows) / np.sqrt(va * vb)
        qa, qb = qa[:, None], qb[None, :]
    elif bi.life is not None and bj.life is not None:
        # Every product with a mask through lifetimes and holes; one dense product.
        n_f = bj.life.times(bi.mask)
        sa = bj.life.times(bi.x)
        squares = bi.x * bi.x
        qa = bj.life.times(squares)
        whole_a = squares.sum(axis=0)
        if same:
            sb, qb, whole_b = sa.T, qa.T, whole_a
            del squares
            sab = bi.x.T @ bi.x
        else:
            sb = bi.life.times(bj.x).T
            del squares
            squares = bj.x * bj.x
            qb = bi.life.times(squares).T
            whole_b = squares.sum(axis=0)
            del squares
            sab = bi.x.T @ bj.x
        n = np.rint(n_f).astype(np.int64)
        corr, va, vb = _pearson(n_f, sa, sb, qa, qb, sab)
        # Prefix sums err by a fraction of the column's whole sum of squares.
        coarse = (qa * 2.0**PREFIX_BITS < whole_a[:, None]) | (qb * 2.0**PREFIX_BITS < whole_b[None, :])
    else:
        # Four products on the diagonal (two of them symmetric, so half the work),
        # six off it; no stacking, which would copy the blocks.
        x2_i = bi.x * bi.x
        mi = bi.mask if bi.count_mask is None or bj.count_mask is None else bi.count_mask
        mj = bj.mask if mi is bi.mask else bj.count_mask
        n_f = (mi.T @ mi if same else mi.T @ mj).astype(np.float64)
        sa = bi.x.T @ bj.mask
        qa = x2_i.T @ bj.mask
        if same:
            sb, qb = sa.T, qa.T
            sab = bi.x.T @ bi.x
        else:
            sb = bi.mask.T @ bj.x
            qb = bi.mask.T @ (bj.x * bj.x)
            sab = bi.x.T @ bj.x
        n = np.rint(n_f).astype(np.int64)
        corr, va, vb = _pearson(n_f, sa, sb, qa, qb, sab)
    enough = n >= max(2, min_periods or 0)
    constant = (qa == 0) | (qb == 0)  # every value on the overlap is the column's (constant) one
    # Two points always: |r| is exactly 1 there, which the products can round.
    again = enough & ~constant & ((va <= CONDITION * qa) | (vb <= CONDITION * qb) | (n == 2) | coarse)
    if same:
        again = np.triu(again, 1)  # the lower triangle is never read
    if again.any():
        _redo(corr, again, bi, bj)
    corr[constant] = np.nan
    corr[~enough] = np.nan
    np.clip(corr, -1.0, 1.0, out=corr)
    return corr, n


def _redo(corr: np.ndarray, again: np.ndarray, bi: Prepared, bj: Prepared) -> None:
    """Compute the flagged pairs ``corr[again]`` again, each from its own overlap."""
    for i in np.flatnonzero(again.any(axis=1)):
        js = np.flatnonzero(again[i])
        corr[i, js] = overlap_corr(bi.values[:, i], bj.values[:, js])


def overlap_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``a`` (rows) with each column of ``b`` (rows x k) on their overlaps.

    The careful way, for pairs the products cannot do exactly: both scaled by a power
    of two (no overflow), shifted by their first value on the overlap (exact for values
    near it, so near-constant series keep every bit of their spread), then the corrected
    two-pass sums. NaN where either is constant on the overlap or it has fewer than two
    points; non-finite values are missing.
    """
    b = b.reshape(len(b), -1)
    both = np.isfinite(a)[:, None] & np.isfinite(b)
    n = both.sum(axis=0)
    first = both.argmax(axis=0)
    k = np.arange(b.shape[1])
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        da = np.where(both, _power_of_two(a[:, None]) - _power_of_two(a[first][None, :], a[:, None]), 0.0)
        db = np.where(both, _power_of_two(b) - _power_of_two(b[first, k][None, :], b), 0.0)
        varies = (da != 0).any(axis=0) & (db != 0).any(axis=0)
        da = np.where(both, da - da.sum(axis=0) / n, 0.0)
        db = np.where(both, db - db.sum(axis=0) / n, 0.0)
        sa, sb = da.sum(axis=0), db.sum(axis=0)
        va = np.einsum("ij,ij->j", da, da) - sa * sa / n
        vb = np.einsum("ij,ij->j", db, db) - sb * sb / n
        cov = np.einsum("ij,ij->j", da, db) - sa * sb / n
        r = cov / np.sqrt(va * vb)
    # Two distinct points lie on a line: exactly +1 or -1, the sign of their slope.
    two = n == 2
    r[two] = np.sign(cov[two])
    r[~varies | (n < 2) | (va <= 0) | (vb <= 0)] = np.nan
    return np.clip(r, -1.0, 1.0)


def _power_of_two(values: np.ndarray, of: np.ndarray | None = None) -> np.ndarray:
    """``values`` times the power of two that brings the largest finite |value| of each
    column of ``of`` (default: ``values``) into [0.5, 1); exact."""
    of = values if of is None else of
    peak = np.max(np.abs(np.where(np.isfinite(of), of, 0.0)), axis=0)
    _, exponent = np.frexp(peak)
    return np.ldexp(values, -exponent)


def _pearson(n, sa, sb, qa, qb, sab):
    """Correlations from the overlap's count, sums, sums of squares and cross products,
    and the two variances (times n) they divide by."""
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sab - sa * sb / n
        va = qa - sa * sa / n
        vb = qb - sb * sb / n
        return cov / np.sqrt(va * vb), va, vb


def block_pairs(
    corr: np.ndarray, n: np.ndarray, i0: int, j0: int, same: bool, k: int | None, absolute: bool
) -> Pairs:
    """The block's pairs (upper triangle when ``same``), cut to its top ``k`` if given."""
    ii, jj = np.triu_indices(corr.shape[0], 1) if same else np.indices(corr.shape).reshape(2, -1)
    pairs = Pairs(ii.astype(np.int64) + i0, jj.astype(np.int64) + j0, corr[ii, jj], n[ii, jj]).tallied()
    return pairs if k is None else top_k(pairs, k, absolute)


def block_task(
    source, spec, method: str, min_periods: int | None, k: int | None, absolute: bool, one_blas_thread: bool = False
) -> Pairs:
    """Task: the pairs of one block pair ``spec = (i0, i1, j0, j1)``.

    ``source.block(start, stop)`` gives the panel's columns ``start:stop``: a slice of
    the panel in memory, or read from the store by the worker itself.
    ``one_blas_thread`` keeps BLAS to one thread in this task: the executor already
    runs a task per core, and BLAS threads competing for the same cores spin and
    slow everything down many times over.
    """
    if one_blas_thread:
        with blas_threads(1):
            return block_task(source, spec, method, min_periods, k, absolute)
    i0, i1, j0, j1 = spec
    rank = method == "spearman"
    same = (i0, i1) == (j0, j1)
    vi = source.block(i0, i1)
    vj = None if same else source.block(j0, j1)
    vi, vj = _drop_empty_rows(vi, vj)
    bi = prepare(vi, rank)
    bj = None if same else prepare(vj, rank)
    corr, n = correlate_block(bi, bj, min_periods)
    pairs = block_pairs(corr, n, i0, j0, same, k, absolute)
    if same and hasattr(source, "nonfinite"):
        # A source that reads the store itself counts the non-finite values it made
        # missing; each block is the diagonal of exactly one task, which reports them.
        pairs.nonfinite = source.nonfinite(i0, i1)
    return pairs


def blas_threads(n: int | None):
    """A context in which BLAS uses at most ``n`` threads (no limit for None)."""
    # threadpoolctl inspects every loaded library each time: skip it when there is no limit.
    return contextlib.nullcontext() if n is None else threadpool_limits(limits=n, user_api="blas")


def _drop_empty_rows(vi: np.ndarray, vj: np.ndarray | None):
    """Drop the timestamps no column of the two blocks has, when every other timestamp
    has all of them: the pair of blocks then takes the one-product path."""
    some = every = None
    for values in (vi,) if vj is None else (vi, vj):
        present = np.isfinite(values)
        any_, all_ = present.any(axis=1), present.all(axis=1)
        some = any_ if some is None else some | any_
        every = all_ if every is None else every & all_
    if every.all() or not np.array_equal(some, every):
        return vi, vj
    return vi[every], (None if vj is None else vj[every])


def full_overlap(values: np.ndarray) -> bool:
    """True when every timestamp has either every ticker's value or none."""
    present = np.isfinite(values)
    per_row = present.sum(axis=1)
    return bool(np.all((per_row == 0) | (per_row == values.shape[1])))
