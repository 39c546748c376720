"""MinHash signatures: normalisation rules, the compiled and numpy kernels against the plain-Python
reference, datasketch as the oracle (value for value), the bottom-k check, bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from winnow.stages.dedup import minhash as mh
from winnow.stages.dedup import normalize as nz

BACKENDS = ["numpy"] + (["numba"] if mh.HAVE_NUMBA else [])

ODD_TEXTS = [
    "", None, "word", "a b c d", "   \n\t  ", "!!! ??? ...", "x " * 3 + "\ufffd bad",
    "Ｆｕｌｌ ｗｉｄｔｈ ﬁnd ½ Café naïve ÀÉÎ 2019-07 İstanbul Straße Ǆ ㎏ ① e\u0301 co\u00adop zero\u200bspace",
    "日本語のテキスト カタカナ ｶﾀｶﾅ 한국어 문장 中文，标点。",
    "emoji 😀 and 𝐛𝐨𝐥𝐝 math and \U0002A6A5 ext-B han",
]


def cc_texts(shared: Path, n: int = 150) -> list[str]:
    path = shared / "dolma" / "CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for _, line in zip(range(n), f)]


def zh_texts(shared: Path, n: int = 30) -> list[str]:
    lines = (shared / "ref_text" / "cmrc2018" / "cmrc2018_contexts_zh.txt").read_text(encoding="utf-8").splitlines()
    return lines[:n]


def test_normalisation_rules() -> None:
    assert nz.tokens("Hello, WORLD! It's 2019.") == ["hello", "world", "it", "s", "0000"]
    assert nz.tokens("Café naïve ÀÉÎ") == ["cafe", "naive", "aei"]
    assert nz.tokens("ﬁnd ½ ㎏") == ["find", "0", "0", "kg"]          # NFKD expansions
    assert nz.tokens("co\u00adop e\u0301") == ["coop", "e"]            # format chars and marks deleted
    assert nz.tokens("zero\u200bspace a\u00a0b") == ["zero", "space", "a", "b"]
    assert nz.tokens("Ｆｕｌｌ") == ["full"]
    assert nz.tokens("中文，标点。") == ["中", "文", "标", "点"]          # char mode: one token per ideograph
    assert nz.tokens("中文，标点。", cjk="jieba") == ["中文", "标点"]     # jieba: real words
    assert nz.tokens("日本語 カタカナ") == ["日", "本", "語", "カ", "タ", "カ", "ナ"]
    assert nz.tokens("한국어 문장") == ["한국어", "문장"]                  # Hangul is spaced: whole words
    assert nz.tokens("") == [] and nz.tokens("?!") == []


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cjk", ["char", "jieba"])
def test_kernels_match_reference(shared_data: Path, backend: str, cjk: str) -> None:
    texts = cc_texts(shared_data, 80) + zh_texts(shared_data, 10) + ODD_TEXTS
    tok, ntok = mh.tokenize_batch(pa.array(texts, pa.string()), cjk=cjk, backend=backend)
    ref_words = [nz.tokens(t or "", cjk) for t in texts]
    assert ntok.tolist() == [len(w) for w in ref_words]
    assert tok.tolist() == [mh.token_hash(w) for ws in ref_words for w in ws]
    hv, nsh = mh.shingle_hashes(tok, ntok, 5, backend=backend)
    ref_sh = [mh.shingles(ws, 5) for ws in ref_words]
    assert nsh.tolist() == [len(s) for s in ref_sh]
    assert hv.tolist() == [mh.shingle_hash32(s) for ss in ref_sh for s in ss]


def test_datasketch_is_the_oracle(shared_data: Path) -> None:
    """winnow's signature of each document equals datasketch.MinHash fed the same shingles."""
    datasketch = pytest.importorskip("datasketch")
    texts = cc_texts(shared_data, 60) + zh_texts(shared_data, 5) + ODD_TEXTS
    for num_perm, seed in ((112, 1), (128, 42)):
        sig, _ = mh.signatures(pa.array(texts, pa.string()), num_perm=num_perm, seed=seed, ngram=5)
        assert sig.shape == (len(texts), num_perm) and sig.dtype == np.uint32
        for i, t in enumerate(texts):
            m = datasketch.MinHash(num_perm=num_perm, seed=seed, hashfunc=mh.shingle_hash32)
            m.update_batch(mh.shingles(nz.tokens(t or ""), 5))
            assert m.hashvalues.tolist() == sig[i].tolist(), f"document {i}"
    # and the permutation parameters are datasketch's own
    a, b = mh.permutations(112, 1)
    pa_, pb_ = datasketch.MinHash(num_perm=112, seed=1).permutations
    assert a.tolist() == pa_.tolist() and b.tolist() == pb_.tolist()


