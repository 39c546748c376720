"""The perplexity model's text path as one compiled pass: CCNet normalisation, word split and
Unigram segmentation of a whole document in a numba kernel, so that only KenLM is left in Python.

Why: per line, :func:`filters.text_normalize.normalize_line` + :class:`filters.lm_tokenizer.PieceCutter`
(a regex and a Rust call per new word, a dict lookup per known chunk) cost ~8x KenLM's own scoring
(bench/filters.py, ``ppl_vs_kenlm_only`` 0.12). Here the same three steps run over the document's
code points with precomputed tables, and the kernel hands back one string per line, pieces joined
by spaces, ready for ``kenlm.Model.score``.

- **Normalisation** is a per-code-point rule (``lower`` → NFD → CCNet's translate table), so it is
  precomputed for every code point into ``NORM_OFF``/``NORM_POOL``; lines are stripped (``str.isspace``)
  before mapping, as :func:`normalize_line` does. Two things are not per code point: the Greek
  final sigma (``Σ`` lowers by context) and canonical reordering of combining characters that
  survive normalisation (non-``Mn`` marks with a combining class). A document holding either is
  handed to the Python path, so the output is identical by construction (and tested on
  WikiText, cmrc2018 and the lingua sentences in 75 languages).
- **Word split** is :func:`filters.lm_tokenizer.words` as a character-class table (Han character,
  punctuation/symbol character, ``▁`` + run of anything else, split on whitespace).
- **Segmentation** is the Unigram Viterbi of HuggingFace ``tokenizers`` (``encode_optimized``:
  trie prefix matches, ``>`` to replace a path, an unknown character scored ``min score - 10``,
  adjacent unknowns fused), over a trie held in open-addressing arrays. Identical to
  ``Tokenizer.model.tokenize`` per word (tested on the same corpora).
- **Word cache**: the output bytes of each word seen are kept in hash arrays (a hit compares the
  word itself, not only its hash), so a repeated word costs one probe and a copy instead of a
  Viterbi pass.
  ``cache=False`` turns it off (bench/filters.py measures both).

Tables cost ~1 s to build, once per process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import tempfile
import unicodedata
from pathlib import Path

import numpy as np
from numba import njit

from winnow.filters.lm_tokenizer import HAN_RANGES, WORD_MARK
from winnow.filters.text_normalize import _unicode_table

N_CP = sys.maxunicode + 1
SIGMA = 0x3A3
# character classes of normalised text
OTHER, HAN, PUNCT, SPACE = 0, 1, 2, 3
MARK = ord(WORD_MARK)  # "▁", put before every run of other characters
_SEP = "\ue000"  # private use: identity under lower/NFD/translate, combining class 0


TABLE_VERSION = 1
_TABLE_NAMES = ("norm_off", "norm_pool", "is_space", "unsafe", "cls")


def _cache_path() -> Path:
    tag = f"{TABLE_VERSION}:{unicodedata.unidata_version}:{sys.version_info[:2]}:{HAN_RANGES}"
    base = Path(os.environ.get("WINNOW_CACHE", Path(tempfile.gettempdir()) / "winnow-cache"))
    return base / f"lm-tables-{hashlib.sha256(tag.encode()).hexdigest()[:12]}.npz"


@functools.lru_cache(maxsize=1)
def tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(NORM_OFF, NORM_POOL, IS_SPACE, UNSAFE, CLASS) for every code point: built once (a few
    seconds), then read from a disk cache (``$WINNOW_CACHE``, default the temp directory) that
    every worker of the machine shares."""
    path = _cache_path()
    try:
        with np.load(path) as z:
            return tuple(z[k] for k in _TABLE_NAMES)  # type: ignore[return-value]
    except (OSError, KeyError, ValueError):
        pass
    built = _build_tables()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **dict(zip(_TABLE_NAMES, built)))
        os.replace(tmp, path)
    except OSError:
        pass
    return built


