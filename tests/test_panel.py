"""The panel: the store -> one aligned array of a column (prices or log returns), on
every local executor, against pandas reading each stored file and aligning them.

The load writes each ticker's column straight into the panel (the file a process
pool maps, or memory) on a guess of the union of timestamps; a store whose largest
histories lack a timestamp that a short one has takes a second pass, and must give
the same panel.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

import pairscan
from pairscan.sample import sample_frames
from pairscan.shm import PREFIX, folders
from pairscan.selection import auto_min_periods
from pairscan.store import read_frame, store_files, write_frame

from conftest import assert_matches, frames_missing_days, oracle_pairs

EXECUTORS = ["serial", "threads", "processes"]


@pytest.fixture(scope="module", params=["hdf5", "parquet"])
def daily_store(tmp_path_factory, request):
    """24 tickers of 700 daily bars: late listings, delistings, halts, a few tiny histories."""
    root = tmp_path_factory.mktemp("daily")
    pairscan.sample(root / "source", tickers=24, days=700, daily=True, seed=5)
    store = root / f"store-{request.param}"
    pairscan.convert(root / "source", to=store, format=request.param, executor="serial", quiet=True)
    return store


@pytest.fixture(scope="module")
def missed_store(tmp_path_factory):
    """A store whose 32 largest histories all lack three days that only the three
    shortest histories have: the first guess of the union misses them."""
    frames, shortest, days = frames_missing_days(500)
    store = tmp_path_factory.mktemp("missed")
    for ticker, frame in frames.items():
        write_frame(frame, store / f"{ticker}.h5")
    sizes = {p: p.stat().st_size for p in store.glob("*.h5")}
    largest = sorted(sizes, key=sizes.get, reverse=True)[:32]
    assert not {p.stem for p in largest} & set(shortest)
    return store, days


def oracle_panel(store, on: str, tickers=None) -> pd.DataFrame:
    """Each stored file read with pandas, outer-aligned on timestamp (DESIGN.md's oracle)."""
    series = {t: read_frame(p)["close"] for t, p in store_files(store).items() if tickers is None or t in tickers}
    if on == "returns":  # each ticker's log returns on its own timestamps, then aligned
        series = {t: np.log(s).diff() for t, s in series.items()}
    return pd.concat(series, axis=1, sort=True)[sorted(series)]


def assert_panel(panel: pairscan.panel.Panel, want: pd.DataFrame) -> None:
    got = panel.to_frame()
    pd.testing.assert_frame_equal(got, want, check_names=False, check_freq=False)
    present = want.notna().to_numpy()
    assert panel.observations().tolist() == present.sum(axis=0).tolist()
    per_row = present.sum(axis=1)
    assert panel.full_overlap() == bool(np.all((per_row == 0) | (per_row == want.shape[1])))


def panel_files() -> set[str]:
    return {name for folder in folders() for name in os.listdir(folder)
            if name.startswith(f"{PREFIX}{os.getpid()}-")}


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("on", ["prices", "returns"])
def test_the_panel_is_pandas_aligned_frames(daily_store, executor, on):
    want = oracle_panel(daily_store, on)
    panel = pairscan.load_panel(daily_store, on=on, executor=executor, workers=2, as_frame=False)
    assert_panel(panel, want)
    assert panel.nonfinite == 0
    assert panel_files() == set()  # a process pool's panel file is gone; the panel is still whole
    frame = pairscan.load_panel(daily_store, on=on, executor=executor, workers=2)
    pd.testing.assert_frame_equal(frame, want, check_names=False, check_freq=False)


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("on", ["prices", "returns"])
def test_timestamps_only_short_histories_have_are_in_the_panel(missed_store, executor, on):
    store, days = missed_store
    want = oracle_panel(store, on)
    assert set(days) <= set(want.index)
    panel = pairscan.load_panel(store, on=on, executor=executor, workers=2, as_frame=False)
    assert_panel(panel, want)
    assert panel_files() == set()


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_subset_of_tickers_and_bad_prices(tmp_path, executor):
    frames = dict(sample_frames(tickers=10, days=300, daily=True, seed=2))
    first = sorted(frames)[0]
    frames[first].iloc[5, frames[first].columns.get_loc("close")] = 0.0  # -inf, then +inf returns
    for ticker, frame in frames.items():
        write_frame(frame, tmp_path / f"{ticker}.h5")
    chosen = sorted(frames)[:4]
    with np.errstate(divide="ignore"):
        want = oracle_panel(tmp_path, "returns", chosen)
    bad = np.isinf(want.to_numpy()).sum()
    assert bad == 2
    panel = pairscan.load_panel(tmp_path, on="returns", tickers=chosen, executor=executor, workers=2, as_frame=False)
    assert panel.nonfinite == bad
    assert_panel(panel, want.replace([np.inf, -np.inf], np.nan))


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_correlate_on_a_store_the_guess_misses_is_the_oracles(missed_store, executor, tmp_path):
    store, _ = missed_store
    got = pairscan.correlate(store, on="returns", executor=executor, workers=2, matrix=tmp_path / "m.parquet")
    want = oracle_panel(store, "returns")
    assert got.min_periods == auto_min_periods(want.notna().sum().to_numpy())
    series = {t: want[t] for t in want}
    assert_matches(got.matrix, oracle_pairs(series, min_periods=got.min_periods))
    assert got.nonfinite_missing == 0
