"""Analyze: beyond correlation, does the spread of a pair revert?

For each pair, on the log prices over the pair's common timestamps
(docs/semantics.md, "Pair analysis"): the hedge ratio (``beta``, ``alpha``: OLS of log A on log B with an
intercept), the Engle-Granger cointegration test (``coint_t``, ``coint_p``: equal to
``statsmodels.tsa.stattools.coint(log_a, log_b)`` with its defaults), the half-life
of the spread, its current z-score and the range of the rolling correlation of the
pair's log returns.

:func:`analyze_pair` is the numerical core on two aligned arrays. The augmented
Dickey-Fuller step of the test is one factorisation for every candidate lag count at
once (the residual sum of squares of each prefix of the lagged design is read off the
last column of its R factor), where statsmodels fits one regression per lag; the lag
chosen by AIC is then refitted on its own, longer sample, as statsmodels does.

:func:`analyze` is the store-level entry point: one task per pair on the chosen
executor, each reading its two series from the store where it runs.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pandas as pd

from . import checks
from .correlate import correlate, pair_correlations
from .engines.blocked import blas_threads
from .errors import PairscanError
from .executors import Execution, Pool, preload, run_tasks
from .pair_reader import PairSource, common, read_pair
from .records import PAIR_FIELDS, pair_frame
from .selection import Cut, Selection
from .wording import count

DEFAULT_WINDOW = 60
preload(__name__, "statsmodels.tsa.adfvalues")  # what its process workers need
FIELDS = ("beta", "alpha", "coint_t", "coint_p", "half_life", "zscore",
          "rolling_corr_min", "rolling_corr_median", "rolling_corr_max")
COLUMNS = (*PAIR_FIELDS, *FIELDS, "reason")  # the pair record, then the analysis
# statsmodels' coint skips the test when the first-stage fit is this close to perfect.
_COLLINEAR_R2 = 1 - 100 * np.sqrt(np.finfo(np.double).eps)
_MIN_POINTS = 3  # a line through two points fits exactly: nothing is left to test


# -- the numerical core ------------------------------------------------------------------


def analyze_pair(log_a: np.ndarray, log_b: np.ndarray, window: int = DEFAULT_WINDOW) -> dict:
    """Hedge ratio, cointegration, half-life, z-score and rolling correlation of a pair.

    Parameters
    ----------
    log_a, log_b : ndarray of shape (n,)
        Log prices of the two tickers on their common timestamps, oldest first,
        without missing values.
    window : int
        Observations in each window of the rolling correlation of log returns.

    Returns
    -------
    dict
        The :data:`FIELDS` (floats, NaN where undefined) and ``reason``: why a field
        is NaN (or why the test is not reliable), ``None`` when every field is defined.
        ``half_life`` is in observations.
    """
    log_a = np.asarray(log_a, dtype=np.float64)
    log_b = np.asarray(log_b, dtype=np.float64)
    out = dict.fromkeys(FIELDS, math.nan)
    reasons: list[str] = []
    n = len(log_a)
    if n < _MIN_POINTS:
        out["reason"] = f"{count(n, 'common timestamp')}: too few to fit a hedge ratio and test it"
        return out
    constant = [name for name, x in (("a", log_a), ("b", log_b)) if np.ptp(x) == 0]
    if constant:
        out["reason"] = f"constant series ({' and '.join(constant)}): no hedge ratio, no test"
        return out
    out.update(_rolling_corr(np.diff(log_a), np.diff(log_b), window, reasons))

    # Hedge ratio: OLS of log A on log B with an intercept (centred sums: well conditioned).
    ma, mb = log_a.mean(), log_b.mean()
    da, db = log_a - ma, log_b - mb
    beta = float(db @ da / (db @ db))
    alpha = float(ma - beta * mb)
    spread = log_a - beta * log_b - alpha
    out["beta"], out["alpha"] = beta, alpha

    r_squared = 1.0 - (spread @ spread) / (da @ da)
    if r_squared >= _COLLINEAR_R2:
        # statsmodels' convention: cointegrated by construction, the statistic unusable.
        out["coint_t"], out["coint_p"] = -math.inf, _mackinnonp(-math.inf)
        reasons.append("the two series are almost perfectly collinear: coint_t is -inf and the test is not reliable")
    else:
        t = adf_t(spread)
        if np.isfinite(t):
            out["coint_t"], out["coint_p"] = t, _mackinnonp(t)
        else:
            reasons.append(f"{count(n, 'common timestamp')}: too few for the cointegration test's lags")

    std = spread.std(ddof=1)
    if std > 0:
        out["zscore"] = float((spread[-1] - spread.mean()) / std)
        out["half_life"] = _half_life(spread, reasons)
    else:
        reasons.append("the spread is constant: no z-score or half-life")
    out["reason"] = "; ".join(reasons) or None
    return out


def adf_t(x: np.ndarray) -> float:
    """The augmented Dickey-Fuller t statistic of ``x``, no constant, lag by AIC.

    Equal to ``statsmodels.tsa.stattools.adfuller(x, regression="n", autolag="AIC")[0]``:
    the same maximum lag (``12 (n/100)^(1/4)``, at most ``n//2 - 1``), the lag search
    on the common sample of the longest lag, the chosen lag refitted on its own sample.
    NaN when the sample leaves no degrees of freedom.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    maxlag = min(n // 2 - 1, int(np.ceil(12.0 * (n / 100.0) ** 0.25)))
    if maxlag < 0:
        return math.nan
    diff = np.diff(x)
    # The search: [level, diff lag 1..maxlag | diff] on the last n-1-maxlag rows.
    rows = n - 1 - maxlag
    design = np.empty((rows, maxlag + 2))
    design[:, 0] = x[maxlag : n - 1]
    for j in range(1, maxlag + 1):
        design[:, j] = diff[maxlag - j : n - 1 - j]
    design[:, -1] = diff[maxlag:]
    r = _r_factor(design)[:, -1]
    # The residual sum of squares with the first p regressors is the sum of r[p:]**2.
    ssr = np.cumsum((r**2)[::-1])[::-1][1:]
    p = np.arange(1, maxlag + 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        aic = rows * (np.log(2 * np.pi) + np.log(ssr / rows) + 1) + 2 * p
    if np.isnan(aic).all():
        return math.nan
    lags = int(np.nanargmin(aic))  # the first minimum: the fewest lags on a tie, as statsmodels

    # The refit: [diff lag 1..lags, level | diff] on the last n-1-lags rows. With the
    # level last, its t statistic is read straight off R.
    rows = n - 1 - lags
    df = rows - (lags + 1)
    if df <= 0:
        return math.nan
    design = np.empty((rows, lags + 2))
    for j in range(1, lags + 1):
        design[:, j - 1] = diff[lags - j : n - 1 - j]
    design[:, lags] = x[lags : n - 1]
    design[:, -1] = diff[lags:]
    rr = _r_factor(design)
    scale = math.sqrt(rr[-1, -1] ** 2 / df)
    if rr[lags, lags] == 0 or scale == 0:
        return math.nan
    return float(np.sign(rr[lags, lags]) * rr[lags, -1] / scale)


def _r_factor(design: np.ndarray) -> np.ndarray:
    """An upper-triangular ``R`` with ``R.T @ R == design.T @ design`` (square, as wide as ``design``).

    The Cholesky factor of the cross products (one matrix product, then a small
    factorisation): the regressors of an ADF regression are far from collinear. An
    exact fit (as many rows as regressors) has no Cholesky factor: QR then.
    """
    # One BLAS thread for the small products here: a pool of BLAS threads per task, on
    # top of the executor's workers, makes them many times slower on a busy machine.
    with blas_threads(1):
        try:
            factor = np.linalg.cholesky(design.T @ design).T
            if np.isfinite(factor).all():
                return factor
        except np.linalg.LinAlgError:
            pass
        factor = np.linalg.qr(design, mode="r")
    square = np.zeros((design.shape[1], design.shape[1]))
    square[: len(factor)] = factor  # fewer rows than columns: R has fewer rows
    return square


def _mackinnonp(t: float) -> float:
    """MacKinnon's approximate p-value of an Engle-Granger t (constant, two variables)."""
    from statsmodels.tsa.adfvalues import mackinnonp  # imported when first needed: it is slow

    return float(mackinnonp(t, regression="c", N=2))


def _half_life(spread: np.ndarray, reasons: list[str]) -> float:
    lagged, step = spread[:-1], np.diff(spread)
    centred = lagged - lagged.mean()
    spread_var = centred @ centred
    if spread_var == 0:
        reasons.append("the spread is constant but for its last value: no half-life")
        return math.nan
    lam = float(centred @ (step - step.mean()) / spread_var)
    if lam >= 0:
        reasons.append(f"the spread does not revert (lambda = {lam:.3g} >= 0): no half-life")
        return math.nan
    if lam <= -1:
        reasons.append(f"the spread overshoots its mean at every step (lambda = {lam:.3g} <= -1): no half-life")
        return math.nan
    return -math.log(2) / math.log1p(lam)


def _rolling_corr(ra: np.ndarray, rb: np.ndarray, window: int, reasons: list[str]) -> dict:
    names = ("rolling_corr_min", "rolling_corr_median", "rolling_corr_max")
    if len(ra) < window:
        reasons.append(f"{count(len(ra), 'common log return')}, fewer than the window of {window}: "
                       "no rolling correlation")
        return dict.fromkeys(names, math.nan)
    rolling = rolling_corr(ra, rb, window)
    rolling = rolling[np.isfinite(rolling)]
    if not len(rolling):
        reasons.append(f"no {window}-observation window has a correlation (constant returns)")
        return dict.fromkeys(names, math.nan)
    return dict(zip(names, (float(rolling.min()), float(np.median(rolling)), float(rolling.max()))))


def rolling_corr(returns_a: np.ndarray, returns_b: np.ndarray, window: int) -> np.ndarray:
    """The ``window``-observation rolling Pearson correlation (pandas'), NaN until a window is full."""
    return pd.Series(returns_a).rolling(window).corr(pd.Series(returns_b)).to_numpy()


# -- tasks and the store ------------------------------------------------------------------


def analyze_stored_pair(path_a: str, path_b: str, column: str, window: int, cut: Cut | None = None) -> dict:
    """Task: :func:`analyze_pair` of two stored tickers, read from the store where it runs."""
    return _analyze_prices(*read_pair(path_a, path_b, column, cut)[1:], window)


def analyze_given_pair(a: pd.Series, b: pd.Series, window: int) -> dict:
    """Task: :func:`analyze_pair` of two price series (a caller's panel's columns)."""
    return _analyze_prices(*common(a, b)[1:], window)


def _analyze_prices(a: np.ndarray, b: np.ndarray, window: int) -> dict:
    positive = (a > 0) & (b > 0)
    if not positive.all():
        fields = dict.fromkeys(FIELDS, math.nan)
        fields["reason"] = f"{count(int((~positive).sum()), 'price')} <= 0 on common timestamps: no log prices"
        return fields
    return analyze_pair(np.log(a), np.log(b), window)


def _named_pairs(pairs, where: PairSource) -> list[tuple[str, str]]:
    if len(pairs) == 2 and all(isinstance(t, str) for t in pairs):
        pairs = [pairs]  # one pair, given as (a, b)
    named = []
    for pair in pairs:
        if isinstance(pair, str) or len(pair) != 2:
            raise PairscanError(f"a pair is two tickers, not {pair!r}")
        for ticker in pair:
            where.check(ticker)  # or bad input naming the closest ticker
        a, b = pair
        if a == b:
            raise PairscanError(f"a pair needs two different tickers, not {a!r} twice")
        if (a, b) not in named:
            named.append((a, b))
    return named


def analyze(
    store_or_panel,
    pairs=None,
    *,
    k: int = 10,
    window: int = DEFAULT_WINDOW,
    selection: Selection | None = None,
    column: str | None = None,
    on: str | None = None,
    method: str | None = None,
    min_periods: int | str | None = None,
    absolute: bool | None = None,
    start: str | None = None,
    end: str | None = None,
    resample: str | None = None,
    tickers=None,
    exclude=None,
    execution: Execution | None = None,
    executor=None,
    workers: int | None = None,
    retries: int | None = None,
    quiet: bool | None = None,
    connect_timeout: float | None = None,
    pool: Pool | None = None,
) -> pd.DataFrame:
    """Analyze pairs of a store: hedge ratio, cointegration, half-life, z-score, rolling correlation.

    ``store_or_panel`` is a store folder or, as for :func:`~pairscan.top_pairs`, a panel
    DataFrame (timestamps x tickers, the prices of ``column``: its pairs are analyzed in
    this process, one task each on the executor). ``pairs`` is a list of ``(a, b)`` tickers (or one such tuple); without it, the top
    ``k`` pairs of :func:`~pairscan.correlate` with the same selection (``selection=``,
    or ``column``, ``on``, ``method``, ``min_periods``, ``absolute``, ``start``,
    ``end``, ``resample``, ``tickers``, ``exclude``; by default the ranking of
    ``correlate``, min-periods auto). Each pair is one task on the executor;
    its worker reads the two series from the store. The analysis is always of the log
    prices of ``column`` (cut to the selection's period and frequency) on the pair's
    common timestamps; ``corr`` is as the selection says. How it runs is an
    :class:`~pairscan.executors.Execution` (``execution=``, or ``executor``, ``workers``,
    ``retries``, ``quiet``, ``connect_timeout``, ``pool``).

    Returns a DataFrame with one row per pair (in the order given, or by rank): the pair
    record (``a, b, corr, n, p, ci_low, ci_high``, as ``correlate`` reports them), the
    :data:`FIELDS` and ``reason`` (why a field is NaN, or ``None``). A named pair with
    fewer common observations than the min-periods in force (or a constant series) has
    ``corr``, ``p`` and the interval NaN and says so in ``reason``; its analysis is still
    made where it can be (the fields need only the pair's common log prices). ``attrs`` carries
    ``window``, ``min_periods``, ``seconds`` and ``timings`` (``select``: finding or
    correlating the pairs; ``analyze``).
    """
    checks.store_or_frame("store_or_panel", store_or_panel)
    checks.pairs("pairs", pairs, optional=True)
    checks.integer("k", k)
    execution = Execution.of(execution, executor=executor, workers=workers, retries=retries, quiet=quiet,
                             connect_timeout=connect_timeout, pool=pool)
    quiet, retries = execution.quiet, execution.retries
    selection = Selection.of(selection, column=column, on=on, method=method, min_periods=min_periods,
                             absolute=absolute, start=start, end=end, resample=resample, tickers=tickers,
                             exclude=exclude)
    check_window(window)
    if k < 1:
        raise PairscanError(f"k must be at least 1, not {k}")
    where = PairSource(store_or_panel)
    named = None if pairs is None else _named_pairs(pairs, where)
    _mackinnonp(0.0)  # import statsmodels here, once, before the pool forks its workers
    with execution.opened() as pool:
        started = time.perf_counter()
        if named is None:
            result = correlate(store_or_panel, k=k, selection=selection, pool=pool, quiet=quiet, retries=retries)
            top, periods = result.top, result.min_periods
        else:
            found = pair_correlations(store_or_panel, named, selection=selection, pool=pool, quiet=quiet)
            top = pair_frame(*zip(*[[f.record[c] for c in PAIR_FIELDS[:4]] for f in found]),
                             [_nan(f.record["p"]) for f in found],
                             ([_nan(f.record["ci_low"]) for f in found], [_nan(f.record["ci_high"]) for f in found]))
            periods = found[0].min_periods
        selected = time.perf_counter()
        frame = _run(where, top, window, selection.column, selection.cut, pool, quiet, retries)
        finished = time.perf_counter()
    _say_why_no_corr(frame, periods)
    frame.attrs.update(seconds=finished - started, min_periods=periods,
                       timings={"select": selected - started, "analyze": finished - selected})
    return frame


def _nan(value) -> float:
    return math.nan if value is None else float(value)


def _say_why_no_corr(frame: pd.DataFrame, periods: int) -> None:
    """Put first in ``reason`` why a named pair has no correlation."""
    for row in np.flatnonzero(frame["corr"].isna().to_numpy()):
        n = int(frame["n"].iat[row])
        why = (f"{count(n, 'common observation')}, fewer than min-periods {periods:,}: no correlation"
               if n < periods else "a constant series: no correlation")
        before = frame["reason"].iat[row]
        frame.loc[frame.index[row], "reason"] = why + (f"; {before}" if isinstance(before, str) else "")


def analyze_top(store: str | os.PathLike, top: pd.DataFrame, pool: Pool, *, window: int = DEFAULT_WINDOW,
                column: str = "close", quiet: bool = True, retries: int = 0,
                cut: Cut | None = None) -> pd.DataFrame:
    """:func:`analyze` of pairs already ranked: ``top`` is ``correlate``'s top (the pair records)."""
    check_window(window)
    _mackinnonp(0.0)
    started = time.perf_counter()
    frame = _run(PairSource(store), top, window, column, cut, pool, quiet, retries)
    seconds = time.perf_counter() - started
    frame.attrs.update(seconds=seconds, timings={"select": 0.0, "analyze": seconds})
    return frame


def check_window(window) -> None:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 2:
        raise PairscanError(f"--window must be a whole number >= 2, not {window!r}")


def _run(where: PairSource, top: pd.DataFrame, window: int, column: str, cut: Cut | None, pool: Pool,
         quiet: bool, retries: int) -> pd.DataFrame:
    """One task per pair of ``top``; the rows in its order: the pair record, then the analysis.
    A stored pair's task reads its two series where it runs; a panel's pair is given its two."""
    chosen = list(zip(top["a"], top["b"]))
    if where.files is not None:
        task = analyze_stored_pair
        tasks = [(f"{a}~{b}", (where.path(a), where.path(b), column, int(window), cut)) for a, b in chosen]
    else:
        task = analyze_given_pair
        tasks = [(f"{a}~{b}", (where.series(a, column, cut=cut), where.series(b, column, cut=cut), int(window)))
                 for a, b in chosen]
    results = dict(run_tasks(pool, task, tasks, desc="analyze", quiet=quiet, retries=retries))
    pairs = pair_frame(top["a"], top["b"], top["corr"], top["n"], top["p"], (top["ci_low"], top["ci_high"]))
    analysis = pd.DataFrame([results[f"{a}~{b}"] for a, b in chosen], columns=[*FIELDS, "reason"])
    frame = pd.concat([pairs.reset_index(drop=True), analysis.astype(dict.fromkeys(FIELDS, float))], axis=1)
    frame = frame[list(COLUMNS)]
    frame.attrs["window"] = int(window)
    return frame


def analysis_dict(frame: pd.DataFrame) -> dict:
    """What ``analyze --json`` prints: ``{"pairs": [...], "window": W, "seconds": s, "timings": {...}}``.

    ``rolling_corr`` is nested as ``{"min", "median", "max"}``; NaN and infinite values
    are ``null`` (JSON has neither), and ``reason`` says why.
    """
    pairs = []
    for row in frame.to_dict("records"):
        pairs.append({
            "a": row["a"], "b": row["b"], "corr": _number(row["corr"]), "n": int(row["n"]),
            **{f: _number(row[f]) for f in ("p", "ci_low", "ci_high")},
            **{f: _number(row[f]) for f in FIELDS if not f.startswith("rolling_corr")},
            "rolling_corr": {s: _number(row[f"rolling_corr_{s}"]) for s in ("min", "median", "max")},
            "reason": row["reason"] if isinstance(row["reason"], str) else None,
        })
    attrs = frame.attrs
    return {"pairs": pairs, "window": attrs.get("window", DEFAULT_WINDOW),
            "seconds": round(attrs.get("seconds", 0.0), 4),
            "timings": {k: round(v, 4) for k, v in attrs.get("timings", {}).items()}}


def _number(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
