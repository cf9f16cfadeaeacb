"""The store: one file per ticker (HDF5 or Parquet), a manifest, atomic writes.

A stored frame is indexed by a sorted, unique ``DatetimeIndex`` named ``timestamp``
with float64 price columns; ``pd.read_hdf(path, "/data")`` or ``pd.read_parquet(path)``
returns it. Every file is written to a temporary name beside its target and moved into
place with ``os.replace``, so a reader (or a rerun after a crash) sees it whole or not
at all.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import fcntl
import io
import itertools
import json
import os
import re
import stat
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import PairscanError
from .hdf5file import arrays_image, frame_image
from .readers.base import Columns

FORMATS = {"hdf5": ".h5", "parquet": ".parquet"}
MANIFEST = ".pairscan-manifest.json"
LOCK = ".pairscan-lock"
HDF5_KEY = "data"

def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Files made by mkstemp are private; the store's files get the usual permissions.
FILE_MODE = 0o666 & ~_umask()

# PyTables is not thread-safe: every HDF5 call in this process goes through this lock.
HDF5_LOCK = threading.RLock()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``target``; move it onto ``target`` on success.

    On any exception the temporary file is removed and ``target`` is left as it was.
    The temporary name carries this process's id, so that a later run can tell the
    file of a process still writing from one a killed process left.
    """
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}-", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield tmp
        if os.path.exists(tmp):
            os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# What atomic_path names its temporary files: ".<target>.<pid>-<8 random characters>.tmp"
# (before pids were recorded: ".<target>.<8 random characters>.tmp").
_TEMPORARY = re.compile(r"\.(?P<target>.+)\.(?:(?P<pid>[0-9]+)-)?[a-z0-9_]{8}\.tmp")


def remove_stale_temporaries(store: str | os.PathLike) -> list[str]:
    """Remove the temporary files that killed processes left in ``store``; return their names.

    Only pairscan's own (those of a stored frame or of the manifest), and only those
    whose writer is gone. Call it while holding :func:`store_lock`.
    """
    # Two safeguards, because either alone is not enough. The lock keeps a second
    # convert from cleaning up while the first writes. The writer's pid in the name
    # keeps files whose writer still runs even when the lock does not: a worker
    # process that outlived its killed parent (and no longer holds the lock) may
    # still be writing. Pids are this machine's: the temporary file a Dask worker on
    # another machine writes into a shared store is protected by the lock alone.
    removed = []
    for path in Path(store).glob(".*.tmp"):
        match = _TEMPORARY.fullmatch(path.name)
        if not match:
            continue
        target = match["target"]
        if target != MANIFEST and Path(target).suffix not in FORMATS.values():
            continue
        if match["pid"] is not None and _writer_alive(int(match["pid"]), path):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path.name)
    return sorted(removed)


def _writer_alive(pid: int, path: Path) -> bool:
    """Whether process ``pid`` may still be writing ``path``.

    Not this process (it calls this only when none of its own writes are under way)
    and not a process started after the file was last written: its pid was reused.
    """
    if pid == os.getpid():
        return False
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        started = process.create_time()
        written = path.stat().st_mtime
    except (psutil.NoSuchProcess, FileNotFoundError):
        return False
    except psutil.Error:  # another user's process: assume the worst
        return True
    return started <= written + 1.0  # create_time is rounded to the clock tick


def write_frame(frame: pd.DataFrame | Columns, path: str | os.PathLike) -> None:
    """Store one ticker's frame (or its :class:`~pairscan.readers.base.Columns`) at ``path``
    (format by suffix), atomically.

    The file is built in memory and written by Python, so a full disk always raises:
    :class:`PairscanError` ("no space left on device writing PATH"), with nothing left
    behind; other failures to write raise as they are.
    """
    path = Path(path)
    with _no_space_is_bad_input(path):
        image = _parquet_image(frame) if path.suffix == FORMATS["parquet"] else _hdf5_image(frame, path.name)
        write_atomically(path, image)


def write_atomically(target: str | os.PathLike, data) -> None:
    """Write ``data`` (bytes or a buffer) to ``target`` through :func:`atomic_path`."""
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        f.write(data)


