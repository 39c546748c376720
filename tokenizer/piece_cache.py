"""A compiled pre-tokenizer with a cache of pre-token ids: `encode_batch`'s ids, several times faster.

Why: packing spends ~80% of its CPU inside `tokenizers`' pre-tokenizer (the DeepSeek splits are
Oniguruma regexes run over a `NormalizedString` that tracks an alignment per character), not in
BPE. Yet the pre-tokenizer of DeepSeek LLM (and of winnow's own tokenizer) is a handful of
character-class rules, and BPE is applied to every pre-token on its own, so

    ids(text) = concat(bpe(piece) for piece in pre_tokens(text))

holds exactly. This module compiles the pre-tokenizer's `Split` rules into one numba pass over a
batch's UTF-8 bytes (read straight from the Arrow string buffer), looks every piece up in a hash
table of pieces already seen (keyed by the piece's bytes, compared byte for byte, never by hash
alone), and sends only the pieces never seen to the real tokenizer (its own BPE model with only
its `ByteLevel` step as pre-tokenizer, so the merges are the library's). `bench/pack.py` measures it against
datatrove's `DocumentTokenizer` and bare `encode_batch`; `tests/test_piece_cache.py` checks the
ids equal `Tokenizer.encode_batch` on real multilingual text and adversarial strings, and each
character class equal to what Oniguruma matches, code point by code point.

What compiles (`PieceCacheEncoder.for_tokenizer` returns None otherwise, and the caller keeps
`encode_batch`): no normalizer; a pre-tokenizer that is a `Sequence` of `Split(Isolated)` rules of
the forms ``[C]``, ``[C]+``, ``\\s?[C]+`` and ``\\s+$`` (``C`` a bracket class of literal
characters and ranges), `Digits(individual_digits=True)`, ending in
`ByteLevel(add_prefix_space=False, use_regex=False)`; a BPE model without dropout. Documents that
contain an added token's text (which `tokenizers` would cut out before pre-tokenizing) are encoded
by `encode_batch` itself.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

try:
    import numba as _numba
except ImportError:  # pragma: no cover - numba is a dependency; without it callers use encode_batch
    _numba = None

#: Oniguruma's ``\s`` with UTF-8: the Unicode White_Space property (25 code points).
WHITE_SPACE = (list(range(0x09, 0x0E)) + [0x20, 0x85, 0xA0, 0x1680] + list(range(0x2000, 0x200B))
               + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000])

MAX_CODE_POINT = 0x110000

# rule kinds of the compiled program
ISOLATE_CHAR = 0      # [C]      every matching character alone
ISOLATE_RUN = 1       # [C]+     every maximal run
ISOLATE_SPACE_RUN = 2  # \s?[C]+  a run with one optional whitespace before it
TRAILING_SPACE = 3    # \s+$     whitespace before the end or before a line feed

WS_BIT = 1 << 7       # class bit of \s (classes of rules use bits 0..6)

_ESCAPES = {"r": "\r", "n": "\n", "t": "\t", "f": "\f", "v": "\v", "\\": "\\", "-": "-", "]": "]", "[": "[",
            "^": "^", ".": ".", "/": "/", "$": "$", "+": "+", "?": "?", "*": "*", "(": "(", ")": ")",
            "{": "{", "}": "}", "|": "|"}


class UnsupportedPreTokenizer(ValueError):
    """The tokenizer's pre-tokenizer has a rule this module does not compile."""


def parse_bracket_class(body: str) -> list[tuple[int, int]]:
    """Code-point ranges (inclusive) of the inside of an Oniguruma bracket expression made of
    literal characters, ``a-b`` ranges and simple escapes. Anything else (negation, nested
    classes, ``\\p{..}``, ``&&``, POSIX classes) raises `UnsupportedPreTokenizer`."""
    if not body or body[0] == "^":
        raise UnsupportedPreTokenizer(f"bracket class {body!r}: negated or empty")
    chars: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            if i + 1 >= len(body) or body[i + 1] not in _ESCAPES:
                raise UnsupportedPreTokenizer(f"bracket class escape {body[i:i + 2]!r}")
            chars.append(_ESCAPES[body[i + 1]])
            chars.append("\0lit")  # marks the previous character as escaped (never a range dash)
            i += 2
            continue
        if c in "[&":
            raise UnsupportedPreTokenizer(f"bracket class {body!r}: nested class or intersection")
        chars.append(c)
        i += 1
    # fold escape markers: list of (char, escaped)
    items: list[tuple[str, bool]] = []
    for c in chars:
        if c == "\0lit":
            items[-1] = (items[-1][0], True)
        else:
            items.append((c, False))
    ranges: list[tuple[int, int]] = []
    j = 0
    while j < len(items):
        c, _ = items[j]
        if j + 2 < len(items) and items[j + 1] == ("-", False):
            lo, hi = ord(c), ord(items[j + 2][0])
            if hi < lo:
                raise UnsupportedPreTokenizer(f"bracket class range {c!r}-{items[j + 2][0]!r} is empty")
            ranges.append((lo, hi))
            j += 3
        else:
            ranges.append((ord(c), ord(c)))
            j += 1
    return ranges


