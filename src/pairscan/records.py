"""The pair record: one schema that JSON, CSV, the text table and the report render from.

A ranked pair is ``a, b, corr, n, p, ci_low, ci_high``:

- ``n``: the observations the two series share;
- ``p``: the two-sided p-value for zero correlation, as ``scipy.stats.pearsonr``,
  ``spearmanr`` and ``kendalltau`` give it for the pair's overlapping points;
- ``ci_low``, ``ci_high``: the 95 % Fisher-z interval, ``tanh(atanh(r) -+ 1.96 se)`` with
  ``se = 1/sqrt(n-3)`` for Pearson, and the usual rank-correlation variances
  ``sqrt(1.06/(n-3))`` (Spearman) and ``sqrt(0.437/(n-4))`` (Kendall) (Fieller,
  Hartley and Pearson, 1957); NaN where ``n`` is too small.

They are computed for the reported pairs only, vectorised: the all-pairs path never
pays for them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import special  # imported with the module: not within a command's timed compute

from .outputs import printable

PAIR_FIELDS = ("a", "b", "corr", "n", "p", "ci_low", "ci_high")
Z95 = 1.959963984540054  # the 97.5 % point of the standard normal


def pearson_p(r: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Two-sided p-values of Pearson r for ``n`` points (scipy.stats.pearsonr's: the
    exact distribution of r under independent normal data, a beta on [-1, 1]).

    Through ``scipy.special`` (the same Boost function as ``stats.beta.sf``, equal to
    the last bit): ``scipy.stats`` takes about a second to import, ``scipy.special``
    a few hundredths (with this module: a command's first records would pay it in
    its timed compute otherwise).
    """
    r, n = np.asarray(r, float), np.asarray(n, float)
    p = np.full(r.shape, np.nan)
    two = n == 2
    p[two] = 1.0  # scipy: any two points lie on a line, and say nothing
    more = n > 2
    shape = n[more] / 2 - 1
    p[more] = 2 * special.betaincc(shape, shape, (np.abs(r[more]) + 1) / 2)  # beta.sf on [-1, 1]
    return np.clip(p, 0.0, 1.0)


def spearman_p(r: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Two-sided p-values of Spearman rho for ``n`` points (scipy.stats.spearmanr's:
    Student's t with n - 2 degrees of freedom; ``scipy.special``'s, as in :func:`pearson_p`)."""
    r, n = np.asarray(r, float), np.asarray(n, float)
    p = np.full(r.shape, np.nan)
    more = n > 2
    dof = n[more] - 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t = r[more] * np.sqrt(dof / ((r[more] + 1.0) * (1.0 - r[more])))
    p[more] = 2 * special.stdtr(dof, -np.abs(t))  # t.sf
    return p


def kendall_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p-value of Kendall tau on the overlapping points of ``x`` and ``y``
    (scipy.stats.kendalltau's: exact for small samples without ties, else the normal
    approximation with the variance corrected for ties)."""
    from scipy import stats

    both = ~(np.isnan(x) | np.isnan(y))
    if both.sum() < 2:
        return math.nan
    return float(stats.kendalltau(x[both], y[both]).pvalue)


def fisher_interval(r: np.ndarray, n: np.ndarray, method: str = "pearson") -> tuple[np.ndarray, np.ndarray]:
    """The 95 % Fisher-z interval of each correlation (NaN where ``n`` is too small)."""
    r, n = np.asarray(r, float), np.asarray(n, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "kendall":
            se = np.sqrt(0.437 / (n - 4))
        elif method == "spearman":
            se = np.sqrt(1.06 / (n - 3))
        else:
            se = 1 / np.sqrt(n - 3)
        se = np.where(n > (4 if method == "kendall" else 3), se, np.nan)
        z = np.arctanh(np.clip(r, -1.0, 1.0))
        return np.tanh(z - Z95 * se), np.tanh(z + Z95 * se)


def pair_frame(a, b, corr, n, p=None, ci=None) -> pd.DataFrame:
    """The pairs as a DataFrame with the record's columns, in order."""
    corr = np.asarray(corr, float)
    nan = np.full(len(corr), np.nan)
    low, high = ci if ci is not None else (nan, nan)
    return pd.DataFrame({
        "a": list(a), "b": list(b), "corr": corr, "n": np.asarray(n, np.int64),
        "p": nan if p is None else np.asarray(p, float), "ci_low": low, "ci_high": high,
    }, columns=list(PAIR_FIELDS))


def records(frame: pd.DataFrame) -> list[dict]:
    """The rows of a pair frame as plain JSON-ready dicts (NaN as None), every column kept."""
    out = []
    for row in frame.to_dict(orient="records"):
        out.append({k: _plain(v) for k, v in row.items()})
    return out


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value


def format_p(p) -> str:
    """A p-value for a table: ``0.0123``, ``3.1e-05``, ``<1e-300`` for an underflow to 0."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "nan"
    if p == 0:
        return "<1e-300"
    return f"{p:.4f}" if p >= 1e-3 else f"{p:.1e}"


def text_table(rows: list[dict], extra: tuple[str, ...] = ()) -> str:
    """The pairs as an aligned text table: rank, a, b, corr, n, p, 95 % interval."""
    if not rows:
        return "no pair has a correlation (too little overlap, or constant series)"
    # Tickers come from data: shown escaped, so that none can move the cursor or break a line.
    rows = [{**r, "a": printable(r["a"]), "b": printable(r["b"])} for r in rows]
    wa = max(4, *(len(r["a"]) for r in rows))
    wb = max(4, *(len(r["b"]) for r in rows))
    header = f"{'rank':>4}  {'a':<{wa}}  {'b':<{wb}}  {'corr':>9}  {'n':>8}  {'p':>8}  {'95% interval':>19}"
    header += "".join(f"  {name:>10}" for name in extra)
    lines = [header]
    for rank, r in enumerate(rows, 1):
        low, high = r.get("ci_low"), r.get("ci_high")
        interval = "" if low is None or high is None else f"[{low:.4f}, {high:.4f}]"
        line = (f"{rank:>4}  {r['a']:<{wa}}  {r['b']:<{wb}}  {r['corr']:>9.6f}  {r['n']:>8}  "
                f"{format_p(r.get('p')):>8}  {interval:>19}")
        line += "".join(f"  {_cell(r.get(name)):>10}" for name in extra)
        lines.append(line)
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "nan"
    if isinstance(value, float):
        return f"{value:.4g}"
    return printable(value)
