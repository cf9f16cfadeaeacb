"""CSV with a header line (``.csv``, ``.txt``): the free end-of-day dumps, Stooq, yfinance.

Every value is read as text (CSV has no types of its own) and the shared normalisation
casts the numbers, so ``Date,Open,High,Low,Close,Volume,OpenInt``,
``<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,...`` and ``Date,...,Adj Close,Volume`` all land
in the same stored frame. The fast path is polars' CSV reader; a file it refuses, or
whose values break a rule, is read again with the standard library's, which counts
lines as a person does (the header is line 1) to name the first bad one.
"""

from __future__ import annotations

import csv as stdcsv
import io

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import PairscanError
from .base import BadLines, Parsed, Reader, may_use_polars, read_bytes, register
from .bounds import line_problems, utf8_error
from .normalize import check_records, column_names, key, settled, table_to_frame


@register
class Csv(Reader):
    name = "csv"
    suffixes = (".csv", ".txt")

    def parse(self, path, on_bad_lines, name, max_bytes) -> Parsed:
        return from_bytes(read_bytes(path, max_bytes), on_bad_lines, name)


def from_bytes(data: bytes, on_bad_lines: str, name) -> Parsed:
    if not data or data.isspace():
        return Parsed(None)
    for number, reason in line_problems(data, json=False).items():
        # No parser is given a line longer than a record can be; nor can one such
        # physical line be skipped alone (a quoted field may span lines).
        raise PairscanError(reason, name, number)
    fast, data = one_header(data, name)
    no_close(check_header(data, name), name)
    return settled(_parse_fast(fast), lambda: _parse_slow(data, name), on_bad_lines, name)


TIME_KEYS = ("date", "datetime", "timestamp", "time")
# Column names that are a ticker's fields, never a ticker: a file with one is no wide table.
FIELDS = ("open", "high", "low", "close", "volume", "vol", "adjclose", "price", "last", "openint", "per", "bid",
          "ask", "value")


def is_field(name: str) -> bool:
    return key(name) in FIELDS


def no_close(header: list[str], name=None) -> None:
    """:class:`PairscanError` (line 1) for a header with a time but no close column, saying
    what the file looks like: a wide table (one column per ticker), or a file whose close
    has another name."""
    if not header:
        return
    stored = column_names(tuple(header))
    if "close" in stored.values() or "timestamp" not in stored.values():
        return
    shown = ", ".join(header[:12]) + (f" and {len(header) - 12} more" if len(header) > 12 else "")
    others = [h for h, s in stored.items() if s != "timestamp"]
    if len(others) >= 2 and not any(is_field(h) or stored[h] == "__clock__" for h in others):
        raise PairscanError(f"no close column; this looks like a wide table: one column per ticker ({shown}); "
                            f"it is read as one when converted alone (pairscan convert FILE, or --layout wide)",
                            name, 1)
    raise PairscanError(f"no close column; its columns are {shown}; --close-column to name one", name, 1)


def first_rows(data: bytes, count: int = 3) -> list[list[str]]:
    """The first ``count`` lines of CSV text, as cells (for recognising a header's shape)."""
    lines = data.split(b"\n", count)[:count]
    try:
        return [[c.strip() for c in row] for row in
                stdcsv.reader([line.decode("utf-8", errors="replace").rstrip("\r") for line in lines])]
    except stdcsv.Error:
        return []


def multirow_header(rows: list[list[str]]) -> tuple[list[str], list[str], str] | None:
    """A download library's header of three rows (fields, tickers, then the time's name
    alone, in either order of fields and tickers): (fields, tickers, time name) without
    their first cells, or None for any other header."""
    if len(rows) < 3:
        return None
    a, b, c = rows[:3]
    if not (len(a) == len(b) >= 2 and c and key(c[0]) in TIME_KEYS and not any(c[1:])):
        return None
    closes = ("close", "adjclose")
    if key(a[0]) == "ticker" or key(b[0]) == "price":
        fields, tickers = b, a
    elif key(a[0]) == "price" or key(b[0]) == "ticker":
        fields, tickers = a, b
    elif any(key(x) in closes for x in a[1:]):
        fields, tickers = a, b
    elif any(key(x) in closes for x in b[1:]):
        fields, tickers = b, a
    else:
        return None
    return fields[1:], tickers[1:], c[0]


