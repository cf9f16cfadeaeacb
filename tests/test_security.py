"""Hostile inputs: each attack is built in a temporary folder, and nothing outside what pairscan may write changes."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import errno
import io
import json
import os
import pathlib
import resource
import socket
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pairscan
from pairscan.cli import main
from pairscan.errors import PairscanError
from pairscan.outputs import csv_cell, csv_safe, printable, write_error
from pairscan.records import text_table

from conftest import make_store, run_cli

# --- archives -----------------------------------------------------------------------------------
# An archive extracts only the data files of its data folder, into a folder of their own,
# never over a user's files or folders, and never through a link.

ROW = b'{"timestamp": "2015-01-02 09:30:00", "close": 1.5}\n'


_cli = run_cli  # the command line in this process: what it extracts, writes and says


def _tree(root: Path, skip: Path | None = None) -> dict[str, tuple]:
    """Every entry under ``root`` (but ``skip``): type, size, mtime and link target or content digest."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        if skip is not None and Path(folder) == skip.parent and skip.name in dirs:
            dirs.remove(skip.name)
        for name in sorted(dirs + files):
            path = Path(folder, name)
            info = os.lstat(path)
            kind = stat.S_IFMT(info.st_mode)
            extra = os.readlink(path) if stat.S_ISLNK(info.st_mode) else (
                path.read_bytes() if stat.S_ISREG(info.st_mode) else None)
            seen[str(path.relative_to(root))] = (kind, info.st_size if not stat.S_ISDIR(kind) else 0,
                                                 info.st_mtime_ns, extra)
    return seen


def _entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime = kind, link, 1_420_000_000
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info, data


def _tgz(path: Path, entries: list[tuple]) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    return path


def _sample_entries(tmp_path: Path, tickers: int = 4) -> list[tuple]:
    folder = pairscan.sample(tmp_path / "made" / "daily-stock", tickers=tickers, days=2, bars_per_day=20)
    return [_entry(f"daily-stock/{p.name}", data=p.read_bytes()) for p in sorted(folder.iterdir())]


def _refused(done, *needles):
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_run_extracts_no_planted_store_file_into_the_work_folder(tmp_path):
    entries = _sample_entries(tmp_path)
    evil = b"\x89HDF\r\n\x1a\n" + b"planted" * 100
    archive = _tgz(tmp_path / "data.tgz", [*entries, _entry("store/zzz.h5", data=evil),
                                          _entry("daily-stock/zzy.h5", data=evil),
                                          _entry("daily-stock/.pairscan-manifest.json", data=b"{}"),
                                          _entry("pair.png", data=evil), _entry("heatmap.png", data=evil)])
    work = tmp_path / "work"
    for _ in range(2):  # a rerun refreshes its own extraction
        done = _cli("run", archive, "--workdir", work, "--json", "--top", "1", "--executor", "serial", "--quiet")
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert out["series"] == 4
        assert sorted(p.name for p in (work / "store").iterdir() if p.suffix == ".h5") == \
            sorted(info.name.split("/")[1].replace(".json", ".h5") for info, _ in entries)
        assert not (work / "daily-stock" / "zzy.h5").exists()
        assert not (work / "daily-stock" / ".pairscan-manifest.json").exists()
        assert sorted(p.name for p in (work / "daily-stock").iterdir() if not p.name.startswith(".")) == \
            sorted(info.name.split("/")[1] for info, _ in entries)


def test_convert_without_to_takes_no_planted_h5_into_the_store(tmp_path):
    entries = _sample_entries(tmp_path)
    archive = _tgz(tmp_path / "data.tgz", [*entries, _entry("daily-stock/zzz.h5", data=b"\x89HDF planted")])
    done = _cli("convert", archive, "--json", "--executor", "serial", "--quiet")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["files"] == 4 and out["converted"] == 4
    assert not (tmp_path / "daily-stock" / "zzz.h5").exists()
    from pairscan.store import store_files

    assert sorted(store_files(tmp_path / "daily-stock")) == \
        sorted(info.name.split("/")[1][: -len(".json")] for info, _ in entries)


@pytest.mark.parametrize("command", ["extract", "convert"])
def test_a_lock_linked_to_a_file_beside_the_archive_is_refused(tmp_path, command):
    (tmp_path / "notes.txt").write_text("my notes\n")
    archive = _tgz(tmp_path / "data.tgz", [_entry("daily-stock/aet.json", data=ROW),
                                          _entry("daily-stock/.pairscan-lock", tarfile.SYMTYPE, link="../notes.txt")])
    before = _tree(tmp_path)
    line = _refused(_cli(command, archive), "member 'daily-stock/.pairscan-lock'",
                    "symbolic link to '../notes.txt', which is not a regular data file of the archive")
    assert line.startswith(f"pairscan: error: {archive}: refusing the archive: ")
    assert _tree(tmp_path) == before


def test_a_link_to_a_data_file_with_a_name_no_reader_knows_is_not_extracted(tmp_path):
    # Allowed (it names a data file of the archive) but not part of the source: left out.
    archive = _tgz(tmp_path / "data.tgz", [_entry("daily-stock/aet.json", data=ROW),
                                          _entry("daily-stock/.pairscan-lock", tarfile.SYMTYPE, link="aet.json")])
    done = _cli("convert", archive, "--executor", "serial", "--quiet")
    assert done.returncode == 0, done.stderr
    lock = tmp_path / "daily-stock" / ".pairscan-lock"
    assert not lock.is_symlink()
    assert (tmp_path / "daily-stock" / "aet.json").read_bytes() == ROW


@pytest.mark.parametrize("case", ["two-files", "link-then-file", "file-then-link", "dot-slash"])
def test_duplicate_members_are_refused_naming_the_member(tmp_path, case):
    first, second = {
        "two-files": (_entry("daily-stock/afl.json", data=ROW), _entry("daily-stock/afl.json", data=ROW * 2)),
        "link-then-file": (_entry("daily-stock/afl.json", tarfile.SYMTYPE, link="aet.json"),
                           _entry("daily-stock/afl.json", data=ROW * 2)),
        "file-then-link": (_entry("daily-stock/afl.json", data=ROW),
                           _entry("daily-stock/afl.json", tarfile.SYMTYPE, link="aet.json")),
        "dot-slash": (_entry("daily-stock/afl.json", data=ROW), _entry("./daily-stock/afl.json", data=ROW * 2)),
    }[case]
    archive = _tgz(tmp_path / "dup.tgz", [_entry("daily-stock/aet.json", data=ROW), first, second])
    before = _tree(tmp_path)
    _refused(_cli("extract", archive, "--to", tmp_path / "t"), f"member {second[0].name!r}",
             "the archive holds two members of this name")
    assert _tree(tmp_path) == before


def test_duplicate_zip_members_are_refused(tmp_path):
    archive = tmp_path / "dup.zip"
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(archive, "w") as z:
        z.writestr("d/aet.json", ROW)
        z.writestr("d/aet.json", ROW * 2)
    before = _tree(tmp_path)
    _refused(_cli("extract", archive, "--to", tmp_path / "t"), "member 'd/aet.json'", "two members of this name")
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("kind, to", [(tarfile.SYMTYPE, "sub"), (tarfile.SYMTYPE, "../readme.md"),
                                      (tarfile.LNKTYPE, "readme.md"), (tarfile.SYMTYPE, "missing.json"),
                                      (tarfile.SYMTYPE, ".hidden.json")])
def test_links_to_anything_but_a_data_file_of_the_archive_are_refused(tmp_path, kind, to):
    archive = _tgz(tmp_path / "a.tgz", [_entry("daily-stock/aet.json", data=ROW), _entry("readme.md", data=b"hi"),
                                        _entry("daily-stock/.hidden.json", data=ROW),
                                        _entry("daily-stock/sub", tarfile.DIRTYPE),
                                        _entry("daily-stock/x.json", kind, link=to)])
    before = _tree(tmp_path)
    _refused(_cli("extract", archive, "--to", tmp_path / "t"), "member 'daily-stock/x.json'",
             f"link to {to!r}, which is not a")
    assert _tree(tmp_path) == before


def test_a_member_named_as_an_existing_folder_removes_nothing(tmp_path):
    target = tmp_path / "t"
    (target / "daily-stock" / "aet.json").mkdir(parents=True)  # the user's folder
    (target / "daily-stock" / "aet.json" / "keep.txt").write_text("mine")
    archive = _tgz(tmp_path / "a.tgz", [_entry("daily-stock/aet.json", data=ROW)])
    before = _tree(tmp_path)
    for command in ("extract", "convert"):
        _refused(_cli(command, archive, "--to", target), f"{target / 'daily-stock'} exists and is not a folder "
                 "pairscan extracted", "--to DIR")
        assert _tree(tmp_path) == before


def test_an_existing_file_with_a_members_name_is_never_replaced(tmp_path):
    target = tmp_path / "t"
    (target / "daily-stock").mkdir(parents=True)
    (target / "daily-stock" / "aet.json").write_bytes(ROW * 3)  # the user's own, different
    archive = _tgz(tmp_path / "a.tgz", [_entry("daily-stock/aet.json", data=ROW)])
    before = _tree(tmp_path)
    with pytest.raises(PairscanError, match="exists and is not a folder pairscan extracted"):
        pairscan.extract(archive, target)
    assert _tree(tmp_path) == before
    # The same name with the same bytes (the folder an archive was made from) is left as it is.
    (target / "daily-stock" / "aet.json").write_bytes(ROW)
    before = _tree(tmp_path)
    assert pairscan.extract(archive, target) == target / "daily-stock"
    assert _tree(tmp_path) == before


