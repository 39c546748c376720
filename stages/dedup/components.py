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
from numba import njit

from winnow.stages.dedup.minhash import _fmix64_nb  # the MurmurHash3 finaliser, compiled (numba is required here)


# ---- compiled kernels ---------------------------------------------------------------------
# Every star round sorts each partition's rows by node; numpy's stable argsort of int64 is a
# timsort (~110 ns a row). Node keys are (shard << 32 | row) and span ~40-50 bits, so an LSD
# radix sort over the keys' actual span (11-bit digits, passes whose digit is constant skipped)
# gives the same stable permutation in a few linear passes.

_RADIX_BITS = 11
_SMALL = 64


@njit(cache=True, nogil=True)
def _key_code(keys: np.ndarray) -> tuple[bool, np.uint64, np.int64, np.int64, np.uint64]:
    """An order-preserving map of `keys` onto 0..span: ``key - min`` in general, and for
    non-negative (shard << 32 | row) keys ``(shard - min shard) * (max row + 1) + row``, which
    spans far fewer bits (100 shards of 20,000 rows: 21 bits instead of 39), so fewer radix
    passes. Returns (packed?, min key, min shard, rows, span)."""
    lo = keys[0]
    hi = keys[0]
    hmin = keys[0] >> 32
    hmax = hmin
    rmax = np.int64(0)
    for i in range(len(keys)):
        x = keys[i]
        if x < lo:
            lo = x
        if x > hi:
            hi = x
        h = x >> 32
        if h < hmin:
            hmin = h
        if h > hmax:
            hmax = h
        r = x & 0xFFFFFFFF
        if r > rmax:
            rmax = r
    span = np.uint64(hi) - np.uint64(lo)
    rows = rmax + 1
    if lo >= 0 and hmax - hmin < (np.int64(1) << 30):
        packed = np.uint64(hmax - hmin) * np.uint64(rows) + np.uint64(rmax)
        if packed < span:
            return True, np.uint64(lo), hmin, rows, packed
    return False, np.uint64(lo), hmin, rows, span


@njit(cache=True, nogil=True, inline="always")
def _encode(x: np.int64, packed: bool, ulo: np.uint64, hmin: np.int64, rows: np.int64) -> np.uint64:
    if packed:
        return np.uint64((x >> 32) - hmin) * np.uint64(rows) + np.uint64(x & 0xFFFFFFFF)
    return np.uint64(x) - ulo


@njit(cache=True, nogil=True)
def _radix_plan(span: np.uint64) -> tuple[int, int]:
    """(passes, digit width) for codes up to `span`."""
    bits = 0
    while bits < 64 and (span >> np.uint64(bits)) != 0:
        bits += 1
    passes = (bits + _RADIX_BITS - 1) // _RADIX_BITS
    width = (bits + passes - 1) // passes if passes else 1
    return passes, width


