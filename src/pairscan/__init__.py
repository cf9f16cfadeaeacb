"""pairscan: per-ticker stock files -> a proper store -> the most correlated pairs.

Everything the command line does is one import away::

    import pairscan
    folder = pairscan.sample("data/daily-stock")
    pairscan.convert(folder, executor="processes")
    pairscan.top_pairs(folder, k=5)            # a DataFrame: a, b, corr, n, p, ci_low, ci_high
    pairscan.partners(folder, ["aapl"], k=5)   # each named ticker's 5 best partners: a, b, rank, corr, ...
    pairscan.analyze(folder, k=5)              # hedge ratio, cointegration, half-life of the top pairs
    pairscan.network(folder, clusters=6)       # the minimum spanning forest: .edges, .clusters, .graph()
    pairscan.backtest(folder, formation="12M", trading="6M")  # chosen in formation, judged out of sample
    pairscan.plot_pair(...), pairscan.plot_heatmap(...)

``executor=`` takes a name as on the command line (``serial``, ``threads``,
``processes``, ``dask``, ``tcp://HOST:PORT``) or any ``concurrent.futures.Executor``;
``execution=pairscan.Execution(...)`` carries it with ``workers``, ``retries``,
``connect_timeout`` and ``quiet``, the same for every stage.
"""

from __future__ import annotations

import pandas as pd

from . import checks
from .analyze import analyze
from .archive import extract
from .backtest import Backtest, backtest
from .convert import convert
from .correlate import Correlation, correlate, correlation_matrix
from .errors import PairscanError
from .network import Network, network
from .executors import Execution, SerialExecutor, TaskFailed
from .panel import load_panel
from .pictures import plot_heatmap, plot_pair
from .pipeline import run
from .run_result import RunResult
from .sample import sample
from .selection import Selection
from .version import __version__  # noqa: F401  (pairscan.__version__)

__all__ = [
    "Backtest", "Correlation", "Execution", "Network", "PairscanError", "RunResult", "Selection", "SerialExecutor",
    "TaskFailed", "analyze", "backtest", "convert", "correlate", "correlation_matrix", "extract", "load_panel",
    "network", "partners",
    "plot_heatmap", "plot_pair", "run", "sample", "top_pairs",
]


def top_pairs(store_or_panel, k: int = 10, **options) -> pd.DataFrame:
    """The ``k`` most correlated pairs as a DataFrame with columns
    ``a, b, corr, n, p, ci_low, ci_high``.

    ``store_or_panel`` is a store folder or a panel DataFrame (timestamps x tickers).
    Other options are :func:`correlate`'s: the selection (``column``, ``on``,
    ``method``, ``min_periods``, ``absolute``, or ``selection=Selection(...)``) and
    ``engine``, ``memory_limit``, the execution (``executor``, ``workers``... or
    ``execution=Execution(...)``). The frame's ``attrs`` carry the rest
    of what ``correlate --json`` reports.
    """
    checks.store_or_frame("store_or_panel", store_or_panel)
    checks.integer("k", k)
    result = correlate(store_or_panel, k=k, **options)
    top = result.top
    top.attrs.update({k: v for k, v in result.to_dict().items() if k != "top"})
    return top


def partners(store_or_panel, tickers, k: int = 10, **options) -> pd.DataFrame:
    """Each of ``tickers``' ``k`` best partners (by correlation, or ``|corr|`` with
    ``absolute=True``) among the selected tickers, as a DataFrame with columns
    ``a, b, rank, corr, n, p, ci_low, ci_high``: ``a`` the named ticker (so ``a > b``
    happens), ``rank`` 1 to ``k`` within it; ranked pairs only.

    ``tickers`` is a list of names or shell patterns, a string ``"a,b,c*"`` or
    ``"@FILE"``, or ``"all"`` for every ticker. Other options are :func:`correlate`'s
    (the selection, ``engine``, ``memory_limit``, ``executor``, ``workers`` or
    ``execution=Execution(...)``...). The frame's ``attrs``
    carry the rest of what ``correlate --with --json`` reports.
    """
    result = correlate(store_or_panel, k=k, partners_of=tickers, partners_option="tickers", **options)
    found = result.top
    found.attrs.update({key: value for key, value in result.to_dict().items() if key != "partners"})
    return found
