"""The two ways to correlate every pair: ``naive`` (per-pair pandas) and ``blocked`` (GEMMs).

Both produce :class:`Pairs`: the pair indices, correlations and overlap counts of the
pairs that are candidates for the top list, merged with :func:`top_k`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHODS = ("pearson", "spearman", "kendall")
ENGINES = ("auto", "blocked", "naive")


@dataclass
class Pairs:
    """Pairs ``(a[i], b[i])`` (column indices, ``a < b``) with correlation and overlap.

    ``nonfinite``: how many non-finite values the tasks that read the store themselves
    made missing (each ticker counted by one task); 0 where the panel was loaded here.
    """

    a: np.ndarray
    b: np.ndarray
    corr: np.ndarray
    n: np.ndarray
    nonfinite: int = 0

    @classmethod
    def empty(cls) -> "Pairs":
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64))

    @classmethod
    def concat(cls, parts: list["Pairs"]) -> "Pairs":
        nonfinite = sum(p.nonfinite for p in parts)
        parts = [p for p in parts if len(p.a)] or [cls.empty()]
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("a", "b", "corr", "n")), nonfinite)


def top_k(pairs: Pairs, k: int, absolute: bool = False) -> Pairs:
    """The ``k`` best pairs: highest correlation (or ``|corr|``), NaN never included.

    Ties are broken by ``(a, b)`` so the answer does not depend on task order.
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
    return Pairs(a[order], b[order], corr[order], n[order], pairs.nonfinite)
