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
precision), ``Y' H_J`` a sparse product, and the counts ``M_I' M_J`` are exact
integers from the intervals' overlaps and the holes alone. Only ``X_I' X_J`` remains a
dense product. This module is the maths alone, on arrays it is given; the tasks that
read each pair of blocks and reduce its matrices (to a top-k, or every pair for
``--matrix``) are :mod:`pairscan.engines.blocked.tasks`.

Every one of these sums is a sum over rows: with the columns centred on their means
over all rows, the sums over parts of the rows add up to the sums over all of them.
A block pair alone on the machine (the whole panel in one block) is split that way
across threads, each preparing and summing its own rows (:func:`correlate_split`).

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

import concurrent.futures
import contextlib
import functools
import itertools
import math
import operator
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse
from threadpoolctl import ThreadpoolController

from .. import Pairs, tally, top_k

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

    x: np.ndarray  # centred values, 0 where missing: (rows, b), rows contiguous
    full: bool  # no missing values at all
    present: np.ndarray  # bool: where the block has a value
    mask: np.ndarray | None = None  # float64 0/1 presence, where the products need it (see masks)
    count_mask: np.ndarray | None = None  # float32 0/1: counts in single precision are exact
    values: np.ndarray | None = None  # what x was made from (values or ranks), for pairs done again
    life: Lifetimes | None = None  # the mask as lifetimes minus holes, where that is cheaper
    xx: np.ndarray | None = None  # with lifetimes: [x | x*x] side by side, x a view of its left half
    whole: np.ndarray | None = None  # each column's sum of x*x over the rows prepared


@dataclass
class Lifetimes:
    """A mask as intervals of rows minus a few holes: ``M[:, j] = 1`` on rows
    ``start[j]:stop[j]`` except ``holes[j]`` (a sparse ``b x rows`` matrix of ones,
    stored by rows of the panel, so that a product with it reads each row once)."""

    start: np.ndarray
    stop: np.ndarray
    holes: scipy.sparse.csc_matrix

    @classmethod
    def of(cls, present: np.ndarray) -> Lifetimes | None:
        """The lifetimes of a presence mask (rows x b, best column-major), or None where
        holes are too many."""
        rows, b = present.shape
        if not EXTENDED or rows == 0 or b == 0:
            return None
        by_column = np.ascontiguousarray(present.T)  # scans along each column's rows (no copy: column-major)
        some = by_column.any(axis=1)
        start = np.where(some, by_column.argmax(axis=1), 0)
        stop = np.where(some, rows - by_column[:, ::-1].argmax(axis=1), 0)
        inside = stop - start
        missing = inside - np.count_nonzero(by_column, axis=1)  # holes: absent rows inside a lifetime
        if missing.sum() > HOLES * inside.sum():
            return None
        cols = np.repeat(np.arange(b), missing)
        at = np.empty(int(missing.sum()), np.int64)
        done = 0
        for j in np.flatnonzero(missing):
            found = np.flatnonzero(~by_column[j, start[j] : stop[j]])
            at[done : done + len(found)] = found + start[j]
            done += len(found)
        holes = scipy.sparse.csc_matrix((np.ones(len(at)), (cols, at)), shape=(b, rows))
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

    def overlaps(self, other: Lifetimes) -> np.ndarray:
        """``M' M_other``, the overlap counts, exactly, from the lifetimes and holes alone:
        ``(L - H)' (L_o - H_o) = L' L_o - L' H_o - H' L_o + H' H_o``."""
        both = (np.minimum(self.stop[:, None], other.stop[None, :])
                - np.maximum(self.start[:, None], other.start[None, :]))
        np.maximum(both, 0, out=both)
        both -= self._holes_inside(other)
        both -= other._holes_inside(self).T
        if self.holes.nnz and other.holes.nnz:
            both += np.rint((self.holes @ other.holes.T).toarray()).astype(np.int64)
        return both

    def _holes_inside(self, other: Lifetimes) -> np.ndarray:
        """``L' H_other``: how many of each ``other`` column's holes lie in each lifetime here."""
        if not other.holes.nnz:
            return np.zeros((len(self.start), len(other.start)), np.int64)
        per_segment = np.rint((self.segments @ other.holes.T).toarray()).astype(np.int64)
        prefix = np.zeros((len(self.edges) + 1, per_segment.shape[1]), np.int64)
        np.cumsum(per_segment, axis=0, out=prefix[1:])
        return prefix[self.last] - prefix[self.first]


