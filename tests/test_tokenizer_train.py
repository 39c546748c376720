"""Training: vocabulary size and layout, no learned token mixing categories, round trip,
determinism, the transformers directory, bad input."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, pre_tokenizers

from winnow.tokenizer.specials import NAMED_SPECIAL_TOKENS, default_learned_size, min_vocab_size, reserved_token
from winnow.tokenizer.train import EmptySample, save_hf_dir, train_bpe

SMALL_VOCAB = 4096


def corpus_texts(shared_data: Path, per_file: int) -> list[str]:
    """The first `per_file` documents of every corpus file (en, zh, code, de, fr, ja, ru)."""
    out: list[str] = []
    for path in sorted((shared_data / "corpus").glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            out.extend(json.loads(line)["text"] for line in itertools.islice(f, per_file))
    return out


@pytest.fixture(scope="module")
def texts(shared_data) -> list[str]:
    return corpus_texts(shared_data, 60)


@pytest.fixture(scope="module")
def small(texts) -> Tokenizer:
    return train_bpe(texts, vocab_size=SMALL_VOCAB)


def _byte_decoder() -> dict[str, int]:
    return {ch: b for b, ch in enumerate(_bytes_to_unicode())}


def _bytes_to_unicode() -> list[str]:
    """GPT-2's byte -> printable character map, as `ByteLevel.alphabet()` uses it (by byte)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


def test_vocab_is_exactly_the_size_asked_with_specials_after_learned(small):
    assert small.get_vocab_size(with_added_tokens=True) == SMALL_VOCAB
    vocab = small.get_vocab(with_added_tokens=True)
    assert sorted(vocab.values()) == list(range(SMALL_VOCAB))
    learned = small.get_vocab_size(with_added_tokens=False)
    assert learned == default_learned_size(SMALL_VOCAB) == SMALL_VOCAB * 100_000 // 102_400
    for i, special in enumerate(NAMED_SPECIAL_TOKENS):
        assert vocab[special.content] == learned + i
    assert vocab[reserved_token(0)] == learned + len(NAMED_SPECIAL_TOKENS)
    assert max(vocab.values()) == SMALL_VOCAB - 1
    # all 256 byte symbols are in the learned part
    assert set(pre_tokenizers.ByteLevel.alphabet()) <= {t for t, i in vocab.items() if i < learned}


def test_default_102400_layout_filled_exactly_when_merges_run_out(shared_data):
    """A 1 MB sample cannot yield 100,000 merges with min_frequency 2: reserved tokens fill up."""
    tok = train_bpe(corpus_texts(shared_data, 15))
    learned = tok.get_vocab_size(with_added_tokens=False)
    assert learned < 100_000
    assert tok.get_vocab_size(with_added_tokens=True) == 102_400
    vocab = tok.get_vocab(with_added_tokens=True)
    assert sorted(vocab.values()) == list(range(102_400))
    assert vocab["<｜begin▁of▁sentence｜>"] == learned
    assert reserved_token(102_400 - learned - 16) in vocab
    assert reserved_token(102_400 - learned - 15) not in vocab
    assert all(i < 102_400 for i in tok.encode("Hello 世界 2024 😀").ids)


@pytest.mark.slow
def test_default_ids_of_bos_and_eos_match_deepseek_when_100000_are_learned(shared_data):
    tok = train_bpe(corpus_texts(shared_data, 150), min_frequency=0)  # 4.4 MB
    assert tok.get_vocab_size(with_added_tokens=False) == 100_000
    assert tok.token_to_id("<｜begin▁of▁sentence｜>") == 100_000
    assert tok.token_to_id("<｜end▁of▁sentence｜>") == 100_001
    assert tok.get_vocab_size(with_added_tokens=True) == 102_400


CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
LATIN = re.compile("[A-Za-z\u00c0-\u024f]")
LETTER = re.compile(r"[^\W\d_]")


def test_no_learned_token_mixes_categories(small):
    """No learned token holds a CJK character and a Latin letter, a newline and a letter, or two digits."""
    dec = _byte_decoder()
    learned = small.get_vocab_size(with_added_tokens=False)
    checked = 0
    for token, idx in small.get_vocab(with_added_tokens=False).items():
        assert idx < learned
        text = bytes(dec[c] for c in token).decode("utf-8", errors="ignore")
        assert not (CJK.search(text) and LATIN.search(text)), repr(text)
        assert not (("\n" in text or "\r" in text) and LETTER.search(text)), repr(text)
        assert sum(c.isdigit() for c in text) <= 1, repr(text)
        checked += 1
    assert checked == learned


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_round_trip_arbitrary_unicode(small, s):
    assert small.decode(small.encode(s, add_special_tokens=False).ids, skip_special_tokens=False) == s


