"""Decontaminate: keep benchmark test sets out of the pretraining data (n-gram overlap).

``winnow decontaminate --in DIR... --out DIR --benchmarks DIR_OR_FILE... [--action drop|redact]``

A document that shares an n-gram of normalised text (13 words, or ``n_cjk`` CJK characters) with
a benchmark item — or contains the whole text of an item shorter than that — is

- ``drop``: rejected as ``decontaminate:<benchmark>`` (the benchmark with most matched windows);
- ``redact``: kept with the matched spans cut out (GPT-3's approach keeps the rest of the
  document); the spans, in the original text's character offsets, go into a ``decontam_spans``
  column (start, end, benchmark, item). A document with no letter or digit left is rejected.

The index (``filters/ngram_index.py``) is built once on the driver when the stage executes and
travels to the Ray actors with the stage object (one object-store copy); documents are scanned in
vectorised batches. Commit records count ``match:<benchmark>`` (documents matching it),
``item:<benchmark>:<item id>`` (documents matching that item) and ``windows:<benchmark>``;
``decontaminate_report.json`` beside the output (written by the runner's ``check_output`` hook,
once every shard is committed) lists totals per benchmark and the most-leaked items. Benchmark files are read (and checked: missing field, empty file or benchmark, non-UTF-8)
when the config is validated, before any stage runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import resource
import time
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from winnow.filters import benchmarks as bm
from winnow.filters import ngram_index as ni
from winnow.pipeline import shards as shard_io
from winnow.pipeline.shards import rejected_table
from winnow.stages.base import PATH, Runtime, ShardMapStage, ShardOutput, ShardTask, StageConfig

log = logging.getLogger("winnow")

REPORT = "decontaminate_report.json"
SPAN_TYPE = pa.list_(pa.struct([("start", pa.int64()), ("end", pa.int64()),
                                ("benchmark", pa.string()), ("item", pa.string())]))
_MODES = {"grams+whole": ni.GRAMS | ni.WHOLE, "grams": ni.GRAMS, "whole": ni.WHOLE}


class BenchmarkSpec(BaseModel):
    """A benchmark given explicitly: its name, files or directories, and field mapping (see
    `filters/benchmarks.py`; omit `fields` for a built-in benchmark name)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    paths: list[str] = Field(min_length=1)
    fields: dict[str, Any] | None = None


class DecontaminateConfig(StageConfig):
    """The `decontaminate:` section of a pipeline config."""

    benchmarks: list[str | BenchmarkSpec] = Field(
        default_factory=list, json_schema_extra=PATH,
        description="benchmark directories/files (built-in names: a directory named gsm8k, mmlu, ... or a directory "
                    "of them) or {name, paths, fields} entries")
    n: int = Field(13, ge=1, le=64, description="words per n-gram (GPT-3: 13)")
    n_cjk: int = Field(25, ge=1, le=128, description="n for text that is mostly CJK, in characters")
    min_tokens: int = Field(8, ge=1, description="shorter word items are not indexed at all; [min_tokens, n) match whole")
    min_cjk_tokens: int = Field(12, ge=1, description="the same for CJK items, in characters")
    max_groups: int = Field(10, ge=0, description="an n-gram in this many unrelated items is boilerplate, not indexed (0: off)")
    action: Literal["drop", "redact"] = "drop"
    redact_margin: int = Field(0, ge=0, description="redact: also cut this many characters on each side of a span")
    seed: int = Field(0, description="key of the 64-bit n-gram hash")
    report_top: int = Field(100, ge=0, description="most-leaked items listed in decontaminate_report.json")

    @field_validator("benchmarks")
    @classmethod
    def _load(cls, v: list[str | BenchmarkSpec]) -> list[str | BenchmarkSpec]:
        if not v:
            raise ValueError("decontaminate.benchmarks is empty: give benchmark directories or files")
        load_benchmarks(v)  # reads and checks every file now (cached): errors name file and field
        return v

    @model_validator(mode="after")
    def _check(self) -> "DecontaminateConfig":
        if self.min_tokens > self.n or self.min_cjk_tokens > self.n_cjk:
            raise ValueError("min_tokens must be <= n and min_cjk_tokens <= n_cjk")
        return self