CHUNK = 32  # columns at a time: a chunk's temporaries stay in cache
SPLIT_ROWS = 2048  # a block pair is split across threads only with at least this many rows a part


@dataclass
class Centring:
    """What :func:`prepare` does to each column: scale by ``2**-exponent`` (0 for most),
    then subtract ``shift`` (the scaled mean; 0 for a constant or empty column)."""

    exponent: np.ndarray
    shift: np.ndarray
    constant: np.ndarray  # every present value equal: centred exactly to 0

    @classmethod
    def of(cls, values: np.ndarray, present: np.ndarray, rank: bool = False) -> Centring:
        """The centring of a block's columns (rows x b) from all their rows; ranks are never scaled."""
        b = values.shape[1]
        parts = []
        for c0 in range(0, b, CHUNK):
            keep = present[:, c0 : c0 + CHUNK]
            parts.append(cls.of_chunk(np.where(keep, values[:, c0 : c0 + CHUNK], 0.0), keep, rank))
        return cls.concat(parts) if parts else cls(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool))

    @classmethod
    def of_chunk(cls, part: np.ndarray, keep: np.ndarray, rank: bool) -> Centring:
        """The centring of a few columns ``part`` (0 where not ``keep``)."""
        # A column whose values are all equal is constant on every overlap: its centred
        # values must be exactly 0, not the round-off of subtracting an inexact mean.
        # (A column holding an infinity is not caught here; the pairs done again are.)
        low = np.min(part, axis=0, where=keep, initial=np.inf)
        high = np.max(part, axis=0, where=keep, initial=-np.inf)
        constant = low == high
        exponent = np.zeros(part.shape[1], np.int64) if rank else _extreme_exponent(np.maximum(high, -low))
        counts = np.count_nonzero(keep, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = _scaled(part, exponent).sum(axis=0) / counts
        return cls(exponent, np.where(constant | (counts == 0), 0.0, means), constant)

    def columns(self, c0: int, c1: int) -> Centring:
        return Centring(self.exponent[c0:c1], self.shift[c0:c1], self.constant[c0:c1])

    @classmethod
    def concat(cls, parts: list[Centring]) -> Centring:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("exponent", "shift", "constant")))


def prepare(values: np.ndarray, rank: bool = False, centring: Centring | None = None,
            present: np.ndarray | None = None) -> Prepared:
    """Mask and centre a block of columns (rows x b, NaN or any non-finite value = missing).

    ``centring``: how to centre each column, when ``values`` are some of the rows it
    was found on (:meth:`Centring.of`); by default found from ``values``. ``present``:
    ``np.isfinite(values)``, where the caller has it already. Each column
    is masked, scaled, centred and squared a few columns at a time, while they are in
    cache, and written into a row-major array: the sums over segments of rows and the
    sparse products of the mask products read rows; the dense products take either order.
    """
    rows, b = values.shape
    present = np.isfinite(values) if present is None else present
    full = bool(present.all())
    # Lifetimes scan each column: from the mask as given (a column-major panel's
    # columns are contiguous), so that no mask needs transposing.
    life = None if full else Lifetimes.of(present)
    source = _ranks(np.where(present, values, np.nan)) if rank else values
    xx = np.empty((rows, 2 * b if life is not None else b))
    whole = np.empty(b)
    for c0 in range(0, b, CHUNK):
        c1 = min(b, c0 + CHUNK)
        keep = present[:, c0:c1]
        part = source[:, c0:c1] if full else np.where(keep, source[:, c0:c1], 0.0)
        these = Centring.of_chunk(part, keep, rank) if centring is None else centring.columns(c0, c1)
        centred = _scaled(part, these.exponent) - these.shift
        if not full:
            centred *= keep  # back to exactly 0 where missing
        centred[:, these.constant] = 0.0
        xx[:, c0:c1] = centred
        whole[c0:c1] = np.einsum("ij,ij->j", centred, centred)
    x = xx[:, :b]
    if life is not None:
        np.multiply(x, x, out=xx[:, b:])  # row by row: no second transposition
    # Pairs done again start from the values (ranks: the centred ranks, exact halves).
    base = values if not rank else x if full else np.where(present, x, np.nan)
    block = Prepared(x, full, present, values=base, life=life, xx=xx if life is not None else None, whole=whole)
    return block if full or life is not None else masks(block)


