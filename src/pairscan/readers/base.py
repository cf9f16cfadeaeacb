"""The reader registry and ``discover``: which files of a source are which tickers.

A reader knows one format: which files are its own (``can_read``), the ticker a file
holds (``ticker``), and how to read it into a stored-format frame (``read``). A long
table holds many tickers; its reader also ``split``s it, streamed, into one part per
ticker. ``discover`` walks a source once, refuses what is not a regular file or is too
large, names every ticker found twice, and lists the files no reader knows.
"""

from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import PairscanError
from .bounds import MAX_READ_BYTES, encoding_problem, size_text
from .compressed import compression, inner_name, plain_problem, unpacked_bytes

BAD_LINE_MODES = ("error", "skip")
LAYOUTS = ("auto", "long", "wide")  # of a single-file table: a ticker column, or one column per ticker
DEFAULT_MAX_BYTES = 20 * 2**30  # 20 GiB a file
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Columns:
    """A ticker's usual stored frame as plain arrays, without a pandas frame.

    ``index``: the times (``datetime64[ns]``); ``values``: each column's float64 or
    int64 array, none with missing values, in the stored order. Most files are only
    this; carried as arrays, a convert builds no pandas frame on the way from the
    parser to the store. :meth:`to_frame` is the frame pandas reads back from the store.
    """

    index: np.ndarray
    values: dict[str, np.ndarray]
    name: str = "timestamp"  # the index's

    def __len__(self) -> int:
        return len(self.index)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.values, index=pd.DatetimeIndex(self.index, name=self.name), copy=False)


@dataclass
class Parsed:
    """A ticker's frame (or its :class:`Columns`) and what parsing it dropped."""

    data: pd.DataFrame | Columns | None  # None: the file holds no records
    bad_lines_skipped: int = 0
    duplicates_dropped: int = 0
    first_bad: str | None = None  # "line N: reason" of the first skipped line

    @property
    def frame(self) -> pd.DataFrame | None:
        """The stored frame, as ``pd.read_hdf`` / ``pd.read_parquet`` return it."""
        return self.data.to_frame() if isinstance(self.data, Columns) else self.data


class Reader:
    """One input format. Subclasses set ``name`` and ``suffixes`` and implement ``read``."""

    name: str = ""
    suffixes: tuple[str, ...] = ()
    many: bool = False  # a long table: many tickers in one file
    compressible: bool = True  # also read as .gz, .bz2, .xz, .zst
    rank: int = 0  # of the many-ticker readers, which is asked first about a single file

    def can_read(self, path: Path) -> bool:
        if compression(path.name) is not None and not self.compressible:
            return False
        return inner_name(path.name).lower().endswith(self.suffixes)

    def ticker(self, path: Path) -> str:
        """The file name without the format's extension, and without a compression's
        (``aapl.us.txt`` -> ``aapl.us``, ``AAPL.csv.gz`` -> ``AAPL``)."""
        name = inner_name(path.name)
        lower = name.lower()
        suffix = max((s for s in self.suffixes if lower.endswith(s)), key=len)
        return name[: -len(suffix)]

    def table_options(self, path: Path, ticker_column: str | None, layout: str) -> dict | None:
        """A many-ticker reader's options for the single file ``path``, or None if the file is
        not of its layout (:class:`PairscanError` if it is, but cannot be read)."""
        return None

    def read(self, path, on_bad_lines: str = "error", name=None, max_bytes: int = DEFAULT_MAX_BYTES,
             **options) -> Parsed:
        """Read one ticker's file; errors name ``name`` (default: the path) and the line."""
        if on_bad_lines not in BAD_LINE_MODES:
            raise PairscanError(f"--on-bad-lines must be error or skip, not {on_bad_lines!r}")
        path = Path(path)
        name = name or path
        try:
            return self.parse(path, on_bad_lines, name, max_bytes, **options)
        except PairscanError as err:
            if err.file is None:
                raise PairscanError(err.reason, name, err.line) from None
            raise

    def parse(self, path: Path, on_bad_lines: str, name, max_bytes: int, **options) -> Parsed:
        """The format's own reading (see :meth:`read`, which checks and names)."""
        raise NotImplementedError


