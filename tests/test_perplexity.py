"""filters/perplexity (+ text_normalize, lm_tokenizer, reftext): CCNet's perplexity on models we
train ourselves from ../shared/data/ref_text, and the head/middle/tail buckets."""

from __future__ import annotations

import json
import random
import shutil
import statistics
from pathlib import Path

import pytest

from winnow.filters.errors import ModelError
from winnow.filters.language import LanguageIdentifier
from winnow.filters.perplexity import (ALL, HEAD, LM_FILE, MIDDLE, TAIL, TOKENIZER_FILE, Cutoffs, PerplexityModel,
                                perplexity, read_percentile_csv, write_percentile_csv)
from winnow.filters.reftext import detokenize_wikitext_line, documents, looks_like_wikitext
from winnow.filters.text_normalize import normalize_line, normalize_line_reference, normalize_lines
from winnow.filters.lm_train import train_lm


def trained_models(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Path]:
    """en on WikiText-2 valid (test.txt held out), zh on 9/10 of cmrc2018 (every 10th paragraph held
    out). Trained once per session: a second call finds the directories up to date."""
    base = tmp_path_factory.getbasetemp() / "winnow_lms"
    base.mkdir(exist_ok=True)
    ref = shared_data / "ref_text"
    zh_lines = (ref / "cmrc2018" / "cmrc2018_contexts_zh.txt").read_text(encoding="utf-8").splitlines()
    zh_train = base / "zh_train.txt"
    if not zh_train.exists():
        zh_train.write_text("\n".join(l for i, l in enumerate(zh_lines) if i % 10 != 9) + "\n", encoding="utf-8")
        (base / "zh_heldout.txt").write_text("\n".join(l for i, l in enumerate(zh_lines) if i % 10 == 9) + "\n",
                                             encoding="utf-8")
    train_lm("en", [ref / "wikitext2" / "valid.txt"], base / "en")
    train_lm("zh", [zh_train], base / "zh")
    return {"en": base / "en", "zh": base / "zh", "zh_heldout": base / "zh_heldout.txt"}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Path]:
    return trained_models(tmp_path_factory, shared_data)


