"""Stored frames round-trip: what convert writes is what the JSON said, in the store format."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
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


def _pandas_frame(path) -> pd.DataFrame:
    """The stored frame of a JSON Lines file built by pandas alone (``json.loads`` per line, as
    the lesson did): sorted by time, the last of a duplicate time kept, prices float64, text object."""
    frame = pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("timestamp")), name="timestamp").as_unit("ns")
    frame = frame.iloc[np.argsort(frame.index.values, kind="stable")]
    frame = frame[~frame.index.duplicated(keep="last")].copy()
    for name in frame.columns:
        if name in ("open", "high", "low", "close"):
            frame[name] = frame[name].astype(np.float64)
        elif not pd.api.types.is_numeric_dtype(frame[name].dtype):
            frame[name] = frame[name].astype(object)
    return frame


def _with_extras(folder) -> None:
    """Give the sample's files extra keys: numbers (every file), whole-number prices (one
    file), text (one file), and one file unsorted with a time twice."""
    for number, path in enumerate(sorted(folder.glob("*.json"))):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        for i, record in enumerate(records):
            record["adj_close"] = round(record["close"] * 0.97, 6)
            record["trades"] = record["volume"] // 7 + i
            if number == 1:
                record["open"] = round(record["open"])
            if number == 2:
                record["note"] = f"n{i % 3}"
        if number == 3:
            records = records[::-1] + [{**records[0], "close": 1.5}]
        path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.mark.parametrize("extras", [False, True], ids=["plain", "extras"])
def test_stored_files_are_what_pandas_writes_of_the_frame(tmp_path, extras):
    # A ticker's usual file is carried from the parser to the store as arrays; what is
    # stored must be exactly what pandas' own writers (to_parquet, to_hdf) store of the
    # frame pandas builds from the JSON, read back by pandas, in both formats, and again
    # from a Parquet store as the source.
    from pairscan.readers import READERS
    from pairscan.readers.base import Columns

    source = pairscan.sample(tmp_path / "src", tickers=10, days=700, daily=True, seed=3)
    if extras:
        _with_extras(source)
    stores = {fmt: tmp_path / fmt for fmt in ("hdf5", "parquet")}
    for fmt, store in stores.items():
        pairscan.convert(source, to=store, format=fmt, executor="serial")
    again = tmp_path / "from-parquet"
    pairscan.convert(stores["parquet"], to=again, format="hdf5", executor="serial")
    arrays = 0
    for path in sorted(source.glob("*.json")):
        ticker = path.stem
        arrays += isinstance(READERS["jsonl"].read(path).data, Columns)
        want = _pandas_frame(path)
        theirs_parquet, theirs_hdf5 = tmp_path / "theirs.parquet", tmp_path / "theirs.h5"
        want.to_parquet(theirs_parquet)
        want.to_hdf(theirs_hdf5, key="data", format="fixed")
        ours = pd.read_parquet(stores["parquet"] / f"{ticker}.parquet")
        pd.testing.assert_frame_equal(ours, pd.read_parquet(theirs_parquet), check_exact=True)
        assert pq.read_schema(stores["parquet"] / f"{ticker}.parquet").metadata[b"pandas"] == \
            pq.read_schema(theirs_parquet).metadata[b"pandas"]
        for store in (stores["hdf5"], again):
            pd.testing.assert_frame_equal(pd.read_hdf(store / f"{ticker}.h5", "/data"),
                                          pd.read_hdf(theirs_hdf5, "/data"), check_exact=True)
        # And that is the frame pandas built (text comes back as pandas' own text type).
        pd.testing.assert_frame_equal(ours, want, check_exact=True, check_freq=False, check_dtype=False)
        numbers = [c for c in want if pd.api.types.is_numeric_dtype(want[c].dtype)]
        assert ours[numbers].dtypes.to_dict() == want[numbers].dtypes.to_dict()
    # Most files took the arrays' way (not the one with text, nor the unsorted one).
    assert arrays == (8 if extras else 10)
