"""The stages in order: sample -> extract -> convert -> correlate -> analyze -> plot -> report.

``run`` is the whole pipeline on one executor; the other functions here are the
stage entry points the command line and the public API share.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from . import checks
from .archive import extract, is_archive
from .convert import DEFAULT_LOCK_TIMEOUT, convert, source_files
from .correlate import Correlation, correlate, pair_correlation
from .errors import PairscanError
from .executors import Execution
from .outputs import PNG, check_output
from .readers import holds_sources
from .records import records
from .run_result import SEARCH_K, RunResult
from .sample import sample
from .selection import Selection
from .store import empty_store_error, read_column, store_files, ticker_file

DEFAULT_WORKDIR = "pairscan-work"
HEATMAP_MAX_TICKERS = 2000  # beyond this a heatmap is unreadable and the matrix large


def plot_pair(store, a: str, b: str, out: str | os.PathLike = "pair.png", *, selection: Selection | None = None,
              execution: Execution | None = None, executor=None, workers: int | None = None,
              quiet: bool | None = None, **options) -> Path:
    """Plot two stored tickers over time; the legend carries their correlation as
    :func:`correlate` computes it with the same selection (``column``, ``on``,
    ``method``, ``min_periods``, ``absolute``), their common observations and period."""
    from .plot import plot_pair as draw

    checks.path("store", store)
    checks.text("a", a)
    checks.text("b", b)
    checks.path("out", out)
    selection = Selection.of(selection, **options)
    if a == b:
        raise PairscanError(f"a pair needs two different tickers, not {a!r} twice")
    check_output(out, "out", PNG)
    pair = pair_correlation(store, a, b, selection=selection, execution=execution, executor=executor,
                            workers=workers, quiet=quiet)
    prices = [store_series(store, t, selection.column, selection) for t in (a, b)]
    return draw(*prices, out, **_pair_stats(pair.record, selection, pair.min_periods))


def _pair_stats(record: dict, selection: Selection, min_periods: int) -> dict:
    """What the pair plot says of a pair, from its record."""
    corr = record["corr"]
    return dict(corr=math.nan if corr is None else corr, column=selection.column, on=selection.on,
                method=selection.method, n=record["n"], p=record["p"], min_periods=min_periods,
                question=selection.describe() if selection.cut is not None else None)


def store_series(store: str | os.PathLike, ticker: str, column: str = "close",
                 selection: Selection | None = None) -> pd.Series:
    """One stored ticker's column, named by the ticker; cut to the period and frequency
    of ``selection`` if given (prices still: the plots draw prices)."""
    files = store_files(store)
    if not files:
        raise empty_store_error(store)
    series = read_column(ticker_file(files, ticker, store), column)
    cut = selection.cut if selection is not None else None
    if cut is not None:
        index, values = cut.apply(np.asarray(series.index.values), series.to_numpy(dtype=np.float64))
        series = pd.Series(values, index=pd.DatetimeIndex(index, name=series.index.name))
    return series.rename(ticker)


def correlation_matrix(store_or_panel, *, selection: Selection | None = None, **options) -> pd.DataFrame:
    """The full correlation matrix (tickers x tickers) of a store or a panel.

    Options are :func:`correlate`'s; pairs below the min-periods in force are NaN. The
    frame's ``attrs`` say what was correlated (``column``, ``on``, ``method``,
    ``min_periods``, ``min_periods_auto``, ``pairs_ranked``...).
    """
    checks.store_or_frame("store_or_panel", store_or_panel)
    with tempfile.TemporaryDirectory(prefix="pairscan-") as tmp:
        result = correlate(store_or_panel, k=1, selection=selection, matrix=Path(tmp) / "m.parquet", **options)
    matrix = result.matrix
    matrix.attrs.update({k: v for k, v in result.to_dict().items() if k != "top"})
    return matrix


def plot_store_spread(store, a: str, b: str, out="spread.png", column: str = "close",
                      window: int = 60, cut=None) -> tuple[Path, dict]:
    """Analyse two stored tickers and plot their spread; return the plot's path and the analysis."""
    from .analyze import analyze_pair, check_window, rolling_corr
    from .pair_reader import read_pair
    from .plot import plot_spread

    check_output(out, "out", PNG)
    files = store_files(store)
    if not files:
        raise empty_store_error(store)
    path_a, path_b = ticker_file(files, a, store), ticker_file(files, b, store)
    if a == b:
        raise PairscanError(f"a pair needs two different tickers, not {a!r} twice")
    check_window(window)
    index, pa, pb = read_pair(str(path_a), str(path_b), column, cut)
    if (pa <= 0).any() or (pb <= 0).any():
        raise PairscanError(f"{a} or {b} has prices <= 0 on their common timestamps: no log prices to plot")
    la, lb = np.log(pa), np.log(pb)
    fields = analyze_pair(la, lb, window)
    if not np.isfinite(fields["beta"]):
        raise PairscanError(f"no spread for {a} and {b}: {fields['reason']}")
    spread = la - fields["beta"] * lb - fields["alpha"]
    rolling = rolling_corr(np.diff(la), np.diff(lb), window)
    return plot_spread(index, spread, rolling, fields, a, b, out, window, column), fields


