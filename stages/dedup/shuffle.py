"""The on-disk shuffle every dedup phase uses: one Arrow IPC file per map task holding only its
non-empty partitions, plus one partition directory per phase.

A map task sorts its rows by partition and writes one record batch per partition that has rows;
the schema metadata lists which partitions those batches are (``winnow.parts``), so an empty
partition costs no bytes at all (the former layout wrote an empty batch for every partition:
≥ 192 B each, 6.3 MB for an empty file at P = 32,768). After a phase, the driver writes
``_directory.npy`` into each shuffle directory from the tasks' done records (no file is read):
for partition j, the map files that hold rows of j (sparse files listed by what they hold, dense
ones by what they lack, so the directory is as small as the records). A reduce task reads that one row of the
directory (memory-mapped) and opens only those files, taking its batch from each: O(S + P) files
created per phase, and a reducer opens the files that hold its partition, not all S.

Files appear by atomic rename (locally) or as one PUT (on object storage, `store.py`); a small
JSON beside each (written after it) records the task's counters and marks it done, which makes
every phase resumable task by task — and, on an object store without rename, is what makes a
file count: a file without its done record is rewritten. On object storage a reducer reads the
footer and its own batch of each file it opens (ranged GETs), and the few entries of the
directory it needs, never whole files. A reader without a
directory (a phase being resumed, or files of the former layout, which have no ``winnow.parts``)
opens every file and still reads only its own batch.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa

from winnow.stages.dedup import store

PARTS_KEY = b"winnow.parts"
NUM_PARTS_KEY = b"winnow.num_parts"
DIRECTORY = "_directory.npy"
_DIR_MAGIC = 0x57534844  # "WSHD"
_PART_FILE = re.compile(r"^part-(\d+)\.arrow$")
#: counters of the files opened and bytes written by this process (bench/shuffle.py reads them)
IO_COUNTERS = {"files_opened": 0, "bytes_written": 0, "files_written": 0}
#: shuffle records of the files this process wrote last (path -> record), so `mark_done` need not
#: read back a footer it just wrote (a GET on object storage); bounded, popped when used
_WRITTEN: dict[str, dict[str, Any]] = {}
_WRITTEN_MAX = 64


def _encode_parts(present: np.ndarray, num_parts: int) -> bytes:
    """The partitions a file holds, in batch order, in the shortest of three forms: ``*`` (all of
    them), the present ones joined by commas, or ``-`` and the absent ones. Bounded by about half
    a decimal number per partition; a non-empty batch costs ≥ 192 B of Arrow framing anyway."""
    if len(present) == num_parts:
        return b"*"
    if 2 * len(present) <= num_parts:
        return ",".join(str(int(p)) for p in present).encode()
    absent = np.setdiff1d(np.arange(num_parts), present)
    return b"-" + ",".join(str(int(p)) for p in absent).encode()


def _decode_parts(raw: bytes, num_parts: int) -> np.ndarray | None:
    """Inverse of `_encode_parts`; None means every partition, batch index = partition."""
    if raw == b"*":
        return None
    if raw.startswith(b"-"):
        return np.setdiff1d(np.arange(num_parts), np.array(raw[1:].split(b","), dtype=np.int64))
    if not raw:
        return np.zeros(0, np.int64)
    return np.array(raw.split(b","), dtype=np.int64)


def write_partitioned(path: str | os.PathLike[str], table: pa.Table, parts: np.ndarray, num_parts: int) -> list[int]:
    """Write `table` to `path`: one record batch per non-empty partition, in partition order.

    Rows keep their relative order inside a partition (stable sort), so output bytes depend only
    on the input. Returns the row count per partition.
    """
    parts = np.asarray(parts, dtype=np.int64)
    if len(parts) != table.num_rows:
        raise ValueError("one partition per row")
    if len(parts) and (parts.min() < 0 or parts.max() >= num_parts):
        raise ValueError("partition out of range")
    # numpy's stable sort is a radix sort for 16-bit keys: the same permutation, several times faster
    order = np.argsort(parts.astype(np.uint16) if num_parts <= 65536 else parts, kind="stable")
    counts = np.bincount(parts, minlength=num_parts)
    table = table.take(pa.array(order)) if table.num_rows else table
    bounds = np.concatenate([[0], np.cumsum(counts)])
    present = np.flatnonzero(counts)
    schema = table.schema.with_metadata({**(table.schema.metadata or {}),
                                         PARTS_KEY: _encode_parts(present, num_parts),
                                         NUM_PARTS_KEY: str(num_parts).encode()})
    table = table.replace_schema_metadata(schema.metadata)
    with store.writing(path) as tmp:
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for j in present.tolist():
                part = table.slice(int(bounds[j]), int(counts[j])).combine_chunks()
                batches = part.to_batches()
                writer.write_batch(batches[0] if len(batches) == 1 else pa.concat_batches(batches))
        IO_COUNTERS["bytes_written"] += os.path.getsize(tmp)
        IO_COUNTERS["files_written"] += 1
    if _file_number(path) is not None:
        if len(_WRITTEN) >= _WRITTEN_MAX:
            _WRITTEN.pop(next(iter(_WRITTEN)))
        _WRITTEN[str(path)] = {"path": str(path), "num_parts": num_parts,
                               "parts": schema.metadata[PARTS_KEY].decode()}
    return [int(c) for c in counts]


def write_table(path: str | os.PathLike[str], table: pa.Table) -> None:
    """An unpartitioned work file (one batch, none when empty), atomically."""
    write_partitioned(path, table, np.zeros(table.num_rows, np.int64), 1)


def _read(path: str | os.PathLike[str], fn: Any) -> Any:
    """`fn(reader)` on one shuffle file (`store.with_ipc`: memory-mapped, or ranged reads)."""
    IO_COUNTERS["files_opened"] += 1
    return store.with_ipc(path, fn)


def file_parts(reader: pa.ipc.RecordBatchFileReader) -> tuple[np.ndarray | None, int]:
    """(partition of each batch or None for "batch = partition", partition count) of a file."""
    meta = reader.schema.metadata or {}
    if PARTS_KEY not in meta:  # the former layout: every partition has a batch
        return None, reader.num_record_batches
    num = int(meta[NUM_PARTS_KEY])
    return _decode_parts(meta[PARTS_KEY], num), num


def _batch_of(reader: pa.ipc.RecordBatchFileReader, part: int, path: Any) -> pa.RecordBatch | None:
    parts, num = file_parts(reader)
    if part >= num:
        raise ValueError(f"{path}: has {num} partitions, asked for {part}")
    if parts is None:
        return reader.get_batch(part)
    k = int(np.searchsorted(parts, part))
    if k < len(parts) and parts[k] == part:
        return reader.get_batch(k)
    return None


def read_partition(paths: Iterable[str | os.PathLike[str]], part: int, schema: pa.Schema) -> pa.Table:
    """Partition `part` from every file in `paths`, concatenated in the order given.

    Opens only the files the phase's directory lists for `part` (every file when there is no
    usable directory)."""
    paths = list(paths)
    tables = []
    for p in files_holding(paths, part):
        batch = _read(p, lambda reader, p=p: _batch_of(reader, part, p))
        if batch is not None and batch.num_rows:
            tables.append(pa.Table.from_batches([batch]))
    if not tables:
        return schema.empty_table()
    out = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return out.replace_schema_metadata(schema.metadata)


def num_partitions(path: str | os.PathLike[str]) -> int:
    """How many partitions a shuffle file was written with."""
    return _read(path, lambda reader: file_parts(reader)[1])


def read_all(paths: Iterable[str | os.PathLike[str]], schema: pa.Schema) -> pa.Table:
    """Every row of every file (all partitions)."""
    tables = []
    for p in paths:
        IO_COUNTERS["files_opened"] += 1
        t = store.read_ipc(p)
        if t.num_rows:
            tables.append(t.replace_schema_metadata(schema.metadata))
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables)


# ---- the per-phase partition directory ---------------------------------------------------------

def _file_number(path: str | os.PathLike[str]) -> int | None:
    m = _PART_FILE.match(store.name(path))
    return int(m.group(1)) if m else None


def shuffle_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What the directory needs to know about one written shuffle file (read from its footer):
    its path, partition count and the partitions it holds ("*" for all)."""
    if _file_number(path) is None:
        return None
    known = _WRITTEN.pop(str(path), None)
    if known is not None:
        return known
    if not store.exists(path):
        return None
    meta = store.with_ipc(path, lambda reader: reader.schema.metadata) or {}
    if PARTS_KEY not in meta:
        return None
    return {"path": str(path), "num_parts": int(meta[NUM_PARTS_KEY]), "parts": meta[PARTS_KEY].decode()}