# --- benchmarks: read once per process ----------------------------------------------------------
_CACHE: dict[str, list[bm.Benchmark]] = {}


def _resolve(spec: str | BenchmarkSpec) -> list[tuple[str, list[Path], dict[str, Any] | None]]:
    if isinstance(spec, str):
        return [(name, [path.resolve()], None) for name, path in bm.discover(Path(spec).expanduser())]
    return [(spec.name, [Path(p).expanduser().resolve() for p in spec.paths], spec.fields)]


def _stamp(paths: Sequence[Path]) -> list[str]:
    out = []
    for p in paths:
        for f in bm.benchmark_files(p):
            st = f.stat()
            out.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
    return out


def load_benchmarks(specs: Sequence[str | BenchmarkSpec]) -> list[bm.Benchmark]:
    """Every benchmark the specs name, read and checked (cached by path, size and mtime)."""
    resolved = [r for s in specs for r in _resolve(s)]
    names = [name for name, _, _ in resolved]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise bm.BenchmarkError(f"benchmark name(s) {dup} given twice")
    key = json.dumps([(n, [str(p) for p in ps], f, _stamp(ps)) for n, ps, f in resolved], sort_keys=True, default=str)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = [bm.load_benchmark(n, ps, f) for n, ps, f in resolved]
    return _CACHE[key]


# --- the index and what it is made of ---------------------------------------------------------------
class BenchmarkIndex:
    """The n-gram index plus, per item, its benchmark and id (what matches are reported as)."""

    def __init__(self, benchmarks: Sequence[bm.Benchmark], cfg: DecontaminateConfig):
        t0 = time.perf_counter()
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        items = [it for b in benchmarks for it in b.items]
        texts, item_of, group_of, modes = bm.index_texts(items)
        self.index, self.stats = ni.build_index(
            texts, item_of, group_of, [_MODES[m] for m in modes], n=cfg.n, n_cjk=cfg.n_cjk,
            min_tokens=cfg.min_tokens, min_cjk_tokens=cfg.min_cjk_tokens, max_groups=cfg.max_groups,
            key=ni.HashKey.from_seed(cfg.seed))
        self.item_benchmark = [it.benchmark for it in items]
        self.item_id = [it.id for it in items]
        self.items_per_benchmark = {b.name: len(b.items) for b in benchmarks}
        self.build_seconds = time.perf_counter() - t0
        self.build_peak_rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024.0

    def summary(self) -> dict[str, Any]:
        s = self.stats
        return {"gram_hashes": s.gram_hashes, "short_item_anchors": s.anchors, "boilerplate_dropped": s.boilerplate_hashes,
                "texts": s.texts, "texts_by_ngrams": s.ngram_texts, "texts_whole": s.whole_texts,
                "texts_too_short": s.too_short, "bytes": self.index.nbytes, "lookup_lengths": list(self.index.lengths),
                "false_positive_rate_per_lookup": self.index.false_positive_rate(),
                "items": dict(sorted(self.items_per_benchmark.items()))}


