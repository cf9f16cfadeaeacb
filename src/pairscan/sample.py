"""The built-in sample: a deterministic data set in the seed's input format.

Prices follow a factor model: each ticker's log return is a market factor plus its
sector's factor plus its own noise, so some pairs are genuinely more correlated than
others and the best pair means something.

Two shapes: the seed's (intraday bars, every ticker the same history; ``ragged``
trims the ends and drops about 1 % of bars), and ``daily`` (one bar a business day
over many years, shaped like a real universe: tickers that list late or delist, trading
halts of days to weeks, a few missing days, and a few tickers whose whole history is a
handful of days).
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import PairscanError
from .outputs import output_path

SEED_TICKERS = (
    "aet afl aig al amgn avy b bwa ge hal hp hpq ibm jbl jpm luv met pcg tgt usb xom".split()
)
# The seed's tickers by industry; generated tickers beyond them cycle through these.
SECTORS = {
    "health": ["aet", "amgn"],
    "finance": ["afl", "aig", "jpm", "met", "usb"],
    "industry": ["al", "avy", "b", "bwa", "ge", "luv"],
    "energy": ["hal", "hp", "pcg", "xom"],
    "tech": ["hpq", "ibm", "jbl", "tgt"],
}
SECTOR_OF = {t: s for s, ts in SECTORS.items() for t in ts}
FIRST_DAY = "2015-01-02"
FIRST_DAILY_DAY = "2005-01-03"
BAR_MINUTES = 2
MAX_BARS_PER_DAY = 24 * 60 // BAR_MINUTES


MAX_DAYS = 60_000  # business days: from 2005 (or 2015) they stay before 2262, the last nanosecond year
MAX_SEED = 2**63 - 1
MAX_ROWS_PER_TICKER = 4_000_000  # one ticker's file stays under what a convert reads of one file
ROW_BYTES = 110  # about one JSON line of the sample
MAX_BYTES = 8 * 2**30  # the most a sample writes


def check_sample(tickers, days, bars_per_day, seed, daily=False, ragged=False, archive=False,
                 spell=lambda name: name) -> None:
    """:class:`PairscanError` for a sample that is not one: a value of the wrong type or out
    of its range, or a sample that would write more than ``MAX_BYTES`` (estimated).

    ``spell`` names an argument as the caller wrote it (``--bars-per-day`` on the command line).
    """
    for name, value, low, high in (("tickers", tickers, 1, None), ("days", days, 1, MAX_DAYS),
                                   ("bars_per_day", bars_per_day, 1, MAX_BARS_PER_DAY), ("seed", seed, 0, MAX_SEED)):
        allowed = f"between {low} and {high}" if high is not None else f"at least {low}"
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise PairscanError(f"{spell(name)} must be an integer {allowed}, got {value!r}")
        if value < low or (high is not None and value > high):
            raise PairscanError(f"{spell(name)} must be {allowed}, not {value}")
    for name, value in (("daily", daily), ("ragged", ragged), ("archive", archive)):
        if not isinstance(value, (bool, np.bool_)):
            raise PairscanError(f"{spell(name)} must be True or False, got {value!r}")
    per_ticker = days * (1 if daily else bars_per_day)
    if per_ticker > MAX_ROWS_PER_TICKER:
        raise PairscanError(f"{spell('days')} x {spell('bars_per_day')} is {per_ticker:,} bars a ticker, more than "
                            f"the {MAX_ROWS_PER_TICKER:,} a sample file may hold; ask for fewer days or bars")
    size = tickers * per_ticker * ROW_BYTES
    if size > MAX_BYTES:
        raise PairscanError(f"the sample would write about {size / 2**30:,.1f} GiB ({tickers:,} tickers x "
                            f"{per_ticker:,} bars), more than {MAX_BYTES // 2**30} GiB; ask for fewer "
                            f"{spell('tickers')} or {spell('days')}")


def ticker_names(n: int) -> list[str]:
    """The seed's tickers first, then ``t0021``, ``t0022``..."""
    names = list(SEED_TICKERS[:n])
    names += [f"t{i:04d}" for i in range(len(names), n)]
    return names


def bar_times(days: int, bars_per_day: int) -> pd.DatetimeIndex:
    """``bars_per_day`` 2-minute bars from 09:30 on each of ``days`` business days."""
    if not 1 <= bars_per_day <= 24 * 60 // BAR_MINUTES:
        raise ValueError(f"bars_per_day must be between 1 and {24 * 60 // BAR_MINUTES}")
    day = pd.bdate_range(FIRST_DAY, periods=days).values.astype("datetime64[m]")
    start = np.timedelta64(9 * 60 + 30, "m")
    offsets = np.arange(bars_per_day) * np.timedelta64(BAR_MINUTES, "m")
    stamps = (day[:, None] + start + offsets[None, :]).ravel()
    return pd.DatetimeIndex(stamps.astype("datetime64[ns]"), name="timestamp")


def day_times(days: int) -> pd.DatetimeIndex:
    """One timestamp (midnight) for each of ``days`` business days from 2005-01-03."""
    return pd.DatetimeIndex(pd.bdate_range(FIRST_DAILY_DAY, periods=days).values.astype("datetime64[ns]"),
                            name="timestamp")


def sample_frames(
    tickers: int = 21,
    days: int = 365,
    bars_per_day: int = 195,
    ragged: bool = False,
    seed: int = 0,
    daily: bool = False,
) -> dict[str, pd.DataFrame]:
    """The sample as frames in memory: ticker -> OHLCV frame indexed by timestamp."""
    return dict(iter_sample_frames(tickers, days, bars_per_day, ragged, seed, daily))