def one_header(data: bytes, name=None) -> tuple[bytes, bytes]:
    """A per-ticker file with a download's multi-row header, as one header line: (without the
    two other header lines, for the fast path; with them blank, so the line numbers hold).
    Any other file is itself, twice. A header naming several tickers is refused: such a
    file is a wide table, converted alone."""
    header = multirow_header(first_rows(data))
    if header is None:
        return data, data
    fields, tickers, time = header
    named = sorted(set(t for t in tickers if t))
    if len(named) > 1:
        shown = ", ".join(named[:5]) + (f" and {len(named) - 5} more" if len(named) > 5 else "")
        raise PairscanError(f"a multi-row header of {len(named)} tickers ({shown}): a wide table of many tickers; "
                            f"convert it alone (pairscan convert FILE), not in a folder", name, 2)
    line = ",".join(_quoted(x) for x in [time, *fields]).encode()
    rest = data.split(b"\n", 3)[3] if data.count(b"\n", 0, len(data)) >= 3 else b""
    return line + b"\n" + rest, line + b"\n\n\n" + rest


def _quoted(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"' if any(c in cell for c in ',"\n') else cell


def check_header(data: bytes, name=None) -> list[str]:
    """The header's column names; :class:`PairscanError` (line 1) for a name given twice,
    or two that name one column once normalised (``Close`` and ``close``): no parser
    keeps one of them silently."""
    end = data.find(b"\n")
    first = data if end < 0 else data[:end]
    try:
        header = next(stdcsv.reader([first.decode("utf-8", errors="replace").rstrip("\r")]), [])
    except stdcsv.Error:
        return []  # a header no CSV reader takes: the line-by-line path names it
    header = [h.strip() for h in header]
    seen: set[str] = set()
    for column in header:
        if column in seen:
            raise PairscanError(f"column {column!r} appears twice in the header; rename or remove one", name, 1)
        seen.add(column)
    try:
        column_names(tuple(header))
    except PairscanError as err:
        raise PairscanError(err.reason + "; rename or remove one", name, 1) from None
    return header


def _parse_fast(data: bytes) -> pd.DataFrame | None:
    if utf8_error(data) is not None or b"\x00" in data:
        return None
    try:
        if may_use_polars():
            import polars as pl

            table = pl.read_csv(io.BytesIO(data), infer_schema=False, raise_if_empty=False).to_arrow()
        else:
            names = pacsv.read_csv(io.BytesIO(data), read_options=pacsv.ReadOptions(block_size=1 << 16)).column_names
            types = {n: pa.string() for n in names}
            table = pacsv.read_csv(io.BytesIO(data), convert_options=pacsv.ConvertOptions(
                column_types=types, strings_can_be_null=True))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001 - polars panics (a BaseException) on some input
        return None
    if table.num_rows == 0:
        return None
    table = table.cast(pa.schema([(f.name, pa.string()) for f in table.schema]))
    return table_to_frame(table, text=True)


def _parse_slow(data: bytes, name) -> tuple[pd.DataFrame | None, BadLines]:
    """Read row by row; return (frame of the good rows or None, the bad lines).

    The text is decoded as it is read and the rows checked a batch at a time
    (:func:`check_records`): memory does not grow with the number of rows.
    """
    if b"\x00" in data:
        first = data[: data.index(b"\x00")].count(b"\n") + 1
        return None, BadLines([(first, "binary data (NUL bytes), not CSV text")])
    wrong = utf8_error(data)
    if wrong is not None:
        return None, BadLines([(data[:wrong].count(b"\n") + 1, "binary data (not UTF-8 text), not CSV text")])
    reader = stdcsv.reader(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline=""))
    try:
        header = next(reader)
    except (StopIteration, stdcsv.Error):
        return None, BadLines()
    header = [h.strip() for h in header]
    column_names(tuple(header))  # two columns that name one thing: the whole file is bad
    bad = BadLines()

    def rows():
        line = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except stdcsv.Error as exc:
                bad.add(line + 1, f"invalid CSV ({exc})")
                break
            number, line = line + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                bad.add(number, f"{len(row)} fields where the header has {len(header)}")
                continue
            yield number, {h: (None if v.strip() == "" else v) for h, v in zip(header, row)}

    return check_records(rows(), text=True, bad=bad)
