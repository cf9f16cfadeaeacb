"""The two ways to correlate every pair: ``naive`` (per-pair pandas) and ``blocked`` (GEMMs).

Both produce :class:`Pairs`: the pair indices, correlations and overlap counts of the
pairs that are candidates for the top list, merged with :func:`top_k`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


ENGINES = ("auto", "blocked", "naive")
HISTOGRAM_BINS = np.linspace(-1.0, 1.0, 41)  # of every ranked pair's correlation, 0.05 wide


@dataclass
class Pairs:
    """Pairs ``(a[i], b[i])`` (column indices, ``a < b``) with correlation and overlap.

    ``ranked`` and ``histogram`` describe every pair these came from, before any cut to
    a top list: how many have a correlation (at or above min-periods) and how those
    correlations spread over :data:`HISTOGRAM_BINS`. ``histogram`` is None until
    :meth:`tallied` counts them.
    ``nonfinite``: how many non-finite values the tasks that read the store themselves
    made missing (each ticker counted by one task); 0 where the panel was loaded here.
    """

    a: np.ndarray
    b: np.ndarray
    corr: np.ndarray
    n: np.ndarray
    ranked: int = 0
    histogram: np.ndarray | None = None
    nonfinite: int = 0

    @classmethod
    def empty(cls) -> "Pairs":
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64))

    @classmethod
    def concat(cls, parts: list["Pairs"]) -> "Pairs":
        tallied = bool(parts) and all(p.histogram is not None for p in parts)
        histogram = np.sum([p.histogram for p in parts], axis=0) if tallied else None
        ranked = sum(p.ranked for p in parts) if tallied else 0
        nonfinite = sum(p.nonfinite for p in parts)
        parts = [p for p in parts if len(p.a)] or [cls.empty()]
        arrays = (np.concatenate([getattr(p, f) for p in parts]) for f in ("a", "b", "corr", "n"))
        return cls(*arrays, ranked, histogram, nonfinite)

    def tallied(self) -> "Pairs":
        """These pairs with ``ranked`` and ``histogram`` counted from them (all of them)."""
        if self.histogram is not None:
            return self
        ranked, histogram = tally(self.corr)
        return Pairs(self.a, self.b, self.corr, self.n, ranked, histogram, self.nonfinite)


def tally(corr: np.ndarray) -> tuple[int, np.ndarray]:
    """How many of ``corr`` are defined, and how they spread over :data:`HISTOGRAM_BINS`."""
    defined = corr[~np.isnan(corr)]
    # Equal bins given by their number and range: numpy's fast path (no sort), the same edges.
    histogram = np.histogram(defined, bins=len(HISTOGRAM_BINS) - 1, range=(HISTOGRAM_BINS[0], HISTOGRAM_BINS[-1]))[0]
    return len(defined), histogram


def top_k(pairs: Pairs, k: int, absolute: bool = False) -> Pairs:
    """The ``k`` best pairs: highest correlation (or ``|corr|``), NaN never included.

    Ties are broken by ``(a, b)`` so the answer does not depend on task order. The
    tally (``ranked``, ``histogram``) of the pairs given is kept.
    """
    keep = ~np.isnan(pairs.corr)
    a, b, corr, n = pairs.a[keep], pairs.b[keep], pairs.corr[keep], pairs.n[keep]
    key = np.abs(corr) if absolute else corr
    if len(key) > k:
        # Everything tied with the k-th best stays in, so tie-breaking below is exact.
        kth = np.partition(key, len(key) - k)[len(key) - k]
        sel = key >= kth
        a, b, corr, n, key = a[sel], b[sel], corr[sel], n[sel], key[sel]
    order = np.lexsort((b, a, -key))[:k]
    return Pairs(a[order], b[order], corr[order], n[order], pairs.ranked, pairs.histogram, pairs.nonfinite)
