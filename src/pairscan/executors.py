"""Executors: one factory from ``--executor``/``--workers`` to a ``concurrent.futures.Executor``.

Every stage that has many independent pieces of work hands them to :func:`run_tasks`
on a :class:`Pool`. A pool wraps an executor the caller chose by name
(``serial``, ``threads``, ``processes``, ``dask``, ``tcp://HOST:PORT``) or passed in
as an instance (a ``ThreadPoolExecutor``, a ``ProcessPoolExecutor``, a Dask
``Client.get_executor()``...). Pools made here are shut down when the ``with`` block
ends; executors the caller passed in are left running.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import importlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
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


class Terminated(BaseException):
    """SIGTERM arrived. Like ``KeyboardInterrupt`` it unwinds the run, cleaning up on the
    way (pools of ours stop their workers, temporary files go), and no ``except Exception``
    catches it."""


class ClusterLost(Exception):
    """The Dask cluster stopped being able to run tasks: its scheduler is gone, or it has
    had no workers for longer than the connect timeout."""


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
    # Raises ClusterLost when the pool can no longer run tasks (a Dask cluster without a
    # scheduler, or without workers for too long); called while waiting for tasks.
    check: Callable[[], None] | None = field(default=None, repr=False)


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
        pool = Pool(_process_pool(n), "processes", n, in_process=False)
        pool.restart = lambda: _process_pool(n)
        try:
            yield pool
        except (KeyboardInterrupt, Terminated):
            # Interrupted: the tasks running now are not wanted, however long they take.
            _kill_workers(pool.executor)
            raise
        finally:
            pool.executor.shutdown(wait=True, cancel_futures=True)
        return
    with _dask_pool(executor, n, connect_timeout) as pool:
        yield pool


# Modules a worker needs, imported once (by the fork server, or by each worker as it
# starts) rather than by its first task. The stages name theirs when they are imported
# (:func:`preload`): this module knows nothing of them.
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


def _warm_up(modules: list[str]) -> int:
    # Import what the first task would, so that a stage's time is its work alone.
    # (Importing polars does not start its thread pool; only using it does.)
    for module in modules:
        importlib.import_module(module)
    return os.getpid()


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _start_worker(owner: int, environment: dict[str, str] | None = None) -> None:
    """Initializer of our pool's workers: set ``environment`` (where not set), and end
    when the pairscan process ends.

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


def process_running(pid: int) -> bool:
    """Whether a process with this id runs on this machine (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_workers(executor: ProcessPoolExecutor) -> None:
    """Kill a process pool's workers at once (``shutdown`` would wait for their tasks)."""
    kill = getattr(executor, "kill_workers", None)  # Python 3.14
    if kill is not None:
        kill()
        return
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            process.kill()


def _process_pool(workers: int) -> ProcessPoolExecutor:
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
    for future in [pool.submit(_warm_up, list(WORKER_MODULES)) for _ in range(workers)]:
        future.result()
    return pool


def _wrap_instance(executor: Executor, workers: int | None) -> Pool:
    if isinstance(executor, SerialExecutor):
        return Pool(executor, "serial", 1, in_process=True)
    if isinstance(executor, ThreadPoolExecutor):
        return Pool(executor, "threads", executor._max_workers, in_process=True)
    if isinstance(executor, ProcessPoolExecutor):
        return Pool(executor, "processes", executor._max_workers, in_process=False)
    client = getattr(executor, "_client", None)
    if client is not None:  # distributed's ClientExecutor
        # The caller's options, with pure=False: a task submitted again after a failure
        # must run again, not return the failed result Dask keeps under the same key.
        options = {**getattr(executor, "_kwargs", {}), "pure": False}
        pool = Pool(type(executor)(client, **options), "dask", _dask_workers(client), in_process=False,
                    client=client)
        pool.check = cluster_check(client, "the Dask cluster", DEFAULT_CONNECT_TIMEOUT)
        return pool
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
            # The scheduler serves HTTP (health, metrics) even without a dashboard, on
            # 8787 unless told otherwise: a free port never meets another cluster's.
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster, Client(cluster, set_as_default=False) as client:
            # pure=False: a task submitted again after a failure must run again, not
            # return the failed result that Dask keeps under the same key.
            pool = Pool(client.get_executor(pure=False), "dask", n, in_process=False, client=client)
            pool.check = cluster_check(client, "the local Dask cluster", connect_timeout)
            with _lost_as_one_line(pool):
                yield pool
        return
    _probe_scheduler(executor, connect_timeout)
    try:
        client = Client(executor, timeout=connect_timeout, set_as_default=False)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the same to the user
        raise PairscanError(_unreachable(executor, connect_timeout, exc)) from None
    try:
        try:
            # A scheduler without workers would take the tasks and never run them.
            client.wait_for_workers(1, timeout=connect_timeout)
        except TimeoutError:
            raise PairscanError(
                f"the Dask scheduler at {executor} has no workers (waited {connect_timeout:g} s)"
            ) from None
        pool = Pool(client.get_executor(pure=False), executor, _dask_workers(client), in_process=False,
                    client=client)
        pool.check = cluster_check(client, f"the Dask scheduler at {executor}", connect_timeout)
        with _lost_as_one_line(pool):
            yield pool
    finally:
        _close_client(client)


