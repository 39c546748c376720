"""winnow packs against the real megatron-core 0.16.1 (with torch 2.13.0 CPU): byte-identical
`.bin/.idx` to `IndexedDatasetBuilder`, `IndexedDataset` reads every document back,
`BlendedMegatronDatasetBuilder` trains from two winnow packs, and the reader's blending rule is
Megatron's `build_blending_indices`."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", message=".*Transformer Engine.*")
import torch  # noqa: E402  a test dependency (dev extra): the test fails, never skips, without it
from megatron.core.datasets import helpers  # noqa: E402
from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder  # noqa: E402

from pack_fixtures import BOS, EOS, build_pack, corpus_rows, make_tokenizer_dir  # noqa: E402
from winnow.tokenizer.reader import blending_indices  # noqa: E402


@pytest.fixture(scope="module")
def packed(tmp_path_factory, shared_data):
    tmp = tmp_path_factory.mktemp("megatron")
    tok = make_tokenizer_dir(tmp / "tok", shared_data)
    rows = corpus_rows(shared_data, per_source=8)
    out, _ = build_pack(tmp, tok, [rows[:16], rows[16:]], seq_len=128, packing="bestfit")
    return tmp, tok, rows, out


def _reference_tokens(tok_dir, rows):
    """The documents tokenised independently of the stage: tokenizers + explicit BOS/EOS."""
    from tokenizers import Tokenizer

    t = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    bos, eos = t.token_to_id(BOS), t.token_to_id(EOS)
    return [np.array([bos] + e.ids + [eos], dtype=np.int32) for e in t.encode_batch([r["text"] for r in rows],
                                                                                     add_special_tokens=False)]


def test_bin_idx_byte_identical_to_indexed_dataset_builder(packed):
    tmp, tok, rows, out = packed
    refs = _reference_tokens(tok, rows)
    for shard, docs in (("part-00000", refs[:16]), ("part-00001", refs[16:])):
        prefix = str(tmp / f"meg-{shard}")
        builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.int32)
        for d in docs:
            builder.add_document(torch.from_numpy(d), [len(d)])
        builder.finalize(prefix + ".idx")
        assert (out / "data" / f"{shard}.bin").read_bytes() == open(prefix + ".bin", "rb").read()
        assert (out / "data" / f"{shard}.idx").read_bytes() == open(prefix + ".idx", "rb").read()


def test_indexed_dataset_reads_every_document(packed):
    tmp, tok, rows, out = packed
    refs = _reference_tokens(tok, rows)
    got = []
    for shard in ("part-00000", "part-00001"):
        ds = IndexedDataset(str(out / "data" / shard))
        assert ds.index.dtype == np.int32
        got.extend(np.array(ds[i]) for i in range(len(ds)))  # copies: Megatron closes its mmap on __del__
    assert len(got) == len(refs)
    for a, b in zip(got, refs):
        assert np.array_equal(a, b)
        assert a[0] == refs[0][0] and a[-1] == refs[0][-1]  # BOS first, EOS last


def test_blended_megatron_dataset_builder_over_two_winnow_packs(packed, shared_data):
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.megatron_tokenizer import MegatronLegacyTokenizer

    tmp, tok, rows, out = packed
    out2, _ = build_pack(tmp, tok, [corpus_rows(shared_data, per_source=6, skip=20)], name="pack2",
                         seq_len=128, packing="concat")
    info = json.loads((out / "pack_manifest.json").read_text())

    class Tok(MegatronLegacyTokenizer):
        def __init__(self):
            super().__init__("winnow-test")

        def tokenize(self, text):
            raise NotImplementedError

        @property
        def vocab(self):
            return {}

        @property
        def inv_vocab(self):
            return {}

        @property
        def vocab_size(self):
            return info["vocab_size"]

        @property
        def eod(self):
            return info["eos_id"]

        @property
        def pad(self):
            return -1

    prefixes = [str(out / "data" / "part-00000"), str(out / "data" / "part-00001"), str(out2 / "data" / "part-00000")]
    config = GPTDatasetConfig(random_seed=1234, sequence_length=128, blend_per_split=[(prefixes, [0.3, 0.3, 0.4]), None, None],
                              tokenizer=Tok(), reset_position_ids=True,
                              reset_attention_mask=True, eod_mask_loss=False,
                              path_to_cache=None, mid_level_dataset_surplus=0.005)  # a cache dir needs torch.distributed
    train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [64, None, None], lambda: True, config).build()
    assert len(train) >= 64  # Megatron adds its mid-level surplus
    seen_datasets = set()
    all_tokens = set()
    for p in prefixes:
        ds = IndexedDataset(p)
        for i in range(len(ds)):
            all_tokens.update(np.asarray(ds[i]).tolist())
    for i in range(len(train)):
        s = train[i]
        assert s["tokens"].shape == (128,) and s["labels"].shape == (128,)
        assert set(s["tokens"].tolist()) <= all_tokens | {0}
        seen_datasets.add(int(train.dataset_index[i]))
    assert seen_datasets == {0, 1, 2}


def test_blending_rule_is_megatrons():
    for weights, size in (([0.5, 0.3, 0.2], 1000), ([0.01, 0.99], 777), ([0.25, 0.25, 0.25, 0.25], 64)):
        w = np.array(weights, dtype=np.float64)
        ds_idx = np.zeros(size, dtype=np.int16)
        ds_sample = np.zeros(size, dtype=np.int64)
        helpers.build_blending_indices(ds_idx, ds_sample, w, len(weights), size, False)
        ours_ds, ours_nth = blending_indices(weights, size)
        assert np.array_equal(ours_ds, ds_idx) and np.array_equal(ours_nth, ds_sample)