def publish_directories(results: Sequence[Any]) -> list[Any]:
    """Write ``_directory.npy`` into every shuffle directory the tasks' done records name.

    Called by the driver after a phase (all its tasks done): nothing is read but the records.
    Layout (int64): magic, files listed, partitions, then three lists of file numbers: the files
    holding every partition; per partition (CSR: indptr of partitions + 1, then the numbers) the
    sparse files holding it; per partition the dense files *not* holding it. A file is sparse or
    dense as its record says (`_encode_parts`), so the directory is bounded like the records."""
    by_dir: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if not isinstance(r, dict):
            continue
        for rec in r.get("shuffle", ()) or ():
            by_dir.setdefault(str(store.parent(rec["path"])), []).append(rec)
    written = []
    for d, recs in by_dir.items():
        nums = {rec["num_parts"] for rec in recs}
        if len(nums) != 1:
            continue  # files of differing partition counts: readers fall back to opening all
        P = nums.pop()
        everything: list[int] = []
        present: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        absent: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        for rec in sorted(recs, key=lambda r: r["path"]):
            f = _file_number(rec["path"])
            raw = rec["parts"].encode()
            if raw == b"*" or raw.startswith(b"-"):
                everything.append(f)
                parts = np.setdiff1d(np.arange(P), _decode_parts(raw, P)) if raw != b"*" else np.zeros(0, np.int64)
                target = absent
            else:
                parts = _decode_parts(raw, P)
                target = present
            target[0].append(parts)
            target[1].append(np.full(len(parts), f, np.int64))

        def csr(rows: list[np.ndarray], cols: list[np.ndarray]) -> list[np.ndarray]:
            r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
            c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
            order = np.lexsort((c, r))
            return [np.concatenate([[0], np.cumsum(np.bincount(r, minlength=P))]), c[order]]

        arr = np.concatenate([[_DIR_MAGIC, len(recs), P, len(everything)], sorted(everything),
                              *csr(*present), *csr(*absent)]).astype(np.int64)
        dest = store.join(d, DIRECTORY)
        store.save_int64_array(dest, arr)
        written.append(dest)
    return written


