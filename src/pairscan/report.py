"""Report: one self-contained HTML page of a run, figures embedded, nothing fetched.

The page says what data went in (tickers, rows, date range, skipped lines), what came
out (the top pairs, the best pair's plot, the clustered heatmap) and where the time
went (each stage, and the executor that ran it). It is one file: styles inline,
figures as PNG data URIs, the search's data as JSON in the page and a little plain
JavaScript (no library, nothing fetched), so it opens offline, mails as an attachment
and prints on paper. It stays readable for thousands of tickers: a search finds any
ticker's best partners, the tables sort by column, and the heatmap is drawn only where
its labels can be read.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import os
import struct
from pathlib import Path

import numpy as np
import pandas as pd

from . import wording
from .engines import HISTOGRAM_BINS
from .outputs import check_output, write_bytes
from .plot import correlation_symbol, figure_png, heatmap_figure, histogram_figure
from .records import format_p, records
from .run_result import SEARCH_K, RunNetwork, RunResult
from .store import read_manifest, store_files, store_format, stored_span
from .version import __version__ as VERSION

STAGE_WORDS = {
    "sample": "the built-in sample, written unless already there",
    "extract": "extract the archive",
    "convert": "JSON Lines to the store",
    "correlate": "load the store, correlate every pair",
    "partners": "each ticker named with --with: its best partners",
    "search": "every ticker's best partners, for the search",
    "network": "the minimum spanning tree and its clusters",
    "analyze": "hedge ratio, cointegration, half-life of the top pairs",
    "plot": "draw the pair plot, the spread plot, the heatmap and the network",
}
HEATMAP_MAX_TICKERS = 60  # beyond, its labels cannot be read on a page
PARTNER_TABLES_MAX = 20  # named tickers with a table of their own; beyond, the search shows them


def write_report(path: str | os.PathLike, result: RunResult) -> Path:
    """Write the HTML report of a run to ``path`` atomically; return the path.

    ``result`` is the run's :class:`~pairscan.run_result.RunResult`; the data-set facts
    are read from its store.
    """
    path = check_output(path, "the report")
    page = render(result, dataset_facts(result.store, result.correlation.column))
    return write_bytes(path, page, "the report")


def dataset_facts(store: str | os.PathLike, column: str = "close") -> dict:
    """Tickers, rows, date range, skipped lines and dropped duplicates of a store.

    Rows and skipped lines come from the manifest; the date range from the first and
    last stored timestamps of each ticker (its index is sorted), read without
    loading the data where the format allows.
    """
    files = store_files(store)
    manifest = read_manifest(store)
    entries = manifest.get("tickers", {})
    rows = skipped = duplicates = 0
    skipped_by_ticker = {}
    for ticker in files:
        entry = entries.get(ticker, {})
        rows += int(entry.get("rows") or 0)
        duplicates += int(entry.get("duplicates_dropped") or 0)
        bad = int(entry.get("bad_lines_skipped") or 0)
        if bad:
            skipped += bad
            skipped_by_ticker[ticker] = (bad, entry.get("first_bad_line"))
    spans = [span for span in (stored_span(p, column) for p in files.values()) if span is not None]
    return {
        "tickers": len(files),
        "rows": rows,
        "first": min((s[0] for s in spans), default=None),
        "last": max((s[1] for s in spans), default=None),
        "bad_lines_skipped": skipped,
        "skipped_by_ticker": skipped_by_ticker,
        "duplicates_dropped": duplicates,
        "format": manifest.get("format") or store_format(files),
    }


# -- the page ---------------------------------------------------------------------------


def render(result: RunResult, facts: dict) -> str:
    """The report page as a string (see :func:`write_report`)."""
    c = result.correlation
    top = records(c.top)
    symbol = correlation_symbol(c.method)
    what = c.selection.describe()
    tickers = wording.of_stored(c.series, c.stored)
    if top:
        best = top[0]
        headline = (f"Most correlated of {tickers} tickers: <strong>{_e(best['a'])}</strong> and "
                    f"<strong>{_e(best['b'])}</strong>, {_e(symbol)} = {best['corr']:.4f} on {_e(what)} "
                    f"({wording.count(best['n'], 'common observation')}; ranked among the "
                    f"{c.pairs_ranked:,} pairs with at least {c.min_periods:,}).")
        title = f"pairscan: {best['a']} and {best['b']}, {symbol} = {best['corr']:.4f}"
    else:
        headline = f"No pair of the {tickers} tickers has a correlation (too little overlap, or constant series)."
        title = "pairscan report"
    written = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    analysis = result.analysis_json
    sections = [
        _data_section(result, facts),
        _search_section(result, symbol, what),
        _pairs_section(top, symbol, what, c),
        _histogram_section(c, symbol, what),
        _pair_plot_section(result, top),
        _partners_section(result, symbol, what),
        analysis_section(analysis["pairs"], _plot_file(result, "spread"), analysis["window"]) if analysis else "",
        _network_section(result),
        _heatmap_section(result),
        _time_section(result),
    ]
    return PAGE.format(
        title=_e(title),
        style=STYLE,
        headline=headline,
        meta=(f"Source: <code>{_e(result.source)}</code> &middot; store: <code>{_e(result.store)}</code>"
              f" &middot; written {written} by pairscan {VERSION}"),
        body="\n".join(sections),
        script=SCRIPT,
    )


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _when(stamp: pd.Timestamp | None, daily: bool) -> str:
    if stamp is None:
        return "?"
    return stamp.strftime("%Y-%m-%d" if daily else "%Y-%m-%d %H:%M")


def _data_section(result: RunResult, facts: dict) -> str:
    first, last = facts["first"], facts["last"]
    daily = all(s is None or s == s.normalize() for s in (first, last))
    if first is not None and last is not None:
        days = (last.normalize() - first.normalize()).days + 1
        span = (_when(first, daily), f"\u2013 {_when(last, daily)}")
        span_note = f"{days:,} calendar days"
    else:
        span, span_note = ("no data",), ""
    skipped = facts["bad_lines_skipped"]
    count = wording.count
    cards = [
        ("tickers", (f"{facts['tickers']:,}",), count(facts["tickers"] * (facts["tickers"] - 1) // 2, "pair")),
        ("rows stored", (f"{facts['rows']:,}",), f"{facts['format']} store"),
        ("date range", span, span_note),
        ("bad lines skipped", (f"{skipped:,}",),
         (f"in {count(len(facts['skipped_by_ticker']), 'file')}" if skipped else "every line valid")
         + f"; {count(facts['duplicates_dropped'], 'duplicate timestamp')} dropped"),
    ]
    # A value is one or more parts, each kept whole: a date must not wrap at its hyphens.
    grid = "\n".join(
        f'<div class="fact{" wide" if len(lines) > 1 else ""}"><div class="label">{_e(label)}</div>'
        f'<div class="value">{" ".join(f"<span>{_e(line)}</span>" for line in lines)}</div>'
        f'<div class="note">{_e(note)}</div></div>'
        for label, lines, note in cards
    )
    parts = [f'<section id="data"><h2>Data set</h2><div class="facts">{grid}</div>']
    if facts["skipped_by_ticker"]:
        items = sorted(facts["skipped_by_ticker"].items(), key=lambda kv: (-kv[1][0], kv[0]))
        rows = "\n".join(
            f"<tr><td>{_e(t)}</td><td class=num>{n:,}</td><td>{_e(first_bad or '')}</td></tr>"
            for t, (n, first_bad) in items[:50]
        )
        more = f"<p class=note>and {len(items) - 50} more files</p>" if len(items) > 50 else ""
        parts.append('<table class="skipped"><caption>Bad lines skipped, by file</caption>'
                     "<thead><tr><th>ticker</th><th class=num>lines</th><th>first bad line</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table>{more}")
    failed = (result.convert or {}).get("failed") or []
    if failed:
        parts.append(f"<p class=warn>{count(len(failed), 'file')} could not be converted and are not in the "
                     "store.</p>")
    parts.append("</section>")
    return "\n".join(parts)


def search_data(search, network: RunNetwork | None = None) -> dict:
    """The search's data, compact: the ticker names once, and for each ticker a flat list
    ``[partner index, r, n, ...]``, best first (r to 4 decimals); with a network, each
    ticker's cluster (0 for none)."""
    names = list(search.partners_of)
    index = {t: i for i, t in enumerate(names)}
    flat: list[list] = [[] for _ in names]
    top = search.top
    for a, b, r, n in zip(top["a"], top["b"], top["corr"].to_numpy(), top["n"].to_numpy()):
        flat[index[a]].extend((index[b], round(float(r), 4), int(n)))
    data = {"tickers": names, "k": SEARCH_K, "partners": flat}
    if network is not None:
        data["clusters"] = [int(network.clusters.get(t, 0)) for t in names]
    return data


