"""Partners: `correlate --with LIST|all` and `pairscan.partners` equal pandas' per-pair
correlations, each named ticker's best first, on every local executor and the streamed path."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pandas as pd
import pytest

import pairscan
from pairscan.cli import main
from pairscan.correlate import correlate
from pairscan.engines import Pairs
from pairscan.engines.blocked.partners import BestPartners
from pairscan.engines.blocked.tasks import Block

from conftest import oracle_series


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Daily bars with listings, delistings and gaps."""
    folder = tmp_path_factory.mktemp("partners") / "daily"
    pairscan.sample(folder, tickers=12, days=300, daily=True, ragged=True, seed=3)
    pairscan.convert(folder, executor="serial")
    return folder


def expected_partners(series: dict[str, pd.Series], named, k: int, min_periods: int, method="pearson",
                      absolute=False) -> list[tuple[str, str, int, float]]:
    """Each named ticker's ``k`` best partners by pandas' ``Series.corr``, ties (to 1e-12:
    pandas may miss an exact 1 by a rounding) by the partner's place in the sorted
    tickers (as correlate breaks them)."""
    tickers = sorted(series)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for a in (tickers if named == "all" else named):
            found = []
            for position, b in enumerate(tickers):
                if b == a:
                    continue
                x, y = series[a].align(series[b], join="inner")
                both = x.notna() & y.notna()
                corr = x.corr(y, method=method, min_periods=min_periods)
                if not np.isnan(corr):
                    found.append((round(-abs(corr) if absolute else -corr, 12), position, b, int(both.sum()), corr))
            rows += [(a, b, n, corr) for _, _, b, n, corr in sorted(found)[:k]]
    return rows


def assert_partners(got: pd.DataFrame, want: list, tol: float = 1e-9) -> None:
    assert list(zip(got["a"], got["b"], got["n"])) == [(a, b, n) for a, b, n, _ in want]
    np.testing.assert_allclose(got["corr"].to_numpy(float), [c for *_, c in want], rtol=0, atol=tol)
    for a in dict.fromkeys(got["a"]):
        assert got.loc[got["a"] == a, "rank"].tolist() == list(range(1, (got["a"] == a).sum() + 1))


@pytest.mark.parametrize("executor, memory_limit, on", [
    *((executor, limit, "returns") for executor, limit in [
        ("serial", "1GB"), ("threads", "1GB"), ("processes", "1GB"),
        ("threads", "10kB"), ("processes", "10kB"),  # streamed: the tasks read their blocks from the store
    ]),
    # Prices: once where the panel lives in this process, in a mapped file, in the store.
    ("threads", "1GB", "prices"), ("processes", "1GB", "prices"), ("threads", "10kB", "prices"),
])
def test_named_and_all_equal_pandas(store, executor, memory_limit, on):
    series = oracle_series(store, on=on)
    for named in (["hal", "b"], "all"):
        result = correlate(store, k=3, on=on, executor=executor, memory_limit=memory_limit, partners_of=named,
                           block_size=4 if named == "all" else None)
        assert result.streamed == (memory_limit == "10kB") and result.engine == "blocked"
        want = expected_partners(series, sorted(named) if named != "all" else named, 3, result.min_periods)
        assert_partners(result.top, want)
        assert result.partners_of == (sorted(series) if named == "all" else ["b", "hal"])


def test_every_block_size_and_the_top_pairs_agree(store):
    whole = correlate(store, k=1000, executor="serial").top  # every ranked pair
    for block_size in (1, 2, 5, 12):
        got = correlate(store, k=4, executor="serial", partners_of="all", block_size=block_size).top
        assert_partners(got, [(a, b, n, c) for a, b, n, c in zip(got["a"], got["b"], got["n"], got["corr"])])
        pd.testing.assert_frame_equal(got, correlate(store, k=4, executor="serial", partners_of="all").top)
    # Each ticker's best partner is its best pair in the global list.
    best = correlate(store, k=1, executor="serial", partners_of="all").top
    for a, b, corr in zip(best["a"], best["b"], best["corr"]):
        mine = whole[(whole["a"] == a) | (whole["b"] == a)].iloc[0]
        assert {mine["a"], mine["b"]} == {a, b} and mine["corr"] == corr


