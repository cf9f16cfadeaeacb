"""Wide tables: one CSV file with a time column and one column per ticker.

Finance sites, notebook exports and portfolio libraries write price panels this way
(``Date,AAPL,MSFT,...``): each ticker's column is its ``close``. A download library's
multi-row header (a row of fields ``Price,Close,High,...``, a row of tickers
``Ticker,AAPL,AAPL,...``, in either order, then ``Date,,,...``) is a wide table of
every field, its tickers from the header. A wide table is split, streamed, into one
folder of Parquet parts per ticker, as a long table is (:mod:`.table`), so each ticker
is then read like any other: the parts hold the time, the ticker's fields and each
row's line in the table. An empty cell is a missing value of that ticker alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import PairscanError
from .base import BOM, Parsed, register
from .compressed import head as file_head
from .csv import TIME_KEYS, first_rows, is_field, multirow_header
from .normalize import column_names, key, ticker_column
from .parquet import from_table
from .table import LINE, LongTable, _column_names, _kind

PANDAS_INDEX = "__index_level_0__"  # how pandas writes an unnamed index to Parquet
FLUSH_CELLS = 1 << 22  # cells of the table held before its parts are written: bounded memory


@dataclass(frozen=True)
class Shape:
    """How a wide table holds its tickers: its header's rows, the time column's position and
    name, and for each ticker its fields' columns (``{ticker: {field: position}}``)."""

    header_rows: int
    width: int
    time: int
    time_name: str
    tickers: dict[str, dict[str, int]]

    @property
    def fields(self) -> list[str]:
        return list(dict.fromkeys(f for fields in self.tickers.values() for f in fields))


def _head_rows(path: Path) -> list[list[str]]:
    data = file_head(path, 1 << 20)
    return first_rows(data[len(BOM):] if data.startswith(BOM) else data)


def shape(path: Path, forced: bool = False) -> Shape | None:
    """The wide shape of the table ``path``, or None if it is not one (``forced``: the user
    said it is; then a file that cannot be one is a :class:`PairscanError` saying why)."""
    parquet = _kind(path) == "parquet"
    header = None if parquet else multirow_header(_head_rows(path))
    if header is not None:
        fields, tickers, time = header
        found: dict[str, dict[str, int]] = {}
        for position, (field, ticker) in enumerate(zip(fields, tickers), start=1):
            if not field or not ticker:
                raise PairscanError(f"column {position + 1} of the multi-row header has no "
                                    f"{'field' if not field else 'ticker'}", path, 1)
            if field in found.setdefault(ticker, {}):
                raise PairscanError(f"the multi-row header names {field!r} of {ticker!r} twice", path, 1)
            found[ticker][field] = position
        return Shape(3, len(fields) + 1, 0, time, found)
    names = _column_names(path)
    times = [i for i, n in enumerate(names) if key(n) in TIME_KEYS or n == PANDAS_INDEX]
    if not forced:
        try:
            stored = column_names(tuple(names))
        except PairscanError:
            return None
        if ticker_column(names) is not None or "close" in stored.values():
            return None
        if not times and not (names and names[0] == "" and all(names[1:])):
            return None  # a wide table's first column may be pandas' unnamed index
        if any(is_field(n) for n in names):
            return None  # one ticker's file, whose close has another name
    time = times[0] if times else 0
    others = [i for i in range(len(names)) if i != time]
    if not others:
        raise PairscanError(f"a wide table needs a time column and one column per ticker; its only column is "
                            f"{names[time]!r}" if names else "a wide table needs a header line", path, 1)
    return Shape(0 if parquet else 1, len(names), time, names[time] or "timestamp",
                 {names[i]: {"close": i} for i in others})