# How Parquet files are written (none of it changes what pandas reads back). Measured
# serially on twenty years of a ticker's daily bars (CPU time to build a file, mean size),
# with integer columns and the times delta-encoded (DELTA_BINARY_PACKED: sorted times and
# volumes are mostly small differences; a third smaller than plain): snappy 0.51 ms,
# 105 kB; LZ4 0.55 ms, 92 kB; zstd 0.88 ms, 87 kB. A convert writes thousands of such
# files, so a fast codec; snappy rather than LZ4 because every Parquet reader has it (LZ4
# in Parquet is the LZ4_RAW codec, which Java's readers only gained in 2022). No
# dictionaries: prices seldom repeat, so they cost time and bytes.
PARQUET_OPTIONS = {"compression": "snappy", "use_dictionary": False}


def _parquet_image(frame: pd.DataFrame | Columns):
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


def _hdf5_image(frame: pd.DataFrame | Columns, name: str) -> bytes:
    """The bytes of an HDF5 file holding ``frame``, built in memory.

    HDF5 writing to a full disk may fail to say so: some failures at close time leave
    an unreadable file and no error. Built in memory and written by Python, a write
    that does not fit always raises. A ticker's usual frame (float64 and int64 columns)
    is written node by node through PyTables (:mod:`pairscan.hdf5file`); any
    other goes through pandas and PyTables.
    """
    with HDF5_LOCK:
        if isinstance(frame, Columns):
            image = arrays_image(frame.index.view(np.int64), frame.name, list(frame.values),
                                 list(frame.values.values()), HDF5_KEY)
        else:
            image = frame_image(frame, HDF5_KEY)
    if image is not None:
        return image
    if isinstance(frame, Columns):
        frame = frame.to_frame()
    with HDF5_LOCK, warnings.catch_warnings():
        _silence_hdf5()
        # Extra text columns make pandas warn that they are pickled; that is fine.
        warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
        # The core driver without a backing store: ``name`` only names the file.
        with pd.HDFStore(name, mode="w", driver="H5FD_CORE", driver_core_backing_store=0) as h5:
            # A deep copy: its blocks are plain contiguous arrays. A block that is a strided
            # view (a frame built from another's columns) is written wrongly by to_hdf.
            frame.copy().to_hdf(h5, key=HDF5_KEY, format="fixed")
            return h5._handle.get_file_image()  # PyTables' File, which pandas does not wrap


@contextlib.contextmanager
def _no_space_is_bad_input(path: Path) -> Iterator[None]:
    # A full disk (or quota) is the store's fault, not pairscan's: one line, exit 2.
    # HDF5 says so only in the text of its error; pyarrow may leave errno unset.
    try:
        yield
    except (OSError, *_damaged()) as exc:
        text = str(exc)
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(
            sign in text for sign in ("No space left on device", "Disk quota exceeded", "errno = 28")
        ):
            raise PairscanError(f"no space left on device writing {path}") from None
        raise


_hdf5_silenced = False


def _silence_hdf5() -> None:
    """Stop the HDF5 library printing its error stack (HDF5-DIAG) to stderr.

    PyTables raises every such error as an exception, whose last line is reported;
    the stack itself, hundreds of lines for a full disk, says nothing more.
    """
    global _hdf5_silenced
    if not _hdf5_silenced:
        import tables

        tables.silence_hdf5_messages()
        _hdf5_silenced = True


def read_frame(path: str | os.PathLike) -> pd.DataFrame:
    """Read a whole stored frame."""
    path = Path(path)
    try:
        if path.suffix == FORMATS["parquet"]:
            return pd.read_parquet(path, engine="pyarrow")
        with HDF5_LOCK:
            return pd.read_hdf(path, "/" + HDF5_KEY)
    except (OSError, ValueError, KeyError, *_damaged()) as exc:
        raise PairscanError(f"cannot read stored frame ({_last_line(exc)})", path) from None


