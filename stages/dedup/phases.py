"""The dedup phases: each a function of (plan, task number) that reads work files, writes its own
output atomically and returns its counters. `DedupStage` maps them over Ray tasks in order.

Phases and their shuffles (P = partitions; "bucket" = global shard mod P):

 1. exact_map    per input shard   content hash (xxh3-128 of the text) → partitioned by hash
 2. exact_reduce per partition     groups of equal content → (doc, representative, group size) by bucket
 3. sig          per input shard   MinHash + bottom-k sketch of every document that is not an exact
                                   duplicate; row-aligned signature file + band keys partitioned by key
 4. lsh          per partition     documents sharing a band key → star edges to the bucket's best
                                   document (keep-rule order), by bucket of the member
 5. verify_a/b   per bucket        attach both bottom-k sketches to each candidate pair, keep pairs
                                   whose estimated Jaccard ≥ threshold (drops LSH false positives)
 6. cc           per partition     each verify task first contracts its own edges to stars, then
                                   large-star / small-star rounds (components.py), or one
                                   union-find task under the edge budget → (node, root) by bucket
 7. attach       per bucket        (node, root) + the node's keep-rule rank, id and weight → by root
 8. elect        per partition     per component: keeper = first in keep-rule order, size → by bucket
 9. commit       per input shard   kept rows + dup_cluster(_size); rejected exact_dup / minhash_dup;
                                   stats: removals per dump and the dump × dump overlap

Document keys are ``global shard << 32 | row``. Global shards number the index's documents first,
then this run's input shards, so a key says where the document's signature lives.

Keep rule (deterministic, independent of sharding and worker count): a document already in the
index wins; then the earliest ``crawl_date`` (missing dates last); then the smallest ``id``; then
the smallest key (only reachable when ids repeat).

Work files live under ``OUT/_work/<run>/``: on a local filesystem (atomic rename, memory-mapped
reads), or, when OUT is an object-store URL (``s3://…``), on the object store itself, so a
multi-node cluster needs no shared disk: each task writes its files as PUTs and its done record
last, and reads what it needs with ranged GETs (`store.py`). Input shards may be URLs too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from winnow.pipeline import shards as shard_io
from winnow.stages.dedup import components as cc
from winnow.stages.dedup import minhash as mh
from winnow.stages.dedup import shuffle as sh
from winnow.stages.dedup import store

NEW_FLAG = np.uint64(1 << 63)
ROW_MASK = np.int64(0xFFFFFFFF)
NO_DATE = (1 << 32) - 1

STATUS_SIGNED = 0      # has a signature, takes part in LSH
STATUS_EXACT_DUP = 1   # exact copy of an earlier-ranked document: no signature computed
STATUS_NO_WORDS = 2    # empty after normalisation: never a near-duplicate of anything

EXACT_MAP_SCHEMA = pa.schema([("h1", pa.uint64()), ("h2", pa.uint64()), ("key", pa.int64()),
                              ("rank", pa.uint64()), ("id", pa.string())])
EXACT_OUT_SCHEMA = pa.schema([("key", pa.int64()), ("rep", pa.int64()), ("size", pa.int64())])
BAND_SCHEMA = pa.schema([("band", pa.uint64()), ("key", pa.int64()), ("prio", pa.uint64())])
EDGE_SCHEMA = pa.schema([("u", pa.int64()), ("v", pa.int64())])
FINAL_SCHEMA = pa.schema([("node", pa.int64()), ("root", pa.int64())])
ATTACH_SCHEMA = pa.schema([("root", pa.int64()), ("node", pa.int64()), ("rank", pa.uint64()),
                           ("id", pa.string()), ("weight", pa.int64())])
ELECT_SCHEMA = pa.schema([("node", pa.int64()), ("keeper", pa.int64()), ("size", pa.int64())])


def sig_schema(num_perm: int) -> pa.Schema:
    """Row-aligned per-shard signature file: everything later phases need about a document."""
    return pa.schema([("key", pa.int64()), ("prio", pa.uint64()), ("rank", pa.uint64()),
                      ("id", pa.string()), ("weight", pa.int64()), ("status", pa.int8()),
                      ("ntok", pa.int32()), ("h1", pa.uint64()), ("h2", pa.uint64()),
                      ("salt", pa.uint64()), ("sig", pa.list_(pa.uint32(), num_perm)),
                      ("bk", pa.list_(pa.uint32()))])


def verify_schema(num_perm: int, verify_k: int) -> pa.Schema:
    sketch = pa.list_(pa.uint32()) if verify_k > 0 else pa.list_(pa.uint32(), num_perm)
    return pa.schema([("u", pa.int64()), ("v", pa.int64()), ("sketch_u", sketch)])


@dataclass(frozen=True)
class Segment:
    """A part of the index: documents kept by an earlier run, under global shards
    [shard_offset, shard_offset + num_shards)."""

    name: str
    path: str
    shard_offset: int
    num_shards: int
    keys_dir: str = ""                # sub-folder of the partitioned key files ("" or "p-<P>" after a reshard)


@dataclass(frozen=True)
class Plan:
    """Everything a phase task needs; pickled once per phase and shipped to Ray workers."""

    work: str
    inputs: tuple[str, ...]           # input parquet shard per task index
    shard_offset: int                 # global shard of input 0
    partitions: int
    num_perm: int
    num_bands: int
    rows_per_band: int
    ngram: int
    seed: int
    cjk: str
    scope: str
    exact: bool
    verify: bool
    verify_k: int
    jaccard_threshold: float
    batch_size: int
    backend: str
    keep_rejected_text: bool
    segments: tuple[Segment, ...] = ()

    # ---- paths -------------------------------------------------------------------------
    def path(self, phase: str, i: int) -> Any:
        """Work file i of a phase: a `Path` under a local work folder, a URL string under a remote one."""
        return store.join(self.work, phase, f"part-{i:05d}.arrow")

    def paths(self, phase: str, n: int) -> list[Any]:
        return [self.path(phase, i) for i in range(n)]

    @property
    def num_shards(self) -> int:
        return len(self.inputs)

    def gshard(self, i: int) -> int:
        return self.shard_offset + i

    def sig_path(self, gshard: int) -> Any:
        """Where the signature file of a global shard lives: this run's work dir or a segment."""
        if gshard >= self.shard_offset:
            return self.path("sig", gshard - self.shard_offset)
        for seg in self.segments:
            if seg.shard_offset <= gshard < seg.shard_offset + seg.num_shards:
                return store.join(seg.path, "sig", f"part-{gshard - seg.shard_offset:05d}.arrow")
        raise KeyError(f"global shard {gshard} is in no index segment")

    def segment_files(self, kind: str, part: int) -> list[Any]:
        """Partition `part` of every index segment's `kind` ("bands" / "exact"): one file each."""
        return [store.join(seg.path, seg.keys_dir, kind, f"p-{part:05d}.arrow") for seg in self.segments]


