"""Tokenizer: train the 102,400-entry byte-level BPE the DeepSeek way from a stage's shards.

``winnow tokenizer train --in DIR... --out DIR [--vocab-size 102400] [--sample-bytes N]``
(also ``winnow tokenizer --in ... --out ...`` and the ``tokenizer`` stage of ``winnow run``).

Whole-dataset stage, ``produces = "artifact"``: the output is a tokenizer, not documents.

1. Scan (Ray tasks, one per shard): per document a keyed blake2b-64 hash of its id, its UTF-8
   bytes and its group (``lang``/``domain`` columns where present). Only these numbers travel.
2. Sample: per group a byte target ``sample_bytes × weight`` (weights: the config's, else the
   input's own byte shares, i.e. the mixture the remix stage realised); within a group the
   documents with the smallest hashes are taken until the target is met. A budget larger than
   the data is said (warning + manifest) and all of it is used.
3. Train (one Ray task): the shards are streamed again and the chosen texts fed to
   `tokenizers`' BpeTrainer (`winnow.tokenizer.train.train_bpe`), so memory holds one shard
   plus the trainer's pre-token counts. Writes ``tokenizer.json``, ``tokenizer_config.json``,
   ``special_tokens_map.json`` (``AutoTokenizer.from_pretrained(OUT)`` works offline),
   ``sample.parquet`` (id, group, bytes of every sampled document) and
   ``tokenizer_manifest.json`` (sizes, bytes and documents per group, weights, checksums).

Accounting: one commit record, input = kept = documents read (training removes nothing).

The output directory may be an object-store URL (`s3://…`; inputs too): the training task
writes the tokenizer files in a local temporary directory and uploads them, the driver then
uploads the rejected (empty) shard, ``tokenizer_manifest.json`` and, last, the commit record.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import time
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from winnow.pipeline import shards as shard_io
from winnow.stages.base import Runtime, ShardTask, Stage, StageConfig, shard_fingerprint

log = logging.getLogger("winnow")

RECORD_NAME = "tokenizer"
SAMPLE_FILE = "sample.parquet"
TOKENIZER_MANIFEST = "tokenizer_manifest.json"
UNKNOWN_GROUP = "unknown"


class TokenizerConfig(StageConfig):
    """The `tokenizer:` section of a pipeline config."""

    vocab_size: int = Field(102_400, description="model vocabulary: learned + 15 named specials + reserved fill")
    learned_vocab_size: int | None = Field(None, description="learned BPE entries incl. the 256 bytes "
                                                             "(default: 100,000/102,400 of vocab_size)")
    min_frequency: int = Field(2, ge=0, description="a pair must occur this often to be merged")
    # 1 GB: the largest sample whose projected training peak RSS fits a 24 GiB machine (the
    # sample-size study in docs/tokenizer.md: ~2.45 GiB per million unique pre-tokens)
    sample_bytes: int = Field(1_000_000_000, gt=0, description="UTF-8 bytes of text to train on (all if the data is smaller)")
    group_by: list[str] = Field(default_factory=lambda: ["lang", "domain"],
                                description="columns whose values form the sampling groups (those present)")
    weights: dict[str, float] | None = Field(None, description="group -> share of the sample; default: "
                                                               "the input's own byte shares (the remix mixture)")
    seed: int = Field(0, description="key of the document hash that orders the sample")
    text_column: str = "text"
    pre_tokenization: Literal["deepseek", "plain"] = Field("deepseek", description="plain: GPT-2 regex baseline")
    model_max_length: int = Field(4096, ge=1, description="written to tokenizer_config.json")
    train_memory_gb: float | None = Field(None, gt=0, description="memory Ray reserves for the training task")

    @model_validator(mode="after")
    def _check(self) -> "TokenizerConfig":
        from winnow.tokenizer.specials import check_vocab_size

        check_vocab_size(self.vocab_size, self.learned_vocab_size)
        if self.weights is not None:
            bad = {k: v for k, v in self.weights.items() if not v >= 0}
            if bad or not sum(self.weights.values()) > 0:
                raise ValueError(f"weights must be >= 0 and not all zero, got {self.weights}")
        return self


def doc_hash(doc_id: str, seed: int) -> int:
    """A keyed 64-bit hash of a document id (blake2b): the order in which documents are sampled."""
    key = seed.to_bytes(8, "little", signed=True)
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8, key=key).digest(), "little")


def _doc_ids(table: pa.Table, shard: str) -> list[str]:
    if "id" in table.column_names:
        return [str(v) for v in table.column("id").to_pylist()]
    return [f"{Path(shard).name}:{i}" for i in range(table.num_rows)]


def _groups(table: pa.Table, group_by: Sequence[str]) -> list[str]:
    cols = [c for c in group_by if c in table.column_names]
    if not cols:
        return [UNKNOWN_GROUP] * table.num_rows
    values = [table.column(c).to_pylist() for c in cols]
    return ["/".join(str(v) if v not in (None, "") else UNKNOWN_GROUP for v in row) for row in zip(*values)]


def _read(shard: str, cfg: TokenizerConfig) -> pa.Table:
    schema_names = _schema_names(shard)
    if cfg.text_column not in schema_names:
        raise ValueError(f"{shard}: no `{cfg.text_column}` column (columns: {', '.join(schema_names)})")
    cols = [c for c in dict.fromkeys(["id", cfg.text_column, *cfg.group_by]) if c in schema_names]
    return shard_io.read_shard(shard, cols)


def _schema_names(shard: str) -> list[str]:
    if shard_io.is_url(shard):   # the footer, through ranged reads
        from winnow.stages import remote_io

        with remote_io.open_raw(shard) as f:
            if shard.endswith(".arrow"):
                return list(pa.ipc.open_file(f).schema.names)
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(f).schema_arrow.names)
    if shard.endswith(".arrow"):
        with pa.memory_map(shard, "r") as src:
            return list(pa.ipc.open_file(src).schema.names)
    import pyarrow.parquet as pq

    return list(pq.read_schema(shard).names)


def scan_shard(shard: str, cfg: TokenizerConfig) -> dict[str, Any]:
    """Ray task: per document (hash, bytes) grouped, and the shard's document count."""
    table = _read(shard, cfg)
    nbytes = pc.binary_length(pc.cast(table.column(cfg.text_column), pa.binary())).fill_null(0)
    nbytes = np.asarray(nbytes.to_numpy(zero_copy_only=False), dtype=np.int64)
    groups = _groups(table, cfg.group_by)
    hashes = np.fromiter((doc_hash(i, cfg.seed) for i in _doc_ids(table, shard)), dtype=np.uint64, count=table.num_rows)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    garr = np.asarray(groups, dtype=object)
    for g in sorted(set(groups)):
        m = garr == g
        out[g] = (hashes[m], nbytes[m])
    return {"docs": table.num_rows, "groups": out}


