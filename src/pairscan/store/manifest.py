"""The store's manifest: what convert wrote, read back only as far as it can be trusted.

``{"version", "format", "tickers", "tables"}``: one entry per ticker (its source's size
and mtime, the bad-line mode, counts, and the stored file with its size and mtime), one
record per long table. A rerun skips a ticker whose entry is sound, whose source is
unchanged and whose stored file is the one written.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import operator
import os
import stat
from pathlib import Path

from ..errors import PairscanError
from .files import MANIFEST, atomic_path, no_space_is_bad_input, open_own_file, store_child, stored_name, ticker_problem
from .formats import FORMATS

# The fields of a ticker's manifest entry a rerun relies on, and their types. Other
# fields may be there; an entry without one of these, or with the wrong type, is not
# trusted: its ticker is converted again.
_ENTRY_FIELDS: dict[str, tuple[type, ...]] = {
    "source": (str,),
    "size": (int,),
    "mtime_ns": (int,),
    "on_bad_lines": (str,),
    "rows": (int,),
    "bad_lines_skipped": (int,),
    "duplicates_dropped": (int,),
    "first_bad_line": (str, type(None)),
    "file": (str, type(None)),
    "file_size": (int, type(None)),  # the stored file as written: size and mtime
    "file_mtime_ns": (int, type(None)),
}
_COUNTS = ("size", "rows", "bad_lines_skipped", "duplicates_dropped", "file_size")
# Fields a ticker's entry (and a long table's record) may lack (written before they were
# recorded: the default then), but that are of these types where present.
_OPTIONAL_FIELDS: dict[str, tuple[type, ...]] = {
    "close_column": (str, type(None)),  # convert's column options
    "date_format": (str, type(None)),
}
# Optional in a ticker's entry alone: where its HDF5 file's arrays lie (formats.hdf5.layout),
# checked in full where it is used (formats.hdf5.read_recorded).
_ENTRY_OPTIONAL_FIELDS: dict[str, tuple[type, ...]] = {"layout": (dict, type(None))}
# The same as every sequence of the exact types JSON gives (a bool is no int) that an
# entry's fields may have, taken at once: the check runs for every ticker of a load.
_ENTRY_VALUES = operator.itemgetter(*_ENTRY_FIELDS)
_ENTRY_TYPES = frozenset(itertools.product(*_ENTRY_FIELDS.values()))
_ENTRY_OPTIONAL = tuple({**_OPTIONAL_FIELDS, **_ENTRY_OPTIONAL_FIELDS})
_COUNTS_AT = tuple(list(_ENTRY_FIELDS).index(field) for field in _COUNTS)
_ENTRY_OPTIONAL_TYPES = frozenset(itertools.product(*{**_OPTIONAL_FIELDS, **_ENTRY_OPTIONAL_FIELDS}.values()))

def read_manifest(store: str | os.PathLike) -> dict:
    """The store's manifest, checked: ``{"version", "format", "tickers", "tables"}``, or ``{}``.

    A manifest that is missing, not JSON, or not of that shape counts as empty. An
    entry of the wrong shape (a field missing or of the wrong type, a file name that
    is not the ticker's) is left out of ``"tickers"`` and its ticker listed under
    ``"damaged"``: what it says is not trusted, so that ticker is converted again.
    """
    path = Path(store) / MANIFEST
    try:
        text = _read_text(path)
        with _not_collecting():
            manifest = json.loads(text)
    except (OSError, ValueError):
        return {}
    if not (
        isinstance(manifest, dict)
        and _is_int(manifest.get("version"))
        and manifest.get("format") in FORMATS
        and isinstance(manifest.get("tickers"), dict)
    ):
        return {}
    suffix = FORMATS[manifest["format"]]
    tickers, damaged = {}, []
    for ticker, entry in manifest["tickers"].items():
        if _valid_entry(ticker, entry, suffix):
            tickers[ticker] = entry
        elif _is_ticker_name(ticker):
            damaged.append(ticker)
    tables = manifest.get("tables")
    tables = {name: record for name, record in tables.items() if _valid_table(name, record)} \
        if isinstance(tables, dict) else {}
    return {"version": manifest["version"], "format": manifest["format"], "tickers": tickers,
            "tables": tables, "damaged": sorted(damaged)}


@contextlib.contextmanager
def _not_collecting():
    """The cyclic garbage collector off while a manifest is parsed: its tens of thousands of
    new objects would have it walk every object of the process (tens of milliseconds in
    one that holds pandas' and numpy's), and JSON makes no cycles to collect."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _valid_table(name, record) -> bool:
    """A long table's record: its size, mtime, mode, ticker and column options, and tickers."""
    return (_is_file_name(name) and isinstance(record, dict)
            and all(_is_int(record.get(k)) for k in ("size", "mtime_ns"))
            and all(isinstance(record.get(k), str) for k in ("on_bad_lines", "ticker_column"))
            and isinstance(record.get("tickers"), list) and all(_is_ticker_name(t) for t in record["tickers"])
            and _optional_fields_valid(record))


def _optional_fields_valid(record: dict) -> bool:
    return all(isinstance(record.get(k), types) for k, types in _OPTIONAL_FIELDS.items())


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_ticker_name(name) -> bool:
    # Any ticker that can be stored: its file name is worked out, never taken from here.
    return isinstance(name, str) and ticker_problem(name) is None


def _is_file_name(name) -> bool:
    # A long table's name: a plain file name beside the others, never a path.
    return (isinstance(name, str) and name not in ("", ".", "..")
            and not any(c in name for c in ("/", os.sep, "\0")))


def _mapped(ticker: str, suffix: str) -> str | None:
    try:
        return stored_name(ticker, suffix)
    except PairscanError:
        return None


def _valid_entry(ticker: str, entry, suffix: str) -> bool:
    if not (_is_ticker_name(ticker) and type(entry) is dict):
        return False
    try:
        values = _ENTRY_VALUES(entry)
    except KeyError:  # a field missing
        return False
    if (tuple(map(type, values)) not in _ENTRY_TYPES
            or tuple(map(type, map(entry.get, _ENTRY_OPTIONAL))) not in _ENTRY_OPTIONAL_TYPES
            or type(entry.get("adj_close_differs", False)) is not bool):
        return False
    for at in _COUNTS_AT:
        value = values[at]
        if value is not None and value < 0:
            return False
    if entry["file"] is None:
        return entry["rows"] == 0 and entry["file_size"] is None and entry["file_mtime_ns"] is None
    return (entry["file"] == _mapped(ticker, suffix)  # the file its ticker maps to, never another
            and entry["file_size"] is not None and entry["file_mtime_ns"] is not None)


def recorded_layouts(manifest: dict, files: dict[str, str | Path]) -> dict[str, tuple]:
    """``{stored file as str: (file_size, file_mtime_ns, layout)}`` for those of ``files``
    (ticker -> stored file) whose entry in ``manifest`` (:func:`read_manifest`'s) records
    where its arrays lie, for :func:`~pairscan.store.frames.read_column_arrays`: plain
    tuples, to go with a task to another process. An HDF5 store alone has them."""
    if manifest.get("format") != "hdf5":
        return {}
    entries, found = manifest["tickers"], {}
    for ticker, path in files.items():
        entry = entries.get(ticker)
        if entry and entry.get("layout"):
            path = os.fspath(path)
            if entry["file"] == os.path.basename(path):
                found[path] = (entry["file_size"], entry["file_mtime_ns"], entry["layout"])
    return found


def stamp_entry(store: str | os.PathLike, entry: dict) -> dict | None:
    """``entry`` with the size and mtime of its stored file as it is now.

    None if the file it names is not there (then nothing about it can be trusted).
    """
    if entry.get("file") is None:
        return {**entry, "file_size": None, "file_mtime_ns": None}
    try:
        st = os.lstat(Path(store) / entry["file"])
    except OSError:
        return None
    return {**entry, "file_size": st.st_size, "file_mtime_ns": st.st_mtime_ns}


def stored_file_intact(store: str | os.PathLike, entry: dict) -> bool:
    """Whether the stored file of a (checked) manifest entry is the one that was written.

    A regular file with the size and mtime recorded: a file truncated, replaced by a
    folder or swapped for another is not. A ticker without data has no file to check.
    """
    if entry["file"] is None:
        return True
    try:
        st = os.lstat(Path(store) / entry["file"])
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and (st.st_size, st.st_mtime_ns) == (entry["file_size"], entry["file_mtime_ns"])


def write_manifest(store: str | os.PathLike, manifest: dict) -> None:
    """Write the manifest atomically, unless it already says exactly this.

    Not rewriting an unchanged manifest lets a rerun with nothing to do finish on a
    full disk. Failures raise :class:`PairscanError` naming the manifest.
    """
    path = Path(store) / MANIFEST
    # One line: json's compiled encoder (indenting takes the pure-Python one, four times
    # slower), and a convert saves the manifest every second or so as tickers finish.
    text = json.dumps(manifest, sort_keys=True) + "\n"
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if _read_text(path) == text:
            return
    try:
        with no_space_is_bad_input(path), atomic_path(store_child(store, path), clean=False) as tmp:
            Path(tmp).write_text(text)
    except OSError as exc:
        raise PairscanError(f"cannot write the manifest ({exc.strerror or exc})", path) from None


def _read_text(path: Path) -> str:
    """The manifest's text; OSError if there is none. Never through a symbolic link."""
    fd = open_own_file(path, os.O_RDONLY, "the manifest")
    with os.fdopen(fd, "rb") as f:
        return f.read(_MANIFEST_LIMIT).decode()


_MANIFEST_LIMIT = 1 << 30  # bytes: a manifest is about 300 per ticker
