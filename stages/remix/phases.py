"""The remix phases, each a module-level function the stage maps over shards or partitions with
`runtime.map_tasks`. They talk only through files under `OUT/_work/<key>/`:

1. `label_shard` (per input shard): the shard with its labels, group, units and selection key →
   `labels/part-i.arrow` (uncompressed, memory-mapped later); returns the small per-document
   arrays (group, key, units) the driver's solver needs.
2. (driver) solve the mixture, turn it into one `CopyRule` per group, count the partitions.
3. `scatter_shard` (per input shard): the copies of each sampled document — (shard, row,
   `repeat`, shuffle key from (seed, id, repeat)) — range-partitioned into small index pieces
   `parts/p-j/in-i.arrow`; documents not sampled go to `parts/p-j/rej-i.arrow`, partitioned by
   their repeat-0 key.
4. `gather_partition` (per partition): sort its index by shuffle key, take those rows once from
   the memory-mapped label files, write output shard j (`data/part-j.arrow`) and its record.

The text is decoded once (phase 1), written once to the work file and once, shuffled, to the
output: two passes over the data. Memory per task: one input shard, or one output partition
(≈ `shard_bytes`) plus the pages of the label files it touches; never the dataset.

On object storage (`Plan.work` an `s3://…` URL, the output a URL; see docs/object-storage.md)
nothing is memory-mapped and no disk is shared: the work files are objects under
`OUT/_work/<key>/`, and the scatter phase writes the sampled rows themselves (all columns, each
copy) into the partition pieces, so a gather task downloads only its own pieces, never every
label file (three passes over the data instead of two, but O(data) traffic instead of
O(partitions × data)). The output rows, their order and so the shard bytes are the same as the
local layout's: the gather sorts by the same (shuffle key, shard, row, repeat) key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from winnow.pipeline import shards as shard_io
from winnow.stages.remix import labels as lab
from winnow.stages.remix.sample import CopyRule, partition_of, selection_keys, shuffle_keys

#: columns the phases add for themselves and drop before the output
WORK_COLUMNS = ("_group", "_units", "_bytes", "_tokens", "_skey", "_row", "_lang", "_shuffle")
REASON_NOT_SAMPLED = "remix:not_sampled"


@dataclass(frozen=True)
class Plan:
    """What every task needs to know; shared once through `runtime.put`."""

    work: str
    inputs: tuple[str, ...]
    seed: int
    by_lang: bool
    taxonomy: str | None
    classifier: str | None
    classifier_chars: int
    classifier_min_prob: float
    tokenizer: str | None
    units: str                       # "bytes" or "tokens" (counted with the tokenizer)
    #: only on object storage: rejected pieces carry their text (`keep_rejected_text`)
    with_text: bool = False

    @property
    def remote(self) -> bool:
        """The work files are objects (an object-store URL), not local files."""
        return shard_io.is_url(self.work)


@dataclass(frozen=True)
class Decisions:
    """The driver's sampling decisions, shared with the scatter and gather tasks."""

    rules: dict[str, CopyRule]
    partitions: int
    schema: pa.Schema
    groups: tuple[str, ...] = field(default_factory=tuple)


def write_work(table: pa.Table, path: Path | str) -> None:
    """A work file: written to a temp name and renamed, not fsynced. Work files live only for
    one `execute` (a rerun redoes the phases; only committed output shards are resumed), so a
    machine crash cannot leave a torn one that is trusted later; the output shards are fsynced.
    An object-store URL: the file is built in memory and PUT as one object (atomic, retried)."""
    if isinstance(path, str):
        from winnow.stages import remote_io

        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=8192)
        remote_io.put_bytes(path, sink.getvalue().to_pybytes())
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=8192)
    os.replace(tmp, path)


def labelled_path(plan: Plan, i: int) -> Path | str:
    """Shard i with its label and work columns (row-aligned with input shard i); a URL (str) on
    object storage."""
    return shard_io.stage_file(plan.work, "labels", f"part-{i:05d}.arrow")


def part_dir(plan: Plan, j: int) -> Path | str:
    return shard_io.stage_file(plan.work, "parts", f"p-{j:05d}")


def _work_exists(path: Path | str) -> bool:
    if isinstance(path, str):
        from winnow.stages import remote_io

        fs, p = remote_io.url_fs(path)
        fs.invalidate_cache()
        return bool(remote_io.with_retries(lambda: fs.exists(p), path))
    return path.exists()


