"""One normalisation for every reader: column names, time kinds, types, duplicates, sorting.

Readers only get bytes into a table (the fast path) or into records with their line
numbers (the slow path); what a column means, what a time value is, and what makes a
record bad are decided here, once, so every format stores the same frame for the same data.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import re
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import PairscanError
from .base import BadLines, Columns, Parsed, settle

REQUIRED = ("close",)
PRICES = ("open", "high", "low", "close")
NUMBERS = (*PRICES, "volume")
TIME = "timestamp"
CLOCK = "__clock__"  # Stooq's <TIME> (HHMMSS), combined with the date
TICKER_NAMES = ("ticker", "symbol", "name")
TIME_RULE = "expected ISO 8601 text, YYYYMMDD or epoch seconds/ms/us/ns, years 1677-2262"

_ALIASES = {"timestamp": TIME, "date": TIME, "datetime": TIME, "time": CLOCK, "vol": "volume"}
REPLACED_CLOSE = "source_close"  # a file's own close when --close-column names another column


# ---------------------------------------------------------------- what convert was told about the columns

@dataclass(frozen=True)
class Reading:
    """What convert was told about a source's columns: which one is the close
    (``close_column``, matched as every column name is) and how its dates are written
    (``date_format``, a strftime format such as ``%b %d %Y``). None: the usual rules."""

    close_column: str | None = None
    date_format: str | None = None


# Set around one file's reading (see :func:`reading`), so that the one normalisation
# every reader ends in applies it without each reader passing it along.
_READING: ContextVar[Reading] = ContextVar("pairscan_reading", default=Reading())


@contextmanager
def reading(close_column: str | None = None, date_format: str | None = None):
    """Within this block, sources are normalised with these column options."""
    token = _READING.set(Reading(close_column, date_format))
    try:
        yield
    finally:
        _READING.reset(token)


def current_reading() -> Reading:
    return _READING.get()


def check_date_format(date_format: str | None) -> None:
    """:class:`PairscanError` for a ``--date-format`` that is no strftime format of a date."""
    if date_format is None:
        return
    if "%" not in date_format:
        raise PairscanError(f"--date-format must be a strftime format such as '%b %d %Y' or '%m/%d/%Y', "
                            f"not {date_format!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pd.to_datetime(pd.Series(["0"], dtype=object), format=date_format, errors="coerce")
    except ValueError as exc:
        raise PairscanError(f"--date-format {date_format!r} is not a strftime format ({str(exc).splitlines()[0]}); "
                            f"for example '%b %d %Y' or '%m/%d/%Y'") from None


def key(name: str) -> str:
    """What a column name is matched by: case, ``<>``, spaces and underscores ignored."""
    return re.sub(r"[<>\s_]", "", str(name)).lower()


def snake(name: str) -> str:
    """A column's stored name: lower-case snake_case (``Adj Close`` -> ``adj_close``)."""
    return re.sub(r"\s+", "_", str(name).strip().strip("<>").strip()).lower()


def column_names(names: tuple[str, ...]) -> dict[str, str]:
    """The file's column names -> the stored names; :class:`PairscanError` for two that clash.

    ``timestamp``, ``date`` or ``datetime`` is the time; ``time`` beside a date is the
    clock time of a Stooq file; ``vol`` is the volume. With a ``close_column`` (see
    :func:`reading`), that column is the close, and a column that would have been the
    close is kept as ``source_close``.
    """
    return _column_names(names, _READING.get().close_column)


@lru_cache(maxsize=256)
def _column_names(names: tuple[str, ...], close: str | None) -> dict[str, str]:
    keys = {n: key(n) for n in names}
    has_date = any(_ALIASES.get(k) == TIME for k in keys.values())
    chosen = _close_of(names, close)
    out: dict[str, str] = {}
    for name, k in keys.items():
        if name == chosen:
            out[name] = "close"
        elif chosen is not None and k == "close":
            out[name] = REPLACED_CLOSE
        elif k in _ALIASES and (k != "time" or has_date):
            out[name] = _ALIASES[k]
        elif k in NUMBERS:
            out[name] = k
        elif k == "time":
            out[name] = TIME
        else:
            out[name] = snake(name)
    seen: dict[str, str] = {}
    for name, new in out.items():
        if new in seen:
            what = "the time" if new == TIME else repr(new)
            raise PairscanError(f"columns {seen[new]!r} and {name!r} both name {what}")
        seen[new] = name
    return out


