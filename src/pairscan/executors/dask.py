"""Dask pools: a local cluster (``--executor dask``), an existing scheduler
(``tcp://HOST:PORT``), or a caller's ``Client.get_executor()``.

Everything that knows a Dask client is here: opening and closing one, watching that
its cluster can still run tasks, sending a value to every worker once, and merging
results on the cluster. The rest of pairscan sees a :class:`~.base.Pool` whose
``can.remote`` is true.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from typing import Any

from ..errors import PairscanError
from .base import CLUSTER, DEFAULT_CONNECT_TIMEOUT, LOCAL_CLUSTER, POLL, ClusterLost, Pool, TaskFailed, progress
from .processes import WORKER_MODULES, ignore_sigint, sigint_held
LOCALHOST = "127.0.0.1"


def client_of(executor: Executor):
    """The client behind a ``Client.get_executor()``, or None for any other executor.

    distributed's ``ClientExecutor`` keeps its client (and the options given to
    ``get_executor``) only in private attributes, ``_client`` and ``_kwargs``; pairscan
    needs the client to watch the cluster, and the options to submit again with
    ``pure=False``.
    """
    return getattr(executor, "_client", None)


def given_cluster_pool(executor: Executor) -> Pool:
    """A pool over a caller's ``Client.get_executor()``; the client stays the caller's."""
    client = client_of(executor)
    # The caller's options, with pure=False: a task submitted again after a failure
    # must run again, not return the failed result Dask keeps under the same key.
    options = {**getattr(executor, "_kwargs", {}), "pure": False}
    pool = Pool(type(executor)(client, **options), "dask", _workers(client), CLUSTER, client=client)
    pool.check = cluster_check(client, "the Dask cluster", DEFAULT_CONNECT_TIMEOUT)
    return pool


def _workers(client) -> int:
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:  # noqa: BLE001 - only a number for the report
        return 1


def dask_setup(worker) -> None:
    """Run by each worker of a local cluster as it starts (a Dask preload): Ctrl-C is the
    pairscan process's to report, as in a process pool. The modules the stages name for
    their workers are imported first, as a process pool's workers do, so that none of
    them puts its own SIGINT handler in place afterwards."""
    ignore_sigint(WORKER_MODULES)


@contextlib.contextmanager
def dask_pool(executor: str, workers: int, connect_timeout: float,
              dashboard: str | None = None) -> Iterator[Pool]:
    """A pool on a local cluster of ``workers`` processes (``executor="dask"``), or on the
    scheduler at the address ``executor``; closed when the block ends."""
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed is a dependency
        raise PairscanError("the dask executor needs the 'distributed' package") from None
    # Dask logs every worker start and stop; pairscan reports what matters itself.
    logging.getLogger("distributed").setLevel(logging.ERROR)
    if executor == "dask":
        with local_cluster(workers, dashboard=dashboard) as cluster, Client(cluster, set_as_default=False) as client:
            # pure=False: a task submitted again after a failure must run again, not
            # return the failed result that Dask keeps under the same key.
            pool = Pool(client.get_executor(pure=False), "dask", workers, LOCAL_CLUSTER, client=client)
            pool.check = cluster_check(client, "the local Dask cluster", connect_timeout)
            with _lost_as_one_line(pool):
                yield pool
        return
    with _scheduler_client(executor, connect_timeout) as client:
        pool = Pool(client.get_executor(pure=False), executor, _workers(client), CLUSTER, client=client)
        pool.check = cluster_check(client, f"the Dask scheduler at {executor}", connect_timeout)
        with _lost_as_one_line(pool):
            yield pool


def local_cluster(workers: int, threads: int = 1, dashboard: str | None = None):
    """A cluster of ``workers`` processes of ``threads`` threads each on this machine,
    reachable from this machine alone; its workers leave Ctrl-C to this process.

    Its scheduler and workers listen on 127.0.0.1. The scheduler serves HTTP (health,
    metrics) even without a dashboard: on 127.0.0.1 too, on a free port, which never
    meets another cluster's. The dashboard's pages are served only when ``dashboard``
    (an address, such as ``127.0.0.1:8787``) asks for them.
    """
    from distributed import LocalCluster

    with sigint_held():  # the workers start with it held, until dask_setup ignores it
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            host=LOCALHOST,
            dashboard_address=dashboard,
            scheduler_kwargs={} if dashboard else {"dashboard": False, "dashboard_address": f"{LOCALHOST}:0"},
            worker_dashboard_address=None,
            preload=[__name__],
            silence_logs=logging.ERROR,
        )


@contextlib.contextmanager
def _scheduler_client(address: str, connect_timeout: float):
    from distributed import Client

    _probe_scheduler(address, connect_timeout)
    try:
        client = Client(address, timeout=connect_timeout, set_as_default=False)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the same to the user
        raise PairscanError(_unreachable(address, connect_timeout, exc)) from None
    try:
        try:
            # A scheduler without workers would take the tasks and never run them.
            client.wait_for_workers(1, timeout=connect_timeout)
        except TimeoutError:
            raise PairscanError(
                f"the Dask scheduler at {address} has no workers (waited {connect_timeout:g} s)"
            ) from None
        yield client
    finally:
        _close_client(client)


def _close_client(client) -> None:
    """Close a client of an existing scheduler. When the scheduler is gone, distributed's
    own close can fail inside itself (a reconnect racing the close): the run's answer,
    or its one line about the lost scheduler, is what the user gets, not that.

    The client then has no public way to stop: setting its ``status`` keeps its
    finaliser from trying to close again (and printing what failed), and its private
    ``_loop_runner`` is the event loop thread it started, which nothing else stops.
    """
    try:
        client.close()
    except Exception:  # noqa: BLE001 - see above
        client.status = "closed"
        with contextlib.suppress(Exception):
            client._loop_runner.stop()


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


def scatter(pool: Pool, value: Any) -> Any:
    """A reference to a copy of ``value`` on every worker of the pool's cluster."""
    return pool.client.scatter(value, broadcast=True, hash=False)


