"""The stage contract, enforced by the runner: atomic shards, manifests that add up, resume after a
kill with byte-identical output, the same bytes with 1 or 2 workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from winnow.pipeline import shards as shard_io
from winnow.pipeline.runner import RayRuntime, run_stage
from winnow.stages.base import ShardMapStage, ShardOutput, ShardTask
from winnow.stages.ingest import IngestStage

REPO = Path(__file__).resolve().parents[1]


def real_inputs(shared: Path) -> list[str]:
    return [str(p) for p in [*sorted((shared / "resiliparse").glob("*.warc.gz")),
                             shared / "whirlwind/whirlwind.warc.gz", shared / "whirlwind/whirlwind.warc.wet.gz",
                             shared / "cc_net/sample.warc.txt", shared / "dolma/sample-0000.warc.gz",
                             shared / "dolma/cc_en_head-0091.jsonl"]]


def shard_digests(stage_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(stage_dir)): shard_io.sha256_file(p)
            for sub in ("data", "rejected") for p in sorted((stage_dir / sub).glob("*.parquet"))}


def test_manifest_adds_up_and_shards_are_committed(ray_local, shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ingest"
    m = run_stage(IngestStage(), real_inputs(shared_data), out, RayRuntime(workers=2))
    assert m["input"] == m["kept"] + m["rejected"] > 0
    assert sum(m["reasons"].values()) == m["rejected"]
    assert len(m["shards"]) == len(real_inputs(shared_data))
    for entry in m["shards"] + m["rejected_shards"]:
        p = out / entry["path"]
        assert shard_io.sha256_file(p) == entry["sha256"] and p.stat().st_size == entry["bytes"]
    assert sum(s["rows"] for s in m["shards"]) == m["kept"]
    assert sum(s["rows"] for s in m["rejected_shards"]) == m["rejected"]
    assert not list(out.rglob("*.tmp")), "no temp files may be left behind"
    assert shard_io.read_json(out / "manifest.json") == m
    # a finished stage is not redone
    again = run_stage(IngestStage(), real_inputs(shared_data), out, RayRuntime(workers=2))
    assert again == m


def test_same_bytes_with_one_or_two_workers(ray_local, shared_data: Path, tmp_path: Path) -> None:
    run_stage(IngestStage(), real_inputs(shared_data), tmp_path / "w1", RayRuntime(workers=1))
    run_stage(IngestStage(), real_inputs(shared_data), tmp_path / "w2", RayRuntime(workers=2))
    d1, d2 = shard_digests(tmp_path / "w1"), shard_digests(tmp_path / "w2")
    assert d1 == d2 and len(d1) == 2 * len(real_inputs(shared_data))


def test_resume_redoes_only_uncommitted_shards(ray_local, shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ingest"
    inputs = real_inputs(shared_data)
    run_stage(IngestStage(), inputs, out, RayRuntime(workers=2))
    before = shard_digests(out)
    # what a kill leaves: no manifest, shard 1 with data but no commit record, shard 3 gone, a temp file
    (out / "manifest.json").unlink()
    (out / "_progress/part-00001.json").unlink()
    for p in (out / "data/part-00003.parquet", out / "rejected/part-00003.parquet", out / "_progress/part-00003.json"):
        p.unlink()
    (out / "data/.part-00004.parquet.abc.tmp").write_bytes(b"half a file")
    m = run_stage(IngestStage(), inputs, out, RayRuntime(workers=2))
    stats = shard_io.read_json(out / "stats.json")
    assert stats["shards_resumed"] == len(inputs) - 2
    assert shard_digests(out) == before
    assert m["input"] == m["kept"] + m["rejected"]


def test_changed_config_does_not_reuse_old_shards(ray_local, shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ingest"
    inputs = real_inputs(shared_data)[:3]
    a = run_stage(IngestStage(), inputs, out, RayRuntime(workers=2))
    b = run_stage(IngestStage({"extractor": "trafilatura"}), inputs, out, RayRuntime(workers=2))
    assert a["config_hash"] != b["config_hash"]
    assert shard_io.read_json(out / "stats.json")["shards_resumed"] == 0
    assert b["config"]["extractor"] == "trafilatura"


class LosesARow(ShardMapStage):
    """A broken stage: drops one row without rejecting it."""

    name = "loses_a_row"

    def process_shard(self, task: ShardTask) -> ShardOutput:
        t = pa.table({"id": ["a", "b"]})
        return ShardOutput(kept=t.slice(0, 1), rejected=shard_io.empty_rejected(), input_rows=2)


def test_a_lost_document_fails_loudly(ray_local, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"id": ["a", "b"]}), src / "x.parquet")
    with pytest.raises(Exception, match="kept 1 \\+ rejected 0 != input 2"):
        run_stage(LosesARow(), [str(src)], tmp_path / "out", RayRuntime(workers=1))
    assert not (tmp_path / "out/manifest.json").exists()


def test_unfinished_stage_output_is_refused_as_input(tmp_path: Path) -> None:
    (tmp_path / "_progress").mkdir()
    with pytest.raises(shard_io.NotAStageOutput, match="unfinished"):
        shard_io.input_shards(tmp_path)


@pytest.mark.slow
def test_killed_run_resumes_to_identical_output(shared_data: Path, tmp_path: Path) -> None:
    """SIGKILL a real `winnow ingest` part-way, rerun it, compare with an uninterrupted run."""
    src = tmp_path / "src"
    src.mkdir()
    jsonl = shared_data / "dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"
    for i in range(16):
        os.symlink(jsonl, src / f"copy-{i:02d}.jsonl.gz")
    winnow = [sys.executable, "-m", "winnow.pipeline.cli"]
    args = ["ingest", str(src / "*.jsonl.gz"), "--workers", "1", "--extractor", "resiliparse"]
    env = {**os.environ, "RAY_ADDRESS": ""}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(winnow + args + ["--out", str(killed)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((killed / "_progress").glob("*.json"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = len(list((killed / "_progress").glob("*.json")))
    assert 3 <= committed < 16, "the kill must land part-way"
    assert not (killed / "manifest.json").exists()
    subprocess.run(winnow + args + ["--out", str(killed)], cwd=REPO, env=env, check=True, capture_output=True)
    clean = tmp_path / "clean"
    subprocess.run(winnow + args + ["--out", str(clean)], cwd=REPO, env=env, check=True, capture_output=True)
    assert shard_digests(killed) == shard_digests(clean)
    assert shard_io.read_json(killed / "stats.json")["shards_resumed"] >= committed
    mk, mc = shard_io.read_json(killed / "manifest.json"), shard_io.read_json(clean / "manifest.json")
    assert (mk["input"], mk["kept"], mk["rejected"]) == (mc["input"], mc["kept"], mc["rejected"]) == (16 * 697, mk["kept"], mk["rejected"])


class FailsOnShardOne(ShardMapStage):
    """Raises on shard 1 always; kills its own worker process once on shard 2 (marker file)."""

    name = "flaky"

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    def process_shard(self, task: ShardTask) -> ShardOutput:
        if task.index == 1 and not Path(self.marker + ".raise-off").exists():
            raise ValueError("bad row in shard one")
        if task.index == 2 and not Path(self.marker).exists():
            Path(self.marker).write_text("crashed once")
            os._exit(1)  # a native crash: the worker process dies without a Python exception
        t = pa.table({"id": ["a", "b"]})
        return ShardOutput(kept=t, rejected=shard_io.empty_rejected(), input_rows=2)


def test_stage_errors_name_the_shard_and_dead_workers_are_retried(ray_local, tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    from winnow.pipeline.runner import ShardFailed

    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        pq.write_table(pa.table({"id": ["a", "b"]}), src / f"in-{i}.parquet")
    marker = str(tmp_path / "marker")
    with pytest.raises(Exception, match=r"flaky: shard part-00001 \(input .*in-1.parquet\) failed: ValueError: bad row") as exc:
        run_stage(FailsOnShardOne(marker), [str(src)], tmp_path / "out", RayRuntime(workers=2))
    assert isinstance(exc.value, ShardFailed) or isinstance(getattr(exc.value, "cause", None), ShardFailed)
    Path(marker + ".raise-off").write_text("")
    m = run_stage(FailsOnShardOne(marker), [str(src)], tmp_path / "out", RayRuntime(workers=2))
    assert Path(marker).read_text() == "crashed once"  # shard 2's worker died once and was retried
    assert m["input"] == m["kept"] == 8


def test_workers_is_what_one_task_can_get_and_the_window_follows_the_cluster(ray_local) -> None:
    """`workers` (the CPUs a stage may ask for in one task) never exceeds the largest node, even
    with a larger cap; without a cap, tasks in flight follow the cluster's CPUs now (at least
    MIN_IN_FLIGHT), with a cap they are the cap."""
    from winnow.pipeline.runner import MIN_IN_FLIGHT

    cpus = int(ray_local.cluster_resources()["CPU"])
    assert RayRuntime(workers=cpus + 6, show_progress=False).workers == cpus
    assert RayRuntime(workers=1, show_progress=False).workers == 1
    free = RayRuntime(show_progress=False)
    assert free.workers == cpus
    assert free._window() == max(MIN_IN_FLIGHT, 2 * cpus)
    assert RayRuntime(workers=3, show_progress=False)._window() == 3
    # every result comes back in order, with more tasks than CPUs and than a small cap
    capped = RayRuntime(workers=2, show_progress=False)
    assert capped.map_tasks(pow, [(i, 2) for i in range(9)], desc="squares") == [i * i for i in range(9)]
    assert sum(capped.tasks_by_node.values()) == 9


class ReportsItsMemory(ShardMapStage):
    """Writes the memory Ray assigned to its shard task into a counter."""

    name = "reports_its_memory"
    task_memory_mb = 96

    def process_shard(self, task: ShardTask) -> ShardOutput:
        import ray  # a test stage may; winnow's stages never import ray

        mem = ray.get_runtime_context().get_assigned_resources().get("memory", 0)
        t = pa.table({"id": ["a"]})
        return ShardOutput(kept=t, rejected=shard_io.empty_rejected(), input_rows=1,
                           counters={"assigned_memory_mb": int(mem) >> 20})


def test_shard_tasks_ask_ray_for_their_stages_memory(ray_local, tmp_path: Path) -> None:
    """Each shard task asks Ray for `task_memory_mb` (what the autoscaler sizes nodes by); on a
    Ray this process started, a request larger than the machine's memory resource is capped so
    the stage runs instead of waiting for a node that never comes."""
    import pyarrow.parquet as pq

    from winnow.stages.filter import FilterStage

    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        pq.write_table(pa.table({"id": [f"r{i}"]}), src / f"x{i}.parquet")
    rt = RayRuntime(workers=2, show_progress=False)
    m = run_stage(ReportsItsMemory(), [str(src)], tmp_path / "out", rt)
    assert m["counters"]["assigned_memory_mb"] == 2 * 96
    assert FilterStage.task_memory_mb > ShardMapStage.task_memory_mb
    have = int(ray_local.cluster_resources()["memory"])

    class Huge(ReportsItsMemory):
        task_memory_mb = (have >> 20) * 4

    assert rt.task_memory(Huge()) == have
    assert rt.task_memory(ReportsItsMemory()) == 96 << 20
