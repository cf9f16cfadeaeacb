"""Executors: the Execution value, what each pool says it can do, and Ctrl-C.

Through the public surface: ``pairscan.executors`` (Execution, open_pool), the API
functions' ``execution=`` and the command line (in-process ``main``, and a real
process for the signals).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

import psutil
import pytest

import pairscan
from pairscan.cli import build_parser, main
from pairscan.executors import Capabilities, Execution, SerialExecutor, open_pool

# --- the Execution value --------------------------------------------------------------------


def test_an_execution_holds_its_options_normalised():
    execution = Execution("processes", workers="3", retries=2, connect_timeout=5, quiet=0)
    assert (execution.executor, execution.workers, execution.retries, execution.connect_timeout,
            execution.quiet) == ("processes", 3, 2, 5.0, False)
    assert Execution() == Execution("threads", None, 0, 10.0, True)


def test_of_replaces_only_the_options_given():
    base = Execution("serial", retries=2, quiet=False)
    assert Execution.of(base) is base
    assert Execution.of(base, workers=None, retries=None) is base
    assert Execution.of(base, retries=1) == Execution("serial", retries=1, quiet=False)
    assert Execution.of(None, executor="processes") == Execution("processes")
    with pytest.raises(TypeError, match="unknown execution option"):
        Execution.of(base, wokers=2)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(workers=0), "workers must be a whole number >= 1, not 0"),
        (dict(workers="many"), "workers must be a whole number >= 1, not 'many'"),
        (dict(workers=1.5), "workers must be a whole number >= 1, not 1.5"),
        (dict(workers=True), "workers must be a whole number >= 1, not True"),
        (dict(workers=5000), "workers must be at most 1024, not 5000"),
        (dict(retries=-1), "retries must be >= 0, not -1"),
        (dict(retries="2"), "retries must be a whole number >= 0, not '2'"),
        (dict(connect_timeout=0), "connect_timeout must be a positive number of seconds, not 0"),
        (dict(connect_timeout=float("inf")), "connect_timeout must be a positive number of seconds, not inf"),
        (dict(executor="gpu"), "unknown executor 'gpu': use serial, threads, processes, dask or tcp://HOST:PORT"),
        (dict(executor=4), "executor must be a name (serial, threads, processes, dask, tcp://HOST:PORT) or a "
                           "concurrent.futures.Executor, not int"),
        (dict(dashboard=""), "dashboard must be an address such as 127.0.0.1:8787, not ''"),
    ],
)
def test_bad_options_are_refused_once_in_the_api_names(options, message):
    with pytest.raises(pairscan.PairscanError) as raised:
        Execution(**options)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    "call",
    [
        lambda store: pairscan.correlate(store, workers=0),
        lambda store: pairscan.convert(store, workers=0),
        lambda store: pairscan.analyze(store, workers=0),
        lambda store: pairscan.load_panel(store, workers=0),
        lambda store: pairscan.plot_pair(store, "aet", "afl", workers=0),
    ],
)
def test_every_api_function_says_workers_not_the_flag(tmp_path, call):
    store = pairscan.sample(tmp_path / "s", tickers=3, days=1, bars_per_day=5)
    with pytest.raises(pairscan.PairscanError, match=r"^workers must be a whole number >= 1, not 0$"):
        call(store)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["aet.json", "afl.json", "aig.json", "s"]


@pytest.mark.parametrize("command", ["convert", "correlate", "analyze", "run", "plot"])
def test_every_command_says_the_flag(tmp_path, capsys, command):
    status = main([command, str(tmp_path / "nowhere"), "--retries", "-2"])
    assert status == 2
    assert capsys.readouterr().err == "pairscan: error: --retries must be >= 0, not -2\n"
    assert list(tmp_path.iterdir()) == []


def test_every_command_that_runs_tasks_has_the_same_executor_options():
    commands = build_parser()._subparsers._group_actions[0].choices

    def options(command: str) -> dict:
        group = next(g for g in commands[command]._action_groups if g.title == "executor")
        return {a.dest: (tuple(a.option_strings), a.default, a.help) for a in group._group_actions}

    shown = {command: options(command) for command in ("convert", "correlate", "plot", "analyze", "network", "run")}
    assert all(found == shown["convert"] for found in shown.values())
    assert set(shown["convert"]) == {"executor", "workers", "retries", "connect_timeout", "dashboard"}
    args = build_parser().parse_args(["correlate", "s", "--workers", "2", "--retries", "1", "-q"])
    assert Execution.from_args(args) == Execution("threads", workers=2, retries=1, quiet=True)


def test_an_execution_runs_every_stage_as_its_keywords_would(tmp_path):
    folder = pairscan.sample(tmp_path / "s", tickers=4, days=2, bars_per_day=20)
    serial = Execution("serial", quiet=True)
    summary = pairscan.convert(folder, execution=serial)
    assert (summary["executor"], summary["workers"]) == ("serial", 1)
    by_value = pairscan.correlate(folder, k=3, execution=serial)
    by_keywords = pairscan.correlate(folder, k=3, executor="serial")
    assert (by_value.executor, by_value.workers) == ("serial", 1)
    assert by_value.top.equals(by_keywords.top)
    # A keyword given beside the value wins over it.
    assert pairscan.correlate(folder, k=3, execution=serial, executor="threads", workers=2).workers == 2
    analysis = pairscan.analyze(folder, k=2, execution=serial)
    assert list(zip(analysis["a"], analysis["b"])) == list(zip(by_value.top["a"], by_value.top["b"]))[:2]


# --- pools: opened once, given pools left open, what each can do ----------------------------

class _Inline(Executor):
    """An executor pairscan does not know."""

    def submit(self, fn, /, *args, **kwargs):
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def test_opened_yields_a_given_pool_and_leaves_it_open():
    with ThreadPoolExecutor(3) as mine:
        with open_pool(mine) as pool:
            execution = Execution(quiet=True).using(pool)
            with execution.opened() as again:
                assert again is pool
            assert pool.executor.submit(sum, [1, 2]).result() == 3
        assert mine.submit(sum, [2, 3]).result() == 5  # the caller's executor still runs


def test_a_pool_opened_is_closed_with_its_block():
    with Execution("threads", workers=2).opened() as pool:
        assert pool.executor.submit(sum, [1, 2]).result() == 3
    with pytest.raises(RuntimeError):
        pool.executor.submit(sum, [1])


@pytest.mark.parametrize(
    "make, name, workers, can",
    [
        (lambda: "serial", "serial", 1, Capabilities(shares_memory=True, shares_files=True)),
        (lambda: "threads", "threads", 2, Capabilities(shares_memory=True, shares_files=True)),
        (lambda: "processes", "processes", 2, Capabilities(shares_files=True)),
        (lambda: SerialExecutor(), "serial", 1, Capabilities(shares_memory=True, shares_files=True)),
        (lambda: ThreadPoolExecutor(3), "threads", 3, Capabilities(shares_memory=True, shares_files=True)),
        (lambda: ProcessPoolExecutor(2), "processes", 2, Capabilities(shares_files=True)),
        (lambda: _Inline(), "_Inline", 2, Capabilities()),
    ],
)
def test_each_pool_says_what_it_can_do(make, name, workers, can):
    executor = make()
    try:
        with open_pool(executor, 2) as pool:
            assert (pool.name, pool.workers, pool.can) == (name, workers, can)
            assert pool.can.maps_files == (name == "processes")
            assert pool.executor.submit(sum, [1, 2]).result() == 3
    finally:
        if isinstance(executor, Executor):
            executor.shutdown()


def test_process_workers_leave_ctrl_c_to_the_parent():
    with open_pool("processes", 2) as pool:
        handlers = {pool.executor.submit(signal.getsignal, signal.SIGINT).result() for _ in range(4)}
    assert handlers == {signal.SIG_IGN}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # this process's own is untouched


def _listening(process: psutil.Process) -> list[tuple[str, int]]:
    found = []
    for proc in [process, *process.children(recursive=True)]:
        try:
            found += [c.laddr[:2] for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            continue
    return found


def test_a_local_dask_cluster_listens_on_this_machine_alone_and_its_workers_ignore_ctrl_c():
    before = set(_listening(psutil.Process()))
    with open_pool("dask", 2) as pool:
        assert (pool.name, pool.workers, pool.can) == ("dask", 2, Capabilities(shares_files=True, remote=True))
        opened = set(_listening(psutil.Process())) - before
        handlers = pool.client.run(signal.getsignal, signal.SIGINT)
    # The scheduler, its HTTP server (health, metrics; no dashboard) and every worker.
    assert len(opened) >= 4, opened
    assert {host for host, _ in opened} == {"127.0.0.1"}
    assert sorted(handlers.values()) == [signal.SIG_IGN, signal.SIG_IGN]


# --- Ctrl-C during a convert, from a real process -------------------------------------------

RUN = 180.0  # seconds: the most one command may take; a bound, never an assertion on speed


@pytest.fixture(scope="module")
def many_files(tmp_path_factory):
    return pairscan.sample(tmp_path_factory.mktemp("ctrl-c") / "src", tickers=48, days=40, bars_per_day=195)


@pytest.mark.parametrize("executor, after", [("processes", 0), ("processes", 1),
                                             ("processes", 8), ("dask", 2)])
def test_ctrl_c_during_a_convert_is_reported_once(tmp_path, many_files, executor, after):
    """Ctrl-C at a terminal reaches every process of its group: the parent says so in one
    line and exits 130; no worker prints a traceback of its own. ``after``: how many files
    are converted when it comes (0: as the pool starts)."""
    store = tmp_path / "store"
    command = [sys.executable, "-m", "pairscan", "convert", str(many_files), "--to", str(store),
               "--executor", executor, "--workers", "2", "-q"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own group: the signal goes where a terminal's would
    deadline = time.monotonic() + RUN
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            started = after == 0 and len(psutil.Process(proc.pid).children()) >= 2
            if started or (after and len(list(store.glob("*.h5"))) >= after):
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the convert ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=RUN)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert "Traceback" not in err, err
    assert (proc.returncode, out, err) == (130, "", "pairscan: interrupted\n")
    assert not list(store.glob("*.tmp")) and not list(store.glob(".*.tmp"))
