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

- **One pass per document, same decisions.** :meth:`QualityFilter.check` does not hand the text
  to the four classes one after another (each re-splitting lines, paragraphs and words, and
  joining every n-gram into a new string); it splits once and evaluates the same rules, in the same
  order, with the same parameters (read from the datatrove objects) on shared counts: a ``Counter``
  of the words for the Gopher ratios; two numba kernels for the n-gram counts (the top 2/3/4-grams
  on word ids, datatrove's greedy duplicated 5-10-gram scan on the joined code points), whose hash
  tables compare the n-grams on every probe; C4's line rules stopping once the outcome is settled.
  Every rejection reason is the one datatrove's classes give (tests/test_quality.py checks this on
  ~1,300 real pages and corner cases; :meth:`QualityFilter.check_reference` is the old path);
  ~5x less CPU than datatrove's pipeline (bench/filter_stage.py, docs/filter-speed.md).

No downloads: C4's bad-words list (a download in datatrove) is not used.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Mapping

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                        GopherRepetitionFilter)
from datatrove.pipeline.filters.c4_filters import CITATION_REGEX, ELLIPSIS, END_PUNCTUATION, POLICY_SUBSTRINGS
from datatrove.pipeline.filters.gopher_repetition_filter import find_top_duplicate, get_n_grams
from datatrove.utils.text import PUNCTUATION_SET, split_into_words
from datatrove.utils.word_tokenizers import load_word_tokenizer
from numba import njit

from winnow.filters.wordsplit import mix64, word_tokenizer

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

    def load(self) -> None:
        """Load what the first document would otherwise load (jieba's dictionary and its table,
        the compiled n-gram kernels; ~1-3 s): call once per worker, so no document pays for it."""
        for lang in self.rules:
            load = getattr(word_tokenizer(lang), "load", None)
            if load is not None and any(v is not None for v in self.rules[lang].values()):
                load()
        doc = _Doc("warm up the compiled n-gram counts", word_tokenizer("en"))
        _top_ngram_chars(doc, 2)
        _all_duplicate_chars(doc, 2, {})

    def check(self, text: str, lang: str) -> QualityResult:
        """Run the rules of `lang` on `text` in order; stop at the first failure.

        The same decisions as :meth:`check_reference` (datatrove's classes one after another), from
        one split of the document shared by all rules."""
        tok = word_tokenizer(lang)
        doc = _Doc(text, tok)
        for comp, flt in self._filters_for(lang):
            fast = _FAST.get(type(flt))
            name = fast(flt, doc) if fast is not None else _call_datatrove(flt, text)
            if name is not None:
                return QualityResult(reason=rule_name(comp, name), n_words=len(doc.words))
        return QualityResult(reason=None, n_words=len(doc.words))

    def check_reference(self, text: str, lang: str) -> QualityResult:
        """The rules as datatrove runs them: each class's ``filter`` on a fresh ``Document``, in
        order. The reference that :meth:`check` must agree with (and the benchmark's peer)."""
        tok = word_tokenizer(lang)
        # datatrove caches the last few splits by (text, mode, tokenizer): the filters below reuse it.
        n_words = len(split_into_words(text, tok))
        for comp, flt in self._filters_for(lang):
            name = _call_datatrove(flt, text)
            if name is not None:
                return QualityResult(reason=rule_name(comp, name), n_words=n_words)
        return QualityResult(reason=None, n_words=n_words)


def _call_datatrove(flt: Any, text: str) -> str | None:
    """datatrove's own ``filter`` on a throwaway Document: None (passed) or its rejection name."""
    result = flt.filter(Document(text=text, id=""))
    if result is True:
        return None
    return result[1] if isinstance(result, tuple) and len(result) > 1 else "rejected"


# ---- the rules on one shared split ---------------------------------------------------------------
# Each function below is the `filter` method of one datatrove class, rewritten to read a `_Doc`
# (splits computed once) and to count with C-level helpers instead of per-word Python loops. Every
# comparison is the same expression on the same numbers (integer counts; float divisions of the
# same integers), so each returns exactly the rejection name datatrove's method returns, or None.

#: datatrove's PUNCTUATION_SET as one string: ``w.strip(_PUNCTUATION_CHARS)`` is empty iff every
#: character of ``w`` is punctuation (a "symbol word", which Gopher's word counts leave out)
_PUNCTUATION_CHARS = "".join(sorted(PUNCTUATION_SET))