def _close_of(names, close: str | None) -> str | None:
    """The column ``--close-column`` names: its exact spelling first, else as names are matched."""
    if close is None:
        return None
    return next((n for n in names if n == close), None) or next((n for n in names if key(n) == key(close)), None)


def missing_columns(names, shown=None) -> str | None:
    """Why a table with these columns (a header: every row has them) cannot be read, or None.

    A table with no time or no close column is bad as a whole, not line by line: the
    reason names its columns (``shown``, default ``names``) and the option that helps.
    """
    names = [str(n) for n in names]
    shown = names if shown is None else [str(n) for n in shown]
    listed = ", ".join(shown[:12]) + (f" and {len(shown) - 12} more" if len(shown) > 12 else "")
    close = _READING.get().close_column
    if close is not None and _close_of(names, close) is None:
        return f"no column {close!r} (--close-column); its columns are {listed}"
    stored = set(column_names(tuple(names)).values())
    if TIME not in stored:
        return f"no time column (timestamp, date or datetime); its columns are {listed}"
    if "close" not in stored:
        return f"no close column; its columns are {listed}; --close-column to name one"
    return None


def ticker_column(names, wanted: str | None = None) -> str | None:
    """The column holding the ticker (``--ticker-column``, else ticker/symbol/name), or None."""
    if wanted is not None:
        return next((n for n in names if n == wanted), None) or next((n for n in names if key(n) == key(wanted)),
                                                                      None)
    for candidate in TICKER_NAMES:
        found = next((n for n in names if key(n) == candidate), None)
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------- time values

_UNITS = {9: "s", 10: "s", 12: "ms", 13: "ms", 15: "us", 16: "us", 18: "ns", 19: "ns"}


