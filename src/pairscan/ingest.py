"""Ingest: one JSON Lines file of a ticker's bars -> a clean frame, or a precise error.

The fast path is a compiled JSON reader (polars, or pyarrow in a forked worker). Only when it fails, or what it read
breaks a rule, is the file read again line by line, to find every bad line and name
the first (or, with ``on_bad_lines="skip"``, to keep the good ones). Both paths read
timestamps with the same rules, so a file stores the same frame whichever path read it.
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from .errors import PairscanError

REQUIRED = ("close",)
PRICES = ("open", "high", "low", "close")
BAD_LINE_MODES = ("error", "skip")
BOM = b"\xef\xbb\xbf"


@dataclass
class Parsed:
    """A ticker's frame and what parsing it dropped."""

    frame: pd.DataFrame | None  # None: the file holds no records
    bad_lines_skipped: int = 0
    duplicates_dropped: int = 0
    first_bad: str | None = None  # "line N: reason" of the first skipped line


def parse_file(path: str | os.PathLike, on_bad_lines: str = "error") -> Parsed:
    """Parse one ``<ticker>.json`` file (JSON Lines) into a stored-format frame.

    Returns a :class:`Parsed` whose frame is indexed by a sorted, unique, timezone-naive
    (UTC) ``DatetimeIndex`` named ``timestamp``, with float64 price columns, an int64
    ``volume`` when every record has one, and any extra keys as they are (an extra
    key whose values mix types, or nest, is kept as JSON text).
    Raises :class:`PairscanError` naming the file, the first bad line and the reason,
    unless ``on_bad_lines="skip"``, which keeps the good records and counts the rest.
    """
    if on_bad_lines not in BAD_LINE_MODES:
        raise PairscanError(f"--on-bad-lines must be error or skip, not {on_bad_lines!r}")
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PairscanError(f"cannot read ({exc.strerror})", path) from None
    if data.startswith(BOM):
        data = data[len(BOM):]
    if not data[:4096].strip() and not data.strip():  # cheap test first: files are big
        return Parsed(None)
    frame = _parse_fast(data)
    skipped, first_bad = 0, None
    if frame is None:
        frame, bad = _parse_slow(data)
        if bad:
            number, reason = bad[0]
            if on_bad_lines == "error":
                others = len(bad) - 1
                more = f" (and {others} more bad line{'s' if others > 1 else ''})" if others else ""
                raise PairscanError(reason + more, path, number)
            skipped, first_bad = len(bad), f"line {number}: {reason}"
        if frame is None:
            return Parsed(None, skipped, 0, first_bad)
    frame, duplicates = _finish(frame)
    return Parsed(frame, skipped, duplicates, first_bad)


def _parse_fast(data: bytes) -> pd.DataFrame | None:
    """The compiled reader (polars); None when the file needs the line-by-line path.

    Anything the reader refuses or gets wrong goes to the line-by-line path, which
    is the authority on what a bad line is; here the checks are only on types.
    """
    if not data.isascii():
        try:
            data.decode("utf-8")  # the reader does not check every byte of every string
        except UnicodeDecodeError:
            return None
    table = _read_table(data)
    if table is None:
        return None
    names = table.column_names
    if "timestamp" not in names or any(c not in names for c in REQUIRED):
        return None
    for name in names:
        column = table.column(name)
        kind = column.type
        if pa.types.is_nested(kind):
            return None  # nested extras: the slow path turns them into JSON text
        if name in PRICES or name == "volume":
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
                if not (pa.types.is_null(kind) and name not in REQUIRED):
                    return None
            if name == "volume" and pa.types.is_floating(kind):
                return None  # a non-integer volume: let the slow path name the line
            if pa.types.is_floating(kind) and not pc.all(
                pc.or_kleene(pc.is_finite(column), pc.is_null(column))
            ).as_py():
                return None  # NaN / Infinity are not JSON numbers
        if name in REQUIRED and column.null_count:
            return None
    stamps = table.column("timestamp")
    if stamps.null_count:
        return None
    index = _timestamps(stamps)
    if index is None:
        return None
    frame = table.drop_columns(["timestamp"]).to_pandas()
    frame.index = index
    return frame


_polars_pid: int | None = None  # the process that started polars' thread pool


