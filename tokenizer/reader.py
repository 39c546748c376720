"""`PackedDataset`: the reader a training job imports to read winnow packs (numpy core, plus a
torch `IterableDataset` wrapper when torch is importable).

Each sample is one window of the pack index: `input_ids` and `labels` (the window shifted by
one; -100 on padding), `position_ids` restarting at every document piece, and `cu_seqlens`
(int32, starts at 0, FlashAttention varlen convention) padded to a fixed length with its last
value, as Megatron's inter-document masking does, so samples stack into batches.

Order and resume (the design of Megatron's global sample index and MosaicML's elastic
determinism):
- Global order: position p of the infinite sample stream is a pure function of (packs, weights,
  seed, p): epoch e = p // N, blend slot p % N picks a pack by Megatron's greedy largest-error
  rule, and a seeded permutation of that pack's windows (one per pack, epoch and pass) picks
  the window. Nothing depends on ranks or workers.
- Rank r of W reads positions `consumed + r + k*W`; DataLoader worker w of K takes the rank's
  micro-batches m with m % K == w, which a DataLoader returns in order. So a step of global
  batch B always covers positions [step*B, (step+1)*B), whatever W and K are.
- `state_dict()` is {consumed, fingerprint, ...}: a few integers. `load_state_dict` continues
  at the exact next position, on any world size (same global batch) and any worker count.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .indexed import CorruptPackError, IndexedReader, check_vocab_fits
from .packing import PackIndex, read_pack_index

PACK_MANIFEST = "pack_manifest.json"
IGNORE_INDEX = -100


class PackMismatchError(ValueError):
    """Packs that cannot be read together or by this job: other tokenizer, seq_len, state."""


def tokenizer_sha256(tokenizer: str | os.PathLike[str]) -> str:
    """sha256 of `tokenizer.json` in a tokenizer directory (or of the given file)."""
    p = Path(tokenizer)
    if p.is_dir():
        p = p / "tokenizer.json"
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Pack:
    """One `winnow pack` output directory: its shards' `.bin`/`.idx` and pack indexes, opened and
    checked against each other and `pack_manifest.json`."""

    def __init__(self, path: str | os.PathLike[str], verify_checksums: bool = False):
        self.path = Path(path)
        mpath = self.path / PACK_MANIFEST
        if not mpath.is_file():
            raise CorruptPackError(f"{self.path}: no {PACK_MANIFEST} (not a finished winnow pack)")
        self.manifest = json.loads(mpath.read_text(encoding="utf-8"))
        m = self.manifest
        self.seq_len = int(m["seq_len"])
        self.tokenizer_sha256 = m["tokenizer_sha256"]
        self.vocab_size = int(m["vocab_size"])
        self.pad_id = int(m["pad_id"])
        self.dtype = np.dtype(m["dtype"])
        try:
            check_vocab_fits(self.vocab_size, self.dtype)
        except ValueError as exc:
            raise PackMismatchError(f"{self.path}: {exc}") from None
        self.shards: list[tuple[IndexedReader, PackIndex]] = []
        offsets = [0]
        for s in m["shards"]:
            files = {k: self.path / s[k]["path"] for k in ("bin", "idx", "pidx")}
            for k, f in files.items():
                if not f.is_file() or f.stat().st_size != s[k]["bytes"]:
                    raise CorruptPackError(f"{f}: missing or not the size its manifest records "
                                           f"({s[k]['bytes']} bytes); truncated or replaced")
                if verify_checksums and _file_sha256(f) != s[k]["sha256"]:
                    raise CorruptPackError(f"{f}: sha256 differs from the manifest")
            reader = IndexedReader(files["bin"], files["idx"])
            index = read_pack_index(files["pidx"])
            if reader.dtype != self.dtype:
                raise CorruptPackError(f"{files['idx']}: dtype {reader.dtype.name}, manifest says {self.dtype.name}")
            if index.idx_sha256 != _file_sha256(files["idx"]):
                raise CorruptPackError(f"{files['pidx']}: made for another .idx than {files['idx']}")
            if index.num_docs != len(reader) or index.seq_len != self.seq_len:
                raise CorruptPackError(f"{files['pidx']}: {index.num_docs} documents / seq_len {index.seq_len}, "
                                       f"the .idx has {len(reader)} / the manifest {self.seq_len}")
            if index.piece_doc.size and np.any(index.piece_start + index.piece_len > reader.sequence_lengths[index.piece_doc]):
                raise CorruptPackError(f"{files['pidx']}: a piece runs past its document")
            self.shards.append((reader, index))
            offsets.append(offsets[-1] + index.num_windows)
        self.window_offsets = np.asarray(offsets, dtype=np.int64)
        self._offsets_list = offsets
        self.num_windows = int(offsets[-1])
        self.max_pieces = max((ix.max_pieces() for _, ix in self.shards), default=0)
        self.fingerprint = hashlib.sha256(json.dumps(
            [self.tokenizer_sha256, self.seq_len, [s["bin"]["sha256"] for s in m["shards"]],
             [s["pidx"]["sha256"] for s in m["shards"]]]).encode()).hexdigest()

    def window(self, w: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Window w's document pieces (token arrays) and their lengths."""
        s = bisect.bisect_right(self._offsets_list, w) - 1
        reader, index = self.shards[s]
        docs, starts, lens = index.pieces(w - int(self.window_offsets[s]))
        return [reader.get(int(d), int(a), int(n)) for d, a, n in zip(docs, starts, lens)], lens


