"""Dedup: exact (content hash) then MinHash near-duplicate removal across everything given, on Ray.

``winnow dedup --in DIR... --out DIR [--scope global|dump] [--index IDX]``

One output shard per input shard, holding the rows that survive plus ``dup_cluster`` (id of the
document kept for the cluster, null when the document had no duplicate) and ``dup_cluster_size``
(documents in the cluster, exact copies included). Removed rows are rejected with reason
``dedup:exact_dup`` or ``dedup:minhash_dup``. The phases (``phases.py``) run as Ray tasks and talk
only through files under ``OUT/_work``, so no step holds the corpus on one node — except the
union-find fast path, taken only when the verified edges fit ``union_find_max_edges``.

Object storage: OUT, its ``_work`` files and the index may each be an fsspec URL (``s3://…``)
instead of a local directory; every worker then reads and writes through the store, nothing
assumes a shared disk, and each file becomes visible only through the record written after it
(``store.py``, docs/dedup-object-storage.md).

Scope: ``global`` deduplicates all dumps in the input together (DeepSeek: 89.8% removed across 91
dumps); ``dump`` only within each dump (FineWeb), in the same single run. Index: ``--index IDX``
also deduplicates against every document a previous run added to IDX, then adds this run's kept
documents to it (``index.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Sequence

from pydantic import Field, model_validator

from winnow.stages.base import EXECUTION, PATH, Runtime, ShardTask, Stage, StageConfig

if TYPE_CHECKING:
    from winnow.stages.dedup import phases as ph

log = logging.getLogger("winnow")


class DedupConfig(StageConfig):
    """The `dedup:` section of a pipeline config."""

    scope: Literal["global", "dump"] = Field("global", description="global: all dumps together; dump: within each dump")
    index: str | None = Field(None, json_schema_extra=PATH, description="index directory to deduplicate against and add kept documents to")
    exact: bool = Field(True, description="remove exact copies (content hash) before MinHash")
    ngram: int = Field(5, ge=1, le=16, description="words per shingle")
    num_bands: int = Field(14, ge=1, description="LSH bands")
    rows_per_band: int = Field(8, ge=1, description="MinHash values per band; threshold ≈ (1/bands)^(1/rows)")
    seed: int = Field(1, description="MinHash permutation seed (datasketch-compatible)")
    cjk: Literal["char", "jieba"] = Field("char", description="CJK words: one per character, or jieba word split")
    verify: bool = Field(True, description="drop LSH candidate pairs whose estimated Jaccard is below the threshold")
    verify_k: int = Field(512, ge=0, le=4096,
                          description="bottom-k sketch size for the check (exact under k shingles); 0: use the MinHash values")
    jaccard_threshold: float = Field(0.8, ge=0, le=1, description="estimated Jaccard a candidate pair must reach")
    partitions: int | None = Field(None, ge=1, json_schema_extra=EXECUTION, description="shuffle partitions (power of two); default from the input size")
    rows_per_partition: int = Field(8_000_000, ge=1000, json_schema_extra=EXECUTION, description="band rows per partition when partitions is auto")
    union_find_max_edges: int = Field(5_000_000, ge=0, json_schema_extra=EXECUTION, description="single-process union-find below this many edges")
    batch_size: int = Field(1024, ge=1, json_schema_extra=EXECUTION, description="documents per Arrow batch in the signature phase")
    backend: Literal["auto", "numba", "numpy"] = Field("auto", json_schema_extra=EXECUTION, description="signature kernels (same values either way)")
    keep_work: bool = Field(False, json_schema_extra=EXECUTION, description="keep OUT/_work (signatures, clusters) after the run, for audits")

    @model_validator(mode="after")
    def _check(self) -> "DedupConfig":
        if self.partitions is not None and self.partitions & (self.partitions - 1):
            raise ValueError("partitions must be a power of two")
        return self

    @property
    def num_perm(self) -> int:
        return self.num_bands * self.rows_per_band


class DedupStage(Stage):
    """Exact + MinHash deduplication across dumps (or per dump), with an incremental index."""

    name: ClassVar[str] = "dedup"
    version: ClassVar[int] = 1
    Config: ClassVar[type[StageConfig]] = DedupConfig
    help: ClassVar[str] = "remove exact and near-duplicate documents (MinHash LSH) across dumps, on Ray"
    #: every output shard depends on every input shard: any input change redoes the whole stage
    whole_dataset: ClassVar[bool] = True
    #: the output directory, `_work` and the index may be object-store URLs (`store.py`); the
    #: runner then hands `execute` every task and the URL (`runner.supports_object_storage`)
    object_storage: ClassVar[bool] = True
    config: DedupConfig
    #: per phase of the last `execute`: wall seconds, summed task CPU seconds, tasks, peak worker RSS (MB)
    phase_stats: dict[str, dict[str, float]]

    @classmethod
    def add_cli_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--scope", choices=["global", "dump"], default=None,
                            help="global: deduplicate all dumps together (default); dump: within each dump")
        parser.add_argument("--index", default=None, metavar="DIR",
                            help="dedup index: also remove documents already indexed, then index the kept ones")

    @classmethod
    def cli_overrides(cls, args: argparse.Namespace) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if getattr(args, "scope", None) is not None:
            out["scope"] = args.scope
        if getattr(args, "index", None) is not None:
            out["index"] = args.index
        return out

    # ------------------------------------------------------------------------------------------
    def execute(self, tasks: Sequence[ShardTask], out_dir: Path | str, runtime: Runtime) -> list[dict[str, Any]]:
        """Every phase, then the commit of each task's shard that is not committed yet, then the
        index. `tasks` must be all of the stage's tasks (each output shard depends on every input).
        `out_dir` is a local directory or an object-store URL (its `_work` files then live there
        too); the returned records are those of every task, in task order."""
        from winnow.stages.dedup import index as idx
        from winnow.stages.dedup import phases as ph
        from winnow.stages.dedup import shuffle as sh
        from winnow.stages.dedup import store

        cfg = self.config
        if cfg.index and store.is_remote(cfg.index):
            # a clear error (no bucket, no credentials, access denied, no answer) before anything
            # is read or scheduled, not when the index is written at the end of the run
            from winnow.stages import remote_io

            remote_io.check_output_writable(cfg.index)
        remote = store.is_remote(out_dir)
        out: Any = str(out_dir).rstrip("/") if remote else Path(out_dir)
        h = self.config_hash()
        committed = store.committed_shards(out, [(t.name, t.fingerprint) for t in tasks], h)
        # one run = this config, these inputs, this output directory (a resumed run keeps its id)
        run_id = hashlib.sha256(json.dumps([h, [t.fingerprint for t in tasks], [t.inputs for t in tasks],
                                            out if remote else str(out.resolve())]).encode()).hexdigest()[:16]
        meta = idx.load_index(cfg.index) if cfg.index else None
        plan = self._plan(tasks, out, run_id, meta)
        if meta is not None:
            idx.check_params(meta, idx.index_params(plan), cfg.index or "")
        index_done = cfg.index is None or (meta is not None and any(s["run_id"] == run_id for s in meta["segments"]))
        if all(committed.values()) and index_done:
            return [committed[t.name] for t in tasks]  # type: ignore[misc]
        if not tasks:
            return []
        plan_ref = runtime.put(plan)
        S, P = plan.num_shards, plan.partitions
        stats: dict[str, dict[str, float]] = {}
        self.phase_stats = stats
        glob: dict[str, int] = {"partitions": P, "index_docs_before": int(meta.get("docs", 0)) if meta else 0}

        if cfg.exact:
            _run_phase(runtime, "exact hash", ph.exact_map, [(plan_ref, i) for i in range(S)], stats=stats)
            r = _run_phase(runtime, "exact groups", ph.exact_reduce, [(plan_ref, j) for j in range(P)], stats=stats)
            glob.update({k: v for k, v in sh.sum_counters(r).items() if k == "exact_groups"})
        sig = sh.sum_counters(_run_phase(runtime, "minhash", ph.signatures, [(plan_ref, i) for i in range(S)],
                                         unit="shard", stats=stats))
        r = sh.sum_counters(_run_phase(runtime, "lsh buckets", ph.lsh, [(plan_ref, j) for j in range(P)], stats=stats))
        glob.update({k: r.get(k, 0) for k in ("lsh_buckets", "lsh_edges")})
        r = sh.sum_counters(_run_phase(runtime, "candidate pairs", ph.verify_a, [(plan_ref, g) for g in range(P)], stats=stats))
        glob["candidate_pairs"] = r.get("candidate_pairs", 0)
        edges = r.get("verified_pairs", 0)
        if cfg.verify:
            r = sh.sum_counters(_run_phase(runtime, "jaccard check", ph.verify_b, [(plan_ref, g) for g in range(P)], stats=stats))
            edges = r.get("verified_pairs", 0)
            glob["false_positive_pairs"] = r.get("false_positive_pairs", 0)
        glob["verified_pairs"] = edges
        final_files, cc_counters = self._components(runtime, plan, plan_ref, edges, stats)
        glob.update(cc_counters)
        _run_phase(runtime, "cluster ranks", ph.attach, [(plan_ref, g, final_files) for g in range(P)], stats=stats)
        r = sh.sum_counters(_run_phase(runtime, "keep rule", ph.elect, [(plan_ref, j) for j in range(P)], stats=stats))
        glob["clusters"] = r.get("clusters", 0)
        glob["signature_text_bytes"] = sig.get("text_bytes", 0)

        todo = [t for t in tasks if committed[t.name] is None]
        args = [(plan_ref, t.index, str(out), t.name, h, t.fingerprint, glob if t.index == 0 else {})
                for t in todo]
        new = _run_phase(runtime, "commit", ph.commit, args, stats=stats)
        records = {t.name: committed[t.name] for t in tasks if committed[t.name] is not None}
        records.update({rec["name"]: rec for rec in new})

        if cfg.index and not index_done:
            built = _run_phase(runtime, "index add", idx.build_segment_shard,
                               [(plan_ref, i, cfg.index, run_id) for i in range(S)], stats=stats)
            docs = sum(b.get("indexed_docs", 0) for b in built)
            _run_phase(runtime, "index compact", idx.compact_segment_partition,
                       [(plan_ref, j, cfg.index, run_id) for j in range(P)], stats=stats)
            idx.finish_segment(plan, cfg.index, run_id, [t.inputs[0] for t in tasks], docs)
        if not cfg.keep_work:
            # _work as a whole: also the work of an earlier, killed run under other execution
            # settings (partitions), which this run did not resume (one writer per directory)
            store.remove_tree(store.parent(plan.work))
        log.info("dedup phases: %s", ", ".join(f"{k} {v['wall_s']:.1f}s/{v['max_rss_mb']:.0f}MB" for k, v in stats.items()))
        return [records[t.name] for t in tasks]

    # ------------------------------------------------------------------------------------------
    def _plan(self, tasks: Sequence[ShardTask], out_dir: Path | str, run_id: str,
              meta: dict[str, Any] | None) -> "ph.Plan":
        from winnow.stages.dedup import index as idx
        from winnow.stages.dedup import phases as ph
        from winnow.stages.dedup import store

        cfg = self.config
        segments, offset = idx.base_segments(meta, cfg.index or "", run_id)
        if meta is not None:
            partitions = int(meta["partitions"])
        elif cfg.partitions:
            partitions = cfg.partitions
        else:
            # rows from the footers of at most 64 evenly spaced shards, extrapolated (the driver
            # must not read every footer of a 10^5-shard input)
            sample = tasks[:: max(1, len(tasks) // 64)] if tasks else []
            rows = sum(store.parquet_rows(t.inputs[0]) for t in sample)
            docs = rows * len(tasks) / max(1, len(sample))
            need = math.ceil(max(docs, 1) * cfg.num_bands / cfg.rows_per_partition)
            partitions = 1 << max(0, math.ceil(math.log2(need)))
        work_key = hashlib.sha256(json.dumps([run_id, [s.name for s in segments], offset, partitions])
                                  .encode()).hexdigest()[:16]
        return ph.Plan(work=str(store.join(out_dir, "_work", work_key)), inputs=tuple(t.inputs[0] for t in tasks),
                       shard_offset=offset, partitions=partitions, num_perm=cfg.num_perm,
                       num_bands=cfg.num_bands, rows_per_band=cfg.rows_per_band, ngram=cfg.ngram, seed=cfg.seed,
                       cjk=cfg.cjk, scope=cfg.scope, exact=cfg.exact, verify=cfg.verify, verify_k=cfg.verify_k,
                       jaccard_threshold=cfg.jaccard_threshold, batch_size=cfg.batch_size, backend=cfg.backend,
                       keep_rejected_text=cfg.keep_rejected_text, segments=tuple(segments))

    def _components(self, runtime: Runtime, plan: "ph.Plan", plan_ref: Any, edges: int,
                    stats: dict[str, dict[str, float]]) -> tuple[list[str], dict[str, int]]:
        """Connected components: union-find under the edge budget, else star rounds to a fixed point.

        Round k reads cc-k and writes cc-(k+1); `cc-progress.json` records finished rounds, so a
        killed run resumes at its last finished round, and rounds no longer needed are deleted."""
        from winnow.stages.dedup import phases as ph
        from winnow.stages.dedup import shuffle as sh
        from winnow.stages.dedup import store

        P = plan.partitions
        if edges <= self.config.union_find_max_edges:
            r = _run_phase(runtime, "components (union-find)", ph.cc_union_find, [(plan_ref, 0)], stats=stats)
            return [str(plan.path("cc-final", 0))], {"cc_fast_path": 1, "cc_rounds": 0, "cc_nodes": r[0]["nodes"]}
        progress_path = store.join(plan.work, "cc-progress.json")
        raw = store.read_bytes(progress_path)
        changed: list[int] = json.loads(raw)["changed"] if raw is not None else []
        k = len(changed)
        while not (k >= 2 and k % 2 == 0 and changed[-1] == 0 and changed[-2] == 0):
            if k >= 400:
                raise RuntimeError("connected components did not converge in 200 rounds")
            kind = "large-star" if k % 2 == 0 else "small-star"
            r = sh.sum_counters(_run_phase(runtime, f"components round {k // 2 + 1} {kind}", ph.cc_step,
                                           [(plan_ref, k, j) for j in range(P)], stats=stats))
            changed.append(r.get("changed", 0))
            k += 1
            store.write_json(progress_path, {"changed": changed})
            if k - 1 >= 1:  # round k-1's input is no longer needed (cc-000 is kept: verify's output)
                store.remove_tree(store.join(plan.work, f"cc-{k - 1:03d}"))
        r = sh.sum_counters(_run_phase(runtime, "components result", ph.cc_final, [(plan_ref, k, j) for j in range(P)],
                                       stats=stats))
        return [str(p) for p in plan.paths("cc-final", P)], {"cc_fast_path": 0, "cc_rounds": k // 2,
                                                              "cc_nodes": r.get("nodes", 0)}


def _run_phase(runtime: Runtime, desc: str, fn: Callable[..., dict[str, Any]], arg_list: list[tuple],
               unit: str = "task", stats: dict[str, dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """One dedup phase through the runtime's task primitive (tasks are idempotent); then the
    partition directory of each shuffle the phase wrote (shuffle.py), from the tasks' records."""
    from winnow.stages.dedup import shuffle as sh

    results = runtime.map_tasks(fn, arg_list, desc=f"dedup: {desc}", unit=unit, stats=stats,
                                stats_key=desc.split(" round")[0])
    sh.publish_directories(results)
    return results


__all__ = ["DedupConfig", "DedupStage"]
