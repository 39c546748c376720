"""Dedup with its output, its `_work` shuffle files and its cross-dump index on object storage,
against a real S3 server on loopback (moto's, behind the fault proxy of `s3_server.py`).

Every run is a fresh process with the server's environment (`AWS_ENDPOINT_URL`, credentials), as
a Ray job would be; its Ray workers inherit it. Nothing is shared through a local disk but the
input shards (local parquet files, as on a cluster whose inputs sit on a mounted volume).

Covered: real Common Crawl shards deduplicated into `s3://` on Ray byte-identical, object by
object (sha256), to the same run into a local directory, with PUTs that fail once on the way;
the index on S3 reused by a second run (its documents' signatures read from the index, not
recomputed) and re-partitioned in place; a run killed mid-stage and resumed from its `_work`
objects, ending byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pytest

from s3_server import BUCKET, S3, kill_when, remote_digests, s3  # noqa: F401 - s3 is the fixture
from test_dedup_stage import cc_table, write_shards
from winnow.pipeline import shards as shard_io

REPO = Path(__file__).resolve().parents[1]

#: One dedup run in a fresh process, through the runner (`run_stage`), into a local directory or
#: an object-store URL alike.
DRIVER = textwrap.dedent("""
    import json, sys
    from winnow.pipeline.runner import RayRuntime, SerialRuntime, run_stage
    from winnow.stages.dedup import DedupStage
    out, runtime, cfg, *inputs = sys.argv[1:]
    rt = RayRuntime(workers=2, show_progress=False) if runtime == "ray" else SerialRuntime()
    m = run_stage(DedupStage(json.loads(cfg)), inputs, out, rt)
    print("RESULT " + json.dumps({"input": m["input"], "kept": m["kept"], "rejected": m["rejected"],
                                  "counters": m["counters"]}))
