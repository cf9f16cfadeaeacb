"""The built-in sample: a deterministic data set in the seed's input format.

Prices follow a factor model: each ticker's log return is a market factor plus its
sector's factor plus its own noise, so some pairs are genuinely more correlated than
others and the best pair means something.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .store import atomic_path

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
BAR_MINUTES = 2


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


def sample_frames(
    tickers: int = 21,
    days: int = 365,
    bars_per_day: int = 195,
    ragged: bool = False,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """The sample as frames in memory: ticker -> OHLCV frame indexed by timestamp."""
    return dict(iter_sample_frames(tickers, days, bars_per_day, ragged, seed))


def iter_sample_frames(
    tickers: int = 21,
    days: int = 365,
    bars_per_day: int = 195,
    ragged: bool = False,
    seed: int = 0,
) -> Iterator[tuple[str, pd.DataFrame]]:
    """The sample one ticker at a time, ``(ticker, frame)``: large sets need not fit in memory."""
    if tickers < 1 or days < 1:
        raise ValueError("tickers and days must be at least 1")
    rng = np.random.default_rng(seed)
    times = bar_times(days, bars_per_day)
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
        if ragged:
            keep = np.ones(steps, dtype=bool)
            start = rng.integers(0, steps // 5 + 1)
            stop = steps - rng.integers(0, steps // 5 + 1)
            keep[:start] = False
            keep[stop:] = False
            keep &= rng.random(steps) >= 0.01  # about 1 % of bars missing
            frame = frame[keep]
        yield name, frame


def write_jsonl(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write one ticker's frame as JSON Lines in the seed's format, atomically."""
    out = frame.reset_index()
    out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    with atomic_path(path) as tmp:
        out.to_json(tmp, orient="records", lines=True, double_precision=10)


def sample(
    directory: str | os.PathLike,
    tickers: int = 21,
    days: int = 365,
    bars_per_day: int = 195,
    ragged: bool = False,
    seed: int = 0,
    archive: bool = False,
) -> Path:
    """Write the sample data set to ``directory`` as ``<ticker>.json`` files.

    With ``archive=True`` also write ``<directory>.tgz`` holding the folder, the
    seed's starting point. Returns the folder (or the archive, when written).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for name, frame in iter_sample_frames(tickers, days, bars_per_day, ragged, seed):
        write_jsonl(frame, directory / f"{name}.json")
        names.append(name)
    if not archive:
        return directory
    target = directory.with_name(directory.name + ".tgz")
    with atomic_path(target) as tmp, tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
        for name in names:
            tar.add(directory / f"{name}.json", arcname=f"{directory.name}/{name}.json")
    return target