def parse_times(values, clock=None) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Raw time values -> (naive UTC index, mask of the values that are not times).

    The rule of docs/formats.md: ISO 8601 text (an offset converts to UTC); ``YYYYMMDD`` dates
    (number or text); epoch numbers by their digits: 9-10 seconds, 12-13 milliseconds,
    15-16 microseconds, 18-19 nanoseconds. ``clock`` (HHMMSS, Stooq's <TIME>) is added
    to each date. Anything else, and anything outside 1677-2262, is bad (NaT).
    """
    values = list(values)
    date_format = _READING.get().date_format
    if date_format is not None:
        return _formatted_times(values, date_format, clock)
    n = len(values)
    out = np.full(n, np.datetime64("NaT", "ns"))
    text = np.full(n, None, dtype=object)
    for i, value in enumerate(values):
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, np.integer)):
            out[i] = _epoch(int(value))
        elif isinstance(value, str) and value.isascii():
            digits = value.strip()
            if re.fullmatch(r"-?[0-9]+", digits):
                out[i] = _epoch(int(digits))
            elif value[:1].isdigit():
                # pandas also reads words such as "now"; a record's time must be written out.
                text[i] = value
    has_text = np.array([t is not None for t in text], dtype=bool)
    if has_text.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas warns about the values it cannot parse
            parsed = pd.to_datetime(text[has_text], format="ISO8601", utc=True, errors="coerce")
        stamps = parsed.tz_localize(None)
        in_range = np.asarray((stamps >= pd.Timestamp.min) & (stamps <= pd.Timestamp.max))
        got = np.full(len(stamps), np.datetime64("NaT", "ns"))
        got[in_range] = stamps[in_range].as_unit("ns").values
        out[has_text] = got
    if clock is not None:
        out = _add_clock(out, list(clock))
    return pd.DatetimeIndex(out), np.isnat(out)


def times_problem(values) -> str | None:
    """A whole file's problem with its times, from its first values: none of them is a time,
    and they are all of one common date format (so ``--date-format`` is the answer, not a bad line)."""
    values = [v for v in values if v is not None]
    if not values or not parse_times(values)[1].all():
        return None
    guessed = [guess_date_formats(v) for v in values]
    if not guessed[0] or any(g != guessed[0] for g in guessed):
        return None
    options = " or ".join(f"--date-format {f!r}" for f in guessed[0][:2])
    return f"dates like {values[0].strip()!r}: {options}"


def _formatted_times(values: list, date_format: str, clock=None) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """:func:`parse_times` under ``--date-format``: every value is text in that format
    (an offset, ``%z``, converts to UTC); anything else is bad (NaT)."""
    text = [None if v is None or isinstance(v, bool) else str(v).strip() for v in values]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parsed = pd.to_datetime(pd.Series(text, dtype=object), format=date_format, utc=True, errors="coerce")
        except ValueError as exc:  # a format pandas cannot use at all
            raise PairscanError(f"--date-format {date_format!r} is not a usable strftime format "
                                f"({str(exc).splitlines()[0]})") from None
    stamps = pd.DatetimeIndex(parsed).tz_localize(None)
    out = np.full(len(text), np.datetime64("NaT", "ns"))
    good = np.asarray(stamps.notna() & (stamps >= pd.Timestamp.min) & (stamps <= pd.Timestamp.max))
    out[good] = stamps[good].as_unit("ns").values
    if clock is not None:
        out = _add_clock(out, list(clock))
    return pd.DatetimeIndex(out), np.isnat(out)


# Date formats that downloads use, tried on a value no rule reads, to suggest --date-format.
COMMON_FORMATS = ("%b %d %Y", "%b %d, %Y", "%B %d %Y", "%B %d, %Y", "%d %b %Y", "%d %B %Y", "%d-%b-%Y",
                  "%d-%b-%y", "%m/%d/%Y", "%d/%m/%Y", "%m/%d/%y", "%d/%m/%y", "%d.%m.%Y", "%Y/%m/%d",
                  "%m-%d-%Y", "%d-%m-%Y", "%Y.%m.%d")


def guess_date_formats(value) -> list[str]:
    """The common formats ``value`` is written in (two for ``01/02/2000``: month or day first)."""
    if not isinstance(value, str):
        return []
    text = value.strip()
    found = []
    for fmt in COMMON_FORMATS:
        try:
            dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
        found.append(fmt)
    return found


def _epoch(value: int) -> np.datetime64:
    digits = len(str(abs(value)))
    if digits == 8 and value > 0:
        text = str(value)
        try:
            return np.datetime64(f"{text[:4]}-{text[4:6]}-{text[6:]}", "ns")
        except ValueError:
            return np.datetime64("NaT", "ns")
    unit = _UNITS.get(digits)
    if unit is None:
        return np.datetime64("NaT", "ns")
    scale = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
    ns = value * scale
    if not -(2**63) < ns < 2**63:
        return np.datetime64("NaT", "ns")
    return np.datetime64(ns, "ns")


def _add_clock(stamps: np.ndarray, clock: list) -> np.ndarray:
    out = stamps.copy()
    for i, value in enumerate(clock):
        text = str(value).strip() if value is not None and not isinstance(value, bool) else ""
        if not re.fullmatch(r"[0-9]{1,6}", text):
            out[i] = np.datetime64("NaT", "ns")
            continue
        text = text.zfill(6)
        h, m, s = int(text[:2]), int(text[2:4]), int(text[4:])
        if h > 23 or m > 59 or s > 59:
            out[i] = np.datetime64("NaT", "ns")
        else:
            out[i] = stamps[i] + np.timedelta64(h * 3600 + m * 60 + s, "s")
    return out


def bad_time(value) -> str:
    """Why a time value is bad, and the ``--date-format`` that reads it where one of the common ones does."""
    shown = json.dumps(_plain(value))[:40]
    date_format = _READING.get().date_format
    if date_format is not None:
        return f"unparseable timestamp {shown} (not in --date-format {date_format!r})"
    formats = guess_date_formats(value)
    if formats:
        options = " or ".join(f"--date-format {f!r}" for f in formats[:2])
        return f"unparseable timestamp {shown} (dates like {value.strip()!r}: {options})"
    return f"unparseable timestamp {shown} ({TIME_RULE})"


def _timestamps(column: pa.ChunkedArray, clock: pa.ChunkedArray | None) -> pd.DatetimeIndex | None:
    """The column as a naive UTC index, or None if any value is not a valid time."""
    kind = column.type
    if clock is None and (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
        if pa.types.is_date(kind):
            try:
                column = column.cast(pa.timestamp("ns"))
            except pa.ArrowInvalid:  # outside the years 1677-2262: the records' path names the value
                return None
        values = column.to_pandas()
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        try:
            return pd.DatetimeIndex(values).as_unit("ns")
        except (ValueError, OverflowError):  # outside the years 1677-2262
            return None
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    if _READING.get().date_format is not None:  # every value in the format given, nothing else
        index, bad = parse_times(column.to_pylist(), None if clock is None else clock.to_pylist())
        return None if bad.any() else index
    if text and clock is None:
        # Plain ISO 8601 without an offset first, at compiled speed (arrow's cast is
        # strict: no 30 February, nothing outside what a nanosecond index holds, and
        # never text of digits alone, which docs/formats.md reads as a number);
        # anything else takes the general parser.
        try:
            return pd.DatetimeIndex(column.cast(pa.timestamp("ns")).to_numpy())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    if pa.types.is_integer(kind) and clock is None:
        return _integer_times(column.to_numpy())
    if pa.types.is_integer(kind) or text:
        index, bad = parse_times(column.to_pylist(), None if clock is None else clock.to_pylist())
        return None if bad.any() else index
    return None


def _integer_times(values: np.ndarray) -> pd.DatetimeIndex | None:
    """Integer times at numpy speed, by the same digit rule as :func:`parse_times`."""
    values = values.astype(np.int64)
    magnitude = np.abs(values)
    digits = np.where(magnitude == 0, 1, np.floor(np.log10(np.maximum(magnitude, 1))).astype(int) + 1)
    units = {d for d in np.unique(digits).tolist()}
    if units - {8, *_UNITS}:
        return None
    out = np.empty(len(values), dtype="datetime64[ns]")
    for d in units:
        where = digits == d
        if d == 8:
            index, bad = parse_times(values[where].tolist())
            if bad.any():
                return None
            out[where] = index.values
            continue
        unit = _UNITS[d]
        scale = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
        limit = (2**63 - 1) // scale
        if np.any(np.abs(values[where]) > limit):
            return None
        out[where] = (values[where] * scale).astype("datetime64[ns]")
    return pd.DatetimeIndex(out)


# ---------------------------------------------------------------- the fast path: a whole table

def table_to_frame(table: pa.Table, text: bool = False) -> pd.DataFrame | Columns | None:
    """A compiled reader's table -> a frame, or None when some value breaks a rule.

    None sends the file to its reader's line-by-line path, the authority on what a bad
    line is; here the checks are only on types. ``text``: the format has no numbers of
    its own (CSV), so number columns arrive as text and are cast. The usual table (only
    float64 and int64 columns, no missing values) comes back as :class:`~.base.Columns`,
    the arrays alone, which :func:`finish` and the store take as they take a frame.
    """
    if text:  # a header: every row has these columns, so one missing is the whole file's problem
        problem = missing_columns(table.column_names)
        if problem is not None:
            raise PairscanError(problem)
    names = column_names(tuple(table.column_names))
    table = table.rename_columns([names[n] for n in table.column_names])
    if TIME not in table.column_names or any(c not in table.column_names for c in REQUIRED):
        return None
    for name in table.column_names:
        column = table.column(name)
        kind = column.type
        if pa.types.is_nested(kind):
            return None  # nested extras: the slow path turns them into JSON text
        if name in NUMBERS:
            if text and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
                try:
                    column = pc.utf8_trim_whitespace(column).cast(pa.int64() if name == "volume" else pa.float64())
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    return None
                table = table.set_column(table.column_names.index(name), name, column)
                kind = column.type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
                if not (pa.types.is_null(kind) and name not in REQUIRED):
                    return None
            if name == "volume" and pa.types.is_floating(kind):
                return None  # a non-integer volume: let the slow path name the line
            if pa.types.is_floating(kind) and not _finite(column):
                return None  # NaN / Infinity are not numbers of a record
        if name in REQUIRED and column.null_count:
            return None
    stamps = table.column(TIME)
    clock = table.column(CLOCK) if CLOCK in table.column_names else None
    if stamps.null_count or (clock is not None and clock.null_count):
        return None
    index = _timestamps(stamps, clock)
    if index is None:
        return None
    table = table.drop_columns([c for c in (TIME, CLOCK) if c in table.column_names])
    frame = None if text else _plain_numbers(table, index)
    if frame is None:
        frame = table.to_pandas()
        if text:
            frame = _numbers_from_text(frame)
        frame.index = index
    return frame


def _finite(column: pa.ChunkedArray) -> bool:
    """Whether every value of a floating-point column is finite or missing."""
    if column.null_count == 0 and column.type == pa.float64():
        return bool(np.isfinite(column.to_numpy()).all())  # no copy for one chunk
    return pc.all(pc.or_kleene(pc.is_finite(column), pc.is_null(column))).as_py()


_PLAIN = (pa.float64(), pa.int64())


def _plain_numbers(table: pa.Table, index: pd.DatetimeIndex) -> Columns | None:
    """The arrays of a table of float64 and int64 columns without missing values (the usual
    file), without a frame; None for any other table (``to_pandas`` then)."""
    columns = {}
    for name, column in zip(table.column_names, table.columns):
        if column.null_count or column.type not in _PLAIN:
            return None
        columns[name] = column.to_numpy()
    return Columns(index.values, columns, TIME)


def _numbers_from_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Extra text columns that hold only numbers become numbers (int64 where every value is a whole one)."""
    for name in frame.columns:
        if name in NUMBERS or pd.api.types.is_numeric_dtype(frame[name].dtype):
            continue
        values = frame[name].astype(object)
        present = values.notna().to_numpy()
        if not present.any() or not all(isinstance(v, str) for v in values[present]):
            continue
        text = [v.strip() for v in values[present]]
        if all(re.fullmatch(r"[+-]?[0-9]+", v) for v in text) and present.all():
            try:
                frame[name] = np.array([int(v) for v in text], dtype=np.int64)
            except OverflowError:
                pass
            continue
        numbers = pd.to_numeric(pd.Series(text), errors="coerce")
        if numbers.isna().any():
            continue
        column = np.full(len(values), np.nan)
        column[present] = numbers.to_numpy(dtype=np.float64)
        frame[name] = column
    return frame


# ---------------------------------------------------------------- the slow path: records

class BadRecord(ValueError):
    """Why one record (line) is bad; the reader adds the file and line."""


def check_record(record: dict, text: bool = False) -> dict:
    """The record with stored names, its numbers checked (``text``: numbers written as text).

    The time is not parsed yet (see :func:`records_to_frame`); :class:`BadRecord` says why
    the record is bad.
    """
    names = column_names(tuple(record))
    record = {names[k]: v for k, v in record.items()}
    if TIME not in record:
        raise BadRecord("missing 'timestamp'")
    for name in REQUIRED:
        if record.get(name) is None or (text and record.get(name) == ""):
            close = _READING.get().close_column
            raise BadRecord(f"missing {close!r} (--close-column)" if close and name == "close" else
                            f"missing {name!r}")
    for name in NUMBERS:
        value = record.get(name)
        if value is None or (text and value == ""):
            if name in record:
                record[name] = None
            continue
        if text and isinstance(value, str):
            value = _number(value.strip())
            if value is None:
                raise BadRecord(f"{name!r} is not a number: {json.dumps(record[name])[:40]}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadRecord(f"{name!r} is not a number: {json.dumps(_plain(value))[:40]}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise BadRecord(f"{name!r} is out of range: {json.dumps(value)[:40]}")
        if name == "volume" and not (number.is_integer() and -(2**63) <= value < 2**63):
            raise BadRecord(f"'volume' is not a 64-bit integer: {json.dumps(value)[:40]}")
        record[name] = value
    timestamp = record[TIME]
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, str, np.integer, dt.date)):
        raise BadRecord(bad_time(timestamp))
    return record


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def records_to_frame(records: list[dict], numbers: list[int], text: bool = False):
    """Checked records (and their line numbers) -> (frame or None, [(line, reason)] of bad times)."""
    stamps = [r.pop(TIME) for r in records]
    clocks = [r.pop(CLOCK, None) for r in records] if any(CLOCK in r for r in records) else None
    stamps = [s.isoformat() if isinstance(s, dt.date) else s for s in stamps]
    index, unparsed = parse_times(stamps, clocks)
    bad = []
    if unparsed.any():
        bad = [(numbers[i], bad_time(stamps[i])) for i in np.flatnonzero(unparsed)]
        records = [r for r, is_bad in zip(records, unparsed) if not is_bad]
        index = index[~unparsed]
    if not records:
        return None, bad
    frame = pd.DataFrame.from_records(records)
    frame.index = index
    for name in PRICES:
        if name in frame:
            frame[name] = frame[name].astype("float64")
    if "volume" in frame:
        volume = frame["volume"].astype("float64")
        frame["volume"] = volume.astype("int64") if volume.notna().all() else volume
    if text:
        frame = _numbers_from_text(frame)
    return frame, bad