class BadLines:
    """A file's bad lines in memory that does not grow with them: how many, and the first.

    A file may hold millions of bad lines (a hostile one, or not the format at all);
    what is reported is the count and the first by line number.
    """

    def __init__(self, items=()):
        self.count = 0
        self.first: tuple[int, str] | None = None
        for number, reason in items:
            self.add(number, reason)

    def add(self, number: int, reason: str) -> None:
        self.count += 1
        if self.first is None or number < self.first[0]:
            self.first = (number, reason)

    def __len__(self) -> int:
        return self.count


def settle(bad: BadLines, on_bad_lines: str, name) -> tuple[int, str]:
    """Raise for the first bad line (``error``), or return (count, "line N: reason") to record."""
    number, reason = bad.first
    if on_bad_lines == "error":
        others = bad.count - 1
        more = f" (and {others} more bad line{'s' if others > 1 else ''})" if others else ""
        raise PairscanError(reason + more, name, number)
    return bad.count, f"line {number}: {reason}"


READERS: dict[str, Reader] = {}


def register(reader: type[Reader]) -> type[Reader]:
    """Class decorator: add a reader to the registry (the order is the order of preference)."""
    READERS[reader.name] = reader()
    return reader


def reader_for(path: Path) -> Reader | None:
    """The per-ticker reader that opens ``path``, or None."""
    for reader in READERS.values():
        if not reader.many and reader.can_read(path):
            return reader
    return None


def suffixes() -> list[str]:
    return sorted({s for r in READERS.values() if not r.many for s in r.suffixes})


@dataclass(frozen=True)
class Found:
    """One source file: a ticker's file (``ticker`` set) or a long table (``ticker`` None)."""

    path: Path
    reader: str
    ticker: str | None
    options: dict = field(default_factory=dict, compare=False, hash=False)


