"""filters/quality + filters/wordsplit: datatrove's rules, language-aware, each rejection named."""

from __future__ import annotations

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