def _build_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The tables of :func:`tables`.

    Built with whole-string calls over all code points separated by a private-use character
    (which every step leaves alone and which blocks both final-sigma context and reordering), so
    the build takes C time, not a Python loop per call.
    """
    chars = [chr(c) for c in range(N_CP)]
    sep_cp = ord(_SEP)
    chars[sep_cp] = "x"  # placeholder, fixed below
    joined = _SEP.join(chars)
    mapped = unicodedata.normalize("NFD", joined.lower()).translate(_unicode_table()).split(_SEP)
    if len(mapped) != N_CP:
        raise RuntimeError("normalisation table: separator did not survive")
    mapped[sep_cp] = _SEP
    lens = np.fromiter((len(m) for m in mapped), np.int64, N_CP)
    off = np.zeros(N_CP + 1, np.int64)
    np.cumsum(lens, out=off[1:])
    pool_text = "".join(mapped)
    pool = np.frombuffer(pool_text.encode("utf-32-le", "surrogatepass"), np.uint32).copy()
    is_space = np.fromiter((c.isspace() for c in chars), np.bool_, N_CP)
    is_space[sep_cp] = False
    unsafe = np.zeros(N_CP, np.bool_)
    unsafe[SIGMA] = True
    # a surviving character with a combining class would be reordered by NFD across characters
    comb = np.fromiter((unicodedata.combining(c) > 0 for c in chars), np.bool_, N_CP)
    comb[sep_cp] = False
    survivors = np.unique(pool)
    bad_out = survivors[comb[survivors]]
    if len(bad_out):
        bad_set = np.zeros(N_CP, np.bool_)
        bad_set[bad_out] = True
        starts = off[:-1]
        for c in np.flatnonzero(lens > 0):
            if bad_set[pool[starts[c]:starts[c] + lens[c]]].any():
                unsafe[c] = True
    cls = np.zeros(N_CP, np.uint8)
    cats = [unicodedata.category(c)[0] for c in chars]
    cls[np.fromiter((k in "PS" for k in cats), np.bool_, N_CP)] = PUNCT
    for lo, hi in _han_ranges():
        cls[lo:hi + 1] = HAN
    cls[is_space] = SPACE
    cls[sep_cp] = OTHER
    return off, pool, is_space, unsafe, cls


def _han_ranges() -> list[tuple[int, int]]:
    out, i, s = [], 0, HAN_RANGES
    while i < len(s):
        lo = ord(s[i])
        if i + 2 < len(s) and s[i + 1] == "-":
            out.append((lo, ord(s[i + 2])))
            i += 3
        else:
            out.append((lo, lo))
            i += 1
    return out


# --- the trie of a Unigram vocabulary ----------------------------------------------------------
_EMPTY = np.int64(-1)


@njit(cache=True, inline="always")
def _slot(key: np.int64, mask: np.int64) -> np.int64:
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64(h >> np.uint64(20)) & mask


@njit(cache=True, inline="always")
def _child(table: np.ndarray, root: np.ndarray, node: np.int64, cp: np.int64) -> np.int64:
    """Child of `node` by code point `cp`, or -1. The root's children below ``ROOT_DENSE`` are a
    plain array; every other edge is one int64 of an open-addressing table, ``(node << 21 | cp)
    << NODE_BITS | child`` (8 bytes an edge, at most half full: the table of an 8000-piece
    vocabulary is 256 KB, which stays in L2 between KenLM calls). ``table[-1]`` holds NODE_BITS."""
    if node == 0 and cp < len(root):
        return np.int64(root[cp])
    mask = np.int64(len(table) - 2)
    nb = table[-1]
    key = (node << np.int64(21)) | cp
    i = _slot(key, mask)
    while True:
        e = table[i]
        if e == -1:
            return np.int64(-1)
        if (e >> nb) == key:
            return e & ((np.int64(1) << nb) - 1)
        i = (i + 1) & mask


ROOT_DENSE = 0x3000  # Latin, Greek, Cyrillic, ..., CJK punctuation: the root's children as an array
POOL_MASK = np.int64((1 << 21) - 1)  # word cache: pool offsets below 2 MiB, the hash's upper bits above


class UnigramTrie:
    """Pieces, scores and unknown-token rules of a ``tokenizers`` Unigram model, as arrays."""

    def __init__(self, tokenizer) -> None:
        spec = json.loads(tokenizer.to_str())["model"]
        if spec.get("type") != "Unigram":
            raise ValueError(f"expected a Unigram model, got {spec.get('type')!r}")
        if spec.get("byte_fallback"):
            raise ValueError("byte_fallback Unigram models are not supported by the kernel")
        vocab = spec["vocab"]
        self.unk_id = int(spec["unk_id"])
        scores = np.array([s for _, s in vocab], np.float64)
        self.scores = scores
        self.unk_score = float(scores.min()) - 10.0  # tokenizers' K_UNK_PENALTY
        edges: dict[tuple[int, int], int] = {}
        piece_id = [-1]
        token_to_id = {}
        for i, (piece, _) in enumerate(vocab):
            token_to_id[piece] = i  # later duplicates win, as in tokenizers' HashMap
        for piece, i in token_to_id.items():
            node = 0
            for ch in piece:
                nxt = edges.get((node, ord(ch)))
                if nxt is None:
                    nxt = edges[(node, ord(ch))] = len(piece_id)
                    piece_id.append(-1)
                node = nxt
            piece_id[node] = i
        nb = max(1, (len(piece_id) - 1).bit_length())
        if 2 * nb + 21 > 63:
            raise ValueError(f"Unigram trie of {len(piece_id)} nodes is too large for the kernel's packed edges")
        size = 1 << max(4, (2 * len(edges) + 1).bit_length())  # at most a quarter full: short misses
        table = np.full(size + 1, -1, np.int64)
        table[-1] = nb  # the last element: bits of a child id (the probe mask is size - 1)
        root = np.full(ROOT_DENSE, -1, np.int32)
        mask = size - 1
        for (node, cp), child in edges.items():
            if node == 0 and cp < ROOT_DENSE:
                root[cp] = child
                continue
            key = (node << 21) | cp
            j = int(_slot(np.int64(key), np.int64(mask)))
            while table[j] != -1:
                j = (j + 1) & mask
            table[j] = (key << nb) | child
        self.keys, self.vals = table, root  # passed to the kernel as (table, root)
        self.piece_id = np.array(piece_id, np.int32)


# --- the document kernel ---------------------------------------------------------------------
@njit(cache=True, inline="always")
def _viterbi(w, n, tkeys, tvals, piece_id, scores, unk_id, unk_score, best, start, ids, out_ends):
    """Piece end offsets of word w[:n] into out_ends; returns the piece count (unknowns fused)."""
    for i in range(n + 1):
        start[i] = -1
        best[i] = 0.0
    for i in range(n):
        if i > 0 and start[i] == -1:
            continue
        here = best[i]
        single = False
        node = np.int64(0)
        for j in range(i, n):
            node = _child(tkeys, tvals, node, np.int64(w[j]))
            if node < 0:
                break
            pid = piece_id[node]
            if pid >= 0:
                cand = scores[pid] + here
                if start[j + 1] == -1 or cand > best[j + 1]:
                    best[j + 1] = cand
                    start[j + 1] = i
                    ids[j + 1] = pid
                if j == i:
                    single = True
        if not single:
            cand = unk_score + here
            if start[i + 1] == -1 or cand > best[i + 1]:
                best[i + 1] = cand
                start[i + 1] = i
                ids[i + 1] = unk_id
    # backtrack (reversed), fusing adjacent unknowns
    k = 0
    e = n
    prev_unk = False
    while e > 0:
        s = start[e]
        is_unk = ids[e] == unk_id
        if is_unk and prev_unk:
            pass  # extends the fused unknown piece: its end stays
        else:
            out_ends[k] = e
            k += 1
        prev_unk = is_unk
        e = s
    # reverse into increasing order
    for a in range(k // 2):
        t = out_ends[a]
        out_ends[a] = out_ends[k - 1 - a]
        out_ends[k - 1 - a] = t
    return k


@njit(cache=True, inline="always")
def _put_utf8(out, o, c):
    """Write code point c as UTF-8 at out[o:]; returns the new offset."""
    c = np.uint32(c)
    if c < 0x80:
        out[o] = c
        return o + 1
    if c < 0x800:
        out[o] = 0xC0 | (c >> 6)
        out[o + 1] = 0x80 | (c & 0x3F)
        return o + 2
    if c < 0x10000:
        out[o] = 0xE0 | (c >> 12)
        out[o + 1] = 0x80 | ((c >> 6) & 0x3F)
        out[o + 2] = 0x80 | (c & 0x3F)
        return o + 3
    out[o] = 0xF0 | (c >> 18)
    out[o + 1] = 0x80 | ((c >> 12) & 0x3F)
    out[o + 2] = 0x80 | ((c >> 6) & 0x3F)
    out[o + 3] = 0x80 | (c & 0x3F)
    return o + 4


@njit(cache=True, inline="always")
def _same_word(w, n, pool, q, end):
    """Is pool[q:end] (pieces joined by spaces, UTF-8) the word w[:n]? Pieces hold no spaces, so
    the bytes without their spaces are the word's UTF-8 bytes."""
    for t in range(n):
        if t > 0 and q < end and pool[q] == 32:
            q += 1
        c = np.uint32(w[t])
        if c < 0x80:
            if q >= end or pool[q] != c:
                return False
            q += 1
        else:
            if c < 0x800:
                nb = 2
            elif c < 0x10000:
                nb = 3
            else:
                nb = 4
            if q + nb > end:
                return False
            if nb == 2:
                if pool[q] != (0xC0 | (c >> 6)) or pool[q + 1] != (0x80 | (c & 0x3F)):
                    return False
            elif nb == 3:
                if (pool[q] != (0xE0 | (c >> 12)) or pool[q + 1] != (0x80 | ((c >> 6) & 0x3F))
                        or pool[q + 2] != (0x80 | (c & 0x3F))):
                    return False
            else:
                if (pool[q] != (0xF0 | (c >> 18)) or pool[q + 1] != (0x80 | ((c >> 12) & 0x3F))
                        or pool[q + 2] != (0x80 | ((c >> 6) & 0x3F)) or pool[q + 3] != (0x80 | (c & 0x3F))):
                    return False
            q += nb
    return q == end


