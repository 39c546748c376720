"""Benchmark of the filter stage's two model calls against their peers, on the same documents in
one run.

- **Language ID** (documents per CPU second): :class:`filters.language.LanguageIdentifier`
  (newline/NUL handling + the Han-script rule) against a bare ``model.predict(text.replace("\\n",
  " "))`` loop over the same ``lid.176.ftz`` (the bare loop needs the newline replacement too, or
  fastText refuses the text). Goal: >= 0.9x the bare loop.
- **KenLM perplexity** (text MB per CPU second), documents scored with their language's model
  (lid en/zh >= 0.5: the 697 CC-MAIN-2019-30 documents, CCNet's 20 head documents and the Chinese
  SEO spam pages of resiliparse/warcfile.warc.gz). Contenders, each from raw document text to a
  document perplexity:

  * ``ours``: :meth:`filters.perplexity.PerplexityModel.perplexities` over each language's
    documents (one batch per language, as a stage hands a record batch): the compiled kernel
    (:mod:`filters.lm_kernel`: CCNet normalisation, word split and Unigram Viterbi for the whole
    document in one numba pass, a word cache) over every document of the batch, then
    ``kenlm.Model.score`` per line. The word cache starts empty in every repetition (no credit
    for having seen the corpus before).
  * ``per_doc``: :meth:`~filters.perplexity.PerplexityModel.perplexity` one document at a time
    (kernel, then KenLM, per document: each evicts the other's tables from the CPU caches).
  * ``nocache``: ``ours`` with the word cache disabled (every word through the Viterbi).
  * ``warm``: the same with a word cache that has seen these documents (a long-running worker's
    steady state; printed for information, never the headline).
  * ``python``: the same model through the plain-Python path (``compiled=False``:
    :func:`normalize_line` per line, :class:`PieceCutter` with its chunk cache, cold) -- the
    implementation before the kernel, identical output.
  * ``ccnet``: CCNet's own way (``cc_net/perplexity.py``): per line, CCNet's normaliser (its four
    passes, :func:`filters.text_normalize.normalize_line_reference`), ``sentencepiece``
    ``encode_as_pieces`` and ``kenlm.Model.score``, with a SentencePiece Unigram model and a KenLM
    5-gram trained here the CCNet way on the same reference text (vocabulary 8000, the same
    lmplz options; cached in ``--models``/ccnet). Model loading is not timed on either side.
  * ``kenlm_only``: the KenLM calls alone, over our pre-cut lines as the bytes our path hands
    KenLM (no normalisation, no splitting): the floor. ``ppl_vs_kenlm_only`` is the share of our
    time that KenLM itself takes (goal >= 0.5: normalising and splitting cost at most as much).

  The normaliser alone is timed too: the per-line Python :func:`normalize_line` against the
  kernel's table pass (:func:`filters.lm_kernel.normalized_lines`), the same output.

Single-threaded throughout (``TOKENIZERS_PARALLELISM=false``, ``RAYON_NUM_THREADS=1``), timed with
``time.process_time`` (the machine is shared), median of ``--reps`` interleaved repetitions. Models
come from ``--models`` (default ``models/lm/{en,zh}``) and are trained there first if missing.

Last line: ``RESULT ppl_vs_kenlm_only=… ppl_vs_ccnet=… ppl_vs_nocache=… …``. Run from the repo root:
``.venv/bin/python bench/filters.py`` (about 2 minutes; the first run trains the models, ~1 minute).
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

import argparse  # noqa: E402
import gzip  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from winnow.filters.language import LanguageIdentifier  # noqa: E402
from winnow.filters.lm_kernel import normalized_lines  # noqa: E402
from winnow.filters.lm_train import build_kenlm, read_training_lines, train_lm  # noqa: E402
from winnow.filters.perplexity import PerplexityModel, perplexity  # noqa: E402
from winnow.filters.text_normalize import normalize_line_reference, normalize_lines  # noqa: E402

DATA = Path(os.environ.get("WINNOW_SHARED_DATA", REPO.parent / "shared" / "data"))
REFERENCE = {
    "en": ["ref_text/wikitext2/valid.txt", "ref_text/wikitext2/test.txt"],
    "zh": ["ref_text/cmrc2018/cmrc2018_contexts_zh.txt", "ref_text/drcd/drcd_contexts_zh_hant.txt"],
}


def load_documents() -> list[str]:
    docs = [json.loads(l)["text"] for l in gzip.open(DATA / "dolma" / "CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz", "rt")]
    for name in sorted((DATA / "dolma").glob("cc_en_head-*.jsonl")):
        docs += [json.loads(l)["text"] for l in name.read_text(encoding="utf-8").splitlines() if l.strip()]
    return [d for d in docs if d and d.strip()]


def spam_pages() -> list[str]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    out = []
    with open(DATA / "resiliparse" / "warcfile.warc.gz", "rb") as f:
        for rec in ArchiveIterator(f, record_types=WarcRecordType.response):
            body = rec.reader.read()
            out.append(extract_plain_text(bytes_to_str(body, detect_encoding(body)), main_content=True))
    return out


def ensure_models(root: Path) -> dict[str, Path]:
    for lang, files in REFERENCE.items():
        train_lm(lang, [DATA / f for f in files], root / lang, log=print)
    return {lang: root / lang for lang in REFERENCE}


class CCNetModel:
    """CCNet's scorer: its normaliser, a SentencePiece model and a KenLM model trained on its pieces."""

    def __init__(self, root: Path, lang: str):
        import kenlm
        import sentencepiece as spm

        lines, files = read_training_lines([DATA / f for f in REFERENCE[lang]])
        tag = hashlib.sha256(json.dumps([f["sha256"] for f in files]).encode()).hexdigest()[:12]
        d = root / "ccnet" / lang
        sp_path, lm_path, done = d / "sp.model", d / "lm.binary", d / f"done-{tag}"
        if not done.exists():
            t = time.time()
            d.mkdir(parents=True, exist_ok=True)
            spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=str(d / "sp"), vocab_size=8000,
                                           model_type="unigram", character_coverage=0.9995, num_threads=1,
                                           hard_vocab_limit=False, minloglevel=2)
            sp = spm.SentencePieceProcessor(model_file=str(sp_path))
            corpus = d / "corpus.txt"
            corpus.write_text("".join(" ".join(sp.encode_as_pieces(x)) + "\n" for x in lines), encoding="utf-8")
            build_kenlm(corpus, lm_path)
            corpus.unlink()
            done.touch()
            print(f"[ccnet peer] {lang}: SentencePiece + KenLM trained in {time.time() - t:.1f}s")
        self.sp = spm.SentencePieceProcessor(model_file=str(sp_path))
        self.lm = kenlm.Model(str(lm_path))

    def perplexity(self, text: str) -> float | None:
        """``cc_net.perplexity.DocLM``: per line normalise, encode, score; pieces + 1 per line."""
        total, length = 0.0, 0
        for line in text.split("\n"):
            line = normalize_line_reference(line)
            if not line:
                continue
            pieces = self.sp.encode_as_pieces(line)
            total += self.lm.score(" ".join(pieces))
            length += len(pieces) + 1
        return perplexity(total, length) if length else None