class _Doc:
    """One document and its splits, each computed on first use and shared by every rule."""

    __slots__ = ("text", "tok", "_words", "_counts", "_splitlines", "_ids", "_joined")

    def __init__(self, text: str, tok: Any):
        self.text = text
        self.tok = tok
        self._words: list[str] | None = None
        self._counts: Counter | None = None
        self._splitlines: list[str] | None = None
        self._ids: tuple | None = None
        self._joined: str | None = None

    @property
    def words(self) -> list[str]:
        """The word split every datatrove rule uses (``split_into_words`` with our tokenizer)."""
        if self._words is None:
            self._words = self.tok.word_tokenize(self.text)
        return self._words

    @property
    def counts(self) -> Counter:
        if self._counts is None:
            self._counts = Counter(self.words)
        return self._counts

    @property
    def splitlines(self) -> list[str]:
        if self._splitlines is None:
            self._splitlines = self.text.splitlines()
        return self._splitlines

    def word_ids(self) -> tuple[np.ndarray, int, np.ndarray]:
        """(id of each word, number of distinct words, length of each word)."""
        if self._ids is None:
            index = {w: i for i, w in enumerate(self.counts)}
            ids = np.fromiter(map(index.__getitem__, self.words), dtype=np.int64, count=len(self.words))
            lens = np.fromiter(map(len, self.words), dtype=np.int64, count=len(self.words))
            self._ids = (ids, len(index), lens)
        return self._ids

    @property
    def joined(self) -> str:
        """The words concatenated (the string datatrove's ""-joined n-grams are slices of)."""
        if self._joined is None:
            self._joined = "".join(self.words)
        return self._joined

    def has_space_in_word(self) -> bool:
        """True if a word holds " ": then " "-joined n-grams of different words could be equal strings."""
        return " " in self.joined


def _find_duplicates(x: list[str]) -> tuple[int, int]:
    """datatrove's ``find_duplicates``: (repeated elements, their characters), from a Counter."""
    counts = Counter(x)
    return len(x) - len(counts), sum((k - 1) * len(e) for e, k in counts.items() if k > 1)


def _gopher_quality(f: GopherQualityFilter, doc: _Doc) -> str | None:
    text, words, counts = doc.text, doc.words, doc.counts
    n_words = len(words)
    n_non_symbol = 0
    non_symbol_chars = 0
    for w, k in counts.items():
        if w.strip(_PUNCTUATION_CHARS):  # some character outside PUNCTUATION_SET
            n_non_symbol += k
            non_symbol_chars += k * len(w)

    if f.min_doc_words and n_non_symbol < f.min_doc_words:
        return "gopher_short_doc"
    if f.max_doc_words and n_non_symbol > f.max_doc_words:
        return "gopher_long_doc"

    # np.mean of integer lengths: a float64 sum of integers (exact below 2**53) over the count
    avg_n_words = non_symbol_chars / n_non_symbol if n_non_symbol else math.nan
    if f.min_avg_word_length and avg_n_words < f.min_avg_word_length:
        return "gopher_below_avg_threshold"
    if f.max_avg_word_length and avg_n_words > f.max_avg_word_length:
        return "gopher_above_avg_threshold"

    if f.max_symbol_word_ratio and text.count("#") / n_words > f.max_symbol_word_ratio:
        return "gopher_too_many_hashes"
    if f.max_symbol_word_ratio and (text.count("...") + text.count("…")) / n_words > f.max_symbol_word_ratio:
        return "gopher_too_many_ellipsis"

    lines = doc.splitlines
    if (f.max_bullet_lines_ratio
            and sum(1 for s in lines if s.lstrip().startswith(("•", "-"))) / len(lines) > f.max_bullet_lines_ratio):
        return "gopher_too_many_bullets"
    if (f.max_ellipsis_lines_ratio
            and sum(1 for s in lines if s.rstrip().endswith(("...", "…"))) / len(lines) > f.max_ellipsis_lines_ratio):
        return "gopher_too_many_end_ellipsis"

    if f.max_non_alpha_words_ratio:
        n_alpha = sum(k for w, k in counts.items() if w.isalpha() or any(c.isalpha() for c in w))
        if n_alpha / n_words < f.max_non_alpha_words_ratio:
            return "gopher_below_alpha_threshold"

    if f.min_stop_words and len(f.stop_words.intersection(counts)) < f.min_stop_words:
        return "gopher_enough_stop_words"
    return None


def _top_ngram_chars(doc: _Doc, n: int) -> int | None:
    """``find_top_duplicate(get_n_grams(words, n))`` (None: no n-grams): characters of the most
    frequent " "-joined n-gram times its count, ties to the first seen. Counted on word ids (the
    same thing while no word holds a space; else datatrove's function runs)."""
    words = doc.words
    m = len(words) - n + 1
    if m <= 0:
        return None
    if doc.has_space_in_word():
        return find_top_duplicate(get_n_grams(words, n))
    ids, _, lens = doc.word_ids()
    return int(_top_ngram_kernel(ids, lens, n, _HASH_MASK))


#: ANDed into every n-gram hash; tests set it to 0 to make every n-gram collide with every other
_HASH_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


@njit(cache=True)
def _table_size(m):
    size = 16
    while size < 2 * m:
        size *= 2
    return size


