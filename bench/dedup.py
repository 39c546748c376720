"""Benchmark of `winnow dedup`: signatures and connected components against the peers on the same
data in one run, and a projection to CommonCrawl scale from the figures measured here.

What it measures, and what each side includes:

- **Signatures** (per core): winnow's signature phase kernel (normalise, split, hash 5-gram
  shingles, MinHash, and the bottom-k verification sketch) over Arrow batches of the real English
  corpus (the 697 CC-MAIN-2019-30 documents + WikiText-2 articles), against
  * datasketch ``MinHash(num_perm=128).update_batch`` on pre-made 5-gram shingles (tokenisation
    not timed: conservative for winnow, which times its own), winnow at 128 permutations;
  * datatrove ``MinhashDedupSignature`` (14×8, xxhash-64, its ``simplify_text``) run over the same
    documents as datatrove ``Document``s, winnow at 14×8: with its default spaCy English word
    tokenizer (``sig_vs_datatrove``; spaCy is most of its time, so on every 3rd document), and with
    a whitespace word tokenizer (``sig_vs_datatrove_split``: the same work as winnow's split).
    datatrove also writes its 14 sorted bucket files; winnow's kernel writes nothing.
  Throughput is text MB per CPU second of this process (``time.process_time``: every contender
  is single-threaded and the machine is shared); median of repetitions.
- **Components**: the same synthetic LSH-like duplicate pairs (Zipf cluster sizes), read from
  disk, result written, pairs per CPU second: datatrove ``MinhashDedupCluster`` (its .dups input,
  Python union-find) against winnow's union-find fast path and winnow's distributed path
  (``union_find_max_edges=0``: the stage's own phase functions -- per-bucket contraction,
  large/small-star rounds over 8 partitions with Arrow work files between rounds, final (node,
  root) files -- run one after another in this process; Ray's dispatch not included)
  (``cc_dist_vs_datatrove``).
- **Projection**: core-hours to deduplicate 1 and 91 dumps of 3·10^9 documents, from the
  per-document costs, verified pairs per document and peak memory of a warm full stage run (Ray,
  2 workers) on the real documents, and the mean text size of a CC-MAIN-2019-30 document.
- ``--quality``: the whole stage on the graded English and Chinese sets (tests/dedup_graded.py),
  precision / recall against exact Jaccard ≥ 0.8; ``cjk=char`` vs ``cjk=jieba`` for Chinese.
- ``--scale``: 10^8 synthetic edges through the distributed components phase on Ray (16
  partitions, 2 workers): wall time and peak RSS per worker.

The last line is ``RESULT sig_vs_datatrove_split=… cc_dist_vs_datatrove=… sig_vs_datatrove=… …``.

Run: ``.venv/bin/python bench/dedup.py`` from the repo root (about 3-5 minutes on 2 cores;
``--quick`` for a smoke run, ``--quality`` +3-4 minutes, ``--scale`` ~10-20 more minutes;
``--only-components`` for the components comparison alone, with its own RESULT line).
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # dedup_graded: the graded sets and their scoring (evaluation code)

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from winnow.stages.dedup import components as cc  # noqa: E402
from winnow.stages.dedup import minhash as mh  # noqa: E402
from winnow.stages.dedup import normalize as nz  # noqa: E402

import dedup_graded as graded  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data"


def cpu_timed(fn: Callable[[], Any], reps: int) -> tuple[float, float, Any]:
    """(median CPU seconds, median wall seconds, last result) over `reps` runs."""
    cpu, wall, out = [], [], None
    for _ in range(reps):
        gc.collect()
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall), out


def mb(texts: list[str]) -> float:
    return sum(len(t.encode("utf-8")) for t in texts) / 1e6


# ---- signatures ------------------------------------------------------------------------------

def winnow_signatures(texts: list[str], num_perm: int, verify_k: int, backend: str = "auto",
                      cjk: str = "char", batch: int = 1024) -> int:
    arr = pa.array(texts, pa.string())
    n = 0
    for i in range(0, len(arr), batch):
        sig, _, _, _ = mh.sketches(arr.slice(i, batch), num_perm=num_perm, seed=1, ngram=5, cjk=cjk,
                                   verify_k=verify_k, backend=backend)
        n += len(sig)
    return n


_WORD = re.compile(r"\w+")


def datasketch_shingles(texts: list[str]) -> list[list[bytes]]:
    out = []
    for t in texts:
        w = _WORD.findall(t.lower())
        out.append([" ".join(w[i:i + 5]).encode("utf-8") for i in range(max(1, len(w) - 4))] if w else [])
    return out


def datasketch_signatures(shingled: list[list[bytes]], num_perm: int = 128) -> int:
    from datasketch import MinHash

    for sh in shingled:
        m = MinHash(num_perm=num_perm)
        m.update_batch(sh)
    return len(shingled)


def _patch_datatrove_xxhash() -> None:
    """datatrove's default hash (xxhash64 of the shingle *str*) relies on xxhash < 4 accepting str;
    xxhash 4 wants bytes. Encode first: the same hash values as before, at the cost of one encode."""
    import xxhash
    from datatrove.utils.hashes import xxhash as dt_xxhash

    dt_xxhash.xxhash64 = lambda s: xxhash.xxh64_intdigest(s.encode("utf-8") if isinstance(s, str) else s)
    dt_xxhash.xxhash32 = lambda s: xxhash.xxh32_intdigest(s.encode("utf-8") if isinstance(s, str) else s)


def _whitespace_tokenizer():
    """A datatrove ``WordTokenizer`` that splits on whitespace (``str.split``): what winnow's own
    kernel does after normalisation, instead of datatrove's default spaCy English tokenizer."""
    from datatrove.utils.word_tokenizers import WordTokenizer

    class WhitespaceTokenizer(WordTokenizer):
        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]

    return WhitespaceTokenizer("en")


