"""Benchmark n-gram index: normalised tokens, keyed 64-bit n-gram hashes, vectorised lookups.

Normalisation (the same for benchmark items and for documents, applied character by character so
that every token keeps its exact character offsets in the original text):

- every character is folded to ``NFKC(c).lower()`` when that is one character (fullwidth ``Ａ１``
  → ``a1``, halfwidth katakana → katakana, compatibility ideographs → unified ones); characters
  whose fold expands to several (``ﬁ``, ``½``) keep their lowercase form;
- letters, digits and combining marks (unicode L, N, M) make words; everything else —
  punctuation, symbols, ``_``, whitespace, controls — separates them, so ``"A) foo,"`` and
  ``"(a)  foo"`` give the same tokens;
- Han ideographs, hiragana and katakana are one token per character (Chinese and Japanese have no
  spaces); Hangul stays word-based (Korean is space-delimited).

Hashing: a token's value is a polynomial hash of its folded code points, finished with a 64-bit
mixer; an n-gram's hash is a polynomial over its token values plus its length, mixed again. The
bases and offsets come from ``blake2b(seed)`` (a keyed hash: ``seed`` changes every hash value).
Everything runs on numpy arrays of code points (the shard's texts joined by a separator), so a
document batch is hashed without a Python loop per token or per n-gram; n-grams of every length
``1..n`` come out of one recurrence (``G_k = G_{k-1}·Q + t``), which also makes the
whole-text hashes of short items free.

Index: the n-gram hashes of all benchmark items, ``np.unique``-sorted (``uint64``), with the item
each came from, and a 2^27-bit prefilter (bit = top 27 bits of a hash) so ``np.searchsorted`` runs
only on the ~few % of document n-grams whose bit is set. A lookup is a false positive when an
unrelated n-gram has the same 64-bit hash: probability ``K / 2^64`` per lookup for ``K`` indexed
hashes (≈ 5e-13 for the 10 M n-grams of all shared benchmarks, i.e. one spurious hit per ~2e12
document n-grams). The prefilter changes no result, only the speed.

Nothing here imports winnow: the module is pure numpy.
"""

from __future__ import annotations

import functools
import hashlib
import unicodedata
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

#: Character classes.
SEP, WORD, CJK = 0, 1, 2
#: Code point ranges tokenised one character at a time (Han, kana, 々 and 〇).
CJK_RANGES: tuple[tuple[int, int], ...] = (
    (0x3005, 0x3005), (0x3007, 0x3007), (0x3040, 0x309F), (0x30A0, 0x30FF), (0x31F0, 0x31FF),
    (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F), (0x30000, 0x323AF),
)
#: Joins texts in a batch; class SEP, so no token spans two documents.
_DOC_SEPARATOR = "\x00"
#: Characters per batch when hashing many documents (bounds memory: ~60 bytes per character).
BATCH_CHARS = 1_000_000
PREFILTER_BITS = 27

_M64 = (1 << 64) - 1
_U64 = np.uint64


@functools.lru_cache(maxsize=1)
def char_tables() -> tuple[np.ndarray, np.ndarray]:
    """(fold, cls): for every code point, its folded code point (uint32) and class (uint8).

    Built once per process (~1 s): every assigned code point goes through NFKC + lower."""
    size = 0x110000
    fold = np.arange(size, dtype=np.uint32)
    cls = np.zeros(size, dtype=np.uint8)
    for cp in range(size):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if cat[0] not in "LNMS" and cat != "Pc":
            # Punctuation, separators, controls stay separators; symbols/Pc may fold to a letter
            # (NFKC maps e.g. U+2102 ℂ to C), so they are looked at below.
            continue
        folded = unicodedata.normalize("NFKC", ch).lower()
        if len(folded) != 1:
            low = ch.lower()
            folded = low if len(low) == 1 else ch
        fcat = unicodedata.category(folded)
        fold[cp] = ord(folded)
        if fcat[0] in "LNM":
            cls[cp] = WORD
    for lo, hi in CJK_RANGES:
        cls[lo:hi + 1] = CJK
    # Folded code points that land in a CJK range (compatibility ideographs, halfwidth kana) are CJK.
    cls[np.isin(fold, np.flatnonzero(cls == CJK).astype(np.uint32))] = CJK
    return fold, cls


