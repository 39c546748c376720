"""MinHash signatures of a whole Arrow batch: normalise → words → hashed 5-gram shingles → MinHash.

The definition (what the datasketch oracle test pins down, value for value):

- words: ``normalize.tokens(text, cjk)``;
- word hash ``t(w) = fmix64(Horner_P(code points of w))`` (mod 2^64);
- shingle hash of words ``w_0..w_{m-1}`` (m = n, or the whole document when it has 1 ≤ m < n
  words) ``h = fmix64(Σ t(w_i)·M_i mod 2^64) >> 32`` — a 32-bit value, see `shingle_hash32`;
- signature = ``datasketch.MinHash(num_perm, seed, hashfunc=shingle_hash32)`` updated with the
  document's shingles (datasketch's default ``affine32`` scheme: ``a·fmix32(h)+b mod 2^32`` with
  datasketch's own ``a, b`` from ``RandomState(seed)``). A document without words gets no
  signature (all 0xFFFFFFFF, datasketch's empty value) and never enters LSH.

Two backends compute the same thing: ``numba`` (one compiled pass over the Arrow UTF-8 buffer:
decode, normalise, split, hash — chosen because numpy tops out near 17 MB/s on that part alone
against ~100 MB/s compiled, see bench/dedup.py) and ``numpy`` (the vectorised fallback when numba
is absent). MinHash itself stays numpy: its per-permutation passes measured faster than the
compiled loop.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import pyarrow as pa

from winnow.stages.dedup import normalize as nz

MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1
P_TOKEN = 0x100000001B3  # FNV-64 prime: Horner multiplier over code points
MAX_NGRAM = 16
EMPTY = np.uint32(MASK32)


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


#: position multipliers of a shingle's words (odd, fixed forever: they define the hash)
SHINGLE_MULT = np.array([_splitmix64(i + 1) | 1 for i in range(MAX_NGRAM)], dtype=np.uint64)


# ---- reference (plain Python) -------------------------------------------------------------

def fmix64_int(h: int) -> int:
    """MurmurHash3's 64-bit finalizer on a Python int."""
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & MASK64
    return h ^ (h >> 33)


def token_hash(word: str) -> int:
    """64-bit hash of one normalised word (Horner over code points, then fmix64)."""
    h = 0
    for ch in word:
        h = (h * P_TOKEN + ord(ch)) & MASK64
    return fmix64_int(h)


def shingle_hash32(shingle: Sequence[str]) -> int:
    """The 32-bit hash of one shingle (a tuple of normalised words): datasketch's `hashfunc`."""
    s = 0
    for i, w in enumerate(shingle):
        s = (s + token_hash(w) * int(SHINGLE_MULT[i])) & MASK64
    return fmix64_int(s) >> 32


