"""Shared fixtures: small sample data sets written with ``pairscan.sample`` and stored."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import subprocess
import traceback
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pairscan
from pairscan.store import store_files

SMALL = dict(tickers=8, days=4, bars_per_day=30)


def run_cli(*args, cwd: Path | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    """``pairscan ARGS`` run in this process through :func:`pairscan.cli.main`: its exit
    status and what it printed, as ``subprocess.run(..., capture_output=True, text=True)``
    gives them (an exception that escapes is printed as the interpreter would, status 1).
    For what a command does and says; a test of the process itself (a signal, a
    resource limit, output below Python) runs ``python -m pairscan``. ``timeout`` is
    accepted for the callers' sake and not enforced."""
    from pairscan.cli import main

    argv = [os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd or os.getcwd()), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exit_:  # argparse's usage errors, --help, --version
            status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            if isinstance(exit_.code, str):
                print(exit_.code, file=err)
        except BaseException:  # noqa: BLE001  (a bug: the interpreter would print it and exit 1)
            traceback.print_exc(file=err)
            status = 1
    return subprocess.CompletedProcess(["pairscan", *argv], status, out.getvalue(), err.getvalue())


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


def frames_missing_days(days: int, seed: int = 9, tickers: int = 40) -> tuple[dict[str, pd.DataFrame], list, list]:
    """Daily sample frames whose histories, all but the three shortest, lack three days only
    those three have (a load's first guess of the index from the largest files misses
    them); the three shortest; the three days."""
    from pairscan.sample import sample_frames

    frames = dict(sample_frames(tickers=tickers, days=days, daily=True, seed=seed))
    shortest = sorted(frames, key=lambda t: (len(frames[t]), t))[:3]
    missing = [frames[t].index[len(frames[t]) // 2] for t in shortest]
    for ticker in frames:
        if ticker not in shortest:
            frames[ticker] = frames[ticker].drop(missing, errors="ignore")
    return frames, shortest, missing


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
