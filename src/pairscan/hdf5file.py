"""The bytes of an HDF5 file holding a ticker's frame in pandas' fixed layout, without PyTables.

``frame.to_hdf(key, format="fixed")`` through PyTables spends milliseconds a file on
node and attribute bookkeeping, most of a convert's time on thousands of small files.
A ticker's frame (a ``datetime64[ns]`` index, float64 and int64 columns) needs only six
arrays and a few attributes, so this lays out that same file directly: superblock
version 0, version 1 object headers and symbol-table groups, the layout PyTables
writes by default and every HDF5 release reads. ``pd.read_hdf(path, "/data")`` reads
it as it reads pandas' own file; PyTables sees the same nodes and attributes (except
``name``/``freq`` where pandas writes None, which it reads as absent).

:func:`frame_image` returns None for a frame outside that shape (text, boolean or
other columns, another index): the caller then writes it with pandas.
"""

from __future__ import annotations

import struct
from functools import lru_cache

import numpy as np
import pandas as pd

UNDEF = 0xFFFFFFFFFFFFFFFF  # an undefined address
SIGNATURE = b"\x89HDF\r\n\x1a\n"
LEAF_K, NODE_K = 4, 16  # symbol-table node and group B-tree sizes (HDF5's defaults)
BTREE_SIZE = 24 + 2 * NODE_K * 8 + (2 * NODE_K + 1) * 8
SNOD_SIZE = 8 + 2 * LEAF_K * 40
HEAP_FREE_NULL = 1  # a local heap with no free block

# Message types of a version 1 object header.
DATASPACE, DATATYPE, LAYOUT, ATTRIBUTE, SYMBOL_TABLE = 0x0001, 0x0003, 0x0008, 0x000C, 0x0011

_INT64 = struct.pack("<B3BI", 0x10, 0x08, 0, 0, 8) + struct.pack("<HH", 0, 64)
_FLOAT64 = struct.pack("<B3BI", 0x11, 0x20, 63, 0, 8) + struct.pack("<HHBBBBI", 0, 64, 52, 11, 0, 52, 1023)
_BOOL = struct.pack("<B3BI", 0x14, 0, 0, 0, 1) + struct.pack("<HH", 0, 8)  # PyTables' numpy bool
_TYPES = {np.dtype(np.float64): _FLOAT64, np.dtype(np.int64): _INT64}


def frame_image(frame: pd.DataFrame, key: str = "data") -> bytes | None:
    """The file ``frame.to_hdf(path, key=key, format="fixed")`` stands for, or None if not covered."""
    index = frame.index
    if (not isinstance(index, pd.DatetimeIndex) or index.dtype != np.dtype("datetime64[ns]")
            or not isinstance(index.name, str) or len(frame) == 0 or frame.columns.has_duplicates):
        return None
    names = [_name(c) for c in frame.columns]
    if any(n is None for n in names) or not names:
        return None
    if not all(isinstance(d, np.dtype) and d in _TYPES for d in frame.dtypes):  # numpy's, not extension types
        return None
    columns = [column.to_numpy() for _, column in frame.items()]
    blocks: dict[np.dtype, list[int]] = {}
    for i, values in enumerate(columns):
        blocks.setdefault(values.dtype, []).append(i)

    out = _File()
    arrays: list[tuple[str, np.ndarray, dict]] = [
        ("axis0", _strings(names), _INDEX_ATTRS),
        ("axis1", index.asi8, {"transposed": True, "kind": "datetime64[ns]", "name": index.name,
                               "index_class": "datetime", "freq": None}),
    ]
    group_attrs: dict = {"CLASS": "GROUP", "TITLE": "", "VERSION": "1.0", "pandas_type": "frame",
                         "encoding": "UTF-8", "errors": "strict", "ndim": 2, "nblocks": len(blocks),
                         "axis0_variety": "regular", "axis1_variety": "regular"}
    for b, members in enumerate(blocks.values()):
        values = np.column_stack([columns[i] for i in members])  # rows x columns: pandas' block, transposed
        arrays.append((f"block{b}_items", _strings([names[i] for i in members]), _INDEX_ATTRS))
        arrays.append((f"block{b}_values", values, {"transposed": True}))
        group_attrs[f"block{b}_items_variety"] = "regular"
    children = {name: out.dataset(values, attrs) for name, values, attrs in arrays}
    data = out.group(children, group_attrs)
    root = out.group({key: data}, {"CLASS": "GROUP", "PYTABLES_FORMAT_VERSION": "2.1", "TITLE": "",
                                   "VERSION": "1.0"})
    return out.finish(root)


_INDEX_ATTRS = {"transposed": True, "kind": "string", "name": None, "nan_rep": ""}


def _name(column) -> bytes | None:
    if not isinstance(column, str):
        return None
    raw = column.encode("utf-8")
    return raw if raw and not raw.endswith(b"\0") else None  # a fixed-length string drops trailing NULs


def _strings(values: list[bytes]) -> np.ndarray:
    return np.array(values, dtype=f"S{max(len(v) for v in values)}")


