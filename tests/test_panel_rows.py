"""Placing a ticker's series on the panel's index (:class:`pairscan.panel.Rows`).

Every ticker of a load is put on one index: a full history is copied, a run of the
index (listed late, delisted early) is a slice, and a history with gaps takes its rows
from a table of the index's grid (or by binary search where the index has no grid
worth a table). Each way must give what a plain dictionary from timestamp to row gives,
and leave a ticker out (its column all missing) exactly when it has a timestamp the
index lacks, however its timestamps are ordered or repeated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import pairscan
from pairscan.panel import Rows
from pairscan.store import write_frame

from conftest import frames_missing_days

DAY = np.timedelta64(1, "D")


def _reference(index: np.ndarray, idx: np.ndarray, col: np.ndarray):
    """The column on ``index`` by a dictionary; None when a timestamp is not in it."""
    row = {stamp: r for r, stamp in enumerate(index.tolist())}
    out = np.full(len(index), np.nan)
    for stamp, value in zip(idx.tolist(), col.tolist()):
        if stamp not in row:
            return None
        out[row[stamp]] = value
    return out


def _indexes():
    rng = np.random.default_rng(11)
    start = np.datetime64("2001-01-01", "ns")
    days = start + np.arange(400) * DAY
    weekdays = days[(days.astype("datetime64[D]").view(np.int64) + 3) % 7 < 5]  # a daily calendar: a grid of days
    minutes = start + np.sort(rng.choice(5000, 900, replace=False)) * np.timedelta64(1, "m")
    ticks = start + np.cumsum(rng.integers(1, 10**12, 300)).astype("timedelta64[ns]")  # no grid worth a table
    return {"weekdays": weekdays, "minutes": minutes, "ticks": ticks, "one": days[:1]}


def _histories(index: np.ndarray, rng):
    """Series a store holds, against ``index``: every kind a load meets."""
    n = len(index)
    off_grid = index + np.timedelta64(1, "h")
    gappy = np.sort(rng.choice(n, max(1, n - n // 10), replace=False))
    yield "full", index
    yield "empty", index[:0]
    yield "late listing", index[n // 3 :]
    yield "early delisting", index[: n // 2]
    yield "a run inside", index[n // 4 : n // 2 + 1]
    yield "halts", index[gappy]
    yield "halts after a listing", index[gappy[gappy > n // 5]]
    yield "one day", index[n // 2 : n // 2 + 1]
    yield "a day off the grid", np.sort(np.append(index[gappy[:-1]], off_grid[n // 2]))
    yield "all off the grid", off_grid
    yield "a day before the index", np.append(index[0] - 3 * DAY, index[: n // 2])
    yield "a day after the index", np.append(index[n // 2 :], index[-1] + 3 * DAY)
    yield "far before", np.append(np.datetime64("1700-01-01", "ns"), index[1:])
    yield "far after", np.append(index[:-1], np.datetime64("2260-01-01", "ns"))
    yield "unsorted", rng.permutation(index[gappy])
    yield "a day twice", np.sort(np.append(index[gappy], index[gappy[len(gappy) // 2]]))


@pytest.mark.parametrize("name", ["weekdays", "minutes", "ticks", "one"])
def test_every_history_is_placed_as_a_dictionary_places_it(name):
    index = _indexes()[name]
    rows = Rows(index)
    assert (rows.table is not None) == (name in ("weekdays", "minutes"))
    rng = np.random.default_rng(len(index))
    for kind, idx in _histories(index, rng):
        idx = np.asarray(idx, dtype="datetime64[ns]")
        col = rng.normal(size=len(idx))
        block = np.full((len(index), 3), 7.0, order="F")
        # A column of a block, the stored column strided as a block's is, as a load has them.
        strided = np.column_stack([col, col]).reshape(-1)[::2]
        placed = rows.place(block[:, 1], idx, strided)
        want = _reference(index, idx, col)
        assert placed == (want is not None), kind
        if want is None:
            assert np.isnan(block[:, 1]).all(), kind  # left out: all missing
        else:
            assert np.array_equal(block[:, 1], want, equal_nan=True), kind
        assert (block[:, [0, 2]] == 7.0).all(), kind  # nothing beside it written


def test_an_empty_index_takes_only_empty_histories():
    index = np.array([], dtype="datetime64[ns]")
    rows = Rows(index)
    out = np.empty(0)
    assert rows.place(out, index, np.empty(0))
    assert not rows.place(out, np.array(["2001-01-01"], dtype="datetime64[ns]"), np.ones(1))


@pytest.fixture(scope="module")
def missed_with_bad_prices(tmp_path_factory):
    """40 tickers whose 32 largest histories lack three days only the three shortest have
    (the load's first guess of the index misses them: a second pass moves the columns),
    with a zero price in a large history and in a short one: a non-finite return each
    side of it, in a column moved and in a column read again."""
    frames, shortest, _ = frames_missing_days(300)
    large = max(frames, key=lambda t: (len(frames[t]), t))
    for ticker in (large, shortest[0]):
        frames[ticker].iloc[len(frames[ticker]) // 3, frames[ticker].columns.get_loc("close")] = 0.0
    store = tmp_path_factory.mktemp("missed-bad")
    for ticker, frame in frames.items():
        write_frame(frame, store / f"{ticker}.h5")
    return store, frames


@pytest.mark.parametrize("executor", ["serial", "threads", "processes"])
@pytest.mark.parametrize("on", ["prices", "returns"])
def test_a_second_pass_counts_what_the_first_made_missing(missed_with_bad_prices, executor, on):
    store, frames = missed_with_bad_prices
    series = {t: f["close"] for t, f in frames.items()}
    with np.errstate(divide="ignore"):
        if on == "returns":
            series = {t: np.log(s).diff() for t, s in series.items()}
        want = pd.concat(series, axis=1, sort=True)[sorted(series)]
    bad = int(np.isinf(want.to_numpy()).sum())
    assert bad == (4 if on == "returns" else 0)
    panel = pairscan.load_panel(store, on=on, executor=executor, workers=2, quiet=True, as_frame=False)
    assert panel.nonfinite == bad
    want = want.replace([np.inf, -np.inf], np.nan)
    pd.testing.assert_frame_equal(panel.to_frame(), want, check_names=False, check_freq=False)
    present = want.notna().to_numpy()
    assert panel.observations().tolist() == present.sum(axis=0).tolist()
    per_row = present.sum(axis=1)
    assert panel.full_overlap() == bool(np.all((per_row == 0) | (per_row == want.shape[1])))