def reduce_on_cluster(pool: Pool, fn, tasks: Sequence[tuple[str, tuple]], combine, *, desc: str,
                      quiet: bool, retries: int, fan_in: int) -> Any:
    """:func:`~pairscan.executors.reduce_tasks` on a cluster: ``combine`` runs there on
    groups of up to ``fan_in`` finished results as they come in, a tree of merges, and
    only the final result travels to the caller."""
    from distributed import as_completed

    client, check = pool.client, pool.check
    owner: dict[str, tuple[str, tuple]] = {}  # a task's future key -> its label and args
    live: dict[str, Any] = {}  # every future submitted and not yet out of the queue, by key
    attempts: dict[str, int] = {}

    def submit(label: str, args: tuple):
        future = client.submit(fn, *args, pure=False)
        owner[future.key] = (label, args)
        live[future.key] = future
        return future

    def merge(group: list):
        future = client.submit(combine, *group, pure=False)
        live[future.key] = future
        return future

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
                live.pop(future.key, None)
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
                queue.clear()
                client.cancel([*live.values(), *ready])


def _completed(queue, check: Callable[[], None] | None) -> Iterator[Any]:
    """Iterate ``as_completed``, looking at the cluster while nothing completes."""
    while True:
        while not queue.has_ready():
            if queue.is_empty():
                return
            if check is not None:
                check()
            _wait_for_one(queue, POLL)
        yield next(queue)


def _wait_for_one(queue, timeout: float) -> None:
    """Wait up to ``timeout`` seconds for a future of ``queue`` (an ``as_completed``) to finish.

    ``as_completed`` has no public wait with a timeout (``next`` waits for as long as it
    takes, and its ``timeout`` counts from its creation). Its ``next`` waits on
    ``thread_condition``, notified as each future finishes; waiting on it in the same way
    lets pairscan look at the cluster between waits.
    """
    with queue.thread_condition:
        queue.thread_condition.wait(timeout=timeout)


def _exception(future) -> BaseException:
    try:
        return future.exception()
    except BaseException as exc:  # noqa: BLE001 - a cancelled future raises instead
        return exc
