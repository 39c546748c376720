"""Benchmark: `winnow pack` vs datatrove's DocumentTokenizer vs bare `Tokenizer.encode_batch`,
and the PackedDataset reader's tokens/s with and without a torch DataLoader.

Same documents (a mix of the shared corpus: en/zh Wikipedia, IMDb reviews, code, LibreOffice
help), same tokenizer (the DeepSeek LLM anchor tokenizer.json), one process each, run in turns.

What each side includes (timed from a parquet shard on disk to finished files):
- winnow: read the shard, encode_batch(_fast), BOS/EOS, write .bin/.idx, pack (best-fit
  decreasing), write the pack index, rejected parquet and commit record (`PackStage`'s per-shard
  work, as a Ray actor runs it, without Ray).
- datatrove: read the shard into `Document`s, `DocumentTokenizer` (EOS post-processor, no
  document shuffle: its fastest mode) writing its `.ds` tokens + index.
- encode: `Tokenizer.encode_batch` on the texts already in memory (the floor both build on).

Reader: tokens/s of one process iterating `PackedDataset` samples (input_ids, labels,
position_ids, cu_seqlens) of a seq_len 4096 pack from the page cache; and through
`DataLoader(TorchPackedDataset(stack_micro_batches=True), batch_size=None, num_workers=2)`,
micro-batches of 8 stacked in the workers.

Usage: .venv/bin/python bench/pack.py [--docs 1200] [--repeats 3] [--reader-seconds 5]
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SOURCES = ["wikipedia_en-000", "imdb_reviews-000", "wikipedia_zh-000", "github_code-000",
           "libreoffice_help_de-000", "chinese_poetry-000"]
BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"


def load_docs(n: int) -> list[dict]:
    per = max(1, n // len(SOURCES))
    rows = []
    for name in SOURCES:
        with gzip.open(SHARED / "corpus" / f"{name}.jsonl.gz", "rt", encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if i >= per:
                    break
                d = json.loads(line)
                rows.append({"id": f"{name}:{i}", "url": d.get("url"), "text": d["text"], "lang": d["lang"],
                             "domain": name.rsplit("-", 1)[0]})
    return rows


def tokenizer_dir(tmp: Path) -> Path:
    d = tmp / "tok"
    d.mkdir()
    shutil.copy(SHARED / "anchors" / "deepseek_llm_tokenizer.json", d / "tokenizer.json")
    (d / "tokenizer_config.json").write_text(json.dumps({"bos_token": BOS, "eos_token": EOS}), encoding="utf-8")
    return d


def run_winnow(shard: Path, tok: Path, out: Path, seq_len: int) -> int:
    from winnow.stages.base import ShardTask
    from winnow.stages.pack import PackStage

    shutil.rmtree(out, ignore_errors=True)
    stage = PackStage({"tokenizer": str(tok), "seq_len": seq_len, "packing": "bestfit"})
    stage.setup()
    rec = stage.run_and_commit(ShardTask(0, "part-00000", (str(shard),), "bench"), out)
    # the pack manifest, as `execute` writes it after the last shard
    from winnow.pipeline.shards import write_json_atomic
    from winnow.stages.pack import PACK_MANIFEST, pack_manifest

    write_json_atomic(pack_manifest(stage.config, stage.info(), [rec]), out / PACK_MANIFEST)
    return rec["counters"]["tokens"]


def run_datatrove(shard: Path, tok: Path, out: Path) -> int:
    from datatrove.data import Document
    from datatrove.pipeline.tokens.tokenizer import DocumentTokenizer

    shutil.rmtree(out, ignore_errors=True)
    table = pq.read_table(shard)
    docs = [Document(text=t, id=i) for t, i in zip(table.column("text").to_pylist(), table.column("id").to_pylist())]
    step = DocumentTokenizer(str(out), tokenizer_name_or_path=str(tok / "tokenizer.json"), eos_token=EOS,
                             shuffle_documents=False, save_filename="bench")
    step.run(iter(docs), rank=0, world_size=1)
    return int(step.stats["tokens"].total)


def run_encode(texts: list[str], tok: Path) -> int:
    from tokenizers import Tokenizer

    t = Tokenizer.from_file(str(tok / "tokenizer.json"))
    return sum(len(e.ids) for e in t.encode_batch(texts, add_special_tokens=False))


def timed(fn, *args) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = fn(*args)
    return time.perf_counter() - t0, n


def reader_rate(pack_dir: Path, seq_len: int, seconds: float) -> float:
    from winnow.tokenizer.reader import PackedDataset

    ds = PackedDataset(pack_dir, seq_len, seed=0)
    n = 0
    t0 = time.perf_counter()
    it = iter(ds)
    while time.perf_counter() - t0 < seconds:
        for _ in range(64):
            next(it)
        n += 64
    return n * seq_len / (time.perf_counter() - t0)


def loader_rate(pack_dir: Path, seq_len: int, seconds: float, workers: int) -> float:
    from torch.utils.data import DataLoader

    from winnow.tokenizer.reader import PackedDataset, TorchPackedDataset

    ds = TorchPackedDataset(PackedDataset(pack_dir, seq_len, seed=0, micro_batch=8), stack_micro_batches=True)
    loader = DataLoader(ds, batch_size=None, num_workers=workers, **({"prefetch_factor": 4} if workers else {}))
    n = 0
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        b = next(it)
        n += int(b["input_ids"].numel())
    rate = n / (time.perf_counter() - t0)
    del it
    return rate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=1200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--reader-seconds", type=float, default=5.0)
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="winnow-bench-pack-"))
    try:
        tok = tokenizer_dir(tmp)
        rows = load_docs(args.docs)
        shard = tmp / "docs.parquet"
        pq.write_table(pa.Table.from_pylist(rows), shard)
        texts = [r["text"] for r in rows]
        chars = sum(len(t) for t in texts)
        print(f"{len(rows)} documents, {chars / 1e6:.2f} M characters, tokenizer DeepSeek LLM anchor", file=sys.stderr)
        times: dict[str, list[float]] = {"winnow": [], "datatrove": [], "encode": []}
        tokens: dict[str, int] = {}
        for r in range(args.repeats):
            for name, fn, fargs in (("winnow", run_winnow, (shard, tok, tmp / "winnow", args.seq_len)),
                                    ("datatrove", run_datatrove, (shard, tok, tmp / "datatrove")),
                                    ("encode", run_encode, (texts, tok))):
                sec, n = timed(fn, *fargs)
                times[name].append(sec)
                tokens[name] = n
                print(f"  run {r + 1} {name:9s} {sec:7.2f} s  {n / sec / 1e3:8.1f} k tokens/s", file=sys.stderr)
        med = {k: statistics.median(v) for k, v in times.items()}
        print("\nmedian seconds (tokens):")
        for k in med:
            print(f"  {k:9s} {med[k]:7.2f} s   {tokens[k]:,} tokens   {tokens[k] / med[k] / 1e3:,.1f} k tokens/s")
        # docs/s is the fair unit: winnow adds BOS+EOS, datatrove EOS, encode neither
        pack_vs_datatrove = med["datatrove"] / med["winnow"]
        pack_vs_encode = med["encode"] / med["winnow"]
        m = json.loads((tmp / "winnow" / "pack_manifest.json").read_text())
        print(f"pack (bestfit, seq_len {args.seq_len}): {m['windows']} windows, padding {m['packing_stats']['padding_share']:.4f}, "
              f"split docs {m['packing_stats']['split_share']:.3f}")

        rate = reader_rate(tmp / "winnow", args.seq_len, args.reader_seconds)
        print(f"reader, one process, page cache: {rate / 1e6:.1f} M tokens/s")
        lrates = {}
        for workers in (0, 2):
            lrates[workers] = loader_rate(tmp / "winnow", args.seq_len, args.reader_seconds, workers)
            print(f"reader through DataLoader(micro-batch 8, {workers} workers): {lrates[workers] / 1e6:.1f} M tokens/s")
        print(f"RESULT pack_vs_datatrove={pack_vs_datatrove:.2f} pack_vs_encode={pack_vs_encode:.2f} "
              f"reader_mtok_s={rate / 1e6:.1f} loader0_mtok_s={lrates[0] / 1e6:.1f} loader2_mtok_s={lrates[2] / 1e6:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
