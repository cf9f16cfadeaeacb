"""HDF5 (``.h5``): pandas' fixed layout, ``pd.read_hdf(path, "/data")`` reads a stored file.

Writing: a ticker's frame as an HDF5 file image in pandas' fixed layout, written through PyTables' own nodes.

``frame.to_hdf(key, format="fixed")`` spends milliseconds a file in pandas' HDFStore
(opening the store, inferring each block's kind, converting the index, writing the
attributes one by one through its wrappers), most of a convert's time on thousands of
small files. A ticker's usual frame (a ``datetime64[ns]`` index, float64 and int64
columns) is six arrays and a few attributes: this writes exactly those nodes with
PyTables itself, into an in-memory file (HDF5's core driver, no backing store), and
returns the file's bytes. ``pd.read_hdf(path, "/data")`` reads it as pandas' own file;
PyTables sees the same nodes, data and attributes (the tests compare them with
pandas' ``to_hdf`` node for node).

:func:`frame_image` returns None for a frame outside that shape (text, boolean or other
columns, another index): the caller then writes it with pandas. :func:`arrays_image`
writes the same file from the arrays alone, for a frame that was never built.
"""

from __future__ import annotations

import itertools
import os
import stat
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import PairscanError
from ...readers.base import Columns
from .rows import rows_between

NAME = "hdf5"
SUFFIX = ".h5"
HDF5_KEY = "data"
# PyTables is not thread-safe: every HDF5 call in this process goes through this lock.
HDF5_LOCK = threading.RLock()

_TYPES = (np.dtype(np.float64), np.dtype(np.int64))
# The attributes pandas gives the index arrays (column names) of its fixed layout.
_ITEMS = {"kind": "string", "name": None, "nan_rep": "", "transposed": True}


def frame_image(frame: pd.DataFrame, key: str = "data") -> bytes | None:
    """The bytes of the file ``frame.to_hdf(path, key=key, format="fixed")`` writes, or None
    if the frame is not of the shape this covers. The caller holds the HDF5 lock."""
    index = frame.index
    if (not isinstance(index, pd.DatetimeIndex) or index.dtype != np.dtype("datetime64[ns]")
            or frame.columns.has_duplicates):
        return None
    if not all(isinstance(d, np.dtype) and d in _TYPES for d in frame.dtypes):  # numpy's, not extension types
        return None
    return arrays_image(index.asi8, index.name, list(frame.columns), [column.to_numpy() for _, column in frame.items()],
                        key)


def arrays_image(stamps: np.ndarray, index_name, names: list, columns: list[np.ndarray],
                 key: str = "data") -> bytes | None:
    """:func:`frame_image` of the frame of these arrays: ``stamps`` the index (int64
    nanoseconds) named ``index_name``, ``columns`` float64 or int64 arrays under ``names``
    (distinct). None if they are not of the shape this covers. The caller holds the HDF5 lock."""
    import tables

    if not isinstance(index_name, str) or len(stamps) == 0 or not names:
        return None
    encoded = [_name(c) for c in names]
    if any(n is None for n in encoded) or not all(values.dtype in _TYPES for values in columns):
        return None
    names = encoded
    blocks: dict[np.dtype, list[int]] = {}
    for i, values in enumerate(columns):
        blocks.setdefault(values.dtype, []).append(i)

    with tables.open_file("frame.h5", mode="w", driver="H5FD_CORE", driver_core_backing_store=0) as h5:
        group = h5.create_group("/", key)
        _set(group._v_attrs, {"pandas_type": "frame", "encoding": "UTF-8", "errors": "strict", "ndim": 2,
                              "nblocks": len(blocks), "axis0_variety": "regular", "axis1_variety": "regular"})
        _array(h5, group, "axis0", _strings(names), _ITEMS)
        _array(h5, group, "axis1", stamps, {"kind": "datetime64[ns]", "name": index_name,
                                            "index_class": "datetime", "freq": None, "transposed": True})
        for b, members in enumerate(blocks.values()):
            # pandas stores a block as rows x columns, marked as transposed.
            values = np.column_stack([columns[i] for i in members])
            group._v_attrs[f"block{b}_items_variety"] = "regular"
            _array(h5, group, f"block{b}_items", _strings([names[i] for i in members]), _ITEMS)
            _array(h5, group, f"block{b}_values", values, {"transposed": True})
        h5.flush()
        return h5.get_file_image()