def datatrove_signatures(texts: list[str], folder: str, split: bool = False) -> int:
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import MinhashDedupSignature

    _patch_datatrove_xxhash()
    shutil.rmtree(folder, ignore_errors=True)
    step = MinhashDedupSignature(output_folder=folder)
    if split:
        step.word_tokenizer = _whitespace_tokenizer()
    step.run(iter(Document(text=t, id=str(i)) for i, t in enumerate(texts)), rank=0, world_size=1)
    return len(texts)


def bench_signatures(texts: list[str], reps: int, tmp: Path) -> dict[str, float]:
    size = mb(texts)
    print(f"\n== signatures: {len(texts)} English documents, {size:.2f} MB ==")
    winnow_signatures(texts[:50], 112, 512)  # JIT warm-up (cached after the first run)
    res: dict[str, float] = {}
    c, w, _ = cpu_timed(lambda: winnow_signatures(texts, 112, 512), reps)
    res["winnow_112"] = size / c
    print(f"winnow 14x8=112 perm + bottom-k 512 (pipeline)  {size / c:8.2f} MB/s/core  (wall {size / w:.2f} MB/s)")
    c, w, _ = cpu_timed(lambda: winnow_signatures(texts, 128, 512), reps)
    res["winnow_128"] = size / c
    print(f"winnow 128 perm + bottom-k 512                 {size / c:8.2f} MB/s/core")
    c, w, _ = cpu_timed(lambda: winnow_signatures(texts, 112, 0), reps)
    print(f"winnow 112 perm, MinHash only                  {size / c:8.2f} MB/s/core")
    c, w, _ = cpu_timed(lambda: winnow_signatures(texts, 112, 512, backend="numpy"), 1)
    res["winnow_numpy"] = size / c
    print(f"winnow numpy backend (no numba), 112 + bk512   {size / c:8.2f} MB/s/core")
    arr = pa.array(texts, pa.string())
    c, _, (tok, ntok) = cpu_timed(lambda: mh.tokenize_batch(arr, backend="numpy"), 1)
    c2, _, _ = cpu_timed(lambda: mh.tokenize_batch(arr, backend="numba"), reps)
    print(f"  tokenizer alone: numpy {size / c:.1f} MB/s vs numba {size / c2:.1f} MB/s "
          f"(the numpy path is the limit → compiled kernel)")
    hv, nsh = mh.shingle_hashes(tok, ntok, 5)
    c, _, _ = cpu_timed(lambda: mh.minhash(hv, nsh, 112, 1, backend="numpy"), reps)
    c2, _, _ = cpu_timed(lambda: mh.minhash(hv, nsh, 112, 1, backend="numba"), reps)
    print(f"  MinHash alone (112): numpy {len(hv) * 112 / c / 1e6:.0f} vs numba {len(hv) * 112 / c2 / 1e6:.0f} M values/s")

    shingled = datasketch_shingles(texts)
    c, w, _ = cpu_timed(lambda: datasketch_signatures(shingled), max(1, reps - 2))
    res["datasketch"] = size / c
    print(f"datasketch MinHash(128).update_batch          {size / c:8.2f} MB/s/core  (shingling not timed)")
    c_tok, _, _ = cpu_timed(lambda: datasketch_shingles(texts), 1)
    print(f"  datasketch incl. a regex tokenizer           {size / (c + c_tok):8.2f} MB/s/core")
    # datatrove's default (spaCy) tokenizer is slow: time it on a third of the documents
    spacy_texts = texts[::3]
    c, w, _ = cpu_timed(lambda: datatrove_signatures(spacy_texts, str(tmp / "dt_sigs")), 1)
    res["datatrove"] = mb(spacy_texts) / c
    print(f"datatrove MinhashDedupSignature (default: spaCy) {res['datatrove']:8.2f} MB/s/core  "
          f"({len(spacy_texts) / c:.0f} docs/s/core, on every 3rd document)")
    c, w, _ = cpu_timed(lambda: datatrove_signatures(texts, str(tmp / "dt_sigs"), split=True), max(1, reps - 2))
    res["datatrove_split"] = size / c
    print(f"datatrove MinhashDedupSignature, whitespace tokenizer {size / c:8.2f} MB/s/core")
    print("  datatrove includes: simplify_text, word split, xxhash64 of every 5-gram, 112 permutations in numpy, "
          "writing its 14 sorted bucket files; winnow includes: normalise, split, hash, 112 MinHash + bottom-k 512 "
          "over Arrow batches, no file written (the stage's writing is in the projection's phase figures)")
    res["vs_datasketch"] = res["winnow_128"] / res["datasketch"]
    res["vs_datatrove"] = res["winnow_112"] / res["datatrove"]
    res["vs_datatrove_split"] = res["winnow_112"] / res["datatrove_split"]
    print(f"ratios: vs datasketch {res['vs_datasketch']:.1f}x (goal ≥5), vs datatrove {res['vs_datatrove']:.1f}x "
          f"(goal ≥25), vs datatrove with a whitespace split {res['vs_datatrove_split']:.1f}x (goal ≥10), "
          f"{res['winnow_112']:.1f} MB/s/core (goal ≥20)")
    return res