def _pieces(d: Path | str, prefix: str) -> list[Path | str]:
    """The work pieces `prefix-*.arrow` of a partition directory, sorted by name."""
    if isinstance(d, str):
        from winnow.stages import remote_io

        return [f"{d}/{rel}" for rel in sorted(remote_io.list_files(d))
                if "/" not in rel and rel.startswith(f"{prefix}-") and rel.endswith(".arrow")]
    return sorted(d.glob(f"{prefix}-*.arrow")) if d.exists() else []


def group_column(domains: pa.ChunkedArray, langs: pa.ChunkedArray, by_lang: bool) -> pa.ChunkedArray:
    """Each document's mixture group: its domain, or `lang/domain` (a missing or empty lang is
    `und`) when the mixture is keyed by language."""
    domains = domains.cast(pa.string())
    if not by_lang:
        return domains
    lang = pc.fill_null(langs.cast(pa.string()), "")
    lang = pc.if_else(pc.equal(lang, ""), "und", lang)
    return pc.binary_join_element_wise(lang, domains, "/")


_TOKENIZERS: dict[str, Any] = {}


def _count_tokens(path: str, texts: list[str]) -> np.ndarray:
    from tokenizers import Tokenizer

    if path not in _TOKENIZERS:
        _TOKENIZERS[path] = Tokenizer.from_file(path)
    enc = _TOKENIZERS[path].encode_batch(texts, add_special_tokens=False)
    return np.fromiter((len(e.ids) for e in enc), dtype=np.int64, count=len(texts))


# --- phase 1 ---------------------------------------------------------------------------------
def _input_schema(path: str) -> pa.Schema:
    if path.endswith(".arrow"):
        with pa.memory_map(path, "r") as src:
            return pa.ipc.open_file(src).schema
    import pyarrow.parquet as pq

    return pq.read_schema(path)


def label_shard(plan: Plan, i: int) -> dict[str, Any]:
    """Label input shard i and write it whole, with its label and work columns, as an Arrow work
    file (`labels/part-i.arrow`, memory-mapped by the later phases: the input's compression is
    paid once); return its per-document arrays."""
    path = labelled_path(plan, i)
    if _work_exists(path):   # a retried task whose first attempt finished the file
        table = shard_io.read_shard(path)
    else:
        src = shard_io.read_shard(plan.inputs[i])
        if "repeat" in src.column_names:   # a remixed input: this run's repeat index replaces it
            src = src.drop_columns(["repeat"])
        table = lab.attach(src, lab.label_arrays(src, taxonomy=plan.taxonomy, classifier=plan.classifier,
                                                 classifier_chars=plan.classifier_chars,
                                                 min_prob=plan.classifier_min_prob))
        langs = (src.column("lang").cast(pa.string()) if "lang" in src.column_names
                 else pa.nulls(src.num_rows, pa.string()))
        groups = group_column(table.column("domain"), langs, plan.by_lang)
        nbytes = pc.fill_null(pc.binary_length(pc.cast(src.column("text"), pa.binary())), 0)
        nbytes = pa.array(nbytes.to_numpy(zero_copy_only=False).astype(np.int64))
        if plan.tokenizer:
            tokens = pa.array(_count_tokens(plan.tokenizer, [t or "" for t in src.column("text").to_pylist()]))
        else:
            tokens = pa.nulls(src.num_rows, pa.int64())
        units = tokens if plan.units == "tokens" else nbytes
        table = (table.append_column("_group", groups)
                 .append_column("_bytes", nbytes).append_column("_tokens", tokens).append_column("_units", units)
                 .append_column("_skey", pa.array(selection_keys(plan.seed, src.column("id").to_pylist()), pa.uint64()))
                 .append_column("_row", pa.array(np.arange(src.num_rows, dtype=np.int64)))
                 .append_column("_lang", langs))
        write_work(table, path)
    groups = table.column("_group")
    enc = pc.dictionary_encode(groups).combine_chunks()
    return {
        "vocab": enc.dictionary.to_pylist(),
        "codes": enc.indices.to_numpy(zero_copy_only=False).astype(np.int32),
        "keys": table.column("_skey").to_numpy(),
        "units": table.column("_units").to_numpy().astype(np.int64),
        "bytes": table.column("_bytes").to_numpy().astype(np.int64),
        "schema": table.schema,
        "rows": table.num_rows,
        "labels": _label_counts(table),
    }