@njit(cache=True, inline="always")
def _emit_word(w, n, h, out, o, tkeys, tvals, piece_id, scores, unk_id, unk_score, best, start, ids, ends,
               use_cache, cslots, cpool, cstate):
    """Append the pieces of w[:n] to out[o:] as UTF-8, joined by spaces (the space before the
    word is the caller's); returns (new o, pieces).

    Cache: one int32 slot per word, 10 bits of the hash over the word's offset in `cpool`
    (``tag << 21 | offset``; 4 bytes a slot keeps the table small enough to stay in L2 beside
    the trie), and in `cpool` a 4-byte header (output length, pieces; 16 bits each) then the
    output bytes; a hit is a slot probe, a byte compare and a copy (a tag that matches another
    word fails the compare and the probe goes on). `h` is the word's FNV-1a hash (63 bits),
    computed by the caller while it copied the word."""
    i = np.int64(0)
    tag = ((h >> np.int64(52)) & np.int64(0x3FF)) << np.int64(21)
    if use_cache:
        mask = np.int64(len(cslots) - 1)
        i = _slot(h, mask)
        while True:
            kk = np.int64(cslots[i])
            if kk == -1:
                break
            if (kk & ~POOL_MASK) == tag:
                po = kk & POOL_MASK
                ol = np.int64(cpool[po]) | (np.int64(cpool[po + 1]) << 8)
                if _same_word(w, n, cpool, po + 4, po + 4 + ol):
                    for t in range(ol):
                        out[o + t] = cpool[po + 4 + t]
                    return o + ol, np.int64(cpool[po + 2]) | (np.int64(cpool[po + 3]) << 8)
            i = (i + 1) & mask
    k = _viterbi(w, n, tkeys, tvals, piece_id, scores, unk_id, unk_score, best, start, ids, ends)
    o0 = o
    s = 0
    for p in range(k):
        if p > 0:
            out[o] = 32
            o += 1
        for t in range(s, ends[p]):
            o = _put_utf8(out, o, w[t])
        s = ends[p]
    # store when there is room (cstate: used slots, pool bytes used)
    ol = o - o0
    if use_cache and cstate[0] * 2 < len(cslots) and cstate[1] + 4 + ol <= len(cpool) and ol < 65536 and k < 65536:
        po = cstate[1]
        cpool[po] = ol & 0xFF
        cpool[po + 1] = ol >> 8
        cpool[po + 2] = k & 0xFF
        cpool[po + 3] = k >> 8
        for t in range(ol):
            cpool[po + 4 + t] = out[o0 + t]
        cslots[i] = np.int32(tag | po)
        cstate[0] += 1
        cstate[1] += 4 + ol
    return o, k