def _close_client(client) -> None:
    """Close a client of an existing scheduler. When the scheduler is gone, distributed's
    own close can fail inside itself (a reconnect racing the close): the run's answer,
    or its one line about the lost scheduler, is what the user gets, not that."""
    try:
        client.close()
    except Exception:  # noqa: BLE001 - see above
        client.status = "closed"  # or its finaliser tries again, and prints what failed
        with contextlib.suppress(Exception):
            client._loop_runner.stop()


POLL = 0.5  # seconds between looks at a cluster while its tasks run


def cluster_check(client, where: str, timeout: float) -> Callable[[], None]:
    """A ``Pool.check`` for a Dask client: raise :class:`ClusterLost` once the scheduler
    is gone, or once the cluster has had no workers for ``timeout`` seconds (Dask itself
    would wait for a worker forever)."""
    since: list[float] = []

    def check() -> None:
        if client.status != "running":  # it lost the scheduler (and may be retrying)
            raise ClusterLost(f"lost {where}: it stopped answering")
        try:
            workers = client.nthreads(callback_timeout=timeout)
        except Exception:  # noqa: BLE001 - an unanswered question is a lost scheduler
            raise ClusterLost(f"lost {where}: it stopped answering") from None
        if workers:
            since.clear()
            return
        if not since:
            since.append(time.monotonic())
        elif time.monotonic() - since[0] >= timeout:
            raise ClusterLost(f"{where} has no workers left (none for {timeout:g} s, the --connect-timeout)")

    return check


@contextlib.contextmanager
def _lost_as_one_line(pool: Pool) -> Iterator[None]:
    """Any failure after the cluster was lost is reported as the loss (one line), not as
    the cancelled futures and closed connections it left behind."""
    try:
        yield
    except (ClusterLost, PairscanError):
        raise
    except Exception as exc:
        try:
            pool.check()
        except ClusterLost as lost:
            raise lost from None
        raise exc


def _unreachable(address: str, timeout: float, exc: BaseException) -> str:
    return f"cannot reach a Dask scheduler at {address} within {timeout:g} s ({_reason(exc)})"