""")


def dedup(s3: S3, out: str, inputs: list[Path] | list[str], runtime: str = "serial", env: dict[str, str] | None = None,
          **cfg: object) -> dict:
    proc = subprocess.run([sys.executable, "-c", DRIVER, out, runtime, json.dumps(cfg), *map(str, inputs)],
                          cwd=REPO, env=env or s3.env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])


def local_files(stage_dir: Path, subs: tuple[str, ...] = ("data", "rejected")) -> dict[str, bytes]:
    return {str(p.relative_to(stage_dir)): p.read_bytes()
            for sub in subs for p in sorted((stage_dir / sub).glob("*")) if p.is_file()}


def sha(files: dict[str, bytes]) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}


@pytest.fixture
def own_tmp() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="winnow-dedup-s3-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def cc(shared_data: Path) -> pa.Table:
    """The 697 real CC-MAIN-2019-30 documents (35 exact duplicates among them)."""
    return cc_table(shared_data)


@pytest.mark.slow
def test_dedup_to_s3_on_ray_matches_a_local_output(s3: S3, cc: pa.Table, own_tmp: Path) -> None:
    """Output and `_work` on S3, two Ray workers; the shard data object of shard 1 and the commit
    record of shard 2 answer their first PUT with 503 SlowDown (botocore's own retries off)."""
    inp = write_shards(cc, own_tmp / "in", 3)
    out = f"s3://{BUCKET}/ray/dedup"
    flaky = {f"/{BUCKET}/ray/dedup/data/part-00001.parquet", f"/{BUCKET}/ray/dedup/_progress/part-00002.json"}
    s3.proxy.fail_once |= flaky
    m = dedup(s3, out, [inp], runtime="ray", env={**s3.env, "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"},
              partitions=4)
    assert not s3.proxy.fail_once and all(s3.proxy.puts[k] == 2 for k in flaky)  # both faults hit, both retried
    local = own_tmp / "local" / "dedup"  # the same stage-directory name: commit records name it in their stats
    ml = dedup(s3, str(local), [inp], partitions=4)
    assert m == ml and m["input"] == 697 == m["kept"] + m["rejected"] and m["counters"]["exact_dup"] == 35
    objects = s3.keys("ray/dedup/")
    assert remote_digests(objects) == sha(local_files(local)) and len(remote_digests(objects)) == 6
    records = {k: v for k, v in objects.items() if k.startswith("_progress/")}
    assert records == local_files(local, ("_progress",))             # commit records byte-identical too
    assert json.loads(objects["manifest.json"]) == shard_io.read_json(local / "manifest.json")
    assert not [k for k in objects if k.startswith("_work/")]         # keep_work off: the work objects are gone
    assert not [k for k in objects if "probe" in k]


@pytest.mark.slow
def test_index_on_s3_is_reused_across_dumps(s3: S3, cc: pa.Table, own_tmp: Path) -> None:
    """Dump A, then dump B (100 of its documents are A's), both against one index on S3 (A's
    index.json PUT fails once and is retried): B's run reads A's signatures and band keys from
    the index (it signs only its own documents), its output equals the same two runs with a
    local index, and the index is re-partitioned on S3."""
    a = write_shards(cc.slice(0, 400), own_tmp / "A", 3)
    b_table = cc.slice(300, 397)
    b_table = b_table.set_column(b_table.schema.get_field_index("dump"), "dump",
                                 pa.array(["CC-MAIN-2019-35"] * b_table.num_rows))
    b = write_shards(b_table, own_tmp / "B", 3)
    index = f"s3://{BUCKET}/idx/index"
    commit_point = f"/{BUCKET}/idx/index/index.json"
    s3.proxy.fail_once.add(commit_point)  # the index's commit record: its first PUT answers 503
    no_botocore_retries = {**s3.env, "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"}
    ma = dedup(s3, f"s3://{BUCKET}/idx/A/dedup", [a], env=no_botocore_retries, index=index, partitions=2,
               keep_work=True)
    assert commit_point not in s3.proxy.fail_once and s3.proxy.puts[commit_point] == 2
    mb = dedup(s3, f"s3://{BUCKET}/idx/B/dedup", [b], index=index, partitions=2, keep_work=True)
    assert mb["counters"]["index_docs_before"] == ma["kept"] == 377
    idx_objects = s3.keys("idx/index/")
    meta = json.loads(idx_objects["index.json"])
    assert [s["docs"] for s in meta["segments"]] == [ma["kept"], mb["kept"]] and meta["docs"] == ma["kept"] + mb["kept"]
    assert all(any(k.startswith(f"{s['name']}/sig/") for k in idx_objects) for s in meta["segments"])
    assert not [k for k in idx_objects if "/bands/part-" in k or "/exact/part-" in k]  # per-shard keys compacted away
    # B signed only its own 397 documents: A's came from the index on S3
    import pyarrow.ipc as ipc

    work_b = s3.keys("idx/B/dedup/_work/")
    sigs = [v for k, v in work_b.items() if "/sig/part-" in k and k.endswith(".arrow")]
    assert len(sigs) == 3 and sum(ipc.open_file(pa.BufferReader(v)).read_all().num_rows for v in sigs) == 397
    assert mb["kept"] < b_table.num_rows - 90                         # A's 100 documents were removed from B

    # the same two runs with a local index and local outputs: the same shards, byte for byte
    la, lb = own_tmp / "local-A" / "dedup", own_tmp / "local-B" / "dedup"
    assert dedup(s3, str(la), [a], index=str(own_tmp / "index"), partitions=2) == ma
    assert dedup(s3, str(lb), [b], index=str(own_tmp / "index"), partitions=2) == mb
    assert remote_digests(s3.keys("idx/A/dedup/")) == sha(local_files(la))
    assert remote_digests(s3.keys("idx/B/dedup/")) == sha(local_files(lb))
    local_meta = shard_io.read_json(own_tmp / "index" / "index.json")
    assert [s["docs"] for s in local_meta["segments"]] == [s["docs"] for s in meta["segments"]]

    # rerunning B adds nothing to the index; B again into a fresh output finds all of it indexed,
    # after the index was re-partitioned on S3 (2 -> 4)
    assert dedup(s3, f"s3://{BUCKET}/idx/B/dedup", [b], index=index, partitions=2, keep_work=True) == mb
    assert len(json.loads(s3.keys("idx/index/")["index.json"])["segments"]) == 2
    proc = subprocess.run([sys.executable, "-m", "winnow.pipeline.cli", "dedup", "index", "reshard", index,
                           "--partitions", "4"], cwd=REPO, env=s3.env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    resharded = s3.keys("idx/index/")
    assert json.loads(resharded["index.json"])["partitions"] == 4
    assert all(s["keys_dir"] == "p-4" for s in json.loads(resharded["index.json"])["segments"])
    assert not [k for k in resharded if k.split("/")[1:2] in (["bands"], ["exact"])]  # the old layout was removed
    again = dedup(s3, f"s3://{BUCKET}/idx/B2/dedup", [b], index=index)
    assert again["kept"] == 0 and again["input"] == 397 and again["counters"]["partitions"] == 4


@pytest.mark.slow
def test_killed_dedup_resumes_from_its_work_on_s3(s3: S3, cc: pa.Table, own_tmp: Path) -> None:
    """SIGKILL a dedup from input shards on S3 into s3:// once its LSH phase has started (nothing
    on a local disk but temporary files); the rerun takes the finished tasks' `_work` objects as
    they are (not one of them is written again) and ends with objects byte-identical to an
    uninterrupted run from local shards into a local directory."""
    inp = write_shards(cc, own_tmp / "in", 6)
    for p in sorted(inp.glob("*.parquet")):
        s3.client.upload_file(str(p), BUCKET, f"kill/in/{p.name}")
    remote_in = f"s3://{BUCKET}/kill/in"
    out = f"s3://{BUCKET}/kill/dedup"
    cfg = {"partitions": 8, "keep_work": True, "union_find_max_edges": 0}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, out, "serial", json.dumps(cfg), remote_in], cwd=REPO,
                            env=s3.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def keys() -> list[str]:
        found = []
        for page in s3.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="kill/dedup/"):
            found += [o["Key"][len("kill/dedup/"):] for o in page.get("Contents", [])]
        return found

    kill_when(proc, lambda: any("/lsh/" in k and k.endswith(".done.json") for k in keys()), "the LSH phase")
    at_kill = keys()
    at_kill_records = [k for k in at_kill if k.startswith("_progress/")]
    assert len(at_kill_records) < 6 and "manifest.json" not in at_kill, "the kill must land mid-stage"
    finished = [k for k in at_kill if k.startswith("_work/") and "/exact_map/" in k and k.endswith(".arrow")]
    assert len(finished) == 6
    puts_before = {k: s3.proxy.puts.get(f"/{BUCKET}/kill/dedup/{k}") for k in finished}

    m = dedup(s3, out, [remote_in], **cfg)
    assert {k: s3.proxy.puts.get(f"/{BUCKET}/kill/dedup/{k}") for k in finished} == puts_before  # reused, not redone
    assert m["counters"]["cc_fast_path"] == 0 and m["counters"]["cc_rounds"] >= 1  # star rounds ran on S3
    local = own_tmp / "local" / "dedup"
    assert dedup(s3, str(local), [inp], **cfg) == m
    objects = s3.keys("kill/dedup/")
    assert remote_digests(objects) == sha(local_files(local)) and len(remote_digests(objects)) == 12

    def records(files: dict[str, bytes]) -> dict[str, dict]:  # the input identity (URL vs path) aside
        return {k: {**json.loads(v), "fingerprint": None} for k, v in files.items() if k.startswith("_progress/")}

    assert records(objects) == records(local_files(local, ("_progress",))) and len(records(objects)) == 6
    assert m["input"] == 697 == m["kept"] + m["rejected"]
    assert json.loads(objects["stats.json"])["shards_resumed"] == len(at_kill_records)


