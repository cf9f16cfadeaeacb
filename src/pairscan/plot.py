"""Figures: the best pair over time, the clustered correlation heatmap, the spread, the bench chart.

Drawing only, with matplotlib: the ``*_figure`` functions take arrays and frames and
build a figure, left open; :func:`save_figure` writes one to a PNG file atomically and
closes it; :func:`figure_png` renders it to bytes (for pages that embed their
pictures). What reads a store and correlates before drawing is :mod:`pairscan.pictures`.
"""

from __future__ import annotations

import functools
import io
import os
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no screen needed

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.text  # noqa: E402
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .outputs import PNG, check_output, count, output_path  # noqa: E402

DPI = 110
SYMBOL = {"pearson": "Pearson r", "spearman": "Spearman \u03c1", "kendall": "Kendall \u03c4"}
MISSING_COLOUR = "#b0b0b0"  # a pair without a correlation: neither red nor blue, nor the white of r = 0


# Tickers and column names come from data: drawn as they are, never as mathtext
# (a ticker like "$\foo$" would otherwise be parsed as TeX, and fail the plot).
_PLAIN_TEXT = {"text.parse_math": False, "text.usetex": False}


def plain_text(figure_function):
    """Build the figure with every text drawn literally (no mathtext, no TeX)."""

    @functools.wraps(figure_function)
    def build(*args, **kwargs):
        with plt.rc_context(_PLAIN_TEXT):
            fig = figure_function(*args, **kwargs)
        for text in fig.findobj(matplotlib.text.Text):
            text.set_parse_math(False)
            text.set_usetex(False)
        return fig

    return build