def test_a_subset_by_pattern_and_a_panel_of_a_subset(store):
    series = oracle_series(store)
    found = pairscan.partners(store, "h*", k=2, executor="serial")
    assert found.attrs["with"] == ["hal", "hp", "hpq"] and list(found.columns) == [
        "a", "b", "rank", "corr", "n", "p", "ci_low", "ci_high"]
    assert_partners(found, expected_partners(series, ["hal", "hp", "hpq"], 2, found.attrs["min_periods"]))
    subset = ["al", "amgn", "b", "bwa", "ge", "hal"]
    panel = pd.concat({t: series[t] for t in subset}, axis=1, sort=True)
    got = pairscan.partners(panel, ["ge", "b"], k=3, executor="threads", min_periods=30)
    assert_partners(got, expected_partners({t: series[t] for t in subset}, ["b", "ge"], 3, 30))


def test_abs_and_ties_break_as_correlate_breaks_them():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(200).cumsum() + 50
    frame = pd.DataFrame({"x": x, "c": 100 - x, "a": x * 2, "b": x * 2, "d": rng.standard_normal(200).cumsum()},
                         index=pd.date_range("2020-01-01", periods=200, name="timestamp"))
    series = {t: frame[t] for t in frame}
    # x, a, b and c are one series up to sign and scale: their partners tie at |corr| 1.
    got = pairscan.partners(frame, ["x", "a"], k=3, executor="serial", absolute=True)
    assert_partners(got, expected_partners(series, ["a", "x"], 3, got.attrs["min_periods"], absolute=True))
    assert got["b"].tolist() == ["b", "c", "x", "a", "b", "c"]
    top = pairscan.top_pairs(frame, k=10, executor="serial", absolute=True)
    tied = [tuple(sorted(p)) for p in zip(top["a"], top["b"]) if "x" in p][:3]
    assert tied == [tuple(sorted(p)) for p in zip(got["a"][3:], got["b"][3:])]


@pytest.mark.parametrize("method, store_kind", [("spearman", "ragged"), ("spearman", "aligned"),
                                                 ("kendall", "aligned")])
def test_rank_methods(tmp_path, method, store_kind):
    folder = tmp_path / "daily"
    pairscan.sample(folder, tickers=8, days=4, bars_per_day=30, ragged=store_kind == "ragged", seed=7)
    pairscan.convert(folder, executor="serial")
    series = oracle_series(folder)
    named = sorted(series)[2:4]
    result = correlate(folder, k=2, method=method, executor="threads", partners_of=named[::-1])
    assert result.engine == ("blocked" if (method, store_kind) == ("spearman", "aligned") else "naive")
    want = expected_partners(series, named, 2, result.min_periods, method=method)
    assert_partners(result.top, want)


def test_the_reducer_keeps_k_per_column_in_any_merge_order():
    rng = np.random.default_rng(0)
    corr = rng.uniform(-1, 1, (6, 6))
    corr = (corr + corr.T) / 2
    n = np.full((6, 6), 50)
    reducer = BestPartners(2)
    whole = reducer.block(Block(corr.copy(), n, 0, 0, True))
    parts = [reducer.block(Block(corr[i0:i0 + 3, j0:j0 + 3].copy(), n[:3, :3], i0, j0, i0 == j0))
             for i0, j0 in ((0, 0), (0, 3), (3, 3))]
    for merged in (reducer.merge(*parts), reducer.merge(parts[2], reducer.merge(parts[1], parts[0]))):
        assert list(zip(merged.a, merged.b)) == list(zip(whole.a, whole.b))
        assert merged.ranked == whole.ranked == 15
    assert np.bincount(whole.a).tolist() == [2] * 6
    named = reducer.block(Block(corr[[4, 1]].copy(), n[:2], 0, 0, False, rows=np.array([4, 1])))
    assert named.ranked == 9  # 5 + 5 pairs, 1~4 once
    assert set(zip(named.a, named.b)) <= set(zip(whole.a, whole.b)) | {(4, 1), (1, 4)}
    empty = reducer.merge(Pairs.empty())
    assert len(empty.a) == 0


