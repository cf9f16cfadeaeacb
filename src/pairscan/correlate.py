"""Correlate: the store (or a panel) -> the top pairs, on the chosen engine and executor.

Executors that share this interpreter's memory (serial, threads) load the panel once
and hand the engine slices of it; a local process pool maps one copy of it from a
file. Workers elsewhere (a Dask cluster) get tasks that carry file paths and block
specs; each reads the columns it needs from the store itself, so the panel never
travels through the scheduler, and the blocks' top lists are merged on the cluster.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .engines import ENGINES, Pairs, top_k
from .engines.blocked import blas_threads, block_size_for, block_specs, block_task
from .engines.naive import correlate_naive, correlate_naive_store, pair_corr
from .pair_reader import stored_series
from .errors import PairscanError
from .executors import Pool, open_pool, preload, reduce_tasks, run_tasks, share
from .panel import InFile, InMemory, Panel, align, finish, load_panel, read_chunk, union_of
from .records import fisher_interval, kendall_p, pair_frame, pearson_p, records, spearman_p
from .selection import METHODS, Selection
from .shm import panel_allocator
from .store import atomic_path, empty_store_error, read_column_arrays, store_files, ticker_file

DEFAULT_MEMORY_LIMIT = "1GB"
preload(__name__)  # what its process workers need
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(size: str | int) -> int:
    """``"200MB"`` -> 200_000_000; ``"1GiB"`` -> 2**30; a plain number is bytes."""
    if isinstance(size, int):
        value = size
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(size))
        unit = match.group(2).upper() if match else None
        if not match or unit not in _UNITS:
            raise PairscanError(f"--memory-limit must be a size like 200MB or 2GiB, not {size!r}")
        value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise PairscanError(f"--memory-limit must be positive, not {size!r}")
    return value


@dataclass
class Correlation:
    """What ``correlate`` found: the top pairs and how it got them.

    ``top`` has the pair record's columns (:data:`~pairscan.records.PAIR_FIELDS`);
    ``min_periods`` is the value in force (``selection.min_periods`` may say ``auto``);
    ``pairs_ranked`` counts the pairs with a correlation at or above it, and
    ``histogram`` spreads their correlations over :data:`~pairscan.engines.HISTOGRAM_BINS`.
    """

    top: pd.DataFrame
    series: int
    selection: Selection
    min_periods: int
    pairs_ranked: int
    engine: str
    executor: str
    workers: int
    seconds: float
    timings: dict = field(default_factory=dict)
    matrix: pd.DataFrame | None = None
    histogram: np.ndarray | None = None
    nonfinite_missing: int = 0  # non-finite values (prices or returns) treated as missing
    streamed: bool = False  # blocks read from the store by the tasks: the panel does not fit the limit

    column = property(lambda self: self.selection.column)
    on = property(lambda self: self.selection.on)
    method = property(lambda self: self.selection.method)

    @property
    def pairs_considered(self) -> int:
        return self.series * (self.series - 1) // 2

    def to_dict(self) -> dict:
        return {
            "series": self.series,
            "pairs_considered": self.pairs_considered,
            "column": self.column,
            "on": self.on,
            "method": self.method,
            "engine": self.engine,
            "executor": self.executor,
            "workers": self.workers,
            "min_periods": self.min_periods,
            "min_periods_auto": self.selection.auto,
            "abs": self.selection.absolute,
            "pairs_ranked": self.pairs_ranked,
            "top": records(self.top),
            "nonfinite_missing": self.nonfinite_missing,
            "streamed": self.streamed,
            "seconds": round(self.seconds, 4),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


def _map_file(stack: contextlib.ExitStack):
    """An ``allocate(shape)`` for load_panel that puts the panel in a file workers can map.

    The file lives in shared memory where it fits, else on disk (see :mod:`pairscan.shm`),
    and is removed when ``stack`` closes.
    """
    return True, panel_allocator(stack)


class StoreBlocks:
    """Block source that reads the store where the task runs (a Dask cluster).

    Carries only the paths of the blocks its task needs and the union index (named
    by ``token``); the worker aligns each column on that index (and takes returns)
    itself.
    """

    def __init__(self, paths: dict[tuple[int, int], list[str]], column: str, on: str, index: np.ndarray,
                 token: str | None = None):
        self.paths, self.column, self.on, self.index = paths, column, on, index
        self.token = token if token is not None else index_token(index)
        self.counts: dict[tuple[int, int], int] = {}

    def columns(self, start: int, stop: int) -> np.ndarray:
        paths = self.paths[start, stop]
        # Workers outlive a run: a rewritten file or another index must not hit the cache.
        key = (tuple(paths), tuple(_stamp(p) for p in paths), self.column, self.on, self.token)
        with _CACHE_LOCK:
            cached = _BLOCK_CACHE.get(key)
        if cached is None:
            series = [read_column_arrays(p, self.column) for p in paths]
            _, values = align([i for i, _ in series], [v for _, v in series], self.index)
            cached = finish(values, self.on)
            with _CACHE_LOCK:
                _BLOCK_CACHE[key] = cached
                while len(_BLOCK_CACHE) > 2:  # a worker keeps the last blocks it read
                    _BLOCK_CACHE.popitem(last=False)
        self.counts[start, stop] = cached[1]
        return cached[0]

    def nonfinite(self, start: int, stop: int) -> int:
        """How many non-finite values (prices or returns) block ``start:stop`` made missing."""
        return self.counts[start, stop]


_BLOCK_CACHE: OrderedDict = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None  # read_column_arrays names the problem
    return stat.st_mtime_ns, stat.st_size


def index_token(index: np.ndarray) -> str:
    """A short name for a union index, so workers can tell one index from another."""
    return hashlib.blake2b(np.ascontiguousarray(index).view(np.uint8), digest_size=16).hexdigest()


def store_block_task(paths: dict, column: str, on: str, index: np.ndarray, token: str,
                     spec, method: str, min_periods: int | None, k: int | None, absolute: bool) -> Pairs:
    """Task: :func:`block_task` on blocks the worker reads from the store itself.

    The index is an argument of its own (not inside the block source) so that on Dask
    it can be a reference to the copy every worker already holds.
    """
    return block_task(StoreBlocks(paths, column, on, index, token), spec, method, min_periods, k, absolute)


def panel_block_task(values: np.ndarray, spec, method: str, min_periods: int | None, k: int | None,
                     absolute: bool) -> Pairs:
    """Task: :func:`block_task` on a panel the worker holds (a caller's DataFrame on Dask)."""
    return block_task(InMemory(values), spec, method, min_periods, k, absolute)


def merge_top(*parts: Pairs, k: int, absolute: bool) -> Pairs:
    """Task: the top ``k`` of some blocks' (or merges') top ``k``: one step of the reduction."""
    return top_k(Pairs.concat(list(parts)), k, absolute)


def index_chunk(paths: list[str], column: str, on: str = "prices") -> tuple[np.ndarray, bool, dict[str, int]]:
    """Task: the union index of a few tickers, whether all have every timestamp (with a
    finite value there, and for returns a positive one), and how many finite values
    each has (by path)."""
    index, values = read_chunk(paths, column)
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(values) & (values > 0 if on == "returns" else True)
    counts = np.count_nonzero(np.isfinite(values), axis=0)
    return index, bool(usable.all()), dict(zip(paths, counts.tolist()))


def union_index(*parts: tuple[np.ndarray, bool, dict]) -> tuple[np.ndarray, bool, dict[str, int]]:
    """Task: merge :func:`index_chunk` results, in any order. Complete when every part
    is complete and all have the same timestamps."""
    if not parts:
        return np.empty(0, "datetime64[ns]"), True, {}
    first = parts[0][0]
    complete = all(full and np.array_equal(idx, first) for idx, full, _ in parts)
    index = first if complete else union_of([idx for idx, _, _ in parts])
    return index, complete, {path: n for _, _, counts in parts for path, n in counts.items()}


def returns_chunk(paths: list[str], column: str, index: np.ndarray) -> np.ndarray:
    """Task: how many log returns each of a few tickers has on the union ``index``."""
    series = [read_column_arrays(p, column) for p in paths]
    _, values = align([i for i, _ in series], [v for _, v in series], index)
    return observations(finish(values, "returns")[0])


def observations(values: np.ndarray) -> np.ndarray:
    """The number of values (not missing) in each column of a panel."""
    return np.count_nonzero(~np.isnan(values), axis=0)


def choose_engine(engine: str, method: str, complete: bool) -> str:
    """``auto`` -> blocked wherever it is exact, else naive."""
    if engine not in ENGINES:
        raise PairscanError(f"--engine must be auto, blocked or naive, not {engine!r}")
    if method not in METHODS:
        raise PairscanError(f"--method must be pearson, spearman or kendall, not {method!r}")
    exact = method == "pearson" or (method == "spearman" and complete)
    if engine == "blocked" and not exact:
        why = "kendall" if method == "kendall" else "spearman with histories that differ"
        raise PairscanError(f"the blocked engine is not exact for {why}: use --engine naive or auto")
    if engine == "auto":
        return "blocked" if exact else "naive"
    return engine


def correlate(
    source,
    k: int = 10,
    *,
    selection: Selection | None = None,
    column: str | None = None,
    on: str | None = None,
    method: str | None = None,
    min_periods: int | str | None = None,
    absolute: bool | None = None,
    engine: str = "auto",
    memory_limit: str | int = DEFAULT_MEMORY_LIMIT,
    matrix: str | os.PathLike | None = None,
    executor="threads",
    workers: int | None = None,
    retries: int = 0,
    quiet: bool = True,
    connect_timeout: float | None = None,
    block_size: int | None = None,
    pool: Pool | None = None,
) -> Correlation:
    """Find the ``k`` most correlated pairs of a store (a folder) or a panel (a DataFrame).

    What is correlated is a :class:`~pairscan.selection.Selection`: pass one as
    ``selection=``, or its fields (``column``, ``on``, ``method``, ``min_periods``,
    ``absolute``) as keywords. Semantics are the oracle's (DESIGN.md):
    ``corr(a, b) == A.corr(B, method, min_periods)`` on the stored series aligned on
    timestamp, or on log returns of the union-aligned panel, with ``min_periods="auto"``
    fixed from the data first. ``matrix`` writes the full correlation matrix
    (``.parquet`` or ``.csv``).
    """
    selection = Selection.of(selection, column=column, on=on, method=method, min_periods=min_periods,
                             absolute=absolute)
    column, on, method = selection.column, selection.on, selection.method
    if k < 1:
        raise PairscanError(f"--top must be at least 1, not {k}")
    limit = parse_size(memory_limit)
    choose_engine(engine, method, True)  # check the names before any work
    if matrix is not None:
        _check_writable(Path(matrix))
    with contextlib.ExitStack() as stack:
        if pool is None:
            extra = {} if connect_timeout is None else {"connect_timeout": connect_timeout}
            pool = stack.enter_context(open_pool(executor, workers, **extra))
        # The work starts once the executor is up: a Dask cluster's start-up is not it.
        started = time.perf_counter()
        local = isinstance(pool.executor, ProcessPoolExecutor)
        mapped = None
        files = None
        streamed = (local or pool.in_process) and not isinstance(source, pd.DataFrame) and \
            not panel_fits(source, column, limit)
        if isinstance(source, pd.DataFrame):
            panel = Panel.from_frame(source, column, on)
            panel.values, panel.nonfinite = finish(panel.values.copy(order="F"), on)
            tickers, loaded = panel.tickers, panel
        elif (local or pool.in_process) and not streamed:
            allocate = None
            if local:
                # The workers share this machine: read the store in parallel once, into a
                # file they map, instead of each block task reading it again.
                mapped, allocate = _map_file(stack)
            loaded = load_panel(source, column, on, executor=None, pool=pool, quiet=quiet, as_frame=False,
                                allocate=allocate)
            tickers = loaded.tickers
        else:
            # Workers elsewhere (or a panel too large for the limit) read the store
            # themselves: tasks carry paths they can open, and hold only their blocks.
            loaded = None
            files = {t: Path(os.path.abspath(p)) for t, p in store_files(source).items()}
            tickers = list(files)
        if len(tickers) < 2:
            where = None if isinstance(source, pd.DataFrame) else source
            raise PairscanError(f"need at least two tickers to correlate, found {len(tickers)}", where)

        if loaded is not None:
            complete = loaded.full_overlap()  # counted as the panel was loaded
            index = loaded.index
            counts = loaded.observations() if selection.auto else None
        else:
            # Full prices give returns that miss only the first row: still complete.
            index, complete, counts = _remote_index(files, column, on, pool, quiet)
            if selection.auto and on == "returns":
                counts = _remote_returns(files, column, index, pool, quiet)
        periods = selection.resolve(counts)
        chosen = choose_engine(engine, method, complete)
        load_seconds = time.perf_counter() - started
        want = None if matrix is not None else k

        if chosen == "naive" and loaded is None:
            pairs = correlate_naive_store([str(p) for p in files.values()], tickers, column, on, index,
                                          index_token(index), pool, method, periods, quiet, retries)
        elif chosen == "naive":
            pairs = correlate_naive(loaded, pool, method, periods, quiet, retries)
        else:
            pairs = _blocked(loaded, files, index, tickers, column, on, method, periods, want,
                             selection.absolute, limit, block_size, pool, quiet, retries, mapped, streamed)
        pairs = pairs.tallied()  # the naive engine's pairs are all there: count them here
        best = top_k(pairs, k, selection.absolute)
        top = _top_frame(best, tickers, method, _PairValues(loaded, files, column, on, index))
        full = None
        if matrix is not None:
            full = _matrix(pairs, tickers)
            _write_matrix(full, Path(matrix))
        seconds = time.perf_counter() - started  # before the executor shuts down
    nonfinite = loaded.nonfinite if loaded is not None else pairs.nonfinite
    return Correlation(top, len(tickers), selection, periods, pairs.ranked, chosen, pool.name, pool.workers,
                       seconds, {"load": load_seconds, "correlate": seconds - load_seconds}, full, pairs.histogram,
                       nonfinite, streamed)


def panel_fits(store, column: str, limit: int) -> bool:
    """Whether the panel of ``store`` may fit in ``limit`` bytes.

    The panel has at least as many rows as the longest history, which the largest file
    holds: read that one file. False means it certainly does not fit (``tickers x
    rows x 8`` bytes is more than the limit), and then the blocks are read from the
    store by the tasks that need them instead (see :class:`StoreBlocks`).
    """
    files = store_files(store)
    if len(files) < 2:
        return True  # too few tickers to correlate: load_panel says so
    sizes = {}
    for path in files.values():
        with contextlib.suppress(OSError):
            sizes[path] = os.stat(path).st_size
    if not sizes:
        return True
    rows = len(read_column_arrays(max(sizes, key=sizes.get), column)[1])
    return len(files) * rows * 8 <= limit


@dataclass
class PairCorrelation:
    """One stored pair as :func:`correlate` sees it: the record, the min-periods in force,
    and the pair's two series (the selection's column, prices or returns)."""

    record: dict
    min_periods: int
    a: pd.Series
    b: pd.Series


def pair_correlations(store, pairs, *, selection: Selection | None = None, executor="threads",
                      workers: int | None = None, quiet: bool = True, pool: Pool | None = None,
                      **options) -> list[PairCorrelation]:
    """The correlation of each stored pair ``(a, b)`` of ``pairs`` exactly as :func:`correlate`
    computes it for the same selection: returns on the store's union index,
    ``min_periods="auto"`` from the whole store's histories. Reads only the pairs unless
    the selection needs the store (auto, or returns), and then the store once."""
    selection = Selection.of(selection, **options)
    files = store_files(store)
    if not files:
        raise empty_store_error(store)
    paths = [(ticker_file(files, a, store), ticker_file(files, b, store)) for a, b in pairs]
    index, counts = None, None
    if selection.auto or selection.on == "returns":
        with contextlib.ExitStack() as stack:
            if pool is None:
                pool = stack.enter_context(open_pool(executor, workers))
            absolute = {t: Path(os.path.abspath(p)) for t, p in files.items()}
            index, _, counts = _remote_index(absolute, selection.column, selection.on, pool, quiet)
            if selection.auto and selection.on == "returns":
                counts = _remote_returns(absolute, selection.column, index, pool, quiet)
    periods = selection.resolve(counts)
    token = index_token(index) if index is not None else None
    found = []
    for (a, b), (path_a, path_b) in zip(pairs, paths):
        sa, sb = (stored_series(str(p), selection.column, selection.on, index, token).rename(t)
                  for p, t in ((path_a, a), (path_b, b)))
        corr, n = pair_corr(sa, sb, selection.method, periods)  # the naive engine's, as the oracle says
        x, y = _aligned(sa, sb)
        pair = Pairs(np.array([0]), np.array([1]), np.array([corr], float), np.array([n]))
        frame = _top_frame(pair, [a, b], selection.method, lambda i, j: (x, y))
        found.append(PairCorrelation(records(frame)[0], periods, sa, sb))
    return found


def pair_correlation(store, a: str, b: str, **options) -> PairCorrelation:
    """:func:`pair_correlations` of one pair."""
    return pair_correlations(store, [(a, b)], **options)[0]


def _aligned(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    both = pd.concat([a, b], axis=1, join="outer", sort=True)
    return both.iloc[:, 0].to_numpy(dtype=float), both.iloc[:, 1].to_numpy(dtype=float)


class _PairValues:
    """The two series of a reported pair, for the statistics that need the data
    (Kendall's p-value): from the panel in memory, or read from the store."""

    def __init__(self, panel: Panel | None, files: dict | None, column: str, on: str, index: np.ndarray):
        self.panel, self.files, self.column, self.on, self.index = panel, files, column, on, index

    def __call__(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        if self.panel is not None:
            return np.asarray(self.panel.values[:, i]), np.asarray(self.panel.values[:, j])
        paths = list(self.files.values())
        token = index_token(self.index)
        return _aligned(*(stored_series(str(paths[t]), self.column, self.on, self.index, token) for t in (i, j)))


def _top_frame(best: Pairs, tickers: list[str], method: str, values: _PairValues) -> pd.DataFrame:
    """The reported pairs with their p-values and intervals (computed for these only)."""
    if method == "pearson":
        p = pearson_p(best.corr, best.n)
    elif method == "spearman":
        p = spearman_p(best.corr, best.n)
    else:
        p = np.array([kendall_p(*values(i, j)) for i, j in zip(best.a, best.b)], dtype=float)
    return pair_frame([tickers[i] for i in best.a], [tickers[j] for j in best.b], best.corr, best.n, p,
                      fisher_interval(best.corr, best.n, method))


def _remote_index(files: dict[str, Path], column: str, on: str, pool: Pool, quiet: bool):
    """The union index of the store, whether it is complete, and each ticker's count of
    values (in ``files``' order), read where the tasks run."""
    paths = [str(p) for p in files.values()]
    tasks = [(f"index {paths[i]}", (paths[i : i + _STEP], column, on)) for i in range(0, len(paths), _STEP)]
    # On Dask the chunks' indexes are merged on the cluster; one index comes back.
    index, complete, counts = reduce_tasks(pool, index_chunk, tasks, union_index, desc="index", quiet=quiet)
    return index, complete, np.array([counts[p] for p in paths], dtype=np.int64)


def _remote_returns(files: dict[str, Path], column: str, index: np.ndarray, pool: Pool, quiet: bool) -> np.ndarray:
    """Each ticker's number of log returns on the union index, counted where it is read."""
    paths = [str(p) for p in files.values()]
    shared = share(pool, index)
    tasks = [(f"count {paths[i]}", (paths[i : i + _STEP], column, shared)) for i in range(0, len(paths), _STEP)]
    parts = dict(run_tasks(pool, returns_chunk, tasks, desc="count", quiet=quiet))
    return np.concatenate([parts[label] for label, _ in tasks])


_STEP = 64  # tickers per index task


def _blocked(panel, files, index, tickers, column, on, method, min_periods, k, absolute,
             limit, block_size, pool, quiet, retries, mapped=None, streamed=False) -> Pairs:
    rows, n = len(index), len(tickers)
    concurrent = pool.workers if pool.in_process or mapped or streamed else 1
    size = block_size or block_size_for(rows, n, limit, concurrent, reads_store=panel is None)
    if not pool.in_process and mapped is None and block_size is None:
        size = min(size, cluster_block_width(n, pool.workers))
    specs = block_specs(n, size)
    parallel = len(specs) > 1 and pool.workers > 1
    if files is not None or (pool.client is not None and mapped is None):
        # Threads reading the store share this process's BLAS: one thread each.
        with blas_threads(1 if streamed and pool.in_process and pool.workers > 1 else None):
            return _blocked_remote(panel, files, index, tickers, specs, column, on, method, min_periods, k,
                                   absolute, pool, quiet, retries)
    if mapped is not None:
        panel.values.flush()  # the workers map the file: it must hold the whole panel
        source = InFile(panel.values.filename, panel.values.shape)
    else:
        source = InMemory(panel.values)
    tasks = []
    for spec in specs:
        i0, i1, j0, j1 = spec
        label = f"block {tickers[i0]}..{tickers[i1 - 1]} x {tickers[j0]}..{tickers[j1 - 1]}"
        tasks.append((label, (source, spec, method, min_periods, k, absolute, parallel and not pool.in_process,
                              1 if parallel else pool.workers)))
    # With several tasks, parallelism comes from the executor: one BLAS thread per task
    # (see block_task). A single task uses every core itself: its rows split across threads.
    with blas_threads(1 if parallel and pool.in_process else None):
        parts = [r for _, r in run_tasks(pool, block_task, tasks, desc="blocks", quiet=quiet, retries=retries)]
    return Pairs.concat(parts)


def cluster_block_width(n: int, workers: int, tasks_per_worker: int = 4) -> int:
    """The widest blocks that still give each of ``workers`` about ``tasks_per_worker`` tasks.

    A block is read from the store once for each task that holds it, so fewer, wider
    blocks read less; a few tasks per worker keep every worker busy to the end.
    """
    blocks = 1
    while blocks * (blocks + 1) // 2 < tasks_per_worker * workers:
        blocks += 1
    return max(16, -(-n // blocks))


def _blocked_remote(panel, files, index, tickers, specs, column, on, method, min_periods, k, absolute,
                    pool, quiet, retries) -> Pairs:
    """Block tasks for workers that do not share this interpreter (a Dask cluster).

    A task carries the paths of its two blocks and a reference to the union index, so
    the workers read the store themselves; a caller's panel (a DataFrame) goes to each
    worker once. With ``k``, the blocks' top lists are merged on the cluster and only
    the final top ``k`` comes back; without (``--matrix``) every block's pairs do.
    """
    if panel is None:
        paths = [str(p) for p in files.values()]
        shared, token = share(pool, index), index_token(index)
        fn = store_block_task

        def source(i0, i1, j0, j1):
            return ({(i0, i1): paths[i0:i1], (j0, j1): paths[j0:j1]}, column, on, shared, token)
    else:
        shared = share(pool, panel.values)
        fn = panel_block_task

        def source(i0, i1, j0, j1):
            return (shared,)
    tasks = [
        (f"block {tickers[i0]}..{tickers[i1 - 1]} x {tickers[j0]}..{tickers[j1 - 1]}",
         (*source(*spec), spec, method, min_periods, k, absolute))
        for spec in specs
        for i0, i1, j0, j1 in [spec]
    ]
    if k is None:
        return Pairs.concat([r for _, r in run_tasks(pool, fn, tasks, desc="blocks", quiet=quiet, retries=retries)])
    merge = functools.partial(merge_top, k=k, absolute=absolute)
    return reduce_tasks(pool, fn, tasks, merge, desc="blocks", quiet=quiet, retries=retries)


def _matrix(pairs: Pairs, tickers: list[str]) -> pd.DataFrame:
    n = len(tickers)
    full = np.full((n, n), np.nan)
    full[pairs.a, pairs.b] = pairs.corr
    full[pairs.b, pairs.a] = pairs.corr
    np.fill_diagonal(full, 1.0)
    return pd.DataFrame(full, index=pd.Index(tickers, name="ticker"), columns=tickers)


def _check_writable(path: Path) -> None:
    if path.suffix.lower() not in (".parquet", ".csv"):
        raise PairscanError("--matrix must end in .parquet or .csv", path)
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise PairscanError("cannot write here (no such folder, or not writable)", path)


def _write_matrix(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".csv":
            frame.to_csv(tmp, float_format="%.17g")
        else:
            frame.to_parquet(tmp)
