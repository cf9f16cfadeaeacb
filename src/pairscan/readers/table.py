"""Long tables: one CSV, Parquet or JSON Lines file with a ticker column, many tickers.

The table is split, streamed, into one Parquet part per ticker, each row keeping its
line in the table so that a bad one is named ``table:line``. Each part is then a
ticker's task like any per-ticker file, through the same normalisation.

The split takes two passes, so that neither open files nor memory grow with the number
of tickers or the table's size, whatever its order (a daily dump is sorted by date: every
batch holds every ticker). The first streams the table (pyarrow's dataset scanner and
writer) into at most a few hundred buckets, each ticker in one bucket, all open at once;
the second reads one bucket at a time, a slice of the table, and writes its tickers' parts.
"""

from __future__ import annotations

import json
import math
import resource
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..errors import PairscanError
from .base import BOM, BadLines, Parsed, Reader, register
from .bounds import encoding_problem, file_problem, line_problems
from .compressed import compression, head as file_head, inner_name, plain_problem
from .csv import check_header
from .normalize import TIME, column_names, current_reading, missing_columns, ticker_column, times_problem
from .parquet import from_table

LINE = "__line__"
BUCKET = "__bucket__"
BATCH_ROWS = 1 << 17
# Source bytes per bucket: what the second pass holds in memory at once is about a
# bucket's rows (text columns as Arrow strings: a few times this).
BUCKET_BYTES = {"csv": 32 << 20, "json": 32 << 20, "parquet": 8 << 20}


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

    def split(self, path: Path, scratch: Path, column: str, on_bad_lines: str = "error",
              bad: BadLines | None = None) -> list[tuple[str, Path]]:
        """Stream the table into one Parquet part per ticker in ``scratch``; return (ticker, part), sorted.

        Rows that are not CSV of the header's columns are bad lines of the table: the
        first raises (``on_bad_lines="error"``), or they are skipped and added to ``bad``.
        """
        kind = _kind(path)
        if kind == "json":  # no parser is given a line nested too deeply (see .bounds)
            try:
                problem = file_problem(path)
            except OSError as exc:
                raise PairscanError(f"cannot read the long table ({exc.strerror})", path) from None
            if problem is not None:
                raise PairscanError(problem[1], path, problem[0])
        _check_columns(path, column)
        buckets = scratch.parent / (scratch.name + "-buckets")
        try:
            skipped, held = _bucket(path, kind, column, buckets, on_bad_lines, bad if bad is not None else BadLines())
            return _parts([held] if held is not None else _bucket_tables(buckets), scratch, column, skipped)
        finally:
            shutil.rmtree(buckets, ignore_errors=True)

    @staticmethod
    def first_line(part: Path) -> int:
        """The first line of the table that a ticker's part holds (for errors about the ticker)."""
        return pc.min(_read_part(part, [LINE]).column(LINE)).as_py()

    def parse(self, path, on_bad_lines, name, max_bytes, text=False, ticker=None) -> Parsed:
        """Read one ticker's part of a table; errors name the table and the line (the
        ticker is in the line itself)."""
        table = _read_part(path)
        table = table.sort_by(LINE)  # the table's order: of two rows for one time, the later wins
        return from_table(table.drop_columns([LINE]), on_bad_lines, name, table.column(LINE).to_pylist, text=text)

    @staticmethod
    def text(path: Path) -> bool:
        return _kind(path) == "csv"


def _check_columns(path: Path, column: str) -> None:
    """A table whose other columns have no time or no close, or whose first dates are all in a
    format that needs ``--date-format``, is refused whole, before any splitting."""
    if _kind(path) == "json":  # records may differ in their keys: a record without a close is a bad line
        return
    names = _column_names(path)
    problem = missing_columns([n for n in names if n != column], shown=names)
    if problem is not None:
        raise PairscanError(f"{problem} (with {column!r} as the ticker column; --ticker-column names another)"
                            if problem.startswith("no time") else problem, path)
    if _kind(path) == "csv" and current_reading().date_format is None:
        time = next(n for n, stored in column_names(tuple(names)).items() if stored == TIME)
        problem = times_problem(_first_values(path, time))
        if problem is not None:
            raise PairscanError(problem, path, 2)


