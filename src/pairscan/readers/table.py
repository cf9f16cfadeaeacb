"""Long tables: one CSV, Parquet or JSON Lines file with a ticker column, many tickers.

The table is split, streamed, into one folder of Parquet parts per ticker (pyarrow's
dataset scanner and writer: memory stays bounded however large the table is), each row
keeping its line in the table so that a bad one is named ``table:line``. Each part is
then a ticker's task like any per-ticker file, through the same normalisation.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..errors import PairscanError
from .base import BOM, Parsed, Reader, register
from .bounds import encoding_problem, file_problem, line_problems
from .compressed import compression, head as file_head, inner_name, plain_problem
from .csv import check_header
from .normalize import ticker_column
from .parquet import from_table

LINE = "__line__"
BATCH_ROWS = 1 << 17


def _kind(path: Path) -> str:
    name = inner_name(path.name).lower()
    if name.endswith((".csv", ".txt")):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    return "json"


@register
class LongTable(Reader):
    name = "table"
    suffixes = (".csv", ".txt", ".parquet", ".json", ".jsonl", ".ndjson")
    many = True

    def can_read(self, path: Path) -> bool:
        # A compressed Parquet file is no table: Parquet compresses its own columns.
        return super().can_read(path) and not (compression(path.name) and _kind(path) == "parquet")

    def table_options(self, path: Path, ticker_column: str | None, layout: str) -> dict | None:
        if layout == "wide":
            return None
        return {"ticker_column": self.ticker_column(path, ticker_column)}

    def ticker_column(self, path: Path, wanted: str | None = None) -> str:
        """The table's ticker column; :class:`PairscanError` if it has none."""
        names = _column_names(path)
        found = ticker_column(names, wanted)
        if found is None:
            raise PairscanError(_no_ticker_column(names, wanted), path)
        return found

    def split(self, path: Path, scratch: Path, column: str) -> list[tuple[str, Path]]:
        """Stream the table into ``scratch/<ticker>`` parts; return (ticker, part folder), sorted."""
        kind = _kind(path)
        if kind == "json":  # no parser is given a line nested too deeply (see .bounds)
            try:
                problem = file_problem(path)
            except OSError as exc:
                raise PairscanError(f"cannot read the long table ({exc.strerror})", path) from None
            if problem is not None:
                raise PairscanError(problem[1], path, problem[0])
        try:
            source = ds.dataset(path, format=_format(path, kind))
            schema = source.schema.append(pa.field(LINE, pa.int64()))
            first = 2 if kind == "csv" else 1

            refused: list[PairscanError] = []

            def batches():
                line = first
                for batch in source.to_batches(batch_size=BATCH_ROWS):
                    n = batch.num_rows
                    problem = _bad_ticker(batch.column(column), path, line)
                    if problem is not None:  # raised once the writer is done: not from within it
                        refused.append(problem)
                        return
                    yield pa.RecordBatch.from_arrays([*batch.columns, pa.array(range(line, line + n), pa.int64())],
                                                     schema=schema)
                    line += n

            ds.write_dataset(
                pa.RecordBatchReader.from_batches(schema, batches()), scratch, format="parquet",
                partitioning=ds.partitioning(pa.schema([(column, schema.field(column).type)]), flavor="hive"),
                max_open_files=_open_files(), max_rows_per_group=1 << 16, min_rows_per_group=0,
                existing_data_behavior="overwrite_or_ignore",
            )
            if refused:
                raise refused[0]
        except (OSError, pa.ArrowException) as exc:
            raise PairscanError(f"cannot read the long table ({str(exc).splitlines()[0]})", path) from None
        parts = []
        for part in sorted(scratch.iterdir()):
            value = unquote(part.name.split("=", 1)[1])
            if value == "__HIVE_DEFAULT_PARTITION__":
                raise PairscanError(f"no ticker in column {column!r}", path, self.first_line(part))
            parts.append((value, part))
        return sorted(parts)

    @staticmethod
    def first_line(part: Path) -> int:
        """The first line of the table that a ticker's part holds (for errors about the ticker)."""
        return min(pq.read_table(part, columns=[LINE]).column(LINE).to_pylist())

    def parse(self, path, on_bad_lines, name, max_bytes, text=False) -> Parsed:
        """Read one ticker's part of a table; errors name the table and the line."""
        table = pq.read_table(path)
        table = table.sort_by(LINE)  # the table's order: of two rows for one time, the later wins
        return from_table(table.drop_columns([LINE]), on_bad_lines, name, table.column(LINE).to_pylist, text=text)

    @staticmethod
    def text(path: Path) -> bool:
        return _kind(path) == "csv"