def _json_in_html(obj) -> str:
    """JSON safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` can end it early."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _search_section(result: RunResult, symbol: str, what: str) -> str:
    """A ticker search over every ticker's best partners (empty without them)."""
    search = result.search
    if search is None or not search.partners_of:
        return ""
    cluster = "<th class=num>cluster</th>" if result.network is not None else ""
    rule = "|r|" if search.selection.absolute else symbol
    return (
        '<section id="search"><h2>Find a ticker</h2>'
        f"<p>Type a ticker's name to see its {SEARCH_K} best partners among the "
        f"{wording.count(search.series, 'ticker')}, by {_e(rule)} of {_e(what)} (pairs with at least "
        f"{search.min_periods:,} common observations).</p>"
        '<p class="find"><label for="ticker">Ticker</label> '
        '<input type="search" id="ticker" list="ticker-names" autocomplete="off" spellcheck="false" '
        'placeholder="a ticker, or its first letters"><datalist id="ticker-names"></datalist></p>'
        '<p id="search-status" class="note" aria-live="polite">'
        "The search needs JavaScript; everything else on this page works without it.</p>"
        '<div id="search-matches" class="matches"></div>'
        '<table class="pairs sortable" id="search-result" hidden><caption></caption>'
        f"<thead><tr><th class=num>rank</th><th>partner</th><th class=num>{_e(symbol)}</th>"
        f"<th class=num><i>n</i></th>{cluster}</tr></thead><tbody></tbody></table>"
        f'<script type="application/json" id="search-data">{_json_in_html(search_data(search, result.network))}'
        "</script></section>"
    )


