"""The ``pairscan`` command: a thin layer over the Python API.

Exit status: 0 done; 2 bad input or usage (one line on stderr naming the file, line
and what is wrong); 1 anything unexpected.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
import warnings

from . import pictures, pipeline, wording
from .version import __version__
from .archive import extract
from .backtest.run import RANKS
from .convert import DEFAULT_LOCK_TIMEOUT, ConvertFailed, convert
from .correlate import DEFAULT_MEMORY_LIMIT, correlate, parse_size
from .engines import ENGINES
from .errors import PairscanError
from .heap import keep_freed_memory
from .executors import ClusterLost, Execution, TaskFailed, Terminated, parse_workers
from .readers import LAYOUTS
from .outputs import PNG, check_not_in_store, check_output, default_name, printable, write_csv
from .records import records, text_table
from .sample import check_sample, sample
from .selection import Selection
from .store import read_manifest
from .wording import count, ranked_line, summary_line


def _lock_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lock-timeout", type=float, default=DEFAULT_LOCK_TIMEOUT, metavar="S",
                        help="seconds to wait while another convert writes the same store, then give up "
                             f"(default {DEFAULT_LOCK_TIMEOUT:g}; inf: wait as long as it takes)")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, like every other bad input, and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _at_least_one(text: str) -> int:
    """A whole number >= 1, as an option's type: argparse names the option in its message."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    parser = _Parser(
        prog="pairscan",
        description="Convert per-ticker stock files to a store and find the most correlated pairs.",
        parents=[quiet],
    )
    parser.add_argument("--version", action="version", version=f"pairscan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("sample", parents=[quiet], help="write the built-in sample data set")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--tickers", type=int, default=21)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--bars-per-day", type=int, default=195)
    p.add_argument("--ragged", action="store_true", help="histories that start and end apart and miss bars")
    p.add_argument("--daily", action="store_true",
                   help="daily bars shaped like a real universe (late listings, delistings, halts); "
                        "--days 5040 is twenty years")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--archive", action="store_true", help="also write DIR.tgz, the seed's starting point")

    p = sub.add_parser("extract", parents=[quiet], help="extract an archive (.tgz, .tar, .zip) of per-ticker files")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("--to", metavar="DIR", help="where to extract (default: beside the archive)")
    p.add_argument("--max-bytes", default=None, metavar="SIZE",
                   help="refuse archives that unpack to more, e.g. 500MB (default 20GiB)")

    p = sub.add_parser("convert", parents=[quiet], help="convert per-ticker files or a long table to a store")
    p.add_argument("source", metavar="SOURCE",
                   help="a folder of <ticker>.json/.jsonl/.ndjson/.csv/.txt/.parquet files (any but Parquet also "
                        "as .gz, .bz2, .xz, .zst), an archive of one (.tgz, .tar, .zip), or one table: long (CSV, "
                        "Parquet or JSON Lines with a ticker column) or wide (CSV, one column per ticker)")
    p.add_argument("--to", metavar="STORE", help="the store folder (default: beside the source files)")
    p.add_argument("--format", choices=("hdf5", "parquet"), default="hdf5")
    p.add_argument("--on-bad-lines", choices=("error", "skip"), default="error")
    p.add_argument("--force", action="store_true", help="convert every file, even those up to date")
    p.add_argument("--follow-links", action="store_true",
                   help="read links in the source folder to files outside it (refused by default)")
    p.add_argument("--ticker-column", metavar="C", default=None,
                   help="a long table's ticker column (default: ticker, symbol or name, any case)")
    p.add_argument("--layout", choices=LAYOUTS, default="auto",
                   help="a single file's layout: long (a ticker column), wide (a time column and one column per "
                        "ticker, or a download's multi-row header) or auto (by its columns; the default)")
    p.add_argument("--close-column", metavar="C", default=None,
                   help="the column that is the close, e.g. price, 'Adj Close', last (default: close, any case)")
    p.add_argument("--date-format", metavar="FMT", default=None,
                   help="how the dates are written, as strftime, e.g. '%%b %%d %%Y' or '%%m/%%d/%%Y' "
                        "(default: ISO 8601, YYYYMMDD or epoch numbers)")
    p.add_argument("--max-bytes", default=None, metavar="SIZE",
                   help="refuse a source file larger than this, or a compressed file or archive that unpacks to "
                        "more (default 20GiB)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _lock_option(p)
    Execution.add_arguments(p)

    p = sub.add_parser("correlate", parents=[quiet], help="find the most correlated pairs of a store")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--top", type=_at_least_one, default=10, metavar="K")
    p.add_argument("--with", dest="partners_of", metavar="LIST|all",
                   help="each named ticker's top K partners instead of the top pairs: names or patterns "
                        "separated by commas, @FILE, or all")
    p.add_argument("--engine", choices=ENGINES, default="auto")
    p.add_argument("--memory-limit", default=DEFAULT_MEMORY_LIMIT, metavar="SIZE",
                   help=f"bound on the engine's working set, e.g. 200MB (default {DEFAULT_MEMORY_LIMIT})")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", metavar="PAIRS.csv", help="also write the top pairs as CSV")
    p.add_argument("--matrix", metavar="FILE", help="also write the full matrix (.parquet or .csv)")
    Selection.add_arguments(p)
    Execution.add_arguments(p)

    p = sub.add_parser("plot", parents=[quiet], help="plot a pair, or the clustered heatmap")
    p.add_argument("store", metavar="STORE")
    p.add_argument("tickers", nargs="*", metavar="A B")
    p.add_argument("--heatmap", action="store_true")
    p.add_argument("--spread", action="store_true",
                   help="the pair's spread (log A - beta log B - alpha) with +-2 sigma bands and the rolling "
                        "correlation of its log returns")
    p.add_argument("--window", type=int, default=60, metavar="W",
                   help="observations in each window of the rolling correlation (--spread; default 60)")
    p.add_argument("--out", metavar="FILE.png")
    Selection.add_arguments(p)
    Execution.add_arguments(p)

    p = sub.add_parser("analyze", parents=[quiet],
                       help="hedge ratio, cointegration, half-life of a pair or the top pairs")
    p.add_argument("store", metavar="STORE")
    p.add_argument("tickers", nargs="*", metavar="A B", help="the pair to analyze (default: the top K pairs)")
    p.add_argument("--top", type=_at_least_one, default=10, metavar="K", help="analyze the K most correlated pairs")
    p.add_argument("--window", type=int, default=60, metavar="W",
                   help="observations in each window of the rolling correlation (default 60)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", metavar="PAIRS.csv", help="also write one CSV row per pair")
    Selection.add_arguments(p)
    Execution.add_arguments(p)

    p = sub.add_parser("network", parents=[quiet],
                       help="the minimum spanning forest of the correlations and its clusters")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--clusters", type=_at_least_one, default=None, metavar="K",
                   help="cut the forest's longest edges until K clusters remain (single linkage)")
    p.add_argument("--memory-limit", default=DEFAULT_MEMORY_LIMIT, metavar="SIZE",
                   help="bound on the working set, e.g. 200MB; beyond it the forest is found in passes over "
                        f"the blocks, never the whole matrix (default {DEFAULT_MEMORY_LIMIT})")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", metavar="EDGES.csv", help="also write the forest's edges as CSV")
    p.add_argument("--plot", metavar="TREE.png", help="also draw the forest, coloured by cluster")
    Selection.add_arguments(p)
    Execution.add_arguments(p)

    p = sub.add_parser("backtest", parents=[quiet],
                       help="choose pairs in formation windows and judge them in the trading windows that follow")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--formation", default="12M", metavar="LEN",
                   help="formation window: a whole number and D, W, M or Y (default 12M)")
    p.add_argument("--trading", default="6M", metavar="LEN", help="trading window (default 6M)")
    p.add_argument("--step", default=None, metavar="LEN", help="from one window to the next (default: --trading)")
    p.add_argument("--top", type=_at_least_one, default=20, metavar="K", help="pairs chosen per window (default 20)")
    p.add_argument("--rank", choices=RANKS, default="correlation",
                   help="choose by correlation (as correlate) or by distance of normalized prices "
                        "(default correlation)")
    p.add_argument("--entry", type=float, default=2.0, metavar="SIGMAS",
                   help="open when the spread is beyond this many formation standard deviations (default 2.0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", metavar="PAIRS.csv", help="also write the chosen pairs of every window as CSV")
    p.add_argument("--plot", metavar="FILE.png",
                   help="in-sample against out-of-sample correlation per window, and the cumulative return")
    p.add_argument("--report", metavar="FILE.html", help="also write a self-contained HTML page of the backtest")
    Selection.add_arguments(p)
    Execution.add_arguments(p)

    p = sub.add_parser("run", parents=[quiet], help="the whole pipeline, archive to plots")
    p.add_argument("source", nargs="?", metavar="SOURCE",
                   help="an archive or folder of <ticker>.json, or a store (default: the built-in sample)")
    p.add_argument("--workdir", default=pipeline.DEFAULT_WORKDIR, metavar="DIR")
    p.add_argument("--top", type=_at_least_one, default=10, metavar="K")
    p.add_argument("--format", choices=("hdf5", "parquet"), default="hdf5")
    p.add_argument("--on-bad-lines", choices=("error", "skip"), default="error")
    p.add_argument("--report", metavar="FILE.html", help="also write a self-contained HTML report")
    p.add_argument("--with", dest="partners_of", metavar="LIST|all",
                   help="also each named ticker's top K partners, and the plot of the first one's best partner")
    p.add_argument("--json", action="store_true")
    Selection.add_arguments(p)
    _lock_option(p)
    Execution.add_arguments(p)

    p = sub.add_parser("bench", parents=[quiet], help="how does performance vary? every executor, three workloads")
    p.add_argument("--quick", action="store_true", help="a run of under a minute")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="FILE.png")
    p.add_argument("--workers", default=None, metavar="N")
    return parser


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def left_out_line(result) -> str | None:
    """The tickers too short to rank, as the terminal shows them (names made printable)."""
    return wording.left_out_line(result, printable)


