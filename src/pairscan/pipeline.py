"""The stages in order: sample -> extract -> convert -> correlate -> analyze -> plot -> report.

``run`` is the whole pipeline on one executor; the other functions here are the
stage entry points the command line and the public API share.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .archive import extract, is_archive
from .convert import convert, source_files
from .correlate import Correlation, correlate
from .errors import PairscanError
from .executors import open_pool
from .sample import sample
from .store import read_column, store_files

DEFAULT_WORKDIR = "pairscan-work"
HEATMAP_MAX_TICKERS = 2000  # beyond this a heatmap is unreadable and the matrix large


def plot_pair(*args, **kwargs):
    """``plot.plot_pair``, imported when first used: matplotlib takes a while to import."""
    from .plot import plot_pair

    return plot_pair(*args, **kwargs)


def plot_heatmap(*args, **kwargs):
    """``plot.plot_heatmap``, imported when first used."""
    from .plot import plot_heatmap

    return plot_heatmap(*args, **kwargs)


def store_series(store: str | os.PathLike, ticker: str, column: str = "close") -> pd.Series:
    """One stored ticker's column, named by the ticker."""
    files = store_files(store)
    if ticker not in files:
        raise PairscanError(f"no ticker {ticker!r} in the store", store)
    return read_column(files[ticker], column).rename(ticker)


def plot_store_pair(store, a: str, b: str, out="pair.png", column: str = "close") -> tuple[Path, float]:
    """Plot two stored tickers; the legend carries their correlation (the oracle's)."""
    sa, sb = store_series(store, a, column), store_series(store, b, column)
    r = float(sa.corr(sb))
    return plot_pair(sa, sb, out, r, column), r


def plot_store_spread(store, a: str, b: str, out="spread.png", column: str = "close",
                      window: int = 60) -> tuple[Path, dict]:
    """Analyse two stored tickers and plot their spread; return the plot's path and the analysis."""
    from .analyze import analyze_pair, check_window, resolve_ticker, rolling_corr
    from .pair_reader import read_pair
    from .plot import plot_spread

    files = store_files(store)
    a, b = resolve_ticker(a, list(files)), resolve_ticker(b, list(files))
    if a == b:
        raise PairscanError(f"a pair needs two different tickers, not {a!r} twice")
    check_window(window)
    index, pa, pb = read_pair(str(files[a]), str(files[b]), column)
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


def correlation_matrix(store, column: str = "close", on: str = "prices", **options) -> pd.DataFrame:
    """The full correlation matrix of a store (tickers x tickers)."""
    with tempfile.TemporaryDirectory(prefix="pairscan-") as tmp:
        result = correlate(store, k=1, column=column, on=on, matrix=Path(tmp) / "m.parquet", **options)
    return result.matrix


def plot_store_heatmap(store, out="heatmap.png", column: str = "close", on: str = "prices", **options) -> Path:
    """The clustered heatmap of a store's correlation matrix."""
    matrix = correlation_matrix(store, column, on, **options)
    return plot_heatmap(matrix, out, heatmap_title(column, on, len(matrix)), options.get("method", "pearson"))


def heatmap_title(column: str, on: str, tickers: int) -> str:
    """What the heatmap shows, in words: the column, prices or returns, how many tickers."""
    what = f"log returns of {column}" if on == "returns" else f"{column} prices"
    return f"Correlation of {what}, {tickers} tickers in cluster order"


def run(
    source: str | os.PathLike | None = None,
    workdir: str | os.PathLike = DEFAULT_WORKDIR,
    k: int = 10,
    report: str | os.PathLike | None = None,
    executor="threads",
    workers: int | None = None,
    retries: int = 0,
    quiet: bool = True,
    connect_timeout: float | None = None,
    format: str = "hdf5",
    column: str = "close",
    on: str = "prices",
    method: str = "pearson",
    on_bad_lines: str = "error",
) -> dict:
    """The whole pipeline: (sample or extract) -> convert -> correlate -> analyze -> plots (-> report).

    With no ``source`` the built-in sample is written to ``workdir`` first. The store,
    the plots and the report go to ``workdir``; the source is never written to.
    Returns what ``run --json`` prints.
    """
    workdir = Path(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PairscanError(f"cannot create the work folder ({exc.strerror})", workdir) from None
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    if source is None:
        folder = workdir / "daily-stock"
        if not any(folder.glob("*.json")):
            sample(folder)
        stages["sample"] = time.perf_counter() - t0
    elif is_archive(source):
        folder = extract(source, workdir)
        stages["extract"] = time.perf_counter() - t0
    else:
        folder = Path(source)
        source_files(folder)
    store = workdir / "store"
    extra = {} if connect_timeout is None else {"connect_timeout": connect_timeout}
    with open_pool(executor, workers, **extra) as pool:
        converted = convert(folder, store, format=format, on_bad_lines=on_bad_lines,
                            retries=retries, quiet=quiet, pool=pool)
        stages["convert"] = converted["seconds"]
        n_tickers = len(store_files(store))
        matrix_path = workdir / "matrix.parquet" if n_tickers <= HEATMAP_MAX_TICKERS else None
        result: Correlation = correlate(store, k=k, column=column, on=on, method=method, matrix=matrix_path,
                                        retries=retries, quiet=quiet, pool=pool)
        stages["correlate"] = result.seconds
        analysis = None
        if len(result.top):
            from .analyze import analyze_top

            analysis = analyze_top(store, result.top, pool, column=column, quiet=quiet, retries=retries)
            stages["analyze"] = analysis.attrs["seconds"]
    t1 = time.perf_counter()
    plots = {}
    if len(result.top):
        best = result.top.iloc[0]
        plots["pair"] = str(plot_pair(store_series(store, best["a"], column), store_series(store, best["b"], column),
                                      workdir / "pair.png", float(best["corr"]), column, on, method))
    best_coint = best_cointegrated(analysis)
    if best_coint is not None:
        plots["spread"] = str(plot_store_spread(store, best_coint["a"], best_coint["b"], workdir / "spread.png",
                                                column, analysis.attrs["window"])[0])
    if result.matrix is not None:
        plots["heatmap"] = str(plot_heatmap(result.matrix, workdir / "heatmap.png",
                                            heatmap_title(column, on, result.series), method))
    stages["plot"] = time.perf_counter() - t1
    out = result.to_dict()
    out.update(source=str(source) if source is not None else "built-in sample", data=str(folder),
               store=str(store), convert=converted, plots=plots, stages={k: round(v, 4) for k, v in stages.items()})
    if analysis is not None:
        from .analyze import analysis_dict

        out["analysis"] = analysis_dict(analysis)
    if report is not None:
        from .report import write_report

        t2 = time.perf_counter()
        write_report(report, out, result, store)
        stages["report"] = time.perf_counter() - t2
        out["report"] = str(report)
        out["stages"] = {k: round(v, 4) for k, v in stages.items()}
    return out
