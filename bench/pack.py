"""Benchmark: `winnow pack` vs datatrove's DocumentTokenizer vs bare `Tokenizer.encode_batch`,
and the PackedDataset reader's tokens/s with and without a torch DataLoader.

Same documents (a mix of the shared corpus: en/zh Wikipedia, IMDb reviews, code, LibreOffice
help), same tokenizer (the DeepSeek LLM anchor tokenizer.json), one process each, run in turns.

What each side includes (timed from a parquet shard on disk to finished files):
- winnow: load the tokenizer, read the shard, encode (`PieceCacheEncoder`: the pre-tokenizer
  compiled with numba over the Arrow text buffer, each distinct pre-token's BPE once, by the
  tokenizer's own model), BOS/EOS, write .bin/.idx, pack (best-fit decreasing), write the pack
  index, rejected parquet and commit record (`PackStage`'s per-shard work, as a Ray actor runs it,
  without Ray; a fresh stage each run, so its piece cache starts empty). `winnow` is an actor's
  steady state; `winnow_first` also pays what a fresh actor process pays once before its first
  shard (numba kernels loaded from numba's on-disk cache, the numeric-character table asked of
  `tokenizers`): `pack_vs_datatrove_first_shard`.
- datatrove: read the shard into `Document`s, `DocumentTokenizer` (EOS post-processor, no
  document shuffle: its fastest mode) writing its `.ds` tokens + index.
- encode: load the tokenizer, `Tokenizer.encode_batch` on the texts already in memory (the
  floor both build on); encode_fast: the same with `encode_batch_fast` (no character offsets).

Ratios use CPU seconds of the process (one tokenizer thread everywhere), the least of the
repeats (medians printed too), sides run in a rotating order: on a shared, loaded machine wall
time mostly measures the neighbours, and contention only ever adds CPU time.

Reader: tokens/s of one process iterating `PackedDataset` samples (input_ids, labels,
position_ids, cu_seqlens) of a seq_len 4096 pack from the page cache; and through
`DataLoader(TorchPackedDataset(stack_micro_batches=True), batch_size=None, num_workers=2)`,
micro-batches of 8 stacked in the workers.

Usage: .venv/bin/python bench/pack.py [--docs 1200] [--repeats 3] [--reader-seconds 5]
       .venv/bin/python bench/pack.py --packing-report 0   # concat vs bestfit on the whole corpus + out/demo/pack
       .venv/bin/python bench/pack.py --train-steps 50 --seq-len 2048   # GPU: data-wait share of a GPT loop
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# One tokenizer thread per process, on every side: winnow runs one Ray actor per core and
# datatrove one task per core, so per-process CPU seconds are the throughput that scales (and
# Rayon's idle threads spinning on a loaded machine would otherwise be counted as work).
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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
    stage.check_output({}, [rec], out)  # the pack manifest, as after the last shard
    return rec["counters"]["tokens"]


def run_winnow_first(shard: Path, tok: Path, out: Path, seq_len: int) -> int:
    """`run_winnow` as the first shard of a fresh actor process: the per-process caches emptied."""
    from winnow.tokenizer import piece_cache

    piece_cache.numeric_code_points.cache_clear()
    piece_cache._KERNELS = None
    return run_winnow(shard, tok, out, seq_len)


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


def run_encode_fast(texts: list[str], tok: Path) -> int:
    """`encode_batch_fast`: the same ids without character offsets (what winnow calls)."""
    from tokenizers import Tokenizer

    t = Tokenizer.from_file(str(tok / "tokenizer.json"))
    return sum(len(e.ids) for e in t.encode_batch_fast(texts, add_special_tokens=False))


def timed(fn, *args) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of this process (all its threads: the tokenizer's Rayon pool
    included) and the function's token count. CPU time is what the ratios use: on a shared,
    loaded machine wall time mostly measures the neighbours."""
    t0, c0 = time.perf_counter(), time.process_time()
    n = fn(*args)
    return time.perf_counter() - t0, time.process_time() - c0, n


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


