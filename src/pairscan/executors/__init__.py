"""Executors: how pairscan's tasks run, from ``--executor``/``--workers`` to a pool.

Every stage that has many independent pieces of work hands them to :func:`run_tasks`
(or :func:`reduce_tasks`) on a :class:`Pool`. A pool wraps an executor the caller
chose by name (``serial``, ``threads``, ``processes``, ``dask``, ``tcp://HOST:PORT``)
or passed in as an instance (a ``ThreadPoolExecutor``, a ``ProcessPoolExecutor``, a
Dask ``Client.get_executor()``...), and says what its tasks can rely on
(:class:`Capabilities`: shared memory, shared files, a remote scheduler). The options
are one :class:`Execution` value; :meth:`Execution.opened` yields a given pool or
opens one, and pools opened there are shut down when the ``with`` block ends.

The modules: ``base`` (pools, capabilities, errors), ``execution`` (the options and
the one factory), ``tasks`` (running tasks: retries, dead workers, progress),
``processes`` (process pools of ours) and ``dask`` (clusters).
"""

from .base import (
    DEFAULT_CONNECT_TIMEOUT,
    NAMES,
    Capabilities,
    ClusterLost,
    Pool,
    SerialExecutor,
    TaskFailed,
    Terminated,
    cpu_count,
    process_running,
)
from .execution import MAX_WORKERS, Execution, check_name, open_pool, parse_workers
from .processes import preload
from .tasks import progress, reduce_tasks, run_tasks, share

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT", "MAX_WORKERS", "NAMES", "Capabilities", "ClusterLost", "Execution", "Pool",
    "SerialExecutor", "TaskFailed", "Terminated", "check_name", "cpu_count", "open_pool", "parse_workers",
    "preload", "process_running", "progress", "reduce_tasks", "run_tasks", "share",
]