def _label_counts(table: pa.Table) -> dict[str, int]:
    """Per (domain_source, lang, domain) document counts, for the report."""
    g = table.select(["domain_source", "_lang", "domain"]).group_by(["domain_source", "_lang", "domain"]).aggregate(
        [([], "count_all")])
    out: dict[str, int] = {}
    for s, l, d, n in zip(*(g.column(c).to_pylist() for c in ("domain_source", "_lang", "domain", "count_all"))):
        k = f"{s}\t{l or 'und'}\t{d}"
        out[k] = out.get(k, 0) + n
    return out


# --- phase 3 ---------------------------------------------------------------------------------
def scatter_shard(plan: Plan, decisions: Decisions, i: int) -> dict[str, int]:
    """Which copies of shard i's documents go out, with their shuffle keys, range-partitioned:
    small index pieces `parts/p-j/in-i.arrow` (source shard, row, repeat, key) — the documents
    themselves stay in the memory-mapped label file until the gather phase takes them once.
    Not-sampled documents (as rejected rows) are partitioned by their repeat-0 key."""
    full = shard_io.read_shard(labelled_path(plan, i)) if plan.remote else None
    table = (full.select(["id", "url", "_group", "_skey", "_row"]) if full is not None
             else shard_io.read_shard(labelled_path(plan, i), ["id", "url", "_group", "_skey", "_row"]))
    rows_of = _align(full, decisions.schema) if full is not None else None
    P = decisions.partitions
    enc = pc.dictionary_encode(table.column("_group")).combine_chunks()
    codes = enc.indices.to_numpy(zero_copy_only=False)
    keys = table.column("_skey").to_numpy()
    rows = table.column("_row").to_numpy()
    copies = np.zeros(table.num_rows, dtype=np.int64)
    for c, g in enumerate(enc.dictionary.to_pylist()):
        rule = decisions.rules.get(g)
        if rule is None:
            continue
        ix = np.flatnonzero(codes == c)
        copies[ix] = rule.copies(keys[ix], i, rows[ix])
    ids = table.column("id").to_pylist()
    doc_idx = np.repeat(np.arange(table.num_rows, dtype=np.int64), copies)
    starts = np.repeat(np.cumsum(copies) - copies, copies)
    repeat = (np.arange(len(doc_idx), dtype=np.int64) - starts).astype(np.int32)
    skeys = shuffle_keys(plan.seed, (ids[k] for k in doc_idx), repeat.tolist())
    part = partition_of(skeys, P) if len(skeys) else np.zeros(0, dtype=np.int64)
    not_sampled = np.flatnonzero(copies == 0)
    rej_keys = shuffle_keys(plan.seed, (ids[k] for k in not_sampled), [0] * len(not_sampled))
    rej_part = partition_of(rej_keys, P) if len(rej_keys) else np.zeros(0, dtype=np.int64)
    urls = table.column("url").to_pylist()
    for j in np.unique(part):
        sel = np.flatnonzero(part == j)
        piece = pa.table({"_src": pa.array(np.full(len(sel), i, dtype=np.int32)),
                          "_idx": pa.array(doc_idx[sel]), "repeat": pa.array(repeat[sel], pa.int32()),
                          "_shuffle": pa.array(skeys[sel], pa.uint64())})
        if rows_of is not None:   # object storage: the rows themselves travel with their index
            rows = rows_of.take(pa.array(doc_idx[sel]))
            for f in piece.schema:
                rows = rows.append_column(f"_piece{f.name}", piece.column(f.name))
            piece = rows
        write_work(piece, _join(part_dir(plan, int(j)), f"in-{i:05d}.arrow"))
    for j in np.unique(rej_part):
        sel = not_sampled[rej_part == j]
        rej = pa.table({"id": pa.array([ids[k] for k in sel], pa.string()),
                        "url": pa.array([urls[k] for k in sel], pa.string()),
                        "reason": pa.array([REASON_NOT_SAMPLED] * len(sel), pa.string()),
                        "_shuffle": pa.array(rej_keys[rej_part == j], pa.uint64())})
        if full is not None and plan.with_text:   # object storage: no label file lookups later
            rej = rej.append_column("text", full.column("text").take(pa.array(sel)).cast(pa.string()))
        write_work(rej, _join(part_dir(plan, int(j)), f"rej-{i:05d}.arrow"))
    return {"sampled_docs": int((copies > 0).sum()), "rows": int(len(doc_idx)), "not_sampled": int(len(not_sampled))}


