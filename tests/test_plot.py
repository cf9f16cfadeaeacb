"""Plots read as finished pictures: titles, labelled axes, dates, legible ticker labels, 0 at white."""

from __future__ import annotations

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from pairscan.plot import (
    bench_figure,
    figure_png,
    heatmap_figure,
    pair_figure,
    save_figure,
    trading_ticks,
)
from pairscan.sample import sample_frames

PNG = b"\x89PNG\r\n\x1a\n"


def closes(tickers: int, days: int, bars_per_day: int, ragged: bool = False) -> pd.DataFrame:
    frames = sample_frames(tickers=tickers, days=days, bars_per_day=bars_per_day, ragged=ragged)
    return pd.DataFrame({t: f["close"] for t, f in frames.items()})


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_pair_plot_over_a_year_has_a_date_axis_and_says_what_r_is(tmp_path):
    panel = closes(2, days=300, bars_per_day=4)
    a, b = panel["aet"], panel["afl"]
    r = a.corr(b)
    fig = pair_figure(a, b, r, "close")
    ax = fig.axes[0]
    assert ax.get_title() == "aet and afl: close prices, each divided by its own maximum"
    assert ax.get_xlabel() == "date"
    assert ax.get_ylabel() == "close / its maximum (1 = highest)"
    # Calendar time: matplotlib dates, labelled by the concise date formatter.
    assert isinstance(ax.xaxis.get_major_formatter(), mdates.ConciseDateFormatter)
    legend = ax.get_legend()
    assert legend.get_title().get_text() == f"Pearson r = {r:.4f}"
    assert [t.get_text() for t in legend.get_texts()] == ["aet", "afl"]
    # Each line is its series over its maximum; nights are too short to break it here.
    line = ax.get_lines()[0]
    assert np.nanmax(line.get_ydata()) == 1.0
    assert not np.isnan(line.get_ydata()).any()
    out = save_figure(pair_figure(a, b, r), tmp_path / "pair.png")
    assert out.read_bytes()[:8] == PNG


def test_pair_plot_of_returns_labels_r_as_of_returns():
    panel = closes(2, days=3, bars_per_day=30)
    fig = pair_figure(panel["aet"], panel["afl"], 0.1234, "close", on="returns", method="spearman")
    title = fig.axes[0].get_legend().get_title().get_text()
    assert title == "Spearman \u03c1 = 0.1234\nof log returns, not prices"


def test_a_few_days_of_bars_are_drawn_on_trading_time():
    # Five days of 30 two-minute bars: on calendar time each day would be a sliver.
    panel = closes(2, days=5, bars_per_day=30)
    ax = pair_figure(panel["aet"], panel["afl"], 0.5).axes[0]
    assert list(ax.get_xticks()) == [0, 30, 60, 90, 120]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["Jan 02\n2015", "Jan 05", "Jan 06", "Jan 07", "Jan 08"]
    assert ax.get_xlabel().startswith("date (trading time")
    assert list(ax.get_lines()[0].get_xdata()) == list(range(150))


def test_a_hole_in_one_history_breaks_its_line():
    panel = closes(2, days=200, bars_per_day=2)
    a = panel["aet"].drop(panel.index[100:160])  # 30 business days without a bar
    ax = pair_figure(a, panel["afl"], None).axes[0]
    ydata = ax.get_lines()[0].get_ydata()
    assert np.isnan(ydata).sum() == 1 and len(ydata) == len(a) + 1
    assert ax.get_legend().get_title().get_text() == ""


def test_trading_ticks_thin_out_to_months_over_a_long_history():
    index = pd.date_range("2015-01-01", periods=400, freq="B")
    positions, labels = trading_ticks(index, most=10)
    assert len(positions) <= 10
    assert labels[0] == "Jan\n2015"
    assert all(index[p].day <= 3 for p in positions)  # each is the first business day of a month
    assert any(label.endswith("\n2016") for label in labels)


