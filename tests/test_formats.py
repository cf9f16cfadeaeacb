"""Files as downloads ship them: compressed, wide, with a download library's multi-row header,
and tickers a file name cannot hold. Each shape converts with plain ``pairscan convert`` to
the same close series as the JSON Lines store of the same prices."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import pairscan
from pairscan.sample import sample_frames, write_jsonl
from pairscan.store import read_manifest, store_files


def cli(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "pairscan", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def one_error(done) -> str:
    """The one line a refused command prints (exit 2, no traceback)."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr.splitlines()[0]


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    out = sample_frames(tickers=3, days=150, daily=True, seed=11)
    first = sorted(out)[0]
    out[first] = out[first].iloc[10:].drop(out[first].index[40])  # later listed, one day missing: empty cells
    return out


def _closes(frames) -> pd.DataFrame:
    wide = pd.DataFrame({t: f["close"] for t, f in frames.items()})
    wide.index = wide.index.strftime("%Y-%m-%d")
    wide.index.name = "Date"
    return wide


def _download(frames, order=("Price", "Ticker")) -> pd.DataFrame:
    """The download library's frame: columns (field, ticker), written with a three-row header."""
    columns = {}
    for field, column in (("Adj Close", "adj"), ("Close", "close"), ("High", "high"), ("Volume", "volume")):
        for ticker, frame in frames.items():
            values = frame["close"] * 0.5 if column == "adj" else frame[column]
            columns[(field, ticker) if order[0] == "Price" else (ticker, field)] = values
    out = pd.DataFrame(columns)
    out.columns.names = list(order)
    out.index = out.index.strftime("%Y-%m-%d")
    out.index.name = "Date"
    return out


def _sources(root: Path, frames) -> dict[str, Path]:
    """The same prices in every shape; name -> SOURCE."""
    out = {}
    for name in ("jsonl", "csv.gz", "jsonl.bz2", "download1"):
        (root / name).mkdir()
        out[name] = root / name
    for ticker, frame in frames.items():
        write_jsonl(frame, root / "jsonl" / f"{ticker}.json")
        dump = frame.reset_index().rename(columns={"timestamp": "Date"})
        dump["Date"] = dump["Date"].dt.strftime("%Y-%m-%d")
        dump.to_csv(root / "csv.gz" / f"{ticker}.csv.gz", index=False)
        (root / "jsonl.bz2" / f"{ticker}.jsonl.bz2").write_bytes(
            bz2.compress((root / "jsonl" / f"{ticker}.json").read_bytes()))
        _download({ticker: frame}).to_csv(root / "download1" / f"{ticker}.csv")
    long = pd.concat([frame.reset_index().assign(symbol=t) for t, frame in frames.items()])
    long["timestamp"] = long["timestamp"].dt.strftime("%Y-%m-%d")
    long.to_csv(root / "long.csv.gz", index=False)
    out["long.csv.gz"] = root / "long.csv.gz"
    wide = _closes(frames)
    wide.to_csv(root / "wide.csv")
    wide.to_csv(root / "wide.csv.gz")
    text = (root / "wide.csv").read_bytes()
    (root / "wide.csv.xz").write_bytes(lzma.compress(text))
    with pa.CompressedOutputStream(str(root / "wide.csv.zst"), "zstd") as f:
        f.write(text)
    wide.set_axis(pd.to_datetime(wide.index)).rename_axis(None).to_parquet(root / "wide.parquet")  # pandas' index
    _download(frames).to_csv(root / "download.csv")
    _download(frames, order=("Ticker", "Price")).to_csv(root / "download-by-ticker.csv")
    for name in ("wide.csv", "wide.csv.gz", "wide.csv.xz", "wide.csv.zst", "wide.parquet", "download.csv",
                 "download-by-ticker.csv"):
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def converted(tmp_path_factory, frames) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    stores = {}
    for name, source in _sources(root, frames).items():
        store = root / "stores" / name
        # The command line's defaults (a run of the CLI is checked below): layout auto, no option.
        pairscan.convert(source, to=store, format="parquet", executor="serial", quiet=True)
        stores[name] = store
    return stores


