"""Ranking on uneven histories: min-periods auto, p-values and intervals, one set of
selection options on every command (issue: pairs that share two dates must not top the list)."""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import pairscan
from pairscan.cli import build_parser, main
from pairscan.engines import HISTOGRAM_BINS
from pairscan.records import fisher_interval
from pairscan.selection import Selection, auto_min_periods
from pairscan.store import store_files

from conftest import run_cli

# Sixty tickers over 600 business days: late listings, delistings, halts, and tickers
# whose whole history is 2 and 5 days (seed 1), as real universes have.
UNIVERSE = dict(tickers=60, days=600, daily=True, seed=1)


@pytest.fixture(scope="module")
def universe(tmp_path_factory):
    root = tmp_path_factory.mktemp("universe")
    folder = pairscan.sample(root / "daily", **UNIVERSE)
    store = root / "store"
    pairscan.convert(folder, to=store, executor="serial")
    return store


def panel_of(store, on="prices") -> pd.DataFrame:
    frames = {t: pd.read_hdf(p, "/data")["close"] for t, p in store_files(store).items()}
    if on == "returns":  # each ticker's log returns on its own timestamps
        frames = {t: np.log(s).diff() for t, s in frames.items()}
    return pd.concat(frames, axis=1, sort=True)


def oracle_top(panel: pd.DataFrame, min_periods: int, k: int, method: str = "pearson") -> list[tuple]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        corr = panel.corr(method=method, min_periods=min_periods)
    upper = corr.where(np.triu(np.ones(corr.shape, dtype=bool), 1)).stack()
    ranked = upper.dropna()
    order = sorted(ranked.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(a, b, r) for (a, b), r in order[:k]], len(ranked)


cli = run_cli  # the command line in this process


