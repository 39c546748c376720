"""CCNet's text normalisation, applied before the perplexity tokeniser and KenLM.

CCNet (Wenzek et al. 2019, `cc_net/text_normalizer.py`) normalises every line the same way when it
trains its Wikipedia language models and when it scores web documents, so that the n-gram model
spends no probability mass on case, accents, exact digits or typographic punctuation variants:

- lowercase;
- strip accents (NFD, drop combining marks);
- every digit becomes ``0``;
- unicode punctuation becomes its ASCII counterpart (the same table as CCNet's);
- non-printing characters (C0/C1 controls) are removed.

Everything here is a pure function of a string; the same code runs at training and at scoring
time, which is the whole point.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata

# CCNet's table, character for character (cc_net/text_normalizer.py, UNICODE_PUNCT).
UNICODE_PUNCT: dict[str, str] = {
    "，": ",", "。": ".", "、": ",", "„": '"', "”": '"', "“": '"', "«": '"', "»": '"', "１": '"',
    "」": '"', "「": '"', "《": '"', "》": '"', "´": "'", "∶": ":", "：": ":", "？": "?", "！": "!",
    "（": "(", "）": ")", "；": ";", "–": "-", "—": " - ", "．": ". ", "～": "~", "’": "'",
    "…": "...", "━": "-", "〈": "<", "〉": ">", "【": "[", "】": "]", "％": "%", "►": "-",
}

_NON_PRINTING = [*range(0, 32), *range(127, 160)]
# ASCII lines go through bytes.translate (a 256-byte table, no per-character dict lookups).
_ASCII_BYTES_TABLE = bytes.maketrans(b"123456789", b"000000000")
_ASCII_DELETE = bytes(range(0, 32)) + b"\x7f"


@functools.lru_cache(maxsize=1)
def _unicode_table() -> dict[int, str | None]:
    """One translate table doing, after NFD, what CCNet does in four passes: drop combining marks
    (Mn), every decimal digit (Nd) -> "0", unicode punctuation -> ASCII, drop non-printing chars.
    Digits win over punctuation ("１" is a digit for CCNet's ``\\d`` before it is punctuation)."""
    table: dict[int, str | None] = {ord(k): v for k, v in UNICODE_PUNCT.items()}
    for c in _NON_PRINTING:
        table[c] = None
    for c in range(sys.maxunicode + 1):
        cat = unicodedata.category(chr(c))
        if cat == "Mn":
            table[c] = None
        elif cat == "Nd":
            table[c] = "0"
    return table


def strip_accents(line: str) -> str:
    """Remove combining marks after canonical decomposition ("café" -> "cafe")."""
    if line.isascii():
        return line
    return "".join(c for c in unicodedata.normalize("NFD", line) if unicodedata.category(c) != "Mn")


def replace_unicode_punct(text: str) -> str:
    """Map CCNet's unicode punctuation to ASCII (e.g. "，" -> ",", "—" -> " - ")."""
    return "".join(UNICODE_PUNCT.get(c, c) for c in text)


def normalize_line(line: str) -> str:
    """Normalise one line exactly like CCNet's ``text_normalizer.normalize(line)`` with defaults
    (lowercase, strip accents, digits -> 0, punctuation -> ASCII, drop non-printing characters).

    The line is stripped first; an empty line stays empty. Newlines are control characters and
    are removed, so call this per line (see :func:`normalize_lines`). ASCII lines take a fast path.
    """
    line = line.strip()
    if not line:
        return line
    line = line.lower()
    if not line.isascii():
        line = unicodedata.normalize("NFD", line)
        if not line.isascii():
            return line.translate(_unicode_table())
    return line.encode("ascii").translate(_ASCII_BYTES_TABLE, _ASCII_DELETE).decode("ascii")


def normalize_line_reference(line: str) -> str:
    """CCNet's four passes written out one by one; the tests check :func:`normalize_line` against it."""
    line = line.strip()
    if not line:
        return line
    line = strip_accents(line.lower())
    line = re.sub(r"\d", "0", line)
    line = replace_unicode_punct(line)
    return "".join(c for c in line if ord(c) not in _NON_PRINTING_SET)


_NON_PRINTING_SET = frozenset(_NON_PRINTING)


def normalize_lines(text: str) -> list[str]:
    """Split a document on newlines and normalise each line, dropping lines that end up empty."""
    out = []
    for line in text.split("\n"):
        norm = normalize_line(line)
        if norm:
            out.append(norm)
    return out
