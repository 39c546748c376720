"""Document perplexity under a per-language KenLM 5-gram model, and CCNet's head/middle/tail buckets.

A model directory (written by ``winnow lm train``) holds::

    tokenizer.json   Unigram subword tokeniser (filters.lm_tokenizer)
    lm.binary        KenLM 5-gram, probing binary (lmplz + build_binary)
    meta.json        language, order, training files, sha256 of the two files above

Perplexity exactly as CCNet computes it (``cc_net/perplexity.py``, ``DocLM``): split the document
into lines, normalise each line (:mod:`filters.text_normalize`), cut it into pieces, and sum KenLM's
log10 score of every line (with ``<s>`` and ``</s>``) over the number of pieces + 1 per line::

    ppl = 10 ** (-sum(log10 P(line)) / sum(len(pieces(line)) + 1))

rounded to one decimal, as CCNet stores it. Lines empty after normalisation are skipped.

Normalisation, word split and segmentation run as one compiled pass over the document
(:mod:`filters.lm_kernel`, numba), so KenLM is the only per-line Python call; the plain-Python
path (:func:`normalize_line` + :class:`PieceCutter`) gives the same pieces and is kept for the
documents the kernel hands back (Greek capital sigma, reordered combining marks, lone
surrogates) and as the reference the tests compare against (``compiled=False``).

Buckets (CCNet ``PerplexityBucket``): with a language's cutoffs p30 and p60 taken over a sample of
that language's documents, ``head`` is ppl < p30, ``middle`` < p60, ``tail`` the rest, ``all`` when
the language has no cutoffs. Cutoff files use CCNet's ``cutoff.csv`` layout: one row per percentile
0..100, one column per language.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from winnow.filters.errors import ModelError
from winnow.filters.model_files import sha256_file
from winnow.filters.lm_tokenizer import WORD_SPLIT_VERSION, PieceCutter
from winnow.filters.text_normalize import normalize_line

TOKENIZER_FILE = "tokenizer.json"
LM_FILE = "lm.binary"
META_FILE = "meta.json"
META_FORMAT = "winnow-lm/2"

HEAD, MIDDLE, TAIL, ALL = "head", "middle", "tail", "all"


def train_hint(lang: str, model_dir: Path) -> str:
    return f"train it with: winnow lm train --lang {lang} --text REFERENCE.txt... --out {model_dir}"


def perplexity(log10_sum: float, length: int) -> float:
    """CCNet's ``pp``: 10 ** (-log10 score / length), rounded to 0.1."""
    return round(10.0 ** (-log10_sum / length), 1)