def masks(block: Prepared) -> Prepared:
    """``block`` with its presence masks made, for the dense mask products (a block
    prepared for lifetimes has none until it meets a block without)."""
    if block.mask is None:
        block.mask = block.present.astype(np.float64)
        # Overlap counts are sums of ones: exact in float32 below 2**24 rows, at twice the speed.
        block.count_mask = block.present.astype(np.float32) if len(block.present) < 2**24 else None
    return block


def _extreme_exponent(peak: np.ndarray) -> np.ndarray:
    """The power of two that brings each extreme magnitude into [0.5, 1); 0 for the others
    (no sum of squares of a finite input may overflow or underflow)."""
    extreme = (peak > 2.0**LIMIT) | ((peak > 0) & (peak < 2.0**-LIMIT))
    return np.where(extreme, np.frexp(np.where(extreme, peak, 1.0))[1], 0)


def _scaled(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """``x`` (unchanged), or a copy with the columns of a nonzero ``exponent`` scaled by ``2**-exponent``."""
    extreme = exponent != 0
    if extreme.any():
        x = x.copy()
        x[:, extreme] = np.ldexp(x[:, extreme], -exponent[extreme])
    return x


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks of each column's present values (as scipy's spearmanr ranks)."""
    frame = pd.DataFrame(values)
    return np.array(frame.rank(method="average").fillna(0.0).to_numpy(), order="C")  # a writable copy


@dataclass
class Sums:
    """Everything the correlations of a block pair need, summed over some rows: the
    overlap counts ``n``, sums ``sa``/``sb``, sums of squares ``qa``/``qb`` and cross
    products ``sab`` over each pair's overlap (arrays that broadcast to ``b_i x b_j``),
    each column's sum of squares over all the rows (``whole_a``, ``whole_b``), and
    whether any came from prefix sums. Sums over parts of the rows add up."""

    n: np.ndarray
    sa: np.ndarray
    sb: np.ndarray
    qa: np.ndarray
    qb: np.ndarray
    sab: np.ndarray
    whole_a: np.ndarray
    whole_b: np.ndarray
    prefix: bool = False

    def __add__(self, other: Sums) -> Sums:
        fields = ("n", "sa", "sb", "qa", "qb", "sab", "whole_a", "whole_b")
        return Sums(*(getattr(self, f) + getattr(other, f) for f in fields), self.prefix or other.prefix)


def partial_sums(bi: Prepared, bj: Prepared | None = None) -> Sums:
    """The :class:`Sums` of two prepared blocks (``bj=None``: the block with itself, whose
    products are symmetric) over the rows they were prepared on."""
    same = bj is None
    bj = bi if same else bj
    if bi.full and bj.full:
        # One product; the sums over the overlap are the columns' sums. Centring on a
        # rounded mean leaves them a little off zero: they are kept, or a near-constant
        # series would get a made-up correlation.
        rows = bi.x.shape[0]
        sab = bi.x.T @ bi.x if same else bi.x.T @ bj.x
        sa = bi.x.sum(axis=0)[:, None]
        sb = sa.T if same else bj.x.sum(axis=0)[None, :]
        return Sums(np.int64(rows), sa, sb, bi.whole[:, None], bj.whole[None, :], sab, bi.whole, bj.whole)
    if bi.life is not None and bj.life is not None:
        # Every product with a mask through lifetimes and holes, the counts exactly;
        # one dense product.
        n = bi.life.overlaps(bj.life)
        b = bi.x.shape[1]
        sums = bj.life.times(bi.xx)  # x' M_J and (x*x)' M_J, stacked
        sa, qa = sums[:b], sums[b:]
        if same:
            sb, qb = sa.T, qa.T
            sab = bi.x.T @ bi.x
        else:
            sums = bi.life.times(bj.xx)
            sb, qb = sums[: bj.x.shape[1]].T, sums[bj.x.shape[1] :].T
            sab = bi.x.T @ bj.x
        return Sums(n, sa, sb, qa, qb, sab, bi.whole, bj.whole, prefix=True)
    # Four products on the diagonal (two of them symmetric, so half the work),
    # six off it; no stacking, which would copy the blocks.
    bi, bj = masks(bi), masks(bj)
    x2_i = bi.x * bi.x
    mi = bi.mask if bi.count_mask is None or bj.count_mask is None else bi.count_mask
    mj = bj.mask if mi is bi.mask else bj.count_mask
    n = np.rint(mi.T @ mi if same else mi.T @ mj).astype(np.int64)
    sa = bi.x.T @ bj.mask
    qa = x2_i.T @ bj.mask
    if same:
        sb, qb = sa.T, qa.T
        sab = bi.x.T @ bi.x
    else:
        sb = bi.mask.T @ bj.x
        qb = bi.mask.T @ (bj.x * bj.x)
        sab = bi.x.T @ bj.x
    return Sums(n, sa, sb, qa, qb, sab, bi.whole, bj.whole)


def correlations(sums: Sums, values_i: np.ndarray, values_j: np.ndarray, min_periods: int | None,
                 same: bool) -> tuple[np.ndarray, np.ndarray]:
    """Correlations and overlap counts from a block pair's :class:`Sums`; pairs the sums
    cannot give exactly are computed again from ``values_i`` and ``values_j`` (the
    columns the sums came from). ``same``: the block with itself (upper triangle read)."""
    corr, va, vb = pearson_of_sums(sums.n, sums.sa, sums.sb, sums.qa, sums.qb, sums.sab)
    n = np.broadcast_to(sums.n, corr.shape).astype(np.int64)
    qa, qb = sums.qa, sums.qb
    enough = n >= max(2, min_periods or 0)
    constant = (qa == 0) | (qb == 0)  # every value on the overlap is the column's (constant) one
    # Two points always: |r| is exactly 1 there, which the products can round.
    again = n == 2
    again |= va <= CONDITION * qa
    again |= vb <= CONDITION * qb
    if sums.prefix:
        # Prefix sums err by a fraction of the column's whole sum of squares.
        again |= qa * 2.0**PREFIX_BITS < sums.whole_a[:, None]
        again |= qb * 2.0**PREFIX_BITS < sums.whole_b[None, :]
    again &= enough
    again &= ~constant
    if same:
        again = np.triu(again, 1)  # the lower triangle is never read
    if again.any():
        _redo(corr, again, values_i, values_j)
    corr[np.broadcast_to(constant, corr.shape)] = np.nan
    corr[~enough] = np.nan
    np.clip(corr, -1.0, 1.0, out=corr)
    return corr, n


def correlate_block(bi: Prepared, bj: Prepared | None, min_periods: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Correlations and overlap counts of every column of ``bi`` with every column of ``bj``.

    ``bj=None`` means the block with itself (the products are then symmetric).
    """
    same = bj is None
    return correlations(partial_sums(bi, bj), bi.values, (bi if same else bj).values, min_periods, same)


