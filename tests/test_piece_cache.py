"""The compiled pre-tokenizer + piece cache (`winnow.tokenizer.piece_cache`) against `tokenizers`.

Exactness is the whole point: the pack stage's ids must be those of `Tokenizer.encode_batch`.
Checked here: every character class (the rules' bracket classes, ``\\s``, `Digits`) equals what
Oniguruma / `tokenizers` match for every Unicode code point; the ids equal `encode_batch` on real
multilingual text (every corpus file), on edge cases, on random Unicode (hypothesis), for
DeepSeek LLM's tokenizer, for variants of its rule list (each rule form alone, ``\\s+$`` without
the newline rule before it) and for a tokenizer trained by winnow; unsupported pipelines are
refused (the caller then uses `encode_batch`).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Regex, Tokenizer, pre_tokenizers

from winnow.tokenizer.piece_cache import (MAX_CODE_POINT, WS_BIT, PieceCacheEncoder, UnsupportedPreTokenizer,
                                          compile_pre_tokenizer, parse_bracket_class, parse_split_pattern)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ANCHOR = SHARED / "anchors" / "deepseek_llm_tokenizer.json"

EDGE = ["", " ", "\n", "\r\n", "a\n\n b  \n", "  \n  x", "x  ", "\n\n\n  \t\n", "foo\rbar", "数字 123\n４５６ ",
        "<｜end▁of▁sentence｜>\nhi<｜begin▁of▁sentence｜>", " \u2028 line sep\u0085x", "emoji 😀\n😀",
        "tab\t\n\tx", "}\n}\n}\n", "a \u3000\u3001b", "\u3000\u3000x", " \u3000", "x\u00a0\u00a0", "  ,,, ..  ",
        "١٢٣ ٤", "Ⅻ ⅷ ½ ²", "ΑΒΓ δεζ", "Привет, мир!", "한국어 텍스트", "ｆｕｌｌ ｗｉｄｔｈ！", "\x00\x1f\x7f",
        "line\n", "  trailing   ", "\t", "a" * 5000, "中" * 3000, " " * 100 + "\n" + " " * 10]


@pytest.fixture(scope="module")
def anchor_json() -> dict:
    if not ANCHOR.is_file():
        pytest.fail(f"{ANCHOR} missing (../shared/data)") if os.environ.get("CI") else pytest.skip("no shared data")
    return json.loads(ANCHOR.read_text(encoding="utf-8"))


_TOKENIZERS: dict[str, Tokenizer] = {}   # references: never lent to an encoder
_ENCODERS: dict[str, PieceCacheEncoder] = {}  # each with a tokenizer of its own


def _key(tj: dict) -> str:
    """What tells this module's pipelines apart, cheaply (dumping a 100k vocabulary is slow)."""
    return json.dumps([tj.get("normalizer"), tj.get("pre_tokenizer"), len(tj["model"]["vocab"]),
                       tj["model"]["merges"][:20], tj["model"].get("dropout")], sort_keys=True, default=str)


def _tokenizer(tj: dict) -> Tokenizer:
    key = _key(tj)
    if key not in _TOKENIZERS:  # loading a 100k vocabulary takes ~0.3 s: once per pipeline
        _TOKENIZERS[key] = Tokenizer.from_str(json.dumps(tj))
    return _TOKENIZERS[key]


def _ids(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]


def _fast(tj: dict, texts: list[str], max_pieces: int = 1 << 12, chunk_bytes: int = 1 << 18
          ) -> tuple[PieceCacheEncoder, list[list[int]]]:
    """Ids from an encoder of this pipeline with an empty cache (a small one by default)."""
    key = _key(tj)
    enc = _ENCODERS.get(key)
    if enc is None:
        enc = _ENCODERS[key] = PieceCacheEncoder.for_tokenizer(Tokenizer.from_str(json.dumps(tj)), tj)
        assert enc is not None
    enc.max_pieces, enc.CHUNK_BYTES = max_pieces, chunk_bytes
    enc._clear()
    return enc, [a.tolist() for a in enc.encode_batch(texts)]


