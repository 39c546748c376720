"""Language-aware word and sentence split for the quality rules.

Gopher's and FineWeb's rules count words ("at least 50 words", "mean word length 3-10"). Chinese
has no spaces, so a whitespace split sees a whole paragraph as one or two "words" and every
Chinese page fails a 50-word rule. Measured on the 1,104 Simplified-Chinese Wikipedia paragraphs of
cmrc2018: whitespace split, median 2 words, 0.4% pass; datatrove's own ``zh`` tokenizer (spaCy's
blank Chinese pipeline) also median 2 words, 0% pass; jieba, median 236 words, 100% pass (see
tests/test_quality.py). So:

- ``zh`` (and the other Han-script codes lid.176 emits): jieba's dictionary segmentation
  (``HMM=False``: 30% faster, and new-word discovery does not matter for counting). jieba's own
  ``lcut`` builds a DAG dict, a route dict and a generator per run of Han characters; we run the
  same dynamic programme over jieba's dictionary (``jieba.dt.FREQ``, same scores, same tie-break)
  in one loop and drop the non-word tokens as we go: the same words, ~2x faster (the tests
  compare both on every cmrc2018 paragraph and the filter stage's sample);
- everything else: a regex word split (``\\w+`` runs joined by inner ``-'./,:``, each other
  symbol its own token). It agrees with datatrove's spaCy English tokenizer on what a word is,
  and is ~50x faster (0.15 s vs 7.7 s on 2.5 MB of CommonCrawl text).

Both implement datatrove's ``WordTokenizer`` interface, so datatrove's filter classes can be given
one as their ``language`` and run unchanged. Nothing is downloaded: jieba's dictionary is inside
its wheel.
"""

from __future__ import annotations

import logging
import math
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
_WORD_CHAR_RE = re.compile(r"\w")
# jieba's block split (jieba.re_han_default) and its "English" single characters (jieba.re_eng)
_JIEBA_HAN_RE = re.compile("([\u4E00-\u9FD5a-zA-Z0-9+#&\\._%\\-]+)", re.U)
_JIEBA_ENG = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
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
        """``[w for w in jieba.lcut(text, HMM=False) if re.search(r"\\w", w)]``, computed directly."""
        jieba = self._load()
        dt = jieba.dt
        dt.check_initialized()
        freq, logtotal = dt.FREQ, math.log(dt.total)
        words: list[str] = []
        for blk in _JIEBA_HAN_RE.split(text):
            if not blk:
                continue
            if _JIEBA_HAN_RE.match(blk):
                _cut_block_no_hmm(blk, freq, logtotal, words)
            else:  # jieba yields whitespace runs and then every other character on its own
                words.extend(_WORD_CHAR_RE.findall(blk))
        return words

    def load(self) -> None:
        """Load jieba and its dictionary now (otherwise on the first Chinese document)."""
        self._load().dt.check_initialized()

    def reference_word_tokenize(self, text: str) -> list[str]:
        """The same split through jieba's own ``lcut`` (what :meth:`word_tokenize` must equal)."""
        return [w for w in self._load().lcut(text, HMM=False) if _HAS_WORD_CHAR_RE.search(w)]


def _cut_block_no_hmm(sentence: str, freq: dict, logtotal: float, out: list[str]) -> None:
    """jieba's ``__cut_DAG_NO_HMM`` on one block (``get_DAG`` + ``calc`` + the walk), appending the
    words that hold a word character to `out`.

    ``calc`` picks, right to left, ``max((log(FREQ[w] or 1) - logtotal + score[x + 1], x))`` over
    the dictionary words ``w = sentence[idx:x + 1]`` starting at ``idx`` (the single character when
    there are none): the same float expression here, and a tie goes to the larger ``x`` as in the
    tuple comparison. The walk glues runs of single ASCII letters/digits together, as jieba does."""
    n = len(sentence)
    score = [0.0] * (n + 1)
    end = [0] * (n + 1)
    log = math.log
    get = freq.get  # values are ints: None <=> not a word nor a prefix of one
    for idx in range(n - 1, -1, -1):
        best_s = 0.0
        best_x = -1
        i = idx
        f0 = f = get(sentence[idx])
        while f is not None:  # get_DAG: extend while the fragment is a dictionary prefix
            if f:
                s = log(f) - logtotal + score[i + 1]
                if best_x < 0 or s >= best_s:  # candidates come in increasing x: ties -> larger x
                    best_s, best_x = s, i
            i += 1
            if i >= n:
                break
            f = get(sentence[idx:i + 1])
        if best_x < 0:  # no dictionary word starts here: the character alone, frequency 1
            best_s, best_x = log(f0 or 1) - logtotal + score[idx + 1], idx
        score[idx] = best_s
        end[idx] = best_x
    x = 0
    buf = ""
    while x < n:
        y = end[x] + 1
        word = sentence[x:y]
        if y - x == 1 and word in _JIEBA_ENG:
            buf += word
        else:
            if buf:
                out.append(buf)  # ASCII letters and digits: always a word character
                buf = ""
            if word.isalnum() or _HAS_WORD_CHAR_RE.search(word):  # isalnum() implies a \w character
                out.append(word)
        x = y
    if buf:
        out.append(buf)


@lru_cache(maxsize=None)
def word_tokenizer(lang: str) -> WordTokenizer:
    """The (shared, cached) word tokenizer for a lid.176 language code."""
    if lang in HAN_LANGUAGES:
        return JiebaWordTokenizer(lang)
    return RegexWordTokenizer(lang)


def split_words(text: str, lang: str) -> list[str]:
    """Words of `text` in language `lang`, punctuation tokens included (as Gopher counts them)."""
    return word_tokenizer(lang).word_tokenize(text)
