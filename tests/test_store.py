"""Stored frames round-trip: what convert writes is what the JSON said, in the store format."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import pairscan
from pairscan.sample import sample_frames
from pairscan.store import read_column, read_manifest


@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
def test_convert_round_trips_the_sample(tmp_path, fmt):
    folder = pairscan.sample(tmp_path / "daily-stock", tickers=3, days=2, bars_per_day=20, ragged=True)
    summary = pairscan.convert(folder, to=tmp_path / "store", format=fmt, executor="serial")
    frames = sample_frames(tickers=3, days=2, bars_per_day=20, ragged=True)
    suffix = ".h5" if fmt == "hdf5" else ".parquet"
    assert summary["converted"] == 3 and summary["rows"] == sum(len(f) for f in frames.values())
    for ticker, original in frames.items():
        path = tmp_path / "store" / f"{ticker}{suffix}"
        stored = pd.read_hdf(path, "/data") if fmt == "hdf5" else pd.read_parquet(path)
        assert stored.index.name == "timestamp"
        assert isinstance(stored.index, pd.DatetimeIndex)
        assert stored.index.is_monotonic_increasing and stored.index.is_unique
        for column in ("open", "high", "low", "close"):
            assert stored[column].dtype == np.float64
        assert stored["volume"].dtype == np.int64
        np.testing.assert_array_equal(stored.index.values, original.index.values)
        pd.testing.assert_frame_equal(stored, original, check_freq=False, check_index_type=False,
                                      check_exact=False, rtol=0, atol=5e-11)
        # The fast column reader gives exactly what pandas reads.
        column = read_column(path, "close")
        np.testing.assert_array_equal(column.to_numpy(), stored["close"].to_numpy())
        np.testing.assert_array_equal(column.index.values, stored.index.values.astype("datetime64[ns]"))


def test_manifest_records_each_ticker_and_a_rerun_skips_them(tmp_path):
    folder = pairscan.sample(tmp_path / "d", tickers=3, days=1, bars_per_day=10)
    first = pairscan.convert(folder, executor="serial")
    assert (first["converted"], first["up_to_date"]) == (3, 0)
    manifest = read_manifest(folder)
    assert manifest["format"] == "hdf5"
    entry = manifest["tickers"]["aet"]
    assert entry["source"] == "aet.json" and entry["rows"] == 10 and entry["file"] == "aet.h5"
    assert entry["size"] == (folder / "aet.json").stat().st_size
    again = pairscan.convert(folder, executor="serial")
    assert (again["converted"], again["up_to_date"]) == (0, 3)
    # A changed source is converted again; the others stay up to date.
    lines = (folder / "afl.json").read_text().splitlines()
    (folder / "afl.json").write_text("\n".join(lines[:5]) + "\n")
    third = pairscan.convert(folder, executor="serial")
    assert (third["converted"], third["up_to_date"]) == (1, 2)
    assert len(pd.read_hdf(folder / "afl.h5", "/data")) == 5
    # --force converts everything.
    assert pairscan.convert(folder, executor="serial", force=True)["converted"] == 3
    # The manifest is a dotfile, never taken for a ticker.
    assert json.loads((folder / ".pairscan-manifest.json").read_text())["version"] == 2


def test_threads_convert_hdf5_without_crashing(tmp_path):
    folder = pairscan.sample(tmp_path / "d", tickers=40, days=1, bars_per_day=50, ragged=True)
    summary = pairscan.convert(folder, executor="threads", workers=8)
    assert summary["converted"] == 40
    serial = pairscan.convert(folder, to=tmp_path / "serial", executor="serial")
    for path in sorted(folder.glob("*.h5")):
        pd.testing.assert_frame_equal(pd.read_hdf(path, "/data"), pd.read_hdf(tmp_path / "serial" / path.name, "/data"))
    assert serial["rows"] == summary["rows"]


@pytest.mark.timeout(120)
def test_a_forked_pool_converts_after_this_process_used_polars(tmp_path):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    folder = pairscan.sample(tmp_path / "d", tickers=4, days=2, bars_per_day=30, ragged=True)
    pairscan.convert(folder, to=tmp_path / "serial", executor="serial")  # polars' pool now runs here
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        forked = pairscan.convert(folder, to=tmp_path / "forked", executor=pool)
    own = pairscan.convert(folder, to=tmp_path / "own", executor="processes")
    assert forked["converted"] == own["converted"] == 4
    for path in sorted((tmp_path / "serial").glob("*.h5")):
        expected = pd.read_hdf(path, "/data")
        pd.testing.assert_frame_equal(pd.read_hdf(tmp_path / "forked" / path.name, "/data"), expected)
        pd.testing.assert_frame_equal(pd.read_hdf(tmp_path / "own" / path.name, "/data"), expected)


def test_columns_in_another_order_beside_text_are_stored_as_read(tmp_path):
    # The parsed frame's float block is a reordered view of the file's columns: it must be
    # stored by value, not by its memory layout.
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "x.json").write_text('{"timestamp": "2015-01-02", "close": 1.0, "open": 0.0, "note": ""}\n')
    (folder / "y.json").write_text('{"timestamp": "2015-01-02", "close": 1.0, "open": 0.0, "note": ""}\n'
                                   '{"timestamp": "2015-01-05", "close": 3.0, "open": 2.0, "note": "y"}\n')
    pairscan.convert(folder, executor="serial")
    one, two = (pd.read_hdf(folder / f"{t}.h5", "/data") for t in "xy")
    assert (one["close"].tolist(), one["open"].tolist()) == ([1.0], [0.0])
    assert (two["close"].tolist(), two["open"].tolist()) == ([1.0, 3.0], [0.0, 2.0])
