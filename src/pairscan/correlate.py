"""Correlate: the store (or a panel) -> the top pairs, on the chosen engine and executor.

:func:`correlate` resolves the selection, has :mod:`pairscan.placement` decide where
the panel lives (in memory, a file a local process pool maps, streamed from the store,
on a cluster) and load it, runs the engine (the blocked engine's tasks are
:mod:`pairscan.engines.blocked.tasks`, the naive engine's :mod:`pairscan.engines.naive`)
with a reducer for what is wanted (the top ``k``, or every pair for ``--matrix``), and
builds the records.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import checks
from .engines import ENGINES, Pairs, top_k
from .engines.blocked.partners import BestPartners, directed, partners_blocked
from .engines.blocked.tasks import EveryPair, TopPairs, correlate_blocked
from .engines.naive import correlate_naive, pair_corr
from .errors import PairscanError
from .executors import Execution, Pool, preload
from .outputs import check_not_in_store, check_output, output_path, write_csv
from .pair_reader import PairSource, stored_series
from .placement import Layout, Plan, is_frame, load, panel_fits, plan_placement, store_index
from .records import fisher_interval, kendall_p, pair_frame, pearson_p, records, spearman_p
from .selection import METHODS, Selection
from .store import store_files
from .universe import match, parse_list

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
    ``left_out`` names the selected tickers no pair of which can be ranked: ``{"ticker",
    "n"}`` with ``n`` the values (prices or returns) of its series in the selection,
    fewer than ``min_periods`` (0: none in the period), in ticker order.
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
    stored: int | None = None  # the tickers of the store (columns of the frame) the selection chose from
    partners_of: list[str] | None = None  # --with: the named tickers; ``top`` is then their partners
    left_out: list[dict] = field(default_factory=list)  # {"ticker", "n"}: too short a history to rank

    @property
    def partners(self) -> dict[str, pd.DataFrame] | None:
        """Each named ticker's partners (``a`` the named ticker), best first; None
        unless partners were asked for."""
        if self.partners_of is None:
            return None
        return {t: self.top[self.top["a"] == t].reset_index(drop=True) for t in self.partners_of}

    column = property(lambda self: self.selection.column)
    on = property(lambda self: self.selection.on)
    method = property(lambda self: self.selection.method)

    @property
    def pairs_considered(self) -> int:
        """Every pair of the series, or with partners those involving a named ticker."""
        if self.partners_of is not None:
            m = len(self.partners_of)
            return m * (self.series - 1) - m * (m - 1) // 2
        return self.series * (self.series - 1) // 2

    @property
    def headline(self) -> str:
        """What was correlated, in words: ``weekly log returns of close, 2003-01-01 to
        2006-06-30, 40 of 3,000 tickers``."""
        return self.selection.describe(self.series, self.stored)

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
            "start": self.selection.start,
            "end": self.selection.end,
            "resample": self.selection.resample,
            "tickers_stored": self.stored,
            "pairs_ranked": self.pairs_ranked,
            "left_out": [dict(entry) for entry in self.left_out],
            **self._answer(),
            "nonfinite_missing": self.nonfinite_missing,
            "streamed": self.streamed,
            "seconds": round(self.seconds, 4),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }

    def _answer(self) -> dict:
        if self.partners_of is None:
            return {"top": records(self.top)}
        return {"with": list(self.partners_of),
                "partners": {t: records(frame.drop(columns="rank")) for t, frame in self.partners.items()}}


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
    start: str | None = None,
    end: str | None = None,
    resample: str | None = None,
    tickers=None,
    exclude=None,
    engine: str = "auto",
    memory_limit: str | int = DEFAULT_MEMORY_LIMIT,
    matrix: str | os.PathLike | None = None,
    execution: Execution | None = None,
    executor=None,
    workers: int | None = None,
    retries: int | None = None,
    quiet: bool | None = None,
    connect_timeout: float | None = None,
    block_size: int | None = None,
    pool: Pool | None = None,
    partners_of=None,
    partners_option: str = "partners_of",
) -> Correlation:
    """Find the ``k`` most correlated pairs of a store (a folder) or a panel (a DataFrame).

    What is correlated is a :class:`~pairscan.selection.Selection`: pass one as
    ``selection=``, or its fields (``column``, ``on``, ``method``, ``min_periods``,
    ``absolute``, ``start``, ``end``, ``resample``, ``tickers``, ``exclude``) as
    keywords. Semantics are the oracle's (docs/semantics.md):
    ``corr(a, b) == A.corr(B, method, min_periods)`` on the selected series (each
    ticker's cut to the period, resampled, and for returns its log returns on its own
    timestamps) aligned on timestamp, with ``min_periods="auto"`` fixed from the data
    first. ``matrix`` writes the full correlation matrix (``.parquet`` or ``.csv``).
    How it runs is an :class:`~pairscan.executors.Execution`: pass one as
    ``execution=``, or its fields (``executor``, ``workers``, ``retries``, ``quiet``,
    ``connect_timeout``, ``pool``) as keywords.

    The steps: the selection resolved, the panel placed (:mod:`pairscan.placement`),
    the engine run with a reducer (the top ``k``, or every pair for ``matrix``), the
    records built.

    ``partners_of`` (names or patterns, ``"all"`` for every ticker) asks for each named
    ticker's ``k`` best partners instead of the top pairs: ``top`` then holds them, with
    the named ticker in ``a`` and a ``rank`` column (see :attr:`Correlation.partners`).
    ``partners_option`` is how the caller spells that option, for messages.
    """
    checks.store_or_frame("source", source)
    checks.integer("k", k)
    checks.boolean("absolute", absolute, optional=True)
    checks.integer("block_size", block_size, low=1, optional=True)
    checks.path("matrix", matrix, optional=True)
    execution = Execution.of(execution, executor=executor, workers=workers, retries=retries, quiet=quiet,
                             connect_timeout=connect_timeout, pool=pool)
    quiet, retries = execution.quiet, execution.retries
    selection = Selection.of(selection, column=column, on=on, method=method, min_periods=min_periods,
                             absolute=absolute, start=start, end=end, resample=resample, tickers=tickers,
                             exclude=exclude)
    if k < 1:
        raise PairscanError(f"k must be at least 1, not {k}")
    limit = parse_size(memory_limit)
    choose_engine(engine, selection.method, True)  # check the names before any work
    if matrix is not None:
        _check_writable(Path(matrix))
        if isinstance(source, (str, os.PathLike)):
            check_not_in_store(matrix, source, "--matrix")
    wanted = _partners_list(partners_of, partners_option)
    if wanted is not None and matrix is not None:
        raise PairscanError(f"{partners_option} and --matrix answer different questions: ask one at a time")
    if wanted not in (None, "all") and not is_frame(source):
        files = store_files(source)
        if files:
            match(wanted, files, option=partners_option)  # a bad name fails before the load
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(execution.opened())
        # The work starts once the executor is up: a Dask cluster's start-up is not it.
        started = time.perf_counter()
        plan = _plan(source, selection, pool, limit)
        layout = load(plan, source, column=selection.column, on=selection.on, auto=selection.auto, pool=pool,
                      stack=stack, quiet=quiet, selection=selection)
        periods = selection.resolve(layout.counts)
        left_out = _left_out(source, selection, layout, periods)
        chosen = choose_engine(engine, selection.method, layout.complete)
        load_seconds = time.perf_counter() - started
        if wanted is not None:
            named = None if wanted == "all" else [layout.tickers.index(t) for t in
                                                  match(wanted, layout.tickers, option=partners_option)]
            best = _partners(chosen, plan, layout, pool, named, k, selection, periods, block_size=block_size,
                             quiet=quiet, retries=retries)
            top = _top_frame(best, layout.tickers, selection.method, _PairValues(layout))
            top.insert(2, "rank", _ranks(best.a))
            owners = [layout.tickers[i] for i in (range(len(layout.tickers)) if named is None else named)]
            seconds = time.perf_counter() - started
            nonfinite = layout.nonfinite if layout.panel is not None else best.nonfinite
            return Correlation(top, len(layout.tickers), selection, periods, best.ranked, chosen, pool.name,
                               pool.workers, seconds, {"load": load_seconds, "correlate": seconds - load_seconds},
                               None, best.histogram, nonfinite, plan.streamed, layout.stored,
                               partners_of=owners, left_out=left_out)
        reducer = EveryPair() if matrix is not None else TopPairs(k, selection.absolute)
        pairs = _run_engine(chosen, plan, layout, pool, selection.method, periods, reducer,
                            block_size=block_size, quiet=quiet, retries=retries)
        pairs = pairs.tallied()  # the naive engine's pairs are all there: count them here
        top = _top_frame(top_k(pairs, k, selection.absolute), layout.tickers, selection.method,
                         _PairValues(layout))
        full = None
        if matrix is not None:
            full = _matrix(pairs, layout.tickers)
            _write_matrix(full, Path(matrix))
        seconds = time.perf_counter() - started  # before the executor shuts down
    nonfinite = layout.nonfinite if layout.panel is not None else pairs.nonfinite
    return Correlation(top, len(layout.tickers), selection, periods, pairs.ranked, chosen, pool.name, pool.workers,
                       seconds, {"load": load_seconds, "correlate": seconds - load_seconds}, full, pairs.histogram,
                       nonfinite, plan.streamed, layout.stored, left_out=left_out)


def _left_out(source, selection: Selection, layout: Layout, periods: int) -> list[dict]:
    """The selected tickers with fewer values than ``periods`` (no pair of theirs can be
    ranked), and those the period or frequency left without any (``n`` 0), in ticker order."""
    counts = layout.counts if layout.counts is not None else layout.panel.observations()
    short = {t: int(n) for t, n in zip(layout.tickers, counts) if n < periods}
    if len(layout.tickers) < (layout.stored or 0):
        names = [str(c) for c in source.columns] if is_frame(source) else list(store_files(source))
        chosen = selection.universe(names) if selection.subset else names
        present = set(layout.tickers)
        short.update({t: 0 for t in chosen if t not in present})
    return [{"ticker": t, "n": short[t]} for t in sorted(short)]


def _partners_list(value, option: str):
    """``"all"``, the parsed names and patterns, or None (no partners asked)."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip() == "all":
        return "all"
    return parse_list(value, option=option)


