"""Running labelled tasks on a pool: retries, a dead worker, a lost cluster, progress.

The stages hand their work here as ``(label, args)`` tasks of one function; these
functions know pools only by what they can do (:class:`~.base.Capabilities`).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..errors import PairscanError
from .base import POLL, Pool, TaskFailed, progress

def share(pool: Pool, value: Any) -> Any:
    """``value`` itself, or on a remote pool a reference to a copy of it on every worker.

    A task that takes the reference as an argument carries only the reference, so a
    large value (the union index) crosses the network once per worker, not once per
    task. Any other pool gets the value.
    """
    if not pool.can.remote:
        return value
    from .dask import scatter  # here: tasks on a pool of any kind need not import it

    return scatter(pool, value)


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
    it must be associative and not depend on their order. On a remote pool the results
    stay on the cluster: ``combine`` runs there on groups of up to ``fan_in`` finished
    results as they come in, a tree of merges, and only the final result travels to
    the caller. Elsewhere the tasks go through :func:`run_tasks` and are combined here
    as they arrive. Retries and failures are :func:`run_tasks`'.
    """
    if not tasks:
        return combine()
    if pool.can.remote:
        from .dask import reduce_on_cluster  # (it imports this module)

        return reduce_on_cluster(pool, fn, tasks, combine, desc=desc, quiet=quiet, retries=retries, fan_in=fan_in)
    held: list[Any] = []
    for _, result in run_tasks(pool, fn, tasks, desc=desc, quiet=quiet, retries=retries):
        held.append(result)
        if len(held) >= fan_in:
            held = [combine(*held)]
    return held[0] if len(held) == 1 else combine(*held)


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
    once (``pool.in_flight``), so those are few, and :class:`TaskFailed` names them all.
    """
    attempts: dict[str, int] = {label: 0 for label, _ in tasks}
    queue = collections.deque(tasks)
    pending: dict[Future, tuple[str, tuple]] = {}
    window = pool.in_flight or len(queue)

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
