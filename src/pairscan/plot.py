"""Plots: the best pair over time, and the clustered correlation heatmap (PNG)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no screen needed

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .store import atomic_path  # noqa: E402


def _save(fig, out: str | os.PathLike) -> Path:
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out


def pair_figure(a: pd.Series, b: pd.Series, corr: float | None = None, column: str = "close"):
    """The seed's picture done well: both series over time, each divided by its maximum."""
    fig, ax = plt.subplots(figsize=(11, 4.5), layout="constrained")
    for series, colour in ((a, "tab:blue"), (b, "tab:orange")):
        ax.plot(series.index, series / series.max(), lw=0.7, color=colour, label=str(series.name))
    title = f"{a.name} and {b.name}"
    if corr is not None and np.isfinite(corr):
        title += f": r = {corr:.4f}"
    ax.set_title(title + f" ({column}, each divided by its maximum)")
    ax.set_xlabel("date")
    ax.set_ylabel(f"{column} / max({column})")
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", title=f"r = {corr:.4f}" if corr is not None and np.isfinite(corr) else None)
    return fig


def plot_pair(
    a: pd.Series, b: pd.Series, out: str | os.PathLike = "pair.png", corr: float | None = None, column: str = "close"
) -> Path:
    """Write the pair plot of two series (named by their tickers) to ``out``."""
    return _save(pair_figure(a, b, corr, column), out)


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


def heatmap_figure(matrix: pd.DataFrame, title: str = "Correlation, tickers ordered by clustering"):
    """The correlation matrix in cluster order, a diverging colour map centred on 0."""
    order = cluster_order(matrix)
    m = matrix.iloc[order, order]
    n = len(m)
    size = min(12.0, max(6.0, 0.28 * n + 2.5))
    fig, ax = plt.subplots(figsize=(size + 1.2, size), layout="constrained")
    image = ax.imshow(m.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="correlation r")
    # Label every ticker while they fit (about 9 points each), else every k-th.
    fits = int(size * 72 / 9)
    step = max(1, -(-n // fits))
    ticks = np.arange(0, n, step)
    ax.set_xticks(ticks, [m.columns[i] for i in ticks], rotation=90, fontsize=8 if step == 1 else 7)
    ax.set_yticks(ticks, [m.index[i] for i in ticks], fontsize=8 if step == 1 else 7)
    if step > 1:
        title += f" (every {step}th label of {n})"
    ax.set_title(title)
    return fig


def plot_heatmap(matrix: pd.DataFrame, out: str | os.PathLike = "heatmap.png", title: str | None = None) -> Path:
    """Write the clustered heatmap of a correlation matrix to ``out``."""
    fig = heatmap_figure(matrix) if title is None else heatmap_figure(matrix, title)
    return _save(fig, out)
