"""Pair analysis against statsmodels and pandas: hedge ratio, Engle-Granger test, half-life,
z-score and rolling correlation, through ``pairscan.analyze``, every executor and the CLI."""

from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.tsa.stattools import adfuller, coint

import pairscan
from pairscan.cli import main
from pairscan.store import store_files

from conftest import oracle_pairs, oracle_series, run_cli

FIELDS = ["beta", "alpha", "coint_t", "coint_p", "half_life", "zscore",
          "rolling_corr_min", "rolling_corr_median", "rolling_corr_max"]


cli = run_cli  # the command line in this process


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """statsmodels' regressions are small: BLAS threads only slow them down on a busy machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def daily_store(tmp_path_factory) -> Path:
    """Two years of daily bars, 10 tickers: late listings, delistings, halts, short histories."""
    folder = pairscan.sample(tmp_path_factory.mktemp("daily") / "daily-stock", tickers=10, days=500, daily=True,
                             seed=4)
    pairscan.convert(folder, executor="serial")
    return folder


def stored_close(store: Path) -> dict[str, pd.Series]:
    return {t: (pd.read_hdf(p, "/data") if p.suffix == ".h5" else pd.read_parquet(p))["close"]
            for t, p in store_files(store).items()}


def oracle(a: pd.Series, b: pd.Series, window: int = 60) -> dict:
    """DESIGN.md's definitions, computed with statsmodels and pandas on the common timestamps.

    Where statsmodels' own lag regression has no degrees of freedom left (a handful of
    points), its statistic means nothing and pairscan's is NaN: the oracle says so with
    ``coint_t`` NaN.
    """
    both = pd.concat([a, b], axis=1, join="inner").dropna()
    la, lb = np.log(both.iloc[:, 0]), np.log(both.iloc[:, 1])
    out = dict.fromkeys(FIELDS, np.nan)
    if len(both) < 3 or la.nunique() == 1 or lb.nunique() == 1:
        return out
    fit = sm.OLS(la.to_numpy(), sm.add_constant(lb.to_numpy())).fit()
    out["alpha"], out["beta"] = fit.params
    spread = la.to_numpy() - out["beta"] * lb.to_numpy() - out["alpha"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t, p, _ = coint(la, lb)[:3]
        if np.isfinite(t) and len(both) < 100:  # only short samples can run out of degrees of freedom
            stored = adfuller(fit.resid, regression="n", autolag="AIC", store=True)[-1]
            if stored.nobs - (stored.usedlag + 1) <= 0:
                t = p = np.nan
    out["coint_t"], out["coint_p"] = t, p
    step = sm.OLS(np.diff(spread), sm.add_constant(spread[:-1])).fit()
    lam = step.params[1]
    out["half_life"] = -np.log(2) / np.log(1 + lam) if -1 < lam < 0 else np.nan
    out["zscore"] = (spread[-1] - spread.mean()) / pd.Series(spread).std()
    rolling = la.diff().rolling(window).corr(lb.diff())
    out["rolling_corr_min"], out["rolling_corr_median"], out["rolling_corr_max"] = (
        rolling.min(), rolling.median(), rolling.max())
    return out


def assert_row(row, want: dict, where: str) -> None:
    for field in FIELDS:
        got, expected = row[field], want[field]
        if expected is None or (isinstance(expected, float) and np.isnan(expected)):
            assert got is None or np.isnan(got), f"{where} {field}: expected NaN, got {got}"
        else:
            assert got == pytest.approx(expected, rel=1e-6, abs=1e-12), f"{where} {field}: {got} != {expected}"
    if any(np.isnan(row[f]) for f in FIELDS if row[f] is not None):
        assert row["reason"], f"{where}: a NaN field needs a reason"


def test_every_pair_of_a_ragged_daily_store_equals_statsmodels(daily_store):
    closes = stored_close(daily_store)
    pairs = list(itertools.combinations(sorted(closes), 2))
    frame = pairscan.analyze(daily_store, pairs, window=40, min_periods=1, executor="serial")
    assert list(zip(frame.a, frame.b)) == pairs
    expected_corr = oracle_pairs(oracle_series(daily_store))
    kinds = set()
    for row in frame.to_dict("records"):
        a, b = row["a"], row["b"]
        assert_row(row, oracle(closes[a], closes[b], 40), f"{a}~{b}")
        want = expected_corr[a, b]
        assert (np.isnan(row["corr"]) and np.isnan(want)) or row["corr"] == pytest.approx(want, abs=1e-9)
        assert row["n"] == len(closes[a].index.intersection(closes[b].index))
        kinds.add("tested" if np.isfinite(row["coint_t"]) else "too short")
    # The sample's short histories give pairs too short for the test, beside long ones.
    assert kinds == {"tested", "too short"}


def test_top_pairs_of_an_aligned_store_equal_statsmodels(aligned_store):
    closes = stored_close(aligned_store)
    frame = pairscan.analyze(aligned_store, k=4, window=20, executor="threads")
    top = pairscan.correlate(aligned_store, k=4).top
    assert list(zip(frame.a, frame.b)) == list(zip(top.a, top.b))
    assert np.allclose(frame["corr"], top["corr"], rtol=0, atol=0) and list(frame.n) == list(top.n)
    for row in frame.to_dict("records"):
        assert_row(row, oracle(closes[row["a"]], closes[row["b"]], 20), f"{row['a']}~{row['b']}")
        assert np.isfinite(row["coint_t"]) and row["reason"] is None
    assert frame.attrs["window"] == 20 and set(frame.attrs["timings"]) == {"select", "analyze"}


def test_a_named_pair_on_returns_takes_corr_from_the_union_aligned_panel(ragged_store):
    series = oracle_series(ragged_store, on="returns")
    a, b = sorted(series)[:2]
    frame = pairscan.analyze(ragged_store, (a, b), on="returns", method="spearman", executor="serial")
    assert frame["corr"].iloc[0] == pytest.approx(series[a].corr(series[b], method="spearman"), abs=1e-9)
    assert frame["n"].iloc[0] == len(series[a].dropna().index.intersection(series[b].dropna().index))
    closes = stored_close(ragged_store)
    assert_row(frame.iloc[0].to_dict(), oracle(closes[a], closes[b]), f"{a}~{b}")


@pytest.mark.parametrize("executor", ["threads", "processes", "dask"])
def test_every_executor_gives_the_serial_answer(daily_store, executor):
    serial = pairscan.analyze(daily_store, k=6, min_periods=200, executor="serial")
    other = pairscan.analyze(daily_store, k=6, min_periods=200, executor=executor, workers=2)
    pd.testing.assert_frame_equal(other, serial)


def test_short_and_constant_histories_give_nan_with_a_reason(tmp_path):
    days = pd.bdate_range("2020-01-01", periods=120)
    rng = np.random.default_rng(0)
    walk = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days))))
    sources = {
        "long": pd.DataFrame({"timestamp": days, "close": walk}),
        "twin": pd.DataFrame({"timestamp": days, "close": walk * np.exp(rng.normal(0, 0.01, len(days)))}),
        "flat": pd.DataFrame({"timestamp": days, "close": 10.0}),
        "brief": pd.DataFrame({"timestamp": days[-2:], "close": [10.0, 11.0]}),
    }
    folder = tmp_path / "src"
    folder.mkdir()
    for name, frame in sources.items():
        frame.assign(timestamp=frame.timestamp.astype("int64") // 10**6).to_json(
            folder / f"{name}.json", orient="records", lines=True)
    pairscan.convert(folder, executor="serial")
    frame = pairscan.analyze(folder, [("flat", "long"), ("brief", "long"), ("long", "twin")], window=200,
                             executor="serial").set_index(["a", "b"])
    assert frame.loc[("flat", "long"), FIELDS].isna().all()
    assert "constant series (a)" in frame.loc[("flat", "long"), "reason"]
    assert frame.loc[("brief", "long"), FIELDS].isna().all()
    assert "2 common timestamps: too few" in frame.loc[("brief", "long"), "reason"]
    # A long pair with a window longer than its history: everything but the rolling correlation.
    row = frame.loc[("long", "twin")]
    assert np.isfinite(row[["beta", "coint_t", "coint_p", "zscore"]].astype(float)).all()
    assert row[["rolling_corr_min", "rolling_corr_median", "rolling_corr_max"]].isna().all()
    assert "fewer than the window of 200" in row["reason"]


def test_unknown_tickers_are_named_with_the_closest_match(aligned_store, capsys):
    tickers = sorted(store_files(aligned_store))
    with pytest.raises(pairscan.PairscanError, match=rf"no ticker '{tickers[0].upper()}'; did you mean '{tickers[0]}'\?"):
        pairscan.analyze(aligned_store, (tickers[0].upper(), tickers[1]))
    assert main(["analyze", str(aligned_store), tickers[0], "qqqqqq"]) == 2
    assert capsys.readouterr().err.strip() == f"pairscan: error: {aligned_store}: no ticker 'qqqqqq' in the store"
    assert main(["analyze", str(aligned_store), tickers[0]]) == 2
    assert main(["analyze", str(aligned_store), tickers[0], tickers[0]]) == 2
    assert main(["analyze", str(aligned_store), "--window", "1"]) == 2
    assert "--window must be a whole number >= 2" in capsys.readouterr().err


def test_cli_json_csv_and_text(daily_store, tmp_path):
    closes = stored_close(daily_store)
    done = cli("analyze", daily_store, "--top", "3", "--min-periods", "200", "--json", "--out", tmp_path / "p.csv",
               "--executor", "processes", "--workers", "2")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert set(out) == {"pairs", "window", "seconds", "timings"} and out["window"] == 60
    top = pairscan.correlate(daily_store, k=3, min_periods=200).top
    assert [(p["a"], p["b"]) for p in out["pairs"]] == list(zip(top.a, top.b))
    csv = pd.read_csv(tmp_path / "p.csv")
    assert list(csv.columns) == ["a", "b", "corr", "n", "p", "ci_low", "ci_high", *FIELDS, "reason"]
    for p, (_, row) in zip(out["pairs"], csv.iterrows()):
        assert list(p) == ["a", "b", "corr", "n", "p", "ci_low", "ci_high", "beta", "alpha", "coint_t", "coint_p",
                           "half_life", "zscore", "rolling_corr", "reason"]
        flat = {**p, **{f"rolling_corr_{k}": v for k, v in p["rolling_corr"].items()}}
        assert_row(flat, oracle(closes[p["a"]], closes[p["b"]]), f"{p['a']}~{p['b']}")
        assert row["a"] == p["a"] and row["beta"] == pytest.approx(p["beta"], rel=1e-15)

    a, b = out["pairs"][0]["a"], out["pairs"][0]["b"]
    done = cli("analyze", daily_store, a, b, "--window", "30", "--json", "--executor", "serial")
    assert done.returncode == 0, done.stderr
    pair = json.loads(done.stdout)["pairs"][0]
    flat = {**pair, **{f"rolling_corr_{k}": v for k, v in pair["rolling_corr"].items()}}
    assert_row(flat, oracle(closes[a], closes[b], 30), f"{a}~{b}")

    text = cli("analyze", daily_store, a, b, "--executor", "serial")
    assert text.returncode == 0, text.stderr
    assert f"1  {a}" in text.stdout and f"{pair['beta']:.4f}" in text.stdout


def test_plot_spread_writes_a_png(daily_store, tmp_path):
    closes = stored_close(daily_store)
    a, b = max(itertools.combinations(sorted(closes), 2),
               key=lambda p: len(closes[p[0]].index.intersection(closes[p[1]].index)))
    out = tmp_path / "spread.png"
    assert main(["plot", str(daily_store), a, b, "--spread", "--out", str(out)]) == 0
    png = out.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(daily_store), a, "nope", "--spread", "--out", str(out)]) == 2


def test_run_reports_and_returns_the_analysis(tmp_path):
    folder = pairscan.sample(tmp_path / "d", tickers=6, days=300, daily=True, seed=2)
    out = pairscan.run(folder, tmp_path / "work", k=3, report=tmp_path / "r.html", executor="serial").to_json()
    analysis = out["analysis"]
    assert [(p["a"], p["b"]) for p in analysis["pairs"]] == [(p["a"], p["b"]) for p in out["top"]]
    closes = stored_close(tmp_path / "work" / "store")
    for p in analysis["pairs"]:
        flat = {**p, **{f"rolling_corr_{k}": v for k, v in p["rolling_corr"].items()}}
        assert_row(flat, oracle(closes[p["a"]], closes[p["b"]]), f"{p['a']}~{p['b']}")
    page = (tmp_path / "r.html").read_text()
    assert '<section id="analysis">' in page and "it is not a trading signal" in page
    if any(p["coint_p"] is not None for p in analysis["pairs"]):
        assert "spread" in out["plots"] and "the pair with the lowest cointegration p-value" in page