SHAPES = ["csv.gz", "jsonl.bz2", "download1", "long.csv.gz", "wide.csv", "wide.csv.gz", "wide.csv.xz",
          "wide.csv.zst", "wide.parquet", "download.csv", "download-by-ticker.csv"]


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_stores_the_close_series_of_the_json_lines_store(converted, frames, shape):
    reference, store = converted["jsonl"], converted[shape]
    assert sorted(store_files(store)) == sorted(store_files(reference)) == sorted(frames)
    for ticker, path in store_files(store).items():
        got = pd.read_parquet(path)
        want = pd.read_parquet(store_files(reference)[ticker])
        pd.testing.assert_series_equal(got["close"], want["close"])
        if shape.startswith("download"):  # every field of the header, Adj Close kept beside the close
            pd.testing.assert_series_equal(got["adj_close"], want["close"] * 0.5, check_names=False)
            pd.testing.assert_series_equal(got["volume"], want["volume"])
        elif shape.startswith("wide"):
            assert list(got.columns) == ["close"]


def test_the_command_line_converts_a_compressed_wide_table(converted, tmp_path):
    done = cli("convert", converted["wide.csv.gz"].parent.parent / "wide.csv.gz", "--to", tmp_path / "store",
               "--format", "parquet")
    assert done.returncode == 0, done.stderr
    for ticker, path in store_files(tmp_path / "store").items():
        pd.testing.assert_frame_equal(pd.read_parquet(path), pd.read_parquet(store_files(converted["wide.csv.gz"])[ticker]))


def test_a_compressed_table_reruns_up_to_date(converted):
    again = pairscan.convert(converted["long.csv.gz"].parent.parent / "long.csv.gz", to=converted["long.csv.gz"],
                             format="parquet", executor="serial", quiet=True)
    assert (again["converted"], again["up_to_date"]) == (0, 3)
    assert not list(converted["long.csv.gz"].glob(".pairscan-split-*"))  # the unpacked copy is gone


# --- compressed input: bounded, and named when it is not what its name says -------------------------

def _bomb(path: Path) -> None:
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(b"Date,Close,Ticker\n")
        for _ in range(64):
            f.write(b"2020-01-02,1.5,A\n" * 4096)  # 4.4 MB of text in a few kilobytes


@pytest.mark.parametrize("single", [False, True])
def test_a_gzip_bomb_is_refused_by_what_it_unpacks_to(tmp_path, single):
    folder = tmp_path / "src"
    folder.mkdir()
    _bomb(folder / "A.csv.gz")
    assert (folder / "A.csv.gz").stat().st_size < 100_000
    before = sorted(p.name for p in tmp_path.rglob("*"))
    done = cli("convert", folder / "A.csv.gz" if single else folder, "--to", tmp_path / "store", "--max-bytes", "1MB")
    assert one_error(done) == (f"pairscan: error: {folder / 'A.csv.gz'}: unpacks to more than --max-bytes "
                               f"(1000000 bytes); a compressed file that large is refused (raise --max-bytes if it "
                               f"is genuine)")
    assert not store_files(tmp_path / "store")
    assert not list((tmp_path / "store").glob(".pairscan-split-*"))
    after = sorted(p.name for p in tmp_path.rglob("*") if "store" not in p.parts)
    assert after == before


def test_compressed_bytes_under_a_plain_name_and_a_damaged_download_are_named(tmp_path, frames):
    folder = tmp_path / "src"
    folder.mkdir()
    ticker, frame = next(iter(frames.items()))
    text = frame.reset_index().to_csv(index=False).encode()
    (folder / "A.csv").write_bytes(gzip.compress(text))
    done = cli("convert", folder, "--to", tmp_path / "store")
    assert one_error(done) == (f"pairscan: error: {folder / 'A.csv'}: this file is gzip-compressed; name it "
                               f"A.csv.gz and pairscan unpacks it as it reads")
    (folder / "A.csv").unlink()
    (folder / "A.csv.gz").write_bytes(gzip.compress(text)[:300])
    done = cli("convert", folder, "--to", tmp_path / "store")
    line = one_error(done)
    assert line.startswith(f"pairscan: error: {folder / 'A.csv.gz'}: not a valid gzip file (")
    assert line.endswith("); check the download")


