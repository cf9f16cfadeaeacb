"""Shared fixtures: small sample data sets written with ``pairscan.sample`` and stored."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pairscan
from pairscan.store import store_files

SMALL = dict(tickers=8, days=4, bars_per_day=30)


def make_store(root: Path, ragged: bool, fmt: str = "hdf5", seed: int = 0, **sizes) -> Path:
    options = {**SMALL, **sizes}
    folder = root / ("ragged" if ragged else "aligned") / "daily-stock"
    pairscan.sample(folder, ragged=ragged, seed=seed, **options)
    store = folder.parent / f"store-{fmt}"
    pairscan.convert(folder, to=store, format=fmt, executor="serial")
    return store


@pytest.fixture(scope="session")
def aligned_store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("aligned"), ragged=False)


@pytest.fixture(scope="session")
def ragged_store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("ragged"), ragged=True)


@pytest.fixture(scope="session", params=["aligned", "ragged"])
def any_store(request, aligned_store, ragged_store) -> Path:
    return aligned_store if request.param == "aligned" else ragged_store


def oracle_series(store: Path, column: str = "close", on: str = "prices", start=None, end=None, resample=None,
                  tickers=None) -> dict[str, pd.Series]:
    """The series exactly as DESIGN.md's oracle defines them, read with pandas: each
    ticker's ``F[column].loc[start:end]``, resampled (``.resample(rule).last()``, empty
    bins dropped) if asked, and for returns ``np.log(S).diff()`` on its own timestamps.
    With a period or a rule, tickers with no value leave."""
    series = {}
    for ticker, path in store_files(store).items():
        if tickers is not None and ticker not in tickers:
            continue
        frame = pd.read_hdf(path, "/data") if path.suffix == ".h5" else pd.read_parquet(path)
        s = frame[column].loc[start:end]
        if resample is not None:
            s = s.resample(resample).last().dropna()
        if on == "returns":
            with np.errstate(divide="ignore", invalid="ignore"):
                s = np.log(s).diff()
        if (start is not None or end is not None or resample is not None) and not np.isfinite(s).any():
            continue
        series[ticker] = s
    return series


def own_returns(frame: pd.DataFrame) -> pd.DataFrame:
    """A panel's log returns as the contract takes them: each column on its own
    timestamps (where it has a value), ``np.log(series).diff()``, then aligned."""
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = {c: np.log(frame[c].dropna()).diff() for c in frame.columns}
    return pd.concat(returns, axis=1, sort=True).reindex(columns=frame.columns)


def oracle_pairs(series: dict[str, pd.Series], method: str = "pearson", min_periods=None) -> dict:
    """``{(a, b): A.corr(B)}`` for every pair ``a < b``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            (a, b): series[a].corr(series[b], method=method, min_periods=min_periods)
            for a, b in itertools.combinations(sorted(series), 2)
        }


def assert_matches(matrix: pd.DataFrame, expected: dict, tol: float = 1e-9) -> None:
    """Every pair of the matrix equals the oracle (NaN where the oracle is NaN)."""
    for (a, b), want in expected.items():
        got = matrix.loc[a, b]
        if np.isnan(want):
            assert np.isnan(got), f"{a}~{b}: expected NaN, got {got}"
        else:
            assert abs(got - want) <= tol, f"{a}~{b}: {got} != {want}"