def test_a_reducer_reads_its_batches_not_whole_files(s3: S3, own_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shuffle reducer on S3 fetches the footer and its own record batch of each map file
    (ranged GETs), not the files: for one of 32 partitions it downloads a small fraction of the
    map files' bytes, and reads exactly what the same files hold locally."""
    import numpy as np
    import s3fs

    from winnow.stages.dedup import shuffle as sh
    from winnow.stages.dedup import store

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
              "AWS_EC2_METADATA_DISABLED"):
        monkeypatch.setenv(k, s3.env[k])
    s3fs.S3FileSystem.clear_instance_cache()  # an instance made for another server must not be reused
    try:
        P = 32
        rng = np.random.default_rng(7)
        schema = pa.schema([("key", pa.int64()), ("id", pa.string())])
        remote, local, rec_r, rec_l = [], [], [], []
        for i in range(3):
            n = 200_000
            parts = rng.integers(0, P, n)
            t = pa.table([rng.integers(0, 1 << 62, n), pa.array([f"doc-{i}-{r}" for r in range(n)])], schema=schema)
            for paths, recs, base in ((remote, rec_r, f"s3://{BUCKET}/reduce/phase"), (local, rec_l, own_tmp / "phase")):
                p = store.join(base, f"part-{i:05d}.arrow")
                sh.write_partitioned(p, t, parts, P)
                recs.append(sh.mark_done(p, {"rows": n}))
                paths.append(p)
        assert rec_r[0]["shuffle"][0]["parts"] == rec_l[0]["shuffle"][0]["parts"] == "*"
        sh.publish_directories(rec_r)
        sh.publish_directories(rec_l)
        size = sum(p.stat().st_size for p in local)
        assert size > 3 * 2**20
        for j in (0, 17, 31):
            before = dict(s3.proxy.got)
            got = sh.read_partition(remote, j, schema)
            fetched = sum(s3.proxy.got.get(f"/{BUCKET}/reduce/phase/part-{i:05d}.arrow", 0)
                          - before.get(f"/{BUCKET}/reduce/phase/part-{i:05d}.arrow", 0) for i in range(3))
            assert got.equals(sh.read_partition(local, j, schema)) and got.num_rows > 15_000
            assert 0 < fetched < size / 8, (fetched, size)
            print(f"partition {j}: {fetched} of the map files' {size} bytes fetched")  # for the report
    finally:
        s3fs.S3FileSystem.clear_instance_cache()


def test_an_unwritable_index_location_fails_before_any_work(s3: S3, cc: pa.Table, own_tmp: Path) -> None:
    """An index in a bucket that does not exist, or under a prefix the credentials may not
    write, is a clear error before any phase runs (not after the whole dedup, when the index
    is written)."""
    inp = write_shards(cc.slice(0, 50), own_tmp / "in", 1)
    s3.proxy.deny = (f"/{BUCKET}/readonly-index/",)
    try:
        for index, expected in (("s3://no-such-bucket-for-dedup/idx", "bucket 'no-such-bucket-for-dedup' does not exist"),
                                (f"s3://{BUCKET}/readonly-index/idx", "access denied")):
            out = own_tmp / "out" / index.rsplit("/", 2)[-2]
            proc = subprocess.run([sys.executable, "-c", DRIVER, str(out), "serial", json.dumps({"index": index}),
                                   str(inp)], cwd=REPO, env=s3.env, capture_output=True, text=True, timeout=300)
            assert proc.returncode != 0 and "OutputUnwritable" in proc.stderr and expected in proc.stderr, \
                proc.stderr[-3000:]
            assert not (out / "_work").exists() and not (out / "data").exists()  # nothing ran
    finally:
        s3.proxy.deny = ()