def _array(h5, group, name: str, values: np.ndarray, attrs: dict) -> None:
    node = h5.create_array(group, name, obj=values)
    _set(node._v_attrs, attrs)


def _set(attrs, values: dict) -> None:
    for name, value in values.items():
        attrs[name] = value


def _name(column) -> bytes | None:
    if not isinstance(column, str):
        return None
    raw = column.encode("utf-8")
    return raw if raw and not raw.endswith(b"\0") else None  # a fixed-length string drops trailing NULs


def _strings(values: list[bytes]) -> np.ndarray:
    return np.array(values, dtype=f"S{max(len(v) for v in values)}")


def image(frame: pd.DataFrame | Columns, name: str) -> bytes:
    """The bytes of an HDF5 file holding ``frame``, built in memory.

    HDF5 writing to a full disk may fail to say so: some failures at close time leave
    an unreadable file and no error. Built in memory and written by Python, a write
    that does not fit always raises. A ticker's usual frame (float64 and int64 columns)
    is written node by node through PyTables (:func:`arrays_image`); any
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


def damaged() -> tuple[type[Exception], ...]:
    """What reading a damaged file may raise besides OSError and ValueError (h5py names a
    missing node with KeyError, which the caller must not take for a missing column)."""
    return (_Damaged,)


class _Damaged(Exception):
    """A node of pandas' fixed layout is missing or unreadable."""


# -- reading ----------------------------------------------------------------------------
#
# Only through HDF5's own calls (h5py), never PyTables or pandas: both unpickle what a
# file holds (an object block, a string attribute that looks like a pickle), so a stored
# file from elsewhere could run code. What is read is pandas' fixed layout as pairscan
# writes it (a datetime index and blocks of numbers); anything else is refused, naming
# the file. h5py's low level, because opening nodes and their attributes is most of the
# cost of reading a small file, and a store has thousands.

_NONE = b"N."  # how PyTables stores None in a string attribute (a pickle, never unpickled here)


def foreign(path: Path, why: str) -> PairscanError:
    """The error for a file that is not of the layout pairscan writes."""
    return PairscanError(f"not a store file pairscan wrote ({why}); convert the source again", path)


