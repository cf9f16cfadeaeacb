"""Network: the minimum spanning forest of the ranked pairs and its single-linkage clusters.

The structure of a market read from its correlations (Mantegna 1999, "Hierarchical
structure in financial markets"): the tickers are nodes, each ranked pair an edge of
length ``d = sqrt(2 (1 - r))`` (``sqrt(2 (1 - |r|))`` with ``absolute``), and the
minimum spanning forest keeps the shortest edges that join them all without a cycle.
Pairs below min-periods are no edges; a ticker with no ranked pair is a lone node.
Cutting the forest's longest edges leaves the single-linkage clusters.

:func:`network` finds the forest where the pairs are: when every pair fits the memory
limit, from all of them at once (scipy's ``minimum_spanning_tree``); beyond, in passes
over the blocks (:mod:`pairscan.engines.blocked.forest`), never holding the n x n
matrix. Both find the same forest: edges are ordered by correlation, ties by their
tickers' columns.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.sparse
import scipy.sparse.csgraph

from . import checks
from .correlate import DEFAULT_MEMORY_LIMIT, choose_engine, parse_size
from .engines import Pairs
from .engines.blocked.forest import edge_order, spanning_forest_blocked
from .engines.blocked.tasks import EveryPair, correlate_blocked
from .engines.naive import correlate_naive
from .errors import PairscanError
from .executors import Execution, Pool, preload
from .placement import is_frame, load, panel_fits, plan_placement
from .selection import Selection

preload(__name__)  # what its process workers need

FORESTS = ("auto", "dense", "boruvka")
PAIR_BYTES = 160  # every pair held at once (the parts, merged, sorted, the sparse graph): bytes each
EDGE_FIELDS = ("a", "b", "corr", "n", "distance")


def distance(corr, absolute: bool = False) -> np.ndarray:
    """The contract's distance of correlations: ``sqrt(2 (1 - r))``, or ``sqrt(2 (1 - |r|))``."""
    r = np.abs(np.asarray(corr, dtype=float)) if absolute else np.asarray(corr, dtype=float)
    return np.sqrt(np.maximum(2.0 * (1.0 - r), 0.0))


