"""Benchmark and evaluation of `winnow decontaminate`.

What it measures, and why:

- **Recall per edit kind**: real benchmark items from ``../shared/data/benchmarks`` planted into
  real corpus documents (English items into ``wikipedia_en``, Chinese ones into ``wikipedia_zh``)
  between two paragraphs, rendered four ways: ``verbatim`` (passage, question, "A. …" choices),
  ``reformatted_choices`` (choices renumbered "1) …" inline or as "• …" bullets), ``whitespace_punct``
  (newlines to spaces, doubled spaces, commas dropped, ASCII ↔ fullwidth punctuation) and
  ``truncated`` (the first 60 % of the verbatim characters: paraphrase-free truncation). A planted
  document counts as found when a match lies inside the planted span.
- **False-positive rate**: documents of the same corpora, nothing planted, that are flagged.
  Overlaps there are real shared text (official titles, quoted poems), not hash collisions: the
  examples are printed so a reader can judge.
- **n for Chinese** (``--sweep-cjk``): the flagged rate on clean Chinese Wikipedia and the recall
  on planted Chinese items for several ``n_cjk``: the smallest n that stops flagging formulaic
  phrases while keeping recall is the default.
- **Throughput vs datatrove**: datatrove's ``NGramsDecontIndexer`` + ``NGramsDecontFilter``
  (spaCy English word tokenizer, xxhash-64, n=13, ``find_query_ngrams``) fed the same benchmark
  texts (GSM8K, HumanEval, ARC: ``SPEED_BENCHMARKS``; winnow indexes the same three) offline — the indexer subclass below skips its lighteval hub download and indexes the
  documents given to it; its xxhash call gets UTF-8 bytes (see `datatrove_xxhash64`) — on the
  same English documents (planted + clean). winnow: the stage's
  ``decontaminate_table`` on an Arrow table (tokenise, hash, look up, decide, build the output
  table). Both sides single-process; CPU seconds (``time.process_time``), index build excluded
  from both, median of repetitions. Text MB per CPU second.
- **Index build**: time and peak memory to read and index every shared benchmark.

The last line is ``RESULT decont_vs_datatrove=… recall_verbatim=… false_positive_rate=…``.

Run: ``.venv/bin/python bench/decontaminate.py`` from the repo root (a few minutes on 2 cores;
``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"

EDITS = ("verbatim", "reformatted_choices", "whitespace_punct", "truncated")
EN_BENCHMARKS = ("gsm8k", "humaneval", "mmlu", "arc")
ZH_BENCHMARKS = ("cmmlu", "ceval", "agieval_zh", "c3")
#: Indexed by both sides for the throughput comparison. Not MMLU: datatrove's indexer runs spaCy
#: over every text, ~10 minutes for MMLU's 12 M characters on this machine.
SPEED_BENCHMARKS = ("gsm8k", "humaneval", "arc")
_PUNCT_SWAP = {",": "，", ".": "。", "?": "？", "!": "！", ":": "：", ";": "；", "(": "（", ")": "）",
               "，": ",", "。": ".", "？": "?", "！": "!", "：": ":", "；": ";", "（": "(", "）": ")"}


# --- data -------------------------------------------------------------------------------------------
def corpus_docs(name: str, limit: int, min_chars: int = 500, data: Path = DATA) -> list[str]:
    """The first `limit` documents of a corpus file with at least `min_chars` characters."""
    docs: list[str] = []
    with gzip.open(data / "corpus" / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"]
            if len(text) >= min_chars:
                docs.append(text)
                if len(docs) >= limit:
                    break
    return docs


# --- planting -----------------------------------------------------------------------------------------
def render(item: Any, edit: str, rng: random.Random) -> str:
    """An item as a web page might show it, after one kind of light edit (no paraphrase)."""
    from winnow.filters.benchmarks import _LEADING_LABEL

    bare = [_LEADING_LABEL.sub("", c) for c in item.choices]
    head = [t for t in (item.passage, item.question) if t]
    verbatim = "\n".join(head + [f"{chr(65 + i)}. {c}" for i, c in enumerate(bare)])
    if edit == "verbatim":
        return verbatim
    if edit == "reformatted_choices":
        if not bare:
            return verbatim
        if rng.random() < 0.5:
            return "\n".join(head) + "\n" + "   ".join(f"{i + 1}) {c}" for i, c in enumerate(bare))
        return "\n".join(head + [f"• {c}" for c in bare])
    if edit == "whitespace_punct":
        out = []
        for ch in verbatim:
            if ch == "\n":
                out.append(" ")
            elif ch == " " and rng.random() < 0.3:
                out.append("  ")
            elif ch in ",，" and rng.random() < 0.5:
                continue
            elif ch in _PUNCT_SWAP and rng.random() < 0.5:
                out.append(_PUNCT_SWAP[ch])
            else:
                out.append(ch)
        return "".join(out)
    if edit == "truncated":
        return verbatim[: max(1, int(len(verbatim) * 0.6))]
    raise ValueError(f"unknown edit {edit!r}")


def plant(host: str, snippet: str, rng: random.Random) -> tuple[str, int, int]:
    """`host` with `snippet` inserted between two of its paragraphs; the snippet's char span."""
    paras = host.split("\n")
    at = rng.randint(1, max(1, len(paras) - 1))
    before = "\n".join(paras[:at]) + "\n"
    return before + snippet + "\n" + "\n".join(paras[at:]), len(before), len(before) + len(snippet)


