"""Report: one self-contained HTML page of a run, figures embedded, nothing fetched.

The page says what data went in (tickers, rows, date range, skipped lines), what came
out (the top pairs, the best pair's plot, the clustered heatmap) and where the time
went (each stage, and the executor that ran it). It is one file: styles inline,
figures as PNG data URIs, no scripts, so it opens offline, mails as an attachment and
prints on paper.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import os
import struct
from pathlib import Path

import numpy as np
import pandas as pd

from .version import __version__ as VERSION
from .engines import HISTOGRAM_BINS
from .plot import correlation_symbol, figure_png, heatmap_figure, histogram_figure
from .selection import Selection
from .records import format_p
from .outputs import check_output, write_bytes
from .store import read_manifest, store_files, store_format, stored_span

STAGE_WORDS = {
    "sample": "the built-in sample, written unless already there",
    "extract": "extract the archive",
    "convert": "JSON Lines to the store",
    "correlate": "load the store, correlate every pair",
    "analyze": "hedge ratio, cointegration, half-life of the top pairs",
    "plot": "draw the pair plot, the spread plot and the heatmap",
}


def write_report(path: str | os.PathLike, out: dict, result, store: str | os.PathLike) -> Path:
    """Write the HTML report of a run to ``path`` atomically; return the path.

    ``out`` is what ``run --json`` prints (the ``convert`` summary, ``stages``,
    ``plots``, ``top``...), ``result`` the run's :class:`~pairscan.correlate.Correlation`
    and ``store`` the store folder, from which the data-set facts are read.
    """
    path = check_output(path, "the report")
    page = render(out, result, dataset_facts(store, out.get("column", "close")))
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


def render(out: dict, result, facts: dict) -> str:
    """The report page as a string (see :func:`write_report`)."""
    top = out.get("top", [])
    symbol = correlation_symbol(out.get("method", "pearson"))
    what = _what(out)
    if top:
        best = top[0]
        headline = (f"Most correlated of {_tickers(out, facts)} tickers: <strong>{_e(best['a'])}</strong> and "
                    f"<strong>{_e(best['b'])}</strong>, {_e(symbol)} = {best['corr']:.4f} on {_e(what)} "
                    f"({_count(best['n'], 'common observation')}; ranked among the "
                    f"{out.get('pairs_ranked', 0):,} pairs with at least {out.get('min_periods', 0):,}).")
        title = f"pairscan: {best['a']} and {best['b']}, {symbol} = {best['corr']:.4f}"
    else:
        headline = f"No pair of the {_tickers(out, facts)} tickers has a correlation (too little overlap, or constant series)."
        title = "pairscan report"
    written = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        _data_section(out, facts),
        _pairs_section(top, symbol, what, out),
        _histogram_section(out, result, symbol, what),
        _pair_plot_section(out, top, what),
        _partners_section(out, symbol, what),
        analysis_section(out["analysis"]["pairs"], _plot_file(out, "spread"), out["analysis"]["window"])
        if out.get("analysis") else "",
        _heatmap_section(out, result),
        _time_section(out),
    ]
    return PAGE.format(
        title=_e(title),
        style=STYLE,
        headline=headline,
        meta=(f"Source: <code>{_e(out.get('source', '?'))}</code> &middot; store: <code>{_e(out.get('store', '?'))}</code>"
              f" &middot; written {written} by pairscan {VERSION}"),
        body="\n".join(sections),
    )


def _what(out: dict) -> str:
    """What was correlated: ``weekly log returns of close, 2003-01-01 to 2006-06-30``."""
    return Selection.of_answer(out).describe()


def _tickers(out: dict, facts: dict) -> str:
    """How many tickers were correlated: ``40 of 3,000`` where the selection left some out."""
    series, stored = out.get("series", facts["tickers"]), out.get("tickers_stored", facts["tickers"])
    return f"{series:,} of {stored:,}" if stored not in (None, series) else f"{series:,}"


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _when(stamp: pd.Timestamp | None, daily: bool) -> str:
    if stamp is None:
        return "?"
    return stamp.strftime("%Y-%m-%d" if daily else "%Y-%m-%d %H:%M")


def _data_section(out: dict, facts: dict) -> str:
    first, last = facts["first"], facts["last"]
    daily = all(s is None or s == s.normalize() for s in (first, last))
    if first is not None and last is not None:
        days = (last.normalize() - first.normalize()).days + 1
        span = (_when(first, daily), f"\u2013 {_when(last, daily)}")
        span_note = f"{days:,} calendar days"
    else:
        span, span_note = ("no data",), ""
    skipped = facts["bad_lines_skipped"]
    cards = [
        ("tickers", (f"{facts['tickers']:,}",), _count(facts["tickers"] * (facts["tickers"] - 1) // 2, "pair")),
        ("rows stored", (f"{facts['rows']:,}",), f"{facts['format']} store"),
        ("date range", span, span_note),
        ("bad lines skipped", (f"{skipped:,}",),
         (f"in {_count(len(facts['skipped_by_ticker']), 'file')}" if skipped else "every line valid")
         + f"; {_count(facts['duplicates_dropped'], 'duplicate timestamp')} dropped"),
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
    failed = (out.get("convert") or {}).get("failed") or []
    if failed:
        parts.append(f"<p class=warn>{_count(len(failed), 'file')} could not be converted and are not in the store.</p>")
    parts.append("</section>")
    return "\n".join(parts)


def ranking_rule(out: dict) -> str:
    """The ranking rule and what it left out, in one sentence of plain words."""
    considered, ranked, periods = out.get("pairs_considered", 0), out.get("pairs_ranked", 0), out.get("min_periods", 0)
    why = ("auto: half the median history, at least 30" if out.get("min_periods_auto")
           else "set with --min-periods")
    return (f"Ranked: the {ranked:,} of {considered:,} pairs that share at least {periods:,} observations "
            f"({why}); {considered - ranked:,} pairs were left out, for too little overlap or a constant series.")


def _pairs_section(top: list[dict], symbol: str, what: str, out: dict) -> str:
    rule = f"<p>{_e(ranking_rule(out))}</p>"
    if not top:
        return (f'<section id="pairs"><h2>Top pairs</h2>{rule}<p>No pair has a correlation: too few common '
                "observations, or a constant series.</p></section>")
    rows = "\n".join(
        f"<tr><td class=num>{rank}</td><td>{_e(p['a'])}</td><td>{_e(p['b'])}</td>"
        f"<td class=num>{p['corr']:.6f}</td>"
        f'<td class="bar">{_bar(abs(p["corr"]), "neg" if p["corr"] < 0 else "pos")}</td>'
        f"<td class=num>{p['n']:,}</td><td class=num>{_e(format_p(p.get('p')))}</td>"
        f"<td class=num>{_interval(p)}</td></tr>"
        for rank, p in enumerate(top, 1)
    )
    return (
        f'<section id="pairs"><h2>Top pairs</h2>{rule}'
        f'<table class="pairs"><caption>The {len(top)} most correlated pairs: {_e(symbol)} of {_e(what)}; '
        "<i>n</i> is the number of observations the two tickers share, <i>p</i> the two-sided p-value for no "
        "correlation, and the interval the 95 % Fisher-z confidence interval. With many pairs, some get a tiny "
        "<i>p</i> by chance alone: a small <i>p</i> is not a discovery by itself.</caption>"
        f"<thead><tr><th class=num>rank</th><th>a</th><th>b</th><th class=num>{_e(symbol)}</th>"
        '<th class="bar" aria-hidden="true"></th><th class=num><i>n</i></th><th class=num><i>p</i></th>'
        "<th class=num>95 % interval</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _partners_section(out: dict, symbol: str, what: str) -> str:
    """With ``--with``: one table per named ticker, and the plot of the first one's best partner."""
    if "partners" not in out:
        return ""
    tables = []
    for ticker, pairs in out["partners"].items():
        if not pairs:
            tables.append(f"<p>{_e(ticker)}: no partner has a correlation (too little overlap, or a constant "
                          "series).</p>")
            continue
        rows = "\n".join(
            f"<tr><td class=num>{rank}</td><td>{_e(p['b'])}</td><td class=num>{p['corr']:.6f}</td>"
            f"<td class=num>{p['n']:,}</td><td class=num>{_e(format_p(p.get('p')))}</td>"
            f"<td class=num>{_interval(p)}</td></tr>"
            for rank, p in enumerate(pairs, 1))
        tables.append(
            f'<table class="pairs"><caption>The {len(pairs)} best partners of {_e(ticker)}: {_e(symbol)} of '
            f"{_e(what)}</caption><thead><tr><th class=num>rank</th><th>partner</th>"
            f"<th class=num>{_e(symbol)}</th><th class=num><i>n</i></th><th class=num><i>p</i></th>"
            f"<th class=num>95 % interval</th></tr></thead><tbody>{rows}</tbody></table>")
    png = _plot_file(out, "partners")
    if png is not None:
        first = next(iter(out["partners"].values()))[0]
        caption = (f"{_e(first['a'])} and its best partner {_e(first['b'])}: their "
                   f"{_e(out.get('column', 'close'))} prices over time, each divided by its own maximum.")
        tables.append(_figure(png, f"{first['a']} and {first['b']} over time", caption))
    return '<section id="partners"><h2>Partners</h2>' + "\n".join(tables) + "</section>"