def plan_sample(scans: Sequence[dict[str, Any]], cfg: TokenizerConfig) -> dict[str, Any]:
    """Per group: available bytes, weight, byte target, and the hash cutoff that meets it."""
    merged: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for s in scans:
        for g, (h, b) in s["groups"].items():
            if g in merged:
                merged[g] = (np.concatenate([merged[g][0], h]), np.concatenate([merged[g][1], b]))
            else:
                merged[g] = (h, b)
    available = {g: int(b.sum()) for g, (h, b) in merged.items()}
    total = sum(available.values())
    if total == 0:
        from winnow.tokenizer.train import EmptySample

        raise EmptySample("the input holds no text (0 bytes): nothing to train a tokenizer on")
    warnings: list[str] = []
    if cfg.weights is None:
        weights = {g: available[g] / total for g in sorted(available)}
        weights_source = "input mixture (byte shares of the upstream shards)"
    else:
        unknown = sorted(set(cfg.weights) - set(available))
        missing = sorted(set(available) - set(cfg.weights))
        if unknown or missing:
            raise ValueError(f"tokenizer.weights: groups {unknown} are not in the input, groups {missing} have "
                             f"no weight; the input's groups ({'/'.join(cfg.group_by)}): {sorted(available)}")
        s = sum(cfg.weights.values())
        weights = {g: cfg.weights[g] / s for g in sorted(cfg.weights)}
        weights_source = "config"
    budget = cfg.sample_bytes
    if budget >= total:
        warnings.append(f"sample_bytes {budget:,} >= the {total:,} bytes of input text: training on all of it")
        budget = total
    groups: dict[str, dict[str, Any]] = {}
    for g in sorted(available):
        h, b = merged[g]
        target = int(round(budget * weights[g]))
        order = np.argsort(h, kind="stable")
        cum = np.cumsum(b[order])
        if target <= 0 or len(order) == 0:
            cutoff, take = None, 0
        else:
            take = int(min(np.searchsorted(cum, target, side="left") + 1, len(order)))
            cutoff = int(h[order[take - 1]])
        chosen = int(cum[take - 1]) if take else 0
        if weights[g] > 0 and available[g] < target:
            warnings.append(f"group {g}: wants {target:,} bytes, has {available[g]:,}; all of it is used")
        groups[g] = {"available_bytes": available[g], "available_docs": int(len(h)), "weight": weights[g],
                     "target_bytes": target, "cutoff_hash": cutoff, "planned_docs": take, "planned_bytes": chosen}
    for w in warnings:
        log.warning("tokenizer: %s", w)
    return {"input_bytes": total, "sample_bytes": budget, "weights_source": weights_source,
            "groups": groups, "warnings": warnings}


