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
import functools
import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import PairscanError
from .universe import parse_list, select

ON = ("prices", "returns")
METHODS = ("pearson", "spearman", "kendall")
AUTO = "auto"
AUTO_FLOOR = 30  # auto never asks for fewer common observations than this
# Aliases pandas 2.2 renamed: still accepted, as the names users know.
RULE_ALIASES = {"M": "ME", "Q": "QE", "Y": "YE", "A": "YE", "BM": "BME", "BQ": "BQE", "BY": "BYE", "BA": "BYE",
                "H": "h", "T": "min", "S": "s", "L": "ms", "U": "us", "N": "ns"}


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
        The column's values, or each ticker's log returns on its own timestamps
        (``np.log(series).diff()``), aligned on timestamp after.
    method : {"pearson", "spearman", "kendall"}
    min_periods : "auto" or int >= 1
        Fewest common observations a pair needs to have a correlation. ``"auto"``:
        see :func:`auto_min_periods`; ``1`` is pandas' default.
    absolute : bool
        Rank by ``|corr|``, so strongly negative pairs count too.
    start, end : str or None
        The period: each ticker's ``series.loc[start:end]`` (pandas label slicing, both
        ends included, so ``end="2006"`` is the whole of 2006).
    resample : str or None
        A pandas offset alias (``D``, ``W``, ``ME``, ``QE``, ``h``, ``15min``...; ``M`` and
        ``Q`` are taken as ``ME`` and ``QE``): each ticker's cut series becomes
        ``series.resample(rule).last()``, its empty bins dropped, before alignment.
    tickers, exclude : str, iterable of str, or None
        Names, shell patterns or ``@FILE`` (:mod:`pairscan.universe`): the tickers
        correlated, matched against the store's when it is read.
    """

    column: str = "close"
    on: str = "prices"
    method: str = "pearson"
    min_periods: int | str = AUTO
    absolute: bool = False
    start: str | None = None
    end: str | None = None
    resample: str | None = None
    tickers: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None

    def __post_init__(self):
        if not isinstance(self.column, str) or not self.column:
            raise PairscanError(f"--column must name a stored column, not {self.column!r}")
        if self.on not in ON:
            raise PairscanError(f"--on must be prices or returns, not {self.on!r}")
        if self.method not in METHODS:
            raise PairscanError(f"--method must be pearson, spearman or kendall, not {self.method!r}")
        object.__setattr__(self, "min_periods", parse_min_periods(self.min_periods))
        object.__setattr__(self, "absolute", bool(self.absolute))
        object.__setattr__(self, "start", parse_date(self.start, "--start"))
        object.__setattr__(self, "end", parse_date(self.end, "--end"))
        object.__setattr__(self, "resample", parse_rule(self.resample))
        object.__setattr__(self, "tickers", parse_list(self.tickers, option="--tickers"))
        object.__setattr__(self, "exclude", parse_list(self.exclude, option="--exclude"))

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

    @property
    def cut(self) -> "Cut | None":
        """The period and frequency each ticker's series is cut to (None: all of it as stored)."""
        if self.start is None and self.end is None and self.resample is None:
            return None
        return Cut(self.start, self.end, self.resample)

    @property
    def subset(self) -> bool:
        return self.tickers is not None or self.exclude is not None

    def universe(self, tickers) -> list[str]:
        """The store's ``tickers`` this selection correlates (``--tickers`` less ``--exclude``)."""
        return select(tickers, self.tickers, self.exclude, options=("--tickers", "--exclude"))

    def describe(self, series: int | None = None, of: int | None = None) -> str:
        """A headline: ``weekly log returns of close, 2003-01-01 to 2006-06-30, 40 of 3,000 tickers``."""
        what = f"log returns of {self.column}" if self.on == "returns" else f"{self.column} prices"
        if self.resample is not None:
            what = f"{RULE_WORDS.get(self.resample, self.resample + ' bars of')} {what}"
        parts = [what]
        if self.start is not None or self.end is not None:
            parts.append(f"{self.start or 'the first bar'} to {self.end or 'the last bar'}")
        if series is not None:
            parts.append(f"{series:,} of {of:,} tickers" if of is not None and of != series else f"{series:,} tickers")
        return ", ".join(parts)

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
                           help="correlate prices, or each ticker's log returns on its own timestamps")
        group.add_argument("--method", choices=METHODS, default="pearson")
        group.add_argument("--min-periods", default=AUTO, metavar="auto|N",
                           help="fewest common observations a pair needs to be ranked; auto (default): the "
                                "larger of 30 and half the median history; 1 is pandas' default")
        group.add_argument("--abs", action="store_true", help="rank by |r|, so strong negative pairs count too")
        group.add_argument("--start", metavar="DATE", help="first date of the period (pandas label slicing, included)")
        group.add_argument("--end", metavar="DATE", help="last date of the period (included: --end 2006 is all of 2006)")
        group.add_argument("--resample", metavar="RULE",
                           help="each ticker's series.resample(RULE).last() before alignment (D, W, ME, QE, h, 15min...)")
        group.add_argument("--tickers", dest="only", metavar="LIST", help="only these tickers: names, shell patterns, or @FILE")
        group.add_argument("--exclude", metavar="LIST", help="not these tickers: names, shell patterns, or @FILE")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Selection":
        return cls(args.column, args.on, args.method, args.min_periods, args.abs, args.start, args.end,
                   args.resample, args.only, args.exclude)


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