def _last_line(exc: BaseException) -> str:
    """HDF5 errors carry a whole back trace; the last line says what is wrong."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _damaged() -> tuple[type[Exception], ...]:
    """What PyTables raises for a damaged file (not an OSError)."""
    import tables

    return (tables.HDF5ExtError, tables.NoSuchNodeError)


def read_column(path: str | os.PathLike, column: str) -> pd.Series:
    """Read one column of a stored frame as a float64 Series indexed by timestamp.

    Reads only that column where the format allows: Parquet by column, HDF5 straight
    from the array that holds it (falling back to ``pd.read_hdf`` for layouts pandas
    may write that this does not know).
    """
    index, values = read_column_arrays(path, column)
    return pd.Series(values, index=pd.DatetimeIndex(index, name="timestamp"), name=Path(path).stem)


def read_column_arrays(path: str | os.PathLike, column: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_column` as two arrays, ``(timestamps as datetime64[ns], float64 values)``,
    without a pandas object per file (thousands of small files are read this way)."""
    path = Path(path)
    try:
        if path.suffix == FORMATS["parquet"]:
            import pyarrow.parquet as pq

            table = pq.read_table(path, columns=["timestamp", column])
            index = pd.DatetimeIndex(table.column("timestamp").to_numpy(), name="timestamp")
            values = table.column(column).to_numpy()
        else:
            index, values = _read_hdf5_column(path, column)
    except KeyError:
        raise PairscanError(f"no column {column!r} in the stored frame", path) from None
    except (OSError, ValueError, *_damaged()) as exc:
        if "column" in str(exc) and column in str(exc):
            raise PairscanError(f"no column {column!r} in the stored frame", path) from None
        raise PairscanError(f"cannot read stored frame ({_last_line(exc)})", path) from None
    try:
        values = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise PairscanError(f"column {column!r} is not numeric", path) from None
    if isinstance(index, np.ndarray) and index.dtype == "datetime64[ns]":
        return index, values
    return np.asarray(pd.DatetimeIndex(index).as_unit("ns").values), values


def will_read(paths, limit: int | None = None) -> None:
    """Ask the operating system to read ``paths`` ahead (``POSIX_FADV_WILLNEED``): on a
    store not in the page cache, its files come in while the first ones are parsed,
    instead of in many small synchronous reads each. Only the first ``limit`` bytes'
    worth of files (a quarter of the machine's memory by default: more could push out
    what was read ahead before it is used); nothing where there is no fadvise."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is None:
        return
    if limit is None:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            limit = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    total = 0
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # the reader names it
        try:
            total += os.fstat(fd).st_size
            if limit is not None and total > limit:
                return
            advise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


def read_index_array(path: str | os.PathLike, column: str) -> np.ndarray:
    """The timestamps of a stored frame (``datetime64[ns]``), without its values where
    the format allows (the index node of pandas' fixed layout, Parquet's timestamp
    column). Anything else, a damaged file among it, is read, or named, as
    :func:`read_column_arrays` does with ``column``."""
    path = Path(path)
    index = None
    if path.suffix == FORMATS["parquet"]:
        with contextlib.suppress(Exception):
            import pyarrow.parquet as pq

            table = pq.read_table(path, columns=["timestamp"])
            index = np.asarray(pd.DatetimeIndex(table.column("timestamp").to_numpy()).as_unit("ns").values)
    else:
        index = _read_fixed_index(path)
    return index if index is not None else read_column_arrays(path, column)[0]


def _read_fixed_index(path: Path) -> np.ndarray | None:
    """The index node of pandas' fixed layout through h5py's low level; None for anything else."""
    return _read_fixed(path, lambda fid, index: index())


def _read_hdf5_column(path: Path, column: str) -> tuple[pd.DatetimeIndex | np.ndarray, np.ndarray]:
    found = _read_fixed_column(path, column)
    if found is not None:
        return found
    # Opening nodes and their attribute sets is most of the cost of a small read, so
    # this touches only the nodes of pandas' fixed layout that hold the column.
    import tables

    with HDF5_LOCK, tables.open_file(path, mode="r") as h5:
        try:
            axis = h5.get_node(f"/{HDF5_KEY}/axis1")
            kind = str(axis.get_attr("kind"))
        except (tables.NoSuchNodeError, AttributeError):
            kind = ""  # not pandas' fixed layout
        for block in itertools.count() if kind.startswith("datetime64[") else ():
            try:
                names = h5.get_node(f"/{HDF5_KEY}/block{block}_items").read()
            except tables.NoSuchNodeError:
                raise KeyError(column) from None
            items = [i.decode() if isinstance(i, bytes) else str(i) for i in names]
            if column in items:
                values = h5.get_node(f"/{HDF5_KEY}/block{block}_values")
                if values.get_attr("CLASS") != "ARRAY":
                    break  # an object (text) block: let pandas decode it
                data = values[:, items.index(column)]
                return pd.DatetimeIndex(axis.read().astype(kind), name="timestamp"), data
    frame = read_frame(path)
    return pd.DatetimeIndex(frame.index, name="timestamp"), frame[column].to_numpy()


def _read_fixed_column(path: Path, column: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``column`` of pandas' fixed layout through HDF5's own calls (h5py's low level),
    a few times faster than PyTables' nodes for a small file; None for anything else
    (no h5py, another layout, a text column, a damaged file), which PyTables then reads
    or names."""

    def read(fid, index):
        import h5py

        wanted = column.encode()
        for block in itertools.count():
            # A missing block raises: PyTables then names the missing column.
            items = _h5_read(h5py.h5d.open(fid, f"/{HDF5_KEY}/block{block}_items".encode()))
            if wanted in items:
                values = h5py.h5d.open(fid, f"/{HDF5_KEY}/block{block}_values".encode())
                if values.dtype.kind not in "fiu":
                    return None  # text (an object block): pandas decodes it
                return index(), _h5_read(values)[:, list(items).index(wanted)]

    return _read_fixed(path, read)


