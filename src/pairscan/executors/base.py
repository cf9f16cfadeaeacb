"""What every pool is: an executor, its size, and what it can do.

Nothing here knows a kind of pool by its class: the modules that open pools
(:mod:`.processes`, :mod:`.dask`, :mod:`.execution`) say what each can do in its
:class:`Capabilities`, and the stages ask those questions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

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


def process_running(pid: int) -> bool:
    """Whether a process with this id runs on this machine (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Capabilities:
    """What a pool's tasks can rely on, the questions a stage asks instead of the pool's kind.

    ``shares_memory``
        Tasks run in this interpreter (serial, threads): they may take the caller's
        arrays as they are, and write into them.
    ``shares_files``
        Tasks run on this machine, in this process's folder: a path, a file this process
        maps, or shared memory reaches them as it is.
    ``remote``
        Tasks go through a scheduler that places them on workers of its own, maybe on
        other machines (Dask): paths must be absolute, a large value is better sent to
        each worker once (:func:`~pairscan.executors.share`), and results can be merged
        where they are (:func:`~pairscan.executors.reduce_tasks`).
    """

    shares_memory: bool = False
    shares_files: bool = False
    remote: bool = False

    @property
    def maps_files(self) -> bool:
        """Workers of this machine that take their tasks from this process (a process
        pool): they can all map one file this process writes. A scheduler's workers read
        what they need themselves, even on this machine: where a task runs is the
        scheduler's choice."""
        return self.shares_files and not self.shares_memory and not self.remote


IN_PROCESS = Capabilities(shares_memory=True, shares_files=True)
LOCAL_PROCESSES = Capabilities(shares_files=True)
LOCAL_CLUSTER = Capabilities(shares_files=True, remote=True)
CLUSTER = Capabilities(remote=True)
UNKNOWN = Capabilities()  # an executor pairscan does not know: tasks and results are pickled


@dataclass
class Pool:
    """An executor with what pairscan needs to know about it.

    ``can`` says what its tasks can rely on (:class:`Capabilities`). ``in_flight`` is the
    most tasks worth submitting at once (None: all of them). ``restart`` rebuilds a
    broken process pool, when the pool is ours. ``check`` raises :class:`ClusterLost`
    when the pool can no longer run tasks; it is called while waiting for tasks.
    """

    executor: Executor
    name: str
    workers: int
    can: Capabilities = UNKNOWN
    client: Any = field(default=None, repr=False)  # a Dask pool's client, for the .dask module
    in_flight: int | None = None
    restart: Callable[[], Executor] | None = field(default=None, repr=False)
    check: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def in_process(self) -> bool:
        """Tasks run in this interpreter (``can.shares_memory``)."""
        return self.can.shares_memory


POLL = 0.5  # seconds between looks at a cluster while its tasks run


def progress(total: int, desc: str, quiet: bool):
    """A tqdm bar on stderr, shown only when stderr is a terminal and not ``quiet``."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="task", disable=True if quiet else None, leave=False)