@njit(cache=True, inline="always")
def _next_line(cps, a, is_space):
    """(start, end, next start) of the line that begins at `a` (lines end at \\n), with leading
    and trailing whitespace left out: CCNet's per-line strip."""
    n = len(cps)
    b = a
    while b < n and cps[b] != 10:
        b += 1
    s, e = a, b
    while s < e and is_space[cps[s]]:
        s += 1
    while e > s and is_space[cps[e - 1]]:
        e -= 1
    return s, e, b + 1


@njit(cache=True)
def _document(cps, norm_off, norm_pool, is_space, unsafe, cls, tkeys, tvals, piece_id, scores, unk_id,
              unk_score, use_cache, cslots, cpool, cstate, norm, w, best, work, out, counts, max_exp, simple):
    """Normalise, split and segment one document into the caller's buffers (reused across
    documents: a fresh allocation per document costs page faults). Returns (bytes used in `out`,
    lines emitted; `counts[:lines]` holds their piece counts); bytes used is -1 when the document
    needs the Python path and -2 - (bound on the normalised length) when a buffer is too small."""
    n = len(cps)
    # max_exp normalised characters per code point at most; a word of k normalised characters
    # (plus its ▁) emits at most 2k + 1 characters with the spaces between its pieces and before
    # it, at most 4 UTF-8 bytes a character
    total = max_exp * n
    if (len(norm) < total + 1 or len(w) < total + 2 or len(best) < total + 3 or work.shape[1] < total + 3
            or len(out) < 4 * (3 * total + n + 16) or len(counts) < n + 1):
        return -2 - total, 0
    start = work[0]
    ids = work[1]
    ends = work[2]
    o = 0
    lines = 0
    a = 0
    while a <= n:
        s, e, a = _next_line(cps, a, is_space)
        if s == e:
            continue
        m = 0
        for i in range(s, e):
            c = cps[i]
            if c < len(simple):  # the common case: one small table, one character out (or none)
                x = simple[c]
                if x >= 0:
                    norm[m] = x
                    m += 1
                    continue
                if x == -2:
                    continue
            if unsafe[c]:
                return -1, 0
            for t in range(norm_off[c], norm_off[c + 1]):
                norm[m] = norm_pool[t]
                m += 1
        # words of the normalised line
        line_start = o
        if lines > 0:
            out[o] = 10
            o += 1
        body = o
        pieces = 0
        i = 0
        while i < m:
            c = norm[i]
            k = cls[c]
            if k == SPACE:
                i += 1
                continue
            if o > body:
                out[o] = 32
                o += 1
            if k == HAN or k == PUNCT:
                # a one-character word is one piece, the character itself (a vocabulary piece or
                # the unknown token): no lookup needed
                o = _put_utf8(out, o, c)
                pieces += 1
                i += 1
                continue
            w[0] = MARK
            wn = 1
            h = np.uint64(0xCBF29CE484222325)
            h = (h ^ np.uint64(MARK)) * np.uint64(0x100000001B3)
            while i < m:
                c = norm[i]
                if cls[c] != OTHER:
                    break
                w[wn] = c
                h = (h ^ np.uint64(c)) * np.uint64(0x100000001B3)
                wn += 1
                i += 1
            h ^= h >> np.uint64(29)
            hh = np.int64(h & np.uint64(0x7FFFFFFFFFFFFFFF))
            o, p = _emit_word(w, wn, hh, out, o, tkeys, tvals, piece_id, scores, unk_id, unk_score, best, start,
                              ids, ends, use_cache, cslots, cpool, cstate)
            pieces += p
        if pieces == 0:
            o = line_start  # a line without pieces is skipped, as in PerplexityModel.score
            continue
        counts[lines] = pieces
        lines += 1
    return o, lines