def _join(d: Path | str, name: str) -> Path | str:
    return f"{d}/{name}" if isinstance(d, str) else d / name


# --- phase 4 ---------------------------------------------------------------------------------
def gather_partition(plan: Plan, decisions: Decisions, j: int, out_dir: str, name: str, config_hash: str,
                     fingerprint: str, with_text: bool) -> dict[str, Any]:
    """Sort partition j's index by shuffle key, take its rows once from the memory-mapped label
    files, and commit them as output shard `name`."""
    d = part_dir(plan, j)
    pieces = _pieces(d, "in")
    rej_pieces = _pieces(d, "rej")
    out_schema = _output_schema(decisions.schema)
    if pieces:
        index = pa.concat_tables([shard_io.read_shard(p) for p in pieces])
        pre = "_piece" if plan.remote else ""
        src = index.column(f"{pre}_src").to_numpy()
        idx = index.column(f"{pre}_idx").to_numpy()
        rep = index.column(f"{pre}repeat").to_numpy()
        order = np.lexsort((rep, idx, src, index.column(f"{pre}_shuffle").to_numpy()))
        if plan.remote:   # the rows came with the pieces: one take, as `_take_in_order` ends
            table = index.select(decisions.schema.names).combine_chunks().take(pa.array(order))
        else:
            table = _take_in_order(plan, decisions.schema, src[order], idx[order])
        repeat = rep[order].astype(np.int32)
        table = table.append_column("repeat", pa.array(repeat, pa.int32()))
    else:
        table = decisions.schema.append(pa.field("repeat", pa.int32())).empty_table()
        repeat = np.zeros(0, np.int32)
    counters: dict[str, int] = {"repeated": int((repeat > 0).sum())}
    if table.num_rows:
        per = table.select(["_group", "_bytes", "_tokens", "repeat"]).append_column(
            "_first", pa.array(repeat == 0)).group_by("_group").aggregate(
            [("_bytes", "sum"), ("_tokens", "sum"), ("_tokens", "count"), ("_group", "count"), ("_first", "sum")])
        for row in per.to_pylist():
            g = row["_group"]
            counters[f"rows:{g}"] = int(row["_group_count"])
            counters[f"bytes:{g}"] = int(row["_bytes_sum"])
            counters[f"docs:{g}"] = int(row["_first_sum"] or 0)
            if row["_tokens_count"]:
                counters[f"tokens:{g}"] = int(row["_tokens_sum"])
        # the second axis: output rows and bytes per language × domain
        by_lang = pa.table({"_k": pc.binary_join_element_wise(pc.fill_null(table.column("_lang"), "und"),
                                                               table.column("domain"), "/"),
                            "_bytes": table.column("_bytes")}).group_by("_k").aggregate([("_bytes", "sum"), ("_k", "count")])
        for row in by_lang.to_pylist():
            counters[f"lang_rows:{row['_k']}"] = int(row["_k_count"])
            counters[f"lang_bytes:{row['_k']}"] = int(row["_bytes_sum"])
    kept = table.select(out_schema.names).cast(out_schema)
    if rej_pieces:
        rej = pa.concat_tables([shard_io.read_shard(p) for p in rej_pieces])
        rej = rej.take(pc.sort_indices(rej, sort_keys=[("_shuffle", "ascending"), ("id", "ascending")]))
        rejected = shard_io.rejected_table(rej.select(["id", "url", "reason"]).to_pylist(), with_text=with_text)
    else:
        rejected = shard_io.empty_rejected(with_text)
    if with_text and rejected.num_rows:
        if plan.remote:   # the pieces carry the text, in the rows' order
            rejected = rejected.set_column(rejected.column_names.index("text"), "text", rej.column("text"))
        else:
            rejected = _attach_rejected_text(plan, rejected)

    def _commit(_task: Any, stage_dir: Path) -> dict[str, Any]:
        return commit_remix_shard(stage_dir, name, kept=kept, rejected=rejected, repeated=counters["repeated"],
                                  config_hash=config_hash, fingerprint=fingerprint, counters=counters)

    if shard_io.is_url(out_dir):   # built in a local temp dir, uploaded: data, rejected, record last
        from winnow.stages import remote_io

        return remote_io.commit_shard_remote(_commit, None, out_dir)
    return _commit(None, Path(out_dir))