def test_heatmap_labels_every_ticker_of_21_centres_on_0_and_greys_out_missing():
    matrix = closes(21, days=5, bars_per_day=20).corr()
    matrix.loc["aet", "afl"] = matrix.loc["afl", "aet"] = np.nan
    fig = heatmap_figure(matrix, "Correlation of close prices")
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.get_xticklabels()) == sorted(matrix.columns)
    assert sorted(t.get_text() for t in ax.get_yticklabels()) == sorted(matrix.index)
    assert ax.get_title() == "Correlation of close prices\n(grey: no correlation)"
    assert ax.get_xlabel() == ax.get_ylabel() == "ticker (cluster order)"
    image = ax.get_images()[0]
    assert (image.norm.vmin, image.norm.vmax) == (-1, 1)
    assert image.cmap(0.5)[:3] == pytest.approx((0.97, 0.97, 0.97), abs=0.03)  # r = 0 is white
    assert image.cmap.get_bad()[:3] == pytest.approx((0.69, 0.69, 0.69), abs=0.01)
    assert fig.axes[1].get_ylabel() == "Pearson r (\u22121 to 1)"
    # Cluster order: the row order is a permutation, and the labels follow it.
    shown = [t.get_text() for t in ax.get_yticklabels()]
    assert image.get_array()[0, 0] == 1.0 and shown[0] in matrix.index


def test_heatmap_of_500_tickers_drops_the_labels_it_cannot_fit(tmp_path):
    matrix = closes(500, days=1, bars_per_day=40).corr()
    fig = heatmap_figure(matrix, "Correlation of close prices, 500 tickers")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert 40 <= len(labels) <= 100
    ticks = ax.get_xticks()
    step = ticks[1] - ticks[0]
    assert step > 1 and np.all(np.diff(ticks) == step)
    assert ax.get_title().endswith(f"({len(labels)} of 500 tickers labelled)")
    # Labels 7 points tall and at least that far apart on the page cannot overlap.
    height_points = fig.get_size_inches()[1] * 72 * ax.get_position().height
    assert height_points / len(labels) >= 7
    png = figure_png(fig)
    assert png[:8] == PNG
    assert save_figure(heatmap_figure(matrix), tmp_path / "h.png").read_bytes()[:8] == PNG


ROWS = [
    {"workload": w, "executor": e, "workers": 1 if e == "serial" else 2, "seconds": s, "speedup": sp}
    for w, values in {
        "sleep": [(2.0, 1.0), (0.25, 8.0), (0.26, 7.7), (0.3, 6.7)],
        "correlate naive": [(0.1, 1.0), (0.15, 0.67), (0.3, 0.33), (1.0, 0.1)],
    }.items()
    for e, (s, sp) in zip(["serial", "threads", "processes", "dask"], values)
]


def test_bench_chart_has_a_panel_per_workload_and_a_bar_per_executor(tmp_path):
    fig = bench_figure(ROWS, "pairscan bench --quick")
    panels = fig.axes
    assert [ax.get_title(loc="left") for ax in panels] == ["sleep", "correlate naive"]
    for ax in panels:
        assert len(ax.patches) == 4
        # Top to bottom in the order of the rows.
        labels = sorted(ax.get_yticklabels(), key=lambda t: -t.get_position()[1])
        assert [t.get_text() for t in labels] == ["serial \u00d71", "threads \u00d72", "processes \u00d72", "dask \u00d72"]
    # Bars start at 1x: a slower executor's bar runs left of it, a faster one's right.
    dask_naive = panels[1].patches[3]
    assert dask_naive.get_x() == 1 and dask_naive.get_width() == pytest.approx(0.1 - 1)
    assert panels[-1].get_xscale() == "log"
    assert "speed-up over serial" in panels[-1].get_xlabel()
    texts = [t.get_text() for t in panels[0].texts]
    assert "2.00 s (the reference)" in texts and "0.250 s, 8\u00d7" in texts
    assert save_figure(bench_figure(ROWS), tmp_path / "b.png").read_bytes()[:8] == PNG
