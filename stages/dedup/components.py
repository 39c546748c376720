"""Connected components of the duplicate graph: distributed large-star / small-star, and a
single-process union-find fast path for graphs under an edge budget.

The distributed algorithm is Kiveris et al., "Connected Components in MapReduce and Beyond"
(SoCC 2014): alternate two local operations until neither changes the graph.

- *large-star*, at node u with neighbourhood Γ(u): m = min(Γ(u) ∪ {u}); connect every neighbour
  v > u to m instead of u.
- *small-star*, at node u with smaller neighbours N(u) = {v ∈ Γ(u): v < u}: m = min(N(u) ∪ {u});
  connect every v ∈ N(u) ∪ {u} to m.

Both keep the components and never add edges, so memory per partition stays bounded by the input
edge count of that partition; a fixed point of both is a forest of stars whose centres are the
component minima. Each operation only needs the rows of its own node, so a partition is any
hash-partition of the nodes: the functions here take one partition's rows as numpy arrays and are
driven either by Ray tasks over files (`stages.dedup.phases`) or in memory (`components_in_memory`,
for tests and small graphs).

Convergence test: large-star changes nothing iff every node with a larger neighbour is the minimum
of its neighbourhood; small-star changes nothing iff every node has at most one smaller
neighbour. Both at once ⇔ the graph is a star forest rooted at the component minima.
"""

from __future__ import annotations

import numpy as np

from winnow.stages.dedup.minhash import fmix64


def hash_partition(nodes: np.ndarray, num_parts: int) -> np.ndarray:
    """Partition of each int64 node key (mixed, so shard-structured keys spread evenly)."""
    if num_parts == 1:
        return np.zeros(len(nodes), np.int64)
    return (fmix64(nodes.astype(np.int64).view(np.uint64)) % np.uint64(num_parts)).astype(np.int64)


def unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (a, b) rows, sorted by a then b (two stable argsorts: faster than lexsort)."""
    if len(a) == 0:
        return a.astype(np.int64), b.astype(np.int64)
    order = np.argsort(b, kind="stable")
    order = order[np.argsort(a[order], kind="stable")]
    a, b = a[order], b[order]
    keep = np.ones(len(a), bool)
    keep[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[keep], b[keep]


def _segments(keys: np.ndarray) -> np.ndarray:
    """Start index of every run of equal values in sorted `keys`."""
    if len(keys) == 0:
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))


def large_star_op(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Large-star over one partition.

    Rows (u, v): v is a neighbour of u, for every node u whose partition this is (the map step
    emitted both directions of each edge; repeated rows are harmless here). Returns the new edges
    as (child, parent) with parent < child — possibly repeated, small-star removes repeats — and
    how many nodes changed their star.
    """
    keep = u != v
    u, v = u[keep], v[keep]
    if len(u) == 0:
        return u.astype(np.int64), v.astype(np.int64), 0
    order = np.argsort(u, kind="stable")
    u, v = u[order], v[order]
    starts = _segments(u)
    m = np.minimum(np.minimum.reduceat(v, starts), u[starts])   # min of Γ(u) ∪ {u}
    has_larger = np.maximum.reduceat(v, starts) > u[starts]
    seg_of = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(u))))
    emit = v > u
    child = v[emit]
    parent = m[seg_of[emit]]
    changed = int(np.count_nonzero(has_larger & (m != u[starts])))
    return child, parent, changed


