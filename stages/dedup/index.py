"""The incremental dedup index: what lets ``winnow dedup --in NEWDUMP --index IDX`` deduplicate a
new dump against every document already indexed without recomputing an old signature.

Layout::

    IDX/index.json                       parameters, partitions, segments, next global shard
    IDX/seg-000000-<run>/sig/part-*.arrow the kept documents' signatures, ranks, ids (row-aligned,
                                         one file per input shard of the run that added them)
    IDX/seg-000000-<run>/bands/p-*.arrow  their LSH band keys, one file per partition
    IDX/seg-000000-<run>/exact/p-*.arrow  their content hashes, one file per partition
    IDX/seg-000000-<run>/p-<P>/{bands,exact}/p-*.arrow   the same after ``winnow dedup index reshard``

A run's reduce j reads ``p-j`` of every segment (one file per segment, however many shards the
segment came from), so the old documents join the buckets of the new ones; old documents always win
the keep rule, and pairs of two old documents are never re-emitted. After the run commits its
shards, the documents it kept become a new segment: per shard (signatures, partitioned keys), then
per partition (compacted into ``p-j``), then renamed into place and listed in index.json — each
step atomic, so a killed run redoes only what is missing.

Only *kept* documents are indexed (the index is the set of published documents); a new document
that is a near-duplicate only of an already-removed old document is therefore not caught, which
is the price of an index 10× smaller at DeepSeek's 89.8% removal rate. One writer at a time.

On object storage (IDX an ``s3://…`` URL) there is no rename: a run builds its segment directly
under its final name ``seg-<offset>-<run>``, and the segment exists for readers only once
index.json lists it (index.json is the commit record, written last, one PUT). A segment folder
that index.json does not list is an interrupted run's, which a rerun of that run completes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from winnow.stages.dedup import minhash as mh
from winnow.stages.dedup import normalize as nz
from winnow.stages.dedup import phases as ph
from winnow.stages.dedup import shuffle as sh
from winnow.stages.dedup import store

INDEX_FILE = "index.json"
FORMAT = 1


class IndexMismatch(ValueError):
    """The index was built with other MinHash parameters; its band keys would never match."""


def index_params(plan_like: Any) -> dict[str, Any]:
    """The parameters an index and a run must share for their keys to be comparable."""
    return {"num_perm": plan_like.num_perm, "num_bands": plan_like.num_bands,
            "rows_per_band": plan_like.rows_per_band, "ngram": plan_like.ngram, "seed": plan_like.seed,
            "cjk": plan_like.cjk, "scope": plan_like.scope, "table_version": nz.TABLE_VERSION,
            "hash": "xxh3+fmix64/affine32"}


def load_index(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """index.json of an index directory (or object-store prefix), or None for a new (absent or
    empty) index."""
    raw = store.read_bytes(store.join(path, INDEX_FILE))
    if raw is None:
        return None
    meta = json.loads(raw)
    if meta.get("format") != FORMAT:
        raise IndexMismatch(f"{path}: index format {meta.get('format')}, this winnow writes {FORMAT}")
    return meta


def check_params(meta: dict[str, Any], params: dict[str, Any], path: str) -> None:
    if meta["params"] != params:
        diff = {k: (meta["params"].get(k), v) for k, v in params.items() if meta["params"].get(k) != v}
        raise IndexMismatch(f"{path}: built with other dedup parameters (index, run): {diff}")


def base_segments(meta: dict[str, Any] | None, index_dir: str, run_id: str) -> tuple[list[ph.Segment], int]:
    """The segments a run deduplicates against (not its own, if a killed run already added it)
    and the first global shard free for the run's inputs."""
    if meta is None:
        return [], 0
    segs = [s for s in meta["segments"] if s["run_id"] != run_id]
    out = [ph.Segment(name=s["name"], path=str(store.join(index_dir, s["name"])), shard_offset=s["shard_offset"],
                      num_shards=s["num_shards"], keys_dir=s.get("keys_dir", "")) for s in segs]
    nxt = max((s.shard_offset + s.num_shards for s in out), default=0)
    return out, nxt