def _cpu_with_children() -> float:
    """CPU seconds of this process plus its finished (reaped) children."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def loader_rate(pack_dir: Path, seq_len: int, seconds: float, workers: int) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second of the loader's main process and its
    workers together) through `DataLoader(TorchPackedDataset(...))`. The CPU figure counts the
    workers' batches prefetched but not taken too, so it is a lower bound."""
    import gc

    from torch.utils.data import DataLoader

    from winnow.tokenizer.reader import PackedDataset, TorchPackedDataset

    ds = TorchPackedDataset(PackedDataset(pack_dir, seq_len, seed=0, micro_batch=8), stack_micro_batches=True)
    loader = DataLoader(ds, batch_size=None, num_workers=workers, **({"prefetch_factor": 4} if workers else {}))
    n = 0
    c0 = _cpu_with_children()
    it = iter(loader)
    next(it)  # worker start-up is not throughput (its CPU time is counted: conservative)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        b = next(it)
        n += int(b["input_ids"].numel())
    rate = n / (time.perf_counter() - t0)
    if workers:
        it._shutdown_workers()  # join the workers so their CPU time is counted
    del it, b
    gc.collect()
    return rate, n / (_cpu_with_children() - c0)


def corpus_lengths(per_file: int, cache: Path | None) -> dict[str, np.ndarray]:
    """Token counts (BOS + text + EOS, DeepSeek LLM anchor tokenizer) of the documents of every
    corpus file: the first `per_file` of each, or all of them when `per_file` is 0. Saved per
    file under `cache` (keyed by file name, size and count), so a long run can be resumed."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(SHARED / "anchors" / "deepseek_llm_tokenizer.json"))
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    out: dict[str, np.ndarray] = {}
    for f in sorted((SHARED / "corpus").glob("*.jsonl.gz")):
        key = f"{f.name}.{f.stat().st_size}.{per_file or 'all'}.npy"
        if cache is not None and (cache / key).is_file():
            out[f.name] = np.load(cache / key)
            continue
        lengths: list[int] = []
        batch: list[str] = []
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if per_file and i >= per_file:
                    break
                batch.append(json.loads(line)["text"])
                if len(batch) == 2000:
                    lengths.extend(len(e.ids) + 2 for e in encode(batch, add_special_tokens=False))
                    batch = []
        if batch:
            lengths.extend(len(e.ids) + 2 for e in encode(batch, add_special_tokens=False))
        out[f.name] = np.asarray(lengths, dtype=np.int64)
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            np.save(cache / (key + ".tmp.npy"), out[f.name])
            (cache / (key + ".tmp.npy")).replace(cache / key)
        print(f"  {f.name}: {len(lengths)} documents, {sum(lengths):,} tokens", file=sys.stderr, flush=True)
    return out


def pack_lengths(pack_dir: Path) -> dict[str, np.ndarray]:
    """Document token counts of every shard of an existing pack (its Megatron `.idx` files)."""
    from winnow.tokenizer.indexed import IndexedReader

    m = json.loads((pack_dir / "pack_manifest.json").read_text())
    return {s["name"]: np.asarray(IndexedReader(pack_dir / s["bin"]["path"], pack_dir / s["idx"]["path"]).sequence_lengths,
                                  dtype=np.int64) for s in m["shards"]}


def report_packing(title: str, shards: dict[str, np.ndarray], seq_lens: list[int]) -> list[dict]:
    """Concat vs best-fit on these document lengths, packed shard by shard as `winnow pack`
    does (one shard per entry), figures summed over shards. Packing depends only on lengths."""
    from winnow.tokenizer.packing import pack, packing_stats

    allx = np.concatenate(list(shards.values())) if shards else np.zeros(0, np.int64)
    print(f"{title}: {len(shards)} shard(s), {allx.size:,} documents, {int(allx.sum()):,} tokens, "
          f"median {int(np.median(allx)) if allx.size else 0} tokens/doc")
    rows = []
    for seq_len in seq_lens:
        for packing in ("concat", "bestfit"):
            tot = {"windows": 0, "tokens": 0, "tokens_in_windows": 0, "pad_tokens": 0, "docs": 0, "docs_split": 0}
            for lengths in shards.values():
                st = packing_stats(pack(lengths, seq_len, packing), lengths)
                for k in tot:
                    tot[k] += int(st[k])
            slots = tot["windows"] * (seq_len + 1)
            row = {"set": title, "seq_len": seq_len, "packing": packing, **tot,
                   "split_share": tot["docs_split"] / tot["docs"] if tot["docs"] else 0.0,
                   "padding_share": tot["pad_tokens"] / slots if slots else 0.0,
                   "tokens_kept_share": tot["tokens_in_windows"] / tot["tokens"] if tot["tokens"] else 1.0,
                   "docs_longer": int(np.count_nonzero(allx > seq_len + 1))}
            rows.append(row)
            print(f"  seq_len {seq_len:5d} {packing:8s} windows {row['windows']:8,d}  split docs {row['split_share']:.4f} "
                  f"({row['docs_split']:,}; {row['docs_longer']:,} longer than a window)  padding {row['padding_share']:.4f}  "
                  f"tokens kept {row['tokens_kept_share']:.4f}")
    return rows


def packing_report(per_file: int, seq_lens: list[int], cache: Path | None, demo_pack: Path | None) -> None:
    """The issue's packing report: concat vs best-fit on the demo's pack (if given and built)
    and on the shared corpus (all of it with `per_file` 0; one shard, documents in file order)."""
    if demo_pack is not None:
        if (demo_pack / "pack_manifest.json").is_file():
            report_packing(f"demo ({demo_pack})", pack_lengths(demo_pack), seq_lens)
        else:
            print(f"demo: {demo_pack}/pack_manifest.json not found (run `make demo` first)")
    lengths = corpus_lengths(per_file, cache)
    report_packing("corpus" + (f" (first {per_file} per file)" if per_file else ""),
                   {"corpus": np.concatenate(list(lengths.values()))}, seq_lens)


def train_loop(steps: int, seq_len: int, docs: int, micro_batch: int, workers: int) -> None:
    """A small GPT trained from a winnow pack through `TorchPackedDataset` + DataLoader; prints
    the share of step time spent waiting for data. On CUDA: a ~350M-parameter model (24 layers,
    d=1024, tied 100k embedding) in bf16; on CPU a tiny one, to check the loop runs."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from winnow.tokenizer.reader import PackedDataset, TorchPackedDataset

    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    d, layers, heads = (1024, 24, 16) if cuda else (64, 2, 2)
    tmp = Path(tempfile.mkdtemp(prefix="winnow-train-"))
    try:
        tok = tokenizer_dir(tmp)
        rows = load_docs(docs)
        shard = tmp / "docs.parquet"
        pq.write_table(pa.Table.from_pylist(rows), shard)
        run_winnow(shard, tok, tmp / "pack", seq_len)
        vocab = json.loads((tmp / "pack" / "pack_manifest.json").read_text())["vocab_size"]

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
                self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
                self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

            def forward(self, x):
                b, t, _ = x.shape
                q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
                a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
                x = x + self.proj(a)
                return x + self.mlp(self.ln2(x))

        class GPT(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb, self.pos = nn.Embedding(vocab, d), nn.Embedding(seq_len, d)
                self.blocks = nn.ModuleList(Block() for _ in range(layers))
                self.ln = nn.LayerNorm(d)
                nn.init.normal_(self.emb.weight, std=0.02)  # tied output layer: keep the first logits small
                nn.init.normal_(self.pos.weight, std=0.02)

            def forward(self, ids, pos):
                x = self.emb(ids) + self.pos(pos)
                for blk in self.blocks:
                    x = blk(x)
                return self.ln(x) @ self.emb.weight.T

        model = GPT().to(dev)
        params = sum(p.numel() for p in model.parameters())
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=cuda)
        ds = TorchPackedDataset(PackedDataset(tmp / "pack", seq_len, seed=0, micro_batch=micro_batch),
                                stack_micro_batches=True)
        loader = DataLoader(ds, batch_size=None, num_workers=workers, pin_memory=cuda,
                            **({"prefetch_factor": 4} if workers else {}))
        it = iter(loader)
        wait = total = 0.0
        tokens = 0
        for step in range(steps + 3):
            t0 = time.perf_counter()
            batch = next(it)
            t1 = time.perf_counter()
            ids = batch["input_ids"].to(dev, non_blocking=True)
            labels = batch["labels"].to(dev, non_blocking=True)
            pos = batch["position_ids"].to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                logits = model(ids, pos)
                loss = F.cross_entropy(logits.float().view(-1, vocab), labels.view(-1), ignore_index=-100)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()
            t2 = time.perf_counter()
            if step >= 3:  # warm-up steps (compilation, allocator) are not counted
                wait += t1 - t0
                total += t2 - t0
                tokens += ids.numel()
        print(f"train loop on {dev.type}: {params / 1e6:.0f} M parameters, {steps} steps of {micro_batch} x {seq_len}, "
              f"{tokens / total / 1e3:.1f} k tokens/s, loss {loss.item():.3f}")
        print(f"RESULT data_wait_share={wait / total:.4f} train_ktok_s={tokens / total / 1e3:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=1200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--reader-seconds", type=float, default=5.0)
    ap.add_argument("--packing-report", type=int, default=None, metavar="N",
                    help="only report concat vs bestfit on the first N documents of every corpus file "
                         "(0: all of the corpus) and on --demo-pack")
    ap.add_argument("--demo-pack", type=Path, default=ROOT / "out" / "demo" / "pack",
                    help="a built pack whose .idx lengths the packing report also packs both ways")
    ap.add_argument("--lengths-cache", type=Path, default=Path(tempfile.gettempdir()) / "winnow-pack-lengths",
                    help="where the packing report keeps corpus token counts per file (resumable)")
    ap.add_argument("--train-steps", type=int, default=0, metavar="N",
                    help="only run a small GPT training loop fed by the reader for N steps and report the "
                         "share of step time spent waiting for data (CUDA when present)")
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the training loop")
    args = ap.parse_args(argv)
    if args.train_steps:
        train_loop(args.train_steps, args.seq_len, args.docs, args.micro_batch, args.workers)
        return 0
    if args.packing_report is not None:
        packing_report(args.packing_report, [2048, 4096], args.lengths_cache, args.demo_pack)
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="winnow-bench-pack-"))
    try:
        tok = tokenizer_dir(tmp)
        rows = load_docs(args.docs)
        shard = tmp / "docs.parquet"
        pq.write_table(pa.Table.from_pylist(rows), shard)
        texts = [r["text"] for r in rows]
        chars = sum(len(t) for t in texts)
        print(f"{len(rows)} documents, {chars / 1e6:.2f} M characters, tokenizer DeepSeek LLM anchor", file=sys.stderr)
        times: dict[str, list[float]] = {"winnow": [], "winnow_first": [], "datatrove": [], "encode": [], "encode_fast": []}
        cpu: dict[str, list[float]] = {k: [] for k in times}
        tokens: dict[str, int] = {}
        sides = [("winnow", run_winnow, (shard, tok, tmp / "winnow", args.seq_len)),
                 ("winnow_first", run_winnow_first, (shard, tok, tmp / "winnow_first", args.seq_len)),
                 ("datatrove", run_datatrove, (shard, tok, tmp / "datatrove")),
                 ("encode", run_encode, (texts, tok)),
                 ("encode_fast", run_encode_fast, (texts, tok))]
        for r in range(args.repeats):
            # each repeat starts with another side: no side always runs after the same one
            for name, fn, fargs in sides[r % len(sides):] + sides[:r % len(sides)]:
                sec, csec, n = timed(fn, *fargs)
                times[name].append(sec)
                cpu[name].append(csec)
                tokens[name] = n
                print(f"  run {r + 1} {name:11s} wall {sec:7.2f} s  cpu {csec:7.2f} s", file=sys.stderr)
        med = {k: statistics.median(v) for k, v in times.items()}
        cmed = {k: statistics.median(v) for k, v in cpu.items()}
        cmin = {k: min(v) for k, v in cpu.items()}
        print("\nsame documents; winnow adds BOS+EOS, datatrove EOS, encode neither. CPU seconds: the least of "
              f"{args.repeats} runs (contention on a shared machine only ever adds time) and the median")
        for k in med:
            print(f"  {k:11s} cpu min {cmin[k]:6.2f} s  median {cmed[k]:6.2f} s  wall median {med[k]:6.2f} s  "
                  f"{tokens[k]:,} tokens  {tokens[k] / cmin[k] / 1e3:,.1f} k tokens per cpu-second")
        pack_vs_datatrove = cmin["datatrove"] / cmin["winnow"]
        pack_vs_encode = cmin["encode"] / cmin["winnow"]
        first_vs_datatrove = cmin["datatrove"] / cmin["winnow_first"]
        print(f"CPU-time ratios (min): winnow vs datatrove {pack_vs_datatrove:.2f}, vs encode_batch {pack_vs_encode:.2f}, "
              f"vs encode_batch_fast {cmin['encode_fast'] / cmin['winnow']:.2f}")
        print(f"first shard of a fresh actor process vs datatrove (min): {first_vs_datatrove:.2f}")
        print(f"CPU-time ratios (median): winnow vs datatrove {cmed['datatrove'] / cmed['winnow']:.2f}, "
              f"vs encode_batch {cmed['encode'] / cmed['winnow']:.2f}, "
              f"vs encode_batch_fast {cmed['encode_fast'] / cmed['winnow']:.2f}")
        print(f"wall-time ratios (noisy on a shared machine): vs datatrove {med['datatrove'] / med['winnow']:.2f}, "
              f"vs encode_batch {med['encode'] / med['winnow']:.2f}")
        m = json.loads((tmp / "winnow" / "pack_manifest.json").read_text())
        print(f"pack (bestfit, seq_len {args.seq_len}): {m['windows']} windows, padding {m['packing_stats']['padding_share']:.4f}, "
              f"split docs {m['packing_stats']['split_share']:.3f}")

        rate = reader_rate(tmp / "winnow", args.seq_len, args.reader_seconds)
        print(f"reader, one process, page cache: {rate / 1e6:.1f} M tokens/s")
        lrates, lcpu = {}, {}
        for workers in (0, 2):
            lrates[workers], lcpu[workers] = loader_rate(tmp / "winnow", args.seq_len, args.reader_seconds, workers)
            print(f"reader through DataLoader(micro-batch 8, {workers} workers): {lrates[workers] / 1e6:.1f} M tokens/s, "
                  f"{lcpu[workers] / 1e6:.1f} M tokens per CPU-second (main process + workers)")
        print(f"RESULT pack_vs_datatrove={pack_vs_datatrove:.2f} pack_vs_encode={pack_vs_encode:.2f} "
              f"pack_vs_datatrove_first_shard={first_vs_datatrove:.2f} "
              f"reader_mtok_s={rate / 1e6:.1f} loader0_mtok_s={lrates[0] / 1e6:.1f} loader2_mtok_s={lrates[2] / 1e6:.1f} "
              f"loader2_mtok_cpu_s={lcpu[2] / 1e6:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