@pytest.mark.skipif(not mh.HAVE_NUMBA, reason="numba not installed")
def test_minhash_backends_agree(shared_data: Path) -> None:
    texts = pa.array(cc_texts(shared_data, 100), pa.string())
    tok, ntok = mh.tokenize_batch(texts)
    hv, nsh = mh.shingle_hashes(tok, ntok, 5)
    assert np.array_equal(mh.minhash(hv, nsh, 112, 1, backend="numpy"), mh.minhash(hv, nsh, 112, 1, backend="numba"))


def test_bottom_k_sketch_is_the_k_smallest_distinct_hashes(shared_data: Path) -> None:
    texts = pa.array(cc_texts(shared_data, 60) + ODD_TEXTS, pa.string())
    tok, ntok = mh.tokenize_batch(texts)
    hv, nsh = mh.shingle_hashes(tok, ntok, 5)
    vals, cnt = mh.bottom_k(hv, nsh, 64)
    starts, vstarts = np.cumsum(nsh) - nsh, np.cumsum(cnt) - cnt
    for d in range(len(nsh)):
        want = np.unique(hv[starts[d]:starts[d] + nsh[d]])[:64]
        assert vals[vstarts[d]:vstarts[d] + cnt[d]].tolist() == want.tolist()


def test_signature_is_per_document(shared_data: Path) -> None:
    """A document's signature does not depend on its batch neighbours or batch size."""
    texts = cc_texts(shared_data, 40)
    whole, _ = mh.signatures(texts, num_perm=112, seed=1, ngram=5)
    for i in (0, 7, 39):
        alone, _ = mh.signatures([texts[i]], num_perm=112, seed=1, ngram=5)
        assert np.array_equal(alone[0], whole[i])
    rev, _ = mh.signatures(texts[::-1], num_perm=112, seed=1, ngram=5)
    assert np.array_equal(rev[::-1], whole)


def test_bottom_k_jaccard_is_exact_for_small_sets() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        a = np.unique(rng.integers(0, 400, rng.integers(1, 200)).astype(np.uint32))
        b = np.unique(np.concatenate([a[: len(a) // 2], rng.integers(0, 400, rng.integers(1, 200))]).astype(np.uint32))
        exact = len(np.intersect1d(a, b)) / len(np.union1d(a, b))
        for backend in BACKENDS:
            est = mh.bottom_k_jaccard(a, np.array([0, len(a)]), b, np.array([0, len(b)]), 512, backend=backend)
            assert est[0] == pytest.approx(exact)
    # and estimates a large-set Jaccard within a few standard deviations
    a = np.arange(0, 20000, dtype=np.uint32)
    b = np.arange(2000, 22000, dtype=np.uint32)
    h = lambda x: mh.fmix32(x)  # noqa: E731 - spread the values
    sa, sb = np.sort(h(a))[:512], np.sort(h(b))[:512]
    est = mh.bottom_k_jaccard(sa, np.array([0, 512]), sb, np.array([0, 512]), 512)[0]
    assert abs(est - 18000 / 22000) < 4 * np.sqrt(0.82 * 0.18 / 512)


def test_bad_text_is_handled_not_fatal() -> None:
    raw = [b"valid text here and more words", b"broken \xff\xfe bytes \xc3 in \xed\xa0\x80 the middle",
           b"", b"\xe4\xb8", b"one"]
    arr = pa.array(raw, pa.binary()).view(pa.string())  # invalid UTF-8 inside a string column
    assert mh.invalid_utf8_count(arr) == 2
    ref = [nz.tokens(b.decode("utf-8", "replace")) for b in raw]     # invalid bytes → U+FFFD → separator
    assert ref[1] == ["broken", "bytes", "in", "the", "middle"]
    for backend in BACKENDS:
        tok, ntok = mh.tokenize_batch(arr, backend=backend)
        assert ntok.tolist() == [6, 5, 0, 0, 1]
        assert tok.tolist() == [mh.token_hash(w) for ws in ref for w in ws]
    sig, ntok = mh.signatures(arr, num_perm=112, seed=1, ngram=5)
    assert (sig[2] == mh.EMPTY).all() and (sig[3] == mh.EMPTY).all()     # no words: empty signature
    assert not (sig[4] == mh.EMPTY).all()                                  # one word: one shingle


def test_band_keys_separate_scopes() -> None:
    sig = np.random.default_rng(0).integers(0, 2**32, (4, 112), dtype=np.uint32)
    sig[1] = sig[0]
    keys = mh.band_hashes(sig, 14, 8)
    assert (keys[0] == keys[1]).all() and not (keys[0] == keys[2]).any()
    salted = mh.band_hashes(sig, 14, 8, np.array([1, 2, 1, 1], np.uint64))
    assert not (salted[0] == salted[1]).any()
    with pytest.raises(ValueError):
        mh.band_hashes(sig, 15, 8)