def _probe() -> str:
    return "".join(chr(c) for c in range(1, MAX_CODE_POINT) if not 0xD800 <= c < 0xE000)


def _matched(pre: pre_tokenizers.PreTokenizer, probe: str) -> np.ndarray:
    """Code points a `removed` split takes out of the probe (its gaps' offsets are characters)."""
    kept = np.zeros(len(probe), bool)
    for _, (a, b) in pre.pre_tokenize_str(probe):
        kept[a:b] = True
    cps = np.fromiter((ord(c) for c in probe), np.int64, count=len(probe))
    return np.sort(cps[~kept])


def test_character_classes_equal_oniguruma_for_every_code_point(anchor_json):
    """Each compiled class bit, code point by code point, against `tokenizers` itself."""
    program = compile_pre_tokenizer(anchor_json)
    probe = _probe()
    steps = anchor_json["pre_tokenizer"]["pretokenizers"][:-1]
    ws = _matched(pre_tokenizers.Split(Regex("\\s"), behavior="removed"), probe)
    assert np.array_equal(ws, np.flatnonzero(program.classes & WS_BIT)), "\\s differs from Oniguruma's"
    for r, step in enumerate(steps):
        have = np.flatnonzero(program.classes & (1 << r))
        if step["type"] == "Digits":
            pieces = pre_tokenizers.Digits(individual_digits=True).pre_tokenize_str("a".join(probe))
            want = np.sort(np.array([ord(p) for p, _ in pieces if len(p) == 1 and p != "a"]))
        elif "[" not in step["pattern"]["Regex"]:  # \\s+$ has no class of its own (it uses \\s)
            assert have.size == 0
            continue
        else:
            pat = step["pattern"]["Regex"]
            body = pat[pat.index("["):pat.rindex("]") + 1]
            want = _matched(pre_tokenizers.Split(Regex(body), behavior="removed"), probe)
        assert np.array_equal(have, want), f"rule {r} ({step['type']}): class differs from tokenizers' ({have.size} vs {want.size})"


def _corpus_texts(per_file: int) -> list[str]:
    texts = []
    files = sorted((SHARED / "corpus").glob("*.jsonl.gz"))
    assert files, "no corpus files"
    for f in files:
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if i >= per_file:
                    break
                texts.append(json.loads(line)["text"])
    return texts


def test_ids_equal_encode_batch_on_every_corpus_file(anchor_json):
    """Real text of every corpus file (en/zh/de/… Wikipedia, code, reviews, poetry) plus edge
    cases: cold cache, warm cache, and a cache cleared between small chunks."""
    texts = _corpus_texts(40) + EDGE
    want = _ids(_tokenizer(anchor_json), texts)
    enc, got = _fast(anchor_json, texts, max_pieces=1 << 19)
    assert got == want
    assert [a.tolist() for a in enc.encode_batch(texts)] == want  # warm
    # the borrowed tokenizer is left as it was: its own encode_batch still gives the reference
    assert _ids(enc.tok, texts) == want
    _, got = _fast(anchor_json, texts, max_pieces=64, chunk_bytes=2000)
    assert got == want


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60), min_size=1, max_size=8))
def test_ids_equal_encode_batch_on_random_unicode(anchor_json, texts):
    _, got = _fast(anchor_json, texts)
    assert got == _ids(_tokenizer(anchor_json), texts)


MIXED = st.lists(st.text(alphabet=st.sampled_from(list("ab Z9١\n\r\t \u3000\u3001,.!中한😀\u00a0\u2028")), max_size=40),
                 min_size=1, max_size=6)