def blending_indices(weights: Sequence[float], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Megatron's `build_blending_indices` (helpers.cpp): at each slot pick the dataset whose
    share lags its weight most (error = weight * max(slot, 1) - taken), first on ties.
    Returns (dataset of each slot, how many of that dataset came before it)."""
    w = [float(x) for x in weights]
    taken = [0] * len(w)
    ds = np.empty(size, dtype=np.int16 if len(w) < 32768 else np.int32)
    nth = np.empty(size, dtype=np.int64)
    for i in range(size):
        x = max(i, 1.0)
        best, best_err = 0, w[0] * x - taken[0]
        for d in range(1, len(w)):
            err = w[d] * x - taken[d]
            if err > best_err:
                best, best_err = d, err
        ds[i] = best
        nth[i] = taken[best]
        taken[best] += 1
    return ds, nth


def _normalise_sources(sources: Any) -> tuple[list[list[str]], list[float] | None]:
    """(components, weights): a path or list of paths is one component (packs joined); a dict or
    list of (path, weight) pairs blends one component per pack."""
    if isinstance(sources, (str, os.PathLike)):
        return [[str(sources)]], None
    if isinstance(sources, Mapping):
        return [[str(k)] for k in sources], [float(v) for v in sources.values()]
    items = list(sources)
    if items and all(isinstance(x, (tuple, list)) and len(x) == 2 for x in items):
        return [[str(p)] for p, _ in items], [float(wt) for _, wt in items]
    return [[str(p) for p in items]], None


class PackedDataset:
    """Samples of one or more winnow packs, in a global order independent of ranks and workers.

    sources: a pack directory, a list of them (read as one dataset), or {dir: weight} /
        [(dir, weight)] to blend packs by weight (Megatron's largest-error rule).
    seq_len: must equal the packs' seq_len (windows are cut at pack time).
    rank, world_size: this data-parallel rank; it reads every world_size-th position.
    seed: shuffles windows; a different seed is a different dataset (fingerprint).
    samples_per_epoch: blend slots per epoch; default: the most that repeats no pack (blend),
        all windows (single dataset).
    max_epochs: how often each pack may be repeated within one epoch of the blend (default 1);
        a weight that needs more is an error, not a silent repeat.
    tokenizer: a tokenizer dir/file or its sha256; packs made with another tokenizer are refused.
    """

    def __init__(self, sources: Any, seq_len: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 samples_per_epoch: int | None = None, max_epochs: float | Sequence[float] = 1,
                 tokenizer: str | os.PathLike[str] | None = None, verify_checksums: bool = False,
                 micro_batch: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        comps, weights = _normalise_sources(sources)
        if not comps or not all(comps):
            raise ValueError("no packs given")
        self.components = [[Pack(p, verify_checksums) for p in group] for group in comps]
        packs = [p for g in self.components for p in g]
        shas = {p.tokenizer_sha256 for p in packs}
        if len(shas) > 1:
            raise PackMismatchError(f"packs made with different tokenizers: {sorted(shas)}")
        if tokenizer is not None:
            want = str(tokenizer) if (isinstance(tokenizer, str) and len(tokenizer) == 64
                                      and not os.path.exists(tokenizer)) else tokenizer_sha256(tokenizer)
            if want not in shas:
                raise PackMismatchError(f"pack tokenizer sha256 {next(iter(shas))} != this job's tokenizer {want}")
        for p in packs:
            if p.seq_len != seq_len:
                raise PackMismatchError(f"{p.path}: packed for seq_len {p.seq_len}, the reader asks {seq_len}")
        self.seq_len = seq_len
        self.rank, self.world_size, self.seed = rank, world_size, int(seed)
        self.micro_batch = int(micro_batch)
        self.pad_id = packs[0].pad_id
        self.cu_len = max(p.max_pieces for p in packs) + 2  # pieces + padding segment + leading 0
        self.sizes = [sum(p.num_windows for p in g) for g in self.components]
        if any(n == 0 for n in self.sizes):
            raise ValueError("a pack without windows cannot be read")
        n_comp = len(self.components)
        if weights is None:
            weights = [1.0] if n_comp == 1 else None
        if weights is None or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("weights must be non-negative and not all zero")
        total = sum(weights)
        self.weights = [w / total for w in weights]
        caps = list(max_epochs) if isinstance(max_epochs, Sequence) else [max_epochs] * n_comp
        self.max_epochs = [float(c) for c in caps]
        if samples_per_epoch is None:
            samples_per_epoch = self.sizes[0] if n_comp == 1 else int(min(
                self.sizes[d] * self.max_epochs[d] / self.weights[d] for d in range(n_comp) if self.weights[d] > 0))
        self.samples_per_epoch = int(samples_per_epoch)
        if self.samples_per_epoch < 1:
            raise ValueError("samples_per_epoch must be >= 1")
        self.blend_ds, self.blend_nth = blending_indices(self.weights, self.samples_per_epoch)
        counts = np.bincount(self.blend_ds, minlength=n_comp)
        for d in range(n_comp):
            allowed = self.sizes[d] * self.max_epochs[d]
            if counts[d] > allowed:
                raise ValueError(f"weight {self.weights[d]:.4f} of {comps[d]} needs {counts[d]} samples per epoch "
                                 f"from {self.sizes[d]} windows: {counts[d] / self.sizes[d]:.2f} passes, more than "
                                 f"its max_epochs {self.max_epochs[d]:g}")
        self.fingerprint = hashlib.sha256(json.dumps(
            [[p.fingerprint for p in g] for g in self.components]
            + [self.weights, self.seed, self.samples_per_epoch, self.seq_len]).encode()).hexdigest()[:32]
        self._arange = np.arange(seq_len + 1, dtype=np.int64)
        self._buf = np.empty(seq_len + 1, dtype=np.int64)  # one window, reused
        self._perms: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()
        self.start = 0        # global position this iterator started from (a multiple of world_size)
        self.yielded = 0      # samples this rank has yielded since `start`

    # --- global order ------------------------------------------------------------------------
    def _perm(self, d: int, epoch: int, npass: int) -> np.ndarray:
        key = (d, epoch, npass)
        perm = self._perms.get(key)
        if perm is None:
            rng = np.random.default_rng([self.seed, d, epoch, npass])
            perm = rng.permutation(self.sizes[d])
            self._perms[key] = perm
            while len(self._perms) > 4 * len(self.components) + 4:
                self._perms.popitem(last=False)
        else:
            self._perms.move_to_end(key)
        return perm

    def sample_id(self, position: int) -> tuple[int, int]:
        """(component, window) at global stream position `position`."""
        epoch, slot = divmod(int(position), self.samples_per_epoch)
        d = int(self.blend_ds[slot])
        k = int(self.blend_nth[slot])
        npass, i = divmod(k, self.sizes[d])
        return d, int(self._perm(d, epoch, npass)[i])

    def global_id(self, position: int) -> int:
        """A single integer naming the window at `position` across all components."""
        d, w = self.sample_id(position)
        return int(sum(self.sizes[:d])) + w

    def _component_window(self, d: int, w: int) -> tuple[list[np.ndarray], np.ndarray]:
        for p in self.components[d]:
            if w < p.num_windows:
                return p.window(w)
            w -= p.num_windows
        raise IndexError(w)

    def sample(self, position: int) -> dict[str, np.ndarray]:
        """The sample at global position `position`."""
        S = self.seq_len
        out = {"input_ids": np.empty(S, dtype=np.int64), "labels": np.empty(S, dtype=np.int64),
               "position_ids": np.empty(S, dtype=np.int64), "cu_seqlens": np.empty(self.cu_len, dtype=np.int32)}
        self.sample_into(position, out["input_ids"], out["labels"], out["position_ids"], out["cu_seqlens"])
        return out

    def sample_into(self, position: int, inp: np.ndarray, labels: np.ndarray, pos: np.ndarray, cu: np.ndarray) -> None:
        """Write the sample at `position` into given arrays: `inp`, `labels`, `pos` (seq_len
        each), `cu` (cu_len). Slice copies over the few pieces of a window: a handful of numpy
        calls whatever seq_len is."""
        pieces, _ = self._component_window(*self.sample_id(position))
        S = self.seq_len
        ar = self._arange
        buf = self._buf
        cu[0] = 0
        n, k = 0, 1
        for piece in pieces:
            a, n = n, n + piece.size
            buf[a:n] = piece
            e = min(n, S)
            if e > a:
                pos[a:e] = ar[:e - a]   # positions restart at each document piece
            if n < S:
                cu[k] = n
                k += 1
        if n < S + 1:
            buf[n:] = self.pad_id
        if n < S:
            pos[n:] = ar[:S - n]        # padding is a segment of its own
        cu[k:] = S
        inp[:] = buf[:S]
        labels[:] = buf[1:]
        if n < S + 1:
            labels[max(n - 1, 0):] = IGNORE_INDEX

    # --- iteration and state -------------------------------------------------------------------
    def positions(self, worker: int = 0, num_workers: int = 1) -> Iterator[int]:
        """Global positions this rank (and DataLoader worker) reads, from the current state."""
        mb = self.micro_batch
        j = worker * mb
        while True:
            for t in range(mb):
                yield self.start + self.rank + (j + t) * self.world_size
            j += num_workers * mb

    def iter_samples(self, worker: int = 0, num_workers: int = 1) -> Iterator[dict[str, np.ndarray]]:
        for p in self.positions(worker, num_workers):
            sample = self.sample(p)
            if num_workers == 1:
                self.yielded += 1
            yield sample

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self.iter_samples()

    def state_dict(self, samples_seen: int | None = None) -> dict[str, Any]:
        """Where to continue: call it at a step boundary (every rank has read the same number).
        With DataLoader workers the iterating copies live in other processes; pass the number
        of samples this rank has taken from the loader as `samples_seen`."""
        seen = self.yielded if samples_seen is None else int(samples_seen)
        return {"version": 1, "fingerprint": self.fingerprint, "consumed": self.start + seen * self.world_size,
                "seed": self.seed, "samples_per_epoch": self.samples_per_epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("fingerprint") != self.fingerprint:
            raise PackMismatchError("state was saved for another dataset (packs, weights, seed or seq_len differ)")
        consumed = int(state["consumed"])
        if consumed % self.world_size:
            raise ValueError(f"consumed {consumed} is not a multiple of world size {self.world_size}: "
                             "the global batch must be divisible by the number of ranks")
        self.start, self.yielded = consumed, 0

    @property
    def epoch(self) -> int:
        return (self.start + self.yielded * self.world_size) // self.samples_per_epoch


def shuffle_quality(ids: Sequence[int]) -> dict[str, float]:
    """Entropy (bits) of the gaps between consecutive sample ids, as MosaicML's shuffle simulator
    measures it; `ratio` compares it to the same figure of a uniform random permutation."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size < 2:
        return {"entropy_bits": 0.0, "random_bits": 0.0, "ratio": 1.0}

    def ent(x: np.ndarray) -> float:
        _, c = np.unique(np.diff(x), return_counts=True)
        p = c / c.sum()
        return float(-(p * np.log2(p)).sum())

    ref = np.random.default_rng(12345).permutation(ids)
    e, r = ent(ids), ent(ref)
    return {"entropy_bits": e, "random_bits": r, "ratio": e / r if r else 1.0}


_TORCH_CLASS: Any = None


def _torch_packed_dataset_class() -> Any:
    """Build the torch wrapper class on first use, so importing the reader never imports torch."""
    global _TORCH_CLASS
    if _TORCH_CLASS is not None:
        return _TORCH_CLASS
    import torch
    from torch.utils.data import IterableDataset, get_worker_info

    class TorchPackedDataset(IterableDataset):
        """`PackedDataset` as a torch `IterableDataset`: DataLoader worker w of K yields the
        rank's micro-batches m with m % K == w, so `DataLoader(ds, batch_size=micro_batch,
        num_workers=K)` returns exactly the rank's order, no sample twice. With
        `stack_micro_batches=True` each worker yields stacked micro-batches (faster: one
        transfer per batch); use `DataLoader(ds, batch_size=None, num_workers=K)` then."""

        def __init__(self, dataset: PackedDataset, stack_micro_batches: bool = False):
            self.dataset = dataset
            self.stack = stack_micro_batches

        def __iter__(self) -> Iterator[dict[str, Any]]:
            info = get_worker_info()
            worker, n = (info.id, info.num_workers) if info is not None else (0, 1)
            if not self.stack:
                for s in self.dataset.iter_samples(worker, n):
                    yield {k: torch.from_numpy(v) for k, v in s.items()}
                return
            # whole micro-batches built in place in one shared tensor (one transfer per batch
            # instead of one per array and sample): use DataLoader(batch_size=None)
            ds = self.dataset
            mb, S = ds.micro_batch, ds.seq_len
            positions = ds.positions(worker, n)
            while True:
                tok = torch.empty((3, mb, S), dtype=torch.int64)
                cu = torch.empty((mb, ds.cu_len), dtype=torch.int32)
                t, c = tok.numpy(), cu.numpy()
                for i in range(mb):
                    ds.sample_into(next(positions), t[0, i], t[1, i], t[2, i], c[i])
                yield {"input_ids": tok[0], "labels": tok[1], "position_ids": tok[2], "cu_seqlens": cu}

        def state_dict(self, samples_seen: int) -> dict[str, Any]:
            return self.dataset.state_dict(samples_seen)

        def load_state_dict(self, state: Mapping[str, Any]) -> None:
            self.dataset.load_state_dict(state)

    _TORCH_CLASS = TorchPackedDataset
    return _TORCH_CLASS


def __getattr__(name: str) -> Any:
    if name == "TorchPackedDataset":  # needs torch; built lazily
        return _torch_packed_dataset_class()
    raise AttributeError(name)