def _convert_line(s: dict) -> str:
    line = (f"converted {s['converted']:,} of {count(s['files'], 'file')} ({s['up_to_date']:,} up to date) to "
            f"{s['format']} in {printable(s['store'])}: {count(s['rows'], 'row')}")
    if s.get("removed"):
        line += f"; removed {count(s['removed'], 'ticker')} whose source{'' if s['removed'] == 1 else 's'} "
        line += "is gone" if s["removed"] == 1 else "are gone"
    if s["bad_lines_skipped"]:
        per_file = ", ".join(f"{printable(f)}: {n}" for f, n in s["skipped_by_file"].items())
        line += f"; skipped {count(s['bad_lines_skipped'], 'bad line')} ({per_file})"
    if s["duplicates_dropped"]:
        line += f"; dropped {count(s['duplicates_dropped'], 'duplicate timestamp')}"
    return line + f"; {s['executor']} x{s['workers']}, {s['seconds']:.3f} s"


def adjusted_hint(tickers: list[str]) -> str | None:
    """One line for tickers whose close is unadjusted beside an adj_close: which column to correlate."""
    if not tickers:
        return None
    some = ", ".join(tickers[:3]) + (f" and {len(tickers) - 3:,} more" if len(tickers) > 3 else "")
    return (f"note: the close of {count(len(tickers), 'ticker')} ({printable(some)}) is unadjusted beside its "
            f"adj_close: splits and dividends show as jumps; --column adj_close correlates the adjusted prices")


