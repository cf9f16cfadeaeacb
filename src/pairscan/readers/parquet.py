"""Per-ticker Parquet (``.parquet``): one ticker's table, typed by its writer.

A Parquet file has no lines: a bad value is named by its row (the first row is 1).
"""

from __future__ import annotations


import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import PairscanError
from .base import Parsed, Reader, check_file, register
from .bounds import MAX_READ_BYTES, size_text
from .normalize import check_records, plain_numbers, settled, table_to_frame


@register
class Parquet(Reader):
    name = "parquet"
    suffixes = (".parquet",)
    compressible = False  # Parquet compresses its own columns

    def parse(self, path, on_bad_lines, name, max_bytes) -> Parsed:
        check_file(path, max_bytes)
        try:
            meta = pq.read_metadata(path)
            unpacked = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            if unpacked > MAX_READ_BYTES:  # compressed columns can unpack to any size
                raise PairscanError(f"its columns unpack to {unpacked} bytes, more than the "
                                    f"{size_text(MAX_READ_BYTES)} of one ticker's file pairscan reads at once", name)
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise PairscanError(f"not a readable Parquet file ({exc})", name) from None
        return from_table(table, on_bad_lines, name)


def from_table(table: pa.Table, on_bad_lines: str, name, lines=None, text: bool = False) -> Parsed:
    """A table -> Parsed; ``lines``: a function returning each row's line number in its file,
    called only for a table with a bad row (default: row numbers)."""
    if table.num_rows == 0:
        return Parsed(None)
    table = plain_numbers(table)

    def slow():
        numbers = range(1, table.num_rows + 1) if lines is None else lines()
        rows = (row for batch in table.to_batches(max_chunksize=1 << 16) for row in batch.to_pylist())
        return check_records(zip(numbers, rows), text=text)

    return settled(table_to_frame(table, text=text), slow, on_bad_lines, name)
