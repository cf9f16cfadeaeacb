"""Asking your own question: a period, a frequency, a subset of tickers, and returns on
each ticker's own timestamps (docs/semantics.md, docs/questions.md).

Every answer is checked against the contract's oracle: each ticker's
``F[column].loc[START:END]``, ``.resample(RULE).last()`` without empty bins, for returns
``np.log(S).diff()`` on its own timestamps, then ``pd.concat`` and ``DataFrame.corr``
with ``min_periods`` the auto rule counted on those series.
"""

from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pairscan
from pairscan.cli import main
from pairscan.selection import Selection

from conftest import make_store, oracle_series


@pytest.fixture(scope="module")
def daily(tmp_path_factory) -> Path:
    """Three years of daily bars, 12 tickers: late listings, delistings, halts."""
    root = tmp_path_factory.mktemp("questions")
    folder = pairscan.sample(root / "daily-stock", tickers=12, days=750, daily=True, seed=7)
    store = root / "store"
    pairscan.convert(folder, to=store, executor="serial")
    return store


@pytest.fixture(scope="module")
def minutes(tmp_path_factory) -> Path:
    """Ragged 2-minute bars over 40 trading days."""
    return make_store(tmp_path_factory.mktemp("minutes"), ragged=True, tickers=8, days=40, bars_per_day=30)


