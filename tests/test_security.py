"""Hostile inputs: each attack is built in a temporary folder, and nothing outside what pairscan may write changes."""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import pairscan
from pairscan.errors import PairscanError

# --- archives -----------------------------------------------------------------------------------
# An archive extracts only the data files of its data folder, into a folder of their own,
# never over a user's files or folders, and never through a link.

ROW = b'{"timestamp": "2015-01-02 09:30:00", "close": 1.5}\n'


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "pairscan", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


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