def _read_table(data: bytes) -> pa.Table | None:
    """JSON Lines -> an Arrow table, or None where the compiled reader refuses it.

    polars is the faster reader, but its thread pool does not survive ``fork``: in a
    child forked after this process used it, polars would wait forever for threads
    that no longer exist, so such a child reads with pyarrow instead.
    """
    global _polars_pid
    if _polars_pid in (None, os.getpid()):
        import polars as pl

        _polars_pid = os.getpid()
        try:
            # The schema is guessed from the first rows, four times faster than from all
            # of them; but a key that first appears later would be dropped. Unless every
            # row surely has every key, read again guessing from all rows.
            frame = pl.read_ndjson(io.BytesIO(data))
            if not _every_row_has_every_key(frame, data):
                frame = pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
            return frame.to_arrow()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # noqa: BLE001 - polars panics (a BaseException) on some input
            return None  # every refusal means: read it line by line
    if _too_deep(data):
        return None
    try:
        table = pj.read_json(io.BytesIO(data))
        # pyarrow reads extra keys that look like times as times; keep them as written.
        times = [n for n in table.column_names if n != "timestamp" and pa.types.is_timestamp(table.schema.field(n).type)]
        if times:
            schema = pa.schema([(name, pa.string()) for name in times])
            names = table.column_names
            table = pj.read_json(io.BytesIO(data), parse_options=pj.ParseOptions(explicit_schema=schema))
            table = table.select(names)  # the schema's columns came first; keep the file's order
        return table
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _every_row_has_every_key(frame, data: bytes) -> bool:
    """Whether no row holds a key the frame lacks: then each row has exactly two quotes
    per key and per text value, and a key more would add two. (An escaped quote inside
    a text value also adds one: that only costs the full re-read.)"""
    import polars as pl

    if frame.null_count().sum_horizontal().item():
        return False
    text = sum(kind == pl.String for kind in frame.schema.values())
    return data.count(b'"') == frame.height * 2 * (frame.width + text)


def polars_started() -> bool:
    """Whether this process has used polars' thread pool (so ``fork`` is unsafe)."""
    return _polars_pid == os.getpid()


MAX_DEPTH = 100  # of nested arrays and objects; real records have one or two


def _too_deep(data: bytes) -> bool:
    """Whether the text may nest deeper than ``MAX_DEPTH``.

    pyarrow's reader recurses without a bound and crashes the interpreter on input
    nested some ten thousand deep, so such files never reach it. Brackets inside
    strings count too: the answer errs towards the slow path, which is safe.
    """
    if b"[" not in data and data.count(b"{") <= data.count(b"\n") + 1:
        return False  # the usual file: one object a line, no arrays
    byte = np.frombuffer(data, dtype=np.uint8)
    step = (byte == ord("[")).astype(np.int32) + (byte == ord("{")) - (byte == ord("]")) - (byte == ord("}"))
    return int(np.cumsum(step).max(initial=0)) > MAX_DEPTH


def _timestamps(column: pa.ChunkedArray) -> pd.DatetimeIndex | None:
    """The column as a naive UTC index, or None if any value is not a valid time."""
    if pa.types.is_timestamp(column.type):
        values = column.to_pandas()
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        try:
            return pd.DatetimeIndex(values).as_unit("ns")
        except (ValueError, OverflowError):  # outside the years 1677-2262
            return None
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        # Plain ISO 8601 without an offset first, at compiled speed (arrow's cast is
        # strict: no 30 February, nothing outside what a nanosecond index holds);
        # anything else takes the general parser.
        try:
            return pd.DatetimeIndex(column.cast(pa.timestamp("ns")).to_numpy())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    if pa.types.is_integer(column.type) or pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        index, bad = _parse_stamps(column.to_pylist())
        return None if bad.any() else index
    return None


# The times a nanosecond index can hold, as epoch milliseconds.
_MIN_MS = -(2**63) // 10**6 + 1
_MAX_MS = (2**63 - 1) // 10**6