def oracle(store, on="prices", start=None, end=None, resample=None, tickers=None, min_periods="auto"):
    resample = {"M": "ME", "Q": "QE"}.get(resample, resample)  # the names pandas 2.2 gave them
    series = oracle_series(store, on=on, start=start, end=end, resample=resample, tickers=tickers)
    counts = [int(np.isfinite(s).sum()) for s in series.values()]
    periods = max(30, int(np.median(counts)) // 2) if min_periods == "auto" else min_periods
    panel = pd.concat(series, axis=1, sort=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pairs = {(a, b): panel[a].corr(panel[b], min_periods=periods)
                 for a, b in itertools.combinations(sorted(series), 2)}
    return pairs, periods


def check(store, executor="serial", engine="auto", memory_limit="1GB", tickers_given=None, exclude=None,
          expected_tickers=None, **question):
    want, periods = oracle(store, tickers=expected_tickers, **question)
    top = pairscan.top_pairs(store, k=len(want), executor=executor, workers=2, engine=engine,
                             memory_limit=memory_limit, tickers=tickers_given, exclude=exclude, **question)
    assert top.attrs["min_periods"] == periods
    names = sorted({t for pair in want for t in pair})
    assert top.attrs["series"] == len(names)
    ranked = {k: v for k, v in want.items() if not np.isnan(v)}
    assert len(top) == len(ranked) and len(ranked) >= 3
    for row in top.itertuples():
        assert abs(row.corr - ranked[row.a, row.b]) <= 1e-9, (row.a, row.b)
    # Sorted as the oracle's (tie-robust: by value).
    assert np.allclose(top["corr"].to_numpy(), sorted(ranked.values(), reverse=True), rtol=0, atol=1e-9)
    for key in ("start", "end", "resample"):
        assert top.attrs[key] == Selection(**{k: v for k, v in question.items() if k != "on"}).__dict__[key]
    return top


EXECUTORS = [("serial", "1GB"), ("threads", "1GB"), ("processes", "1GB"), ("threads", "30KB"),
             ("processes", "30KB")]
# One executor per place the panel lives (placement.Where), where the series are cut:
# this process (threads: loaded by parallel tasks), a file a process pool maps, read by
# each task from the store. The whole list above runs once, on a period.
PLACES = [("threads", "1GB"), ("processes", "1GB"), ("threads", "30KB")]


@pytest.mark.parametrize("executor,limit", EXECUTORS)
def test_a_period_on_returns(daily, executor, limit):
    top = check(daily, executor=executor, memory_limit=limit, on="returns", start="2006-03", end="2007-06-30")
    assert top.attrs["streamed"] == (limit != "1GB")


@pytest.mark.parametrize("executor,limit", PLACES)
def test_weekly_and_monthly_resampling(daily, executor, limit):
    check(daily, executor=executor, memory_limit=limit, on="returns", resample="W")
    check(daily, executor=executor, memory_limit=limit, resample="M", min_periods=12)


@pytest.mark.parametrize("executor,limit", PLACES)
def test_ragged_two_minute_bars_resampled_daily(minutes, executor, limit):
    for on in ("prices", "returns"):
        check(minutes, executor=executor, memory_limit=limit, on=on, resample="D", min_periods=20)


@pytest.mark.parametrize("executor,limit", PLACES)
def test_a_subset_by_patterns_with_an_exclusion(daily, executor, limit):
    names = sorted(pairscan.store.store_files(daily))
    chosen = [t for t in names if t[0] in "abcdefghijklm" and t != names[1]]
    pattern = "[a-m]*"
    check(daily, executor=executor, memory_limit=limit, on="returns", tickers_given=pattern, exclude=names[1],
          expected_tickers=chosen)


def test_the_naive_engine_reads_the_same_series(daily):
    check(daily, engine="naive", on="returns", start="2006", resample="W")
    check(daily, engine="naive", memory_limit="30KB", on="returns", start="2006", resample="W")


def test_tickers_with_no_value_in_the_period_leave_the_panel(daily):
    names = sorted(pairscan.store.store_files(daily))
    whole = oracle_series(daily)
    # The period before some tickers list: they have no value there and leave.
    first = min(s.first_valid_index() for s in whole.values())
    end = (first + pd.Timedelta(days=120)).strftime("%Y-%m-%d")
    kept = [t for t in names if whole[t].loc[:end].notna().any()]
    assert 2 <= len(kept) < len(names)
    top = check(daily, end=end, expected_tickers=kept, min_periods=10)
    assert top.attrs["series"] == len(kept)


# -- a pair's answer does not depend on the other tickers ---------------------------------------

def _write(store_source: Path, series: dict[str, pd.Series]) -> Path:
    store_source.mkdir(parents=True)
    for ticker, s in series.items():
        lines = [json.dumps({"timestamp": t.isoformat(), "close": float(v)}) for t, v in s.items()]
        (store_source / f"{ticker}.json").write_text("\n".join(lines) + "\n")
    store = store_source.parent / "store"
    pairscan.convert(store_source, to=store, executor="serial")
    return store


def test_a_pair_on_returns_is_the_same_whatever_else_is_in_the_store(tmp_path):
    rng = np.random.default_rng(12)
    days = pd.bdate_range("2010-01-01", periods=400)
    market = np.cumsum(rng.standard_normal(len(days))) * 0.01
    pair = {t: pd.Series(50 * np.exp(market + np.cumsum(rng.standard_normal(len(days))) * 0.005), index=days)
            for t in ("aaa", "bbb")}
    months = pd.date_range("2010-01-31", periods=18, freq="ME")
    calendar = pd.date_range("2010-01-01", periods=560, freq="D")  # with weekends
    more = {"mon": pd.Series(20 + rng.random(len(months)), index=months),
            "wkd": pd.Series(np.exp(np.cumsum(rng.standard_normal(len(calendar))) * 0.02), index=calendar)}
    alone = _write(tmp_path / "two" / "src", pair)
    mixed = _write(tmp_path / "four" / "src", {**pair, **more})
    want = np.log(pair["aaa"]).diff().corr(np.log(pair["bbb"]).diff())
    for store, options in ((alone, {}), (mixed, {}), (mixed, {"tickers": "aaa,bbb"}),
                           (mixed, {"exclude": "mon"})):
        for executor, limit in (("serial", "1GB"), ("threads", "10KB")):
            matrix = pairscan.correlation_matrix(store, on="returns", min_periods=1, executor=executor,
                                                 memory_limit=limit, **options)
            assert abs(matrix.loc["aaa", "bbb"] - want) <= 1e-12, (store, options, executor)
            top = pairscan.top_pairs(store, k=10, on="returns", min_periods=1, executor=executor,
                                     memory_limit=limit, **options)
            row = top[(top.a == "aaa") & (top.b == "bbb")].iloc[0]
            assert row.n == len(days) - 1


# -- bad questions: exit 2, one line ------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["--start", "2006-13-01"], "pairscan: error: --start must be a date like 2003-01-31, not '2006-13-01'"),
    (["--end", "soon"], "pairscan: error: --end must be a date like 2003-01-31, not 'soon'"),
    (["--resample", "fortnightly"],
     "pairscan: error: --resample must be a pandas offset alias like D, W, ME or 15min, not 'fortnightly'"),
    (["--tickers", "zzz*"], "pairscan: error: --tickers: the pattern 'zzz*' matches no ticker in the store"),
    (["--exclude", "q*x"], "pairscan: error: --exclude: the pattern 'q*x' matches no ticker in the store"),
])
@pytest.mark.parametrize("command", ["correlate", "analyze", "run", "plot"])
def test_bad_questions_are_one_line_exit_2(daily, tmp_path, capsys, args, message, command):
    extra = {"run": ["--workdir", str(tmp_path / "w")], "plot": ["--heatmap", "--out", str(tmp_path / "h.png")]}
    assert main([command, str(daily), *args, *extra.get(command, []), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [message]
    assert not (tmp_path / "h.png").exists()


def test_an_unknown_name_is_named_with_a_suggestion(daily, capsys):
    name = sorted(pairscan.store.store_files(daily))[0]
    assert main(["correlate", str(daily), "--tickers", f"{name.upper()},{name}", "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"pairscan: error: --tickers: no ticker {name.upper()!r} in the store; did you mean {name!r}?"]


def test_every_answer_says_what_it_used(daily, capsys):
    names = sorted(pairscan.store.store_files(daily))
    period = oracle_series(daily, start="2006-01-01", end="2007-06-30", resample="W", on="returns")
    five = sorted(period)[:5]
    assert len(five) == 5
    assert main(["correlate", str(daily), "--on", "returns", "--resample", "W", "--start", "2006-01-01",
                 "--end", "2007-06-30", "--tickers", ",".join(five), "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["start"], out["end"], out["resample"], out["series"], out["tickers_stored"]) == \
        ("2006-01-01", "2007-06-30", "W", 5, len(names))
    assert main(["correlate", str(daily), "--on", "returns", "--resample", "W", "--start", "2006-01-01",
                 "--end", "2007-06-30", "--tickers", ",".join(five), "--quiet"]) == 0
    assert capsys.readouterr().out.startswith(
        f"5 of {len(names)} tickers, 10 pairs: pearson on weekly log returns of close, 2006-01-01 to 2007-06-30; ")
    assert main(["correlate", str(daily), "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["start"], out["end"], out["resample"], out["series"]) == (None, None, None, len(names))


def test_analyze_and_plot_see_the_period(daily, tmp_path):
    names = sorted(pairscan.store.store_files(daily))
    question = dict(on="returns", start="2006", end="2006-12-31", min_periods=20)
    top = pairscan.top_pairs(daily, k=3, executor="serial", **question)
    frame = pairscan.analyze(daily, k=3, executor="serial", **question)
    assert list(zip(frame.a, frame.b)) == list(zip(top.a, top.b))
    assert np.allclose(frame["corr"], top["corr"], rtol=0, atol=1e-12)
    assert frame["n"].tolist() == top["n"].tolist()
    out = pairscan.plot_pair(daily, names[0], names[1], tmp_path / "p.png", executor="serial", **question)
    assert out.stat().st_size > 0


def test_the_selection_options_are_checked_once():
    s = Selection(start="2006", end="2006-06", resample="M", tickers="a*,b", exclude=["c"])
    assert (s.resample, s.tickers, s.exclude) == ("ME", ("a*", "b"), ("c",))
    assert Selection(resample="Q").resample == "QE" and Selection(resample="15min").resample == "15min"
    assert s.describe(40, 3000) == "monthly close prices, 2006 to 2006-06, 40 of 3,000 tickers"
    assert Selection(on="returns", resample="W").describe() == "weekly log returns of close"
    for bad in (dict(start="2006-02-30"), dict(resample="M2"), dict(tickers=""), dict(exclude=[1])):
        with pytest.raises(pairscan.PairscanError):
            Selection(**bad)


# -- resampling without pandas' resample on the hot path is pandas' resample ----------------------

@pytest.mark.parametrize("rule", ["D", "W", "ME", "QE", "h", "15min", "2h", "30s", "2D", "B", "W-MON", "YE"])
def test_resampling_equals_pandas_resample_last(rule):
    from pairscan.selection import resample_last

    rng = np.random.default_rng(abs(hash(rule)) % 2**32)
    for kind in ("daily with weekends", "minutes", "sparse", "before 1970"):
        if kind == "minutes":
            index = pd.date_range("2020-02-27 09:30", periods=3000, freq="2min")
        elif kind == "sparse":
            index = pd.DatetimeIndex(np.sort(rng.choice(pd.date_range("2019-12-01", "2021-03-31 23:59", freq="min"),
                                                        size=400, replace=False)))
        elif kind == "before 1970":
            index = pd.date_range("1968-11-03 17:00", periods=900, freq="7h")
        else:
            index = pd.date_range("2019-12-28", periods=500, freq="D")
        index = index.as_unit("ns")
        values = rng.standard_normal(len(index))
        values[rng.random(len(index)) < 0.2] = np.nan
        want = pd.Series(values, index=index).resample(rule).last().dropna()
        got_index, got_values = resample_last(np.asarray(index.as_unit("ns").values), values, rule)
        pd.testing.assert_series_equal(pd.Series(got_values, index=pd.DatetimeIndex(got_index)), want,
                                       check_freq=False, check_names=False)


# -- a period reads only its rows, and the same rows as pandas' label slicing ----------------------

@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
def test_a_period_read_from_the_store_is_pandas_label_slicing(tmp_path, fmt):
    from pairscan.selection import Cut
    from pairscan.store import formats, read_column_period

    fast = formats.by_name(fmt).read_column_rows
    store = make_store(tmp_path, ragged=True, fmt=fmt, tickers=3, days=6, bars_per_day=30)
    for ticker, path in pairscan.store.store_files(store).items():
        frame = pd.read_hdf(path, "/data") if fmt == "hdf5" else pd.read_parquet(path)
        first, last = frame.index[0], frame.index[-1]
        middle = frame.index[len(frame) // 2]
        for start, end in ((None, None), (str(first.date()), None), (None, str(middle.date())),
                           (str(middle), str(middle)), (middle.strftime("%Y-%m-%d %H:%M"), str(last.year)),
                           (middle.strftime("%Y-%m-%d %H"), middle.strftime("%Y-%m")), ("1990", "1991"),
                           (str(last + pd.Timedelta(days=1)), None), (f"{first.year}Q1", None)):
            want = frame["close"].loc[start:end]
            cut = Cut(start, end)
            assert cut.bounds() is not None
            got = fast(path, "close", *cut.bounds())  # the format's own partial read
            assert np.array_equal(got[0], np.asarray(want.index.as_unit("ns").values))
            index, values = read_column_period(path, "close", *cut.bounds())
            pd.testing.assert_series_equal(pd.Series(values, index=pd.DatetimeIndex(index, name=want.index.name)),
                                           want, check_names=False, check_freq=False)
            stamps = np.asarray(frame.index.as_unit("ns").values)
            assert np.array_equal(stamps[cut.rows(stamps)], stamps[frame.index.slice_indexer(start, end)])


def test_period_bounds_equal_pandas_label_slicing_on_indexes_of_every_resolution():
    from pairscan.selection import Cut

    indexes = [pd.date_range("2007-12-20", periods=400, freq=f) for f in ("D", "h", "min", "s")]
    indexes.append(pd.date_range("2007-12-31 23:59:59.5", periods=50, freq="100ms"))
    texts = [None, "2008", "2008-01", "2008-01-01", "2008-01-01 05", "2008-01-01 05:30", "2008-01-01 05:30:10",
             "2008-01-01T00:00:00.3", "2007-12-31 23:59:59", "2008Q1", "20080101", "Jan 1 2008"]
    for index in indexes:
        stamps = np.asarray(index.as_unit("ns").values)
        for start, end in itertools.product(texts, texts):
            cut = Cut(start, end)
            want = stamps[pd.DatetimeIndex(stamps).slice_indexer(start, end)]
            assert np.array_equal(stamps[cut.rows(stamps)], want), (index.freq, start, end)