def cmd_sample(args) -> int:
    check_sample(args.tickers, args.days, args.bars_per_day, args.seed, args.daily,
                 spell=lambda name: "--" + name.replace("_", "-"))
    try:
        out = sample(args.dir, tickers=args.tickers, days=args.days, bars_per_day=args.bars_per_day,
                     ragged=args.ragged, seed=args.seed, archive=args.archive, daily=args.daily)
    except OSError as exc:
        raise PairscanError(f"cannot write the sample here ({exc.strerror})", args.dir) from None
    print(printable(out))
    return 0


def _max_bytes(args) -> dict:
    if args.max_bytes is None:
        return {}
    try:
        return {"max_bytes": parse_size(args.max_bytes)}
    except PairscanError:
        raise PairscanError(f"--max-bytes must be a positive size like 500MB or 2GiB, not {args.max_bytes!r}") from None


def cmd_extract(args) -> int:
    print(printable(extract(args.archive, args.to, **_max_bytes(args))))
    return 0


def cmd_convert(args) -> int:
    execution = Execution.from_args(args)
    source = args.source
    from .archive import is_archive

    if is_archive(source):
        source = extract(source, args.to, **_max_bytes(args))
        if not args.json:
            print(f"unpacked {printable(args.source)} to {printable(source)}")
    try:
        summary = convert(source, to=args.to, format=args.format, on_bad_lines=args.on_bad_lines,
                          force=args.force, lock_timeout=args.lock_timeout, ticker_column=args.ticker_column,
                          follow_links=args.follow_links, layout=args.layout, close_column=args.close_column,
                          date_format=args.date_format, **_max_bytes(args), execution=execution)
    except ConvertFailed as failed:
        if args.json:
            _print_json(failed.summary)
        for f in failed.failures:
            where = f["file"] + (f":{f['line']}" if f["line"] else "")
            print(f"pairscan: error: {printable(where)}: {printable(f['reason'])}", file=sys.stderr)
        bad, good = len(failed.failures), failed.summary["converted"]
        print(f"pairscan: {bad} bad file{'s' if bad != 1 else ''} not converted; "
              f"{good} other{'s' if good != 1 else ''} converted", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2) if args.json else _convert_line(summary))
    hint = adjusted_hint(summary["adj_close_differs"])
    if hint and not args.quiet:
        print(f"pairscan: {hint}", file=sys.stderr)
    return 0


