"""filters/lm_kernel: the compiled normaliser + word split + Unigram Viterbi gives exactly what the
Python path (normalize_line, PieceCutter, i.e. the tokenizers Unigram model) gives, on real text."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from winnow.filters.lm_kernel import DocumentPieces, normalized_lines
from winnow.filters.perplexity import PerplexityModel
from winnow.filters.reftext import documents
from winnow.filters.text_normalize import normalize_lines

from tests.test_perplexity import trained_models


def lingua_by_language(shared_data: Path, per_language: int | None = None) -> dict[str, str]:
    """The lingua sentences (75 languages), one document per language, one sentence per line
    (the first `per_language` sentences of each, or all)."""
    out: dict[str, list[str]] = {}
    for row in (shared_data / "lingua_langid" / "sentences_labeled.tsv").read_text(encoding="utf-8").split("\n"):
        if "\t" in row:
            lang, sentence = row.split("\t", 1)
            out.setdefault(lang, []).append(sentence)
    return {lang: "\n".join(v[:per_language]) for lang, v in out.items()}


def real_documents(shared_data: Path) -> list[str]:
    ref = shared_data / "ref_text"
    docs = [json.loads(l)["text"] for l in gzip.open(shared_data / "dolma" / "CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz", "rt")]
    wiki = (ref / "wikitext2" / "test.txt").read_text(encoding="utf-8")
    docs += list(documents(wiki.splitlines(), "wikitext"))
    docs.append(wiki[:100_000])  # raw WikiText, artefacts and all
    docs += (ref / "cmrc2018" / "cmrc2018_contexts_zh.txt").read_text(encoding="utf-8").splitlines()[:400]
    docs += (ref / "drcd" / "drcd_contexts_zh_hant.txt").read_text(encoding="utf-8").splitlines()[:200]
    docs += list(lingua_by_language(shared_data, 100).values())
    return docs


EDGE_CASES = [
    "", "\n\n", "  \t \n", "\x01 abc\x02 \n\x0b", "— dash first\n…", "Ｗｉｋｉ１２３ ٣٤ café", "İstanbul ǅ ﬁ ½",
    "tab\there\x00", "a\u00a0b\u3000c", "<unk> <s> </s>", "▁mark ▁", "😀 emoji 𠀀 ext-b", "\r\nwindows\r\n",
]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Path]:
    return trained_models(tmp_path_factory, shared_data)


def test_compiled_normaliser_equals_normalize_line(shared_data: Path) -> None:
    docs = real_documents(shared_data) + EDGE_CASES
    sentences = [s for doc in lingua_by_language(shared_data).values() for s in doc.split("\n")]
    handed_back = 0
    for doc in docs + sentences:
        fast = normalized_lines(doc)
        if fast is None:
            handed_back += 1
            assert "Σ" in doc  # Greek capital sigma lowers by context: the Python path does it
            continue
        assert fast == normalize_lines(doc), doc[:200]
    assert len(sentences) > 70_000 and handed_back < 200
    assert normalized_lines("ΟΔΟΣ ΑΘΗΝΩΝ") is None and normalized_lines("\ud800 lone surrogate") is None


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_document_pieces_equal_the_python_path(models: dict[str, Path], shared_data: Path, lang: str) -> None:
    fast = PerplexityModel(models[lang], lang)
    slow = PerplexityModel(models[lang], lang, compiled=False)
    uncached = DocumentPieces(fast.tokenizer, cache=False)
    docs = real_documents(shared_data) + EDGE_CASES
    wanted = [[" ".join(p) for p in slow.line_pieces(doc)] for doc in docs]
    checked = 0
    for rep in range(2):  # the second pass runs on a warm word cache
        for doc, want in zip(docs, wanted):
            got = fast.pieces(doc)
            if got is None:
                assert "Σ" in doc
                continue
            lines, counts = got
            assert [x.decode("utf-8") for x in lines] == want, doc[:200]
            assert list(counts) == [len(p.split(" ")) for p in want]
            if rep == 0:
                assert uncached(doc)[0] == lines
            checked += 1
    assert checked > 2 * 900
    for doc in docs[::5] + ["ΟΔΟΣ ΑΘΗΝΩΝ\nΣίσυφος"]:
        assert fast.score(doc) == slow.score(doc)  # exactly: the same floats summed in the same order
        assert fast.perplexity(doc) == slow.perplexity(doc)


def test_cache_starts_over_when_full(models: dict[str, Path], shared_data: Path) -> None:
    lm = PerplexityModel(models["en"], "en", compiled=False)
    small = DocumentPieces(lm.tokenizer)
    small.CACHE_SLOTS, small.CACHE_BYTES = 64, 512
    small.clear_cache()
    docs = real_documents(shared_data)[:200]
    for doc in docs:
        got = small(doc)
        assert got is not None and [x.decode() for x in got[0]] == [" ".join(p) for p in lm.line_pieces(doc)]
    assert small.cstate[0] <= 32
