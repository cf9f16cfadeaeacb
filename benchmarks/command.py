"""The command as a user runs it: ``pairscan correlate STORE --json`` in a fresh process.

Run: ``python benchmarks/command.py [--repeat 5] [--executor threads]``

Data: the ragged 2-minute samples of ``benchmarks/correlate.py`` (60 days of 195 bars),
n=200 and n=500, stored as HDF5. For each, ``timings.correlate`` (the compute, after
the load) of:

- cold: ``python -m pairscan correlate STORE --json --quiet`` in a new process each
  run, with the default executor, as from the command line: every page of memory the
  compute touches is new to that process;
- warm: ``pairscan.correlate(STORE)`` in this process, after one untimed run;

against, at n=200, the lesson's loop over each pair once (``series[a].corr(series[b])``
for ``a < b``, the series already in memory) and, at n=500, one general DGEMM
``Z.T @ Z2`` on the same panel (the floor for any exact method). Each figure is the
best of ``--repeat`` runs; the two kinds of run alternate, so that a loaded machine
weighs on both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings

import pairscan

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from correlate import dgemm, make_store, seed_loop  # noqa: E402  (the benchmarks' shared helpers)


def cold(store: str, executor: str | None) -> float:
    """``timings.correlate`` of one ``pairscan correlate`` process."""
    command = [sys.executable, "-m", "pairscan", "correlate", store, "--json", "--quiet"]
    if executor:
        command += ["--executor", executor]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["timings"]["correlate"]


def warm(store: str, executor: str | None) -> float:
    options = {"executor": executor} if executor else {}
    return pairscan.correlate(store, **options).timings["correlate"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--executor", default=None, help="passed to both runs (default: the command's default)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    print(f"ragged 2-minute samples, {os.cpu_count()} CPUs, best of {args.repeat}, "
          f"executor {args.executor or 'default'}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="pairscan-bench-") as root:
        for n, floor in ((200, "loop"), (500, "dgemm")):
            store = make_store(root, n)
            warm(store, args.executor)  # imports, the BLAS, the pool's first start-up: not timed
            cold_s, warm_s = [], []
            for _ in range(args.repeat):
                cold_s.append(cold(store, args.executor))
                warm_s.append(warm(store, args.executor))
            c, w = min(cold_s), min(warm_s)
            if floor == "loop":
                series = {t: s.dropna() for t, s in pairscan.load_panel(store).items()}
                base = min(seed_loop(series, ordered=False) for _ in range(max(1, args.repeat // 2)))
                print(f"n={n}: the lesson's loop over each pair once {base:.3f} s "
                      f"({n * (n - 1) // 2} pairs)")
                print(f"   cold command  timings.correlate {c:.4f} s  {base / c:6.0f}x the loop   "
                      f"(runs: {' '.join(f'{t:.3f}' for t in sorted(cold_s))})")
                print(f"   warm, in process                {w:.4f} s  {base / w:6.0f}x the loop")
            else:
                base = min(dgemm(store) for _ in range(args.repeat))
                print(f"n={n}: one DGEMM Z.T @ Z2 on the same panel {base:.4f} s")
                print(f"   cold command  timings.correlate {c:.4f} s  {c / base:6.2f}x the DGEMM "
                      f"(runs: {' '.join(f'{t:.3f}' for t in sorted(cold_s))})")
                print(f"   warm, in process                {w:.4f} s  {w / base:6.2f}x the DGEMM")


if __name__ == "__main__":
    main()