def test_command_line_text_json_and_csv(store, tmp_path, capsys):
    out = tmp_path / "partners.csv"
    assert main(["correlate", str(store), "--with", "hal,b", "--top", "2", "--executor", "serial",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "partners of b:" in text and "partners of hal:" in text
    assert text.index("partners of b:") < text.index("partners of hal:")
    assert "ranked" in text and "of 21 pairs" in text  # 2 x 11 - 1: the pairs that involve b or hal
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["a", "b", "rank", "corr", "n", "p", "ci_low", "ci_high"]
    assert [(r["a"], r["rank"]) for r in rows] == [("b", "1"), ("b", "2"), ("hal", "1"), ("hal", "2")]

    assert main(["correlate", str(store), "--with", "hal,b", "--top", "2", "--executor", "serial", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert "top" not in got and got["with"] == ["b", "hal"] and list(got["partners"]) == ["b", "hal"]
    for ticker, pairs in got["partners"].items():
        assert len(pairs) == 2 and all(p["a"] == ticker for p in pairs)
        assert set(pairs[0]) == {"a", "b", "corr", "n", "p", "ci_low", "ci_high"}
    assert [(r["b"], float(r["corr"])) for r in rows[:2]] == [(p["b"], p["corr"]) for p in got["partners"]["b"]]


@pytest.mark.parametrize("args, message", [
    (["--with", "HAL"], "--with: no ticker 'HAL' in the store; did you mean 'hal'?"),
    (["--with", "zz*"], "--with: the pattern 'zz*' matches no ticker in the store"),
    (["--with", ","], "--with names no ticker"),
    (["--with", "hal", "--matrix", "m.csv"], "--with and --matrix answer different questions"),
])
def test_bad_lists_exit_2_in_one_line(store, tmp_path, capsys, args, message):
    before = sorted(p.name for p in tmp_path.iterdir())
    args = [a if a != "m.csv" else str(tmp_path / a) for a in args]
    assert main(["correlate", str(store), "--executor", "serial", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and message in captured.err
    assert "Traceback" not in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_the_api_names_its_own_keyword(store):
    with pytest.raises(pairscan.PairscanError, match="^tickers: no ticker 'nope' in the store"):
        pairscan.partners(store, ["nope"], executor="serial")


def test_run_with_shows_the_partners_and_plots_the_first_ones_best(store, tmp_path, capsys):
    work = tmp_path / "work"
    assert main(["run", str(store), "--workdir", str(work), "--with", "hal,b", "--top", "2",
                 "--executor", "serial", "--report", str(work / "report.html"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    want = pairscan.partners(store, ["hal", "b"], k=2, executor="serial")
    assert out["with"] == ["b", "hal"] and len(out["top"]) == 2
    assert [(p["a"], p["b"], p["n"]) for t in out["with"] for p in out["partners"][t]] == list(
        zip(want.a, want.b, want.n))
    assert out["plots"]["partners"] == str(work / "partners.png")
    assert (work / "partners.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (work / "report.html").read_text()
    assert page.count("best partners of") == 2 and f"{want['b'][0]}</td>" in page

    assert main(["run", str(store), "--workdir", str(work), "--with", "Hal", "--executor", "serial"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'hal'?" in err


# -- the named columns' own product (kernel.correlate_named) -------------------------------------

@pytest.mark.parametrize("executor, memory_limit", [
    ("threads", "1GB"), ("processes", "1GB"),  # the panel in this process; in a file the workers map
    ("threads", "10kB"), ("processes", "10kB"),  # streamed: the tasks read their blocks from the store
])
def test_a_period_and_a_subset_on_every_placement(store, executor, memory_limit):
    # afl delists inside the period; the subset keeps a*, b and h* but hpq.
    question = dict(on="returns", start="2005-06-01", end="2005-12-31", tickers="a*,b,h*", exclude="hpq")
    chosen = ["aet", "afl", "aig", "al", "amgn", "b", "hal", "hp"]  # avy delisted before the period
    series = oracle_series(store, on="returns", start="2005-06-01", end="2005-12-31", tickers=chosen)
    assert sorted(series) == chosen
    result = correlate(store, k=4, executor=executor, memory_limit=memory_limit, partners_of=["hal", "afl"],
                       **question)
    assert result.streamed == (memory_limit == "10kB") and result.series == len(chosen)
    assert_partners(result.top, expected_partners(series, ["afl", "hal"], 4, result.min_periods))
    weekly = correlate(store, k=3, executor=executor, memory_limit=memory_limit, partners_of=["b", "aig"],
                       resample="W", min_periods=10, tickers="a*,b,h*")
    series = oracle_series(store, resample="W", tickers=chosen + ["avy", "hpq"])
    assert_partners(weekly.top, expected_partners(series, ["aig", "b"], 3, 10))


def edge_panel(rows: int = 240, seed: int = 4) -> pd.DataFrame:
    """Ragged columns with what a product can get wrong: an exactly linear copy, prices far
    from zero, a constant series, a halt inside a moving history, infinities, magnitudes
    near both float64 limits, a late listing, a pair of two points."""
    rng = np.random.default_rng(seed)
    walk = lambda scale=1.0: scale * rng.standard_normal(rows).cumsum()  # noqa: E731
    base = 100 + walk()
    halt = 40 + walk()
    halt[150:190] = halt[149]
    cols = {
        "base": base, "copy": 3 * base - 7, "far": 1e8 + walk(1e-3) + base * 1e-4, "flat": np.full(rows, 5.0),
        "halt": halt, "inf": 20 + walk(), "huge": (base + walk()) * 1e300, "tiny": (50 + walk()) * 1e-300,
        "late": np.r_[np.full(rows - 40, np.nan), 10 + walk()[:40]], "two": np.full(rows, np.nan),
        "noise": rng.standard_normal(rows),
    }
    cols["inf"][[5, 77, 78]] = [np.inf, -np.inf, np.inf]
    cols["two"][[10, 200]] = base[[200, 10]]  # -1 with base: no tie with copy's +1 (one rounding apart)
    frame = pd.DataFrame(cols, index=pd.date_range("2020-01-01", periods=rows, name="timestamp"))
    holes = rng.random(frame.shape) < 0.08
    holes[:, list(frame.columns).index("two")] = False
    return frame.mask(holes)


def test_named_columns_on_edge_series_equal_pandas_and_the_full_matrix():
    frame = edge_panel()
    # pandas squares the values: the huge and tiny columns are compared scaled (correlation is scale-invariant).
    scaled = frame.replace([np.inf, -np.inf], np.nan).assign(huge=frame["huge"] / 1e300, tiny=frame["tiny"] * 1e300)
    series = {t: scaled[t] for t in scaled}
    matrix = pairscan.correlation_matrix(frame, min_periods=2, executor="serial")
    named = ["base", "far", "flat", "halt", "huge", "late", "tiny", "two"]
    for executor in ("serial", "threads"):
        got = pairscan.partners(frame, named, k=len(frame.columns), min_periods=2, executor=executor)
        assert_partners(got, expected_partners(series, named, len(frame.columns), 2))
        # The same values as the whole matrix (the kernel's products of every pair).
        np.testing.assert_allclose(got["corr"], [matrix.loc[a, b] for a, b in zip(got.a, got.b)], rtol=0, atol=1e-12)
    assert not (got["a"] == "flat").any() and not (got["b"] == "flat").any()  # a constant has no correlation
    assert got.loc[got.a == "base", "b"].iloc[0] == "copy" and got["corr"].iloc[0] >= 1 - 1e-15


def test_the_named_product_is_the_block_product_on_random_gaps():
    from pairscan.engines.blocked.kernel import correlate_blocks, correlate_named

    rng = np.random.default_rng(8)
    for rows, cols, gap in ((50, 40, 0.0), (300, 70, 0.3), (120, 33, 0.9)):
        values = np.asfortranarray(rng.standard_normal((rows, cols)).cumsum(axis=0) + 30)
        values[rng.random(values.shape) < gap] = np.nan
        values[: rows // 2, 3] = np.nan  # a late listing
        values[:, 5] = 7.0  # a constant
        for named in ([0], [3, 5], [1, 2, 3, 4]):
            mine = np.asfortranarray(values[:, named])
            corr, n = correlate_named(mine, values, 3)
            want, want_n = correlate_blocks(mine, values, "pearson", 3)
            assert np.array_equal(n, want_n)
            assert np.array_equal(np.isnan(corr), np.isnan(want))
            np.testing.assert_allclose(corr, want, rtol=0, atol=1e-12)
