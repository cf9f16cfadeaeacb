"""A ticker's frame as an HDF5 file image in pandas' fixed layout, written through PyTables' own nodes.

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

import numpy as np
import pandas as pd

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
