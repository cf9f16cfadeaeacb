"""Ingest: one JSON Lines file of a ticker's bars -> a clean frame, or a precise error.

The fast path is pyarrow's compiled JSON reader. Only when it fails, or what it read
breaks a rule, is the file read again line by line, to name the first bad line (or,
with ``on_bad_lines="skip"``, to keep the good ones).
"""

from __future__ import annotations

import io
import json
import math
import os
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
    ``volume`` when every record has one, and any extra keys as they are.
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
        frame, skipped, first_bad = _parse_slow(data, path, on_bad_lines)
        if frame is None:
            return Parsed(None, skipped, 0, first_bad)
    frame, duplicates = _finish(frame)
    return Parsed(frame, skipped, duplicates, first_bad)


def _parse_fast(data: bytes) -> pd.DataFrame | None:
    """The compiled reader; None when the file needs the line-by-line path."""
    try:
        table = pj.read_json(io.BytesIO(data))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    names = table.column_names
    if "timestamp" not in names or any(c not in names for c in REQUIRED):
        return None
    for name in names:
        column = table.column(name)
        if name in PRICES or name == "volume":
            if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
                if not (pa.types.is_null(column.type) and name not in REQUIRED):
                    return None
            if name == "volume" and pa.types.is_floating(column.type):
                return None  # a non-integer volume: let the slow path name the line
            if pa.types.is_floating(column.type) and not pc.all(
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


def _timestamps(column: pa.ChunkedArray) -> pd.DatetimeIndex | None:
    if pa.types.is_timestamp(column.type):
        values = column.to_pandas()
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        return pd.DatetimeIndex(values).as_unit("ns")
    if pa.types.is_integer(column.type):
        return pd.DatetimeIndex(pd.to_datetime(column.to_numpy(), unit="ms")).as_unit("ns")
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        try:
            values = pd.to_datetime(column.to_numpy(zero_copy_only=False), format="ISO8601", utc=True)
        except (ValueError, TypeError, OverflowError):
            return None
        return pd.DatetimeIndex(values.tz_localize(None)).as_unit("ns")
    return None


def _parse_slow(data: bytes, path: Path, on_bad_lines: str):
    """Read line by line; return (frame or None, bad lines skipped, first bad)."""
    records: list[dict] = []
    stamps: list[pd.Timestamp] = []
    skipped, first_bad = 0, None
    lines = data.split(b"\n")
    last = len(lines) - 1
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        truncated = number - 1 == last  # the file does not end with a newline here
        try:
            record, stamp = _check_line(raw, truncated)
        except _BadLine as bad:
            if on_bad_lines == "error":
                raise PairscanError(str(bad), path, number) from None
            skipped += 1
            first_bad = first_bad or f"line {number}: {bad}"
            continue
        records.append(record)
        stamps.append(stamp)
    if not records:
        return None, skipped, first_bad
    frame = pd.DataFrame.from_records(records)
    frame.index = pd.DatetimeIndex(stamps).as_unit("ns")
    for name in PRICES:
        if name in frame:
            frame[name] = frame[name].astype("float64")
    if "volume" in frame:
        volume = frame["volume"].astype("float64")
        frame["volume"] = volume.astype("int64") if volume.notna().all() else volume
    return frame, skipped, first_bad


class _BadLine(ValueError):
    pass


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _check_line(raw: bytes, truncated: bool) -> tuple[dict, pd.Timestamp]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _BadLine("not UTF-8 text (binary data?)") from None
    if "\x00" in text:
        raise _BadLine("binary data (NUL byte)")
    try:
        record = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        if truncated:
            raise _BadLine("truncated last line (the file ends inside a record)") from None
        raise _BadLine(f"invalid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise _BadLine(f"not a JSON object but {type(record).__name__}")
    if "timestamp" not in record:
        raise _BadLine("missing 'timestamp'")
    for name in REQUIRED:
        if name not in record or record[name] is None:
            raise _BadLine(f"missing {name!r}")
    for name in (*PRICES, "volume"):
        value = record.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _BadLine(f"{name!r} is not a number: {json.dumps(value)[:40]}")
        if not math.isfinite(value):
            raise _BadLine(f"{name!r} is not a finite number")
        if name == "volume" and not float(value).is_integer():
            raise _BadLine(f"'volume' is not an integer: {value}")
    return record, _parse_timestamp(record.pop("timestamp"))


def _parse_timestamp(value) -> pd.Timestamp:
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            stamp = pd.Timestamp(value, unit="ms")
        elif isinstance(value, str):
            stamp = pd.Timestamp(value)
        else:
            raise ValueError
    except (ValueError, TypeError, OverflowError):
        raise _BadLine(f"unparseable timestamp {json.dumps(value)[:40]}") from None
    if stamp is pd.NaT:
        raise _BadLine(f"unparseable timestamp {json.dumps(value)[:40]}")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp


def _finish(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Sort by time, keep the last of duplicate timestamps, fix the column types."""
    frame.index.name = "timestamp"
    if not frame.index.is_monotonic_increasing:
        frame = frame.iloc[np.argsort(frame.index.values, kind="stable")]
    duplicated = frame.index.duplicated(keep="last")
    duplicates = int(duplicated.sum())
    if duplicates:
        frame = frame[~duplicated]
    for name in PRICES:
        if name in frame and frame[name].dtype != np.float64:
            frame[name] = frame[name].astype("float64")
    for name in frame.columns:
        if name not in PRICES and name != "volume" and frame[name].dtype.kind not in "biufcM":
            # Text columns as plain objects (HDF5 stores those); nested values as JSON text.
            frame[name] = frame[name].map(
                lambda v: json.dumps(v) if isinstance(v, (dict, list, np.ndarray)) else v
            ).astype(object)
    return frame, duplicates
