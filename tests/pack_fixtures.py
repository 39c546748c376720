"""Shared helpers of the pack and reader tests: a tokenizer directory made from the DeepSeek LLM
anchor tokenizer, small real documents from the shared corpus, and a serial in-process runtime
so most pack tests run the real stage and runner without starting Ray."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from winnow.pipeline.runner import SerialRuntime

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
SOURCES = [("wikipedia_en-001", "encyclopedia"), ("imdb_reviews-000", "reviews"),
           ("wikipedia_zh-000", "encyclopedia"), ("github_code-000", "code")]


def make_tokenizer_dir(dst: Path, shared_data: Path, with_bos: bool = True) -> Path:
    """tokenizer.json (the anchor) + tokenizer_config.json naming its BOS/EOS, HF layout."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared_data / "anchors" / "deepseek_llm_tokenizer.json", dst / "tokenizer.json")
    cfg: dict[str, Any] = {"eos_token": EOS, "pad_token": None}
    if with_bos:
        cfg["bos_token"] = {"content": BOS}
    (dst / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False), encoding="utf-8")
    return dst


def corpus_rows(shared_data: Path, per_source: int = 12, max_chars: int = 1500, skip: int = 0) -> list[dict[str, Any]]:
    """Real documents (first lines of each corpus file), texts cut to `max_chars` to keep tests fast."""
    rows = []
    for fname, domain in SOURCES:
        with gzip.open(shared_data / "corpus" / f"{fname}.jsonl.gz", "rt", encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if i < skip:
                    continue
                if i >= skip + per_source:
                    break
                d = json.loads(line)
                rows.append({"id": f"{fname}:{i}", "url": d.get("url"), "text": d["text"][:max_chars],
                             "lang": d["lang"], "domain": domain})
    return rows


def write_input_dir(d: Path, shards: Sequence[Sequence[dict[str, Any]]]) -> Path:
    """A hand-made stage input: one parquet file per shard (sorted by name)."""
    d.mkdir(parents=True, exist_ok=True)
    for i, rows in enumerate(shards):
        pq.write_table(pa.Table.from_pylist(list(rows)), d / f"in-{i:03d}.parquet")
    return d


def build_pack(tmp: Path, tok_dir: Path, shards: Sequence[Sequence[dict[str, Any]]], name: str = "pack",
               **config: Any) -> tuple[Path, dict[str, Any]]:
    """Run the real pack stage through the runner (serially) and return (out dir, manifest)."""
    from winnow.pipeline.runner import run_stage
    from winnow.stages.pack import PackStage

    inp = write_input_dir(tmp / f"{name}-in", shards)
    stage = PackStage({"tokenizer": str(tok_dir), **config})
    out = tmp / name
    manifest = run_stage(stage, [str(inp)], out, runtime=SerialRuntime())
    return out, manifest