def test_compressed_parquet_is_not_a_source(tmp_path, frames):
    folder = tmp_path / "src"
    folder.mkdir()
    ticker, frame = next(iter(frames.items()))
    write_jsonl(frame, folder / f"{ticker}.json")
    (folder / "B.parquet.gz").write_bytes(gzip.compress(b"PAR1"))
    with pytest.warns(UserWarning, match=r"ignored 1 file of no known format \(B.parquet.gz\)"):
        summary = pairscan.convert(folder, to=tmp_path / "store", executor="serial", quiet=True)
    assert summary["files"] == 1


# --- wide tables ---------------------------------------------------------------------------------

def test_a_wide_table_is_recognised_forced_or_explained(tmp_path, frames):
    wide = _closes(frames)
    plain = tmp_path / "panel.csv"
    wide.rename_axis("when").to_csv(plain)  # no column named as a time: auto does not guess
    line = one_error(cli("convert", plain, "--to", tmp_path / "s1"))
    assert "--layout wide reads it as a wide table" in line and "its columns are when, " in line
    done = cli("convert", plain, "--to", tmp_path / "s1", "--layout", "wide", "--format", "parquet", "--quiet")
    assert done.returncode == 0, done.stderr
    for ticker, path in store_files(tmp_path / "s1").items():
        assert pd.read_parquet(path)["close"].tolist() == frames[ticker]["close"].tolist()
    named = tmp_path / "named.csv"
    wide.to_csv(named)
    line = one_error(cli("convert", named, "--to", tmp_path / "s2", "--layout", "long"))
    assert "no ticker column (ticker, symbol or name) and no close column" in line
    assert "--layout wide reads one column per ticker" in line
    folder = tmp_path / "folder"
    folder.mkdir()
    wide.to_csv(folder / "panel.csv")
    line = one_error(cli("convert", folder, "--to", tmp_path / "s3"))
    assert line.startswith(f"pairscan: error: {folder / 'panel.csv'}:1: no close column; this looks like a wide "
                           f"table: one column per ticker (Date, ")
    assert line.endswith("it is read as one when converted alone (pairscan convert FILE, or --layout wide)")
    (folder / "panel.csv").write_text("Date,Price\n2020-01-02,1\n")
    assert one_error(cli("convert", folder, "--to", tmp_path / "s3")).endswith(
        "panel.csv:1: no close column; its columns are Date, Price; --close-column to name one")


def test_a_bad_cell_of_a_wide_table_is_named_by_its_line(tmp_path):
    table = tmp_path / "w.csv"
    table.write_text("Date,A,B\n2020-01-02,1,2\n2020-01-03,,x\n2020-01-06,3,4\n")
    done = cli("convert", table, "--to", tmp_path / "store")
    assert one_error(done) == f"pairscan: error: {table}:3: B's 'close' is not a number: \"x\""
    summary = pairscan.convert(table, to=tmp_path / "store", on_bad_lines="skip", executor="serial", quiet=True)
    assert summary["bad_lines_skipped"] == 1 and summary["rows"] == 2 + 2
    assert read_manifest(tmp_path / "store")["tickers"]["B"]["first_bad_line"] == \
        "line 3: B's 'close' is not a number: \"x\""


def test_a_row_of_the_wrong_width_in_a_wide_table_is_named_by_its_line(tmp_path):
    table = tmp_path / "w.csv"
    table.write_bytes(b"Date,A,B\r\n2020-01-02,1,2\r\n2020-01-03,1,2,3\r\n2020-01-06,3,4\r\n")
    assert one_error(cli("convert", table, "--to", tmp_path / "store")) == (
        f"pairscan: error: {table}:3: 4 values where the header names 3 columns; every row of a wide table needs "
        "one value per column (empty where a ticker has none)")
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").glob("*.h5"))


