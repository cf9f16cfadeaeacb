"""Named outputs: the files a user asks for, the CSV cells in them, and text for a terminal.

Every file pairscan writes at a name the user chose (``--out``, ``--matrix``,
``--report``, ``plot --out``, ``bench --plot``, the plots of ``run``'s work folder)
goes through :func:`check_output` before any work and :func:`output_path` when it is
written. What a caller may rely on:

- An existing output that is not a regular file (a device, a FIFO, a socket, a
  symbolic link, a folder) is refused with one :class:`PairscanError` and left
  exactly as it was: an output is replaced, never written through, and never
  replaces anything but a regular file.
- Writes are atomic (a temporary file beside the target, then ``os.replace``): a
  failure leaves the target as it was and no temporary file behind. A full disk, a
  quota or a file-size limit while writing is one :class:`PairscanError` naming the
  file.
- Text cells of every CSV start with a formula character (``=``, ``+``, ``-``,
  ``@``, tab, carriage return) only behind a ``'``, as spreadsheet programs expect;
  numbers stay numbers.
- :func:`printable` is how data (tickers, file names) is shown on a terminal:
  control characters as escapes, so that a ticker cannot move the cursor, recolour
  the terminal or forge a line of output.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from .errors import PairscanError
from .store import FORMATS, atomic_path

PNG = (".png",)  # what every picture pairscan writes must end in

# What a file a user names may already be, and how to say what it is instead.
_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)

# Errors that mean "the disk, not pairscan": said in words, naming the file.
_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
         errno.EFBIG: "file too large (over the file-size limit)"}
# pyarrow and HDF5 may say so only in the text of their error.
_FULL_TEXT = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
              "File too large": errno.EFBIG}


def check_output(path: str | os.PathLike, what: str = "the output", suffixes: tuple[str, ...] = ()) -> Path:
    """Check that ``path`` can be written as a named output, before any work is done.

    ``what`` names the output as the caller spelled it (``--out``, ``out=``...);
    ``suffixes`` (lower case, with the dot) are the names it may end in, if limited.
    Raises :class:`PairscanError` naming the file when the suffix is not one of
    them, when its folder is missing or not writable, or when something other than a
    regular file is already there. Returns ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        ends = " or ".join(suffixes)
        raise PairscanError(f"{what} must end in {ends}" + (f", not {path.suffix!r}" if path.suffix else ""), path)
    _check_existing(path, what)
    parent = path.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise PairscanError("cannot write here (no such folder, or not writable)", path)
    return path


def check_not_in_store(path: str | os.PathLike, store: str | os.PathLike, what: str = "the output") -> None:
    """Refuse an output that would be taken for part of ``store``: a stored ticker's
    file (``STORE/x.h5``, ``STORE/x.parquet``) or one of the store's own dotfiles.

    Writing one would replace a ticker's data, or add a ticker that is not one.
    """
    path, store = Path(path), Path(store)
    if not store.is_dir():
        return
    try:
        inside = path.parent.resolve() == store.resolve()
    except OSError:
        return
    if inside and (path.suffix.lower() in FORMATS.values() or path.name.startswith(".pairscan-")):
        raise PairscanError(f"{what} would be taken for part of the store {store}: name a file outside it, "
                            "or one that is not a stored format", path)


def _check_existing(path: Path, what: str) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise PairscanError("cannot write here (no such folder, or not writable)", path) from None
    except OSError as exc:
        raise PairscanError(f"cannot write here ({exc.strerror})", path) from None
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise PairscanError(f"{what} is {kind}; pairscan replaces only regular files: remove it or name another file",
                        path)


@contextlib.contextmanager
def output_path(path: str | os.PathLike, what: str = "the output") -> Iterator[str]:
    """Yield a temporary path to write ``path``'s content to; move it onto ``path`` on success.

    The target is checked as :func:`check_output` does, on the way in and again just
    before it is replaced. Any failure to write (a full disk, a file-size limit, a
    folder that went away) is one :class:`PairscanError` naming ``path``; the target is
    then left as it was and the temporary file removed.
    """
    path = Path(path)
    _check_existing(path, what)
    try:
        with atomic_path(path) as tmp:
            yield tmp
            _check_existing(path, what)  # something may have taken its place meanwhile
    except OSError as exc:
        raise write_error(exc, path) from None


