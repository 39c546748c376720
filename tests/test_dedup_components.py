"""Connected components without Ray: large-star / small-star over hash partitions and the
union-find fast path, against a plain BFS, on graphs that break naive algorithms."""

from __future__ import annotations

from collections import defaultdict, deque

import numpy as np
import pytest

from winnow.stages.dedup import components as cc
from winnow.stages.dedup.phases import bucket_edges, NEW_FLAG


def bfs_components(a: np.ndarray, b: np.ndarray) -> dict[int, int]:
    """node → smallest node of its component, for nodes with a non-loop edge."""
    adj: dict[int, list[int]] = defaultdict(list)
    for x, y in zip(a.tolist(), b.tolist()):
        if x != y:
            adj[x].append(y)
            adj[y].append(x)
    root: dict[int, int] = {}
    for s in sorted(adj):
        if s in root:
            continue
        comp, q = [s], deque([s])
        root[s] = s
        while q:
            x = q.popleft()
            for y in adj[x]:
                if y not in root:
                    root[y] = s
                    comp.append(y)
                    q.append(y)
    return root


def as_dict(nodes: np.ndarray, roots: np.ndarray) -> dict[int, int]:
    return dict(zip(nodes.tolist(), roots.tolist()))


GRAPHS = {
    "path": (np.arange(3000), np.arange(1, 3001)),
    "reversed path": (np.arange(3000)[::-1], np.arange(1, 3001)[::-1]),
    "star": (np.zeros(5000, np.int64), np.arange(1, 5001)),
    "star to the largest": (np.full(5000, 10**6), np.arange(5000)),
    "two cliques joined": (np.array([i for i in range(40) for j in range(40)] + [100]),
                           np.array([j for i in range(40) for j in range(40)] + [3])),
}


@pytest.mark.parametrize("name", list(GRAPHS))
@pytest.mark.parametrize("parts", [1, 3, 8])
def test_star_rounds_match_bfs(name: str, parts: int) -> None:
    a, b = (np.asarray(x, np.int64) for x in GRAPHS[name])
    nodes, roots, rounds = cc.components_in_memory(a, b, num_parts=parts)
    assert as_dict(nodes, roots) == bfs_components(a, b)
    assert rounds <= 40


def test_random_graphs_all_algorithms_agree() -> None:
    rng = np.random.default_rng(7)
    for trial in range(25):
        n = int(rng.integers(2, 2000))
        e = int(rng.integers(1, 3000))
        # shard-structured keys, like document keys (shard << 32 | row)
        a = (rng.integers(0, 4, e) << 32) | rng.integers(0, n, e)
        b = (rng.integers(0, 4, e) << 32) | rng.integers(0, n, e)
        want = bfs_components(a, b)
        got_uf = as_dict(*cc.union_find(a[a != b], b[a != b]))
        assert got_uf == want, trial
        nodes, roots, _ = cc.components_in_memory(a, b, num_parts=int(rng.integers(1, 7)))
        assert as_dict(nodes, roots) == want, trial


def test_star_ops_never_add_edges() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 500, 4000)
    b = rng.integers(0, 500, 4000)
    u, v = np.concatenate([a, b]), np.concatenate([b, a])
    child, parent, _ = cc.large_star_op(u, v)
    assert (parent < child).all()
    assert len(cc.unique_pairs(child, parent)[0]) <= len(cc.unique_pairs(np.maximum(a, b), np.minimum(a, b))[0])
    hi, lo = np.maximum(child, parent), np.minimum(child, parent)
    c2, p2, _ = cc.small_star_op(hi, lo)
    assert (p2 < c2).all() and len(cc.unique_pairs(c2, p2)[0]) <= len(cc.unique_pairs(hi, lo)[0])


def test_fixed_point_reports_no_change() -> None:
    leaves = np.arange(1, 100)
    child, parent, changed = cc.large_star_op(np.concatenate([leaves, np.zeros(99, np.int64)]),
                                              np.concatenate([np.zeros(99, np.int64), leaves]))
    assert changed == 0
    _, _, changed = cc.small_star_op(child, parent)
    assert changed == 0


def test_bucket_edges_are_stars_not_cliques() -> None:
    """A bucket of 20 000 identical bands gives 19 999 edges to one centre, never 2·10^8 pairs."""
    n = 20_000
    band = np.full(n, 42, np.uint64)
    key = np.arange(n, dtype=np.int64)[::-1].copy()
    prio = NEW_FLAG | (np.arange(n, dtype=np.uint64) << np.uint64(31))  # key n-1 is ranked first
    u, v, buckets = bucket_edges(band, key, prio)
    assert buckets == 1 and len(u) == n - 1 and set(v.tolist()) == {n - 1}
    # documents already in the index (flag clear) are centres but never members
    prio_old = prio.copy()
    prio_old[:10] &= ~NEW_FLAG
    u, v, _ = bucket_edges(band, key, prio_old)
    assert len(u) == n - 10 and not set(u.tolist()) & set(key[:10].tolist())
    # a bucket of old documents only yields nothing
    u, v, _ = bucket_edges(band[:5], key[:5], prio_old[:5])
    assert len(u) == 0