def small_star_op(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Small-star over one partition.

    Rows (u, v) with v < u: the smaller neighbours of each node u whose partition this is
    (repeats removed here, so that "changed" counts only real changes). Returns the new edges as
    (child, parent) with parent < child, and how many nodes changed.
    """
    keep = v < u
    u, v = unique_pairs(u[keep], v[keep])
    if len(u) == 0:
        return u, v, 0
    starts = _segments(u)
    counts = np.diff(np.append(starts, len(u)))
    m = np.minimum.reduceat(v, starts)                           # min of N(u) (all < u)
    seg_of = np.repeat(np.arange(len(starts)), counts)
    mv = m[seg_of]
    emit = v != mv
    child = np.concatenate([v[emit], u[starts]])
    parent = np.concatenate([mv[emit], m])
    changed = int(np.count_nonzero(counts > 1))
    return child, parent, changed


def star_roots(child: np.ndarray, parent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From a converged star forest (child, parent=root): (node, root) for every node, roots
    included as (root, root)."""
    child, parent = unique_pairs(child, parent)
    roots = np.unique(parent)
    nodes = np.concatenate([child, roots])
    labels = np.concatenate([parent, roots])
    order = np.argsort(nodes, kind="stable")
    return nodes[order], labels[order]


# ---- single process -----------------------------------------------------------------------

def union_find(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the edges (a, b) in one process: (node, root) for every node that
    has an edge, root = the smallest node of its component.

    Vectorised hook-and-compress (Shiloach–Vishkin style) over compressed ids: each round hooks
    the larger root of every still-split edge onto the smaller, then compresses paths fully; the
    number of rounds is logarithmic in practice. Memory ≈ 40 bytes per edge.
    """
    if len(a) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    nodes, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    n = len(a)
    x = inv[:n].astype(np.int64)
    y = inv[n:].astype(np.int64)
    parent = np.arange(len(nodes), dtype=np.int64)
    while len(x):
        px, py = parent[x], parent[y]
        split = px != py
        if not split.any():
            break
        x, y, px, py = x[split], y[split], px[split], py[split]
        lo = np.minimum(px, py)
        hi = np.maximum(px, py)
        np.minimum.at(parent, hi, lo)
        while True:  # full path compression: parent becomes the root
            pp = parent[parent]
            if np.array_equal(pp, parent):
                break
            parent = pp
    return nodes, nodes[parent]


def local_contract(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replace one partition's edges by a star forest with the same connectivity: (node, local
    root) for every node but the roots. Any subset of the edges may be contracted this way; done
    on each partition before the first round it turns LSH's many small stars into final ones at
    once and cuts the rounds. Memory is that of the partition's edges."""
    keep = a != b
    nodes, roots = union_find(a[keep], b[keep])
    leaf = nodes != roots
    return nodes[leaf], roots[leaf]


def components_in_memory(a: np.ndarray, b: np.ndarray, num_parts: int = 4,
                         max_rounds: int = 200, contract: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """The distributed algorithm run in one process over `num_parts` hash partitions (exactly the
    per-partition operations the Ray phases run; for tests and small graphs).

    Returns (node, root) for every node with an edge, and the number of large+small rounds.
    """
    child, parent = np.asarray(a, np.int64), np.asarray(b, np.int64)
    if contract:
        p = hash_partition(parent, num_parts)
        outs = [local_contract(child[p == j], parent[p == j]) for j in range(num_parts)]
        child = np.concatenate([o[0] for o in outs])
        parent = np.concatenate([o[1] for o in outs])
    rounds = 0
    while True:
        rounds += 1
        if rounds > max_rounds:
            raise RuntimeError("connected components did not converge")
        # large-star: both directions, partitioned by the first node
        u = np.concatenate([child, parent])
        v = np.concatenate([parent, child])
        p = hash_partition(u, num_parts)
        outs = [large_star_op(u[p == j], v[p == j]) for j in range(num_parts)]
        child = np.concatenate([o[0] for o in outs])
        parent = np.concatenate([o[1] for o in outs])
        changed_large = sum(o[2] for o in outs)
        # small-star: oriented (larger, smaller), partitioned by the larger node
        hi = np.maximum(child, parent)
        lo = np.minimum(child, parent)
        p = hash_partition(hi, num_parts)
        outs = [small_star_op(hi[p == j], lo[p == j]) for j in range(num_parts)]
        child = np.concatenate([o[0] for o in outs])
        parent = np.concatenate([o[1] for o in outs])
        changed_small = sum(o[2] for o in outs)
        if changed_large == 0 and changed_small == 0:
            break
    nodes, roots = star_roots(child, parent)
    return nodes, roots, rounds
