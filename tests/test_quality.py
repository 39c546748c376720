"""filters/quality + filters/wordsplit: datatrove's rules, language-aware, each rejection named."""

from __future__ import annotations

import collections
import statistics
from pathlib import Path

import pytest

from winnow.filters.quality import QualityFilter, merge_rules, rule_name
from winnow.filters.reftext import documents
from winnow.filters.wordsplit import split_words


@pytest.fixture(scope="module")
def qf() -> QualityFilter:
    return QualityFilter()


@pytest.fixture(scope="module")
def zh_paragraphs(shared_data: Path) -> list[str]:
    path = shared_data / "ref_text" / "cmrc2018" / "cmrc2018_contexts_zh.txt"
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def en_articles(shared_data: Path) -> list[str]:
    text = (shared_data / "ref_text" / "wikitext2" / "test.txt").read_text(encoding="utf-8")
    return list(documents(text.splitlines(), "wikitext"))


def _good_english(n_sentences: int = 12) -> str:
    sentences = [
        "The river runs through the old town and past the mill that was built in the last century.",
        "Local farmers have used the water to irrigate their fields for many generations.",
        "In the spring the snow melts in the mountains and the level of the river rises quickly.",
        "The town council decided to build a new bridge that would be safe during floods.",
        "Engineers studied the banks of the river for two years before they began the work.",
        "The bridge was opened to the public with a small ceremony attended by the mayor.",
        "Children from the school that stands next to the river sang songs for the visitors.",
        "Since then the bridge has become a popular place to watch the sunset over the valley.",
        "Tourists often stop there to take photographs of the mill and the water below it.",
        "A small museum near the bridge tells the history of the town and of its people.",
        "It is open every day except Monday, and entry is free for children and students.",
        "Volunteers who live in the town guide visitors and answer their questions with pride.",
    ]
    return "\n".join(sentences[:n_sentences])


def test_chinese_word_count_needs_a_real_word_split(zh_paragraphs: list[str]) -> None:
    """The measurement behind the zh rules: a 50-word rule on 1,104 Chinese Wikipedia paragraphs."""
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    def pass_rate(counts: list[int]) -> float:
        return sum(c >= 50 for c in counts) / len(counts)

    whitespace = [len(p.split()) for p in zh_paragraphs]
    jieba_words = [len(split_words(p, "zh")) for p in zh_paragraphs]
    spacy_zh = load_word_tokenizer("zh")  # datatrove's default for zh (spaCy's blank Chinese pipeline)
    sample = zh_paragraphs[:150]
    datatrove_default = [len([w for w in spacy_zh.word_tokenize(p) if any(c.isalnum() for c in w)]) for p in sample]
    print(f"\nzh >= 50 words: whitespace {pass_rate(whitespace):.3f} (median {statistics.median(whitespace)}), "
          f"datatrove spaCy-zh {pass_rate(datatrove_default):.3f} (median {statistics.median(datatrove_default)}), "
          f"jieba {pass_rate(jieba_words):.3f} (median {statistics.median(jieba_words)})")
    assert pass_rate(whitespace) < 0.01
    assert pass_rate(datatrove_default) < 0.05
    assert pass_rate(jieba_words) > 0.99
    # jieba words are 1.5-3.4 characters on average, so Gopher's 3-10 range cannot apply to zh.
    mean_len = [statistics.mean(len(w) for w in split_words(p, "zh")) for p in zh_paragraphs[:200]]
    assert statistics.median(mean_len) < 3


def test_chinese_wikipedia_passes_zh_rules_and_fails_english_ones(qf: QualityFilter, zh_paragraphs: list[str]) -> None:
    zh_pass = sum(qf.check(p, "zh").reason is None for p in zh_paragraphs) / len(zh_paragraphs)
    en_pass = sum(qf.check(p, "en").reason is None for p in zh_paragraphs) / len(zh_paragraphs)
    print(f"\ncmrc2018 paragraphs passing: zh rules {zh_pass:.3f}, en rules {en_pass:.3f}")
    assert zh_pass > 0.7
    assert en_pass < 0.05


def test_english_wikipedia_passes(qf: QualityFilter, en_articles: list[str]) -> None:
    results = [qf.check(a, "en") for a in en_articles]
    passed = sum(r.reason is None for r in results) / len(results)
    print(f"\nWikiText-2 test articles passing en rules: {passed:.3f} of {len(results)}")
    assert passed > 0.85
    assert all(r.n_words > 0 for r in results)


