"""The trading rule of Gatev, Goetzmann & Rouwenhorst (2006), on one pair's prices.

In formation, ``sigma`` is the standard deviation (ddof 1) of the spread of the
normalized prices ``a/a[f] - b/b[f]`` over the pair's common timestamps (``f`` the
first). In trading the spread is ``d = a/a[g] - b/b[g]`` (``g`` the first common
trading timestamp). Walking the common trading timestamps in order: when flat, not at
the last one, and ``|d| > entry x sigma``, open (short the higher, long the lower, one
unit of money each); when open and ``d`` has changed sign or is 0, close; at the last
one, close what is open. A position closed at ``t`` is not reopened at ``t``.
"""

from __future__ import annotations

import numpy as np


def common(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Where both prices are present (finite)."""
    return np.isfinite(a) & np.isfinite(b)


def formation_sigma(a: np.ndarray, b: np.ndarray) -> float:
    """``sigma`` of the normalized spread over the common formation timestamps (NaN
    below two of them): pandas ``.std()``, ddof 1."""
    both = common(a, b)
    a, b = a[both], b[both]
    if len(a) < 2:
        return float("nan")
    return _std(a / a[0] - b / b[0])


def _std(values: np.ndarray) -> float:
    """pandas' ``Series.std()`` (ddof 1) of values without NaN: its two passes, in its order."""
    with np.errstate(invalid="ignore", over="ignore"):
        count = float(len(values))
        mean = values.sum(dtype=np.float64) / count
        return float(np.sqrt(((mean - values) ** 2).sum(dtype=np.float64) / (count - 1.0)))


def trade(a: np.ndarray, b: np.ndarray, sigma: float, entry: float) -> tuple[int, float]:
    """``(trades, return)`` of the rule on the trading prices ``a``, ``b`` (aligned rows,
    NaN where missing): the sum of the trades' returns, each
    ``(long exit / long entry - 1) - (short exit / short entry - 1)``."""
    both = common(a, b)
    a, b = a[both], b[both]
    if len(a) < 2 or not np.isfinite(sigma) or sigma == 0:
        return 0, 0.0
    d = (a / a[0] - b / b[0]).tolist()  # Python floats: the same arithmetic, a faster walk
    a, b = a.tolist(), b.tolist()
    threshold = entry * sigma
    last = len(d) - 1
    trades, total = 0, 0.0
    opened = None  # the row and the sign of d where the open position started
    for t in range(len(d)):
        if opened is not None:
            at, sign = opened
            if t == last or d[t] == 0 or _sign(d[t]) != sign:
                # sign > 0: a was the higher, so short a and long b.
                long_, short = (b, a) if sign > 0 else (a, b)
                total += (long_[t] / long_[at] - 1.0) - (short[t] / short[at] - 1.0)
                trades += 1
                opened = None
            continue
        if t != last and abs(d[t]) > threshold:
            opened = (t, _sign(d[t]))
    return trades, total


def _sign(value: float) -> float:
    """``np.sign``: -1, 0 or 1, NaN for NaN."""
    return value if value != value else float((value > 0) - (value < 0))
