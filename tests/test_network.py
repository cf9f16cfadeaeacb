"""Network: `pairscan network` and `pairscan.network` find the minimum spanning forest of
pandas' correlations under d = sqrt(2(1 - r)) (scipy's minimum_spanning_tree as the
oracle), from every pair at once or in passes over the blocks, and cut it into clusters."""

from __future__ import annotations

import contextlib
import io
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse.csgraph

import pairscan
from pairscan.cli import main
from pairscan.engines.blocked import forest as blocked_forest
from pairscan.errors import PairscanError

from conftest import oracle_series


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Daily bars with late listings, delistings and a few short histories (lone nodes)."""
    folder = tmp_path_factory.mktemp("network") / "daily"
    pairscan.sample(folder, tickers=30, days=300, daily=True, seed=3)
    pairscan.convert(folder, executor="serial")
    return folder


def oracle_forest(frame: pd.DataFrame, min_periods: int, absolute: bool = False):
    """scipy's minimum spanning tree of pandas' matrix under the contract's distance:
    the edges (as sorted ticker pairs) with their distances, and the tickers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        corr = frame.corr(min_periods=min_periods).to_numpy()
    r = np.abs(corr) if absolute else corr
    d = np.sqrt(np.maximum(2 * (1 - r), 0))
    # csgraph takes 0 for "no edge": every distance moved by 1 (the same tree), NaN none.
    weights = np.where(np.isnan(d), 0.0, d + 1.0)
    np.fill_diagonal(weights, 0.0)
    tree = scipy.sparse.csgraph.minimum_spanning_tree(weights).tocoo()
    names = [str(c) for c in frame.columns]
    return {tuple(sorted((names[i], names[j]))): w - 1.0 for i, j, w in zip(tree.row, tree.col, tree.data)}, names


def assert_same_forest(result, want: dict) -> None:
    got = {tuple(sorted(p)): d for p, d in zip(zip(result.edges["a"], result.edges["b"]), result.edges["distance"])}
    assert set(got) == set(want)
    assert abs(result.total_distance - sum(want.values())) <= 1e-9
    np.testing.assert_allclose([got[p] for p in want], list(want.values()), rtol=0, atol=1e-9)


def oracle_clusters(want: dict, names: list[str], k: int) -> list[set]:
    """Cut the oracle forest's longest edges until ``k`` components remain: the clusters,
    numbered largest first, ties by their first ticker."""
    edges = sorted(want, key=lambda p: want[p])
    components = len(names) - len(edges)
    kept = edges[: len(edges) - max(0, k - components)]
    parent = {t: t for t in names}

    def find(t):
        while parent[t] != t:
            t = parent[t]
        return t

    for a, b in kept:
        parent[find(a)] = find(b)
    groups = {}
    for t in names:
        groups.setdefault(find(t), set()).add(t)
    return sorted(groups.values(), key=lambda g: (-len(g), min(g)))


def clusters_of(result) -> list[set]:
    numbered = result.clusters
    return [set(numbered.index[numbered == c]) for c in range(1, numbered.max() + 1)]


@pytest.mark.parametrize("forest, block_size", [("dense", None), ("boruvka", 7)])
def test_forest_equals_scipy_on_pandas_matrix(store, forest, block_size):
    series = oracle_series(store, on="returns")
    result = pairscan.network(store, on="returns", forest=forest, block_size=block_size, executor="serial")
    want, names = oracle_forest(pd.concat(series, axis=1, sort=True), result.min_periods)
    assert result.forest == forest and result.tickers == names
    assert_same_forest(result, want)
    assert result.components == len(names) - len(want) > 1  # lone nodes: short histories
    lone = set(names) - {t for p in want for t in p}
    assert lone and all((result.clusters[t] == result.clusters).sum() == 1 for t in lone)
    assert result.pairs_ranked == pairscan.correlate(store, on="returns", executor="serial").pairs_ranked
    assert clusters_of(result) == oracle_clusters(want, names, 1)  # no K: the components
    six = pairscan.network(store, on="returns", forest=forest, block_size=block_size, executor="serial",
                           clusters=result.components + 6)
    assert clusters_of(six) == oracle_clusters(want, names, result.components + 6)
    assert result.cut_into(result.components + 6).clusters.equals(six.clusters)  # the same cut, afterwards
    assert result.lone == sorted(lone, key=names.index)
    graph = result.graph()
    assert sorted(graph.nodes) == names and graph.number_of_edges() == len(want)


