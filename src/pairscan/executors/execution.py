"""Execution: how the work runs, captured once; and the one factory that opens a pool.

``convert``, ``correlate``, ``analyze``, ``run`` (and ``load_panel``) take the same
execution options with the same names, defaults and checks. An :class:`Execution`
holds them, validated when it is made (errors in the caller's spelling: ``workers``
from the API, ``--workers`` from the command line); :meth:`Execution.add_arguments`
gives every command the same command-line options; :meth:`Execution.opened` yields
the pool a caller passed, or opens one and closes it afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..errors import PairscanError
from .base import DEFAULT_CONNECT_TIMEOUT, IN_PROCESS, NAMES, UNKNOWN, Pool, SerialExecutor, cpu_count
from .dask import client_of, dask_pool, given_cluster_pool
from .processes import given_process_pool, pool_size, process_pool

MAX_WORKERS = 1024  # more is a typo, and with processes a fork bomb

# The command line's spelling of each option; the API's is the field's name.
FLAGS = {"executor": "--executor", "workers": "--workers", "retries": "--retries",
         "connect_timeout": "--connect-timeout", "dashboard": "--dashboard"}


@dataclass(frozen=True)
class Execution:
    """How the work runs: on which executor, how many workers, how failures are retried.

    Parameters
    ----------
    executor : str or concurrent.futures.Executor
        ``serial``, ``threads``, ``processes``, ``dask`` (a local cluster), the address
        of a Dask scheduler (``tcp://HOST:PORT``), or an executor of the caller's (left
        running).
    workers : int >= 1, optional
        Workers of a pool pairscan opens (default: one per CPU).
    retries : int >= 0
        Run a failed task again up to this many times.
    connect_timeout : float > 0
        Seconds to wait for a Dask scheduler (and for a cluster without workers).
    quiet : bool
        No progress bars, no message while waiting for another process.
    dashboard : str, optional
        Serve the local Dask cluster's dashboard at this address (``127.0.0.1:8787``);
        by default there is none.
    pool : Pool, optional
        A pool already open (one stage handing its pool to the next): used as it is.
    """

    executor: str | Executor = "threads"
    workers: int | None = None
    retries: int = 0
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    quiet: bool = True
    dashboard: str | None = None
    pool: Pool | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        for name, value in _checked(vars(self), str).items():
            object.__setattr__(self, name, value)

    @classmethod
    def of(cls, execution: Execution | None = None, **options) -> Execution:
        """``execution`` with ``options`` (those not None) replaced; a new one from
        ``options`` alone when ``execution`` is None. Unknown names are a usage error."""
        unknown = set(options) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown execution option(s): {', '.join(sorted(unknown))}")
        if execution is not None and not isinstance(execution, Execution):
            raise PairscanError(f"execution must be an Execution, not {type(execution).__name__}")
        given = {k: v for k, v in options.items() if v is not None}
        base = execution if execution is not None else cls()
        return dataclasses.replace(base, **given) if given else base

    def using(self, pool: Pool) -> Execution:
        """The same options, running on ``pool`` (already open)."""
        return dataclasses.replace(self, pool=pool)

    @contextlib.contextmanager
    def opened(self) -> Iterator[Pool]:
        """Yield the pool given (left open), or open one and close it when the block ends."""
        if self.pool is not None:
            yield self.pool
            return
        with _open(self.executor, self.workers, self.connect_timeout, self.dashboard) as pool:
            yield pool

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """The execution options, the same on every command that runs tasks."""
        group = parser.add_argument_group("executor")
        group.add_argument("--executor", default="threads", metavar="NAME",
                           help="serial, threads, processes, dask (a local cluster) or tcp://HOST:PORT "
                                "(an existing Dask scheduler); default: threads")
        group.add_argument("--workers", default=None, metavar="N", help="workers (default: one per CPU)")
        group.add_argument("--retries", type=int, default=0, metavar="N",
                           help="run a failed task again up to N times")
        group.add_argument("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT, metavar="S",
                           help=f"seconds to wait for a Dask scheduler (default {DEFAULT_CONNECT_TIMEOUT:g})")
        group.add_argument("--dashboard", default=None, metavar="ADDRESS",
                           help="serve the local Dask cluster's dashboard at ADDRESS, e.g. 127.0.0.1:8787 "
                                "(default: none)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Execution:
        """The execution the command line asked for; errors name its flags."""
        given = {name: getattr(args, name) for name in FLAGS}
        return cls(**_checked(given, FLAGS.get), quiet=args.quiet)


def open_pool(executor: str | Executor | None = "threads", workers: int | str | None = None,
              connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, *, dashboard: str | None = None):
    """A context manager yielding a :class:`Pool` for ``executor`` (a name, an address
    or an ``Executor``); a pool it opens is closed when the block ends."""
    return Execution(executor if executor is not None else "threads", workers,
                     connect_timeout=connect_timeout, dashboard=dashboard).opened()


@contextlib.contextmanager
def _open(executor: str | Executor, workers: int | None, connect_timeout: float,
          dashboard: str | None) -> Iterator[Pool]:
    """The one place a kind of pool is chosen (by name) or recognised (an instance)."""
    if isinstance(executor, Executor):
        yield _given(executor, workers)
    elif executor == "serial":
        yield Pool(SerialExecutor(), "serial", 1, IN_PROCESS)
    elif executor == "threads":
        n = workers or cpu_count()
        with ThreadPoolExecutor(n, thread_name_prefix="pairscan") as ex:
            yield Pool(ex, "threads", n, IN_PROCESS)
    elif executor == "processes":
        with process_pool(workers or cpu_count()) as pool:
            yield pool
    else:
        with dask_pool(executor, workers or cpu_count(), connect_timeout, dashboard) as pool:
            yield pool


def _given(executor: Executor, workers: int | None) -> Pool:
    if isinstance(executor, SerialExecutor):
        return Pool(executor, "serial", 1, IN_PROCESS)
    if isinstance(executor, ThreadPoolExecutor):
        return Pool(executor, "threads", pool_size(executor), IN_PROCESS)
    if isinstance(executor, ProcessPoolExecutor):
        return given_process_pool(executor)
    if client_of(executor) is not None:  # distributed's ClientExecutor
        return given_cluster_pool(executor)
    return Pool(executor, type(executor).__name__, workers or 1, UNKNOWN)


def _checked(values: dict, spelled: Callable[[str], str]) -> dict:
    """``values`` (the fields of an :class:`Execution`) checked and normalised; errors
    name each option as ``spelled(field)`` does (the API's name, or the flag)."""
    out = dict(values)
    out["executor"] = _executor(values["executor"], spelled("executor"))
    out["workers"] = _workers(values["workers"], spelled("workers"))
    retries = values["retries"]
    if isinstance(retries, bool) or not isinstance(retries, (int, np.integer)):
        raise PairscanError(f"{spelled('retries')} must be a whole number >= 0, not {retries!r}")
    if retries < 0:
        raise PairscanError(f"{spelled('retries')} must be >= 0, not {retries}")
    out["retries"] = int(retries)
    timeout = values["connect_timeout"]
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float, np.integer, np.floating)):
        raise PairscanError(f"{spelled('connect_timeout')} must be a positive number of seconds, not {timeout!r}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise PairscanError(f"{spelled('connect_timeout')} must be a positive number of seconds, not {timeout:g}")
    out["connect_timeout"] = float(timeout)
    dashboard = values["dashboard"]
    if dashboard is not None and (not isinstance(dashboard, str) or not dashboard.strip()):
        raise PairscanError(f"{spelled('dashboard')} must be an address such as 127.0.0.1:8787, not {dashboard!r}")
    if "quiet" in values:
        out["quiet"] = bool(values["quiet"])
    return out


def _executor(executor, name: str) -> str | Executor:
    if isinstance(executor, Executor):
        return executor
    if isinstance(executor, str) and (executor in NAMES or executor.startswith(("tcp://", "tls://"))):
        return executor
    if isinstance(executor, str):
        raise PairscanError(
            f"unknown executor {executor!r}: use serial, threads, processes, dask or tcp://HOST:PORT")
    raise PairscanError(f"{name} must be a name (serial, threads, processes, dask, tcp://HOST:PORT) or a "
                        f"concurrent.futures.Executor, not {type(executor).__name__}")


def _workers(workers, name: str) -> int | None:
    """None (one per CPU), or a whole number from 1 to :data:`MAX_WORKERS` (given as a
    number or as text)."""
    if workers is None:
        return None
    value = None
    if isinstance(workers, str):
        with contextlib.suppress(ValueError):
            value = int(workers.strip())
    elif isinstance(workers, (int, np.integer)) and not isinstance(workers, bool):
        value = int(workers)
    if value is None or value < 1:
        raise PairscanError(f"{name} must be a whole number >= 1, not {workers!r}")
    if value > MAX_WORKERS:
        raise PairscanError(f"{name} must be at most {MAX_WORKERS}, not {workers!r}")
    return value


def parse_workers(workers: int | str | None) -> int | None:
    """``--workers`` as a number (None: one per CPU); :class:`PairscanError` if it is not one."""
    return _workers(workers, "--workers")


def check_name(executor: str | Executor | None) -> None:
    """Raise :class:`PairscanError` for an executor name pairscan does not know."""
    if executor is not None:
        _executor(executor, "executor")
