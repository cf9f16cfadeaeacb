"""Words shared by the command line and the report: counts, numbers, the ranking rule, headlines.

Each function takes plain values (or a :class:`~pairscan.correlate.Correlation`, read
by its attributes) and returns text without markup; the report escapes what it shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for annotations only: the wording reads answers, it does not compute them
    from .correlate import Correlation

AUTO_RULE = "auto: half the median history, at least 30"


def count(n: int, noun: str) -> str:
    """``1 pair``, ``2,000 pairs``: a count and its noun, singular for one."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def seconds(value: float) -> str:
    """A wall time as the answers print it: ``0.412 s`` (rounded as JSON has it first)."""
    return f"{round(value, 4):.3f} s"


def of_stored(series: int, stored: int | None) -> str:
    """How many tickers were correlated: ``40 of 3,000`` where the selection left some out, else ``40``."""
    return f"{series:,} of {stored:,}" if stored not in (None, series) else f"{series:,}"


def tickers(series: int, stored: int | None) -> str:
    """``40 of 3,000 tickers``, ``21 tickers``, ``1 ticker``."""
    if stored not in (None, series):
        return f"{series:,} of {count(stored, 'ticker')}"
    return count(series, "ticker")


def min_periods_rule(auto: bool, set_words: str = "--min-periods") -> str:
    """Where the min-periods in force came from: the auto rule, or ``set_words``."""
    return AUTO_RULE if auto else set_words


def ranked_line(result: Correlation) -> str:
    """The command line's line on what was ranked, and by which rule."""
    return (f"ranked {result.pairs_ranked:,} of {result.pairs_considered:,} pairs: at least "
            f"{result.min_periods:,} common observations ({min_periods_rule(result.selection.auto)}); "
            "--min-periods to change")


def ranking_rule(result: Correlation) -> str:
    """The report's sentence on the ranking rule and what it left out."""
    considered, ranked = result.pairs_considered, result.pairs_ranked
    return (f"Ranked: the {ranked:,} of {considered:,} pairs that share at least {result.min_periods:,} "
            f"observations ({min_periods_rule(result.selection.auto, 'set with --min-periods')}); "
            f"{considered - ranked:,} pairs were left out, for too little overlap or a constant series.")


LEFT_OUT_SHOWN = 5  # tickers named where the left-out are listed; the rest are counted


def left_out_line(result: Correlation, name=str) -> str | None:
    """The tickers too short to rank, the first few with their history (each ticker's
    name through ``name``): None if there are none."""
    left = result.left_out
    if not left:
        return None
    named = ", ".join(f"{name(e['ticker'])} ({e['n']:,})" for e in left[:LEFT_OUT_SHOWN])
    more = f" and {len(left) - LEFT_OUT_SHOWN:,} more" if len(left) > LEFT_OUT_SHOWN else ""
    noun = "observations" if result.on == "prices" else "returns"
    return f"left out: {count(len(left), 'ticker')} with fewer than {result.min_periods:,} {noun}: {named}{more}"


def summary_line(result: Correlation) -> str:
    """The command line's headline of a correlate: what, how many, on which engine, how long."""
    return (f"{tickers(result.series, result.stored)}, {count(result.pairs_considered, 'pair')}: "
            f"{result.method} on {result.selection.describe()}; engine {result.engine}, executor "
            f"{result.executor} x{result.workers}, {seconds(result.seconds)}")