def _read_fixed(path: Path, read):
    """``read(fid, index)`` on a file of pandas' fixed layout opened through h5py's low
    level, ``index()`` reading its timestamps; None where h5py is missing, the layout is
    another, or anything fails (the caller then takes the slower, naming way)."""
    try:
        import h5py
    except ImportError:
        return None
    try:
        fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY)
    except Exception:
        return None
    try:
        axis = h5py.h5d.open(fid, f"/{HDF5_KEY}/axis1".encode())
        kind = _h5_attr(axis, b"kind")
        if not kind.startswith("datetime64["):
            return None

        def index() -> np.ndarray:
            stamps = _h5_read(axis).astype(kind)
            return stamps if stamps.dtype == "datetime64[ns]" else stamps.astype("datetime64[ns]")

        return read(fid, index)
    except Exception:
        return None
    finally:
        fid.close()


def _h5_read(dataset) -> np.ndarray:
    import h5py

    out = np.empty(dataset.shape, dataset.dtype)
    dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
    return out


def _h5_attr(node, name: bytes) -> str:
    import h5py

    attr = h5py.h5a.open(node, name)
    out = np.empty(attr.shape, attr.dtype)
    attr.read(out)
    value = out[()]
    return value.decode() if isinstance(value, bytes) else str(value)


def store_files(store: str | os.PathLike) -> dict[str, Path]:
    """The store's tickers and their files, sorted by ticker.

    Raises :class:`PairscanError` if ``store`` is not a folder or holds one ticker in
    both formats while the manifest does not say which is current.
    """
    store = Path(store)
    if not store.is_dir():
        raise PairscanError("no such store (expected a folder of .h5 or .parquet files)", store)
    fmt = read_manifest(store).get("format")
    found: dict[str, Path] = {}
    for name, suffix in FORMATS.items():
        if fmt and name != fmt:
            continue
        for path in store.glob("*" + suffix):
            if path.name.startswith("."):
                continue
            if path.stem in found:
                raise PairscanError(
                    f"ticker {path.stem!r} is stored both as {found[path.stem].name} and {path.name}", store
                )
            found[path.stem] = path
    return dict(sorted(found.items()))


def ticker_file(files: dict[str, Path], ticker: str, store: str | os.PathLike) -> Path:
    """The stored file of ``ticker``; bad input naming the closest ticker if there is none."""
    if ticker in files:
        return files[ticker]
    same_case = {t.lower(): t for t in files}
    guess = same_case.get(str(ticker).lower()) or next(iter(difflib.get_close_matches(str(ticker), files, n=1)), None)
    hint = f"; did you mean {guess!r}?" if guess else " in the store"
    raise PairscanError(f"no ticker {ticker!r}{hint}", store)


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

def empty_store_error(store: str | os.PathLike) -> PairscanError:
    """What to say of a store with no tickers: a folder of source files needs ``pairscan convert``."""
    from .readers import holds_sources

    if holds_sources(store):
        return PairscanError("this folder holds source files but no store: run pairscan convert on it first", store)
    return PairscanError("the store holds no tickers", store)


def read_manifest(store: str | os.PathLike) -> dict:
    """The store's manifest, checked: ``{"version", "format", "tickers", "tables"}``, or ``{}``.

    A manifest that is missing, not JSON, or not of that shape counts as empty. An
    entry of the wrong shape (a field missing or of the wrong type, a file name that
    is not the ticker's) is left out of ``"tickers"`` and its ticker listed under
    ``"damaged"``: what it says is not trusted, so that ticker is converted again.
    """
    path = Path(store) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
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