_RULE = re.compile(r"^(?P<space>\\s\?)?\[(?P<body>.*)\](?P<plus>\+)?$", re.S)


def parse_split_pattern(pattern: str) -> tuple[int, list[tuple[int, int]]]:
    """(rule kind, class ranges) of one `Split` regex; `UnsupportedPreTokenizer` otherwise."""
    if pattern == "\\s+$":
        return TRAILING_SPACE, []
    m = _RULE.match(pattern)
    if not m:
        raise UnsupportedPreTokenizer(f"split pattern {pattern!r}")
    ranges = parse_bracket_class(m.group("body"))
    if m.group("space"):
        if not m.group("plus"):
            raise UnsupportedPreTokenizer(f"split pattern {pattern!r}: \\s? before a single character")
        return ISOLATE_SPACE_RUN, ranges
    return (ISOLATE_RUN if m.group("plus") else ISOLATE_CHAR), ranges


@functools.lru_cache(maxsize=1)
def numeric_code_points() -> np.ndarray:
    """Code points `Digits(individual_digits=True)` isolates (Rust's `char::is_numeric`: general
    category Nd, Nl or No in the Unicode version `tokenizers` was built with, which is newer than
    Python's `unicodedata`: 1,924 against 1,791 code points here). Asked of `tokenizers` itself,
    once per process (0.36 CPU s, `bench/pack_startup.py`): every code point in one string; a piece of one character is a
    digit or a one-character gap between two digits, told apart by a second pass over those
    candidates with a letter between each."""
    from tokenizers import pre_tokenizers

    digits = pre_tokenizers.Digits(individual_digits=True)
    probe = "".join(chr(c) for c in range(1, MAX_CODE_POINT) if not 0xD800 <= c < 0xE000)
    candidates = [p for i in range(0, len(probe), 4096)  # chunks: one huge string is slower (superlinear)
                  for p, (a, b) in digits.pre_tokenize_str(probe[i:i + 4096]) if b - a == 1]
    second = digits.pre_tokenize_str("a" + "a".join(candidates) + "a")
    return np.array(sorted(ord(p) for p, _ in second if len(p) == 1 and p != "a"), dtype=np.int64)


@dataclass(frozen=True)
class PreTokenizerProgram:
    """The compiled rules: `kinds[r]` applies with class bit `1 << r` of `classes[cp]`."""

    kinds: np.ndarray     # int64[R]
    classes: np.ndarray   # uint8[0x110000]: bit r = member of rule r's class; WS_BIT = \s


def compile_pre_tokenizer(tokenizer_json: dict[str, Any]) -> PreTokenizerProgram:
    """The program of a `tokenizer.json`'s normalizer + pre-tokenizer, or `UnsupportedPreTokenizer`."""
    norm = tokenizer_json.get("normalizer")
    if norm is not None and not (norm.get("type") == "Sequence" and not norm.get("normalizers")):
        raise UnsupportedPreTokenizer(f"normalizer {norm.get('type')}")
    model = tokenizer_json.get("model") or {}
    if model.get("type") != "BPE" or model.get("dropout") not in (None, 0.0):
        raise UnsupportedPreTokenizer("model is not a BPE without dropout")
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    if not steps or steps[-1] != {**steps[-1], "type": "ByteLevel", "add_prefix_space": False, "use_regex": False}:
        raise UnsupportedPreTokenizer("pre-tokenizer does not end in ByteLevel(add_prefix_space=False, use_regex=False)")
    classes = np.zeros(MAX_CODE_POINT, dtype=np.uint8)
    classes[WHITE_SPACE] |= WS_BIT
    kinds: list[int] = []
    for step in steps[:-1]:
        bit = 1 << len(kinds)
        if len(kinds) >= 7:
            raise UnsupportedPreTokenizer("more than 7 split rules")
        if step.get("type") == "Digits" and step.get("individual_digits"):
            classes[numeric_code_points()] |= bit
            kinds.append(ISOLATE_CHAR)
            continue
        pat = (step.get("pattern") or {}).get("Regex")
        if step.get("type") != "Split" or step.get("behavior") != "Isolated" or step.get("invert") or pat is None:
            raise UnsupportedPreTokenizer(f"pre-tokenizer step {step.get('type')} {step.get('behavior')}")
        kind, ranges = parse_split_pattern(pat)
        for lo, hi in ranges:
            classes[lo:hi + 1] |= bit
        kinds.append(kind)
    return PreTokenizerProgram(np.array(kinds, dtype=np.int64), classes)


