"""Archives: hostile members are refused before anything is written; good ones extract whole."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

import pairscan
from pairscan.archive import check_members
from pairscan.errors import PairscanError

from conftest import run_cli

GOOD = b'{"timestamp": "2015-01-02 09:30:00", "close": 1.5}\n'


cli = run_cli  # the command line in this process


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info, data


def build(path: Path, members: list[tuple], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode, format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    return path


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every path under ``root`` and what it holds (a link's target, a file's bytes)."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                seen[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                seen[rel] = path.read_bytes()
            else:
                seen[rel] = "dir"
    return seen


@pytest.fixture
def layout(tmp_path):
    """An ``outside`` folder beside the (not yet existing) target, holding a secret."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_bytes(GOOD)
    return tmp_path, tmp_path / "target", outside


def hostile_cases(outside: Path) -> dict[str, tuple[list[tuple], str, str]]:
    """name -> (members, the member the refusal names, the reason it gives)."""
    ok = member("daily-stock/aet.json", data=GOOD)
    return {
        "dotdot": ([ok, member("../evil.json", data=GOOD)], "../evil.json", "path contains '..'"),
        "dotdot-deep": ([ok, member("daily-stock/../../outside/evil.json", data=GOOD)],
                        "daily-stock/../../outside/evil.json", "path contains '..'"),
        "absolute": ([ok, member(str(outside / "evil.json"), data=GOOD)], str(outside / "evil.json"),
                     "absolute path"),
        "symlink-out": ([ok, member("daily-stock/out", tarfile.SYMTYPE, link="../../outside")],
                        "daily-stock/out", "symbolic link points outside the target"),
        "symlink-absolute": ([ok, member("daily-stock/abs.json", tarfile.SYMTYPE, link=str(outside / "secret.json"))],
                             "daily-stock/abs.json", "symbolic link to an absolute path"),
        "hardlink-out": ([ok, member("daily-stock/h.json", tarfile.LNKTYPE, link="../outside/secret.json")],
                         "daily-stock/h.json", "hard link points outside the target"),
        "hardlink-absolute": ([ok, member("daily-stock/h.json", tarfile.LNKTYPE, link=str(outside / "secret.json"))],
                              "daily-stock/h.json", "hard link to an absolute path"),
        # Each link looks harmless on its own; followed through p, q ends above the target.
        "symlink-chain": ([ok, member("daily-stock/p", tarfile.SYMTYPE, link=".."),
                           member("daily-stock/q", tarfile.SYMTYPE, link="p/..")],
                          "daily-stock/q", "symbolic link points outside the target"),
        "symlink-loop": ([ok, member("daily-stock/a", tarfile.SYMTYPE, link="b"),
                          member("daily-stock/b", tarfile.SYMTYPE, link="a")],
                         "daily-stock/a", "leads through more than 40 links (a loop?)"),
        # Each link names the one before twice: 2**30 steps to follow naively.
        "link-bomb": ([ok, member("daily-stock/l0", tarfile.SYMTYPE, link="."),
                       *[member(f"daily-stock/l{i}", tarfile.SYMTYPE, link=f"l{i - 1}/l{i - 1}") for i in range(1, 31)]],
                      "daily-stock/l5", "leads through more than 40 links"),
        "file-through-dir-symlink": ([ok, member("daily-stock/d", tarfile.SYMTYPE, link="."),
                                      member("daily-stock/d/afl.json", data=GOOD)],
                                     "daily-stock/d/afl.json", "path runs through the link 'daily-stock/d'"),
        "hardlink-to-missing": ([ok, member("daily-stock/h.json", tarfile.LNKTYPE, link="daily-stock/nope.json")],
                                "daily-stock/h.json", "not a file earlier in the archive"),
        "char-device": ([ok, member("daily-stock/null", tarfile.CHRTYPE)], "daily-stock/null", "device file"),
        "block-device": ([ok, member("daily-stock/sda", tarfile.BLKTYPE)], "daily-stock/sda", "device file"),
        "fifo": ([ok, member("daily-stock/pipe", tarfile.FIFOTYPE)], "daily-stock/pipe", "FIFO"),
        "unknown-type": ([ok, member("daily-stock/odd", b"Z")], "daily-stock/odd", "special file"),
    }


CASES = sorted(hostile_cases(Path("/x")))


@pytest.mark.parametrize("case", CASES)
def test_hostile_archive_is_refused_naming_the_member_and_nothing_is_written(layout, case):
    root, target, outside = layout
    members, name, reason = hostile_cases(outside)[case]
    archive = build(root / "hostile.tgz", members)
    before = snapshot(root)
    with pytest.raises(PairscanError) as caught:
        pairscan.extract(archive, target)
    message = str(caught.value)
    assert message.startswith(f"{archive}: refusing the archive: member {name!r}: ")
    assert reason in message
    assert snapshot(root) == before  # not even the target folder was made