NARROW_CHUNK = 16  # panel columns at a time in the named products: a chunk's arrays stay in cache
# A panel column's sum of squares about its mean outside [2**-WHOLE, 2**WHOLE] (its largest
# magnitude near LIMIT's bounds, or not finite) takes the scaled path of prepare instead.
WHOLE = 2 * LIMIT - 20


def correlate_named(named: np.ndarray, values: np.ndarray, min_periods: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Correlations and overlap counts of a few named columns (rows x k) with every column
    of ``values`` (rows x b), Pearson: :func:`correlate_blocks` of the two blocks, without
    preparing the wide one.

    Only the rows of the named columns' span matter (elsewhere their mask is 0). Every
    column, named or not, is centred on its mean over that span (a panel column a few
    columns at a time, while they are in cache), and the products the sums need are
    matrix-vector products with the named side's few vectors ``y`` (centred values),
    ``y*y`` and ``m`` (mask)::

        n = P' m     sa = P' y     qa = P' (y*y)          (P: the panel's mask)
        sb = X' m    qb = (X*X)' m    sab = X' y          (X: its centred values)

    These are :class:`Sums` of the same maths as :func:`partial_sums` (dense products, a
    centring of each column on rows it has), so :func:`correlations` applies unchanged:
    the same error bound decides which pairs are computed again from their overlap.
    Columns of extreme magnitude (their squares could overflow or underflow) go through
    :func:`correlate_blocks`, whose :func:`prepare` scales them: the panel's alone, or
    the whole block when a named column is one.
    """
    present = np.isfinite(named)
    rows = np.flatnonzero(present.any(axis=1))
    k, b = named.shape[1], values.shape[1]
    if not len(rows) or not b:
        return correlate_blocks(named, values, "pearson", min_periods)
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    panel, span = values[r0:r1], r1 - r0
    ones = np.ones(span)
    # The named columns are centred as the panel's are (the same sums, the same rounding:
    # a named column and its copy in the panel are the same numbers).
    side, mask = np.empty((span, k), order="F"), np.empty((span, k), order="F")
    count = _centre(named[r0:r1], side, mask, np.empty((span, k), bool, order="F"), ones)
    whole = np.einsum("ij,ij->j", side, side)
    if (_extreme(whole, count)).any():
        return correlate_blocks(named, values, "pearson", min_periods)  # prepare scales them
    y = [side[:, i] for i in range(k)]
    y2 = [v * v for v in y]
    # A named column present on its whole span has the ones for a mask: fewer products.
    m = [ones if count[i] == span else mask[:, i] for i in range(k)]
    # Each product of a chunk's X, X*X or P with a vector is one matrix-vector product
    # (faster than a product with the vectors side by side, which BLAS does poorly).
    vectors = {"x": _distinct(y + m), "xx": _distinct([*m, ones]), "p": _distinct(y + y2 + m)}
    found = {(name, id(v)): np.empty(b) for name, vs in vectors.items() for v in vs}
    counts = found.setdefault(("p", id(ones)), np.empty(b))  # each column's values on the span
    x = np.empty((span, NARROW_CHUNK), order="F")
    xx, p = np.empty_like(x), np.empty_like(x)
    keep = np.empty(x.shape, bool, order="F")
    for c0 in range(0, b, NARROW_CHUNK):
        c1 = min(b, c0 + NARROW_CHUNK)
        chunk = {"x": x[:, : c1 - c0], "xx": xx[:, : c1 - c0], "p": p[:, : c1 - c0]}
        counts[c0:c1] = _centre(panel[:, c0:c1], chunk["x"], chunk["p"], keep[:, : c1 - c0], ones)
        np.multiply(chunk["x"], chunk["x"], out=chunk["xx"])
        for name, vs in vectors.items():
            for v in vs:
                if v is not ones or name != "p":
                    found[name, id(v)][c0:c1] = chunk[name].T @ v

    def rows_of(name: str, vs: list[np.ndarray]) -> np.ndarray:
        return np.array([found[name, id(v)] for v in vs])

    extreme = _extreme(found["xx", id(ones)], counts)
    sums = Sums(np.rint(rows_of("p", m)).astype(np.int64), rows_of("p", y), rows_of("x", m), rows_of("p", y2),
                rows_of("xx", m), rows_of("x", y), whole, found["xx", id(ones)])
    for field in ("n", "sb", "qb", "sab"):
        getattr(sums, field)[:, extreme] = 0  # their sums may have overflowed: done below
    corr, n = correlations(sums, named, values, min_periods, False)
    if extreme.any():
        corr[:, extreme], n[:, extreme] = correlate_blocks(named, values[:, extreme], "pearson", min_periods)
    return corr, n


def _centre(part: np.ndarray, x: np.ndarray, p: np.ndarray, keep: np.ndarray, ones: np.ndarray) -> np.ndarray:
    """Fill ``x`` with the columns of ``part`` centred on their means over the rows they
    have (0 where missing) and ``p`` with their masks (1.0 or 0.0); each column's count of
    values. The means are summed as :meth:`Centring.of` sums them."""
    np.isfinite(part, out=keep)
    p[...] = keep
    x.fill(0.0)
    np.copyto(x, part, where=keep)
    count = p.T @ ones
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = x.sum(axis=0) / count
        mean[count == 0] = 0.0
        x -= mean
    x *= p  # back to exactly 0 where missing
    return count


def _extreme(whole: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Columns of at least two values whose sum of squares about the mean is outside
    [2**-WHOLE, 2**WHOLE] (or not finite): their products could overflow or underflow."""
    with np.errstate(invalid="ignore"):
        return (count >= 2) & ~((whole >= 2.0**-WHOLE) & (whole <= 2.0**WHOLE))


