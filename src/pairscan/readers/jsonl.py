"""JSON Lines (``.json``, ``.jsonl``, ``.ndjson``): one object a line, the seed's format.

The fast path is a compiled JSON reader (polars, or pyarrow in a forked worker). Only
when it fails, or what it read breaks a rule, is the file read again line by line, to
find every bad line and name the first (or, with ``on_bad_lines="skip"``, to keep the
good ones). Both paths hand their values to the same normalisation, so a file stores
the same frame whichever path read it.
"""

from __future__ import annotations

import io
import json

import pandas as pd
import pyarrow as pa
import pyarrow.json as pj

from ..errors import PairscanError
from .base import DEFAULT_MAX_BYTES, BadLines, Columns, Parsed, Reader, may_use_polars, read_bytes, register
from .bounds import line_problems, outline, utf8_error
from .normalize import BadRecord, check_record, check_records, settled, table_to_frame


@register
class JsonLines(Reader):
    name = "jsonl"
    suffixes = (".json", ".jsonl", ".ndjson")

    def parse(self, path, on_bad_lines, name, max_bytes) -> Parsed:
        return from_bytes(read_bytes(path, max_bytes), on_bad_lines, name)


def parse_file(path, on_bad_lines: str = "error", name=None, max_bytes: int = DEFAULT_MAX_BYTES) -> Parsed:
    """Parse one JSON Lines file into a stored-format frame.

    Returns a :class:`Parsed` whose frame is indexed by a sorted, unique, timezone-naive
    (UTC) ``DatetimeIndex`` named ``timestamp``, with float64 price columns, an int64
    ``volume`` when every record has one, and any extra keys as they are (an extra
    key whose values mix types, or nest, is kept as JSON text).
    Raises :class:`PairscanError` naming the file, the first bad line and the reason,
    unless ``on_bad_lines="skip"``, which keeps the good records and counts the rest.
    """
    return JsonLines().read(path, on_bad_lines, name, max_bytes)


def from_bytes(data: bytes, on_bad_lines: str, name) -> Parsed:
    if not data or data.isspace():
        return Parsed(None)
    return check_table(parse_table(data), data, on_bad_lines, name)


def parse_table(data: bytes) -> pa.Table | None:
    """The compiled reader's table of the file's bytes; None when the file needs the line-by-line path.

    No compiled reader sees a line too long or nested too deeply (see :mod:`.bounds`).
    """
    shape = outline(data)
    if line_problems(data, shape=shape):
        return None
    if utf8_error(data) is not None:  # the reader does not check every byte of every string
        return None
    return _read_table(data, shape.count(b'"'))


def check_table(table: pa.Table | None, data: bytes, on_bad_lines: str, name) -> Parsed:
    """The stored-format frame of a parsed table, or of ``data`` read line by line if the
    table is None or breaks a rule (see :func:`parse_table`)."""
    frame = None if table is None else table_to_frame(table)
    return settled(frame, lambda: _parse_slow(data), on_bad_lines, name)


def _parse_fast(data: bytes) -> pd.DataFrame | None:
    """The compiled reader's frame; None when the file needs the line-by-line path."""
    table = parse_table(data)
    frame = None if table is None else table_to_frame(table)
    return frame.to_frame() if isinstance(frame, Columns) else frame


def _read_table(data: bytes, quotes: int) -> pa.Table | None:
    """JSON Lines -> an Arrow table, or None where the compiled reader refuses it."""
    if may_use_polars():
        import polars as pl

        try:
            # The schema is guessed from the first rows, four times faster than from all
            # of them; but a key that first appears later would be dropped. Unless every
            # row surely has every key, read again guessing from all rows.
            frame = pl.read_ndjson(io.BytesIO(data))
            if not _every_row_has_every_key(frame, quotes):
                frame = pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
            return frame.to_arrow()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # noqa: BLE001 - polars panics (a BaseException) on some input
            return None  # every refusal means: read it line by line
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


def _every_row_has_every_key(frame, quotes: int) -> bool:
    """Whether no row holds a key the frame lacks: then each row has exactly two quotes
    per key and per text value, and a key more would add two. (An escaped quote inside
    a text value also adds one: that only costs the full re-read.)"""
    import polars as pl

    if any(column.null_count() for column in frame.get_columns()):  # kept with each column: no pass
        return False
    text = sum(kind == pl.String for kind in frame.schema.values())
    return quotes == frame.height * 2 * (frame.width + text)


def _parse_slow(data: bytes) -> tuple[pd.DataFrame | None, BadLines]:
    """Read line by line; return (frame of the good records or None, the bad lines).

    One line at a time, a batch of records at a time (:func:`check_records`): memory
    does not grow with the number of lines, good or bad.
    """
    refused = line_problems(data)  # never handed to a parser: named as they are
    bad = BadLines(refused.items())
    last = data.count(b"\n") + 1  # a last line with no newline after it

    def records():
        for number, raw in enumerate(io.BytesIO(data), start=1):
            if number in refused or not raw.strip():
                continue
            try:
                yield number, _check_line(raw, truncated=number == last)
            except BadRecord as reason:
                bad.add(number, str(reason))

    return check_records(records(), bad=bad, checked=True)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _check_line(raw: bytes, truncated: bool) -> dict:
    """The line's record, its time not yet parsed; :class:`BadRecord` says why not."""
    if b"\x00" in raw:
        raise BadRecord("binary data (NUL bytes), not JSON text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRecord("binary data (not UTF-8 text), not JSON text") from None
    try:
        record = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        if truncated:
            raise BadRecord("truncated last line (the file ends inside a record)") from None
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise BadRecord(f"invalid JSON ({detail})") from None
    if not isinstance(record, dict):
        raise BadRecord(f"not a JSON object but {_JSON_TYPES.get(type(record), type(record).__name__)}")
    try:
        return check_record(record)
    except PairscanError as err:  # two keys that name one column
        raise BadRecord(err.reason) from None


_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
               type(None): "null"}
