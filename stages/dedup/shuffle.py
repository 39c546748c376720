"""The on-disk shuffle every dedup phase uses: one Arrow IPC file per map task, one record batch
per reduce partition.

A map task sorts its rows by partition and writes batch j = the rows for partition j (empty
batches included, so batch index = partition). A reduce task memory-maps every map file and takes
batch j: no all-to-all in RAM, no coordinator, and a reader never sees half a file because each
file appears by atomic rename. A small JSON beside each file (written after it) records the task's
counters and marks it done, which is what makes every phase resumable task by task.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa

from winnow.pipeline import shards as shard_io
from winnow.pipeline.shards import write_json_atomic


def write_partitioned(path: str | os.PathLike[str], table: pa.Table, parts: np.ndarray, num_parts: int) -> list[int]:
    """Write `table` to `path` with batch j holding the rows whose `parts` value is j.

    Rows keep their relative order inside a partition (stable sort), so output bytes depend only
    on the input. Returns the row count per partition.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = np.asarray(parts, dtype=np.int64)
    if len(parts) != table.num_rows:
        raise ValueError("one partition per row")
    if len(parts) and (parts.min() < 0 or parts.max() >= num_parts):
        raise ValueError("partition out of range")
    order = np.argsort(parts, kind="stable")
    counts = np.bincount(parts, minlength=num_parts)
    table = table.take(pa.array(order)) if table.num_rows else table
    bounds = np.concatenate([[0], np.cumsum(counts)])
    with shard_io.atomic_path(path) as tmp:
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            for j in range(num_parts):
                part = table.slice(int(bounds[j]), int(counts[j]))
                batch = part.combine_chunks().to_batches()
                if batch:
                    writer.write_batch(batch[0] if len(batch) == 1 else pa.concat_batches(batch))
                else:
                    writer.write_batch(pa.RecordBatch.from_pylist([], schema=table.schema))
    return [int(c) for c in counts]


def write_table(path: str | os.PathLike[str], table: pa.Table) -> None:
    """An unpartitioned work file (one batch), atomically."""
    write_partitioned(path, table, np.zeros(table.num_rows, np.int64), 1)


def read_partition(paths: Iterable[str | os.PathLike[str]], part: int, schema: pa.Schema) -> pa.Table:
    """Partition `part` from every file in `paths`, concatenated in the order given."""
    tables = []
    for p in paths:
        reader = pa.ipc.open_file(pa.memory_map(str(p), "r"))
        if part >= reader.num_record_batches:
            raise ValueError(f"{p}: has {reader.num_record_batches} partitions, asked for {part}")
        batch = reader.get_batch(part)
        if batch.num_rows:
            tables.append(pa.Table.from_batches([batch]))
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def num_partitions(path: str | os.PathLike[str]) -> int:
    """How many partitions (record batches) a shuffle file holds."""
    return pa.ipc.open_file(pa.memory_map(str(path), "r")).num_record_batches


def read_all(paths: Iterable[str | os.PathLike[str]], schema: pa.Schema) -> pa.Table:
    """Every row of every file (all partitions)."""
    tables = []
    for p in paths:
        t = pa.ipc.open_file(pa.memory_map(str(p), "r")).read_all()
        if t.num_rows:
            tables.append(t)
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables)


def done_path(path: str | os.PathLike[str]) -> Path:
    return Path(str(path) + ".done.json")


def mark_done(path: str | os.PathLike[str], counters: dict[str, Any]) -> dict[str, Any]:
    """Record that the task producing `path` finished, with its counters."""
    write_json_atomic(counters, done_path(path))
    return counters


def is_done(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The counters of a finished task, or None if it has to run (again)."""
    d = done_path(path)
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