# ---- small helpers ---------------------------------------------------------------------------

def shard_bucket(keys: np.ndarray, num_parts: int) -> np.ndarray:
    """Partition of a document key by its global shard (joins with per-shard files)."""
    return ((keys >> 32) % num_parts).astype(np.int64)


def _col(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name)
    if col.num_chunks == 1:
        return col.chunk(0).to_numpy(zero_copy_only=False)
    return col.to_numpy()


def _sig_matrix(table: pa.Table, num_perm: int, column: str = "sig") -> np.ndarray:
    col = table.column(column).combine_chunks()
    if len(col) == 0:
        return np.zeros((0, num_perm), np.uint32)
    return col.flatten().to_numpy(zero_copy_only=False).reshape(-1, num_perm)


def _sig_array(sig: np.ndarray) -> pa.Array:
    k = sig.shape[1]
    return pa.FixedSizeListArray.from_arrays(pa.array(sig.reshape(-1), type=pa.uint32()), k)


def load_sig_file(path: Any) -> pa.Table:
    """A whole signature file (memory-mapped locally, one GET on object storage)."""
    return store.read_ipc(path)


def crawl_seconds(col: pa.ChunkedArray | pa.Array | None, n: int) -> np.ndarray:
    """crawl_date as uint64 seconds, clamped to 32 bits; missing → NO_DATE (sorts last)."""
    if col is None:
        return np.full(n, NO_DATE, np.uint64)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_timestamp(col.type):
        secs = pc.cast(col, pa.timestamp("s", tz=col.type.tz), safe=False).cast(pa.int64())
    elif pa.types.is_date(col.type):
        secs = pc.cast(pc.cast(col, pa.timestamp("s")), pa.int64())
    elif pa.types.is_integer(col.type):
        secs = col.cast(pa.int64())
    else:
        return np.full(n, NO_DATE, np.uint64)
    vals = pc.fill_null(secs, NO_DATE).to_numpy(zero_copy_only=False)
    return np.clip(vals, 0, NO_DATE).astype(np.uint64)


def _str_hash64(values: list[str | None]) -> np.ndarray:
    h = xxhash.xxh3_64_intdigest
    return np.fromiter((h(("" if v is None else v).encode("utf-8", "surrogatepass")) for v in values),
                       dtype=np.uint64, count=len(values))


def dump_salt(dumps: list[str | None], scope: str) -> np.ndarray:
    """Per-document salt mixed into exact and band keys: the dump's hash under --scope dump."""
    if scope != "dump":
        return np.zeros(len(dumps), np.uint64)
    return _str_hash64(dumps) | np.uint64(1)