def _first_values(path: Path, column: str, rows: int = 100) -> list:
    """The first values of a CSV table's column (what its first megabyte holds of them)."""
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    if head.startswith(BOM):
        head = head[len(BOM):]
    lines = head.split(b"\n")
    if len(head) == 1 << 20:
        lines = lines[:-1]  # the last may be cut
    lines = lines[: rows + 1]
    try:
        table = pacsv.read_csv(pa.py_buffer(b"\n".join(lines) + b"\n"), convert_options=pacsv.ConvertOptions(
            column_types={column: pa.string()}, include_columns=[column]))
    except pa.ArrowException:
        return []  # a row that is not CSV: the split names it
    return table.column(column).to_pylist()


def _bucket(path: Path, kind: str, column: str, buckets: Path, on_bad_lines: str,
            bad: BadLines) -> tuple[list[int], pa.Table | None]:
    """The first pass: the table, streamed, into ``buckets/<n>/`` (each ticker in one bucket),
    its rows numbered in order. Returns the lines of the rows skipped, which the numbers
    do not count yet (see :func:`_true_lines`), and a table small enough to be one bucket
    itself (held in memory rather than written; None for a larger one)."""
    invalid: dict[int, str] = {}
    try:
        size = path.stat().st_size
        count = max(1, min(_open_files(), math.ceil(size / BUCKET_BYTES[kind])))
        source = ds.dataset(path, format=_format(path, kind, _invalid_rows(invalid, on_bad_lines)))
        schema = source.schema.append(pa.field(LINE, pa.int64())).append(pa.field(BUCKET, pa.int32()))
        first = 2 if kind == "csv" else 1
        bucket_of: dict = {}  # ticker -> its bucket, given in the order tickers come: buckets even
        refused: list[PairscanError] = []
        rows = [0]

        def batches():
            line = first
            for batch in source.to_batches(batch_size=BATCH_ROWS):
                n = batch.num_rows
                tickers = batch.column(column)
                problem = _bad_ticker(tickers, path, line, column)
                if problem is not None:  # raised once the writer is done: not from within it
                    refused.append(problem)
                    return
                lines = pa.array(range(line, line + n), pa.int64())
                yield pa.RecordBatch.from_arrays([*batch.columns, lines, _buckets(tickers, bucket_of, count)],
                                                 schema=schema)
                line += n
                rows[0] += n

        reader = pa.RecordBatchReader.from_batches(schema, batches())
        held = reader.read_all().drop_columns([BUCKET]) if count == 1 else None
        if held is None:
            ds.write_dataset(
                reader, buckets, format="parquet",
                partitioning=ds.partitioning(pa.schema([(BUCKET, pa.int32())])), max_partitions=count + 1,
                max_open_files=_open_files(), max_rows_per_group=1 << 16, min_rows_per_group=0,
                existing_data_behavior="overwrite_or_ignore",
            )
        if refused:
            raise refused[0]
    except (OSError, pa.ArrowException) as exc:
        if invalid and on_bad_lines == "error":
            number = min(invalid)
            raise PairscanError(invalid[number], path, number) from None
        raise PairscanError(_arrow_problem(exc, kind), path) from None
    for number in sorted(invalid):
        bad.add(number, invalid[number])
    _check_tickers(path, column, bucket_of, rows[0])
    return sorted(invalid), held


def _bucket_tables(buckets: Path):
    """The first pass's buckets, one table at a time, each removed once read."""
    folders = sorted(buckets.iterdir(), key=lambda f: int(f.name)) if buckets.exists() else []
    for folder in folders:
        yield ds.dataset(folder, format="parquet").to_table()
        shutil.rmtree(folder, ignore_errors=True)


def _invalid_rows(invalid: dict[int, str], on_bad_lines: str):
    """pyarrow's handler of a CSV row with too few or too many fields: noted by its line, then
    skipped or an error (pyarrow may show a row twice: once to infer the types, once to read)."""
    def handler(row) -> str:
        number = row.number if row.number is not None else -1
        invalid[number] = f"{row.actual_columns} fields where the header has {row.expected_columns}"
        return "skip" if on_bad_lines == "skip" and row.number is not None else "error"
    return handler


def _arrow_problem(exc: BaseException, kind: str) -> str:
    """pyarrow's message as pairscan's one line: what is wrong with the table, and what to do."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, OSError) and getattr(exc, "strerror", None):
        return f"cannot read the long table ({exc.strerror})"
    if kind == "parquet":
        return f"not a readable Parquet file ({text}); write it again, or give the table as CSV"
    if kind == "json":
        return f"not JSON Lines a long table can be read from ({text}); fix the line, or give the table as CSV"
    return f"not CSV a long table can be read from ({text}); fix the row, or give the table as Parquet"


def _buckets(tickers, bucket_of: dict, count: int) -> pa.Array:
    """Each row's bucket: a ticker new to the table goes to the next bucket in turn."""
    unique = pc.unique(tickers)
    for value in unique.to_pylist():
        if value not in bucket_of:
            bucket_of[value] = len(bucket_of) % count
    ids = pa.array([bucket_of[v] for v in unique.to_pylist()], pa.int32())
    return pc.take(ids, pc.index_in(tickers, value_set=unique))