@dataclass(frozen=True)
class Network:
    """What ``network`` found.

    ``edges``: the forest's edges, shortest first, columns ``a, b, corr, n, distance``
    (``a`` before ``b`` in the tickers' order). ``clusters``: each ticker's cluster
    (a Series named ``cluster`` indexed by ticker, in the tickers' order), numbered from
    1 by size, largest first, ties by their first ticker; without ``clusters=K`` they
    are the forest's components. ``components``: the forest's connected components
    (lone nodes included). ``forest``: how it was found (``dense`` or ``boruvka``),
    ``passes`` over the blocks for ``boruvka``.
    """

    edges: pd.DataFrame
    clusters: pd.Series
    tickers: list[str]
    total_distance: float
    components: int
    selection: Selection
    min_periods: int
    pairs_ranked: int
    engine: str
    forest: str
    executor: str
    workers: int
    seconds: float
    timings: dict = field(default_factory=dict)
    passes: int = 0
    cut: int | None = None  # the K asked for (None: the components)
    streamed: bool = False
    stored: int | None = None

    def graph(self):
        """The forest as a ``networkx.Graph``: every ticker a node (with its ``cluster``),
        every edge with ``corr``, ``n`` and ``distance`` (also as ``weight``)."""
        import networkx as nx

        graph = nx.Graph()
        for ticker, cluster in self.clusters.items():
            graph.add_node(ticker, cluster=int(cluster))
        for a, b, corr, n, d in self.edges[list(EDGE_FIELDS)].itertuples(index=False):
            graph.add_edge(a, b, corr=float(corr), n=int(n), distance=float(d), weight=float(d))
        return graph

    def cut_into(self, k: int) -> "Network":
        """The same forest with its clusters cut again: the longest edges cut until ``k``
        components remain (as ``clusters=k`` would have cut them)."""
        checks.integer("k", k, low=1)
        position = {t: i for i, t in enumerate(self.tickers)}
        a = np.array([position[t] for t in self.edges["a"]], dtype=np.int64)
        b = np.array([position[t] for t in self.edges["b"]], dtype=np.int64)
        found = Pairs(a, b, self.edges["corr"].to_numpy(), self.edges["n"].to_numpy())
        labels = cut_forest(len(self.tickers), found, k, self.selection.absolute)
        return replace(self, clusters=number_clusters(labels, self.tickers), cut=k)

    @property
    def lone(self) -> list[str]:
        """The tickers no edge reaches (no ranked pair), in the tickers' order."""
        joined = set(self.edges["a"]) | set(self.edges["b"])
        return [t for t in self.tickers if t not in joined]

    @property
    def cluster_sizes(self) -> pd.Series:
        """How many tickers each cluster has, by cluster number."""
        return self.clusters.value_counts().sort_index()

    @property
    def headline(self) -> str:
        return self.selection.describe(len(self.tickers), self.stored)

    def to_dict(self) -> dict:
        return {
            "tickers": len(self.tickers),
            "edges": [{"a": a, "b": b, "corr": float(c), "n": int(n), "distance": float(d)}
                      for a, b, c, n, d in self.edges[list(EDGE_FIELDS)].itertuples(index=False)],
            "total_distance": float(self.total_distance),
            "components": int(self.components),
            "clusters": {str(t): int(c) for t, c in self.clusters.items()},
            "clusters_asked": self.cut,
            "column": self.selection.column,
            "on": self.selection.on,
            "method": self.selection.method,
            "abs": self.selection.absolute,
            "min_periods": self.min_periods,
            "pairs_ranked": self.pairs_ranked,
            "tickers_stored": self.stored,
            "engine": self.engine,
            "forest": self.forest,
            "passes": self.passes,
            "streamed": self.streamed,
            "executor": self.executor,
            "workers": self.workers,
            "seconds": round(self.seconds, 4),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


def network(
    source,
    *,
    clusters: int | None = None,
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
    engine: str = "auto",
    memory_limit: str | int = DEFAULT_MEMORY_LIMIT,
    forest: str = "auto",
    execution: Execution | None = None,
    executor=None,
    workers: int | None = None,
    retries: int | None = None,
    quiet: bool | None = None,
    connect_timeout: float | None = None,
    pool: Pool | None = None,
    block_size: int | None = None,
) -> Network:
    """The minimum spanning forest of a store's (or a panel's) ranked pairs, and its clusters.

    The selection and execution options are :func:`~pairscan.correlate.correlate`'s
    (``selection=`` or its fields, ``execution=`` or its fields, ``engine``,
    ``memory_limit``). ``clusters``: cut the forest's longest edges until this many
    components remain (single linkage; a forest of more components keeps them all).
    ``forest``: ``auto`` holds every pair at once where they fit ``memory_limit``
    (``dense``), else finds the forest in passes over the blocks (``boruvka``); the
    answer is the same.
    """
    checks.store_or_frame("source", source)
    checks.integer("clusters", clusters, optional=True)
    checks.integer("block_size", block_size, low=1, optional=True)
    if clusters is not None and clusters < 1:
        raise PairscanError(f"clusters must be at least 1, not {clusters}")
    if forest not in FORESTS:
        raise PairscanError(f"forest must be auto, dense or boruvka, not {forest!r}")
    execution = Execution.of(execution, executor=executor, workers=workers, retries=retries, quiet=quiet,
                             connect_timeout=connect_timeout, pool=pool)
    selection = Selection.of(selection, column=column, on=on, method=method, min_periods=min_periods,
                             absolute=absolute, start=start, end=end, resample=resample, tickers=tickers,
                             exclude=exclude)
    limit = parse_size(memory_limit)
    choose_engine(engine, selection.method, True)
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(execution.opened())
        started = time.perf_counter()
        plan = plan_placement(given=is_frame(source), shares_memory=pool.can.shares_memory,
                              shares_files=pool.can.maps_files, remote=pool.can.remote, workers=pool.workers,
                              memory_limit=limit, fits=lambda: panel_fits(source, selection.column, limit))
        layout = load(plan, source, column=selection.column, on=selection.on, auto=selection.auto, pool=pool,
                      stack=stack, quiet=execution.quiet, selection=selection)
        periods = selection.resolve(layout.counts)
        chosen = choose_engine(engine, selection.method, layout.complete)
        n = len(layout.tickers)
        if clusters is not None and clusters > n:
            raise PairscanError(f"clusters must be at most the number of tickers ({n}), not {clusters}")
        load_seconds = time.perf_counter() - started
        how = forest
        if how == "auto":
            how = "dense" if chosen == "naive" or n * (n - 1) // 2 * PAIR_BYTES <= limit else "boruvka"
        if how == "boruvka" and chosen != "blocked":
            raise PairscanError(f"the forest in passes needs the blocked engine, not {chosen}: use forest='dense'")
        common = dict(method=selection.method, min_periods=periods, quiet=execution.quiet,
                      retries=execution.retries)
        passes = 0
        if how == "boruvka":
            found, ranked, passes = spanning_forest_blocked(plan, layout, pool, absolute=selection.absolute,
                                                            block_size=block_size, **common)
        else:
            if chosen == "blocked":
                pairs = correlate_blocked(plan, layout, pool, reducer=EveryPair(), block_size=block_size, **common)
            else:
                pairs = correlate_naive(layout, pool, **common)
            pairs = pairs.tallied()
            found, ranked = dense_forest(pairs, n, selection.absolute), pairs.ranked
        seconds = time.perf_counter() - started
    edges = edge_frame(found, layout.tickers, selection.absolute)
    components = _components(n, found)
    labels = cut_forest(n, found, clusters, selection.absolute) if clusters is not None else components
    numbered = number_clusters(labels, layout.tickers)
    return Network(edges, numbered, list(layout.tickers), float(edges["distance"].sum()),
                   int(components.max() + 1) if n else 0, selection, periods, ranked, chosen, how, pool.name,
                   pool.workers, seconds, {"load": load_seconds, "forest": seconds - load_seconds}, passes,
                   clusters, plan.streamed, layout.stored)


def dense_forest(pairs: Pairs, n: int, absolute: bool) -> Pairs:
    """The minimum spanning forest of every pair at once: scipy's ``minimum_spanning_tree``
    on each edge's rank in :func:`~pairscan.engines.blocked.forest.edge_order` (1 the
    shortest), so that ties are broken as the passes break them, and no edge weighs 0
    (which csgraph takes for no edge: ``r = 1`` is ``d = 0``)."""
    keep = ~np.isnan(pairs.corr)
    a, b, corr, count = pairs.a[keep], pairs.b[keep], pairs.corr[keep], pairs.n[keep]
    if not len(a):
        return Pairs.empty()
    order = edge_order(np.abs(corr) if absolute else corr, a, b)
    rank = np.empty(len(order))
    rank[order] = np.arange(1, len(order) + 1)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    graph = scipy.sparse.csr_matrix((rank, (lo, hi)), shape=(n, n))
    tree = scipy.sparse.csgraph.minimum_spanning_tree(graph).tocoo()
    chosen = order[np.sort(np.rint(tree.data).astype(np.int64) - 1)]
    return Pairs(lo[chosen], hi[chosen], corr[chosen], count[chosen])


def edge_frame(edges: Pairs, tickers: list[str], absolute: bool) -> pd.DataFrame:
    """The forest's edges as a frame, shortest first (ties as the forest orders them)."""
    key = np.abs(edges.corr) if absolute else edges.corr
    order = edge_order(key, edges.a, edges.b)
    a, b, corr = edges.a[order], edges.b[order], edges.corr[order]
    return pd.DataFrame({"a": [tickers[i] for i in a], "b": [tickers[j] for j in b], "corr": corr,
                         "n": edges.n[order].astype(np.int64), "distance": distance(corr, absolute)},
                        columns=list(EDGE_FIELDS))


def _components(n: int, edges: Pairs) -> np.ndarray:
    graph = scipy.sparse.csr_matrix((np.ones(len(edges.a)), (edges.a, edges.b)), shape=(n, n))
    return scipy.sparse.csgraph.connected_components(graph, directed=False)[1]


def cut_forest(n: int, edges: Pairs, k: int, absolute: bool) -> np.ndarray:
    """The components left when the forest's longest edges are cut until ``k`` remain
    (single-linkage clusters); a forest of more than ``k`` components keeps them all."""
    key = np.abs(edges.corr) if absolute else edges.corr
    order = edge_order(key, edges.a, edges.b)
    have = n - len(order)  # components of the whole forest
    keep = order[: max(0, len(order) - max(0, k - have))]
    return _components(n, Pairs(edges.a[keep], edges.b[keep], edges.corr[keep], edges.n[keep]))


def number_clusters(labels: np.ndarray, tickers: list[str]) -> pd.Series:
    """Each ticker's cluster, numbered from 1 by size, largest first, ties by the
    cluster's first ticker (in sorted order)."""
    frame = pd.DataFrame({"ticker": list(tickers), "label": np.asarray(labels)})
    groups = frame.groupby("label")["ticker"].agg(["size", "min"])
    groups = groups.sort_values(["size", "min"], ascending=[False, True], kind="stable")
    number = pd.Series(np.arange(1, len(groups) + 1), index=groups.index)
    return pd.Series(number.loc[frame["label"]].to_numpy(), index=pd.Index(list(tickers), name="ticker"),
                     name="cluster")

