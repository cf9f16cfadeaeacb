"""Per-ticker Parquet (``.parquet``): one ticker's table, typed by its writer.

A Parquet file has no lines: a bad value is named by its row (the first row is 1).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import PairscanError
from .base import BAD_LINE_MODES, DEFAULT_MAX_BYTES, Parsed, Reader, check_file, register
from .jsonl import settle
from .normalize import BadRecord, check_record, finish, records_to_frame, table_to_frame


@register
class Parquet(Reader):
    name = "parquet"
    suffixes = (".parquet",)

    def read(self, path, on_bad_lines="error", name=None, max_bytes=DEFAULT_MAX_BYTES) -> Parsed:
        if on_bad_lines not in BAD_LINE_MODES:
            raise PairscanError(f"--on-bad-lines must be error or skip, not {on_bad_lines!r}")
        path = Path(path)
        name = name or path
        check_file(path, max_bytes)
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise PairscanError(f"not a readable Parquet file ({exc})", name) from None
        try:
            return from_table(table, on_bad_lines, name)
        except PairscanError as err:
            if err.file is None:
                raise PairscanError(err.reason, name, err.line) from None
            raise


def from_table(table: pa.Table, on_bad_lines: str, name, lines=None, text: bool = False) -> Parsed:
    """A table -> Parsed; ``lines``: each row's line number in its file (default: row numbers)."""
    if table.num_rows == 0:
        return Parsed(None)
    frame = table_to_frame(table, text=text)
    skipped, first_bad = 0, None
    if frame is None:
        records, numbers, bad = [], [], []
        lines = list(range(1, table.num_rows + 1)) if lines is None else lines
        for number, record in zip(lines, table.to_pylist()):
            try:
                records.append(check_record(record, text=text))
                numbers.append(number)
            except BadRecord as reason:
                bad.append((number, str(reason)))
        frame, bad_times = records_to_frame(records, numbers, text=text)
        bad = sorted(bad + bad_times)
        if bad:
            skipped, first_bad = settle(bad, on_bad_lines, name)
        if frame is None:
            return Parsed(None, skipped, 0, first_bad)
    frame, duplicates = finish(frame)
    return Parsed(frame, skipped, duplicates, first_bad)
