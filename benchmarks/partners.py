"""Partners benchmark: `correlate --with ONE` and `--with all` against the full correlate.

Run: ``python benchmarks/partners.py [--tickers 3000] [--days 5040] [--repeat 3] [--executor threads]``

Data: the daily universe of ``benchmarks/universe.py`` (built once and cached; late
listings, delistings, halts), correlated on returns with the default ranking. Each
figure is the best of ``--repeat`` runs, after one untimed read of the store so that
no run pays for the disk; the full and the ``--with ONE`` runs alternate, so that on a
shared machine both see the same load. Printed: each run's load and compute
(``timings``), and the ratios the contract asks about: the compute of ``--with ONE``
over the full correlate's compute (at most 5 %), and its wall time over the load's.
"""

from __future__ import annotations

import argparse
import json

import pairscan
from pairscan.correlate import correlate

from universe import universe


def fastest(runs: list) -> dict:
    run = min(runs, key=lambda r: r.seconds)
    return {"seconds": run.seconds, **run.timings, "result": run}


def best_of(repeat: int, **options) -> dict:
    return fastest([correlate(**options) for _ in range(repeat)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=3000)
    parser.add_argument("--days", type=int, default=5040)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--executor", default="threads")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    store = universe(args.tickers, args.days)
    pairscan.load_panel(store, on="returns", executor=args.executor)  # warm the page cache, untimed
    common = dict(source=store, k=10, on="returns", executor=args.executor)
    first = correlate(**common)
    one = first.top["a"][0]  # a ticker with ranked partners: one of the best pair
    fulls, nameds = [first], [correlate(**common, partners_of=[one])]
    for _ in range(args.repeat - 1):
        fulls.append(correlate(**common))
        nameds.append(correlate(**common, partners_of=[one]))
    full, named = fastest(fulls), fastest(nameds)
    every = best_of(max(1, args.repeat - 1), **common, partners_of="all")
    best, mine = full["result"].top.iloc[0], named["result"].top.iloc[0]
    agree = bool(mine["b"] == best["b"] and abs(mine["corr"] - best["corr"]) <= 1e-12)
    figures = {
        "store": f"{args.tickers:,} tickers x {args.days:,} days (daily, returns)",
        "executor": f"{args.executor} x{full['result'].workers}",
        "named": one,
        "best_partner_is_the_best_pair": agree,
        "full": {k: round(full[k], 3) for k in ("seconds", "load", "correlate")},
        "with_one": {k: round(named[k], 3) for k in ("seconds", "load", "correlate")},
        "with_all": {k: round(every[k], 3) for k in ("seconds", "load", "correlate")},
        "with_one_compute_over_full_compute": round(named["correlate"] / full["correlate"], 4),
        "with_one_wall_over_load": round(named["seconds"] / named["load"], 3),
        "with_all_compute_over_full_compute": round(every["correlate"] / full["correlate"], 3),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{figures['store']}, executor {figures['executor']}, best of {args.repeat}")
    for name in ("full", "with_one", "with_all"):
        f = figures[name]
        print(f"  {name:<9} wall {f['seconds']:8.3f} s   load {f['load']:8.3f} s   compute {f['correlate']:8.3f} s")
    print(f"--with {one}: compute {100 * figures['with_one_compute_over_full_compute']:.2f} % of the full "
          f"correlate's compute (contract: at most 5 %); wall {figures['with_one_wall_over_load']:.2f} x its load")
    print(f"--with {one}: its best partner is the full correlate's best pair: {agree}")
    print(f"--with all: compute {figures['with_all_compute_over_full_compute']:.2f} x the full correlate's")


if __name__ == "__main__":
    main()