@functools.lru_cache(maxsize=1)
def _max_expansion() -> int:
    return int(np.diff(tables()[0]).max())


SIMPLE_N = 0x3000


@functools.lru_cache(maxsize=1)
def _simple_table() -> np.ndarray:
    """For code points below SIMPLE_N (48 KB, stays cached): the one normalised character a code
    point maps to, -2 when it maps to nothing, -1 when the general tables must be used (several
    characters, or a code point that sends the document to the Python path)."""
    off, pool, _, unsafe, _ = tables()
    c = np.arange(SIMPLE_N)
    lens = off[c + 1] - off[c]
    first = pool[np.minimum(off[c], len(pool) - 1)].astype(np.int64)
    out = np.where(lens == 1, first, np.where(lens == 0, -2, -1))
    out[unsafe[c]] = -1
    return out.astype(np.int32)


class DocumentPieces:
    """Callable: document text -> (lines of space-joined pieces as UTF-8 bytes, pieces per line),
    identical to ``[" ".join(p).encode() for p in PerplexityModel.line_pieces(text)]`` (the Python
    path). Bytes, because ``kenlm.Model.score`` takes them as they are and encodes a str first."""

    CACHE_SLOTS = 1 << 16      # at most half used: 32,768 distinct words, then it starts over
    CACHE_BYTES = 2 << 20      # offsets must stay below POOL_MASK + 1

    def __init__(self, tokenizer, *, cache: bool = True) -> None:
        self.trie = UnigramTrie(tokenizer)
        self.norm_off, self.norm_pool, self.is_space, self.unsafe, self.cls = tables()
        self.use_cache = cache
        self.max_exp = _max_expansion()
        self.simple = _simple_table()
        self.clear_cache()
        self._buffers(0, 0)

    def clear_cache(self) -> None:
        """Forget every word (the arrays are kept: their pages are already mapped)."""
        slots = self.CACHE_SLOTS if self.use_cache else 1
        size = self.CACHE_BYTES if self.use_cache else 1
        if size > int(POOL_MASK) + 1:
            raise ValueError("CACHE_BYTES must be at most 2 MiB (the pool offset has 21 bits)")
        if getattr(self, "cslots", None) is None or len(self.cslots) != slots or len(self.cpool) != size:
            self.cslots = np.empty(slots, np.int32)
            self.cpool = np.empty(size, np.uint8)
        self.cslots[:] = -1
        self.cstate = np.zeros(2, np.int64)

    def _buffers(self, total: int, n: int) -> None:
        """Grow the work buffers to hold a document of `n` code points, `total` normalised."""
        cap = max(total + 64, 4096)
        self.norm = np.empty(cap + 1, np.uint32)
        self.w = np.empty(cap + 2, np.uint32)
        self.best = np.empty(cap + 3, np.float64)
        self.work = np.empty((3, cap + 3), np.int64)
        self.out = np.empty(4 * (3 * cap + 2 * n + 16), np.uint8)
        self.counts = np.empty(2 * n + 64, np.int64)

    def __call__(self, text: str) -> tuple[list[bytes], np.ndarray] | None:
        """(piece lines, counts), or None when the document must take the Python path (final
        sigma, a reordered combining mark, or a lone surrogate)."""
        try:
            cps = np.frombuffer(text.encode("utf-32-le"), np.uint32)
        except UnicodeEncodeError:
            return None
        if self.use_cache and (self.cstate[0] * 2 >= len(self.cslots) - 1 or self.cstate[1] > 0.9 * len(self.cpool)):
            self.clear_cache()  # full: start over, as PieceCutter does
        t = self.trie
        while True:
            used, lines = _document(cps, self.norm_off, self.norm_pool, self.is_space, self.unsafe, self.cls, t.keys,
                                    t.vals, t.piece_id, t.scores, t.unk_id, t.unk_score, self.use_cache, self.cslots,
                                    self.cpool, self.cstate, self.norm, self.w, self.best, self.work, self.out,
                                    self.counts, self.max_exp, self.simple)
            if used >= -1:
                break
            self._buffers(-2 - used, len(cps))
        if used < 0:
            return None
        counts = self.counts[:lines].copy()
        if lines == 0:
            return [], counts
        return self.out[:used].tobytes().split(b"\n"), counts


