"""What a new user trips on: a pair below min-periods, tickers left out of the ranking,
pictures that fit, DataFrames everywhere the API takes a store, what run says it did.

One small store of CSV files: three tickers of 300 business days, one constant, one
with only the last 20 days (FB) and one with only the first 10 (OLD), which FB never meets.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import pairscan
from pairscan import cli, pictures, plot, wording
from pairscan.store import store_files

DAYS = pd.bdate_range("2000-01-03", periods=300)


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pairscan", *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def write_sources(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    common = rng.normal(0, 0.01, len(DAYS))
    series = {t: 100 * np.exp(np.cumsum(common + rng.normal(0, 0.01, len(DAYS)))) for t in ("AAA", "BBB", "CCC")}
    series["FLAT"] = np.full(len(DAYS), 42.0)
    for name, values in series.items():
        pd.DataFrame({"timestamp": DAYS.strftime("%Y-%m-%d"), "close": values}).to_csv(folder / f"{name}.csv",
                                                                                        index=False)
    for name, days in (("FB", DAYS[-20:]), ("OLD", DAYS[:10])):
        values = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, len(days))))
        pd.DataFrame({"timestamp": days.strftime("%Y-%m-%d"), "close": values}).to_csv(folder / f"{name}.csv",
                                                                                        index=False)
    return folder


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    return write_sources(tmp_path_factory.mktemp("trips") / "prices")


@pytest.fixture(scope="module")
def store(sources) -> Path:
    store = sources.parent / "store"
    pairscan.convert(sources, to=store, executor="serial")
    return store


@pytest.fixture(scope="module")
def panel(store) -> pd.DataFrame:
    """The store's close prices as a caller's panel (the same float64 values)."""
    return pd.concat({t: pd.read_hdf(p, "/data")["close"] for t, p in store_files(store).items()}, axis=1)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def auto_min_periods(counts) -> int:
    return max(30, int(np.median(counts) // 2))


# -- analyze A B below min-periods ------------------------------------------------------------


def test_analyze_a_pair_below_min_periods_reports_nan_and_why(store, panel):
    frame = pairscan.analyze(store, ("AAA", "FB"), executor="serial")
    periods = auto_min_periods(panel.notna().sum())
    assert periods == 150 and frame.attrs["min_periods"] == periods
    row = frame.iloc[0]
    both = panel[["AAA", "FB"]].dropna()
    assert row["n"] == len(both) == 20
    assert np.isnan(row["corr"]) and np.isnan(row["p"]) and np.isnan(row["ci_low"])
    assert row["reason"].startswith("20 common observations, fewer than min-periods 150: no correlation; ")
    # The analysis still stands on the 20 common log prices: the hedge ratio is their OLS fit.
    beta, alpha = np.polyfit(np.log(both["FB"]), np.log(both["AAA"]), 1)
    assert row["beta"] == pytest.approx(beta, rel=1e-12) and row["alpha"] == pytest.approx(alpha, rel=1e-12)


def test_analyze_cli_below_min_periods_text_and_json(store):
    done = run_cli("analyze", store, "AAA", "FB", "--executor", "serial", "-q")
    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].startswith("1 pair analyzed on log close prices")
    assert lines[2].split()[:5] == ["1", "AAA", "FB", "nan", "20"]
    notes = lines[lines.index("notes:") + 1]
    assert notes.startswith("   1  AAA~FB: 20 common observations, fewer than min-periods 150: no correlation")

    done = run_cli("analyze", store, "AAA", "FB", "--executor", "serial", "-q", "--json")
    assert done.returncode == 0 and done.stderr == ""
    pair = json.loads(done.stdout)["pairs"][0]
    assert (pair["corr"], pair["p"], pair["n"]) == (None, None, 20)
    assert pair["reason"].startswith("20 common observations, fewer than min-periods 150")


@pytest.mark.parametrize("a, b, n, why", [
    ("FB", "OLD", 0, "0 common observations, fewer than min-periods 150: no correlation; 0 common timestamps"),
    ("AAA", "FLAT", 300, "a constant series: no correlation; constant series (b)"),
])
def test_analyze_of_empty_and_constant_pairs_says_why(store, a, b, n, why):
    row = pairscan.analyze(store, (a, b), executor="serial").iloc[0]
    assert row["n"] == n and np.isnan(row["corr"]) and np.isnan(row["beta"])
    assert row["reason"].startswith(why)


# -- tickers left out of the ranking --------------------------------------------------------------


def test_correlate_names_the_tickers_left_out(store, panel):
    result = pairscan.correlate(store, k=3, executor="serial")
    counts = panel.notna().sum()
    assert result.left_out == [{"ticker": t, "n": int(counts[t])} for t in sorted(counts.index)
                               if counts[t] < result.min_periods]
    assert result.left_out == [{"ticker": "FB", "n": 20}, {"ticker": "OLD", "n": 10}]

    done = run_cli("correlate", store, "--executor", "serial", "--json")
    assert json.loads(done.stdout)["left_out"] == [{"ticker": "FB", "n": 20}, {"ticker": "OLD", "n": 10}]
    done = run_cli("correlate", store, "--executor", "serial", "--on", "returns")
    assert done.stdout.splitlines()[2] == "left out: 2 tickers with fewer than 149 returns: FB (19), OLD (9)"


def test_a_period_leaves_out_the_tickers_without_a_value_in_it(store, panel):
    result = pairscan.correlate(store, k=3, start="2000-03-01", executor="serial")
    counts = panel.loc["2000-03-01":].notna().sum()
    assert result.min_periods == auto_min_periods(counts[counts > 0])
    assert counts["OLD"] == 0
    assert result.left_out == [{"ticker": "FB", "n": 20}, {"ticker": "OLD", "n": 0}]


def test_the_left_out_line_names_five_and_counts_the_rest():
    out = SimpleNamespace(left_out=[{"ticker": f"S{i}", "n": i} for i in range(8)], min_periods=1234, on="prices")
    assert wording.left_out_line(out) == ("left out: 8 tickers with fewer than 1,234 observations: "
                                      "S0 (0), S1 (1), S2 (2), S3 (3), S4 (4) and 3 more")
    assert wording.left_out_line(SimpleNamespace(left_out=[], min_periods=30, on="prices")) is None


def test_heatmap_caption_names_the_tickers_left_out(store, panel):
    matrix = pairscan.correlation_matrix(panel, executor="serial")
    shown = pictures.ranked_tickers(matrix)
    assert shown == ["AAA", "BBB", "CCC"]  # FLAT is constant: no correlation, grey
    title = pictures.heatmap_title(matrix.attrs, len(shown), pictures.left_out_of(matrix, shown))
    assert title.split("\n") == [
        "Correlation of close prices, 3 tickers in cluster order",
        "grey: pairs with fewer than 150 common observations, or constant",
        "not shown: 3 tickers without any such pair: FB (n=20), FLAT, OLD (n=10)",
    ]


def caption_fits(fig) -> bool:
    """Whether every title's drawn box lies inside the figure."""
    fig.canvas.draw()
    width, height = fig.bbox.width, fig.bbox.height
    for ax in fig.axes:
        box = ax.title.get_window_extent()
        if box.x0 < 0 or box.x1 > width or box.y1 > height:
            return False
    return True