# ---------------------------------------------------------------- the last step for every reader

def finish(frame: pd.DataFrame | Columns) -> tuple[pd.DataFrame | Columns, int]:
    """Sort by time, keep the last of duplicate timestamps, fix the column types and order.

    :class:`~.base.Columns` already sorted and unique (the usual file) stay arrays, under
    the same rules; others become a frame here.
    """
    if isinstance(frame, Columns):
        stamps = frame.index.view(np.int64)
        if (stamps[1:] > stamps[:-1]).all():
            values = frame.values
            return Columns(frame.index, {name: values[name].astype(np.float64, copy=False) if name in PRICES
                                         else values[name] for name in _stored_order(values)}, TIME), 0
        frame = frame.to_frame()
    frame.index.name = TIME
    duplicates = 0
    stamps = frame.index.asi8
    if not (stamps[1:] > stamps[:-1]).all():  # not already sorted and unique (the usual file is)
        if not frame.index.is_monotonic_increasing:
            frame = frame.iloc[np.argsort(frame.index.values, kind="stable")]
        duplicated = frame.index.duplicated(keep="last")
        duplicates = int(duplicated.sum())
        if duplicates:
            frame = frame[~duplicated]
    order = _stored_order(frame.columns)
    known = [c for c in NUMBERS if c in frame]
    if list(frame.columns) != order:
        frame = frame[order]
    frame = frame.copy(deep=False)  # the columns changed below are this frame's own
    dtypes = frame.dtypes.to_dict()
    for name in PRICES:
        if name in frame and dtypes[name] != np.float64:
            frame[name] = frame[name].astype("float64")
    if "volume" in frame and dtypes["volume"].kind not in "if":
        frame["volume"] = frame["volume"].astype("float64")
    for name in frame.columns:
        if name not in known and not pd.api.types.is_numeric_dtype(dtypes[name]):
            frame[name] = _plain_or_json(frame[name])
    return frame, duplicates