# ---- numba kernels ------------------------------------------------------------------------------

def _kernels():  # compiled on first use (cached on disk by numba)
    njit = _numba.njit(cache=True, nogil=True)

    @njit
    def decode_utf8(buf, a, b, cps, byte_pos):
        """Code points of buf[a:b] into cps, each one's byte offset into byte_pos (+ the end)."""
        n = 0
        i = a
        while i < b:
            c = buf[i]
            if c < 0x80:
                cp = c
                w = 1
            elif c < 0xE0:
                cp = ((c & 0x1F) << 6) | (buf[i + 1] & 0x3F)
                w = 2
            elif c < 0xF0:
                cp = ((c & 0x0F) << 12) | ((buf[i + 1] & 0x3F) << 6) | (buf[i + 2] & 0x3F)
                w = 3
            else:
                cp = ((c & 0x07) << 18) | ((buf[i + 1] & 0x3F) << 12) | ((buf[i + 2] & 0x3F) << 6) | (buf[i + 3] & 0x3F)
                w = 4
            cps[n] = cp
            byte_pos[n] = i
            n += 1
            i += w
        byte_pos[n] = b
        return n

    @njit
    def apply_rule(kind, bit, cls, cps, src, nsrc, dst):
        """Split every piece [src[2k], src[2k+1]) by one Isolated rule into dst; returns count."""
        m = 0
        for k in range(nsrc):
            s = src[2 * k]
            e = src[2 * k + 1]
            g = s  # start of the pending gap
            i = s
            while i < e:
                ms = -1
                me = -1
                if kind == 0:
                    if cls[i] & bit:
                        ms = i
                        me = i + 1
                elif kind == 1:
                    if cls[i] & bit:
                        ms = i
                        me = i + 1
                        while me < e and (cls[me] & bit):
                            me += 1
                elif kind == 2:
                    if (cls[i] & 128) and i + 1 < e and (cls[i + 1] & bit):
                        ms = i
                        me = i + 2
                        while me < e and (cls[me] & bit):
                            me += 1
                    elif cls[i] & bit:
                        ms = i
                        me = i + 1
                        while me < e and (cls[me] & bit):
                            me += 1
                else:  # \s+$ : greedy whitespace ending at the piece's end or before a line feed
                    if cls[i] & 128:
                        j = i + 1
                        while j < e and (cls[j] & 128):
                            j += 1
                        if j == e:
                            ms = i
                            me = e
                        else:
                            k2 = j - 1
                            while k2 > i and cps[k2] != 10:
                                k2 -= 1
                            if k2 > i:
                                ms = i
                                me = k2
                            else:
                                i = j  # no position inside this whitespace run can match
                                continue
                if ms < 0:
                    i += 1
                    continue
                if ms > g:
                    dst[2 * m] = g
                    dst[2 * m + 1] = ms
                    m += 1
                dst[2 * m] = ms
                dst[2 * m + 1] = me
                m += 1
                g = me
                i = me
            if e > g:
                dst[2 * m] = g
                dst[2 * m + 1] = e
                m += 1
        return m

    @njit
    def fnv1a(buf, a, b):
        h = np.uint64(0xCBF29CE484222325)
        for i in range(a, b):
            h = (h ^ np.uint64(buf[i])) * np.uint64(0x100000001B3)
        return h

    @njit
    def find_or_add(buf, a, b, h, t_hash, t_key, t_len, t_tok, keys, nkeys):
        """Slot of piece buf[a:b] in the open-addressing table, added (pending: t_tok = -1) when
        new. nkeys[0]: bytes used in `keys`. Returns (slot, added)."""
        mask = t_hash.size - 1
        slot = np.int64(h & np.uint64(mask))
        ln = b - a
        while True:
            if t_len[slot] < 0:  # empty
                t_hash[slot] = h
                t_len[slot] = ln
                t_key[slot] = nkeys[0]
                t_tok[slot] = -1
                keys[nkeys[0]:nkeys[0] + ln] = buf[a:b]
                nkeys[0] += ln
                return slot, True
            if t_hash[slot] == h and t_len[slot] == ln:
                off = t_key[slot]
                same = True
                for q in range(ln):
                    if keys[off + q] != buf[a + q]:
                        same = False
                        break
                if same:
                    return slot, False
            slot = (slot + 1) & mask

    @njit
    def pre_tokenize_lookup(buf, doc_off, docs, kinds, classes, t_hash, t_key, t_len, t_tok, keys, nkeys,
                            piece_slot, doc_pieces, new_slots, max_chars):
        """Pre-tokenize documents `docs` (indices into doc_off) and look every piece up: slots of
        pieces in order into piece_slot, per-document piece counts into doc_pieces, slots added
        by this call into new_slots. Returns (pieces, new)."""
        cps = np.empty(max_chars, np.int64)
        pos = np.empty(max_chars + 1, np.int64)
        cls = np.empty(max_chars, np.uint8)
        a_buf = np.empty(2 * max_chars + 2, np.int64)
        b_buf = np.empty(2 * max_chars + 2, np.int64)
        npieces = 0
        nnew = 0
        for di in range(docs.size):
            d = docs[di]
            n = decode_utf8(buf, doc_off[d], doc_off[d + 1], cps, pos)
            for i in range(n):
                cls[i] = classes[cps[i]]
            if n == 0:
                doc_pieces[di] = 0
                continue
            a_buf[0] = 0
            a_buf[1] = n
            cnt = 1
            src = a_buf
            dst = b_buf
            for r in range(kinds.size):
                cnt = apply_rule(kinds[r], 1 << r, cls, cps, src, cnt, dst)
                src, dst = dst, src
            for k in range(cnt):
                a = pos[src[2 * k]]
                b = pos[src[2 * k + 1]]
                h = fnv1a(buf, a, b)
                slot, added = find_or_add(buf, a, b, h, t_hash, t_key, t_len, t_tok, keys, nkeys)
                piece_slot[npieces] = slot
                npieces += 1
                if added:
                    new_slots[nnew] = slot
                    nnew += 1
            doc_pieces[di] = cnt
        return npieces, nnew

    @njit
    def store_tokens(new_slots, ids, lens, t_tok, t_ntok, toks, ntoks):
        """Token ids of the new pieces (flat ids, per-piece lens) into the token arena."""
        p = 0
        for k in range(new_slots.size):
            s = new_slots[k]
            t_tok[s] = ntoks[0]
            t_ntok[s] = lens[k]
            toks[ntoks[0]:ntoks[0] + lens[k]] = ids[p:p + lens[k]]
            ntoks[0] += lens[k]
            p += lens[k]

    @njit
    def emit(piece_slot, npieces, t_tok, t_ntok, toks, out):
        """Concatenate the pieces' ids."""
        m = 0
        for k in range(npieces):
            s = piece_slot[k]
            o = t_tok[s]
            ln = t_ntok[s]
            out[m:m + ln] = toks[o:o + ln]
            m += ln
        return m

    @njit
    def count_tokens(piece_slot, npieces, t_ntok):
        m = 0
        for k in range(npieces):
            m += t_ntok[piece_slot[k]]
        return m

    return pre_tokenize_lookup, store_tokens, emit, count_tokens