def test_a_download_of_many_tickers_in_a_folder_is_sent_to_convert_alone(tmp_path, frames):
    folder = tmp_path / "src"
    folder.mkdir()
    _download(frames).to_csv(folder / "all.csv")
    line = one_error(cli("convert", folder, "--to", tmp_path / "store"))
    assert f"all.csv:2: a multi-row header of 3 tickers ({', '.join(sorted(frames))}): a wide table" in line


# --- tickers a file name cannot hold ---------------------------------------------------------------

ODD = ["AAPL", "BF.B", "BRK/B", "^GSPC"]


@pytest.fixture(scope="module")
def odd_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(5)
    days = pd.bdate_range("2020-01-01", periods=120)
    common = rng.normal(0, 0.01, len(days)).cumsum()
    wide = pd.DataFrame({t: (100 * np.exp(common + rng.normal(0, 0.004, len(days)).cumsum())).round(4) for t in ODD},
                        index=pd.Index(days.strftime("%Y-%m-%d"), name="Date"))
    wide.to_csv(root / "odd.csv")
    done = cli("convert", root / "odd.csv", "--to", root / "store", "--format", "parquet", "--quiet")
    assert done.returncode == 0, done.stderr
    return root / "store"


def test_odd_tickers_are_stored_under_one_reversible_name(odd_store):
    assert sorted(store_files(odd_store)) == ODD
    assert sorted(p.name for p in odd_store.glob("*.parquet")) == ["AAPL.parquet", "BF.B.parquet",
                                                                   "BRK%2FB.parquet", "^GSPC.parquet"]


def test_odd_tickers_are_shown_and_accepted_by_their_real_name(odd_store, tmp_path):
    done = cli("correlate", odd_store, "--top", "6", "--quiet")
    assert done.returncode == 0 and "BRK/B" in done.stdout and "^GSPC" in done.stdout and "%2F" not in done.stdout
    top = json.loads(cli("correlate", odd_store, "--json", "--quiet").stdout)["top"]
    assert {t for pair in top for t in (pair["a"], pair["b"])} == set(ODD)
    done = cli("correlate", odd_store, "--tickers", "BRK/B,^GSPC", "--out", tmp_path / "pairs.csv", "--quiet")
    assert done.returncode == 0, done.stderr
    pairs = pd.read_csv(tmp_path / "pairs.csv")
    assert (pairs["a"].tolist(), pairs["b"].tolist()) == (["BRK/B"], ["^GSPC"])
    done = cli("correlate", odd_store, "--with", "BRK/B", "--json", "--quiet")
    partners = json.loads(done.stdout)
    assert "BRK/B" in json.dumps(partners) and "%2F" not in done.stdout
    done = cli("analyze", odd_store, "BRK/B", "^GSPC", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    pair = json.loads(done.stdout)["pairs"][0]
    assert (pair["a"], pair["b"]) == ("BRK/B", "^GSPC")
    done = cli("run", odd_store, "--top", "1", "--tickers", "BRK/B,AAPL", "--report", tmp_path / "r.html",
               "--workdir", tmp_path / "work", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "AAPL" in (report := (tmp_path / "r.html").read_text()) and "BRK/B" in report and "BRK%2FB" not in report


def test_an_odd_ticker_titles_its_plot(odd_store, tmp_path, monkeypatch):
    import pairscan.plot as plot

    titles = []
    save = plot.save_figure
    monkeypatch.setattr(plot, "save_figure", lambda fig, out: (titles.extend(a.get_title() for a in fig.axes),
                                                         save(fig, out))[1])
    pairscan.plot_pair(odd_store, "BRK/B", "^GSPC", tmp_path / "p.png")
    assert any(t.startswith("BRK/B and ^GSPC") for t in titles)
    assert (tmp_path / "p.png").stat().st_size > 0
