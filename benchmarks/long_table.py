"""Write a long CSV table (ticker,date,open,high,low,close,volume) from the daily sample.

Run: ``python benchmarks/long_table.py OUT.csv [--rows 10000000]``; used by
``benchmarks/convert.py --long``. The rows are the built-in daily sample's, twenty years
a ticker, as many tickers as it takes.
"""

from __future__ import annotations

import argparse
import os

from pairscan.sample import iter_sample_frames


def write_long_csv(path: str, rows: int, days: int = 5040) -> int:
    """Write at least ``rows`` rows (whole tickers) to ``path``; return the rows written."""
    written = 0
    tmp = path + ".part"
    with open(tmp, "w") as out:
        out.write("ticker,date,open,high,low,close,volume\n")
        tickers = max(1, rows // (days // 2))
        while written < rows:
            for name, frame in iter_sample_frames(tickers, days, daily=True, seed=written):
                table = frame.reset_index()
                table.insert(0, "ticker", f"{name}.s{written}")
                table["timestamp"] = table["timestamp"].dt.strftime("%Y-%m-%d")
                out.write(table.to_csv(header=False, index=False))
                written += len(table)
                if written >= rows:
                    break
    os.replace(tmp, path)
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    print(write_long_csv(args.out, args.rows))
