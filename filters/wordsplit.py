"""Language-aware word and sentence split for the quality rules.

Gopher's and FineWeb's rules count words ("at least 50 words", "mean word length 3-10"). Chinese
has no spaces, so a whitespace split sees a whole paragraph as one or two "words" and every
Chinese page fails a 50-word rule. Measured on the 1,104 Simplified-Chinese Wikipedia paragraphs of
cmrc2018: whitespace split, median 2 words, 0.4% pass; datatrove's own ``zh`` tokenizer (spaCy's
blank Chinese pipeline) also median 2 words, 0% pass; jieba, median 236 words, 100% pass (see
tests/test_quality.py). So:

- ``zh`` (and the other Han-script codes lid.176 emits): jieba's dictionary segmentation
  (``HMM=False``: 30% faster, and new-word discovery does not matter for counting);
- everything else: a regex word split (``\\w+`` runs joined by inner ``-'./,:``, each other
  symbol its own token). It agrees with datatrove's spaCy English tokenizer on what a word is,
  and is ~50x faster (0.15 s vs 7.7 s on 2.5 MB of CommonCrawl text).

Both implement datatrove's ``WordTokenizer`` interface, so datatrove's filter classes can be given
one as their ``language`` and run unchanged. Nothing is downloaded: jieba's dictionary is inside
its wheel.
"""

from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache

from datatrove.utils.word_tokenizers import WordTokenizer

#: lid.176 codes of languages written in Han characters without spaces.
HAN_LANGUAGES = frozenset({"zh", "yue", "wuu", "gan"})

_WORD_RE = re.compile(r"\w+(?:[-'’./,:]\w+)*")
# A sentence ends at a run of terminal punctuation plus any closing quotes/brackets.
_SENT_END_RE = re.compile(r"[.!?。！？…]+[\"'”’)\]」』]*")
_HAS_WORD_CHAR_RE = re.compile(r"\w")
_jieba_lock = threading.Lock()


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _SENT_END_RE.finditer(text):
        end = m.end()
        if text[start:end].strip():
            spans.append((start, end))
        start = end
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


class RegexWordTokenizer(WordTokenizer):
    """Words of space-delimited languages by one regex; sentences end at ``. ! ? 。 ！ ？ …``."""

    def word_tokenize(self, text: str) -> list[str]:
        return _WORD_RE.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [text[a:b].strip() for a, b in _sentence_spans(text)]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return _sentence_spans(text)


class JiebaWordTokenizer(RegexWordTokenizer):
    """Chinese words by jieba's dictionary segmentation; whitespace tokens are dropped."""

    def __init__(self, language: str | None = "zh"):
        super().__init__(language)
        self._jieba = None

    def _load(self):
        if self._jieba is None:
            with _jieba_lock:
                if self._jieba is None:
                    import jieba

                    jieba.setLogLevel(logging.WARNING)
                    jieba.initialize()
                    self._jieba = jieba
        return self._jieba

    def word_tokenize(self, text: str) -> list[str]:
        return [w for w in self._load().lcut(text, HMM=False) if _HAS_WORD_CHAR_RE.search(w)]


@lru_cache(maxsize=None)
def word_tokenizer(lang: str) -> WordTokenizer:
    """The (shared, cached) word tokenizer for a lid.176 language code."""
    if lang in HAN_LANGUAGES:
        return JiebaWordTokenizer(lang)
    return RegexWordTokenizer(lang)


def split_words(text: str, lang: str) -> list[str]:
    """Words of `text` in language `lang`, punctuation tokens included (as Gopher counts them)."""
    return word_tokenizer(lang).word_tokenize(text)