@njit(cache=True, nogil=True)
def _radix_sort_kv(keys: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys, vals) reordered by the stable sort of `keys` (copies): the rows
    ``np.argsort(keys, kind="stable")`` gives, moved with their payload instead of gathered."""
    n = len(keys)
    if n < _SMALL:
        k1 = keys.copy()
        v1 = vals.copy()
        for i in range(1, n):
            k = k1[i]
            x = v1[i]
            j = i - 1
            while j >= 0 and k1[j] > k:
                k1[j + 1] = k1[j]
                v1[j + 1] = v1[j]
                j -= 1
            k1[j + 1] = k
            v1[j + 1] = x
        return k1, v1
    packed, ulo, hmin, rows, span = _key_code(keys)
    if span == 0:
        return keys.copy(), vals.copy()
    passes, width = _radix_plan(span)
    nb = 1 << width
    dmask = np.uint64(nb - 1)
    hist = np.zeros((passes, nb), np.int64)
    c1 = np.empty(n, np.uint64)  # the codes travel with the payload; keys are decoded at the end
    for i in range(n):
        x = _encode(keys[i], packed, ulo, hmin, rows)
        c1[i] = x
        for p in range(passes):
            hist[p, np.int64((x >> np.uint64(p * width)) & dmask)] += 1
    v1 = vals.copy()
    c2 = np.empty(n, np.uint64)
    v2 = np.empty(n, np.int64)
    for p in range(passes):
        h = hist[p]
        shift = np.uint64(p * width)
        if h[np.int64((c1[0] >> shift) & dmask)] == n:
            continue  # every key has the same digit here
        total = 0
        for d in range(nb):
            c = h[d]
            h[d] = total
            total += c
        for i in range(n):
            x = c1[i]
            d = np.int64((x >> shift) & dmask)
            o = h[d]
            h[d] = o + 1
            c2[o] = x
            v2[o] = v1[i]
        c1, c2 = c2, c1
        v1, v2 = v2, v1
    k1 = np.empty(n, np.int64)
    urows = np.uint64(rows)
    for i in range(n):
        x = c1[i]
        if packed:
            k1[i] = ((np.int64(x // urows) + hmin) << 32) | np.int64(x % urows)
        else:
            k1[i] = np.int64(x + ulo)
    return k1, v1


@njit(cache=True, nogil=True)
def _radix_argsort(keys: np.ndarray) -> np.ndarray:
    """The permutation ``np.argsort(keys, kind="stable")`` returns: row numbers carried as the
    payload of `_radix_sort_kv`."""
    return _radix_sort_kv(keys, np.arange(len(keys), dtype=np.int64))[1]


@njit(cache=True, nogil=True)
def _hash_partition(nodes: np.ndarray, num_parts: np.uint64) -> np.ndarray:
    out = np.empty(len(nodes), np.int64)
    for i in range(len(nodes)):
        out[i] = np.int64(_fmix64_nb(np.uint64(nodes[i])) % num_parts)
    return out


@njit(cache=True, nogil=True)
def _unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(a)
    sa, sb = _radix_sort_kv(a, b)
    # sort b inside every run of equal a (runs are short; a long one goes to a merge sort)
    s = 0
    while s < n:
        e = s + 1
        while e < n and sa[e] == sa[s]:
            e += 1
        if e - s > 1:
            if e - s <= 32:
                for i in range(s + 1, e):
                    x = sb[i]
                    j = i - 1
                    while j >= s and sb[j] > x:
                        sb[j + 1] = sb[j]
                        j -= 1
                    sb[j + 1] = x
            else:
                sb[s:e] = np.sort(sb[s:e])
        s = e
    m = 0
    for i in range(n):
        if i == 0 or sa[i] != sa[i - 1] or sb[i] != sb[i - 1]:
            sa[m] = sa[i]
            sb[m] = sb[i]
            m += 1
    return sa[:m].copy(), sb[:m].copy()


@njit(cache=True, nogil=True)
def _large_star(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    n = 0
    for i in range(len(u)):
        if u[i] != v[i]:
            n += 1
    uu = np.empty(n, np.int64)
    vv = np.empty(n, np.int64)
    n = 0
    emit = 0
    for i in range(len(u)):
        if u[i] != v[i]:
            uu[n] = u[i]
            vv[n] = v[i]
            n += 1
            if v[i] > u[i]:
                emit += 1
    uu, vv = _radix_sort_kv(uu, vv)
    child = np.empty(emit, np.int64)
    parent = np.empty(emit, np.int64)
    changed = 0
    o = 0
    s = 0
    while s < n:
        x = uu[s]
        m = x
        has_larger = False
        e = s
        while e < n and uu[e] == x:
            y = vv[e]
            if y < m:
                m = y
            if y > x:
                has_larger = True
            e += 1
        if has_larger and m != x:
            changed += 1
        for i in range(s, e):
            y = vv[i]
            if y > x:
                child[o] = y
                parent[o] = m
                o += 1
        s = e
    return child, parent, changed


@njit(cache=True, nogil=True)
def _small_star(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    n = 0
    for i in range(len(u)):
        if v[i] < u[i]:
            n += 1
    uu = np.empty(n, np.int64)
    vv = np.empty(n, np.int64)
    n = 0
    for i in range(len(u)):
        if v[i] < u[i]:
            uu[n] = u[i]
            vv[n] = v[i]
            n += 1
    su, sv = _unique_pairs(uu, vv)
    n = len(su)
    segs = 0
    for i in range(n):
        if i == 0 or su[i] != su[i - 1]:
            segs += 1
    # sorted by (u, v): the first v of a run is its minimum; every other v of the run becomes
    # a leaf of that minimum, then each u itself does
    k = n - segs
    child = np.empty(n, np.int64)
    parent = np.empty(n, np.int64)
    changed = 0
    o = 0
    r = k
    m = np.int64(0)
    for i in range(n):
        if i == 0 or su[i] != su[i - 1]:
            m = sv[i]
            child[r] = su[i]
            parent[r] = m
            r += 1
            if i + 1 < n and su[i + 1] == su[i]:
                changed += 1
        else:
            child[o] = sv[i]
            parent[o] = m
            o += 1
    return child, parent, changed


@njit(cache=True, nogil=True)
def _union_find(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(a)
    both = np.empty(2 * n, np.int64)
    both[:n] = a
    both[n:] = b
    perm = _radix_argsort(both)
    inv = np.empty(2 * n, np.int64)
    count = 0
    for i in range(2 * n):
        if i == 0 or both[perm[i]] != both[perm[i - 1]]:
            count += 1
        inv[perm[i]] = count - 1
    nodes = np.empty(count, np.int64)
    for i in range(2 * n):
        nodes[inv[i]] = both[i]
    parent = np.arange(count)
    for i in range(n):
        x = inv[i]
        while parent[x] != x:  # find with path halving
            parent[x] = parent[parent[x]]
            x = parent[x]
        y = inv[n + i]
        while parent[y] != y:
            parent[y] = parent[parent[y]]
            y = parent[y]
        if x < y:  # ids are in node order: the smaller id stays the root, so the root is the minimum
            parent[y] = x
        elif y < x:
            parent[x] = y
    roots = np.empty(count, np.int64)
    for i in range(count):  # a parent has a smaller id: one pass in id order resolves every root
        parent[i] = parent[parent[i]]
        roots[i] = nodes[parent[i]]
    return nodes, roots


def _i64(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.int64)


def hash_partition(nodes: np.ndarray, num_parts: int) -> np.ndarray:
    """Partition of each int64 node key (MurmurHash3's fmix64 of the key, modulo `num_parts`, so
    shard-structured keys spread evenly)."""
    if num_parts == 1:
        return np.zeros(len(nodes), np.int64)
    return _hash_partition(_i64(nodes), np.uint64(num_parts))


def unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (a, b) rows, sorted by a then b (int64)."""
    if len(a) == 0:
        return a.astype(np.int64), b.astype(np.int64)
    return _unique_pairs(_i64(a), _i64(b))


