"""The stages in order: sample -> extract -> convert -> correlate -> analyze -> plot -> report.

``run`` is the whole pipeline on one executor. The picture entry points it shares with
the command line and the public API (``plot_pair``, ``plot_heatmap``, ``plot_spread``)
are :mod:`pairscan.pictures`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from . import checks
from .archive import extract, is_archive
from .convert import DEFAULT_LOCK_TIMEOUT, convert, source_files
from .correlate import Correlation, correlate
from .errors import PairscanError
from .executors import Execution
from .outputs import check_output
from .readers import holds_sources
from .pair_reader import PairSource
from .pictures import best_cointegrated, draw_pair, plot_heatmap, plot_spread
from .records import records
from .run_result import SEARCH_K, RunNetwork, RunResult
from .sample import sample
from .selection import Selection
from .store import store_files

DEFAULT_WORKDIR = "pairscan-work"
HEATMAP_MAX_TICKERS = 2000  # beyond this a heatmap is unreadable and the matrix large


# What run writes in its work folder besides the store: checked before any work, like
# the outputs a user names, so that none replaces a link or a special file.
WORKDIR_OUTPUTS = ("matrix.parquet", "pair.png", "partners.png", "spread.png", "heatmap.png", "network.png")
REPORT_CLUSTERS_MAX = 20  # clusters the report's network is cut into, at most


def report_clusters(tickers: int) -> int:
    """How many clusters the report cuts the network into: about the square root of
    half the tickers (4 for 21 tickers; 20 for 3,000), at least 1 and at most
    :data:`REPORT_CLUSTERS_MAX`, so the table of clusters stays a table."""
    return max(1, min(REPORT_CLUSTERS_MAX, tickers, math.ceil(math.sqrt(tickers / 2))))


def run(
    source: str | os.PathLike | None = None,
    workdir: str | os.PathLike = DEFAULT_WORKDIR,
    k: int = 10,
    report: str | os.PathLike | None = None,
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
    execution: Execution | None = None,
    executor=None,
    workers: int | None = None,
    retries: int | None = None,
    quiet: bool | None = None,
    connect_timeout: float | None = None,
    format: str = "hdf5",
    on_bad_lines: str = "error",
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    partners_of=None,
) -> RunResult:
    """The whole pipeline: (sample or extract) -> convert -> correlate -> analyze -> plots (-> report).

    ``source`` is an archive, a folder of source files, or a store that is already
    converted (then convert is skipped); with none the built-in sample is written to
    ``workdir`` first. A panel DataFrame is refused (bad input): run writes a store and
    pictures of it; :func:`~pairscan.top_pairs`, :func:`~pairscan.analyze`,
    :func:`~pairscan.plot_pair` and :func:`~pairscan.plot_heatmap` take one. The store, the plots and the report go to ``workdir``; the
    source is never written to. The selection options are :func:`correlate`'s.
    ``partners_of`` (``--with``): also each named ticker's ``k`` best partners
    (``with`` and ``partners`` in the answer) and the pair plot of the first named
    ticker's best partner. With a ``report``, also every ticker's best partners for
    its search (one pass of the partners engine) and the network with its picture, the
    tickers it joins cut into :func:`report_clusters` clusters. Returns a
    :class:`~pairscan.run_result.RunResult`; its ``to_json()`` is what ``run --json``
    prints. Every stage runs on one pool, opened once from ``execution`` (or its
    fields as keywords: ``executor``, ``workers``, ``retries``, ``quiet``,
    ``connect_timeout``).
    """
    if isinstance(source, pd.DataFrame):
        raise PairscanError("run takes a source folder, an archive or a store; for a DataFrame use top_pairs, "
                            "correlation_matrix, analyze, plot_pair or plot_heatmap")
    checks.path("source", source, optional=True)
    checks.path("workdir", workdir)
    checks.integer("k", k)
    checks.path("report", report, optional=True)
    execution = Execution.of(execution, executor=executor, workers=workers, retries=retries, quiet=quiet,
                             connect_timeout=connect_timeout)
    quiet, retries = execution.quiet, execution.retries
    selection = Selection.of(selection, column=column, on=on, method=method, min_periods=min_periods,
                             absolute=absolute, start=start, end=end, resample=resample, tickers=tickers,
                             exclude=exclude)
    workdir = _open_workdir(Path(workdir), report)
    stages: dict[str, float] = {}
    folder, store = _data(source, workdir, stages)
    with execution.opened() as pool:
        running = execution.using(pool)
        converted = None
        if store is not folder:
            converted = convert(folder, store, format=format, on_bad_lines=on_bad_lines, lock_timeout=lock_timeout,
                                execution=running)
            stages["convert"] = converted["seconds"]
        n_tickers = len(store_files(store))
        matrix_path = workdir / "matrix.parquet" if n_tickers <= HEATMAP_MAX_TICKERS else None
        result: Correlation = correlate(store, k=k, selection=selection, matrix=matrix_path, execution=running)
        stages["correlate"] = result.seconds
        partners = search = None
        if partners_of is not None:
            partners = correlate(store, k=k, selection=selection, execution=running, partners_of=partners_of,
                                 partners_option="--with")
            stages["partners"] = partners.seconds
        if report is not None:
            search = _search(store, selection, running, partners, k)
            if search is not partners:
                stages["search"] = search.seconds
        forest = None
        if report is not None:
            forest = _report_network(store, selection, running)
            stages["network"] = forest.seconds
        analysis = None
        if len(result.top):
            from .analyze import analyze_top

            analysis = analyze_top(store, result.top, pool, column=selection.column, quiet=quiet, retries=retries,
                                   cut=selection.cut)
            stages["analyze"] = analysis.attrs["seconds"]
    t1 = time.perf_counter()
    plots = _run_plots(workdir, store, selection, result, partners, analysis)
    shown = None
    if forest is not None:
        from .network_plot import plot_network

        plots["network"] = str(plot_network(forest, workdir / "network.png"))
        shown = RunNetwork(Path(plots["network"]), forest.clusters.to_dict(), len(forest.lone), forest.executor,
                           forest.workers, forest.forest)
    stages["plot"] = time.perf_counter() - t1
    done = RunResult(result, str(source) if source is not None else "built-in sample", str(folder), str(store),
                     converted, plots, stages, analysis, partners, search, shown)
    if report is None:
        return done
    from .report import write_report

    t2 = time.perf_counter()
    write_report(report, done)
    return replace(done, report=Path(report), stages={**stages, "report": time.perf_counter() - t2})


def _open_workdir(workdir: Path, report) -> Path:
    """The work folder, made if need be, with every output a run writes there (and the
    report) checked before any work, so that none replaces a link or a special file."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PairscanError(f"cannot create the work folder ({exc.strerror})", workdir) from None
    for name in WORKDIR_OUTPUTS:
        check_output(workdir / name, "the work folder's " + name)
    if report is not None:
        # Checked once the work folder exists: a report inside it is the natural choice.
        check_output(report, "the report", (".html", ".htm"))
    return workdir