def _store_adjusted_hint(store, column: str) -> str | None:
    """The adjusted-close note for a correlation of ``close`` in a store whose convert found
    an ``adj_close`` that differs (the manifest records it per ticker)."""
    if column != "close":
        return None
    entries = read_manifest(store).get("tickers", {})
    return adjusted_hint(sorted(t for t, e in entries.items() if e.get("adj_close_differs")))


def cmd_correlate(args) -> int:
    for option in ("out", "matrix"):
        if getattr(args, option):
            check_not_in_store(getattr(args, option), args.store, f"--{option}")
    if args.out:
        check_output(args.out, "--out")
    result = correlate(args.store, k=args.top, selection=Selection.from_args(args), engine=args.engine,
                       memory_limit=args.memory_limit, matrix=args.matrix, partners_of=args.partners_of,
                       partners_option="--with", execution=Execution.from_args(args))
    if args.out:
        write_csv(result.top, args.out, "--out")
    if args.json:
        _print_json(result.to_dict())
    else:
        print(summary_line(result))
        print(ranked_line(result))
        for line in (left_out_line(result), _store_adjusted_hint(args.store, result.column)):
            if line:
                print(line)
        if result.streamed:
            print(f"the panel does not fit --memory-limit {args.memory_limit}: blocks were read from the store "
                  "by the tasks that needed them")
        if result.nonfinite_missing:
            noun = "non-finite return" if result.on == "returns" else "non-finite price"
            print(f"{count(result.nonfinite_missing, noun)} treated as missing")
        print(answer_tables(result))
    return 0


def answer_tables(result) -> str:
    """The top pairs' table, or with ``--with`` one table of partners per named ticker."""
    if result.partners is None:
        return text_table(records(result.top))
    return "\n\n".join(f"partners of {printable(ticker)}:\n{text_table(records(frame.drop(columns='rank')))}"
                        for ticker, frame in result.partners.items())


def cmd_plot(args) -> int:
    selection, execution = Selection.from_args(args), Execution.from_args(args)
    if args.heatmap:
        if args.tickers:
            raise PairscanError("plot --heatmap takes no tickers")
        out = check_output(args.out or "heatmap.png", "--out", PNG)
        out = pictures.plot_heatmap(args.store, out, selection=selection, execution=execution)
        print(printable(out))
        return 0
    if len(args.tickers) != 2:
        raise PairscanError("plot needs two tickers (plot STORE A B), or --heatmap")
    a, b = args.tickers
    if a == b:
        raise PairscanError(f"plot needs two different tickers, not {a!r} twice")
    if args.spread:
        out = check_output(args.out or default_name(a, b, "spread"), "--out", PNG)
        out, fields = pictures.plot_spread(args.store, a, b, out, selection.column, args.window, selection.cut)
        print(f"{printable(out)} (beta = {fields['beta']:.4f}, coint p = {fields['coint_p']:.4g})")
        return 0
    out = check_output(args.out or default_name(a, b), "--out", PNG)
    out = pictures.plot_pair(args.store, a, b, out, selection=selection, execution=execution)
    print(printable(out))
    return 0


