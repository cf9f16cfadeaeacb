"""Faults of the store: two converts at once, a full disk, deleted sources, a damaged manifest.

Real processes, real signals and real file systems throughout: two ``pairscan convert``
processes on one store, one stopped with SIGSTOP while it holds the lock, a private
tmpfs too small for the store (``unshare -m``, as root), manifests and stored files
damaged by hand.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import pairscan
from pairscan.cli import main
from pairscan.convert import ConvertFailed
from pairscan.store import LOCK, MANIFEST, read_frame, read_manifest, store_files

from conftest import assert_matches, oracle_pairs, oracle_series, run_cli

SUFFIX = {"hdf5": ".h5", "parquet": ".parquet"}


def cli(*args, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pairscan", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def convert_process(folder: Path, store: Path, *options) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pairscan", "convert", folder, "--to", store, "--quiet", *map(str, options)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def without_stamps(entries: dict) -> dict:
    """Manifest entries without their stored file's size and mtime, which differ by store."""
    return {t: {k: v for k, v in e.items() if k not in ("file_size", "file_mtime_ns")} for t, e in entries.items()}


def assert_same_as(store: Path, clean: Path) -> None:
    """``store`` holds what ``clean`` (a serial convert of the same source) holds, and nothing half-written."""
    files = store_files(store)
    assert sorted(files) == sorted(store_files(clean))
    for ticker, path in store_files(clean).items():
        pd.testing.assert_frame_equal(read_frame(files[ticker]), read_frame(path))
    manifest = read_manifest(store)
    assert manifest["damaged"] == []
    assert without_stamps(manifest["tickers"]) == without_stamps(read_manifest(clean)["tickers"])
    for ticker, entry in manifest["tickers"].items():  # each entry describes the file as it is
        if entry["file"] is not None:
            st = (store / entry["file"]).stat()
            assert (entry["file_size"], entry["file_mtime_ns"]) == (st.st_size, st.st_mtime_ns)
    assert not [p.name for p in store.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def daily(tmp_path_factory):
    """Daily bars of a small universe (late listings, delistings, halts) and a serial convert of them."""
    root = tmp_path_factory.mktemp("daily")
    folder = pairscan.sample(root / "src", tickers=16, days=700, daily=True)
    pairscan.convert(folder, to=root / "clean", executor="serial", quiet=True)
    return folder, root / "clean"


# --- two converts of one store at once ------------------------------------------------------

def test_two_converts_of_one_store_at_once_give_the_serial_result(tmp_path, daily):
    folder, clean = daily
    store = tmp_path / "store"
    for round_ in range(2):  # an empty store, then both rewriting a full one
        force = ["--force"] if round_ else []
        first = convert_process(folder, store, "--executor", "processes", "--workers", 2, *force)
        second = convert_process(folder, store, "--executor", "threads", "--workers", 2, *force)
        for proc in (first, second):
            out, err = proc.communicate(timeout=180)
            assert (proc.returncode, err) == (0, "")
        assert_same_as(store, clean)


def lock_holder_stopped(folder: Path, store: Path) -> subprocess.Popen:
    """A ``convert --force`` into ``store``, stopped (SIGSTOP) while it holds the store's lock."""
    for _attempt in range(5):
        proc = convert_process(folder, store, "--force", "--executor", "threads", "--workers", 2)
        lock = store / LOCK
        while proc.poll() is None and not (lock.exists() and lock.read_text().strip() == str(proc.pid)):
            time.sleep(0.001)
        os.killpg(proc.pid, signal.SIGSTOP)
        if proc.poll() is None:
            return proc
        proc.communicate()  # it finished before it could be stopped: try again
    pytest.fail("the convert always finished before it could be stopped")


def test_a_second_convert_waits_then_names_the_holder_and_readers_keep_working(tmp_path, daily):
    folder, clean = daily
    store = tmp_path / "store"
    pairscan.convert(folder, to=store, executor="serial", quiet=True)
    holder = lock_holder_stopped(folder, store)
    try:
        with open(store / LOCK) as f, pytest.raises(BlockingIOError):  # it really holds the lock
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = cli("convert", folder, "--to", store, "--lock-timeout", 0.5, "--quiet")
        assert (done.returncode, done.stdout) == (2, "")
        assert done.stderr == (f"pairscan: error: {store}: another pairscan process (pid {holder.pid}) is writing "
                               "this store; gave up after 0.5 s (--lock-timeout)\n")
        # A reader takes no lock: correlate answers while the writer is stopped mid-run.
        matrix = tmp_path / "matrix.parquet"
        read = cli("correlate", store, "--matrix", matrix, "--min-periods", 1, "--executor", "serial", "--quiet")
        assert read.returncode == 0, read.stderr
        assert_matches(pd.read_parquet(matrix), oracle_pairs(oracle_series(clean)))
        # The same store through the API: the keyword, and a bad value of it.
        with pytest.raises(pairscan.PairscanError, match=rf"another pairscan process \(pid {holder.pid}\)"):
            pairscan.convert(folder, to=store, executor="serial", lock_timeout=0)
        with pytest.raises(pairscan.PairscanError, match=r"--lock-timeout must be a number of seconds >= 0"):
            pairscan.convert(folder, to=store, executor="serial", lock_timeout=float("nan"))
    finally:
        os.killpg(holder.pid, signal.SIGCONT)
    out, err = holder.communicate(timeout=180)
    assert (holder.returncode, err) == (0, "")
    assert_same_as(store, clean)


def test_a_waiting_convert_says_whom_it_waits_for_and_finishes_after_it(tmp_path, daily):
    folder, clean = daily
    store = tmp_path / "store"
    holder = lock_holder_stopped(folder, store)
    try:
        waiter = subprocess.Popen([sys.executable, "-m", "pairscan", "convert", folder, "--to", store,
                                   "--executor", "serial", "--lock-timeout", "inf"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = waiter.stderr.readline()  # written once it has to wait
    finally:
        os.killpg(holder.pid, signal.SIGCONT)
    out, err = waiter.communicate(timeout=180)
    assert holder.wait(timeout=180) == 0
    assert line == f"pairscan: waiting for another pairscan process (pid {holder.pid}) writing {store} (up to inf s)\n"
    assert (waiter.returncode, err) == (0, "")
    assert out.startswith(f"converted 0 of 16 files (16 up to date) to hdf5 in {store}: ")
    assert_same_as(store, clean)


def test_only_the_temporary_files_of_gone_processes_are_removed(tmp_path):
    folder = pairscan.sample(tmp_path / "d", tickers=2, days=1, bars_per_day=3)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        live = [f".aet.h5.{writer.pid}-abcdefgh.tmp", f"..pairscan-manifest.json.{writer.pid}-0a1b2c3d.tmp"]
        stale = [f".afl.h5.{int(gone.stdout)}-k3j2_x9q.tmp", f".aet.parquet.{os.getpid()}-abcdefgh.tmp"]
        for name in live + stale:
            (folder / name).write_bytes(b"half")
        pairscan.convert(folder, executor="serial")
        assert sorted(p.name for p in folder.glob(".*.tmp")) == sorted(live)
    finally:
        writer.kill()
        writer.wait()
    pairscan.convert(folder, executor="serial", force=True)  # their writer is gone now
    assert not list(folder.glob(".*.tmp"))


@pytest.mark.parametrize("command, value, message", [
    ("convert", "-1", "pairscan: error: --lock-timeout must be a number of seconds >= 0, not -1.0"),
    ("convert", "nan", "pairscan: error: --lock-timeout must be a number of seconds >= 0, not nan"),
    ("convert", "soon", "pairscan convert: error: argument --lock-timeout: invalid float value: 'soon'"),
    ("run", "-2", "pairscan: error: --lock-timeout must be a number of seconds >= 0, not -2.0"),
])
def test_a_bad_lock_timeout_is_one_line(tmp_path, capsys, command, value, message):
    folder = pairscan.sample(tmp_path / "d", tickers=2, days=1, bars_per_day=3)
    where = ["--workdir", str(tmp_path / "w")] if command == "run" else []
    try:
        status = main([command, str(folder), *where, "--lock-timeout", value, "--executor", "serial"])
    except SystemExit as exit_:
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2 and len(err.splitlines()) == 1 and err.startswith(message), err


# --- a full disk ----------------------------------------------------------------------------

def _can_mount() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


needs_tmpfs = pytest.mark.skipif(not _can_mount(), reason="needs root and unshare -m for a private tmpfs mount")


def in_private_tmpfs(mount: Path, script: str, *args) -> None:
    """Run ``script`` (sh) with a tmpfs mounted on ``mount`` that only it sees.

    ``$1`` is the mount point and ``$2...`` the other arguments; ``$PAIRSCAN`` runs
    pairscan. The script copies out what the test should look at.
    """
    mount.mkdir()
    pairscan_cmd = f"{sys.executable} -m pairscan"
    done = subprocess.run(["unshare", "-m", "sh", "-c", f"set -e\n{script}", "sh", mount, *map(str, args)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PAIRSCAN": pairscan_cmd})
    assert done.returncode == 0, done.stderr


def store_size(store: Path) -> int:
    return sum(p.stat().st_size for p in store.iterdir())


@needs_tmpfs
@pytest.mark.parametrize("fmt, executor", [("hdf5", "processes"), ("parquet", "threads")])
def test_a_full_disk_is_one_line_leaves_whole_files_and_a_rerun_finishes(tmp_path, daily, fmt, executor):
    folder, _ = daily
    clean = tmp_path / "clean"
    pairscan.convert(folder, to=clean, format=fmt, executor="serial", quiet=True)
    size_k = store_size(clean) // 2 // 1024  # room for about half the store
    mount, out = tmp_path / "mnt", tmp_path / "out"
    out.mkdir()
    in_private_tmpfs(mount, """
        mount -t tmpfs -o size=$3k tmpfs "$1"
        $PAIRSCAN convert "$2" --to "$1/store" --format $5 --executor $6 --workers 2 --quiet \
            > "$4/full.out" 2> "$4/full.err" || echo $? > "$4/full.status"
        cp -a "$1/store" "$4/full"
        mount -o remount,size=64m "$1"
        $PAIRSCAN convert "$2" --to "$1/store" --format $5 --executor $6 --workers 2 --quiet \
            > "$4/rerun.out" 2> "$4/rerun.err" || echo $? > "$4/rerun.status"
        cp -a "$1/store" "$4/rerun"
    """, folder, size_k, out, fmt, executor)
    assert (out / "full.status").read_text() == "2\n"
    err = (out / "full.err").read_text()
    assert re.fullmatch(rf"pairscan: error: no space left on device writing {re.escape(str(mount))}/store/"
                        rf"[a-z0-9]+{re.escape(SUFFIX[fmt])}\n", err), err
    # What the full disk left: whole files only, each equal to the clean one, a valid manifest.
    full = out / "full"
    assert not [p.name for p in full.iterdir() if p.name.endswith(".tmp")]
    assert 0 < len(store_files(full)) < len(store_files(clean))
    clean_files = store_files(clean)
    for ticker, path in store_files(full).items():
        pd.testing.assert_frame_equal(read_frame(path), read_frame(clean_files[ticker]))
    manifest = json.loads((full / MANIFEST).read_text())
    assert read_manifest(full)["damaged"] == []
    assert set(manifest["tickers"]) <= set(store_files(full))
    # With room again, a rerun finishes the job.
    assert not (out / "rerun.status").exists(), (out / "rerun.err").read_text()
    assert (out / "rerun.err").read_text() == ""
    assert_same_as(out / "rerun", clean)


@needs_tmpfs
def test_a_manifest_that_does_not_fit_is_one_line_and_the_old_one_stays(tmp_path, daily):
    source, clean = daily
    folder = tmp_path / "src"
    shutil.copytree(source, folder)
    mount, out = tmp_path / "mnt", tmp_path / "out"
    out.mkdir()
    in_private_tmpfs(mount, """
        mount -t tmpfs -o size=8m tmpfs "$1"
        $PAIRSCAN convert "$2" --to "$1/store" --quiet
        head -c 64m /dev/zero > "$1/filler" 2>/dev/null || true
        cp "$1/store/.pairscan-manifest.json" "$3/before.json"
        $PAIRSCAN convert "$2" --to "$1/store" --quiet > "$3/noop.out" 2> "$3/noop.err"
        : > "$2/empty.json"
        $PAIRSCAN convert "$2" --to "$1/store" --quiet 2> "$3/full.err" || echo $? > "$3/full.status"
        cp -a "$1/store" "$3/full"
        rm "$1/filler"
        $PAIRSCAN convert "$2" --to "$1/store" --quiet 2> "$3/rerun.err"
        cp -a "$1/store" "$3/rerun"
    """, folder, out)
    # With nothing to do, a full disk is no matter: the manifest is not rewritten.
    assert (out / "noop.err").read_text() == ""
    assert (out / "noop.out").read_text().startswith("converted 0 of 16 files (16 up to date)")
    # A new ticker without data changes only the manifest, which does not fit.
    no_data = (f"pairscan: warning: {folder / 'empty.json'}: no records; ticker 'empty' has no data "
               "and is not stored\n")
    assert (out / "full.status").read_text() == "2\n"
    assert (out / "full.err").read_text() == no_data + (
        f"pairscan: error: no space left on device writing {mount / 'store' / MANIFEST}\n")
    assert (out / "full" / MANIFEST).read_text() == (out / "before.json").read_text()
    assert not [p.name for p in (out / "full").iterdir() if p.name.endswith(".tmp")]
    assert (out / "rerun.err").read_text() == no_data
    assert_same_as(out / "rerun", clean_with_empty(tmp_path, folder))


def clean_with_empty(tmp_path: Path, folder: Path) -> Path:
    clean = tmp_path / "clean-with-empty"
    with pytest.warns(UserWarning, match="no records"):
        pairscan.convert(folder, to=clean, executor="serial", quiet=True)
    return clean


# --- a deleted source -----------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
def test_a_ticker_whose_source_is_gone_leaves_the_store(tmp_path, fmt):
    folder = pairscan.sample(tmp_path / "src", tickers=6, days=300, daily=True)
    store = tmp_path / "store"
    pairscan.convert(folder, to=store, format=fmt, executor="serial")
    foreign = store / f"mine{SUFFIX[fmt]}"  # not pairscan's: the manifest does not name it
    shutil.copy(store / f"aig{SUFFIX[fmt]}", foreign)
    (folder / "aet.json").unlink()
    (folder / "afl.json").unlink()
    done = run_cli("convert", folder, "--to", store, "--format", fmt, "--json", "--executor", "serial")
    assert (done.returncode, done.stderr) == (0, "")
    summary = json.loads(done.stdout)
    assert (summary["files"], summary["converted"], summary["up_to_date"], summary["removed"]) == (4, 0, 4, 2)
    assert sorted(store_files(store)) == ["aig", "al", "amgn", "avy", "mine"]
    assert sorted(read_manifest(store)["tickers"]) == ["aig", "al", "amgn", "avy"]
    # What correlate ranks is what the remaining sources say.
    foreign.unlink()
    top = pairscan.top_pairs(store, k=100, executor="serial")
    assert not {"aet", "afl"} & (set(top["a"]) | set(top["b"]))
    rest = tmp_path / "rest"
    pairscan.convert(folder, to=rest, format=fmt, executor="serial")
    assert_matches(pairscan.correlation_matrix(store, min_periods=1, executor="serial"),
                   oracle_pairs(oracle_series(rest)))
    # The text line says so too.
    (folder / "aig.json").unlink()
    done = run_cli("convert", folder, "--to", store, "--format", fmt, "--executor", "serial")
    assert done.stdout.startswith(f"converted 0 of 3 files (3 up to date) to {fmt} in {store}: ")
    assert "; removed 1 ticker whose source is gone; serial x1, " in done.stdout


# --- a damaged manifest, damaged stored files -----------------------------------------------

def damage(manifest: dict, how: str) -> object:
    entries = manifest["tickers"]
    if how == "rows is text":
        entries["aet"]["rows"] = "x"
    elif how == "entry is a number":
        entries["aet"] = 5
    elif how == "entry is empty":
        entries["aet"] = {}
    elif how == "size is a bool":
        entries["aet"]["size"] = True
    elif how == "size is negative":
        entries["aet"]["size"] = -1
    elif how == "mtime is a float":
        entries["aet"]["mtime_ns"] = float(entries["aet"]["mtime_ns"])
    elif how == "no stamp":
        del entries["aet"]["file_size"]
    elif how == "file outside the store":
        entries["aet"]["file"] = "../aet.h5"
    elif how == "file of another ticker":
        entries["aet"]["file"] = "afl.h5"
    elif how == "no file but rows":
        entries["aet"]["file"] = None
    elif how == "tickers is a list":
        manifest["tickers"] = list(entries)
    elif how == "version is text":
        manifest["version"] = "2"
    elif how == "format is unknown":
        manifest["format"] = 7
    elif how == "a list":
        return [manifest]
    elif how == "not JSON":
        return None
    return manifest


ENTRY_DAMAGE = ["rows is text", "entry is a number", "entry is empty", "size is a bool", "size is negative",
                "mtime is a float", "no stamp", "file outside the store", "file of another ticker",
                "no file but rows"]
WHOLE_DAMAGE = ["tickers is a list", "version is text", "format is unknown", "a list", "not JSON"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    folder = pairscan.sample(root / "src", tickers=5, days=200, daily=True)
    pairscan.convert(folder, to=root / "clean", executor="serial")
    return folder, root / "clean"


@pytest.mark.parametrize("how", ENTRY_DAMAGE + WHOLE_DAMAGE)
def test_a_damaged_manifest_means_convert_again(tmp_path, small, how):
    folder, clean = small
    store = tmp_path / "store"
    shutil.copytree(clean, store)
    manifest = json.loads((store / MANIFEST).read_text())
    damaged = damage(manifest, how)
    (store / MANIFEST).write_text("{ not json" if damaged is None else json.dumps(damaged))
    summary = pairscan.convert(folder, to=store, executor="serial")
    again = 1 if how in ENTRY_DAMAGE else 5
    assert (summary["converted"], summary["up_to_date"], summary["removed"]) == (again, 5 - again, 0)
    assert_same_as(store, clean)


def test_a_damaged_manifest_from_the_command_line_is_no_traceback(tmp_path, small):
    folder, clean = small
    store = tmp_path / "store"
    shutil.copytree(clean, store)
    manifest = json.loads((store / MANIFEST).read_text())
    manifest["tickers"]["aet"]["rows"] = "x"
    manifest["tickers"]["afl"] = 5
    (store / MANIFEST).write_text(json.dumps(manifest))
    done = cli("convert", folder, "--to", store, "--executor", "processes", "--workers", 2)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout.startswith(f"converted 2 of 5 files (3 up to date) to hdf5 in {store}: ")
    assert_same_as(store, clean)


def test_a_damaged_manifest_removes_nothing_outside_the_store(tmp_path, small):
    folder, clean = small
    store = tmp_path / "store"
    shutil.copytree(clean, store)
    victim = tmp_path / "victim.h5"
    victim.write_text("not the store's")
    (store / "gone.h5").write_bytes((store / "aet.h5").read_bytes())
    manifest = json.loads((store / MANIFEST).read_text())
    entry = manifest["tickers"]["aet"]
    manifest["tickers"]["../victim"] = {**entry, "file": "../victim.h5"}
    manifest["tickers"]["gone"] = {**entry, "file": "../victim.h5"}  # damaged, and its source is gone
    (store / MANIFEST).write_text(json.dumps(manifest))
    summary = pairscan.convert(folder, to=store, executor="serial")
    assert victim.read_text() == "not the store's"
    # Both entries still said their tickers were converted here, and their sources are gone:
    # each ticker's own file is removed ("../victim" has none in the store), never the file an entry names.
    assert summary["removed"] == 2 and not (store / "gone.h5").exists()
    assert_same_as(store, clean)


def test_a_stored_file_truncated_swapped_or_touched_is_converted_again(tmp_path, small):
    folder, clean = small
    store = tmp_path / "store"
    pairscan.convert(folder, to=store, executor="serial")
    sizes = {t: p.stat().st_size for t, p in store_files(store).items()}
    # Truncated.
    with open(store / "aet.h5", "r+b") as f:
        f.truncate(sizes["aet"] // 2)
    # Swapped for another ticker's file (of another size), its mtime kept.
    other = next(t for t in sizes if t not in ("aet", "afl") and sizes[t] != sizes["afl"])
    shutil.copy2(store / f"{other}.h5", store / "afl.h5")
    # The same bytes, another mtime.
    entry = read_manifest(store)["tickers"][other]
    os.utime(store / f"{other}.h5", ns=(entry["file_mtime_ns"], entry["file_mtime_ns"] + 1_000_000_000))
    summary = pairscan.convert(folder, to=store, executor="serial")
    assert (summary["converted"], summary["up_to_date"]) == (3, 2)
    assert_same_as(store, clean)
    # Replaced by a folder: not taken as up to date, and named as what cannot be written.
    (store / "aet.h5").unlink()
    (store / "aet.h5").mkdir()
    with pytest.raises(ConvertFailed) as caught:
        pairscan.convert(folder, to=store, executor="serial")
    assert [(f["file"], f["reason"]) for f in caught.value.failures] == [
        (str(store / "aet.h5"), "cannot write the stored file of ticker 'aet' (Is a directory)")]
    (store / "aet.h5").rmdir()
    assert pairscan.convert(folder, to=store, executor="serial")["converted"] == 1
    assert_same_as(store, clean)