def _stored_order(names) -> list[str]:
    """The stored order of columns: open, high, low, close, volume, then the others as they came."""
    names = list(names)
    return [c for c in NUMBERS if c in names] + [c for c in names if c not in NUMBERS]


def _plain_or_json(column: pd.Series) -> pd.Series:
    """Text stays text (missing values None); a column that mixes types or nests becomes JSON text.

    Both are plain object columns, which both store formats hold.
    """
    values = [None if _missing(v) else v for v in column.tolist()]
    if not all(v is None or isinstance(v, str) for v in values):
        values = [None if v is None else json.dumps(_plain(v)) for v in values]
    return pd.Series(values, index=column.index, dtype=object)


def _missing(value) -> bool:
    # JSON has no NaN, so a float NaN here is pandas' mark for a key a record lacked.
    return value is None or (isinstance(value, float) and math.isnan(value))


def plain_numbers(table: pa.Table) -> pa.Table:
    """Decimal columns as float64, as pandas converts them (each value correctly rounded,
    by way of its exact text); ``volume`` as int64 where every value is a whole number."""
    for i, field in enumerate(table.schema):
        if not pa.types.is_decimal(field.type):
            continue
        text = table.column(i).cast(pa.string())
        column = None
        if key(field.name) in ("volume", "vol") and field.type.scale == 0:
            try:
                column = text.cast(pa.int64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        if column is None:
            column = text.cast(pa.float64())
        table = table.set_column(i, field.name, column)
    return table


def _plain(value):
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, dt.timedelta)):
        return str(value)  # what JSON has no text for (a Parquet binary or duration value)
    return value