def _parse_stamps(values: list) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Raw ``timestamp`` values -> (naive UTC index, mask of the values that are not times).

    ISO 8601 text (an offset converts to UTC) or integer epoch milliseconds, between
    the years 1677 and 2262 (what a nanosecond index holds). Bad values become NaT.
    """
    n = len(values)
    ms = np.zeros(n, dtype=np.int64)
    is_ms = np.zeros(n, dtype=bool)
    text = np.full(n, None, dtype=object)
    for i, value in enumerate(values):
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            if _MIN_MS <= value <= _MAX_MS:
                ms[i], is_ms[i] = value, True
        elif isinstance(value, str) and value[:1].isdigit() and value.isascii():
            # pandas also reads words such as "now"; a record's time must be written out.
            text[i] = value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns about the values it cannot parse
        parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    out = np.full(n, np.datetime64("NaT", "ns"))
    stamps = parsed.tz_localize(None)
    in_range = (stamps >= pd.Timestamp.min) & (stamps <= pd.Timestamp.max)  # NaT compares False
    out[in_range] = stamps[in_range].as_unit("ns").values
    out[is_ms] = ms[is_ms].astype("datetime64[ms]").astype("datetime64[ns]")
    bad = np.isnat(out)
    return pd.DatetimeIndex(out), bad


def _parse_slow(data: bytes) -> tuple[pd.DataFrame | None, list[tuple[int, str]]]:
    """Read line by line; return (frame of the good records or None, [(line, reason)] of the bad)."""
    records: list[dict] = []
    numbers: list[int] = []
    bad: list[tuple[int, str]] = []
    lines = data.split(b"\n")
    last = len(lines)  # a last line with no newline after it
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            records.append(_check_line(raw, truncated=number == last))
            numbers.append(number)
        except _BadLine as reason:
            bad.append((number, str(reason)))
    stamps = [r.pop("timestamp") for r in records]
    index, unparsed = _parse_stamps(stamps)
    if unparsed.any():
        bad += [(numbers[i], f"unparseable timestamp {json.dumps(stamps[i])[:40]} (expected ISO 8601 text "
                             "or epoch milliseconds, years 1677-2262)") for i in np.flatnonzero(unparsed)]
        bad.sort()
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
    return frame, bad


class _BadLine(ValueError):
    pass


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _check_line(raw: bytes, truncated: bool) -> dict:
    """The line's record, its timestamp not yet parsed; :class:`_BadLine` says why not."""
    if b"\x00" in raw:
        raise _BadLine("binary data (NUL bytes), not JSON text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _BadLine("binary data (not UTF-8 text), not JSON text") from None
    try:
        record = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        if truncated:
            raise _BadLine("truncated last line (the file ends inside a record)") from None
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise _BadLine(f"invalid JSON ({detail})") from None
    if not isinstance(record, dict):
        raise _BadLine(f"not a JSON object but {_JSON_TYPES.get(type(record), type(record).__name__)}")
    if "timestamp" not in record:
        raise _BadLine("missing 'timestamp'")
    for name in REQUIRED:
        if record.get(name) is None:
            raise _BadLine(f"missing {name!r}")
    for name in (*PRICES, "volume"):
        value = record.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _BadLine(f"{name!r} is not a number: {json.dumps(value)[:40]}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise _BadLine(f"{name!r} is out of range: {json.dumps(value)[:40]}")
        if name == "volume" and not (number.is_integer() and -(2**63) <= value < 2**63):
            raise _BadLine(f"'volume' is not a 64-bit integer: {json.dumps(value)[:40]}")
    timestamp = record["timestamp"]
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, str)):
        raise _BadLine(f"unparseable timestamp {json.dumps(timestamp)[:40]} (expected ISO 8601 text or "
                       "epoch milliseconds)")
    return record


_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
               type(None): "null"}


def _finish(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Sort by time, keep the last of duplicate timestamps, fix the column types and order."""
    frame.index.name = "timestamp"
    if not frame.index.is_monotonic_increasing:
        frame = frame.iloc[np.argsort(frame.index.values, kind="stable")]
    duplicated = frame.index.duplicated(keep="last")
    duplicates = int(duplicated.sum())
    if duplicates:
        frame = frame[~duplicated]
    known = [c for c in (*PRICES, "volume") if c in frame]
    frame = frame[known + [c for c in frame.columns if c not in known]].copy()
    for name in PRICES:
        if name in frame and frame[name].dtype != np.float64:
            frame[name] = frame[name].astype("float64")
    for name in frame.columns:
        if name not in known and not pd.api.types.is_numeric_dtype(frame[name].dtype):
            frame[name] = _plain_or_json(frame[name])
    return frame, duplicates


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


def _plain(value):
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