@register
class WideTable(LongTable):
    name = "wide"
    suffixes = (".csv", ".txt", ".parquet")
    rank = -1  # asked before a long table: a file with no ticker column may be wide

    def table_options(self, path: Path, ticker_column: str | None, layout: str) -> dict | None:
        if layout == "long" or (layout == "auto" and ticker_column is not None):
            return None
        if shape(path, forced=layout == "wide") is None:
            return None
        return {"ticker_column": None}

    def split(self, path: Path, scratch: Path, column=None, on_bad_lines: str = "error",
              bad=None) -> list[tuple[str, Path]]:
        """Stream the table into ``scratch/<n>`` parts, one per ticker; return (ticker, part folder),
        sorted by ticker. A ticker with no value at all has no part."""
        layout = shape(path, forced=True)
        names = [f"c{i}" for i in range(layout.width)]
        tickers = sorted(layout.tickers)
        fields = layout.fields
        written: set[int] = set()
        pending: list[pa.RecordBatch] = []
        state = {"line": layout.header_rows + 1, "flushes": 0, "cells": 0}

        def flush() -> None:
            if not pending:
                return
            table = pa.Table.from_batches(pending)
            lines = pa.array(np.arange(state["line"], state["line"] + table.num_rows, dtype=np.int64))
            state["line"] += table.num_rows
            pending.clear()
            state["cells"] = 0
            for number, ticker in enumerate(tickers):
                columns = layout.tickers[ticker]
                arrays, valid = [table.column(layout.time)], None
                for field in fields:
                    values = (table.column(names[columns[field]]) if field in columns
                              else pa.nulls(table.num_rows, pa.string()))
                    arrays.append(values)
                    present = values.is_valid()
                    valid = present if valid is None else pc.or_(valid, present)
                arrays.append(lines)
                part = pa.table(arrays, names=["timestamp", *fields, LINE]).filter(valid)
                if part.num_rows:
                    folder = scratch / f"{number:06d}"
                    if number not in written:
                        folder.mkdir()
                        written.add(number)
                    # Arrow's own file format: written at the speed of a copy (a part is read once, soon).
                    with pa.ipc.new_file(folder / f"{state['flushes']:06d}.arrow", part.schema) as out:
                        out.write_table(part)
            state["flushes"] += 1

        try:
            scratch.mkdir(parents=True, exist_ok=True)
            for batch in _batches(path, layout, names):
                pending.append(batch)
                state["cells"] += batch.num_rows * layout.width
                if state["cells"] >= FLUSH_CELLS:
                    flush()
            flush()
        except (OSError, pa.ArrowException) as exc:
            raise _unreadable(path, str(exc).splitlines()[0]) from None
        return [(tickers[n], scratch / f"{n:06d}") for n in sorted(written)]

    @staticmethod
    def _part(path: Path) -> pa.Table:
        """A ticker's part: the Arrow files of its folder, as one table."""
        tables = []
        for file in sorted(Path(path).iterdir()):
            with pa.OSFile(str(file)) as source:
                tables.append(pa.ipc.open_file(source).read_all())
        return pa.concat_tables(tables)

    @classmethod
    def first_line(cls, part: Path) -> int:
        return pc.min(cls._part(part).column(LINE)).as_py()

    def parse(self, path, on_bad_lines, name, max_bytes, text=False, ticker=None) -> Parsed:
        """Read one ticker's part of a wide table; errors name the table, the line and
        (a line holding every ticker) the ticker whose value is bad."""
        try:
            table = self._part(path)
        except (OSError, pa.ArrowException) as exc:
            raise PairscanError(f"cannot read a part of the wide table ({str(exc).splitlines()[0]})", name) from None
        table = table.sort_by(LINE)
        whose = "" if ticker is None else f"{ticker}'s "
        try:
            parsed = from_table(table.drop_columns([LINE]), on_bad_lines, name, table.column(LINE).to_pylist,
                                text=text)
        except PairscanError as err:
            raise PairscanError(whose + err.reason, err.file, err.line) from None
        if parsed.first_bad and whose:
            line, _, reason = parsed.first_bad.partition(": ")
            parsed = replace(parsed, first_bad=f"{line}: {whose}{reason}")
        return parsed


RAGGED = re.compile(r"Expected (\d+) columns, got (\d+): (.*)")


def _unreadable(path: Path, message: str) -> PairscanError:
    """pyarrow's message of a table it cannot read, as one line: a row of the wrong width
    named by its line (pyarrow gives the row, not where it is)."""
    ragged = RAGGED.search(message)
    if ragged is None:
        return PairscanError(f"cannot read the wide table ({message})", path)
    want, got, row = int(ragged[1]), int(ragged[2]), ragged[3].rstrip("\r")
    where = path
    with open(path, "rb") as lines:  # the error path alone reads the file again, a line at a time
        for number, line in enumerate(lines, 1):
            if line.rstrip(b"\r\n").decode("utf-8", "replace") == row:
                where = f"{path}:{number}"
                break
    return PairscanError(f"{got} values where the header names {want} columns; every row of a wide table needs "
                         "one value per column (empty where a ticker has none)", where)


def _batches(path: Path, layout: Shape, names: list[str]):
    """The table's rows, a batch at a time, its columns named ``names`` (CSV: every value as text)."""
    if _kind(path) == "parquet":
        source = pq.ParquetFile(path)
        for batch in source.iter_batches(batch_size=max(1, FLUSH_CELLS // layout.width // 4)):
            yield pa.RecordBatch.from_arrays(batch.columns, names=names)
        return
    yield from pacsv.open_csv(path, read_options=pacsv.ReadOptions(
        skip_rows=layout.header_rows, column_names=names, block_size=1 << 22),
        convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                             strings_can_be_null=True))

