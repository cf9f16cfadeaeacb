"""The picture entry points: read a store (or a caller's panel), correlate, draw.

:func:`plot_pair`, :func:`plot_heatmap` and :func:`plot_spread` are what ``pairscan
plot`` and the public API call: each reads the series, computes what the picture
says (the pair's correlation as :func:`~pairscan.correlate` has it, the correlation
matrix, the pair's analysis) and hands arrays to a figure of :mod:`pairscan.plot`
(matplotlib only, the ``*_figure`` functions), saved with
:func:`~pairscan.plot.save_figure`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from . import checks
from .correlate import correlation_matrix, pair_correlation
from .errors import PairscanError
from .executors import Execution
from .outputs import PNG, check_output, count, printable
from .pair_reader import PairSource, common
from .selection import Selection

LEFT_OUT_NAMED = 5  # tickers a caption names before it counts the rest


def plot_pair(store_or_panel, a: str, b: str, out: str | os.PathLike = "pair.png", *,
              selection: Selection | None = None, execution: Execution | None = None, executor=None,
              workers: int | None = None, quiet: bool | None = None, **options) -> Path:
    """Plot two tickers of a store (or of a panel DataFrame, as :func:`~pairscan.top_pairs`
    takes one) over time; the legend carries their correlation as :func:`~pairscan.correlate`
    computes it with the same selection (``column``, ``on``, ``method``, ``min_periods``,
    ``absolute``, ``start``, ``end``, ``resample``...), their common observations and
    period. With ``on="returns"`` a scatter of the two return series with the fitted
    line is drawn beside the prices."""
    checks.store_or_frame("store_or_panel", store_or_panel)
    checks.text("a", a)
    checks.text("b", b)
    checks.path("out", out)
    selection = Selection.of(selection, **options)
    if a == b:
        raise PairscanError(f"a pair needs two different tickers, not {a!r} twice")
    check_output(out, "out", PNG)
    pair = pair_correlation(store_or_panel, a, b, selection=selection, execution=execution, executor=executor,
                            workers=workers, quiet=quiet)
    where = PairSource(store_or_panel)
    returns = (pair.a, pair.b) if selection.on == "returns" else None
    return draw_pair(where, pair.record, out, selection, pair.min_periods, returns)


def draw_pair(where: PairSource, record: dict, out: str | os.PathLike, selection: Selection, min_periods: int,
              returns: tuple[pd.Series, pd.Series] | None = None) -> Path:
    """The pair plot of a ranked pair's record (``a``, ``b``, ``corr``, ``n``, ``p``)."""
    from .plot import pair_figure, save_figure

    prices = [price_series(where, record[t], selection) for t in ("a", "b")]
    if returns is None and selection.on == "returns":
        returns = tuple(where.series(record[t], selection.column, "returns", selection.cut).rename(record[t])
                        for t in ("a", "b"))
    corr = record["corr"]
    stats = dict(corr=math.nan if corr is None else corr, column=selection.column, on=selection.on,
                 method=selection.method, n=record["n"], p=record["p"], min_periods=min_periods,
                 question=selection.describe() if selection.cut is not None else None, returns=returns)
    return save_figure(pair_figure(*prices, **stats), out)


def price_series(source, ticker: str, selection: Selection | None = None) -> pd.Series:
    """One ticker's prices of the selection's column (``close`` without one) from a store,
    a panel or a :class:`~pairscan.pair_reader.PairSource`, cut to the selection's period
    and frequency, named by the ticker: the plots draw prices."""
    where = source if isinstance(source, PairSource) else PairSource(source)
    selection = selection or Selection()
    return where.series(ticker, selection.column, "prices", selection.cut).rename(ticker)


def plot_spread(store_or_panel, a: str, b: str, out: str | os.PathLike = "spread.png", column: str = "close",
                window: int = 60, cut=None) -> tuple[Path, dict]:
    """Analyse two tickers of a store (or a panel) and plot their spread; return the
    plot's path and the analysis (:func:`~pairscan.analyze.analyze_pair`'s fields)."""
    from .analyze import analyze_pair, check_window, rolling_corr
    from .plot import save_figure, spread_figure

    check_output(out, "out", PNG)
    where = PairSource(store_or_panel)
    where.check(a)
    where.check(b)
    if a == b:
        raise PairscanError(f"a pair needs two different tickers, not {a!r} twice")
    check_window(window)
    index, pa, pb = common(*(where.series(t, column, "prices", cut) for t in (a, b)))
    if (pa <= 0).any() or (pb <= 0).any():
        raise PairscanError(f"{a} or {b} has prices <= 0 on their common timestamps: no log prices to plot")
    la, lb = np.log(pa), np.log(pb)
    fields = analyze_pair(la, lb, window)
    if not np.isfinite(fields["beta"]):
        raise PairscanError(f"no spread for {a} and {b}: {fields['reason']}")
    spread = la - fields["beta"] * lb - fields["alpha"]
    rolling = rolling_corr(np.diff(la), np.diff(lb), window)
    return save_figure(spread_figure(index, spread, rolling, fields, a, b, window, column), out), fields