def _pad(raw: bytes) -> bytes:
    return raw + b"\0" * (-len(raw) % 8)


def _message(kind: int, body: bytes) -> bytes:
    body = _pad(body)
    return struct.pack("<HHB3x", kind, len(body), 0) + body


def _dataspace(shape: tuple[int, ...]) -> bytes:
    return struct.pack("<BBBB4x", 1, len(shape), 0, 0) + b"".join(struct.pack("<Q", n) for n in shape)


def _datatype(dtype: np.dtype) -> bytes:
    if dtype.kind == "S":  # fixed-length bytes, NUL-padded
        return struct.pack("<B3BI", 0x13, 0x01, 0, 0, dtype.itemsize)
    return _TYPES[dtype]


@lru_cache(maxsize=1024, typed=True)
def _attribute(name: str, value) -> bytes:
    if isinstance(value, bool):
        kind, data = _BOOL, bytes([value])
    elif isinstance(value, int):
        kind, data = _INT64, struct.pack("<q", value)
    elif value is None:  # PyTables pickles what numpy cannot hold, as ASCII text
        data = b"N."
        kind = struct.pack("<B3BI", 0x13, 0x00, 0, 0, len(data))
    else:  # text: UTF-8, NUL-terminated, as PyTables writes a str
        data = value.encode("utf-8") or b"\0"
        kind = struct.pack("<B3BI", 0x13, 0x10, 0, 0, len(data))
    raw_name = name.encode() + b"\0"
    space = _dataspace(())
    body = struct.pack("<BBHHH", 1, 0, len(raw_name), len(kind), len(space))
    return _message(ATTRIBUTE, body + _pad(raw_name) + _pad(kind) + _pad(space) + data)


def _header(messages: list[bytes]) -> bytes:
    body = b"".join(messages)
    return struct.pack("<BBHII4x", 1, 0, len(messages), 1, len(body)) + body


def _entry(name_offset: int, header: int, cache: tuple[int, int] | None = None) -> bytes:
    scratch = struct.pack("<QQ", *cache) if cache else b"\0" * 16
    return struct.pack("<QQII", name_offset, header, 1 if cache else 0, 0) + scratch


class _File:
    """An HDF5 file built front to back: every object is written after those it points to."""

    def __init__(self) -> None:
        self.parts: list[bytes] = [b"\0" * 96]  # the superblock, written last
        self.size = 96
        self.caches: dict[int, tuple[int, int]] = {}  # group header -> (B-tree, local heap)

    def put(self, raw: bytes) -> int:
        address = self.size
        raw = _pad(raw)
        self.parts.append(raw)
        self.size += len(raw)
        return address

    def dataset(self, values: np.ndarray, attrs: dict) -> int:
        data = self.put(values.tobytes())
        messages = [_message(DATASPACE, _dataspace(values.shape)), _message(DATATYPE, _datatype(values.dtype)),
                    _message(LAYOUT, struct.pack("<BBQQ", 3, 1, data, values.nbytes))]
        attrs = {"CLASS": "ARRAY", "FLAVOR": "numpy", "TITLE": "", "VERSION": "2.4", **attrs}
        return self.put(_header(messages + [_attribute(k, v) for k, v in attrs.items()]))

    def group(self, children: dict[str, int], attrs: dict) -> int:
        names = sorted(children, key=lambda n: n.encode())  # a symbol-table node is sorted by name
        if len(names) > 2 * LEAF_K:
            raise ValueError("more children than one symbol-table node holds")
        offsets, heap_data = {}, b"\0" * 8  # offset 0: the empty name
        for name in names:
            offsets[name] = len(heap_data)
            heap_data += _pad(name.encode() + b"\0")
        heap = self.size
        self.put(b"HEAP" + struct.pack("<B3xQQQ", 0, len(heap_data), HEAP_FREE_NULL, heap + 32) + heap_data)
        entries = b"".join(_entry(offsets[n], children[n], self.caches.get(children[n])) for n in names)
        snod = b"SNOD" + struct.pack("<BBH", 1, 0, len(names)) + entries
        snod = self.put(snod + b"\0" * (SNOD_SIZE - len(snod)))
        btree = b"TREE" + struct.pack("<BBHQQ", 0, 0, 1, UNDEF, UNDEF) + struct.pack(
            "<QQQ", 0, snod, offsets[names[-1]])
        btree = self.put(btree + b"\0" * (BTREE_SIZE - len(btree)))
        messages = [_message(SYMBOL_TABLE, struct.pack("<QQ", btree, heap))]
        header = self.put(_header(messages + [_attribute(k, v) for k, v in attrs.items()]))
        self.caches[header] = (btree, heap)
        return header

    def finish(self, root: int) -> bytes:
        self.parts[0] = (SIGNATURE + struct.pack("<8B", 0, 0, 0, 0, 0, 8, 8, 0)
                         + struct.pack("<HHI", LEAF_K, NODE_K, 0)
                         + struct.pack("<QQQQ", 0, UNDEF, self.size, UNDEF)
                         + _entry(0, root, self.caches[root]))
        return b"".join(self.parts)