def cmd_analyze(args) -> int:
    from .analyze import analysis_dict, analyze

    if args.out:
        check_not_in_store(args.out, args.store, "--out")
        check_output(args.out, "--out")
    if len(args.tickers) not in (0, 2):
        raise PairscanError("analyze takes two tickers (analyze STORE A B), or none for the top pairs")
    frame = analyze(args.store, tuple(args.tickers) or None, k=args.top, window=args.window,
                    selection=Selection.from_args(args), execution=Execution.from_args(args))
    out = analysis_dict(frame)
    if args.out:
        write_csv(frame, args.out, "--out")
    if args.json:
        _print_json(out)
    else:
        print(f"{count(len(out['pairs']), 'pair')} analyzed on log {args.column} prices (rolling window {out['window']}); "
              f"{args.executor}, {out['seconds']:.3f} s")
        print(_analysis_table(out["pairs"]))
    return 0


def cmd_backtest(args) -> int:
    from .backtest import backtest, parse_length
    from .backtest.render import plot, text, write_report

    for option, suffixes in (("out", ()), ("plot", PNG), ("report", (".html", ".htm"))):
        if getattr(args, option):
            check_not_in_store(getattr(args, option), args.store, f"--{option}")
            check_output(getattr(args, option), f"--{option}", suffixes)
    # Checked here too, so that the messages name the options as typed.
    lengths = {name: parse_length(getattr(args, name), f"--{name}") if getattr(args, name) is not None else None
               for name in ("formation", "trading", "step")}
    if not math.isfinite(args.entry) or args.entry < 0:
        raise PairscanError(f"--entry must be a number of standard deviations >= 0, like 2.0, not {args.entry}")
    if args.rank == "distance" and args.on == "returns":
        raise PairscanError("--rank distance compares normalized prices: drop --on returns, or use --rank correlation")
    result = backtest(args.store, **lengths, k=args.top, rank=args.rank, entry=args.entry,
                      selection=Selection.from_args(args), execution=Execution.from_args(args))
    if args.out:
        write_csv(result.pairs, args.out, "--out")
    if args.plot:
        plot(result, args.plot)
    if args.report:
        write_report(result, args.report, args.store)
    if args.json:
        _print_json(result.to_dict())
    else:
        print(text(result))
    return 0


def _analysis_table(pairs: list[dict]) -> str:
    if not pairs:
        return "no pair to analyze (no pair has a correlation)"

    def num(value, spec: str) -> str:
        return "nan" if value is None else format(value, spec)

    pairs = [{**p, "a": printable(p["a"]), "b": printable(p["b"])} for p in pairs]
    wa = max(4, *(len(p["a"]) for p in pairs))
    wb = max(4, *(len(p["b"]) for p in pairs))
    lines = [f"{'rank':>4}  {'a':<{wa}}  {'b':<{wb}}  {'corr':>9}  {'n':>7}  {'beta':>8}  {'alpha':>8}  "
             f"{'coint_t':>8}  {'coint_p':>8}  {'half_life':>9}  {'zscore':>7}  {'rolling corr min/median/max':>27}"]
    notes = []
    for rank, p in enumerate(pairs, 1):
        rc = p["rolling_corr"]
        t = "-inf" if p["coint_t"] is None and p["coint_p"] is not None else num(p["coint_t"], ".3f")
        lines.append(
            f"{rank:>4}  {p['a']:<{wa}}  {p['b']:<{wb}}  {num(p['corr'], '9.6f'):>9}  {p['n']:>7}  "
            f"{num(p['beta'], '.4f'):>8}  {num(p['alpha'], '.4f'):>8}  {t:>8}  {num(p['coint_p'], '.4f'):>8}  "
            f"{num(p['half_life'], '.1f'):>9}  {num(p['zscore'], '.2f'):>7}  "
            f"{num(rc['min'], '.2f'):>7} {num(rc['median'], '.2f'):>7} {num(rc['max'], '.2f'):>7}     ")
        if p.get("reason"):
            notes.append(f"{rank:>4}  {p['a']}~{p['b']}: {printable(p['reason'])}")
    lines = [line.rstrip() for line in lines]
    lines.append("half_life in observations; coint_p screens candidates, it is not a trading signal")
    return "\n".join(lines + (["", "notes:", *notes] if notes else []))


