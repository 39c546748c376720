"""Deterministic document sampling: which documents go out, and how many times each.

Everything comes from keyed hashes of (seed, document id[, repeat]) — xxh3-64 seeded from the
seed through blake2b, never Python's `hash()`, process ids or arrival order — so the same seed picks the same documents on any number
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
from xxhash import xxh3_64_intdigest


def _seed64(seed: int, purpose: str) -> int:
    """A 64-bit xxh3 seed from the user's seed and the key's purpose (selection vs shuffle keys
    must not be the same numbers)."""
    return int.from_bytes(hashlib.blake2b(f"{seed}\x00{purpose}".encode(), digest_size=8).digest(), "little")


def selection_keys(seed: int, ids: Iterable[str]) -> np.ndarray:
    """Per document: the uint64 key (keyed xxh3-64 of the id) that orders documents for the
    fractional extra copy and for downsampling."""
    s = _seed64(seed, "select")
    return np.fromiter((xxh3_64_intdigest(i.encode("utf-8"), s) for i in ids), dtype=np.uint64)


def shuffle_keys(seed: int, ids: Iterable[str], repeats: Iterable[int]) -> np.ndarray:
    """Per output row (document id, repeat index): the uint64 key (keyed xxh3-64) that places it
    in the global shuffle."""
    s = _seed64(seed, "shuffle")
    return np.fromiter((xxh3_64_intdigest(f"{i}\x00{r}".encode("utf-8"), s) for i, r in zip(ids, repeats)),
                       dtype=np.uint64)


#: how many documents after the key-order prefix may be looked at to fill the last gap
FILL_WINDOW = 4096


@dataclass(frozen=True)
class CopyRule:
    """How many copies each document of a group gets: `full`, plus one for documents whose
    (selection key, shard, row) sorts before `threshold` (None: no prefix), plus one for the few
    documents of `fill` ((shard, row) pairs just after the prefix that fit the last gap)."""

    full: int
    threshold: tuple[int, int, int] | None
    planned_units: float      # what these copies add up to (whole documents)
    extra_docs: int           # documents with full + 1 copies
    fill: frozenset = frozenset()

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
        if self.fill and len(keys):
            mine = [r for s, r in self.fill if s == shard]
            if mine:
                out += np.isin(rows, np.asarray(mine, dtype=rows.dtype)).astype(np.int64)
        return out


def copy_rule(keys: np.ndarray, shards: np.ndarray, rows: np.ndarray, units: np.ndarray,
              planned: float, max_epochs: float) -> CopyRule:
    """The copy rule of one group from all its documents' selection keys and units.

    Every document gets ⌊e⌋ copies; the extra copy goes to the longest prefix of documents in
    selection-key order that stays within the plan, then to the next documents (in key order,
    within `FILL_WINDOW`) that still fit the gap — so a large document at the prefix's end does
    not cost the group its share; and one more if overshooting by it is closer to the plan than
    stopping short. Never above `max_epochs` × available units."""
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
    if k >= n:
        return CopyRule(full + 1, None, (full + 1) * total, 0)
    got = float(cum[k - 1]) if k > 0 else 0.0
    gap = rem - got
    fill = []
    after = order[k + 1:k + 1 + FILL_WINDOW]                 # order[k] itself did not fit
    # the gap only shrinks, so a document larger than it now never fits: walk only the others
    taken_pos: list[int] = []
    for pos in after[units[after].astype(np.float64) <= gap].tolist() if gap > 0 else []:
        if gap <= 0:
            break
        u = float(units[pos])
        if u <= gap:
            fill.append((int(shards[pos]), int(rows[pos])))
            taken_pos.append(pos)
            gap -= u
            got += u
    if gap > 0:
        # one more document if overshooting by it is closer to the plan than stopping short
        # (never past max_epochs): the smallest of the window that did not fit (ties: the
        # smaller key, then the first in key order)
        window = order[k:k + 1 + FILL_WINDOW]
        if taken_pos:
            window = window[~np.isin(window, np.asarray(taken_pos, dtype=window.dtype))]
        if len(window):
            best = int(window[np.lexsort((keys[window], units[window].astype(np.float64)))[0]])
            u = float(units[best])
            if u - gap < gap and full * total + got + u <= limit * (1 + 1e-12):
                fill.append((int(shards[best]), int(rows[best])))
                got += u
    threshold = None
    if k > 0:
        j = order[k]   # the first document that does NOT get the extra copy by the prefix
        threshold = (int(keys[j]), int(shards[j]), int(rows[j]))
    return CopyRule(full, threshold, full * total + got, k + len(fill), frozenset(fill))


def partition_of(keys: np.ndarray, partitions: int) -> np.ndarray:
    """Range partition of uint64 shuffle keys: p = ⌊key × P / 2^64⌋ (top 32 bits, exact for P < 2^32)."""
    top = (keys >> np.uint64(32)).astype(np.uint64)
    return ((top * np.uint64(partitions)) >> np.uint64(32)).astype(np.int64)