@pytest.mark.parametrize("case", ["symlink-chain"])
def test_the_command_line_refuses_with_exit_2_and_one_line(layout, case):
    root, target, outside = layout
    members, name, reason = hostile_cases(outside)[case]
    archive = build(root / "hostile.tgz", members)
    before = snapshot(root)
    for command in (["extract", archive, "--to", target], ["convert", archive, "--to", target]):
        done = cli(*command)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 1
        assert lines[0].startswith(f"pairscan: error: {archive}: refusing the archive: member {name!r}: ")
        assert reason in lines[0]
    assert snapshot(root) == before


def test_the_data_filter_alone_would_silently_rewrite_an_absolute_member(layout):
    # Why every member is checked first: PEP 706's filter strips the leading "/" and
    # extracts the member somewhere the archive's author did not say.
    root, target, outside = layout
    archive = build(root / "a.tgz", [member(str(outside / "evil.json"), data=GOOD)])
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    assert (target / str(outside / "evil.json").lstrip("/")).read_bytes() == GOOD


def test_links_to_data_files_of_the_archive_are_extracted(tmp_path):
    members = [member("daily-stock/aet.json", data=GOOD),
               member("daily-stock/afl.json", tarfile.SYMTYPE, link="aet.json"),
               member("daily-stock/aig.json", tarfile.LNKTYPE, link="daily-stock/aet.json"),
               member("daily-stock/sub", tarfile.DIRTYPE)]
    assert check_members([info for info, _ in members]) is None
    folder = pairscan.extract(build(tmp_path / "ok.tgz", members), tmp_path / "t")
    assert folder == tmp_path / "t" / "daily-stock"
    assert os.readlink(folder / "afl.json") == "aet.json"
    assert [(folder / n).read_bytes() for n in ("aet.json", "afl.json", "aig.json")] == [GOOD] * 3
    assert not (folder / "sub").exists()  # only data files are extracted


def test_a_link_to_a_folder_is_refused_even_inside_the_target():
    # It stayed inside, but a link to anything but a data file has no business in a source.
    members = [member("daily-stock/aet.json", data=GOOD), member("daily-stock/sub", tarfile.DIRTYPE),
               member("daily-stock/sub/up", tarfile.SYMTYPE, link="..")]
    refused, why = check_members([info for info, _ in members])
    assert refused.name == "daily-stock/sub/up"
    assert why == "symbolic link to '..', which is not a regular data file of the archive (only links to those are extracted)"


def test_the_sample_archive_round_trips(tmp_path):
    archive = pairscan.sample(tmp_path / "daily-stock", tickers=3, days=1, bars_per_day=5, archive=True)
    folder = pairscan.extract(archive, tmp_path / "out")
    assert folder == tmp_path / "out" / "daily-stock"
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert names == ["aet.json", "afl.json", "aig.json"]
    for name in names:
        assert (folder / name).read_bytes() == (tmp_path / "daily-stock" / name).read_bytes()
    assert not list((tmp_path / "out").glob(".pairscan-extract-*"))
    # Extracting again over the first copy replaces the files and keeps what else is there.
    (folder / "notes.txt").write_text("mine")
    (folder / "aet.json").write_text("stale")
    assert pairscan.extract(archive, tmp_path / "out") == folder
    assert (folder / "aet.json").read_bytes() == (tmp_path / "daily-stock" / "aet.json").read_bytes()
    assert (folder / "notes.txt").read_text() == "mine"


def test_files_at_the_archive_root_and_dot_slash_names(tmp_path):
    archive = build(tmp_path / "a.tar", [member("./aet.json", data=GOOD), member("afl.json", data=GOOD)], "w")
    # Files at the top level unpack into a folder named after the archive, not among others.
    assert pairscan.extract(archive, tmp_path / "t") == tmp_path / "t" / "a"
    assert sorted(p.name for p in (tmp_path / "t" / "a").iterdir()) == [".pairscan-extracted.json", "aet.json",
                                                                       "afl.json"]


def test_a_decompression_bomb_is_stopped_by_the_size_bound(tmp_path):
    zeros = bytes(8 * 2**20)  # 8 MiB that gzip packs into a few KiB
    archive = build(tmp_path / "bomb.tgz", [member("daily-stock/aet.json", data=GOOD),
                                            member("daily-stock/bomb.json", data=zeros)])
    assert archive.stat().st_size < 64 * 2**10
    with pytest.raises(PairscanError, match="unpacks to more than 1000000 bytes .at member 'daily-stock/bomb.json'"):
        pairscan.extract(archive, tmp_path / "t", max_bytes=1_000_000)
    assert not (tmp_path / "t").exists()
    done = cli("extract", archive, "--to", tmp_path / "t", "--max-bytes", "1MB")
    assert done.returncode == 2
    assert done.stderr == (f"pairscan: error: {archive}: refusing the archive: it unpacks to more than 1000000 "
                           "bytes (at member 'daily-stock/bomb.json'; raise --max-bytes if this is expected)\n")
    done = cli("convert", archive, "--to", tmp_path / "t", "--max-bytes", "1000000")
    assert done.returncode == 2 and "unpacks to more than 1000000 bytes" in done.stderr
    assert not (tmp_path / "t").exists()
    # With room enough, the same archive extracts.
    assert pairscan.extract(archive, tmp_path / "t", max_bytes=len(zeros) + len(GOOD)) == tmp_path / "t" / "daily-stock"


