"""Packing documents into training windows, and the winnow pack index that records it.

A window holds `seq_len + 1` tokens: the model reads the first `seq_len` as input and the last
`seq_len` as labels. Documents stay whole in the Megatron `.bin` (one sequence per document);
the pack index says which document pieces make each window, so the same `.bin` serves
Megatron's own loader and winnow's reader.

- `concat`: documents joined in order and cut into consecutive windows (GPT-style); the last
  window is padded. Nearly no padding, but most documents straddle a window boundary.
- `bestfit`: best-fit decreasing (Ding et al. 2024, "Fewer Truncations Improve Language
  Modeling"; OLMo-core's packed dataset): a document longer than a window is cut into
  window-sized chunks, each of which fills a window alone; the remainders (and every shorter
  document) go, longest first, into the open window with the least room that still fits them,
  or into a new window. Only documents longer than a window are split.

Both are deterministic functions of the document lengths (ties broken by document index).

Pack index file (`.pidx`, little-endian)::

    b"WNPIDX\\x00\\x00"  u64 version=1  u64 seq_len  u8 packing (1 concat, 2 bestfit)
    32 bytes sha256 of the `.idx` it indexes
    u64 windows  u64 pieces  u64 documents
    i64 window_ptr[windows + 1]   pieces of window w: window_ptr[w] .. window_ptr[w+1]
    i64 piece_doc[pieces]  i64 piece_start[pieces]  i32 piece_len[pieces]
"""

from __future__ import annotations

import bisect
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .indexed import CorruptPackError

PACKINGS = {"concat": 1, "bestfit": 2}
PACK_INDEX_MAGIC = b"WNPIDX\x00\x00"
PACK_INDEX_VERSION = 1
_HEAD = struct.Struct("<8sQQB32sQQQ")