def cmd_network(args) -> int:
    from .network import network

    for option in ("out", "plot"):
        if getattr(args, option):
            check_not_in_store(getattr(args, option), args.store, f"--{option}")
    if args.out:
        check_output(args.out, "--out")
    if args.plot:
        check_output(args.plot, "--plot", PNG)
    result = network(args.store, clusters=args.clusters, selection=Selection.from_args(args),
                     memory_limit=args.memory_limit, execution=Execution.from_args(args))
    if args.out:
        write_csv(result.edges, args.out, "--out")
    if args.plot:
        from .network_plot import plot_network

        plot_network(result, args.plot)
    if args.json:
        _print_json(result.to_dict())
        return 0
    print(network_text(result))
    if args.plot:
        print(f"plot: {printable(args.plot)}")
    return 0


def network_text(result, members: int = 6, strongest: int = 10) -> str:
    """A network's summary: tickers, edges, total distance, components, the clusters
    with their sizes and first members, the strongest edges."""
    out = result.to_dict()
    edges = result.edges
    lone = len(result.lone)
    lines = [f"{count(len(edges), 'edge')}, total distance "
             f"{out['total_distance']:.6f}, {count(out['components'], 'component')}"
             + (f" ({lone:,} lone: no ranked pair)" if lone else "")
             + f"; {out['method']} on {result.headline}",
             f"min-periods {out['min_periods']:,}, {out['pairs_ranked']:,} ranked pairs; engine {out['engine']}, "
             f"forest {out['forest']}" + (f" ({out['passes']} pass{'es' if out['passes'] != 1 else ''} over the blocks)"
                                          if out["forest"] == "boruvka" else "")
             + f", executor {out['executor']} x{out['workers']}, {out['seconds']:.3f} s"]
    sizes = result.cluster_sizes
    asked, components = out["clusters_asked"], out["components"]
    head = f"{count(len(sizes), 'cluster')}" + (
        f" (asked {asked}: the forest has {components:,} components{_lone_hint(asked, components, lone)})"
        if asked and asked < components else "" if asked else " (the forest's components; --clusters K to cut it)")
    lines += ["", head + ":"]
    shown = sizes.index[:20]
    for c in shown:
        names = result.clusters.index[result.clusters == c].tolist()
        more = f", ... {len(names) - members:,} more" if len(names) > members else ""
        lines.append(f"{c:>5}  {sizes[c]:>6,}  {', '.join(printable(t) for t in names[:members])}{more}")
    if len(sizes) > len(shown):
        rest = sizes.iloc[len(shown):]
        lines.append(f"  ... {count(len(rest), 'more cluster')} of {rest.max():,} ticker"
                     f"{'s' if rest.max() != 1 else ''} or fewer")
    if len(edges):
        top = edges.head(strongest)
        wa = max(4, *(len(printable(t)) for t in top["a"]))
        wb = max(4, *(len(printable(t)) for t in top["b"]))
        lines += ["", "strongest edges:", f"{'a':<{wa}}  {'b':<{wb}}  {'corr':>9}  {'n':>8}  {'distance':>9}"]
        for a, b, corr, n, d in top.itertuples(index=False):
            lines.append(f"{printable(a):<{wa}}  {printable(b):<{wb}}  {corr:>9.6f}  {n:>8}  {d:>9.6f}")
    return "\n".join(lines)


def _lone_hint(asked: int, components: int, lone: int) -> str:
    """What to ask when ``--clusters`` was fewer than the forest's components because of
    lone tickers: the K that cuts the joined tickers into ``asked`` clusters."""
    if not lone:
        return ""
    return (f", {lone:,} of them lone tickers; --clusters {lone + asked:,} cuts the joined ones into {asked}"
            if components - lone < asked else f", {lone:,} of them lone tickers")


def data_line(out) -> str:
    """Where run's data came from and went: the source, where an archive or the sample was
    written (the work folder), and the store."""
    source, folder, store = (printable(v) for v in (out.source, out.data, out.store))
    if out.source == "built-in sample":
        source = f"the built-in sample, written to {folder}"
    elif out.data != out.source:
        source = f"{source}, unpacked to {folder}"
    return f"data: {source} -> store {store}"


