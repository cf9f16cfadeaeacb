"""Both engines equal the pandas oracle on every pair (DESIGN.md, correlation semantics)."""

from __future__ import annotations

import pandas as pd
import pytest

import pairscan
from pairscan.correlate import correlate

from conftest import assert_matches, oracle_pairs, oracle_series


@pytest.mark.parametrize("on", ["prices", "returns"])
@pytest.mark.parametrize("method", ["pearson", "spearman", "kendall"])
def test_naive_engine_equals_pandas_on_every_pair(any_store, tmp_path, on, method):
    expected = oracle_pairs(oracle_series(any_store, on=on), method)
    result = correlate(any_store, k=5, on=on, method=method, engine="naive", executor="threads",
                       matrix=tmp_path / "m.parquet")
    assert result.engine == "naive"
    assert_matches(result.matrix, expected, tol=0.0 if method != "pearson" else 1e-12)


@pytest.mark.parametrize("on", ["prices", "returns"])
def test_blocked_engine_equals_pandas_on_every_pair(any_store, tmp_path, on):
    expected = oracle_pairs(oracle_series(any_store, on=on))
    result = correlate(any_store, k=5, on=on, engine="blocked", executor="serial", matrix=tmp_path / "m.csv")
    assert result.engine == "blocked"
    assert_matches(result.matrix, expected)
    written = pd.read_csv(tmp_path / "m.csv", index_col=0)
    assert_matches(written, expected)


def test_top_pairs_are_the_oracles_best(any_store):
    expected = oracle_pairs(oracle_series(any_store))
    ranked = sorted(((v, k) for k, v in expected.items() if v == v), reverse=True)[:5]
    top = pairscan.top_pairs(any_store, k=5)
    assert list(zip(top.a, top.b)) == [k for _, k in ranked]
    assert top["corr"].tolist() == pytest.approx([v for v, _ in ranked], abs=1e-9)
    assert top.attrs["pairs_considered"] == 28


def test_overlap_counts_are_the_common_timestamps(ragged_store):
    series = oracle_series(ragged_store)
    top = pairscan.top_pairs(ragged_store, k=28, engine="blocked")
    for a, b, n in zip(top.a, top.b, top.n):
        assert n == len(series[a].index.intersection(series[b].index))


def test_a_callers_own_process_pool_works(aligned_store):
    from concurrent.futures import ProcessPoolExecutor

    expected = pairscan.top_pairs(aligned_store, k=3, executor="serial")
    with ProcessPoolExecutor(2) as pool:
        for engine in ("naive", "blocked"):
            got = pairscan.top_pairs(aligned_store, k=3, executor=pool, engine=engine)
            assert got.attrs["executor"] == "processes"
            pd.testing.assert_frame_equal(got[["a", "b", "n"]], expected[["a", "b", "n"]])
            assert got["corr"].tolist() == pytest.approx(expected["corr"].tolist(), abs=1e-12)
        # The pool is the caller's: still usable afterwards.
        assert pool.submit(abs, -3).result() == 3


def test_a_panel_dataframe_is_accepted(aligned_store):
    panel = pairscan.load_panel(aligned_store)
    from_panel = pairscan.top_pairs(panel, k=4)
    from_store = pairscan.top_pairs(aligned_store, k=4)
    pd.testing.assert_frame_equal(from_panel, from_store, check_exact=False, atol=1e-12)