@dataclass(frozen=True)
class PackIndex:
    """Windows as lists of (document, start token, length) pieces."""

    seq_len: int
    packing: str
    window_ptr: np.ndarray   # int64 [windows + 1]
    piece_doc: np.ndarray    # int64 [pieces]
    piece_start: np.ndarray  # int64 [pieces]
    piece_len: np.ndarray    # int32 [pieces]
    idx_sha256: str = ""     # hex sha256 of the .idx these documents live in
    num_docs: int = 0

    @property
    def num_windows(self) -> int:
        return int(self.window_ptr.size - 1)

    @property
    def window_tokens(self) -> np.ndarray:
        """Real (unpadded) tokens per window."""
        sums = np.add.reduceat(self.piece_len.astype(np.int64), self.window_ptr[:-1]) if self.piece_len.size else np.zeros(0, np.int64)
        empty = self.window_ptr[1:] == self.window_ptr[:-1]
        sums[empty] = 0
        return sums

    def pieces(self, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b = int(self.window_ptr[w]), int(self.window_ptr[w + 1])
        return self.piece_doc[a:b], self.piece_start[a:b], self.piece_len[a:b]

    def max_pieces(self) -> int:
        return int(np.diff(self.window_ptr).max()) if self.num_windows else 0


def pack(doc_lengths: np.ndarray, seq_len: int, packing: str) -> PackIndex:
    """Assign documents (by token count) to windows of `seq_len + 1` tokens."""
    if packing not in PACKINGS:
        raise ValueError(f"packing must be one of {sorted(PACKINGS)}, not {packing!r}")
    if seq_len < 1:
        raise ValueError("seq_len must be >= 1")
    lengths = np.asarray(doc_lengths, dtype=np.int64)
    if lengths.size and lengths.min() < 0:
        raise ValueError("negative document length")
    fn = concat_windows if packing == "concat" else bestfit_windows
    ptr, doc, start, length = fn(lengths, seq_len)
    return PackIndex(seq_len, packing, ptr, doc, start, length.astype(np.int32), num_docs=int(lengths.size))


def concat_windows(lengths: np.ndarray, seq_len: int) -> tuple[np.ndarray, ...]:
    """Consecutive windows of `seq_len + 1` tokens over the joined documents."""
    cap = seq_len + 1
    cum = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    total = int(cum[-1])
    n_win = -(-total // cap)
    a = np.arange(n_win, dtype=np.int64) * cap
    b = np.minimum(a + cap, total)
    d0 = np.searchsorted(cum, a, side="right") - 1
    d1 = np.searchsorted(cum, b - 1, side="right") - 1
    counts = d1 - d0 + 1
    win = np.repeat(np.arange(n_win, dtype=np.int64), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    doc = np.repeat(d0, counts) + (np.arange(win.size, dtype=np.int64) - first)
    s = np.maximum(a[win], cum[doc])
    e = np.minimum(b[win], cum[doc + 1])
    keep = e > s  # drop empty documents caught inside a window
    win, doc, s, e = win[keep], doc[keep], s[keep], e[keep]
    ptr = np.zeros(n_win + 1, dtype=np.int64)
    np.cumsum(np.bincount(win, minlength=n_win), out=ptr[1:])
    return ptr, doc, s - cum[doc], e - s


def bestfit_windows(lengths: np.ndarray, seq_len: int) -> tuple[np.ndarray, ...]:
    """Best-fit decreasing into windows of `seq_len + 1` tokens; long documents are cut first."""
    cap = seq_len + 1
    full = lengths // cap
    rem = lengths % cap
    # Whole-window chunks of long documents, in document order.
    full_doc = np.repeat(np.arange(lengths.size, dtype=np.int64), full)
    full_first = np.repeat(np.cumsum(full) - full, full)
    full_start = (np.arange(full_doc.size, dtype=np.int64) - full_first) * cap
    # Remainders, longest first, ties by document index.
    cand = np.nonzero(rem > 0)[0]
    order = cand[np.lexsort((cand, -rem[cand]))]
    win_of_piece = np.empty(order.size, dtype=np.int64)
    room_of_window: list[int] = []
    buckets: dict[int, list[int]] = {}   # room left -> open windows with that room (stack)
    avail: list[int] = []                # sorted distinct rooms that have an open window
    rem_l = rem.tolist()
    for i, d in enumerate(order.tolist()):
        need = rem_l[d]
        j = bisect.bisect_left(avail, need)
        if j < len(avail):
            room = avail[j]
            stack = buckets[room]
            w = stack.pop()
            if not stack:
                del buckets[room]
                avail.pop(j)
        else:
            w = len(room_of_window)
            room_of_window.append(cap)
            room = cap
        left = room - need
        room_of_window[w] = left
        if left > 0:
            if left not in buckets:
                buckets[left] = []
                bisect.insort(avail, left)
            buckets[left].append(w)
        win_of_piece[i] = w
    n_full = full_doc.size
    n_bfd = len(room_of_window)
    # Window ids: full chunks first, then best-fit windows in creation order; pieces within a
    # window in placement order (stable sort keeps it).
    win = np.concatenate([np.arange(n_full, dtype=np.int64), win_of_piece + n_full])
    doc = np.concatenate([full_doc, order.astype(np.int64)])
    start = np.concatenate([full_start, full[order] * cap])
    length = np.concatenate([np.full(n_full, cap, dtype=np.int64), rem[order]])
    o = np.argsort(win, kind="stable")
    win, doc, start, length = win[o], doc[o], start[o], length[o]
    ptr = np.zeros(n_full + n_bfd + 1, dtype=np.int64)
    np.cumsum(np.bincount(win, minlength=n_full + n_bfd), out=ptr[1:])
    return ptr, doc, start, length


def packing_stats(index: PackIndex, doc_lengths: np.ndarray) -> dict[str, float | int]:
    """Windows, tokens, padding, and how many documents were split across windows."""
    cap = index.seq_len + 1
    tokens = int(np.asarray(doc_lengths, dtype=np.int64).sum())
    in_windows = int(index.piece_len.sum(dtype=np.int64))
    pieces_per_doc = np.bincount(index.piece_doc, minlength=index.num_docs) if index.piece_doc.size else np.zeros(index.num_docs, np.int64)
    docs = int(np.count_nonzero(np.asarray(doc_lengths) > 0))
    split = int(np.count_nonzero(pieces_per_doc > 1))
    slots = index.num_windows * cap
    return {"windows": index.num_windows, "tokens": tokens, "tokens_in_windows": in_windows,
            "pad_tokens": slots - in_windows, "docs": docs, "docs_split": split,
            "padding_share": (slots - in_windows) / slots if slots else 0.0,
            "split_share": split / docs if docs else 0.0,
            "tokens_kept_share": in_windows / tokens if tokens else 1.0}


def pack_index_bytes(index: PackIndex) -> bytes:
    sha = bytes.fromhex(index.idx_sha256) if index.idx_sha256 else b"\x00" * 32
    head = _HEAD.pack(PACK_INDEX_MAGIC, PACK_INDEX_VERSION, index.seq_len, PACKINGS[index.packing], sha,
                      index.num_windows, int(index.piece_doc.size), index.num_docs)
    return b"".join([head, index.window_ptr.astype("<i8").tobytes(), index.piece_doc.astype("<i8").tobytes(),
                     index.piece_start.astype("<i8").tobytes(), index.piece_len.astype("<i4").tobytes()])


def read_pack_index(path: str | os.PathLike[str]) -> PackIndex:
    """Read and check a `.pidx` file (sizes, pointer order, piece bounds within the header's counts)."""
    path = Path(path)
    if not path.is_file():
        raise CorruptPackError(f"{path}: missing pack index")
    raw = path.read_bytes()
    if len(raw) < _HEAD.size or raw[:8] != PACK_INDEX_MAGIC:
        raise CorruptPackError(f"{path}: not a winnow pack index")
    magic, version, seq_len, code, sha, n_win, n_pc, n_doc = _HEAD.unpack_from(raw)
    if version != PACK_INDEX_VERSION or code not in PACKINGS.values():
        raise CorruptPackError(f"{path}: pack index version {version} / packing code {code} unknown")
    expected = _HEAD.size + 8 * (n_win + 1) + 8 * n_pc * 2 + 4 * n_pc
    if len(raw) != expected:
        raise CorruptPackError(f"{path}: {len(raw)} bytes, header describes {expected} (truncated?)")
    off = _HEAD.size
    ptr = np.frombuffer(raw, "<i8", n_win + 1, off); off += 8 * (n_win + 1)
    doc = np.frombuffer(raw, "<i8", n_pc, off); off += 8 * n_pc
    start = np.frombuffer(raw, "<i8", n_pc, off); off += 8 * n_pc
    length = np.frombuffer(raw, "<i4", n_pc, off)
    if ptr[0] != 0 or ptr[-1] != n_pc or np.any(np.diff(ptr) < 0):
        raise CorruptPackError(f"{path}: window pointers out of order")
    if n_pc and (doc.min() < 0 or doc.max() >= n_doc or start.min() < 0 or length.min() <= 0):
        raise CorruptPackError(f"{path}: piece outside the documents")
    packing = {v: k for k, v in PACKINGS.items()}[code]
    return PackIndex(int(seq_len), packing, ptr.astype(np.int64), doc.astype(np.int64), start.astype(np.int64),
                     length.astype(np.int32), sha.hex(), int(n_doc))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
