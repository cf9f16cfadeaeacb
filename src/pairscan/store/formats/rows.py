"""The rows of a stored frame between two timestamps, found by binary search on its sorted index."""

from __future__ import annotations

import numpy as np


def rows_between(index: np.ndarray, first, last) -> slice:
    """The rows of a sorted ``index`` from ``first`` to ``last``, both included (None: open)."""
    start = 0 if first is None else int(np.searchsorted(index, first, "left"))
    stop = len(index) if last is None else int(np.searchsorted(index, last, "right"))
    return slice(start, max(start, stop))
