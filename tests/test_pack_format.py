"""MMIDIDX writer/reader, concat and best-fit-decreasing packing, the winnow pack index, and the
bad inputs they must refuse (numpy only; megatron-core comparisons are in test_pack_megatron)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from winnow.tokenizer.indexed import (CorruptPackError, IndexedReader, check_vocab_fits, optimal_dtype,
                                      write_indexed)
from winnow.tokenizer.packing import pack, pack_index_bytes, packing_stats, read_pack_index


def _docs(n=50, seed=0, hi=300):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 100_002, size=int(k), dtype=np.int64) for k in rng.integers(1, hi, size=n)]


def test_indexed_round_trip_and_header(tmp_path):
    docs = _docs()
    write_indexed(tmp_path / "a.bin", tmp_path / "a.idx", docs, np.int32)
    raw = (tmp_path / "a.idx").read_bytes()
    assert raw[:9] == b"MMIDIDX\x00\x00"
    assert struct.unpack("<Q", raw[9:17])[0] == 1 and raw[17] == 4  # version 1, int32
    assert struct.unpack("<QQ", raw[18:34]) == (len(docs), len(docs) + 1)
    r = IndexedReader(tmp_path / "a")
    assert r.dtype == np.int32 and len(r) == len(docs)
    for i, d in enumerate(docs):
        assert np.array_equal(r[i], d)
    assert np.array_equal(r.get(3, 2, 5), docs[3][2:7])


def test_dtype_rules():
    assert optimal_dtype(100_002) is np.int32 and optimal_dtype(32_000) is np.uint16
    check_vocab_fits(65_536, np.uint16)
    with pytest.raises(ValueError, match="does not fit"):
        check_vocab_fits(100_002, np.uint16)


def test_truncated_bin_and_foreign_idx_are_refused(tmp_path):
    write_indexed(tmp_path / "a.bin", tmp_path / "a.idx", _docs(seed=1), np.int32)
    write_indexed(tmp_path / "b.bin", tmp_path / "b.idx", _docs(seed=2), np.int32)
    data = (tmp_path / "a.bin").read_bytes()
    (tmp_path / "t.bin").write_bytes(data[:-4])
    (tmp_path / "t.idx").write_bytes((tmp_path / "a.idx").read_bytes())
    with pytest.raises(CorruptPackError, match="truncated"):
        IndexedReader(tmp_path / "t")
    with pytest.raises(CorruptPackError, match="another dataset"):
        IndexedReader(tmp_path / "a.bin", tmp_path / "b.idx")
    (tmp_path / "h.bin").write_bytes(data)
    (tmp_path / "h.idx").write_bytes(b"NOTANIDX!" + (tmp_path / "a.idx").read_bytes()[9:])
    with pytest.raises(CorruptPackError, match="bad header"):
        IndexedReader(tmp_path / "h")
    (tmp_path / "i.bin").write_bytes(data)
    (tmp_path / "i.idx").write_bytes((tmp_path / "a.idx").read_bytes()[:-8])
    with pytest.raises(CorruptPackError, match="truncated"):
        IndexedReader(tmp_path / "i")


def _coverage(index, lengths):
    """Each token of each document lands in exactly one window piece."""
    cum = np.concatenate([[0], np.cumsum(lengths)])
    seen = np.zeros(int(cum[-1]), dtype=np.int64)
    for d, a, n in zip(index.piece_doc, index.piece_start, index.piece_len):
        seen[cum[d] + a: cum[d] + a + n] += 1
    return seen


@pytest.mark.parametrize("packing", ["concat", "bestfit"])
def test_packing_keeps_every_token_once(packing):
    rng = np.random.default_rng(3)
    lengths = rng.integers(0, 400, size=500)
    lengths[7] = 5000
    S = 127
    ix = pack(lengths, S, packing)
    assert np.array_equal(_coverage(ix, lengths), np.ones(int(lengths.sum()), dtype=np.int64))
    wt = ix.window_tokens
    assert (wt <= S + 1).all() and (wt > 0).all()
    st = packing_stats(ix, lengths)
    assert st["tokens_kept_share"] == 1.0 and st["tokens"] == int(lengths.sum())
    again = pack(lengths, S, packing)
    assert pack_index_bytes(ix) == pack_index_bytes(again)  # deterministic
    if packing == "concat":
        assert (wt[:-1] == S + 1).all()  # only the last window is padded
    else:
        # only documents longer than a window are split
        pieces = np.bincount(ix.piece_doc, minlength=lengths.size)
        assert set(np.nonzero(pieces > 1)[0]) == set(np.nonzero(lengths > S + 1)[0])
        assert st["padding_share"] < 0.05


def _bfd_reference(lengths, cap):
    """Best-fit decreasing written the slow, obvious way: for each remainder (longest first, ties
    by document) scan every open window for the least room that fits."""
    rooms, assign = [], {}
    items = sorted(((int(n) % cap, d) for d, n in enumerate(lengths) if n % cap), key=lambda x: (-x[0], x[1]))
    for n, d in items:
        best = None
        for w, r in enumerate(rooms):
            if r >= n and (best is None or r < rooms[best]):
                best = w
        if best is None:
            rooms.append(cap)
            best = len(rooms) - 1
        rooms[best] -= n
        assign[d] = best
    return assign, rooms


def test_bestfit_matches_reference_fill():
    rng = np.random.default_rng(5)
    lengths = rng.integers(1, 200, size=300)
    S = 99
    ix = pack(lengths, S, "bestfit")
    ref_assign, ref_rooms = _bfd_reference(lengths, S + 1)
    n_full = int((lengths // (S + 1)).sum())  # window-sized chunks of long documents, one window each
    assert ix.num_windows == n_full + len(ref_rooms)  # same number of windows as a textbook BFD
    fill = sorted((S + 1 - ix.window_tokens).tolist())
    assert fill == sorted(ref_rooms + [0] * n_full)


def test_million_token_document_is_split_and_counted():
    lengths = np.array([10, 1_000_000, 20])
    S = 4095
    for packing in ("concat", "bestfit"):
        ix = pack(lengths, S, packing)
        assert np.array_equal(_coverage(ix, lengths), np.ones(int(lengths.sum()), dtype=np.int64))
        st = packing_stats(ix, lengths)
        assert st["docs_split"] >= 1
        assert np.count_nonzero(ix.piece_doc == 1) >= 1_000_000 // (S + 1)


def test_pack_index_round_trip_and_corruption(tmp_path):
    lengths = np.random.default_rng(9).integers(1, 300, size=200)
    ix = pack(lengths, 63, "bestfit")
    p = tmp_path / "x.pidx"
    p.write_bytes(pack_index_bytes(ix))
    back = read_pack_index(p)
    assert back.packing == "bestfit" and back.seq_len == 63 and back.num_docs == 200
    for a, b in ((ix.window_ptr, back.window_ptr), (ix.piece_doc, back.piece_doc),
                 (ix.piece_start, back.piece_start), (ix.piece_len, back.piece_len)):
        assert np.array_equal(a, b)
    p.write_bytes(pack_index_bytes(ix)[:-3])
    with pytest.raises(CorruptPackError, match="truncated"):
        read_pack_index(p)
    p.write_bytes(b"garbage!" * 10)
    with pytest.raises(CorruptPackError, match="not a winnow pack index"):
        read_pack_index(p)
    with pytest.raises(ValueError, match="packing must be"):
        pack(lengths, 63, "greedy")