@pytest.mark.parametrize("value", ["0", "lots"])
def test_a_nonsense_size_bound_is_bad_usage(tmp_path, value):
    archive = pairscan.sample(tmp_path / "d", tickers=2, days=1, bars_per_day=2, archive=True)
    done = cli("extract", archive, "--max-bytes", value)
    assert done.returncode == 2
    assert done.stderr.startswith("pairscan: error: --max-bytes must be") and len(done.stderr.splitlines()) == 1


def test_an_extraction_that_fails_midway_leaves_nothing_behind(tmp_path):
    # Every member passes the checks, but the file system refuses the second one's name:
    # the first, already unpacked in the staging folder, must not appear either.
    long_name = "daily-stock/" + "x" * 300 + ".json"
    archive = build(tmp_path / "a.tgz", [member("daily-stock/aet.json", data=GOOD), member(long_name, data=GOOD)])
    with pytest.raises(PairscanError, match=r"a\.tgz: cannot extract \(.*File name too long"):
        pairscan.extract(archive, tmp_path / "new" / "target")
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    with pytest.raises(PairscanError, match="cannot extract"):
        pairscan.extract(archive, tmp_path / "mine")
    assert list((tmp_path / "mine").iterdir()) == []


def test_a_truncated_archive_is_refused_before_anything_is_written(tmp_path):
    whole = build(tmp_path / "whole.tar", [member("daily-stock/aet.json", data=GOOD * 400)], "w")
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole.read_bytes()[:4096])
    with pytest.raises(PairscanError, match=r"cut\.tar: damaged archive \(unexpected end of data\)"):
        pairscan.extract(cut, tmp_path / "t1")
    gz = pairscan.sample(tmp_path / "d", tickers=3, days=2, bars_per_day=50, archive=True)
    short = tmp_path / "short.tgz"
    short.write_bytes(gz.read_bytes()[: gz.stat().st_size // 2])
    with pytest.raises(PairscanError, match=r"short\.tgz: damaged archive"):
        pairscan.extract(short, tmp_path / "t2")
    assert not (tmp_path / "t1").exists() and not (tmp_path / "t2").exists()


def test_garbage_and_empty_archives_are_bad_input(tmp_path):
    (tmp_path / "junk.tgz").write_bytes(b"\x00\xffnot an archive" * 20)
    with pytest.raises(PairscanError, match="not a readable tar archive"):
        pairscan.extract(tmp_path / "junk.tgz", tmp_path / "t")
    empty = build(tmp_path / "empty.tgz", [member("readme.md", data=b"hi")])
    with pytest.raises(PairscanError, match="holds no source files"):
        pairscan.extract(empty, tmp_path / "t")
    spread = build(tmp_path / "spread.tgz", [member("a/x.json", data=GOOD), member("b/y.json", data=GOOD)])
    with pytest.raises(PairscanError, match="several folders"):
        pairscan.extract(spread, tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_a_staging_folder_left_by_a_killed_extraction_is_removed(tmp_path):
    archive = pairscan.sample(tmp_path / "d", tickers=2, days=1, bars_per_day=2, archive=True)
    stale = tmp_path / "t" / ".pairscan-extract-dead"
    (stale / "daily-stock").mkdir(parents=True)
    (stale / "daily-stock" / "half.json").write_text('{"timest')
    pairscan.extract(archive, tmp_path / "t")
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["d"]


def test_an_extracted_folder_has_the_usual_permissions(tmp_path):
    # Unpacked in a staging folder that then becomes the folder: it must not stay private.
    archive = build(tmp_path / "a.tgz", [member("daily-stock/aet.json", data=GOOD)])
    mask = os.umask(0o022)
    os.umask(mask)
    folder = pairscan.extract(archive, tmp_path / "t")
    assert folder.stat().st_mode & 0o777 == 0o777 & ~mask


def test_the_staging_folder_of_an_extraction_still_at_work_is_left_alone(tmp_path):
    archive = build(tmp_path / "a.tgz", [member("daily-stock/aet.json", data=GOOD)])
    running = tmp_path / "t" / f".pairscan-extract-{os.getpid()}-feed"  # this process is alive
    dead = tmp_path / "t" / ".pairscan-extract-999999999-beef"
    for folder in (running, dead):
        (folder / "daily-stock").mkdir(parents=True)
    pairscan.extract(archive, tmp_path / "t")
    assert running.is_dir() and not dead.exists()