@pytest.mark.parametrize("on", ["prices", "returns"])
def test_default_top_is_pandas_with_the_auto_min_periods(universe, on):
    panel = panel_of(universe, on)
    m = max(30, int(np.median(panel.notna().sum())) // 2)
    want, ranked = oracle_top(panel, m, 10)
    done = cli("correlate", universe, "--on", on, "--json", "--executor", "serial")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["min_periods"] == m and out["min_periods_auto"] is True
    assert out["pairs_ranked"] == ranked < out["pairs_considered"]
    got = [(p["a"], p["b"], p["corr"]) for p in out["top"]]
    assert [g[:2] for g in got] == [w[:2] for w in want]
    assert [g[2] for g in got] == pytest.approx([w[2] for w in want], abs=1e-9)
    assert all(p["n"] >= m for p in out["top"])


def test_pandas_default_ranks_pairs_that_barely_overlap_first(universe):
    """The case the auto rule is for: with min-periods 1 (pandas' default, exactly),
    pairs with a handful of common days top the list."""
    panel = panel_of(universe)
    want, ranked = oracle_top(panel, 1, 5)
    top = pairscan.top_pairs(universe, k=5, min_periods=1, executor="serial")
    # Many two-point pairs tie at r = 1 (to the last bit or two): which of them come
    # first may differ, their values may not.
    assert top["corr"].tolist() == pytest.approx([w[2] for w in want], abs=1e-9)
    for row in top.itertuples():
        assert row.corr == pytest.approx(panel[row.a].corr(panel[row.b]), abs=1e-9)
    assert top.attrs["pairs_ranked"] == ranked and top.attrs["min_periods"] == 1
    assert top["n"].min() < 10


@pytest.mark.parametrize("engine, executor", [("blocked", "serial"), ("blocked", "processes"), ("naive", "threads")])
def test_every_engine_and_executor_ranks_the_same_pairs(universe, engine, executor):
    serial = pairscan.correlate(universe, k=8, on="returns", executor="serial")
    other = pairscan.correlate(universe, k=8, on="returns", engine=engine, executor=executor)
    assert (other.min_periods, other.pairs_ranked) == (serial.min_periods, serial.pairs_ranked)
    pd.testing.assert_frame_equal(other.top, serial.top, rtol=1e-9, atol=1e-12)
    assert other.histogram.tolist() == serial.histogram.tolist()


@pytest.mark.parametrize("method", ["pearson", "spearman", "kendall"])
def test_p_values_and_intervals_equal_scipy_on_the_overlap(universe, method):
    top = pairscan.top_pairs(universe, k=4, method=method, on="returns", executor="serial")
    panel = panel_of(universe, "returns")
    test = {"pearson": stats.pearsonr, "spearman": stats.spearmanr, "kendall": stats.kendalltau}[method]
    for row in top.itertuples():
        both = panel[[row.a, row.b]].dropna()
        assert len(both) == row.n
        want = test(both[row.a], both[row.b])
        assert row.corr == pytest.approx(want.statistic, rel=1e-9)
        assert row.p == pytest.approx(want.pvalue, rel=1e-6, abs=1e-300)
        se = {"pearson": 1 / np.sqrt(row.n - 3), "spearman": np.sqrt(1.06 / (row.n - 3)),
              "kendall": np.sqrt(0.437 / (row.n - 4))}[method]
        z = np.arctanh(row.corr)
        assert (row.ci_low, row.ci_high) == pytest.approx((np.tanh(z - 1.959963984540054 * se),
                                                           np.tanh(z + 1.959963984540054 * se)), rel=1e-6)
        if method == "pearson":
            ci = want.confidence_interval(0.95)
            assert (row.ci_low, row.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-6)


def test_p_values_and_intervals_at_the_edges():
    from pairscan.records import pearson_p, spearman_p

    r = np.array([1.0, -1.0, 0.5, 0.3])
    n = np.array([2, 5, 3, 40])
    p = pearson_p(r, n)
    assert p[0] == 1.0 and p[1] == 0.0  # two points say nothing; a perfect fit of five is certain
    assert p[2] == pytest.approx(stats.pearsonr([0.0, 1.0, 2.0], [0.0, 2.0, 1.0]).pvalue, rel=1e-12)
    assert spearman_p(np.array([1.0]), np.array([10]))[0] == 0.0
    low, high = fisher_interval(r, n)
    assert np.isnan(low[0]) and np.isnan(high[2])  # n <= 3: no interval
    assert (low[1], high[1]) == (-1.0, -1.0)
    assert low[3] < 0.3 < high[3]


def test_two_point_pair_p_is_one_as_scipy_says():
    frame = pd.DataFrame({"x": [1.0, 2.0, np.nan, np.nan], "y": [3.0, 5.0, 1.0, 2.0]},
                         index=pd.date_range("2020-01-01", periods=4, name="timestamp"))
    top = pairscan.top_pairs(frame, k=1, min_periods=1, executor="serial")
    assert (top["corr"][0], top["n"][0], top["p"][0]) == (1.0, 2, stats.pearsonr([1, 2], [3, 5]).pvalue)


def test_histogram_counts_every_ranked_pair(universe):
    result = pairscan.correlate(universe, k=3, executor="serial", block_size=7, matrix=None)
    matrix = pairscan.correlation_matrix(universe, executor="serial")
    upper = matrix.where(np.triu(np.ones(matrix.shape, dtype=bool), 1)).stack().dropna()
    assert result.histogram.sum() == result.pairs_ranked == len(upper)
    assert result.histogram.tolist() == np.histogram(upper.to_numpy(), bins=HISTOGRAM_BINS)[0].tolist()


def test_text_output_says_what_was_ranked(universe):
    done = cli("correlate", universe, "--executor", "serial", "--top", "3")
    assert done.returncode == 0, done.stderr
    result = pairscan.correlate(universe, k=3, executor="serial")
    line = (f"ranked {result.pairs_ranked:,} of 1,770 pairs: at least {result.min_periods:,} common observations "
            "(auto: half the median history, at least 30); --min-periods to change")
    lines = done.stdout.splitlines()
    assert lines[1] == line
    # The short histories are named after it, then the table.
    assert result.left_out and lines[2].startswith(f"left out: {len(result.left_out)} tickers with fewer than ")
    header = lines[3].split()
    assert header[:6] == ["rank", "a", "b", "corr", "n", "p"]


def test_run_on_a_store_with_returns_and_min_periods(universe, tmp_path):
    done = cli("run", universe, "--workdir", tmp_path / "w", "--on", "returns", "--min-periods", "500", "--json",
               "--executor", "serial", "--quiet")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["min_periods"] == 500 and out["min_periods_auto"] is False and out["on"] == "returns"
    assert out["convert"] is None  # a store: nothing to convert
    panel = panel_of(universe, "returns")
    want, ranked = oracle_top(panel, 500, 10)
    assert out["pairs_ranked"] == ranked
    assert [(p["a"], p["b"]) for p in out["top"]] == [w[:2] for w in want]


def legend_of_pair_plots(monkeypatch) -> dict:
    """Record the legend title of every pair figure drawn from now on."""
    from pairscan import plot

    seen = {}
    figure = plot.pair_figure

    def spy(*args, **kwargs):
        fig = figure(*args, **kwargs)
        seen["legend"] = fig.axes[0].get_legend().get_title().get_text()
        return fig

    monkeypatch.setattr(plot, "pair_figure", spy)
    return seen


def test_pair_plot_uses_the_selection(universe, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt


    result = pairscan.correlate(universe, k=1, on="returns", method="spearman", executor="serial")
    best = result.top.iloc[0]
    seen = legend_of_pair_plots(monkeypatch)
    out = pairscan.plot_pair(universe, best.a, best.b, tmp_path / "p.png", on="returns", method="spearman",
                             executor="serial")
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert seen["legend"].startswith(f"Spearman \u03c1 = {best['corr']:.4f} (n = {best.n:,}, p ")
    assert "of log returns, not prices" in seen["legend"]
    plt.close("all")


def test_pair_plot_of_a_pair_below_min_periods_says_why(universe, tmp_path, monkeypatch):

    panel = panel_of(universe)
    short = panel.notna().sum().idxmin()  # a ticker with a history of a few days
    other = next(t for t in panel if t != short and panel[[short, t]].dropna().shape[0] >= 2)
    seen = legend_of_pair_plots(monkeypatch)
    pairscan.plot_pair(universe, short, other, tmp_path / "p.png", executor="serial")
    n = panel[[short, other]].dropna().shape[0]
    assert f"{n:,} common observations, fewer than min-periods" in seen["legend"]


def test_heatmap_says_what_is_grey(universe, tmp_path):
    matrix = pairscan.correlation_matrix(universe, on="returns", executor="serial")
    assert matrix.attrs["on"] == "returns" and matrix.attrs["min_periods"] > 30
    from pairscan.pictures import heatmap_title, left_out_of, ranked_tickers

    shown = ranked_tickers(matrix)
    alone = [t for t in matrix.index if matrix.loc[t].drop(t).isna().all()]
    assert alone and sorted(shown + alone) == sorted(matrix.index)  # the short histories rank with no one
    title = heatmap_title(matrix.attrs, len(shown), left_out_of(matrix, shown))
    assert title.startswith(f"Correlation of log returns of close, {len(shown)} tickers")
    assert f"fewer than {matrix.attrs['min_periods']:,} common observations" in title
    assert title.split("\n")[-1].startswith(f"not shown: {len(alone)} tickers without any such pair: ")
    assert pairscan.plot_heatmap(universe, tmp_path / "h.png", on="returns", executor="serial").exists()


def test_unknown_ticker_suggests_the_closest(universe):
    with pytest.raises(pairscan.PairscanError, match=r"no ticker 'AET'; did you mean 'aet'\?"):
        pairscan.plot_pair(universe, "AET", "afl", "x.png", executor="serial")


# -- one set of selection options -------------------------------------------------------

SELECTION = {"--column": "close", "--on": "prices", "--method": "pearson", "--min-periods": "auto", "--abs": False,
             "--start": None, "--end": None, "--resample": None, "--tickers": None, "--exclude": None}


def _options(parser: argparse.ArgumentParser) -> dict:
    return {a.option_strings[0]: (a.default, tuple(a.choices) if a.choices else None)
            for a in parser._actions if a.option_strings and a.option_strings[0] in SELECTION}


def test_every_command_that_correlates_has_the_same_selection_options():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    commands = [name for name in ("correlate", "run", "plot", "analyze", "network", "backtest") if name in sub.choices]
    assert {"correlate", "run", "plot", "network", "backtest"} <= set(commands)
    reference = _options(sub.choices["correlate"])
    assert {k: v[0] for k, v in reference.items()} == SELECTION
    for name in commands:
        assert _options(sub.choices[name]) == reference, name


@pytest.mark.parametrize("value", ["0", "-3", "many", "1.5"])
def test_bad_min_periods_is_one_line_exit_2(universe, value, capsys):
    assert main(["correlate", str(universe), f"--min-periods={value}", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"pairscan: error: --min-periods must be auto or a whole number >= 1, not {value!r}"]


def test_selection_is_validated_once_and_frozen():
    assert Selection.of(min_periods="40").min_periods == 40
    assert Selection.of(Selection(on="returns"), method="kendall") == Selection(on="returns", method="kendall")
    with pytest.raises(pairscan.PairscanError, match="--on must be"):
        Selection(on="levels")
    with pytest.raises(TypeError, match="unknown selection option"):
        Selection.of(colum="close")
    with pytest.raises(Exception):
        Selection().column = "open"
    assert auto_min_periods([10, 20, 30]) == 30 and auto_min_periods([5000, 3000, 100]) == 1500