BATCH = 1 << 16  # records held as dicts at a time; the frames they become are far smaller


def check_records(numbered, text: bool = False, bad: BadLines | None = None,
                  checked: bool = False) -> tuple[pd.DataFrame | None, BadLines]:
    """``(line, record)`` pairs -> (frame of the good records or None, the bad ones, added to
    ``bad`` found before, such as lines that are not records at all).

    The pairs may come from a generator: they are taken a batch at a time, so memory
    holds one batch of records, the frames of those before, and two bad lines.
    ``checked``: the records have been through :func:`check_record` already (a
    :class:`BadRecord` or a record's error may then come from the generator itself).
    """
    bad = BadLines() if bad is None else bad
    frames: list[pd.DataFrame] = []
    records: list[dict] = []
    numbers: list[int] = []

    def flush() -> None:
        frame, bad_times = records_to_frame(records, numbers)
        for number, reason in bad_times:
            bad.add(number, reason)
        if frame is not None:
            frames.append(frame)
        records.clear()
        numbers.clear()

    for number, record in numbered:
        try:
            records.append(record if checked else check_record(record, text=text))
            numbers.append(number)
        except BadRecord as reason:
            bad.add(number, str(reason))
        if len(records) >= BATCH:
            flush()
    flush()
    if not frames:
        return None, bad
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, sort=False)
    if text:
        frame = _numbers_from_text(frame)
    return frame, bad