_KERNELS: Any = None


def kernels() -> Any:
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _kernels()
    return _KERNELS


class PieceCacheEncoder:
    """`encode_batch(texts)` → per text, its token ids as `Tokenizer.encode_batch(texts,
    add_special_tokens=False)` gives them, through the compiled pre-tokenizer and the piece
    cache. The encoder borrows `tok`: while it computes new pieces' ids, `tok`'s pre-tokenizer is
    swapped for the final `ByteLevel` step alone (restored after; one thread per encoder, as in a
    Ray actor). The cache holds at most `max_pieces` distinct pieces (cleared when full, so an actor's
    memory stays bounded: a 2^21-slot table of 40 bytes a slot, ~80 MB, plus the pieces' bytes
    and ids). Texts longer than `CHUNK_BYTES` go to `encode_batch` whole (rare; exact either way)."""

    #: texts are pre-tokenized in chunks of about this many UTF-8 bytes
    CHUNK_BYTES = 1 << 18

    def __init__(self, tok: Any, tokenizer_json: dict[str, Any], program: PreTokenizerProgram, max_pieces: int = 1 << 19):
        from tokenizers import pre_tokenizers

        self.tok = tok
        self.program = program
        # The pieces' BPE comes from `tok` itself with its pre-tokenizer swapped for the final
        # ByteLevel step alone (no second 100k-entry tokenizer to load: ~0.2 s per actor).
        self._full_pre = tok.pre_tokenizer
        self._model_pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        specials = [t["content"] for t in tokenizer_json.get("added_tokens", []) if t.get("content")]
        self._added = "|".join(re.escape(s) for s in specials) or None
        self.max_pieces = max_pieces
        self.t_hash = None
        self._clear()

    @classmethod
    def for_tokenizer(cls, tok: Any, tokenizer_json: dict[str, Any] | str) -> "PieceCacheEncoder | None":
        """The encoder for this tokenizer, or None when its pipeline does not compile."""
        if _numba is None:
            return None
        if isinstance(tokenizer_json, str):
            tokenizer_json = json.loads(tokenizer_json)
        try:
            program = compile_pre_tokenizer(tokenizer_json)
        except UnsupportedPreTokenizer:
            return None
        return cls(tok, tokenizer_json, program)

    # --- the cache ------------------------------------------------------------------------------
    def _clear(self) -> None:
        """Empty the cache (table arrays allocated once: load factor stays <= 1/2)."""
        cap = 1 << int(2 * (self.max_pieces + self.CHUNK_BYTES) - 1).bit_length()
        if getattr(self, "t_hash", None) is None or self.t_hash.size != cap:
            self.t_hash = np.zeros(cap, np.uint64)
            self.t_key = np.zeros(cap, np.int64)
            self.t_len = np.empty(cap, np.int64)
            self.t_tok = np.zeros(cap, np.int64)
            self.t_ntok = np.zeros(cap, np.int64)
            self.keys = np.empty(1 << 20, np.uint8)
            self.toks = np.empty(1 << 18, np.int32)
        self.t_len.fill(-1)
        self.nkeys = np.zeros(1, np.int64)
        self.ntoks = np.zeros(1, np.int64)
        self.pieces = 0

    def _reserve(self, nbytes: int) -> None:
        """Room for the pieces of `nbytes` more bytes of text (at most one piece, one key byte
        and one id per byte)."""
        if self.pieces + nbytes > self.max_pieces:
            self._clear()
        for name, used in (("keys", self.nkeys), ("toks", self.ntoks)):
            arena = getattr(self, name)
            need = int(used[0]) + nbytes
            if need > arena.size:
                grown = np.empty(max(need, 2 * arena.size), arena.dtype)
                grown[:used[0]] = arena[:used[0]]
                setattr(self, name, grown)

    # --- encoding -------------------------------------------------------------------------------
    def encode_arrow(self, texts: Any) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of a pyarrow string array (nulls as empty): (flat int32 ids, int64 counts)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        arr = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
        arr = arr.fill_null("").cast(pa.large_string())
        try:  # the kernel decodes UTF-8 without checks: refuse invalid bytes first
            arr.validate(full=True)
        except pa.ArrowInvalid as exc:
            raise ValueError(f"texts are not valid UTF-8: {exc}") from None
        n = len(arr)
        counts = np.zeros(n, np.int64)
        if n == 0:
            return np.zeros(0, np.int32), counts
        bufs = arr.buffers()
        off = np.frombuffer(bufs[1], dtype=np.int64, count=n + 1, offset=arr.offset * 8)
        data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
        slow = (off[1:] - off[:-1]) > self.CHUNK_BYTES
        if self._added is not None:
            slow |= np.asarray(pc.match_substring_regex(arr, self._added).to_numpy(zero_copy_only=False), bool)
        out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (doc indices, counts, ids)
        fast_docs = np.flatnonzero(~slow)
        sizes = off[fast_docs + 1] - off[fast_docs]
        a = 0
        while a < fast_docs.size:  # chunks of whole documents of about CHUNK_BYTES
            b = a + 1 + int(np.searchsorted(np.cumsum(sizes[a + 1:]), self.CHUNK_BYTES - sizes[a], side="right"))
            b = min(max(b, a + 1), fast_docs.size)
            docs = fast_docs[a:b]
            ids, cnt = self._encode_docs(data, off, docs, int(sizes[a:b].sum()), int(sizes[a:b].max()))
            out.append((docs, cnt, ids))
            a = b
        if slow.any():
            idx = np.flatnonzero(slow)
            encode_full = getattr(self.tok, "encode_batch_fast", self.tok.encode_batch)
            encs = encode_full([arr[int(i)].as_py() for i in idx], add_special_tokens=False)
            lens = np.array([len(e.ids) for e in encs], np.int64)
            ids = np.fromiter((t for e in encs for t in e.ids), np.int32, count=int(lens.sum()))
            out.append((idx, lens, ids))
        for docs, cnt, _ in out:
            counts[docs] = cnt
        starts = np.concatenate([[0], np.cumsum(counts)])
        flat = np.empty(int(starts[-1]), np.int32)
        for docs, cnt, ids in out:
            src = np.concatenate([[0], np.cumsum(cnt)])
            if docs.size and np.all(np.diff(docs) == 1):  # contiguous run: one copy
                flat[starts[docs[0]]:starts[docs[-1] + 1]] = ids
            else:
                for j, d in enumerate(docs):
                    flat[starts[d]:starts[d + 1]] = ids[src[j]:src[j + 1]]
        return flat, counts

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per text, its ids (int32)."""
        import pyarrow as pa

        flat, counts = self.encode_arrow(pa.array(list(texts), pa.large_string()))
        return np.split(flat, np.cumsum(counts)[:-1]) if len(counts) else []

    def _encode_new_pieces(self, new: np.ndarray, key_start: int) -> None:
        """BPE ids of the pieces added by the last lookup, by the tokenizer's own model: one
        `encode(pieces, is_pretokenized=True)` call (each piece one pre-token, `word_ids` telling
        the pieces' tokens apart). The new pieces' bytes are contiguous in the key arena, in the
        order of `new`, so they are decoded as one string and cut by character counts."""
        _, store_tokens, _, _ = kernels()
        raw = self.keys[key_start:int(self.nkeys[0])]
        text = raw.tobytes().decode("utf-8")
        # characters per piece = its bytes that are not UTF-8 continuation bytes
        starts = np.cumsum(self.t_len[new]) - self.t_len[new]
        lead = np.concatenate([[0], np.cumsum((raw & 0xC0) != 0x80)])
        cuts = lead[np.concatenate([starts, [raw.size]])].tolist()
        words = [text[cuts[i]:cuts[i + 1]] for i in range(new.size)]
        self.tok.pre_tokenizer = self._model_pre
        try:
            enc = self.tok.encode(words, is_pretokenized=True, add_special_tokens=False)
        finally:
            self.tok.pre_tokenizer = self._full_pre
        ids = np.array(enc.ids, dtype=np.int32)
        word_ids = np.array(enc.word_ids, dtype=np.int64)
        lens = np.bincount(word_ids, minlength=new.size).astype(np.int64)
        if lens.size != new.size or np.any(lens == 0):
            raise RuntimeError("piece cache: the model returned no ids for a piece")  # never for byte-level BPE
        store_tokens(new, ids, lens, self.t_tok, self.t_ntok, self.toks, self.ntoks)

    def _encode_docs(self, data: np.ndarray, off: np.ndarray, docs: np.ndarray, nbytes: int, max_doc: int
                     ) -> tuple[np.ndarray, np.ndarray]:
        pre_tokenize_lookup, store_tokens, emit, count_tokens = kernels()
        self._reserve(nbytes)
        key_start = int(self.nkeys[0])
        piece_slot = np.empty(nbytes, np.int64)
        doc_pieces = np.empty(docs.size, np.int64)
        new_slots = np.empty(nbytes, np.int64)
        npieces, nnew = pre_tokenize_lookup(data, off, docs.astype(np.int64), self.program.kinds, self.program.classes,
                                            self.t_hash, self.t_key, self.t_len, self.t_tok, self.keys, self.nkeys,
                                            piece_slot, doc_pieces, new_slots, max_doc)
        self.pieces += nnew
        if nnew:
            self._encode_new_pieces(new_slots[:nnew], key_start)
        total = count_tokens(piece_slot, npieces, self.t_ntok)
        out = np.empty(total, np.int32)
        emit(piece_slot, npieces, self.t_tok, self.t_ntok, self.toks, out)
        bounds = np.concatenate([[0], np.cumsum(doc_pieces)])
        per_piece = self.t_ntok[piece_slot[:npieces]]
        csum = np.concatenate([[0], np.cumsum(per_piece)])
        return out, csum[bounds[1:]] - csum[bounds[:-1]]