def zh_spam_pages(shared_data: Path) -> list[str]:
    """Main text of the Chinese pages of resiliparse's CC-MAIN-2020-34 excerpt (SEO spam)."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    lid = LanguageIdentifier()
    pages = []
    with open(shared_data / "resiliparse" / "warcfile.warc.gz", "rb") as f:
        for rec in ArchiveIterator(f, record_types=WarcRecordType.response):
            body = rec.reader.read()
            text = extract_plain_text(bytes_to_str(body, detect_encoding(body)), main_content=True)
            if lid.predict(text).lang == "zh":
                pages.append(text)
    return pages


# --- normalisation ------------------------------------------------------------------------------
def test_normalizer_is_ccnets(shared_data: Path) -> None:
    assert normalize_line("  Café “Zürich” — 2019，很好！ ") == 'cafe "zurich"  -  0000,很好!'
    assert normalize_line("Ｗｉｋｉ１２３ ٣٤") == "ｗｉｋｉ000 00"  # every unicode digit is a digit
    assert normalize_line("tab\there\x00") == "tabhere"  # CCNet drops control characters
    assert normalize_lines("one\n\n  \nTwo") == ["one", "two"]
    # The fast path (one translate table) equals CCNet's four passes on real text of 75 languages.
    lines = [l.split("\t", 1)[1] for l in (shared_data / "lingua_langid" / "sentences_labeled.tsv")
             .read_text(encoding="utf-8").split("\n")[::7] if "\t" in l]
    lines += (shared_data / "ref_text" / "drcd" / "drcd_contexts_zh_hant.txt").read_text(encoding="utf-8").splitlines()[:300]
    assert len(lines) > 10_000
    assert [normalize_line(l) for l in lines] == [normalize_line_reference(l) for l in lines]


def test_wikitext_is_detokenised(shared_data: Path) -> None:
    line = " The lobster , H. americanus , weighs 0 @.@ 7 – 2 @,@ 200 kg ( 1 @.@ 5 lb ) and is well @-@ known . <unk> is rare . "
    assert detokenize_wikitext_line(line) == "The lobster, H. americanus, weighs 0.7 – 2,200 kg (1.5 lb) and is well-known. is rare."
    text = (shared_data / "ref_text" / "wikitext2" / "test.txt").read_text(encoding="utf-8")
    assert looks_like_wikitext(text[:100_000])
    docs = list(documents(text.splitlines(), "auto", text[:100_000]))
    assert 50 < len(docs) < 80  # one per article (WikiText-2 test has 60 articles)
    assert not any("@-@" in d or "<unk>" in d for d in docs)
    assert docs[0].startswith("Robert\nRobert is an English film")  # "Robert <unk>": the surname was an <unk>


def test_cached_piece_cutter_equals_the_tokenizer(models: dict[str, Path], shared_data: Path) -> None:
    import gzip

    from winnow.filters.lm_tokenizer import PieceCutter, pieces_reference, words

    assert words("北京, hello world's 2.0!") == ["北", "京", ",", "▁hello", "▁world", "'", "▁s", "▁2", ".", "▁0", "!"]
    docs = [json.loads(l)["text"] for l in gzip.open(shared_data / "dolma" / "CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz", "rt")]
    lines = normalize_lines("\n".join(docs))
    assert len(lines) > 20_000
    for lang in ("en", "zh"):
        lm = PerplexityModel(models[lang], lang)
        cutter = PieceCutter(lm.tokenizer)
        assert cutter.lines(lines) == pieces_reference(lm.tokenizer, lines)
        assert cutter.lines(lines[:500]) == pieces_reference(lm.tokenizer, lines[:500])  # warm cache too


# --- perplexity ---------------------------------------------------------------------------------
def test_perplexity_is_ccnets_formula(models: dict[str, Path]) -> None:
    lm = PerplexityModel(models["en"], "en")
    doc = "The Eiffel Tower is in Paris.\n\n  It was built in 1889 for the World's Fair.  "
    pieces = lm.line_pieces(doc)
    assert len(pieces) == 2 and pieces[1][-1] == "."
    by_hand = sum(lm.lm.score(" ".join(p)) for p in pieces)
    length = sum(len(p) + 1 for p in pieces)
    assert lm.score(doc) == pytest.approx((by_hand, length))
    assert lm.perplexity(doc) == round(10 ** (-by_hand / length), 1) == perplexity(by_hand, length)
    assert lm.perplexity("") is None and lm.perplexity("\x00\x01\n \n") is None


def test_perplexities_batch_equals_one_by_one(models: dict[str, Path], shared_data: Path) -> None:
    """The batch call (kernel over every text, then KenLM) returns exactly the per-document floats,
    including a document the kernel hands to the Python path (Greek capital sigma), empty ones
    and the compiled=False model."""
    wiki = (shared_data / "ref_text" / "wikitext2" / "test.txt").read_text(encoding="utf-8")
    docs = list(documents(wiki.splitlines(), "wikitext"))[:40]
    docs += ["", "\x00\n \n", "ΣΟΦΙΑ and Σ in English text.", docs[0]]
    for compiled in (True, False):
        lm = PerplexityModel(models["en"], "en", compiled=compiled)
        one = [lm.perplexity(d) for d in docs]
        assert lm.perplexities(docs) == one and None in one
        assert lm.perplexities([]) == []


def test_perplexity_ranks_wikipedia_web_and_spam(models: dict[str, Path], shared_data: Path) -> None:
    """held-out Wikipedia < CCNet's head documents < Chinese SEO spam (each by its language's model)."""
    en = PerplexityModel(models["en"], "en")
    zh = PerplexityModel(models["zh"], "zh")
    wiki_text = (shared_data / "ref_text" / "wikitext2" / "test.txt").read_text(encoding="utf-8")
    wiki_en = [en.perplexity(d) for d in documents(wiki_text.splitlines(), "wikitext")]
    head = []
    for name in sorted((shared_data / "dolma").glob("cc_en_head-*.jsonl")):
        head += [en.perplexity(json.loads(l)["text"]) for l in name.read_text(encoding="utf-8").splitlines() if l.strip()]
    wiki_zh = [zh.perplexity(l) for l in models["zh_heldout"].read_text(encoding="utf-8").splitlines() if l.strip()]
    spam = zh_spam_pages(shared_data)
    spam_zh = [zh.perplexity(p) for p in spam]
    spam_en = [en.perplexity(p) for p in spam]
    med = {k: statistics.median(v) for k, v in
           {"wiki_en": wiki_en, "head": head, "spam_en_model": spam_en, "wiki_zh": wiki_zh, "spam_zh": spam_zh}.items()}
    print(f"\nmedian ppl: en model: held-out WikiText {med['wiki_en']:.1f} < CCNet head {med['head']:.1f} "
          f"< zh spam {med['spam_en_model']:.1f};  zh model: held-out cmrc2018 {med['wiki_zh']:.1f} "
          f"< zh spam {med['spam_zh']:.1f}  ({len(wiki_en)}/{len(head)}/{len(wiki_zh)}/{len(spam)} docs)")
    assert len(head) == 20 and len(spam) >= 8
    assert med["wiki_en"] < med["head"] < med["spam_en_model"]
    assert med["wiki_zh"] < med["spam_zh"]
    assert med["spam_zh"] > 2 * med["wiki_zh"]


def test_training_is_reproducible(models: dict[str, Path], shared_data: Path, tmp_path: Path) -> None:
    meta = train_lm("en", [shared_data / "ref_text" / "wikitext2" / "valid.txt"], tmp_path / "again")
    first = json.loads((models["en"] / "meta.json").read_text())
    assert meta["sha256"] == first["sha256"]
    assert meta["train"]["files"][0]["documents"] == 60


# --- bad models ---------------------------------------------------------------------------------
def test_missing_or_corrupt_model_names_the_path(models: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "no_such_model"
    with pytest.raises(ModelError, match=rf"{missing}.*winnow lm train --lang en"):
        PerplexityModel(missing, "en")
    with pytest.raises(ModelError, match="is for language 'en'"):
        PerplexityModel(models["en"], "zh")
    broken = tmp_path / "broken"
    shutil.copytree(models["en"], broken)
    data = bytearray((broken / LM_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (broken / LM_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelError, match=rf"{broken / LM_FILE}.*corrupt"):
        PerplexityModel(broken, "en")
    (broken / LM_FILE).write_bytes(b"")
    with pytest.raises(ModelError, match=str(broken / LM_FILE)):
        PerplexityModel(broken, "en", verify=False)  # KenLM's own error, wrapped with the path
    shutil.copy(models["en"] / LM_FILE, broken / LM_FILE)
    (broken / TOKENIZER_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match=str(broken / TOKENIZER_FILE)):
        PerplexityModel(broken, "en", verify=False)


# --- cutoffs and buckets ------------------------------------------------------------------------
def test_ccnet_cutoff_csv_is_read(shared_data: Path) -> None:
    cut = Cutoffs.from_csv(shared_data / "cc_net" / "cutoff.csv")
    assert len(cut.thresholds) == 48
    table = read_percentile_csv(shared_data / "cc_net" / "cutoff.csv")
    assert cut.thresholds["en"] == (table["en"][30], table["en"][60])
    assert cut.thresholds["zh"][0] < cut.thresholds["zh"][1]
    head_ppl = [json.loads(l)["metadata"]["perplexity"] for l in
                (shared_data / "dolma" / "cc_en_head-0091.jsonl").read_text().splitlines() if l.strip()]
    # CCNet's own head documents fall in the head bucket under CCNet's own cutoffs.
    assert all(cut.bucket("en", p) == HEAD for p in head_ppl)


def test_buckets_and_roundtrip(tmp_path: Path) -> None:
    rng = random.Random(0)
    table = {"en": sorted(rng.uniform(10, 1000) for _ in range(101)), "zh": [float(i) for i in range(101)]}
    path = tmp_path / "cutoffs.csv"
    write_percentile_csv(path, table)
    cut = Cutoffs.from_csv(path)
    assert cut.thresholds["zh"] == (30.0, 60.0)
    assert [cut.bucket("zh", p) for p in (29.9, 30.0, 59.9, 60.0, 1e6)] == [HEAD, MIDDLE, MIDDLE, TAIL, TAIL]
    assert cut.bucket("fr", 10.0) == ALL and cut.bucket("zh", None) == ALL
    assert Cutoffs.from_csv(path, 10, 90).thresholds["zh"] == (10.0, 90.0)
    bad = tmp_path / "bad.csv"
    bad.write_text(",en\n0,abc\n")
    with pytest.raises(ValueError, match=str(bad)):
        Cutoffs.from_csv(bad)