@pytest.mark.parametrize("tickers", [2, 3000])
def test_heatmap_caption_fits_the_page(tickers):
    rng = np.random.default_rng(0)
    names = [f"TICKER{i:05d}" for i in range(tickers)]
    matrix = pd.DataFrame(np.corrcoef(rng.normal(size=(tickers, 30))), index=names, columns=names)
    left = [(f"A-VERY-LONG-TICKER-NAME-{i}", i) for i in range(40)]
    facts = {"column": "adj_close", "on": "returns", "start": "2001-01-01", "end": "2019-12-31",
             "resample": "W", "min_periods": 1040}
    title = pictures.heatmap_title(facts, tickers, left)
    assert "and 35 more" in title
    fig = plot.heatmap_figure(matrix, title)
    assert caption_fits(fig)
    assert max(len(line) for line in fig.axes[0].get_title().split("\n")) < len(title.split("\n")[-1])


# -- the pair plot ------------------------------------------------------------------------------


def test_pair_plot_uses_a_log_axis_past_a_decade():
    days = pd.bdate_range("1994-01-03", periods=7800)
    growth = pd.Series(np.geomspace(1, 150, len(days)), index=days, name="GROW")
    flat = pd.Series(np.linspace(10, 15, len(days)), index=days, name="FLAT")
    fig = plot.pair_figure(growth, flat, 0.9)
    assert fig.axes[0].get_yscale() == "log"
    assert fig.axes[0].get_title().endswith(", log scale")
    fig = plot.pair_figure(flat, flat.rename("FLAT2") * 2, 0.9)
    assert fig.axes[0].get_yscale() == "linear"


