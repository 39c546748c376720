"""Heuristic quality rules: Gopher quality + repetition, FineWeb's line rules, C4's rules.

The rules themselves are datatrove's filter classes (``GopherQualityFilter``,
``GopherRepetitionFilter``, ``FineWebQualityFilter``, ``C4QualityFilter``), called on our rows
through a throwaway ``datatrove.data.Document``. What this module adds:

- **Language awareness.** datatrove's filters take a ``language`` that is either a code (it then
  loads an NLTK/spaCy tokenizer -- slow, and for ``zh`` spaCy's blank pipeline does not segment,
  so every Chinese page has ~2 "words") or a ``WordTokenizer`` object. We always pass our own
  tokenizer from :mod:`filters.wordsplit` (jieba for Chinese, a regex elsewhere), and every
  language has its own thresholds: Chinese words are 1.5-3.4 characters (cmrc2018 Wikipedia),
  so Gopher's "mean word length 3-10" would reject all of it, its English stop words never occur,
  and C4's ASCII terminal punctuation and "3 words per line" do not apply.
- **Named rejections.** Each failure names its rule, e.g. ``gopher_min_words`` or
  ``fineweb_line_punct_ratio`` (datatrove's own names, made uniform: see ``RULE_NAMES``).
- **Documents are never rewritten.** C4's filter drops lines as a side effect; we decide on the
  document only and keep its text, so the filter stage is a predicate (set ``c4`` to ``None`` to
  skip C4 entirely).

No downloads: C4's bad-words list (a download in datatrove) is not used.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping

from datatrove.data import Document
from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                        GopherRepetitionFilter)
from datatrove.utils.text import split_into_words

from winnow.filters.wordsplit import word_tokenizer

#: Rule components, in the order they run. Each maps to a datatrove class.
COMPONENTS: dict[str, type] = {
    "gopher_quality": GopherQualityFilter,
    "gopher_repetition": GopherRepetitionFilter,
    "fineweb": FineWebQualityFilter,
    "c4": C4QualityFilter,
}

#: datatrove's rejection names -> ours (named after the threshold that failed).
RULE_NAMES: dict[str, str] = {
    "gopher_short_doc": "gopher_min_words",
    "gopher_long_doc": "gopher_max_words",
    "gopher_below_avg_threshold": "gopher_min_avg_word_len",
    "gopher_above_avg_threshold": "gopher_max_avg_word_len",
    "gopher_too_many_hashes": "gopher_hash_ratio",
    "gopher_too_many_ellipsis": "gopher_ellipsis_ratio",
    "gopher_too_many_bullets": "gopher_bullet_lines",
    "gopher_too_many_end_ellipsis": "gopher_ellipsis_lines",
    "gopher_below_alpha_threshold": "gopher_alpha_words",
    "gopher_enough_stop_words": "gopher_min_stop_words",
}
_COMPONENT_PREFIX = {"gopher_quality": "gopher_", "gopher_repetition": "gopher_rep_", "fineweb": "fineweb_", "c4": "c4_"}

# Chinese stop words: the most frequent function words of cmrc2018's Wikipedia paragraphs
# (jieba split), playing the role of Gopher's "the, be, to, of, and, that, have, with".
ZH_STOP_WORDS = ["的", "在", "是", "了", "和", "与", "有", "也", "不", "这", "他", "就", "都", "而", "及", "被"]

# Defaults per language; "*" is used for languages without an entry. None disables a component.
# en: datatrove's defaults, C4 as FineWeb runs it (no terminal-punctuation line filter).
_EN: dict[str, dict[str, Any] | None] = {
    "gopher_quality": {},
    "gopher_repetition": {},
    "fineweb": {},
    "c4": {"filter_no_terminal_punct": False},
}
# zh: thresholds measured on cmrc2018 (see tests/test_quality.py):
#  - mean jieba word length is 1.54-3.39 characters -> keep 1-4 instead of 3-10;
#  - stop words from the list above;
#  - a "short line" is <= 10 characters instead of 30 (a Chinese character carries roughly a word);
#  - C4: no "3 whitespace words per line" (a Chinese line is one whitespace word).
_ZH: dict[str, dict[str, Any] | None] = {
    "gopher_quality": {"min_avg_word_length": 1, "max_avg_word_length": 4, "stop_words": ZH_STOP_WORDS},
    "gopher_repetition": {},
    "fineweb": {"short_line_length": 10},
    "c4": {"filter_no_terminal_punct": False, "min_words_per_line": -1},
}
DEFAULT_RULES: dict[str, dict[str, dict[str, Any] | None]] = {"en": _EN, "zh": _ZH, "*": _EN}


def merge_rules(overrides: Mapping[str, Mapping[str, Mapping[str, Any] | None]] | None
                ) -> dict[str, dict[str, dict[str, Any] | None]]:
    """Defaults with `overrides` applied: ``{lang: {component: {param: value} | None}}``.

    A language not in the defaults starts from ``"*"``; ``None`` disables a component; a dict
    updates that component's parameters (datatrove's constructor arguments).
    """
    rules = copy.deepcopy(DEFAULT_RULES)
    for lang, comps in (overrides or {}).items():
        base = rules.setdefault(lang, copy.deepcopy(rules["*"]))
        for comp, params in comps.items():
            if comp not in COMPONENTS:
                raise ValueError(f"quality rules for {lang!r}: unknown component {comp!r} "
                                 f"(expected one of {sorted(COMPONENTS)})")
            if params is None:
                base[comp] = None
            else:
                base[comp] = {**(base.get(comp) or {}), **dict(params)}
    return rules


@dataclass(frozen=True)
class QualityResult:
    """The rule that rejected the document (None: it passed) and the signals computed on the way."""

    reason: str | None
    n_words: int


class QualityFilter:
    """All quality rules of every language; datatrove filter objects are built once per language."""

    def __init__(self, overrides: Mapping[str, Mapping[str, Mapping[str, Any] | None]] | None = None):
        self.rules = merge_rules(overrides)
        self._filters: dict[str, list[tuple[str, Any]]] = {}
        for lang in self.rules:  # fail at construction, not on the first document, on a bad param
            self._filters_for(lang)

    def _filters_for(self, lang: str) -> list[tuple[str, Any]]:
        built = self._filters.get(lang)
        if built is None:
            rules = self.rules.get(lang, self.rules["*"])
            tok = word_tokenizer(lang)
            built = []
            for comp, cls in COMPONENTS.items():
                params = rules.get(comp)
                if params is None:
                    continue
                try:
                    built.append((comp, cls(**params, language=tok)))
                except TypeError as exc:
                    raise ValueError(f"quality rules for {lang!r}, {comp}: {exc}") from exc
            self._filters[lang] = built
        return built

    def check(self, text: str, lang: str) -> QualityResult:
        """Run the rules of `lang` on `text` in order; stop at the first failure."""
        tok = word_tokenizer(lang)
        # datatrove caches the last few splits by (text, mode, tokenizer): the filters below reuse it.
        n_words = len(split_into_words(text, tok))
        for comp, flt in self._filters_for(lang):
            doc = Document(text=text, id="")
            result = flt.filter(doc)
            if result is True:
                continue
            name = result[1] if isinstance(result, tuple) and len(result) > 1 else "rejected"
            return QualityResult(reason=rule_name(comp, name), n_words=n_words)
        return QualityResult(reason=None, n_words=n_words)


def rule_name(component: str, datatrove_name: str) -> str:
    """Our name for a datatrove rejection: ``gopher_min_words``, ``fineweb_list_ratio``, ..."""
    if datatrove_name in RULE_NAMES:
        return RULE_NAMES[datatrove_name]
    prefix = _COMPONENT_PREFIX[component]
    name = datatrove_name.replace(" ", "_")
    if name.startswith("gopher_"):
        name = name[len("gopher_"):]
    return prefix + name