RULE_WORDS = {"D": "daily", "B": "business-daily", "W": "weekly", "ME": "monthly", "QE": "quarterly", "YE": "yearly",
              "h": "hourly", "min": "minutely"}


def parse_date(value, option: str) -> str | None:
    """A period bound as given (a string pandas label slicing takes: ``2003``,
    ``2003-01``, ``2003-01-31 15:30``); checked here, applied by :class:`Cut`."""
    if value is None:
        return None
    if isinstance(value, (pd.Timestamp, np.datetime64)) or hasattr(value, "isoformat"):
        value = pd.Timestamp(value).isoformat()
    if not isinstance(value, str) or not value.strip():
        raise PairscanError(f"{option} must be a date like 2003-01-31, not {value!r}")
    value = value.strip()
    try:
        pd.DatetimeIndex(["2000-01-01", "2000-01-02"]).slice_indexer(value, value)
    except (TypeError, ValueError, KeyError, OverflowError):
        raise PairscanError(f"{option} must be a date like 2003-01-31, not {value!r}") from None
    return value


def parse_rule(value) -> str | None:
    """A pandas offset alias for ``resample`` (``M``, ``Q``... as their new names)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise PairscanError(f"--resample must be a pandas offset alias like D, W, ME or 15min, not {value!r}")
    text = value.strip()
    number, name = re.fullmatch(r"(\d*)(.*)", text).groups()
    rule = number + RULE_ALIASES.get(name, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            pd.Series([1.0], index=pd.DatetimeIndex(["2000-01-03"])).resample(rule).last()
    except Exception:
        raise PairscanError(f"--resample must be a pandas offset alias like D, W, ME or 15min, not {value!r}") \
            from None
    return rule


@dataclass(frozen=True)
class Cut:
    """The rows of each ticker's series a selection keeps: a period and a frequency."""

    start: str | None = None
    end: str | None = None
    resample: str | None = None

    @property
    def period(self) -> bool:
        return self.start is not None or self.end is not None

    def bounds(self) -> tuple[np.datetime64 | None, np.datetime64 | None] | None:
        """The first and last timestamps ``series.loc[start:end]`` can keep (None: no
        bound), so that a sorted index is cut by two binary searches; None where the
        strings are not of the kind :func:`period_bounds` handles."""
        return period_bounds(self.start, self.end)

    def rows(self, index: np.ndarray) -> slice:
        """The rows of a sorted, unique ``index`` that ``series.loc[start:end]`` keeps."""
        bounds = self.bounds()
        if bounds is None:
            return pd.DatetimeIndex(index).slice_indexer(self.start, self.end)
        low, high = bounds
        first = 0 if low is None else int(np.searchsorted(index, low, "left"))
        stop = len(index) if high is None else int(np.searchsorted(index, high, "right"))
        return slice(first, max(first, stop))

    def apply(self, index: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``series.loc[start:end]``, then ``.resample(rule).last()`` without empty bins."""
        if self.period:
            rows = self.rows(index)
            index, values = index[rows], values[rows]
        if self.resample is not None:
            index, values = resample_last(index, values, self.resample)
        return index, values


DAY = 86_400 * 10**9  # nanoseconds


@functools.lru_cache(maxsize=64)
def period_bounds(start: str | None, end: str | None):
    """``(first, last)`` timestamps (datetime64[ns], None for an open end) that pandas'
    label slicing ``loc[start:end]`` of a sorted index keeps: a date string covers the
    whole span of its resolution (``2009`` a year, ``2009-06`` a month), as
    ``pd.Period(text)`` spans it; a finer index point inside a string's span is kept, and
    where pandas slices exactly (the index no finer than the string) no index point lies
    inside the span but the string's own. None for strings with a time zone or that
    ``pd.Period`` does not read: the caller then asks pandas, ticker by ticker."""
    try:
        bounds = []
        for text, edge in ((start, "start_time"), (end, "end_time")):
            if text is None:
                bounds.append(None)
                continue
            with warnings.catch_warnings():  # pandas 3 warns of quarter strings ("2015Q1"), which it still reads
                warnings.simplefilter("ignore")
                if pd.Timestamp(text).tz is not None:
                    return None
                bounds.append(getattr(pd.Period(text), edge).as_unit("ns").to_datetime64())
        return tuple(bounds)
    except (TypeError, ValueError, OverflowError):
        return None


def bin_labels(index: np.ndarray, rule: str) -> np.ndarray | None:
    """The label of the bin each timestamp falls in, as ``Series.resample(rule)`` with
    its defaults bins them, for the rules where that is proven equal (tests check it
    against pandas): a fixed length that divides a day (``D``, ``h``, ``15min``...: bins
    from midnight, closed and labelled left) and ``W``, ``ME``, ``QE`` (closed and
    labelled right, by calendar day). None for any other rule (pandas then bins)."""
    offset = pd.tseries.frequencies.to_offset(rule)
    stamps = index.view(np.int64)
    if isinstance(offset, pd.offsets.Tick):
        width = offset.nanos
        if width <= 0 or DAY % width:
            return None  # bins from the first day's midnight need not be multiples of the width
        return (stamps // width * width).view("datetime64[ns]")
    if offset.n != 1:
        return None
    days = stamps // DAY
    if isinstance(offset, pd.offsets.Week) and offset.weekday == 6:
        # 1970-01-01 was a Thursday (weekday 3): each day's bin ends on the Sunday on or after it.
        return ((days + (6 - (days + 3) % 7) % 7) * DAY).view("datetime64[ns]")
    months = days.astype("datetime64[D]").astype("datetime64[M]")
    if isinstance(offset, pd.offsets.MonthEnd):
        ends = months + 1
    elif isinstance(offset, pd.offsets.QuarterEnd) and offset.startingMonth == 12:
        number = months.astype(np.int64)
        ends = (number - number % 3 + 3).astype("datetime64[M]")
    else:
        return None
    return (ends.astype("datetime64[D]") - 1).astype("datetime64[ns]")


def resample_last(index: np.ndarray, values: np.ndarray, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """``Series(values, index).resample(rule).last()`` without its empty bins: the last
    value (not missing) in each bin, labelled as pandas labels it; vectorised where
    :func:`bin_labels` knows the bins, pandas otherwise."""
    index = np.asarray(index, dtype="datetime64[ns]")
    values = np.asarray(values, dtype=np.float64)
    labels = bin_labels(index, rule) if len(index) else None
    if labels is None:
        series = pd.Series(values, index=pd.DatetimeIndex(index)).resample(rule).last().dropna()
        return np.asarray(series.index.as_unit("ns").values), series.to_numpy(dtype=np.float64)
    present = ~np.isnan(values)
    labels, values = labels[present], values[present]
    last = np.ones(len(labels), dtype=bool)
    np.not_equal(labels[1:], labels[:-1], out=last[:-1])
    return labels[last], values[last]


def selected(index: np.ndarray, values: np.ndarray, on: str = "prices",
             cut: Cut | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One ticker's series as it is correlated: cut (:class:`Cut`), and for returns its
    log returns on its own timestamps, ``np.log(series).diff()``, a return running from
    the ticker's previous observation. A new array, never ``values`` itself.

    A return of two present prices that is not finite (a zero or negative price) is
    marked ``+inf``: the panel makes it missing and counts it, as it does an
    infinite price.
    """
    if cut is not None:
        index, values = cut.apply(index, values)
    values = np.array(values, dtype=np.float64)
    if on == "returns" and len(values):
        with np.errstate(divide="ignore", invalid="ignore"):
            present = ~np.isnan(values)
            logs = np.log(values)
            values[1:] = logs[1:] - logs[:-1]
            values[0] = np.nan
            bad = present[1:] & present[:-1] & ~np.isfinite(values[1:])
            values[1:][bad] = np.inf
    return index, values