def test_pair_plot_on_returns_adds_the_scatter_and_its_fitted_line(store, panel, tmp_path, monkeypatch):
    drawn = []
    figure = plot.pair_figure

    def spy(*args, **kwargs):
        fig = figure(*args, **kwargs)
        drawn.append(fig)
        return fig

    monkeypatch.setattr(plot, "pair_figure", spy)
    out = pairscan.plot_pair(store, "AAA", "BBB", tmp_path / "p.png", on="returns", executor="serial")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scatter = drawn[0].axes[1]
    returns = np.log(panel[["AAA", "BBB"]]).diff().dropna()
    points = scatter.collections[0].get_offsets()
    assert np.array_equal(points, returns.to_numpy())
    slope, intercept = np.polyfit(returns["AAA"], returns["BBB"], 1)
    line = scatter.get_lines()[0]
    x, y = line.get_xdata(), line.get_ydata()
    assert np.allclose(y, intercept + slope * x, rtol=0, atol=1e-15)
    assert scatter.get_title() == "299 common log returns"


# -- a DataFrame wherever top_pairs takes one --------------------------------------------------------


def test_analyze_takes_a_panel_and_agrees_with_the_store(store, panel):
    pairs = [("AAA", "BBB"), ("AAA", "FB")]
    from_store = pairscan.analyze(store, pairs, executor="serial")
    from_panel = pairscan.analyze(panel, pairs, executor="serial")
    pd.testing.assert_frame_equal(from_panel, from_store)
    top = pairscan.analyze(panel, k=2, executor="serial")
    assert list(zip(top["a"], top["b"])) == list(zip(*pairscan.top_pairs(panel, k=2, executor="serial")[["a", "b"]]
                                                     .to_numpy().T))
    with pytest.raises(pairscan.PairscanError, match=r"the panel: no ticker 'aaa'; did you mean 'AAA'\?"):
        pairscan.analyze(panel, ("aaa", "BBB"), executor="serial")


def test_plot_pair_and_heatmap_take_a_panel(panel, tmp_path):
    assert pairscan.plot_pair(panel, "AAA", "CCC", tmp_path / "p.png", executor="serial").exists()
    assert pairscan.plot_heatmap(panel, tmp_path / "h.png", executor="serial").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.png", "p.png"]


def test_run_refuses_a_panel_in_one_line(panel, tmp_path):
    with pytest.raises(pairscan.PairscanError, match="^run takes a source folder, an archive or a store; "
                                                     "for a DataFrame use top_pairs"):
        pairscan.run(panel, tmp_path / "work")
    assert list(tmp_path.iterdir()) == []


# -- what run and convert say they did ---------------------------------------------------------------


def test_run_says_where_an_archive_went_and_the_store(sources, tmp_path):
    archive = tmp_path / "prices.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(sources, arcname="prices")
    work = tmp_path / "work"
    done = run_cli("run", archive, "--workdir", work, "--executor", "serial", "-q", "--top", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"data: {archive}, unpacked to {work / 'prices'} -> store {work / 'store'}"
    assert "left out: 2 tickers with fewer than 150 observations: FB (20), OLD (10)" in lines

    done = run_cli("convert", archive, "--to", tmp_path / "st", "--executor", "serial", "-q")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"unpacked {archive} to {tmp_path / 'st' / 'prices'}"


def test_the_data_line_of_a_folder_and_of_the_sample():
    folder = SimpleNamespace(source="prices", data="prices", store="w/store")
    assert cli.data_line(folder) == "data: prices -> store w/store"
    assert cli.data_line(SimpleNamespace(source="built-in sample", data="w/daily-stock", store="w/store")) == \
        "data: the built-in sample, written to w/daily-stock -> store w/store"
