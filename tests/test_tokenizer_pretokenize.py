"""DeepSeek's pre-tokenization rebuilt from its regexes agrees with the anchor tokenizer."""

from __future__ import annotations

import gzip
import itertools
import json

import pytest
from tokenizers import Tokenizer

from winnow.tokenizer.pretokenize import SPLIT_PATTERNS, deepseek_pre_tokenizer

HANDWRITTEN = [
    "The quick brown fox jumps over the lazy dog.",
    "DeepSeek LLM: 67B parameters, trained on 2 trillion tokens (2024).",
    "中文分词测试：我们在北京大学学习自然语言处理。",
    "繁體中文與簡體中文混合，還有English單詞和123數字。",
    "日本語のテキストです。カタカナとひらがなと漢字が混ざっています。",
    "한국어 문장입니다. 안녕하세요, 반갑습니다!",
    "def main(argv):\n    if not argv:\n\treturn 1\n    for i in range(10):\n        print(f\"{i:03d}\")\n",
    "int main() {\r\n    return 0;\r\n}\r\n",
    "pi = 3.14159265358979, e=2.71828; 1,000,000 and 0x7fff_ffff, 1e-9",
    "emoji 😀👍🏽🇩🇪 family 👨‍👩‍👧‍👦 and zwj\u200d and nbsp\u00a0here",
    "tabs\tand\t\ttabs  and   spaces    \n\n\n  trailing   ",
    "Ünïcödé café naïve façade Ελληνικά Русский текст Հայերեն ქართული",
    "ＦＵＬＬｗｉｄｔｈ　ｔｅｘｔ！？（全角）「引用」『二重』…—–",
    "mixed中English文字mixed123中",
    "   leading spaces",
    "",
    " ",
    "\r\n",
    "\u3000\u3001\u3002",
    "a\u0301 combining and \U0001d400 math bold and \U00020000 ext-B",
]


def _anchor(shared_data) -> Tokenizer:
    return Tokenizer.from_file(str(shared_data / "anchors" / "deepseek_llm_tokenizer.json"))


def _corpus_texts(shared_data, per_file: int = 40):
    for path in sorted((shared_data / "corpus").glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in itertools.islice(f, per_file):
                yield json.loads(line)["text"]


def test_split_patterns_are_the_anchors_byte_for_byte(shared_data):
    anchor = json.loads((shared_data / "anchors" / "deepseek_llm_tokenizer.json").read_text(encoding="utf-8"))
    steps = anchor["pre_tokenizer"]["pretokenizers"]
    theirs = [s["pattern"]["Regex"] for s in steps if s["type"] == "Split"]
    assert [p.encode("utf-8") for p in SPLIT_PATTERNS] == [p.encode("utf-8") for p in theirs]


def test_pre_tokenizer_serializes_like_the_anchor(shared_data):
    """The whole sequence (split behaviours, Digits(individual_digits), ByteLevel without regex)."""
    anchor = json.loads((shared_data / "anchors" / "deepseek_llm_tokenizer.json").read_text(encoding="utf-8"))
    ours = json.loads(Tokenizer.from_str(_anchor(shared_data).to_str()).to_str())  # normalised round trip
    from tokenizers import models

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = deepseek_pre_tokenizer()
    assert json.loads(tok.to_str())["pre_tokenizer"] == ours["pre_tokenizer"]
    assert anchor["pre_tokenizer"]["pretokenizers"][5] == {"type": "Digits", "individual_digits": True}
    assert not anchor["normalizer"].get("normalizers")  # DeepSeek has no normalizer; neither do we


def test_pre_tokenize_str_agrees_on_handwritten_mixed_text(shared_data):
    anchor = _anchor(shared_data).pre_tokenizer
    ours = deepseek_pre_tokenizer()
    for text in HANDWRITTEN:
        assert ours.pre_tokenize_str(text) == anchor.pre_tokenize_str(text), text


def test_pre_tokenize_str_agrees_on_lingua_sentences(shared_data):
    """Every 4th of the 74,141 lingua sentences (75 languages)."""
    anchor = _anchor(shared_data).pre_tokenizer
    ours = deepseek_pre_tokenizer()
    lines = (shared_data / "lingua_langid" / "sentences_labeled.tsv").read_text(encoding="utf-8").splitlines()
    langs = set()
    for line in lines[::4]:
        lang, _, sentence = line.partition("\t")
        langs.add(lang)
        assert ours.pre_tokenize_str(sentence) == anchor.pre_tokenize_str(sentence), (lang, sentence)
    assert len(langs) >= 70


def test_pre_tokenize_str_agrees_on_corpus_texts(shared_data):
    """Whole documents of every corpus file: Wikipedia en/zh, IMDb, poetry, code, LibreOffice help."""
    anchor = _anchor(shared_data).pre_tokenizer
    ours = deepseek_pre_tokenizer()
    n = 0
    for text in _corpus_texts(shared_data):
        assert ours.pre_tokenize_str(text) == anchor.pre_tokenize_str(text)
        n += 1
    assert n >= 12 * 40


@pytest.mark.parametrize("text, expected", [
    ("2024", ["2", "0", "2", "4"]),
    ("a\nb", ["a", "Ċ", "b"]),
    ("中a", ["ä¸Ń", "a"]),
])
def test_categories_never_share_a_pre_token(text, expected):
    assert [p for p, _ in deepseek_pre_tokenizer().pre_tokenize_str(text)] == expected
