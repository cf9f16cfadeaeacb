"""Analyze benchmark: a loop of statsmodels ``coint`` + OLS against ``pairscan analyze``.

Run: ``python benchmarks/analyze.py [--tickers 3000] [--days 5040] [--top 100] [--workers 2]``

Data: the daily universe of ``benchmarks/universe.py`` (3,000 tickers, twenty years,
built once and cached). One run:

1. ``pairscan analyze STORE --top 100 --executor processes --json`` in a process of its
   own: its ``timings`` split the work into ``select`` (correlating every pair to find
   the top 100) and ``analyze`` (the analysis of those 100 pairs, reading included);
2. the loop people write today, over the same 100 pairs, one after another: read both
   tickers (``pd.read_hdf``), align them on their common timestamps, then statsmodels
   ``OLS`` (hedge ratio), ``coint`` (Engle-Granger), ``OLS`` of the spread's change on
   its level (half-life), the z-score and pandas' rolling correlation, with BLAS on one
   thread (its fastest setting for regressions this small);

and prints both times side by side with their ratio, and the largest difference
between the two answers (they must agree to 1e-6).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from universe import universe  # noqa: E402


def statsmodels_loop(store: Path, pairs: list[tuple[str, str]], window: int) -> tuple[float, list[dict]]:
    import statsmodels.api as sm
    from statsmodels.tsa.stattools import coint

    started = time.perf_counter()
    rows = []
    for a, b in pairs:
        sa = pd.read_hdf(store / f"{a}.h5", "/data")["close"]
        sb = pd.read_hdf(store / f"{b}.h5", "/data")["close"]
        both = pd.concat([sa, sb], axis=1, join="inner").dropna()
        la, lb = np.log(both.iloc[:, 0]), np.log(both.iloc[:, 1])
        fit = sm.OLS(la.to_numpy(), sm.add_constant(lb.to_numpy())).fit()
        alpha, beta = fit.params
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t, p = coint(la, lb)[:2]
        spread = la.to_numpy() - beta * lb.to_numpy() - alpha
        lam = sm.OLS(np.diff(spread), sm.add_constant(spread[:-1])).fit().params[1]
        half_life = -np.log(2) / np.log(1 + lam) if -1 < lam < 0 else np.nan
        zscore = (spread[-1] - spread.mean()) / spread.std(ddof=1)
        rolling = la.diff().rolling(window).corr(lb.diff())
        rows.append({"beta": beta, "alpha": alpha, "coint_t": t, "coint_p": p, "half_life": half_life,
                     "zscore": zscore, "rolling_median": rolling.median()})
    return time.perf_counter() - started, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=3000)
    parser.add_argument("--days", type=int, default=5040)
    parser.add_argument("--top", type=int, default=100)
    parser.add_argument("--window", type=int, default=60)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--min-periods", type=int, default=None,
                        help="pairs with fewer common days are not ranked (default: half the days)")
    args = parser.parse_args()
    min_periods = args.min_periods if args.min_periods is not None else args.days // 2

    store = universe(args.tickers, args.days)
    command = [sys.executable, "-m", "pairscan", "analyze", str(store), "--top", str(args.top),
               "--window", str(args.window), "--min-periods", str(min_periods), "--executor", "processes",
               "--workers", str(args.workers), "--json", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(done.stderr)
    out = json.loads(done.stdout)
    pairs = [(p["a"], p["b"]) for p in out["pairs"]]
    # statsmodels' regressions are small: one BLAS thread is its fastest (and fairest) setting.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        loop_seconds, loop = statsmodels_loop(store, pairs, args.window)

    worst = 0.0
    for mine, theirs in zip(out["pairs"], loop):
        for field in ("beta", "alpha", "coint_t", "coint_p", "half_life", "zscore"):
            got, want = mine[field], theirs[field]
            if got is None or want is None or not np.isfinite(want):
                continue
            worst = max(worst, abs(got - want) / max(abs(want), 1e-300))
        if mine["rolling_corr"]["median"] is not None:
            want = theirs["rolling_median"]
            worst = max(worst, abs(mine["rolling_corr"]["median"] - want) / abs(want))

    analyze_seconds = out["timings"]["analyze"]
    print(f"{args.tickers:,} tickers x {args.days:,} days (daily), top {len(pairs)} pairs "
          f"(min periods {min_periods:,}), {args.workers} workers, {os.cpu_count()} CPUs")
    print(f"{'':58}{'seconds':>9}  {'vs loop':>8}")
    print(f"{'statsmodels loop (read_hdf, OLS, coint, OLS, rolling corr)':58}{loop_seconds:>9.3f}  {'1.0x':>8}")
    print(f"{'pairscan analyze --executor processes: the analysis':58}{analyze_seconds:>9.3f}  "
          f"{loop_seconds / analyze_seconds:>7.1f}x")
    print(f"{'pairscan analyze: + finding the top pairs (correlate)':58}{out['seconds']:>9.3f}  "
          f"{'':>8}")
    print(f"largest relative difference between the two answers: {worst:.1e}")


if __name__ == "__main__":
    main()
