"""Scale-out on Dask: a real ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1,
and ``--executor dask`` (a LocalCluster). Every answer is compared with the serial run's
on every pair; a worker killed mid-run does not change it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import distributed
import numpy as np
import pandas as pd
import pytest

import pairscan
from pairscan.correlate import correlate
from pairscan.executors import open_pool
from pairscan.store import read_frame, store_files, write_frame

from conftest import assert_matches, oracle_pairs, oracle_series

START = 60.0  # seconds: the most any process may take to start or join (a loaded CI machine)
RUN = 120.0  # seconds: the most any one command may take
SIZES = dict(tickers=12, days=5, bars_per_day=40)


@dataclass
class Cluster:
    address: str
    client: distributed.Client
    root: Path
    procs: list = field(default_factory=list)

    def add_worker(self, name: str) -> subprocess.Popen:
        proc = _spawn(["worker", self.address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                       "--host", "127.0.0.1", "--name", name, "--death-timeout", "60",
                       "--local-directory", str(self.root / "scratch")], self.root / "workers", self.root / f"{name}.log")
        self.procs.append(proc)
        return proc

    def worker_named(self, name: str, timeout: float = START) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for address, info in self.client.scheduler_info(n_workers=-1)["workers"].items():
                if info.get("name") == name:
                    return address
            time.sleep(0.2)
        raise AssertionError(f"worker {name} did not join in {timeout:g} s")


def _spawn(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        # A session of its own: stopping it stops the nanny and the worker it started.
        return subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group outlived its leader


@contextlib.contextmanager
def _cluster(root: Path):
    """A scheduler and two single-thread workers on 127.0.0.1, on ports the system picks.

    The workers run in a folder of their own, so relative paths from the client would
    not resolve there: tasks must carry paths that do.
    """
    scheduler_file = root / "scheduler.json"
    procs: list[subprocess.Popen] = []
    client = None
    try:
        procs.append(_spawn(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                             "--scheduler-file", str(scheduler_file)], root / "scheduler", root / "scheduler.log"))
        address = _read_address(scheduler_file, procs[0])
        cluster = Cluster(address, None, root, procs)
        for name in ("w1", "w2"):
            cluster.add_worker(name)
        client = distributed.Client(address, timeout=START, set_as_default=False)
        client.wait_for_workers(2, timeout=START)
        cluster.client = client
        yield cluster
    finally:
        if client is not None:
            client.close()
        for proc in procs:
            _stop(proc)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A cluster the tests share: none of them may stop it."""
    with _cluster(tmp_path_factory.mktemp("cluster")) as shared:
        yield shared