def _interval(p: dict) -> str:
    low, high = p.get("ci_low"), p.get("ci_high")
    return "" if low is None or high is None else f"{low:.4f} &ndash; {high:.4f}"


def _histogram_section(out: dict, result, symbol: str, what: str) -> str:
    counts = getattr(result, "histogram", None)
    if counts is None or not np.sum(counts):
        return ""
    png = figure_png(histogram_figure(counts, HISTOGRAM_BINS, f"{symbol} of {what}"))
    caption = (f"How the correlations of all {int(np.sum(counts)):,} ranked pairs spread, in bins 0.05 wide: "
               "the top pairs sit at the right-hand tail of this.")
    return ('<section id="spread"><h2>All ranked pairs</h2>'
            f'{_figure(png, "histogram of the correlations of all ranked pairs", caption)}</section>')


def _pair_plot_section(out: dict, top: list[dict], what: str) -> str:
    png = _plot_file(out, "pair")
    if not top or png is None:
        return ""
    best = top[0]
    note = " The lines are prices; the correlation is of their log returns." if out.get("on") == "returns" else ""
    caption = (f"{_e(best['a'])} and {_e(best['b'])}, the most correlated pair: their {_e(out.get('column', 'close'))} "
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
        f'<table class="analysis"><caption>{caption}</caption>'
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


def _heatmap_section(out: dict, result) -> str:
    png = _plot_file(out, "heatmap")
    matrix = getattr(result, "matrix", None)
    if png is None and matrix is not None:
        png = figure_png(heatmap_figure(matrix, method=out.get("method", "pearson")))
    if png is None:
        return ('<section id="heatmap"><h2>Correlation heatmap</h2><p>Not drawn: '
                f"{out.get('series', 0):,} tickers are too many for one picture.</p></section>")
    caption = ("Every pair's correlation; tickers ordered by hierarchical clustering (average linkage on 1 &minus; r), "
               "so that tickers that move together sit together. Red is positive, blue negative, white 0.")
    return ('<section id="heatmap"><h2>Correlation heatmap</h2>'
            f'{_figure(png, "clustered correlation heatmap", caption, css="square")}</section>')


def _time_section(out: dict) -> str:
    stages = out.get("stages", {})
    if not stages:
        return ""
    convert = out.get("convert") or {}
    timings = out.get("timings", {})
    ran_by = {
        "convert": (f"{convert.get('executor', '?')} &times;{convert.get('workers', '?')}",
                    f"{convert.get('converted', 0)} converted, {convert.get('up_to_date', 0)} up to date"),
        "correlate": (f"{out.get('executor', '?')} &times;{out.get('workers', '?')}",
                      f"engine {out.get('engine', '?')}; load {timings.get('load', 0):.2f} s, "
                      f"compute {timings.get('correlate', 0):.2f} s"),
    }
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


def _plot_file(out: dict, name: str) -> bytes | None:
    path = out.get("plots", {}).get(name)
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
table.pairs tbody tr:first-child td { font-weight: 600; }
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
  figure img { max-height: 235mm; width: auto; border: none; }
  /* The pair plot and the heatmap share a page. */
  figure.square img { max-height: 120mm; }
  td.bar span { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
}
"""