def test_the_folder_an_archive_was_made_from_stands_for_it(tmp_path):
    archive = pairscan.sample(tmp_path / "daily-stock", tickers=3, days=1, bars_per_day=5, archive=True)
    before = _tree(tmp_path)
    done = _cli("extract", archive)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "daily-stock")
    assert _tree(tmp_path) == before
    (tmp_path / "daily-stock" / "extra.json").write_bytes(ROW)  # now it says more than the archive
    before = _tree(tmp_path)
    _refused(_cli("extract", archive), "exists and is not a folder pairscan extracted")
    assert _tree(tmp_path) == before


def test_reruns_refresh_only_pairscans_own_files(tmp_path):
    archive = _tgz(tmp_path / "a.tgz", [_entry("daily-stock/aet.json", data=ROW),
                                        _entry("daily-stock/afl.json", data=ROW)])
    folder = pairscan.extract(archive, tmp_path / "t")
    marker = json.loads((folder / ".pairscan-extracted.json").read_text())
    assert marker["archive"] == "a.tgz" and marker["size"] == archive.stat().st_size
    assert sorted(marker["files"]) == ["aet.json", "afl.json"]
    before = _tree(tmp_path)
    assert pairscan.extract(archive, tmp_path / "t") == folder  # unchanged: nothing written
    assert _tree(tmp_path) == before
    # The user adds a file of their own; a new version of the archive has a member of that name.
    (folder / "mine.json").write_bytes(ROW * 2)
    (folder / "sub").mkdir()
    newer = _tgz(tmp_path / "a.tgz", [_entry("daily-stock/aet.json", data=ROW * 4),
                                      _entry("daily-stock/mine.json", data=ROW)])
    before = _tree(tmp_path)
    _refused(_cli("extract", newer, "--to", tmp_path / "t"), "member 'daily-stock/mine.json'",
             f"{folder / 'mine.json'} exists and was not extracted by pairscan")
    assert _tree(tmp_path) == before
    # Without it: pairscan's files are replaced (aet.json) or removed (afl.json); the user's stay.
    newer = _tgz(tmp_path / "a.tgz", [_entry("daily-stock/aet.json", data=ROW * 4),
                                      _entry("daily-stock/aig.json", data=ROW)])
    assert pairscan.extract(newer, tmp_path / "t") == folder
    assert sorted(p.name for p in folder.iterdir()) == [".pairscan-extracted.json", "aet.json", "aig.json",
                                                        "mine.json", "sub"]
    assert (folder / "aet.json").read_bytes() == ROW * 4 and (folder / "mine.json").read_bytes() == ROW * 2


def test_a_forged_marker_in_the_archive_is_not_extracted(tmp_path):
    forged = json.dumps({"archive": "a.tgz", "files": {"notes.json": {}}}).encode()
    archive = _tgz(tmp_path / "a.tgz", [_entry("daily-stock/aet.json", data=ROW),
                                        _entry("daily-stock/.pairscan-extracted.json", data=forged)])
    folder = pairscan.extract(archive, tmp_path / "t")
    assert list(json.loads((folder / ".pairscan-extracted.json").read_text())["files"]) == ["aet.json"]


def test_a_marker_that_is_a_link_does_not_make_a_folder_pairscans(tmp_path):
    archive = _tgz(tmp_path / "a.tgz", [_entry("daily-stock/aet.json", data=ROW)])
    folder = pairscan.extract(archive, tmp_path / "t")
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "aet.json").write_bytes(ROW * 2)
    os.rename(folder / ".pairscan-extracted.json", tmp_path / "marker.json")
    os.symlink(tmp_path / "marker.json", tmp_path / "user" / ".pairscan-extracted.json")
    os.rename(tmp_path / "user", tmp_path / "daily-stock")
    before = _tree(tmp_path)
    with pytest.raises(PairscanError, match="exists and is not a folder pairscan extracted"):
        pairscan.extract(archive, tmp_path)
    assert _tree(tmp_path) == before


