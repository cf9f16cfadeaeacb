"""The built-in sample's two shapes, as stored by convert."""

from __future__ import annotations

import numpy as np
import pandas as pd

import pairscan
from pairscan.sample import sample_frames


def test_daily_universe_has_listings_delistings_and_short_histories():
    frames = sample_frames(tickers=200, days=2520, daily=True, seed=3)
    days = pd.bdate_range("2005-01-03", periods=2520)
    firsts = pd.Series({t: f.index[0] for t, f in frames.items()})
    lasts = pd.Series({t: f.index[-1] for t, f in frames.items()})
    lengths = pd.Series({t: len(f) for t, f in frames.items()})
    for frame in frames.values():
        assert (frame.index == frame.index.normalize()).all()  # one bar a day, at midnight
        assert frame.index.isin(days).all() and frame.index.is_unique and frame.index.is_monotonic_increasing
    assert (firsts > days[0]).mean() > 0.2  # late listings
    assert (lasts < days[-1]).mean() > 0.1  # delistings
    assert (lengths < 10).any()  # a few histories of a handful of days
    assert lengths.median() > 1000


def test_daily_sample_round_trips_through_convert(tmp_path):
    folder = pairscan.sample(tmp_path / "src", tickers=5, days=300, daily=True, seed=1)
    assert (folder / "aet.json").read_text().startswith('{"timestamp":"2005-01-03"')
    pairscan.convert(folder, to=tmp_path / "store", executor="serial")
    for ticker, frame in sample_frames(tickers=5, days=300, daily=True, seed=1).items():
        stored = pd.read_hdf(tmp_path / "store" / f"{ticker}.h5", "/data")
        np.testing.assert_array_equal(stored.index.values, frame.index.values)
        np.testing.assert_allclose(stored["close"].to_numpy(), frame["close"].to_numpy(), rtol=1e-10)
