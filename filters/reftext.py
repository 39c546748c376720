"""Reference text for the perplexity models: turning WikiText and plain Wikipedia dumps into
documents and training lines.

WikiText-2 (Merity et al. 2016) is Wikipedia already split into words: ``" @-@ "`` for an inner
hyphen, ``" @,@ "`` / ``" @.@ "`` inside numbers, spaces around every punctuation mark, ``<unk>``
for rare words and ``" = Title = "`` heading lines. A language model trained on that would learn
the artefacts, and web text would look "surprising" exactly where it is normal, so we undo them.
Plain files (cmrc2018/DRCD contexts) are one paragraph per line and need nothing.

Pure functions over strings; reading files is the caller's job.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator

_HEADING_RE = re.compile(r"^\s*((?:= )+)(.*?)((?: =)+)\s*$")
_UNK_RE = re.compile(r"\s*<unk>\s*")
_PAIRS = [
    (re.compile(r"\(\s*([^)]*?)\s*\)"), r"(\1)"),
    (re.compile(r"\[\s*([^\]]*?)\s*\]"), r"[\1]"),
    (re.compile(r'"\s*([^"]*?)\s*"'), r'"\1"'),
]
_JOINER_RE = re.compile(r"\s*@([-,.])@\s*")
_REPLACEMENTS = [
    (" 's ", "'s "), (" n't ", "n't "), (" 're ", "'re "), (" 've ", "'ve "), (" 'll ", "'ll "),
    (" 'd ", "'d "), (" 'm ", "'m "), ("s ' ", "s' "),
    (" , ", ", "), (" . ", ". "), (" ; ", "; "), (" : ", ": "), (" ! ", "! "), (" ? ", "? "),
    (" %", "%"), ("$ ", "$"), (" ° ", "°"),
]
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([.,;:!?%])(?=\s|$)")
_MULTI_SPACE_RE = re.compile(r" {2,}")

#: Tokens lmplz reserves; they must never appear as words in its training text.
KENLM_RESERVED = ("<s>", "</s>", "<unk>")


def looks_like_wikitext(sample: str) -> bool:
    """True when `sample` (the start of a file) has WikiText's artefacts."""
    return (" @-@ " in sample or " <unk> " in sample or " @,@ " in sample) and " = " in sample


def detokenize_wikitext_line(line: str) -> str:
    """Undo WikiText's tokenisation of one line: join ``@-@``/``@,@``/``@.@``, reattach
    punctuation, brackets, quotes and English clitics, and drop ``<unk>`` placeholders (a rare word
    we cannot restore; leaving the literal token would teach the model a word the web never has)."""
    s = " " + line.strip() + " "
    s = _UNK_RE.sub(" ", s)
    s = _JOINER_RE.sub(r"\1", s)
    for old, new in _REPLACEMENTS:
        s = s.replace(old, new)
    for rx, rep in _PAIRS:
        s = rx.sub(rep, s)
    s = _MULTI_SPACE_RE.sub(" ", s).strip()
    return _SPACE_BEFORE_PUNCT_RE.sub(r"\1", s)


def wikitext_documents(lines: Iterable[str]) -> Iterator[str]:
    """Group WikiText lines into detokenised articles, one string per article.

    An article starts at a level-1 heading line (`` = Title = ``); section headings
    (`` = = Section = = ``) become plain lines holding the section title.
    """
    current: list[str] = []
    for raw in lines:
        if not raw.strip():
            continue
        m = _HEADING_RE.match(raw)
        if m and m.group(1).count("=") == 1:
            if current:
                yield "\n".join(current)
            current = [detokenize_wikitext_line(m.group(2))]
            continue
        text = detokenize_wikitext_line(m.group(2) if m else raw)
        if text:
            current.append(text)
    if current:
        yield "\n".join(current)


def plain_documents(lines: Iterable[str]) -> Iterator[str]:
    """One document per non-empty line (cmrc2018 / DRCD contexts: one paragraph per line)."""
    for raw in lines:
        text = raw.strip()
        if text:
            yield text


def documents(lines: Iterable[str], fmt: str, sample: str = "") -> Iterator[str]:
    """Documents of a reference file in format ``wikitext``, ``plain`` or ``auto`` (decided from
    `sample`, the start of the file)."""
    if fmt == "auto":
        fmt = "wikitext" if looks_like_wikitext(sample) else "plain"
    if fmt == "wikitext":
        return wikitext_documents(lines)
    if fmt == "plain":
        return plain_documents(lines)
    raise ValueError(f"unknown reference text format {fmt!r} (expected auto, wikitext or plain)")
