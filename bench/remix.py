"""Benchmark of `winnow remix`: the whole stage against a plain Arrow copy of the same shards, and
labelling against bare fastText prediction on the same texts, in one run.

What each side includes:

- **remix_vs_copy** (CPU seconds, one worker each, same input; `remix_vs_copy_wall` the same in
  wall time, which on a shared 2-core machine mostly measures the neighbours): winnow's remix stage
  through `run_stage` on a warm local Ray with `workers=1` — label (URL rules; every input shard
  read and written once as Arrow with its work columns), solve the mixture, sample + scatter
  (read once, written once into range partitions by shuffle key), and per partition sort + write
  the output Arrow shard with its rejected file and commit record: the text is decoded once,
  written once to an uncompressed work file and once, shuffled, to the output (2 passes; the
  scatter phase moves only a small index). Remix CPU = the driver's CPU during `run_stage` plus
  every Ray task's CPU (Ray's scheduling in the raylet is not counted). Against: a plain pyarrow read of each input parquet shard and a write of it
  as an Arrow IPC file (1 read, 1 write), in this process. Ratio = copy time / remix time (≥ 0.4
  is the goal: a shuffle needs at least two passes). The mixture repeats some domains and
  downsamples others; the budget equals the input size.
- **label_vs_fasttext** (CPU seconds of this process, single-threaded): winnow's labeller
  (`stages.remix.labels.label_columns`: URL rules via the taxonomy and tldextract, then the
  fastText topic classifier for documents no rule labels, text preparation included) on the
  documents as they come (most corpus documents have a URL), against bare `model.predict` of the
  same fastText model on every document's already-prepared line (preparation not timed for the
  peer). `label_forced_vs_fasttext`: the same with every URL removed, so every document goes
  through text preparation and the classifier — the labeller's worst case.

Data: real documents of ../shared/data/corpus (English and Chinese Wikipedia, IMDb reviews, GitHub
code, classical Chinese poetry, LibreOffice help), ~35 MB of text in 4 parquet shards.
Last line: ``RESULT remix_vs_copy=… label_vs_fasttext=… label_forced_vs_fasttext=…``.

Run: ``.venv/bin/python bench/remix.py`` from the repo root (about 1-2 minutes on 2 cores;
``--quick`` for a smoke run on ~5 MB).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))   # remix_corpus: corpus slices as stage-like shards

from remix_corpus import read_corpus, write_shards  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
SLICE = {"wikipedia_en-000": 5000, "wikipedia_zh-000": 4000, "imdb_reviews-000": 12000, "github_code-000": 1500,
         "chinese_poetry-000": 600, "libreoffice_help_de-000": 1500}
MIXTURE = {"encyclopedia": 0.45, "reviews": 0.25, "code": 0.2, "other": 0.1}


def build_input(tmp: Path, scale: float) -> tuple[Path, int, int]:
    docs = [d for name, n in SLICE.items() for d in read_corpus(SHARED, name, max(50, int(n * scale)))]
    inp = write_shards(docs, tmp / "in", 4)
    return inp, len(docs), sum(len(d["text"].encode()) for d in docs)


def plain_copy(inp: Path, out: Path) -> None:
    import pyarrow.parquet as pq

    from winnow.pipeline.shards import write_arrow_atomic

    for p in sorted(inp.glob("*.parquet")):
        write_arrow_atomic(pq.read_table(p), out / f"{p.stem}.arrow")


def bench_remix(inp: Path, tmp: Path, reps: int) -> tuple[dict[str, float], dict]:
    """Median wall and CPU seconds of the remix stage and of the plain copy. Remix CPU = the
    driver's CPU during `run_stage` + every Ray task's CPU (the runtime's per-phase stats)."""
    from winnow.pipeline.runner import RayRuntime, run_stage
    from winnow.stages.remix import RemixStage

    runtime = RayRuntime(workers=1, show_progress=False)
    t: dict[str, list[float]] = {"remix_wall": [], "remix_cpu": [], "copy_wall": [], "copy_cpu": []}
    stats: dict = {}
    for r in range(reps + 1):                       # the first remix run warms Ray's workers
        out = tmp / f"remix{r}"
        w0, c0 = time.perf_counter(), time.process_time()
        stage = RemixStage({"seed": r, "mixture": MIXTURE, "on_shortfall": "redistribute"})
        run_stage(stage, [str(inp)], out, runtime)
        if r:
            t["remix_wall"].append(time.perf_counter() - w0)
            t["remix_cpu"].append(time.process_time() - c0 + sum(v["cpu_s"] for v in stage.phase_stats.values()))
            stats = stage.phase_stats
        shutil.rmtree(out)
        w0, c0 = time.perf_counter(), time.process_time()
        plain_copy(inp, tmp / f"copy{r}")
        if r:
            t["copy_wall"].append(time.perf_counter() - w0)
            t["copy_cpu"].append(time.process_time() - c0)
        shutil.rmtree(tmp / f"copy{r}")
    return {k: statistics.median(v) for k, v in t.items()}, stats


def bench_label(inp: Path, tmp: Path, reps: int) -> dict[str, float]:
    import pyarrow.parquet as pq

    from winnow.filters.topic_classifier import TopicClassifier, prepare_text
    from winnow.stages.remix import labels
    from winnow.stages.remix.cli import MODEL_NAME, train_classifier

    # the classifier, trained on other documents of the corpus (weak labels of the host rules)
    train_docs = [d for name in ("wikipedia_en-001", "imdb_reviews-000", "github_code-000")
                  for d in read_corpus(SHARED, name, 3000)[-1500:]]
    train_in = write_shards(train_docs, tmp / "train", 1)
    m = train_classifier([str(train_in)], tmp / "model")
    model_path = str(tmp / "model" / MODEL_NAME)
    table = pq.read_table(sorted(inp.glob("*.parquet"))[0])
    urls, hosts, texts = (table.column(c).to_pylist() for c in ("url", "host", "text"))
    clf = TopicClassifier(model_path)
    lines = [prepare_text(t) for t in texts]

    def timed(fn) -> float:
        out = []
        for _ in range(reps):
            labels.rules_for(None).match_host.cache_clear()
            t0 = time.process_time()
            fn()
            out.append(time.process_time() - t0)
        return statistics.median(out)

    labels.label_columns(urls[:10], hosts[:10], texts[:10], taxonomy=None, classifier=model_path)  # load once
    bare = timed(lambda: clf.model.predict(lines, k=1))
    ours = timed(lambda: labels.label_columns(urls, hosts, texts, taxonomy=None, classifier=model_path))
    forced = timed(lambda: labels.label_columns([None] * len(texts), None, texts, taxonomy=None, classifier=model_path))
    n = len(texts)
    ruled = sum(1 for u, h in zip(urls, hosts) if labels.rules_for(None).match(u, h))
    return {"docs": n, "ruled": ruled, "bare_dps": n / bare, "ours_dps": n / ours, "forced_dps": n / forced,
            "heldout_accuracy": m["heldout_accuracy"], "classes": {k: v["accuracy"] for k, v in m["classes"].items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="~5 MB, one repetition")
    args = ap.parse_args()
    scale, reps = (0.15, 1) if args.quick else (1.0, 5)
    if not SHARED.is_dir():
        print(f"bench/remix.py: {SHARED} not found", file=sys.stderr)
        return 2
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO / "tests")}})
    with tempfile.TemporaryDirectory(prefix="bench_remix_") as d:
        tmp = Path(d)
        inp, n_docs, n_bytes = build_input(tmp, scale)
        print(f"input: {n_docs:,} documents, {n_bytes / 1e6:.1f} MB of text in 4 parquet shards")
        t, stats = bench_remix(inp, tmp, reps)
        print(f"remix stage (1 worker, label + sample + shuffle + write): wall {t['remix_wall']:.2f} s, "
              f"cpu {t['remix_cpu']:.2f} s ({n_bytes / 1e6 / t['remix_cpu']:.1f} MB per cpu-s)")
        for k, v in stats.items():
            print(f"    {k:<22} wall {v['wall_s']:.2f} s  task cpu {v['cpu_s']:.2f} s  peak rss {v['max_rss_mb']:.0f} MB")
        print(f"plain pyarrow read + Arrow write:                       wall {t['copy_wall']:.2f} s, "
              f"cpu {t['copy_cpu']:.2f} s ({n_bytes / 1e6 / t['copy_cpu']:.1f} MB per cpu-s)")
        lab = bench_label(inp, tmp, reps)
        print(f"classifier held-out accuracy {lab['heldout_accuracy']:.3f} per class "
              + ", ".join(f"{k} {v:.3f}" for k, v in lab["classes"].items()))
        print(f"labelling {lab['docs']:,} docs ({lab['ruled']:,} by URL rules): winnow {lab['ours_dps']:,.0f} docs/s, "
              f"URLs removed {lab['forced_dps']:,.0f} docs/s; bare fasttext.predict {lab['bare_dps']:,.0f} docs/s (per core)")
    ray.shutdown()
    print(f"RESULT remix_vs_copy={t['copy_cpu'] / t['remix_cpu']:.3f} label_vs_fasttext={lab['ours_dps'] / lab['bare_dps']:.3f} "
          f"remix_vs_copy_wall={t['copy_wall'] / t['remix_wall']:.3f} "
          f"label_forced_vs_fasttext={lab['forced_dps'] / lab['bare_dps']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