def _read_address(path: Path, proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + START
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the scheduler exited at start"
        with contextlib.suppress(OSError, ValueError, KeyError):
            return json.loads(path.read_text())["address"]
        time.sleep(0.1)
    raise AssertionError(f"the scheduler wrote no address in {START:g} s")


@pytest.fixture(scope="session")
def source(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dask-source") / "daily-stock"
    pairscan.sample(folder, ragged=True, seed=3, **SIZES)
    return folder


@pytest.fixture(scope="session")
def serial_store(source) -> Path:
    store = source.parent / "store-serial"
    pairscan.convert(source, to=store, executor="serial", quiet=True)
    return store


def _cli(*args: str, cwd: Path, timeout: float = RUN) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pairscan", *args, "--quiet"], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def _same_stores(got: Path, want: Path) -> None:
    got_files, want_files = store_files(got), store_files(want)
    assert list(got_files) == list(want_files)
    for ticker in want_files:
        pd.testing.assert_frame_equal(read_frame(got_files[ticker]), read_frame(want_files[ticker]))


def _every_pair(matrix: pd.DataFrame) -> dict:
    names = list(matrix.index)
    return {(a, b): matrix.loc[a, b] for i, a in enumerate(names) for b in names[i + 1:]}


def _same_pairs(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Top lists equal: the same pairs in the same order, the same overlaps, corr to 1e-12."""
    assert list(zip(got.a, got.b, got.n)) == list(zip(want.a, want.b, want.n))
    np.testing.assert_allclose(got["corr"], want["corr"], rtol=0, atol=1e-12)


# --- an existing scheduler: --executor tcp://HOST:PORT ----------------------------------


def test_convert_and_correlate_through_a_scheduler_equal_serial(cluster, source, serial_store):
    # Relative paths from the client's folder; the workers run elsewhere.
    run = _cli("convert", source.name, "--to", "store-tcp", "--executor", cluster.address, "--json",
               cwd=source.parent)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert (summary["converted"], summary["failed"], summary["executor"], summary["workers"]) == (
        SIZES["tickers"], [], cluster.address, 2)
    store = source.parent / "store-tcp"
    _same_stores(store, serial_store)

    run = _cli("correlate", "store-tcp", "--executor", cluster.address, "--top", "66", "--json", cwd=source.parent)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    want = correlate(serial_store, k=66, executor="serial").top
    _same_pairs(pd.DataFrame(out["top"]), want)
    assert (out["engine"], out["executor"]) == ("blocked", cluster.address)


@pytest.mark.parametrize("engine, method, on", [
    ("blocked", "pearson", "prices"),
    ("blocked", "pearson", "returns"),
    ("naive", "pearson", "prices"),
    ("naive", "pearson", "returns"),
    ("auto", "spearman", "prices"),  # ragged histories: the naive engine
    ("naive", "kendall", "returns"),
])
def test_every_pair_on_the_cluster_equals_serial(cluster, serial_store, tmp_path, engine, method, on):
    serial = correlate(serial_store, k=5, engine=engine, method=method, on=on, executor="serial",
                       matrix=tmp_path / "serial.parquet")
    got = correlate(serial_store, k=5, engine=engine, method=method, on=on, executor=cluster.address,
                    matrix=tmp_path / "dask.parquet")
    assert (got.engine, got.executor, got.workers) == (serial.engine, cluster.address, 2)
    assert_matches(got.matrix, _every_pair(serial.matrix), tol=1e-12)
    if method == "pearson":
        assert_matches(got.matrix, oracle_pairs(oracle_series(serial_store, on=on)))
    # Without --matrix the top list is merged on the cluster.
    top = correlate(serial_store, k=5, engine=engine, method=method, on=on, executor=cluster.address)
    _same_pairs(top.top, serial.top)


def test_a_callers_dask_executor_and_a_panel_frame(cluster, serial_store):
    want = correlate(serial_store, k=20, executor="serial").top
    executor = cluster.client.get_executor()
    for engine in ("blocked", "naive"):
        got = pairscan.top_pairs(serial_store, k=20, executor=executor, engine=engine)
        assert got.attrs["executor"] == "dask"
        _same_pairs(got, want)
        panel = pairscan.load_panel(serial_store)
        _same_pairs(pairscan.top_pairs(panel, k=20, executor=cluster.address, engine=engine), want)
    # The executor is the caller's: still usable afterwards.
    assert executor.submit(abs, -3).result() == 3


@pytest.mark.parametrize("on", ["prices", "returns"])
def test_a_panel_loaded_on_the_cluster_is_the_oracles(cluster, serial_store, on):
    want = pd.concat(oracle_series(serial_store, on=on), axis=1, sort=True)
    got = pairscan.load_panel(serial_store, on=on, executor=cluster.address, as_frame=False)
    pd.testing.assert_frame_equal(got.to_frame(), want, check_names=False, check_freq=False)
    assert got.observations().tolist() == want.notna().sum().tolist()
    per_row = want.notna().sum(axis=1)
    assert got.full_overlap() == bool(((per_row == 0) | (per_row == want.shape[1])).all())


def test_a_bad_stored_file_is_bad_input_named_from_the_worker(cluster, serial_store, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    for path in store_files(serial_store).values():
        (store / path.name).write_bytes(path.read_bytes())
    broken = sorted(store.glob("*.h5"))[3]
    write_frame(read_frame(broken).drop(columns="close"), broken)
    for engine in ("blocked", "naive"):
        with pytest.raises(pairscan.PairscanError) as caught:
            correlate(store, engine=engine, executor=cluster.address, retries=2)
        assert caught.value.file == str(broken)


def test_a_worker_killed_mid_correlate_does_not_change_the_answer(cluster, tmp_path):
    store = _long_store(tmp_path)
    pairs = 30 * 29 // 2
    want = correlate(store, k=pairs, executor="serial")
    victim = cluster.add_worker("victim")
    victim_address = cluster.worker_named("victim")

    def executed() -> int:
        counts = cluster.client.run(lambda dask_worker: dask_worker.state.executed_count,
                                    workers=[victim_address])
        return counts[victim_address]

    # One-ticker blocks: 465 block tasks whose top lists are merged on the workers, so
    # the victim holds results that the merges still need when it dies.
    got = _run_and_kill(lambda: correlate(store, k=pairs, executor=cluster.address, block_size=1),
                        executed, lambda: os.killpg(victim.pid, signal.SIGKILL))
    victim.wait(START)
    assert len(got.top) == len(want.top) == pairs  # every pair has a correlation here
    _same_pairs(got.top, want.top)


def _long_store(tmp_path: Path) -> Path:
    folder = tmp_path / "daily-stock"
    pairscan.sample(folder, tickers=30, days=3, bars_per_day=20, ragged=True, seed=5)
    store = tmp_path / "store"
    pairscan.convert(folder, to=store, executor="serial", quiet=True)
    return store


def _run_and_kill(job, executed, kill):
    """Run ``job`` in a thread; once the victim has finished some tasks, ``kill`` it."""
    outcome: dict = {}

    def target():
        try:
            outcome["result"] = job()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.monotonic() + RUN
    while executed() < 5:
        assert thread.is_alive(), f"the run ended before the victim worked: {outcome}"
        assert time.monotonic() < deadline, "the victim never ran a task"
        time.sleep(0.02)
    assert thread.is_alive(), "the run ended before the kill"
    kill()
    thread.join(RUN)
    assert not thread.is_alive(), f"the run did not finish within {RUN:g} s of the kill"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


# --- an unreachable scheduler: exit status 2, one line, bounded time ------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_closed_port_exits_2_with_one_line(serial_store):
    port = _free_port()
    run = _cli("correlate", str(serial_store), "--executor", f"tcp://127.0.0.1:{port}", "--connect-timeout", "3",
               cwd=serial_store.parent, timeout=30)
    assert run.returncode == 2
    [line] = run.stderr.strip().splitlines()
    # The reason in brackets is the system's: refused, or timed out while retrying.
    assert line.startswith(f"pairscan: error: cannot reach a Dask scheduler at tcp://127.0.0.1:{port} within 3 s (")
    assert run.stdout == ""


def test_a_port_that_never_answers_exits_2_in_bounded_time(source, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # accepts connections and never says a word
        address = "tcp://127.0.0.1:%d" % sock.getsockname()[1]
        run = _cli("convert", str(source), "--to", str(tmp_path / "store"), "--executor", address,
                   "--connect-timeout", "2", cwd=tmp_path, timeout=30)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"pairscan: error: cannot reach a Dask scheduler at {address} within 2 s "
        "(it accepted the connection but did not answer)"]


def test_a_worker_address_is_not_a_scheduler(cluster, serial_store):
    worker = cluster.worker_named("w1")
    run = _cli("correlate", str(serial_store), "--executor", worker, "--connect-timeout", "5",
               cwd=serial_store.parent, timeout=30)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [f"pairscan: error: {worker} is a Dask Worker, not a Dask scheduler"]


# --- a local cluster: --executor dask ---------------------------------------------------


def test_run_convert_and_correlate_on_a_local_cluster_equal_serial(source, serial_store, tmp_path):
    work = tmp_path / "work"
    run = _cli("run", str(source), "--workdir", str(work), "--executor", "dask", "--workers", "2", "--top", "66",
               "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert (out["executor"], out["workers"], out["convert"]["executor"]) == ("dask", 2, "dask")
    _same_stores(work / "store", serial_store)
    serial = correlate(serial_store, k=66, executor="serial", matrix=tmp_path / "serial.parquet")
    _same_pairs(pd.DataFrame(out["top"]), serial.top)
    assert_matches(pd.read_parquet(work / "matrix.parquet"), _every_pair(serial.matrix), tol=1e-12)
    # convert and correlate apart on a cluster, the naive engine on returns among them: on the
    # scheduler above (the same tasks); here, one local cluster started by the command.


def test_a_local_cluster_worker_killed_mid_correlate(tmp_path):
    store = _long_store(tmp_path)
    pairs = 30 * 29 // 2
    want = correlate(store, k=pairs, executor="serial", matrix=tmp_path / "serial.parquet")
    with open_pool("dask", 2) as pool:
        pids = pool.client.run(os.getpid)
        victim_address, victim_pid = sorted(pids.items())[0]

        def executed() -> int:
            counts = pool.client.run(lambda dask_worker: dask_worker.state.executed_count,
                                     workers=[victim_address])
            return counts.get(victim_address, 0)

        # The worker process dies; its nanny starts another and Dask runs the lost tasks again.
        got = _run_and_kill(
            lambda: correlate(store, k=pairs, pool=pool, block_size=1, matrix=tmp_path / "dask.parquet"),
            executed, lambda: os.kill(victim_pid, signal.SIGKILL))
        assert victim_pid not in pool.client.run(os.getpid).values()
    _same_pairs(got.top, want.top)
    assert_matches(got.matrix, _every_pair(want.matrix), tol=1e-12)


# --- a cluster that goes away mid-run: one line, never a wait without end ----------------


@pytest.fixture(scope="module")
def kendall_store(tmp_path_factory) -> Path:
    """Enough pairs (1,770 one-pair tasks) that a run is still going when its cluster goes."""
    root = tmp_path_factory.mktemp("kendall")
    folder = pairscan.sample(root / "daily-stock", tickers=60, days=300, daily=True)
    pairscan.convert(folder, to=root / "store", executor="serial", quiet=True)
    return root / "store"


def _kill_mid_run(own: Cluster, store: Path, kill) -> subprocess.CompletedProcess:
    """Start a Kendall correlate on ``own``; once a worker has run a few tasks, ``kill``."""
    proc = subprocess.Popen([sys.executable, "-m", "pairscan", "correlate", str(store), "--method", "kendall",
                             "--executor", own.address, "--connect-timeout", "3", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + RUN
    while min(own.client.run(lambda dask_worker: dask_worker.state.executed_count).values(), default=0) < 5:
        assert proc.poll() is None, f"the run ended before its workers ran a task: {proc.communicate()}"
        assert time.monotonic() < deadline, "the workers never ran a task"
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before the kill"
    kill()
    try:
        out, err = proc.communicate(timeout=RUN)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"pairscan was still waiting {RUN:g} s after its cluster went")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_every_worker_killed_mid_correlate_exits_with_one_line(tmp_path, kendall_store):
    with _cluster(tmp_path) as own:
        run = _kill_mid_run(own, kendall_store, lambda: [os.killpg(p.pid, signal.SIGKILL) for p in own.procs[1:]])
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr == (f"pairscan: the Dask scheduler at {own.address} has no workers left "
                          "(none for 3 s, the --connect-timeout)\n")


def test_the_scheduler_killed_mid_correlate_is_one_line_naming_it(tmp_path, kendall_store):
    with _cluster(tmp_path) as own:
        run = _kill_mid_run(own, kendall_store, lambda: os.killpg(own.procs[0].pid, signal.SIGKILL))
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr == f"pairscan: lost the Dask scheduler at {own.address}: it stopped answering\n"


@pytest.mark.parametrize("named", ["two", "all"])
@pytest.mark.parametrize("given", ["store", "panel"])
def test_partners_on_the_cluster_equal_serial(cluster, serial_store, named, given):
    panel = pairscan.load_panel(serial_store)
    named = sorted(panel.columns)[1:3] if named == "two" else named
    source = serial_store if given == "store" else panel
    on = "returns" if given == "store" else "prices"
    want = pairscan.partners(serial_store, named, k=3, executor="serial", on=on)
    got = pairscan.partners(source, named, k=3, executor=cluster.address, block_size=5, on=on)
    assert got.attrs["executor"] == cluster.address and got.attrs["engine"] == "blocked" and len(got)
    assert list(zip(got.a, got.b, got["rank"], got.n)) == list(zip(want.a, want.b, want["rank"], want.n))
    np.testing.assert_allclose(got["corr"], want["corr"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("engine", ["blocked", "naive"])
def test_a_question_asked_on_the_cluster_is_the_oracles(cluster, serial_store, tmp_path, engine):
    # The selection travels with the tasks: the workers cut, resample and take returns themselves.
    names = sorted(store_files(serial_store))
    first = pd.read_hdf(store_files(serial_store)[names[1]], "/data").index[0]
    start = (first + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    got = correlate(serial_store, k=3, engine=engine, executor=cluster.address, matrix=tmp_path / "m.parquet",
                    min_periods=1, on="returns", start=start, resample="h", tickers=",".join(names[:-1]),
                    exclude=names[0])
    series = oracle_series(serial_store, on="returns", start=start, resample="h", tickers=names[1:-1])
    assert list(got.matrix.index) == sorted(series) and got.series == len(names) - 2
    assert_matches(got.matrix, oracle_pairs(series, min_periods=1))
