"""Parquet (``.parquet``): ``pd.read_parquet(path)`` reads a stored file."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import PairscanError
from ...readers.base import Columns
from .rows import rows_between

NAME = "parquet"
SUFFIX = ".parquet"

# How Parquet files are written (none of it changes what pandas reads back). Measured
# serially on twenty years of a ticker's daily bars (CPU time to build a file, mean size),
# with integer columns and the times delta-encoded (DELTA_BINARY_PACKED: sorted times and
# volumes are mostly small differences; a third smaller than plain): snappy 0.51 ms,
# 105 kB; LZ4 0.55 ms, 92 kB; zstd 0.88 ms, 87 kB. A convert writes thousands of such
# files, so a fast codec; snappy rather than LZ4 because every Parquet reader has it (LZ4
# in Parquet is the LZ4_RAW codec, which Java's readers only gained in 2022). No
# dictionaries: prices seldom repeat, so they cost time and bytes.
PARQUET_OPTIONS = {"compression": "snappy", "use_dictionary": False}


def image(frame: pd.DataFrame | Columns, name: str = ""):
    """The Parquet file ``frame.to_parquet`` writes, as a buffer built in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = _arrow_table(frame)
    if table is None and isinstance(frame, Columns):
        frame = frame.to_frame()
    if table is None:
        sink = io.BytesIO()
        frame.to_parquet(sink, engine="pyarrow", compression=PARQUET_OPTIONS["compression"])
        return sink.getbuffer()
    integers = {field.name: "DELTA_BINARY_PACKED" for field in table.schema
                if pa.types.is_integer(field.type) or pa.types.is_timestamp(field.type)}
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, column_encoding=integers, **PARQUET_OPTIONS)
    return sink.getvalue()


_ARROW_SCHEMAS: dict[tuple, object] = {}


def _arrow_table(frame: pd.DataFrame | Columns):
    """The Arrow table ``frame.to_parquet`` writes, built from the columns' arrays, for a
    ticker's usual frame (a naive nanosecond index, float64 and int64 columns); else None."""
    import pyarrow as pa

    if isinstance(frame, Columns):
        stamps, name, names, arrays = frame.index, frame.name, list(frame.values), list(frame.values.values())
        dtypes = tuple(a.dtype for a in arrays)
    else:
        index = frame.index
        if not isinstance(index, pd.DatetimeIndex) or index.dtype != np.dtype("datetime64[ns]"):
            return None
        stamps, name, names, dtypes = index.values, index.name, list(frame.columns), tuple(frame.dtypes)
        arrays = None
    shape = (tuple(names), dtypes, name)
    if (stamps.dtype != np.dtype("datetime64[ns]") or not isinstance(name, str) or name in shape[0]
            or len(set(shape[0])) != len(shape[0]) or not all(isinstance(c, str) for c in shape[0])
            or not all(d in (np.dtype(np.float64), np.dtype(np.int64)) for d in shape[1])):
        return None
    schema = _ARROW_SCHEMAS.get(shape)
    if schema is None:  # with pandas' metadata, as to_parquet writes it
        empty = frame.iloc[:0] if arrays is None else Columns(stamps[:0], {c: a[:0] for c, a in zip(names, arrays)},
                                                               name).to_frame()
        schema = _ARROW_SCHEMAS[shape] = pa.Schema.from_pandas(empty)
    if arrays is None:
        arrays = [column.to_numpy() for _, column in frame.items()]
    # NaN is a missing value, as pandas writes it (checked first: that conversion is slow)
    columns = [pa.array(values, from_pandas=values.dtype.kind == "f" and bool(np.isnan(values).any()))
               for values in arrays]
    return pa.Table.from_arrays(columns + [pa.array(stamps)], schema=schema)


def _check(path: Path, schema, columns=None) -> None:
    """Refuse a file whose columns are not of the kinds pairscan writes (timestamps,
    numbers, text): an extension type (some are pickles), a nested or binary column."""
    import pyarrow as pa

    if "timestamp" in schema.names and not pa.types.is_timestamp(schema.field("timestamp").type):
        raise foreign(path, f"its timestamp column is {schema.field('timestamp').type}")
    for field in schema:
        if columns is not None and field.name not in columns:
            continue
        kind = field.type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
                or pa.types.is_timestamp(kind) or pa.types.is_decimal(kind) or pa.types.is_null(kind)
                or pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise foreign(path, f"{kind} column {field.name!r}")


def foreign(path: Path, why: str) -> PairscanError:
    """The error for a file that is not of the layout pairscan writes."""
    return PairscanError(f"not a store file pairscan wrote ({why}); convert the source again", path)


def read_frame(path: Path) -> pd.DataFrame:
    """The whole stored frame, as ``pd.read_parquet(path)`` returns it."""
    import pyarrow.parquet as pq

    _check(path, pq.read_schema(path))
    return pd.read_parquet(path, engine="pyarrow")


def _open_column(path: Path, column: str):
    """The file, once its timestamps and ``column`` are known to be pairscan's layout and numeric."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    schema = file.schema_arrow
    if "timestamp" not in schema.names:
        raise foreign(path, "no timestamp column")
    if column not in schema.names:
        raise KeyError(column)
    _check(path, schema, ("timestamp", column))
    kind = schema.field(column).type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        raise PairscanError(f"column {column!r} is not numeric", path)
    return file


def read_column(path: Path, column: str):
    """``(index, values)`` of ``column``, reading only that column and the timestamps."""
    file = _open_column(path, column)
    table = file.read(columns=["timestamp", column])
    index = pd.DatetimeIndex(table.column("timestamp").to_numpy(), name="timestamp")
    return index, table.column(column).to_numpy()


def read_column_rows(path: Path, column: str, first, last):
    """:func:`read_column` of the rows from ``first`` to ``last`` (both included, None:
    open): row groups outside them skipped by their statistics, then the exact cut."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = _open_column(path, column)
    bounds = [("timestamp", op, bound) for op, bound in ((">=", first), ("<=", last)) if bound is not None]
    try:
        table = pq.read_table(path, columns=["timestamp", column], filters=bounds or None)
    except (pa.ArrowException, TypeError, ValueError):  # bounds this file cannot take (zoned times): read it all
        table = file.read(columns=["timestamp", column])
    stamps = np.asarray(pd.DatetimeIndex(table.column("timestamp").to_numpy()).as_unit("ns").values)
    rows = rows_between(stamps, first, last)  # the filters keep whole row groups: the exact cut
    return stamps[rows], table.column(column).to_numpy()[rows]


def read_index(path: Path) -> np.ndarray | None:
    """The timestamps alone (``datetime64[ns]``); None where they cannot be read so."""
    with contextlib.suppress(Exception):
        import pyarrow as pa
        import pyarrow.parquet as pq

        file = pq.ParquetFile(path)
        if pa.types.is_timestamp(file.schema_arrow.field("timestamp").type):
            table = file.read(columns=["timestamp"])
            return np.asarray(pd.DatetimeIndex(table.column("timestamp").to_numpy()).as_unit("ns").values)
    return None


def span(path: Path):
    """The first and last timestamps, from the row groups' statistics; None without them."""
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(path).metadata
    where = metadata.schema.names.index("timestamp")
    lows, highs = [], []
    for g in range(metadata.num_row_groups):
        stats = metadata.row_group(g).column(where).statistics
        if stats is None or not stats.has_min_max:
            return None
        lows.append(pd.Timestamp(stats.min))
        highs.append(pd.Timestamp(stats.max))
    return (min(lows), max(highs)) if lows else None
