"""Benchmark of the filter stage's two model calls against bare loops over the same models.

- **Language ID** (documents per CPU second): :class:`filters.language.LanguageIdentifier`
  (newline/NUL handling + the Han-script rule) against a bare ``model.predict(text.replace("\\n",
  " "))`` loop over the same ``lid.176.ftz`` and the same documents (the 697 CC-MAIN-2019-30
  documents and CCNet's 20 head documents; the bare loop needs the newline replacement too, or
  fastText refuses the text). Goal: >= 0.9x the bare loop.
- **KenLM perplexity** (text MB per CPU second): :meth:`filters.perplexity.PerplexityModel.perplexity`
  from raw document text against a bare loop doing the same CCNet computation with the same
  components written inline: per line, ``normalize_line`` -> the Unigram ``Tokenizer.encode_batch``
  -> ``kenlm.Model.score`` (``bare``). A KenLM score of unnormalised, uncut text would be fast and
  meaningless, so that is not the baseline; but the KenLM calls alone over pre-cut lines
  (``kenlm_only``) are timed too, to show where the time goes. Our piece cache starts empty in
  every repetition (no credit for having seen the corpus before). English documents (lid en >= 0.5)
  are scored with the en model, Chinese ones (lid zh, incl. the SEO spam pages of
  resiliparse/warcfile.warc.gz) with the zh model.

Single-threaded throughout (``TOKENIZERS_PARALLELISM=false``), timed with ``time.process_time``
(the machine is shared), median of ``--reps`` interleaved repetitions. Models come from
``--models`` (default ``models/lm/{en,zh}``) and are trained there first if missing (~20 s).

Last line: ``RESULT lid_vs_bare=… ppl_vs_bare=… …``. Run from the repo root:
``.venv/bin/python bench/filters.py`` (about 1-2 minutes).
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from winnow.filters.language import LanguageIdentifier  # noqa: E402
from winnow.filters.lm_tokenizer import PieceCutter, words  # noqa: E402
from winnow.filters.perplexity import PerplexityModel  # noqa: E402
from winnow.filters.text_normalize import normalize_line  # noqa: E402

DATA = Path(os.environ.get("WINNOW_SHARED_DATA", REPO.parent / "shared" / "data"))


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
    from winnow.pipeline.lm import train

    ref = DATA / "ref_text"
    train("en", [ref / "wikitext2" / "valid.txt", ref / "wikitext2" / "test.txt"], root / "en")
    train("zh", [ref / "cmrc2018" / "cmrc2018_contexts_zh.txt", ref / "drcd" / "drcd_contexts_zh_hant.txt"], root / "zh")
    return {"en": root / "en", "zh": root / "zh"}


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
    ap.add_argument("--reps", type=int, default=5)
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
    lms = {lang: PerplexityModel(p, lang) for lang, p in paths.items()}
    by_lang: dict[str, list[str]] = {"en": [], "zh": []}
    for d in docs + spam_pages():
        p = lid.predict(d)
        if p.lang in by_lang and p.score >= 0.5:
            by_lang[p.lang].append(d)
    mb = sum(len(d.encode("utf-8")) for v in by_lang.values() for d in v) / 1e6

    def bare_ppl() -> None:
        for lang, ds in by_lang.items():
            tok, lm = lms[lang].tokenizer, lms[lang].lm
            for d in ds:
                lines = [n for n in (normalize_line(x) for x in d.split("\n")) if n]
                total, length = 0.0, 0
                for enc in tok.encode_batch([" ".join(words(n)) for n in lines], add_special_tokens=False):
                    total += lm.score(" ".join(enc.tokens))
                    length += len(enc.tokens) + 1
                _ = 10 ** (-total / length) if length else None

    def ours_ppl() -> None:
        for lang, ds in by_lang.items():
            m = lms[lang]
            m.cutter = PieceCutter(m.tokenizer)  # cold cache in every repetition
            for d in ds:
                m.perplexity(d)

    precut = {lang: [" ".join(ps) for d in ds for ps in lms[lang].line_pieces(d)] for lang, ds in by_lang.items()}

    def kenlm_only() -> None:
        for lang, lines in precut.items():
            score = lms[lang].lm.score
            for line in lines:
                score(line)

    t = interleaved({"bare": bare_ppl, "ours": ours_ppl, "kenlm_only": kenlm_only}, args.reps)
    ppl_mbps = {k: mb / v for k, v in t.items()}
    print(f"perplexity over {len(by_lang['en'])} en + {len(by_lang['zh'])} zh documents ({mb:.2f} MB), per CPU second:")
    print(f"  bare normalize+encode+score loop   {ppl_mbps['bare']:6.2f} MB/s")
    print(f"  PerplexityModel.perplexity         {ppl_mbps['ours']:6.2f} MB/s   ratio {ppl_mbps['ours'] / ppl_mbps['bare']:.3f}")
    print(f"  kenlm.Model.score on pre-cut lines {ppl_mbps['kenlm_only']:6.2f} MB/s   (the KenLM calls alone: "
          f"{t['kenlm_only'] / t['ours']:.0%} of our time)")
    print(f"RESULT lid_vs_bare={lid_dps['ours'] / lid_dps['bare']:.3f} ppl_vs_bare={ppl_mbps['ours'] / ppl_mbps['bare']:.3f} "
          f"lid_docs_per_s={lid_dps['ours']:.0f} ppl_mb_per_s={ppl_mbps['ours']:.2f} "
          f"ppl_vs_kenlm_only={ppl_mbps['ours'] / ppl_mbps['kenlm_only']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