class DecontaminateStage(ShardMapStage):
    """Remove (or redact) documents that contain benchmark test items (n-gram overlap)."""

    name: ClassVar[str] = "decontaminate"
    version: ClassVar[int] = 1
    Config = DecontaminateConfig
    help = "drop or redact documents sharing n-grams with benchmark test sets (GSM8K, MMLU, C-Eval, ...)"
    config: DecontaminateConfig
    #: The output directory may be an object-store URL: shards go through `runtime.map_shards`
    #: (which commits them remotely) and the report is written with `shards.write_json_at`.
    object_storage: ClassVar[bool] = True

    def __init__(self, config: DecontaminateConfig | dict[str, Any] | None = None):
        super().__init__(config)
        # Plain path entries are made absolute by the PATH marker; so are the paths of explicit
        # entries, for a worker whose working directory is elsewhere.
        self.config = self.config.model_copy(update={"benchmarks": [
            s if isinstance(s, str) else s.model_copy(update={"paths": [str(Path(p).expanduser().resolve()) for p in s.paths]})
            for s in self.config.benchmarks]})
        self._fingerprints = {b.name: b.fingerprint for b in load_benchmarks(self.config.benchmarks)}
        self._index: BenchmarkIndex | None = None

    # --- CLI ----------------------------------------------------------------------------------------
    @classmethod
    def add_cli_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--benchmarks", dest="decont_benchmarks", nargs="+", default=None, metavar="PATH",
                            help="benchmark directories or files (e.g. ../shared/data/benchmarks)")
        parser.add_argument("--action", dest="decont_action", choices=["drop", "redact"], default=None,
                            help="drop matching documents (default) or redact the matched spans")
        parser.add_argument("--ngram", dest="decont_n", type=int, default=None, metavar="N", help="words per n-gram (13)")
        parser.add_argument("--ngram-cjk", dest="decont_n_cjk", type=int, default=None, metavar="N",
                            help="characters per n-gram for CJK text")

    @classmethod
    def cli_overrides(cls, args: argparse.Namespace) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for flag, key in (("decont_benchmarks", "benchmarks"), ("decont_action", "action"),
                          ("decont_n", "n"), ("decont_n_cjk", "n_cjk")):
            if getattr(args, flag, None) is not None:
                out[key] = getattr(args, flag)
        return out

    # --- identity: the config plus the bytes of every benchmark file ---------------------------------
    def config_hash(self) -> str:
        payload = json.dumps({"config": super().config_hash(), "benchmarks": self._fingerprints}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    # --- work ---------------------------------------------------------------------------------------
    def build_index(self) -> BenchmarkIndex:
        if self._index is None:
            self._index = BenchmarkIndex(load_benchmarks(self.config.benchmarks), self.config)
            log.info("decontaminate: index of %d n-grams + %d short items (%.1f MB) built in %.1f s",
                     self._index.stats.gram_hashes, self._index.stats.anchors, self._index.index.nbytes / 1e6,
                     self._index.build_seconds)
        return self._index

    def setup(self) -> None:
        self.build_index()
        ni.char_tables()

    def execute(self, tasks: Sequence[ShardTask], out_dir: Path, runtime: Runtime) -> list[dict[str, Any]]:
        self.build_index()  # on the driver, once; actors get it with the stage
        return runtime.map_shards(self, tasks, out_dir) if tasks else []

    def check_output(self, manifest: dict[str, Any], records: Sequence[dict[str, Any]], out_dir: Path) -> None:
        """Write decontaminate_report.json once every shard is committed (the runner's hook)."""
        self.write_report(out_dir, records)

    def process_shard(self, task: ShardTask) -> ShardOutput:
        return self.decontaminate_table(shard_io.read_shard(task.inputs[0]))

    def decontaminate_table(self, table: pa.Table) -> ShardOutput:
        """Scan one shard's documents (the Ray-free core of the stage)."""
        idx = self.build_index()
        cfg = self.config
        n_rows = table.num_rows
        texts = table.column("text").to_pylist() if "text" in table.column_names else [None] * n_rows
        ids = table.column("id").to_pylist() if "id" in table.column_names else [None] * n_rows
        urls = table.column("url").to_pylist() if "url" in table.column_names else [None] * n_rows
        matches = ni.find_matches(idx.index, [t or "" for t in texts])
        counters: dict[str, int] = {}

        def count(key: str, by: int = 1) -> None:
            counters[key] = counters.get(key, 0) + by

        kept_idx: list[int] = []
        rejected: list[dict[str, Any]] = []
        new_texts: list[str | None] = []
        spans_col: list[list[dict[str, Any]]] = []
        for i, found in enumerate(matches):
            if not found:
                kept_idx.append(i)
                new_texts.append(texts[i])
                spans_col.append([])
                continue
            windows: dict[str, int] = {}
            items: set[tuple[str, str]] = set()
            for m in found:
                bench = idx.item_benchmark[m.item]
                windows[bench] = windows.get(bench, 0) + 1
                items.add((bench, idx.item_id[m.item]))
            for bench, w in windows.items():
                count(f"match:{bench}")
                count(f"windows:{bench}", w)
            for bench, item in items:
                count(f"item:{bench}:{item}")
            count("docs_matched")
            top = min(windows, key=lambda b: (-windows[b], b))
            if cfg.action == "redact":
                text, spans = _redact(texts[i], found, cfg.redact_margin, idx)
                count("redacted_chars", len(texts[i]) - len(text))
                if any(ch.isalnum() for ch in text):  # words left, not just punctuation
                    count("docs_redacted")
                    kept_idx.append(i)
                    new_texts.append(text)
                    spans_col.append(spans)
                    continue
            rejected.append({"id": ids[i], "url": urls[i], "reason": f"decontaminate:{top}",
                             "text": texts[i] if cfg.keep_rejected_text else None})
        kept = table.take(pa.array(kept_idx, type=pa.int64()))
        if cfg.action == "redact":
            pos = kept.schema.get_field_index("text")
            if pos >= 0:
                kept = kept.set_column(pos, kept.schema.field("text"), pa.array(new_texts, type=kept.schema.field("text").type))
            field = pa.field("decontam_spans", SPAN_TYPE)
            col = pa.array(spans_col, type=SPAN_TYPE)
            pos = kept.schema.get_field_index(field.name)
            kept = kept.set_column(pos, field, col) if pos >= 0 else kept.append_column(field, col)
        return ShardOutput(kept=kept, rejected=rejected_table(rejected, with_text=cfg.keep_rejected_text),
                           input_rows=n_rows, counters=dict(sorted(counters.items())))

    # --- report ---------------------------------------------------------------------------------------
    def write_report(self, out_dir: Path | str, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """decontaminate_report.json from the shards' commit records: documents and items matched
        per benchmark, the most-leaked items, and the index. Deterministic (no timings), so a
        rerun that changes nothing rewrites nothing. `out_dir` may be an object-store URL."""
        totals: dict[str, int] = {}
        for rec in records:
            for k, v in rec.get("counters", {}).items():
                totals[k] = totals.get(k, 0) + v
        benchmarks = load_benchmarks(self.config.benchmarks)
        per_bench: dict[str, dict[str, int]] = {
            b.name: {"items": len(b.items), "docs_matched": totals.get(f"match:{b.name}", 0),
                     "windows": totals.get(f"windows:{b.name}", 0), "items_matched": 0}
            for b in sorted(benchmarks, key=lambda b: b.name)}
        leaked = []
        for k, v in totals.items():
            if k.startswith("item:"):
                _, bench, item = k.split(":", 2)
                per_bench[bench]["items_matched"] += 1
                leaked.append({"benchmark": bench, "item": item, "docs": v})
        leaked.sort(key=lambda r: (-r["docs"], r["benchmark"], r["item"]))
        path = shard_io.stage_file(out_dir, REPORT)   # a local path or an object-store URL
        old = shard_io.read_json_at(path) or {}
        h = self.config_hash()
        index = self._index.summary() if self._index is not None else (old.get("index") if old.get("config_hash") == h else None)
        report = {"config_hash": h, "action": self.config.action, "n": self.config.n, "n_cjk": self.config.n_cjk,
                  "input": sum(r["input"] for r in records), "docs_matched": totals.get("docs_matched", 0),
                  "benchmarks": per_bench, "top_items": leaked[: self.config.report_top], "index": index}
        if report != old:
            shard_io.write_json_at(report, path)
        return report


def _redact(text: str, found: Sequence[ni.Match], margin: int, idx: BenchmarkIndex) -> tuple[str, list[dict[str, Any]]]:
    """The text with every matched span (± margin) cut out, and the merged spans (original offsets),
    each named by the first match it contains."""
    spans: list[dict[str, Any]] = []
    for m in sorted(found, key=lambda m: (m.start, m.end)):
        s, e = max(0, m.start - margin), min(len(text), m.end + margin)
        if spans and s <= spans[-1]["end"]:
            spans[-1]["end"] = max(spans[-1]["end"], e)
        else:
            spans.append({"start": s, "end": e, "benchmark": idx.item_benchmark[m.item], "item": idx.item_id[m.item]})
    pieces, last = [], 0
    for sp in spans:
        pieces.append(text[last:sp["start"]])
        last = sp["end"]
    pieces.append(text[last:])
    return "".join(pieces), spans
