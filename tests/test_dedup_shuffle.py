"""The dedup shuffle layout (one file per map task, only non-empty partitions, a per-phase
partition directory), its former layout still readable, resumability, and
`winnow dedup index reshard` — without Ray (the phases run serially through the stage)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow.pipeline import cli
from winnow.pipeline.runner import SerialRuntime, run_stage
from winnow.stages.dedup import DedupStage
from winnow.stages.dedup import index as idx
from winnow.stages.dedup import phases as ph
from winnow.stages.dedup import shuffle as sh


CC_FILE = "dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"
SCHEMA = ph.BAND_SCHEMA


def band_table(seed: int, rows: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    band = rng.integers(0, 2**63, rows, dtype=np.uint64)
    return pa.table([band, np.arange(rows, dtype=np.int64) + seed * 1000, band >> np.uint64(3)], schema=SCHEMA)


def parts_of(t: pa.Table, P: int) -> np.ndarray:
    return (t.column("band").to_numpy() % np.uint64(P)).astype(np.int64)


def write_maps(folder: Path, sizes: list[int], P: int) -> tuple[list[Path], list[dict]]:
    paths, results = [], []
    for i, n in enumerate(sizes):
        t = band_table(i, n)
        p = folder / f"part-{i:05d}.arrow"
        sh.write_partitioned(p, t, parts_of(t, P), P)
        paths.append(p)
        results.append(sh.mark_done(p, {"rows": n}))
    return paths, results


def expected(sizes: list[int], P: int, j: int) -> pa.Table:
    """Partition j by hand: each map's rows of j in input order, maps in order."""
    pieces = []
    for i, n in enumerate(sizes):
        t = band_table(i, n)
        pieces.append(t.filter(pa.array(parts_of(t, P) == j)))
    return pa.concat_tables(pieces)


def test_partitions_round_trip_and_empty_partitions_cost_nothing(tmp_path: Path) -> None:
    P = 64
    sizes = [0, 3, 500, 1, 40]
    paths, _ = write_maps(tmp_path, sizes, P)
    for j in range(P):
        assert sh.read_partition(paths, j, SCHEMA).equals(expected(sizes, P, j))
    assert sh.read_all(paths, SCHEMA).num_rows == sum(sizes)
    assert all(sh.num_partitions(p) == P for p in paths)
    # a map file holds one batch per non-empty partition only
    for p, n in zip(paths, sizes):
        reader = pa.ipc.open_file(pa.memory_map(str(p)))
        assert reader.num_record_batches == len(np.unique(parts_of(band_table(paths.index(p), n), P)))
    # an empty map file's size does not grow with the partition count
    small, big = tmp_path / "e1" / "part-00000.arrow", tmp_path / "e2" / "part-00000.arrow"
    sh.write_partitioned(small, SCHEMA.empty_table(), np.zeros(0, np.int64), 2)
    sh.write_partitioned(big, SCHEMA.empty_table(), np.zeros(0, np.int64), 32768)
    assert big.stat().st_size - small.stat().st_size < 16
    assert big.stat().st_size < 2048
    with pytest.raises(ValueError, match="has 32768 partitions"):
        sh.read_partition([big], 32768, SCHEMA)


def test_directory_opens_only_the_files_holding_the_partition(tmp_path: Path) -> None:
    P = 256
    sizes = [4, 0, 7, 2, 0, 1, 3000, 5]
    paths, results = write_maps(tmp_path, sizes, P)
    without = [sh.read_partition(paths, j, SCHEMA) for j in range(P)]
    (directory,) = sh.publish_directories(results)
    assert directory == tmp_path / sh.DIRECTORY
    for j in range(P):
        before = sh.IO_COUNTERS["files_opened"]
        t = sh.read_partition(paths, j, SCHEMA)
        opened = sh.IO_COUNTERS["files_opened"] - before
        holders = sum(1 for i, n in enumerate(sizes) if (parts_of(band_table(i, n), P) == j).any())
        assert opened == 1 + holders  # the directory + the holders, never the other maps
        assert t.equals(without[j])
    # a directory that does not cover the files asked for is ignored (all files opened)
    extra = tmp_path / f"part-{len(sizes):05d}.arrow"
    t = band_table(99, 10)
    sh.write_partitioned(extra, t, parts_of(t, P), P)
    j = int(parts_of(t, P)[0])
    got = sh.read_partition([*paths, extra], j, SCHEMA)
    assert got.num_rows == without[j].num_rows + int((parts_of(t, P) == j).sum())


def test_former_layout_is_still_read(tmp_path: Path) -> None:
    """A work file of the former layout (every partition a batch, no partition metadata), e.g.
    from a run killed before an upgrade, reads the same."""
    P = 8
    t = band_table(3, 50)
    parts = parts_of(t, P)
    path = tmp_path / "part-00000.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as w:
        for j in range(P):
            w.write_table(t.filter(pa.array(parts == j)), max_chunksize=10**9) if (parts == j).any() else \
                w.write_batch(pa.RecordBatch.from_pylist([], schema=SCHEMA))
    for j in range(P):
        assert sh.read_partition([path], j, SCHEMA).equals(t.filter(pa.array(parts == j)))
    assert sh.num_partitions(path) == P
    assert sh.mark_done(path, {"x": 1}) == {"x": 1}  # no partition list to publish


def test_a_task_is_done_only_with_its_record_and_file(tmp_path: Path) -> None:
    t = band_table(1, 20)
    p = tmp_path / "part-00000.arrow"
    sh.write_partitioned(p, t, parts_of(t, 4), 4)
    assert sh.is_done(p) is None  # written but not marked: a killed task runs again
    rec = sh.mark_done(p, {"rows": 20})
    assert sh.is_done(p) == json.loads(json.dumps(rec))
    assert rec["rows"] == 20 and rec["shuffle"][0]["num_parts"] == 4
    p.unlink()
    assert sh.is_done(p) is None  # a record without its file is not done
    with pytest.raises(ValueError, match="out of range"):
        sh.write_partitioned(p, t, parts_of(t, 4) + 4, 4)


