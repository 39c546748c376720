"""Text normalisation for MinHash shingles, as one lookup table over code points.

What a shingle sees (the DeepSeek/FineWeb recipe, made exact and vectorisable):
- lowercase; accents stripped (NFKD, combining marks dropped); every digit → ``0``;
- everything that is not a letter or a number (punctuation, symbols, whitespace, controls,
  U+FFFD left by undecodable bytes) is a word separator;
- format characters (soft hyphen, ZWJ, BOM) and stray combining marks are deleted, not split;
- CJK ideographs and kana carry no spaces: in ``"char"`` mode each one is its own token (a
  5-gram is then 5 characters, ~2–3 words), in ``"jieba"`` mode documents with CJK text are
  first split into words by jieba (a real word split; ~80× slower, see bench/dedup.py).

Why a table: per code point the whole rule is a pure function, so it is precomputed once per
process (≈1 s, then cached on disk) into ``KIND`` / ``MAPPED`` arrays; the kernels in
``minhash.py`` then normalise, split and hash a whole Arrow batch in one pass with no Python per
character. A code point that normalises to several characters (``ﬁ`` → ``fi``, ``½`` → ``0 0``)
is an *expansion*, spelled out in ``EXP_KIND`` / ``EXP_MAPPED``.

``tokens()`` is the plain-Python reference of the same rule: the tests check the kernels and
the datasketch oracle against it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import sys
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Kinds of code point.
SEP = 0      # word separator
CHAR = 1     # part of a word; MAPPED holds its normalised code point
DROP = 2     # deleted (format characters, combining marks)
EXPAND = 3   # several normalised characters; MAPPED indexes the expansion tables
CJK = 4      # a CJK ideograph / kana: its own token in "char" mode, a letter otherwise

#: Code points at or above this are separators (planes 4-16: private use, tags, unassigned).
LIMIT = 0x40000
TABLE_VERSION = 4

_CJK_RANGES = (
    (0x2E80, 0x2FDF),    # CJK radicals, Kangxi radicals
    (0x3005, 0x3007),    # 々 〆 〇
    (0x3021, 0x3029),    # Hangzhou numerals
    (0x3031, 0x3035),    # kana repeat marks
    (0x3040, 0x30FF),    # hiragana, katakana
    (0x31F0, 0x31FF),    # katakana phonetic extensions
    (0x3400, 0x4DBF),    # CJK extension A
    (0x4E00, 0x9FFF),    # CJK unified ideographs
    (0xF900, 0xFAFF),    # CJK compatibility ideographs
    (0xFF66, 0xFF9F),    # halfwidth katakana
    (0x20000, 0x3FFFF),  # CJK extensions B-H, compatibility supplement
)


def is_cjk(cp: int) -> bool:
    """True for CJK ideographs and kana (scripts written without spaces between words)."""
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _classify_char(c: str) -> tuple[int, int]:
    """(kind, code point) of one already-normalised character."""
    if c.isdigit():
        return CHAR, ord("0")
    if c.isalnum():
        return (CJK if is_cjk(ord(c)) else CHAR), ord(c)
    return SEP, 0


def normalize_char(ch: str) -> list[tuple[int, int]] | int:
    """The rule for one code point: DROP, or the list of (kind, code point) it becomes."""
    if ch == "\u200b":  # zero-width space: a separator, unlike the other format characters
        return [(SEP, 0)]
    if unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return DROP
    if 0xAC00 <= ord(ch) <= 0xD7A3:  # Hangul syllables: NFKD would spell them out in jamo
        return [(CHAR, ord(ch))]
    s = unicodedata.normalize("NFKD", ch.lower())
    s = "".join(c for c in s if unicodedata.category(c) not in ("Mn", "Me", "Cf")).lower()
    if not s:
        return DROP
    return [_classify_char(c) for c in s]


@dataclass(frozen=True)
class NormTable:
    """The per-code-point rule, as arrays the numpy and numba kernels index."""

    kind: np.ndarray        # uint8[LIMIT]
    mapped: np.ndarray      # uint32[LIMIT]: code point (CHAR/CJK) or expansion index (EXPAND)
    exp_off: np.ndarray     # int64[n_exp + 1]
    exp_kind: np.ndarray    # uint8[...]
    exp_mapped: np.ndarray  # uint32[...]


def _build_table() -> NormTable:
    kind = np.zeros(LIMIT, np.uint8)
    mapped = np.zeros(LIMIT, np.uint32)
    exp_off = [0]
    exp_kind: list[int] = []
    exp_mapped: list[int] = []
    for cp in range(LIMIT):
        if 0xD800 <= cp < 0xE000:  # surrogates: only reachable from broken input
            continue
        rule = normalize_char(chr(cp))
        if rule == DROP:
            kind[cp] = DROP
            continue
        assert isinstance(rule, list)
        # collapse runs of separators inside an expansion; they only split words
        if len(rule) == 1:
            kind[cp], mapped[cp] = rule[0]
            continue
        squeezed: list[tuple[int, int]] = []
        for k, c in rule:
            if k == SEP and squeezed and squeezed[-1][0] == SEP:
                continue
            squeezed.append((k, c))
        if all(k == SEP for k, _ in squeezed):
            kind[cp] = SEP
            continue
        kind[cp] = EXPAND
        mapped[cp] = len(exp_off) - 1
        for k, c in squeezed:
            exp_kind.append(k)
            exp_mapped.append(c)
        exp_off.append(len(exp_kind))
    return NormTable(kind, mapped, np.asarray(exp_off, np.int64), np.asarray(exp_kind, np.uint8),
                     np.asarray(exp_mapped, np.uint32))


def _cache_path() -> Path:
    tag = hashlib.sha256(f"{TABLE_VERSION}:{unicodedata.unidata_version}:{sys.version_info[:2]}:{LIMIT}".encode()).hexdigest()[:12]
    base = Path(os.environ.get("WINNOW_CACHE", Path(tempfile.gettempdir()) / "winnow-cache"))
    return base / f"dedup-normtable-{tag}.npz"


@functools.lru_cache(maxsize=1)
def norm_table() -> NormTable:
    """The table, built once per process (≈1 s) and cached on disk beside other workers'."""
    path = _cache_path()
    try:
        with np.load(path) as z:
            return NormTable(z["kind"], z["mapped"], z["exp_off"], z["exp_kind"], z["exp_mapped"])
    except (OSError, KeyError, ValueError):
        pass
    table = _build_table()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, kind=table.kind, mapped=table.mapped, exp_off=table.exp_off,
                     exp_kind=table.exp_kind, exp_mapped=table.exp_mapped)
        os.replace(tmp, path)
    except OSError:
        pass
    return table