def content_hashes(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """xxh3-128 of each text's UTF-8 bytes (null → empty): exact-duplicate identity."""
    arr = texts if not isinstance(texts, pa.ChunkedArray) else texts.combine_chunks()
    n = len(arr)
    h1 = np.empty(n, np.uint64)
    h2 = np.empty(n, np.uint64)
    if n == 0:
        return h1, h2
    data, offsets, valid = mh._arrow_buffers(arr)
    mv = memoryview(data)
    f = xxhash.xxh3_128_intdigest
    m64 = (1 << 64) - 1
    for i in range(n):
        d = f(mv[offsets[i]:offsets[i + 1]]) if valid[i] else f(b"")
        h1[i] = d >> 64
        h2[i] = d & m64
    return h1, h2


def _read_columns(path: str, wanted: list[str]) -> list[str]:
    names = store.parquet_columns(path)
    return [c for c in wanted if c in names]


def _iter_input(plan: Plan, path: str, columns: list[str]):
    pf = store.parquet_file(path)
    cols = [c for c in columns if c in pf.schema_arrow.names]
    if "text" not in cols or "id" not in cols:
        raise ValueError(f"{path}: dedup needs columns id and text, has {pf.schema_arrow.names}")
    row = 0
    for batch in pf.iter_batches(batch_size=plan.batch_size, columns=cols):
        yield row, batch
        row += batch.num_rows


def _batch_meta(plan: Plan, batch: pa.RecordBatch, gshard: int, row0: int):
    """key, prio, rank, ids, salt of the documents of one input batch (all new: flag set)."""
    n = batch.num_rows
    names = batch.schema.names
    ids = batch.column(names.index("id")).to_pylist()
    crawl = crawl_seconds(batch.column(names.index("crawl_date")) if "crawl_date" in names else None, n)
    dumps = batch.column(names.index("dump")).to_pylist() if "dump" in names else [None] * n
    keys = (np.int64(gshard) << np.int64(32)) | np.arange(row0, row0 + n, dtype=np.int64)
    idh = _str_hash64(ids)
    prio = NEW_FLAG | (crawl << np.uint64(31)) | (idh >> np.uint64(33))
    rank = (np.uint64(1) << np.uint64(32)) | crawl
    salt = dump_salt(dumps, plan.scope)
    return keys, prio, rank, ids, salt


# ---- 1. exact map ------------------------------------------------------------------------------

def exact_map(plan: Plan, i: int) -> dict[str, Any]:
    """Content hash of every document of input shard i, partitioned by hash."""
    out = plan.path("exact_map", i)
    done = sh.is_done(out)
    if done is not None:
        return done
    tables = []
    for row0, batch in _iter_input(plan, plan.inputs[i], ["id", "crawl_date", "dump", "text"]):
        keys, _prio, rank, ids, salt = _batch_meta(plan, batch, plan.gshard(i), row0)
        h1, h2 = content_hashes(batch.column(batch.schema.names.index("text")))
        h1 ^= salt
        h2 ^= mh.fmix64(salt) if plan.scope == "dump" else np.uint64(0)
        tables.append(pa.table([h1, h2, keys, rank, pa.array(ids, pa.string())], schema=EXACT_MAP_SCHEMA))
    t = pa.concat_tables(tables) if tables else EXACT_MAP_SCHEMA.empty_table()
    sh.write_partitioned(out, t, (_col(t, "h1") % np.uint64(plan.partitions)).astype(np.int64), plan.partitions)
    return sh.mark_done(out, {"docs": t.num_rows})


# ---- 2. exact reduce ---------------------------------------------------------------------------

def exact_reduce(plan: Plan, j: int) -> dict[str, Any]:
    """Groups of identical content in partition j → (doc, representative, size) for new docs."""
    out = plan.path("exact_reduce", j)
    done = sh.is_done(out)
    if done is not None:
        return done
    t = sh.read_partition(plan.paths("exact_map", plan.num_shards), j, EXACT_MAP_SCHEMA)
    if plan.segments:
        t = pa.concat_tables([sh.read_partition(plan.segment_files("exact", j), 0, EXACT_MAP_SCHEMA), t])
    t = t.sort_by([("h1", "ascending"), ("h2", "ascending"), ("rank", "ascending"), ("id", "ascending"),
                   ("key", "ascending")])
    h1, h2, key, rank = _col(t, "h1"), _col(t, "h2"), _col(t, "key"), _col(t, "rank")
    n = len(key)
    counters = {"exact_dup": 0, "exact_groups": 0}
    if n:
        new_group = np.ones(n, bool)
        new_group[1:] = (h1[1:] != h1[:-1]) | (h2[1:] != h2[:-1])
        gid = np.cumsum(new_group) - 1
        starts = np.flatnonzero(new_group)
        sizes = np.diff(np.append(starts, n))
        size = sizes[gid]
        rep = key[starts][gid]
        is_new = (rank >> np.uint64(32)) == 1
        sel = (size > 1) & is_new
        key, rep, size = key[sel], rep[sel], size[sel]
        counters["exact_dup"] = int(np.count_nonzero(key != rep))
        counters["exact_groups"] = int(len(np.unique(rep)))
    else:
        key = rep = size = np.zeros(0, np.int64)
    res = pa.table([key, rep, size.astype(np.int64)], schema=EXACT_OUT_SCHEMA)
    sh.write_partitioned(out, res, shard_bucket(key, plan.partitions), plan.partitions)
    return sh.mark_done(out, counters)


def _rows_of_shard(table: pa.Table, column: str, gshard: int) -> pa.Table:
    keys = _col(table, column)
    return table.filter(pa.array((keys >> 32) == gshard))


# ---- 3. signatures -----------------------------------------------------------------------------

def signatures(plan: Plan, i: int) -> dict[str, Any]:
    """MinHash signatures and band keys of input shard i (exact duplicates skipped)."""
    out_sig = plan.path("sig", i)
    out_bands = plan.path("bands", i)
    done = sh.is_done(out_bands)
    if done is not None and store.exists(out_sig):
        return done
    g = plan.gshard(i)
    ex_key = ex_rep = ex_size = np.zeros(0, np.int64)
    if plan.exact:
        ex = _rows_of_shard(sh.read_partition(plan.paths("exact_reduce", plan.partitions), g % plan.partitions,
                                              EXACT_OUT_SCHEMA), "key", g)
        order = np.argsort(_col(ex, "key"))
        ex_key, ex_rep, ex_size = _col(ex, "key")[order], _col(ex, "rep")[order], _col(ex, "size")[order]
    K = plan.num_perm
    parts: list[pa.Table] = []
    band_tables: list[pa.Table] = []
    counters = {"docs": 0, "signed": 0, "no_words": 0, "short_docs": 0, "invalid_utf8": 0, "text_bytes": 0}
    for row0, batch in _iter_input(plan, plan.inputs[i], ["id", "crawl_date", "dump", "text"]):
        n = batch.num_rows
        keys, prio, rank, ids, salt = _batch_meta(plan, batch, g, row0)
        text = batch.column(batch.schema.names.index("text"))
        h1, h2 = content_hashes(text)
        h1 ^= salt
        h2 ^= mh.fmix64(salt) if plan.scope == "dump" else np.uint64(0)
        weight = np.ones(n, np.int64)
        status = np.full(n, STATUS_SIGNED, np.int8)
        if len(ex_key):
            pos = np.minimum(np.searchsorted(ex_key, keys), len(ex_key) - 1)
            hit = ex_key[pos] == keys
            weight[hit] = ex_size[pos[hit]]
            status[hit & (ex_rep[pos] != keys)] = STATUS_EXACT_DUP
        todo = np.flatnonzero(status != STATUS_EXACT_DUP)
        sig = np.full((n, K), mh.EMPTY, np.uint32)
        ntok = np.zeros(n, np.int64)
        bk_cnt = np.zeros(n, np.int64)
        bk_vals = np.zeros(0, np.uint32)
        if len(todo):
            sub = text.take(pa.array(todo)) if len(todo) < n else text
            counters["invalid_utf8"] += mh.invalid_utf8_count(sub)
            s, nt, bk_vals, cnt = mh.sketches(sub, num_perm=K, seed=plan.seed, ngram=plan.ngram, cjk=plan.cjk,
                                              verify_k=plan.verify_k if plan.verify else 0, backend=plan.backend)
            sig[todo] = s
            ntok[todo] = nt
            bk_cnt[todo] = cnt
        bk = pa.ListArray.from_arrays(pa.array(np.concatenate([[0], np.cumsum(bk_cnt)]).astype(np.int32)),
                                      pa.array(bk_vals, pa.uint32()))
        no_words = (status != STATUS_EXACT_DUP) & (ntok == 0)
        status[no_words] = STATUS_NO_WORDS
        counters["docs"] += n
        counters["signed"] += int(np.count_nonzero(status == STATUS_SIGNED))
        counters["no_words"] += int(np.count_nonzero(no_words))
        counters["short_docs"] += int(np.count_nonzero((ntok > 0) & (ntok < plan.ngram)))
        counters["text_bytes"] += int(pc.sum(pc.binary_length(text)).as_py() or 0)
        parts.append(pa.table([keys, prio, rank, pa.array(ids, pa.string()), weight, status,
                               ntok.astype(np.int32), h1, h2, salt, _sig_array(sig), bk], schema=sig_schema(K)))
        signed = np.flatnonzero(status == STATUS_SIGNED)
        if len(signed):
            bh = mh.band_hashes(sig[signed], plan.num_bands, plan.rows_per_band, salt[signed])
            band_tables.append(pa.table([bh.reshape(-1), np.repeat(keys[signed], plan.num_bands),
                                         np.repeat(prio[signed], plan.num_bands)], schema=BAND_SCHEMA))
    sig_table = pa.concat_tables(parts) if parts else sig_schema(K).empty_table()
    sh.write_table(out_sig, sig_table)
    bands = pa.concat_tables(band_tables) if band_tables else BAND_SCHEMA.empty_table()
    sh.write_partitioned(out_bands, bands, (_col(bands, "band") % np.uint64(plan.partitions)).astype(np.int64),
                         plan.partitions)
    return sh.mark_done(out_bands, counters)


# ---- 4. LSH buckets → candidate edges ---------------------------------------------------------

def bucket_edges(band: np.ndarray, key: np.ndarray, prio: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Star edges (member, centre) of every band bucket holding ≥ 2 documents, at least one new.

    The centre is the bucket's first document in (prio, key) order — the keep-rule order — so the
    graph does not depend on how documents were numbered. Members already in the index are left
    out (the index was deduplicated when they were added). Linear in the bucket size: a bucket of
    10^5 identical bands gives 10^5 - 1 edges, not 5·10^9.
    """
    n = len(key)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    order = np.lexsort((key, prio, band))
    band, key, prio = band[order], key[order], prio[order]
    first = np.ones(n, bool)
    first[1:] = band[1:] != band[:-1]
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, n))
    gid = np.cumsum(first) - 1
    centre = key[starts][gid]
    is_new = (prio & NEW_FLAG) != 0
    emit = (~first) & is_new & (sizes[gid] > 1)
    return key[emit], centre[emit], int(np.count_nonzero(sizes > 1))


def lsh(plan: Plan, j: int) -> dict[str, Any]:
    """Partition j of the band keys → candidate edges, by bucket of the member."""
    out = plan.path("lsh", j)
    done = sh.is_done(out)
    if done is not None:
        return done
    t = sh.read_partition(plan.paths("bands", plan.num_shards), j, BAND_SCHEMA)
    if plan.segments:
        t = pa.concat_tables([sh.read_partition(plan.segment_files("bands", j), 0, BAND_SCHEMA), t])
    u, v, buckets = bucket_edges(_col(t, "band"), _col(t, "key"), _col(t, "prio"))
    res = pa.table([u, v], schema=EDGE_SCHEMA)
    sh.write_partitioned(out, res, shard_bucket(u, plan.partitions), plan.partitions)
    return sh.mark_done(out, {"band_rows": t.num_rows, "lsh_buckets": buckets, "lsh_edges": len(u)})


# ---- 5. verification ---------------------------------------------------------------------------

def _lookup(plan: Plan, keys: np.ndarray, columns: list[str]) -> dict[str, np.ndarray]:
    """Scalar columns of the signature files (this run's or the index's) for `keys`, in the
    order given, reading one shard file at a time."""
    out: dict[str, np.ndarray] = {}
    n = len(keys)
    shards = keys >> 32
    for g in np.unique(shards).tolist():
        sel = np.flatnonzero(shards == g)
        t = load_sig_file(plan.sig_path(int(g)))
        rows = (keys[sel] & ROW_MASK).astype(np.int64)
        for c in columns:
            if c == "id":
                vals = np.asarray(t.column("id").take(pa.array(rows)).to_pylist(), dtype=object)
                if c not in out:
                    out[c] = np.empty(n, dtype=object)
            else:
                vals = _col(t, c)[rows]
                if c not in out:
                    out[c] = np.zeros(n, vals.dtype)
            out[c][sel] = vals
    if n == 0:
        for c in columns:
            out[c] = np.empty(0, object) if c == "id" else np.zeros(0, np.int64)
    return out


def _write_cc_input(plan: Plan, out: Any, u: np.ndarray, v: np.ndarray, contract: bool = False) -> None:
    """Edges in the large-star input layout: both directions, partitioned by the first node.

    `contract`: first replace this task's edges by a star forest with the same components
    (`components.local_contract`): LSH edges of one bucket share their centres, so most clusters
    leave here already final and the star rounds have little left to do."""
    if contract and len(u):
        u, v = cc.local_contract(u, v)
    a = np.concatenate([u, v])
    b = np.concatenate([v, u])
    sh.write_partitioned(out, pa.table([a, b], schema=EDGE_SCHEMA), cc.hash_partition(a, plan.partitions),
                         plan.partitions)


def _sketches(plan: Plan, keys: np.ndarray) -> pa.Array:
    """The verification sketch of each key, in the order given: bottom-k lists, or the MinHash
    signatures when `verify_k` is 0."""
    column = "bk" if plan.verify_k > 0 else "sig"
    shards = keys >> 32
    pieces: list[pa.Array] = []
    where: list[np.ndarray] = []
    for g in np.unique(shards).tolist():
        sel = np.flatnonzero(shards == g)
        t = load_sig_file(plan.sig_path(int(g)))
        pieces.append(t.column(column).combine_chunks().take(pa.array((keys[sel] & ROW_MASK).astype(np.int64))))
        where.append(sel)
    typ = verify_schema(plan.num_perm, plan.verify_k).field("sketch_u").type
    if not pieces:
        return pa.array([], typ)
    allv = pa.concat_arrays(pieces)
    inverse = np.empty(len(keys), np.int64)
    inverse[np.concatenate(where)] = np.arange(len(keys))
    return allv.take(pa.array(inverse)).cast(typ)


def sketch_jaccard(plan: Plan, a: pa.Array, b: pa.Array) -> np.ndarray:
    """Estimated Jaccard of row-aligned sketch arrays (bottom-k, or MinHash agreement)."""
    if len(a) == 0:
        return np.zeros(0)
    if plan.verify_k > 0:
        def parts(x: pa.Array) -> tuple[np.ndarray, np.ndarray]:
            x = x.combine_chunks() if isinstance(x, pa.ChunkedArray) else x
            offs = x.offsets.to_numpy().astype(np.int64)
            vals = x.values.to_numpy(zero_copy_only=False)
            return vals, offs
        va, oa = parts(a)
        vb, ob = parts(b)
        return mh.bottom_k_jaccard(va, oa, vb, ob, plan.verify_k, backend=plan.backend)
    ma = (a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a).flatten().to_numpy().reshape(-1, plan.num_perm)
    mb = (b.combine_chunks() if isinstance(b, pa.ChunkedArray) else b).flatten().to_numpy().reshape(-1, plan.num_perm)
    return mh.estimated_jaccard(ma, mb)


def verify_a(plan: Plan, g: int) -> dict[str, Any]:
    """Bucket g of the candidate edges: distinct pairs, plus the member's sketch, by bucket of
    the centre. Without verification: distinct pairs straight to the component phase."""
    out = plan.path("verify_a", g) if plan.verify else plan.path("cc-000", g)
    done = sh.is_done(out)
    if done is not None:
        return done
    t = sh.read_partition(plan.paths("lsh", plan.partitions), g, EDGE_SCHEMA)
    u, v = cc.unique_pairs(_col(t, "u"), _col(t, "v"))
    if not plan.verify:
        _write_cc_input(plan, out, u, v, contract=True)
        return sh.mark_done(out, {"candidate_pairs": len(u), "verified_pairs": len(u)})
    res = pa.table([u, v, _sketches(plan, u)], schema=verify_schema(plan.num_perm, plan.verify_k))
    sh.write_partitioned(out, res, shard_bucket(v, plan.partitions), plan.partitions)
    return sh.mark_done(out, {"candidate_pairs": len(u)})


def verify_b(plan: Plan, g: int) -> dict[str, Any]:
    """Bucket g (by centre): estimated Jaccard of each pair from the two sketches; pairs at or
    above the threshold go on to connected components."""
    out = plan.path("cc-000", g)
    done = sh.is_done(out)
    if done is not None:
        return done
    t = sh.read_partition(plan.paths("verify_a", plan.partitions), g, verify_schema(plan.num_perm, plan.verify_k))
    u, v = _col(t, "u"), _col(t, "v")
    est = sketch_jaccard(plan, t.column("sketch_u").combine_chunks(), _sketches(plan, v))
    ok = est >= plan.jaccard_threshold
    _write_cc_input(plan, out, u[ok], v[ok], contract=True)
    return sh.mark_done(out, {"verified_pairs": int(ok.sum()), "false_positive_pairs": int((~ok).sum())})


# ---- 6. connected components --------------------------------------------------------------------

def cc_step(plan: Plan, k: int, j: int) -> dict[str, Any]:
    """Round k of the star algorithm on partition j (even k: large-star, odd: small-star); writes
    the result in the layout of round k+1."""
    out = plan.path(f"cc-{k + 1:03d}", j)
    done = sh.is_done(out)
    if done is not None:
        return done
    t = sh.read_partition(plan.paths(f"cc-{k:03d}", plan.partitions), j, EDGE_SCHEMA)
    u, v = _col(t, "u"), _col(t, "v")
    if k % 2 == 0:
        child, parent, changed = cc.large_star_op(u, v)
        # next: small-star, rows (larger, smaller) by the larger node
        res = pa.table([child, parent], schema=EDGE_SCHEMA)
        sh.write_partitioned(out, res, cc.hash_partition(child, plan.partitions), plan.partitions)
    else:
        child, parent, changed = cc.small_star_op(u, v)
        _write_cc_input(plan, out, child, parent)
    return sh.mark_done(out, {"changed": changed, "edges": len(child), "rows_in": t.num_rows})


def cc_final(plan: Plan, k: int, j: int) -> dict[str, Any]:
    """Converged star forest (round-k layout, both directions) → (node, root), by node bucket."""
    out = plan.path("cc-final", j)
    done = sh.is_done(out)
    if done is not None:
        return done
    t = sh.read_partition(plan.paths(f"cc-{k:03d}", plan.partitions), j, EDGE_SCHEMA)
    u, v = _col(t, "u"), _col(t, "v")
    # rows are partitioned by u: u > v → u is a leaf of root v; u < v → u is a root
    leaf = u > v
    nodes = np.concatenate([u[leaf], np.unique(u[~leaf])])
    roots = np.concatenate([v[leaf], np.unique(u[~leaf])])
    nodes, roots = cc.unique_pairs(nodes, roots)
    res = pa.table([nodes, roots], schema=FINAL_SCHEMA)
    sh.write_partitioned(out, res, shard_bucket(nodes, plan.partitions), plan.partitions)
    return sh.mark_done(out, {"nodes": len(nodes), "roots": int(np.count_nonzero(nodes == roots))})


def cc_union_find(plan: Plan, _j: int = 0) -> dict[str, Any]:
    """The fast path: every verified edge into one process, union-find, (node, root) by bucket."""
    out = plan.path("cc-final", 0)
    done = sh.is_done(out)
    if done is not None:
        return done
    t = sh.read_all(plan.paths("cc-000", plan.partitions), EDGE_SCHEMA)
    u, v = _col(t, "u"), _col(t, "v")
    half = u < v  # each edge is stored in both directions
    nodes, roots = cc.union_find(u[half], v[half])
    res = pa.table([nodes, roots], schema=FINAL_SCHEMA)
    sh.write_partitioned(out, res, shard_bucket(nodes, plan.partitions), plan.partitions)
    return sh.mark_done(out, {"nodes": len(nodes), "roots": int(np.count_nonzero(nodes == roots))})


# ---- 7. attach keep-rule rank ---------------------------------------------------------------

def attach(plan: Plan, g: int, final_files: list[str]) -> dict[str, Any]:
    """Bucket g of (node, root): add each node's rank, id and weight; partition by root."""
    out = plan.path("attach", g)
    done = sh.is_done(out)
    if done is not None:
        return done
    t = sh.read_partition(final_files, g, FINAL_SCHEMA)
    node, root = _col(t, "node"), _col(t, "root")
    info = _lookup(plan, node, ["rank", "id", "weight"])
    res = pa.table([root, node, info["rank"].astype(np.uint64), pa.array(info["id"].tolist(), pa.string()),
                    info["weight"].astype(np.int64)], schema=ATTACH_SCHEMA)
    sh.write_partitioned(out, res, cc.hash_partition(root, plan.partitions), plan.partitions)
    return sh.mark_done(out, {})


# ---- 8. elect ---------------------------------------------------------------------------------

def elect(plan: Plan, j: int) -> dict[str, Any]:
    """Per component in partition j: the keeper (first in keep-rule order) and the size (sum of
    weights: exact copies folded into a representative count too)."""
    out = plan.path("elect", j)
    done = sh.is_done(out)
    if done is not None:
        return done
    t = sh.read_partition(plan.paths("attach", plan.partitions), j, ATTACH_SCHEMA)
    t = t.sort_by([("root", "ascending"), ("rank", "ascending"), ("id", "ascending"), ("node", "ascending")])
    root, node, weight = _col(t, "root"), _col(t, "node"), _col(t, "weight")
    n = len(node)
    if n:
        first = np.ones(n, bool)
        first[1:] = root[1:] != root[:-1]
        starts = np.flatnonzero(first)
        gid = np.cumsum(first) - 1
        keeper = node[starts][gid]
        size = np.add.reduceat(weight, starts)[gid]
        new = (node >> 32) >= plan.shard_offset
        node, keeper, size = node[new], keeper[new], size[new]
        clusters = len(starts)
    else:
        node = keeper = size = np.zeros(0, np.int64)
        clusters = 0
    res = pa.table([node, keeper, size.astype(np.int64)], schema=ELECT_SCHEMA)
    sh.write_partitioned(out, res, shard_bucket(node, plan.partitions), plan.partitions)
    return sh.mark_done(out, {"clusters": clusters})


# ---- 9. decide + commit ---------------------------------------------------------------------------

KEEP, REJECT_EXACT, REJECT_MINHASH = 0, 1, 2


def decide(plan: Plan, i: int) -> dict[str, np.ndarray]:
    """Per row of input shard i: decision (KEEP / REJECT_*), cluster size, and the sig-file columns."""
    g = plan.gshard(i)
    sig = load_sig_file(plan.path("sig", i))
    keys = _col(sig, "key")
    status = _col(sig, "status")
    weight = _col(sig, "weight").astype(np.int64)
    n = len(keys)
    decision = np.full(n, KEEP, np.int8)
    decision[status == STATUS_EXACT_DUP] = REJECT_EXACT
    size = weight.copy()
    in_cluster = np.zeros(n, bool)
    original = np.full(n, -1, np.int64)   # the key of the document a removed one duplicates
    el = _rows_of_shard(sh.read_partition(plan.paths("elect", plan.partitions), g % plan.partitions, ELECT_SCHEMA),
                        "node", g)
    if el.num_rows:
        rows = (_col(el, "node") & ROW_MASK).astype(np.int64)
        keeper = _col(el, "keeper")
        size[rows] = _col(el, "size")
        in_cluster[rows] = True
        lost = keeper != _col(el, "node")
        decision[rows[lost]] = REJECT_MINHASH
        original[rows[lost]] = keeper[lost]
    if plan.exact and np.any(decision == REJECT_EXACT):
        ex = _rows_of_shard(sh.read_partition(plan.paths("exact_reduce", plan.partitions), g % plan.partitions,
                                              EXACT_OUT_SCHEMA), "key", g)
        ex_rows = (_col(ex, "key") & ROW_MASK).astype(np.int64)
        dup = decision[ex_rows] == REJECT_EXACT
        original[ex_rows[dup]] = _col(ex, "rep")[dup]
    return {"decision": decision, "size": size, "in_cluster": in_cluster, "status": status,
            "ntok": _col(sig, "ntok"), "keys": keys, "original": original}


#: The dump of a document kept by an earlier run (dedup against an index).
INDEX_DUMP = "(index)"
#: Per worker process: the `dump` column of input shards looked up for keepers (bounded).
_DUMP_COLUMNS: dict[str, pa.Array] = {}
_DUMP_COLUMNS_MAX = 64


def _dump_column(path: str) -> pa.Array | None:
    """The `dump` column of an input shard (read alone, dictionary-encoded: a few KB for a
    shard of one dump), cached per worker; None when the shard has no `dump` column."""
    if path not in _DUMP_COLUMNS:
        if "dump" not in store.parquet_columns(path):
            return None
        if len(_DUMP_COLUMNS) >= _DUMP_COLUMNS_MAX:
            _DUMP_COLUMNS.pop(next(iter(_DUMP_COLUMNS)))
        col = store.read_parquet(path, columns=["dump"], read_dictionary=["dump"]).column("dump")
        _DUMP_COLUMNS[path] = col.combine_chunks()
    return _DUMP_COLUMNS[path]


def dump_overlap(plan: Plan, i: int, dumps: pa.ChunkedArray | pa.Array, removed: np.ndarray, reasons: np.ndarray,
                 original: np.ndarray) -> dict[str, Any]:
    """Shard i's part of the dump × dump duplicate overlap, for its commit record's stats.

    `removed` are the rows of input shard i that dedup removed, `reasons` their reasons and
    `original` the key of the document each duplicates: its exact-duplicate group's
    representative or its near-duplicate cluster's keeper. Returns ``{"counts": {"dump_rejected":
    {dump: {reason: n}}, "dump_overlap": {removed doc's dump: {original's dump: n}}}}`` — counters
    that add up over shards, so stats.json holds the whole run's matrix without a second pass.
    The original's dump is read from its input shard's `dump` column (this shard's rows at hand,
    others by one cached column read per shard); an original kept by an earlier run is
    `INDEX_DUMP`. DeepSeek LLM's Table 1 curve is a cumulative sum of this matrix
    (`pipeline.stats.cross_dump_curve`)."""
    own = dumps.take(pa.array(removed)).cast(pa.string()).to_pylist() if len(removed) else []
    orig_dump: list[str | None] = [None] * len(removed)
    gshard = original >> 32
    rows = original & ROW_MASK
    for gs in np.unique(gshard).tolist():
        sel = np.flatnonzero(gshard == gs)
        if gs < 0:
            continue
        if gs < plan.shard_offset:
            vals = [INDEX_DUMP] * len(sel)
        else:
            s = gs - plan.shard_offset
            col = dumps if s == i else _dump_column(plan.inputs[s])
            if col is None:
                vals = [None] * len(sel)
            else:
                vals = col.take(pa.array(rows[sel])).cast(pa.string()).to_pylist()
        for k, v in zip(sel.tolist(), vals):
            orig_dump[k] = v
    by_reason: dict[str, dict[str, int]] = {}
    overlap: dict[str, dict[str, int]] = {}
    for d, r, o in zip(own, reasons.tolist(), orig_dump):
        d = d or ""
        by_reason.setdefault(d, {})[r] = by_reason.get(d, {}).get(r, 0) + 1
        o = "" if o is None else o
        overlap.setdefault(d, {})[o] = overlap.get(d, {}).get(o, 0) + 1
    return {"counts": {"dump_rejected": by_reason, "dump_overlap": overlap}}


def commit(plan: Plan, i: int, out_dir: str, name: str, config_hash: str, fingerprint: str,
           extra_counters: dict[str, int]) -> dict[str, Any]:
    """Write output shard i: kept rows with dup_cluster / dup_cluster_size, rejected rows with
    reasons, into the stage directory `out_dir` (local, or an object-store URL: `store.commit_shard`)."""
    d = decide(plan, i)
    table = store.read_parquet(plan.inputs[i])
    n = table.num_rows
    if n != len(d["decision"]):
        raise RuntimeError(f"shard {i}: input has {n} rows, signatures {len(d['decision'])}")
    decision, size = d["decision"], d["size"]
    keep = decision == KEEP
    for c in ("dup_cluster", "dup_cluster_size"):
        if c in table.column_names:
            table = table.drop_columns([c])
    ids = table.column("id")
    cluster = pc.if_else(pa.array(size > 1), ids, pa.scalar(None, pa.string()))
    kept = table.append_column("dup_cluster", cluster.cast(pa.string())).append_column(
        "dup_cluster_size", pa.array(size, pa.int64()))
    kept = kept.filter(pa.array(keep))
    rej_idx = pa.array(np.flatnonzero(~keep))
    reasons = np.where(decision[~keep] == REJECT_EXACT, "dedup:exact_dup", "dedup:minhash_dup")
    url = table.column("url").take(rej_idx) if "url" in table.column_names else pa.nulls(len(rej_idx), pa.string())
    cols = [ids.take(rej_idx).cast(pa.string()), url.cast(pa.string()), pa.array(reasons.tolist(), pa.string())]
    schema = shard_io.REJECTED_SCHEMA
    if plan.keep_rejected_text:
        schema = shard_io.REJECTED_SCHEMA_WITH_TEXT
        cols.append(table.column("text").take(rej_idx).cast(pa.string()))
    rejected = pa.table(cols, schema=schema)
    stats = None
    if "dump" in table.column_names:
        try:   # statistics never fail a shard (as in `stats.record_stats`)
            stats = dump_overlap(plan, i, table.column("dump"), np.flatnonzero(~keep), reasons, d["original"][~keep])
        except Exception as exc:  # noqa: BLE001 - said in the log; stats.json then lacks the matrix
            import logging

            logging.getLogger("winnow").warning("dedup: dump overlap of shard %s failed: %s: %s", name,
                                                type(exc).__name__, exc)
    counters = {
        "exact_dup": int(np.count_nonzero(decision == REJECT_EXACT)),
        "minhash_dup": int(np.count_nonzero(decision == REJECT_MINHASH)),
        "kept_with_duplicates": int(np.count_nonzero(keep & (size > 1))),
        "no_words": int(np.count_nonzero(d["status"] == STATUS_NO_WORDS)),
        "short_docs": int(np.count_nonzero((d["ntok"] > 0) & (d["ntok"] < plan.ngram))),
    }
    sig_done = sh.is_done(plan.path("bands", i)) or {}
    counters["invalid_utf8"] = int(sig_done.get("invalid_utf8", 0))
    counters.update(extra_counters)
    return store.commit_shard(out_dir, name, kept=kept, rejected=rejected, input_rows=n,
                                 config_hash=config_hash, fingerprint=fingerprint, counters=counters, stats=stats)
