"""Convert: good files are stored even when others are bad; every bad file is named; skip is accounted for."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import pairscan
from pairscan.convert import ConvertFailed
from pairscan.sample import sample_frames
from pairscan.store import read_manifest, store_files

from conftest import run_cli

from test_ingest import messy

SMALL = dict(tickers=4, days=1, bars_per_day=10)


cli = run_cli  # the command line in this process


def with_bad_files(folder: Path) -> dict[str, tuple[int, str]]:
    """Add bad files to a sample folder; return file name -> (line, reason) of each."""
    lines = (folder / "aet.json").read_bytes().splitlines(keepends=True)
    (folder / "cut.json").write_bytes(b"".join(lines[:4]) + lines[4][:20])
    (folder / "text.json").write_bytes(b"".join(lines[:2]) + b'{"timestamp": "2015-01-02 10:00:00", '
                                       b'"close": "n/a"}\n' + b"".join(lines[2:]))
    (folder / "junk.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    return {
        "cut.json": (5, "truncated last line (the file ends inside a record)"),
        "text.json": (3, "'close' is not a number: \"n/a\""),
        "junk.json": (1, "binary data (not UTF-8 text), not JSON text (and 2 more bad lines)"),
    }


def test_bad_files_are_named_and_the_good_ones_converted(tmp_path):
    folder = pairscan.sample(tmp_path / "d", **SMALL)
    store = tmp_path / "store"
    # An earlier good version of text.json was stored: its output must not outlive it.
    (folder / "text.json").write_bytes((folder / "aet.json").read_bytes())
    pairscan.convert(folder, to=store, executor="serial")
    assert (store / "text.h5").exists()
    bad = with_bad_files(folder)
    with pytest.raises(ConvertFailed) as caught:
        pairscan.convert(folder, to=store, executor="threads", workers=2)
    failed = caught.value
    assert [(Path(f["file"]).name, f["line"], f["reason"]) for f in failed.failures] == [
        (name, line, reason) for name, (line, reason) in sorted(bad.items())]
    assert str(failed) == f"{folder / 'cut.json'}:5: {bad['cut.json'][1]} (and 2 more bad files)"
    assert sorted(store_files(store)) == ["aet", "afl", "aig", "al"]
    assert not list(store.glob(".*.tmp"))
    assert set(read_manifest(store)["tickers"]) == {"aet", "afl", "aig", "al"}
    assert failed.summary["converted"] == 0 and failed.summary["up_to_date"] == 4
    # A rerun tries the bad files again: fixed ones convert, the rest fail again.
    (folder / "cut.json").write_bytes((folder / "afl.json").read_bytes())
    with pytest.raises(ConvertFailed) as again:
        pairscan.convert(folder, to=store, executor="serial")
    assert [Path(f["file"]).name for f in again.value.failures] == ["junk.json", "text.json"]
    assert again.value.summary["converted"] == 1
    pd.testing.assert_frame_equal(pd.read_hdf(store / "cut.h5", "/data"), pd.read_hdf(store / "afl.h5", "/data"))


def test_the_command_line_names_every_bad_file_and_exits_2(tmp_path):
    folder = pairscan.sample(tmp_path / "d", **SMALL)
    bad = with_bad_files(folder)
    done = cli("convert", folder, "--executor", "processes", "--workers", "2")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"pairscan: error: {folder / name}:{line}: {reason}" for name, (line, reason) in sorted(bad.items())
    ] + ["pairscan: 3 bad files not converted; 4 others converted"]
    assert sorted(p.name for p in folder.glob("*.h5")) == ["aet.h5", "afl.h5", "aig.h5", "al.h5"]


def test_skip_keeps_the_good_lines_and_says_how_many_were_skipped_where(tmp_path):
    folder = pairscan.sample(tmp_path / "d", **SMALL)
    with_bad_files(folder)
    done = cli("convert", folder, "--on-bad-lines", "skip", "--executor", "serial")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        f"converted 7 of 7 files (0 up to date) to hdf5 in {folder}: 54 rows; "
        "skipped 5 bad lines (cut.json: 1, junk.json: 3, text.json: 1); serial x1, ")
    assert done.stderr == (f"pairscan: warning: {folder / 'junk.json'}: every record was bad (3 lines skipped; "
                           "line 1: binary data (not UTF-8 text), not JSON text); ticker 'junk' has no data and is "
                           "not stored\n")
    tickers = read_manifest(folder)["tickers"]
    assert {t: (e["rows"], e["bad_lines_skipped"], e["first_bad_line"]) for t, e in tickers.items()} == {
        "aet": (10, 0, None), "afl": (10, 0, None), "aig": (10, 0, None), "al": (10, 0, None),
        "cut": (4, 1, "line 5: truncated last line (the file ends inside a record)"),
        "text": (10, 1, "line 3: 'close' is not a number: \"n/a\""),
        "junk": (0, 3, "line 1: binary data (not UTF-8 text), not JSON text"),
    }
    assert sorted(store_files(folder)) == ["aet", "afl", "aig", "al", "cut", "text"]
    pd.testing.assert_frame_equal(pd.read_hdf(folder / "text.h5", "/data"), pd.read_hdf(folder / "aet.h5", "/data"))
    out = json.loads(cli("convert", folder, "--on-bad-lines", "skip", "--json", "--force").stdout)
    assert (out["bad_lines_skipped"], out["skipped_by_file"]) == (5, {"cut.json": 1, "junk.json": 3, "text.json": 1})


def test_an_empty_file_is_a_ticker_without_data(tmp_path):
    folder = pairscan.sample(tmp_path / "d", tickers=2, days=1, bars_per_day=3)
    (folder / "empty.json").write_bytes(b"\xef\xbb\xbf\r\n")
    with pytest.warns(UserWarning, match=r"empty\.json: no records; ticker 'empty' has no data and is not stored"):
        summary = pairscan.convert(folder, executor="serial")
    assert (summary["files"], summary["converted"], summary["rows"]) == (3, 3, 6)
    assert sorted(store_files(folder)) == ["aet", "afl"]
    assert read_manifest(folder)["tickers"]["empty"]["file"] is None


@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
def test_a_messy_file_is_stored_as_the_clean_one(tmp_path, fmt):
    frame = sample_frames(tickers=1, days=2, bars_per_day=12)["aet"]
    folder = tmp_path / "d"
    folder.mkdir()
    data, duplicates = messy(frame)
    (folder / "aet.json").write_bytes(data)
    summary = pairscan.convert(folder, format=fmt, executor="serial")
    assert (summary["rows"], summary["duplicates_dropped"]) == (len(frame), duplicates)
    path = store_files(folder)["aet"]
    stored = pd.read_hdf(path, "/data") if fmt == "hdf5" else pd.read_parquet(path)
    want = frame.assign(exchange="NYSE")
    pd.testing.assert_frame_equal(stored, want, check_freq=False, check_dtype=False)
    assert list(stored.dtypes[:5]) == ["float64"] * 4 + ["int64"]


def test_a_rerun_removes_the_temporary_files_a_killed_run_left(tmp_path):
    folder = pairscan.sample(tmp_path / "d", tickers=2, days=1, bars_per_day=3)
    stale = [".aet.h5.k3j2_x9q.tmp", ".afl.parquet.abcdefgh.tmp", "..pairscan-manifest.json.0a1b2c3d.tmp"]
    others = [".notes.txt.abcdefgh.tmp", ".aet.h5.tmp", "keep.tmp"]
    for name in stale + others:
        (folder / name).write_bytes(b"half")
    pairscan.convert(folder, executor="serial")
    assert sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp")) == sorted(others)


def test_an_unwritable_store_is_one_clear_line(tmp_path):
    folder = pairscan.sample(tmp_path / "d", tickers=2, days=1, bars_per_day=3)
    (tmp_path / "file").write_text("not a folder")
    done = cli("convert", folder, "--to", tmp_path / "file" / "store")
    assert done.returncode == 2
    assert done.stderr == f"pairscan: error: {tmp_path / 'file' / 'store'}: cannot create the store folder (Not a directory)\n"
