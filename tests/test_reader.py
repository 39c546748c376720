"""PackedDataset: sample layout, a global order that does not depend on ranks or DataLoader
workers, exact elastic resume (kills at random steps, resumes on 1/2/4/8 ranks), blending,
refusals (tokenizer, seq_len, state, corrupt files) and shuffle quality."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pack_fixtures import build_pack, corpus_rows, make_tokenizer_dir
from winnow.tokenizer.indexed import CorruptPackError
from winnow.tokenizer.reader import IGNORE_INDEX, PackMismatchError, PackedDataset, shuffle_quality

S = 32


@pytest.fixture(scope="module")
def packs(tmp_path_factory, shared_data):
    tmp = tmp_path_factory.mktemp("reader")
    tok = make_tokenizer_dir(tmp / "tok", shared_data)
    rows = corpus_rows(shared_data, per_source=8, max_chars=800)
    a, _ = build_pack(tmp, tok, [rows[:16], rows[16:]], name="a", seq_len=S, packing="bestfit")
    b, _ = build_pack(tmp, tok, [corpus_rows(shared_data, per_source=4, max_chars=600, skip=30)], name="b",
                      seq_len=S, packing="concat")
    return tmp, tok, a, b


def test_sample_layout(packs):
    _, tok, a, _ = packs
    ds = PackedDataset(a, S, tokenizer=tok)
    from winnow.tokenizer.reader import Pack

    pack = Pack(a)
    for pos in range(ds.samples_per_epoch):
        s = ds.sample(pos)
        d, w = ds.sample_id(pos)
        pieces, lens = pack.window(w)
        window = np.concatenate(pieces)
        n = window.size
        assert s["input_ids"].shape == (S,) and s["labels"].shape == (S,)
        assert np.array_equal(s["input_ids"][:min(n, S)], window[:S])
        assert np.array_equal(s["labels"][:n - 1], window[1:])
        assert (s["labels"][n - 1:] == IGNORE_INDEX).all()
        cu = s["cu_seqlens"]
        assert cu.dtype == np.int32 and cu[0] == 0 and cu[-1] == S and (np.diff(cu) >= 0).all()
        assert cu.shape == (ds.cu_len,)
        bounds = np.unique(cu)
        for a0, b0 in zip(bounds[:-1], bounds[1:]):  # positions restart at each document piece
            assert np.array_equal(s["position_ids"][a0:b0], np.arange(b0 - a0))
        ends = np.minimum(np.cumsum(lens), S)
        assert set(ends[ends < S].tolist()) <= set(bounds.tolist())


def _run(ds_factory, world, steps, batch, start_state=None, workers=1):
    """Simulated data-parallel training: each step every rank takes batch/world samples; the
    global ids of each step, in rank order."""
    ranks = [ds_factory(r, world) for r in range(world)]
    if start_state is not None:
        for d in ranks:
            d.load_state_dict(start_state)
    per = batch // world
    its = [iter(d) for d in ranks] if workers == 1 else [_worker_mix(d, workers) for d in ranks]
    seen = []
    for _ in range(steps):
        step = []
        for r, it in enumerate(its):
            for _ in range(per):
                s = next(it)
                step.append(_key(s))
        seen.append(sorted(step))
    states = [d.state_dict(samples_seen=steps * per) for d in ranks]
    assert all(st == states[0] for st in states)
    return seen, states[0]


def _worker_mix(ds, workers):
    """What a DataLoader with `workers` workers and batch_size=micro_batch returns, in order."""
    gens = [ds.iter_samples(w, workers) for w in range(workers)]
    while True:
        for g in gens:
            for _ in range(ds.micro_batch):
                yield next(g)


def _key(sample):
    return sample["input_ids"].tobytes() + sample["labels"].tobytes()


def test_global_order_independent_of_ranks_and_workers(packs):
    _, _, a, _ = packs
    mk = lambda mb: (lambda r, w: PackedDataset(a, S, rank=r, world_size=w, seed=7, micro_batch=mb))  # noqa: E731
    ref, _ = _run(mk(1), 1, 10, 8)
    for world in (2, 4, 8):
        assert _run(mk(1), world, 10, 8)[0] == ref
    for workers, mb in ((2, 1), (3, 1), (2, 2)):
        assert _run(mk(mb), 2, 10, 8, workers=workers)[0] == ref
    # sample k of the epoch is the same whatever the world size
    one = PackedDataset(a, S, seed=7)
    four = [PackedDataset(a, S, rank=r, world_size=4, seed=7) for r in range(4)]
    its = [iter(d) for d in four]
    for k, s in zip(range(40), one):
        assert _key(next(its[k % 4])) == _key(s)


def _train_until_killed(mk, world, workers, batch, state, first_step, kill_after, ckpt_every):
    """One life of a data-parallel job: `world` ranks (each iterating through `workers`
    DataLoader-style workers) resume from `state`, train `kill_after` steps of global batch
    `batch` and are then killed. A checkpoint (every rank's `state_dict`, which must agree) is
    taken whenever the global step is a multiple of `ckpt_every`. Returns the sample keys of each
    step run and the checkpoints as (global step, state)."""
    ranks = [mk(r, world) for r in range(world)]
    if state is not None:
        for d in ranks:
            d.load_state_dict(state)
    per = batch // world
    its = [iter(d) for d in ranks] if workers == 1 else [_worker_mix(d, workers) for d in ranks]
    steps, ckpts = [], []
    for i in range(kill_after):
        steps.append(sorted(_key(next(it)) for it in its for _ in range(per)))
        if (first_step + i + 1) % ckpt_every == 0:
            states = [d.state_dict(samples_seen=(i + 1) * per) for d in ranks]
            assert all(st == states[0] for st in states)
            ckpts.append((first_step + i + 1, states[0]))
    return steps, ckpts


def test_elastic_resume_two_epochs_random_kills(packs):
    """A train loop over 2 epochs, checkpointing every 3 steps, killed at random steps (the
    steps since the last checkpoint are lost, as in a real job) and resumed from the last
    checkpoint on 1, 2, 4 or 8 ranks with 1-3 DataLoader workers: the steps that survive are
    exactly those of one uninterrupted run, none repeated, none skipped."""
    _, _, a, _ = packs
    B, CKPT = 8, 3
    mk = lambda r, w: PackedDataset(a, S, rank=r, world_size=w, seed=3)  # noqa: E731
    n_epoch = mk(0, 1).samples_per_epoch
    total_steps = (2 * n_epoch) // B
    assert total_steps >= 8 * CKPT, "the pack is too small for a meaningful kill schedule"
    ref, _ = _run(mk, 1, total_steps, B)
    rng = np.random.default_rng(11)
    worlds = [int(w) for _ in range(total_steps) for w in rng.permutation([1, 2, 4, 8])]
    committed, seen, used, lives = [], [], set(), 0
    state, step = None, 0
    while step < total_steps:
        lives += 1
        assert lives < 10 * total_steps
        world, workers = worlds[lives - 1], int(rng.integers(1, 4))
        kill_after = min(int(rng.integers(1, 3 * CKPT)), total_steps - step)
        steps, ckpts = _train_until_killed(mk, world, workers, B, state, step, kill_after, CKPT)
        seen.extend(steps)
        used.add(world)
        if step + kill_after == total_steps:   # the last life finishes the run
            committed.extend(steps)
            step = total_steps
        elif ckpts:                            # killed: resume from the last checkpoint
            last, state = ckpts[-1]
            committed.extend(steps[:last - step])
            step = last
    assert used == {1, 2, 4, 8} and lives > 4
    assert committed == ref  # the surviving steps are one uninterrupted run, in order
    ref_keys = {k for st in ref for k in st}
    assert {k for st in seen for k in st} == ref_keys  # nothing read outside the run's samples
    # no sample repeated within an epoch, none skipped: every window once per epoch
    ids = [mk(0, 1).global_id(p) for p in range(total_steps * B)]
    e1, e2 = ids[:n_epoch], ids[n_epoch:]
    assert sorted(e1) == list(range(n_epoch))
    assert len(set(e2)) == len(e2)
    assert e1 != e2[:len(e1)]  # a new permutation each epoch


def test_state_dict_is_small_and_checked(packs):
    _, _, a, b = packs
    ds = PackedDataset(a, S, seed=1)
    it = iter(ds)
    for _ in range(5):
        next(it)
    st = ds.state_dict()
    assert st["consumed"] == 5 and set(st) == {"version", "fingerprint", "consumed", "seed", "samples_per_epoch"}
    json.dumps(st)
    with pytest.raises(PackMismatchError, match="another dataset"):
        PackedDataset(a, S, seed=2).load_state_dict(st)
    with pytest.raises(PackMismatchError, match="another dataset"):
        PackedDataset(b, S, seed=1).load_state_dict(st)
    with pytest.raises(ValueError, match="multiple of world size"):
        PackedDataset(a, S, seed=1, rank=0, world_size=2).load_state_dict(st)


def test_blending_weights_and_epoch_limit(packs):
    _, _, a, b = packs
    na, nb = PackedDataset(a, S).samples_per_epoch, PackedDataset(b, S).samples_per_epoch
    ds = PackedDataset({str(a): 0.7, str(b): 0.3}, S, seed=5)
    counts = np.bincount(ds.blend_ds, minlength=2)
    assert abs(counts[0] / counts.sum() - 0.7) < 2 / counts.sum()
    assert counts[0] <= na and counts[1] <= nb
    # the default epoch repeats no pack; more samples than a pack holds is refused...
    with pytest.raises(ValueError, match="more than its max_epochs"):
        PackedDataset([(str(a), 0.5), (str(b), 0.5)], S, samples_per_epoch=4 * nb)
    # ...unless that pack may be repeated: then its windows come back in a new order
    ok = PackedDataset([(str(a), 0.5), (str(b), 0.5)], S, samples_per_epoch=4 * nb, max_epochs=[2, 2])
    ids = [ok.sample_id(p) for p in range(4 * nb)]
    b_ids = [w for d, w in ids if d == 1]
    assert sorted(b_ids[:nb]) == list(range(nb)) and sorted(b_ids[nb:2 * nb]) == list(range(nb))
    # joined (unweighted) packs: one dataset, every window of both once per epoch
    joined = PackedDataset([str(a), str(b)], S)
    assert joined.samples_per_epoch == na + nb
    assert sorted(joined.global_id(p) for p in range(na + nb)) == list(range(na + nb))


def test_refusals(packs, tmp_path, shared_data):
    tmp, tok, a, _ = packs
    with pytest.raises(PackMismatchError, match="seq_len"):
        PackedDataset(a, S * 2)
    other = make_tokenizer_dir(tmp_path / "other", shared_data)
    (other / "tokenizer.json").write_bytes((other / "tokenizer.json").read_bytes() + b"\n")
    with pytest.raises(PackMismatchError, match="tokenizer"):
        PackedDataset(a, S, tokenizer=other)
    with pytest.raises(PackMismatchError, match="tokenizer"):
        PackedDataset(a, S, tokenizer="0" * 64)
    # vocab beyond the dtype
    bad = tmp_path / "bad"
    shutil.copytree(a, bad)
    m = json.loads((bad / "pack_manifest.json").read_text())
    json.dump({**m, "dtype": "uint16"}, open(bad / "pack_manifest.json", "w"))
    with pytest.raises(PackMismatchError, match="does not fit"):
        PackedDataset(bad, S)
    # truncated .bin
    trunc = tmp_path / "trunc"
    shutil.copytree(a, trunc)
    p = trunc / "data" / "part-00000.bin"
    p.write_bytes(p.read_bytes()[:-4])
    with pytest.raises(CorruptPackError, match="truncated"):
        PackedDataset(trunc, S)
    # the .idx of another dataset (same size is not enough: the pack index names its .idx)
    swap = tmp_path / "swap"
    shutil.copytree(a, swap)
    shutil.copy(a / "data" / "part-00001.idx", swap / "data" / "part-00000.idx")
    m = json.loads((swap / "pack_manifest.json").read_text())
    m["shards"][0]["idx"]["bytes"] = (swap / "data" / "part-00000.idx").stat().st_size
    json.dump(m, open(swap / "pack_manifest.json", "w"))
    with pytest.raises(CorruptPackError, match="another"):
        PackedDataset(swap, S)
    with pytest.raises(CorruptPackError, match="pack_manifest"):
        PackedDataset(tmp_path, S)


def test_shuffle_quality(packs):
    _, _, a, _ = packs
    ds = PackedDataset(a, S, seed=0)
    ids = [ds.global_id(p) for p in range(ds.samples_per_epoch)]
    q = shuffle_quality(ids)
    assert q["ratio"] > 0.9
    assert shuffle_quality(sorted(ids))["entropy_bits"] == 0.0


def test_torch_dataloader_workers_keep_the_order(packs):
    import torch
    from torch.utils.data import DataLoader

    from winnow.tokenizer.reader import TorchPackedDataset

    _, _, a, _ = packs
    core = PackedDataset(a, S, seed=4, rank=1, world_size=2, micro_batch=2)
    expected = [next(it) for it in [iter(PackedDataset(a, S, seed=4, rank=1, world_size=2))] for _ in range(12)]
    loader = DataLoader(TorchPackedDataset(core), batch_size=2, num_workers=2)
    got = []
    for batch in loader:
        assert batch["input_ids"].dtype == torch.int64 and batch["cu_seqlens"].dtype == torch.int32
        got.extend(batch["input_ids"][i].numpy() for i in range(batch["input_ids"].shape[0]))
        if len(got) >= 12:
            break
    assert all(np.array_equal(g, e["input_ids"]) for g, e in zip(got, expected))
    # resume from what the loader handed out
    state = TorchPackedDataset(core).state_dict(samples_seen=12)
    nxt = PackedDataset(a, S, seed=4, rank=1, world_size=2)
    nxt.load_state_dict(state)
    ref = PackedDataset(a, S, seed=4, rank=1, world_size=2)
    it = iter(ref)
    for _ in range(12):
        next(it)
    assert np.array_equal(next(iter(nxt))["input_ids"], next(it)["input_ids"])


def test_torch_stacked_micro_batches_keep_the_order(packs):
    from torch.utils.data import DataLoader

    from winnow.tokenizer.reader import TorchPackedDataset

    _, _, a, _ = packs
    core = PackedDataset(a, S, seed=9, micro_batch=3)
    ref = iter(PackedDataset(a, S, seed=9))
    loader = DataLoader(TorchPackedDataset(core, stack_micro_batches=True), batch_size=None, num_workers=2)
    for n, batch in enumerate(loader):
        assert batch["input_ids"].shape == (3, S) and batch["cu_seqlens"].shape == (3, core.cu_len)
        assert all(v.is_contiguous() for v in batch.values())
        for i in range(3):
            want = next(ref)
            for k in want:
                assert np.array_equal(batch[k][i].numpy(), want[k]), k
        if n == 5:  # the loader is endless: six micro-batches from two workers
            break


def test_reader_is_exported_lazily_and_numpy_only():
    import subprocess
    import sys

    code = ("import sys; from winnow.tokenizer import PackedDataset, shuffle_quality; "
            "assert PackedDataset.__module__ == 'winnow.tokenizer.reader'; "
            "assert 'torch' not in sys.modules, 'the numpy core must not import torch'")
    subprocess.run([sys.executable, "-c", code], check=True)