class _Fixed:
    """An open file of pandas' fixed layout: its index checked, its blocks read when asked for."""

    def __init__(self, path: Path):
        import h5py

        self.path, self.group = path, None
        self.fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY)  # OSError if not HDF5
        try:
            self.axis = self._node("axis1")
            self.rows = _int64_vector(self.axis)  # None unless int64 and one-dimensional
            kind = _attr(self.axis, b"kind")
            self.kind = kind.decode() if isinstance(kind, bytes) else ""
            if self.rows is None or self.kind not in _TIME_KINDS:
                raise foreign(self.path, "its index is not of timestamps")
        except BaseException:
            self.fid.close()
            raise

    def blocks(self):
        """``(names, values node)`` of each block in turn."""
        for b in itertools.count():
            try:
                items = self._node(f"block{b}_items")
            except PairscanError:
                return  # the last block was the one before
            names = _strings_of(items)
            if names is None:
                raise foreign(self.path, f"block {b} has no column names")
            yield [n.decode("utf-8", "replace") for n in names], self._node(f"block{b}_values")

    def values(self, names: list[str], values, wanted: str | None = None) -> np.ndarray:
        """A block's values (rows x columns), checked to be numbers or timestamps (errors name
        ``wanted``, or the block's first column)."""
        import h5py

        wanted = names[0] if wanted is None else wanted
        if values.dtype.kind == "O":
            # Pickled objects. Extra text columns are written this way too (pandas' fixed
            # layout has no other), but never a column pairscan reads for numbers.
            raise foreign(self.path, f"object column {wanted!r}")
        if values.dtype.kind not in "fiu" or values.shape != (self.rows, len(names)):
            raise foreign(self.path, f"{values.dtype} column {wanted!r} of another shape")
        data = _read(values)
        if values.get_type().get_class() == h5py.h5t.BITFIELD:  # how PyTables stores booleans
            return data.view(bool)
        kind = _attr(values, b"value_type")  # pandas stores a block of datetimes as int64 marked so
        if kind is None:
            return data
        kind = kind.decode() if isinstance(kind, bytes) else ""
        if values.dtype != np.dtype(np.int64) or kind not in _TIME_KINDS:
            raise foreign(self.path, f"{kind or 'unknown'} column {wanted!r}")
        return data.view(kind)

    def _node(self, name: str):
        import h5py

        try:
            if self.group is None:  # nodes opened from their group: no walk from the root each
                self.group = h5py.h5g.open(self.fid, f"/{HDF5_KEY}".encode())
            return h5py.h5d.open(self.group, name.encode())
        except (KeyError, ValueError, TypeError):
            raise foreign(self.path, f"no node /{HDF5_KEY}/{name}") from None

    def index(self) -> np.ndarray:
        """The timestamps, ``datetime64[ns]``."""
        stamps = _read_as(self.axis, (self.rows,), np.int64).view(self.kind)
        return stamps if stamps.dtype == "datetime64[ns]" else stamps.astype("datetime64[ns]")

    def index_name(self):
        name = _attr(self.axis, b"name")
        return None if name in (None, _NONE) else name.decode("utf-8", "replace") if isinstance(name, bytes) else None

    def column(self, column: str) -> np.ndarray:
        """One column's values; KeyError if there is none of that name."""
        for names, values in self.blocks():
            if column in names:
                data = self._floats(values, len(names))
                if data is None:  # anything but plain float64: checked (and refused) in full
                    data = self.values(names, values, column)
                return data[:, names.index(column)]
        raise KeyError(column)

    def _floats(self, values, columns: int) -> np.ndarray | None:
        """A block of plain float64 values (little-endian, rows x ``columns``, no mark of
        another kind), read with the fewest calls; None for any other block."""
        import h5py

        kind = values.get_type()
        if (kind.get_class() != h5py.h5t.FLOAT or kind.get_size() != 8 or kind.get_order() != h5py.h5t.ORDER_LE
                or values.get_space().get_simple_extent_dims() != (self.rows, columns)
                or h5py.h5a.exists(values, b"value_type")):
            return None
        return _read_as(values, (self.rows, columns), np.float64)

    def column_rows(self, column: str, first, last) -> tuple[np.ndarray, np.ndarray]:
        """``(timestamps, values)`` of one column from ``first`` to ``last`` (both included,
        None: open): the timestamps read, the rows found by binary search, and only those
        rows of the column's block read; KeyError if there is no column of that name."""
        import h5py

        stamps = self.index()
        rows = rows_between(stamps, first, last)
        for names, values in self.blocks():
            if column not in names:
                continue
            plain = (values.dtype.kind in "fiu" and values.shape == (self.rows, len(names))
                     and values.get_type().get_class() != h5py.h5t.BITFIELD
                     and _attr(values, b"value_type") is None)
            if not plain or rows.stop == rows.start:
                # Anything but plain numbers is checked (and refused) as a whole read does.
                return stamps[rows], self.values(names, values, column)[rows, names.index(column)]
            space = values.get_space()
            space.select_hyperslab((rows.start, 0), (rows.stop - rows.start, len(names)))
            out = np.empty((rows.stop - rows.start, len(names)), values.dtype)
            values.read(h5py.h5s.create_simple(out.shape), space, out)
            return stamps[rows], out[:, names.index(column)]
        raise KeyError(column)

    def close(self) -> None:
        self.fid.close()


_TIME_KINDS = frozenset(f"datetime64[{unit}]" for unit in ("s", "ms", "us", "ns"))


def _open(path: Path) -> _Fixed:
    return _Fixed(path if isinstance(path, Path) else Path(path))  # a Path made again is parsed again


def read_frame(path: Path) -> pd.DataFrame:
    """The whole stored frame, as ``pd.read_hdf(path, "/data")`` returns it for pairscan's layout."""
    fixed = _open(path)
    try:
        order = [n.decode("utf-8", "replace") for n in _read(fixed._node("axis0"))]
        columns = {}
        for names, values in fixed.blocks():
            data = fixed.values(names, values)
            columns.update((name, data[:, j]) for j, name in enumerate(names))
        if sorted(order) != sorted(columns):
            raise foreign(path, "its columns and blocks disagree")
        index = pd.DatetimeIndex(_read(fixed.axis).view(fixed.kind), name=fixed.index_name())
        return pd.DataFrame({name: columns[name] for name in order}, index=index, columns=pd.Index(order))
    finally:
        fixed.close()


def span(path: Path):
    """The first and last timestamps of a stored frame, from its index alone; None if empty."""
    fixed = _open(path)
    try:
        stamps = fixed.index()
        return (pd.Timestamp(stamps[0]), pd.Timestamp(stamps[-1])) if len(stamps) else None
    finally:
        fixed.close()