def normalized_lines(text: str) -> list[str] | None:
    """:func:`filters.text_normalize.normalize_lines` through the kernel's table (None: Python path)."""
    off, pool, is_space, unsafe, _ = tables()
    try:
        cps = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    except UnicodeEncodeError:
        return None
    out, used = _normalize(cps, off, pool, is_space, unsafe, _max_expansion())
    if used < 0:
        return None
    if used == 0:
        return []
    return [x for x in out[:used].tobytes().decode("utf-32-le").split("\n") if x]


@njit(cache=True)
def _normalize(cps, norm_off, norm_pool, is_space, unsafe, max_exp):
    """Normalised lines joined by \\n (empty lines included; the caller drops them)."""
    n = len(cps)
    for i in range(n):
        if unsafe[cps[i]]:
            return np.zeros(0, np.uint32), -1
    out = np.empty(n * max_exp + n + 1, np.uint32)
    o = 0
    a = 0
    first = True
    while a <= n:
        s, e, a = _next_line(cps, a, is_space)
        if not first:
            out[o] = 10
            o += 1
        first = False
        for i in range(s, e):
            c = cps[i]
            for t in range(norm_off[c], norm_off[c + 1]):
                out[o] = norm_pool[t]
                o += 1
    return out, o


__all__ = ["DocumentPieces", "UnigramTrie", "normalized_lines", "tables"]