def _valid_table(name, record) -> bool:
    """A long table's record: its size, mtime, mode, ticker column and tickers."""
    return (_is_ticker_name(name) and isinstance(record, dict)
            and all(_is_int(record.get(k)) for k in ("size", "mtime_ns"))
            and all(isinstance(record.get(k), str) for k in ("on_bad_lines", "ticker_column"))
            and isinstance(record.get("tickers"), list) and all(_is_ticker_name(t) for t in record["tickers"]))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_ticker_name(name) -> bool:
    # A plain file name: never a path out of the store, never a dotfile.
    return (isinstance(name, str) and name != "" and not name.startswith(".")
            and not any(c in name for c in ("/", os.sep, "\0")))


def _valid_entry(ticker: str, entry, suffix: str) -> bool:
    if not (_is_ticker_name(ticker) and isinstance(entry, dict)):
        return False
    for field, types in _ENTRY_FIELDS.items():
        value = entry.get(field, ...)
        if isinstance(value, bool) or not isinstance(value, types):
            return False
    if any(entry[field] is not None and entry[field] < 0 for field in _COUNTS):
        return False
    if entry["file"] is None:
        return entry["rows"] == 0 and entry["file_size"] is None and entry["file_mtime_ns"] is None
    return entry["file"] == ticker + suffix and entry["file_size"] is not None and entry["file_mtime_ns"] is not None


def stamp_entry(store: str | os.PathLike, entry: dict) -> dict | None:
    """``entry`` with the size and mtime of its stored file as it is now.

    None if the file it names is not there (then nothing about it can be trusted).
    """
    if entry.get("file") is None:
        return {**entry, "file_size": None, "file_mtime_ns": None}
    try:
        st = os.stat(Path(store) / entry["file"])
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
        st = os.stat(Path(store) / entry["file"])
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and (st.st_size, st.st_mtime_ns) == (entry["file_size"], entry["file_mtime_ns"])


def remove_tickers(store: str | os.PathLike, tickers, suffix: str) -> None:
    """Remove the stored files of ``tickers`` (``<ticker><suffix>``) from ``store``.

    Call it only for tickers the manifest says are pairscan's, then drop their entries
    from the manifest: a run killed in between leaves entries whose file is gone,
    which the next run removes again, never a file without its entry.
    """
    for ticker in tickers:
        path = Path(store) / (ticker + suffix)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise PairscanError(f"cannot remove this stored file, whose source is gone ({exc.strerror})",
                                path) from None


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
        if path.read_text() == text:
            return
    try:
        with _no_space_is_bad_input(path), atomic_path(path) as tmp:
            Path(tmp).write_text(text)
    except OSError as exc:
        raise PairscanError(f"cannot write the manifest ({exc.strerror or exc})", path) from None


@contextlib.contextmanager
def store_lock(store: str | os.PathLike, timeout: float, on_wait=None) -> Iterator[None]:
    """Hold the store's write lock (an advisory lock on ``STORE/.pairscan-lock``).

    Waits up to ``timeout`` seconds (``math.inf``: for as long as it takes) while
    another process holds it, calling ``on_wait(holder)`` once if it has to wait, then
    raises :class:`PairscanError` naming the holder's pid. Readers never take it: each
    stored file is replaced atomically, so they need not wait. The lock goes with the
    process: a killed writer leaves no stale lock behind (worker processes it forked
    hold it until they end too, as they may still be writing).
    """
    path = Path(store) / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise PairscanError(f"cannot create the lock file ({exc.strerror})", path) from None
    try:
        deadline = time.monotonic() + timeout
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            except OSError as exc:  # a file system without locks (some network and FUSE ones)
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
                warnings.warn(f"{store}: cannot lock this store ({exc.strerror}); "
                              "run only one convert on it at a time")
                yield
                return
            now = time.monotonic()
            if now >= deadline:
                raise PairscanError(
                    f"another pairscan process ({_lock_holder(fd)}) is writing this store; gave up after "
                    f"{timeout:g} s (--lock-timeout)", store)
            if not waiting and on_wait is not None:
                on_wait(_lock_holder(fd))
            waiting = True
            time.sleep(min(0.05, deadline - now))
        # Who holds it, for those who wait. Overwritten in place, then cut: on a full
        # disk the page the last holder's pid used is still there to write in.
        with contextlib.suppress(OSError):
            pid = f"{os.getpid()}\n".encode()
            os.pwrite(fd, pid, 0)
            os.ftruncate(fd, len(pid))
        try:
            yield
        finally:
            # Also released for forked workers that share this descriptor.
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _lock_holder(fd: int) -> str:
    try:
        pid = int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return "pid unknown"
    import psutil

    if psutil.pid_exists(pid):
        return f"pid {pid}"
    return f"pid {pid}, ended; its worker processes still hold the lock"