def test_each_rejection_names_its_rule(qf: QualityFilter) -> None:
    good = _good_english()
    assert qf.check(good, "en").reason is None
    assert qf.check("Too short to be a page.", "en").reason == "gopher_min_words"
    assert qf.check("!!! ??? ... ,,, ;;;", "en").reason == "gopher_min_words"
    repeated = "\n".join(["Buy cheap watches online today with free shipping and the best prices."] * 20)
    assert qf.check(repeated, "en").reason.startswith("gopher_rep_")
    assert qf.check(good + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.", "en").reason == "c4_lorem_ipsum"
    assert qf.check(good + "\nfunction f() { return 1; } is the code that the page shows.", "en").reason == "c4_curly_bracket"
    no_stop = " ".join(f"Product{i} price{i} discount{i} shipping{i} warranty{i}." for i in range(30))
    assert qf.check(no_stop, "en").reason == "gopher_min_stop_words"
    hashes = good + "\n" + " ".join(f"#tag{i}" for i in range(60))
    assert qf.check(hashes, "en").reason == "gopher_hash_ratio"


def test_rule_names() -> None:
    assert rule_name("gopher_quality", "gopher_short_doc") == "gopher_min_words"
    assert rule_name("gopher_repetition", "dup_line_frac") == "gopher_rep_dup_line_frac"
    assert rule_name("fineweb", "line_punct_ratio") == "fineweb_line_punct_ratio"
    assert rule_name("c4", "curly_bracket") == "c4_curly_bracket"


def test_overrides_and_bad_overrides() -> None:
    rules = merge_rules({"zh": {"c4": None}, "fr": {"gopher_quality": {"min_doc_words": 10}}})
    assert rules["zh"]["c4"] is None
    assert rules["zh"]["gopher_quality"]["stop_words"]  # untouched keys keep their defaults
    assert rules["fr"]["gopher_quality"]["min_doc_words"] == 10
    lenient = QualityFilter({"en": {"gopher_quality": {"min_doc_words": 3}, "gopher_repetition": None,
                                    "c4": None, "fineweb": None}})
    assert lenient.check("The cat and the dog sat on the mat with the hat.", "en").reason is None
    with pytest.raises(ValueError, match="unknown component"):
        merge_rules({"en": {"gopher": {}}})
    with pytest.raises(ValueError, match="min_words"):
        QualityFilter({"en": {"gopher_quality": {"min_words": 10}}})


def test_mixed_scripts_and_chinese_page(qf: QualityFilter) -> None:
    zh = ("北京是中华人民共和国的首都，也是全国的政治中心和文化中心。这座城市有三千多年的建城史，"
          "保存着大量的历史古迹，其中故宫是世界上现存规模最大的木质结构古建筑群之一。")
    page = "\n".join([zh] * 1 + [zh.replace("北京", f"城市{i}") for i in range(1, 6)])
    result = qf.check(page, "zh")
    assert result.n_words > 150  # jieba words, not 6 whitespace "words"
    mixed = page + "\nWinnow uses Python and Ray 来处理数据，并且训练 KenLM 模型。"
    assert qf.check(mixed, "zh").n_words > result.n_words


# ---- the one-pass rules (QualityFilter.check) against datatrove's classes (check_reference) -------

def _real_documents(shared_data: Path) -> list[str]:
    """697 CC-MAIN-2019-30 pages, CCNet head documents and 300 cmrc2018 paragraphs (zh)."""
    import gzip
    import json

    cc = gzip.open(shared_data / "dolma" / "CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz", "rt", encoding="utf-8")
    docs = [json.loads(line)["text"] for line in cc]
    for name in sorted((shared_data / "dolma").glob("cc_en_head-*.jsonl")):
        docs += [json.loads(line)["text"] for line in name.read_text(encoding="utf-8").splitlines() if line.strip()]
    zh = (shared_data / "ref_text" / "cmrc2018" / "cmrc2018_contexts_zh.txt").read_text(encoding="utf-8")
    paragraphs = [p for p in zh.splitlines() if p.strip()]
    docs += ["\n".join(paragraphs[i:i + 3]) for i in range(0, 900, 3)]  # multi-line Chinese pages
    return [d for d in docs if d and d.strip()]


def _tricky_documents() -> list[str]:
    """Pages that reach each rule's corner: repeats, ties, joined n-grams equal across different
    word splits, symbol-only words, bullets, citations hiding 'lorem ipsum', very long words."""
    good = _good_english()
    base = good.split("\n")
    return [
        good,
        "\n".join(base * 3),                                   # duplicated lines and paragraphs
        "\n\n".join(base + base[:4]),                          # duplicated paragraphs
        good + "\n" + " ".join(["ab c", "a bc"] * 40),         # ""-joined 5-grams equal, word tuples differ
        good + "\n" + " ".join(f"w{i % 7} x{i % 5}" for i in range(300)),  # many repeated n-grams, skips
        good + "\n" + " ".join(["one two", "two one"] * 60),   # top-2-gram ties
        good + "\n" + "_ __ ___ １ ！ ... …" * 30,             # words made of punctuation only
        "\n".join("• " + s for s in base) + "\n- " + base[0],  # bullets
        "\n".join(s + " ..." for s in base),                   # ellipsis lines
        good + "\nLorem[1] ipsum dolor sit amet is what the template said at the time.",
        good + "\nLOREM IPSUM dolor sit amet, this line is long enough to count here.",
        good + "\nThe word " + "x" * 1200 + " is longer than C4 allows on one line.",
        good + "\nWe use cookies. See the privacy policy and terms of use of this website.",
        good + "\nEnable JavaScript to view the rest of the comments on this page please.",
        good.replace(".", ""),                                 # no terminal punctuation
        "\r\n".join(base) + "\u2028" + base[0] + "\x85" + base[1],  # other line breaks
        "北京是中国的首都。" * 40 + "\n" + "上海是一座城市，abc 123 x y z 也在这里。" * 30,
        "重复的句子。\n" * 30,
        " ".join(["词"] * 400),
        good + "\n" + "\ud800 broken surrogate text with the words of a page and a line." * 3,
    ]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_one_pass_rules_equal_datatrove_classes(qf: QualityFilter, shared_data: Path, lang: str) -> None:
    """check() must give exactly the reason (and word count) of datatrove's four classes run one
    after another, on real pages and on pages built to reach every rule."""
    docs = _real_documents(shared_data) + _tricky_documents()
    fast = [qf.check(d, lang) for d in docs]
    reference = [qf.check_reference(d, lang) for d in docs]
    differ = [(i, f, r) for i, (f, r) in enumerate(zip(fast, reference)) if f != r]
    assert not differ, differ[:5]
    reasons = collections.Counter(r.reason for r in reference)
    print(f"\n{lang} rules on {len(docs)} documents: {dict(reasons.most_common(8))}")
    assert len(reasons) >= 6  # the documents do reach many different rules


def test_one_pass_rules_with_overrides(shared_data: Path) -> None:
    """Every parameter comes from the datatrove objects: overridden thresholds, custom stop
    characters, C4 counting sentences of all lines, C4 by sentences (datatrove's own method)."""
    overrides = {"en": {"gopher_quality": {"min_doc_words": 20, "max_avg_word_length": 8, "min_stop_words": 1},
                        "gopher_repetition": {"top_n_grams": ((2, 0.1), (5, 0.1)), "dup_n_grams": ((3, 0.05), (12, 0.05))},
                        "fineweb": {"stop_chars": (".", "!"), "line_punct_exclude_zero": True},
                        "c4": {"split_paragraph": False, "min_num_sentences": 3}},
                 "zh": {"fineweb": {"stop_chars": ("。", "！？")}, "c4": {"min_num_sentences": -1}}}
    qf2 = QualityFilter(overrides)
    docs = _real_documents(shared_data)[:400] + _tricky_documents()
    for lang in ("en", "zh"):
        assert [qf2.check(d, lang) for d in docs] == [qf2.check_reference(d, lang) for d in docs]


def test_hash_collisions_change_nothing(qf: QualityFilter, monkeypatch: pytest.MonkeyPatch) -> None:
    """The n-gram tables trust no hash: with every n-gram hashing alike, every probe compares the
    n-grams themselves and the decisions stay datatrove's."""
    import numpy as np

    from winnow.filters import quality

    docs = _tricky_documents()
    reference = [qf.check_reference(d, "en") for d in docs]
    monkeypatch.setattr(quality, "_HASH_MASK", np.uint64(0))
    assert [qf.check(d, "en") for d in docs] == reference


def test_jieba_split_equals_jieba_lcut(zh_paragraphs: list[str]) -> None:
    """Our one-loop jieba (same dictionary, same scores, same ties) gives jieba's own words."""
    from winnow.filters.wordsplit import word_tokenizer

    tok = word_tokenizer("zh")
    texts = zh_paragraphs + _tricky_documents() + ["", "   ", "a b c 1 2 3 abc123 中文English混合 ＡＢＣ"]
    for text in texts:
        assert tok.word_tokenize(text) == tok.reference_word_tokenize(text)