@njit(cache=True)
def _top_ngram_kernel(ids, lens, n, hash_mask):
    """Counter of the n-grams of word ids (hash table, ids compared on every probe); the count of
    the most frequent, ties to the first seen (Counter.most_common(1)); its " "-joined length
    times its count."""
    m = len(ids) - n + 1
    size = _table_size(m)
    mask = size - 1
    slot_pos = np.full(size, -1, dtype=np.int64)
    slot_count = np.zeros(size, dtype=np.int64)
    slot_hash = np.zeros(size, dtype=np.uint64)
    best_count = 0
    best_pos = 0
    c = 0
    p_first = 0
    for i in range(m):
        h = np.uint64(0)
        for j in range(n):
            h = h * np.uint64(0x100000001B3) + np.uint64(ids[i + j] + 1)
        h &= hash_mask
        s = np.int64(mix64(h) & np.uint64(mask))
        while True:
            p = slot_pos[s]
            if p == -1:
                slot_pos[s] = i
                slot_hash[s] = h
                slot_count[s] = 1
                c = 1
                break
            if slot_hash[s] == h:
                same = True
                for j in range(n):
                    if ids[p + j] != ids[i + j]:
                        same = False
                        break
                if same:
                    slot_count[s] += 1
                    c = slot_count[s]
                    p_first = p
                    break
            s = (s + 1) & mask
        first = i if c == 1 else p_first
        # most_common(1) = max over the Counter in first-seen order: a higher count wins, a tie
        # goes to the n-gram seen first
        if c > best_count or (c == best_count and first < best_pos):
            best_count = c
            best_pos = first
    chars = n - 1
    for j in range(n):
        chars += lens[best_pos + j]
    return chars * best_count


@njit(cache=True)
def _dup_ngram_kernel(cp, off, n, hash_mask):
    """datatrove's ``find_all_duplicate`` on the ""-joined n-grams (code points ``cp``, word
    boundaries ``off``): left to right, an n-gram already in the set adds its characters and the
    scan jumps n words, else it joins the set. The set is a hash table whose every probe compares
    the code points, so it holds exactly datatrove's strings."""
    m = len(off) - n
    if m <= 0:
        return 0
    size = _table_size(m)
    mask = size - 1
    slot_pos = np.full(size, -1, dtype=np.int64)
    slot_hash = np.zeros(size, dtype=np.uint64)
    repeated = 0
    idx = 0
    while idx < m:
        a = off[idx]
        b = off[idx + n]
        h = np.uint64(b - a)
        for j in range(a, b):
            h = h * np.uint64(0x100000001B3) + np.uint64(cp[j])
        h &= hash_mask
        s = np.int64(mix64(h) & np.uint64(mask))
        found = False
        while True:
            p = slot_pos[s]
            if p == -1:
                break
            if slot_hash[s] == h and off[p + n] - off[p] == b - a:
                same = True
                q = off[p]
                for j in range(b - a):
                    if cp[q + j] != cp[a + j]:
                        same = False
                        break
                if same:
                    found = True
                    break
            s = (s + 1) & mask
        if found:
            repeated += b - a
            idx += n
        else:
            slot_pos[s] = idx
            slot_hash[s] = h
            idx += 1
    return repeated