def shingles(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """Word n-grams of a document; a document with 1 ≤ len < n words is one shingle of them all."""
    if not words:
        return []
    if len(words) < n:
        return [tuple(words)]
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


@functools.lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's ``affine32`` permutation parameters (a odd, b) for (num_perm, seed)."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


# ---- numpy helpers ------------------------------------------------------------------------

def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3 64-bit finalizer, elementwise (in place on a uint64 array it owns)."""
    h = h.astype(np.uint64, copy=True)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3 32-bit finalizer (datasketch's affine32 pre-mix), elementwise."""
    h = h.astype(np.uint32, copy=True)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


# ---- numba kernels ------------------------------------------------------------------------

try:  # numba is optional: the numpy path computes the same values, slower
    import numba as _numba
except ImportError:  # pragma: no cover - exercised only without numba
    _numba = None

HAVE_NUMBA = _numba is not None

if HAVE_NUMBA:
    _njit = _numba.njit(cache=True, nogil=True, boundscheck=False)

    @_njit
    def _fmix64_nb(h):
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xC4CEB9FE1A85EC53)
        h ^= h >> np.uint64(33)
        return h

    @_njit
    def _decode_nb(data, i, end):
        """One code point of UTF-8 at data[i] → (code point, next i). Invalid or truncated
        sequences give U+FFFD and advance one byte (so a valid character is never swallowed)."""
        b0 = np.uint32(data[i])
        if b0 < 0x80:
            return b0, i + 1
        if b0 >= 0xC2 and b0 <= 0xDF:
            if i + 1 < end and (data[i + 1] & 0xC0) == 0x80:
                return ((b0 & 0x1F) << 6) | (np.uint32(data[i + 1]) & 0x3F), i + 2
        elif b0 >= 0xE0 and b0 <= 0xEF:
            lo = 0xA0 if b0 == 0xE0 else 0x80
            hi = 0x9F if b0 == 0xED else 0xBF
            if i + 2 < end and data[i + 1] >= lo and data[i + 1] <= hi and (data[i + 2] & 0xC0) == 0x80:
                return (((b0 & 0x0F) << 12) | ((np.uint32(data[i + 1]) & 0x3F) << 6)
                        | (np.uint32(data[i + 2]) & 0x3F)), i + 3
        elif b0 >= 0xF0 and b0 <= 0xF4:
            lo = 0x90 if b0 == 0xF0 else 0x80
            hi = 0x8F if b0 == 0xF4 else 0xBF
            if (i + 3 < end and data[i + 1] >= lo and data[i + 1] <= hi
                    and (data[i + 2] & 0xC0) == 0x80 and (data[i + 3] & 0xC0) == 0x80):
                return (((b0 & 0x07) << 18) | ((np.uint32(data[i + 1]) & 0x3F) << 12)
                        | ((np.uint32(data[i + 2]) & 0x3F) << 6) | (np.uint32(data[i + 3]) & 0x3F)), i + 4
        return np.uint32(0xFFFD), i + 1

    @_njit
    def _count_cjk_nb(data, offsets, valid, kind, out):
        """CJK characters per document (to send only those documents through jieba)."""
        limit = kind.shape[0]
        for d in range(offsets.shape[0] - 1):
            c = 0
            if valid[d]:
                i = offsets[d]
                end = offsets[d + 1]
                while i < end:
                    if data[i] < 0xE0:  # every CJK range is 3 or 4 bytes long in UTF-8
                        i += 1
                        continue
                    cp, i = _decode_nb(data, i, end)
                    if cp < limit and kind[cp] == 4:
                        c += 1
            out[d] = c

    @_njit
    def _tokenize_utf8_nb(data, offsets, valid, kind, mapped, exp_off, exp_kind, exp_mapped,
                          split_cjk, out, ntok):
        """Decode UTF-8 (invalid bytes → separator), normalise, split and hash every word.

        Returns the number of words written to `out`, or -1 when `out` is too small.
        """
        P = np.uint64(0x100000001B3)
        limit = kind.shape[0]
        cap = out.shape[0]
        q = 0
        for d in range(offsets.shape[0] - 1):
            start_q = q
            if not valid[d]:
                ntok[d] = 0
                continue
            i = offsets[d]
            end = offsets[d + 1]
            h = np.uint64(0)
            inword = False
            while i < end:
                cp, i = _decode_nb(data, i, end)
                k = kind[cp] if cp < limit else 0
                m = mapped[cp] if cp < limit else np.uint32(0)
                n_sub = 1
                e0 = 0
                if k == 3:  # expansion
                    e0 = exp_off[m]
                    n_sub = exp_off[m + 1] - e0
                for s in range(n_sub):
                    if k == 3:
                        kk = exp_kind[e0 + s]
                        mm = exp_mapped[e0 + s]
                    else:
                        kk = k
                        mm = m
                    if kk == 2:
                        continue
                    if kk == 0 or (kk == 4 and split_cjk):
                        if inword:
                            if q >= cap:
                                return -1
                            out[q] = _fmix64_nb(h)
                            q += 1
                            h = np.uint64(0)
                            inword = False
                        if kk == 4:  # a CJK character is a word of its own
                            if q >= cap:
                                return -1
                            out[q] = _fmix64_nb(np.uint64(mm))
                            q += 1
                        continue
                    h = h * P + np.uint64(mm)
                    inword = True
            if inword:
                if q >= cap:
                    return -1
                out[q] = _fmix64_nb(h)
                q += 1
            ntok[d] = q - start_q
        return q

    @_njit
    def _shingles_nb(tok, ntok, n, mult, out_hv, out_nsh):
        p = 0
        q = 0
        for d in range(ntok.shape[0]):
            L = ntok[d]
            if L == 0:
                out_nsh[d] = 0
                continue
            if L < n:
                s = np.uint64(0)
                for i in range(L):
                    s += tok[p + i] * mult[i]
                out_hv[q] = np.uint32(_fmix64_nb(s) >> np.uint64(32))
                q += 1
                out_nsh[d] = 1
            else:
                for j in range(L - n + 1):
                    s = np.uint64(0)
                    for i in range(n):
                        s += tok[p + j + i] * mult[i]
                    out_hv[q] = np.uint32(_fmix64_nb(s) >> np.uint64(32))
                    q += 1
                out_nsh[d] = L - n + 1
            p += L
        return q

    @_numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=True)
    def _minhash_nb(hv, nsh, a, b, out):
        """Per document, per permutation: min over the document's pre-mixed shingles (the inner
        loop is a vectorised min-reduction; 2.0 G permutation values/s against numpy's 0.7)."""
        K = a.shape[0]
        m32 = np.uint64(0xFFFFFFFF)
        hm = np.empty(hv.shape[0], np.uint32)
        for j in range(hv.shape[0]):
            h = np.uint64(hv[j])
            h ^= h >> np.uint64(16)
            h = (h * np.uint64(0x85EBCA6B)) & m32
            h ^= h >> np.uint64(13)
            h = (h * np.uint64(0xC2B2AE35)) & m32
            h ^= h >> np.uint64(16)
            hm[j] = np.uint32(h)
        p = 0
        for d in range(nsh.shape[0]):
            n = nsh[d]
            if n == 0:
                continue
            for k in range(K):
                ak = a[k]
                bk = b[k]
                m = np.uint32(0xFFFFFFFF)
                for j in range(p, p + n):
                    v = np.uint32(ak * hm[j] + bk)
                    m = min(m, v)
                out[d, k] = m
            p += n


    @_njit
    def _bottom_k_jaccard_nb(va, oa, vb, ob, k, out):
        """Bottom-k Jaccard estimate of each pair: of the k smallest hashes of the union of the two
        sketches, the share present in both (exact when both documents have ≤ k shingles)."""
        for i in range(out.shape[0]):
            ia = oa[i]
            ea = oa[i + 1]
            ib = ob[i]
            eb = ob[i + 1]
            m = 0
            c = 0
            while m < k and (ia < ea or ib < eb):
                if ib >= eb or (ia < ea and va[ia] < vb[ib]):
                    ia += 1
                elif ia >= ea or vb[ib] < va[ia]:
                    ib += 1
                else:
                    c += 1
                    ia += 1
                    ib += 1
                m += 1
            out[i] = c / m if m > 0 else 1.0


