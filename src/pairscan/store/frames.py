"""Stored frames: one ticker's frame written to, or read from, its file in the store.

A stored frame is indexed by a sorted, unique ``DatetimeIndex`` named ``timestamp``
with float64 price columns; ``pd.read_hdf(path, "/data")`` or ``pd.read_parquet(path)``
returns it. The format is the file's (see :mod:`.formats`).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import PairscanError
from ..readers.base import Columns
from . import formats
from .files import no_space_is_bad_input, store_child, ticker_of, write_atomically
from .formats.hdf5 import damaged


_HDF5 = formats.by_name("hdf5")


def _format(path: Path):
    # A file of no store format is read as HDF5, as it always was; its reader names it.
    return formats.for_path(path) or formats.by_name("hdf5")


def write_frame(frame: pd.DataFrame | Columns, path: str | os.PathLike) -> None:
    """Store one ticker's frame (or its :class:`~pairscan.readers.base.Columns`) at ``path``
    (format by suffix), atomically.

    The file is built in memory and written by Python, so a full disk always raises:
    :class:`PairscanError` ("no space left on device writing PATH"), with nothing left
    behind; other failures to write raise as they are.
    """
    path = store_child(Path(path).parent, path)
    with no_space_is_bad_input(path):
        # A store's temporary files are cleaned once for all (remove_stale_temporaries).
        write_atomically(path, _format(path).image(frame, path.name), clean=False)


def stored_layout(path: str | os.PathLike) -> dict | None:
    """Where the arrays of a stored HDF5 file lie, for the manifest
    (:func:`~pairscan.store.formats.hdf5.layout`); None for another file, or one of
    another layout (read through HDF5 alone)."""
    path = Path(path)
    if formats.for_path(path) is not _HDF5:
        return None
    try:
        return _HDF5.layout(path)
    except (OSError, ValueError, KeyError, PairscanError, *damaged()):
        return None


def read_frame(path: str | os.PathLike) -> pd.DataFrame:
    """Read a whole stored frame."""
    path = Path(path)
    try:
        return _format(path).read_frame(path)
    except (OSError, ValueError, KeyError, *damaged()) as exc:
        raise PairscanError(f"cannot read stored frame ({_last_line(exc)})", path) from None


def _last_line(exc: BaseException) -> str:
    """HDF5 errors carry a whole back trace; the last line says what is wrong."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def read_column(path: str | os.PathLike, column: str) -> pd.Series:
    """Read one column of a stored frame as a float64 Series indexed by timestamp.

    Reads only that column where the format allows: Parquet by column, HDF5 straight
    from the array that holds it.
    """
    path = Path(path)
    index, values = read_column_arrays(path, column)
    name = ticker_of(path.name, _format(path).SUFFIX) or path.stem  # the ticker, decoded from its file name
    return pd.Series(values, index=pd.DatetimeIndex(index, name="timestamp"), name=name)


def read_column_arrays(path: str | os.PathLike, column: str, record=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_column` as two arrays, ``(timestamps as datetime64[ns], float64 values)``,
    without a pandas object per file (thousands of small files are read this way).

    ``record``, from the store's manifest (:func:`~pairscan.store.manifest.recorded_layouts`),
    says where an HDF5 file's arrays lie: while the file is the one recorded, they are
    read from its bytes without HDF5 (:func:`~pairscan.store.formats.hdf5.read_recorded`)."""
    if record is not None and isinstance(path, str) and path.endswith(_HDF5.SUFFIX):
        # A load's usual read: no Path made, no format looked up (a name ending so is HDF5's).
        found = _HDF5.read_recorded(path, column, record)
        if found is not None:
            return found[0], np.asarray(found[1], dtype=np.float64)
        record = None  # disagrees: read through HDF5
    return _column_arrays(Path(path), column, lambda form, path: form.read_column(path, column), record)


def read_column_period(path: str | os.PathLike, column: str, first: np.datetime64 | None,
                       last: np.datetime64 | None, record=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_column_arrays` of the rows from ``first`` to ``last`` (both included;
    None: open), reading only those rows where the format allows: pandas' fixed HDF5
    layout (the timestamps read, the rows found by binary search, then a slice of the
    values read), Parquet (row groups outside the period skipped by their statistics).
    ``record`` as for :func:`read_column_arrays`."""
    return _column_arrays(Path(path), column,
                          lambda form, path: form.read_column_rows(path, column, first, last), record,
                          (first, last))


def _column_arrays(path: Path, column: str, read, record=None, period=None) -> tuple[np.ndarray, np.ndarray]:
    form = _format(path)
    if record is not None and form is _HDF5:
        found = form.read_recorded(path, column, record, *(period or (None, None)), period=period is not None)
        if found is not None:
            return found[0], np.asarray(found[1], dtype=np.float64)
    try:
        index, values = read(form, path)
    except KeyError:
        raise PairscanError(f"no column {column!r} in the stored frame", path) from None
    except (OSError, ValueError, *damaged()) as exc:
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


def read_index_array(path: str | os.PathLike, column: str) -> np.ndarray:
    """The timestamps of a stored frame (``datetime64[ns]``), without its values where
    the format allows (the index node of pandas' fixed layout, Parquet's timestamp
    column). Anything else, a damaged file among it, is read, or named, as
    :func:`read_column_arrays` does with ``column``."""
    path = Path(path)
    try:
        index = _format(path).read_index(path)
    except (OSError, ValueError, KeyError, *damaged()):
        index = None  # named by the reader of the column
    return index if index is not None else read_column_arrays(path, column)[0]


def stored_span(path: str | os.PathLike, column: str = "close") -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The first and last timestamps of a stored frame (its index is sorted), without
    loading its data where the format allows; None for an empty frame."""
    path = Path(path)
    try:
        span = _format(path).span(path)
    except Exception:  # noqa: BLE001 - a layout this does not know: read the column instead
        span = None
    if span is None:
        index = read_column(path, column).index
        span = (index[0], index[-1]) if len(index) else None
    return span


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


def seem_cached(paths, probes: int = 8) -> bool:
    """Whether ``paths`` seem to be in the page cache already: ``probes`` of them, spread
    evenly, each with its first and last byte there (read without waiting for the disk,
    ``RWF_NOWAIT``). Then :func:`will_read` would only cost time. False wherever that
    cannot be asked, or a file cannot be read."""
    nowait = getattr(os, "RWF_NOWAIT", None)
    if nowait is None or not paths:
        return False
    byte = bytearray(1)
    step = max(1, len(paths) // probes)
    for path in list(paths)[::step][:probes]:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                         | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return False
            size = st.st_size
            for offset in {0, max(0, size - 1)}:
                if os.preadv(fd, [byte], offset, nowait) != 1:
                    return False
        except OSError:  # EAGAIN: not in the cache; or a file system that cannot say
            return False
        finally:
            os.close(fd)
    return True
