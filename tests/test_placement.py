"""The placement plan (where the panel lives, decided once) and the blocked engine's reducer seam."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

import pairscan
from pairscan.engines.blocked import Block, EveryPair, TopPairs, correlate_blocked
from pairscan.executors import open_pool
from pairscan.placement import Plan, Where, load, plan_placement

from conftest import make_store, oracle_pairs, oracle_series


class Fits:
    """``fits()`` for plan_placement that says ``answer`` and counts how often it was asked."""

    def __init__(self, answer: bool):
        self.answer, self.asked = answer, 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.answer


POOLS = {  # shares_memory, shares_files, remote
    "threads": (True, False, False),
    "processes": (False, True, False),
    "dask": (False, False, True),
}


@pytest.mark.parametrize("given, pool, fits, where, asked", [
    (True, "threads", False, Where.MEMORY, 0),
    (True, "processes", False, Where.MEMORY, 0),
    (True, "dask", True, Where.CLUSTER, 0),
    (False, "threads", True, Where.MEMORY, 1),
    (False, "processes", True, Where.FILE, 1),
    (False, "threads", False, Where.STORE, 1),
    (False, "processes", False, Where.STORE, 1),
    (False, "dask", True, Where.CLUSTER, 0),
])
def test_the_plan_says_where_the_panel_lives(given, pool, fits, where, asked):
    shares_memory, shares_files, remote = POOLS[pool]
    check = Fits(fits)
    plan = plan_placement(given=given, shares_memory=shares_memory, shares_files=shares_files, remote=remote,
                          workers=3, memory_limit=10**6, fits=check)
    assert plan.where is where
    assert check.asked == asked  # the store's size is read only where it decides
    assert plan.loads == (not given and where in (Where.MEMORY, Where.FILE))
    assert plan.reads_store == (not given and where in (Where.STORE, Where.CLUSTER))
    assert plan.streamed == (where is Where.STORE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.where = Where.MEMORY


@pytest.mark.parametrize("executor, memory_limit, where", [
    ("serial", "1GB", Where.MEMORY),
    ("threads", "1GB", Where.MEMORY),
    ("processes", "1GB", Where.FILE),
    ("threads", "8KB", Where.STORE),
    ("processes", "8KB", Where.STORE),
])
def test_every_placement_gives_the_oracles_answer(tmp_path, executor, memory_limit, where):
    store = make_store(tmp_path, ragged=True, tickers=12)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    got = pairscan.correlate(store, k=66, on="returns", executor=executor, workers=2, memory_limit=memory_limit)
    assert got.streamed == (where is Where.STORE)
    want = oracle_pairs(oracle_series(store, on="returns"))
    assert got.pairs_ranked == sum(not np.isnan(v) for v in want.values())
    for row in got.top.itertuples():
        assert row.corr == pytest.approx(want[row.a, row.b], abs=1e-9)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing left behind


@dataclass(frozen=True)
class BestPartner:
    """A reducer for the test: each column's best partner (highest correlation), as
    ``{column: (corr, partner)}``, ties to the lower partner."""

    shrinks = True

    def block(self, block: Block) -> dict:
        best = {}
        corr = block.corr.copy()
        if block.same:
            corr[np.tril_indices(len(corr))] = np.nan  # each pair once, from its upper triangle
        for i, j in zip(*np.nonzero(~np.isnan(corr))):
            a, b, r = block.i0 + int(i), block.j0 + int(j), float(corr[i, j])
            for me, other in ((a, b), (b, a)):
                best[me] = min(best.get(me, (np.inf, 0)), (-r, other))
        return best

    def merge(self, *parts: dict) -> dict:
        merged: dict = {}
        for part in parts:
            for me, candidate in part.items():
                merged[me] = min(merged.get(me, (np.inf, 0)), candidate)
        return merged


@pytest.mark.parametrize("executor, block_size", [("serial", 3), ("threads", 5), ("processes", 4)])
def test_a_reducer_sees_every_block_and_merges_them(tmp_path, executor, block_size):
    store = make_store(tmp_path, ragged=True, tickers=11)
    want = oracle_pairs(oracle_series(store))
    with open_pool(executor, 2) as pool, contextlib.ExitStack() as stack:
        plan = plan_placement(given=False, shares_memory=pool.in_process, shares_files=not pool.in_process,
                              remote=False, workers=pool.workers, memory_limit=10**9, fits=lambda: True)
        layout = load(plan, store, column="close", on="prices", auto=False, pool=pool, stack=stack)
        best = correlate_blocked(plan, layout, pool, method="pearson", min_periods=None, reducer=BestPartner(),
                                 block_size=block_size)
        every = correlate_blocked(plan, layout, pool, method="pearson", min_periods=None, reducer=EveryPair(),
                                  block_size=block_size)
        top = correlate_blocked(plan, layout, pool, method="pearson", min_periods=None, reducer=TopPairs(5),
                                block_size=block_size)
    tickers = layout.tickers
    assert len(every.a) == len(tickers) * (len(tickers) - 1) // 2
    for me, ticker in enumerate(tickers):
        partners = {b if a == ticker else a: r for (a, b), r in want.items() if ticker in (a, b) and not np.isnan(r)}
        r, partner = best[me]
        assert -r == pytest.approx(max(partners.values()), abs=1e-9)
        assert partners[tickers[partner]] == pytest.approx(-r, abs=1e-9)
    ranked = sorted((r for r in want.values() if not np.isnan(r)), reverse=True)
    assert top.corr == pytest.approx(ranked[:5], abs=1e-9)
    assert top.ranked == len(ranked)


def test_a_frame_is_correlated_where_it_is_held():
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.normal(100, 1, (50, 6)), index=pd.date_range("2024-01-01", periods=50),
                         columns=[f"t{i}" for i in range(6)])
    got = pairscan.correlate(frame, k=15, executor="processes", workers=2)
    want = {(a, b): frame[a].corr(frame[b]) for a, b in itertools.combinations(frame.columns, 2)}
    assert not got.streamed
    for row in got.top.itertuples():
        assert row.corr == pytest.approx(want[row.a, row.b], abs=1e-12)


def test_the_plan_is_a_value():
    plan = Plan(Where.FILE, False, 4, False, 10**6)
    assert plan.concurrent == 4 and plan.loads and not plan.reads_store and not plan.tasks_fetch
    assert Plan(Where.CLUSTER, False, 4, False, 10**6).concurrent == 1
