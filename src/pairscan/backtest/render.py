"""A backtest for a person: the text tables, the plot, the HTML page.

The page (``backtest --report FILE.html``) is one self-contained file like the run's
report: styles inline, the figure as a PNG data URI, no scripts, nothing fetched. It
is a page of its own rather than a section of ``run --report``: a backtest answers
another question, with its own options, and is run on its own.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..outputs import PNG, check_output, printable, write_bytes
from ..plot import correlation_symbol, figure_png, plain_text, save_figure
from ..version import __version__ as VERSION
from ..wording import count
from .run import Backtest


def _num(value, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return format(value, spec)


def _pct(value) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f} %"


def _day(stamp) -> str:
    return pd.Timestamp(stamp).strftime("%Y-%m-%d")


def summary_line(result: Backtest) -> str:
    """``in-sample r 0.93 -> out-of-sample 0.71; a random pair 0.38; mean return per
    window 1.2 %, 412 trades``."""
    s = result.summary
    return (f"in-sample r {_num(s['in_corr_mean'])} -> out-of-sample {_num(s['out_corr_mean'])}; a random pair "
            f"{_num(s['out_corr_mean_all'])}; mean return per window {_pct(s['return_mean'])}, "
            f"{count(s['trades'], 'trade')}")


def headline(result: Backtest) -> str:
    sel = result.selection
    what = sel.describe()
    return (f"{result.summary['windows']} windows of {result.formation} formation + {result.trading} trading, every "
            f"{result.step}; top {result.top} by {result.rank} on {what}; entry {result.entry:g} sigma; "
            f"executor {result.executor} x{result.workers}, {result.seconds:.3f} s (each window's end date excluded)")


def text(result: Backtest) -> str:
    """Every window as a table, then the summary line."""
    blocks = [headline(result)]
    distance = result.rank == "distance"
    for w in result.windows.to_dict(orient="records"):
        head = (f"window {w['window'] + 1}: formation {_day(w['formation_start'])} .. {_day(w['formation_end'])}, "
                f"trading {_day(w['trading_start'])} .. {_day(w['trading_end'])}; {w['tickers']:,} tickers, "
                f"{w['pairs_ranked']:,} pairs ranked")
        pairs = result.pairs[result.pairs["window"] == w["window"]]
        if pairs.empty:
            blocks.append(head + "\n  no pair ranked")
            continue
        names = [(printable(a), printable(b)) for a, b in zip(pairs["a"], pairs["b"])]
        wa = max(4, *(len(a) for a, _ in names))
        wb = max(4, *(len(b) for _, b in names))
        cols = f"{'rank':>4}  {'a':<{wa}}  {'b':<{wb}}  {'in r':>7}  {'in n':>6}"
        cols += f"  {'distance':>9}" if distance else ""
        cols += f"  {'out r':>7}  {'out n':>6}  {'trades':>6}  {'return':>8}"
        lines = [head, cols]
        for (a, b), p in zip(names, pairs.to_dict(orient="records")):
            line = f"{p['rank']:>4}  {a:<{wa}}  {b:<{wb}}  {_num(p['in_corr'], '.4f'):>7}  {p['in_n']:>6}"
            line += f"  {_num(p['distance'], '.4f'):>9}" if distance else ""
            line += (f"  {_num(p['out_corr'], '.4f'):>7}  {p['out_n']:>6}  {p['trades']:>6}  "
                     f"{_pct(p['return']):>8}")
            lines.append(line)
        lines.append(f"  mean: in r {_num(w['in_corr_mean'])}, out r {_num(w['out_corr_mean'])}, every pair "
                     f"{_num(w['out_corr_mean_all'])}; return {_pct(w['return'])}, {count(w['trades'], 'trade')}")
        blocks.append("\n".join(lines))
    blocks.append(summary_line(result))
    if len(result.windows) and math.isnan(result.summary["out_corr_mean_all"]):
        periods = result.selection.min_periods
        rule = (f"{periods} common values (--min-periods)" if periods != "auto"
                else "the common values --min-periods auto asks (at least 30)")
        blocks[-1] += (f"\n(a random pair: no pair of a trading slice has {rule}; use a longer --trading, or a "
                       "lower --min-periods)")
    return "\n\n".join(blocks)


@plain_text
def figure(result: Backtest):
    """In-sample against out-of-sample correlation per window (and every pair's, out of
    sample), and the cumulative return of the rule (the windows' mean returns added up)."""
    import matplotlib.pyplot as plt

    w = result.windows
    starts = pd.to_datetime(w["trading_start"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    symbol = correlation_symbol(result.selection.method)
    top.plot(starts, w["in_corr_mean"], "o-", label="chosen pairs, formation (in sample)")
    top.plot(starts, w["out_corr_mean"], "s-", label="chosen pairs, trading (out of sample)")
    top.plot(starts, w["out_corr_mean_all"], "^--", color="grey", label="every ranked pair, trading")
    top.set_ylabel(f"mean {symbol}")
    top.grid(alpha=0.3)
    top.legend(loc="best", fontsize=8)
    top.set_title(f"{result.rank} ranking, top {result.top}: {result.formation} formation, "
                  f"{result.trading} trading, every {result.step}", fontsize=10)
    # A window's return is there at its end: the curve steps at the trading ends.
    gains = np.r_[0.0, np.cumsum(np.nan_to_num(w["return"].to_numpy(dtype=float)))]
    ends = pd.DatetimeIndex([starts.iloc[0], *pd.to_datetime(w["trading_end"])]) if len(w) else pd.DatetimeIndex([])
    bottom.step(ends, 100 * gains[: len(ends)], where="post", color="tab:green")
    bottom.plot(ends, 100 * gains[: len(ends)], "o", color="tab:green", markersize=3)
    bottom.axhline(0, color="black", linewidth=0.6)
    bottom.set_ylabel("cumulative return, %")
    bottom.set_xlabel("trading windows (markers: in-sample and out-of-sample at each start; returns at each end)")
    bottom.grid(alpha=0.3)
    bottom.set_title(f"the rule (entry {result.entry:g} sigma), mean over the pairs of each window; no costs",
                     fontsize=10)
    fig.tight_layout()
    return fig


def plot(result: Backtest, out: str | os.PathLike) -> Path:
    """Write :func:`figure` as a PNG to ``out`` (atomically)."""
    check_output(out, "--plot", PNG)
    return save_figure(figure(result), out)


def write_report(result: Backtest, path: str | os.PathLike, store: str | os.PathLike) -> Path:
    """Write the backtest's page to ``path`` (atomically); return the path."""
    path = check_output(path, "--report", (".html", ".htm"))
    return write_bytes(path, page(result, store), "--report")


def page(result: Backtest, store) -> str:
    """The backtest's self-contained HTML page."""
    e = html.escape
    png = base64.b64encode(figure_png(figure(result))).decode("ascii")
    distance = result.rank == "distance"
    rows = []
    for w in result.windows.to_dict(orient="records"):
        rows.append(f"<tr><td>{w['window'] + 1}</td><td>{_day(w['formation_start'])} &ndash; "
                    f"{_day(w['formation_end'])}</td><td>{_day(w['trading_start'])} &ndash; {_day(w['trading_end'])}"
                    f"</td><td>{w['tickers']:,}</td><td>{w['pairs_ranked']:,}</td>"
                    f"<td>{_num(w['in_corr_mean'], '.3f')}</td><td>{_num(w['out_corr_mean'], '.3f')}</td>"
                    f"<td>{_num(w['out_corr_mean_all'], '.3f')}</td><td>{_pct(w['return'])}</td>"
                    f"<td>{w['trades']}</td></tr>")
    pair_rows = []
    for p in result.pairs.to_dict(orient="records"):
        pair_rows.append(f"<tr><td>{p['window'] + 1}</td><td>{p['rank']}</td><td>{e(str(p['a']))}</td>"
                         f"<td>{e(str(p['b']))}</td><td>{_num(p['in_corr'], '.4f')}</td><td>{p['in_n']}</td>"
                         + (f"<td>{_num(p['distance'], '.4f')}</td>" if distance else "")
                         + f"<td>{_num(p['out_corr'], '.4f')}</td><td>{p['out_n']}</td><td>{p['trades']}</td>"
                         f"<td>{_pct(p['return'])}</td></tr>")
    written = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return PAGE.format(
        title=e(f"pairscan backtest: {summary_line(result)}"),
        summary=e(summary_line(result)),
        headline=e(headline(result)),
        store=e(str(store)), written=written, version=VERSION, png=png,
        windows="\n".join(rows),
        distance_head="<th>distance</th>" if distance else "",
        pairs="\n".join(pair_rows),
    )


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
td, th {{ padding: 0.2em 0.6em; border-bottom: 1px solid #ddd; text-align: right; }}
td {{ white-space: nowrap; }}
th {{ background: #f4f4f4; }}
.note {{ color: #555; font-size: 0.9em; }}
img {{ max-width: 100%; height: auto; }}
</style>
</head>
<body>
<h1>Out-of-sample backtest</h1>
<p><strong>{summary}</strong></p>
<p>{headline}</p>
<p class="note">Store <code>{store}</code>; written {written} by pairscan {version}.</p>
<p class="note">Pairs are chosen on each formation window and judged on the trading window that follows.
"Every ranked pair" is the mean correlation of all pairs ranked on the trading slice: what a pair picked
at random would have shown. Returns are the rule of Gatev, Goetzmann &amp; Rouwenhorst (2006) on one unit
of money per leg, averaged over the chosen pairs (pairs that never traded count 0): no transaction costs,
no short-sale fees, no financing.</p>
<figure><img src="data:image/png;base64,{png}"
 alt="in-sample and out-of-sample correlation per window; cumulative return"></figure>
<h2>Windows</h2>
<table>
<tr><th>window</th><th>formation</th><th>trading</th><th>tickers</th><th>pairs ranked</th><th>in r</th>
<th>out r</th><th>every pair</th><th>return</th><th>trades</th></tr>
{windows}
</table>
<h2>Chosen pairs</h2>
<table>
<tr><th>window</th><th>rank</th><th>a</th><th>b</th><th>in r</th><th>in n</th>{distance_head}<th>out r</th>
<th>out n</th><th>trades</th><th>return</th></tr>
{pairs}
</table>
</body>
</html>
"""
