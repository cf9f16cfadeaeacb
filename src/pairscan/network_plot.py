"""The spanning forest drawn (PNG): tickers coloured by cluster, labelled where legible.

Small forests (up to :data:`SPRING_NODES` tickers in a component) are laid out by
Kamada-Kawai (networkx), which shows the branches well. Large ones get a radial tree
layout computed here in linear time: the tree's centre in the middle, each branch a
wedge as wide as its share of the leaves, one ring per step from the centre. Force
layouts take minutes at thousands of nodes; this takes milliseconds. Components are packed in rows, largest
first; lone nodes (tickers with no ranked pair) last, and beyond :data:`LABEL_ALL`
tickers not drawn (the title counts them).

Every ticker is labelled up to :data:`LABEL_ALL` tickers; beyond, the hubs (most
edges) are, and the legend names the largest clusters with their sizes.
"""

from __future__ import annotations

import math
import os
from collections import deque
from pathlib import Path

import numpy as np
from matplotlib.collections import LineCollection

from .plot import DPI, plain_text, plt, save_figure

SPRING_NODES = 150  # components up to this size: Kamada-Kawai; larger: the radial tree
LABEL_ALL = 80  # label every ticker up to this many
HUBS = 40  # beyond, label this many of the best-connected tickers
COLOURS = 20  # clusters with a colour of their own (tab20); the rest grey
OTHER = "#9a9a9a"


def _adjacency(n: int, a: np.ndarray, b: np.ndarray) -> list[list[int]]:
    near = [[] for _ in range(n)]
    for i, j in zip(a.tolist(), b.tolist()):
        near[i].append(j)
        near[j].append(i)
    return near


def _farthest(start: int, near: list[list[int]]) -> tuple[int, dict[int, int]]:
    parent = {start: -1}
    queue, last = deque([start]), start
    while queue:
        last = queue.popleft()
        for j in near[last]:
            if j not in parent:
                parent[j] = last
                queue.append(j)
    return last, parent