def best_cointegrated(analysis: pd.DataFrame | None):
    """The row of the analysed pair with the lowest cointegration p-value (None if no pair has one)."""
    if analysis is None or not analysis["coint_p"].notna().any():
        return None
    return analysis.loc[analysis["coint_p"].idxmin()]


def plot_heatmap(store_or_matrix, out: str | os.PathLike = "heatmap.png", *, selection: Selection | None = None,
                 **options) -> Path:
    """The clustered heatmap of a store's correlation matrix (or of a matrix from
    :func:`correlation_matrix`), with the selection in its title and the pairs below
    min-periods in grey."""
    from .plot import plot_heatmap as draw

    checks.store_or_frame("store_or_matrix", store_or_matrix)
    checks.path("out", out)
    check_output(out, "out", PNG)
    if isinstance(store_or_matrix, pd.DataFrame) and store_or_matrix.shape[0] == store_or_matrix.shape[1] \
            and list(store_or_matrix.index) == list(store_or_matrix.columns):
        matrix = store_or_matrix
    else:
        matrix = correlation_matrix(store_or_matrix, selection=selection, **options)
    shown = ranked_tickers(matrix)
    title = heatmap_title(matrix.attrs, len(shown), len(matrix) - len(shown))
    return draw(matrix.loc[shown, shown], out, title, matrix.attrs.get("method", "pearson"))


def ranked_tickers(matrix: pd.DataFrame) -> list:
    """The tickers with at least one correlation: a row of grey says nothing."""
    values = matrix.to_numpy(dtype=float).copy()
    np.fill_diagonal(values, np.nan)
    return [t for t, some in zip(matrix.index, ~np.isnan(values).all(axis=1)) if some]


def heatmap_title(facts: dict, tickers: int, left_out: int = 0) -> str:
    """What the heatmap shows, in words: the selection and the ranking rule."""
    column, on = facts.get("column", "close"), facts.get("on", "prices")
    what = Selection(column, on, start=facts.get("start"), end=facts.get("end"),
                     resample=facts.get("resample")).describe()
    title = f"Correlation of {what}, {tickers} tickers in cluster order"
    if facts.get("min_periods"):
        title += f"\ngrey: pairs with fewer than {facts['min_periods']:,} common observations, or constant"
    if left_out:
        title += f"; {left_out:,} tickers without any such pair not shown"
    return title


# What run writes in its work folder besides the store: checked before any work, like
# the outputs a user names, so that none replaces a link or a special file.
WORKDIR_OUTPUTS = ("matrix.parquet", "pair.png", "spread.png", "heatmap.png")


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
    ``workdir`` first. The store, the plots and the report go to ``workdir``; the
    source is never written to. The selection options are :func:`correlate`'s.
    ``partners_of`` (``--with``): also each named ticker's ``k`` best partners
    (``with`` and ``partners`` in the answer) and the pair plot of the first named
    ticker's best partner. With a ``report``, also every ticker's best partners for
    its search (one pass of the partners engine). Returns a
    :class:`~pairscan.run_result.RunResult`; its ``to_json()`` is what ``run --json``
    prints. Every stage runs on one pool, opened once from ``execution`` (or its
    fields as keywords: ``executor``, ``workers``, ``retries``, ``quiet``,
    ``connect_timeout``).
    """
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
    workdir = Path(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PairscanError(f"cannot create the work folder ({exc.strerror})", workdir) from None
    for name in WORKDIR_OUTPUTS:
        check_output(workdir / name, "the work folder's " + name)
    if report is not None:
        # Checked once the work folder exists: a report inside it is the natural choice.
        check_output(report, "the report", (".html", ".htm"))
    stages: dict[str, float] = {}
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
        analysis = None
        if len(result.top):
            from .analyze import analyze_top

            analysis = analyze_top(store, result.top, pool, column=selection.column, quiet=quiet, retries=retries,
                                   cut=selection.cut)
            stages["analyze"] = analysis.attrs["seconds"]
    t1 = time.perf_counter()
    plots = _run_plots(workdir, store, selection, result, partners, analysis)
    stages["plot"] = time.perf_counter() - t1
    done = RunResult(result, str(source) if source is not None else "built-in sample", str(folder), str(store),
                     converted, plots, stages, analysis, partners, search)
    if report is None:
        return done
    from .report import write_report

    t2 = time.perf_counter()
    write_report(report, done)
    return replace(done, report=Path(report), stages={**stages, "report": time.perf_counter() - t2})


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
    if len(result.top):
        from .plot import plot_pair as draw

        best = records(result.top.iloc[:1])[0]
        pair = [store_series(store, best[t], selection.column, selection) for t in ("a", "b")]
        plots["pair"] = str(draw(*pair, workdir / "pair.png", **_pair_stats(best, selection, result.min_periods)))
    if partners is not None:
        named = partners.partners_of
        first = records(partners.top[partners.top["a"] == named[0]].drop(columns="rank")) if named else []
        if first:
            from .plot import plot_pair as draw

            pair = [store_series(store, first[0][t], selection.column) for t in ("a", "b")]
            plots["partners"] = str(draw(*pair, workdir / "partners.png",
                                         **_pair_stats(first[0], selection, partners.min_periods)))
    best_coint = best_cointegrated(analysis)
    if best_coint is not None:
        plots["spread"] = str(plot_store_spread(store, best_coint["a"], best_coint["b"], workdir / "spread.png",
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
