"""The store's files on disk: where each ticker is stored, atomic writes, temporary files,
the write lock.

This is the one place that decides a path inside a store: a ticker's file name comes
from :func:`stored_name`, and every write or removal of a stored file is checked by
:func:`store_child` to stay directly inside the store. Every file is written to a temporary name beside its target and moved into place with
``os.replace``, so a reader (or a rerun after a crash) sees it whole or not at all.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import re
import stat
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

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


# -- where a ticker is stored ----------------------------------------------------------
#
# One reversible rule from a ticker to its file name in the store: "%", "/", "\\", a
# leading ".", and lone surrogates (a file name that is not UTF-8) are written as "%XX"
# (their UTF-8 bytes), everything else as it is (control characters would be too, but
# a ticker holding one is refused). So every ticker ("..", "BRK/B", "../../evil",
# ".pairscan-manifest") is a plain file inside the store, no stored file is a dotfile
# (those are the store's own: manifest, lock, temporaries), and listing the store decodes
# each name back to its ticker.

_ENCODED = re.compile(r"[%/\\\x00-\x1f\x7f\ud800-\udfff]|^\.")
NAME_MAX = 255  # bytes in a file name, on every common file system


def _encode(ticker: str) -> str:
    return _ENCODED.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8", "surrogatepass")), ticker)


# Unicode's control characters (category Cc, which never changes): C0, DEL and C1.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def ticker_problem(ticker) -> str | None:
    """Why ``ticker`` cannot be stored (empty, a control character), or None if it can.

    NUL and other control characters are refused rather than encoded: they are never
    part of a real ticker, and a file name or a terminal would show them wrongly.
    """
    if not isinstance(ticker, str) or ticker == "":
        return "an empty ticker"
    if _CONTROL.search(ticker):
        return f"ticker {ticker!r} holds a control character"
    return None


def stored_name(ticker: str, suffix: str) -> str:
    """The file name of ``ticker`` in a store of files ending in ``suffix``.

    :class:`PairscanError` (naming the ticker, no file) for a ticker that cannot be
    stored, or whose file name would be longer than a file system allows.
    """
    problem = ticker_problem(ticker)
    if problem:
        raise PairscanError(problem)
    name = _encode(ticker) + suffix
    if len(os.fsencode(name)) > NAME_MAX:
        raise PairscanError(f"ticker {ticker[:40]!r}... is too long to be a file name "
                            f"({len(os.fsencode(name))} bytes with {suffix}; at most {NAME_MAX})")
    return name


def ticker_of(name: str, suffix: str) -> str | None:
    """The ticker whose file name in the store is ``name``; None if ``name`` is not one
    :func:`stored_name` gives (not a stored file of that format, or not pairscan's)."""
    if not name.endswith(suffix) or len(name) == len(suffix):
        return None
    try:
        ticker = unquote(name[: -len(suffix)], errors="surrogatepass")
    except UnicodeDecodeError:
        return None
    if ticker_problem(ticker) or _encode(ticker) + suffix != name:
        return None
    return ticker


def store_child(store: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path``, checked to be a file directly inside ``store``; :class:`PairscanError` if not.

    Every write and removal of a store's file goes through this: the path's folder,
    resolved (symbolic links followed), must be the store, resolved, and its name a
    plain file name. The file itself is never followed: writes replace it
    (``os.replace``) and removals unlink it, a symbolic link included.
    """
    store, path = Path(store), Path(path)
    name = path.name
    if name in ("", ".", "..") or "\0" in str(path) or os.sep in name or "/" in name:
        raise PairscanError(f"refusing to write {str(path)!r}: not a file inside the store", store)
    try:
        inside = path.parent.resolve() == store.resolve()
    except (OSError, RuntimeError):
        inside = False
    if not inside:
        raise PairscanError(f"refusing to write {str(path)!r}: not a file inside the store", store)
    return path


def stored_path(store: str | os.PathLike, ticker: str, suffix: str) -> Path:
    """Where ``ticker`` is stored in ``store`` (a file of the format ``suffix``), checked;
    :class:`PairscanError` naming the ticker if it cannot be stored."""
    return store_child(store, Path(store) / stored_name(ticker, suffix))


def checked_stored_file(path: str | os.PathLike) -> Path:
    """``path``, checked to be a ticker's file as :func:`stored_path` names it (in whatever
    folder holds it): what a task that was handed a stored file's path writes or removes."""
    path = Path(path)
    if not any(ticker_of(path.name, suffix) is not None for suffix in formats.FORMATS.values()):
        raise PairscanError(f"refusing to write {path.name!r}: not the name of a stored file", path.parent)
    return store_child(path.parent, path)


def unlink_stored(store: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Remove a file of the store (checked by :func:`store_child`); False if it was not there."""
    path = store_child(store, path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


# -- atomic writes ----------------------------------------------------------------------

# A temporary file is named ".<target>.<pid>-<8 random characters>.tmp", the target's name
# shortened to at most this many bytes (keeping its end, where the suffix is), so that a
# target of any legal length has a legal temporary name. Before pids were recorded:
# ".<target>.<8 random characters>.tmp".
_TEMPORARY_TARGET = 100
_TEMPORARY = re.compile(r"\.(?P<target>.+)\.(?:(?P<pid>[0-9]+)-)?[a-z0-9_]{8}\.tmp")


def _temporary_target(name: str) -> str:
    if len(os.fsencode(name)) <= _TEMPORARY_TARGET:
        return name
    head, tail = name, name[-20:]
    while len(os.fsencode(head + "~" + tail)) > _TEMPORARY_TARGET:
        head = head[:-1]
    return head + "~" + tail


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, clean: bool = True) -> Iterator[str]:
    """Yield a temporary path beside ``target``; move it onto ``target`` on success.

    On any exception the temporary file is removed and ``target`` is left as it was.
    The temporary name carries this process's id, so that a later run can tell the
    file of a process still writing from one a killed process left: before writing,
    the temporary files of the same target whose writer is gone are removed (unless
    ``clean`` is false: a store's writer, which lists the folder once for all its
    files with :func:`remove_stale_temporaries`, rather than once a file).
    """
    target = Path(target)
    short = _temporary_target(target.name)
    if clean:
        _remove_dead_writers(target.parent, short)
    fd, tmp = tempfile.mkstemp(prefix=f".{short}.{os.getpid()}-", suffix=".tmp", dir=target.parent)
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


def _remove_dead_writers(folder: Path, short: str) -> None:
    """Remove the temporary files of ``short`` (a target's name as temporary names hold it)
    that a process now gone left in ``folder`` (a killed plot, report or convert)."""
    with contextlib.suppress(OSError):
        for path in folder.glob(glob.escape(f".{short}.") + "*.tmp"):
            match = _TEMPORARY.fullmatch(path.name)
            if (match and match["target"] == short and match["pid"] is not None
                    and int(match["pid"]) != os.getpid() and not _writer_alive(int(match["pid"]), path)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


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



def write_atomically(target: str | os.PathLike, data, *, clean: bool = True) -> None:
    """Write ``data`` (bytes or a buffer) to ``target`` through :func:`atomic_path`."""
    with atomic_path(target, clean=clean) as tmp, open(tmp, "wb") as f:
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
    fd = open_own_file(path, os.O_RDWR | os.O_CREAT, "the lock file")
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


def open_own_file(path: Path, flags: int, what: str) -> int:
    """Open one of the store's own files (the lock, the manifest) without following a
    symbolic link, and only if it is a regular file; :class:`PairscanError` otherwise,
    saying what to do. A link planted there (an archive can hold one) is never written
    through: the file it points at stays as it was."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(os.lstat(path).st_mode):  # not even opened: a device may act on that
            kind = "a symbolic link, which pairscan never follows" if path.is_symlink() else "not a regular file"
            raise PairscanError(f"{what} is {kind}; remove it", path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PairscanError(f"{what} is a symbolic link, which pairscan never follows; remove it", path) from None
        if not flags & os.O_CREAT:
            raise  # the caller's to judge: a missing or unreadable manifest counts as none
        raise PairscanError(f"cannot create {what} ({exc.strerror})", path) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PairscanError(f"{what} is not a regular file; remove it", path)
    return fd
