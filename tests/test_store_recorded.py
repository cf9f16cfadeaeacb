"""Reading a stored HDF5 file's arrays where the manifest recorded them, without HDF5.

Convert records where each file's index and blocks of numbers lie; a load reads them
straight from the file while it is the file recorded (a regular file of that size and
mtime) and every offset, length and type checks out. It must give exactly what the
HDF5 reader gives, and anything that disagrees must go back to that reader.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

import pairscan
from pairscan.panel import load_panel
from pairscan.selection import Cut
from pairscan.store import (MANIFEST, read_column_arrays, read_column_period, read_manifest, recorded_layouts,
                            store_files, stored_layout, write_frame)
from pairscan.store.formats import hdf5

COLUMNS = ["open", "close", "volume"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("recorded")
    pairscan.sample(root / "store", tickers=5, days=400, daily=True, seed=3)
    pairscan.convert(root / "store", executor="serial", quiet=True)
    return root / "store"


@pytest.fixture()
def no_hdf5(monkeypatch):
    """Any file opened through HDF5 counted."""
    opened = []
    real = hdf5._open

    def spy(path):
        opened.append(path)
        return real(path)

    monkeypatch.setattr(hdf5, "_open", spy)
    return opened


def _same(a, b) -> None:
    assert a[0].dtype == b[0].dtype == np.dtype("datetime64[ns]") and np.array_equal(a[0], b[0])
    assert a[1].dtype == b[1].dtype == np.float64 and np.array_equal(a[1], b[1], equal_nan=True)


def test_convert_records_every_file(store):
    files = store_files(store)
    records = recorded_layouts(read_manifest(store), files)
    assert sorted(records) == sorted(str(p) for p in files.values()) and len(records) == 5
    entry = read_manifest(store)["tickers"][next(iter(files))]
    assert entry["layout"]["index"][1] == entry["rows"]
    assert [name for block in entry["layout"]["blocks"] for name in block[3]] == \
        ["open", "high", "low", "close", "volume"]


def test_the_recorded_arrays_are_the_hdf5_readers(store, no_hdf5):
    records = recorded_layouts(read_manifest(store), store_files(store))
    expected = {(p, c): read_column_arrays(p, c) for p in records for c in COLUMNS}
    no_hdf5.clear()
    for path, record in records.items():
        for column in COLUMNS:
            _same(read_column_arrays(path, column, record), expected[path, column])
            index = expected[path, column][0]
            first, last = index[len(index) // 5], index[len(index) // 2]
            for bounds in ((first, last), (None, last), (first, None), (index[-1] + 1, None)):
                _same(read_column_period(path, column, *bounds, record=record),
                      read_column_period(path, column, *bounds))
    assert len(no_hdf5) == len(records) * len(COLUMNS) * 4  # the reads without a record alone


@pytest.mark.parametrize("on,cut", [("prices", None), ("returns", None),
                                    ("returns", Cut("2001-03-01", "2001-09-30")),
                                    ("prices", Cut(start="2001-02-10", resample="W"))])
def test_a_load_is_the_one_without_records(store, tmp_path, on, cut):
    bare = tmp_path / "bare"
    shutil.copytree(store, bare)  # copy2: sizes and mtimes kept, so only the records differ
    manifest = json.loads((bare / MANIFEST).read_text())
    for entry in manifest["tickers"].values():
        del entry["layout"]
    (bare / MANIFEST).write_text(json.dumps(manifest))
    assert recorded_layouts(read_manifest(bare), store_files(bare)) == {}
    assert sorted(read_manifest(bare)["tickers"]) == sorted(read_manifest(store)["tickers"])  # still trusted
    for executor in ("serial", "processes"):
        got = load_panel(store, "close", on, executor=executor, workers=2, quiet=True, cut=cut)
        want = load_panel(bare, "close", on, executor="serial", quiet=True, cut=cut)
        pd.testing.assert_frame_equal(got, want)


def test_a_guess_that_misses_reads_the_left_out_by_their_records(store, monkeypatch, no_hdf5):
    files = store_files(store)
    indexes = {t: read_column_arrays(p, "close")[0] for t, p in files.items()}
    largest = max(files, key=lambda t: files[t].stat().st_size)
    assert len(np.union1d(indexes[largest], np.concatenate(list(indexes.values())))) > len(indexes[largest])
    want = load_panel(store, "close", "returns", executor="serial", quiet=True)
    monkeypatch.setattr(pairscan.panel, "GUESS_FILES", 1)  # the guess: the largest file's timestamps alone
    no_hdf5.clear()
    got = load_panel(store, "close", "returns", executor="serial", quiet=True)
    pd.testing.assert_frame_equal(got, want)
    assert no_hdf5 == []


def _one(tmp_path):
    """A file of float64, float32, int64 and boolean columns, and its record."""
    index = pd.DatetimeIndex(pd.date_range("2003-01-01", periods=50, freq="D").values, name="timestamp")
    frame = pd.DataFrame({"close": np.linspace(1, 2, 50), "small": np.arange(50, dtype=np.float32) / 3,
                          "volume": np.arange(50, dtype=np.int64) * 7, "halted": np.arange(50) % 3 == 0},
                         index=index)
    path = tmp_path / "abc.h5"
    write_frame(frame, path)
    st = os.lstat(path)
    return path, (st.st_size, st.st_mtime_ns, stored_layout(path))


def test_float32_and_int64_blocks_are_read_and_booleans_are_left_to_hdf5(tmp_path, no_hdf5):
    path, record = _one(tmp_path)
    kinds = sorted(block[2] for block in record[2]["blocks"])
    assert kinds == ["<f4", "<f8", "<i8"]  # the boolean block has no record
    for column in ("close", "small", "volume", "halted"):
        want = read_column_arrays(path, column)
        no_hdf5.clear()
        _same(read_column_arrays(path, column, record), want)
        assert len(no_hdf5) == (column == "halted")


def _changed(record, **change):
    size, mtime, where = record
    where = json.loads(json.dumps(where))
    for block in where["blocks"]:
        block[:3] = [change.get("block_at", block[0]), block[1], change.get("dtype", block[2])]
    where["index"][0] = change.get("index_at", where["index"][0])
    where["index"][2] = change.get("kind", where["index"][2])
    return change.get("size", size), change.get("mtime", mtime), where


@pytest.mark.parametrize("where", [{"index": [[0], 5, "datetime64[ns]"], "blocks": [[0, 1, "<f8", ["close"]]]},
                                   {"index": [0, 5, ["datetime64[ns]"]], "blocks": [[0, 1, "<f8", ["close"]]]},
                                   {"index": [0, 5, "datetime64[ns]"], "blocks": [[0, 1, ["<f8"], ["close"]]]},
                                   {"index": [0, 5, "datetime64[ns]"], "blocks": [[0, True, "<f8", ["close"]]]},
                                   {"index": [0, 5, "datetime64[ns]"], "blocks": [[0, 1, "<f8", "close"]]}])
def test_a_record_of_the_wrong_shape_is_not_used(tmp_path, where):
    path, record = _one(tmp_path)
    assert hdf5.read_recorded(path, "close", (record[0], record[1], where)) is None


def test_a_fifo_in_place_of_the_file_is_not_waited_on(tmp_path):
    path, record = _one(tmp_path)
    path.unlink()
    os.mkfifo(path)
    assert hdf5.read_recorded(path, "close", record) is None


@pytest.mark.parametrize("change", ["size", "mtime", "index past the end", "block past the end", "dtype", "index kind",
                                    "not a layout", "link"])
def test_a_record_that_disagrees_goes_back_to_hdf5(tmp_path, no_hdf5, change):
    path, record = _one(tmp_path)
    want = read_column_arrays(path, "close")
    size = record[0]
    if change == "size":
        with open(path, "ab") as f:
            f.write(b"\0" * 8)  # the file grew after convert
    elif change == "mtime":
        os.utime(path, ns=(record[1], record[1] + 1))
    elif change == "index past the end":
        record = _changed(record, index_at=size - 8)
    elif change == "block past the end":
        record = _changed(record, block_at=size - 16)
    elif change == "dtype":
        record = _changed(record, dtype="|O")
    elif change == "index kind":
        record = _changed(record, kind="int64")
    elif change == "not a layout":
        record = (record[0], record[1], {"index": "0", "blocks": [[0, 1]]})
    else:
        target = tmp_path / "elsewhere.h5"
        os.replace(path, target)
        os.symlink(target, path)  # a link in place of the file: never read through by the record
    assert hdf5.read_recorded(path, "close", record) is None
    no_hdf5.clear()
    got = read_column_arrays(path, "close", record)
    assert len(no_hdf5) == 1
    if change != "size":
        _same(got, want)


def test_a_rerun_records_the_layouts_of_a_store_converted_without_them(store, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(store, bare)
    manifest = json.loads((bare / MANIFEST).read_text())
    for entry in manifest["tickers"].values():
        del entry["layout"]
    (bare / MANIFEST).write_text(json.dumps(manifest))
    before = {p.name: os.lstat(p).st_mtime_ns for p in store_files(bare).values()}
    pairscan.convert(bare, executor="serial", quiet=True)
    assert {p.name: os.lstat(p).st_mtime_ns for p in store_files(bare).values()} == before  # nothing written again
    assert read_manifest(bare)["tickers"] == read_manifest(store)["tickers"]