def _fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (a bijection that spreads every input bit)."""
    x = x ^ (x >> _U64(33))
    x = x * _U64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> _U64(33))
    x = x * _U64(0xC4CEB93FE1A85EC5)
    return x ^ (x >> _U64(33))


def _inverse_mod_2_64(a: int) -> int:
    inv = a
    for _ in range(6):  # Newton: each step doubles the correct low bits
        inv = (inv * (2 - a * inv)) & _M64
    return inv


@dataclass(frozen=True)
class HashKey:
    """The keyed constants of the hash: bases (odd) and offsets derived from `seed` by blake2b."""

    seed: int
    char_base: int
    token_base: int
    token_offset: int
    length_mult: int
    ngram_offset: int

    @classmethod
    def from_seed(cls, seed: int) -> "HashKey":
        raw = hashlib.blake2b(f"winnow-decontaminate:{seed}".encode(), digest_size=40).digest()
        words = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, 40, 8)]
        return cls(seed=seed, char_base=words[0] | 1, token_base=words[1] | 1, token_offset=words[2],
                   length_mult=words[3] | 1, ngram_offset=words[4])


@dataclass
class TokenBatch:
    """Tokens of a batch of texts: per token its text index, char start/end in that text, CJK flag
    and 64-bit value; `doc_start[i]..doc_start[i+1]` are text i's tokens."""

    doc: np.ndarray        # int64 per token
    start: np.ndarray      # int64, char offset in its own text
    end: np.ndarray        # int64, exclusive
    cjk: np.ndarray        # bool
    value: np.ndarray      # uint64
    doc_start: np.ndarray  # int64, len = texts + 1

    @property
    def size(self) -> int:
        return int(self.value.shape[0])


def tokenize(texts: Sequence[str], key: HashKey) -> TokenBatch:
    """Tokenise and hash `texts` in one vectorised pass (callers bound the batch size)."""
    fold_t, cls_t = char_tables()
    joined = _DOC_SEPARATOR.join(texts) + _DOC_SEPARATOR
    cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    text_start = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths + 1, out=text_start[1:])
    cls = cls_t[cps]
    is_word = cls == WORD
    is_cjk = cls == CJK
    prev_word = np.zeros_like(is_word)
    prev_word[1:] = is_word[:-1]
    next_word = np.zeros_like(is_word)
    next_word[:-1] = is_word[1:]
    starts = np.flatnonzero((is_word & ~prev_word) | is_cjk)
    ends = np.flatnonzero((is_word & ~next_word) | is_cjk) + 1
    # Polynomial prefix hash of folded code points: seg(s, e) = (H[e] - H[s]) * base^-s.
    n = cps.shape[0]
    base = _U64(key.char_base)
    pows = np.full(n, base, dtype=np.uint64)
    pows[0] = 1
    with np.errstate(over="ignore"):
        np.cumprod(pows, out=pows)
        inv = np.full(n, _U64(_inverse_mod_2_64(key.char_base)), dtype=np.uint64)
        inv[0] = 1
        np.cumprod(inv, out=inv)
        prefix = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum(fold_t[cps].astype(np.uint64) * pows, out=prefix[1:])
        seg = (prefix[ends] - prefix[starts]) * inv[starts]
        lens = (ends - starts).astype(np.uint64)
        value = _fmix64((seg ^ _U64(key.token_offset)) + lens * _U64(key.length_mult))
    doc = np.searchsorted(text_start, starts, side="right") - 1
    doc_start = np.searchsorted(doc, np.arange(len(texts) + 1), side="left").astype(np.int64)
    return TokenBatch(doc=doc, start=starts - text_start[doc], end=ends - text_start[doc],
                      cjk=is_cjk[starts], value=value, doc_start=doc_start)


