"""The blocked engine equals the naive engine and pandas on every pair, edge cases included."""

from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pairscan
from pairscan.cli import main
from pairscan.correlate import correlate, parse_size
from pairscan.engines.blocked import block_size_for, block_specs
from pairscan.sample import sample_frames

from conftest import assert_matches, oracle_series, own_returns


def pandas_pairs(frame: pd.DataFrame, method="pearson", min_periods=None, on="prices") -> dict:
    if on == "returns":
        frame = own_returns(frame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {(a, b): frame[a].corr(frame[b], method=method, min_periods=min_periods)
                for a, b in itertools.combinations(sorted(frame.columns), 2)}


def matrix_of(frame, tmp_path, **options) -> pd.DataFrame:
    if options.get("min_periods") is None:
        options["min_periods"] = 1  # the oracle's (pandas') default
    return correlate(frame, k=1, matrix=tmp_path / "m.parquet", executor=options.pop("executor", "serial"),
                     **options).matrix


def random_panel(rng, rows, cols, gap=0.1, level=100.0) -> pd.DataFrame:
    values = level * np.exp(np.cumsum(rng.standard_normal((rows, cols)) * 0.01, axis=0))
    values[rng.random((rows, cols)) < gap] = np.nan
    index = pd.date_range("2015-01-02 09:30", periods=rows, freq="2min", name="timestamp")
    return pd.DataFrame(values, index=index, columns=[f"t{i:03d}" for i in range(cols)])


@pytest.mark.parametrize("block_size", [1, 2, 3, 7, None])
@pytest.mark.parametrize("on", ["prices", "returns"])
def test_any_block_size_gives_the_oracles_answer(tmp_path, block_size, on):
    frame = random_panel(np.random.default_rng(1), 300, 10, gap=0.2)
    got = matrix_of(frame, tmp_path, engine="blocked", block_size=block_size, on=on)
    assert_matches(got, pandas_pairs(frame, on=on))


@pytest.mark.parametrize("executor", ["serial", "threads", "processes"])
def test_blocks_on_every_local_executor(tmp_path, ragged_store, executor):
    naive = correlate(ragged_store, k=1, engine="naive", executor="serial", matrix=tmp_path / "n.parquet").matrix
    blocked = correlate(ragged_store, k=1, engine="blocked", executor=executor, block_size=3,
                        matrix=tmp_path / "b.parquet").matrix
    expected = {(a, b): naive.loc[a, b] for a, b in itertools.combinations(naive.index, 2)}
    assert_matches(blocked, expected)


def test_prices_far_from_zero_stay_exact(tmp_path):
    # Centring first: raw sums of squares at 1e6 would lose every digit here.
    frame = random_panel(np.random.default_rng(2), 500, 6, gap=0.3, level=1e6)
    assert_matches(matrix_of(frame, tmp_path, engine="blocked", block_size=4), pandas_pairs(frame))


def test_constant_series_and_no_overlap_give_no_correlation(tmp_path):
    frame = random_panel(np.random.default_rng(3), 200, 5, gap=0.05)
    frame["t001"] = 100.0  # constant (exactly representable: pandas gives NaN too)
    frame.loc[frame.index[:100], "t002"] = np.nan
    frame.loc[frame.index[100:], "t003"] = np.nan  # t002 and t003 never overlap
    expected = pandas_pairs(frame)
    assert np.isnan(expected["t001", "t000"]) if ("t001", "t000") in expected else np.isnan(expected["t000", "t001"])
    assert np.isnan(expected["t002", "t003"])
    for block_size in (1, 2, None):
        got = matrix_of(frame, tmp_path, engine="blocked", block_size=block_size)
        assert_matches(got, expected)
    top = pairscan.top_pairs(frame, k=100, min_periods=1, executor="serial")
    assert "t001" not in set(top.a) | set(top.b)
    assert ("t002", "t003") not in set(zip(top.a, top.b))
    assert len(top) == 10 - 4 - 1  # 10 pairs, minus t001's four, minus t002~t003


@pytest.mark.parametrize("min_periods", [1, 2, 50, 150, 10_000])
def test_min_periods(tmp_path, min_periods):
    frame = random_panel(np.random.default_rng(4), 200, 6, gap=0.4)
    frame.loc[frame.index[:150], "t005"] = np.nan
    expected = pandas_pairs(frame, min_periods=min_periods)
    got = matrix_of(frame, tmp_path, engine="blocked", block_size=4, min_periods=min_periods)
    assert_matches(got, expected)


def test_abs_ranks_by_magnitude(tmp_path):
    rng = np.random.default_rng(5)
    base = rng.standard_normal(400)
    frame = pd.DataFrame({
        "a": base + 0.1 * rng.standard_normal(400),
        "b": -base + 0.05 * rng.standard_normal(400),  # strongest, but negative
        "c": base + 0.5 * rng.standard_normal(400),
        "d": rng.standard_normal(400),
    }, index=pd.date_range("2020-01-01", periods=400, freq="min"))
    plain = pairscan.top_pairs(frame, k=1, executor="serial")
    absolute = pairscan.top_pairs(frame, k=1, absolute=True, executor="serial")
    expected = pandas_pairs(frame)
    assert (plain.a[0], plain.b[0]) == max(expected, key=expected.get)
    assert (absolute.a[0], absolute.b[0]) == max(expected, key=lambda k: abs(expected[k])) == ("a", "b")
    assert absolute["corr"][0] == pytest.approx(expected["a", "b"], abs=1e-12) and absolute["corr"][0] < 0


def test_one_and_two_tickers(tmp_path):
    frame = random_panel(np.random.default_rng(6), 50, 2)
    top = pairscan.top_pairs(frame, k=5, engine="blocked", executor="serial")
    assert list(zip(top.a, top.b)) == [("t000", "t001")]
    assert top["corr"][0] == pytest.approx(frame.t000.corr(frame.t001), abs=1e-12)
    with pytest.raises(pairscan.PairscanError, match="at least two tickers"):
        pairscan.top_pairs(frame[["t000"]], executor="serial")


def test_spearman_is_blocked_and_exact_on_complete_histories(aligned_store, tmp_path):
    result = correlate(aligned_store, k=3, method="spearman", executor="serial", matrix=tmp_path / "m.parquet")
    assert result.engine == "blocked"
    naive = correlate(aligned_store, k=3, method="spearman", engine="naive", executor="serial",
                      matrix=tmp_path / "n.parquet")
    expected = {(a, b): naive.matrix.loc[a, b] for a, b in itertools.combinations(naive.matrix.index, 2)}
    assert_matches(result.matrix, expected)
    assert list(result.top.a) == list(naive.top.a) and list(result.top.b) == list(naive.top.b)


def test_spearman_on_ragged_histories_and_kendall_fall_back_to_naive(ragged_store, aligned_store):
    assert correlate(ragged_store, method="spearman", executor="serial").engine == "naive"
    assert correlate(aligned_store, method="kendall", executor="serial").engine == "naive"
    assert correlate(aligned_store, method="pearson", executor="serial").engine == "blocked"


def test_memory_limit_chooses_the_block_size(tmp_path, ragged_store):
    assert parse_size("200MB") == 200_000_000 and parse_size("1GiB") == 2**30 and parse_size("1.5kb") == 1500
    assert block_size_for(11_700, 2000, 200_000_000, concurrent=2) < 2000
    assert block_size_for(100, 5, 10**9) == 5
    assert block_size_for(10**6, 50, 1000) == 1  # never less than one column
    specs = block_specs(10, 3)
    assert len(specs) == 4 * 5 // 2 and specs[-1] == (9, 10, 9, 10)
    covered = {(i, j) for i0, i1, j0, j1 in specs for i in range(i0, i1) for j in range(j0, j1) if i < j}
    assert covered == set(itertools.combinations(range(10), 2))
    # A tiny limit (one-column blocks) still gives the same answer.
    small = correlate(ragged_store, k=5, memory_limit="20kB", executor="threads")
    large = correlate(ragged_store, k=5, memory_limit="1GB", executor="threads")
    pd.testing.assert_frame_equal(small.top, large.top, check_exact=False, atol=1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.integers(1, 60),
    cols=st.integers(2, 9),
    gap=st.floats(0.0, 0.9),
    block=st.integers(1, 10),
    seed=st.integers(0, 2**32 - 1),
    on=st.sampled_from(["prices", "returns"]),
    min_periods=st.sampled_from([None, 3, 20]),
    constant=st.booleans(),
)
def test_random_panels_with_random_gaps(tmp_path, rows, cols, gap, block, seed, on, min_periods, constant):
    rng = np.random.default_rng(seed)
    frame = random_panel(rng, rows, cols, gap=gap)
    if constant:
        frame.iloc[:, 0] = np.where(frame.iloc[:, 0].isna(), np.nan, 64.0)
    got = matrix_of(frame, tmp_path, engine="blocked", block_size=block, on=on, min_periods=min_periods)
    assert_matches(got, pandas_pairs(frame, min_periods=min_periods, on=on))


@pytest.mark.parametrize("on", ["prices", "returns"])
def test_listings_delistings_and_halts_give_the_oracles_answer(tmp_path, on):
    # Daily histories that start and end apart with a few halts: the mask products go
    # through lifetimes and holes, every pair (short overlaps too) as pandas has it.
    frames = sample_frames(tickers=24, days=700, daily=True, seed=3)
    frame = pd.DataFrame({t: f["close"] for t, f in frames.items()})
    for block_size in (5, None):
        got = matrix_of(frame, tmp_path, engine="blocked", block_size=block_size, on=on)
        assert_matches(got, pandas_pairs(frame, on=on))


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_a_panel_larger_than_the_memory_limit_is_streamed_from_the_store(tmp_path, executor):
    pairscan.sample(tmp_path / "src", tickers=12, days=400, daily=True, seed=5)
    pairscan.convert(tmp_path / "src", executor="serial")
    whole = correlate(tmp_path / "src", k=5, on="returns", executor=executor)
    streamed = correlate(tmp_path / "src", k=5, on="returns", executor=executor, memory_limit="30kB")
    assert not whole.streamed and streamed.streamed and streamed.to_dict()["streamed"] is True
    assert streamed.min_periods == whole.min_periods and streamed.pairs_ranked == whole.pairs_ranked
    pd.testing.assert_frame_equal(streamed.top, whole.top, check_exact=False, atol=1e-12)
    expected = pandas_pairs(pd.DataFrame(oracle_series(tmp_path / "src")), on="returns",
                            min_periods=whole.min_periods)
    best = max((v, k) for k, v in expected.items() if not np.isnan(v))
    assert (streamed.top["a"][0], streamed.top["b"][0]) == best[1]
    assert streamed.top["corr"][0] == pytest.approx(best[0], abs=1e-12)


def test_the_command_line_says_when_it_streamed(tmp_path, capsys):
    pairscan.sample(tmp_path / "src", tickers=6, days=200, daily=True, seed=2)
    pairscan.convert(tmp_path / "src", executor="serial")
    store = str(tmp_path / "src")
    assert main(["correlate", store, "--executor", "serial", "--quiet", "--memory-limit", "5kB"]) == 0
    assert "does not fit --memory-limit 5kB: blocks were read from the store" in capsys.readouterr().out
    assert main(["correlate", store, "--executor", "serial", "--quiet"]) == 0
    assert "blocks were read from the store" not in capsys.readouterr().out
    assert main(["correlate", store, "--executor", "serial", "--quiet", "--memory-limit", "5kB", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["streamed"] is True


def lifetime_mask(rng, rows, cols, holes=0.02) -> np.ndarray:
    """Presence masks as real histories have them: a lifetime each (some empty, some
    whole, some a single row), a few holes inside."""
    present = np.zeros((rows, cols), dtype=bool)
    for j in range(cols):
        kind = rng.integers(5)
        if kind == 0:
            continue  # no value at all
        start, stop = (0, rows) if kind == 1 else sorted(rng.integers(0, rows + 1, 2))
        if kind == 2:
            stop = min(rows, start + 1)
        present[start:stop, j] = True
    present &= rng.random((rows, cols)) >= holes
    return np.asfortranarray(present)


@pytest.mark.parametrize("seed", range(6))
def test_overlap_counts_from_lifetimes_and_holes_are_exact(seed):
    from pairscan.engines.blocked import Lifetimes

    rng = np.random.default_rng(seed)
    rows = int(rng.integers(1, 400))
    a, b = lifetime_mask(rng, rows, 17), lifetime_mask(rng, rows, 9, holes=0.0 if seed % 2 else 0.05)
    la, lb = Lifetimes.of(a), Lifetimes.of(b)
    assert la is not None and lb is not None
    expected = a.T.astype(np.int64) @ b.astype(np.int64)
    np.testing.assert_array_equal(la.overlaps(lb), expected)
    np.testing.assert_array_equal(la.overlaps(la), a.T.astype(np.int64) @ a.astype(np.int64))


@pytest.mark.parametrize("on", ["prices", "returns"])
def test_one_block_split_across_threads_gives_the_oracles_answer(tmp_path, on):
    # Twenty years of daily bars in one block: with two workers the block's rows are
    # split across two threads and the partial sums added.
    frames = sample_frames(tickers=14, days=5040, daily=True, seed=5)
    frame = pd.DataFrame({t: f["close"] for t, f in frames.items()})
    assert len(frame) >= 4096
    got = matrix_of(frame, tmp_path, engine="blocked", on=on, executor="threads", workers=2)
    assert_matches(got, pandas_pairs(frame, on=on))


@pytest.mark.parametrize("seed", range(4))
def test_rows_split_into_parts_add_up_to_the_whole(seed):
    # Parts of every kind (whole rows, lifetimes and holes, many gaps), a constant column,
    # extreme magnitudes and prices far from zero: the sums over the parts give the
    # oracle's answer, on the diagonal and off it.
    from pairscan.engines.blocked import correlate_split

    rng = np.random.default_rng(seed)
    rows = 600
    values = 1e6 + np.cumsum(rng.standard_normal((rows, 12)), axis=0)
    values[:, 1] *= 1e300
    values[:, 2] = 5e-310 * (1 + rng.random(rows))
    values[:, 3] = 42.0
    present = lifetime_mask(rng, rows, 12)
    present[:200] = True  # a part with every value
    present[rows // 2 :, 4] = rng.random(rows - rows // 2) < 0.5  # a column with many gaps
    values = np.asfortranarray(np.where(present, values, np.nan))
    frame = pd.DataFrame(values, columns=[f"t{i:02d}" for i in range(12)])
    # pandas overflows on 1e300 and underflows on 5e-310; scaling by a power of two is exact
    # and leaves every correlation as it is.
    frame["t01"], frame["t02"] = np.ldexp(frame["t01"], -1000), np.ldexp(frame["t02"], 1000)
    expected = pandas_pairs(frame, min_periods=1)
    for threads in (2, 3, 5):
        corr, n = correlate_split(values, None, 1, threads, split_rows=100)
        got = {(f"t{i:02d}", f"t{j:02d}"): corr[i, j] for i, j in itertools.combinations(range(12), 2)}
        for pair, want in expected.items():
            assert np.isnan(got[pair]) == np.isnan(want), pair
            if not np.isnan(want):
                assert abs(got[pair] - want) <= 1e-9, (pair, got[pair], want)
        corr, n = correlate_split(values[:, :5], values[:, 5:], 1, threads, split_rows=100)
        for i, j in itertools.product(range(5), range(5, 12)):
            want = expected[f"t{i:02d}", f"t{j:02d}"]
            assert np.isnan(corr[i, j - 5]) == np.isnan(want)
            if not np.isnan(want):
                assert abs(corr[i, j - 5] - want) <= 1e-9
            assert n[i, j - 5] == int((present[:, i] & present[:, j]).sum())