def test_round_trip_keeps_special_token_text(small):
    s = "a<｜fim▁begin｜>b<｜end▁of▁sentence｜>"
    ids = small.encode(s).ids
    assert small.token_to_id("<｜fim▁begin｜>") in ids
    assert small.decode(ids, skip_special_tokens=False) == s


def test_training_twice_is_byte_identical(texts, tmp_path):
    digests = []
    for run in range(2):
        out = tmp_path / f"run{run}"
        save_hf_dir(train_bpe(texts, vocab_size=SMALL_VOCAB), out)
        digests.append(hashlib.sha256((out / "tokenizer.json").read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_training_is_identical_in_another_process_with_one_thread(texts, small, tmp_path):
    """Rayon's thread count and a fresh process (hash seeds) do not change the result."""
    src = tmp_path / "texts.json"
    src.write_text(json.dumps(texts), encoding="utf-8")
    out = tmp_path / "single"
    code = ("import json, sys; from winnow.tokenizer.train import train_bpe, save_hf_dir; "
            f"save_hf_dir(train_bpe(json.load(open(sys.argv[1])), vocab_size={SMALL_VOCAB}), sys.argv[2])")
    env = dict(os.environ, RAYON_NUM_THREADS="1", PYTHONHASHSEED="123")
    subprocess.run([sys.executable, "-c", code, str(src), str(out)], check=True, env=env, timeout=300)
    save_hf_dir(small, tmp_path / "here")
    assert (out / "tokenizer.json").read_bytes() == (tmp_path / "here" / "tokenizer.json").read_bytes()


def test_autotokenizer_loads_offline_and_encodes_like_tokenizers(small, texts, tmp_path):
    save_hf_dir(small, tmp_path)
    code = (
        "import json, sys; from transformers import AutoTokenizer; "
        "t = AutoTokenizer.from_pretrained(sys.argv[1]); texts = json.load(open(sys.argv[2])); "
        "print(json.dumps({'ids': [t.encode(s) for s in texts], 'bos': t.bos_token, 'eos': t.eos_token, "
        "'pad': t.pad_token, 'fim': [t.fim_prefix_token, t.fim_middle_token, t.fim_suffix_token], 'n': len(t), "
        "'dec': [t.decode(t.encode(s)) for s in texts]}))")
    sample = texts[::20] + ["Hello 世界 2024\r\n\tx = 1  😀"]
    (tmp_path / "s.json").write_text(json.dumps(sample), encoding="utf-8")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(tmp_path / "s.json")], check=True,
                         env=env, capture_output=True, text=True, timeout=300)
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["ids"] == [small.encode(s).ids for s in sample]
    assert got["dec"] == sample
    assert got["n"] == SMALL_VOCAB
    by_role = {t.role: t.content for t in NAMED_SPECIAL_TOKENS}
    assert [got["bos"], got["eos"], got["pad"]] == [by_role["bos_token"], by_role["eos_token"], by_role["pad_token"]]
    assert got["fim"] == [by_role["fim_prefix_token"], by_role["fim_middle_token"], by_role["fim_suffix_token"]]
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert cfg["fim_prefix_token"] == by_role["fim_prefix_token"]


def test_vocab_smaller_than_bytes_plus_specials_is_an_error(texts):
    with pytest.raises(ValueError, match="smaller than the 256 byte symbols"):
        train_bpe(texts, vocab_size=min_vocab_size() - 1)
    with pytest.raises(ValueError, match="exceeds the vocab size"):
        train_bpe(texts, vocab_size=1000, learned_size=990)
    with pytest.raises(ValueError, match="smaller than the 256"):
        train_bpe(texts, vocab_size=1000, learned_size=100)


def test_empty_sample_is_an_error():
    with pytest.raises(EmptySample, match="sample is empty"):
        train_bpe([], vocab_size=1024)
    with pytest.raises(EmptySample):
        train_bpe(["", ""], vocab_size=1024)


def test_non_text_is_an_error():
    with pytest.raises(TypeError, match="must be str"):
        train_bpe(["ok", b"bytes"], vocab_size=1024)


def test_minimum_vocab_trains_bytes_only(texts):
    tok = train_bpe(texts[:5], vocab_size=min_vocab_size())
    assert tok.get_vocab_size(with_added_tokens=False) == 256
    assert tok.get_vocab_size(with_added_tokens=True) == min_vocab_size()
