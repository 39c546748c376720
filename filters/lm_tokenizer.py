"""The subword tokeniser in front of the KenLM model (CCNet uses SentencePiece; we use a
``tokenizers`` Unigram model, the same algorithm).

Why a subword tokeniser at all: a word-level n-gram model trained on a few MB of Wikipedia would
see most web words as ``<unk>``; pieces keep the vocabulary closed and the model small.

Input lines are already CCNet-normalised (:mod:`filters.text_normalize`). They are cut into
"words" here, in Python, the same way at training and at scoring time (:func:`words`):

- every Han character is a word of its own. With ~0.5 M characters of Chinese Wikipedia, learned
  multi-character pieces are sparse; a character 5-gram generalises far better (held-out
  Wikipedia median perplexity ~14 vs ~645 with whole-line Unigram pieces, while SEO spam stays
  well above held-out Wikipedia: tests/test_perplexity.py);
- every punctuation or symbol character is a word of its own (SentencePiece's default
  ``split_by_unicode_script`` splits them off too);
- any other run of non-space characters is a word, marked ``▁word`` as SentencePiece marks a
  preceding space.

The Unigram model then cuts each word into pieces. :class:`PieceCutter` caches the pieces of each
whitespace-separated chunk: chunks repeat (Zipf), so most of a document costs one dict lookup per
chunk instead of a regex and a Rust call -- several times faster than ``Tokenizer.encode_batch``,
with identical pieces (the tokenizer's own pre-tokenizer is a plain whitespace split over our
words; the tests check both paths agree).
"""

from __future__ import annotations

import functools
import json
import re
import sys
import unicodedata
from collections import Counter
from typing import Sequence

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

UNK = "<unk>"
WORD_MARK = "▁"
HAN_RANGES = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
#: Room left above the alphabet when the requested vocabulary is smaller than it.
ALPHABET_HEADROOM = 1000
#: Distinct words remembered by a :class:`PieceCutter` before its cache starts over.
CACHE_WORDS = 500_000
#: Recorded in meta.json: a model is only valid with the word split it was trained with.
WORD_SPLIT_VERSION = "han-char + punct/symbol-char + ▁word, v1"


def _char_class(codepoints: list[int]) -> str:
    """A regex character class body for `codepoints` (sorted), as ranges."""
    parts, start, prev = [], None, None
    for cp in codepoints:
        if start is None:
            start = prev = cp
        elif cp == prev + 1:
            prev = cp
        else:
            parts.append((start, prev))
            start = prev = cp
    if start is not None:
        parts.append((start, prev))
    esc = lambda c: re.escape(chr(c))  # noqa: E731
    return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in parts)


@functools.lru_cache(maxsize=1)
def _word_re() -> re.Pattern[str]:
    """(Han char) | (punctuation/symbol char) | (run of anything else but space)."""
    punct = [c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c))[0] in "PS"]
    p = _char_class(punct)
    return re.compile(f"([{HAN_RANGES}])|([{p}])|([^\\s{HAN_RANGES}{p}]+)")


def words(line: str) -> list[str]:
    """The words of one normalised line (see the module docstring)."""
    return [han or punct or WORD_MARK + word for han, punct, word in _word_re().findall(line)]


def alphabet_size(word_lines: Sequence[str]) -> int:
    """Distinct characters of space-joined word lines (the space itself excluded)."""
    chars: Counter[str] = Counter()
    for line in word_lines:
        chars.update(line)
    chars.pop(" ", None)
    return len(chars)


def train_unigram(lines: Sequence[str], vocab_size: int = 8000) -> tuple[Tokenizer, int]:
    """Train a Unigram tokeniser on normalised `lines` (cut by :func:`words`).

    Unigram must hold every character of its training text, so a `vocab_size` below the alphabet
    is raised to alphabet + ``ALPHABET_HEADROOM``. Returns the tokeniser and the vocabulary size
    actually asked for. Piece scores are rounded and tied pieces sorted (:func:`_reproducible`) so
    that the same lines give the same file.
    """
    word_lines = [" ".join(words(line)) for line in lines]
    needed = alphabet_size(word_lines) + 1
    asked = vocab_size if vocab_size > needed else needed + ALPHABET_HEADROOM
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.UnigramTrainer(vocab_size=asked, special_tokens=[UNK], unk_token=UNK,
                                      show_progress=False, max_piece_length=16)
    tok.train_from_iterator(word_lines, trainer=trainer, length=len(word_lines))
    return _reproducible(tok), asked


def _reproducible(tok: Tokenizer, digits: int = 8) -> Tokenizer:
    """The tokeniser with piece log-probabilities rounded to `digits` decimals, unk first, then
    pieces by score and text. The Unigram trainer sums floats in hash-map order, so two runs on
    the same text differ in the 15th digit and list tied pieces in any order."""
    spec = json.loads(tok.to_str())
    model = spec["model"]
    vocab = [[piece, round(score, digits)] for piece, score in model["vocab"]]
    unk_id = model.get("unk_id")
    special = [vocab[unk_id]] if unk_id is not None else []
    rest = sorted((v for i, v in enumerate(vocab) if i != unk_id), key=lambda v: (-v[1], v[0]))
    model["vocab"] = special + rest
    if unk_id is not None:
        model["unk_id"] = 0
    return Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))


class PieceCutter:
    """Cuts normalised lines into Unigram pieces.

    :func:`words` never looks across whitespace, so the pieces of a line are the pieces of its
    whitespace-separated chunks, concatenated. Chunks ("world's," "2019.") repeat like words do, so
    each chunk's pieces are cached: most of a document costs one dict lookup per chunk.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self._tokenize = tokenizer.model.tokenize
        self._chunks: dict[str, list[str]] = {}
        self._words: dict[str, list[str]] = {}

    def _word_pieces(self, word: str) -> list[str]:
        pieces = self._words.get(word)
        if pieces is None:
            if len(self._words) >= CACHE_WORDS:
                self._words.clear()
            pieces = self._words[word] = [t.value for t in self._tokenize(word)]
        return pieces

    def _chunk_pieces(self, chunk: str) -> list[str]:
        pieces: list[str] = []
        for w in words(chunk):
            pieces += self._word_pieces(w)
        if len(chunk) <= 64:  # long chunks (a Chinese line) rarely repeat: do not keep them
            if len(self._chunks) >= CACHE_WORDS:
                self._chunks.clear()
            self._chunks[chunk] = pieces
        return pieces

    def line(self, line: str) -> list[str]:
        """Pieces of one normalised line."""
        out: list[str] = []
        get = self._chunks.get
        for chunk in line.split():
            pieces = get(chunk)
            out += pieces if pieces is not None else self._chunk_pieces(chunk)
        return out

    def lines(self, lines: Sequence[str]) -> list[list[str]]:
        return [self.line(line) for line in lines]


def pieces_reference(tokenizer: Tokenizer, lines: Sequence[str]) -> list[list[str]]:
    """The same pieces through ``Tokenizer.encode_batch`` (no cache); the tests compare both."""
    if not lines:
        return []
    joined = [" ".join(words(line)) for line in lines]
    return [enc.tokens for enc in tokenizer.encode_batch(joined, add_special_tokens=False)]