# ---- batch API ----------------------------------------------------------------------------

def _string_array(texts: pa.Array | pa.ChunkedArray | Sequence[str | None]) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
    if not isinstance(texts, pa.Array):
        texts = pa.array(list(texts), type=pa.string())
    if pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type):
        return texts
    if pa.types.is_binary(texts.type) or pa.types.is_large_binary(texts.type):
        return texts.view(pa.large_string() if pa.types.is_large_binary(texts.type) else pa.string())
    raise TypeError(f"text column must be string, got {texts.type}")


def _arrow_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uint8 data, int64 offsets, bool valid) views of an Arrow string array, zero-copy where possible."""
    n = len(arr)
    bufs = arr.buffers()
    off_dtype = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(bufs[1], dtype=off_dtype, count=n + 1 + arr.offset)[arr.offset:].astype(np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    valid = (np.ones(n, np.bool_) if arr.null_count == 0
             else arr.is_valid().to_numpy(zero_copy_only=False).astype(np.bool_))
    return data, offsets, valid


def _cjk_docs(arr: pa.Array) -> np.ndarray:
    """Indices of documents holding CJK characters."""
    if HAVE_NUMBA:
        data, offsets, valid = _arrow_buffers(arr)
        counts = np.zeros(len(arr), np.int64)
        _count_cjk_nb(data, offsets, valid, nz.norm_table().kind, counts)
        return np.flatnonzero(counts)
    return np.array([i for i, s in enumerate(_decode_all(arr)) if s and nz.has_cjk(s)], dtype=np.int64)


def _jieba_presplit_array(arr: pa.Array) -> pa.Array:
    """Documents with CJK text rewritten with spaces between jieba words; others untouched."""
    idx = _cjk_docs(arr)
    if len(idx) == 0:
        return arr
    texts = _decode_all(arr)
    for i in idx:
        texts[i] = nz.jieba_presplit(texts[i])
    return pa.array(texts, type=pa.string())


def _decode_all(arr: pa.Array) -> list[str | None]:
    """Python strings of an Arrow string array; invalid UTF-8 becomes U+FFFD, never an error."""
    try:
        return arr.to_pylist()
    except (UnicodeDecodeError, pa.ArrowException):
        raw = arr.cast(pa.large_binary()) if pa.types.is_large_string(arr.type) else arr.view(pa.binary())
        return [None if b is None else b.decode("utf-8", "replace") for b in raw.to_pylist()]


def invalid_utf8_count(texts: pa.Array) -> int:
    """How many documents hold bytes that are not UTF-8 (they are read with U+FFFD there)."""
    arr = _string_array(texts)
    try:
        arr.validate(full=True)
        return 0
    except pa.ArrowInvalid:
        pass
    raw = arr.view(pa.large_binary() if pa.types.is_large_string(arr.type) else pa.binary())
    bad = 0
    for b in raw.to_pylist():
        if b is not None:
            try:
                b.decode("utf-8")
            except UnicodeDecodeError:
                bad += 1
    return bad


def tokenize_batch(texts: pa.Array | Sequence[str | None], cjk: str = "char",
                   backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Hashed words of every document: (uint64 word hashes, concatenated; int64 words per doc).

    Null texts have no words. `backend`: "numba", "numpy" or "auto" (numba when installed).
    """
    arr = _string_array(texts)
    if cjk == "jieba":
        arr = _jieba_presplit_array(arr)
        split_cjk = False
    elif cjk == "char":
        split_cjk = True
    else:
        raise ValueError(f"cjk must be 'char' or 'jieba', not {cjk!r}")
    if backend == "auto":
        backend = "numba" if HAVE_NUMBA else "numpy"
    if backend == "numba":
        if not HAVE_NUMBA:
            raise RuntimeError("numba is not installed")
        return _tokenize_numba(arr, split_cjk)
    if backend == "numpy":
        return _tokenize_numpy(arr, split_cjk)
    raise ValueError(f"unknown backend {backend!r}")