def _partners(chosen: str, plan: Plan, layout: Layout, pool: Pool, named: list[int] | None, k: int,
              selection: Selection, periods: int, *, block_size: int | None, quiet: bool, retries: int) -> Pairs:
    """The ``k`` best partners of the columns ``named`` (every column when None): the
    blocked engine's product of the panel with those columns, or the naive engine on
    the pairs that involve them."""
    if chosen == "blocked":
        return partners_blocked(plan, layout, pool, named, k=k, absolute=selection.absolute,
                                method=selection.method, min_periods=periods, block_size=block_size, quiet=quiet,
                                retries=retries)
    columns = len(layout.tickers)
    owners = set(range(columns)) if named is None else set(named)
    pairs = [(i, j) for i in range(columns) for j in range(i + 1, columns) if i in owners or j in owners]
    found = correlate_naive(layout, pool, method=selection.method, min_periods=periods, quiet=quiet,
                            retries=retries, pairs=pairs).tallied()
    return BestPartners(k, selection.absolute).merge(directed(found, None if named is None else np.asarray(named)))


def _ranks(owners: np.ndarray) -> np.ndarray:
    """1, 2, ... within each run of equal ``owners`` (sorted by owner)."""
    if not len(owners):
        return np.empty(0, np.int64)
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    return np.arange(len(owners)) - np.repeat(starts, np.diff(np.r_[starts, len(owners)])) + 1