def read_index(path: Path) -> np.ndarray:
    """The timestamps (``datetime64[ns]``) without the values."""
    fixed = _open(path)
    try:
        return fixed.index()
    finally:
        fixed.close()


def read_column(path: Path, column: str) -> tuple[np.ndarray, np.ndarray]:
    """``(timestamps, values)`` of one column; KeyError if the frame has none of that name."""
    fixed = _open(path)
    try:
        return fixed.index(), fixed.column(column)
    finally:
        fixed.close()


def read_column_rows(path: Path, column: str, first, last) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_column` of the rows from ``first`` to ``last`` alone (see :meth:`_Fixed.column_rows`)."""
    fixed = _open(path)
    try:
        return fixed.column_rows(column, first, last)
    finally:
        fixed.close()


def _read(dataset) -> np.ndarray:
    import h5py

    out = np.empty(dataset.shape, dataset.dtype)
    dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
    return out


def _read_as(dataset, shape: tuple, dtype) -> np.ndarray:
    """A dataset known to hold ``shape`` numbers of the native ``dtype`` (int64, float64)."""
    import h5py

    out = np.empty(shape, dtype)
    mtype = h5py.h5t.NATIVE_INT64 if out.dtype == np.int64 else h5py.h5t.NATIVE_DOUBLE
    dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, out, mtype=mtype)
    return out


def _int64_vector(dataset) -> int | None:
    """The length of a one-dimensional dataset of little-endian int64; None for any other."""
    import h5py

    kind = dataset.get_type()
    if (kind.get_class() != h5py.h5t.INTEGER or kind.get_size() != 8 or kind.get_sign() != h5py.h5t.SGN_2
            or kind.get_order() != h5py.h5t.ORDER_LE):
        return None
    dims = dataset.get_space().get_simple_extent_dims()
    return dims[0] if len(dims) == 1 else None


def _strings_of(dataset) -> np.ndarray | None:
    """A one-dimensional dataset of fixed-length byte strings, read; None for any other."""
    import h5py

    kind = dataset.get_type()
    if kind.get_class() != h5py.h5t.STRING or kind.is_variable_str():
        return None
    dims = dataset.get_space().get_simple_extent_dims()
    if len(dims) != 1:
        return None
    if kind.get_strpad() == h5py.h5t.STR_SPACEPAD:
        return _read(dataset)  # converted to NUL padding, as h5py reads it
    out = np.empty(dims, f"S{kind.get_size()}")
    dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, out, mtype=kind)  # as stored: NUL padded
    return out


def _attr(node, name: bytes):
    """An attribute's value (bytes for a string), or None if the node has none of that name."""
    import h5py

    if not h5py.h5a.exists(node, name):
        return None
    attr = h5py.h5a.open(node, name)
    kind = attr.get_type()
    if (kind.get_class() == h5py.h5t.STRING and not kind.is_variable_str()
            and kind.get_strpad() != h5py.h5t.STR_SPACEPAD
            and attr.get_space().get_simple_extent_type() == h5py.h5s.SCALAR):
        out = np.empty((), f"S{kind.get_size()}")  # a string, as most are: as stored, NUL padded
        attr.read(out, mtype=kind)
        return out[()]
    if attr.dtype.kind not in "Siuf" or attr.shape != ():
        return None
    out = np.empty((), attr.dtype)
    attr.read(out)
    return out[()]


# -- where the arrays lie ---------------------------------------------------------------
#
# Opening a file, its group and its nodes through HDF5 is most of the cost of reading a
# small file. When a ticker is converted, :func:`layout` records where its index and its
# blocks of numbers lie in the file (contiguous arrays only); the manifest keeps that
# record beside the file's size and mtime. :func:`read_recorded` then reads the index and
# a column straight from the file's bytes, without HDF5, while the file is still the one
# recorded (a regular file, no link, of that size and mtime), every offset and length
# inside the file and every type one of a few kinds of plain numbers; None otherwise,
# and the caller reads the file through HDF5. Nothing is unpickled either way: a record
# that lies can only give numbers from the file's own bytes.

_VALUE_TYPES = {"<f8": 8, "<f4": 4, "<i8": 8}


def layout(path: Path) -> dict | None:
    """Where the arrays of a stored file lie: ``{"index": [offset, rows, kind], "blocks":
    [[offset, columns, dtype, names], ...]}`` (offsets in bytes; rows x columns values of
    ``dtype``, row after row; ``kind`` the index's ``datetime64`` unit), or None if its
    index is not a contiguous array. A block that is not a contiguous array of plain numbers is left out
    (its columns are read through HDF5)."""
    import h5py

    fixed = _open(path)
    try:
        index = _contiguous(fixed.axis, fixed.rows * 8)
        if index is None:
            return None
        blocks = []
        for names, values in fixed.blocks():
            kind = values.get_type()
            dtype = values.dtype.str
            if (dtype not in _VALUE_TYPES or kind.get_class() not in (h5py.h5t.FLOAT, h5py.h5t.INTEGER)
                    or values.shape != (fixed.rows, len(names)) or _attr(values, b"value_type") is not None):
                continue
            offset = _contiguous(values, fixed.rows * len(names) * _VALUE_TYPES[dtype])
            if offset is not None:
                blocks.append([offset, len(names), dtype, names])
        return {"index": [index, fixed.rows, fixed.kind], "blocks": blocks}
    finally:
        fixed.close()


def _contiguous(dataset, size: int) -> int | None:
    """The offset of a dataset stored as one contiguous, unfiltered run of ``size`` bytes."""
    import h5py

    plist = dataset.get_create_plist()
    if plist.get_layout() != h5py.h5d.CONTIGUOUS or plist.get_nfilters() != 0 or dataset.get_storage_size() != size:
        return None
    offset = dataset.get_offset()
    return offset if isinstance(offset, int) else None


def read_recorded(path: str | os.PathLike, column: str, record, first=None, last=None, period: bool = False):
    """``(timestamps, values)`` of ``column`` read from the file's bytes as ``record``
    (``(file_size, file_mtime_ns, layout)``) says, the rows from ``first`` to ``last``
    alone with ``period``; None when anything disagrees (read through HDF5 then)."""
    try:
        size, mtime_ns, where = record
        (index_at, rows, kind), blocks = where["index"], where["blocks"]
        for block in blocks:
            if column in block[3]:
                at, columns, dtype, names = block[0], block[1], block[2], block[3]
                break
        else:
            return None
    except (TypeError, ValueError, KeyError, IndexError):
        return None
    # Exact types, as the manifest's JSON gives them (a bool is no count).
    if not (type(size) is type(mtime_ns) is type(index_at) is type(rows) is type(at) is type(columns) is int
            and min(size, mtime_ns, index_at, rows, at) >= 0 and columns >= 1
            and type(dtype) is str and dtype in _VALUE_TYPES and type(kind) is str and kind in _TIME_KINDS
            and type(names) is list and len(names) == columns):
        return None
    width = columns * _VALUE_TYPES[dtype]
    if index_at + rows * 8 > size or at + rows * width > size:
        return None
    try:
        # No link followed; a FIFO or device opened without waiting, then refused by its type.
        fd = os.open(path, _RECORDED_OPEN)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size or st.st_mtime_ns != mtime_ns:
            return None
        stamps = np.empty(rows, _STAMPS)
        joined = not period and rows and at == index_at + rows * 8
        if joined:
            # The block right after the index, as convert writes them: both in one read.
            values = np.empty((rows, columns), _DTYPES[dtype])
            if os.preadv(fd, [stamps, values], index_at) != stamps.nbytes + values.nbytes:
                return None
            chosen = slice(0, rows)
        else:
            if rows and os.preadv(fd, [stamps], index_at) != stamps.nbytes:
                return None
            stamps = stamps.view(kind) if kind == "datetime64[ns]" else stamps.view(kind).astype("datetime64[ns]")
            chosen = rows_between(stamps, first, last) if period else slice(0, rows)
            values = np.empty((chosen.stop - chosen.start, columns), _DTYPES[dtype])
            if values.size and os.preadv(fd, [values], at + chosen.start * width) != values.nbytes:
                return None
    except OSError:
        return None
    finally:
        os.close(fd)
    if joined:  # read in one with the values: their unit still to apply
        stamps = stamps.view(_NS) if kind == "datetime64[ns]" else stamps.view(kind).astype(_NS)
    return stamps[chosen], values[:, names.index(column)]


_RECORDED_OPEN = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                  | getattr(os, "O_CLOEXEC", 0))
_STAMPS = np.dtype("<i8")
_NS = np.dtype("datetime64[ns]")
_DTYPES = {name: np.dtype(name) for name in _VALUE_TYPES}