class WindowHasher:
    """Hash of any token window [p, p+k) of a batch in O(1), vectorised over many windows:
    ``(T[p+k] - T[p]) · Q^-p + offset(k)`` with ``T`` the prefix sums of ``value_j · Q^j`` (mod 2^64).

    That is the polynomial ``Σ value_{p+j} · Q^j`` of the window plus a per-length offset, so a
    window's hash does not depend on where it sits, and windows of different lengths never share
    a hash systematically. Token values are mixed 64-bit hashes, so the sum is uniform: two
    different windows collide with probability ~2^-64."""

    def __init__(self, batch: TokenBatch, key: HashKey):
        m = batch.size
        self.key = key
        self.batch = batch
        with np.errstate(over="ignore"):
            pows = np.full(m, _U64(key.token_base), dtype=np.uint64)
            if m:
                pows[0] = 1
            np.cumprod(pows, out=pows)
            inv = np.full(m, _U64(_inverse_mod_2_64(key.token_base)), dtype=np.uint64)
            if m:
                inv[0] = 1
            np.cumprod(inv, out=inv)
            self.prefix = np.zeros(m + 1, dtype=np.uint64)
            np.cumsum(batch.value * pows, out=self.prefix[1:])
        self.inv = inv

    def offset(self, k: np.ndarray | int) -> np.ndarray:
        with np.errstate(over="ignore"):
            return _U64(self.key.ngram_offset) + np.asarray(k, dtype=np.uint64) * _U64(self.key.length_mult)

    def all_windows(self, k: int) -> np.ndarray:
        """Hashes of every window of length k (position p = array index), documents ignored."""
        m = self.batch.size
        if m < k:
            return np.zeros(0, dtype=np.uint64)
        with np.errstate(over="ignore"):
            return (self.prefix[k:] - self.prefix[:m - k + 1]) * self.inv[:m - k + 1] + self.offset(k)

    def at(self, pos: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Hashes of the windows (pos[i], k[i]); callers keep pos + k <= size."""
        with np.errstate(over="ignore"):
            return (self.prefix[pos + k] - self.prefix[pos]) * self.inv[pos] + self.offset(k)

    def inside_doc(self, pos: np.ndarray, k: np.ndarray | int) -> np.ndarray:
        """Whether each window lies inside one document."""
        end = pos + np.asarray(k) - 1
        ok = end < self.batch.size
        out = np.zeros(pos.shape[0], dtype=bool)
        out[ok] = self.batch.doc[pos[ok]] == self.batch.doc[end[ok]]
        return out


class NgramIndex:
    """Benchmark n-gram hashes, sorted, each with the item it came from, plus short-item anchors.

    - ``grams``: unique hashes of n-grams (length n for word text, n_cjk for CJK text);
    - ``anchors``: items shorter than their n, matched on their whole text: the hash of their
      first ``min`` tokens (the anchor, looked up at that one length) with the item's length and
      whole-text hash, checked exactly at every anchor hit. Looking up 2–4 lengths instead of one
      per short-item length keeps the scan to a handful of passes.
    """

    def __init__(self, key: HashKey, n: int, n_cjk: int, gram_hashes: np.ndarray, gram_items: np.ndarray,
                 anchor_hashes: np.ndarray, anchor_items: np.ndarray, anchor_lengths: np.ndarray,
                 anchor_whole: np.ndarray, anchor_k: Sequence[int]):
        self.key, self.n, self.n_cjk = key, n, n_cjk
        self.gram_hashes = np.ascontiguousarray(gram_hashes, dtype=np.uint64)
        self.gram_items = np.ascontiguousarray(gram_items, dtype=np.int32)
        order = np.argsort(anchor_hashes, kind="stable")
        self.anchor_hashes = np.ascontiguousarray(anchor_hashes[order], dtype=np.uint64)
        self.anchor_items = np.ascontiguousarray(anchor_items[order], dtype=np.int32)
        self.anchor_lengths = np.ascontiguousarray(anchor_lengths[order], dtype=np.int32)
        self.anchor_whole = np.ascontiguousarray(anchor_whole[order], dtype=np.uint64)
        self.anchor_k = tuple(sorted(set(int(k) for k in anchor_k)))
        bits = np.zeros(1 << (PREFILTER_BITS - 3), dtype=np.uint8)
        for arr in (self.gram_hashes, self.anchor_hashes):
            top = (arr >> _U64(64 - PREFILTER_BITS)).astype(np.int64)
            np.bitwise_or.at(bits, top >> 3, np.left_shift(1, top & 7).astype(np.uint8))
        self.prefilter = bits

    def __len__(self) -> int:
        return int(self.gram_hashes.shape[0] + self.anchor_hashes.shape[0])

    @property
    def lengths(self) -> tuple[int, ...]:
        """Window lengths a document is looked up at."""
        return tuple(sorted({self.n, self.n_cjk, *self.anchor_k}))

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in (self.gram_hashes, self.gram_items, self.anchor_hashes, self.anchor_items,
                                          self.anchor_lengths, self.anchor_whole, self.prefilter)))

    def false_positive_rate(self) -> float:
        """Probability that one unrelated window hits by a 64-bit hash collision: K / 2^64."""
        return len(self) / float(1 << 64)

    def _candidates(self, hashes: np.ndarray) -> np.ndarray:
        top = hashes >> _U64(64 - PREFILTER_BITS)
        byte = self.prefilter[(top >> _U64(3)).astype(np.intp)]
        return np.flatnonzero((byte >> (top & _U64(7)).astype(np.uint8)) & 1)

    def lookup_grams(self, hashes: np.ndarray) -> np.ndarray:
        """Item of each n-gram hash, -1 where it is not indexed."""
        out = np.full(hashes.shape[0], -1, dtype=np.int32)
        if hashes.size == 0 or self.gram_hashes.size == 0:
            return out
        cand = self._candidates(hashes)
        if cand.size:
            q = hashes[cand]
            pos = np.searchsorted(self.gram_hashes, q)
            pos[pos == self.gram_hashes.shape[0]] = 0
            hit = self.gram_hashes[pos] == q
            out[cand[hit]] = self.gram_items[pos[hit]]
        return out

    def scan(self, hasher: WindowHasher) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(token position, window length, item) of every indexed window in a token batch."""
        ps: list[np.ndarray] = []
        ks: list[np.ndarray] = []
        its: list[np.ndarray] = []
        for k in self.lengths:
            h = hasher.all_windows(k)
            if h.size == 0:
                continue
            if k in (self.n, self.n_cjk):
                items = self.lookup_grams(h)
                pos = np.flatnonzero(items >= 0)
                pos = pos[hasher.inside_doc(pos, k)]
                ps.append(pos)
                ks.append(np.full(pos.shape[0], k, dtype=np.int64))
                its.append(items[pos].astype(np.int64))
            if k in self.anchor_k and self.anchor_hashes.size:
                cand = self._candidates(h)
                q = h[cand]
                lo = np.searchsorted(self.anchor_hashes, q, side="left")
                hi = np.searchsorted(self.anchor_hashes, q, side="right")
                cnt = hi - lo
                if not cnt.any():
                    continue
                pos = np.repeat(cand, cnt)
                entry = np.repeat(lo - np.cumsum(cnt) + cnt, cnt) + np.arange(int(cnt.sum()))
                length = self.anchor_lengths[entry].astype(np.int64)
                ok = hasher.inside_doc(pos, length)
                pos, entry, length = pos[ok], entry[ok], length[ok]
                ok = hasher.at(pos, length) == self.anchor_whole[entry]
                ps.append(pos[ok])
                ks.append(length[ok])
                its.append(self.anchor_items[entry[ok]].astype(np.int64))
        if not ps:
            z = np.zeros(0, np.int64)
            return z, z, z
        return np.concatenate(ps), np.concatenate(ks), np.concatenate(its)


@dataclass
class Match:
    """One indexed window found in a text: tokens [tok, tok+k), chars [start, end), item index."""

    doc: int
    tok: int
    k: int
    start: int
    end: int
    item: int


def _batches(texts: Sequence[str], limit: int) -> Iterator[tuple[int, int]]:
    i = 0
    while i < len(texts):
        j, chars = i, 0
        while j < len(texts) and (j == i or chars + len(texts[j]) <= limit):
            chars += len(texts[j]) + 1
            j += 1
        yield i, j
        i = j


def find_matches(index: NgramIndex, texts: Sequence[str], batch_chars: int = BATCH_CHARS) -> list[list[Match]]:
    """Every indexed window in each text, vectorised over batches of ~batch_chars characters."""
    result: list[list[Match]] = [[] for _ in texts]
    for i, j in _batches(texts, batch_chars):
        batch = tokenize(texts[i:j], index.key)
        if batch.size == 0:
            continue
        pos, ks, items = index.scan(WindowHasher(batch, index.key))
        order = np.lexsort((ks, pos))
        for p, k, item in zip(pos[order].tolist(), ks[order].tolist(), items[order].tolist()):
            d = int(batch.doc[p])
            result[i + d].append(Match(doc=i + d, tok=p - int(batch.doc_start[d]), k=k, start=int(batch.start[p]),
                                       end=int(batch.end[p + k - 1]), item=item))
    return result


@dataclass
class BuildStats:
    """What went into an index: texts by how they were indexed, and boilerplate dropped."""

    texts: int = 0
    ngram_texts: int = 0
    whole_texts: int = 0
    too_short: int = 0
    gram_hashes: int = 0
    anchors: int = 0
    boilerplate_hashes: int = 0


#: How a benchmark text is indexed (bit flags): its n-grams, and/or its whole text when shorter than n.
GRAMS, WHOLE = 1, 2


def build_index(texts: Sequence[str], items: Sequence[int], groups: Sequence[int], modes: Sequence[int],
                n: int, n_cjk: int, min_tokens: int, min_cjk_tokens: int, max_groups: int, key: HashKey,
                batch_chars: int = BATCH_CHARS) -> tuple[NgramIndex, BuildStats]:
    """Index the n-grams of benchmark texts.

    A text whose tokens are mostly CJK characters uses `n_cjk`, others `n`. A text shorter than
    its n is indexed whole (anchor + whole-text hash) when its mode has WHOLE and it has at least
    `min_tokens` (`min_cjk_tokens` for CJK text) tokens; shorter ones are left out. `groups` says
    which texts share a source (questions on one passage count once); an n-gram or whole text
    found in `max_groups` or more groups is boilerplate ("Which of the following ...", MMLU's
    moral-scenario template) and is dropped: matching it would flag every page using the phrase."""
    if min(n, n_cjk, min_tokens, min_cjk_tokens) < 1:
        raise ValueError("n, n_cjk and the minimum lengths must be >= 1")
    stats = BuildStats(texts=len(texts))
    item_arr = np.asarray(items, dtype=np.int64)
    group_arr = np.asarray(groups, dtype=np.int64)
    mode_arr = np.asarray(modes, dtype=np.int64)
    grams_arr = (mode_arr & GRAMS) > 0
    whole_arr = (mode_arr & WHOLE) > 0
    g_h: list[np.ndarray] = []
    g_t: list[np.ndarray] = []
    a_rows: list[tuple[np.ndarray, ...]] = []
    for i, j in _batches(texts, batch_chars):
        batch = tokenize(texts[i:j], key)
        hasher = WindowHasher(batch, key)
        ntext = j - i
        ntok = np.diff(batch.doc_start)
        ncjk = np.bincount(batch.doc[batch.cjk], minlength=ntext) if batch.size else np.zeros(ntext, np.int64)
        is_cjk = 2 * ncjk > ntok
        want = np.where(is_cjk, n_cjk, n)
        minimum = np.where(is_cjk, min_cjk_tokens, min_tokens)
        long_enough = ntok >= want
        gram = long_enough & grams_arr[i:j]
        whole = ~long_enough & whole_arr[i:j] & (ntok >= minimum)
        stats.ngram_texts += int(gram.sum())
        stats.whole_texts += int(whole.sum())
        stats.too_short += int((~long_enough & ~whole).sum())
        for k in sorted({n, n_cjk}):
            h = hasher.all_windows(k)
            pos = np.arange(h.shape[0])
            d = batch.doc[pos]
            sel = gram[d] & (want[d] == k) & hasher.inside_doc(pos, k)
            g_h.append(h[sel])
            g_t.append((d[sel] + i).astype(np.int32))
        docs = np.flatnonzero(whole)
        if docs.size:
            start = batch.doc_start[docs]
            a_rows.append((hasher.at(start, minimum[docs]), docs + i, ntok[docs], hasher.at(start, ntok[docs]),
                           minimum[docs]))
    hashes = np.concatenate(g_h) if g_h else np.zeros(0, np.uint64)
    text_idx = np.concatenate(g_t) if g_t else np.zeros(0, np.int32)
    del g_h, g_t  # the window arrays are the build's peak memory
    if a_rows:
        a_hash, a_text, a_len, a_whole, a_k = (np.concatenate(c) for c in zip(*a_rows))
    else:
        a_hash = a_whole = np.zeros(0, np.uint64)
        a_text = a_len = a_k = np.zeros(0, np.int64)
    # Unique n-gram hashes, each credited to its first text (the lowest index: deterministic
    # whatever the sort); hashes found in max_groups+ groups are boilerplate and dropped.
    hashes, text_idx, stop = _unique_runs(hashes, text_idx, group_arr, max_groups)
    stats.boilerplate_hashes = int(stop.sum())
    hashes, text_idx = hashes[~stop], text_idx[~stop]
    # Short texts: one anchor per (whole hash, item); boilerplate whole texts dropped.
    if a_whole.size:
        _, a_first, a_stop = _unique_runs(a_whole, a_text, group_arr, max_groups)
        stats.boilerplate_hashes += int(a_stop.sum())
        stopped = np.sort(np.unique(a_whole)[a_stop])
        keep = ~_member(a_whole, stopped)
        a_hash, a_text, a_len, a_whole, a_k = a_hash[keep], a_text[keep], a_len[keep], a_whole[keep], a_k[keep]
    a_item = item_arr[a_text]
    if a_whole.size:
        pair = np.unique(np.stack([a_whole.view(np.int64), a_item]), axis=1, return_index=True)[1]
        a_hash, a_item, a_len, a_whole, a_k = a_hash[pair], a_item[pair], a_len[pair], a_whole[pair], a_k[pair]
    stats.gram_hashes = int(hashes.shape[0])
    stats.anchors = int(a_hash.shape[0])
    index = NgramIndex(key, n, n_cjk, hashes, item_arr[text_idx], a_hash, a_item, a_len, a_whole,
                       np.unique(a_k).tolist())
    return index, stats


def _unique_runs(hashes: np.ndarray, text_idx: np.ndarray, groups: np.ndarray, max_groups: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted unique hashes, lowest text index of each, boilerplate flag of each): a hash is
    boilerplate when its texts span at least `max_groups` distinct groups (0: never)."""
    if hashes.size == 0:
        return hashes, text_idx, np.zeros(0, dtype=bool)
    order = np.argsort(hashes)
    sorted_h = hashes[order]
    sorted_t = text_idx[order]
    del order
    run_start = np.flatnonzero(np.r_[True, sorted_h[1:] != sorted_h[:-1]])
    counts = np.diff(np.r_[run_start, sorted_h.shape[0]])
    first_text = np.minimum.reduceat(sorted_t, run_start)
    stop = np.zeros(run_start.shape[0], dtype=bool)
    if max_groups > 0:
        for r in np.flatnonzero(counts >= max_groups).tolist():  # few: most hashes occur once
            s = run_start[r]
            stop[r] = np.unique(groups[sorted_t[s:s + counts[r]]]).shape[0] >= max_groups
    return sorted_h[run_start], first_text, stop


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """`np.isin(values, sorted_set)` for a small sorted set, by binary search (no big sort)."""
    if sorted_set.size == 0 or values.size == 0:
        return np.zeros(values.shape[0], dtype=bool)
    pos = np.searchsorted(sorted_set, values)
    pos[pos == sorted_set.shape[0]] = 0
    return sorted_set[pos] == values
