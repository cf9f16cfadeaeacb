"""Process pools: workers that start warm, end with pairscan, and leave Ctrl-C to it.

A pool of ours (``--executor processes``) is a ``ProcessPoolExecutor`` whose workers
are started before the first task (their start-up is not a stage's time), import what
the stages registered with :func:`preload`, die with the pairscan process, and ignore
SIGINT: a Ctrl-C at the terminal reaches every process of the group, and the parent
alone reports it (once), then stops the workers itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor

from .base import LOCAL_PROCESSES, Pool, Terminated, process_running

# Modules a worker needs, imported once (by the fork server, or by each worker as it
# starts) rather than by its first task. The stages name theirs when they are imported
# (:func:`preload`): this package knows nothing of them.
WORKER_MODULES: list[str] = []
# Checks that say a fork of this process would not work (a library's threads that a
# fork would lose); the stages that use such a library register them.
FORK_UNSAFE: list[Callable[[], bool]] = []
# Environment variables a process worker sets as it starts, unless they are set already.
WORKER_ENVIRONMENT: dict[str, str] = {}


def preload(*modules: str, fork_unsafe: Callable[[], bool] | None = None,
            environment: dict[str, str] | None = None) -> None:
    """Have process workers import ``modules`` as they start; with ``fork_unsafe``, start
    them from a clean fork server whenever it says this process may not fork;
    ``environment``: variables each worker sets as it starts (where the user has not), such
    as the size of a library's own thread pool, which in a worker (one task at a time, a
    core each) only competes with the other workers."""
    WORKER_MODULES.extend(m for m in modules if m not in WORKER_MODULES)
    if fork_unsafe is not None and fork_unsafe not in FORK_UNSAFE:
        FORK_UNSAFE.append(fork_unsafe)
    WORKER_ENVIRONMENT.update(environment or {})


@contextlib.contextmanager
def process_pool(workers: int) -> Iterator[Pool]:
    """A :class:`Pool` of ``workers`` processes of ours, stopped when the block ends
    (at once, tasks and all, when it ends by Ctrl-C or SIGTERM)."""
    pool = Pool(_start(workers), "processes", workers, LOCAL_PROCESSES, in_flight=workers + 1,
                restart=lambda: _start(workers))
    try:
        yield pool
    except (KeyboardInterrupt, Terminated):
        # Interrupted: the tasks running now are not wanted, however long they take.
        kill_workers(pool.executor)
        raise
    finally:
        pool.executor.shutdown(wait=True, cancel_futures=True)


def given_process_pool(executor: ProcessPoolExecutor) -> Pool:
    """A caller's process pool, left running and never rebuilt: its workers are the
    caller's, started with the caller's initializer."""
    workers = pool_size(executor)
    return Pool(executor, "processes", workers, LOCAL_PROCESSES, in_flight=workers + 1)


def pool_size(executor: Executor) -> int:
    """The number of workers of a ``ThreadPoolExecutor`` or ``ProcessPoolExecutor``.

    concurrent.futures has no public way to ask a pool its size, which a stage needs to
    cut its work into tasks; ``_max_workers`` is where both pools keep the number they
    were given (unchanged since Python 3.2).
    """
    return int(getattr(executor, "_max_workers", 1) or 1)


def kill_workers(executor: ProcessPoolExecutor) -> None:
    """Kill a process pool's workers at once (``shutdown`` would wait for their tasks).

    Python 3.14 has ``kill_workers``; before it, the only way to the worker processes is
    the pool's private ``_processes`` map.
    """
    kill = getattr(executor, "kill_workers", None)
    if kill is not None:
        kill()
        return
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            process.kill()


@contextlib.contextmanager
def sigint_held() -> Iterator[None]:
    """Hold SIGINT back from this thread while it starts worker processes.

    A process started now inherits the held signal, so a Ctrl-C in the moment between
    its start and :func:`ignore_sigint` cannot interrupt it half-started (a traceback
    from a worker nobody asked about); this process gets its KeyboardInterrupt as the
    block ends.
    """
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def ignore_sigint(modules: Sequence[str] = ()) -> None:
    """In a worker process: leave Ctrl-C to the pairscan process, which reports it once
    and stops its workers (see :func:`sigint_held`).

    ``modules`` are imported first: a library may put a native SIGINT handler of its own
    in place as it is imported (polars does, to stop its queries with KeyboardInterrupt),
    which would take the place of the one ignoring it.
    """
    for module in modules:
        importlib.import_module(module)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _warm_up(modules: list[str]) -> int:
    # Import what the first task would, so that a stage's time is its work alone.
    # (Importing polars does not start its thread pool; only using it does.)
    ignore_sigint(modules)
    return os.getpid()


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _start_worker(owner: int, environment: dict[str, str] | None = None) -> None:
    """Initializer of our pool's workers: set ``environment`` (where not set), ignore
    SIGINT, and end when the pairscan process ends.

    A worker blocked in a task, or waiting for one, would otherwise outlive a parent
    killed with SIGKILL (or SIGTERM), holding its stdout open: a caller reading that
    pipe would wait for it. On Linux the kernel sends the worker SIGKILL when its parent
    dies (for a fork server's workers, the fork server, which ends with the pairscan
    process); elsewhere a thread watches the parent's process id.
    """
    for name, value in (environment or {}).items():
        os.environ.setdefault(name, value)
    # A handler inherited through fork is the parent's business, not the worker's.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    ignore_sigint()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        armed = False
    if not armed:  # pragma: no cover - not Linux
        threading.Thread(target=_watch_parent, args=(owner,), name="pairscan-parent", daemon=True).start()
    elif not process_running(owner):
        os._exit(1)  # the parent died before the signal was armed


def _watch_parent(owner: int) -> None:  # pragma: no cover - not Linux
    while process_running(owner):
        time.sleep(1.0)
    os._exit(1)


def _start(workers: int) -> ProcessPoolExecutor:
    """A process pool, its workers already running (their start-up is not a stage's time).

    Workers are forked, the quickest start, unless this process has used polars: a
    fork copies its thread pool without the threads, and a worker that used it would
    wait forever. Then they start from a clean fork server instead, which imports
    what a worker needs once.
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and not any(check() for check in FORK_UNSAFE):
        method = "fork"
    else:
        method = "forkserver" if "forkserver" in methods else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(WORKER_MODULES)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                               initargs=(os.getpid(), dict(WORKER_ENVIRONMENT)))
    try:
        with sigint_held():
            for future in [pool.submit(_warm_up, list(WORKER_MODULES)) for _ in range(workers)]:
                future.result()
    except BaseException:
        kill_workers(pool)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    return pool