def iter_sample_frames(
    tickers: int = 21,
    days: int = 365,
    bars_per_day: int = 195,
    ragged: bool = False,
    seed: int = 0,
    daily: bool = False,
) -> Iterator[tuple[str, pd.DataFrame]]:
    """The sample one ticker at a time, ``(ticker, frame)``: large sets need not fit in memory.

    ``daily`` gives one bar a business day (``bars_per_day`` and ``ragged`` are then
    ignored) with a real universe's listings, delistings, halts and short histories.
    """
    if tickers < 1 or days < 1:
        raise ValueError("tickers and days must be at least 1")
    rng = np.random.default_rng(seed)
    if daily:
        bars_per_day = 1
    times = day_times(days) if daily else bar_times(days, bars_per_day)
    steps = len(times)
    names = ticker_names(tickers)
    sector_names = list(SECTORS)
    sectors = [SECTOR_OF.get(t, sector_names[i % len(sector_names)]) for i, t in enumerate(names)]

    # Per-bar volatilities of about 20 % a year spread over the bars.
    bar_vol = 0.2 / np.sqrt(252 * bars_per_day)
    market = rng.standard_normal(steps) * bar_vol
    factor = {s: rng.standard_normal(steps) * bar_vol for s in sector_names}
    for name, sector in zip(names, sectors):
        beta_m = rng.uniform(0.5, 1.5)
        beta_s = rng.uniform(0.3, 1.2)
        own = rng.standard_normal(steps) * bar_vol * rng.uniform(0.5, 1.5)
        log_ret = beta_m * market + beta_s * factor[sector] + own
        close = rng.uniform(20, 200) * np.exp(np.cumsum(log_ret))
        open_ = np.concatenate([[close[0]], close[:-1]])
        spread = np.abs(rng.standard_normal(steps)) * bar_vol * close
        frame = pd.DataFrame(
            {
                "open": open_.round(4),
                "high": (np.maximum(open_, close) + spread).round(4),
                "low": (np.minimum(open_, close) - spread).round(4),
                "close": close.round(4),
                "volume": rng.integers(100, 50_000, steps),
            },
            index=times,
        )
        if daily:
            frame = frame[_listed(rng, steps)]
        elif ragged:
            keep = np.ones(steps, dtype=bool)
            start = rng.integers(0, steps // 5 + 1)
            stop = steps - rng.integers(0, steps // 5 + 1)
            keep[:start] = False
            keep[stop:] = False
            keep &= rng.random(steps) >= 0.01  # about 1 % of bars missing
            frame = frame[keep]
        yield name, frame


def _listed(rng: np.random.Generator, steps: int) -> np.ndarray:
    """Which days a ticker of a real universe trades: the days between its listing and
    delisting, less trading halts and a few missing days."""
    keep = np.ones(steps, dtype=bool)
    kind = rng.random()
    if kind < 0.02:
        # A history of a handful of days (a failed listing, a short-lived symbol).
        start = int(rng.integers(0, steps))
        keep[:] = False
        keep[start : start + int(rng.integers(2, 8))] = True
        return keep
    listed = int(rng.integers(1, steps)) if kind < 0.35 else 0  # listed after the first day
    keep[:listed] = False
    if rng.random() < 0.2 and listed + 1 < steps:
        keep[int(rng.integers(listed + 1, steps)) :] = False  # delisted before the last day
    for _ in range(int(rng.poisson(0.5))):
        start = int(rng.integers(0, steps))
        keep[start : start + int(rng.integers(3, 30))] = False  # a trading halt
    keep &= rng.random(steps) >= 0.002  # a day missing from the vendor's file
    if not keep.any():
        keep[int(rng.integers(0, steps))] = True
    return keep


def write_jsonl(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write one ticker's frame as JSON Lines in the seed's format, atomically."""
    out = frame.reset_index()
    daily = bool((frame.index == frame.index.normalize()).all())
    out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%d" if daily else "%Y-%m-%d %H:%M:%S")
    with output_path(path, "the sample") as tmp:
        out.to_json(tmp, orient="records", lines=True, double_precision=10)


def sample(
    directory: str | os.PathLike,
    tickers: int = 21,
    days: int = 365,
    bars_per_day: int = 195,
    ragged: bool = False,
    seed: int = 0,
    archive: bool = False,
    daily: bool = False,
) -> Path:
    """Write the sample data set to ``directory`` as ``<ticker>.json`` files.

    ``daily=True`` writes ``days`` business days of daily bars shaped like a real
    universe (see :func:`iter_sample_frames`); ``days=5040`` is twenty years.

    With ``archive=True`` also write ``<directory>.tgz`` holding the folder, the
    seed's starting point. Returns the folder (or the archive, when written).
    Values out of their ranges, or a sample of more than 8 GiB, are a :class:`PairscanError`.
    """
    check_sample(tickers, days, bars_per_day, seed, daily, ragged, archive)
    if not isinstance(directory, (str, os.PathLike)):
        raise PairscanError(f"directory must be a path (str or os.PathLike), got {directory!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for name, frame in iter_sample_frames(tickers, days, bars_per_day, ragged, seed, daily):
        write_jsonl(frame, directory / f"{name}.json")
        names.append(name)
    if not archive:
        return directory
    target = directory.with_name(directory.name + ".tgz")
    with output_path(target, "the sample archive") as tmp, tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
        for name in names:
            tar.add(directory / f"{name}.json", arcname=f"{directory.name}/{name}.json")
    return target