def planted_cases(items: Sequence[Any], hosts: Sequence[str], per_edit: int, seed: int = 0
                  ) -> list[dict[str, Any]]:
    """`per_edit` planted documents per edit kind: {edit, item (index), text, start, end}."""
    rng = random.Random(seed)
    picks = rng.sample(range(len(items)), min(per_edit, len(items)))
    cases = []
    for edit in EDITS:
        for j, i in enumerate(picks):
            snippet = render(items[i], edit, rng)
            text, s, e = plant(hosts[(j * 7 + len(cases)) % len(hosts)], snippet, rng)
            cases.append({"edit": edit, "item": i, "text": text, "start": s, "end": e})
    return cases


def score(matches: Sequence[Sequence[Any]], cases: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Recall per edit: the share of planted documents with a match inside the planted span."""
    found: dict[str, list[int]] = {e: [] for e in EDITS}
    for case, ms in zip(cases, matches):
        ok = any(m.start >= case["start"] and m.end <= case["end"] for m in ms)
        found[case["edit"]].append(int(ok))
    return {e: (sum(v) / len(v) if v else float("nan")) for e, v in found.items()}


# --- datatrove, offline ---------------------------------------------------------------------------------
def datatrove_index(texts_by_task: dict[str, list[str]], folder: str, n: int) -> Any:
    """datatrove's NGramsDecontIndexer over our benchmark texts, without lighteval or the hub:
    its own `compute_hashes` and file format, fed documents instead of lighteval tasks."""
    import numpy as np
    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontIndexer

    class OfflineIndexer(NGramsDecontIndexer):
        def __new__(cls, *args: Any, **kwargs: Any) -> "OfflineIndexer":
            return object.__new__(cls)  # skip the lighteval import check: no lighteval is used

        def run(self, data=None, rank: int = 0, world_size: int = 1):  # noqa: D102 - the upstream loop minus lighteval
            for task, texts in texts_by_task.items():
                hashes: set[int] = set()
                for t in texts:
                    hashes.update(self.compute_hashes(t, None))
                arr = np.array(sorted(hashes), dtype=self.config.hash_config.np_descr)
                with self.output_folder.open(f"{task}.index.hashes", mode="wb") as f:
                    arr.tofile(f)

    config = NGramsDecontConfig(n_grams=n, find_query_ngrams=True, find_overlap_ngrams=False)
    indexer = OfflineIndexer(folder, config=config, language="en")
    indexer.hash_func = datatrove_xxhash64
    indexer.run()
    return config


def datatrove_xxhash64(text: str) -> int:
    """datatrove's xxhash-64 of an n-gram string. datatrove 0.10 passes the str straight to
    `xxhash.xxh64_intdigest`, which xxhash >= 4 refuses (bytes only); encoding as UTF-8 is what
    older xxhash did implicitly, so the hashes are datatrove's own."""
    import xxhash

    return xxhash.xxh64_intdigest(text.encode("utf-8"))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--sweep-cjk", type=int, nargs="*", default=None, help="n_cjk values to compare (default 13 20 25 30)")
    args = ap.parse_args(argv)
    from winnow.filters import benchmarks as bm
    from winnow.filters import ngram_index as ni
    from winnow.stages.decontaminate import BenchmarkIndex, DecontaminateConfig, DecontaminateStage, load_benchmarks

    per_edit = 60 if args.quick else 300
    n_clean = 1000 if args.quick else 4000
    bench_dir = DATA / "benchmarks"

    # --- index build: every shared benchmark ---------------------------------------------------------
    ni.char_tables()
    t0 = time.perf_counter()
    all_cfg = DecontaminateConfig(benchmarks=[str(bench_dir)])
    read_s = time.perf_counter() - t0
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    full = BenchmarkIndex(load_benchmarks(all_cfg.benchmarks), all_cfg)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s = full.summary()
    print(f"index, all shared benchmarks ({sum(s['items'].values()):,} items): read+check {read_s:.1f} s, "
          f"build {full.build_seconds:.1f} s, {s['gram_hashes']:,} n-gram hashes + {s['short_item_anchors']:,} short "
          f"items, {s['bytes'] / 1e6:.0f} MB in memory, peak RSS {rss1:.0f} MB (+{rss1 - rss0:.0f} MB while building); "
          f"false-positive rate per lookup K/2^64 = {s['false_positive_rate_per_lookup']:.1e}; "
          f"{s['boilerplate_dropped']} boilerplate hashes dropped")

    # --- recall and false positives, en and zh -------------------------------------------------------
    stage = DecontaminateStage(all_cfg)
    stage._index = full
    items = [it for b in load_benchmarks(all_cfg.benchmarks) for it in b.items]
    results: dict[str, dict[str, float]] = {}
    fp: dict[str, float] = {}
    flagged_examples: list[str] = []
    en_docs = corpus_docs("wikipedia_en-000", n_clean + 200)
    zh_docs = corpus_docs("wikipedia_zh-000", n_clean + 200, min_chars=300)
    for lang, names, docs in (("en", EN_BENCHMARKS, en_docs), ("zh", ZH_BENCHMARKS, zh_docs)):
        pool = [it for it in items if it.benchmark in names]
        cases = planted_cases(pool, docs[n_clean:], per_edit, seed=1)
        matches = ni.find_matches(full.index, [c["text"] for c in cases])
        results[lang] = score(matches, cases)
        c0 = time.process_time()
        clean = ni.find_matches(full.index, docs[:n_clean])
        scan_rate = sum(len(d.encode()) for d in docs[:n_clean]) / 1e6 / (time.process_time() - c0)
        hits = [i for i, m in enumerate(clean) if m]
        fp[lang] = len(hits) / n_clean
        for i in hits[:3]:
            m = clean[i][0]
            flagged_examples.append(f"  {lang} clean doc {i}: {full.item_id[m.item]} ({full.item_benchmark[m.item]}) "
                                    f"{docs[i][m.start:m.end][:60]!r}")
        print(f"{lang}: recall " + ", ".join(f"{e}={r:.3f}" for e, r in results[lang].items())
              + f"  ({per_edit} planted per edit); clean documents flagged {len(hits)}/{n_clean} = {fp[lang]:.4f}; "
              f"scan {scan_rate:.1f} MB/s against all benchmarks")
    print("flagged clean documents (shared text, not hash collisions):")
    print("\n".join(flagged_examples) or "  none")

    # --- n for Chinese -------------------------------------------------------------------------------------
    sweep = args.sweep_cjk if args.sweep_cjk is not None else ([] if args.quick else [13, 20, 25, 30])
    if sweep:
        zh_items = [bm for bm in load_benchmarks(all_cfg.benchmarks) if bm.name in ZH_BENCHMARKS]
        pool = [it for b in zh_items for it in b.items]
        cases = planted_cases(pool, zh_docs[n_clean:], per_edit // 2, seed=2)
        print("n_cjk sweep (Chinese benchmarks only; clean = Chinese Wikipedia):")
        for n_cjk in sweep:
            cfg = DecontaminateConfig(benchmarks=[str(bench_dir / b) for b in ZH_BENCHMARKS], n_cjk=n_cjk,
                                      min_cjk_tokens=min(12, n_cjk))
            idx = BenchmarkIndex(zh_items, cfg)
            rec = score(ni.find_matches(idx.index, [c["text"] for c in cases]), cases)
            flagged = sum(1 for m in ni.find_matches(idx.index, zh_docs[:n_clean]) if m)
            print(f"  n_cjk={n_cjk:>3}: clean flagged {flagged / n_clean:.4f}  recall "
                  + " ".join(f"{e}={r:.3f}" for e, r in rec.items()))

    # --- throughput vs datatrove (English) ------------------------------------------------------------------
    import pyarrow as pa

    en_cases = planted_cases([it for it in items if it.benchmark in SPEED_BENCHMARKS], en_docs[n_clean:],
                             per_edit // 3, seed=3)
    n_speed = 300 if args.quick else 1500
    docs = [c["text"] for c in en_cases if c["edit"] == "verbatim"] + en_docs[:n_speed]
    mb = sum(len(d.encode()) for d in docs) / 1e6
    en_cfg = DecontaminateConfig(benchmarks=[str(bench_dir / b) for b in SPEED_BENCHMARKS])
    en_stage = DecontaminateStage(en_cfg)
    en_stage.build_index()
    table = pa.table({"id": [str(i) for i in range(len(docs))], "text": docs})
    w_times = []
    for _ in range(3):
        c0 = time.process_time()
        out = en_stage.decontaminate_table(table)
        w_times.append(time.process_time() - c0)
    w_rate = mb / statistics.median(w_times)

    from datatrove.data import Document
    from datatrove.pipeline.decont.n_grams import NGramsDecontFilter

    en_items = [it for b in load_benchmarks(en_cfg.benchmarks) for it in b.items]
    texts, item_of, _, _ = bm.index_texts(en_items)
    by_task: dict[str, list[str]] = {}
    for t, i in zip(texts, item_of):
        by_task.setdefault(en_items[i].benchmark, []).append(t)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.process_time()
        config = datatrove_index(by_task, tmp, n=13)
        dt_build = time.process_time() - t0
        filt = NGramsDecontFilter(tmp, config=config, language="en")
        filt.hash_func = datatrove_xxhash64
        filt.load_index_hashes()
        d_times = []
        for _ in range(1 if args.quick else 2):
            dt_docs = [Document(text=d, id=str(i)) for i, d in enumerate(docs)]
            c0 = time.process_time()
            verdicts = [filt.filter(d) for d in dt_docs]
            d_times.append(time.process_time() - c0)
    d_rate = mb / statistics.median(d_times)
    n_planted = sum(1 for c in en_cases if c["edit"] == "verbatim")
    dt_found = sum(1 for v in verdicts[:n_planted] if v is not True)
    dt_fp = sum(1 for v in verdicts[n_planted:] if v is not True)
    w_flag = {int(x) for x in out.rejected.column("id").to_pylist()}
    print(f"throughput, English, {len(docs)} documents ({mb:.1f} MB), index excluded: winnow {w_rate:.2f} MB/s "
          f"(median of {len(w_times)}), datatrove {d_rate:.3f} MB/s; ratio {w_rate / d_rate:.1f}x")
    print(f"  same documents: planted verbatim found winnow {sum(1 for i in w_flag if i < n_planted)}/{n_planted}, "
          f"datatrove {dt_found}/{n_planted}; clean flagged winnow {sum(1 for i in w_flag if i >= n_planted)}/{n_speed}, "
          f"datatrove {dt_fp}/{n_speed}; datatrove index build {dt_build:.1f} s (English benchmarks)")
    recall_verbatim = min(results["en"]["verbatim"], results["zh"]["verbatim"])
    fp_rate = (fp["en"] + fp["zh"]) / 2
    print(f"RESULT decont_vs_datatrove={w_rate / d_rate:.1f} recall_verbatim={recall_verbatim:.3f} "
          f"false_positive_rate={fp_rate:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