def _all_duplicate_chars(doc: _Doc, n: int, state: dict) -> int:
    """``find_all_duplicate(words, n)`` (see :func:`_dup_ngram_kernel`)."""
    if len(doc.words) - n + 1 <= 0:
        return 0
    if "cp" not in state:
        offsets = np.zeros(len(doc.words) + 1, dtype=np.int64)
        np.cumsum(doc.word_ids()[2], out=offsets[1:])
        state["off"] = offsets
        state["cp"] = np.frombuffer(doc.joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return int(_dup_ngram_kernel(state["cp"], state["off"], n, _HASH_MASK))


def _gopher_repetition(f: GopherRepetitionFilter, doc: _Doc) -> str | None:
    text = doc.text
    if not text:
        return "empty"
    paragraphs = f.paragraph_exp.split(text.strip())
    paragraphs_duplicates, char_duplicates = _find_duplicates(paragraphs)
    if f.dup_para_frac and paragraphs_duplicates / len(paragraphs) > f.dup_para_frac:
        return "dup_para_frac"
    if f.dup_para_char_frac and char_duplicates / len(text) > f.dup_para_char_frac:
        return "dup_para_char_frac"

    lines = f._line_splitter.split(text)
    line_duplicates, char_duplicates = _find_duplicates(lines)
    if f.dup_line_frac and line_duplicates / len(lines) > f.dup_line_frac:
        return "dup_line_frac"
    if f.dup_line_char_frac and char_duplicates / len(text) > f.dup_line_char_frac:
        return "dup_line_char_frac"

    for n, n_frac in f.top_n_grams:
        top_char_length = _top_ngram_chars(doc, n)
        if top_char_length is None:
            continue
        if top_char_length / len(text) > n_frac:
            return f"top_{n}_gram"

    state: dict = {}
    for n, n_frac in f.dup_n_grams:
        if _all_duplicate_chars(doc, n, state) / len(text) > n_frac:
            return f"duplicated_{n}_n_grams"
    return None


@lru_cache(maxsize=64)
def _single_chars(stop: Any) -> frozenset | None:
    """FineWeb's stop characters as a set when they are a tuple of single characters, else None."""
    if isinstance(stop, tuple) and all(isinstance(c, str) and len(c) == 1 for c in stop):
        return frozenset(stop)
    return None


def _fineweb(f: FineWebQualityFilter, doc: _Doc) -> str | None:
    text = doc.text
    lines = [line for line in text.split("\n") if line and not line.isspace()]  # line.strip() != ""
    if len(lines) == 0:
        return "empty"
    stop_set = _single_chars(f.stop_chars) if isinstance(f.stop_chars, tuple) else None
    if stop_set is not None:  # lines are non-empty: endswith(one of these) looks at the last char
        ratio = sum(1 for line in lines if line[-1] in stop_set) / len(lines)
    else:
        ratio = sum(1 for line in lines if line.endswith(f.stop_chars)) / len(lines)
    if ratio < f.line_punct_thr and not (ratio == 0 and f.line_punct_exclude_zero):
        return "line_punct_ratio"

    ratio = sum(1 for line in lines if len(line) <= f.short_line_length) / len(lines)
    if ratio > f.short_line_threshold:
        return "short_line_ratio"

    ratio = _find_duplicates(lines)[1] / (len(text) - text.count("\n"))  # len(text.replace("\n", ""))
    if ratio > f.char_duplicates_ratio:
        return "char_dup_ratio"

    new_line = text.count("\n")
    if new_line / len(doc.words) > f.new_line_ratio:
        return "list_ratio"
    return None


def _c4(f: C4QualityFilter, doc: _Doc) -> str | None:
    """C4's line rules (``split_paragraph=True``; other settings go to datatrove's method). The
    document is never rewritten here, so only the decision is computed: once enough sentences are
    counted and no line can reject the whole page (no "{", no "lorem ipsum"), the rest cannot
    change it."""
    if not f.split_paragraph:
        return _call_datatrove(f, doc.text)
    text = doc.text
    can_reject_page = ((f.filter_curly_bracket and "{" in text)
                       or (f.filter_lorem_ipsum and "lorem ipsum" in (
                           CITATION_REGEX.sub("", text) if f.remove_citations else text).lower()))
    need = f.min_num_sentences
    if need == -1 and not can_reject_page:
        return None
    max_word = f.max_word_length
    min_words = f.min_words_per_line
    span_tokenize = load_word_tokenizer(f.language).span_tokenize
    num_sentences = 0
    for line in doc.splitlines:
        line = line.strip()
        words = line.split() if (min_words > 0 or (max_word != -1 and len(line) > max_word)) else None
        if max_word != -1 and len(line) > max_word and any(len(word) > max_word for word in words):
            continue
        if f.remove_citations and "[" in line:
            line = CITATION_REGEX.sub("", line)
        if f.filter_no_terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith(ELLIPSIS)):
            continue
        if min_words > 0 and len(words) < min_words:
            continue
        line_l = line.lower()
        if f.filter_lorem_ipsum and "lorem ipsum" in line_l:
            return "lorem_ipsum"
        if f.filter_javascript and "javascript" in line_l:
            continue
        if f.filter_curly_bracket and "{" in line:
            return "curly_bracket"
        if f.filter_policy and any(p in line_l for p in POLICY_SUBSTRINGS):
            continue
        if need != -1:
            num_sentences += max(1, len(span_tokenize(line)))  # len(split_into_sentences(line))
            if num_sentences >= need and not can_reject_page:
                return None
    if num_sentences < need:
        return "too_few_sentences"
    return None


_FAST: dict[type, Callable[[Any, _Doc], str | None]] = {
    GopherQualityFilter: _gopher_quality,
    GopherRepetitionFilter: _gopher_repetition,
    FineWebQualityFilter: _fineweb,
    C4QualityFilter: _c4,
}


def rule_name(component: str, datatrove_name: str) -> str:
    """Our name for a datatrove rejection: ``gopher_min_words``, ``fineweb_list_ratio``, ..."""
    if datatrove_name in RULE_NAMES:
        return RULE_NAMES[datatrove_name]
    prefix = _COMPONENT_PREFIX[component]
    name = datatrove_name.replace(" ", "_")
    if name.startswith("gopher_"):
        name = name[len("gopher_"):]
    return prefix + name