def _distinct(vectors: list[np.ndarray]) -> list[np.ndarray]:
    """``vectors`` without repeats of the same array (masks that are the ones)."""
    return list({id(v): v for v in vectors}.values())


def correlate_split(vi: np.ndarray, vj: np.ndarray | None, min_periods: int | None, threads: int,
                    split_rows: int = SPLIT_ROWS, present: tuple | None = None):
    """:func:`correlate_block` of two blocks of values (``vj=None``: ``vi`` with itself)
    on ``threads`` threads: the columns' centring found on all rows, then each thread
    prepares some of the rows and sums over them, one BLAS thread each; the sums add up.
    Pearson only (ranks need every row). Each part has at least ``split_rows`` rows;
    ``present``: ``np.isfinite`` of ``vi`` and ``vj``, where the caller has them."""
    blocks = [vi] if vj is None else [vi, vj]
    found = [np.isfinite(v) for v in blocks] if present is None else list(present)[: len(blocks)]
    rows = len(vi)
    parts = max(1, min(threads, rows // split_rows))
    edges = np.linspace(0, rows, parts + 1).astype(int)
    with concurrent.futures.ThreadPoolExecutor(parts) as pool, blas_threads(1):
        centring = [Centring.concat(list(pool.map(Centring.of, _column_parts(v, parts), _column_parts(m, parts))))
                    for v, m in zip(blocks, found)]

        def part_sums(r0: int, r1: int) -> Sums:
            return partial_sums(*(prepare(v[r0:r1], centring=c, present=m[r0:r1])
                                  for v, c, m in zip(blocks, centring, found)))

        total = functools.reduce(operator.add, pool.map(part_sums, edges[:-1], edges[1:]))
    return correlations(total, vi, vi if vj is None else vj, min_periods, vj is None)


def _column_parts(values: np.ndarray, parts: int) -> list[np.ndarray]:
    edges = np.linspace(0, values.shape[1], parts + 1).astype(int)
    return [values[:, c0:c1] for c0, c1 in itertools.pairwise(edges)]


def _redo(corr: np.ndarray, again: np.ndarray, values_i: np.ndarray, values_j: np.ndarray) -> None:
    """Compute the flagged pairs ``corr[again]`` again, each from its own overlap."""
    for i in np.flatnonzero(again.any(axis=1)):
        js = np.flatnonzero(again[i])
        corr[i, js] = overlap_corr(values_i[:, i], values_j[:, js])


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


def pearson_of_sums(n, sa, sb, qa, qb, sab):
    """Correlations from the overlap's count, sums, sums of squares and cross products
    (arrays that broadcast), and the two variances (times n) they divide by (few
    temporaries: blocks are large)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        va = _less(qa, sa * sa / n)
        vb = _less(qb, sb * sb / n)
        cov = sa * sb
        cov /= n
        np.subtract(sab, cov, out=cov)
        spread = va * vb
        np.sqrt(spread, out=spread)
        cov /= spread
        return cov, va, vb


def _less(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a - b``, into ``b`` where it has the result's shape."""
    return np.subtract(a, b, out=b) if np.broadcast_shapes(a.shape, b.shape) == b.shape else a - b


def block_pairs(
    corr: np.ndarray, n: np.ndarray, i0: int, j0: int, same: bool, k: int | None, absolute: bool
) -> Pairs:
    """The block's pairs (upper triangle when ``same``), cut to its top ``k`` if given.

    ``corr`` is the task's own: with ``same``, its lower triangle is made NaN here.
    Only the candidates for the top ``k`` become pairs; every pair is tallied.
    """
    if same:
        corr[np.tri(len(corr), dtype=bool)] = np.nan
    if k is None:
        ii, jj = np.triu_indices(corr.shape[0], 1) if same else np.indices(corr.shape).reshape(2, -1)
        return Pairs(ii.astype(np.int64) + i0, jj.astype(np.int64) + j0, corr[ii, jj], n[ii, jj]).tallied()
    flat = corr.ravel()
    ranked, histogram = tally(flat)
    pick = candidates(flat, k, absolute)
    ii, jj = np.divmod(pick, corr.shape[1])
    return top_k(Pairs(ii + i0, jj + j0, flat[pick], n.ravel()[pick], ranked, histogram), k, absolute)


def candidates(flat: np.ndarray, k: int, absolute: bool) -> np.ndarray:
    """The positions in ``flat`` (NaN: not a pair) of the values that can be among the
    top ``k``: everything tied with the ``k``-th best stays a candidate, for top_k to
    break the ties."""
    key = np.abs(flat) if absolute else flat
    pick = np.flatnonzero(~np.isnan(key))
    if len(pick) > k:
        kth = np.partition(key[pick], len(pick) - k)[len(pick) - k]
        pick = np.flatnonzero(key >= kth)
    return pick


def correlate_blocks(vi: np.ndarray, vj: np.ndarray | None, method: str, min_periods: int | None,
                     threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Correlations and overlap counts of every column of ``vi`` with every column of
    ``vj`` (``vj=None``: ``vi`` with itself, upper triangle meaningful), Pearson or
    Spearman. ``threads``: the cores this pair of blocks may use itself (alone on the
    machine): its rows are split across as many threads (:func:`correlate_split`)."""
    rank = method == "spearman"
    vi, vj, pi, pj = _drop_empty_rows(vi, vj)
    if threads > 1 and not rank and len(vi) >= 2 * SPLIT_ROWS:
        return correlate_split(vi, vj, min_periods, threads, present=(pi, pj))
    bi = prepare(vi, rank, present=pi)
    bj = None if vj is None else prepare(vj, rank, present=pj)
    return correlate_block(bi, bj, min_periods)


def blas_threads(n: int | None):
    """A context in which BLAS uses at most ``n`` threads (no limit for None)."""
    if n is None:
        return contextlib.nullcontext()
    return _blas_controller().limit(limits=n, user_api="blas")


def _blas_controller() -> ThreadpoolController:
    """This process's view of the loaded BLAS: inspecting the libraries takes milliseconds,
    so once a process (a forked worker inspects its own), not per call."""
    global _BLAS
    if _BLAS is None or _BLAS[0] != os.getpid():
        _BLAS = (os.getpid(), ThreadpoolController())
    return _BLAS[1]


_BLAS = None
_blas_controller()  # with the module, not within the first correlation a process times


def _drop_empty_rows(vi: np.ndarray, vj: np.ndarray | None):
    """Drop the timestamps no column of the two blocks has, when every other timestamp
    has all of them: the pair of blocks then takes the one-product path. Returns the
    blocks and where they have values (``np.isfinite``)."""
    pi = np.isfinite(vi)
    pj = None if vj is None else np.isfinite(vj)
    some = every = None
    for present in (pi,) if pj is None else (pi, pj):
        any_, all_ = present.any(axis=1), present.all(axis=1)
        some = any_ if some is None else some | any_
        every = all_ if every is None else every & all_
    if every.all() or not np.array_equal(some, every):
        return vi, vj, pi, pj
    return vi[every], (None if vj is None else vj[every]), pi[every], (None if pj is None else pj[every])