def settled(frame: pd.DataFrame | None, slow, on_bad_lines: str, name):
    """A reader's result: ``frame`` from its fast path or, where that is None, what its
    record-by-record path ``slow()`` returns, ``(frame of the good records or None,
    :class:`~.base.BadLines`)``, the bad lines settled (:func:`~.base.settle`); then
    sorted and de-duplicated (:func:`finish`)."""
    skipped, first_bad = 0, None
    if frame is None:
        frame, bad = slow()
        if bad:
            skipped, first_bad = settle(bad, on_bad_lines, name)
        if frame is None:
            return Parsed(None, skipped, 0, first_bad)
    _one_ticker(frame)
    frame, duplicates = finish(frame)
    return Parsed(frame, skipped, duplicates, first_bad)


# ---------------------------------------------------------------- what a stored frame says about its source

def _column_of(data, name: str):
    if isinstance(data, Columns):
        return data.values.get(name)
    return data[name].to_numpy() if data is not None and name in data else None


def adjusted_close_differs(data) -> bool:
    """Whether a stored frame has an ``adj_close`` that differs from its ``close`` (the close
    is then unadjusted: splits and dividends show as jumps, and ``--column adj_close`` is the one to correlate)."""
    close, adjusted = _column_of(data, "close"), _column_of(data, "adj_close")
    if close is None or adjusted is None or not np.issubdtype(np.asarray(adjusted).dtype, np.number):
        return False
    close, adjusted = np.asarray(close, dtype=np.float64), np.asarray(adjusted, dtype=np.float64)
    both = np.isfinite(close) & np.isfinite(adjusted)
    return bool(np.any(np.abs(close[both] - adjusted[both]) > 1e-9 * np.abs(close[both])))


def _one_ticker(frame) -> None:
    """A file whose ticker column holds several tickers is a long table: refused as one
    ticker's file (in a folder), never stored as one ticker named after the file."""
    held = held_tickers(frame)
    if held is not None:
        column, count, some = held
        raise PairscanError(f"its {column!r} column holds {count:,} tickers ({', '.join(some)}...): this is a long "
                            f"table, not one ticker's file; convert it on its own (pairscan convert FILE --to STORE)")


def held_tickers(data) -> tuple[str, int, list[str]] | None:
    """(column, how many, the first few) when a frame's ticker column holds more than one ticker."""
    if data is None or isinstance(data, Columns):
        return None
    for name in data.columns:
        if key(name) not in TICKER_NAMES or pd.api.types.is_numeric_dtype(data[name].dtype):
            continue
        values = data[name].dropna().unique()
        if len(values) > 1:
            return name, len(values), sorted(map(str, values))[:3]
    return None
