"""The filter stage's CPU per document: before and after the one-pass quality rules, and the rules
against datatrove's own filter pipeline, on the same real documents in one run.

**Sample** (the one ``bench/pipeline.py`` costs the whole pipeline on): the demo's crawl files
(``configs/demo.yaml`` inputs), the 181 real article pages of ``../shared/data/scrapinghub_aeb`` as
WARC, and the first ``--corpus-docs`` documents of every ``../shared/data/corpus`` file, run
through the ingest stage in this process (not timed); the filter stage then gets its shards.

**Contenders** (one process, single thread, ``time.process_time``; models, jieba's dictionary
and the KenLM models are loaded before any timing, on both sides: a worker loads them once):

- ``after``: ``FilterStage.filter_table`` as it is, on every shard -- empty/too-long checks,
  fastText lid.176 language ID, the quality rules of the detected language
  (:meth:`QualityFilter.check`: one split per document shared by all rules), KenLM perplexity
  buckets when ``--ppl`` models exist (the demo's ``models/lm``, as bench/pipeline.py runs it),
  and building the kept/rejected Arrow tables.
- ``before``: the same stage with the quality rules as they ran before this change:
  :meth:`QualityFilter.check_reference` (datatrove's four classes one after another, each on a
  fresh ``Document``, each re-splitting lines/paragraphs and joining n-grams) and jieba's own
  ``lcut`` (:meth:`JiebaWordTokenizer.reference_word_tokenize`). Everything else is shared code.
  The kept and rejected tables of both must be identical (checked; the run fails otherwise).
- ``rules`` vs ``datatrove``: the quality rules alone on the documents that reach them (those the
  language ID keeps, with their language): ours (:meth:`QualityFilter.check`) against datatrove's
  own pipeline of ``GopherQualityFilter`` → ``GopherRepetitionFilter`` → ``FineWebQualityFilter``
  → ``C4QualityFilter`` (``BaseFilter.run`` over ``Document`` objects, its stats included), built
  with the same parameters and the same word tokenizers (jieba through ``lcut``), so both keep
  exactly the same documents (checked).

Each measurement is repeated ``--rounds`` times, interleaved; the minimum CPU time of each counts.
Last line: ``RESULT filter_vs_datatrove_rules=… filter_docs_per_core_s=… filter_speedup=…``
(``filter_docs_per_core_s`` is the whole stage, ``after``). Run from the repo root:
``.venv/bin/python bench/filter_stage.py`` (~2-3 minutes on a loaded 2-core machine).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _bench_pipeline() -> Any:
    """bench/pipeline.py as a module (its sample and in-process runtime)."""
    spec = importlib.util.spec_from_file_location("winnow_bench_pipeline", REPO / "bench" / "pipeline.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def ingest_sample(root: Path, corpus_docs: int) -> list[Any]:
    """The ingest stage's output tables for bench/pipeline.py's sample (not timed)."""
    from winnow.pipeline import shards as shard_io
    from winnow.pipeline.config import load_config
    from winnow.pipeline.runner import run_stage

    bp = _bench_pipeline()
    inputs, _ = bp.make_sample(root, corpus_docs)
    cfg = load_config(bp.write_config(root, "ingest", inputs, ["ingest"]))
    run_stage(cfg.build_stage("ingest"), inputs, root / "ingest", runtime=bp.InProcessRuntime())
    return [shard_io.read_shard(p) for p in sorted((root / "ingest" / "data").glob("*.parquet"))]


def filter_config(with_ppl: bool) -> dict[str, Any]:
    """configs/demo.yaml's filter section, model paths made absolute."""
    import yaml

    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())["filter"]
    ppl = cfg.get("perplexity") or {}
    if with_ppl:
        ppl["models"] = {k: str((REPO / v).resolve()) for k, v in ppl.get("models", {}).items()}
        if ppl.get("cutoffs"):
            ppl["cutoffs"] = str((REPO / ppl["cutoffs"]).resolve())
        missing = [p for p in list(ppl["models"].values()) + [ppl.get("cutoffs")] if p and not Path(p).exists()]
        if missing:
            raise SystemExit(f"perplexity models missing ({missing}): run `make models`, or pass --no-ppl")
        cfg["perplexity"] = ppl
    else:
        cfg.pop("perplexity", None)
    return cfg


@contextmanager
def old_rules() -> Iterator[None]:
    """The quality rules as they ran before the one-pass change (datatrove's classes one by one,
    jieba's lcut), for the duration of the block."""
    from winnow.filters.quality import QualityFilter
    from winnow.filters.wordsplit import JiebaWordTokenizer

    saved = QualityFilter.check, JiebaWordTokenizer.word_tokenize
    QualityFilter.check = QualityFilter.check_reference  # type: ignore[method-assign]
    JiebaWordTokenizer.word_tokenize = JiebaWordTokenizer.reference_word_tokenize  # type: ignore[method-assign]
    try:
        yield
    finally:
        QualityFilter.check, JiebaWordTokenizer.word_tokenize = saved  # type: ignore[method-assign]


def cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def datatrove_pipeline(qf: Any, docs_by_lang: dict[str, list[str]]) -> set[tuple[str, int]]:
    """datatrove's own filter pipeline (the four classes chained through ``BaseFilter.run``) on
    each language's documents, with that language's parameters and word tokenizer; the
    (language, index) of every document it keeps."""
    from datatrove.data import Document

    from winnow.filters.quality import COMPONENTS
    from winnow.filters.wordsplit import word_tokenizer

    kept: set[tuple[str, int]] = set()
    for lang, texts in docs_by_lang.items():
        rules = qf.rules.get(lang, qf.rules["*"])
        tok = word_tokenizer(lang)
        steps = [cls(**params, language=tok) for comp, cls in COMPONENTS.items()
                 if (params := rules.get(comp)) is not None]
        stream: Any = (Document(text=t, id=str(i)) for i, t in enumerate(texts))
        for step in steps:
            stream = step.run(stream)
        kept.update((lang, int(d.id)) for d in stream)
    return kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus-docs", type=int, default=300, help="documents taken from each corpus file")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved repetitions (minimum CPU counts)")
    ap.add_argument("--no-ppl", dest="ppl", action="store_false", help="without KenLM perplexity")
    args = ap.parse_args()

    from winnow.stages.filter import FilterStage

    root = Path(tempfile.mkdtemp(prefix="winnow-bench-filter-"))
    tables = ingest_sample(root, args.corpus_docs)
    n_docs = sum(t.num_rows for t in tables)
    stage = FilterStage(filter_config(args.ppl))
    setup_s, _ = cpu(stage.setup)  # fastText, jieba's dictionary, KenLM: once per worker, both sides
    models = stage._models
    assert models is not None
    print(f"sample: {n_docs:,} documents in {len(tables)} ingest shards "
          f"({sum(len(t) for tb in tables for t in tb.column('text').to_pylist() if t) / 1e6:.1f} M characters); "
          f"setup (not timed below) {setup_s:.1f} s; perplexity {'on' if args.ppl else 'off'}")

    def run_stage() -> list[Any]:
        return [stage.filter_table(t) for t in tables]

    # the documents that reach the quality rules, with the language the stage gives them
    docs_by_lang: dict[str, list[str]] = {}
    for tb in tables:
        for text in tb.column("text").to_pylist():
            if text is None or not text.strip() or len(text) > stage.config.max_chars:
                continue
            pred = models.lid.predict(text)
            if models.policy.reject_reason(pred) is None:
                docs_by_lang.setdefault(pred.lang, []).append(text)
    n_rules = sum(len(v) for v in docs_by_lang.values())
    qf = models.quality
    assert qf is not None

    def ours() -> set[tuple[str, int]]:
        return {(lang, i) for lang, texts in docs_by_lang.items()
                for i, t in enumerate(texts) if qf.check(t, lang).reason is None}

    def peer() -> set[tuple[str, int]]:
        with old_rules():  # jieba through lcut, as datatrove would call it
            return datatrove_pipeline(qf, docs_by_lang)

    times: dict[str, list[float]] = {"before": [], "after": [], "rules": [], "datatrove": []}
    outputs: dict[str, Any] = {}
    for _ in range(args.rounds):
        with old_rules():
            t, outputs["before"] = cpu(run_stage)
        times["before"].append(t)
        t, outputs["after"] = cpu(run_stage)
        times["after"].append(t)
        t, outputs["datatrove"] = cpu(peer)
        times["datatrove"].append(t)
        t, outputs["rules"] = cpu(ours)
        times["rules"].append(t)

    for a, b in zip(outputs["before"], outputs["after"]):
        if not (a.kept.equals(b.kept) and a.rejected.equals(b.rejected) and a.counters == b.counters):
            raise SystemExit("before and after disagree on a shard: the change altered a decision")
    if outputs["rules"] != outputs["datatrove"]:
        raise SystemExit(f"our rules keep {len(outputs['rules'])} documents, datatrove's pipeline "
                         f"{len(outputs['datatrove'])}: not the same decisions")
    best = {k: min(v) for k, v in times.items()}
    kept = sum(o.kept.num_rows for o in outputs["after"])
    rate = {k: (n_docs if k in ("before", "after") else n_rules) / best[k] for k in best}
    print(f"decisions identical: before/after kept+rejected tables and counters on all {len(tables)} shards "
          f"({kept:,} kept); rules: both keep the same {len(outputs['rules']):,} of {n_rules:,} documents "
          f"({', '.join(f'{k} {len(v):,}' for k, v in sorted(docs_by_lang.items()))})")
    print(f"\n{'':34} {'CPU s':>7} {'docs':>6} {'docs/s/core':>12}")
    labels = {"before": "stage, rules as before (datatrove)", "after": "stage, one-pass rules",
              "datatrove": "rules: datatrove pipeline", "rules": "rules: QualityFilter.check"}
    for k in ("before", "after", "datatrove", "rules"):
        docs = n_docs if k in ("before", "after") else n_rules
        print(f"{labels[k]:34} {best[k]:>7.2f} {docs:>6,} {rate[k]:>12,.0f}")
    print(f"(all rounds, CPU s: {', '.join(f'{k} ' + '/'.join(f'{x:.2f}' for x in v) for k, v in times.items())})")
    print(f"\nstage: {best['before'] / best['after']:.2f}x less CPU per document; "
          f"rules alone: {best['datatrove'] / best['rules']:.2f}x datatrove's pipeline")
    print(f"RESULT filter_vs_datatrove_rules={best['datatrove'] / best['rules']:.2f} "
          f"filter_docs_per_core_s={rate['after']:.0f} filter_speedup={best['before'] / best['after']:.2f} "
          f"filter_docs_per_core_s_before={rate['before']:.0f}")


if __name__ == "__main__":
    main()