class PerplexityModel:
    """A trained tokeniser + KenLM model for one language. Load once per worker."""

    def __init__(self, model_dir: str | os.PathLike[str], lang: str | None = None, *, verify: bool = True,
                 compiled: bool = True, cache: bool = True):
        self.model_dir = Path(model_dir)
        hint_lang = lang or "LANG"
        if not self.model_dir.is_dir():
            raise ModelError(f"perplexity model directory {self.model_dir} does not exist; "
                             f"{train_hint(hint_lang, self.model_dir)}")
        meta_path = self.model_dir / META_FILE
        try:
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"perplexity model {meta_path} is missing or unreadable ({exc}); "
                             f"{train_hint(hint_lang, self.model_dir)}") from exc
        if self.meta.get("format") != META_FORMAT:
            raise ModelError(f"perplexity model {meta_path}: format {self.meta.get('format')!r}, expected {META_FORMAT!r}")
        self.lang = self.meta.get("lang", lang)
        if lang is not None and self.lang != lang:
            raise ModelError(f"perplexity model {self.model_dir} is for language {self.lang!r}, configured for {lang!r}")
        for name in (TOKENIZER_FILE, LM_FILE):
            path = self.model_dir / name
            if not path.is_file():
                raise ModelError(f"perplexity model file {path} is missing; {train_hint(self.lang, self.model_dir)}")
            expected = self.meta.get("sha256", {}).get(name)
            if verify and expected and sha256_file(path) != expected:
                raise ModelError(f"perplexity model file {path} is corrupt (sha256 differs from {meta_path}); "
                                 f"{train_hint(self.lang, self.model_dir)}")
        if self.meta.get("word_split") != WORD_SPLIT_VERSION:
            raise ModelError(f"perplexity model {self.model_dir} was trained with word split "
                             f"{self.meta.get('word_split')!r}, this code uses {WORD_SPLIT_VERSION!r}; "
                             f"{train_hint(self.lang, self.model_dir)}")
        self.tokenizer = self._load_tokenizer(self.model_dir / TOKENIZER_FILE)
        self.cutter = PieceCutter(self.tokenizer)
        self.pieces = None
        if compiled:
            from winnow.filters.lm_kernel import DocumentPieces

            self.pieces = DocumentPieces(self.tokenizer, cache=cache)
        self.lm = self._load_kenlm(self.model_dir / LM_FILE)

    @staticmethod
    def _load_tokenizer(path: Path):
        from tokenizers import Tokenizer

        try:
            return Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            raise ModelError(f"perplexity tokenizer {path} could not be loaded: {exc}") from exc

    @staticmethod
    def _load_kenlm(path: Path):
        import kenlm

        try:
            return kenlm.Model(str(path))
        except (OSError, RuntimeError, IOError) as exc:
            raise ModelError(f"KenLM model {path} could not be loaded: {exc}") from exc

    def line_pieces(self, text: str) -> list[list[str]]:
        """Pieces of every line of `text` that is non-empty after normalisation."""
        cut = self.cutter.line
        return [ps for ps in (cut(n) for n in (normalize_line(line) for line in text.split("\n")) if n) if ps]

    def score(self, text: str) -> tuple[float, int]:
        """(sum of line log10 probabilities, pieces + 1 per line) of a document."""
        if self.pieces is not None:
            done = self.pieces(text)
            if done is not None:
                lines, counts = done
                return sum(map(self.lm.score, lines), 0.0), int(counts.sum()) + len(lines)
        total, length = 0.0, 0
        score, cut = self.lm.score, self.cutter.line
        for line in text.split("\n"):
            norm = normalize_line(line)
            if norm:
                ps = cut(norm)
                if ps:
                    total += score(" ".join(ps))
                    length += len(ps) + 1
        return total, length

    def perplexity(self, text: str) -> float | None:
        """CCNet document perplexity, or None when no line has text after normalisation."""
        total, length = self.score(text)
        return perplexity(total, length) if length else None

    def perplexities(self, texts: Sequence[str]) -> list[float | None]:
        """``[self.perplexity(t) for t in texts]`` (the same floats), with the compiled kernel run
        over all of `texts` before KenLM scores their lines.

        Why: alternating the kernel and KenLM per document makes each evict the other's tables
        (KenLM's model, the kernel's trie and word cache) from the CPU caches every document; two
        passes keep each hot for a whole pass (bench/filters.py measures both ways). Memory: the
        pieces of the whole batch, about the batch's text size; callers pass a record batch."""
        if self.pieces is None:
            return [self.perplexity(t) for t in texts]
        cut = [self.pieces(t) for t in texts]
        score = self.lm.score
        out: list[float | None] = []
        for text, done in zip(texts, cut):
            if done is None:  # the Python path (see score)
                out.append(self.perplexity(text))
                continue
            lines, counts = done
            length = int(counts.sum()) + len(lines)
            out.append(perplexity(sum(map(score, lines), 0.0), length) if length else None)
        return out


@dataclass(frozen=True)
class Cutoffs:
    """Per-language perplexity thresholds: ``{lang: (head_below, middle_below)}``."""

    thresholds: Mapping[str, tuple[float, float]]

    def bucket(self, lang: str, ppl: float | None) -> str:
        """``head`` / ``middle`` / ``tail``; ``all`` without cutoffs for `lang` or without a ppl."""
        cut = self.thresholds.get(lang)
        if cut is None or ppl is None or math.isnan(ppl):
            return ALL
        if ppl < cut[0]:
            return HEAD
        if ppl < cut[1]:
            return MIDDLE
        return TAIL

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str], head_percentile: int = 30,
                 tail_percentile: int = 60) -> "Cutoffs":
        """Read a CCNet-style ``cutoff.csv`` (rows: percentile 0..100; columns: languages)."""
        path = Path(path)
        table = read_percentile_csv(path)
        thresholds = {}
        for lang, values in table.items():
            try:
                thresholds[lang] = (values[head_percentile], values[tail_percentile])
            except KeyError as exc:
                raise ValueError(f"{path}: language {lang!r} has no row for percentile {exc}") from None
        return cls(thresholds)


def read_percentile_csv(path: Path) -> dict[str, dict[int, float]]:
    """``{lang: {percentile: ppl}}`` from a CCNet-style cutoff CSV."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise ValueError(f"perplexity cutoffs {path} cannot be read: {exc}") from exc
    if not rows or len(rows[0]) < 2:
        raise ValueError(f"perplexity cutoffs {path}: empty or not a CCNet cutoff.csv")
    langs = [c.strip() for c in rows[0][1:]]
    table: dict[str, dict[int, float]] = {lang: {} for lang in langs}
    for row in rows[1:]:
        if not row:
            continue
        try:
            pct = int(float(row[0]))
            for lang, value in zip(langs, row[1:]):
                table[lang][pct] = float(value)
        except ValueError as exc:
            raise ValueError(f"perplexity cutoffs {path}: bad row {row[:3]}...: {exc}") from None
    return table


def write_percentile_csv(path: Path, table: Mapping[str, Sequence[float]]) -> None:
    """Write ``{lang: [p0..p100]}`` in CCNet's cutoff.csv layout (what :meth:`Cutoffs.from_csv` reads)."""
    langs = sorted(table)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([""] + langs)
        for pct in range(101):
            w.writerow([pct] + [f"{table[lang][pct]:.1f}" for lang in langs])
