"""Faults: failing tasks, dead workers, a convert killed at any moment, threads on HDF5, bad arguments.

Real processes throughout: worker processes that kill themselves, a ``pairscan convert``
killed with SIGKILL, a worker of a running convert killed from outside.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import pandas as pd
import psutil
import pytest

import fault_tasks
import pairscan
from pairscan.cli import main
from pairscan.errors import PairscanError
from pairscan.executors import TaskFailed, open_pool, run_tasks
from pairscan.sample import sample_frames
from pairscan.store import MANIFEST, read_manifest, store_files, write_frame

TESTS = Path(__file__).parent
TASKS = [(f"t{i}", (f"t{i}", i)) for i in range(8)]
SQUARES = {f"t{i}": i * i for i in range(8)}
DIED = (re.escape("a worker process died (killed, out of memory, or a crash in native code) while running ")
        + "(this task|one of these tasks)")


@pytest.fixture(autouse=True)
def importable_helpers(monkeypatch):
    # Workers started by spawn or forkserver import fault_tasks by name: let them find it.
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)


def results(pool, fn, retries=0) -> dict:
    return {label: value for label, (value, _pid) in run_tasks(pool, fn, TASKS, retries=retries)}


def labels_of(err: TaskFailed) -> list[str]:
    return re.split(r", | or ", err.label)


# --- tasks that raise, and workers that die -------------------------------------------------

@pytest.mark.parametrize("executor", ["serial", "threads", "processes"])
def test_a_task_that_raises_is_named_and_retried(tmp_path, executor):
    with open_pool(executor, 2) as pool:
        with pytest.raises(TaskFailed) as caught:
            results(pool, partial(fault_tasks.raise_on, "t5", None), retries=2)
        assert caught.value.label == "t5"
        assert str(caught.value) == "task t5 failed: ValueError: boom on t5"
        marker = tmp_path / "failed-once"
        assert results(pool, partial(fault_tasks.raise_on, "t5", str(marker)), retries=1) == SQUARES
        assert marker.exists()


@pytest.mark.parametrize("killer", [fault_tasks.die_on, fault_tasks.exit_on], ids=["sigkill", "os-exit"])
def test_a_dead_worker_is_named_and_a_retry_recovers(tmp_path, killer):
    with open_pool("processes", 2) as pool:
        with pytest.raises(TaskFailed) as caught:
            results(pool, partial(killer, "t3", None))
    err = caught.value
    # The pool is handed at most workers + 1 tasks, so the dead one is among three at most.
    assert "t3" in labels_of(err) and len(labels_of(err)) <= 3
    assert re.fullmatch(rf"task {re.escape(err.label)} failed: BrokenProcessPool: {DIED}", str(err))
    marker = tmp_path / "died-once"
    with open_pool("processes", 2) as pool:
        assert results(pool, partial(killer, "t3", str(marker)), retries=1) == SQUARES
    assert marker.exists()


def test_a_worker_that_always_dies_fails_after_its_retries(tmp_path):
    with open_pool("processes", 2) as pool:
        with pytest.raises(TaskFailed) as caught:
            results(pool, partial(fault_tasks.die_on, "t6", None), retries=2)
    assert "t6" in labels_of(caught.value)
    assert str(caught.value).endswith("; tried 3 times")


def test_bad_input_in_a_task_is_not_retried(tmp_path):
    marker = tmp_path / "ran"
    with open_pool("processes", 2) as pool:
        with pytest.raises(PairscanError) as caught:
            results(pool, partial(fault_tasks.bad_input_on, "t2", str(marker)), retries=3)
    assert (caught.value.file, caught.value.line, caught.value.reason) == ("t2.json", 7, "not a number")


def test_a_callers_own_process_pool_is_not_rebuilt_but_the_death_is_named():
    with ProcessPoolExecutor(2) as executor, open_pool(executor) as pool:
        with pytest.raises(TaskFailed) as caught:
            results(pool, partial(fault_tasks.die_on, "t1", None), retries=2)
    assert "t1" in labels_of(caught.value)


# --- a convert killed at any moment ---------------------------------------------------------

def convert_process(folder: Path, store: Path, *options) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pairscan", "convert", folder, "--to", store, "--quiet", *map(str, options)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_until(proc: subprocess.Popen, ready) -> None:
    while proc.poll() is None and not ready():
        time.sleep(0.001)


def newer(paths, since_ns: int) -> int:
    count = 0
    for path in paths:
        try:
            count += path.stat().st_mtime_ns >= since_ns
        except FileNotFoundError:  # replaced while we looked
            pass
    return count


def outputs(store: Path) -> list[Path]:
    return [p for p in store.glob("*.h5") if not p.name.startswith(".")]


def assert_only_whole_files(store: Path, clean: Path) -> None:
    """Whatever a killed run left, a reader sees only whole files, each equal to a clean run's."""
    if not store.exists():
        return
    files = store_files(store)
    assert sorted(files) == sorted(p.stem for p in outputs(store))
    for ticker, path in files.items():
        pd.testing.assert_frame_equal(pd.read_hdf(path, "/data"), pd.read_hdf(clean / path.name, "/data"))
    leftovers = [p.name for p in store.iterdir() if p.suffix not in (".h5", ".json") or p.name.startswith(".")]
    assert all(name.startswith(".") for name in leftovers), leftovers
    if (store / MANIFEST).exists():
        manifest = json.loads((store / MANIFEST).read_text())  # whole JSON, never half
        want = read_manifest(clean)["tickers"]
        for ticker, entry in manifest["tickers"].items():
            assert without_stamps(entry) == without_stamps(want[ticker])
            assert (store / entry["file"]).exists()