def save_figure(fig, out: str | os.PathLike) -> Path:
    """Write ``fig`` to ``out`` as a PNG (checked and atomic, :mod:`pairscan.outputs`) and close it."""
    try:
        out = check_output(out, "out", PNG)
        with output_path(out, "out") as tmp, plt.rc_context(_PLAIN_TEXT):
            fig.savefig(tmp, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return out


def figure_png(fig, dpi: int = DPI) -> bytes:
    """Render ``fig`` to PNG bytes and close it."""
    buffer = io.BytesIO()
    try:
        with plt.rc_context(_PLAIN_TEXT):
            fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def correlation_symbol(method: str = "pearson") -> str:
    """``"Pearson r"``, ``"Spearman ρ"`` or ``"Kendall τ"``."""
    return SYMBOL.get(method, f"{method} correlation")


@plain_text
def pair_figure(
    a: pd.Series,
    b: pd.Series,
    corr: float | None = None,
    column: str = "close",
    on: str = "prices",
    method: str = "pearson",
    *,
    n: int | None = None,
    p: float | None = None,
    min_periods: int | None = None,
    question: str | None = None,
    returns: tuple[pd.Series, pd.Series] | None = None,
):
    """The seed's picture done well: both series over time, each divided by its maximum.

    ``corr`` is the pair's correlation as it was computed, of prices or, with
    ``on="returns"``, of log returns; the legend says which, since the lines are
    always prices. With ``n`` (the pair's common observations) the legend gives it
    and the p-value, the period both series share is shaded, and a pair without a
    correlation says why (fewer common observations than ``min_periods``).

    When a series spans more than a decade (its maximum over ten times its minimum)
    the price axis is logarithmic: equal moves in percent are then equal heights, and
    a long history that grew a hundredfold does not flatten its first half to the floor.

    ``returns`` (the two log return series, as correlated) adds a scatter of their
    common values beside the prices, with the least-squares line.
    """
    if returns is not None:
        fig, (ax, scatter) = plt.subplots(1, 2, figsize=(14.5, 4.8), layout="constrained",
                                          gridspec_kw={"width_ratios": [2.6, 1]})
    else:
        fig, ax = plt.subplots(figsize=(11, 4.5), layout="constrained")
    a, b = a.dropna().rename(a.name), b.dropna().rename(b.name)
    union = a.index.union(b.index)
    compress = _mostly_closed(union)
    position = (lambda stamps: union.get_indexer(stamps)) if compress else (lambda stamps: stamps.values)
    log_axis = spans_a_decade(a) or spans_a_decade(b)
    for series, colour in ((a, "tab:blue"), (b, "tab:orange")):
        y = series.to_numpy(dtype=float) / series.max()
        if compress:
            x, y = _break_at_gaps(union.get_indexer(series.index), y, max(1, len(union) // 100))
        else:
            x, y = _break_at_gaps(series.index.values, y, _span(union) / 100)
        ax.plot(x, y, lw=0.7, color=colour, label=str(series.name))
    if log_axis:
        ax.set_yscale("log")
        # Plain numbers (1, 0.5, 0.2, 0.1...): the default labels are mathtext, drawn literally here.
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    common = a.index.intersection(b.index)
    if n is not None and len(common):
        # Where both series exist: the only stretch the correlation is computed on.
        first, last = position(common[:1])[0], position(common[-1:])[0]
        ax.axvspan(first, last, color="tab:green", alpha=0.08, lw=0,
                   label=f"both trade: {common[0]:%Y-%m-%d} to {common[-1]:%Y-%m-%d}")
    ax.set_title(f"{a.name} and {b.name}: {column} prices, each divided by its own maximum"
                 + (", log scale" if log_axis else "")
                 + (f"\ncorrelated: {question}" if question else ""))
    ax.set_ylabel(f"{column} / its maximum (1 = highest" + ("; log scale)" if log_axis else ")"))
    if compress:
        ticks, labels = trading_ticks(union)
        ax.set_xticks(ticks, labels)
        ax.set_xlabel("date (trading time: nights, weekends and other hours without bars left out)")
    else:
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.set_xlabel("date")
    ax.grid(alpha=0.3)
    legend_title = None
    of = "log returns" if on == "returns" else "prices"
    if corr is not None and np.isfinite(corr):
        legend_title = f"{correlation_symbol(method)} = {corr:.4f}"
        if n is not None:
            legend_title += f" (n = {n:,}, p {_p_text(p)})"
        if on == "returns":
            # The lines are prices; a reader would otherwise take r for theirs.
            legend_title += "\nof log returns, not prices"
    elif n is not None:
        why = f"fewer than min-periods {min_periods:,}" if min_periods and n < min_periods else "a constant series"
        legend_title = f"no {correlation_symbol(method)} of {of}:\n{count(n, 'common observation')}, {why}"
    ax.legend(loc="best", title=legend_title, alignment="left")
    if returns is not None:
        _returns_scatter(scatter, *returns)
    return fig


def spans_a_decade(series: pd.Series) -> bool:
    """Whether positive ``series`` has a maximum over ten times its minimum."""
    values = series.to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    return bool(len(values)) and values.min() > 0 and values.max() > 10 * values.min()


def _returns_scatter(ax, ra: pd.Series, rb: pd.Series) -> None:
    """The two return series on their common timestamps, one point each, and the
    least-squares line of ``b`` on ``a``."""
    ra, rb = ra.dropna(), rb.dropna()
    common = ra.index.intersection(rb.index)
    x, y = ra.loc[common].to_numpy(dtype=float), rb.loc[common].to_numpy(dtype=float)
    size = 6 if len(x) <= 2000 else 2
    ax.scatter(x, y, s=size, alpha=0.35 if len(x) > 500 else 0.6, color="tab:purple", lw=0)
    ax.set_xlabel(f"log return of {ra.name}")
    ax.set_ylabel(f"log return of {rb.name}")
    ax.set_title(count(len(x), "common log return"))
    ax.grid(alpha=0.3)
    if len(x) >= 2 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        line = np.array([x.min(), x.max()])
        sign = "+" if intercept >= 0 else "\u2212"
        ax.plot(line, intercept + slope * line, color="black", lw=1.0,
                label=f"least squares: {rb.name} = {slope:.3f} {ra.name} {sign} {abs(intercept):.2g}")
        ax.legend(loc="upper left", fontsize=8)


def _p_text(p: float | None) -> str:
    """``"= 0.0123"``, or ``"< 1e-300"`` where the p-value underflows."""
    if p is None or not np.isfinite(p):
        return "n/a"
    if p == 0:
        return "< 1e-300"
    return f"= {p:.3g}"


def _span(index: pd.DatetimeIndex) -> pd.Timedelta:
    return index[-1] - index[0] if len(index) else pd.Timedelta(0)


def _mostly_closed(index: pd.DatetimeIndex) -> bool:
    """True when gaps visible at the plot's scale (over 1 % of its width) fill a quarter of it.

    Two-minute bars over a few days are such data: on calendar time each day's
    trading is a sliver between nights, so the plot is better drawn on trading time.
    Over a year the nights are too short to see, and calendar time reads better.
    """
    span = _span(index)
    if len(index) < 3 or span <= pd.Timedelta(0):
        return False
    gaps = np.diff(index.values)
    visible = gaps[gaps > (span / 100).to_timedelta64()]
    return visible.sum() > (span / 4).to_timedelta64()


def trading_ticks(index: pd.DatetimeIndex, most: int = 10) -> tuple[np.ndarray, list[str]]:
    """Ticks for a trading-time axis: positions of the first bar of each day, week, month...

    Takes the finest period with at most ``most`` starts (every k-th start of the
    coarsest otherwise); labels carry the year at the first tick and where it changes.
    """
    formats = {"D": "%b %d", "W": "%b %d", "M": "%b", "Q": "%b", "Y": "%Y"}
    for freq in formats:
        periods = index.to_period(freq)
        starts = np.flatnonzero(np.r_[True, periods[1:] != periods[:-1]])
        if len(starts) <= most:
            break
    starts = starts[:: max(1, -(-len(starts) // most))]
    labels, year = [], None
    for position in starts:
        stamp = index[position]
        label = stamp.strftime(formats[freq])
        if freq != "Y" and stamp.year != year:
            label += f"\n{stamp.year}"
        year = stamp.year
        labels.append(label)
    return starts, labels


def _break_at_gaps(x: np.ndarray, y: np.ndarray, longest) -> tuple[np.ndarray, np.ndarray]:
    """``x, y`` with a NaN in every gap of ``x`` longer than ``longest``.

    A line drawn straight across a night, a weekend or a stretch a ticker has no
    bars for looks like prices that moved slowly while nothing traded; a break says
    there was no data. Gaps short against the plotted span (nights on a year's
    plot) stay joined, or the line would fall apart into dashes.
    """
    if isinstance(longest, pd.Timedelta):
        longest = longest.to_timedelta64()
    if len(x) < 2 or not longest > longest * 0:
        return x, y
    gaps = np.flatnonzero(np.diff(x) > longest)
    middle = x[gaps] + (x[gaps + 1] - x[gaps]) // 2
    return np.insert(x, gaps + 1, middle), np.insert(y, gaps + 1, np.nan)


def cluster_order(matrix: pd.DataFrame) -> list[int]:
    """Leaf order of average-linkage clustering on ``1 - r``: similar tickers side by side."""
    n = len(matrix)
    if n < 3:
        return list(range(n))
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    dist = 1.0 - np.nan_to_num(matrix.to_numpy(), nan=0.0)
    dist = (dist + dist.T) / 2
    np.fill_diagonal(dist, 0.0)
    dist = np.clip(dist, 0.0, 2.0)
    return list(leaves_list(linkage(squareform(dist, checks=False), method="average", optimal_ordering=n <= 500)))


def label_step(n: int, inches: float, points_per_label: float) -> int:
    """Label every ``step``-th of ``n`` ticks so that labels ``points_per_label`` apart fit."""
    fits = max(1, int(inches * 72 / points_per_label))
    return max(1, -(-n // fits))


@plain_text
def heatmap_figure(
    matrix: pd.DataFrame,
    title: str | None = None,
    method: str = "pearson",
):
    """The correlation matrix in cluster order, a diverging colour map centred on 0.

    Every ticker is labelled while the labels fit; beyond that only every k-th, and
    the title says how many are shown. Pairs without a correlation are grey.
    """
    order = cluster_order(matrix)
    m = matrix.iloc[order, order]
    n = len(m)
    size = min(12.0, max(6.0, 0.28 * n + 2.5))
    fig, ax = plt.subplots(figsize=(size + 1.4, size), layout="constrained")
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad=MISSING_COLOUR)
    values = m.to_numpy(dtype=float)
    # vmin = -vmax: white is exactly r = 0, red positive, blue negative.
    image = ax.imshow(values, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    colourbar = fig.colorbar(image, ax=ax, shrink=0.8, ticks=np.linspace(-1, 1, 9))
    colourbar.set_label(f"{correlation_symbol(method)} (\u22121 to 1)")
    # The axes get about 80 % of the figure's height; 8-point labels need ~10 points each.
    fontsize = 8 if n <= 60 else 7
    step = label_step(n, size * 0.8, fontsize + 2.5)
    ticks = np.arange(0, n, step)
    ax.set_xticks(ticks, [str(m.columns[i]) for i in ticks], rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, [str(m.index[i]) for i in ticks], fontsize=fontsize)
    ax.tick_params(length=2 if step == 1 else 3)
    ax.set_xlabel("ticker (cluster order)")
    ax.set_ylabel("ticker (cluster order)")
    if title is None:
        title = f"Correlation of {n} tickers, in cluster order"
    notes = []
    if step > 1:
        notes.append(f"{len(ticks):,} of {n:,} tickers labelled")
    if np.isnan(values).any() and "grey" not in title:
        notes.append("grey: no correlation")
    title += f"\n({'; '.join(notes)})" if notes else ""
    # Wrapped to the figure's width: a caption wider than the page would be clipped.
    fontsize = 10
    ax.set_title(wrap_lines(title, fig.get_size_inches()[0] * 72 * 0.92 / (0.6 * fontsize)), fontsize=fontsize)
    return fig


def wrap_lines(text: str, width: float) -> str:
    """Each line of ``text`` wrapped at ``width`` characters (long words broken too)."""
    width = max(20, int(width))
    return "\n".join(textwrap.fill(line, width, break_on_hyphens=False) or line for line in text.split("\n"))


@plain_text
def histogram_figure(counts: np.ndarray, edges: np.ndarray, what: str = "Pearson r"):
    """Bars of how many pairs have a correlation in each bin of ``edges``."""
    fig, ax = plt.subplots(figsize=(9, 3.2), layout="constrained")
    counts = np.asarray(counts)
    colours = np.where((edges[:-1] + edges[1:]) / 2 < 0, "#2e6da4", "#c0392b")
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=colours, edgecolor="white", lw=0.5)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel(what)
    ax.set_ylabel("pairs")
    ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    ax.set_title(f"{count(int(counts.sum()), 'ranked pair')} by correlation")
    ax.grid(axis="y", alpha=0.3)
    return fig


EXECUTOR_COLOURS = {"serial": "tab:gray", "threads": "tab:blue", "processes": "tab:orange", "dask": "tab:green"}


@plain_text
def bench_figure(rows: list[dict], title: str = "pairscan bench"):
    """Bench results as bars of speed-up over serial: one panel per workload.

    ``rows`` are ``pairscan bench``'s (``workload``, ``executor``, ``workers``,
    ``seconds``, ``speedup``). Each bar starts at 1x (as fast as serial) and runs
    right when the executor is faster, left when it is slower, on a log scale so
    that 2x faster and 2x slower look alike; it is labelled with its seconds.
    """
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    fig, axes = plt.subplots(len(workloads), 1, figsize=(9, 1.1 + 1.3 * len(workloads)),
                             sharex=True, layout="constrained", squeeze=False)
    speedups = [r["speedup"] for r in rows if r["speedup"] > 0]
    # Symmetric about 1x, with room beyond the longest bars for their labels.
    reach = max(2.0, *(max(s, 1 / s) for s in speedups)) * 4
    for ax, workload in zip(axes[:, 0], workloads):
        mine = [r for r in rows if r["workload"] == workload]
        y = np.arange(len(mine))[::-1]
        speedup = np.array([r["speedup"] for r in mine], dtype=float)
        ax.barh(y, speedup - 1, left=1, height=0.7,
                color=[EXECUTOR_COLOURS.get(r["executor"], "tab:purple") for r in mine])
        for yi, r, s in zip(y, mine, speedup):
            label = f"{r['seconds']:#.3g} s" + (" (the reference)" if r["executor"] == "serial" else f", {s:.3g}\u00d7")
            faster = s >= 1
            ax.text(s * (1.1 if faster else 1 / 1.1), yi, label, va="center", ha="left" if faster else "right",
                    fontsize=8)
        ax.axvline(1, color="black", lw=0.8)
        ax.set_yticks(y, [f"{r['executor']} \u00d7{r['workers']}" for r in mine], fontsize=8)
        ax.set_title(workload, loc="left", fontsize=10)
        ax.grid(axis="x", alpha=0.25)
    ax = axes[-1, 0]
    ax.set_xscale("log")
    ax.set_xlim(1 / reach, reach)
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}\u00d7"))
    ax.set_xlabel("speed-up over serial (log scale; right of 1\u00d7 faster, left slower); labels: wall time")
    fig.suptitle(title)
    return fig


@plain_text
def spread_figure(
    index: pd.DatetimeIndex,
    spread: np.ndarray,
    rolling: np.ndarray,
    fields: dict,
    a: str,
    b: str,
    window: int = 60,
    column: str = "close",
):
    """An analysed pair: its spread with mean and +-2 sigma bands, the rolling correlation below.

    ``spread`` is ``log A - beta log B - alpha`` on the pair's common timestamps
    ``index``; ``rolling`` the ``window``-observation rolling correlation of their log
    returns (one value per timestamp after the first, NaN until a window is full);
    ``fields`` the pair's analysis (``beta``, ``half_life``, ``coint_p``...).
    """
    index = pd.DatetimeIndex(index)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.2), sharex=True, layout="constrained",
                                      gridspec_kw={"height_ratios": [2.2, 1]})
    mean, sigma = float(np.mean(spread)), float(np.std(spread, ddof=1)) if len(spread) > 1 else 0.0
    longest = _span(index) / 50
    x, y = _break_at_gaps(index.values, np.asarray(spread, dtype=float), longest)
    top.fill_between(index, mean - 2 * sigma, mean + 2 * sigma, color="tab:blue", alpha=0.08, lw=0)
    top.plot(x, y, lw=0.7, color="tab:blue", label=f"spread: log {a} \u2212 \u03b2 log {b} \u2212 \u03b1")
    top.axhline(mean, color="black", lw=0.9, label="mean")
    for level in (mean - 2 * sigma, mean + 2 * sigma):
        top.axhline(level, color="tab:red", lw=0.9, ls="--", label="mean \u00b1 2\u03c3" if level > mean else None)
    top.set_ylabel("spread (log price units)")
    top.grid(alpha=0.3)
    # The legend sits above the plot, where it hides no data.
    top.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=3, fontsize=9, frameon=False, borderaxespad=0.2)
    fig.suptitle(f"{a} against {b}: the spread of their log {column} prices\n{_spread_facts(fields)}", fontsize=11)

    returns_index = index[1:]
    x, y = _break_at_gaps(returns_index.values, np.asarray(rolling, dtype=float), longest)
    bottom.plot(x, y, lw=0.7, color="tab:purple", label=f"{window}-observation rolling correlation")
    finite = np.asarray(rolling, dtype=float)
    finite = finite[np.isfinite(finite)]
    if len(finite):
        bottom.axhline(float(np.median(finite)), color="black", lw=0.9, ls=":",
                       label=f"median {np.median(finite):.2f}")
    bottom.axhline(0, color="grey", lw=0.6)
    bottom.set_ylim(-1.05, 1.05)
    bottom.set_ylabel("Pearson r\nof log returns")
    bottom.grid(alpha=0.3)
    bottom.legend(loc="lower left", fontsize=8, ncols=2, framealpha=0.9)
    locator = mdates.AutoDateLocator()
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    bottom.set_xlabel("date (the two tickers' common timestamps)")
    return fig


def _num(value, spec: str) -> str:
    if value is None or not np.isfinite(value):
        return "n/a" if value is None or np.isnan(value) else ("\u2212\u221e" if value < 0 else "\u221e")
    return format(value, spec)


def _spread_facts(fields: dict) -> str:
    half_life = fields.get("half_life")
    return "   ".join([
        f"\u03b2 = {_num(fields.get('beta'), '.4f')}, \u03b1 = {_num(fields.get('alpha'), '.4f')}",
        f"Engle-Granger t = {_num(fields.get('coint_t'), '.3f')}, p = {_num(fields.get('coint_p'), '.3g')}",
        "half-life " + (f"{half_life:.1f} observations" if half_life is not None and np.isfinite(half_life)
                        else "none (no reversion)"),
        f"z-score now {_num(fields.get('zscore'), '.2f')}",
    ])