def _centre(node: int, near: list[list[int]]) -> int:
    """The middle of the tree's longest path (two breadth-first searches)."""
    end, _ = _farthest(node, near)
    other, parent = _farthest(end, near)
    path = [other]
    while parent[path[-1]] != -1:
        path.append(parent[path[-1]])
    return path[len(path) // 2]


def radial_layout(nodes: list[int], near: list[list[int]]) -> dict[int, tuple[float, float]]:
    """A tree's radial layout: ring ``depth`` from the centre, each subtree a wedge as
    wide as its share of the leaves."""
    root = _centre(nodes[0], near)
    order, parent = [root], {root: -1}
    for node in order:  # breadth first: parents before children
        for j in near[node]:
            if j not in parent:
                parent[j] = node
                order.append(j)
    children = {node: [] for node in order}
    for node in order[1:]:
        children[parent[node]].append(node)
    leaves = {}
    for node in reversed(order):
        leaves[node] = sum(leaves[c] for c in children[node]) or 1
    depth, wedge, place = {root: 0}, {root: (0.0, 2 * math.pi)}, {root: (0.0, 0.0)}
    for node in order:
        low, high = wedge[node]
        start = low
        for child in sorted(children[node], key=lambda c: -leaves[c]):
            width = (high - low) * leaves[child] / leaves[node]
            wedge[child] = (start, start + width)
            depth[child] = depth[node] + 1
            angle = start + width / 2
            place[child] = (depth[child] * math.cos(angle), depth[child] * math.sin(angle))
            start += width
    return place


def _component_layout(nodes: list[int], near: list[list[int]], distance: dict) -> dict[int, tuple[float, float]]:
    if len(nodes) == 1:
        return {nodes[0]: (0.0, 0.0)}
    if len(nodes) <= SPRING_NODES:
        import networkx as nx

        graph = nx.Graph()
        graph.add_nodes_from(nodes)
        for i in nodes:
            for j in near[i]:
                if i < j:
                    graph.add_edge(i, j, weight=max(distance[i, j], 0.05))
        return {k: tuple(v) for k, v in nx.kamada_kawai_layout(graph, weight="weight").items()}
    return radial_layout(nodes, near)


def forest_layout(n: int, a: np.ndarray, b: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Positions (n x 2) of a forest's nodes: each component laid out, scaled to a disc
    whose area is its share of the nodes, packed in rows, largest first."""
    near = _adjacency(n, a, b)
    distance = {}
    for i, j, x in zip(a.tolist(), b.tolist(), d.tolist()):
        distance[i, j] = distance[j, i] = x
    seen = np.zeros(n, bool)
    components = []
    for start in range(n):
        if seen[start]:
            continue
        _, parent = _farthest(start, near)
        nodes = sorted(parent)
        seen[nodes] = True
        components.append(nodes)
    components.sort(key=lambda c: (-len(c), c[0]))
    xy = np.zeros((n, 2))
    width = 2 * math.sqrt(len(components[0])) if components else 1.0
    width = max(width, 2 * math.sqrt(n) * 0.9)
    x = y = row_height = 0.0
    for nodes in components:
        place = _component_layout(nodes, near, distance)
        points = np.array([place[k] for k in nodes], dtype=float)
        points -= points.mean(axis=0)
        reach = np.abs(points).max() or 1.0
        radius = max(0.5, math.sqrt(len(nodes)))
        points *= radius / reach
        size = 2 * radius + 1.0
        if x + size > width and x > 0:
            x, y, row_height = 0.0, y - row_height, 0.0
        xy[nodes] = points + [x + size / 2, y - size / 2]
        x += size
        row_height = max(row_height, size)
    return xy


@plain_text
def network_figure(result, title: str | None = None):
    """The forest of a :class:`~pairscan.network.Network` as a figure (left open)."""
    tickers = list(result.tickers)
    n = len(tickers)
    big = n > LABEL_ALL
    position = {t: i for i, t in enumerate(tickers)}
    a = np.array([position[t] for t in result.edges["a"]], dtype=np.int64)
    b = np.array([position[t] for t in result.edges["b"]], dtype=np.int64)
    degree = np.bincount(np.r_[a, b], minlength=n)
    lone = int((degree == 0).sum())
    if big and lone:
        # Many tickers: lone nodes would fill the picture with dots; the title counts them.
        drawn = np.flatnonzero(degree > 0)
        renumber = np.full(n, -1)
        renumber[drawn] = np.arange(len(drawn))
        tickers, a, b, degree = [tickers[i] for i in drawn], renumber[a], renumber[b], degree[drawn]
    xy = forest_layout(len(tickers), a, b, result.edges["distance"].to_numpy(float))
    cluster = result.clusters.reindex(tickers).to_numpy()
    n_drawn = len(tickers)
    inches = 8 if not big else min(18, 8 + n / 400)
    fig, ax = plt.subplots(figsize=(inches, inches))
    palette = plt.get_cmap("tab20").colors
    colour = [palette[(c - 1) % COLOURS] if c <= COLOURS else OTHER for c in cluster]
    segments = np.stack([xy[a], xy[b]], axis=1) if len(a) else np.zeros((0, 2, 2))
    edge_colour = [colour[i] if cluster[i] == cluster[j] else "#cccccc" for i, j in zip(a, b)]
    ax.add_collection(LineCollection(segments, colors=edge_colour, linewidths=0.6 if big else 1.4, zorder=1))
    size = (8 + 4 * degree) if big else (60 + 30 * degree)
    ax.scatter(xy[:, 0], xy[:, 1], s=size, c=colour, edgecolors="white", linewidths=0.3 if big else 0.8,
               zorder=2)
    if big:
        labelled = np.argsort(-degree, kind="stable")[:HUBS]
        labelled = labelled[degree[labelled] > 2]
    else:
        labelled = np.arange(n_drawn)
    for i in labelled:
        ax.annotate(tickers[i], xy[i], xytext=(0, 4 if big else 6), textcoords="offset points", ha="center",
                    va="bottom", fontsize=7 if big else 9, zorder=3,
                    bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.6) if big else None)
    sizes = result.clusters.value_counts().sort_index()
    shown = (sizes[sizes > 1] if big else sizes).index[:12]
    handles = [plt.Line2D([], [], marker="o", ls="", color=palette[(c - 1) % COLOURS],
                          label=f"cluster {c}: {sizes[c]:,}") for c in shown]
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.8)
    ax.set_aspect("equal")
    ax.autoscale_view()
    ax.margins(0.04)
    ax.axis("off")
    words = (f"{len(a):,} edges, total distance {result.total_distance:.3f}, "
             f"{result.components:,} component{'s' if result.components != 1 else ''}"
             + (f" ({lone:,} lone{', not drawn' if big else ''})" if lone else ""))
    ax.set_title(title or f"Minimum spanning forest, d = sqrt(2(1 - r)): {result.headline}\n{words}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_network(result, out: str | os.PathLike = "network.png", title: str | None = None) -> Path:
    """Draw the forest of ``result`` to ``out`` (PNG), atomically."""
    return save_figure(network_figure(result, title), out)


__all__ = ["DPI", "forest_layout", "network_figure", "plot_network", "radial_layout"]