def _sampled_texts(shards: Sequence[str], cfg: TokenizerConfig, cutoffs: dict[str, int | None],
                   chosen: dict[str, list]):
    """Stream the shards once more; yield the texts of sampled documents (shard, row order)."""
    for shard in shards:
        table = _read(shard, cfg)
        ids = _doc_ids(table, shard)
        groups = _groups(table, cfg.group_by)
        texts = table.column(cfg.text_column)
        for i, (doc_id, g) in enumerate(zip(ids, groups)):
            cut = cutoffs.get(g)
            if cut is None or doc_hash(doc_id, cfg.seed) > cut:
                continue
            text = texts[i].as_py()
            if not text:
                continue
            chosen["id"].append(doc_id)
            chosen["group"].append(g)
            chosen["bytes"].append(len(text.encode("utf-8")))
            yield text
        del table, texts


def train_task(shards: Sequence[str], cfg: TokenizerConfig, cutoffs: dict[str, int | None], out_dir: str) -> dict[str, Any]:
    """Ray task: train on the sampled texts and write the tokenizer files and the sample list. An
    object-store `out_dir`: written in a local temporary directory, then uploaded."""
    if shard_io.is_url(out_dir):
        import tempfile

        from winnow.stages import remote_io

        with tempfile.TemporaryDirectory(prefix="winnow-tokenizer-") as tmp:
            out = train_task(shards, cfg, cutoffs, tmp)
            for name in [*(f["path"] for f in out["files"].values()), out["sample_file"]["path"]]:
                remote_io.put_file(str(Path(tmp) / name), remote_io.join(out_dir, name))
        return out
    import resource

    from winnow.tokenizer.train import save_hf_dir, train_bpe

    t0 = time.perf_counter()
    chosen: dict[str, list] = {"id": [], "group": [], "bytes": []}
    tok = train_bpe(_sampled_texts(shards, cfg, cutoffs, chosen), vocab_size=cfg.vocab_size,
                    learned_size=cfg.learned_vocab_size, min_frequency=cfg.min_frequency,
                    pre_tokenization=cfg.pre_tokenization)
    train_s = time.perf_counter() - t0
    paths = save_hf_dir(tok, out_dir, model_max_length=cfg.model_max_length)
    sample = pa.table({"id": pa.array(chosen["id"], pa.string()), "group": pa.array(chosen["group"], pa.string()),
                       "bytes": pa.array(chosen["bytes"], pa.int64())})
    sample_file = shard_io.write_parquet_atomic(sample, Path(out_dir) / SAMPLE_FILE, relative_to=out_dir)
    per_group: dict[str, dict[str, int]] = {}
    for g, b in zip(chosen["group"], chosen["bytes"]):
        d = per_group.setdefault(g, {"docs": 0, "bytes": 0})
        d["docs"] += 1
        d["bytes"] += b
    return {"train_s": round(train_s, 3), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "vocab_size": tok.get_vocab_size(with_added_tokens=True),
            "learned_vocab_size": tok.get_vocab_size(with_added_tokens=False),
            "sample_docs": len(chosen["id"]), "sample_bytes": int(sum(chosen["bytes"])),
            "per_group": dict(sorted(per_group.items())),
            "files": {name: {"path": p.name, "sha256": shard_io.sha256_file(p)} for name, p in paths.items()},
            "tokenizer_bytes": (Path(out_dir) / "tokenizer.json").stat().st_size,
            "sample_file": sample_file.to_json()}