def _zip_of(path: Path, name: str, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("d/aet.json", ROW)
        z.writestr(name, data)
    return path


def _patch_zip(path: Path, name: str, size: int | None = None, flags: int | None = None) -> None:
    """Rewrite what ``name``'s local and central headers say: its unpacked size, its flags."""
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    for signature, flag_at, size_at, name_at in ((b"PK\x03\x04", 6, 22, 30), (b"PK\x01\x02", 8, 24, 46)):
        at = data.find(signature)
        while at >= 0:
            if data[at + name_at: at + name_at + len(encoded)] == encoded:
                if size is not None:
                    data[at + size_at: at + size_at + 4] = struct.pack("<I", size)
                if flags is not None:
                    data[at + flag_at: at + flag_at + 2] = struct.pack("<H", flags)
            at = data.find(signature, at + 4)
    path.write_bytes(bytes(data))


def test_a_zip_bomb_is_refused_by_its_declared_size(tmp_path):
    archive = _zip_of(tmp_path / "bomb.zip", "d/bomb.json", bytes(64 * 2**20))
    assert archive.stat().st_size < 2**20
    before = _tree(tmp_path)
    _refused(_cli("convert", archive, "--max-bytes", "10MB"),
             "unpacks to more than 10000000 bytes (at member 'd/bomb.json'")
    assert _tree(tmp_path) == before


def test_a_zip_member_that_unpacks_past_its_declared_size_is_refused(tmp_path):
    archive = _zip_of(tmp_path / "liar.zip", "d/bomb.json", bytes(64 * 2**20))
    _patch_zip(archive, "d/bomb.json", size=1000)
    before = _tree(tmp_path)
    _refused(_cli("extract", archive, "--max-bytes", "10MB"), "cannot extract", "at member 'd/bomb.json'")
    assert _tree(tmp_path) == before


def test_an_encrypted_zip_member_is_one_line_naming_it(tmp_path):
    archive = _zip_of(tmp_path / "locked.zip", "d/afl.json", ROW)
    _patch_zip(archive, "d/afl.json", flags=1)
    before = _tree(tmp_path)
    _refused(_cli("extract", archive), "at member 'd/afl.json'")
    assert _tree(tmp_path) == before


def _peak_extracting(archive: Path, to: Path) -> subprocess.CompletedProcess:
    """Extract in a new process; its stdout: how much its peak memory grew while extracting, in KiB."""
    code = ("import resource, sys, pairscan\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n"
            "    pairscan.extract(sys.argv[1], sys.argv[2])\n"
            "finally:\n"
            "    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
    return subprocess.run([sys.executable, "-c", code, archive, to], capture_output=True, text=True, timeout=300)


def _zip_streamed(path: Path, info: zipfile.ZipInfo, byte: bytes, mib: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("d/aet.json", ROW)
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w") as out:
            for _ in range(mib):
                out.write(byte * 2**20)
    return path


def test_a_huge_zip_link_is_not_read_whole(tmp_path):
    link = zipfile.ZipInfo("d/afl.json")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = _zip_streamed(tmp_path / "link.zip", link, b"a", 256)  # a "path" of 256 MiB
    before = _tree(tmp_path)
    done = _peak_extracting(archive, tmp_path / "t")
    assert "refusing the archive: member 'd/afl.json': symbolic link to 'aaaa" in done.stderr
    assert int(done.stdout) < 64 * 2**10  # KiB: not the link's 256 MiB
    assert _tree(tmp_path) == before


def test_extraction_streams_each_member(tmp_path):
    # A member that unpacks to 256 MiB costs the extracting process no more than a few MiB.
    archive = _zip_streamed(tmp_path / "big.zip", zipfile.ZipInfo("d/big.json"), b"\0", 256)
    done = _peak_extracting(archive, tmp_path / "t")
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 64 * 2**10  # KiB: well under the member's 256 MiB
    assert (tmp_path / "t" / "d" / "big.json").stat().st_size == 256 * 2**20


# --- outputs ------------------------------------------------------------------------------------
# Named outputs, CSV cells, plot labels, terminal text: an output that is not a regular file is
# refused and left as it was; CSV text cells never start a formula; tickers are drawn and printed
# literally.

FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _outputs_tree(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (links not followed): its kind, and a regular file's bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if stat.S_ISREG(st.st_mode):
            out[str(path.relative_to(root))] = ("file", path.read_bytes())
        elif stat.S_ISLNK(st.st_mode):
            out[str(path.relative_to(root))] = ("link", os.readlink(path))
        else:
            out[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode),)
    return out


@pytest.fixture(scope="module")
def outputs_store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("outputs"), ragged=False)


def _special(kind: str, path: Path, root: Path) -> None:
    """Make ``path`` a ``kind`` of thing that is not a regular file."""
    if kind == "symlink":
        (root / "target.txt").write_bytes(b"the user's notes\n")
        path.symlink_to(root / "target.txt")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
        (path / "inside.txt").write_text("kept")
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path.name)  # relative: the test runs in root (socket paths are short)
        server.close()  # the socket file stays


OUTPUT_COMMANDS = {
    "correlate --out": ["correlate", "{store}", "--out", "{target}", "--executor", "serial"],
    "correlate --matrix": ["correlate", "{store}", "--matrix", "{target}", "--executor", "serial"],
    "analyze --out": ["analyze", "{store}", "--out", "{target}", "--executor", "serial"],
    "plot --out": ["plot", "{store}", "aet", "afl", "--out", "{target}"],
    "plot --heatmap --out": ["plot", "{store}", "--heatmap", "--out", "{target}"],
    "plot --spread --out": ["plot", "{store}", "aet", "afl", "--spread", "--out", "{target}"],
    "run --report": ["run", "{store}", "--workdir", "{root}/work", "--report", "{target}", "--executor", "serial"],
    "network --out": ["network", "{store}", "--out", "{target}", "--executor", "serial"],
    "network --plot": ["network", "{store}", "--plot", "{target}", "--executor", "serial"],
    "bench --plot": ["bench", "--quick", "--plot", "{target}"],
}
SUFFIX = {"correlate --matrix": ".csv", "run --report": ".html"}


@pytest.mark.parametrize("kind", ["symlink", "fifo", "folder", "socket"])
@pytest.mark.parametrize("command", list(OUTPUT_COMMANDS))
def test_outputs_refuse_what_is_not_a_regular_file(tmp_path, monkeypatch, capsys, outputs_store, command, kind):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / ("o" + SUFFIX.get(command, ".png" if "plot" in command else ".csv"))
    _special(kind, target, tmp_path)
    (tmp_path / "work").mkdir()
    before = _outputs_tree(tmp_path)
    args = [a.format(store=outputs_store, target=target, root=tmp_path) for a in OUTPUT_COMMANDS[command]]
    assert main(args + ["--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"pairscan: error: {target}: ") and "pairscan replaces only regular files" in err
    assert _outputs_tree(tmp_path) == before  # the special file, a link's target, the work folder: all as they were


def test_outputs_never_replace_a_device(tmp_path, capsys, outputs_store):
    before = os.stat("/dev/null")
    for args in (["correlate", str(outputs_store), "--out", "/dev/null"],
                 ["correlate", str(outputs_store), "--matrix", "/dev/null"],
                 ["plot", str(outputs_store), "aet", "afl", "--out", "/dev/null"]):
        assert main(args + ["--executor", "serial"] if args[0] == "correlate" else args) == 2
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and (after.st_rdev, after.st_ino) == (before.st_rdev, before.st_ino)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("pairscan: error: /dev/null: --out is a character device; pairscan replaces only regular "
                      "files: remove it or name another file")
    assert err[1] == "pairscan: error: /dev/null: --matrix must end in .parquet or .csv"


def test_run_refuses_a_link_among_its_plots(tmp_path, capsys, outputs_store):
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "notes.txt").write_bytes(b"mine")
    (work / "heatmap.png").symlink_to(tmp_path / "notes.txt")
    before = _outputs_tree(tmp_path)
    assert main(["run", str(outputs_store), "--workdir", str(work), "--executor", "serial", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"pairscan: error: {work / 'heatmap.png'}: the work folder's heatmap.png is a symbolic link; "
        "pairscan replaces only regular files: remove it or name another file\n")
    assert _outputs_tree(tmp_path) == before


def test_outputs_api_names_its_keywords(tmp_path, outputs_store):
    (tmp_path / "p.png").symlink_to(tmp_path / "nowhere")
    with pytest.raises(PairscanError, match="out is a symbolic link"):
        pairscan.plot_pair(outputs_store, "aet", "afl", tmp_path / "p.png")
    with pytest.raises(PairscanError, match=r"out must end in \.png, not '\.jpg'"):
        pairscan.plot_heatmap(outputs_store, tmp_path / "h.jpg")
    with pytest.raises(PairscanError, match="a pair needs two different tickers, not 'aet' twice"):
        pairscan.plot_pair(outputs_store, "aet", "aet", tmp_path / "q.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]


@pytest.mark.parametrize("args, message", [
    (["plot", "{store}", "aet", "aet"], "plot needs two different tickers, not 'aet' twice"),
    (["plot", "{store}", "--heatmap", "--out", "{tmp}/h.txt"], "{tmp}/h.txt: --out must end in .png, not '.txt'"),
    (["plot", "{store}", "aet", "afl", "--out", "{tmp}/p.jpg"], "{tmp}/p.jpg: --out must end in .png, not '.jpg'"),
    (["plot", "{store}", "aet", "afl", "--spread", "--out", "{tmp}/p"], "{tmp}/p: --out must end in .png\n"),
    (["bench", "--quick", "--plot", "{tmp}/b.svg"], "{tmp}/b.svg: --plot must end in .png, not '.svg'"),
    (["correlate", "{store}", "--out", "{tmp}"], "{tmp}: --out is a folder; pairscan replaces only regular files"),
    (["correlate", "{store}", "--matrix", "{tmp}/no/m.csv"], "{tmp}/no/m.csv: cannot write here (no such folder"),
])
def test_outputs_bad_names_are_one_line(tmp_path, monkeypatch, capsys, outputs_store, args, message):
    monkeypatch.chdir(tmp_path)
    assert main([a.format(store=outputs_store, tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert ("pairscan: error: " + message.format(tmp=tmp_path)) in err and err.count("\n") == 1
    assert err.startswith("pairscan: error: " + message.format(tmp=tmp_path).rstrip("\n"))
    assert list(tmp_path.iterdir()) == []  # nothing written, not even in the current folder


def _limited(nbytes: int):
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return limit


def _cli_limited(nbytes: int, *args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(pairscan.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pairscan", *map(str, args), "--quiet"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, preexec_fn=_limited(nbytes))


@pytest.mark.parametrize("option, name", [("--out", "p.csv"), ("--matrix", "m.csv"), ("--matrix", "m.parquet")])
def test_file_size_limit_writing_correlate_outputs(tmp_path, outputs_store, option, name):
    target = tmp_path / name
    target.write_bytes(b"the previous output\n")
    done = _cli_limited(300, "correlate", outputs_store, option, target, "--executor", "serial", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"pairscan: error: {target}: file too large (over the file-size limit) writing this file; " \
                          "nothing was written\n"
    assert target.read_bytes() == b"the previous output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary file left


def test_file_size_limit_writing_plots_and_the_report(tmp_path, outputs_store):
    # A first run measures what run writes; the second is limited to just above its
    # largest plot, so that only the report (which embeds them all) is over the limit.
    first = tmp_path / "first"
    done = _cli_limited(resource.RLIM_INFINITY, "run", outputs_store, "--workdir", first, "--report",
                        first / "r.html", "--executor", "serial", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    largest = max(p.stat().st_size for p in first.iterdir() if p.name != "r.html")
    assert (first / "r.html").stat().st_size > largest + 1
    work = tmp_path / "work"
    done = _cli_limited(largest + 1, "run", outputs_store, "--workdir", work, "--report", work / "r.html",
                        "--executor", "serial", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (f"pairscan: error: {work / 'r.html'}: file too large (over the file-size limit) "
                           "writing this file; nothing was written\n")
    assert sorted(p.name for p in work.iterdir()) == sorted(p.name for p in first.iterdir() if p.name != "r.html")
    # Under a smaller limit the first plot fails, the same way.
    done = _cli_limited(2000, "plot", outputs_store, "aet", "afl", "--out", tmp_path / "p.png", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, f"pairscan: error: {tmp_path / 'p.png'}: file too large (over the "
                                                 "file-size limit) writing this file; nothing was written\n")
    assert not (tmp_path / "p.png").exists() and not list(tmp_path.glob(".*"))


def test_write_errors_are_one_line_naming_the_file():
    for code, words in ((errno.ENOSPC, "no space left on device"), (errno.EDQUOT, "disk quota exceeded"),
                        (errno.EFBIG, "file too large")):
        err = write_error(OSError(code, os.strerror(code)), "out.csv")
        assert str(err).startswith(f"out.csv: {words}")
    # pyarrow says so only in its text.
    assert str(write_error(OSError("IOError: [Errno 28] No space left on device"), "m.parquet")).startswith(
        "m.parquet: no space left on device")
    assert str(write_error(PermissionError(errno.EACCES, "Permission denied"), "x")) == \
        "x: cannot write (Permission denied)"


def _hostile_long_table(path: Path) -> Path:
    """A long table whose tickers a spreadsheet would run, and matplotlib would parse as TeX."""
    rng = np.random.default_rng(7)
    dates = pd.date_range("2024-01-01", periods=60, freq="D")
    base = np.cumsum(rng.normal(size=60)) + 100
    walks = {
        "=SUM(1,2)": base + rng.normal(scale=0.3, size=60),
        "+plus": base + rng.normal(scale=0.5, size=60),
        "-minus": 250 - base + rng.normal(scale=0.2, size=60),  # negatively correlated with the others
        "@SUM(A1)": np.cumsum(rng.normal(size=60)) + 100,
        "$\\foo$": base + rng.normal(scale=0.4, size=60),
        "$x^2$": np.cumsum(rng.normal(size=60)) + 80,
        "<b onmouseover=alert(1)>": base + rng.normal(scale=0.35, size=60),
    }
    frame = pd.concat([pd.DataFrame({"ticker": t, "date": dates, "close": v}) for t, v in walks.items()])
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    table = _hostile_long_table(root / "long.csv")
    pairscan.convert(table, to=root / "store", executor="serial")
    return root / "store"


def _assert_no_formula(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    for row in rows:
        for cell in row:
            if cell.startswith(FORMULA):
                float(cell)  # a negative number is a number; anything else would be a formula
    return rows


def test_csv_outputs_escape_formula_cells(tmp_path, capsys, hostile_store):
    top, matrix, analysis = tmp_path / "p.csv", tmp_path / "m.csv", tmp_path / "a.csv"
    assert main(["correlate", str(hostile_store), "--top", "21", "--out", str(top), "--matrix", str(matrix),
                 "--executor", "serial", "--quiet"]) == 0
    assert main(["analyze", str(hostile_store), "--top", "3", "--out", str(analysis), "--executor", "serial",
                 "--quiet"]) == 0
    capsys.readouterr()
    rows = _assert_no_formula(top)
    assert {r[0] for r in rows[1:]} | {r[1] for r in rows[1:]} == {
        "'=SUM(1,2)", "'+plus", "'-minus", "'@SUM(A1)", "$\\foo$", "$x^2$", "<b onmouseover=alert(1)>"}
    assert any(float(r[2]) < 0 and r[2].startswith("-") for r in rows[1:])  # negative correlations stay numbers
    m = _assert_no_formula(matrix)
    assert m[0][1:] == [row[0] for row in m[1:]] and "'-minus" in m[0]
    _assert_no_formula(analysis)
    # What is read back is what was written, with the escape: the frame's values are unchanged.
    expected = pairscan.top_pairs(hostile_store, k=21, executor="serial")
    back = pd.read_csv(top)
    assert back["a"].tolist() == [csv_cell(t) for t in expected["a"]]
    assert back["corr"].tolist() == expected["corr"].tolist()


def test_csv_cells():
    assert [csv_cell(v) for v in ("=1+1", "+1", "-1", "@x", "\tx", "\rx", "a=b", "", -0.5, 3)] == [
        "'=1+1", "'+1", "'-1", "'@x", "'\tx", "'\rx", "a=b", "", -0.5, 3]
    frame = pd.DataFrame({"=a": [-1.0, 2.0], "b": ["-x", "y"]}, index=pd.Index(["@i", "j"], name="+n"))
    safe = csv_safe(frame)
    assert list(safe.columns) == ["'=a", "b"] and list(safe.index) == ["'@i", "j"] and safe.index.name == "'+n"
    assert safe["'=a"].tolist() == [-1.0, 2.0] and safe["b"].tolist() == ["'-x", "y"]
    assert list(frame.columns) == ["=a", "b"] and frame["b"].tolist() == ["-x", "y"]  # the caller's frame unchanged


def test_plots_draw_tickers_literally(tmp_path, capsys, hostile_store):
    a, b = "$\\foo$", "$x^2$"
    for args in (["plot", str(hostile_store), a, b, "--out", str(tmp_path / "pair.png")],
                 ["plot", str(hostile_store), a, "+plus", "--spread", "--out", str(tmp_path / "spread.png")],
                 ["plot", str(hostile_store), "--heatmap", "--out", str(tmp_path / "heat.png")]):
        assert main(args + ["--quiet"]) == 0, capsys.readouterr().err
    for name in ("pair.png", "spread.png", "heat.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    out = pairscan.run(hostile_store, tmp_path / "work", k=3, report=tmp_path / "r.html", executor="serial")
    assert set(out.plots) >= {"pair", "heatmap"}
    page = (tmp_path / "r.html").read_text()
    assert "&lt;b onmouseover=alert(1)&gt;" in page and "<b onmouseover" not in page  # the report escapes it
    assert '"\\u003cb onmouseover=alert(1)\\u003e"' in page  # and so does the search's data


def test_default_plot_names_stay_in_the_current_folder(tmp_path, monkeypatch, capsys, hostile_store):
    monkeypatch.chdir(tmp_path)
    assert main(["plot", str(hostile_store), "$\\foo$", "@SUM(A1)", "--quiet"]) == 0
    assert capsys.readouterr().out == "__foo_-@SUM_A1_.png\n"
    assert [p.name for p in tmp_path.iterdir()] == ["__foo_-@SUM_A1_.png"]


def test_terminal_text_is_escaped():
    assert printable("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m"
    assert printable("a\nb\rc\td\x7f\x9b") == "a\\nb\\rc\\td\\x7f\\x9b"
    assert printable("evil\u202etxt.exe\u2028") == "evil\\u202etxt.exe\\u2028"
    assert printable("bad\udcff") == "bad\\udcff"  # an undecodable byte of a file name
    assert printable("x\\y\n") == "x\\\\y\\n"  # escaped text keeps its backslashes apart
    for plain in ("BRK.B", "C:\\data", "Zürich AG", "Spearman \u03c1", "$\\foo$"):
        assert printable(plain) == plain
    table = text_table([{"a": "\x1b[2J", "b": "x\ny", "corr": 0.5, "n": 10, "p": 0.1, "ci_low": 0.1, "ci_high": 0.8}])
    assert "\x1b" not in table and len(table.splitlines()) == 2 and "\\x1b[2J" in table and "x\\ny" in table


def test_errors_print_file_names_escaped(tmp_path, capsys):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("ok.csv", "\x1b[2J\x1b[31mevil\nforged line.csv"):
        (source / name).write_text("date,close\n2024-01-01,1\n2024-01-02,2\n")
    (source / "\x1b]0;title\x07bad.csv").write_text("date,close\nnot a date,1\n")
    before = _outputs_tree(source)
    assert main(["convert", str(source), "--to", str(tmp_path / "store"), "--executor", "serial", "--quiet"]) == 2
    captured = capsys.readouterr()
    for text in (captured.out, captured.err):
        assert not any(c in text for c in "\x1b\x07\r") and all(line.startswith("pairscan: ")
                                                                 for line in captured.err.splitlines())
    assert "\\x1b" in captured.err
    assert _outputs_tree(source) == before


def test_outputs_never_land_in_the_store_as_data(tmp_path, capsys, outputs_store):
    before = _outputs_tree(outputs_store)
    for args, option in ((["correlate", "{store}", "--matrix", "{store}/m.parquet"], "--matrix"),
                         (["correlate", "{store}", "--out", "{store}/aet.h5"], "--out"),
                         (["analyze", "{store}", "--out", "{store}/.pairscan-manifest.json"], "--out"),
                         (["run", "{store}", "--workdir", "{tmp}/w", "--report", "{store}/r.parquet"], None)):
        assert main([a.format(store=outputs_store, tmp=tmp_path) for a in args] + ["--executor", "serial"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        if option:
            assert f"{option} would be taken for part of the store" in err
        else:
            assert "the report must end in .html or .htm, not '.parquet'" in err
    with pytest.raises(PairscanError, match="would be taken for part of the store"):
        pairscan.correlate(outputs_store, matrix=outputs_store / "m.csv.parquet", executor="serial")
    assert _outputs_tree(outputs_store) == before

# --- store --------------------------------------------------------------------------------------
# Where tickers are stored, what reading a store may do, the lock and the manifest, sources
# and stores: nothing outside the store is written or removed, no code runs.

cli = run_cli  # the command line in this process: what it reads, writes and says


def snapshot(root: Path, skip: Path | None = None) -> dict[str, bytes | str]:
    """Every entry under ``root`` (but ``skip``): a file's bytes, a link's target, a folder's mark."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if skip is not None and (here == skip or skip in here.parents):
            continue
        for name in dirs + files:
            path = here / name
            if skip is not None and path == skip:
                continue
            key = str(path.relative_to(root))
            if path.is_symlink():
                seen[key] = "-> " + os.readlink(path)
            elif path.is_file():
                seen[key] = path.read_bytes()
            else:
                seen[key] = "folder"
    return seen


def long_table(path: Path, tickers, days: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    """A long CSV table of ``tickers`` (``days`` daily closes each); returns the closes."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2020-01-01", periods=days, freq="D").strftime("%Y-%m-%d")
    closes = {t: np.round(rng.uniform(10, 20, days), 4) for t in tickers}
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("ticker,date,close\n")
        for t in tickers:
            for d, c in zip(dates, closes[t]):
                f.write(f"{t},{d},{float(c)!r}\n")
    return closes


def bad_input(done: subprocess.CompletedProcess) -> str:
    """The first line of a convert that named bad input (a summary line may follow)."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr.strip().splitlines()[0]


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


PATHLIKE = [".", "..", ".pairscan-manifest", "x/y", "BRK/B", "^GSPC", "../../evil", "/abs/path", "100%", "a\\b"]


def test_tickers_that_look_like_paths_are_ordinary_files_inside_the_store(tmp_path):
    from pairscan.store import read_column, read_manifest, store_files

    store = tmp_path / "deep" / "er" / "store"
    table = tmp_path / "long.csv"
    closes = long_table(table, PATHLIKE)
    outside = Path("/abs/path.h5")
    assert not outside.exists()
    before = snapshot(tmp_path)
    done = cli("convert", table, "--to", store, "--quiet", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["converted"] == len(PATHLIKE)
    assert snapshot(tmp_path, skip=store) == {**before, "deep": "folder", "deep/er": "folder"}
    assert not outside.exists()
    # every file is a plain, visible file directly in the store, listed back under its ticker
    assert all(not p.name.startswith(".") and p.parent == store for p in store_files(store).values())
    assert sorted(store_files(store)) == sorted(PATHLIKE)
    assert sorted(read_manifest(store)["tickers"]) == sorted(PATHLIKE)
    for ticker, path in store_files(store).items():
        series = read_column(path, "close")
        assert series.name == ticker
        np.testing.assert_array_equal(series.to_numpy(), closes[ticker])
    top = json.loads(cli("correlate", store, "--top", "100", "--json", "--quiet").stdout)["top"]
    assert {t for pair in top for t in (pair["a"], pair["b"])} == set(PATHLIKE)
    # a rerun with nothing to do trusts every entry: the manifest records the mapping
    again = json.loads(cli("convert", table, "--to", store, "--quiet", "--json").stdout)
    assert (again["converted"], again["up_to_date"]) == (0, len(PATHLIKE))


def test_the_ticker_to_file_name_rule_is_reversible():
    from pairscan.store import stored_name, ticker_of

    names = set()
    for ticker in [*PATHLIKE, "a", "a%2Fb", "%", "é/ü", ".a.", "a.h5", "\udcff"]:
        name = stored_name(ticker, ".h5")
        assert "/" not in name and not name.startswith(".") and name not in names
        assert ticker_of(name, ".h5") == ticker
        names.add(name)
    assert ticker_of("a%zz.h5", ".h5") is None  # not a name the rule gives: not pairscan's
    assert ticker_of(".hidden.h5", ".h5") is None
    for bad in ["", "a\0b", "a\nb", "\x1b[31mred"]:
        with pytest.raises(PairscanError, match="empty ticker|control character"):
            stored_name(bad, ".h5")


def test_a_nul_or_control_character_in_a_ticker_is_bad_input_and_never_merges(tmp_path):
    table = tmp_path / "long.csv"
    long_table(table, ["a", "b"])
    with open(table, "a", encoding="utf-8") as f:
        f.write("a\0b,2020-01-01,99.5\n")
    line = 2 + 2 * 40  # the header, then forty rows of each ticker
    store = tmp_path / "store"
    message = one_line_error(cli("convert", table, "--to", store, "--quiet"))
    assert f"long.csv:{line}:" in message and "'a\\x00b'" in message and "control character" in message
    assert not (store / "a.h5").exists()

    folder = tmp_path / "folder"
    folder.mkdir()
    for name in ("good.csv", "bad\x07.csv"):
        (folder / name).write_text("date,close\n2020-01-01,1.5\n2020-01-02,2.5\n")
    done = cli("convert", folder, "--to", tmp_path / "store2", "--quiet")
    message = bad_input(done)
    # error lines print control characters escaped
    assert "bad\\x07.csv:" in message and "'bad\\x07'" in message and "control character" in message
    assert sorted(p.name for p in (tmp_path / "store2").iterdir() if not p.name.startswith(".")) == ["good.h5"]


def test_a_ticker_too_long_for_a_file_name_is_bad_input_naming_it(tmp_path):
    from pairscan.store import store_files, stored_name

    longest = "t" * 252  # 255 bytes with ".h5"
    assert len(stored_name(longest, ".h5")) == 255
    with pytest.raises(PairscanError, match="too long"):
        stored_name("t" * 253, ".h5")
    with pytest.raises(PairscanError, match="too long"):
        stored_name("/" * 85, ".h5")  # each "/" takes three bytes
    folder = tmp_path / "folder"
    folder.mkdir()
    for ticker in ("a", longest):
        (folder / f"{ticker}.csv"[-255:]).write_text("date,close\n2020-01-01,1.5\n2020-01-02,2.5\n")
    done = cli("convert", folder, "--to", tmp_path / "store", "--format", "parquet", "--quiet")
    message = bad_input(done)  # 252 + ".parquet" is 260 bytes
    assert "too long" in message and "'tttt" in message
    assert list(store_files(tmp_path / "store")) == ["a"]


def test_removing_stale_output_never_leaves_the_store(tmp_path):
    store = tmp_path / "a" / "b" / "store"
    victim = tmp_path / "a" / "victim.h5"
    table = tmp_path / "long.csv"
    long_table(table, ["../../victim", "ok"])
    assert cli("convert", table, "--to", store, "--quiet").returncode == 0
    victim.write_bytes(b"the user's own file")
    stored = store / "%2E.%2F..%2Fvictim.h5"
    assert stored.is_file()
    # the same ticker with one bad row: its stale output is removed, inside the store only
    text = table.read_text().replace("../../victim,2020-01-05,", "../../victim,not a date,")
    table.write_text(text)
    bad_input(cli("convert", table, "--to", store, "--quiet"))
    assert not stored.exists()
    assert victim.read_bytes() == b"the user's own file"
    assert (store / "ok.h5").is_file()


def test_manifest_entries_naming_another_file_are_not_trusted(tmp_path):
    from pairscan.store import MANIFEST, read_manifest

    folder = tmp_path / "src"
    folder.mkdir()
    for ticker in ("a", "b"):
        (folder / f"{ticker}.csv").write_text("date,close\n2020-01-01,1.5\n2020-01-02,2.5\n")
    store = tmp_path / "store"
    assert cli("convert", folder, "--to", store, "--quiet").returncode == 0
    victim = tmp_path / "victim.h5"
    victim.write_bytes(b"keep")
    manifest = json.loads((store / MANIFEST).read_text())
    manifest["tickers"]["a"]["file"] = "b.h5"  # another ticker's file
    manifest["tickers"]["../victim"] = {**manifest["tickers"]["b"], "file": "../victim.h5"}
    (store / MANIFEST).write_text(json.dumps(manifest))
    checked = read_manifest(store)
    assert sorted(checked["tickers"]) == ["b"] and checked["damaged"] == ["../victim", "a"]
    # "../victim" has no source: its mapped file (none) would be removed, never the file its entry names
    assert cli("convert", folder, "--to", store, "--quiet").returncode == 0
    assert victim.read_bytes() == b"keep"
    assert sorted(read_manifest(store)["tickers"]) == ["a", "b"]


def test_a_store_is_never_written_over_its_parquet_sources(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    stamps = pd.date_range("2020-01-01", periods=40, freq="D")
    for i, ticker in enumerate("ab"):
        pd.DataFrame({"timestamp": stamps, "close": np.arange(40.0) + i}).to_parquet(folder / f"{ticker}.parquet")
    before = snapshot(tmp_path)
    message = one_line_error(cli("convert", folder, "--format", "parquet", "--quiet"))
    assert "--to" in message
    assert snapshot(tmp_path) == before  # not even a lock file
    assert cli("convert", folder, "--format", "parquet", "--to", tmp_path / "store", "--quiet").returncode == 0
    assert snapshot(tmp_path, skip=tmp_path / "store") == before


@pytest.mark.parametrize("name", [".pairscan-lock", ".pairscan-manifest.json"])
def test_a_symlinked_lock_or_manifest_is_bad_input_and_never_followed(tmp_path, name):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "a.csv").write_text("date,close\n2020-01-01,1.5\n2020-01-02,2.5\n")
    store = tmp_path / "store"
    store.mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("the user's notes\n")
    (store / name).symlink_to("../notes.txt")
    before = snapshot(tmp_path)
    message = one_line_error(cli("convert", folder, "--to", store, "--quiet"))
    assert "symbolic link" in message and name in message
    after = snapshot(tmp_path)
    if name != ".pairscan-lock":
        after.pop("store/.pairscan-lock")  # taken before the manifest is read
    assert after == before
    fifo = tmp_path / "fifo-store"
    fifo.mkdir()
    os.mkfifo(fifo / name)
    message = one_line_error(cli("convert", folder, "--to", fifo, "--quiet"))
    assert "not a regular file" in message


def test_atomic_path_takes_a_long_name_and_removes_what_dead_writers_left(tmp_path):
    from pairscan.store import atomic_path, remove_stale_temporaries

    target = tmp_path / ("x" * 247 + ".png")  # 251 characters, a legal name
    with atomic_path(target) as tmp:
        assert len(Path(tmp).name) < 160
        Path(tmp).write_bytes(b"png")
    assert target.read_bytes() == b"png"
    # a writer killed while writing (kill -9) leaves its temporary file
    code = ("import os, sys; from pairscan.store import atomic_path\n"
            "held = [atomic_path(name) for name in sys.argv[1:]]\n"
            "for cm in held:\n"
            "    open(cm.__enter__(), 'w').write('half')\n"
            "os.kill(os.getpid(), 9)\n")
    heatmap, stored = tmp_path / "heatmap.png", tmp_path / ("s" * 240 + ".h5")
    subprocess.run([sys.executable, "-c", code, str(heatmap), str(stored), str(target)], timeout=60)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp"))
    assert len(left) == 3
    alive = tmp_path / f".heatmap.png.{os.getppid()}-abcdefgh.tmp"  # a writer still running: kept
    alive.write_bytes(b"")
    with atomic_path(heatmap) as tmp:
        Path(tmp).write_bytes(b"new")
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".heatmap.png.")] == [alive]
    # the stored file's (its long name shortened in the temporary's) is the store's to clean
    removed = remove_stale_temporaries(tmp_path)
    assert len(removed) == 1 and removed[0].startswith(".sss") and ".h5." in removed[0]
    assert len([p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]) == 2


def _pickled_store(tmp_path: Path, marker: Path) -> Path:
    """A store of two good tickers and one whose close is a pickle that touches ``marker``."""

    class Planted:
        def __reduce__(self):
            return pathlib.Path.touch, (pathlib.Path(marker),)

    folder = tmp_path / "src"
    folder.mkdir()
    stamps = pd.date_range("2020-01-01", periods=40, freq="D")
    for i, ticker in enumerate("ab"):
        pd.DataFrame({"date": stamps.strftime("%Y-%m-%d"), "close": np.sin(np.arange(40.0) + i) + 5}).to_csv(
            folder / f"{ticker}.csv", index=False)
    store = tmp_path / "store"
    assert cli("convert", folder, "--to", store, "--quiet").returncode == 0
    planted = pd.DataFrame({"close": [Planted() for _ in stamps]}, index=pd.DatetimeIndex(stamps, name="timestamp"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        planted.to_hdf(store / "evil.h5", key="data", format="fixed")
    # the attack is live: pandas' own reader runs it
    pd.read_hdf(store / "evil.h5", "/data")
    assert marker.exists()
    marker.unlink()
    return store


def test_reading_a_store_never_runs_a_pickle(tmp_path):
    from pairscan.report import dataset_facts
    from pairscan.store import read_column, read_frame

    marker = tmp_path / "ran"
    store = _pickled_store(tmp_path, marker)
    for args in (["correlate", store], ["correlate", store, "--executor", "processes"],
                 ["plot", store, "a", "evil", "--out", tmp_path / "p.png"],
                 ["plot", store, "--heatmap", "--out", tmp_path / "h.png"], ["analyze", store, "a", "evil"]):
        message = one_line_error(cli(*args, "--quiet"))
        assert "evil.h5" in message and "not a store file pairscan wrote (object column 'close')" in message, args
        assert not marker.exists(), args
    for read in (lambda p: read_column(p, "close"), read_frame):
        with pytest.raises(PairscanError, match="object column 'close'"):
            read(store / "evil.h5")
    dataset_facts(store)  # the report: from the index alone
    assert not marker.exists()
    assert not (tmp_path / "p.png").exists() and not (tmp_path / "h.png").exists()


def test_read_frame_is_pandas_for_pairscans_layout_and_refuses_others(tmp_path):
    from pairscan.readers.base import Columns
    from pairscan.store import read_frame, write_frame

    stamps = pd.DatetimeIndex(pd.date_range("2020-01-01", periods=30, freq="h").as_unit("ns").values)
    frame = pd.DataFrame({"open": np.linspace(1, 2, 30), "close": np.linspace(2, 3, 30), "volume": np.arange(30)},
                         index=pd.DatetimeIndex(stamps, name="timestamp"))
    write_frame(frame, tmp_path / "f.h5")
    write_frame(Columns(stamps.values, {c: frame[c].to_numpy() for c in frame}, "timestamp"), tmp_path / "c.h5")
    frame.assign(flag=frame["volume"] > 3, when=stamps).to_hdf(tmp_path / "p.h5", key="data", format="fixed")
    write_frame(frame, tmp_path / "f.parquet")
    for name in ("f.h5", "c.h5", "p.h5"):
        pd.testing.assert_frame_equal(read_frame(tmp_path / name), pd.read_hdf(tmp_path / name, "/data"),
                                      check_exact=True)
    pd.testing.assert_frame_equal(read_frame(tmp_path / "f.parquet"), pd.read_parquet(tmp_path / "f.parquet"))
    pd.DataFrame({"close": [1.0]}).to_hdf(tmp_path / "range.h5", key="data", format="fixed")
    frame.to_hdf(tmp_path / "table.h5", key="data", format="table")
    pd.DataFrame({"timestamp": ["x"], "close": [1.0]}).to_parquet(tmp_path / "text.parquet")
    for name in ("range.h5", "table.h5", "text.parquet"):
        with pytest.raises(PairscanError, match="not a store file pairscan wrote"):
            read_frame(tmp_path / name)


def test_an_unlistable_store_is_one_line(tmp_path, monkeypatch):
    from pairscan.store import store_files

    not_a_folder = tmp_path / "store"
    not_a_folder.write_text("a file")
    for command in ("correlate", "plot"):
        args = [command, not_a_folder] + (["--heatmap", "--out", tmp_path / "h.png"] if command == "plot" else [])
        one_line_error(cli(*args, "--quiet"))
    folder = tmp_path / "folder"
    folder.mkdir()

    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "scandir", refuse)
    with pytest.raises(PairscanError, match="cannot list the store .Permission denied"):
        store_files(folder)



# ---- parsing: bounded in depth, line length and memory; every input error one line, exit 2 ----------
# What a parser is given is bounded (readers/bounds.py); bad input of every kind is one line
# naming the file (and line), exit 2, never a traceback or exit 1.

PARSING_OK = b'{"timestamp": "2015-01-02", "close": 1.5}\n'
PARSING_OK2 = b'{"timestamp": "2015-01-05", "close": 1.7}\n'


def _parsing_peak(*args, timeout=600):
    """The command line in a child process: (exit status, stdout, stderr, peak resident bytes,
    measured with ``wait4``)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen([sys.executable, "-m", "pairscan", *map(str, args)], stdout=out, stderr=err)
        guard = threading.Timer(timeout, child.kill)  # a run that hangs fails, killed, instead of hanging the suite
        guard.start()
        try:
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            guard.cancel()
            child.returncode = 0  # reaped here
        out.seek(0)
        err.seek(0)
        return os.waitstatus_to_exitcode(status), out.read().decode(), err.read().decode(), usage.ru_maxrss * 1024


def _parsing_here(*args) -> tuple[int, str, str]:
    """The command line in this process, where its memory is not measured: (exit status, stdout, stderr)."""
    done = run_cli(*args)
    return done.returncode, done.stdout, done.stderr


def _parsing_tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root``: a file's bytes, a link's target, a folder's mark."""
    seen: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            seen[key] = "-> " + os.readlink(path)
        elif path.is_dir():
            seen[key] = "dir"
        else:
            seen[key] = path.read_bytes()
    return seen


def _parsing_one_error(err: str) -> str:
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("pairscan: error: ")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.mark.parametrize("nest", [b"[" * 1000 + b"]" * 1000, b'{"a": ' * 1000 + b"1" + b"}" * 1000])
def test_parsing_nested_json_line_is_a_bad_line_refused_before_any_parser(tmp_path, nest):
    source = tmp_path / "src"
    source.mkdir()
    line = b'{"timestamp": "2015-01-03", "close": 1.0, "x": ' + nest + b"}\n"
    (source / "aet.json").write_bytes(PARSING_OK + line + PARSING_OK2)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    before = _parsing_tree(outside), _parsing_tree(source)
    status, _, err, peak = _parsing_peak("convert", source, "--to", tmp_path / "store", timeout=120)
    assert status == 2
    assert _parsing_one_error(err).endswith("aet.json:2: invalid JSON (nested too deeply: more than 100 levels)")
    assert peak < 3 * 2**30
    assert (_parsing_tree(outside), _parsing_tree(source)) == before
    # Skipped, the line goes alone: the lines around it are kept.
    status, _, err, _ = _parsing_peak("convert", source, "--to", tmp_path / "store", "--on-bad-lines", "skip",
                                      timeout=120)
    assert status == 0, err
    stored = pd.read_hdf(tmp_path / "store" / "aet.h5", "/data")
    assert stored["close"].tolist() == [1.5, 1.7]


def test_parsing_nested_json_in_a_long_table_is_refused_naming_its_line(tmp_path):
    table = tmp_path / "all.jsonl"
    row = b'{"ticker": "a", "timestamp": "2015-01-02", "close": 1.0}\n'
    table.write_bytes(row + b'{"ticker": "b", "timestamp": "2015-01-02", "close": 1.0, "x": '
                      + b"[" * 5000 + b"]" * 5000 + b"}\n")
    status, _, err, peak = _parsing_peak("convert", table, "--to", tmp_path / "store", timeout=120)
    assert status == 2
    assert _parsing_one_error(err).endswith("all.jsonl:2: invalid JSON (nested too deeply: more than 100 levels)")
    assert peak < 3 * 2**30
    # Nested first line: found when the table's columns are read.
    table.write_bytes(b'{"ticker": "b", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}\n" + row)
    status, _, err, _ = _parsing_peak("convert", table, "--to", tmp_path / "store", timeout=120)
    assert status == 2
    assert _parsing_one_error(err).endswith("all.jsonl:1: invalid JSON (nested too deeply: more than 100 levels)")


def test_parsing_brackets_inside_strings_are_not_nesting(tmp_path):
    from pairscan.readers.jsonl import parse_file

    path = tmp_path / "aet.json"
    text = b'{"timestamp": "2015-01-02", "close": 1.0, "note": "' + b"[{" * 300 + b'\\" ]]"}\n'
    path.write_bytes(text + b'{"timestamp": "2015-01-05", "close": 2.0, "note": "x"}\n')
    frame = parse_file(path).frame
    assert frame["close"].tolist() == [1.0, 2.0]
    assert frame["note"].tolist()[0] == "[{" * 300 + '" ]]'
    # 100 levels is a record; 101 is not.
    path.write_bytes(b'{"timestamp": "2015-01-02", "close": 1.0, "x": ' + b"[" * 99 + b"]" * 99 + b"}\n")
    assert parse_file(path).frame["close"].tolist() == [1.0]
    path.write_bytes(b'{"timestamp": "2015-01-02", "close": 1.0, "x": ' + b"[" * 100 + b"]" * 100 + b"}\n")
    with pytest.raises(PairscanError, match=r"nested too deeply"):
        parse_file(path)


def test_parsing_a_line_longer_than_a_record_is_refused_without_parsing_it(tmp_path):
    from pairscan.readers.bounds import MAX_LINE_BYTES

    source = tmp_path / "src"
    source.mkdir()
    long = b'{"timestamp": "2015-01-03", "close": 1, "x": "' + b"a" * MAX_LINE_BYTES + b'"}'
    (source / "aet.json").write_bytes(PARSING_OK + long + b"\n" + PARSING_OK2)
    (source / "afl.csv").write_bytes(b"Date,Close\n2015-01-02,1\n2015-01-03," + b"1" * (MAX_LINE_BYTES + 1) + b"\n")
    status, _, err, _ = _parsing_peak("convert", source, "--to", tmp_path / "store")
    assert status == 2
    assert "Traceback" not in err
    assert f"aet.json:2: a line of {len(long)} bytes, longer than the 1 MiB a record may have" in err
    assert f"afl.csv:3: a line of {MAX_LINE_BYTES + 12} bytes, longer than the 1 MiB a record may have" in err
    status, _, err, _ = _parsing_peak("convert", source / "aet.json", "--to", tmp_path / "store")
    assert status == 2  # a single file is a long table: it has no ticker column


def test_parsing_a_file_too_large_to_read_whole_is_bad_input(tmp_path, monkeypatch):
    import pairscan.readers.base as base

    monkeypatch.setattr(base, "MAX_READ_BYTES", 1 << 16)
    source = tmp_path / "src"
    source.mkdir()
    (source / "aet.json").write_bytes(PARSING_OK * 2000)  # 84 KB
    (source / "afl.json").write_bytes(PARSING_OK)
    from pairscan.convert import ConvertFailed

    with pytest.raises(ConvertFailed) as raised:
        pairscan.convert(source, tmp_path / "store", executor="serial", quiet=True)
    (failure,) = raised.value.failures
    assert failure["file"].endswith("aet.json")
    assert failure["reason"] == ("84000 bytes, more than the 64 KiB of one ticker's file pairscan reads at once; "
                                 "give it as a long table (one file with a ticker column), which is read streamed")
    assert raised.value.summary["converted"] == 1


def test_parsing_a_zip_bomb_member_is_refused_in_bounded_memory(tmp_path):
    """A member that unpacks to more than a file is read whole (under the default
    --max-bytes) is bad input, and the convert's memory stays far below its size."""
    import zipfile

    from pairscan.readers.bounds import MAX_READ_BYTES

    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("prices/aet.json", "w", force_zip64=True) as f:
            chunk = b" " * (1 << 24)
            for _ in range(MAX_READ_BYTES // len(chunk) + 1):
                f.write(chunk)
        z.writestr("prices/afl.json", PARSING_OK)
    status, _, err, peak = _parsing_peak("convert", archive, "--to", tmp_path / "store")
    assert status == 2
    assert "aet.json: 553648128 bytes, more than the 512 MiB of one ticker's file pairscan reads at once" in err
    assert "Traceback" not in err
    assert peak < 1 * 2**30


def test_parsing_many_bad_lines_are_counted_not_kept():
    from pairscan.readers.jsonl import _parse_slow

    data = PARSING_OK + b"x\n" * 200_000 + PARSING_OK2
    frame, bad = _parse_slow(data)
    assert bad.count == 200_000
    assert bad.first == (2, "invalid JSON (Expecting value: line 1 column 1 (char 0))")
    assert frame["close"].tolist() == [1.5, 1.7]


def test_parsing_records_checked_in_batches_give_the_frame_of_one(monkeypatch):
    """The line-by-line path turns records into frames a batch at a time: the stored
    frame is the same as from one batch, across batches that differ in their keys."""
    import pairscan.readers.normalize as normalize
    from pairscan.readers.jsonl import _parse_slow

    lines = [b'{"timestamp": "2015-01-%02d", "close": %d, "volume": %d, "tag": "t%d"}' % (d, d, d, d)
             for d in range(1, 20)]
    lines[12] = b'{"timestamp": "2015-01-13", "close": 13, "extra": [1]}'
    data = b"\n".join(lines) + b"\nnot json\n"
    whole, bad = _parse_slow(data)
    monkeypatch.setattr(normalize, "BATCH", 4)
    batched, bad_batched = _parse_slow(data)
    pd.testing.assert_frame_equal(normalize.finish(whole)[0], normalize.finish(batched)[0])
    assert (bad.count, bad.first) == (bad_batched.count, bad_batched.first) == (1, (20, bad.first[1]))


@pytest.mark.parametrize("name,data,wide", [
    ("a.csv", "Date,Close\n2015-01-02,1\n".encode("utf-16"), "UTF-16"),  # with a BOM
    ("b.csv", "Date,Close\n2015-01-02,1\n".encode("utf-16-le"), "UTF-16"),  # NUL-interleaved, no BOM
    ("c.json", PARSING_OK.decode().encode("utf-16-be"), "UTF-16"),
    ("d.json", PARSING_OK.decode().encode("utf-32"), "UTF-32"),
], ids=["utf16-bom", "utf16le", "utf16be", "utf32-bom"])
def test_parsing_utf16_and_utf32_files_are_named_as_such(tmp_path, name, data, wide):
    source = tmp_path / "src"
    source.mkdir()
    (source / name).write_bytes(data)
    (source / "good.json").write_bytes(PARSING_OK)
    status, _, err = _parsing_here("convert", source, "--to", tmp_path / "store")
    assert status == 2
    assert _parsing_one_error(err) == (f"pairscan: error: {source / name}: this file is {wide} encoded; "
                                       "save it as UTF-8 (pairscan reads UTF-8 text)")


def test_parsing_a_utf16_long_table_is_named_as_such(tmp_path):
    table = tmp_path / "all.csv"
    table.write_bytes("ticker,Date,Close\na,2015-01-02,1\n".encode("utf-16"))
    with pytest.raises(PairscanError, match=r"all.csv: this file is UTF-16 encoded; save it as UTF-8"):
        pairscan.convert(table, tmp_path / "store", quiet=True)


@pytest.mark.parametrize("header,reason", [
    ("Date,Close,Close", "column 'Close' appears twice in the header; rename or remove one"),
    ("Date,Close,close", "columns 'Close' and 'close' both name 'close'; rename or remove one"),
    ("Date,Close,<CLOSE>", "columns 'Close' and '<CLOSE>' both name 'close'; rename or remove one"),
    ("Date,Close,Adj Close,adj_close",
     "columns 'Adj Close' and 'adj_close' both name 'adj_close'; rename or remove one"),
])
def test_parsing_duplicate_csv_headers_are_bad_input_naming_the_column(tmp_path, header, reason):
    from pairscan.readers import READERS

    path = tmp_path / "aet.csv"
    values = ",".join(["2015-01-02"] + ["1"] * (header.count(",")))
    path.write_text(f"{header}\n{values}\n")
    with pytest.raises(PairscanError) as raised:
        READERS["csv"].read(path)
    assert (raised.value.line, raised.value.reason) == (1, reason)
    table = tmp_path / "all.csv"
    table.write_text(f"ticker,{header}\na,{values}\n")
    with pytest.raises(PairscanError) as raised:
        pairscan.convert(table, tmp_path / "store", quiet=True)
    assert (raised.value.file, raised.value.line, raised.value.reason) == (str(table), 1, reason)


def test_parsing_a_decimal_parquet_close_is_converted_exactly(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    closes = [decimal.Decimal("1.10"), decimal.Decimal("12345678.123456789"), decimal.Decimal("0.3")]
    pq.write_table(pa.table({
        "date": pa.array([dt.date(2015, 1, 2), dt.date(2015, 1, 5), dt.date(2015, 1, 6)], pa.date32()),
        "close": pa.array(closes, pa.decimal128(20, 9)),
        "volume": pa.array([decimal.Decimal(5), decimal.Decimal(6), decimal.Decimal(7)], pa.decimal128(12, 0)),
        "adj": pa.array(closes, pa.decimal256(40, 9)),
    }), source / "aet.parquet")
    pairscan.convert(source, tmp_path / "store", quiet=True)
    stored = pd.read_hdf(tmp_path / "store" / "aet.h5", "/data")
    assert stored["close"].tolist() == [float(c) for c in closes]  # as pandas converts each Decimal
    assert stored["adj"].tolist() == [float(c) for c in closes]
    assert stored["volume"].dtype == "int64" and stored["volume"].tolist() == [5, 6, 7]


@pytest.mark.parametrize("times,shown", [
    (pa.array([dt.date(1600, 1, 1), dt.date(2015, 1, 2)], pa.date32()), '"1600-01-01"'),
    (pa.array([dt.datetime(2300, 1, 1), dt.datetime(2015, 1, 2)], pa.timestamp("us")), '"2300-01-01T00:00:00"'),
    (pa.array([dt.time(1), dt.time(2)]), '"01:00:00"'),
], ids=["date32-1600", "timestamp-2300", "time64"])
def test_parsing_a_parquet_date_outside_1677_2262_is_one_line_naming_it(tmp_path, times, shown):
    source = tmp_path / "src"
    source.mkdir()
    pq.write_table(pa.table({"date": times, "close": [1.0, 2.0], "raw": pa.array([b"a", b"b"])}),
                   source / "aet.parquet")
    status, _, err, _ = _parsing_peak("convert", source, "--to", tmp_path / "store")
    assert status == 2
    assert _parsing_one_error(err).startswith(f"pairscan: error: {source / 'aet.parquet'}:1: unparseable timestamp "
                                              f"{shown} (expected ISO 8601")


def test_parsing_an_unreadable_source_folder_is_one_line(tmp_path, monkeypatch, capsys):
    from pairscan.cli import main

    source = tmp_path / "src"
    source.mkdir()
    (source / "aet.json").write_bytes(PARSING_OK)
    listing = pathlib.Path.iterdir

    def unlistable(self):
        if self == source:
            raise PermissionError(13, "Permission denied", str(self))
        return listing(self)

    monkeypatch.setattr(pathlib.Path, "iterdir", unlistable)
    assert main(["convert", str(source), "--to", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert err == f"pairscan: error: {source}: cannot read (Permission denied)\n"
    assert not (tmp_path / "store").exists()


def test_parsing_a_source_below_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    status, _, err, _ = _parsing_peak("convert", tmp_path / "file" / "src", "--to", tmp_path / "store")
    assert status == 2
    assert _parsing_one_error(err) == f"pairscan: error: {tmp_path / 'file' / 'src'}: no such file or folder"


@pytest.mark.parametrize("args,reason", [
    (["--seed", "-1"], "--seed must be between 0 and 9223372036854775807, not -1"),
    (["--days", "100000000"], "--days must be between 1 and 60000, not 100000000"),
    (["--tickers", "0"], "--tickers must be at least 1, not 0"),
    (["--bars-per-day", "100000"], "--bars-per-day must be between 1 and 720, not 100000"),
    (["--tickers", "1000000000"], "the sample would write about 7,291,557.3 GiB (1,000,000,000 tickers x 71,175 "
                                  "bars), more than 8 GiB; ask for fewer --tickers or --days"),
    (["--days", "60000", "--bars-per-day", "700"], "--days x --bars-per-day is 42,000,000 bars a ticker, more than "
                                                   "the 4,000,000 a sample file may hold; ask for fewer days or bars"),
])
def test_parsing_sample_arguments_are_checked_up_front(tmp_path, args, reason):
    status, _, err, peak = _parsing_peak("sample", tmp_path / "s", *args, timeout=120)
    assert (status, err) == (2, f"pairscan: error: {reason}\n")
    assert not (tmp_path / "s").exists()
    assert peak < 1 * 2**30


@pytest.mark.parametrize("options,reason", [
    ({"tickers": 2.5}, "tickers must be an integer at least 1, got 2.5"),
    ({"seed": -1}, "seed must be between 0 and 9223372036854775807, not -1"),
    ({"days": "3"}, "days must be an integer between 1 and 60000, got '3'"),
    ({"bars_per_day": 0}, "bars_per_day must be between 1 and 720, not 0"),
    ({"daily": "yes"}, "daily must be True or False, got 'yes'"),
    ({"tickers": 100_000, "days": 5040, "daily": True},
     "the sample would write about 51.6 GiB (100,000 tickers x 5,040 bars), more than 8 GiB; ask for fewer tickers "
     "or days"),
])
def test_parsing_sample_api_names_the_keyword(tmp_path, options, reason):
    with pytest.raises(PairscanError) as raised:
        pairscan.sample(tmp_path / "s", **options)
    assert str(raised.value) == reason
    assert not (tmp_path / "s").exists()


def test_parsing_a_link_out_of_the_source_folder_is_refused_unless_asked(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "aet.json").write_bytes(PARSING_OK)
    (source / "real.json").write_bytes(PARSING_OK2)
    (source / "afl.json").symlink_to("real.json")  # inside: read as any file
    secret = tmp_path / "home" / "secret.json"
    secret.parent.mkdir()
    secret.write_bytes(PARSING_OK)
    (source / "aig.json").symlink_to(secret)
    before = _parsing_tree(tmp_path)
    status, _, err = _parsing_here("convert", source, "--to", tmp_path / "store")
    assert status == 2
    assert _parsing_one_error(err) == (
        f"pairscan: error: {source / 'aig.json'}: a link to {secret}, outside the source folder; pairscan does not "
        "follow it unless asked (convert --follow-links, or follow_links=True)")
    assert _parsing_tree(tmp_path) == before  # nothing read into a store
    status, _, err = _parsing_here("convert", source, "--to", tmp_path / "store", "--follow-links")
    assert status == 0, err
    assert sorted(p.name for p in (tmp_path / "store").glob("*.h5")) == ["aet.h5", "afl.h5", "aig.h5", "real.h5"]
    with pytest.raises(PairscanError, match="outside the source folder"):
        pairscan.convert(source, tmp_path / "store2", quiet=True)
    assert pairscan.convert(source, tmp_path / "store2", quiet=True, follow_links=True)["files"] == 4


@pytest.fixture(scope="module")
def parsing_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parsing-store")
    pairscan.sample(folder, tickers=3, days=2, bars_per_day=5)
    pairscan.convert(folder, quiet=True, executor="serial")
    return folder


@pytest.mark.parametrize("call,reason", [
    (lambda s: pairscan.convert(123), "source must be a path (str or os.PathLike), got 123"),
    (lambda s: pairscan.convert(s, to=5), "to must be a path (str or os.PathLike), got 5"),
    (lambda s: pairscan.convert(s, force="no"), "force must be True or False, got 'no'"),
    (lambda s: pairscan.convert(s, max_bytes="1MB"), "max_bytes must be an integer >= 1, got '1MB'"),
    (lambda s: pairscan.convert(s, ticker_column=3), "ticker_column must be a string, got 3"),
    (lambda s: pairscan.convert(s, follow_links=1), "follow_links must be True or False, got 1"),
    (lambda s: pairscan.top_pairs(s, k="3"), "k must be an integer, got '3'"),
    (lambda s: pairscan.top_pairs(s, k=2.5), "k must be an integer, got 2.5"),
    (lambda s: pairscan.top_pairs(123), "store_or_panel must be a store folder (str or os.PathLike) or a DataFrame, "
                                        "got 123"),
    (lambda s: pairscan.top_pairs(s, absolute="x"), "absolute must be True or False, got 'x'"),
    (lambda s: pairscan.top_pairs(s, block_size="x"), "block_size must be an integer >= 1, got 'x'"),
    (lambda s: pairscan.correlate(s, k=None), "k must be an integer, got None"),
    (lambda s: pairscan.correlate(s, matrix=5), "matrix must be a path (str or os.PathLike), got 5"),
    (lambda s: pairscan.correlation_matrix(5), "store_or_panel must be a store folder (str or os.PathLike) or a "
                                               "DataFrame, got 5"),
    (lambda s: pairscan.analyze(s, k="2"), "k must be an integer, got '2'"),
    (lambda s: pairscan.analyze(s, pairs=5), "pairs must be a list of (ticker, ticker) pairs, got 5"),
    (lambda s: pairscan.analyze(s, pairs=[("aet", 1)]), "pairs must be a list of (ticker, ticker) pairs, but it "
                                                        "holds ('aet', 1)"),
    (lambda s: pairscan.load_panel(5), "store must be a path (str or os.PathLike), got 5"),
    (lambda s: pairscan.load_panel(s, column=5), "column must be a string, got 5"),
    (lambda s: pairscan.load_panel(s, tickers="aet"), "tickers must be a list of strings, got 'aet'"),
    (lambda s: pairscan.extract(5), "archive must be a path, not int"),
    (lambda s: pairscan.plot_pair(s, 1, "afl"), "a must be a string, got 1"),
    (lambda s: pairscan.plot_heatmap(s, out=5), "out must be a path (str or os.PathLike), got 5"),
    (lambda s: pairscan.run(5), "source must be a path (str or os.PathLike), got 5"),
    (lambda s: pairscan.run(s, k="1"), "k must be an integer, got '1'"),
    (lambda s: pairscan.sample(None), "directory must be a path (str or os.PathLike), got None"),
])
def test_parsing_api_arguments_of_the_wrong_type_are_one_error_in_the_callers_names(parsing_store, call, reason):
    before = _parsing_tree(parsing_store)
    with pytest.raises(PairscanError) as raised:
        call(parsing_store)
    assert str(raised.value) == reason
    assert _parsing_tree(parsing_store) == before


def test_parsing_lines_are_measured_across_windows():
    """The scan measures a window of whole lines at a time: lines on either side of a
    window's edge, and a line longer than a window, are each named once, by their number."""
    from pairscan.readers.bounds import MAX_LINE_BYTES, SLICE, line_problems

    ok = b'{"timestamp": 1, "close": 2}\n'
    deep = b'{"x": ' + b"[" * 101 + b"]" * 101 + b"}\n"
    first = SLICE // len(ok) - 3
    data = ok * first + deep + ok * 1000 + deep
    assert line_problems(data) == {first + 1: "invalid JSON (nested too deeply: more than 100 levels)",
                                   first + 1002: "invalid JSON (nested too deeply: more than 100 levels)"}
    data = b"x" * (3 * SLICE) + b"\n" + ok + b"y" * (2 * SLICE)
    assert line_problems(data) == {1: f"a line of {3 * SLICE} bytes, longer than the 1 MiB a record may have",
                                   3: f"a line of {2 * SLICE} bytes, longer than the 1 MiB a record may have"}
    data = b"\n" * (2 * SLICE) + b"z" * (MAX_LINE_BYTES + 1)
    assert list(line_problems(data)) == [2 * SLICE + 1]
    assert line_problems(ok * 10_000 + b"z" * MAX_LINE_BYTES) == {}