def cpu_seconds(fn: Callable[[], object]) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def interleaved(contenders: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Median CPU seconds of each contender over `reps` rounds, contenders alternating."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(reps):
        for name, fn in contenders.items():
            times[name].append(cpu_seconds(fn))
    return {name: statistics.median(v) for name, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=REPO / "models" / "lm")
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()

    docs = load_documents()
    lid = LanguageIdentifier()
    model = lid.model

    # --- language ID --------------------------------------------------------------------------
    def bare_lid() -> None:
        for d in docs:
            model.predict(d.replace("\n", " "))

    def ours_lid() -> None:
        for d in docs:
            lid.predict(d)

    ours_lid()  # warm-up (page cache, regex compile)
    t = interleaved({"bare": bare_lid, "ours": ours_lid}, args.reps)
    lid_dps = {k: len(docs) / v for k, v in t.items()}
    print(f"language ID over {len(docs)} documents ({sum(map(len, docs)) / 1e6:.1f} M chars), per CPU second:")
    print(f"  bare model.predict loop  {lid_dps['bare']:8.0f} docs/s")
    print(f"  LanguageIdentifier       {lid_dps['ours']:8.0f} docs/s   ratio {lid_dps['ours'] / lid_dps['bare']:.3f}")

    # --- perplexity ---------------------------------------------------------------------------
    paths = ensure_models(args.models)
    ours = {lang: PerplexityModel(p, lang) for lang, p in paths.items()}
    nocache = {lang: PerplexityModel(p, lang, cache=False) for lang, p in paths.items()}
    python = {lang: PerplexityModel(p, lang, compiled=False) for lang, p in paths.items()}
    ccnet = {lang: CCNetModel(args.models, lang) for lang in paths}
    by_lang: dict[str, list[str]] = {"en": [], "zh": []}
    for d in docs + spam_pages():
        p = lid.predict(d)
        if p.lang in by_lang and p.score >= 0.5:
            by_lang[p.lang].append(d)
    all_docs = [d for v in by_lang.values() for d in v]
    mb = sum(len(d.encode("utf-8")) for d in all_docs) / 1e6

    # same output, checked before timing
    for lang, ds in by_lang.items():
        assert [ours[lang].perplexity(d) for d in ds] == [python[lang].perplexity(d) for d in ds] \
            == [nocache[lang].perplexity(d) for d in ds], "kernel and Python path disagree"
        assert all(normalized_lines(d) in (None, normalize_lines(d)) for d in ds), "normalisers disagree"

    for lang, ds in by_lang.items():
        assert ours[lang].perplexities(ds) == [ours[lang].perplexity(d) for d in ds], "batch and per document disagree"

    def scorer(models: dict, fresh_cache: bool, batch: bool = True) -> Callable[[], None]:
        def run() -> None:
            for lang, ds in by_lang.items():
                m = models[lang]
                if fresh_cache:
                    if m.pieces is not None:
                        m.pieces.clear_cache()
                    m.cutter = type(m.cutter)(m.tokenizer)
                if batch:
                    m.perplexities(ds)
                else:
                    for d in ds:
                        m.perplexity(d)
        return run

    precut = {lang: [" ".join(ps).encode("utf-8") for d in ds for ps in ours[lang].line_pieces(d)]
              for lang, ds in by_lang.items()}

    def kenlm_only() -> None:
        for lang, lines in precut.items():
            score = ours[lang].lm.score
            for line in lines:
                score(line)

    def ccnet_ppl() -> None:
        for lang, ds in by_lang.items():
            m = ccnet[lang]
            for d in ds:
                m.perplexity(d)

    warm = {lang: PerplexityModel(p, lang) for lang, p in paths.items()}
    scorer(warm, False)()  # its word cache has seen these documents: a long-running worker's steady state
    t = interleaved({"ours": scorer(ours, True), "per_doc": scorer(ours, True, batch=False),
                     "nocache": scorer(nocache, False), "python": scorer(python, True, batch=False),
                     "ccnet": ccnet_ppl, "kenlm_only": kenlm_only, "warm": scorer(warm, False)}, args.reps)
    mbps = {k: mb / v for k, v in t.items()}
    print(f"perplexity over {len(by_lang['en'])} en + {len(by_lang['zh'])} zh documents ({mb:.2f} MB), per CPU second "
          f"(median of {args.reps}):")
    print(f"  kenlm.Model.score alone on our pre-cut lines {mbps['kenlm_only']:6.2f} MB/s   (KenLM's share of our time: "
          f"{t['kenlm_only'] / t['ours']:.0%})")
    print(f"  ours: compiled kernel + KenLM, cold cache    {mbps['ours']:6.2f} MB/s   (perplexities: kernel over the "
          f"batch, then KenLM)")
    print(f"  ours one document at a time (perplexity)     {mbps['per_doc']:6.2f} MB/s   (KenLM's share: "
          f"{t['kenlm_only'] / t['per_doc']:.0%}; ours/this {t['per_doc'] / t['ours']:.2f}x)")
    print(f"  ours, word cache disabled                    {mbps['nocache']:6.2f} MB/s   ours/this {t['nocache'] / t['ours']:.2f}x")
    print(f"  ours, word cache warm (a worker's steady state, not the headline) {mbps['warm']:6.2f} MB/s   "
          f"(KenLM's share: {t['kenlm_only'] / t['warm']:.0%})")
    print(f"  ours through the Python path (before)        {mbps['python']:6.2f} MB/s   ours/this {t['python'] / t['ours']:.2f}x")
    print(f"  CCNet: normalise + sentencepiece + KenLM     {mbps['ccnet']:6.2f} MB/s   ours/this {t['ccnet'] / t['ours']:.2f}x")

    def norm_py() -> None:
        for d in all_docs:
            normalize_lines(d)

    def norm_kernel() -> None:
        for d in all_docs:
            normalized_lines(d)

    tn = interleaved({"python": norm_py, "kernel": norm_kernel}, args.reps)
    print(f"  normaliser alone: Python per line {mb / tn['python']:6.1f} MB/s, compiled table pass "
          f"{mb / tn['kernel']:6.1f} MB/s ({tn['python'] / tn['kernel']:.1f}x; identical lines)")
    print("  (ours, per_doc and nocache include the Python call per document, the bytes split and KenLM; ccnet "
          "includes its normaliser, sentencepiece and KenLM; kenlm_only is the KenLM calls alone on lines cut "
          "beforehand; no side includes model loading or language ID)")
    print(f"RESULT ppl_vs_kenlm_only={t['kenlm_only'] / t['ours']:.3f} ppl_vs_ccnet={t['ccnet'] / t['ours']:.2f} "
          f"ppl_vs_nocache={t['nocache'] / t['ours']:.2f} ppl_vs_python={t['python'] / t['ours']:.2f} "
          f"ppl_mb_per_s={mbps['ours']:.2f} lid_vs_bare={lid_dps['ours'] / lid_dps['bare']:.3f} "
          f"lid_docs_per_s={lid_dps['ours']:.0f} norm_kernel_vs_python={tn['python'] / tn['kernel']:.1f} "
          f"ppl_vs_kenlm_only_warm_cache={t['kenlm_only'] / t['warm']:.3f} "
          f"ppl_vs_kenlm_only_per_doc={t['kenlm_only'] / t['per_doc']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
