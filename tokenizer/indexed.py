"""Megatron's `MMIDIDX` indexed dataset: the `.bin` token file and its `.idx` index, numpy only.

Layout (megatron-core `indexed_dataset.py`, `_IndexWriter`/`_IndexReader`; all little-endian):

    .idx  b"MMIDIDX\\x00\\x00"        9 bytes, fixed header
          u64 version = 1
          u8  dtype code             4 = int32, 8 = uint16 (Megatron's `DType`)
          u64 sequence_count         one sequence per document here
          u64 document_count         = documents + 1 (the document index array starts at 0)
          i32 sequence_lengths[sequence_count]
          i64 sequence_pointers[sequence_count]   byte offset of each sequence in .bin
          i64 document_indices[document_count]    sequence index where each document ends
    .bin  the token ids of every sequence back to back, in the index's dtype

The writer produces the same bytes as megatron-core's `IndexedDatasetBuilder` for the same
documents (tests/test_pack_megatron.py checks it against the real package), without importing
torch. The reader validates everything a truncated or mismatched file would break (header,
version, dtype, sizes, pointers) and raises `CorruptPackError` naming the file, instead of
returning garbage tokens.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO, Iterable

import numpy as np

INDEX_HEADER = b"MMIDIDX\x00\x00"
INDEX_VERSION = 1
#: Megatron's DType enum: numeric code <-> numpy dtype.
DTYPE_CODES: dict[int, type[np.number]] = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32,
                                           5: np.int64, 6: np.float64, 7: np.float32, 8: np.uint16}
CODE_OF_DTYPE = {np.dtype(v).name: k for k, v in DTYPE_CODES.items()}
_FIXED = len(INDEX_HEADER) + 8 + 1 + 8 + 8  # 34 bytes before the arrays


class CorruptPackError(ValueError):
    """A `.bin`/`.idx` pair (or winnow pack index) that is truncated, mismatched or not ours."""


def optimal_dtype(vocab_size: int) -> type[np.number]:
    """Megatron's rule: uint16 below 65,500 entries, int32 otherwise."""
    return np.uint16 if vocab_size < 65500 else np.int32


def dtype_code(dtype: type[np.number] | np.dtype | str) -> int:
    name = np.dtype(dtype).name
    if name not in CODE_OF_DTYPE:
        raise ValueError(f"dtype {name} has no MMIDIDX code")
    return CODE_OF_DTYPE[name]


def check_vocab_fits(vocab_size: int, dtype: type[np.number] | np.dtype | str) -> None:
    """Token ids are < vocab_size; refuse a dtype that cannot hold them all."""
    info = np.iinfo(np.dtype(dtype))
    if vocab_size - 1 > info.max:
        raise ValueError(f"vocab size {vocab_size} does not fit dtype {np.dtype(dtype).name} (max id {info.max})")


def index_bytes(sequence_lengths: np.ndarray, document_indices: np.ndarray, dtype: type[np.number] | np.dtype) -> bytes:
    """The whole `.idx` file for these sequence lengths and document indices."""
    lengths = np.asarray(sequence_lengths, dtype=np.int64)
    if lengths.size and (lengths.min() < 0 or lengths.max() > np.iinfo(np.int32).max):
        raise ValueError("sequence length out of int32 range")
    itemsize = np.dtype(dtype).itemsize
    pointers = np.zeros(lengths.size, dtype=np.int64)
    if lengths.size > 1:
        np.cumsum(lengths[:-1] * itemsize, out=pointers[1:])
    doc_idx = np.asarray(document_indices, dtype=np.int64)
    return b"".join([
        INDEX_HEADER,
        struct.pack("<Q", INDEX_VERSION),
        struct.pack("<B", dtype_code(dtype)),
        struct.pack("<Q", lengths.size),
        struct.pack("<Q", doc_idx.size),
        lengths.astype("<i4").tobytes(order="C"),
        pointers.astype("<i8").tobytes(order="C"),
        doc_idx.astype("<i8").tobytes(order="C"),
    ])


class IndexedWriter:
    """Streams documents into an open `.bin` file object; `index()` gives the `.idx` bytes.

    One sequence per document (what `IndexedDatasetBuilder.add_document(tokens, [len(tokens)])`
    writes). The caller owns the files, so it can write them atomically.
    """

    def __init__(self, bin_file: BinaryIO, dtype: type[np.number] | np.dtype = np.int32):
        self.bin_file = bin_file
        self.dtype = np.dtype(dtype)
        self.lengths: list[int] = []
        self.max_id = np.iinfo(self.dtype).max

    def add_document(self, tokens: np.ndarray) -> None:
        tokens = np.asarray(tokens)
        if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) > self.max_id):
            raise ValueError(f"token id out of range for {self.dtype.name}")
        self.bin_file.write(tokens.astype(self.dtype.newbyteorder("<"), copy=False).tobytes(order="C"))
        self.lengths.append(int(tokens.size))

    def add_flat(self, flat: np.ndarray, lengths: np.ndarray) -> None:
        """Many documents at once: `flat` holds them back to back, `lengths` their sizes."""
        flat = np.asarray(flat)
        lengths = np.asarray(lengths, dtype=np.int64)
        if int(lengths.sum()) != flat.size:
            raise ValueError("lengths do not add up to the token count")
        if flat.size and (int(flat.min()) < 0 or int(flat.max()) > self.max_id):
            raise ValueError(f"token id out of range for {self.dtype.name}")
        self.bin_file.write(flat.astype(self.dtype.newbyteorder("<"), copy=False).tobytes(order="C"))
        self.lengths.extend(int(n) for n in lengths)

    def index(self) -> bytes:
        lengths = np.asarray(self.lengths, dtype=np.int64)
        return index_bytes(lengths, np.arange(lengths.size + 1, dtype=np.int64), self.dtype)