def write_error(exc: BaseException, path: str | os.PathLike) -> PairscanError:
    """The one-line :class:`PairscanError` for a failure to write ``path``."""
    code = getattr(exc, "errno", None)
    if code not in _FULL:
        text = str(exc)
        code = next((c for sign, c in _FULL_TEXT.items() if sign in text), code)
    if code in _FULL:
        return PairscanError(f"{_FULL[code]} writing this file; nothing was written", path)
    reason = getattr(exc, "strerror", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    return PairscanError(f"cannot write ({reason})", path)


def write_bytes(path: str | os.PathLike, data, what: str = "the output") -> Path:
    """Write ``data`` (bytes or text) to ``path`` through :func:`output_path`."""
    path = Path(path)
    with output_path(path, what) as tmp:
        if isinstance(data, str):
            Path(tmp).write_text(data, encoding="utf-8")
        else:
            Path(tmp).write_bytes(data)
    return path


# ---- CSV cells ----------------------------------------------------------------------------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """``value``, with a ``'`` in front if it is text a spreadsheet would take for a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell, column name and index label passed through :func:`csv_cell`.

    Numbers (a correlation of -0.5 included) are left as numbers; only strings change.
    """
    out = frame.copy(deep=False)
    for i, column in enumerate(out.columns):
        values = out.iloc[:, i]
        if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
            out.isetitem(i, values.map(csv_cell))
    out.columns = _safe_index(out.columns)
    out.index = _safe_index(out.index)
    return out


def _safe_index(index: pd.Index) -> pd.Index:
    if isinstance(index, pd.MultiIndex):
        return index.set_levels([_safe_index(level) for level in index.levels])
    names = [csv_cell(name) for name in index.names]
    if index.dtype == object or isinstance(index.dtype, pd.StringDtype):
        index = pd.Index([csv_cell(v) for v in index], dtype=index.dtype)
    return index.set_names(names)


def write_csv(frame: pd.DataFrame, path: str | os.PathLike, what: str = "the output", *, index: bool = False) -> Path:
    """Write ``frame`` as CSV at full precision, text cells escaped (:func:`csv_safe`),
    atomically through :func:`output_path`."""
    path = Path(path)
    safe = csv_safe(frame)
    with output_path(path, what) as tmp:
        safe.to_csv(tmp, index=index, float_format="%.17g")
    return path


# ---- Terminal text ------------------------------------------------------------------------

# Control characters (C0, DEL, C1), format characters (bidirectional overrides,
# zero-width joiners), line and paragraph separators, and the lone surrogates that
# stand for undecodable bytes in file names (a terminal cannot print those at all).
_UNPRINTABLE = {"Cc", "Cf", "Zl", "Zp", "Cs"}
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text) -> str:
    """``text`` as it may be shown on a terminal: control and format characters as
    Python-style escapes (``\\x1b``, ``\\n``, ``\\u202e``), everything else as it is.

    A backslash is doubled only where the text needs escaping at all, so that
    ordinary names (``C:\\data``) read as they are.
    """
    text = str(text)
    if not any(unicodedata.category(c) in _UNPRINTABLE for c in text):
        return text
    return "".join(_escape(c) if c == "\\" or unicodedata.category(c) in _UNPRINTABLE else c for c in text)


# ---- File names from data -----------------------------------------------------------------

_UNSAFE_NAME = re.compile(r"[^\w.+=@-]", re.ASCII)


def default_name(*parts: str, suffix: str = ".png") -> str:
    """A file name for the current folder made of ``parts`` (tickers) joined by ``-``:
    characters a file name should not hold (``/``, control characters, spaces...)
    become ``_``, and the name never starts with a dot or a dash (an option to other
    programs)."""
    name = "-".join(_UNSAFE_NAME.sub("_", part) for part in parts)
    if not name or name.startswith((".", "-")):
        name = "_" + name
    return name[: 200] + suffix


def count(n: int, noun: str) -> str:
    """``1 pair``, ``2,000 pairs``: a count and its noun, singular for one."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