def building_dir(index_dir: str, run_id: str) -> Path:
    return Path(index_dir) / f"_building-{run_id}"


def _build_root(plan: ph.Plan, index_dir: str, run_id: str) -> Any:
    """Where a run builds its segment: `_building-<run>` (renamed into place at the end) in a
    local index; the segment's final folder in an object-store index (no rename there: the
    index.json listing is the commit)."""
    if store.is_remote(index_dir):
        return store.join(index_dir, segment_name(plan.shard_offset, run_id))
    return building_dir(index_dir, run_id)


def segment_name(shard_offset: int, run_id: str) -> str:
    return f"seg-{shard_offset:06d}-{run_id[:8]}"


def build_segment_shard(plan: ph.Plan, i: int, index_dir: str, run_id: str) -> dict[str, Any]:
    """Add input shard i's kept documents to the segment being built: signatures (no text is read),
    band keys and content hashes, renumbered to the kept rows and marked as old."""
    root = _build_root(plan, index_dir, run_id)
    out_sig = store.join(root, "sig", f"part-{i:05d}.arrow")
    out_bands = store.join(root, "bands", f"part-{i:05d}.arrow")
    out_exact = store.join(root, "exact", f"part-{i:05d}.arrow")
    done = sh.is_done(out_exact)
    if done is not None:
        return done
    d = ph.decide(plan, i)
    sig = ph.load_sig_file(plan.path("sig", i))
    keep = np.flatnonzero(d["decision"] == ph.KEEP)
    t = sig.take(pa.array(keep))
    g = plan.gshard(i)
    keys = (np.int64(g) << np.int64(32)) | np.arange(len(keep), dtype=np.int64)
    prio = ph._col(t, "prio") & ~ph.NEW_FLAG
    rank = ph._col(t, "rank") & np.uint64(0xFFFFFFFF)
    status = ph._col(t, "status")
    t = t.set_column(t.schema.get_field_index("key"), "key", pa.array(keys, pa.int64()))
    t = t.set_column(t.schema.get_field_index("prio"), "prio", pa.array(prio, pa.uint64()))
    t = t.set_column(t.schema.get_field_index("rank"), "rank", pa.array(rank, pa.uint64()))
    sh.write_table(out_sig, t)
    signed = np.flatnonzero(status == ph.STATUS_SIGNED)
    sigm = ph._sig_matrix(t, plan.num_perm)[signed]
    salt = ph._col(t, "salt")[signed]
    bh = mh.band_hashes(sigm, plan.num_bands, plan.rows_per_band, salt)
    bands = pa.table([bh.reshape(-1), np.repeat(keys[signed], plan.num_bands),
                      np.repeat(prio[signed], plan.num_bands)], schema=ph.BAND_SCHEMA)
    sh.write_partitioned(out_bands, bands, (ph._col(bands, "band") % np.uint64(plan.partitions)).astype(np.int64),
                         plan.partitions)
    ex = pa.table([ph._col(t, "h1"), ph._col(t, "h2"), keys, rank, t.column("id")], schema=ph.EXACT_MAP_SCHEMA)
    sh.write_partitioned(out_exact, ex, (ph._col(ex, "h1") % np.uint64(plan.partitions)).astype(np.int64),
                         plan.partitions)
    return sh.mark_done(out_exact, {"indexed_docs": len(keep)}, shuffles=[out_bands, out_exact])


def compact_segment_partition(plan: ph.Plan, j: int, index_dir: str, run_id: str) -> dict[str, Any]:
    """Partition j of the segment being built: the per-shard band and content-hash files merged
    into one file each, so later runs read one file per segment and partition."""
    root = _build_root(plan, index_dir, run_id)
    out = {}
    for kind, schema in (("bands", ph.BAND_SCHEMA), ("exact", ph.EXACT_MAP_SCHEMA)):
        dest = store.join(root, kind, f"p-{j:05d}.arrow")
        if sh.is_done(dest) is None:
            parts = [store.join(root, kind, f"part-{i:05d}.arrow") for i in range(plan.num_shards)]
            sh.write_table(dest, sh.read_partition(parts, j, schema))
            sh.mark_done(dest, {})
        out[kind] = str(dest)
    return out


