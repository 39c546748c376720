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


# ---- the compiled kernels against the plain numpy formulation they replaced -------------------

def np_unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    keep = np.ones(len(a), bool)
    keep[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[keep], b[keep]


def np_large_star(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    keep = u != v
    u, v = u[keep], v[keep]
    if len(u) == 0:
        return u, v, 0
    order = np.argsort(u, kind="stable")
    u, v = u[order], v[order]
    starts = np.flatnonzero(np.concatenate([[True], u[1:] != u[:-1]]))
    m = np.minimum(np.minimum.reduceat(v, starts), u[starts])
    has_larger = np.maximum.reduceat(v, starts) > u[starts]
    seg_of = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(u))))
    emit = v > u
    return v[emit], m[seg_of[emit]], int(np.count_nonzero(has_larger & (m != u[starts])))


def np_small_star(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    keep = v < u
    u, v = np_unique_pairs(u[keep], v[keep])
    if len(u) == 0:
        return u, v, 0
    starts = np.flatnonzero(np.concatenate([[True], u[1:] != u[:-1]]))
    counts = np.diff(np.append(starts, len(u)))
    m = np.minimum.reduceat(v, starts)
    mv = m[np.repeat(np.arange(len(starts)), counts)]
    emit = v != mv
    return (np.concatenate([v[emit], u[starts]]), np.concatenate([mv[emit], m]),
            int(np.count_nonzero(counts > 1)))


def np_hash_partition(nodes: np.ndarray, num_parts: int) -> np.ndarray:
    from winnow.stages.dedup.minhash import fmix64

    return (fmix64(nodes.astype(np.int64).view(np.uint64)) % np.uint64(num_parts)).astype(np.int64)


def _random_edges(rng: np.random.Generator, trial: int) -> tuple[np.ndarray, np.ndarray]:
    e = int(rng.integers(0, 4000))
    kind = trial % 4
    if kind == 0:    # shard-structured keys (above the radix sort's small-input cut-off)
        n = int(rng.integers(1, 3000))
        a = (rng.integers(0, 4, e) << 32) | rng.integers(0, n, e)
        b = (rng.integers(0, 4, e) << 32) | rng.integers(0, n, e)
    elif kind == 1:  # the whole int64 range, negative keys, loops and repeats
        a = rng.integers(-2**63, 2**63 - 1, e, dtype=np.int64)
        b = rng.integers(-2**63, 2**63 - 1, e, dtype=np.int64)
        a[::3] = b[::3]
        b[1::5] = a[1::5][::-1]
    elif kind == 2:  # few nodes: long runs of equal keys
        a, b = rng.integers(0, 20, e), rng.integers(0, 20, e)
    else:            # one huge star
        a, b = np.zeros(e, np.int64), rng.integers(0, 3, e) * rng.integers(1, 10**6, e)
    return a.astype(np.int64), b.astype(np.int64)


def test_compiled_kernels_equal_numpy_reference() -> None:
    """Same arrays, same order, same counts as the numpy formulation (so work files are
    byte-identical too), on small and large inputs, all key ranges."""
    rng = np.random.default_rng(11)
    for trial in range(120):
        a, b = _random_edges(rng, trial)
        for want, got in ((np_unique_pairs(a, b), cc.unique_pairs(a, b)),
                          (np_large_star(a, b), cc.large_star_op(a, b)),
                          (np_small_star(a, b), cc.small_star_op(a, b))):
            assert len(want) == len(got)
            for x, y in zip(want, got):
                if isinstance(x, np.ndarray):
                    assert y.dtype == np.int64 and np.array_equal(x, y), trial
                else:
                    assert x == y, trial
        for parts in (2, 3, 8, 1000):
            assert np.array_equal(cc.hash_partition(a, parts), np_hash_partition(a, parts)), trial
        loop = a != b
        nodes, roots = cc.union_find(a[loop], b[loop])
        assert np.array_equal(nodes, np.unique(np.concatenate([a[loop], b[loop]])))
        assert as_dict(nodes, roots) == bfs_components(a, b), trial


def test_radix_argsort_is_the_stable_argsort() -> None:
    rng = np.random.default_rng(5)
    for n in (0, 1, 2, 63, 64, 65, 1000, 50_000):
        for hi in (1, 3, 2**11, 2**40, 2**62):
            keys = rng.integers(-hi, hi, n, dtype=np.int64)
            assert np.array_equal(cc._radix_argsort(keys), np.argsort(keys, kind="stable")), (n, hi)
            k, v = cc._radix_sort_kv(keys, np.arange(n, dtype=np.int64))
            assert np.array_equal(v, np.argsort(keys, kind="stable")) and np.array_equal(k, np.sort(keys))
        # document keys (shard << 32 | row) take the packed code: (shard - min) * rows + row
        for shards, rows in ((1, 10), (7, 3000), (2**20, 2**31), (3, 2**32 - 1)):
            keys = ((rng.integers(0, shards, n) + 5) << 32) | rng.integers(0, rows, n)
            keys[:min(n, 2)] = (5 << 32) | (rows - 1)
            assert np.array_equal(cc._radix_argsort(keys), np.argsort(keys, kind="stable")), (n, shards, rows)
            k, v = cc._radix_sort_kv(keys, np.arange(n, dtype=np.int64))
            assert np.array_equal(v, np.argsort(keys, kind="stable")) and np.array_equal(k, np.sort(keys))
