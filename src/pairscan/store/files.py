"""The store's files on disk: atomic writes, temporary files, the write lock.

Every file is written to a temporary name beside its target and moved into place with
``os.replace``, so a reader (or a rerun after a crash) sees it whole or not at all.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from ..errors import PairscanError
from . import formats

MANIFEST = ".pairscan-manifest.json"
LOCK = ".pairscan-lock"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Files made by mkstemp are private; the store's files get the usual permissions.
FILE_MODE = 0o666 & ~_umask()

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
        if target != MANIFEST and formats.for_path(Path(target)) is None:
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



def write_atomically(target: str | os.PathLike, data) -> None:
    """Write ``data`` (bytes or a buffer) to ``target`` through :func:`atomic_path`."""
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        f.write(data)


@contextlib.contextmanager
def no_space_is_bad_input(path: Path) -> Iterator[None]:
    """Turn a full disk (or quota) met while writing ``path`` into one line: the store's
    fault, not pairscan's. Other errors pass through unchanged."""
    # HDF5 says so only in the text of its error (PyTables raises no OSError);
    # pyarrow may leave errno unset.
    try:
        yield
    except Exception as exc:
        text = str(exc)
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(
            sign in text for sign in ("No space left on device", "Disk quota exceeded", "errno = 28")
        ):
            raise PairscanError(f"no space left on device writing {path}") from None
        raise


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