def _reason(exc: BaseException) -> str:
    """The plainest cause in the chain: the operating system's words when there are some."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text or type(exc).__name__


def _probe_scheduler(address: str, timeout: float) -> None:
    """Raise :class:`PairscanError` unless a Dask scheduler answers at ``address`` in time.

    ``Client`` bounds only the TCP connect: a port that accepts and then stays silent
    (or answers with something that is not Dask) can hang it, and a failed ``Client``
    hangs again at exit. So ask the scheduler who it is first, with one deadline for
    the whole exchange, on a loop of our own (the caller may be inside one: Jupyter).
    """
    import asyncio

    from distributed.comm import connect

    async def identity() -> dict:
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    async def bounded() -> dict:
        # The margin lets connect's own deadline (and its reason, e.g. refused) come first.
        return await asyncio.wait_for(identity(), timeout + 0.5)

    outcome: dict = {}

    def probe() -> None:
        try:
            outcome["reply"] = asyncio.run(bounded())
        except BaseException as exc:  # noqa: BLE001 - reported below, in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=probe, name="pairscan-probe", daemon=True)
    thread.start()
    thread.join(timeout + 5.0)
    if thread.is_alive():
        outcome["error"] = TimeoutError("no answer")
    if "error" in outcome:
        exc = outcome["error"]
        if isinstance(exc, asyncio.TimeoutError):
            exc = TimeoutError("it accepted the connection but did not answer")
        elif not isinstance(exc, OSError):
            raise PairscanError(f"{address} answered, but not as a Dask scheduler ({type(exc).__name__})")
        raise PairscanError(_unreachable(address, timeout, exc))
    reply = outcome.get("reply")
    kind = reply.get("type") if isinstance(reply, dict) else None
    if kind != "Scheduler":
        what = f"a Dask {kind}" if isinstance(kind, str) else "something that is not a Dask scheduler"
        raise PairscanError(f"{address} is {what}, not a Dask scheduler")


def share(pool: Pool, value: Any) -> Any:
    """``value`` itself, or on a Dask pool a reference to a copy of it on every worker.

    A task that takes the reference as an argument carries only the reference, so a
    large value (the union index) crosses the network once per worker, not once per
    task. Any other executor gets the value.
    """
    if pool.client is None:
        return value
    return pool.client.scatter(value, broadcast=True, hash=False)


def reduce_tasks(
    pool: Pool,
    fn: Callable[..., Any],
    tasks: Sequence[tuple[str, tuple]],
    combine: Callable[..., Any],
    *,
    desc: str = "",
    quiet: bool = False,
    retries: int = 0,
    fan_in: int = 8,
) -> Any:
    """``combine`` over the results of ``fn(*args)`` for every ``(label, args)`` of ``tasks``.

    ``combine(*results)`` takes one or more results and returns one of the same kind;
    it must be associative and not depend on their order. On a Dask pool the results
    stay on the cluster: ``combine`` runs there on groups of up to ``fan_in`` finished
    results as they come in, a tree of merges, and only the final result travels to
    the caller. Elsewhere the tasks go through :func:`run_tasks` and are combined here
    as they arrive. Retries and failures are :func:`run_tasks`'.
    """
    if not tasks:
        return combine()
    if pool.client is None:
        held: list[Any] = []
        for _, result in run_tasks(pool, fn, tasks, desc=desc, quiet=quiet, retries=retries):
            held.append(result)
            if len(held) >= fan_in:
                held = [combine(*held)]
        return held[0] if len(held) == 1 else combine(*held)
    return _reduce_on_cluster(pool.client, fn, tasks, combine, desc, quiet, retries, fan_in, pool.check)


def _completed(queue, check: Callable[[], None] | None) -> Iterator[Any]:
    """Iterate ``as_completed``, looking at the cluster while nothing completes."""
    while True:
        while not queue.has_ready():
            if queue.is_empty():
                return
            if check is not None:
                check()
            with queue.thread_condition:
                queue.thread_condition.wait(timeout=POLL)
        yield next(queue)


def _reduce_on_cluster(client, fn, tasks, combine, desc, quiet, retries, fan_in, check=None) -> Any:
    from distributed import as_completed

    owner: dict[str, tuple[str, tuple]] = {}  # a task's future key -> its label and args
    attempts: dict[str, int] = {}

    def submit(label: str, args: tuple):
        future = client.submit(fn, *args, pure=False)
        owner[future.key] = (label, args)
        return future

    def merge(group: list):
        return client.submit(combine, *group, pure=False)

    finished = False
    # Futures are dropped as soon as they are merged, so the cluster frees what is merged.
    queue = as_completed(loop=client.loop)
    ready: list = []  # finished results (of tasks or merges), still on the workers
    with progress(len(tasks), desc, quiet) as bar:
        try:
            queue.update([submit(label, args) for label, args in tasks])
            for future in _completed(queue, check):
                if future.status not in ("finished", "error", "cancelled"):
                    # Its result was lost with a worker after it finished, and Dask is
                    # computing it again: wait for that, as for any task in flight.
                    queue.add(future)
                    continue
                task = owner.pop(future.key, None)
                if future.status != "finished":
                    if check is not None:
                        check()  # a lost cluster is not the task's failure
                    exc = _exception(future)
                    if task is None:
                        raise TaskFailed(f"{desc} merge", exc) from exc
                    label, args = task
                    if isinstance(exc, PairscanError):
                        raise exc
                    attempts[label] = attempts.get(label, 0) + 1
                    if attempts[label] > retries:
                        raise TaskFailed(label, exc) from exc
                    queue.add(submit(label, args))
                    continue
                if task is not None:
                    bar.update(1)
                ready.append(future)
                while len(ready) >= fan_in:
                    queue.add(merge(ready[:fan_in]))
                    ready = ready[fan_in:]
            if len(ready) > 1:
                ready = [merge(ready)]
            result = ready[0].result()
            finished = True
            return result
        finally:
            if not finished:
                with queue.lock:
                    unused = [*queue.futures, *queue.queue.queue, *ready]
                client.cancel(unused)


def _exception(future) -> BaseException:
    try:
        return future.exception()
    except BaseException as exc:  # noqa: BLE001 - a cancelled future raises instead
        return exc


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
    failed attempt each. A process pool is given no more tasks than it can start at
    once, so those are few, and :class:`TaskFailed` names them all.
    """
    attempts: dict[str, int] = {label: 0 for label, _ in tasks}
    queue = collections.deque(tasks)
    pending: dict[Future, tuple[str, tuple]] = {}
    # A process pool starts workers + 1 tasks at a time (one waits in its call queue);
    # submitting only that many keeps the same pace and bounds who a dead worker took along.
    window = pool.workers + 1 if isinstance(pool.executor, ProcessPoolExecutor) else len(queue)

    def fill() -> None:
        while queue and len(pending) < window:
            label, args = queue[0]
            try:
                future = pool.executor.submit(fn, *args)
            except BrokenProcessPool as exc:
                # The pool broke after the last wait: its tasks in flight will say so
                # when waited on; with none in flight, nothing else will.
                if pending:
                    return
                if pool.restart is None:
                    raise _failure([label], exc, attempts[label]) from exc
                _restart(pool)
                continue
            queue.popleft()
            pending[future] = (label, args)

    with progress(len(tasks), desc, quiet) as bar:
        try:
            fill()
            while pending:
                done, _ = wait(list(pending), timeout=POLL if pool.check else None, return_when=FIRST_COMPLETED)
                if not done:
                    pool.check()
                    continue
                broken: BrokenProcessPool | None = None
                lost: list[tuple[str, tuple]] = []
                for future in done:
                    label, args = pending.pop(future)
                    try:
                        result = future.result()
                    except PairscanError:
                        raise
                    except BrokenProcessPool as exc:
                        broken = exc
                        lost.append((label, args))
                        continue
                    except Exception as exc:  # noqa: BLE001 - retried or reported
                        if pool.check is not None:
                            pool.check()  # a lost cluster is not the task's failure
                        attempts[label] += 1
                        if attempts[label] > retries:
                            raise _failure([label], exc, attempts[label]) from exc
                        queue.appendleft((label, args))
                        continue
                    bar.update(1)
                    yield label, result
                if broken is not None:
                    lost += pending.values()  # the pool took every task it held down with it
                    pending.clear()
                    for label, _ in lost:
                        attempts[label] += 1
                    worst = max(attempts[label] for label, _ in lost)
                    if worst > retries or pool.restart is None:
                        raise _failure(sorted(label for label, _ in lost), broken, worst) from broken
                    _restart(pool)
                    queue.extendleft(reversed(lost))
                fill()
        finally:
            for future in pending:
                future.cancel()


def _failure(labels: list[str], exc: BaseException, attempts: int) -> TaskFailed:
    if isinstance(exc, BrokenProcessPool):
        shown = labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " or " + labels[-1]
        exc = BrokenProcessPool(
            "a worker process died (killed, out of memory, or a crash in native code) while running "
            + ("this task" if len(labels) == 1 else "one of these tasks")
            + (f"; tried {attempts} times" if attempts > 1 else ""))
        return TaskFailed(shown, exc)
    return TaskFailed(labels[0], exc)


def _restart(pool: Pool) -> None:
    """Replace a broken process pool of ours with a new one."""
    pool.executor.shutdown(wait=False, cancel_futures=True)
    pool.executor = pool.restart()