class TokenizerStage(Stage):
    """Train DeepSeek's byte-level BPE (102,400 entries) on a byte-budget sample of the shards."""

    name: ClassVar[str] = "tokenizer"
    version: ClassVar[int] = 1
    Config: ClassVar[type[StageConfig]] = TokenizerConfig
    help: ClassVar[str] = "train the DeepSeek-style 102,400-entry byte-level BPE on a sample of the shards"
    produces: ClassVar[str] = "artifact"
    config: TokenizerConfig
    #: The output directory may be an object-store URL (see the module docstring).
    object_storage: ClassVar[bool] = True

    @classmethod
    def add_cli_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--vocab-size", type=int, default=None, help="model vocabulary (default 102400)")
        parser.add_argument("--learned-vocab-size", type=int, default=None, help="learned BPE entries (default 100000 of 102400)")
        parser.add_argument("--sample-bytes", type=int, default=None, help="bytes of text to train on")
        parser.add_argument("--min-frequency", type=int, default=None, help="minimum pair count to merge")

    @classmethod
    def cli_overrides(cls, args: argparse.Namespace) -> dict[str, Any]:
        keys = {"vocab_size": "vocab_size", "learned_vocab_size": "learned_vocab_size",
                "sample_bytes": "sample_bytes", "min_frequency": "min_frequency"}
        return {k: getattr(args, a) for k, a in keys.items() if getattr(args, a, None) is not None}

    def plan(self, inputs: Sequence[str]) -> list[ShardTask]:
        """One task over every input shard (the tokenizer is one artifact of all of them), keyed by
        the sha256 each upstream manifest records for its shards (`shard_fingerprint`), not by
        mtime: an upstream rerun that rewrites equal bytes does not retrain the tokenizer."""
        entries: list[shard_io.InputShard] = []
        for d in inputs:
            entries.extend(shard_io.input_shard_entries(d))
        files = [str(e.path) for e in entries]
        if not files:
            raise ValueError(f"tokenizer: no input shards in {', '.join(inputs)}")
        for f in files:  # bad input is an error before any work starts
            names = _schema_names(f)
            if self.config.text_column not in names:
                raise ValueError(f"{f}: no `{self.config.text_column}` column (columns: {', '.join(names)})")
        return [ShardTask(index=0, name=RECORD_NAME, inputs=tuple(files), fingerprint=shard_fingerprint(entries))]

    def execute(self, tasks: Sequence[ShardTask], out_dir: Path, runtime: Runtime) -> list[dict[str, Any]]:
        (task,) = tasks
        cfg = self.config
        shards = list(task.inputs)
        stats: dict[str, dict[str, float]] = {}
        scans = runtime.map_tasks(scan_shard, [(s, cfg) for s in shards], desc="tokenizer scan", unit="shard", stats=stats)
        docs_read = sum(s["docs"] for s in scans)
        plan = plan_sample(scans, cfg)
        cutoffs = {g: v["cutoff_hash"] for g, v in plan["groups"].items()}
        memory = int(cfg.train_memory_gb * 2**30) if cfg.train_memory_gb else None
        (trained,) = runtime.map_tasks(train_task, [(shards, cfg, cutoffs, str(out_dir))], desc="tokenizer train",
                                       unit="tokenizer", num_cpus=max(1, runtime.workers), memory=memory, stats=stats)
        data = shard_io.ShardFile(path="tokenizer.json", rows=trained["vocab_size"],
                                  bytes=trained["tokenizer_bytes"], sha256=trained["files"]["tokenizer.json"]["sha256"])
        rejected_table = shard_io.empty_rejected()
        rejected = _write_rejected(rejected_table, out_dir)
        manifest = {
            "stage": self.name, "config_hash": self.config_hash(), "config": cfg.model_dump(mode="json"),
            "input_shards": shards, "input_docs": docs_read, "input_bytes": plan["input_bytes"],
            "sample": {"target_bytes": plan["sample_bytes"], "bytes": trained["sample_bytes"], "docs": trained["sample_docs"],
                       "weights_source": plan["weights_source"], "file": trained["sample_file"],
                       "groups": {g: {**v, **trained["per_group"].get(g, {"docs": 0, "bytes": 0})}
                                  for g, v in plan["groups"].items()}},
            "warnings": plan["warnings"],
            "vocab_size": trained["vocab_size"], "learned_vocab_size": trained["learned_vocab_size"],
            "files": trained["files"], "train_s": trained["train_s"], "train_peak_rss_mb": trained["peak_rss_mb"],
            "ray": stats,
        }
        for g in manifest["sample"]["groups"].values():
            g.pop("cutoff_hash", None)
        shard_io.write_json_at(manifest, shard_io.stage_file(out_dir, TOKENIZER_MANIFEST))
        record = {"name": RECORD_NAME, "config_hash": self.config_hash(), "fingerprint": task.fingerprint,
                  "input": docs_read, "kept": docs_read, "rejected": 0, "reasons": {},
                  "counters": {"sample_docs": trained["sample_docs"], "sample_bytes": trained["sample_bytes"],
                               "vocab_size": trained["vocab_size"], "learned_vocab_size": trained["learned_vocab_size"]},
                  "data": data.to_json(), "rejected_file": rejected.to_json(),
                  "stats": shard_io.record_stats(str(out_dir), pa.table({"id": pa.array([], pa.string())}), rejected_table,
                                                 sample_stats(manifest["sample"]["groups"], trained))}
        # the commit record last (on object storage: the last object uploaded)
        shard_io.write_json_at(record, shard_io.stage_file(out_dir, shard_io.PROGRESS_DIR, f"{RECORD_NAME}.json"))
        return [record]


