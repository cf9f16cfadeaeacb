"""Per-ticker Parquet (``.parquet``): one ticker's table, typed by its writer.

A Parquet file has no lines: a bad value is named by its row (the first row is 1).
"""

from __future__ import annotations


import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import PairscanError
from .base import Parsed, Reader, check_file, register
from .normalize import check_records, settled, table_to_frame


@register
class Parquet(Reader):
    name = "parquet"
    suffixes = (".parquet",)

    def parse(self, path, on_bad_lines, name, max_bytes) -> Parsed:
        check_file(path, max_bytes)
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise PairscanError(f"not a readable Parquet file ({exc})", name) from None
        return from_table(table, on_bad_lines, name)


def from_table(table: pa.Table, on_bad_lines: str, name, lines=None, text: bool = False) -> Parsed:
    """A table -> Parsed; ``lines``: a function returning each row's line number in its file,
    called only for a table with a bad row (default: row numbers)."""
    if table.num_rows == 0:
        return Parsed(None)

    def slow():
        numbers = range(1, table.num_rows + 1) if lines is None else lines()
        return check_records(zip(numbers, table.to_pylist()), text=text)

    return settled(table_to_frame(table, text=text), slow, on_bad_lines, name)
