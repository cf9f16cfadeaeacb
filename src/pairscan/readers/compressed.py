"""Compressed sources: ``.gz``, ``.bz2``, ``.xz``, ``.zst`` around any text format.

A compressed file is read as a stream (pyarrow's decompressors for gzip, bzip2 and
zstd; the standard library's ``lzma`` for xz), never unpacked whole in memory unless it
is one ticker's file, and never to more than the caller's bound: what it unpacks to is
counted as it is read, so a small file that unpacks to gigabytes (a "bomb") is refused
in one line after reading only that bound.
"""

from __future__ import annotations

import io
import lzma
import os
import shutil
from pathlib import Path

import pyarrow as pa

from ..errors import PairscanError
from .bounds import size_text

COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
NAMES = {"gzip": "gzip", "bz2": "bzip2", "xz": "xz", "zstd": "zstd"}
CHUNK = 1 << 20
# The first bytes of each compression's files: a compressed file under a plain name is named as such.
MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}


def compression(name: str | os.PathLike) -> str | None:
    """The compression a file's name says (``AAPL.csv.gz`` -> ``gzip``), or None."""
    lower = os.fspath(name).lower()
    return next((codec for suffix, codec in COMPRESSIONS.items() if lower.endswith(suffix)), None)


def inner_name(name: str) -> str:
    """The name without its compression's extension (``AAPL.csv.gz`` -> ``AAPL.csv``)."""
    lower = name.lower()
    for suffix in COMPRESSIONS:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def sniffed(head: bytes) -> str | None:
    """The compression whose signature ``head`` starts with, or None."""
    return next((codec for magic, codec in MAGIC.items() if head.startswith(magic)), None)


def plain_problem(head: bytes, name) -> str | None:
    """Why a file under a plain name is not read as text: it is compressed (or None)."""
    codec = sniffed(head)
    if codec is None:
        return None
    ext = next(s for s, c in COMPRESSIONS.items() if c == codec)
    return (f"this file is {NAMES[codec]}-compressed; name it {Path(os.fspath(name)).name}{ext} "
            f"and pairscan unpacks it as it reads")


class _Bounded(io.RawIOBase):
    """A decompressing stream that refuses to give more than ``limit`` bytes."""

    def __init__(self, stream, limit: int, path, codec: str, what: str):
        self._stream, self._limit, self._path, self._codec, self._what = stream, limit, path, codec, what
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            data = self._stream.read(min(len(buffer), self._limit + 1 - self.count) or 1)
        except (OSError, EOFError, lzma.LZMAError, pa.ArrowException) as exc:
            raise PairscanError(f"not a valid {NAMES[self._codec]} file ({str(exc).splitlines()[0] or 'damaged'}); "
                                f"check the download", self._path) from None
        self.count += len(data)
        if self.count > self._limit:
            raise PairscanError(f"unpacks to more than {self._what} ({size_text(self._limit)}); a compressed file "
                                f"that large is refused (raise --max-bytes if it is genuine)", self._path)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            super().close()


def open_unpacked(path: str | os.PathLike, limit: int, what: str = "--max-bytes") -> io.BufferedReader:
    """A binary stream of what the compressed ``path`` unpacks to, refusing more than ``limit``
    bytes (:class:`PairscanError` naming ``path`` and ``what`` the bound is)."""
    path = Path(path)
    codec = compression(path)
    if codec is None:
        raise ValueError(f"{path} is not a compressed file")
    try:
        if codec == "xz":
            stream = lzma.open(path, "rb")
        else:
            stream = pa.CompressedInputStream(pa.OSFile(str(path), "rb"), codec)
    except (OSError, pa.ArrowException) as exc:
        raise PairscanError(f"cannot read ({getattr(exc, 'strerror', None) or exc})", path) from None
    return io.BufferedReader(_Bounded(stream, limit, path, codec, what), CHUNK)


def unpacked_bytes(path: str | os.PathLike, limit: int, what: str = "--max-bytes") -> bytes:
    """All that ``path`` unpacks to (at most ``limit`` bytes, else :class:`PairscanError`)."""
    with open_unpacked(path, limit, what) as f:
        return f.read()


def head(path: str | os.PathLike, size: int) -> bytes:
    """The first ``size`` bytes of the file, unpacked if it is compressed."""
    if compression(path) is None:
        with open(path, "rb") as f:
            return f.read(size)
    with open_unpacked(path, 1 << 62) as f:
        return f.read(size)


def unpack(path: Path, folder: Path, limit: int) -> Path:
    """``path`` itself if it is not compressed; else what it unpacks to, streamed into ``folder``
    (at most ``limit`` bytes: the caller's ``--max-bytes``)."""
    if compression(path) is None:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / inner_name(path.name)
    with open_unpacked(path, limit) as source, open(target, "wb") as out:
        shutil.copyfileobj(source, out, CHUNK)
    return target