def large_star_op(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Large-star over one partition.

    Rows (u, v): v is a neighbour of u, for every node u whose partition this is (the map step
    emitted both directions of each edge; repeated rows are harmless here). Returns the new edges
    as (child, parent) with parent < child — possibly repeated, small-star removes repeats — in
    the stable order of u, and how many nodes changed their star.
    """
    child, parent, changed = _large_star(_i64(u), _i64(v))
    return child, parent, int(changed)


def small_star_op(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Small-star over one partition.

    Rows (u, v) with v < u: the smaller neighbours of each node u whose partition this is
    (repeats removed here, so that "changed" counts only real changes). Returns the new edges as
    (child, parent) with parent < child — first every non-minimal smaller neighbour to the
    minimum, then every u to its minimum, each in (u, v) order — and how many nodes changed.
    """
    child, parent, changed = _small_star(_i64(u), _i64(v))
    return child, parent, int(changed)


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
    has an edge, nodes sorted, root = the smallest node of its component.

    Compiled union-find over compressed ids (radix-sorted node keys, so an id order is the node
    order): union links the larger root under the smaller, finds halve their paths, and one pass
    in id order resolves every root. Memory ≈ 48 bytes per edge.
    """
    if len(a) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return _union_find(_i64(a), _i64(b))


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
