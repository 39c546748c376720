"""Issue 14, item 3: no partial shard is ever visible; a corrupted shard (flipped byte, truncated
file) is detected by checksum when read, with an error naming the file; a full disk (a small
tmpfs this test mounts) fails the stage with a clear error, and a rerun with space completes
with the same bytes as a run that never ran out. Stages run in-process (no Ray: the subject is
the storage contract of `pipeline/shards.py` and `pipeline/runner.py`)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow.pipeline import shards as shard_io
from winnow.pipeline.runner import SerialRuntime, run_stage
from winnow.pipeline.shards import DiskFull, ShardCorrupt, read_shard, sha256_file
from winnow.stages.ingest import IngestStage


def _ingest(shared_data: Path, out: Path) -> dict:
    inputs = [str(shared_data / "dolma/cc_en_head-0091.jsonl"), str(shared_data / "dolma/cc_en_head-0174.jsonl"),
              str(shared_data / "dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz")]
    return run_stage(IngestStage({}), inputs, out, SerialRuntime())


def _data_bytes(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): sha256_file(p) for p in sorted(out.rglob("*"))
            if p.is_file() and p.parent.name in ("data", "rejected")}  # records hold the out path


def test_flipped_byte_and_truncated_shard_are_named_when_read(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ingest"
    m = _ingest(shared_data, out)
    shard = out / m["shards"][2]["path"]
    good = shard.read_bytes()
    assert read_shard(shard).num_rows == m["shards"][2]["rows"]
    # one flipped byte in the middle of the file
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x01
    shard.write_bytes(bytes(flipped))
    with pytest.raises(ShardCorrupt, match=str(shard)) as err:
        read_shard(shard, ["text"])
    assert "sha256" in str(err.value) and "manifest.json" in str(err.value)
    # truncated
    shard.write_bytes(good[: len(good) - 100])
    with pytest.raises(ShardCorrupt, match=str(shard)):
        read_shard(shard)
    # a hand-made directory has no checksums, yet a clipped file is still named, not a bare ArrowInvalid
    loose = tmp_path / "loose.parquet"
    loose.write_bytes(good[: len(good) // 3])
    with pytest.raises(ShardCorrupt, match=str(loose)):
        read_shard(loose)
    # a downstream stage reading the corrupt shard fails naming it (run_stage of a shard-map stage)
    from winnow.stages.decontaminate import DecontaminateStage

    stage = DecontaminateStage({"benchmarks": [str(shared_data / "benchmarks/gsm8k")]})
    with pytest.raises(Exception, match=str(shard)):
        run_stage(stage, [str(out)], tmp_path / "decontaminate", SerialRuntime())


def test_truncated_committed_shard_is_redone_on_rerun(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ingest"
    _ingest(shared_data, out)
    before = _data_bytes(out)
    victim = out / "data/part-00002.parquet"
    victim.write_bytes(victim.read_bytes()[:-50])
    _ingest(shared_data, out)
    assert _data_bytes(out) == before
    assert shard_io.read_json(out / "stats.json")["shards_resumed"] == 2


def test_failed_write_leaves_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "data" / "part-00000.parquet"
    v1 = pa.table({"text": ["one", "two"]})
    shard_io.write_parquet_atomic(v1, path)
    before = path.read_bytes()

    class Boom(RuntimeError):
        pass

    with pytest.raises(Boom):
        with shard_io.atomic_path(path) as tmp:
            Path(tmp).write_bytes(b"PAR1 half a file")
            raise Boom()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_temps_of_a_killed_writer_are_removed_by_the_next_write_of_that_path(tmp_path: Path) -> None:
    """A worker SIGKILLed mid-write leaves its temp file (no cleanup runs); the retried task's
    write of the same path removes it, so a run with a retried task leaves the directory as an
    undisturbed run does. Temps of other paths (another shard's writer may be alive) stay."""
    d = tmp_path / "data"
    d.mkdir()
    dead = [d / ".part-00000.parquet.k1ll3d_a.tmp", d / ".part-00000.parquet.zz9x8y7w.tmp"]
    others = [d / ".part-00001.parquet.l1ve0001.tmp", d / ".part-00000.parquet.x.abcdefgh.tmp",
              d / "part-00000.parquet.notatemp"]
    for p in dead + others:
        p.write_bytes(b"PAR1 half")
    shard_io.write_parquet_atomic(pa.table({"text": ["a", "b"]}), d / "part-00000.parquet")
    assert sorted(p.name for p in d.iterdir()) == sorted(["part-00000.parquet", *(p.name for p in others)])
    assert pq.read_table(d / "part-00000.parquet").num_rows == 2


WRITER = textwrap.dedent("""
    import sys, pyarrow as pa
    from winnow.pipeline import shards
    path, rows = sys.argv[1], int(sys.argv[2])
    i = 0
    while True:
        i += 1
        t = pa.table({"k": pa.array(range(i, i + rows)), "text": pa.array([f"row {j} of version {i}" * 20 for j in range(rows)])})
        shards.write_parquet_atomic(t, path)
        print(i, flush=True)
""")


@pytest.mark.slow
def test_sigkill_during_writes_never_leaves_a_partial_shard(tmp_path: Path) -> None:
    """A writer rewriting one shard over and over is SIGKILLed at 8 moments: the path always
    holds a whole file (a complete earlier version); the temp file a kill leaves behind is
    hidden (dot-name) and removed by the next run's `remove_stale_shards`."""
    path = tmp_path / "data" / "part-00000.parquet"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    for k in range(8):
        proc = subprocess.Popen([sys.executable, str(script), str(path), "200000"], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # one version written
        time.sleep(0.05 + 0.11 * k)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        t = pq.read_table(path)  # a whole file, never a part
        first = t.column("k")[0].as_py()
        assert t.column("k").to_pylist() == list(range(first, first + 200000))
    shard_io.remove_stale_shards(tmp_path, ["part-00000"])
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return r.returncode == 0


def test_full_disk_fails_clearly_and_rerun_with_space_completes(shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    reference = tmp_path / "reference"
    _ingest(shared_data, reference)
    disk = tmp_path / "small-disk"
    mounted = _mount_tmpfs(disk, "600k")
    try:
        if not mounted:  # not root / no CAP_SYS_ADMIN: the OS error a full disk gives, from the writer
            calls = {"n": 0}
            real = pq.write_table

            def write_table(*a, **k):
                calls["n"] += 1
                if calls["n"] == 3:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return real(*a, **k)

            monkeypatch.setattr(shard_io.pq, "write_table", write_table)
        out = disk / "ingest"
        with pytest.raises(DiskFull, match="no space left on device") as err:
            _ingest(shared_data, out)
        assert str(out) in str(err.value)
        assert not (out / "manifest.json").exists()
        # nothing partial is visible: every data file there is a whole parquet file
        for p in (out / "data").glob("*.parquet"):
            pq.ParquetFile(p)
        if mounted:
            subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        else:
            monkeypatch.undo()
        _ingest(shared_data, out)
        assert _data_bytes(out) == _data_bytes(reference)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], check=False)


def test_tokenizer_fingerprint_ignores_upstream_mtime(shared_data: Path, tmp_path: Path) -> None:
    """The stage contract keys a task reading stage shards by the sha256 their manifest records,
    so an upstream rerun that rewrites equal bytes (new mtime) changes nothing downstream.
    KNOWN BUG at the time of writing: stages/tokenizer_train.py `plan` uses `file_fingerprint`
    (path, size, mtime_ns), so touching an upstream shard retrains the tokenizer (and the byte
    comparison of two runs sees different tokenizer commit records)."""
    from winnow.stages.tokenizer_train import TokenizerStage

    out = tmp_path / "ingest"
    _ingest(shared_data, out)
    stage = TokenizerStage({"vocab_size": 2048})
    before = [t.fingerprint for t in stage.plan_tasks([str(out)])]
    for p in (out / "data").glob("*.parquet"):
        os.utime(p, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert [t.fingerprint for t in stage.plan_tasks([str(out)])] == before