def _write_rejected(table: pa.Table, out_dir: Path | str) -> shard_io.ShardFile:
    """The stage's (empty) rejected shard, written atomically, or uploaded to object storage."""
    rel = f"{shard_io.REJECTED_DIR}/{RECORD_NAME}.parquet"
    if not shard_io.is_url(out_dir):
        return shard_io.write_parquet_atomic(table, Path(out_dir) / rel, relative_to=out_dir)
    import tempfile

    from winnow.stages import remote_io

    with tempfile.TemporaryDirectory(prefix="winnow-tokenizer-") as tmp:
        f = shard_io.write_parquet_atomic(table, Path(tmp) / rel, relative_to=tmp)
        remote_io.put_file(str(Path(tmp) / rel), remote_io.join(str(out_dir), rel))
    return f


def sample_stats(groups: dict[str, dict[str, Any]], trained: dict[str, Any]) -> dict[str, Any]:
    """stats.json of the tokenizer stage: per sampling group the bytes and documents available
    and sampled (what the trainer saw, against what the input offered), and the vocabulary."""
    return {"sums": {"available_bytes_by_group": {g: int(v.get("available_bytes", 0)) for g, v in groups.items()},
                     "sample_bytes_by_group": {g: int(v.get("bytes", 0)) for g, v in groups.items()}},
            "counts": {"available_docs_by_group": {g: int(v.get("available_docs", 0)) for g, v in groups.items()},
                       "sample_docs_by_group": {g: int(v.get("docs", 0)) for g, v in groups.items()},
                       "vocabulary": {"learned": int(trained["learned_vocab_size"]),
                                      "special and reserved": int(trained["vocab_size"] - trained["learned_vocab_size"])}}}