_CONTROL = "[\\x00-\\x1f\\x7f-\\x9f]"


def _bad_ticker(values, path: Path, line: int) -> PairscanError | None:
    """A ticker holding a control character (NUL among them) is bad input: a file name
    cannot hold it (and would end at a NUL, merging two tickers), a terminal shows it wrongly."""
    import pyarrow.compute as pc

    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return None
    bad = pc.match_substring_regex(values, _CONTROL).fill_null(False)
    if not pc.any(bad).as_py():
        return None
    where = pc.index(bad, True).as_py()
    return PairscanError(f"ticker {values[where].as_py()!r} holds a control character", path, line + where)


def _format(path: Path, kind: str):
    if kind == "csv":
        names = _column_names(path)
        return ds.CsvFileFormat(
            read_options=pacsv.ReadOptions(block_size=1 << 22),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=True))
    if kind == "parquet":
        return "parquet"
    return ds.JsonFileFormat()


def _column_names(path: Path) -> list[str]:
    kind = _kind(path)
    try:
        if kind == "parquet":
            return list(pq.read_schema(path).names)
        head = file_head(path, 1 << 20)
        problem = encoding_problem(head) or (None if compression(path.name) else plain_problem(head, path))
        if problem:
            raise PairscanError(problem, path)
        if head.startswith(BOM):
            head = head[len(BOM):]
        if kind == "csv":
            check_header(head, path)
            names = pacsv.read_csv(pa.py_buffer(head.split(b"\n", 1)[0] + b"\n"),
                                   read_options=pacsv.ReadOptions(autogenerate_column_names=False)).column_names
            return [n.strip() for n in names]
        for number, line in enumerate(head.split(b"\n"), start=1):
            if line.strip():
                for reason in line_problems(line).values():
                    raise PairscanError(reason, path, number)
                record = json.loads(line)
                if isinstance(record, dict):
                    return list(record)
                break
    except (OSError, ValueError, RecursionError, pa.ArrowException) as exc:
        raise PairscanError(f"cannot read the table's columns ({str(exc).splitlines()[0]})", path) from None
    return []


def _open_files() -> int:
    # Each open part holds its writer's buffers (about a quarter of a megabyte): thousands
    # open at once cost more memory than closing and starting another file of the part.
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(256, soft // 4))


def _no_ticker_column(names: list[str], wanted: str | None) -> str:
    """Why a single file is no long table, and what to do, by the shape its columns show."""
    from .normalize import TIME, column_names

    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    if wanted:
        return f"no column {wanted!r} to take the tickers from; its columns are {shown}"
    try:
        stored = set(column_names(tuple(names)).values())
    except PairscanError:
        stored = set()
    if TIME in stored and "close" in stored:
        return (f"no ticker column (ticker, symbol or name); its columns are {shown}; --ticker-column names the "
                f"ticker column of a long table; one ticker's file goes in a folder, converted whole (the file "
                f"name is the ticker)")
    if TIME in stored:
        return (f"no ticker column (ticker, symbol or name) and no close column; its columns are {shown}; "
                f"--ticker-column names the ticker column of a long table, --layout wide reads one column per "
                f"ticker, --close-column names the close")
    return (f"a single file must be a long table (a ticker column: ticker, symbol or name) or a wide table (a "
            f"time column and one column per ticker); its columns are {shown}; --ticker-column names the ticker "
            f"column, --layout wide reads it as a wide table")