def finish_segment(plan: ph.Plan, index_dir: str, run_id: str, inputs: list[str], docs: int) -> dict[str, Any]:
    """Drop the per-shard key files, rename the built segment into place (a local index; on
    object storage it was built in place) and list it in index.json (the commit point)."""
    index_dir = str(index_dir)
    meta = load_index(index_dir) or {"format": FORMAT, "params": index_params(plan), "partitions": plan.partitions,
                                     "segments": []}
    if any(s["run_id"] == run_id for s in meta["segments"]):
        return meta
    name = segment_name(plan.shard_offset, run_id)
    if store.is_remote(index_dir):
        root = _build_root(plan, index_dir, run_id)
        if not store.is_dir(store.join(root, "sig")):
            raise FileNotFoundError(f"{root}: segment was not built")
        store.remove_files([store.join(root, kind, n) for kind in ("bands", "exact")
                            for n in store.list_names(store.join(root, kind))
                            if n.startswith("part-") or n == sh.DIRECTORY])
        return _list_segment(plan, index_dir, run_id, inputs, docs, meta, name)
    final = Path(index_dir) / name
    src = building_dir(index_dir, run_id)
    if src.exists():
        for kind in ("bands", "exact"):
            for f in [*(src / kind).glob("part-*"), src / kind / sh.DIRECTORY]:
                f.unlink(missing_ok=True)
        if final.exists():
            shutil.rmtree(final)
        os.replace(src, final)
    elif not final.exists():
        raise FileNotFoundError(f"{src}: segment was not built")
    return _list_segment(plan, index_dir, run_id, inputs, docs, meta, name)


def _list_segment(plan: ph.Plan, index_dir: str, run_id: str, inputs: list[str], docs: int,
                  meta: dict[str, Any], name: str) -> dict[str, Any]:
    """Add the finished segment to index.json and write it: the commit point."""
    meta["segments"].append({"name": name, "run_id": run_id, "shard_offset": plan.shard_offset,
                             "num_shards": plan.num_shards, "docs": docs, "inputs": inputs})
    meta["next_shard"] = plan.shard_offset + plan.num_shards
    meta["docs"] = sum(s["docs"] for s in meta["segments"])
    store.write_json(store.join(index_dir, INDEX_FILE), meta)
    return meta


# ---- resharding -----------------------------------------------------------------------------------

def _segment_keys_dir(index_dir: str, seg: dict[str, Any]) -> Any:
    return store.join(index_dir, seg["name"], seg.get("keys_dir", ""))


def reshard_partition(index_dir: str, seg: dict[str, Any], old_parts: int, new_parts: int, j: int) -> dict[str, int]:
    """New partition j of one segment's band and content-hash files, from the old files that can
    hold its rows: with power-of-two counts, key mod new is key mod old refined (growing reads the
    one old file j mod old; shrinking reads the old files j, j + new, ...). Resumable per file."""
    src = _segment_keys_dir(index_dir, seg)
    dest = store.join(index_dir, seg["name"], f"p-{new_parts}")
    olds = [j % old_parts] if new_parts >= old_parts else list(range(j, old_parts, new_parts))
    rows = {}
    for kind, schema, col in (("bands", ph.BAND_SCHEMA, "band"), ("exact", ph.EXACT_MAP_SCHEMA, "h1")):
        out = store.join(dest, kind, f"p-{j:05d}.arrow")
        done = sh.is_done(out)
        if done is not None:
            rows[kind] = done["rows"]
            continue
        t = sh.read_all([store.join(src, kind, f"p-{o:05d}.arrow") for o in olds], schema)
        if new_parts > old_parts and t.num_rows:
            t = t.filter(pa.array((ph._col(t, col) % np.uint64(new_parts)).astype(np.int64) == j))
        sh.write_table(out, t)
        sh.mark_done(out, {"rows": t.num_rows})
        rows[kind] = t.num_rows
    return rows


