"""Where a local process pool's shared panel lives: one file that its workers map.

The file goes to shared memory (``/dev/shm``) when that has room for it, else to the
temporary folder on disk (``TMPDIR``, ``/tmp``). Its space is reserved before anything
is written (``posix_fallocate``), so a small tmpfs (a container's 64 MB ``/dev/shm``)
is found full up front instead of by a SIGBUS in the middle of writing the panel.

A file's name carries its owner's process id (``pairscan-panel-<pid>-<random>.f64``)
and the owner holds a shared lock on it while it runs. The owner removes the file when
it is done; a run killed before that (``kill -9``) leaves it, and a later run removes
every panel file whose owner is gone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import tempfile

import numpy as np

from .errors import PairscanError
from .executors import process_running

PREFIX = "pairscan-panel-"
SUFFIX = ".f64"
SHARED_MEMORY = "/dev/shm"
_NAME = re.compile(re.escape(PREFIX) + r"(\d+)-.*" + re.escape(SUFFIX))
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def folders() -> list[str]:
    """Where a panel file may go, in order of preference."""
    candidates = []
    if os.path.isdir(SHARED_MEMORY) and os.access(SHARED_MEMORY, os.W_OK):
        candidates.append(SHARED_MEMORY)
    temporary = tempfile.gettempdir()
    if os.path.realpath(temporary) not in map(os.path.realpath, candidates):
        candidates.append(temporary)
    return candidates


def panel_allocator(stack: contextlib.ExitStack):
    """An ``allocate(shape)`` for ``load_panel``: a float64 panel in a file workers can map.

    The file is removed when ``stack`` closes. Raises :class:`PairscanError` (one line
    saying where it looked) when no folder has room for it.
    """

    def allocate(shape: tuple[int, int]) -> np.memmap:
        nbytes = max(1, 8 * int(np.prod(shape)))
        tried = []
        for folder in folders():
            remove_orphans(folder)
            placed = _reserve(stack, folder, nbytes)
            if placed is not None:
                return np.memmap(placed, dtype=np.float64, mode="r+", shape=shape, order="F")
            tried.append(f"{folder} has {_size(_free(folder))} free")
        raise PairscanError(
            f"no room for the panel ({_size(nbytes)}): {'; '.join(tried)}; "
            "set TMPDIR to a folder with room, or use --executor threads")

    return allocate


def discard(values: np.memmap) -> None:
    """Free, and remove, the file of a panel from :func:`panel_allocator` that is no longer
    wanted, before its run ends. Nothing may read or write ``values`` (or another mapping
    of the file) afterwards. A file of another process, or not a panel's, is left alone."""
    path = str(values.filename)
    match = _NAME.fullmatch(os.path.basename(path))
    if match and int(match[1]) == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            os.truncate(path, 0)  # its space goes now, though the run still holds the file open
        _unlink(path)


def _reserve(stack: contextlib.ExitStack, folder: str, nbytes: int) -> str | None:
    """A new panel file of ``nbytes`` in ``folder``, its space reserved; None when it does not fit."""
    try:
        fd, path = tempfile.mkstemp(prefix=f"{PREFIX}{os.getpid()}-", suffix=SUFFIX, dir=folder)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # held until the run ends: the owner is alive
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as exc:
        os.close(fd)
        _unlink(path)
        if exc.errno in _FULL:
            return None
        raise
    stack.callback(_unlink, path)
    stack.callback(os.close, fd)  # callbacks run last-in first-out: unlock, then remove
    return path


def remove_orphans(folder: str) -> list[str]:
    """Remove the panel files in ``folder`` whose owner is gone; return their paths.

    Gone means its process id is not running here, and nobody holds its lock (a
    ``/dev/shm`` shared with another process namespace has other ids in it).
    """
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = _NAME.fullmatch(name)
        if not match or _alive(int(match[1])):
            continue
        path = os.path.join(folder, name)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its owner still runs
        else:
            _unlink(path)
            removed.append(path)
        finally:
            os.close(fd)
    return removed


def _alive(pid: int) -> bool:
    return pid == os.getpid() or process_running(pid)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _free(folder: str) -> int:
    try:
        stat = os.statvfs(folder)
    except OSError:
        return 0
    return stat.f_bavail * stat.f_frsize


def _size(nbytes: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"

