"""Numerical edge cases: pandas' own ``DataFrame.corr`` tests, near-constant series,
non-finite values and magnitudes near the float64 limits.

The ``TestDataFrameCorr`` cases of pandas (``pandas/tests/frame/methods/test_cov_corr.py``)
are ported to pairscan's surface: ``correlation_matrix`` and ``top_pairs`` on panels,
and ``pairscan correlate`` on stores made from the same values, on both engines. Every
result must be within 1e-12 of pandas and within [-1, 1]. ``min_periods=1`` is passed
explicitly: these are pandas' semantics, whatever pairscan's default.
"""

from __future__ import annotations

import itertools
import json
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pairscan
from pairscan.store import write_frame

from conftest import own_returns, run_cli

TOL = 1e-12
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- helpers ------------------------------------------------------------------------------------

def dated(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame on daily timestamps (a panel's index), values as float64."""
    out = frame.astype("float64") if all(frame.dtypes != object) else frame
    out = pd.DataFrame({str(c): pd.to_numeric(out[c]).astype("float64") for c in out.columns})
    out.index = pd.date_range("2000-01-03", periods=len(frame), freq="D", name="timestamp")
    return out


def pandas_matrix(frame: pd.DataFrame, method: str, min_periods: int = 1) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return frame.corr(method=method, min_periods=min_periods)


def engines(frame: pd.DataFrame, method: str) -> list[str]:
    """Both engines where the blocked one is exact (Pearson; Spearman on full histories)."""
    complete = bool(np.isfinite(frame.to_numpy()).all())
    return ["naive", "blocked"] if method == "pearson" or (method == "spearman" and complete) else ["naive"]


def assert_pairs_equal(got: pd.DataFrame, want: pd.DataFrame, tol: float = TOL) -> None:
    """Every pair a < b of ``want`` (NaN where it is NaN), and every value within [-1, 1]."""
    values = got.to_numpy()
    assert np.all(np.isnan(values) | ((values >= -1.0) & (values <= 1.0)))
    for a, b in itertools.combinations(sorted(want.columns), 2):
        g, w = got.loc[a, b], want.loc[a, b]
        if np.isnan(w):
            assert np.isnan(g), f"{a}~{b}: expected NaN, got {g!r}"
        else:
            assert abs(g - w) <= tol, f"{a}~{b}: {g!r} != {w!r}"


def check_panel(frame: pd.DataFrame, method: str, want: pd.DataFrame | None = None, **options) -> None:
    """``correlation_matrix`` and ``top_pairs`` on the panel, on every engine that applies."""
    want = pandas_matrix(frame, method) if want is None else want
    for engine in engines(frame, method):
        got = pairscan.correlation_matrix(frame, method=method, engine=engine, min_periods=1, executor="serial",
                                          **options)
        assert_pairs_equal(got, want)
        top = pairscan.top_pairs(frame, k=100, method=method, engine=engine, min_periods=1, executor="serial",
                                 **options)
        expected = {(a, b) for a, b in itertools.combinations(sorted(want.columns), 2) if not np.isnan(want.loc[a, b])}
        assert set(zip(top.a, top.b)) == expected
        for a, b, r in zip(top.a, top.b, top["corr"]):
            assert abs(r - want.loc[a, b]) <= TOL and -1.0 <= r <= 1.0


def write_store(frame: pd.DataFrame, root: Path) -> Path:
    """A real store converted from one JSON Lines file per column (its present values)."""
    source, store = root / "source", root / "store"
    source.mkdir(parents=True, exist_ok=True)
    for ticker in frame.columns:
        column = frame[ticker].dropna()
        lines = [json.dumps({"timestamp": t.isoformat(), "close": float(v)}) for t, v in column.items()]
        (source / f"{ticker}.json").write_text("\n".join(lines) + "\n")
    pairscan.convert(source, to=store, executor="serial")
    return store


def cli_matrix(store: Path, tmp_path: Path, *options: str) -> tuple[dict, pd.DataFrame]:
    out = tmp_path / "matrix.parquet"
    proc = run_cli("correlate", store, "--json", "--quiet", "--min-periods", "1", "--matrix", out, *options)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), pd.read_parquet(out)


def exact_corr(a, b) -> float:
    """Pearson correlation of the float values as exact rationals (NaN if either is constant)."""
    a, b = [Fraction(float(v)) for v in a], [Fraction(float(v)) for v in b]
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    va, vb = sum((x - ma) ** 2 for x in a), sum((y - mb) ** 2 for y in b)
    if va == 0 or vb == 0:
        return float("nan")
    return float(np.sign(float(cov))) * float(np.sqrt(float(cov * cov / (va * vb))))


def scaled(frame: pd.DataFrame) -> pd.DataFrame:
    """Each column times the power of two that brings its largest |value| into [0.5, 1)."""
    return frame.apply(lambda c: np.ldexp(c, -np.frexp(np.nanmax(np.abs(c.to_numpy())))[1]))


# --- pandas' TestDataFrameCorr, ported ----------------------------------------------------------

def float_frame() -> pd.DataFrame:
    """pandas' ``float_frame`` fixture's shape (30 x 4 normals), as test_corr_scipy_method edits it."""
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(rng.standard_normal((30, 4)), columns=list("ABCD"))
    frame.loc[frame.index[:5], "A"] = np.nan
    frame.loc[frame.index[5:10], "B"] = np.nan
    frame.loc[frame.index[:10], "A"] = frame["A"][10:20].to_numpy()
    return dated(frame)


def rank_duplicates(size: int) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    return dated(pd.DataFrame({"A": rng.integers(0, 5, size), "B": rng.integers(0, 5, size)}))


PORTED = {
    "scipy_method": float_frame(),
    "nooverlap": dated(pd.DataFrame({"A": [1, 1.5, 1, np.nan, np.nan, np.nan],
                                     "B": [np.nan, np.nan, np.nan, 1, 1.5, 1],
                                     "C": [np.nan] * 6})),
    "constant": dated(pd.DataFrame({"A": [1, 1, 1, np.nan, np.nan, np.nan],
                                    "B": [np.nan, np.nan, np.nan, 1, 1, 1]})),
    "int_and_boolean": dated(pd.DataFrame({"a": [True, False], "b": [1, 0]})),
    "int": dated(pd.DataFrame({"a": [1, 2, 3, 4], "b": [1, 2, 3, 4]})),
    "nullable_integer": dated(pd.DataFrame({"a": pd.array([1, 2, None]), "b": [1.0, 2.0, np.nan],
                                            "c": pd.array([1, 2, 3]), "d": [1.0, 2.0, 3.0]})),
    **{f"constant_columns_{n}": dated(pd.DataFrame(n * [[0.4, 0.1]], columns=["A", "B"])) for n in (2, 20, 200, 2000)},
    "small_numbers": dated(pd.DataFrame({"A": [1.0e-20, 2.0e-20, 3.0e-20], "B": [1.0e-20, 2.0e-20, 3.0e-20]})),
    **{f"rank_duplicates_{n}": rank_duplicates(n) for n in (20, 65, 129)},
    "numerical_instabilities": dated(pd.DataFrame([[0.2, 0.4], [0.4, 0.2]], columns=["a", "b"])),
    "within_bounds_two_points": dated(pd.DataFrame({"x": [0, 1], "y": [1.35951, 1.3595100000000007]})),
    "within_bounds_random": dated(pd.DataFrame(np.random.default_rng(seed=42).random((100, 4)), columns=list("abcd"))),
}


@pytest.mark.parametrize("method", ["pearson", "spearman", "kendall"])
@pytest.mark.parametrize("case", sorted(PORTED))
def test_pandas_corr_cases_hold_on_panels(case, method):
    check_panel(PORTED[case], method)


def test_what_pandas_asserts_holds_exactly():
    """The values pandas' tests assert, checked as they assert them."""
    def matrix(case, method="pearson", engine="naive", **options):
        return pairscan.correlation_matrix(PORTED[case], method=method, engine=engine, min_periods=1,
                                           executor="serial", **options)

    for engine in ("naive", "blocked"):
        assert np.isnan(matrix("nooverlap", engine=engine).loc["A", "B"])
        assert np.isnan(matrix("constant", engine=engine).loc["A", "B"])
        for n in (2, 20, 200, 2000):
            assert np.isnan(matrix(f"constant_columns_{n}", engine=engine).loc["A", "B"])
        assert matrix("int_and_boolean", engine=engine).loc["a", "b"] == 1.0
        assert matrix("small_numbers", engine=engine).loc["A", "B"] == 1.0
        assert matrix("within_bounds_two_points", engine=engine).loc["x", "y"] == 1.0
        assert abs((matrix("numerical_instabilities", engine=engine).loc["a", "b"] - 1) - (-1 - 1)) <= 1e-17
    for method in ("pearson", "spearman", "kendall"):
        # min_periods greater than the length: no correlation
        got = pairscan.correlation_matrix(PORTED["int"].iloc[:2], method=method, engine="naive", min_periods=3,
                                          executor="serial")
        assert np.isnan(got.loc["a", "b"])
    for n in (20, 65, 129):
        frame = PORTED[f"rank_duplicates_{n}"]
        assert abs(matrix(f"rank_duplicates_{n}", "kendall").loc["A", "B"]
                   - scipy.stats.kendalltau(frame["A"], frame["B"])[0]) <= TOL
        for engine in ("naive", "blocked"):
            assert abs(matrix(f"rank_duplicates_{n}", "spearman", engine).loc["A", "B"]
                       - scipy.stats.spearmanr(frame["A"], frame["B"])[0]) <= TOL
    with pytest.raises(pairscan.PairscanError, match="--method"):
        pairscan.correlation_matrix(PORTED["int"], method="____")


@pytest.fixture(scope="module")
def ported_store(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """Every ported case's columns in one store (``case.column``), each case on days of its
    own (so pairs of two cases never overlap: pandas' answer is per case)."""
    frames, start = [], pd.Timestamp("2000-01-03")
    for case, f in PORTED.items():
        f = f.rename(columns=lambda c, case=case: f"{case}.{c}")
        f.index = pd.date_range(start, periods=len(f), freq="D", name="timestamp")
        frames.append(f)
        start += pd.Timedelta(days=len(f) + 1)
    panel = pd.concat(frames, axis=1).dropna(axis=1, how="all")  # a ticker needs a row
    return write_store(panel, tmp_path_factory.mktemp("ported")), panel


@pytest.mark.parametrize("engine, method", [("blocked", "pearson"), ("naive", "pearson"),
                                            ("naive", "spearman"), ("naive", "kendall")])
def test_pandas_corr_cases_hold_on_a_store_through_the_cli(ported_store, tmp_path, engine, method):
    store, panel = ported_store
    out, matrix = cli_matrix(store, tmp_path, "--engine", engine, "--method", method)
    assert out["engine"] == engine and out["series"] == panel.shape[1] and out["nonfinite_missing"] == 0
    assert_pairs_equal(matrix, pandas_matrix(panel, method))


# --- near-constant and two-point series -------------------------------------------------------

def near(base: float, ulps: list[int]) -> np.ndarray:
    """``base`` moved by a few ulps, each value on its own."""
    out = []
    for k in ulps:
        v = base
        for _ in range(abs(k)):
            v = np.nextafter(v, np.inf if k > 0 else -np.inf)
        out.append(v)
    return np.array(out)


def check_exact(a: np.ndarray, b: np.ndarray) -> None:
    want = exact_corr(a, b)
    frame = dated(pd.DataFrame({"a": a, "b": b}))
    for engine in ("naive", "blocked"):
        got = pairscan.correlation_matrix(frame, engine=engine, min_periods=1, executor="serial").loc["a", "b"]
        if np.isnan(want):
            assert np.isnan(got), (engine, got)
        else:
            assert -1.0 <= got <= 1.0 and abs(got - want) <= TOL, (engine, got, want)
            if len(a) == 2:
                assert got == want  # two distinct points: exactly +1 or -1


@SETTINGS
@given(
    base=st.sampled_from([1.35951, 1.0, 0.1, 100.0, 1e8, 12345.678, 2.0**-30]),
    ulps=st.lists(st.integers(-4, 4), min_size=2, max_size=12),
    data=st.data(),
)
def test_values_a_few_ulps_apart_get_their_exact_correlation(base, ulps, data):
    other = data.draw(st.lists(st.floats(-1e3, 1e3), min_size=len(ulps), max_size=len(ulps)))
    check_exact(near(base, ulps), np.array(other))  # against an ordinary series
    check_exact(near(base, ulps), near(base * 3, ulps[::-1]))  # two near-constant series


@SETTINGS
@given(
    offset=st.sampled_from([1e8, -1e8, 1e12, 3.0e15]),
    noise=st.lists(st.floats(-1.0, 1.0), min_size=2, max_size=40),
    scale=st.sampled_from([1.0, 1e-3, 1e-6]),
    seed=st.integers(0, 2**32 - 1),
)
def test_huge_offsets_with_noise_get_their_exact_correlation(offset, noise, scale, seed):
    a = offset + np.array(noise) * scale * abs(offset) * 1e-8
    b = np.random.default_rng(seed).standard_normal(len(a)) + 1e9
    check_exact(a, b)


def test_two_points_are_exactly_one_or_minus_one_on_both_engines_and_constants_nan():
    y = [1.35951, 1.3595100000000007]
    frame = dated(pd.DataFrame({"x": [0.0, 1.0], "up": y, "down": y[::-1], "flat": [2.5, 2.5]}))
    for engine in ("naive", "blocked"):
        got = pairscan.correlation_matrix(frame, engine=engine, min_periods=1, executor="serial")
        assert (got.loc["up", "x"], got.loc["down", "x"], got.loc["down", "up"]) == (1.0, -1.0, -1.0)
        assert got.loc["flat"].drop("flat").isna().all()


def test_a_halted_stretch_inside_a_moving_history_is_constant_only_where_it_overlaps():
    # t0 trades from 10 to 200, then halts at 200.0 exactly; t1 lists during the halt; t2
    # lists during the halt with float noise on t0's last value: the blocked engine's
    # products would round these overlaps, so the pairs are computed from the overlap.
    rng = np.random.default_rng(5)
    rows = 400
    t0 = np.concatenate([np.linspace(10, 200, 300) + rng.standard_normal(300), np.full(100, 200.0)])
    t1 = np.full(rows, np.nan)
    t1[300:] = 50 + rng.standard_normal(100)
    t2 = t0.copy()
    t2[:300] = 20 + rng.standard_normal(300)
    t2[300:] = near(200.0, list(rng.integers(-3, 4, 100)))
    frame = dated(pd.DataFrame({"t0": t0, "t1": t1, "t2": t2, "t3": 5 + rng.standard_normal(rows)}))
    frame.loc[frame.index[:300], "t3"] = np.nan
    want = pandas_matrix(frame, "pearson")
    assert np.isnan(want.loc["t0", "t1"]) and np.isnan(want.loc["t0", "t3"])
    # On t2's noisy stretch pandas' own answer is round-off: there the oracle is exact.
    for other in ("t1", "t3"):
        want.loc["t2", other] = want.loc[other, "t2"] = exact_corr(t2[300:], frame[other].to_numpy()[300:])
    for engine in ("naive", "blocked"):
        for block_size in (1, 2, None):
            got = pairscan.correlation_matrix(frame, engine=engine, min_periods=1, executor="serial",
                                              block_size=block_size)
            assert_pairs_equal(got, want)


# --- non-finite values are missing ------------------------------------------------------------

def bad_ticks(rng: np.random.Generator, rows: int = 300, cols: int = 6) -> pd.DataFrame:
    """Random walks with gaps, and a zero price, a negative one, and two zeros in a row."""
    values = 50 * np.exp(np.cumsum(rng.standard_normal((rows, cols)) * 0.01, axis=0))
    values[rng.random((rows, cols)) < 0.1] = np.nan
    frame = dated(pd.DataFrame(values, columns=[f"t{i}" for i in range(cols)]))
    frame.iloc[50, 1] = 0.0
    frame.iloc[120, 2] = -3.0
    frame.iloc[200:202, 3] = 0.0
    frame.iloc[10, 3] = np.nan
    return frame


def expected_missing(frame: pd.DataFrame) -> int:
    """Returns (each ticker's, on its own timestamps: between two present prices) that
    are not finite (-inf, inf, or NaN of a bad log)."""
    count = 0
    for column in frame.columns:
        with np.errstate(divide="ignore", invalid="ignore"):
            returns = np.log(frame[column].dropna()).diff().iloc[1:]
        count += int((~np.isfinite(returns)).sum())
    return count


def returns_oracle(frame: pd.DataFrame, method: str = "pearson") -> pd.DataFrame:
    return pandas_matrix(own_returns(frame), method)  # DataFrame.corr masks non-finite values


@pytest.mark.parametrize("method", ["pearson", "spearman", "kendall"])
def test_zero_and_negative_prices_leave_their_returns_out_not_the_ticker(method):
    frame = bad_ticks(np.random.default_rng(6))
    want = returns_oracle(frame, method)
    assert not want.isna().to_numpy()[np.triu_indices(6, 1)].any()
    for engine in engines(frame, method):
        got = pairscan.correlate(frame, k=15, on="returns", method=method, engine=engine, min_periods=1,
                                 executor="serial")
        assert got.nonfinite_missing == expected_missing(frame) > 0
        assert len(got.top) == 15  # every pair ranked, the bad tickers' too
        for a, b, r in zip(got.top.a, got.top.b, got.top["corr"]):
            assert abs(r - want.loc[a, b]) <= TOL


def test_infinite_prices_in_a_panel_are_missing_and_counted():
    frame = bad_ticks(np.random.default_rng(7)).abs()
    frame.iloc[30, 0] = np.inf
    frame.iloc[31, 4] = -np.inf
    want = pandas_matrix(frame.replace([np.inf, -np.inf], np.nan), "pearson")
    for engine in ("naive", "blocked"):
        got = pairscan.correlate(frame, k=15, min_periods=1, engine=engine, executor="serial",
                                 matrix=None)
        assert got.nonfinite_missing == 2 and len(got.top) == 15
        assert_pairs_equal(pairscan.correlation_matrix(frame, min_periods=1, engine=engine, executor="serial"), want)
    assert np.isinf(frame.iloc[30, 0])  # the caller's frame is left as it was


@pytest.fixture(scope="module")
def bad_store(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    frame = bad_ticks(np.random.default_rng(8), rows=200)
    return write_store(frame, tmp_path_factory.mktemp("bad")), frame


@pytest.fixture(scope="module")
def dask_executor():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield client.get_executor()


@pytest.mark.parametrize("engine", ["blocked", "naive"])
def test_non_finite_returns_are_missing_on_every_executor(bad_store, dask_executor, engine):
    store, frame = bad_store
    want = returns_oracle(frame)
    count = expected_missing(frame)
    for executor in ("serial", "threads", "processes", dask_executor):
        got = pairscan.correlation_matrix(store, on="returns", engine=engine, min_periods=1, executor=executor,
                                          workers=2, block_size=2)
        assert_pairs_equal(got, want)
        top = pairscan.top_pairs(store, k=15, on="returns", engine=engine, min_periods=1, executor=executor,
                                 workers=2, block_size=2)
        assert top.attrs["nonfinite_missing"] == count and len(top) == 15


def test_infinite_prices_in_a_store_are_missing_on_every_executor(tmp_path, dask_executor):
    frame = bad_ticks(np.random.default_rng(9), rows=250).abs()
    frame.iloc[40, 2] = np.inf
    for ticker in frame:
        write_frame(frame[[ticker]].rename(columns={ticker: "close"}).dropna(), tmp_path / f"{ticker}.h5")
    want = pandas_matrix(frame.replace(np.inf, np.nan), "pearson")
    for engine, executor in itertools.product(("blocked", "naive"), ("threads", dask_executor)):
        got = pairscan.correlate(tmp_path, k=15, min_periods=1, engine=engine, executor=executor, workers=2,
                                 block_size=2, matrix=tmp_path.parent / f"m-{engine}.parquet")
        assert got.nonfinite_missing == 1
        assert_pairs_equal(got.matrix, want)


def test_the_cli_says_how_many_returns_were_missing(bad_store, tmp_path):
    store, frame = bad_store
    count = expected_missing(frame)
    out, _ = cli_matrix(store, tmp_path, "--on", "returns")
    assert out["nonfinite_missing"] == count
    text = run_cli("correlate", store, "--on", "returns", "--min-periods", "1", "--quiet")
    assert text.returncode == 0 and f"\n{count} non-finite returns treated as missing\n" in text.stdout
    prices = run_cli("correlate", store, "--min-periods", "1", "--quiet")
    assert prices.returncode == 0 and "non-finite" not in prices.stdout


# --- magnitudes near the float64 limits --------------------------------------------------------

def extreme(rng: np.random.Generator, rows: int = 200) -> pd.DataFrame:
    frame = dated(pd.DataFrame(50 * np.exp(np.cumsum(rng.standard_normal((rows, 5)) * 0.02, axis=0)),
                               columns=[f"t{i}" for i in range(5)]))
    frame["t0"] *= 1.7e308 / frame["t0"].max()  # its largest close near the float64 limit
    frame["t1"] = frame["t0"] / 4 + frame["t1"] * 1e305  # another huge one, correlated with it
    frame["t2"] *= 1e-300  # and a tiny one
    frame = frame.mask(rng.random(frame.shape) < 0.1)
    return frame


@pytest.mark.parametrize("on", ["prices", "returns"])
def test_closes_near_the_float64_limit_neither_overflow_nor_vanish(on):
    frame = extreme(np.random.default_rng(10))
    base = own_returns(frame) if on == "returns" else frame
    want = pandas_matrix(scaled(base), "pearson")  # correlation is scale-invariant
    assert not want.isna().to_numpy().any()
    for engine in ("naive", "blocked"):
        for block_size in (1, None):
            got = pairscan.correlation_matrix(frame, on=on, engine=engine, min_periods=1, executor="serial",
                                              block_size=block_size)
            assert_pairs_equal(got, want)
            assert (got.to_numpy() != 0.0).all()


def test_closes_near_the_float64_limit_in_a_store(tmp_path):
    frame = extreme(np.random.default_rng(11), rows=120)
    store = write_store(frame, tmp_path)
    for on in ("prices", "returns"):
        base = own_returns(frame) if on == "returns" else frame
        out, matrix = cli_matrix(store, tmp_path, "--on", on, "--engine", "blocked")
        assert_pairs_equal(matrix, pandas_matrix(scaled(base), "pearson"))
        assert out["top"] and all(-1.0 <= p["corr"] <= 1.0 and p["corr"] == p["corr"] for p in out["top"])
