"""Executors: one factory from ``--executor``/``--workers`` to a ``concurrent.futures.Executor``.

Every stage that has many independent pieces of work hands them to :func:`run_tasks`
on a :class:`Pool`. A pool wraps an executor the caller chose by name
(``serial``, ``threads``, ``processes``, ``dask``, ``tcp://HOST:PORT``) or passed in
as an instance (a ``ThreadPoolExecutor``, a ``ProcessPoolExecutor``, a Dask
``Client.get_executor()``...). Pools made here are shut down when the ``with`` block
ends; executors the caller passed in are left running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from .errors import PairscanError

NAMES = ("serial", "threads", "processes", "dask")
DEFAULT_CONNECT_TIMEOUT = 10.0


class SerialExecutor(Executor):
    """Runs each task at ``submit``, in the caller's thread. The reference executor."""

    def submit(self, fn, /, *args, **kwargs):
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - the future carries it
            future.set_exception(exc)
        return future


class TaskFailed(Exception):
    """A task raised (or its worker died); names the ticker or block it worked on."""

    def __init__(self, label: str, cause: BaseException):
        self.label = label
        self.cause = cause
        super().__init__(f"task {label} failed: {type(cause).__name__}: {cause}")


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass
class Pool:
    """An executor with what pairscan needs to know about it.

    ``in_process`` is true when tasks run in this interpreter (serial, threads), so
    they may share arrays with the caller instead of reading the store themselves.
    ``restart`` rebuilds a broken process pool, when the pool is ours.
    """

    executor: Executor
    name: str
    workers: int
    in_process: bool
    client: Any = None
    restart: Callable[[], Executor] | None = field(default=None, repr=False)


def parse_workers(workers: int | str | None) -> int | None:
    if workers is None:
        return None
    try:
        value = int(workers)
    except (TypeError, ValueError):
        raise PairscanError(f"--workers must be a whole number >= 1, not {workers!r}") from None
    if value < 1:
        raise PairscanError(f"--workers must be a whole number >= 1, not {workers!r}")
    return value


def check_name(executor: str | Executor | None) -> None:
    """Raise :class:`PairscanError` for an executor name pairscan does not know."""
    if executor is None or isinstance(executor, Executor):
        return
    if executor in NAMES or executor.startswith(("tcp://", "tls://")):
        return
    raise PairscanError(
        f"unknown executor {executor!r}: use serial, threads, processes, dask or tcp://HOST:PORT"
    )


@contextlib.contextmanager
def open_pool(
    executor: str | Executor | None = "threads",
    workers: int | str | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> Iterator[Pool]:
    """Yield a :class:`Pool` for ``executor`` (a name, or an ``Executor`` instance)."""
    check_name(executor)
    n = parse_workers(workers)
    if executor is None:
        executor = "threads"
    if isinstance(executor, Executor):
        yield _wrap_instance(executor, n)
        return
    if executor == "serial":
        yield Pool(SerialExecutor(), "serial", 1, in_process=True)
        return
    if executor == "threads":
        n = n or cpu_count()
        with ThreadPoolExecutor(n, thread_name_prefix="pairscan") as ex:
            yield Pool(ex, "threads", n, in_process=True)
        return
    if executor == "processes":
        n = n or cpu_count()
        pool = Pool(ProcessPoolExecutor(n), "processes", n, in_process=False)
        pool.restart = lambda: ProcessPoolExecutor(n)
        try:
            yield pool
        finally:
            pool.executor.shutdown(wait=True, cancel_futures=True)
        return
    with _dask_pool(executor, n, connect_timeout) as pool:
        yield pool


def _wrap_instance(executor: Executor, workers: int | None) -> Pool:
    if isinstance(executor, SerialExecutor):
        return Pool(executor, "serial", 1, in_process=True)
    if isinstance(executor, ThreadPoolExecutor):
        return Pool(executor, "threads", executor._max_workers, in_process=True)
    if isinstance(executor, ProcessPoolExecutor):
        return Pool(executor, "processes", executor._max_workers, in_process=False)
    client = getattr(executor, "_client", None)
    if client is not None:  # distributed's ClientExecutor
        return Pool(executor, "dask", _dask_workers(client), in_process=False, client=client)
    return Pool(executor, type(executor).__name__, workers or 1, in_process=False)


def _dask_workers(client) -> int:
    try:
        return max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()))
    except Exception:  # noqa: BLE001 - only a number for the report
        return 1