MANY_TICKERS = 1024


def _check_tickers(path: Path, column: str, bucket_of: dict, rows: int) -> None:
    """A ticker column with a value of its own in nearly every row is not one: a date or an
    amount named by mistake (``--ticker-column Date``) would make thousands of one-row tickers."""
    if len(bucket_of) <= MANY_TICKERS or rows >= 2 * len(bucket_of):
        return
    sample = ", ".join(repr(str(v)) for v in list(bucket_of)[:3])
    raise PairscanError(f"column {column!r} has {len(bucket_of):,} distinct values in {rows:,} rows ({sample}, ...): "
                        f"it does not look like tickers; --ticker-column names the ticker column", path)


def _true_lines(lines: pa.ChunkedArray, skipped: list[int]) -> pa.Array:
    """The rows' lines in the table, where the first pass numbered them without the rows it skipped."""
    naive = lines.to_numpy()
    shifted = np.asarray(skipped, dtype=np.int64) - np.arange(len(skipped))  # where each pushes the count
    return pa.array(naive + np.searchsorted(shifted, naive, side="right"), pa.int64())


def _parts(tables, scratch: Path, column: str, skipped: list[int]) -> list[tuple[str, Path]]:
    """The second pass: each bucket's table in turn, its rows grouped by ticker, into one part per ticker."""
    scratch.mkdir(parents=True, exist_ok=True)
    parts: list[tuple[str, Path]] = []
    for table in tables:
        if skipped:
            table = table.set_column(table.column_names.index(LINE), LINE, _true_lines(table.column(LINE), skipped))
        # Codes in the order tickers first appear: a table already grouped by ticker needs no reordering.
        encoded = pc.dictionary_encode(table.column(column)).combine_chunks()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        rest = table.drop_columns([column])
        if np.any(codes[1:] < codes[:-1]):
            order = np.argsort(codes, kind="stable")
            codes, rest = codes[order], rest.take(order)
        starts = [0, *(np.flatnonzero(codes[1:] != codes[:-1]) + 1).tolist()]
        for begin, end in zip(starts, [*starts[1:], len(codes)]):
            part = scratch / f"{len(parts):06d}.arrow"
            _write_part(rest.slice(begin, end - begin), part)
            value = encoded.dictionary[codes[begin]].as_py()
            parts.append((value if isinstance(value, str) else str(value), part))
    return sorted(parts)


def _write_part(table: pa.Table, path: Path) -> None:
    # Arrow's own file format, lz4-compressed: a part is written once and read once, and
    # costs a tenth of a Parquet file's writing (thousands of them per table).
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table)


def _read_part(path: Path, columns: list[str] | None = None) -> pa.Table:
    with pa.OSFile(str(path), "rb") as source:
        table = pa.ipc.open_file(source).read_all()
    return table.select(columns) if columns is not None else table


_CONTROL = "[\\x00-\\x1f\\x7f-\\x9f]"


def _bad_ticker(values, path: Path, line: int, column: str) -> PairscanError | None:
    """A missing ticker, or one holding a control character (NUL among them), is bad input: a file name
    cannot hold it (and would end at a NUL, merging two tickers), a terminal shows it wrongly."""
    if values.null_count:
        return PairscanError(f"no ticker in column {column!r}", path, line + pc.index(pc.is_null(values), True).as_py())
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return None
    bad = pc.match_substring_regex(values, _CONTROL).fill_null(False)
    if not pc.any(bad).as_py():
        return None
    where = pc.index(bad, True).as_py()
    return PairscanError(f"ticker {values[where].as_py()!r} holds a control character", path, line + where)


def _format(path: Path, kind: str, invalid_rows=None):
    if kind == "csv":
        names = _column_names(path)
        return ds.CsvFileFormat(
            read_options=pacsv.ReadOptions(block_size=1 << 22),
            parse_options=pacsv.ParseOptions(invalid_row_handler=invalid_rows),
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
        raise PairscanError(f"cannot read the table's header ({str(exc).splitlines()[0]}); a long table is CSV with a "
                            f"header line, Parquet, or JSON Lines", path) from None
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