def test_plain_boruvka_many_passes(store, monkeypatch):
    """One edge kept per column and pass: a pass per Boruvka round, the same forest."""
    monkeypatch.setattr(blocked_forest, "NEAREST", 1)
    one = pairscan.network(store, on="returns", forest="boruvka", block_size=4, executor="threads")
    monkeypatch.undo()
    dense = pairscan.network(store, on="returns", forest="dense", executor="serial")
    assert one.passes >= 3
    pd.testing.assert_frame_equal(one.edges, dense.edges, check_exact=False, atol=1e-12, rtol=0)


def test_abs_takes_negative_pairs_as_close(store):
    series = oracle_series(store)
    frame = pd.concat({t: series[t] for t in sorted(series)[:12]}, axis=1, sort=True)
    for t in frame.columns[::3]:
        frame[t] = 500.0 - frame[t]  # strongly negative against the others
    for forest in ("dense", "boruvka"):
        result = pairscan.network(frame, absolute=True, forest=forest, block_size=5, executor="serial",
                                  min_periods=40)
        want, _ = oracle_forest(frame, 40, absolute=True)
        assert_same_forest(result, want)
        assert (result.edges["corr"] < 0).any()
        plain = pairscan.network(frame, forest=forest, block_size=5, executor="serial", min_periods=40)
        assert_same_forest(plain, oracle_forest(frame, 40)[0])


def test_cli_streamed_processes_json_csv_plot(store, tmp_path):
    series = oracle_series(store, on="returns")
    out, plot = tmp_path / "edges.csv", tmp_path / "tree.png"
    argv = [str(store), "--on", "returns", "--memory-limit", "10kB", "--executor", "processes", "--workers", "2",
            "--clusters", "9", "--json", "--out", str(out), "--plot", str(plot), "-q"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["network", *argv]) == 0
    got = json.loads(printed.getvalue())  # one object, nothing else
    assert set(got) >= {"tickers", "edges", "total_distance", "components", "clusters", "seconds", "timings"}
    assert got["forest"] == "boruvka" and got["streamed"] is True and got["executor"] == "processes"
    assert all(set(e) == {"a", "b", "corr", "n", "distance"} for e in got["edges"])
    want, names = oracle_forest(pd.concat(series, axis=1, sort=True), got["min_periods"])
    assert {tuple(sorted((e["a"], e["b"]))) for e in got["edges"]} == set(want)
    assert abs(got["total_distance"] - sum(want.values())) <= 1e-9 and got["tickers"] == len(names)
    assert sorted(got["clusters"]) == names and got["components"] < 9
    assert sorted(set(got["clusters"].values())) == list(range(1, 10))
    numbered = pd.Series(got["clusters"])
    expected = oracle_clusters(want, names, 9)
    assert [set(numbered.index[numbered == c]) for c in range(1, len(expected) + 1)] == expected
    edges = pd.read_csv(out)
    assert list(edges.columns) == ["a", "b", "corr", "n", "distance"] and len(edges) == len(want)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edges.csv", "tree.png"]


def test_text_summary(store, capsys):
    assert main(["network", str(store), "--on", "returns", "--clusters", "3", "-q", "--executor", "serial"]) == 0
    text = capsys.readouterr().out
    assert "30 tickers" in text and "total distance" in text and "strongest edges:" in text
    assert "forest dense" in text and "clusters" in text
    # Fewer clusters asked than the forest has components, lone tickers among them: the K that would cut.
    whole = pairscan.network(store, on="returns", executor="serial")
    lone, joined = len(whole.lone), whole.components - len(whole.lone)
    assert lone and joined < 3
    assert (f"(asked 3: the forest has {whole.components} components, {lone} of them lone tickers; "
            f"--clusters {lone + 3} cuts the joined ones into 3):") in text
    assert main(["network", str(store), "--on", "returns", "--clusters", str(lone + 3), "-q", "--executor",
                 "serial"]) == 0
    assert f"{lone + 3} clusters:" in capsys.readouterr().out


def test_bad_clusters_exit_2(store, capsys, tmp_path):
    with pytest.raises(SystemExit) as usage:
        main(["network", str(store), "--clusters", "0"])
    assert usage.value.code == 2 and "--clusters: must be at least 1" in capsys.readouterr().err
    assert main(["network", str(store), "--clusters", "31", "-q", "--executor", "serial"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at most the number of tickers (30)" in err
    assert main(["network", str(store), "--plot", str(tmp_path / "tree.svg")]) == 2
    assert "--plot must end in .png" in capsys.readouterr().err
    with pytest.raises(PairscanError, match="clusters must be at least 1"):
        pairscan.network(store, clusters=0)
    with pytest.raises(PairscanError, match="forest must be auto, dense or boruvka"):
        pairscan.network(store, forest="kruskal")
    assert list(tmp_path.iterdir()) == []
