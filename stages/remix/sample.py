"""Deterministic document sampling: which documents go out, and how many times each.

Everything comes from keyed hashes of (seed, document id[, repeat]) — blake2b, never Python's
`hash()`, process ids or arrival order — so the same seed picks the same documents on any number
of workers. A group planned at e epochs (e = planned / available units) gives every document
⌊e⌋ copies and one more copy to the first documents in selection-key order until the group's
units are as close to the plan as whole documents allow without passing `max_epochs`: 2.45
epochs of equal-sized documents repeat exactly 45% of them a third time; e < 1 is a sample
without replacement.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np


def _key(parts: str) -> int:
    return int.from_bytes(hashlib.blake2b(parts.encode("utf-8"), digest_size=8).digest(), "little")


def selection_keys(seed: int, ids: Iterable[str]) -> np.ndarray:
    """Per document: the uint64 key that orders documents for the fractional extra copy."""
    return np.fromiter((_key(f"{seed}\x00select\x00{i}") for i in ids), dtype=np.uint64)


def shuffle_keys(seed: int, ids: Iterable[str], repeats: Iterable[int]) -> np.ndarray:
    """Per output row (document id, repeat index): the uint64 key that places it in the shuffle."""
    return np.fromiter((_key(f"{seed}\x00shuffle\x00{i}\x00{r}") for i, r in zip(ids, repeats)), dtype=np.uint64)


@dataclass(frozen=True)
class CopyRule:
    """How many copies each document of a group gets: `full`, plus one for documents whose
    (selection key, shard, row) sorts before `threshold` (None: nobody gets the extra copy)."""

    full: int
    threshold: tuple[int, int, int] | None
    planned_units: float      # what these copies add up to (whole documents)
    extra_docs: int           # documents with full + 1 copies

    def copies(self, keys: np.ndarray, shard: int, rows: np.ndarray) -> np.ndarray:
        """Copies per document of one shard (all rows of this group)."""
        out = np.full(len(keys), self.full, dtype=np.int64)
        if self.threshold is not None and len(keys):
            tk, ts, tr = self.threshold
            tk64 = np.uint64(tk)
            before = keys < tk64
            tie = keys == tk64
            if shard < ts:
                extra = before | tie
            elif shard == ts:
                extra = before | (tie & (rows < tr))
            else:
                extra = before
            out += extra.astype(np.int64)
        return out


def copy_rule(keys: np.ndarray, shards: np.ndarray, rows: np.ndarray, units: np.ndarray,
              planned: float, max_epochs: float) -> CopyRule:
    """The copy rule of one group from all its documents' selection keys and units.

    `planned` units are met as closely as whole documents allow, never above
    `max_epochs` × available units."""
    n = len(keys)
    total = float(units.sum()) if n else 0.0
    if n == 0 or total <= 0 or planned <= 0:
        return CopyRule(0, None, 0.0, 0)
    limit = max_epochs * total
    planned = min(planned, limit)
    full = int(math.floor(planned / total + 1e-12))
    rem = planned - full * total
    if rem <= 1e-9 * total:
        return CopyRule(full, None, full * total, 0)
    order = np.lexsort((rows, shards, keys))   # by key, then shard, then row
    cum = np.cumsum(units[order].astype(np.float64))
    k = int(np.searchsorted(cum, rem, side="right"))        # largest k with cum[k-1] <= rem
    below = cum[k - 1] if k > 0 else 0.0
    if k < n:
        above = cum[k]
        if above - rem < rem - below and full * total + above <= limit * (1 + 1e-12):
            k += 1
    if k == 0:
        return CopyRule(full, None, full * total, 0)
    if k >= n:
        return CopyRule(full + 1, None, (full + 1) * total, 0)
    j = order[k]   # the first document that does NOT get the extra copy
    return CopyRule(full, (int(keys[j]), int(shards[j]), int(rows[j])), full * total + float(cum[k - 1]), k)


def partition_of(keys: np.ndarray, partitions: int) -> np.ndarray:
    """Range partition of uint64 shuffle keys: p = ⌊key × P / 2^64⌋ (top 32 bits, exact for P < 2^32)."""
    top = (keys >> np.uint64(32)).astype(np.uint64)
    return ((top * np.uint64(partitions)) >> np.uint64(32)).astype(np.int64)