def _plan(source, selection: Selection, pool: Pool, limit: int) -> Plan:
    """Where ``source``'s panel lives for ``pool``."""
    return plan_placement(
        given=is_frame(source), shares_memory=pool.can.shares_memory, shares_files=pool.can.maps_files,
        remote=pool.can.remote,
        workers=pool.workers, memory_limit=limit, fits=lambda: panel_fits(source, selection.column, limit))


def _run_engine(chosen: str, plan: Plan, layout: Layout, pool: Pool, method: str, periods: int, reducer, *,
                block_size: int | None, quiet: bool, retries: int) -> Pairs:
    """Every pair's correlation on the chosen engine: the reducer's part (blocked), or all
    of them (naive; the caller keeps the top ``k``)."""
    if chosen == "blocked":
        return correlate_blocked(plan, layout, pool, method=method, min_periods=periods, reducer=reducer,
                                 block_size=block_size, quiet=quiet, retries=retries)
    return correlate_naive(layout, pool, method=method, min_periods=periods, quiet=quiet, retries=retries)


@dataclass
class PairCorrelation:
    """One stored pair as :func:`correlate` sees it: the record, the min-periods in force,
    and the pair's two series (the selection's column, prices or returns)."""

    record: dict
    min_periods: int
    a: pd.Series
    b: pd.Series