def reshard(index_dir: str | os.PathLike[str], partitions: int,
            map_fn: Any = None) -> dict[str, Any]:
    """Re-partition every segment of an index to `partitions` (a power of two): new key files are
    written beside the old ones (``seg/p-<P>/``), index.json is rewritten to point at them (the one
    commit point: a killed reshard leaves the old layout valid and resumes where it stopped), then
    the old files are removed. `map_fn(fn, arg_list)` runs the per-partition tasks (default: in
    this process, in order). Returns the new index.json."""
    index_dir = str(index_dir)
    if partitions < 1 or partitions & (partitions - 1):
        raise ValueError(f"partitions must be a power of two, not {partitions}")
    meta = load_index(index_dir)
    if meta is None:
        raise FileNotFoundError(f"{index_dir}: no {INDEX_FILE}: not a dedup index")
    old_parts = int(meta["partitions"])
    listed = {seg["name"] for seg in meta["segments"]}
    pending = [n for n in store.list_names(index_dir)
               if n.startswith("_building-") or (store.is_remote(index_dir) and n.startswith("seg-") and n not in listed)]
    if pending:
        raise ValueError(f"{index_dir}: a dedup run adding to this index was interrupted ({pending[0]}); "
                         "rerun it to completion before resharding")
    for seg in meta["segments"]:
        if not store.is_dir(store.join(index_dir, seg["name"])):
            raise FileNotFoundError(f"{index_dir}: segment {seg['name']} listed in {INDEX_FILE} is missing")
    if old_parts != partitions:
        run = map_fn or (lambda fn, args: [fn(*a) for a in args])
        for seg in meta["segments"]:
            run(reshard_partition, [(index_dir, seg, old_parts, partitions, j) for j in range(partitions)])
        old_dirs = {seg["name"]: _segment_keys_dir(index_dir, seg) for seg in meta["segments"]}
        meta = {**meta, "partitions": partitions,
                "segments": [{**seg, "keys_dir": f"p-{partitions}"} for seg in meta["segments"]]}
        store.write_json(store.join(index_dir, INDEX_FILE), meta)  # the commit point
        for name, old in old_dirs.items():
            for kind in ("bands", "exact"):
                store.remove_tree(store.join(old, kind))
            if str(old) != str(store.join(index_dir, name)):
                store.remove_tree(old)
    # files of an earlier, killed reshard to another count
    for seg in meta["segments"]:
        root = store.join(index_dir, seg["name"])
        for n in store.list_names(root):
            if n.startswith("p-") and n != seg.get("keys_dir", "") and store.is_dir(store.join(root, n)):
                store.remove_tree(store.join(root, n))
        if seg.get("keys_dir"):
            for kind in ("bands", "exact"):
                store.remove_tree(store.join(root, kind))
    return meta


def index_main(argv: list[str]) -> int:
    """``winnow dedup index reshard IDX --partitions N``: grow (or shrink) a dedup index's
    partition count, fixed at its first run, so later runs over bigger inputs keep partitions of
    a bounded size. ``winnow dedup index show IDX`` prints its segments and partitions."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="winnow dedup index", description=index_main.__doc__)
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("reshard", help="re-partition every segment of the index")
    p.add_argument("index", metavar="IDX", help="index directory (holds index.json)")
    p.add_argument("--partitions", type=int, required=True, help="new partition count (a power of two)")
    p = sub.add_parser("show", help="print the index's partitions and segments")
    p.add_argument("index", metavar="IDX")
    args = ap.parse_args(argv)
    try:
        if args.verb == "show":
            meta = load_index(args.index)
            if meta is None:
                raise FileNotFoundError(f"{args.index}: no {INDEX_FILE}: not a dedup index")
        else:
            before = (load_index(args.index) or {}).get("partitions")
            meta = reshard(args.index, args.partitions)
            print(f"{args.index}: partitions {before} -> {meta['partitions']}")
    except (OSError, ValueError) as e:
        print(f"winnow dedup index: error: {e}")
        return 2
    print(json.dumps({"partitions": meta["partitions"], "docs": meta.get("docs", 0),
                      "segments": [{k: s.get(k) for k in ("name", "docs", "num_shards", "keys_dir")}
                                   for s in meta["segments"]]}, indent=1))
    return 0