def _tokenize_numba(arr: pa.Array, split_cjk: bool) -> tuple[np.ndarray, np.ndarray]:
    t = nz.norm_table()
    n = len(arr)
    data, offsets, valid = _arrow_buffers(arr)
    ntok = np.zeros(n, np.int64)
    cap = int(offsets[-1] - offsets[0]) // 2 + 64 if n else 64
    while True:
        out = np.empty(cap, np.uint64)
        q = _tokenize_utf8_nb(data, offsets, valid, t.kind, t.mapped, t.exp_off,
                              t.exp_kind, t.exp_mapped, split_cjk, out, ntok)
        if q >= 0:
            return out[:q].copy() if q < cap // 2 else out[:q], ntok
        cap *= 4


def _tokenize_numpy(arr: pa.Array, split_cjk: bool) -> tuple[np.ndarray, np.ndarray]:
    t = nz.norm_table()
    texts = ["" if s is None else s for s in _decode_all(arr)]
    n = len(texts)
    if n == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    joined = "\x00".join(texts)  # NUL is a separator: documents never share a word
    cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    doc_start = np.zeros(n, np.int64)
    np.cumsum(np.fromiter((len(s) + 1 for s in texts[:-1]), dtype=np.int64, count=n - 1), out=doc_start[1:])
    inside = cps < nz.LIMIT
    safe = np.where(inside, cps, 0)
    kind = np.where(inside, t.kind[safe], nz.SEP).astype(np.uint8)
    mapped = t.mapped[safe]
    pos = np.arange(len(cps), dtype=np.int64)
    # expansions and deletions: every code point becomes 0..k characters
    exp = kind == nz.EXPAND
    counts = np.ones(len(cps), np.int64)
    counts[kind == nz.DROP] = 0
    if exp.any():
        e = mapped[exp].astype(np.int64)
        counts[exp] = t.exp_off[e + 1] - t.exp_off[e]
    src = np.repeat(pos, counts)
    first = np.cumsum(counts) - counts
    sub = np.arange(len(src), dtype=np.int64) - np.repeat(first, counts)
    k2 = kind[src]
    m2 = mapped[src].copy()
    is_exp = k2 == nz.EXPAND
    if is_exp.any():
        j = t.exp_off[m2[is_exp].astype(np.int64)] + sub[is_exp]
        k2[is_exp] = t.exp_kind[j]
        m2[is_exp] = t.exp_mapped[j]
    doc_of = np.searchsorted(doc_start, src, side="right") - 1
    # words: maximal runs of letters; in char mode each CJK character stands alone
    letter = (k2 == nz.CHAR) | (k2 == nz.CJK)
    prev_letter = np.concatenate([[False], letter[:-1]])
    starts = letter & ~prev_letter
    if split_cjk:
        cjk = k2 == nz.CJK
        prev_cjk = np.concatenate([[False], cjk[:-1]])
        starts |= letter & (cjk | prev_cjk)
    idx = np.flatnonzero(letter)
    word_id = np.cumsum(starts)[idx] - 1
    n_words = int(starts.sum())
    if n_words == 0:
        return np.zeros(0, np.uint64), np.zeros(n, np.int64)
    lengths = np.bincount(word_id, minlength=n_words)
    wstart = np.cumsum(lengths) - lengths
    local = np.arange(len(idx), dtype=np.int64) - wstart[word_id]
    expo = lengths[word_id] - 1 - local  # Horner: first character has the highest power
    maxlen = int(lengths.max())
    pw = np.ones(maxlen, np.uint64)
    if maxlen > 1:
        pw[1:] = np.cumprod(np.full(maxlen - 1, P_TOKEN, np.uint64))
    terms = m2[idx].astype(np.uint64) * pw[expo]
    h = np.add.reduceat(terms, wstart)
    words = fmix64(h)
    ntok = np.bincount(doc_of[idx[wstart]], minlength=n).astype(np.int64)
    return words, ntok