@contextlib.contextmanager
def _dask_pool(executor: str, workers: int | None, connect_timeout: float) -> Iterator[Pool]:
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - distributed is a dependency
        raise PairscanError("the dask executor needs the 'distributed' package") from None
    # Dask logs every worker start and stop; pairscan reports what matters itself.
    logging.getLogger("distributed").setLevel(logging.ERROR)
    if executor == "dask":
        n = workers or cpu_count()
        with LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster, Client(cluster) as client:
            yield Pool(client.get_executor(), "dask", n, in_process=False, client=client)
        return
    try:
        client = Client(executor, timeout=connect_timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise PairscanError(
            f"cannot reach the Dask scheduler at {executor} within {connect_timeout:g} s ({exc})"
        ) from None
    try:
        yield Pool(client.get_executor(), executor, _dask_workers(client), in_process=False, client=client)
    finally:
        client.close()


def progress(total: int, desc: str, quiet: bool):
    """A tqdm bar on stderr, shown only when stderr is a terminal and not ``quiet``."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="task", disable=True if quiet else None, leave=False)


def run_tasks(
    pool: Pool,
    fn: Callable[..., Any],
    tasks: Sequence[tuple[str, tuple]],
    *,
    desc: str = "",
    quiet: bool = False,
    retries: int = 0,
) -> Iterator[tuple[str, Any]]:
    """Run ``fn(*args)`` for each ``(label, args)`` of ``tasks`` on the pool.

    Yields ``(label, result)`` as tasks finish, in no fixed order. A task that raises
    is submitted again up to ``retries`` times; after that :class:`TaskFailed` names its
    label. A :class:`PairscanError` (bad input) is never retried and passes through as
    it is. When a worker process dies, every task then in flight fails with
    ``BrokenProcessPool``; a process pool of ours is rebuilt and those tasks count one
    failed attempt each.
    """
    attempts: dict[str, int] = {}
    pending: dict[Future, tuple[str, tuple]] = {}

    def submit(label: str, args: tuple) -> None:
        pending[pool.executor.submit(fn, *args)] = (label, args)

    with progress(len(tasks), desc, quiet) as bar:
        try:
            for label, args in tasks:
                submit(label, args)
            while pending:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                again: list[tuple[str, tuple]] = []
                broken = False
                for future in done:
                    label, args = pending.pop(future)
                    try:
                        result = future.result()
                    except PairscanError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - retried or reported
                        if isinstance(exc, BrokenProcessPool):
                            broken = True
                        attempts[label] = attempts.get(label, 0) + 1
                        if attempts[label] > retries:
                            raise _failure(label, exc, pending) from exc
                        again.append((label, args))
                        continue
                    bar.update(1)
                    yield label, result
                if broken:
                    again += _restart(pool, pending)
                for label, args in again:
                    submit(label, args)
        finally:
            for future in pending:
                future.cancel()


def _failure(label: str, exc: BaseException, pending: dict) -> TaskFailed:
    if isinstance(exc, BrokenProcessPool):
        others = sorted(lbl for lbl, _ in pending.values())
        shown = ", ".join([label, *others[:5]]) + (", ..." if len(others) > 5 else "")
        exc = BrokenProcessPool(f"a worker process died while working on one of: {shown}")
    return TaskFailed(label, exc)


def _restart(pool: Pool, pending: dict) -> list[tuple[str, tuple]]:
    """Replace a broken process pool; return the tasks that must be submitted again."""
    if pool.restart is None:
        raise BrokenProcessPool("a worker process died and the pool is not pairscan's to rebuild")
    lost = list(pending.values())
    pending.clear()
    pool.executor.shutdown(wait=False, cancel_futures=True)
    pool.executor = pool.restart()
    return lost