def _take_in_order(plan: Plan, schema: pa.Schema, src: np.ndarray, idx: np.ndarray) -> pa.Table:
    """Rows (label file `src[k]`, row `idx[k]`) in the order given, with memory bounded by the
    output: `take` on a chunked table would first concatenate every chunk (here: every label
    file, the whole dataset), so rows are taken per record batch of each memory-mapped file, the
    pieces combined (one copy of the partition) and put in order by one last take. (Measured: a
    one-copy gather of the text by joining per-row slices of the memory-mapped buffers is slower
    than these Arrow takes, 0.148 vs 0.131 CPU-s per 56 MB partition.)"""
    pieces: list[pa.Table] = []
    positions: list[np.ndarray] = []
    for s in np.unique(src).tolist():
        t = _align(shard_io.read_shard(labelled_path(plan, s)), schema)
        at = np.flatnonzero(src == s)            # where these rows go in the output
        rows = idx[at]
        batches = t.to_batches()
        starts = np.cumsum([0] + [b.num_rows for b in batches])
        which = np.searchsorted(starts, rows, side="right") - 1
        for b in np.unique(which).tolist():
            sel = which == b
            pieces.append(pa.Table.from_batches([batches[b].take(pa.array(rows[sel] - starts[b]))], schema=schema))
            positions.append(at[sel])
    combined = pa.concat_tables(pieces).combine_chunks()
    del pieces
    inverse = np.empty(len(src), dtype=np.int64)
    inverse[np.concatenate(positions)] = np.arange(len(src), dtype=np.int64)
    return combined.take(pa.array(inverse))


def _align(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A label file with the columns of the unified schema (inputs of several stages may differ)."""
    if table.schema.equals(schema):
        return table
    cols = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
            for f in schema]
    return pa.table(cols, schema=schema)


def _attach_rejected_text(plan: Plan, rejected: pa.Table) -> pa.Table:
    """Texts of not-sampled documents for `keep_rejected_text` (looked up in the labelled shards)."""
    want = rejected.column("id")
    texts: dict[str, str] = {}
    for i in range(len(plan.inputs)):
        t = shard_io.read_shard(labelled_path(plan, i), columns=["id", "text"])
        t = t.filter(pc.is_in(t.column("id"), value_set=want.combine_chunks()))
        texts.update(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))
    return rejected.set_column(rejected.column_names.index("text"), "text",
                               pa.array([texts.get(i) for i in rejected.column("id").to_pylist()], pa.string()))


def _output_schema(labelled: pa.Schema) -> pa.Schema:
    """The output columns: the input's, the label columns, `repeat`; work columns dropped."""
    fields = [f for f in labelled if f.name not in WORK_COLUMNS]
    return pa.schema(fields + [pa.field("repeat", pa.int32())])


def commit_remix_shard(stage_dir: Path, name: str, *, kept: pa.Table, rejected: pa.Table, repeated: int,
                       config_hash: str, fingerprint: str, counters: dict[str, int]) -> dict[str, Any]:
    """Commit one output shard under the stage contract, counting repeats apart.

    The record's `kept` is the number of distinct input documents in the shard (its repeat-0
    rows), so `kept + rejected == input` holds for input documents as for every stage; the
    extra copies are `counters.repeated`, and the data file holds `kept + repeated` rows.
    `shards.commit_shard` checks `kept.num_rows + rejected == input`, which repeats would break,
    so this writes the same files and record layout itself (data, rejected, then the record).
    """
    distinct = kept.num_rows - repeated
    input_rows = distinct + rejected.num_rows
    data_path, rejected_path, progress_path = shard_io.shard_paths(stage_dir, name, "arrow")
    data_file = shard_io.write_arrow_atomic(kept, data_path, relative_to=stage_dir)
    rejected_file = shard_io.write_parquet_atomic(rejected, rejected_path, relative_to=stage_dir)
    reasons = {REASON_NOT_SAMPLED: rejected.num_rows} if rejected.num_rows else {}
    record = {
        "name": name,
        "config_hash": config_hash,
        "fingerprint": fingerprint,
        "input": input_rows,
        "kept": distinct,
        "rejected": rejected.num_rows,
        "reasons": reasons,
        "counters": dict(sorted(counters.items())),
        "data": data_file.to_json(),
        "rejected_file": rejected_file.to_json(),
    }
    record_stats = getattr(shard_io, "record_stats", None)   # the runner's stats.json hook, where present
    if record_stats is not None:
        record["stats"] = record_stats(str(stage_dir), kept, rejected, None)
    shard_io.write_json_atomic(record, progress_path)
    return record