def pair_correlations(source, pairs, *, selection: Selection | None = None, execution: Execution | None = None,
                      executor=None, workers: int | None = None, retries: int | None = None,
                      quiet: bool | None = None, connect_timeout: float | None = None, pool: Pool | None = None,
                      **options) -> list[PairCorrelation]:
    """The correlation of each pair ``(a, b)`` of ``pairs`` of a store (or a panel
    DataFrame) exactly as :func:`correlate` computes it for the same selection: each
    ticker's series cut and its returns on its own timestamps, ``min_periods="auto"``
    from the histories of the tickers the selection correlates. Reads only the pairs
    unless ``min_periods`` is auto, and then the selected tickers once."""
    execution = Execution.of(execution, executor=executor, workers=workers, retries=retries, quiet=quiet,
                             connect_timeout=connect_timeout, pool=pool)
    quiet = execution.quiet
    selection = Selection.of(selection, **options)
    where = PairSource(source)
    for pair in pairs:
        for ticker in pair:
            where.check(ticker)
    counts = None
    if selection.auto:
        chosen = selection.universe(where.tickers) if selection.subset else where.tickers
        if where.files is None:
            counts = np.array([len(where.series(t, selection.column, selection.on, selection.cut)) for t in chosen])
        else:
            with execution.opened() as pool:
                absolute = [where.path(t) for t in chosen]
                _, _, counts = store_index(absolute, selection.column, selection.on, pool, quiet, selection.cut)
        if selection.cut is not None:
            counts = counts[counts > 0]  # tickers with no value in the period leave the median
    periods = selection.resolve(counts)
    found = []
    for a, b in pairs:
        sa, sb = (where.series(t, selection.column, selection.on, selection.cut).rename(t) for t in (a, b))
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

    def __init__(self, layout: Layout):
        self.layout = layout

    def __call__(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        layout = self.layout
        if layout.panel is not None:
            return np.asarray(layout.panel.values[:, i]), np.asarray(layout.panel.values[:, j])
        return _aligned(*(stored_series(layout.paths[t], layout.column, layout.on, layout.cut) for t in (i, j)))


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


def _matrix(pairs: Pairs, tickers: list[str]) -> pd.DataFrame:
    n = len(tickers)
    full = np.full((n, n), np.nan)
    full[pairs.a, pairs.b] = pairs.corr
    full[pairs.b, pairs.a] = pairs.corr
    np.fill_diagonal(full, 1.0)
    return pd.DataFrame(full, index=pd.Index(tickers, name="ticker"), columns=tickers)


def _check_writable(path: Path) -> None:
    check_output(path, "--matrix", suffixes=(".parquet", ".csv"))


def _write_matrix(frame: pd.DataFrame, path: Path) -> None:
    if path.suffix.lower() == ".csv":
        write_csv(frame, path, "--matrix", index=True)
        return
    with output_path(path, "--matrix") as tmp:
        frame.to_parquet(tmp)


def correlation_matrix(store_or_panel, *, selection: Selection | None = None, **options) -> pd.DataFrame:
    """The full correlation matrix (tickers x tickers) of a store or a panel.

    Options are :func:`correlate`'s; pairs below the min-periods in force are NaN. The
    frame's ``attrs`` say what was correlated (``column``, ``on``, ``method``,
    ``min_periods``, ``min_periods_auto``, ``pairs_ranked``, ``left_out``...).
    """
    import tempfile

    checks.store_or_frame("store_or_panel", store_or_panel)
    with tempfile.TemporaryDirectory(prefix="pairscan-") as tmp:
        result = correlate(store_or_panel, k=1, selection=selection, matrix=Path(tmp) / "m.parquet", **options)
    matrix = result.matrix
    matrix.attrs.update({k: v for k, v in result.to_dict().items() if k != "top"})
    return matrix
