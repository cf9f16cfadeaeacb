"""Formation and trading windows: calendar lengths, bounds, half-open slices.

A length is a whole number and a unit (``D`` days, ``W`` weeks, ``M`` months, ``Y``
years), a :class:`pandas.DateOffset`. With ``t0`` the first selected timestamp floored
to its day, window ``w`` forms on ``[F0, F1)`` and trades on ``[F1, T1)``:
``F0 = t0 + w x step``, ``F1 = F0 + formation``, ``T1 = F1 + trading``; windows run
while ``T1 <= last selected timestamp + 1 day``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import PairscanError

UNITS = {"D": "days", "W": "weeks", "M": "months", "Y": "years"}


@dataclass(frozen=True)
class Length:
    """A calendar length as given (``12M``): ``number`` of ``unit``."""

    number: int
    unit: str

    def __str__(self) -> str:
        return f"{self.number}{self.unit}"

    def times(self, w: int) -> pd.DateOffset:
        """This length ``w`` times, as one offset (``t0 + 6M x 3`` is ``t0 + 18M``, not
        three month-end roll-downs in a row)."""
        return pd.DateOffset(**{UNITS[self.unit]: self.number * w})

    @property
    def offset(self) -> pd.DateOffset:
        return self.times(1)


def parse_length(value, option: str) -> Length:
    """``"12M"`` -> 12 months; a whole number >= 1 and one of D, W, M, Y (any case)."""
    if isinstance(value, Length):
        return value
    text = value.strip() if isinstance(value, str) else None
    found = re.fullmatch(r"(\d+)\s*([A-Za-z])", text) if text else None
    if not found or found.group(2).upper() not in UNITS or int(found.group(1)) < 1:
        raise PairscanError(f"{option} must be a whole number >= 1 and a unit D, W, M or Y (like 12M, 26W, "
                            f"1Y), not {value!r}")
    return Length(int(found.group(1)), found.group(2).upper())


@dataclass(frozen=True)
class Window:
    """Window ``number`` (from 0): formation ``[start, split)``, trading ``[split, stop)``."""

    number: int
    start: pd.Timestamp
    split: pd.Timestamp
    stop: pd.Timestamp

    def bounds(self) -> tuple[np.datetime64, np.datetime64, np.datetime64]:
        return tuple(np.datetime64(t.as_unit("ns").to_datetime64(), "ns") for t in (self.start, self.split, self.stop))


def windows(first, last, formation: Length, trading: Length, step: Length) -> list[Window]:
    """Every window of a history from ``first`` to ``last`` (the selected timestamps)."""
    t0 = pd.Timestamp(first).floor("D")
    end = pd.Timestamp(last) + pd.Timedelta(days=1)
    found = []
    w = 0
    while True:
        f0 = t0 + step.times(w)
        f1 = f0 + formation.offset
        t1 = f1 + trading.offset
        if t1 > end:
            return found
        found.append(Window(w, f0, f1, t1))
        w += 1


def rows(index: np.ndarray, low: np.datetime64, high: np.datetime64) -> slice:
    """The rows of a sorted ``index`` in ``[low, high)``: ``series[(index >= low) & (index < high)]``."""
    return slice(int(np.searchsorted(index, low, "left")), int(np.searchsorted(index, high, "left")))