def without_stamps(entry: dict) -> dict:
    """A manifest entry without the size and mtime of its stored file, which differ by store."""
    return {k: v for k, v in entry.items() if k not in ("file_size", "file_mtime_ns")}


def assert_same_as(store: Path, clean: Path) -> None:
    assert sorted(store_files(store)) == sorted(store_files(clean))
    for ticker, path in store_files(clean).items():
        pd.testing.assert_frame_equal(pd.read_hdf(store / path.name, "/data"), pd.read_hdf(path, "/data"))
    entries, want = read_manifest(store)["tickers"], read_manifest(clean)["tickers"]
    assert {t: without_stamps(e) for t, e in entries.items()} == {t: without_stamps(e) for t, e in want.items()}
    assert not [p.name for p in store.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def big_sample(tmp_path_factory):
    """Enough work that a convert lasts a while after it starts writing, and its clean run."""
    root = tmp_path_factory.mktemp("big")
    folder = pairscan.sample(root / "daily-stock", tickers=40, days=10, bars_per_day=195, ragged=True)
    pairscan.convert(folder, to=root / "clean", executor="threads", workers=2)
    return folder, root / "clean"


def test_a_convert_killed_at_any_moment_leaves_whole_files_and_a_rerun_finishes_it(tmp_path, big_sample):
    folder, clean = big_sample
    store = tmp_path / "store"
    moments = {
        "at once": lambda t0: True,
        "first temporary file": lambda t0: any(store.glob(".*.tmp")),
        "first output": lambda t0: newer(outputs(store), t0) >= 1,
        "manifest written": lambda t0: newer([store / MANIFEST], t0) >= 1,
        "half the outputs": lambda t0: newer(outputs(store), t0) >= 20,
    }
    for i, (moment, ready) in enumerate(moments.items()):
        executor = ("processes", "threads")[i % 2]
        t0 = time.time_ns()
        proc = convert_process(folder, store, "--force", "--executor", executor, "--workers", 2)
        wait_until(proc, lambda: ready(t0))
        os.killpg(proc.pid, signal.SIGKILL)  # the command and its workers, as a killed job
        proc.communicate()
        assert_only_whole_files(store, clean)
    done = convert_process(folder, store, "--executor", "processes", "--workers", 2)
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert_same_as(store, clean)


# --- a worker of a running convert killed from outside --------------------------------------

def pool_workers(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        parent = psutil.Process(proc.pid)
        return [c for c in parent.children() if c.cmdline() == parent.cmdline()]
    except psutil.Error:
        return []


@pytest.mark.parametrize("retries", [0, 1])
def test_a_worker_killed_mid_convert(tmp_path, big_sample, retries):
    folder, clean = big_sample
    store = tmp_path / "store"
    t0 = time.time_ns()
    proc = convert_process(folder, store, "--executor", "processes", "--workers", 2, "--retries", retries)
    wait_until(proc, lambda: newer(outputs(store), t0) >= 1 and pool_workers(proc))
    victims = pool_workers(proc)
    assert victims, "the convert finished before a worker could be killed"
    victims[0].send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    if retries:
        assert (proc.returncode, err) == (0, "")
        assert_same_as(store, clean)
        return
    assert proc.returncode == 1
    line = err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    match = re.fullmatch(rf"pairscan: task (.+) failed: BrokenProcessPool: {DIED}", line)
    assert match, line
    named = re.split(r", | or ", match[1])
    assert 1 <= len(named) <= 3 and set(named) <= {p.stem for p in folder.glob("*.json")}
    assert_only_whole_files(store, clean)
    # What the parent saw finish before the death is recorded (how much that is depends on
    # when the worker died): a rerun takes those as up to date and converts the rest.
    recorded = read_manifest(store)["tickers"]
    rerun = convert_process(folder, store, "--executor", "serial", "--json")
    out, err = rerun.communicate(timeout=120)
    assert err == "" and rerun.returncode == 0
    summary = json.loads(out)
    assert summary["up_to_date"] == len(recorded) and summary["converted"] == summary["files"] - len(recorded)
    assert_same_as(store, clean)


# --- threads on HDF5 --------------------------------------------------------------------------

THREADS_SCRIPT = """
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pairscan
from pairscan.store import read_column, read_frame, store_files

root = Path(sys.argv[1])
folders = [root / f"s{i}" for i in range(6)]
reference = store_files(root / "reference")


def read_all():
    for path in reference.values():
        read_frame(path)
        read_column(path, "close")


with ThreadPoolExecutor(12) as outer:
    jobs = [outer.submit(pairscan.convert, f, to=root / f"store{i}", executor="threads", workers=4, force=True)
            for i, f in enumerate(folders)]
    jobs += [outer.submit(read_all) for _ in range(6)]
    for job in jobs:
        job.result()
print("ok")
"""


def test_many_threads_on_hdf5_at_once_never_crash(tmp_path):
    for i in range(6):
        pairscan.sample(tmp_path / f"s{i}", tickers=8, days=2, bars_per_day=40, ragged=True, seed=i)
    pairscan.convert(tmp_path / "s0", to=tmp_path / "reference", executor="serial")
    done = subprocess.run([sys.executable, "-c", THREADS_SCRIPT, tmp_path], capture_output=True, text=True,
                          timeout=300)
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr  # a crash is a negative status
    for i in range(6):
        serial = tmp_path / f"serial{i}"
        pairscan.convert(tmp_path / f"s{i}", to=serial, executor="serial")
        for ticker, path in store_files(serial).items():
            pd.testing.assert_frame_equal(pd.read_hdf(tmp_path / f"store{i}" / path.name, "/data"),
                                          pd.read_hdf(path, "/data"))


# --- bad arguments ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "args, message",
    [
        (["convert", "{src}", "--workers", "0"], "pairscan: error: --workers must be a whole number >= 1, not '0'"),
        (["convert", "{src}", "--workers", "-2"], "pairscan: error: --workers must be a whole number >= 1, not '-2'"),
        (["convert", "{src}", "--workers", "1.5"], "pairscan: error: --workers must be a whole number >= 1, not '1.5'"),
        (["convert", "{src}", "--workers", "100000", "--executor", "processes"],
         "pairscan: error: --workers must be at most 1024, not '100000'"),
        (["correlate", "{store}", "--workers", "many"], "pairscan: error: --workers must be a whole number >= 1"),
        (["convert", "{src}", "--retries", "-1"], "pairscan: error: --retries must be >= 0, not -1"),
        (["convert", "{src}", "--retries", "twice"],
         "pairscan convert: error: argument --retries: invalid int value: 'twice' (see pairscan convert --help)"),
        (["convert", "{src}", "--connect-timeout", "nan"],
         "pairscan: error: --connect-timeout must be a positive number of seconds, not nan"),
        (["convert", "{src}", "--on-bad-lines", "ignore"], "pairscan convert: error: argument --on-bad-lines: "
                                                            "invalid choice: 'ignore' (choose from 'error', 'skip')"),
        (["convert", "{src}", "--to", "{file}/store"],
         "pairscan: error: {file}/store: cannot create the store folder (Not a directory)"),
        (["correlate", "{store}", "--column", "nope"], "no column 'nope' in the stored frame"),
        (["correlate", "{tmp}/nowhere"], "pairscan: error: {tmp}/nowhere: no such store"),
        (["correlate", "{one}"], "pairscan: error: {one}: need at least two tickers"),
        (["correlate", "{store}", "--out", "{file}/pairs.csv"], "pairscan: error: {file}/pairs.csv: cannot write"),
        (["plot", "{store}", "aet", "afl", "--out", "{file}/p.png"], "pairscan: error: {file}/p.png: cannot write"),
        (["run", "{src}", "--workdir", "{tmp}/w", "--report", "{file}/r.html"],
         "pairscan: error: {file}/r.html: cannot write"),
        (["sample", "{file}/s"], "pairscan: error: {file}/s: cannot write the sample here (Not a directory)"),
        (["sample", "{tmp}/s", "--tickers", "0"], "pairscan: error: --tickers must be at least 1, not 0"),
        (["sample", "{tmp}/s", "--bars-per-day", "721"], "pairscan: error: --bars-per-day must be between 1 and 720"),
        (["frobnicate"], "pairscan: error: argument COMMAND: invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_get_one_clear_line_and_exit_2(tmp_path, capsys, args, message):
    src = pairscan.sample(tmp_path / "src", tickers=3, days=1, bars_per_day=5)
    one = pairscan.sample(tmp_path / "one", tickers=1, days=1, bars_per_day=5)
    pairscan.convert(src, executor="serial")
    pairscan.convert(one, executor="serial")
    (tmp_path / "file").write_text("a file, not a folder")
    where = dict(src=src, store=src, one=one, file=tmp_path / "file", tmp=tmp_path)
    try:
        status = main([a.format(**where) for a in args])
    except SystemExit as exit_:  # argparse's usage errors
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.splitlines()) == 1, err
    assert message.format(**where) in err


def test_a_bad_argument_from_a_real_process(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pairscan", "convert", tmp_path, "--workers", "0"],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "pairscan: error: --workers must be a whole number >= 1, not '0'\n"


# --- killed parents, and a container's small /dev/shm ------------------------------------------

RUN = 120.0  # seconds: the most one command may take; a bound, never an assertion on speed


@pytest.fixture(scope="module")
def daily_store(tmp_path_factory) -> Path:
    """40 tickers x 1500 days of daily bars: a panel of about half a megabyte, more than a
    200k /dev/shm holds."""
    root = tmp_path_factory.mktemp("daily")
    folder = pairscan.sample(root / "daily-stock", tickers=40, days=1500, daily=True)
    store = root / "store"
    pairscan.convert(folder, to=store, executor="serial")
    return store


class PrivateShm:
    """A mount namespace of its own with a fresh tmpfs on /dev/shm (the machine's is untouched).

    A process (``sleep``) holds the namespace; commands enter it with ``nsenter``, and the
    test sees its /dev/shm through ``/proc/PID/root``.
    """

    def __init__(self, size: str, extra: list[Path]):
        mounts = [f"mount -t tmpfs -o size={size} tmpfs /dev/shm"]
        mounts += [f"mount -t tmpfs -o size=100k tmpfs '{p}'" for p in extra]
        script = " && ".join(mounts) + " && echo ready && exec sleep 3600"
        try:
            self.holder = subprocess.Popen(["unshare", "-m", "sh", "-c", script], stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True)
        except FileNotFoundError:
            pytest.skip("no unshare command: cannot mount a private /dev/shm")
        if self.holder.stdout.readline().strip() != "ready":
            why = self.holder.communicate(timeout=30)[1].strip()
            pytest.skip(f"cannot mount a private /dev/shm here (needs root and unshare -m): {why}")
        self.shm = Path(f"/proc/{self.holder.pid}/root/dev/shm")

    def popen(self, args: list, env: dict | None = None) -> subprocess.Popen:
        # nsenter enters the namespace and execs the command: the process id is pairscan's.
        return subprocess.Popen(["nsenter", "-t", str(self.holder.pid), "-m", "--", sys.executable, "-m", "pairscan",
                                 *map(str, args), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)

    def panel_files(self) -> list[str]:
        return sorted(p.name for p in self.shm.iterdir() if p.name.startswith("pairscan-panel-"))

    def close(self) -> None:
        self.holder.kill()
        self.holder.communicate()


@pytest.fixture
def private_shm():
    made = []

    def make(size: str = "64m", extra: list[Path] = ()) -> PrivateShm:
        made.append(PrivateShm(size, list(extra)))
        return made[-1]

    yield make
    for shm in made:
        shm.close()


def env_with(**values) -> dict:
    return {**os.environ, **{k: str(v) for k, v in values.items()}}


def top_by_pair(rows) -> dict:
    return {(r["a"], r["b"]): (r["corr"], r["n"]) for r in rows}


def assert_same_top(got: list[dict], want: pd.DataFrame) -> None:
    expected = top_by_pair(want.to_dict("records"))
    found = top_by_pair(got)
    assert sorted(found) == sorted(expected)
    for pair, (corr, n) in expected.items():
        assert found[pair][1] == n and abs(found[pair][0] - corr) <= 1e-12, pair


def test_a_panel_bigger_than_dev_shm_goes_to_disk_and_gives_the_serial_answer(tmp_path, daily_store, private_shm):
    rows = len(pairscan.load_panel(daily_store).index)
    assert rows * 40 * 8 > 200_000  # the panel does not fit in the tmpfs below
    shm = private_shm("200k")
    disk = tmp_path / "tmp"
    disk.mkdir()
    proc = shm.popen(["correlate", daily_store, "--executor", "processes", "--workers", 2, "--top", 780, "--json"],
                     env=env_with(TMPDIR=disk))
    out, err = proc.communicate(timeout=RUN)
    assert (proc.returncode, err) == (0, "")
    result = json.loads(out)
    assert (result["engine"], result["executor"]) == ("blocked", "processes")
    assert_same_top(result["top"], pairscan.correlate(daily_store, k=780, executor="serial").top)
    assert shm.panel_files() == [] and list(disk.iterdir()) == []


def test_no_room_for_the_panel_anywhere_is_one_line(tmp_path, daily_store, private_shm):
    small = tmp_path / "small"
    small.mkdir()
    shm = private_shm("200k", [small])
    proc = shm.popen(["correlate", daily_store, "--executor", "processes", "--workers", 2], env=env_with(TMPDIR=small))
    out, err = proc.communicate(timeout=RUN)
    assert (proc.returncode, out) == (2, "")
    [line] = err.splitlines()
    assert re.fullmatch(rf"pairscan: error: no room for the panel \(480\.0 kB\): /dev/shm has .+ free; "
                        rf"{re.escape(str(small))} has .+ free; set TMPDIR to a folder with room, or use "
                        rf"--executor threads", line), line
    assert shm.panel_files() == [] and list(small.iterdir()) == []


@pytest.fixture(scope="module")
def missed_store(tmp_path_factory) -> Path:
    """40 tickers x 500 days whose 32 largest histories lack three days that only the three
    shortest have: the load's first guess of the union misses them, and the panel (about
    160 kB) is made twice, on the guess and on the union."""
    frames = sample_frames(tickers=40, days=500, daily=True, seed=9)
    shortest = sorted(frames, key=lambda t: (len(frames[t]), t))[:3]
    days = [frames[t].index[len(frames[t]) // 2] for t in shortest]
    store = tmp_path_factory.mktemp("missed")
    for ticker, frame in frames.items():
        write_frame(frame if ticker in shortest else frame.drop(days, errors="ignore"), store / f"{ticker}.h5")
    return store


def test_no_room_for_the_second_panel_beside_the_first_reads_the_store_again(tmp_path, missed_store, private_shm):
    small = tmp_path / "small"
    small.mkdir()
    shm = private_shm("250k", [small])  # one panel, not two; none in the small TMPDIR
    proc = shm.popen(["correlate", missed_store, "--on", "returns", "--executor", "processes", "--workers", 2,
                      "--top", 780, "--json"], env=env_with(TMPDIR=small))
    out, err = proc.communicate(timeout=RUN)
    assert (proc.returncode, err) == (0, "")
    want = pairscan.correlate(missed_store, k=780, on="returns", executor="serial")
    assert len(pairscan.load_panel(missed_store).index) == 500
    assert_same_top(json.loads(out)["top"], want.top)
    assert shm.panel_files() == [] and list(small.iterdir()) == []


def children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def wait_for(condition, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + RUN
    while not condition():
        assert proc.poll() is None, f"the command ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what} within {RUN:g} s"
        time.sleep(0.005)


def assert_all_end(workers: list[psutil.Process]) -> None:
    assert workers, "no worker to watch"
    _, alive = psutil.wait_procs(workers, timeout=60)
    assert alive == [], f"workers outlived their parent: {alive}"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "kill-TERM"])
def test_a_killed_correlate_leaves_no_worker_and_no_panel(daily_store, private_shm, sig):
    shm = private_shm()
    proc = shm.popen(["correlate", daily_store, "--method", "kendall", "--executor", "processes", "--workers", 2])
    wait_for(lambda: shm.panel_files() and len(children(proc.pid)) >= 2, proc, "panel file and workers")
    workers = children(proc.pid)
    [panel] = shm.panel_files()
    assert panel.startswith(f"pairscan-panel-{proc.pid}-")  # the owner's process id, for later runs
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=RUN)
    assert_all_end(workers)
    if sig == signal.SIGTERM:
        assert (proc.returncode, out, err) == (143, "", "pairscan: terminated\n")
        assert shm.panel_files() == []  # cleaned up on the way out
    else:
        assert proc.returncode == -signal.SIGKILL
        assert shm.panel_files() == [panel]  # nothing could remove it ...
    later = shm.popen(["correlate", daily_store, "--executor", "processes", "--workers", 2, "--top", 1])
    out, err = later.communicate(timeout=RUN)
    assert (later.returncode, err) == (0, "")
    assert shm.panel_files() == []  # ... but the next run did


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "kill-TERM"])
def test_a_killed_convert_does_not_hang_a_caller_reading_its_output(tmp_path, big_sample, sig):
    folder, clean = big_sample
    store = tmp_path / "store"
    t0 = time.time_ns()
    proc = convert_process(folder, store, "--force", "--executor", "processes", "--workers", 2)
    wait_for(lambda: newer(outputs(store), t0) >= 1 and len(pool_workers(proc)) == 2, proc, "output and workers")
    workers = pool_workers(proc)
    proc.send_signal(sig)  # the command alone, not its process group
    try:
        out, err = proc.communicate(timeout=RUN)  # returns once every holder of the pipes is gone
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"the caller was still waiting {RUN:g} s after the convert was killed")
    assert_all_end(workers)
    if sig == signal.SIGTERM:
        assert (proc.returncode, err) == (143, "pairscan: terminated\n")
    assert_only_whole_files(store, clean)
