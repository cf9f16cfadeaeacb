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
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ...readers.base import Columns

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
    """What PyTables raises for a damaged file (not an OSError)."""
    import tables

    return (tables.HDF5ExtError, tables.NoSuchNodeError)

def read_frame(path: Path) -> pd.DataFrame:
    """The whole stored frame."""
    with HDF5_LOCK:
        return pd.read_hdf(path, "/" + HDF5_KEY)


def span(path: Path):
    """The first and last timestamps of a stored frame, from its index alone; None if empty."""
    import tables

    with HDF5_LOCK, tables.open_file(path, mode="r") as h5:
        axis = h5.get_node(f"/{HDF5_KEY}/axis1")  # the row index of a fixed-format frame
        kind = str(getattr(axis.attrs, "kind", ""))
        if not kind.startswith("datetime64") or axis.nrows == 0:
            return None
        unit = kind[len("datetime64["):-1] if "[" in kind else "ns"
        return tuple(pd.Timestamp(np.datetime64(int(axis[i]), unit)) for i in (0, -1))


def read_index(path: Path) -> np.ndarray | None:
    """The index node of pandas' fixed layout through h5py's low level; None for anything else."""
    return _read_fixed(path, lambda fid, index: index())


def read_column(path: Path, column: str) -> tuple[pd.DatetimeIndex | np.ndarray, np.ndarray]:
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
    with HDF5_LOCK:
        frame = pd.read_hdf(path, "/" + HDF5_KEY)
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