# ---- the stage, serially, on real Common Crawl text -------------------------------------------------

def cc_shards(shared: Path, d: Path, n: int, rows: slice = slice(None)) -> Path:
    docs = []
    with gzip.open(shared / CC_FILE, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            docs.append({"id": r["id"], "url": r["metadata"]["url"], "dump": "CC-MAIN-2019-30", "text": r["text"]})
    t = pa.Table.from_pylist(docs[rows])
    d.mkdir(parents=True, exist_ok=True)
    step = -(-t.num_rows // n)
    for i in range(n):
        pq.write_table(t.slice(i * step, step), d / f"part-{i:05d}.parquet")
    return d


def outputs(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/*.parquet"))}


def dedup(inp: Path | list[Path], out: Path, **cfg) -> dict:
    inputs = [str(p) for p in (inp if isinstance(inp, list) else [inp])]
    return run_stage(DedupStage(cfg), inputs, out, runtime=SerialRuntime())


def test_stage_writes_directories_and_reducers_open_fewer_files(shared_data: Path, tmp_path: Path) -> None:
    inp = cc_shards(shared_data, tmp_path / "in", 6)
    opened0 = sh.IO_COUNTERS["files_opened"]
    m = dedup(inp, tmp_path / "a", partitions=16, keep_work=True, union_find_max_edges=0)
    opened = sh.IO_COUNTERS["files_opened"] - opened0
    assert m["counters"]["exact_dup"] == 35
    work = next((tmp_path / "a" / "_work").iterdir())
    for phase in ("exact_map", "exact_reduce", "bands", "lsh", "verify_a", "cc-000", "cc-final", "attach", "elect"):
        assert (work / phase / sh.DIRECTORY).exists(), phase
    # the former layout opened every map file in every reduce: S×P for the by-shard maps, P×P else
    # (exact groups, lsh, verify ×2, star rounds ×2, final, elect, attach by P files; minhash, commit by S)
    S, P = 6, 16
    assert opened < 0.5 * (S * P + 9 * P * P + 2 * S * P)
    # the same bytes as the fast path and as one partition
    dedup(inp, tmp_path / "b", partitions=1)
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")


def test_resume_after_a_lost_directory_and_a_killed_map(shared_data: Path, tmp_path: Path) -> None:
    inp = cc_shards(shared_data, tmp_path / "in", 4)
    dedup(inp, tmp_path / "ref", partitions=8)
    out = tmp_path / "run"
    dedup(inp, out, partitions=8, keep_work=True)
    work = next((out / "_work").iterdir())
    # as if killed mid-phase: one map task's record and a phase's directory gone, outputs redone
    (work / "bands" / sh.DIRECTORY).unlink()
    sh.done_path(work / "lsh" / "part-00003.arrow").unlink()
    shutil.rmtree(out / "data")
    shutil.rmtree(out / "_progress", ignore_errors=True)
    (out / "manifest.json").unlink(missing_ok=True)
    dedup(inp, out, partitions=8)
    assert outputs(out) == outputs(tmp_path / "ref")


def test_index_reshard_gives_the_same_result(shared_data: Path, tmp_path: Path) -> None:
    """An index started at 2 partitions, resharded to 16 (and a copy to 1), deduplicates a later
    run exactly like an index built at 16 from the start."""
    first = cc_shards(shared_data, tmp_path / "first", 3, slice(0, 400))
    second = cc_shards(shared_data, tmp_path / "second", 3, slice(300, None))
    for name, parts in (("small", 2), ("wide", 16)):
        dedup(first, tmp_path / f"o1-{name}", partitions=parts, index=str(tmp_path / f"idx-{name}"))
    shutil.copytree(tmp_path / "idx-small", tmp_path / "idx-shrunk")
    assert cli.main(["dedup", "index", "reshard", str(tmp_path / "idx-small"), "--partitions", "16"]) == 0
    meta = idx.load_index(tmp_path / "idx-small")
    assert meta["partitions"] == 16 and all(s["keys_dir"] == "p-16" for s in meta["segments"])
    seg = tmp_path / "idx-small" / meta["segments"][0]["name"]
    assert not (seg / "bands").exists() and len(list((seg / "p-16" / "bands").glob("p-*.arrow"))) == 16
    assert idx.reshard(tmp_path / "idx-shrunk", 1)["partitions"] == 1
    dedup(second, tmp_path / "o2-small", index=str(tmp_path / "idx-small"))
    dedup(second, tmp_path / "o2-wide", index=str(tmp_path / "idx-wide"))
    dedup(second, tmp_path / "o2-shrunk", index=str(tmp_path / "idx-shrunk"))
    ref = outputs(tmp_path / "o2-wide")
    assert outputs(tmp_path / "o2-small") == ref
    assert outputs(tmp_path / "o2-shrunk") == ref
    rej = pq.read_table(sorted((tmp_path / "o2-wide" / "rejected").glob("*.parquet")))
    assert rej.num_rows >= 100  # the 100 documents shared with the first run are found in the index
    # the second run's segment was built at the resharded count and a third reshard sees both
    meta = idx.reshard(tmp_path / "idx-small", 4)
    assert meta["partitions"] == 4 and len(meta["segments"]) == 2


def test_reshard_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["dedup", "index", "reshard", str(tmp_path / "nope"), "--partitions", "8"]) == 2
    assert "not a dedup index" in capsys.readouterr().out
    with pytest.raises(ValueError, match="power of two"):
        idx.reshard(tmp_path, 12)