@pytest.mark.parametrize("rules", [
    ["\\s+$"],                                   # $ before a line feed, no newline rule first
    ["[\r\n]", "\\s+$"],
    ["\\s?[!-/:-~\uff01-\uff0f\u3000-\u3002]+"],  # \s? with a class that holds a whitespace (U+3000)
    ["[a-z0-9]"],                                 # single characters
    ["[\u4e00-\u9fa5]+", "\\s?[A-Za-z]+", "[\r\n]"],
])
def test_rule_variants_equal_tokenizers(anchor_json, rules):
    """Every rule form alone and in other orders, on strings built from the characters where
    the forms differ (whitespace kinds, line feeds, classes holding whitespace)."""
    tj = json.loads(json.dumps(anchor_json))
    steps = [{"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": False} for r in rules]
    tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": steps + [anchor_json["pre_tokenizer"]["pretokenizers"][-1]]}
    tok = _tokenizer(tj)

    @settings(max_examples=150, deadline=None)
    @given(MIXED)
    def check(texts):
        _, got = _fast(tj, texts)
        assert got == _ids(tok, texts)

    check()
    _, got = _fast(tj, EDGE)
    assert got == _ids(tok, EDGE)


def test_a_tokenizer_trained_by_winnow_compiles_and_matches(tmp_path):
    """winnow's own tokenizer (trained here on a little real text) takes the fast path too."""
    from winnow.tokenizer.train import save_hf_dir, train_bpe

    texts = _corpus_texts(15)
    tok = train_bpe(iter(texts), vocab_size=1200)
    save_hf_dir(tok, tmp_path)
    tj = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    compile_pre_tokenizer(tj)
    sample = texts[::7] + EDGE
    _, got = _fast(tj, sample)
    assert got == _ids(Tokenizer.from_file(str(tmp_path / "tokenizer.json")), sample)


def test_unsupported_pipelines_are_refused(anchor_json):
    for change in ({"normalizer": {"type": "NFKC"}},
                   {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True, "trim_offsets": True}},
                   {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                       {"type": "Split", "pattern": {"Regex": "\\p{L}+"}, "behavior": "Isolated", "invert": False},
                       anchor_json["pre_tokenizer"]["pretokenizers"][-1]]}},
                   {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                       {"type": "Split", "pattern": {"Regex": "[a-z]+"}, "behavior": "Removed", "invert": False},
                       anchor_json["pre_tokenizer"]["pretokenizers"][-1]]}},
                   {"model": {**anchor_json["model"], "dropout": 0.1}}):
        tj = {**anchor_json, **change}
        with pytest.raises(UnsupportedPreTokenizer):
            compile_pre_tokenizer(tj)
        assert PieceCacheEncoder.for_tokenizer(_tokenizer(anchor_json), tj) is None
    for bad in ("[^a]", "[[a]]", "[\\p{L}]", "[\\d]", "[z-a]"):
        with pytest.raises(UnsupportedPreTokenizer):
            parse_split_pattern(bad + "+")
    assert parse_bracket_class("a-c\\-x-") == [(97, 99), (45, 45), (120, 120), (45, 45)]


def test_arrow_input_with_nulls_and_slices(anchor_json):
    """A sliced Arrow array with nulls (encoded as empty texts) gives the same ids as the list."""
    texts = _corpus_texts(3)[:20]
    arr = pa.array([None] + texts + [None], pa.string()).slice(1, len(texts) + 1)
    tok = _tokenizer(anchor_json)
    enc = PieceCacheEncoder.for_tokenizer(Tokenizer.from_str(json.dumps(anchor_json)), anchor_json)
    ids, counts = enc.encode_arrow(arr)
    want = _ids(tok, texts + [""])
    assert counts.tolist() == [len(w) for w in want]
    assert ids.tolist() == [t for w in want for t in w]


def test_invalid_utf8_is_a_clear_error(anchor_json):
    """A string column with bytes that are not UTF-8 (a hand-made parquet can hold them) is
    refused with a clear error before the unchecked decoder sees it."""
    raw = pa.array([b"ok text", b"bad \xf7\xbf\xbf\xbf \xc3"], pa.binary())
    bad = pa.Array.from_buffers(pa.string(), len(raw), raw.buffers())
    enc = PieceCacheEncoder.for_tokenizer(Tokenizer.from_str(json.dumps(anchor_json)), anchor_json)
    with pytest.raises(ValueError, match="not valid UTF-8"):
        enc.encode_arrow(bad)