# ---- the plain-Python reference ------------------------------------------------------------

def _char_stream(text: str, table: NormTable):
    kind, mapped = table.kind, table.mapped
    for ch in text:
        cp = ord(ch)
        k = int(kind[cp]) if cp < LIMIT else SEP
        if k == EXPAND:
            e = int(mapped[cp])
            for j in range(int(table.exp_off[e]), int(table.exp_off[e + 1])):
                yield int(table.exp_kind[j]), int(table.exp_mapped[j])
        elif k != DROP:
            yield k, int(mapped[cp])


def tokens(text: str, cjk: str = "char") -> list[str]:
    """Reference tokenizer: the normalised words of `text`, exactly what the kernels hash.

    `cjk="char"`: every CJK character is a token. `cjk="jieba"`: text containing CJK is first cut
    into words by jieba, then each word is normalised as a whole (its CJK characters stay together).
    """
    table = norm_table()
    if cjk == "jieba" and has_cjk(text):
        text = jieba_presplit(text)
        split_cjk = False
    else:
        split_cjk = cjk == "char"
    out: list[str] = []
    cur: list[str] = []
    for k, c in _char_stream(text, table):
        if k == SEP:
            if cur:
                out.append("".join(cur))
                cur = []
        elif k == CJK and split_cjk:
            if cur:
                out.append("".join(cur))
                cur = []
            out.append(chr(c))
        else:
            cur.append(chr(c))
    if cur:
        out.append("".join(cur))
    return out


def normalize_text(text: str, cjk: str = "char") -> str:
    """The normalised text as one string of space-separated tokens (for display and debugging)."""
    return " ".join(tokens(text, cjk))


# ---- CJK ----------------------------------------------------------------------------------

_CJK_RE = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _CJK_RANGES) + "]")
_CJK_PATTERN_RE2 = "[" + "".join(f"\\x{{{lo:X}}}-\\x{{{hi:X}}}" for lo, hi in _CJK_RANGES) + "]"


def has_cjk(text: str) -> bool:
    """True when `text` holds at least one CJK ideograph or kana."""
    return _CJK_RE.search(text) is not None


@functools.lru_cache(maxsize=1)
def _jieba():
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def jieba_presplit(text: str) -> str:
    """`text` with a space between every jieba word (HMM off: deterministic, dictionary words).

    Only the separators matter downstream: the words are then normalised like any other text,
    with their CJK characters kept together as one token.
    """
    return " ".join(_jieba().cut(text, HMM=False))