def write_indexed(bin_path: str | os.PathLike[str], idx_path: str | os.PathLike[str],
                  documents: Iterable[np.ndarray], dtype: type[np.number] | np.dtype = np.int32) -> int:
    """Write documents (token arrays) as a `.bin`/`.idx` pair; returns the document count."""
    with open(bin_path, "wb") as f:
        w = IndexedWriter(f, dtype)
        for doc in documents:
            w.add_document(doc)
    with open(idx_path, "wb") as f:
        f.write(w.index())
    return len(w.lengths)


class IndexedReader:
    """A read-only, memory-mapped `.bin`/`.idx` pair. `reader[i]` is document i's tokens.

    Every structural fact is checked when opening: header, version, dtype code, that the index
    arrays fit the `.idx` size exactly, that pointers follow from the lengths, and that the
    `.bin` holds exactly the tokens the index describes (a truncated `.bin` is refused).
    """

    def __init__(self, prefix_or_bin: str | os.PathLike[str], idx_path: str | os.PathLike[str] | None = None):
        p = str(prefix_or_bin)
        bin_path = p if p.endswith(".bin") else p + ".bin"
        idx_path = str(idx_path) if idx_path is not None else bin_path[:-4] + ".idx"
        self.bin_path, self.idx_path = bin_path, idx_path
        for path in (bin_path, idx_path):
            if not Path(path).is_file():
                raise CorruptPackError(f"{path}: missing")
        raw = np.memmap(idx_path, dtype=np.uint8, mode="r") if os.path.getsize(idx_path) else np.zeros(0, np.uint8)
        if raw.size < _FIXED or bytes(raw[:9]) != INDEX_HEADER:
            raise CorruptPackError(f"{idx_path}: not an MMIDIDX index (bad header)")
        version, = struct.unpack("<Q", bytes(raw[9:17]))
        if version != INDEX_VERSION:
            raise CorruptPackError(f"{idx_path}: index version {version}, expected {INDEX_VERSION}")
        code = int(raw[17])
        if code not in DTYPE_CODES:
            raise CorruptPackError(f"{idx_path}: unknown dtype code {code}")
        self.dtype = np.dtype(DTYPE_CODES[code])
        n_seq, n_doc = struct.unpack("<QQ", bytes(raw[18:34]))
        expected = _FIXED + 4 * n_seq + 8 * n_seq + 8 * n_doc
        if raw.size != expected:
            raise CorruptPackError(f"{idx_path}: {raw.size} bytes, the header describes {expected} "
                                   "(truncated or not an index of this layout)")
        buf = memoryview(raw)
        self._idx = raw
        self.sequence_lengths = np.frombuffer(buf, dtype="<i4", count=n_seq, offset=_FIXED)
        self.sequence_pointers = np.frombuffer(buf, dtype="<i8", count=n_seq, offset=_FIXED + 4 * n_seq)
        self.document_indices = np.frombuffer(buf, dtype="<i8", count=n_doc, offset=_FIXED + 12 * n_seq)
        itemsize = self.dtype.itemsize
        if n_seq:
            if self.sequence_lengths.min() < 0:
                raise CorruptPackError(f"{idx_path}: negative sequence length")
            starts = np.zeros(n_seq, dtype=np.int64)
            np.cumsum(self.sequence_lengths[:-1].astype(np.int64) * itemsize, out=starts[1:])
            if not np.array_equal(starts, self.sequence_pointers):
                raise CorruptPackError(f"{idx_path}: sequence pointers do not follow from the lengths")
        if n_doc == 0 or self.document_indices[0] != 0 or self.document_indices[-1] != n_seq \
                or np.any(np.diff(self.document_indices) < 0):
            raise CorruptPackError(f"{idx_path}: document indices are not 0..{n_seq} ascending")
        self.total_tokens = int(self.sequence_lengths.sum(dtype=np.int64))
        bin_size = os.path.getsize(bin_path)
        if bin_size != self.total_tokens * itemsize:
            raise CorruptPackError(f"{bin_path}: {bin_size} bytes, its index describes "
                                   f"{self.total_tokens * itemsize} ({self.total_tokens} tokens of "
                                   f"{self.dtype.name}); truncated, or the .idx of another dataset")
        # a plain ndarray view of the map: slicing it skips np.memmap's per-slice bookkeeping
        self.tokens = (np.memmap(bin_path, dtype=self.dtype.newbyteorder("<"), mode="r").view(np.ndarray)
                       if bin_size else np.zeros(0, dtype=self.dtype))
        self.offsets = self.sequence_pointers // itemsize  # token offset of each sequence

    def __len__(self) -> int:
        return int(self.sequence_lengths.size)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.get(i)

    def get(self, i: int, offset: int = 0, length: int | None = None) -> np.ndarray:
        """Tokens `[offset, offset + length)` of sequence `i` (a view into the memory map)."""
        n = int(self.sequence_lengths[i])
        if length is None:
            length = n - offset
        if offset < 0 or length < 0 or offset + length > n:
            raise IndexError(f"piece [{offset}, {offset + length}) outside sequence {i} of {n} tokens")
        start = int(self.offsets[i]) + offset
        return self.tokens[start:start + length]