def files_holding(paths: Sequence[str | os.PathLike[str]], part: int) -> list[str | os.PathLike[str]]:
    """The members of `paths` that hold rows of partition `part`, by the directory of their
    folder; all of `paths` when the folder has no directory or it does not cover them."""
    if not paths:
        return []
    folder = str(store.parent(paths[0]))
    nums = [_file_number(p) for p in paths]
    if any(n is None for n in nums) or any(str(store.parent(p)) != folder for p in paths):
        return paths
    dpath = store.join(folder, DIRECTORY)

    def _holders(arr: Any) -> set[int] | None:
        """The file numbers holding `part`, from the few entries of the directory it needs."""
        IO_COUNTERS["files_opened"] += 1
        magic, listed, P, n_all = (int(x) for x in arr[:4])
        if magic != _DIR_MAGIC or listed < len(paths) or part >= P:
            return None
        base = 4 + n_all
        lo, hi = int(arr[base + part]), int(arr[base + part + 1])
        n_present = int(arr[base + P])
        holders = set(arr[base + P + 1 + lo:base + P + 1 + hi].tolist())
        base2 = base + P + 1 + n_present
        lo, hi = int(arr[base2 + part]), int(arr[base2 + part + 1])
        return holders | (set(arr[4:base].tolist()) - set(arr[base2 + P + 1 + lo:base2 + P + 1 + hi].tolist()))

    try:
        holders = store.with_int64_array(dpath, _holders)
    except (OSError, ValueError):  # no directory (a phase being resumed), or not a readable one
        return paths
    if holders is None:
        return paths
    return [p for p, n in zip(paths, nums) if n in holders]


# ---- task completion ----------------------------------------------------------------------------

def done_path(path: str | os.PathLike[str]) -> Any:
    """The done record beside a task's output (a `Path` locally, a URL string remotely)."""
    return str(path) + ".done.json" if store.is_remote(path) else Path(str(path) + ".done.json")


def mark_done(path: str | os.PathLike[str], counters: dict[str, Any],
              shuffles: Sequence[str | os.PathLike[str]] | None = None) -> dict[str, Any]:
    """Record that the task producing `path` finished, with its counters and, under "shuffle",
    the partitions each of its shuffle files holds (`shuffles`, default: `path`), which the
    driver turns into the phase's directory."""
    recs = [r for r in (shuffle_record(p) for p in (shuffles if shuffles is not None else [path])) if r]
    if recs:
        counters = {**counters, "shuffle": recs}
    store.write_json(done_path(path), counters)
    return counters


def is_done(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The counters of a finished task, or None if it has to run (again)."""
    d = done_path(path)
    if store.is_remote(path):
        raw = store.read_bytes(d)
        if raw is None or not store.exists(path):
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None
    if not d.exists() or not Path(path).exists():
        return None
    try:
        with open(d, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def sum_counters(records: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Add up the integer counters of several tasks."""
    out: dict[str, int] = {}
    for r in records:
        for k, v in r.items():
            if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + int(v)
    return out
