"""Readers: every input format of DESIGN.md converts to the same store; times by the DESIGN rule; special files refused."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pairscan
from pairscan.errors import PairscanError
from pairscan.sample import sample_frames, write_jsonl
from pairscan.store import read_manifest, store_files

from conftest import run_cli


def process_cli(*args, timeout=120):
    """``python -m pairscan ARGS``: a process of its own, for what could hang one."""
    return subprocess.run([sys.executable, "-m", "pairscan", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


cli = run_cli  # the command line in this process: what it converts and says


@pytest.fixture(scope="module")
def universe() -> dict[str, pd.DataFrame]:
    return sample_frames(tickers=6, days=400, daily=True, seed=3)


def _dump(frame: pd.DataFrame) -> pd.DataFrame:
    """The free end-of-day dump's layout: Date,Open,High,Low,Close,Volume,OpenInt."""
    out = frame.reset_index()
    return pd.DataFrame({"Date": out["timestamp"].dt.strftime("%Y-%m-%d"), "Open": out["open"], "High": out["high"],
                         "Low": out["low"], "Close": out["close"], "Volume": out["volume"], "OpenInt": 0})


def write_formats(root: Path, frames: dict[str, pd.DataFrame]) -> dict[str, tuple[Path, str]]:
    """The universe in every format; name -> (SOURCE, the suffix its file names add to a ticker)."""
    out = {}
    for name in ("jsonl", "dump", "stooq", "yfinance", "parquet", "epoch"):
        (root / name).mkdir()
    for ticker, frame in frames.items():
        write_jsonl(frame, root / "jsonl" / f"{ticker}.json")
        _dump(frame).to_csv(root / "dump" / f"{ticker}.us.txt", index=False)
        stamps = frame.index
        pd.DataFrame({"<TICKER>": ticker.upper() + ".US", "<PER>": "D", "<DATE>": stamps.strftime("%Y%m%d"),
                      "<TIME>": "000000", "<OPEN>": frame["open"].values, "<HIGH>": frame["high"].values,
                      "<LOW>": frame["low"].values, "<CLOSE>": frame["close"].values,
                      "<VOL>": frame["volume"].values, "<OPENINT>": 0}).to_csv(root / "stooq" / f"{ticker}.txt",
                                                                               index=False)
        yf = frame.reset_index().rename(columns=str.title).rename(columns={"Timestamp": "Date"})
        yf.insert(5, "Adj Close", (frame["close"] * 0.98).values)
        yf.to_csv(root / "yfinance" / f"{ticker}.csv", index=False)
        frame.reset_index().to_parquet(root / "parquet" / f"{ticker}.parquet")
        epoch = frame.reset_index()
        epoch["timestamp"] = epoch["timestamp"].astype("int64") // 10**9
        epoch.to_json(root / "epoch" / f"{ticker}.jsonl", orient="records", lines=True, double_precision=15)
    with zipfile.ZipFile(root / "dump.zip", "w") as z:
        for path in sorted((root / "dump").iterdir()):
            z.write(path, f"dump/{path.name}")
    long = pd.concat([_dump(f).assign(Ticker=t) for t, f in frames.items()]).sample(frac=1, random_state=0)
    long.to_csv(root / "long.csv", index=False)
    long.rename(columns={"Ticker": "symbol"}).assign(Date=lambda d: pd.to_datetime(d["Date"])).to_parquet(
        root / "long.parquet")
    for name in ("jsonl", "stooq", "yfinance", "parquet", "epoch"):
        out[name] = (root / name, "")
    out.update(dump=(root / "dump", ".us"), zip=(root / "dump.zip", ".us"), long_csv=(root / "long.csv", ""),
               long_parquet=(root / "long.parquet", ""))
    return out


def test_one_universe_in_every_format_converts_to_the_same_store(tmp_path, universe):
    sources = write_formats(tmp_path, universe)
    for name, (source, suffix) in sources.items():
        store = tmp_path / f"store-{name}"
        done = cli("convert", source, "--to", store, "--executor", "serial")
        assert done.returncode == 0, (name, done.stderr)
        files = store_files(store)
        assert sorted(files) == sorted(t + suffix for t in universe), name
        for ticker, frame in universe.items():
            stored = pd.read_hdf(files[ticker + suffix], "/data")
            pd.testing.assert_series_equal(stored["close"], frame["close"], check_freq=False, obj=f"{name} {ticker}")
            assert stored.index.name == "timestamp"
    yf = pd.read_hdf(tmp_path / "store-yfinance" / "aet.h5", "/data")
    np.testing.assert_array_equal(yf["adj_close"].to_numpy(), (universe["aet"]["close"] * 0.98).to_numpy())
    # A ticker present twice, in two formats: bad input naming both files.
    (tmp_path / "jsonl" / "aet.csv").write_text(_dump(universe["aet"]).to_csv(index=False))
    done = cli("convert", tmp_path / "jsonl", "--to", tmp_path / "store-twice")
    assert done.returncode == 2
    assert done.stderr == f"pairscan: error: {tmp_path / 'jsonl'}: ticker 'aet' found twice: aet.csv and aet.json\n"