def best_cointegrated(analysis: pd.DataFrame | None):
    """The row of the analysed pair with the lowest cointegration p-value (None if no pair has one)."""
    if analysis is None or not analysis["coint_p"].notna().any():
        return None
    return analysis.loc[analysis["coint_p"].idxmin()]


def plot_heatmap(store_or_matrix, out: str | os.PathLike = "heatmap.png", *, selection: Selection | None = None,
                 **options) -> Path:
    """The clustered heatmap of a store's (or a panel DataFrame's) correlation matrix, or of
    a matrix from :func:`~pairscan.correlation_matrix`, with the selection in its title, the
    pairs below min-periods in grey and the tickers left out (no pair ranked) named in
    its caption. Options are :func:`~pairscan.correlate`'s."""
    from .plot import heatmap_figure, save_figure

    checks.store_or_frame("store_or_matrix", store_or_matrix)
    checks.path("out", out)
    check_output(out, "out", PNG)
    if isinstance(store_or_matrix, pd.DataFrame) and store_or_matrix.shape[0] == store_or_matrix.shape[1] \
            and list(store_or_matrix.index) == list(store_or_matrix.columns):
        matrix = store_or_matrix
    else:
        matrix = correlation_matrix(store_or_matrix, selection=selection, **options)
    shown = ranked_tickers(matrix)
    title = heatmap_title(matrix.attrs, len(shown), left_out_of(matrix, shown))
    return save_figure(heatmap_figure(matrix.loc[shown, shown], title, matrix.attrs.get("method", "pearson")), out)


def ranked_tickers(matrix: pd.DataFrame) -> list:
    """The tickers with at least one correlation: a row of grey says nothing."""
    values = matrix.to_numpy(dtype=float).copy()
    np.fill_diagonal(values, np.nan)
    return [t for t, some in zip(matrix.index, ~np.isnan(values).all(axis=1)) if some]


def left_out_of(matrix: pd.DataFrame, shown: list) -> list[tuple[str, int | None]]:
    """The tickers the heatmap does not show, with their history where the matrix's
    ``attrs`` (``left_out``, as correlate reports it) know it: those of the matrix
    without any correlation, and those the selection left without a value."""
    known = {e["ticker"]: e["n"] for e in matrix.attrs.get("left_out") or []}
    kept = set(shown)
    missing = [(str(t), known.get(str(t))) for t in matrix.index if t not in kept]
    inside = {str(t) for t in matrix.index}
    return missing + [(t, n) for t, n in known.items() if t not in inside]


def heatmap_title(facts: dict, tickers: int, left_out=()) -> str:
    """What the heatmap shows, in words: the selection, the ranking rule and the tickers
    left out (``left_out``: ``(ticker, n or None)`` pairs, or their count)."""
    column, on = facts.get("column", "close"), facts.get("on", "prices")
    what = Selection(column, on, start=facts.get("start"), end=facts.get("end"),
                     resample=facts.get("resample")).describe()
    lines = [f"Correlation of {what}, {count(tickers, 'ticker')} in cluster order"]
    if facts.get("min_periods"):
        lines.append(f"grey: pairs with fewer than {facts['min_periods']:,} common observations, or constant")
    if isinstance(left_out, int):
        left_out = [(None, None)] * left_out
    if left_out:
        named = [f"{printable(t)}" + (f" (n={n:,})" if n is not None else "") for t, n in left_out[:LEFT_OUT_NAMED]
                 if t is not None]
        more = len(left_out) - len(named)
        text = ", ".join(named) + (f" and {more:,} more" if named and more else "")
        lines.append(f"not shown: {count(len(left_out), 'ticker')} without any such pair"
                     + (f": {text}" if named else ""))
    return "\n".join(lines)