def _data(source, workdir: Path, stages: dict[str, float]) -> tuple[Path, Path]:
    """``(folder, store)``: where the source files are (the sample written, or an archive
    unpacked, into the work folder) and the store to write; both the store when the
    source is one. The sample's and the extraction's seconds go to ``stages``."""
    t0 = time.perf_counter()
    store = workdir / "store"
    if source is None:
        folder = workdir / "daily-stock"
        if not any(folder.glob("*.json")):
            sample(folder)
        stages["sample"] = time.perf_counter() - t0
    elif is_archive(source):
        folder = extract(source, workdir)
        stages["extract"] = time.perf_counter() - t0
    elif _is_store(source):
        folder = store = Path(source)
    else:
        folder = Path(source)
        source_files(folder)
    return folder, store


def _report_network(store: Path, selection: Selection, execution: Execution):
    """The report's network: the forest under the run's selection, its lone tickers left
    alone and the others cut into :func:`report_clusters` clusters."""
    from .network import network

    forest = network(store, selection=selection, execution=execution)
    n, lone = len(forest.tickers), len(forest.lone)
    return forest.cut_into(max(1, min(n, lone + report_clusters(n - lone))))


def _search(store, selection: Selection, execution: Execution, partners: Correlation | None, k: int) -> Correlation:
    """Every ticker's :data:`SEARCH_K` best partners, for the report's search: ``--with
    all`` when it asked exactly that, else one pass of the partners engine."""
    if partners is not None and k == SEARCH_K and len(partners.partners_of) == partners.series:
        return partners
    return correlate(store, k=SEARCH_K, selection=selection, execution=execution, partners_of="all")


def _run_plots(workdir: Path, store: Path, selection: Selection, result: Correlation,
               partners: Correlation | None, analysis: pd.DataFrame | None) -> dict[str, str]:
    """The pictures a run draws in its work folder: the best pair, the first named
    ticker's best partner, the best cointegrated pair's spread, the heatmap."""
    plots = {}
    where = PairSource(store)
    if len(result.top):
        best = records(result.top.iloc[:1])[0]
        plots["pair"] = str(draw_pair(where, best, workdir / "pair.png", selection, result.min_periods))
    if partners is not None:
        named = partners.partners_of
        first = records(partners.top[partners.top["a"] == named[0]].drop(columns="rank")) if named else []
        if first:
            plots["partners"] = str(draw_pair(where, first[0], workdir / "partners.png", selection,
                                              partners.min_periods))
    best_coint = best_cointegrated(analysis)
    if best_coint is not None:
        plots["spread"] = str(plot_spread(store, best_coint["a"], best_coint["b"], workdir / "spread.png",
                                          selection.column, analysis.attrs["window"], selection.cut)[0])
    if result.matrix is not None:
        result.matrix.attrs.update({k: v for k, v in result.to_dict().items() if k != "top"})
        plots["heatmap"] = str(plot_heatmap(result.matrix, workdir / "heatmap.png"))
    return plots


def _is_store(folder: str | os.PathLike) -> bool:
    """A folder of stored tickers and no source files: a store converted before."""
    if holds_sources(folder):
        return False
    try:
        return bool(store_files(folder))
    except PairscanError:
        return False