def cmd_run(args) -> int:
    # The report's folder is checked by run, once the work folder (its usual home) exists.
    out = pipeline.run(args.source, args.workdir, k=args.top, report=args.report, format=args.format,
                       selection=Selection.from_args(args), on_bad_lines=args.on_bad_lines,
                       lock_timeout=args.lock_timeout, partners_of=args.partners_of,
                       execution=Execution.from_args(args))
    if args.json:
        _print_json(out.to_json())
        return 0
    if out.convert is None:
        print(f"store: {printable(out.store)} (converted before: nothing to convert)")
    else:
        print(data_line(out))
        print(_convert_line(out.convert))
    print(summary_line(out.correlation))
    print(ranked_line(out.correlation))
    if left_out_line(out.correlation):
        print(left_out_line(out.correlation))
    print()
    print(text_table(records(out.correlation.top)))
    analysis = out.analysis_json
    if analysis and analysis["pairs"]:
        print()
        print(f"analysis of the top pairs on log {out.correlation.column} prices (rolling window "
              f"{analysis['window']}):")
        print(_analysis_table(analysis["pairs"]))
    if out.partners is not None:
        print()
        print(answer_tables(out.partners))
    print()
    for name, path in out.plots.items():
        print(f"{name} plot: {printable(path)}")
    if out.report is not None:
        print(f"report: {printable(out.report)}")
    stages = ", ".join(f"{k} {round(v, 4):.2f} s" for k, v in out.stages.items())  # as JSON rounds them
    print(f"stages: {stages}")
    return 0


def cmd_bench(args) -> int:
    from .bench import bench

    parse_workers(args.workers)
    if args.plot:
        check_output(args.plot, "--plot", PNG)
    result = bench(quick=args.quick, workers=args.workers, quiet=args.quiet, plot=args.plot, echo=not args.json)
    if args.json:
        _print_json(result)
    return 0


COMMANDS = {"sample": cmd_sample, "extract": cmd_extract, "convert": cmd_convert, "correlate": cmd_correlate,
            "plot": cmd_plot, "analyze": cmd_analyze, "backtest": cmd_backtest, "network": cmd_network,
            "run": cmd_run, "bench": cmd_bench}


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"pairscan: warning: {printable(message)}", file=sys.stderr)


def _terminate(signum, frame):
    # Unwind like Ctrl-C: pools stop their workers and temporary files go on the way
    # out. A second SIGTERM would cut that short; SIGKILL still ends it at once.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    # Over the file-size limit (ulimit -f) a write fails with EFBIG, reported in one
    # line naming the file, rather than the signal killing the process mid-write.
    size_limit = signal.signal(signal.SIGXFSZ, signal.SIG_IGN) if in_main_thread else None
    # Dask's, tornado's and asyncio's loggers print tracebacks when a cluster goes away
    # (and set their own levels when first imported); pairscan says what happened itself,
    # in one line, and logs nothing of its own.
    silenced = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        return COMMANDS[args.command](args)
    except PairscanError as err:
        # One line, whatever the file names and tickers in it hold.
        print(f"pairscan: error: {printable(err)}", file=sys.stderr)
        return 2
    except (TaskFailed, ClusterLost) as err:
        print(f"pairscan: {printable(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pairscan: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("pairscan: terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:
        # The reader went away (`pairscan correlate ... --json | head`): stop quietly, as a
        # process killed by SIGPIPE would, with nothing more written to the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if size_limit is not None:
            signal.signal(signal.SIGXFSZ, size_limit)
        logging.disable(silenced)


def entry() -> None:
    """The ``pairscan`` command: :func:`main`, then exit with its status. Loggers stay quiet
    until the process ends: a lost cluster's leftovers (futures never retrieved) are
    reported when the interpreter tears them down, after ``main`` has said what happened.
    The process keeps the memory it frees for its next allocations (:mod:`pairscan.heap`)."""
    keep_freed_memory()
    status = main()
    logging.disable(logging.CRITICAL)
    sys.exit(status)


if __name__ == "__main__":
    entry()