def _pairs_section(top: list[dict], symbol: str, what: str, c) -> str:
    left = wording.left_out_line(c)
    rule = f"<p>{_e(wording.ranking_rule(c))}</p>" + (f"<p>{_e(left[0].upper() + left[1:])}.</p>" if left else "")
    if not top:
        return (f'<section id="pairs"><h2>Top pairs</h2>{rule}<p>No pair has a correlation: too few common '
                "observations, or a constant series.</p></section>")
    rows = "\n".join(
        f"<tr{' class=best' if rank == 1 else ''}><td class=num>{rank}</td><td>{_e(p['a'])}</td>"
        f"<td>{_e(p['b'])}</td><td class=num>{p['corr']:.6f}</td>"
        f'<td class="bar">{_bar(abs(p["corr"]), "neg" if p["corr"] < 0 else "pos")}</td>'
        f"<td class=num>{p['n']:,}</td><td class=num>{_e(format_p(p.get('p')))}</td>"
        f"<td class=num>{_interval(p)}</td></tr>"
        for rank, p in enumerate(top, 1)
    )
    return (
        f'<section id="pairs"><h2>Top pairs</h2>{rule}'
        f'<table class="pairs sortable"><caption>The {len(top)} most correlated pairs: {_e(symbol)} of '
        f"{_e(what)}; <i>n</i> is the number of observations the two tickers share, <i>p</i> the two-sided "
        "p-value for no correlation, and the interval the 95 % Fisher-z confidence interval. With many pairs, "
        "some get a tiny <i>p</i> by chance alone: a small <i>p</i> is not a discovery by itself. "
        "Click a column's heading to sort by it.</caption>"
        f"<thead><tr><th class=num>rank</th><th>a</th><th>b</th><th class=num>{_e(symbol)}</th>"
        '<th class="bar" aria-hidden="true"></th><th class=num><i>n</i></th><th class=num><i>p</i></th>'
        "<th class=num>95 % interval</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _partners_section(result: RunResult, symbol: str, what: str) -> str:
    """With ``--with``: one table per named ticker, and the plot of the first one's best partner."""
    partners = result.partners
    if partners is None:
        return ""
    named = partners.partners_of
    if len(named) > PARTNER_TABLES_MAX:
        where = (f"the search above shows each one's {SEARCH_K} best partners, and run --json lists them all"
                 if result.search is not None else "run --json lists each one's partners")
        tables = [f"<p>{wording.count(len(named), 'ticker')} named: too many for a table each; {where}.</p>"]
    else:
        tables = [_partner_table(ticker, records(frame.drop(columns="rank")), symbol, what)
                  for ticker, frame in partners.partners.items()]
    png = _plot_file(result, "partners")
    if png is not None:
        first = records(partners.top[partners.top["a"] == named[0]].iloc[:1])[0]
        caption = (f"{_e(first['a'])} and its best partner {_e(first['b'])}: their "
                   f"{_e(partners.column)} prices over time, each divided by its own maximum.")
        tables.append(_figure(png, f"{first['a']} and {first['b']} over time", caption))
    return '<section id="partners"><h2>Partners</h2>' + "\n".join(tables) + "</section>"


def _partner_table(ticker: str, pairs: list[dict], symbol: str, what: str) -> str:
    if not pairs:
        return f"<p>{_e(ticker)}: no partner has a correlation (too little overlap, or a constant series).</p>"
    rows = "\n".join(
        f"<tr><td class=num>{rank}</td><td>{_e(p['b'])}</td><td class=num>{p['corr']:.6f}</td>"
        f"<td class=num>{p['n']:,}</td><td class=num>{_e(format_p(p.get('p')))}</td>"
        f"<td class=num>{_interval(p)}</td></tr>"
        for rank, p in enumerate(pairs, 1))
    return (f'<table class="pairs sortable"><caption>The {len(pairs)} best partners of {_e(ticker)}: '
            f"{_e(symbol)} of {_e(what)}</caption><thead><tr><th class=num>rank</th><th>partner</th>"
            f"<th class=num>{_e(symbol)}</th><th class=num><i>n</i></th><th class=num><i>p</i></th>"
            f"<th class=num>95 % interval</th></tr></thead><tbody>{rows}</tbody></table>")


def _interval(p: dict) -> str:
    low, high = p.get("ci_low"), p.get("ci_high")
    return "" if low is None or high is None else f"{low:.4f} &ndash; {high:.4f}"


def _histogram_section(c, symbol: str, what: str) -> str:
    counts = c.histogram
    if counts is None or not np.sum(counts):
        return ""
    png = figure_png(histogram_figure(counts, HISTOGRAM_BINS, f"{symbol} of {what}"))
    caption = (f"How the correlations of all {int(np.sum(counts)):,} ranked pairs spread, in bins 0.05 wide: "
               "the top pairs sit at the right-hand tail of this.")
    return ('<section id="spread"><h2>All ranked pairs</h2>'
            f'{_figure(png, "histogram of the correlations of all ranked pairs", caption)}</section>')


def _pair_plot_section(result: RunResult, top: list[dict]) -> str:
    png = _plot_file(result, "pair")
    if not top or png is None:
        return ""
    best = top[0]
    c = result.correlation
    note = " The lines are prices; the correlation is of their log returns." if c.on == "returns" else ""
    caption = (f"{_e(best['a'])} and {_e(best['b'])}, the most correlated pair: their {_e(c.column)} "
               f"prices over time, each divided by its own maximum so that both fit one axis.{note}")
    alt = f"{best['a']} and {best['b']} over time"
    return f'<section id="pair"><h2>The best pair</h2>{_figure(png, alt, caption)}</section>'


def analysis_section(pairs: list[dict], png: bytes | None, window: int = 60) -> str:
    """The analysis of the top pairs as a report section: a table of the fields, the spread plot.

    ``pairs`` are ``analyze --json``'s ``pairs`` (``rolling_corr`` nested, ``None`` for
    NaN); ``png`` the spread plot of the best cointegrated pair (or ``None``).
    """
    if not pairs:
        return ""

    def num(value, spec: str) -> str:
        return "&ndash;" if value is None else format(value, spec)

    rows, notes = [], []
    for rank, p in enumerate(pairs, 1):
        rc = p["rolling_corr"]
        t = "&minus;&infin;" if p["coint_t"] is None and p["coint_p"] is not None else num(p["coint_t"], ".3f")
        strong = p["coint_p"] is not None and p["coint_p"] < 0.05
        rows.append(
            f"<tr><td class=num>{rank}</td><td>{_e(p['a'])}</td><td>{_e(p['b'])}</td>"
            f"<td class=num>{num(p['beta'], '.4f')}</td><td class=num>{num(p['alpha'], '.4f')}</td>"
            f"<td class=num>{t}</td><td class=num>{'<b>' if strong else ''}{num(p['coint_p'], '.4f')}"
            f"{'</b>' if strong else ''}</td><td class=num>{num(p['half_life'], '.1f')}</td>"
            f"<td class=num>{num(p['zscore'], '.2f')}</td>"
            f"<td class=num>{num(rc['min'], '.2f')} / {num(rc['median'], '.2f')} / {num(rc['max'], '.2f')}</td></tr>"
        )
        if p.get("reason"):
            notes.append(f"<li>{_e(p['a'])} and {_e(p['b'])}: {_e(p['reason'])}</li>")
    caption = ("Each pair on the log prices of its common timestamps: the hedge ratio &beta; and intercept &alpha; "
               "(OLS of log a on log b), the Engle-Granger cointegration test (t and its MacKinnon p-value; "
               "<b>bold</b> below 0.05), the half-life of the spread in observations, its z-score at the last "
               f"timestamp, and the range of the {window}-observation rolling correlation of the log returns. "
               "A low p-value makes a pair a candidate whose spread may revert; it is not a trading signal.")
    parts = [
        '<section id="analysis"><h2>Pair analysis</h2>'
        f'<table class="analysis sortable"><caption>{caption}</caption>'
        "<thead><tr><th class=num>rank</th><th>a</th><th>b</th><th class=num>&beta;</th><th class=num>&alpha;</th>"
        "<th class=num>coint t</th><th class=num>coint p</th><th class=num>half-life</th><th class=num>z-score</th>"
        f"<th class=num>rolling r min / median / max</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    ]
    if notes:
        parts.append(f"<ul class=note>{''.join(notes)}</ul>")
    if png is not None:
        tested = [p for p in pairs if p["coint_p"] is not None]
        best = min(tested, key=lambda p: p["coint_p"]) if tested else None
        if best is not None:
            fig_caption = (f"{_e(best['a'])} and {_e(best['b'])}, the pair with the lowest cointegration p-value: "
                           f"the spread log {_e(best['a'])} &minus; &beta; log {_e(best['b'])} &minus; &alpha; with "
                           "its mean and &plusmn;2&sigma; bands, and the rolling correlation of the log returns below.")
            parts.append(_figure(png, f"spread of {best['a']} and {best['b']}", fig_caption))
    parts.append("</section>")
    return "\n".join(parts)


CLUSTER_ROWS = 30  # clusters of several tickers listed one a row; the rest share a row


def _cluster_row(label: str, names: list[str]) -> str:
    """A row of the clusters table: the cluster (or a group of them), its size, its first tickers."""
    shown = ", ".join(sorted(names)[:12])
    return (f"<tr><td>{label}</td><td class=num>{len(names):,}</td>"
            f"<td>{_e(shown)}{' &hellip;' if len(names) > 12 else ''}</td></tr>")


def _network_section(result: RunResult) -> str:
    """The correlation network: its picture and its clusters (empty until a run has one)."""
    network = result.network
    if network is None:
        return ""
    members: dict[int, list[str]] = {}
    for ticker, cluster in network.clusters.items():
        members.setdefault(int(cluster), []).append(str(ticker))
    groups = [(cluster, names) for cluster, names in sorted(members.items()) if len(names) > 1]
    alone = sorted(names[0] for names in members.values() if len(names) == 1)
    rows = [_cluster_row(str(cluster), names) for cluster, names in groups[:CLUSTER_ROWS]]
    if len(groups) > CLUSTER_ROWS:
        rows.append(_cluster_row(f"{CLUSTER_ROWS + 1}&ndash;{groups[-1][0]}",
                                 [t for _, names in groups[CLUSTER_ROWS:] for t in names]))
    if alone:
        why = (f"{network.lone:,} with no ranked pair" if network.lone == len(alone) else
               f"{network.lone:,} with no ranked pair, the rest cut off by a long edge" if network.lone else
               "each cut off by a long edge")
        rows.append(_cluster_row(f"alone ({why})", alone))
    rows = "\n".join(rows)
    parts = ['<section id="network"><h2>Network and clusters</h2>']
    png = _read(network.picture)
    if png is not None:
        parts.append(_figure(png, "the minimum spanning tree of the correlations, coloured by cluster",
                             "The minimum spanning tree under d = &radic;(2(1 &minus; r)): each ticker joined "
                             "to its nearest neighbours; colours are the clusters below.", css="square"))
    if rows:
        parts.append('<table class="clusters sortable"><caption>Clusters, largest first (single linkage on the '
                     "tree), then the tickers alone; the search shows each ticker's.</caption><thead><tr><th>cluster</th>"
                     f"<th class=num>tickers</th><th>first tickers</th></tr></thead><tbody>{rows}</tbody></table>")
    parts.append("</section>")
    return "\n".join(parts)


def _heatmap_section(result: RunResult) -> str:
    series = result.correlation.series
    if series > HEATMAP_MAX_TICKERS:
        return ('<section id="heatmap"><h2>Correlation heatmap</h2><p>Not drawn: with '
                f"{series:,} tickers its labels could not be read (this page draws it up to "
                f"{HEATMAP_MAX_TICKERS}). How every pair's correlation spreads is the histogram above; "
                "any one ticker's best partners are in the search.</p></section>")
    png = _plot_file(result, "heatmap")
    matrix = result.correlation.matrix
    if png is None and matrix is not None:
        png = figure_png(heatmap_figure(matrix, method=result.correlation.method))
    if png is None:
        return ('<section id="heatmap"><h2>Correlation heatmap</h2><p>Not drawn: '
                f"{series:,} tickers are too many for one picture.</p></section>")
    caption = ("Every pair's correlation; tickers ordered by hierarchical clustering (average linkage on 1 &minus; r), "
               "so that tickers that move together sit together. Red is positive, blue negative, white 0.")
    return ('<section id="heatmap"><h2>Correlation heatmap</h2>'
            f'{_figure(png, "clustered correlation heatmap", caption, css="square")}</section>')


def _time_section(result: RunResult) -> str:
    stages = result.stages
    if not stages:
        return ""
    convert = result.convert or {}
    c = result.correlation
    ran_by = {
        "convert": (f"{convert.get('executor', '?')} &times;{convert.get('workers', '?')}",
                    f"{convert.get('converted', 0)} converted, {convert.get('up_to_date', 0)} up to date"),
        "correlate": (f"{c.executor} &times;{c.workers}",
                      f"engine {c.engine}; load {c.timings.get('load', 0):.2f} s, "
                      f"compute {c.timings.get('correlate', 0):.2f} s"),
    }
    for stage, found in (("partners", result.partners), ("search", result.search)):
        if found is not None:
            ran_by[stage] = (f"{found.executor} &times;{found.workers}", f"engine {found.engine}")
    if result.network is not None and result.network.executor is not None:
        ran_by["network"] = (f"{result.network.executor} &times;{result.network.workers}",
                             f"forest {result.network.forest}")
    longest = max(stages.values()) or 1.0
    rows = []
    for stage, seconds in stages.items():
        executor, detail = ran_by.get(stage, ("this process", ""))
        words = STAGE_WORDS.get(stage, "")
        rows.append(
            f"<tr><td>{_e(stage)}<div class=note>{_e(words)}</div></td><td class=num>{seconds:.2f}</td>"
            f'<td class="bar">{_bar(seconds / longest, "time")}</td>'
            f"<td>{executor}<div class=note>{_e(detail)}</div></td></tr>"
        )
    total = sum(stages.values())
    return (
        '<section id="time"><h2>Time spent</h2>'
        f'<table class="stages"><caption>Wall time of each stage, {total:.2f} s in all (writing this page not '
        "included).</caption><thead><tr><th>stage</th><th class=num>seconds</th>"
        '<th class="bar" aria-hidden="true"></th><th>executor</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _bar(fraction: float, css: str) -> str:
    """A horizontal bar ``fraction`` of its cell wide; none for what would be a sliver."""
    fraction = max(0.0, min(1.0, fraction))
    return f'<span class="{css}" style="width:{fraction * 100:.1f}%"></span>' if fraction >= 0.005 else ""


def _plot_file(result: RunResult, name: str) -> bytes | None:
    return _read(result.plots.get(name))


def _read(path) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def _png_size(png: bytes) -> tuple[int, int] | None:
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", png[16:24])


def _figure(png: bytes, alt: str, caption: str, css: str = "") -> str:
    size = _png_size(png)
    dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure class="{css}"><img src="data:image/png;base64,{data}" alt="{_e(alt)}"{dims}>'
            f"<figcaption>{caption}</figcaption></figure>")


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<main>
<header>
<h1>pairscan report</h1>
<p class="headline">{headline}</p>
<p class="meta">{meta}</p>
</header>
{body}
</main>
<script>{script}</script>
</body>
</html>
"""

STYLE = """
:root { --ink: #1d2329; --muted: #5b6570; --rule: #d8dde3; --pos: #c0392b; --neg: #2e6da4; --time: #6c7a89; }
* { box-sizing: border-box; }
html { font-size: 16px; }
body { margin: 0; color: var(--ink); background: #fff;
       font: 1rem/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 72rem; margin: 0 auto; padding: 1.5rem 2rem 3rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .75rem; padding-bottom: .25rem; border-bottom: 1px solid var(--rule); }
.headline { font-size: 1.1rem; margin: .25rem 0; }
.meta, .note, caption, figcaption { color: var(--muted); font-size: .85rem; }
code { font-size: .85rem; overflow-wrap: anywhere; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr)); gap: .75rem; }
.fact { border: 1px solid var(--rule); border-radius: 6px; padding: .6rem .8rem; }
.fact .label { color: var(--muted); font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; }
.fact .value { font-size: 1.15rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.fact .value span { white-space: nowrap; }
.fact.wide { grid-column: span 2; }
.fact.wide .value { font-size: 1rem; line-height: 1.75rem; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: .5rem 0; }
.facts + table { margin-top: 1.25rem; }
caption { text-align: left; padding-bottom: .4rem; caption-side: top; }
th, td { padding: .3rem .75rem; border-bottom: 1px solid var(--rule); text-align: left; vertical-align: top; }
th { font-weight: 600; border-bottom: 2px solid var(--ink); }
.num { text-align: right; }
td.bar, th.bar { width: 10rem; padding-left: 0; vertical-align: middle; }
td.bar span { display: block; height: .7rem; border-radius: 2px; }
span.pos { background: var(--pos); }
span.neg { background: var(--neg); }
span.time { background: var(--time); }
table.pairs tbody tr.best td { font-weight: 600; }
th.sort { cursor: pointer; user-select: none; white-space: nowrap; }
th.sort::after { content: " \\2195"; color: var(--muted); font-weight: normal; }
th.sort[aria-sort=ascending]::after { content: " \\25B2"; color: var(--ink); }
th.sort[aria-sort=descending]::after { content: " \\25BC"; color: var(--ink); }
th.sort:focus-visible { outline: 2px solid var(--neg); }
.find label { font-weight: 600; margin-right: .4rem; }
.find input { font: inherit; padding: .3rem .6rem; width: 18rem; max-width: 100%;
              border: 1px solid var(--muted); border-radius: 4px; }
.matches button { font: inherit; font-size: .9rem; margin: 0 .3rem .3rem 0; padding: .1rem .55rem;
                  border: 1px solid var(--rule); border-radius: 4px; background: #f3f5f7; cursor: pointer; }
.matches button:hover { background: #e4e9ee; }
figure { margin: .5rem 0 0; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--rule); }
figure.square img { max-height: 92vh; width: auto; }
figcaption { margin-top: .4rem; max-width: 60rem; }
.warn { color: #8a4b00; font-weight: 600; }
@media (max-width: 40rem) { main { padding: 1rem; } td.bar, th.bar { display: none; } }
@media print {
  @page { margin: 14mm; }
  html { font-size: 11pt; }
  main { max-width: none; padding: 0; }
  h2 { break-after: avoid; }
  figure, table, .facts { break-inside: avoid; }
  #search { display: none; }
  th.sort::after { content: none; }
  figure img { max-height: 235mm; width: auto; border: none; }
  /* The pair plot and the heatmap share a page. */
  figure.square img { max-height: 120mm; }
  td.bar span { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
}
"""

# Plain JavaScript, no library: sorting the tables by a clicked heading, and the ticker
# search over the JSON in the page. Data from files only ever reaches the page as text
# (textContent), never as markup.
SCRIPT = r"""
"use strict";
(function () {
  function sortKey(cell, numeric) {
    const text = cell.textContent.trim();
    if (!numeric) return text;
    if (text.startsWith("<")) return 0;  // a p-value below what a double holds
    const value = parseFloat(text.replace(/,/g, "").replace("\u2212", "-"));
    return Number.isNaN(value) ? null : value;
  }
  function compare(a, b, numeric) {
    if (!numeric) return a.localeCompare(b);
    if (a === null || b === null) return a === b ? 0 : (a === null ? 1 : -1);
    return a - b;
  }
  function sortable(table) {
    const heads = [...table.tHead.rows[0].cells];
    heads.forEach(function (th, column) {
      if (!th.textContent.trim()) return;
      th.classList.add("sort");
      th.tabIndex = 0;
      th.title = "sort by this column";
      const numeric = th.classList.contains("num");
      function sort() {
        const up = th.getAttribute("aria-sort") !== "ascending";
        heads.forEach(h => h.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", up ? "ascending" : "descending");
        const body = table.tBodies[0];
        const rows = [...body.rows].map((row, at) => [sortKey(row.cells[column], numeric), at, row]);
        rows.sort(function (x, y) {
          if (numeric && (x[0] === null || y[0] === null)) return compare(x[0], y[0], true) || x[1] - y[1];
          return (up ? 1 : -1) * compare(x[0], y[0], numeric) || x[1] - y[1];
        });
        body.append(...rows.map(r => r[2]));
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sort(); }
      });
    });
  }
  document.querySelectorAll("table.sortable").forEach(sortable);

  const source = document.getElementById("search-data");
  if (!source) return;
  const data = JSON.parse(source.textContent);
  const names = data.tickers;
  const exact = new Map(names.map((t, i) => [t, i]));
  const folded = new Map();
  names.forEach(function (t, i) {
    const key = t.toLowerCase();
    folded.set(key, folded.has(key) ? -1 : i);  // -1: more than one ticker folds to this
  });
  const input = document.getElementById("ticker");
  const status = document.getElementById("search-status");
  const matches = document.getElementById("search-matches");
  const table = document.getElementById("search-result");
  const list = document.getElementById("ticker-names");
  const options = document.createDocumentFragment();
  names.forEach(function (t) { const o = document.createElement("option"); o.value = t; options.append(o); });
  list.append(options);
  const count = (n, noun) => n.toLocaleString("en-US") + " " + noun + (n === 1 ? "" : "s");
  status.textContent = "Type a ticker (" + count(names.length, "ticker") + ", e.g. " + names[0] + ").";

  function row(cells) {
    const tr = document.createElement("tr");
    cells.forEach(function ([text, numeric]) {
      const td = document.createElement("td");
      td.textContent = text;
      if (numeric) td.className = "num";
      tr.append(td);
    });
    return tr;
  }
  function show(i) {
    const flat = data.partners[i];
    matches.replaceChildren();
    [...table.tHead.rows[0].cells].forEach(h => h.removeAttribute("aria-sort"));
    const rows = [];
    for (let at = 0; at < flat.length; at += 3) {
      const cells = [[String(at / 3 + 1), true], [names[flat[at]], false], [flat[at + 1].toFixed(4), true],
                     [flat[at + 2].toLocaleString("en-US"), true]];
      if (data.clusters) cells.push([String(data.clusters[flat[at]] || ""), true]);
      rows.push(row(cells));
    }
    table.tBodies[0].replaceChildren(...rows);
    table.caption.textContent = rows.length
      ? "The " + count(rows.length, "best partner") + " of " + names[i] +
        (data.clusters && data.clusters[i] ? " (cluster " + data.clusters[i] + ")" : "")
      : "";
    table.hidden = rows.length === 0;
    status.textContent = rows.length ? "" : names[i] + ": no partner has a correlation (too little overlap, " +
      "or a constant series).";
  }
  function pick(name) { input.value = name; find(); input.focus(); }
  function find() {
    const query = input.value.trim();
    table.hidden = true;
    table.tBodies[0].replaceChildren();
    matches.replaceChildren();
    if (!query) {
      status.textContent = "Type a ticker (" + count(names.length, "ticker") + ").";
      return;
    }
    let i = exact.has(query) ? exact.get(query) : folded.get(query.toLowerCase());
    if (i !== undefined && i >= 0) { show(i); return; }
    const key = query.toLowerCase();
    const found = names.filter(t => t.toLowerCase().startsWith(key));
    if (!found.length) { status.textContent = "No ticker starts with \u201c" + query + "\u201d."; return; }
    status.textContent = count(found.length, "ticker") + " start" + (found.length === 1 ? "s" : "") +
      " with \u201c" + query + "\u201d" + (found.length > 30 ? ", the first 30:" : ":");
    found.slice(0, 30).forEach(function (t) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = t;
      button.addEventListener("click", () => pick(t));
      matches.append(button);
    });
  }
  input.addEventListener("input", find);
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && matches.firstChild) pick(matches.firstChild.textContent);
  });
  if (input.value) find();
})();
"""