def test_two_members_of_one_archive_for_one_ticker(tmp_path, universe):
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as z:
        z.writestr("d/aet.csv", _dump(universe["aet"]).to_csv(index=False))
        z.writestr("d/aet.json", "")
    done = cli("convert", tmp_path / "two.zip", "--to", tmp_path / "s")
    assert done.returncode == 2 and "ticker 'aet' found twice: aet.csv and aet.json" in done.stderr


STAMP = pd.Timestamp("2015-01-02 14:30:00")
DAY = pd.Timestamp("2005-01-03")
# What a time is written as -> the instant it must be stored as.
TIME_KINDS = {
    "iso": ('"2015-01-02 14:30:00"', STAMP),
    "iso-t-offset": ('"2015-01-02T09:30:00-05:00"', STAMP),
    "iso-date": ('"2005-01-03"', DAY),
    "yyyymmdd": ("20050103", DAY),
    "yyyymmdd-text": ('"20050103"', DAY),
    "seconds": (str(STAMP.value // 10**9), STAMP),
    "seconds-9-digits": ("999999999", pd.Timestamp("2001-09-09 01:46:39")),
    "milliseconds": (str(STAMP.value // 10**6), STAMP),
    "microseconds": (str(STAMP.value // 10**3), STAMP),
    "nanoseconds": (str(STAMP.value), STAMP),
}


@pytest.mark.parametrize("kind", sorted(TIME_KINDS))
def test_every_time_kind_is_stored_as_the_instant_it_means(tmp_path, kind):
    written, want = TIME_KINDS[kind]
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "x.json").write_text(f'{{"timestamp": {written}, "close": 1.5}}\n')
    (folder / "y.csv").write_text(f"Date,Close\n{written.strip(chr(34))},1.5\n")
    pairscan.convert(folder, executor="serial")
    for ticker in ("x", "y"):
        stored = pd.read_hdf(store_files(folder)[ticker], "/data")
        assert list(stored.index) == [want], (ticker, kind)


@pytest.mark.parametrize("value", ["1420209", "14202090000", "14202090000000", "99999999999999999", "20051332"])
def test_a_time_of_no_known_kind_is_a_bad_line_naming_it(tmp_path, value):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "x.csv").write_text(f"Date,Close\n2015-01-02,1\n{value},2\n")
    done = cli("convert", folder)
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == (f'pairscan: error: {folder / "x.csv"}:3: unparseable timestamp "{value}" '
                                           "(expected ISO 8601 text, YYYYMMDD or epoch seconds/ms/us/ns, "
                                           "years 1677-2262)")


def test_stooq_date_and_time_are_combined(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "aapl.us.txt").write_text("<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>\n"
                                        "AAPL.US,5,20050103,153000,1,2,0.5,1.5,100,0\n"
                                        "AAPL.US,5,20050103,093500,1,2,0.5,1.25,100,0\n")
    pairscan.convert(folder, executor="serial")
    stored = pd.read_hdf(store_files(folder)["aapl.us"], "/data")
    assert list(stored.index) == [pd.Timestamp("2005-01-03 09:35"), pd.Timestamp("2005-01-03 15:30")]
    assert stored["close"].tolist() == [1.25, 1.5] and stored["volume"].dtype == np.int64


def test_csv_bad_lines_count_the_header_and_skip_keeps_the_rest(tmp_path, universe):
    folder = tmp_path / "d"
    folder.mkdir()
    lines = _dump(universe["aet"]).to_csv(index=False).splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[4], "n/a")  # line 4 of the file: its Close
    lines[6] = "2005-01-12,1,2"  # line 7: too few fields
    (folder / "aet.csv").write_text("\n".join(lines) + "\n")
    done = cli("convert", folder)
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == (f"pairscan: error: {folder / 'aet.csv'}:4: 'close' is not a number: "
                                           '"n/a" (and 1 more bad line)')
    summary = pairscan.convert(folder, on_bad_lines="skip", executor="serial")
    assert summary["bad_lines_skipped"] == 2
    want = universe["aet"].drop(universe["aet"].index[[2, 5]])
    pd.testing.assert_series_equal(pd.read_hdf(folder / "aet.h5", "/data")["close"], want["close"], check_freq=False)


def test_unknown_files_are_listed_in_one_warning_and_an_empty_folder_says_what_it_found(tmp_path):
    folder = pairscan.sample(tmp_path / "d", tickers=2, days=1, bars_per_day=3)
    (folder / "notes.md").write_text("mine")
    (folder / "prices.xlsx").write_bytes(b"PK")
    done = cli("convert", folder)
    assert done.returncode == 0
    assert done.stderr == f"pairscan: warning: {folder}: ignored 2 files of no known format (notes.md, prices.xlsx)\n"
    empty = tmp_path / "e"
    empty.mkdir()
    (empty / "prices.xlsx").write_bytes(b"PK")
    done = cli("convert", empty)
    assert done.returncode == 2
    assert done.stderr == (f"pairscan: error: {empty}: no source files in this folder (looked for .csv .json "
                           ".jsonl .ndjson .parquet .txt; found prices.xlsx)\n")


# --- special files and sizes (issue: a FIFO hung convert, /dev/zero read without bound) ---------

def test_a_fifo_in_the_source_folder_is_refused_without_hanging(tmp_path):
    folder = pairscan.sample(tmp_path / "d", tickers=2, days=1, bars_per_day=3)
    os.mkfifo(folder / "fifo.json")
    done = process_cli("convert", folder, timeout=60)
    assert done.returncode == 2
    assert done.stderr == (f"pairscan: error: {folder / 'fifo.json'}: not a regular file but a FIFO (named pipe); "
                           "only regular files are read\n")


def test_a_link_to_dev_zero_and_a_folder_named_like_a_source_are_refused(tmp_path):
    folder = pairscan.sample(tmp_path / "d", tickers=2, days=1, bars_per_day=3)
    os.symlink("/dev/zero", folder / "zero.json")
    done = process_cli("convert", folder, timeout=60)
    assert done.returncode == 2
    assert done.stderr == (f"pairscan: error: {folder / 'zero.json'}: not a regular file but a device; "
                           "only regular files are read\n")
    os.unlink(folder / "zero.json")
    (folder / "dir.csv").mkdir()
    done = cli("convert", folder)
    assert done.returncode == 2 and f"{folder / 'dir.csv'}: not a regular file but a folder" in done.stderr
    (folder / "dir.csv").rmdir()
    os.symlink("/dev/zero", tmp_path / "zero.csv")
    done = process_cli("convert", tmp_path / "zero.csv", timeout=60)
    assert done.returncode == 2 and "not a regular file but a device" in done.stderr


def test_max_bytes_bounds_every_source_file(tmp_path):
    folder = pairscan.sample(tmp_path / "d", tickers=2, days=2, bars_per_day=30)
    size = (folder / "aet.json").stat().st_size
    done = cli("convert", folder, "--max-bytes", str(size - 1))
    assert done.returncode == 2
    assert done.stderr == (f"pairscan: error: {folder / 'aet.json'}: larger than --max-bytes "
                           f"({size} > {size - 1} bytes)\n")
    size = max(p.stat().st_size for p in folder.iterdir())
    assert cli("convert", folder, "--max-bytes", str(size)).returncode == 0


# --- archives ----------------------------------------------------------------------------------

def test_a_zip_is_refused_like_a_tarball(tmp_path):
    def build(name, members):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as z:
            for member, data, mode in members:
                info = zipfile.ZipInfo(member)
                info.external_attr = mode << 16
                z.writestr(info, data)
        return path

    good = (b'{"timestamp": "2015-01-02", "close": 1}\n')
    cases = {
        "dotdot.zip": ([("d/aet.json", good, 0o100644), ("../evil.json", good, 0o100644)], "path contains '..'"),
        "absolute.zip": ([("d/aet.json", good, 0o100644), ("/tmp/evil.json", good, 0o100644)], "absolute path"),
        "link.zip": ([("d/aet.json", good, 0o100644), ("d/afl.json", b"../../outside", 0o120777)],
                     "symbolic link points outside the target"),
        "fifo.zip": ([("d/aet.json", good, 0o100644), ("d/p.json", b"", 0o010644)], "FIFO (named pipe)"),
    }
    for name, (members, why) in cases.items():
        archive = build(name, members)
        done = cli("convert", archive, "--to", tmp_path / "t")
        assert done.returncode == 2, name
        assert why in done.stderr and len(done.stderr.splitlines()) == 1, (name, done.stderr)
    assert not (tmp_path / "t").exists()
    zeros = build("bomb.zip", [("d/aet.json", bytes(4 * 2**20), 0o100644)])
    done = cli("extract", zeros, "--to", tmp_path / "t", "--max-bytes", "1MB")
    assert done.returncode == 2 and "unpacks to more than 1000000 bytes" in done.stderr


def test_a_flat_archive_unpacks_into_its_own_folder(tmp_path, universe):
    with zipfile.ZipFile(tmp_path / "prices.zip", "w") as z:
        for ticker in ("aet", "afl"):
            z.writestr(f"{ticker}.csv", _dump(universe[ticker]).to_csv(index=False))
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "pair.png").write_bytes(b"mine")
    assert pairscan.extract(tmp_path / "prices.zip", tmp_path / "work") == tmp_path / "work" / "prices"
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["pair.png", "prices"]


def test_a_text_file_named_tgz_is_one_line(tmp_path):
    (tmp_path / "x.tgz").write_text("just some text\n" * 10)
    done = cli("convert", tmp_path / "x.tgz")
    assert done.returncode == 2
    assert done.stderr == (f"pairscan: error: {tmp_path / 'x.tgz'}: not a readable tar archive "
                           "(not a tar file, compressed or not)\n")


# --- long tables -------------------------------------------------------------------------------

def test_a_long_table_reruns_up_to_date_and_reconverts_when_changed(tmp_path, universe):
    table = tmp_path / "bulk.csv"
    long = pd.concat([_dump(f).assign(Code=t) for t, f in universe.items()])
    long.to_csv(table, index=False)
    store = tmp_path / "store"
    done = cli("convert", table, "--to", store)
    assert done.returncode == 2 and "no ticker column (ticker, symbol or name)" in done.stderr
    first = pairscan.convert(table, to=store, ticker_column="code", executor="serial")
    assert (first["files"], first["converted"]) == (len(universe), len(universe))
    again = pairscan.convert(table, to=store, ticker_column="code", executor="serial")
    assert (again["converted"], again["up_to_date"]) == (0, len(universe))
    assert read_manifest(store)["tickers"]["aet"]["source"] == "bulk.csv"
    long.iloc[:-1].to_csv(table, index=False)  # the last row of the last ticker is gone
    last = list(universe)[-1]
    changed = pairscan.convert(table, to=store, ticker_column="code", executor="serial")
    assert changed["converted"] == len(universe)
    pd.testing.assert_series_equal(pd.read_hdf(store / f"{last}.h5", "/data")["close"],
                                   universe[last]["close"].iloc[:-1], check_freq=False)


def test_a_bad_line_of_a_long_table_is_named_by_its_line(tmp_path, universe):
    long = pd.concat([_dump(f).assign(ticker=t) for t, f in universe.items()])
    text = long.to_csv(index=False).splitlines()
    text[9] = text[9].replace(",0,", ",0,", 1).split(",")
    text[9][4] = "oops"
    text[9] = ",".join(text[9])
    (tmp_path / "bulk.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(PairscanError) as caught:
        pairscan.convert(tmp_path / "bulk.csv", to=tmp_path / "s", executor="threads", workers=2)
    assert (caught.value.file, caught.value.line) == (str(tmp_path / "bulk.csv"), 10)
    assert caught.value.reason.startswith("'close' is not a number: \"oops\"")


def test_correlate_on_a_folder_of_sources_says_to_convert(tmp_path):
    folder = pairscan.sample(tmp_path / "d", tickers=3, days=1, bars_per_day=5)
    for command in (["correlate", folder], ["plot", folder, "aet", "afl"]):
        done = cli(*command)
        assert done.returncode == 2
        assert done.stderr == (f"pairscan: error: {folder}: this folder holds source files but no store: "
                               "run pairscan convert on it first\n")


# --- property: any frame, written as JSON Lines, CSV and Parquet, converts to the same store ----

prices = st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.integers(0, 10**6), prices, st.integers(0, 10**9)), min_size=1, max_size=40))
def test_any_frame_in_any_format_converts_to_the_same_store(tmp_path_factory, rows):
    root = tmp_path_factory.mktemp("p")
    minutes, closes, volumes = zip(*rows)
    frame = pd.DataFrame({"close": closes, "volume": volumes},
                         index=pd.DatetimeIndex(pd.Timestamp("2010-01-01") + pd.to_timedelta(minutes, "min"),
                                                name="timestamp").as_unit("ns"))
    out = frame.reset_index()
    out.assign(timestamp=out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S")).to_json(
        root / "a.json", orient="records", lines=True, double_precision=15)
    out.to_csv(root / "b.csv", index=False)
    out.to_parquet(root / "c.parquet")
    pairscan.convert(root, executor="serial")
    stored = [pd.read_hdf(root / f"{t}.h5", "/data") for t in "abc"]
    want = frame[~frame.index.duplicated(keep="last")].sort_index()
    for got in stored:
        pd.testing.assert_frame_equal(got, want, check_freq=False)
