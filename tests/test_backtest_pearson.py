"""backtest's Pearson on a slice (complete columns by one product, columns with holes
through their absences) against correlate on the same panel and pandas' DataFrame.corr."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest

import pairscan

pearson = importlib.import_module("pairscan.backtest.pearson")
evaluate = importlib.import_module("pairscan.backtest.evaluate")


def panel() -> pd.DataFrame:
    """Returns-like columns: most whole, some listed late, delisted early or halted, one
    constant, one a copy and one a negative copy of another, one of two values, one of
    one value, one empty, one near-constant, one constant over another's whole history."""
    rng = np.random.default_rng(7)
    rows = 80
    common = rng.normal(size=rows)
    data = {f"w{i}": common * rng.uniform(0.2, 1.0) + rng.normal(size=rows) for i in range(6)}
    data["late"] = np.where(np.arange(rows) >= 30, common + rng.normal(size=rows), np.nan)
    data["early"] = np.where(np.arange(rows) < 50, common + rng.normal(size=rows), np.nan)
    halted = common + 0.5 * rng.normal(size=rows)
    halted[[3, 17, 18, 40, 66]] = np.nan
    data["halted"] = halted
    data["flat"] = np.full(rows, 0.25)
    data["copy"] = data["w1"].copy()
    data["minus"] = -data["w2"]
    data["minus"][[5, 9]] = np.nan
    data["two"] = np.where(np.isin(np.arange(rows), [10, 20]), rng.normal(size=rows), np.nan)
    data["one"] = np.where(np.arange(rows) == 7, 1.0, np.nan)
    data["none"] = np.full(rows, np.nan)
    data["steady"] = 1000.0 + 1e-6 * rng.normal(size=rows)
    data["stepped"] = np.where(np.arange(rows) < 50, 0.5, rng.normal(size=rows))  # constant where "early" is
    frame = pd.DataFrame(data, index=pd.date_range("2020-01-01", periods=rows, freq="D", name="timestamp"))
    return frame.sort_index(axis=1)


def pandas_pairs(frame: pd.DataFrame, need: int) -> dict[tuple[str, str], float]:
    corr = frame.corr(min_periods=need)
    names = list(frame.columns)
    return {(a, b): corr.loc[a, b] for i, a in enumerate(names) for b in names[i + 1 :]
            if not np.isnan(corr.loc[a, b])}


@pytest.mark.parametrize("min_periods", ["auto", 2, 25])
@pytest.mark.parametrize("absolute", [False, True])
def test_a_slice_ranks_as_correlate_does(min_periods, absolute):
    # Without the exact ties of +-1 (a copy, two points), which either may round an ulp below 1.
    frame = panel().drop(columns=["copy", "two"])
    selection = pairscan.Selection("close", "prices", "pearson", min_periods, absolute)
    found = pearson.slice_pearson(frame.to_numpy(), selection.resolve, 8, absolute)
    # backtest hands correlate the slice's tickers that have a value there
    want = pairscan.correlate(frame.loc[:, frame.notna().any()], 8, min_periods=min_periods, absolute=absolute,
                              executor="serial", quiet=True)
    names = list(frame.columns)
    got = [(names[found.keep[a]], names[found.keep[b]]) for a, b in zip(found.top.a, found.top.b)]
    assert got == list(zip(want.top["a"], want.top["b"]))
    np.testing.assert_allclose(found.top.corr, want.top["corr"], rtol=0, atol=1e-12)
    assert list(found.top.n) == list(want.top["n"])
    assert found.ranked == want.pairs_ranked
    assert found.min_periods == want.min_periods
    assert len(found.keep) == want.series


@pytest.mark.parametrize("min_periods", ["auto", 2])
def test_the_mean_of_every_pair_is_pandas(min_periods):
    frame = panel().drop(columns="steady")  # pandas' own round-off on a near-constant series is not the point
    selection = pairscan.Selection("close", "prices", "pearson", min_periods, False)
    found = pearson.slice_pearson(frame.to_numpy(), selection.resolve, None)
    want = pandas_pairs(frame, max(2, found.min_periods))
    assert found.ranked == len(want)
    assert abs(found.mean - np.mean(list(want.values()))) < 1e-12


def test_the_two_value_pair_and_the_copies_are_exact():
    frame = panel()[["copy", "halted", "minus", "two", "w1", "w2"]]
    selection = pairscan.Selection("close", "prices", "pearson", 2, True)
    found = pearson.slice_pearson(frame.to_numpy(), selection.resolve, 20, True)
    names = list(frame.columns)
    corr = {(names[found.keep[a]], names[found.keep[b]]): c for a, b, c in zip(found.top.a, found.top.b, found.top.corr)}
    assert corr[("copy", "w1")] == 1.0
    assert corr[("minus", "w2")] == -1.0
    assert abs(corr[("two", "w1")]) == 1.0  # two points lie on a line


