"""backtest: windows, formation ranking, out-of-sample fields and the trading rule,
against a reference written from docs/backtest.md with pandas and plain loops."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pairscan
from pairscan.cli import main
from pairscan.engines.blocked.distance import nearest_pairs

UNITS = {"D": "days", "W": "weeks", "M": "months", "Y": "years"}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """Daily bars with late listings, delistings, holes and a one-day history."""
    root = tmp_path_factory.mktemp("backtest")
    folder = pairscan.sample(root / "daily", tickers=12, days=520, daily=True, seed=4)
    pairscan.convert(folder, to=root / "store", executor="serial", quiet=True)
    return root / "store"


# ---- the reference, from the contract alone -------------------------------------------

def offset(length: str, times: int = 1) -> pd.DateOffset:
    return pd.DateOffset(**{UNITS[length[-1]]: int(length[:-1]) * times})


def stored(store: Path) -> dict[str, pd.Series]:
    out = {}
    for path in sorted(store.glob("*.h5")):
        s = pd.read_hdf(path, "/data")["close"].astype(float)
        if len(s):
            out[path.stem] = s
    return dict(sorted(out.items()))


def part(s: pd.Series, low, high) -> pd.Series:
    return s[(s.index >= low) & (s.index < high)]


def selected(s: pd.Series, on: str) -> pd.Series:
    s = s.dropna()
    return np.log(s).diff() if on == "returns" else s


def auto(counts) -> int:
    return max(30, int(np.median(counts)) // 2)


def rule(a: pd.Series, b: pd.Series, fa: pd.Series, fb: pd.Series, entry: float) -> tuple[int, float]:
    f = pd.concat([fa, fb], axis=1, sort=True).dropna()
    t = pd.concat([a, b], axis=1, sort=True).dropna()
    if len(f) < 2 or len(t) < 2:
        return 0, 0.0
    sigma = (f.iloc[:, 0] / f.iloc[0, 0] - f.iloc[:, 1] / f.iloc[0, 1]).std()
    if not sigma > 0:
        return 0, 0.0
    pa, pb = list(t.iloc[:, 0]), list(t.iloc[:, 1])
    d = [pa[i] / pa[0] - pb[i] / pb[0] for i in range(len(t))]
    trades, total, position = 0, 0.0, None
    for i in range(len(d)):
        if position is not None:
            start, sign = position
            if i == len(d) - 1 or d[i] == 0 or (d[i] > 0) != (sign > 0):
                if sign > 0:  # a was higher: short a, long b
                    total += (pb[i] / pb[start] - 1) - (pa[i] / pa[start] - 1)
                else:
                    total += (pa[i] / pa[start] - 1) - (pb[i] / pb[start] - 1)
                trades += 1
                position = None
            continue
        if i < len(d) - 1 and abs(d[i]) > entry * sigma:
            position = (i, d[i])
    return trades, total


def mean_of_ranked(panel: pd.DataFrame, periods: int) -> float:
    corr = panel.corr(min_periods=periods).to_numpy()
    upper = corr[np.triu_indices(len(corr), 1)]
    upper = upper[~np.isnan(upper)]
    return float(upper.mean()) if len(upper) else float("nan")


def reference(store: Path, formation: str, trading: str, step: str, k: int, rank: str, entry: float, on: str):
    series = stored(store)
    t0 = min(s.index[0] for s in series.values()).floor("D")
    last = max(s.index[-1] for s in series.values())
    windows = []
    w = 0
    while True:
        f0 = t0 + offset(step, w)
        f1 = f0 + offset(formation)
        t1 = f1 + offset(trading)
        if t1 > last + pd.Timedelta(days=1):
            break
        fprices = {t: part(s, f0, f1) for t, s in series.items()}
        tprices = {t: part(s, f1, t1) for t, s in series.items()}
        fsel = {t: selected(s, on) for t, s in fprices.items()}
        fsel = {t: s for t, s in fsel.items() if s.notna().sum() > 0}
        periods = auto([s.notna().sum() for s in fsel.values()])
        panel = pd.concat(fsel, axis=1, sort=True)
        names = list(panel.columns)
        candidates = []
        for a, b in itertools.combinations(names, 2):
            both = panel[[a, b]].dropna()
            if len(both) < periods:
                continue
            if rank == "correlation":
                r = panel[a].corr(panel[b], min_periods=periods)
                if not np.isnan(r):
                    candidates.append(((-r, a, b), a, b, {"in_corr": r, "in_n": len(both)}))
            else:
                na, nb = fsel[a] / fsel[a].iloc[0], fsel[b] / fsel[b].iloc[0]
                pair = pd.concat([na, nb], axis=1, sort=True).dropna()
                ssd = float(((pair.iloc[:, 0] - pair.iloc[:, 1]) ** 2).sum())
                candidates.append(((ssd, a, b), a, b, {"in_corr": fsel[a].corr(fsel[b]), "in_n": len(pair),
                                                      "distance": ssd}))
        candidates.sort(key=lambda c: c[0])
        pairs = []
        for _, a, b, fields in candidates[:k]:
            sa, sb = selected(tprices[a], on), selected(tprices[b], on)
            common = pd.concat([sa, sb], axis=1, sort=True).dropna()
            trades, gain = rule(tprices[a], tprices[b], fprices[a], fprices[b], entry)
            pairs.append({"a": a, "b": b, **fields, "out_corr": sa.corr(sb), "out_n": len(common),
                          "trades": trades, "return": gain})
        tsel = {t: selected(s, on) for t, s in tprices.items()}
        tsel = {t: s for t, s in tsel.items() if s.notna().sum() > 0}
        tpanel = pd.concat(tsel, axis=1, sort=True)
        windows.append({
            "formation": [f0, f1], "trading": [f1, t1], "tickers": len(fsel), "pairs_ranked": len(candidates),
            "pairs": pairs,
            "in_corr_mean": np.nanmean([p["in_corr"] for p in pairs]),
            "out_corr_mean": np.nanmean([p["out_corr"] for p in pairs]),
            "out_corr_mean_all": mean_of_ranked(tpanel, auto([s.notna().sum() for s in tsel.values()])),
            "return": np.mean([p["return"] for p in pairs]), "trades": sum(p["trades"] for p in pairs),
        })
        w += 1
    return windows


def close(got, want, tol=1e-9) -> bool:
    if want is None or (isinstance(want, float) and math.isnan(want)):
        return got is None or (isinstance(got, float) and math.isnan(got))
    return abs(got - want) <= tol * max(1.0, abs(want))


def check_against_reference(result: pairscan.Backtest, want: list[dict]) -> None:
    got = result.to_dict()["windows"]
    assert len(got) == len(want) > 1
    for g, w in zip(got, want):
        assert [pd.Timestamp(t) for t in g["formation"]] == w["formation"]
        assert [pd.Timestamp(t) for t in g["trading"]] == w["trading"]
        assert (g["tickers"], g["pairs_ranked"]) == (w["tickers"], w["pairs_ranked"])
        assert [(p["a"], p["b"]) for p in g["pairs"]] == [(p["a"], p["b"]) for p in w["pairs"]]
        for gp, wp in zip(g["pairs"], w["pairs"]):
            for name in ("in_corr", "out_corr", "return", "distance"):
                if name in wp:
                    assert close(gp[name], wp[name]), (name, gp, wp)
            assert (gp["in_n"], gp["out_n"], gp["trades"]) == (wp["in_n"], wp["out_n"], wp["trades"])
        for name in ("in_corr_mean", "out_corr_mean", "out_corr_mean_all", "return"):
            assert close(g[name], w[name]), (name, g[name], w[name])
        assert g["trades"] == w["trades"]


# ---- the tests --------------------------------------------------------------------------

def test_correlation_on_returns_equals_the_contract(store):
    result = pairscan.backtest(store, formation="6M", trading="3M", k=4, on="returns", entry=1.0,
                               executor="serial")
    want = reference(store, "6M", "3M", "3M", 4, "correlation", 1.0, "returns")
    check_against_reference(result, want)
    assert sum(w["trades"] for w in want) > 0  # the rule was exercised
    summary = result.summary
    assert summary["windows"] == len(want)
    assert close(summary["return_mean"], float(np.mean([w["return"] for w in want])))
    assert summary["trades"] == sum(w["trades"] for w in want)


def test_distance_on_prices_with_a_three_month_step_equals_the_contract(store):
    result = pairscan.backtest(store, formation="12M", trading="6M", step="3M", k=4, rank="distance",
                               executor="threads", workers=2)
    want = reference(store, "12M", "6M", "3M", 4, "distance", 2.0, "prices")
    check_against_reference(result, want)
    assert list(result.pairs.columns) == ["window", "rank", "a", "b", "in_corr", "in_n", "distance", "out_corr",
                                          "out_n", "trades", "return"]


@pytest.mark.parametrize("options", [
    dict(formation="6M", trading="3M", k=3, on="returns"),
    dict(formation="26W", trading="8W", step="6W", k=3, start="2005-02-10", end="2006-10", resample="W", min_periods=10,
         rank="distance"),
])
def test_processes_give_what_serial_gives(store, options):
    # Serial tasks take views of one panel read here; process tasks read their own rows from the store.
    serial = pairscan.backtest(store, executor="serial", **options)
    spread = pairscan.backtest(store, executor="processes", workers=2, **options)
    assert len(serial.windows) > 1 and len(serial.pairs) > 1
    pd.testing.assert_frame_equal(serial.windows, spread.windows, rtol=1e-12)
    pd.testing.assert_frame_equal(serial.pairs, spread.pairs, rtol=1e-12)


def test_a_period_is_cut_before_the_windows(store):
    result = pairscan.backtest(store, formation="3M", trading="2M", k=2, start="2005-06-15", end="2006-06",
                               executor="serial")
    assert result.windows["formation_start"].iloc[0] == pd.Timestamp("2005-06-15")
    assert result.windows["trading_end"].max() <= pd.Timestamp("2006-07-01")


def test_nearest_pairs_equal_a_plain_loop():
    rng = np.random.default_rng(7)
    values = 1 + np.cumsum(rng.normal(0, 0.01, (300, 23)), axis=0)
    values[rng.random(values.shape) < 0.1] = np.nan
    values[:120, 3] = np.nan  # a late listing
    values[200:, 9] = np.nan  # a delisting
    want = []
    for i, j in itertools.combinations(range(values.shape[1]), 2):
        both = ~np.isnan(values[:, i]) & ~np.isnan(values[:, j])
        if both.sum() >= 150:
            want.append((float(((values[both, i] - values[both, j]) ** 2).sum()), i, j))
    want.sort()
    found = nearest_pairs(values, 7, 150, memory_limit=200_000)  # several blocks
    assert found.ranked == len(want)
    assert list(zip(found.a, found.b)) == [(i, j) for _, i, j in want[:7]]
    assert np.allclose(found.corr, [d for d, _, _ in want[:7]], rtol=1e-9, atol=0)


def test_json_shape(store, capsys, tmp_path):
    out = tmp_path / "pairs.csv"
    assert main(["backtest", str(store), "--formation", "6M", "--trading", "3M", "--top", "2", "--json",
                 "--out", str(out), "--quiet", "--executor", "serial"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert {"formation", "trading", "step", "rank", "entry", "top", "windows", "summary", "seconds",
            "timings"} <= set(got)
    assert (got["formation"], got["trading"], got["step"], got["rank"], got["entry"], got["top"]) == \
        ("6M", "3M", "3M", "correlation", 2.0, 2)
    window = got["windows"][0]
    assert {"formation", "trading", "tickers", "pairs_ranked", "pairs", "in_corr_mean", "out_corr_mean",
            "out_corr_mean_all", "return", "trades"} <= set(window)
    assert set(window["pairs"][0]) == {"rank", "a", "b", "in_corr", "in_n", "out_corr", "out_n", "trades", "return"}
    assert set(got["summary"]) == {"windows", "in_corr_mean", "out_corr_mean", "out_corr_mean_all", "return_mean",
                                   "trades"}
    rows = pd.read_csv(out)
    assert len(rows) == sum(len(w["pairs"]) for w in got["windows"])


def test_text_plot_and_report(store, capsys, tmp_path):
    plot, report = tmp_path / "bt.png", tmp_path / "bt.html"
    assert main(["backtest", str(store), "--formation", "6M", "--trading", "3M", "--top", "2", "--quiet",
                 "--executor", "serial", "--plot", str(plot), "--report", str(report)]) == 0
    text = capsys.readouterr().out
    assert "window 1: formation 2005-01-03 .. 2005-07-03, trading 2005-07-03 .. 2005-10-03" in text
    assert text.strip().splitlines()[-1].startswith("in-sample r ")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = report.read_text()
    assert "data:image/png;base64," in page and "http" not in page.replace("http-equiv", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bt.html", "bt.png"]


def test_a_trading_slice_too_short_for_the_auto_rule_says_why(store, capsys):
    """Weekly returns over a 3-month trading slice: no pair has the 30 common values
    min-periods auto asks there; the summary says so and what would work."""
    common = ["backtest", str(store), "--on", "returns", "--resample", "W", "--formation", "12M", "--trading", "3M",
              "--quiet", "--executor", "serial"]
    assert main(common) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "a random pair nan;" in lines[-2]
    assert lines[-1] == ("(a random pair: no pair of a trading slice has the common values --min-periods auto asks "
                         "(at least 30); use a longer --trading, or a lower --min-periods)")
    assert main(common + ["--min-periods", "5"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("in-sample r ") and "a random pair nan" not in last


@pytest.mark.parametrize("args, words", [
    (["--formation", "0M"], "--formation must be a whole number >= 1"),
    (["--trading", "12Q"], "--trading must be a whole number >= 1"),
    (["--step", "x"], "--step must be"),
    (["--rank", "distance", "--on", "returns"], "--rank distance compares normalized prices"),
    (["--formation", "10Y"], "shorter than one window of 10Y formation and 6M trading"),
    (["--entry", "nan"], "--entry must be"),
    (["--tickers", "aet"], "need at least two tickers"),
])
def test_bad_options_exit_2_with_one_line(store, capsys, args, words):
    assert main(["backtest", str(store), "--quiet", "--executor", "serial", *args]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


def test_api_errors_name_the_keywords(store):
    with pytest.raises(pairscan.PairscanError, match="^formation must be"):
        pairscan.backtest(store, formation="12Q")
    with pytest.raises(pairscan.PairscanError, match="^rank distance compares normalized prices"):
        pairscan.backtest(store, rank="distance", on="returns")
    with pytest.raises(pairscan.PairscanError, match="^k must be at least 1"):
        pairscan.backtest(store, k=0)


def test_the_rule_by_hand():
    from pairscan.backtest.rule import formation_sigma, trade

    sigma = formation_sigma(np.array([1, 1.1, 1.0, 0.9, 1.0]), np.ones(5))
    assert sigma == pytest.approx(math.sqrt(0.02 / 4), rel=1e-12)
    # d = 0, .08 (open: short a, long b), .05, -.01 (crossed: close), -.05 (inside the band), .02 (last)
    a, b = np.array([10, 10.8, 10.5, 9.9, 9.5, 10.2]), np.full(6, 5.0)
    assert trade(a, b, sigma, 1.0) == (1, pytest.approx(-(9.9 / 10.8 - 1), rel=1e-12))
    assert trade(a, b, sigma, 2.0) == (0, 0.0)
    # open at the last common timestamp: never; a missing price is no common timestamp
    assert trade(np.array([10, np.nan, 10.2, 12.0]), np.full(4, 5.0), sigma, 1.0) == (0, 0.0)
