"""Backtest benchmark: `pairscan backtest` against pandas' DataFrame.corr on the same slices.

Run: ``python benchmarks/backtest.py [--tickers 1000] [--days 2520] [--executor threads] [--repeat 2]``

Data: the daily universe of ``benchmarks/universe.py`` (built once and cached; late
listings, delistings, halts), 12M formation / 6M trading windows every 6M, on returns.
``backtest`` is timed whole, from reading the store to its result (its ``seconds``).
pandas is timed on ``DataFrame.corr(min_periods=...)`` alone, of the formation slice's
and the trading slice's returns of every window (``np.log(slice).diff()`` per ticker,
min-periods by the same auto rule), with the panel already in memory: its load and
the slicing are not counted. Each figure is the best of ``--repeat`` runs, the two sides
interleaved, after one untimed read of the store so that no run pays for the disk.
``ratio`` is pandas' seconds over backtest's whole seconds; ``ratio_windows_only``
leaves out backtest's read of the store, as pandas' is left out.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

import pairscan
from pairscan.selection import auto_min_periods

from universe import universe


def pandas_seconds(panel: pd.DataFrame, result: pairscan.Backtest) -> float:
    """DataFrame.corr alone on every window's formation and trading slices."""
    slices = []
    for w in result.windows.to_dict(orient="records"):
        for low, high in ((w["formation_start"], w["formation_end"]), (w["trading_start"], w["trading_end"])):
            prices = panel[(panel.index >= low) & (panel.index < high)]
            returns = pd.concat({t: np.log(s.dropna()).diff() for t, s in prices.items()}, axis=1, sort=True)
            returns = returns.loc[:, returns.notna().any()]
            slices.append((returns, auto_min_periods(returns.notna().sum().to_numpy())))
    started = time.perf_counter()
    for returns, periods in slices:
        returns.corr(min_periods=periods)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=1000)
    parser.add_argument("--days", type=int, default=2520)
    parser.add_argument("--executor", default="threads")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    store = universe(args.tickers, args.days)
    panel = pairscan.load_panel(store, executor=args.executor)  # warms the page cache; pandas' panel
    # Interleaved, so that both sides see the same load on a shared machine.
    runs, theirs = [], []
    for _ in range(args.repeat):
        runs.append(pairscan.backtest(store, on="returns", executor=args.executor, workers=args.workers))
        theirs.append(pandas_seconds(panel, runs[-1]))
    best, theirs = min(runs, key=lambda r: r.seconds), min(theirs)
    figures = {
        "store": f"{args.tickers:,} tickers x {args.days:,} days (daily, returns), {len(best.windows)} windows 12M/6M",
        "executor": f"{best.executor} x{best.workers}",
        "backtest_seconds": round(best.seconds, 3),
        "backtest_timings": {k: round(v, 3) for k, v in best.timings.items()},
        "pandas_corr_seconds": round(theirs, 3),
        "ratio": round(theirs / best.seconds, 2),
        "ratio_windows_only": round(theirs / best.timings["windows"], 2),  # without backtest's read of the store
        "summary": best.summary,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for key, value in figures.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