def test_a_slice_of_two_rows_gives_exact_signs():
    frame = panel()[["halted", "minus", "w1", "w2"]].iloc[[0, 1]]
    selection = pairscan.Selection("close", "prices", "pearson", 2, False)
    found = pearson.slice_pearson(frame.to_numpy(), selection.resolve, 6)
    want = pairscan.correlate(frame, 6, min_periods=2, executor="serial", quiet=True)
    names = list(frame.columns)
    assert sorted(zip(found.top.corr, ((names[found.keep[a]], names[found.keep[b]])
                                      for a, b in zip(found.top.a, found.top.b)))) == \
        sorted(zip(want.top["corr"], zip(want.top["a"], want.top["b"])))
    assert set(np.abs(found.top.corr)) == {1.0}


def test_scaled_columns_are_left_to_the_engine():
    frame = panel()[["w1", "w2", "w3"]] * 2.0**600
    selection = pairscan.Selection("close", "prices", "pearson", 2, False)
    assert pearson.slice_pearson(frame.to_numpy(), selection.resolve, 3) is None


def test_a_slice_of_returns_taken_on_the_whole_panel_is_the_slice_s_own():
    prices = np.exp(np.cumsum(np.random.default_rng(3).normal(scale=0.01, size=(60, 5)), axis=0))
    prices[:12, 1] = np.nan  # listed late
    prices[[20, 21, 33], 2] = np.nan  # halted
    prices[40:, 3] = np.nan  # delisted
    prices[25, 4] = 0.0  # a bad tick: its returns are missing
    changes = evaluate.changes_of(prices)
    for low, high in ((0, 30), (10, 45), (21, 60), (33, 34)):
        expected = evaluate.series_of(prices[low:high], "returns")
        got = evaluate.slice_series(prices[low:high], changes[low:high], "returns")
        np.testing.assert_array_equal(got, expected)


def gappy(seed: int, rows: int = 300, columns: int = 60, holes: float = 0.02) -> pd.DataFrame:
    """Returns-like columns sharing a factor: listed late, delisted early, listed and
    delisted within the slice, halted (``holes`` of the cells), whole."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=(rows, 1))
    values = common * rng.uniform(0.1, 1.0, size=columns) + rng.normal(size=(rows, columns))
    start = np.where(rng.random(columns) < 0.3, rng.integers(0, rows, columns), 0)
    stop = np.where(rng.random(columns) < 0.3, rng.integers(0, rows + 1, columns), rows)
    row = np.arange(rows)[:, None]
    values[(row < start) | (row >= stop) | (rng.random((rows, columns)) < holes)] = np.nan
    return pd.DataFrame(values, index=pd.date_range("2020-01-01", periods=rows, freq="D", name="timestamp"),
                        columns=[f"t{i:02d}" for i in range(columns)])


@pytest.mark.parametrize("seed, holes", [(1, 0.0), (2, 0.02), (3, 0.3)])
@pytest.mark.parametrize("min_periods", ["auto", 40])
def test_gappy_slices_are_pandas(seed, holes, min_periods):
    """Many columns with holes, in several blocks of them: the ranked pairs, the top
    candidates and the mean of every pair against pandas' matrix, to 1e-12."""
    frame = gappy(seed, holes=holes)
    selection = pairscan.Selection("close", "prices", "pearson", min_periods, False)
    original = pearson.CELLS
    pearson.CELLS = 64 * 16  # blocks of 64 holed columns: several of them, and the later ones
    try:
        top = pearson.slice_pearson(frame.to_numpy(), selection.resolve, 12)
        every = pearson.slice_pearson(frame.to_numpy(), selection.resolve, None)
    finally:
        pearson.CELLS = original
    kept = frame.loc[:, frame.notna().any()]
    want = pandas_pairs(kept, max(2, top.min_periods))
    assert top.ranked == every.ranked == len(want)
    assert abs(every.mean - np.mean(list(want.values()))) < 1e-12
    names = list(frame.columns)
    got = {(names[top.keep[a]], names[top.keep[b]]): c for a, b, c in zip(top.top.a, top.top.b, top.top.corr)}
    best = sorted(want.items(), key=lambda item: -item[1])[:12]
    assert list(got) == [pair for pair, _ in best]
    np.testing.assert_allclose(list(got.values()), [c for _, c in best], rtol=0, atol=1e-12)
