"""Selection: which series are correlated and which pairs are ranked, captured once.

``correlate``, ``run``, ``plot`` (pair and heatmap) and ``analyze`` take the same five
options with the same names, defaults and checks. A :class:`Selection` holds them,
validated when it is made; :func:`Selection.add_arguments` gives every command the
same command-line options; :meth:`Selection.resolve` fixes ``min_periods="auto"`` from
the data before any engine runs, so every engine and executor ranks the same pairs.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .errors import PairscanError

ON = ("prices", "returns")
METHODS = ("pearson", "spearman", "kendall")
AUTO = "auto"
AUTO_FLOOR = 30  # auto never asks for fewer common observations than this


def auto_min_periods(observations) -> int:
    """The ``auto`` rule: the larger of 30 and half the median number of observations
    per ticker (rounded down), of the series being correlated (prices or returns)."""
    counts = np.asarray(observations)
    if counts.size == 0:
        return AUTO_FLOOR
    return max(AUTO_FLOOR, int(np.median(counts)) // 2)


@dataclass(frozen=True)
class Selection:
    """What to correlate and what counts as a ranked pair.

    Parameters
    ----------
    column : str
        The stored column (``close``, ``adj_close``...).
    on : {"prices", "returns"}
        The column's values, or their log returns on the union-aligned panel.
    method : {"pearson", "spearman", "kendall"}
    min_periods : "auto" or int >= 1
        Fewest common observations a pair needs to have a correlation. ``"auto"``:
        see :func:`auto_min_periods`; ``1`` is pandas' default.
    absolute : bool
        Rank by ``|corr|``, so strongly negative pairs count too.
    """

    column: str = "close"
    on: str = "prices"
    method: str = "pearson"
    min_periods: int | str = AUTO
    absolute: bool = False

    def __post_init__(self):
        if not isinstance(self.column, str) or not self.column:
            raise PairscanError(f"--column must name a stored column, not {self.column!r}")
        if self.on not in ON:
            raise PairscanError(f"--on must be prices or returns, not {self.on!r}")
        if self.method not in METHODS:
            raise PairscanError(f"--method must be pearson, spearman or kendall, not {self.method!r}")
        object.__setattr__(self, "min_periods", parse_min_periods(self.min_periods))
        object.__setattr__(self, "absolute", bool(self.absolute))

    @classmethod
    def of(cls, selection: "Selection | None" = None, **options) -> "Selection":
        """``selection`` with ``options`` (those not None) replaced; a new one from
        ``options`` alone when ``selection`` is None. Unknown names are a usage error."""
        unknown = set(options) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown selection option(s): {', '.join(sorted(unknown))}")
        given = {k: v for k, v in options.items() if v is not None}
        base = selection if selection is not None else cls()
        return dataclasses.replace(base, **given) if given else base

    @property
    def auto(self) -> bool:
        return self.min_periods == AUTO

    def resolve(self, observations) -> int:
        """The ``min_periods`` in force: the number given, or the auto rule applied to
        ``observations`` (the count of values of each ticker's series)."""
        return auto_min_periods(observations) if self.auto else int(self.min_periods)

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """The selection options, the same on every command that correlates."""
        group = parser.add_argument_group("selection")
        group.add_argument("--column", default="close", help="the stored column to correlate (default close)")
        group.add_argument("--on", choices=ON, default="prices",
                           help="correlate prices, or log returns of the timestamp-aligned panel")
        group.add_argument("--method", choices=METHODS, default="pearson")
        group.add_argument("--min-periods", default=AUTO, metavar="auto|N",
                           help="fewest common observations a pair needs to be ranked; auto (default): the "
                                "larger of 30 and half the median history; 1 is pandas' default")
        group.add_argument("--abs", action="store_true", help="rank by |r|, so strong negative pairs count too")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Selection":
        return cls(args.column, args.on, args.method, args.min_periods, args.abs)


def parse_min_periods(value) -> int | str:
    """``"auto"`` or a whole number >= 1 (given as a number or as text)."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    number = value
    if isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or number < 1:
        raise PairscanError(f"--min-periods must be auto or a whole number >= 1, not {value!r}")
    return int(number)