def check_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> os.stat_result:
    """Only regular files of at most ``max_bytes`` are sources: never open a FIFO or a device."""
    try:
        info = path.stat()
    except OSError as exc:
        raise PairscanError(f"cannot read ({exc.strerror})", path) from None
    if not stat.S_ISREG(info.st_mode):
        raise PairscanError(f"not a regular file but {_kind(info.st_mode)}; only regular files are read", path)
    if info.st_size > max_bytes:
        raise PairscanError(f"larger than --max-bytes ({info.st_size} > {max_bytes} bytes)", path)
    return info


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def read_bytes(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """A source file's bytes (without a BOM), refusing special files, files over ``max_bytes``
    and files over ``MAX_READ_BYTES``, the most of one file read whole into memory."""
    limit = min(max_bytes, MAX_READ_BYTES)
    info = check_file(path, max_bytes)
    if compression(path.name) is not None:
        data = unpacked_bytes(path, limit, "--max-bytes" if limit == max_bytes else
                              f"the {size_text(MAX_READ_BYTES)} of one ticker's file pairscan reads at once")
        problem = encoding_problem(data[:4096])
        if problem:
            raise PairscanError(problem, path)
        return data[len(BOM):] if data.startswith(BOM) else data
    if info.st_size > limit:
        raise PairscanError(_too_big(info.st_size), path)
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
            problem = encoding_problem(head) or plain_problem(head, path)
            if problem:
                raise PairscanError(problem, path)
            f.seek(0)
            if f.read(len(BOM)) != BOM:
                f.seek(0)
            # As many bytes as the file holds and one more (asking for limit + 1 at once
            # costs an allocation that size): a file that grew since shows it, and is read on.
            size = os.fstat(f.fileno()).st_size
            data = f.read(min(size, limit) + 1)
            if size < len(data) <= limit:
                data += f.read(limit + 1 - len(data))
    except OSError as exc:
        raise PairscanError(f"cannot read ({exc.strerror})", path) from None
    if len(data) > limit:
        raise PairscanError(f"larger than --max-bytes ({max_bytes} bytes)" if limit == max_bytes else
                            _too_big(len(data)), path)
    return data


def _too_big(size: int) -> str:
    return (f"{size} bytes, more than the {size_text(MAX_READ_BYTES)} of one ticker's file pairscan reads at "
            f"once; give it as a long table (one file with a ticker column), which is read streamed")


def discover(source: str | os.PathLike, ticker_column: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
             exclude: frozenset[str] = frozenset(), follow_links: bool = False, layout: str = "auto") -> list[Found]:
    """The source files of a folder (one ticker each) or of a long-table file, sorted.

    Raises :class:`PairscanError` for a ticker found twice (naming both files), a file
    that is not regular or is larger than ``max_bytes``, a folder with no file any
    reader knows (saying what it looked for and what it found), or a single file with
    no ticker column. ``exclude``: names in the folder that are not sources (the
    store's own files when the store is the source folder). Files no reader knows are
    listed in one warning. A link in the folder to a file outside it is refused unless
    ``follow_links``: a folder from elsewhere (an archive, a download) could otherwise
    have pairscan read any file of the machine into the store. ``layout`` (``auto``,
    ``long``, ``wide``): how a single file holds its tickers (see :data:`LAYOUTS`).
    """
    source = Path(source)
    if layout not in LAYOUTS:
        raise PairscanError(f"--layout must be auto, long or wide, not {layout!r}")
    try:
        return _discover(source, ticker_column, max_bytes, exclude, follow_links, layout)
    except OSError as exc:  # a folder that cannot be listed, a file that went away...
        where = exc.filename if isinstance(exc.filename, str) else source
        raise PairscanError(f"cannot read ({exc.strerror or exc})", where) from None


def _discover(source: Path, ticker_column: str | None, max_bytes: int, exclude: frozenset[str],
              follow_links: bool, layout: str) -> list[Found]:
    if not source.exists() and not source.is_symlink():
        raise PairscanError("no such file or folder", source)
    if not source.is_dir():
        check_file(source, max_bytes)
        return [_table(source, ticker_column, layout)]
    found: dict[str, Found] = {}
    unknown: list[str] = []
    for path in sorted(source.iterdir()):
        if path.name.startswith(".") or path.name in exclude:
            continue
        reader = reader_for(path)
        if reader is None:
            if path.suffix.lower() not in (".h5",):  # the store's own files
                unknown.append(path.name)
            continue
        check_file(path, max_bytes)
        if not follow_links and path.is_symlink():
            _inside(path, source)
        ticker = reader.ticker(path)
        if ticker in found:
            raise PairscanError(f"ticker {ticker!r} found twice: {found[ticker].path.name} and {path.name}", source)
        found[ticker] = Found(path, reader.name, ticker)
    if not found:
        what = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise PairscanError(f"no source files in this folder (looked for {' '.join(suffixes())}; "
                            f"found {what or 'nothing'})", source)
    if unknown:
        warnings.warn(f"{source}: ignored {len(unknown)} file{'s' if len(unknown) > 1 else ''} of no known format "
                      f"({', '.join(unknown[:10])}{', ...' if len(unknown) > 10 else ''})")
    return [found[t] for t in sorted(found)]


def _inside(link: Path, source: Path) -> None:
    """Refuse a link in a source folder whose file is outside it."""
    target = link.resolve()
    if not target.is_relative_to(source.resolve()):
        raise PairscanError(f"a link to {target}, outside the source folder; pairscan does not follow it unless "
                            f"asked (convert --follow-links, or follow_links=True)", link)


def _table(path: Path, ticker_column: str | None, layout: str = "auto") -> Found:
    for reader in sorted((r for r in READERS.values() if r.many), key=lambda r: r.rank):
        if reader.can_read(path):
            options = reader.table_options(path, ticker_column, layout)
            if options is not None:
                return Found(path, reader.name, None, options)
    if layout == "wide":
        raise PairscanError("--layout wide reads a CSV file (.csv, .txt; compressed or not) or a Parquet file", path)
    raise PairscanError(f"not a folder, an archive or a long table (looked for {' '.join(suffixes())})", path)


def holds_sources(folder: str | os.PathLike) -> bool:
    """Whether a folder holds files a reader knows (for "run pairscan convert" hints)."""
    folder = Path(folder)
    try:
        return folder.is_dir() and any(
            not p.name.startswith(".") and p.suffix.lower() != ".parquet" and reader_for(p) is not None
            for p in folder.iterdir())
    except OSError:  # a folder that cannot be listed holds nothing to hint at
        return False


_polars_pid: int | None = None  # the process that started polars' thread pool


def may_use_polars() -> bool:
    """Whether polars may run here, and mark that it has.

    polars' thread pool does not survive ``fork``: in a child forked after this process
    used it, polars would wait forever for threads that no longer exist, so such a
    child must read with pyarrow instead.
    """
    global _polars_pid
    if _polars_pid in (None, os.getpid()):
        _polars_pid = os.getpid()
        return True
    return False


def polars_started() -> bool:
    """Whether this process has used polars' thread pool (so ``fork`` is unsafe)."""
    return _polars_pid == os.getpid()
