"""Network benchmark: the spanning forest of a large universe within a small memory limit.

Run: ``python benchmarks/network.py [--tickers 8000] [--days 400] [--memory-limit 100MB] [--executor threads]``

Data: the daily universe of ``benchmarks/universe.py`` (built once and cached; late
listings, delistings, halts), correlated on returns with the default ranking. The
command ``pairscan network STORE --on returns --memory-limit 100MB --json`` runs under
``/usr/bin/time -v``; its peak RSS is the maximum resident set size (contract: at most
450 MiB for 8,000 tickers x 400 days, where the matrix alone is 512 MB). The dense
reference, in a process of its own, is scipy's ``minimum_spanning_tree`` of pandas'
``DataFrame.corr(min_periods)`` of the panel of returns (the whole matrix in memory);
the two must have the same edges and total distance (to 1e-9).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from universe import universe

SRC = Path(__file__).resolve().parent.parent / "src"
REFERENCE = """
import json, sys, time
import numpy as np, scipy.sparse.csgraph
import pairscan
started = time.perf_counter()
panel = pairscan.load_panel(sys.argv[1], on="returns", executor="threads", quiet=True)
corr = panel.corr(min_periods=int(sys.argv[2])).to_numpy()  # pandas' matrix, the oracle
names = [str(c) for c in panel.columns]
del panel
weights = np.sqrt(np.maximum(2 * (1 - corr), 0))
del corr
weights += 1.0  # csgraph takes 0 for no edge (r = 1 is d = 0): every edge 1 longer, the same tree
np.nan_to_num(weights, copy=False, nan=0.0)
weights = np.triu(weights, 1)
tree = scipy.sparse.csgraph.minimum_spanning_tree(weights).tocoo()
edges = [{"a": names[i], "b": names[j], "distance": float(w - 1)} for i, j, w in zip(tree.row, tree.col, tree.data)]
print(json.dumps({"edges": edges, "total_distance": float(sum(e["distance"] for e in edges)),
                  "seconds": time.perf_counter() - started}))
"""


def environment() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def measured(command: list[str]) -> tuple[dict, int, float]:
    """Run ``command`` under ``/usr/bin/time -v``: its JSON, peak RSS (KiB), wall seconds."""
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, env=environment())
    wall = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return json.loads(done.stdout), rss, wall


def edge_set(answer: dict) -> set:
    return {tuple(sorted((e["a"], e["b"]))) for e in answer["edges"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=8000)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--memory-limit", default="100MB")
    parser.add_argument("--executor", default="threads")
    parser.add_argument("--no-reference", action="store_true", help="skip the dense reference")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    store = universe(args.tickers, args.days, echo=not args.json)
    command = [sys.executable, "-m", "pairscan", "network", str(store), "--on", "returns", "--memory-limit",
               args.memory_limit, "--executor", args.executor, "--json", "-q"]
    answer, rss, wall = measured(command)
    figures = {
        "store": f"{args.tickers:,} tickers x {args.days:,} days (daily, returns)",
        "command": " ".join(["pairscan", command[3], "STORE", *command[5:]]),
        "forest": answer["forest"], "passes": answer["passes"], "streamed": answer["streamed"],
        "executor": f"{answer['executor']} x{answer['workers']}",
        "edges": len(answer["edges"]), "components": answer["components"],
        "total_distance": answer["total_distance"], "seconds": answer["seconds"], "timings": answer["timings"],
        "wall_seconds": round(wall, 2), "peak_rss_mib": round(rss / 1024, 1),
        "matrix_mb": round(args.tickers**2 * 8 / 1e6, 1),
    }
    if not args.no_reference:
        reference, ref_rss, ref_wall = measured([sys.executable, "-c", REFERENCE, str(store),
                                                 str(answer["min_periods"])])
        figures["reference"] = {"total_distance": reference["total_distance"],
                                "seconds": reference["seconds"], "peak_rss_mib": round(ref_rss / 1024, 1)}
        figures["same_edges"] = edge_set(answer) == edge_set(reference)
        figures["total_distance_difference"] = abs(answer["total_distance"] - reference["total_distance"])
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{figures['store']}: {figures['command']}")
    print(f"  forest {figures['forest']} ({figures['passes']} passes), executor {figures['executor']}, "
          f"{figures['edges']:,} edges, {figures['components']:,} components, total distance "
          f"{figures['total_distance']:.9f}")
    print(f"  {figures['seconds']:.1f} s of work (load {answer['timings']['load']:.1f} s), wall "
          f"{figures['wall_seconds']:.1f} s; peak RSS {figures['peak_rss_mib']:.1f} MiB (contract: at most 450 MiB; "
          f"the matrix alone is {figures['matrix_mb']:.0f} MB)")
    if "reference" in figures:
        ref = figures["reference"]
        print(f"  dense reference: total distance {ref['total_distance']:.9f}, {ref['seconds']:.1f} s, peak RSS "
              f"{ref['peak_rss_mib']:.1f} MiB")
        print(f"  same edges: {figures['same_edges']}; total distance differs by "
              f"{figures['total_distance_difference']:.3g} (contract: 1e-9)")


if __name__ == "__main__":
    main()