def bench_chinese(shared: Path, reps: int) -> None:
    texts = graded.chinese_bases(shared)
    size = mb(texts)
    print(f"\n== Chinese: {len(texts)} documents, {size:.2f} MB ==")
    nz._jieba()
    c, _, _ = cpu_timed(lambda: winnow_signatures(texts, 112, 512, cjk="char"), reps)
    print(f"cjk=char   {size / c:8.2f} MB/s/core")
    c, _, _ = cpu_timed(lambda: winnow_signatures(texts, 112, 512, cjk="jieba"), 1)
    print(f"cjk=jieba  {size / c:8.2f} MB/s/core")
    # do the two tokenisations agree on which pairs are near-duplicates?
    fams = graded.build_families(texts[::2], seed=0, zh=True)
    agree = sum((graded.exact_jaccard(f.base, f.variant, cjk="char") >= 0.8)
                == (graded.exact_jaccard(f.base, f.variant, cjk="jieba") >= 0.8) for f in fams)
    print(f"truth (J≥0.8) agrees between char and jieba 5-grams on {agree}/{len(fams)} graded pairs")


# ---- quality (whole stage on Ray) ---------------------------------------------------------------

def run_stage_on(table: pa.Table, work: Path, shards: int = 2, **cfg: Any) -> tuple[dict, Any]:
    from winnow.pipeline.runner import RayRuntime, run_stage
    from winnow.stages.dedup import DedupStage

    inp = work / "in"
    shutil.rmtree(work, ignore_errors=True)
    inp.mkdir(parents=True)
    step = -(-table.num_rows // shards)
    for i in range(shards):
        pq.write_table(table.slice(i * step, step), inp / f"part-{i:05d}.parquet")
    stage = DedupStage({"partitions": 4, "keep_work": True, **cfg})
    t0 = time.perf_counter()
    m = run_stage(stage, [str(inp)], work / "out", RayRuntime(workers=2, show_progress=False))
    m["_wall_s"] = time.perf_counter() - t0
    return m, stage


def bench_quality(shared: Path, tmp: Path, zh_jieba: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sets = [("English", graded.build_families(graded.english_bases(shared), seed=0), "char"),
            ("Chinese cjk=char", graded.build_families(graded.chinese_bases(shared), seed=0, zh=True), "char")]
    if zh_jieba:
        sets.append(("Chinese cjk=jieba", sets[1][1], "jieba"))
    print("\n== quality: graded near-duplicate sets, whole stage on Ray (2 workers) ==")
    for name, fams, cjk in sets:
        m, stage = run_stage_on(graded.families_table(fams), tmp / f"q-{name.split()[0]}-{cjk}", cjk=cjk)
        s = graded.score(fams, graded.cluster_labels(tmp / f"q-{name.split()[0]}-{cjk}" / "out"), cjk=cjk)
        print(f"{name:18s} {len(fams)} families: {s.line()}  [{m['_wall_s']:.1f}s]")
        for g, v in s.per_grade.items():
            print(f"    {g:14s} n={v['n']:4d} mean J={v['mean_jaccard']:.3f} J≥0.8: {v['positive']:4d} "
                  f"detected: {v['detected']:4d}")
        out[name] = s
    return out


# ---- components ---------------------------------------------------------------------------------

def lsh_like_pairs(n_pairs: int, seed: int = 0, n_files: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Pairs shaped like LSH output: Zipf-sized clusters, each a random tree of edges to earlier
    members (star-ish), documents spread over `n_files` input files."""
    rng = np.random.default_rng(seed)
    sizes = np.minimum(rng.zipf(1.8, n_pairs) + 1, 200_000)
    sizes = sizes[np.cumsum(sizes - 1) <= n_pairs]
    n = int(sizes.sum())
    docs = rng.permutation(n).astype(np.int64)
    keys = ((docs % n_files) << 32) | (docs // n_files)
    starts = np.cumsum(sizes) - sizes
    cl = np.repeat(np.arange(len(sizes)), sizes)
    idx = np.arange(n)
    parent = starts[cl] + (rng.random(n) * (idx - starts[cl])).astype(np.int64)
    m = idx != starts[cl]
    return keys[idx[m]], keys[parent[m]]


def datatrove_cluster(folder: Path) -> None:
    from datatrove.pipeline.dedup.minhash import MinhashDedupCluster

    out = folder.parent / "dt_out"
    shutil.rmtree(out, ignore_errors=True)
    MinhashDedupCluster(input_folder=str(folder), output_folder=str(out)).run()


def bench_components(n_pairs: int, reps: int, tmp: Path) -> dict[str, float]:
    from winnow.stages.dedup import shuffle as sh
    from winnow.stages.dedup.phases import EDGE_SCHEMA, FINAL_SCHEMA

    a, b = lsh_like_pairs(n_pairs)
    n = len(a)
    print(f"\n== components: {n:,} LSH-like pairs over {len(np.unique(np.concatenate([a, b]))):,} documents ==")
    dups = tmp / "dt_dups"
    shutil.rmtree(dups, ignore_errors=True)
    dups.mkdir(parents=True)
    rows = np.stack([a >> 32, a & 0xFFFFFFFF, b >> 32, b & 0xFFFFFFFF], axis=1).astype("<u4")
    for k, chunk in enumerate(np.array_split(rows, 14)):  # one .dups file per LSH bucket, as datatrove writes
        chunk.tofile(dups / f"{k:05d}_00.dups")
    edge_file = tmp / "edges.arrow"
    sh.write_table(edge_file, pa.table([a, b], schema=EDGE_SCHEMA))

    def winnow_uf() -> int:
        t = sh.read_all([edge_file], EDGE_SCHEMA)
        nodes, roots = cc.union_find(t.column("u").to_numpy(), t.column("v").to_numpy())
        sh.write_table(tmp / "uf_out.arrow", pa.table([nodes, roots], schema=FINAL_SCHEMA))
        return len(nodes)

    def winnow_dist() -> int:
        return star_rounds(edge_file, tmp / "cc_work", partitions=8)

    res: dict[str, float] = {}
    c, _, _ = cpu_timed(lambda: datatrove_cluster(dups), reps)
    res["datatrove"] = n / c
    print(f"datatrove MinhashDedupCluster (union-find)   {n / c / 1e6:8.3f} M pairs/s/core")
    c, _, _ = cpu_timed(winnow_uf, reps)
    res["uf"] = n / c
    print(f"winnow union-find fast path                 {n / c / 1e6:8.3f} M pairs/s/core")
    c, w, rounds = cpu_timed(winnow_dist, reps)
    res["dist"] = n / c
    print(f"winnow distributed path (union_find_max_edges=0): {rounds} large/small-star rounds over 8 partitions "
          f"{n / c / 1e6:8.3f} M pairs/s/core")
    print("  each side reads the pairs from disk and writes its result. datatrove: .dups files -> Python union-find "
          "-> .remove files, one process. winnow distributed: the stage's own phase functions (verify's local "
          "contraction per bucket, ph.cc_step per partition per round, ph.cc_final), run one after another in this "
          "process, with every Arrow work file between rounds; Ray's task dispatch is not included (--scale runs it on Ray)")
    # same components?
    u = sh.read_all([tmp / "uf_out.arrow"], FINAL_SCHEMA)
    d = sh.read_all(sorted((tmp / "cc_work" / "cc-final").glob("part-*.arrow")), FINAL_SCHEMA)
    d = d.take(pa.array(np.argsort(d.column("node").to_numpy(), kind="stable")))
    assert u.equals(d), "union-find and star rounds disagree"
    print(f"ratios: union-find {res['uf'] / res['datatrove']:.1f}x, distributed star rounds "
          f"{res['dist'] / res['datatrove']:.1f}x datatrove (goal ≥3x)")
    return res


def _plan(work: Path, partitions: int):
    from winnow.stages.dedup import phases as ph

    return ph.Plan(work=str(work), inputs=(), shard_offset=0, partitions=partitions, num_perm=112, num_bands=14,
                   rows_per_band=8, ngram=5, seed=1, cjk="char", scope="global", exact=True, verify=True,
                   verify_k=512, jaccard_threshold=0.8, batch_size=1024, backend="auto", keep_rejected_text=False)


def star_rounds(edge_file: Path, work: Path, partitions: int) -> int:
    """The stage's distributed components path on verified pairs, in this process: pairs by bucket
    of their centre, each bucket contracted and written as the verify phase does, then
    ``cc_step`` rounds to the fixed point and ``cc_final`` (what ``DedupStage._components`` maps
    over Ray tasks). Returns the number of rounds."""
    from winnow.stages.dedup import phases as ph
    from winnow.stages.dedup import shuffle as sh

    shutil.rmtree(work, ignore_errors=True)
    plan = _plan(work, partitions)
    t = sh.read_all([edge_file], ph.EDGE_SCHEMA)
    u, v = t.column("u").to_numpy(), t.column("v").to_numpy()
    bucket = ph.shard_bucket(v, partitions)
    for g in range(partitions):
        sel = bucket == g
        ph._write_cc_input(plan, plan.path("cc-000", g), u[sel], v[sel], contract=True)
    changed: list[int] = []
    k = 0
    while not (k >= 2 and k % 2 == 0 and changed[-1] == 0 and changed[-2] == 0):
        changed.append(sum(ph.cc_step(plan, k, j)["changed"] for j in range(partitions)))
        k += 1
        if k - 1 >= 1:
            shutil.rmtree(work / f"cc-{k - 1:03d}", ignore_errors=True)
    for j in range(partitions):
        ph.cc_final(plan, k, j)
    return k // 2


# ---- projection ---------------------------------------------------------------------------------

def projection(shared: Path, tmp: Path, sig_mb_s: float, cc_pairs_s: float) -> None:
    """Per-document costs of a full, warm stage run on real English + Chinese text, scaled up.
    Every number printed is measured here; the only inputs are the corpus sizes to project to."""
    en = graded.english_bases(shared)
    zh = graded.chinese_bases(shared)
    texts = en + zh
    table = pa.table({"id": [f"d{i:06d}" for i in range(len(texts))], "text": texts})
    docs = table.num_rows
    text_mb = mb(texts)
    cc = shared / "dolma" / "CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"
    cc_texts = [json.loads(line)["text"] for line in gzip.open(cc, "rt", encoding="utf-8")]
    doc_bytes = mb(cc_texts) * 1e6 / len(cc_texts)
    run_stage_on(table.slice(0, 200), tmp / "warm")          # start workers, load kernels
    m, stage = run_stage_on(table, tmp / "projection", shards=4)
    stats = stage.phase_stats
    counters = m.get("counters", {})
    edges = float(counters.get("verified_pairs", 0))
    print(f"\n== projection: a warm full stage run on {docs:,} real en+zh documents ({text_mb:.1f} MB, 4 shards, "
          f"2 workers): {m['_wall_s']:.1f}s wall, {m['rejected']:,} removed, {edges:,.0f} verified pairs ==")
    for k, v in stats.items():
        print(f"  {k:28s} wall {v['wall_s']:6.2f}s  cpu {v['cpu_s']:6.2f}s  tasks {int(v['tasks']):3d}  "
              f"peak RSS/worker {v['max_rss_mb']:6.0f} MB")
    sig_cpu = stats["minhash"]["cpu_s"]
    other_cpu = sum(v["cpu_s"] for k, v in stats.items() if k != "minhash" and not k.startswith("components"))
    per_doc_other = other_cpu / docs
    peak = max(v["max_rss_mb"] for v in stats.values())
    stage_mb_s = text_mb / max(sig_cpu, 1e-9)
    edge_rate = edges / docs
    print(f"  measured per core: signature phase {stage_mb_s:.1f} MB/s in the stage (parquet read, content hash, "
          f"Arrow output included; kernel alone {sig_mb_s:.1f}); every other phase together {per_doc_other * 1e6:.0f} "
          f"µs/doc; components {cc_pairs_s / 1e6:.2f} M pairs/s (distributed path, above); {edge_rate:.4f} verified "
          f"pairs/doc in this sample; {doc_bytes / 1e3:.2f} KB of text per CC-MAIN-2019-30 document")
    for dumps in (1, 91):
        n = dumps * 3e9
        sig_h = n * doc_bytes / 1e6 / stage_mb_s / 3600
        other_h = n * per_doc_other / 3600
        cc_h = n * edge_rate / cc_pairs_s / 3600
        cc_per_edge_h = n / cc_pairs_s / 3600
        print(f"  {dumps:2d} dump(s), {n:.1e} docs x {doc_bytes / 1e3:.2f} KB: signatures {sig_h:,.0f} + other phases "
              f"{other_h:,.0f} + components {cc_h:,.0f} = {sig_h + other_h + cc_h:,.0f} core-hours at this sample's "
              f"pair rate (each further verified pair per document adds {cc_per_edge_h:,.0f})")
    print(f"  peak RSS per worker in this run: {peak:.0f} MB (a Ray worker's own memory included)")


# ---- 10^8 edges on Ray ----------------------------------------------------------------------------

def bench_scale(n_edges: int, tmp: Path, partitions: int = 16) -> float:
    from winnow.pipeline.runner import RayRuntime
    from winnow.stages.dedup import DedupStage
    from winnow.stages.dedup import phases as ph
    from winnow.stages.dedup import shuffle as sh

    print(f"\n== scale: {n_edges:.0e} edges through the distributed components phase on Ray "
          f"({partitions} partitions, 2 workers) ==")
    work = tmp / "scale"
    shutil.rmtree(work, ignore_errors=True)
    plan = _plan(work, partitions)
    t0 = time.perf_counter()
    per = n_edges // partitions
    rng = np.random.default_rng(5)
    for j in range(partitions):  # LSH-like clusters per chunk, plus 1% links across chunks
        a, b = lsh_like_pairs(per, seed=j, n_files=1000)
        a = a + (np.int64(j) << 44)
        b = b + (np.int64(j) << 44)
        k = len(a) // 100
        b[:k] = (rng.integers(0, partitions, k).astype(np.int64) << 44) | (b[:k] & ((1 << 44) - 1))
        ph._write_cc_input(plan, plan.path("cc-000", j), a, b)
        sh.mark_done(plan.path("cc-000", j), {"verified_pairs": len(a)})
        del a, b
    print(f"generated and partitioned in {time.perf_counter() - t0:.0f}s")
    rt = RayRuntime(workers=2, show_progress=False)
    stage = DedupStage({"union_find_max_edges": 0, "partitions": partitions})
    stats: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    plan_ref = rt.put(plan)
    files, counters = stage._components(rt, plan, plan_ref, n_edges, stats)
    wall = time.perf_counter() - t0
    nodes = sum(sh.read_all([f], ph.FINAL_SCHEMA).num_rows for f in files[:4]) * partitions / 4
    peak = max(v["max_rss_mb"] for v in stats.values())
    driver = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{counters['cc_rounds']} rounds in {wall:.0f}s wall ({n_edges / wall / 1e6:.2f} M edges/s on 2 workers), "
          f"~{nodes:,.0f} nodes; peak RSS per worker {peak:.0f} MB, driver {driver:.0f} MB (machine: 24 GiB)")
    shutil.rmtree(work, ignore_errors=True)
    return peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--reps", type=int, default=3, help="repetitions (medians are reported)")
    ap.add_argument("--pairs", type=int, default=1_000_000, help="duplicate pairs for the components benchmark")
    ap.add_argument("--quick", action="store_true", help="a smoke run: fewer documents and repetitions")
    ap.add_argument("--quality", action="store_true", help="also the graded-set quality runs and the Chinese comparison "
                                                             "(+3-4 minutes; tests/test_dedup_quality.py checks them)")
    ap.add_argument("--scale", action="store_true", help="also push 10^8 edges through the Ray components phase")
    ap.add_argument("--scale-edges", type=int, default=100_000_000)
    ap.add_argument("--only-scale", action="store_true", help="run only the 10^8-edge test")
    ap.add_argument("--only-components", action="store_true",
                    help="run only the components comparison (its own RESULT line)")
    args = ap.parse_args()
    if not args.data.is_dir():
        print(f"data not found: {args.data}", file=sys.stderr)
        return 2
    reps = 2 if args.quick else args.reps
    tmp = Path(tempfile.mkdtemp(prefix="winnow-bench-dedup-"))
    if args.only_scale:
        try:
            bench_scale(args.scale_edges, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return 0
    if args.only_components:
        try:
            comp = bench_components(args.pairs // (10 if args.quick else 1), reps, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"RESULT cc_dist_vs_datatrove={comp['dist'] / comp['datatrove']:.1f} "
              f"cc_uf_vs_datatrove={comp['uf'] / comp['datatrove']:.1f}")
        return 0
    try:
        texts = graded.english_bases(args.data)
        if args.quick:
            texts = texts[:300]
        sig = bench_signatures(texts, reps, tmp)
        q = None
        if args.quality:
            bench_chinese(args.data, max(1, reps - 2))
            q = bench_quality(args.data, tmp, zh_jieba=not args.quick)
        comp = bench_components(args.pairs // (10 if args.quick else 1), reps, tmp)
        projection(args.data, tmp, sig["winnow_112"], comp["dist"])
        if args.scale:
            bench_scale(args.scale_edges, tmp)
        if q is not None:
            en = q["English"]
            print(f"\nquality: English precision {en.precision:.4f} recall {en.recall:.4f}; "
                  f"Chinese precision {q['Chinese cjk=char'].precision:.4f} recall {q['Chinese cjk=char'].recall:.4f}")
        print(f"RESULT sig_vs_datatrove_split={sig['vs_datatrove_split']:.1f} cc_dist_vs_datatrove={comp['dist'] / comp['datatrove']:.1f} "
              f"sig_vs_datatrove={sig['vs_datatrove']:.1f} sig_vs_datasketch={sig['vs_datasketch']:.1f} "
              f"sig_mb_per_s_core={sig['winnow_112']:.1f} cc_uf_vs_datatrove={comp['uf'] / comp['datatrove']:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