def shingle_hashes(tok: np.ndarray, ntok: np.ndarray, n: int, backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """32-bit shingle hashes of every document (concatenated) and the count per document."""
    if not 1 <= n <= MAX_NGRAM:
        raise ValueError(f"ngram must be in 1..{MAX_NGRAM}")
    ndoc = len(ntok)
    nsh = np.where(ntok >= n, ntok - n + 1, np.minimum(ntok, 1)).astype(np.int64)
    total = int(nsh.sum())
    if backend == "auto":
        backend = "numba" if HAVE_NUMBA else "numpy"
    if backend == "numba":
        out = np.empty(total, np.uint32)
        out_nsh = np.empty(ndoc, np.int64)
        _shingles_nb(tok, ntok.astype(np.int64), n, SHINGLE_MULT, out, out_nsh)
        return out, out_nsh
    # numpy: windows over the flat word array, then the windows that stay inside a document
    T = len(tok)
    tpad = np.concatenate([tok, np.zeros(n, np.uint64)])
    doc_tok_start = np.cumsum(ntok) - ntok
    full = np.zeros(max(T, 0), np.uint64)
    for i in range(n):
        full += tpad[i:i + T] * SHINGLE_MULT[i]
    sh_start = np.cumsum(nsh) - nsh
    pos = np.arange(total, dtype=np.int64) - np.repeat(sh_start - doc_tok_start, nsh)
    s = full[pos] if T else np.zeros(0, np.uint64)
    short = np.flatnonzero((ntok > 0) & (ntok < n))
    for d in short:  # documents shorter than n: one shingle of all their words
        a = int(doc_tok_start[d])
        L = int(ntok[d])
        acc = np.uint64(0)
        with np.errstate(over="ignore"):
            for i in range(L):
                acc = np.uint64(acc + tok[a + i] * SHINGLE_MULT[i])
        s[sh_start[d]] = acc
    hv = (fmix64(s) >> np.uint64(32)).astype(np.uint32)
    return hv, nsh


def minhash(hv: np.ndarray, nsh: np.ndarray, num_perm: int, seed: int, backend: str = "auto") -> np.ndarray:
    """Signatures (ndoc × num_perm uint32): datasketch affine32 MinHash of each document's shingles.

    numpy loops over permutations, each one SIMD pass (multiply, add, segmented min) over all the
    batch's shingles: ~3 G values/s on one core here, faster than the compiled per-document loop
    (``backend="numba"``, ~2 G values/s, kept for the benchmark's comparison). So numpy it is.
    """
    if backend == "auto":
        backend = "numpy"
    a, b = permutations(num_perm, seed)
    ndoc = len(nsh)
    out = np.full((ndoc, num_perm), EMPTY, dtype=np.uint32)
    if ndoc == 0 or len(hv) == 0:
        return out
    if backend == "numba" and HAVE_NUMBA:
        _minhash_nb(hv, nsh.astype(np.int64), a, b, out)
        return out
    h = fmix32(hv)
    nonempty = np.flatnonzero(nsh > 0)
    starts = (np.cumsum(nsh) - nsh)[nonempty]
    tmp = np.empty(len(h), np.uint32)
    col = np.empty(len(nonempty), np.uint32)
    for k in range(num_perm):
        np.multiply(h, a[k], out=tmp)
        tmp += b[k]
        np.minimum.reduceat(tmp, starts, out=col)
        out[nonempty, k] = col
    return out


def signatures(texts: pa.Array | Sequence[str | None], *, num_perm: int, seed: int, ngram: int,
               cjk: str = "char", backend: str = "auto", minhash_backend: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(signatures ndoc × num_perm uint32, words per document) for a batch of texts."""
    tok, ntok = tokenize_batch(texts, cjk=cjk, backend=backend)
    hv, nsh = shingle_hashes(tok, ntok, ngram, backend=backend)
    return minhash(hv, nsh, num_perm, seed, backend=minhash_backend or "numpy"), ntok


def sketches(texts: pa.Array | Sequence[str | None], *, num_perm: int, seed: int, ngram: int, cjk: str = "char",
             verify_k: int = 0, backend: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Everything the signature phase keeps per document, in one pass over the batch:
    (MinHash signatures, words per document, bottom-k values concatenated, bottom-k counts)."""
    tok, ntok = tokenize_batch(texts, cjk=cjk, backend=backend)
    hv, nsh = shingle_hashes(tok, ntok, ngram, backend=backend)
    sig = minhash(hv, nsh, num_perm, seed)
    if verify_k > 0:
        bk, cnt = bottom_k(hv, nsh, verify_k)
    else:
        bk, cnt = np.zeros(0, np.uint32), np.zeros(len(nsh), np.int64)
    return sig, ntok, bk, cnt


# ---- bottom-k verification sketch -----------------------------------------------------------

def bottom_k(hv: np.ndarray, nsh: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Bottom-k sketch of every document: its k smallest distinct shingle hashes, sorted.

    Returns (values concatenated, count per document). Used to verify LSH candidate pairs: the
    Jaccard estimate from it has standard deviation √(J(1−J)/k) (0.018 at J = 0.8, k = 512) and is
    exact for documents with at most k distinct shingles, against 0.038 for the 112 MinHash values.
    One sort of (document << 32 | hash) keys for the whole batch (numpy's SIMD sort beat a
    compiled per-document sort here).
    """
    ndoc = len(nsh)
    doc = np.repeat(np.arange(ndoc, dtype=np.uint64), nsh)
    key = (doc << np.uint64(32)) | hv.astype(np.uint64)
    key.sort()
    first = np.ones(len(key), bool)
    first[1:] = key[1:] != key[:-1]
    key = key[first]
    d = (key >> np.uint64(32)).astype(np.int64)
    rank = np.arange(len(d)) - np.searchsorted(d, np.arange(ndoc))[d]
    keep = rank < k
    return (key[keep] & np.uint64(0xFFFFFFFF)).astype(np.uint32), np.bincount(d[keep], minlength=ndoc).astype(np.int64)


def bottom_k_jaccard(va: np.ndarray, oa: np.ndarray, vb: np.ndarray, ob: np.ndarray, k: int,
                     backend: str = "auto") -> np.ndarray:
    """Jaccard estimates of pairs of bottom-k sketches given as (values, offsets) of each side."""
    n = len(oa) - 1
    out = np.empty(n, np.float64)
    if backend == "numba" or (backend == "auto" and HAVE_NUMBA):
        _bottom_k_jaccard_nb(va, oa.astype(np.int64), vb, ob.astype(np.int64), k, out)
        return out
    for i in range(n):
        a, b = va[oa[i]:oa[i + 1]], vb[ob[i]:ob[i + 1]]
        u = np.union1d(a, b)[:k]
        out[i] = np.isin(u, np.intersect1d(a, b, assume_unique=True)).mean() if len(u) else 1.0
    return out


# ---- LSH band keys ------------------------------------------------------------------------

def band_hashes(sig: np.ndarray, num_bands: int, rows: int, salt: np.ndarray | None = None) -> np.ndarray:
    """64-bit key of each (document, band): equal bands (and equal salt) give equal keys.

    `salt` (uint64 per document) separates scopes: with ``--scope dump`` it is a hash of the dump,
    so documents of different dumps never share a bucket.
    """
    n = sig.shape[0]
    if sig.shape[1] < num_bands * rows:
        raise ValueError(f"signature has {sig.shape[1]} values, bands need {num_bands * rows}")
    out = np.empty((n, num_bands), np.uint64)
    base = np.zeros(n, np.uint64) if salt is None else salt.astype(np.uint64)
    with np.errstate(over="ignore"):
        for band in range(num_bands):
            h = base ^ np.uint64(_splitmix64(band + 0x5EED))
            for r in range(rows):
                h = (h ^ sig[:, band * rows + r].astype(np.uint64)) * np.uint64(0x9E3779B97F4A7C15)
                h ^= h >> np.uint64(29)
            out[:, band] = fmix64(h)
    return out


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Share of equal MinHash values, row by row: an unbiased estimate of the Jaccard similarity."""
    return (sig_a == sig_b).mean(axis=1)
