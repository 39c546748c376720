"""Object storage end to end, against a real S3 server on loopback.

The server (moto's, behind a fault-injecting proxy) and its fixture `s3` live in `s3_server.py`,
so other test modules can use them too.

Covered: ingest reading `s3://` inputs and writing its stage directory to `s3://` (commit record
last, manifest once the counts add up) byte-identical to a local output; a PUT that fails once
and is retried; a run killed mid-stage and resumed; bad output locations failing before planning.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from s3_server import BUCKET, S3, free_port, kill_when, object_count, remote_digests, s3  # noqa: F401 - s3 is the fixture
from winnow.pipeline import shards as shard_io

REPO = Path(__file__).resolve().parents[1]
JSONL = "dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"  # 697 real documents
SMALL_INPUTS = ["resiliparse/warcfile.warc.gz", "whirlwind/whirlwind.warc.gz", "warcio/example.warc.gz",
                "dolma/cc_en_head-0091.jsonl", "cc_net/sample.warc.txt"]


@pytest.fixture
def own_tmp() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="winnow-s3-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


DRIVER = textwrap.dedent("""
    import json, sys
    from winnow.pipeline.runner import RayRuntime, run_stage
    from winnow.stages.ingest import IngestStage
    out, workers, *inputs = sys.argv[1:]
    m = run_stage(IngestStage({"extractor": "resiliparse"}), inputs, out, RayRuntime(workers=int(workers), show_progress=False))
    print("RESULT " + json.dumps({"input": m["input"], "kept": m["kept"], "rejected": m["rejected"]}))
""")


def run_ingest(s3: S3, inputs: list[str], out: str, workers: int = 2, env: dict[str, str] | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
    """`run_stage(ingest)` in a fresh process (its own local Ray, whose workers inherit the S3 env)."""
    proc = subprocess.run([sys.executable, "-c", DRIVER, out, str(workers), *inputs], cwd=REPO,
                          env=env or s3.env, capture_output=True, text=True, timeout=900)
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def upload(s3: S3, shared: Path, rels: list[str], prefix: str) -> list[str]:
    keys = []
    for i, rel in enumerate(rels):
        key = f"{prefix}/{i:02d}-{Path(rel).name}"
        s3.client.upload_file(str(shared / rel), BUCKET, key)
        keys.append(key)
    return keys


def local_digests(stage_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(stage_dir)): shard_io.sha256_file(p)
            for sub in ("data", "rejected") for p in sorted((stage_dir / sub).glob("*.parquet"))}


@pytest.mark.slow
def test_ingest_from_s3_to_s3_matches_a_local_output(s3: S3, shared_data: Path, own_tmp: Path) -> None:
    upload(s3, shared_data, SMALL_INPUTS, "in-small")
    run_ingest(s3, [f"s3://{BUCKET}/in-small/*"], f"s3://{BUCKET}/out-small/ingest")
    run_ingest(s3, [f"s3://{BUCKET}/in-small/*"], str(own_tmp / "ingest"))
    objects = s3.keys("out-small/ingest/")
    local = own_tmp / "ingest"
    assert remote_digests(objects) == local_digests(local) and len(local_digests(local)) == 2 * len(SMALL_INPUTS)
    manifest = json.loads(objects["manifest.json"])
    assert manifest == shard_io.read_json(local / "manifest.json")
    assert manifest["input"] == manifest["kept"] + manifest["rejected"] > 0
    assert all(s["sha256"] == hashlib.sha256(objects[s["path"]]).hexdigest() for s in manifest["shards"])
    assert sorted(k for k in objects if k.startswith("_progress/")) == [f"_progress/part-{i:05d}.json" for i in range(5)]
    assert not [k for k in objects if "probe" in k]
    # a rerun with nothing changed rewrites nothing
    before = dict(s3.proxy.puts)
    run_ingest(s3, [f"s3://{BUCKET}/in-small/*"], f"s3://{BUCKET}/out-small/ingest")
    assert {k: v for k, v in s3.proxy.puts.items() if "/out-small/ingest/" in k and "probe" not in k
            and "stats.json" not in k} == {k: v for k, v in before.items() if "/out-small/ingest/" in k
                                           and "probe" not in k and "stats.json" not in k}


@pytest.mark.slow
def test_a_put_that_fails_once_is_retried(s3: S3, shared_data: Path, own_tmp: Path) -> None:
    """The commit record of shard 1 and the data object of shard 3 answer their first PUT with
    503 SlowDown. botocore's own retries are switched off (AWS_MAX_ATTEMPTS=1), so winnow's
    `write_retrying` is what cures it."""
    upload(s3, shared_data, SMALL_INPUTS, "in-retry")
    flaky = {f"/{BUCKET}/out-retry/ingest/_progress/part-00001.json", f"/{BUCKET}/out-retry/ingest/data/part-00003.parquet"}
    s3.proxy.fail_once |= flaky
    run_ingest(s3, [f"s3://{BUCKET}/in-retry/*"], f"s3://{BUCKET}/out-retry/ingest",
               env={**s3.env, "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"})
    assert not s3.proxy.fail_once  # both faults were hit
    assert all(s3.proxy.puts[k] == 2 for k in flaky), {k: s3.proxy.puts.get(k) for k in flaky}
    run_ingest(s3, [f"s3://{BUCKET}/in-retry/*"], str(own_tmp / "ingest"))
    assert remote_digests(s3.keys("out-retry/ingest/")) == local_digests(own_tmp / "ingest")


@pytest.mark.slow
def test_killed_run_resumes_on_s3(s3: S3, shared_data: Path, own_tmp: Path) -> None:
    """SIGKILL the driver (and its local Ray) part-way through an ingest into s3://, rerun it:
    committed shards are reused, the rest redone, and the objects equal an uninterrupted run."""
    n = 24
    for i in range(n):  # the same real file under 24 names (1.1 MB, 697 documents each)
        s3.client.upload_file(str(shared_data / JSONL), BUCKET, f"in-many/copy-{i:02d}.jsonl.gz")
    out = f"s3://{BUCKET}/out-kill/ingest"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, out, "1", f"s3://{BUCKET}/in-many/*.jsonl.gz"], cwd=REPO,
                            env=s3.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def records() -> int:
        return object_count(s3, "out-kill/ingest/_progress/")

    kill_when(proc, lambda: records() >= 3, "a third shard commit", timeout_s=300)
    committed = records()
    assert 3 <= committed < n, "the kill must land part-way"
    assert "out-kill/ingest/manifest.json" not in {o["Key"] for o in s3.client.list_objects_v2(
        Bucket=BUCKET, Prefix="out-kill/ingest/").get("Contents", [])}
    run_ingest(s3, [f"s3://{BUCKET}/in-many/*.jsonl.gz"], out)
    run_ingest(s3, [f"s3://{BUCKET}/in-many/*.jsonl.gz"], str(own_tmp / "ingest"))
    objects = s3.keys("out-kill/ingest/")
    assert remote_digests(objects) == local_digests(own_tmp / "ingest")
    assert json.loads(objects["stats.json"])["shards_resumed"] >= committed
    m = json.loads(objects["manifest.json"])
    assert m["input"] == m["kept"] + m["rejected"] == n * 697


# --- bad output locations: a clear error before anything is planned or scheduled --------------

BAD_OUTPUT = textwrap.dedent("""
    import sys, time
    from winnow.pipeline.runner import run_stage
    from winnow.stages.ingest import IngestStage
    from winnow.stages.remote_io import OutputUnwritable
    t0 = time.monotonic()
    try:
        run_stage(IngestStage(), [sys.argv[2]], sys.argv[1])  # no runtime given: Ray starts only for work
    except OutputUnwritable as exc:
        import ray
        print(f"ERROR {exc}")
        print(f"RAY_STARTED {ray.is_initialized()}")
        print(f"SECONDS {time.monotonic() - t0:.1f}")
        sys.exit(3)
""")


def bad_output(s3: S3, out: str, env: dict[str, str], shared_data: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", BAD_OUTPUT, out, str(shared_data / "warcio/example.warc.gz")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "RAY_STARTED False" in proc.stdout
    print(proc.stdout.splitlines()[-1])  # how long it took, for the report (not asserted)
    return proc.stdout.split("ERROR ", 1)[1].splitlines()[0]


def test_missing_bucket_is_a_clear_error(s3: S3, shared_data: Path) -> None:
    msg = bad_output(s3, "s3://no-such-bucket-here/out/ingest", s3.env, shared_data)
    assert "bucket 'no-such-bucket-here' does not exist" in msg


def test_missing_credentials_is_a_clear_error(s3: S3, shared_data: Path, own_tmp: Path) -> None:
    env = {k: v for k, v in s3.env.items() if not k.startswith("AWS_ACCESS") and not k.startswith("AWS_SECRET")
           and not k.startswith("AWS_SESSION")}
    env.update({"AWS_SHARED_CREDENTIALS_FILE": str(own_tmp / "none"), "AWS_CONFIG_FILE": str(own_tmp / "none")})
    msg = bad_output(s3, f"s3://{BUCKET}/out-nocreds/ingest", env, shared_data)
    assert "no credentials found" in msg and "AWS_ACCESS_KEY_ID" in msg


def test_unwritable_prefix_is_a_clear_error(s3: S3, shared_data: Path) -> None:
    s3.proxy.deny = (f"/{BUCKET}/readonly/",)
    try:
        msg = bad_output(s3, f"s3://{BUCKET}/readonly/ingest", s3.env, shared_data)
    finally:
        s3.proxy.deny = ()
    assert "not writable" in msg and "access denied" in msg


def test_object_store_that_does_not_answer_is_a_clear_error(s3: S3, shared_data: Path) -> None:
    env = {**s3.env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    msg = bad_output(s3, f"s3://{BUCKET}/out/ingest", env, shared_data)
    assert "does not answer" in msg


def test_unwritable_local_output_is_a_clear_error(s3: S3, shared_data: Path, own_tmp: Path) -> None:
    (own_tmp / "a-file").write_text("not a directory")
    msg = bad_output(s3, str(own_tmp / "a-file" / "ingest"), s3.env, shared_data)
    assert "not writable" in msg and "a-file" in msg


def test_cluster_address_that_does_not_answer_is_a_clear_error() -> None:
    from winnow.pipeline.ray_runtime import ClusterUnreachable
    from winnow.pipeline.runner import RayRuntime

    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(ClusterUnreachable, match=f"Ray cluster at {address} does not answer"):
        RayRuntime(address=address)


@pytest.mark.slow
def test_ray_job_on_two_nodes_reads_and_writes_s3(s3: S3, shared_data: Path, own_tmp: Path) -> None:
    """Issue 12 item 2 for the stages that support object storage: a head and a second Ray node,
    each with its own temp dir; `ray job submit` ships only a driver script (its working dir)
    that ingests `s3://` inputs into an `s3://` stage directory, credentials and endpoint given in
    the job's runtime env. No input or output path is on a disk: tasks ran on both nodes and the
    objects equal a single-node run's."""
    from test_cluster import LocalCluster, node_with, ray_cli

    # enough shards that the second node's workers are up before the head's one CPU is through
    upload(s3, shared_data, SMALL_INPUTS + [JSONL] * 24, "in-job")
    job_dir = own_tmp / "job"
    job_dir.mkdir()
    (job_dir / "driver.py").write_text(DRIVER)
    aws = {k: s3.env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")}
    out = f"s3://{BUCKET}/out-job/ingest"
    c = LocalCluster(dashboard=True)
    try:
        c.start_head(num_cpus=1, resource="node_a")
        c.add_node(num_cpus=2, resource="node_b")
        address = f"http://127.0.0.1:{c.dash_port}"
        deadline = time.monotonic() + 180
        while True:  # the dashboard answers before its job agent is ready
            job = ray_cli(c, "job", "submit", "--address", address, "--working-dir", str(job_dir),
                          "--runtime-env-json", json.dumps({"env_vars": aws}), "--",
                          "python", "driver.py", out, "0", f"s3://{BUCKET}/in-job/*")
            if "No available agent" not in job.stderr + job.stdout or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        nodes = c.wait_for_nodes(2)
        listed = ray_cli(c, "list", "tasks", "--address", address, "--format", "json", "--limit", "10000", "--detail")
        assert listed.returncode == 0, listed.stderr[-2000:]
        tasks = json.loads(listed.stdout)
    finally:
        c.stop()
    by_node: dict[str, int] = {}
    for t in tasks:
        if t.get("type") == "NORMAL_TASK" and t.get("state") == "FINISHED":
            by_node[t["node_id"]] = by_node.get(t["node_id"], 0) + 1
    assert by_node.get(node_with(nodes, "node_a"), 0) >= 1 and by_node.get(node_with(nodes, "node_b"), 0) >= 1, by_node
    run_ingest(s3, [f"s3://{BUCKET}/in-job/*"], str(own_tmp / "ingest"))
    objects = s3.keys("out-job/ingest/")
    assert remote_digests(objects) == local_digests(own_tmp / "ingest")
    assert json.loads(objects["manifest.json"]) == shard_io.read_json(own_tmp / "ingest/manifest.json")


@pytest.mark.slow
def test_the_cli_writes_a_stage_to_s3(s3: S3, shared_data: Path, own_tmp: Path) -> None:
    """`winnow ingest … --out s3://…` and `winnow run` with `output: s3://…` keep the URL (a Path
    would turn `s3://b/x` into `s3:/b/x`) and write the same manifest as run_stage does."""
    upload(s3, shared_data, SMALL_INPUTS, "in-cli")
    winnow = str(REPO / ".venv" / "bin" / "winnow")
    proc = subprocess.run([winnow, "ingest", f"s3://{BUCKET}/in-cli/*", "--out", f"s3://{BUCKET}/out-cli/ingest",
                           "--workers", "2"], cwd=REPO, env=s3.env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"s3://{BUCKET}/out-cli/ingest" in proc.stdout
    manifest = json.loads(s3.keys("out-cli/ingest/")["manifest.json"])
    assert manifest["input"] == manifest["kept"] + manifest["rejected"] > 0
    cfg = own_tmp / "run.yaml"
    cfg.write_text(yaml.safe_dump({"inputs": [f"s3://{BUCKET}/in-cli/*"], "output": f"s3://{BUCKET}/out-run",
                                   "stages": ["ingest"]}), encoding="utf-8")
    proc = subprocess.run([winnow, "run", str(cfg), "--workers", "2"], cwd=REPO, env=s3.env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads(s3.keys("out-run/ingest/")["manifest.json"])["shards"] == manifest["shards"]


# --- stage directories on object storage as inputs: the CLI chain ingest → decontaminate → filter --

CHAIN = ["ingest", "decontaminate", "filter"]


def chain_config(shared_data: Path, inputs: list[str], output: str) -> dict:
    return {"inputs": inputs, "output": output, "stages": CHAIN,
            "ingest": {"extractor": "resiliparse"},
            "decontaminate": {"benchmarks": [str(shared_data / "benchmarks" / b) for b in ("gsm8k", "arc")]},
            "filter": {"language": {"thresholds": {"en": 0.5, "zh": 0.5}}}}


def winnow_run(s3: S3, cfg: dict, where: Path) -> str:
    """`winnow run CONFIG` in a fresh process; its stdout."""
    path = where / f"run-{abs(hash(cfg['output'])) % 10**8}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "winnow"), "run", str(path), "--workers", "2"], cwd=REPO,
                          env=s3.env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def _comparable(manifest: dict) -> dict:
    """A manifest without what names where its inputs were (paths or URLs)."""
    return {k: v for k, v in manifest.items() if k not in ("inputs", "shard_sources", "incomplete_inputs")}


@pytest.mark.slow
def test_cli_chain_on_s3_reads_stage_directories_from_the_store(s3: S3, shared_data: Path, own_tmp: Path) -> None:
    """`winnow run` with every stage directory an `s3://` prefix: decontaminate and filter read
    their upstream's manifest and shards from the store. Every data and rejected object is
    byte-identical to the same chain run into local directories, the counts chain, the report is
    the same, and a rerun with nothing changed rewrites nothing; with the first input gone every
    shard's input changed position, so every shard downstream is redone (fingerprints from the
    stored manifests) and the counts still chain."""
    upload(s3, shared_data, SMALL_INPUTS + [JSONL], "in-chain")
    inputs = [f"s3://{BUCKET}/in-chain/*"]
    out = f"s3://{BUCKET}/out-chain"
    printed = winnow_run(s3, chain_config(shared_data, inputs, out), own_tmp)
    winnow_run(s3, chain_config(shared_data, inputs, str(own_tmp / "local")), own_tmp)
    manifests = {}
    for name in CHAIN:
        objects = s3.keys(f"out-chain/{name}/")
        local = own_tmp / "local" / name
        assert remote_digests(objects) == local_digests(local), name
        manifests[name] = m = json.loads(objects["manifest.json"])
        assert _comparable(m) == _comparable(shard_io.read_json(local / "manifest.json")), name
        assert m["input"] == m["kept"] + m["rejected"] > 0, name
        assert f"{name}: input {m['input']:,}" in printed and f"{out}/{name}" in printed
        if name != "ingest":
            assert m["inputs"] == [f"{out}/{CHAIN[CHAIN.index(name) - 1]}"]
            assert all(src[0].startswith(f"s3://{BUCKET}/out-chain/") for src in m["shard_sources"].values())
    assert manifests["decontaminate"]["input"] == manifests["ingest"]["kept"]
    assert manifests["filter"]["input"] == manifests["decontaminate"]["kept"]
    assert json.loads(s3.keys("out-chain/decontaminate/")["decontaminate_report.json"]) == \
        shard_io.read_json(own_tmp / "local/decontaminate/decontaminate_report.json")
    # a rerun with nothing changed rewrites nothing (stats.json and the writability probe aside)
    def puts() -> dict[str, int]:
        return {k: v for k, v in s3.proxy.puts.items() if "/out-chain/" in k and "probe" not in k
                and not k.endswith("/stats.json")}
    before = puts()
    winnow_run(s3, chain_config(shared_data, inputs, out), own_tmp)
    assert puts() == before
    # the first input removed: every later input moves up one position
    first = sorted(s3.keys("in-chain/"))[0]
    s3.client.delete_object(Bucket=BUCKET, Key=f"in-chain/{first}")
    winnow_run(s3, chain_config(shared_data, inputs, out), own_tmp)
    again = {name: json.loads(s3.keys(f"out-chain/{name}/")["manifest.json"]) for name in CHAIN}
    assert again["ingest"]["input"] < manifests["ingest"]["input"]
    assert again["decontaminate"]["input"] == again["ingest"]["kept"]
    assert again["filter"]["input"] == again["decontaminate"]["kept"]
    assert len(again["filter"]["shards"]) == len(manifests["filter"]["shards"]) - 1
    stats = json.loads(s3.keys("out-chain/filter/")["stats.json"])
    assert stats["shards_resumed"] == 0, stats  # each position's input changed: all redone


# --- bad stage directories on object storage: clear errors, in this process -------------------

@pytest.fixture
def s3_env(s3: S3, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    """This process talks to the test server (s3fs instances cached under another endpoint
    dropped)."""
    import s3fs

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
              "AWS_EC2_METADATA_DISABLED"):
        monkeypatch.setenv(k, s3.env[k])
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3fs.S3FileSystem.clear_instance_cache()
    yield s3
    s3fs.S3FileSystem.clear_instance_cache()


def hand_made_stage(s3: S3, where: Path, prefix: str, docs: int = 30) -> str:
    """A one-shard stage directory (as the runner writes it) uploaded under `prefix`; its URL."""
    import pyarrow as pa

    local = where / "hand" / prefix.replace("/", "_")
    texts = [f"Document number {i} talks about the weather in some detail, as people often do." for i in range(docs)]
    kept = pa.table({"id": [f"d{i}" for i in range(docs)], "url": [f"https://example.com/{i}" for i in range(docs)],
                     "text": texts})
    rec = shard_io.commit_shard(local, "part-00000", kept=kept, rejected=shard_io.empty_rejected(),
                                input_rows=docs, config_hash="x", fingerprint="y")
    shard_io.write_json_atomic({"stage": "hand", "input": docs, "kept": docs, "rejected": 0, "counters": {},
                                "shards": [rec["data"]], "rejected_shards": [rec["rejected_file"]]},
                               local / "manifest.json")
    for p in sorted(local.rglob("*")):
        if p.is_file():
            s3.client.upload_file(str(p), BUCKET, f"{prefix}/{p.relative_to(local)}")
    return f"s3://{BUCKET}/{prefix}"


def filter_stage():
    from winnow.stages.filter import FilterStage

    return FilterStage({"language": {"thresholds": {"en": 0.5}}})


def test_a_stage_directory_on_s3_is_read_like_a_local_one(s3_env: S3, own_tmp: Path) -> None:
    """Planning lists the prefix and reads the stored manifest; tasks are keyed by the sha256 it
    records (as for a local directory); filter reads the shards from the store, and the output
    equals filtering the same directory downloaded."""
    from winnow.pipeline.runner import SerialRuntime, run_stage
    from winnow.stages.base import shard_fingerprint

    url = hand_made_stage(s3_env, own_tmp, "good/ingest")
    entries = shard_io.input_shard_entries(url)
    local = own_tmp / "hand" / "good_ingest"
    assert [(e.path, e.sha256, e.rows) for e in entries] == [
        (f"{url}/data/part-00000.parquet", shard_io.sha256_file(local / "data/part-00000.parquet"), 30)]
    assert shard_fingerprint(entries) == shard_fingerprint(shard_io.input_shard_entries(local))
    assert shard_io.upstream_kept(url) == 30 and shard_io.shard_rows(entries[0].path) == 30
    assert shard_io.read_shard(entries[0].path).equals(shard_io.read_shard(local / "data/part-00000.parquet"))
    m_remote = run_stage(filter_stage(), [url], own_tmp / "f-remote", SerialRuntime())
    m_local = run_stage(filter_stage(), [str(local)], own_tmp / "f-local", SerialRuntime())
    assert m_remote["input"] == 30 and _comparable(m_remote) == _comparable(m_local)
    assert local_digests(own_tmp / "f-remote") == local_digests(own_tmp / "f-local")


def test_missing_manifest_on_s3_is_a_clear_error(s3_env: S3, own_tmp: Path) -> None:
    from winnow.pipeline.runner import SerialRuntime, run_stage

    url = hand_made_stage(s3_env, own_tmp, "unfinished/ingest")
    s3_env.client.delete_object(Bucket=BUCKET, Key="unfinished/ingest/manifest.json")
    with pytest.raises(shard_io.NotAStageOutput, match="without manifest.json \\(unfinished run\\)"):
        run_stage(filter_stage(), [url], own_tmp / "out", SerialRuntime())
    with pytest.raises(shard_io.NotAStageOutput, match="no objects under this prefix"):
        run_stage(filter_stage(), [f"s3://{BUCKET}/nothing-here/ingest"], own_tmp / "out", SerialRuntime())
    url = hand_made_stage(s3_env, own_tmp, "halfgone/ingest")
    s3_env.client.delete_object(Bucket=BUCKET, Key="halfgone/ingest/data/part-00000.parquet")
    with pytest.raises(shard_io.NotAStageOutput, match="lists .*part-00000.parquet, which does not exist"):
        run_stage(filter_stage(), [url], own_tmp / "out", SerialRuntime())
    url = hand_made_stage(s3_env, own_tmp, "garbled/ingest")
    s3_env.client.put_object(Bucket=BUCKET, Key="garbled/ingest/manifest.json", Body=b'{"shards": [')
    with pytest.raises(shard_io.NotAStageOutput, match="garbled/ingest/manifest.json: not valid JSON"):
        run_stage(filter_stage(), [url], own_tmp / "out", SerialRuntime())
    assert not (own_tmp / "out" / "manifest.json").exists()


def test_a_shard_on_s3_whose_sha256_differs_is_a_clear_error(s3_env: S3, own_tmp: Path) -> None:
    """One byte of the data object changed (same size: the listing cannot tell): the read
    checks the bytes against the stored manifest's sha256 and names the object. A shard of a
    different size is refused already when the stage is planned."""
    from winnow.pipeline.runner import SerialRuntime, run_stage

    url = hand_made_stage(s3_env, own_tmp, "flipped/ingest")
    key = "flipped/ingest/data/part-00000.parquet"
    body = bytearray(s3_env.client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0x01
    s3_env.client.put_object(Bucket=BUCKET, Key=key, Body=bytes(body))
    with pytest.raises(shard_io.ShardCorrupt, match=f"{url}/data/part-00000.parquet: corrupt shard: sha256"):
        run_stage(filter_stage(), [url], own_tmp / "out", SerialRuntime())
    with pytest.raises(shard_io.ShardCorrupt, match="recorded in .*flipped/ingest/manifest.json"):
        shard_io.verify_shard(f"{url}/data/part-00000.parquet")
    s3_env.client.put_object(Bucket=BUCKET, Key=key, Body=bytes(body) + b"x")
    with pytest.raises(shard_io.ShardCorrupt, match="bytes, its manifest records"):
        run_stage(filter_stage(), [url], own_tmp / "out", SerialRuntime())
    assert not (own_tmp / "out" / "manifest.json").exists()


# --- remix: a whole-dataset stage writing to object storage -------------------------------------

REMIX_DRIVER = textwrap.dedent("""
    import json, sys
    from winnow.pipeline.runner import RayRuntime, run_stage
    from winnow.stages.ingest import IngestStage
    from winnow.stages.remix import RemixStage
    ingest_out, remix_out, workers, *inputs = sys.argv[1:]
    rt = RayRuntime(workers=int(workers), show_progress=False)
    run_stage(IngestStage({"extractor": "resiliparse"}), inputs, ingest_out, rt)
    m = run_stage(RemixStage({"shard_bytes": 40000, "keep_rejected_text": True, "seed": 7}), [ingest_out], remix_out, rt)
    print("RESULT " + json.dumps({"input": m["input"], "kept": m["kept"], "shards": len(m["shards"])}))
""")


def all_digests_local(stage_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(stage_dir)): shard_io.sha256_file(p)
            for sub in ("data", "rejected") for p in sorted((stage_dir / sub).iterdir())}


@pytest.mark.slow
def test_remix_writes_to_s3_resumes_after_a_kill_and_matches_a_local_output(s3: S3, shared_data: Path,
                                                                            own_tmp: Path) -> None:
    """Remix from an `s3://` ingest directory into an `s3://` stage directory: its work files are
    objects under `_work/` (no shared disk), each gather task uploads its shard's objects with
    the commit record last, the manifest comes last. The driver is SIGKILLed once some output
    shards are committed; the rerun (whose report and manifest PUTs fail once) redoes the
    phases, keeps the committed shards, removes the work objects, and every data and rejected
    object (Arrow IPC and parquet) equals a remix of the same input into a local directory."""
    upload(s3, shared_data, SMALL_INPUTS + [JSONL], "in-remix")
    ingest, out = f"s3://{BUCKET}/remix/ingest", f"s3://{BUCKET}/remix/remix"
    args = [sys.executable, "-c", REMIX_DRIVER, ingest, out, "1", f"s3://{BUCKET}/in-remix/*"]
    proc = subprocess.Popen(args, cwd=REPO, env=s3.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)

    def listing(prefix: str) -> list[str]:
        return [o["Key"] for page in s3.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
                for o in page.get("Contents", [])]

    kill_when(proc, lambda: len(listing("remix/remix/_progress/")) >= 2, "a second remix shard commit")
    committed = len(listing("remix/remix/_progress/"))
    assert "remix/remix/manifest.json" not in listing("remix/remix/")
    assert listing("remix/remix/_work/"), "the work files are objects on the store"
    # the rerun meets a 503 on the first PUT of its report and of its manifest (botocore's own
    # retries off): winnow's write_retrying cures both
    flaky = {f"/{BUCKET}/remix/remix/remix_report.json", f"/{BUCKET}/remix/remix/manifest.json"}
    s3.proxy.fail_once |= flaky
    done = subprocess.run(args, cwd=REPO, env={**s3.env, "AWS_MAX_ATTEMPTS": "1"}, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert not s3.proxy.fail_once & flaky
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert committed < result["shards"], "the kill must land part-way"
    print(f"remix killed with {committed} of {result['shards']} shards committed")  # for the report
    objects = s3.keys("remix/remix/")
    assert not [k for k in objects if k.startswith("_work/")]
    assert json.loads(objects["stats.json"])["shards_resumed"] >= committed
    m = json.loads(objects["manifest.json"])
    assert m["input"] == m["kept"] + m["rejected"] == json.loads(s3.keys("remix/ingest/")["manifest.json"])["kept"]
    assert m["counters"]["repeated"] > 0 and m["rejected"] > 0  # both repeats and not-sampled rows are exercised
    # the same remix into a local directory, from the same s3:// ingest output
    local_driver = REMIX_DRIVER.replace('run_stage(IngestStage({"extractor": "resiliparse"}), inputs, ingest_out, rt)', "")
    proc = subprocess.run([sys.executable, "-c", local_driver, ingest, str(own_tmp / "remix"), "2"], cwd=REPO,
                          env=s3.env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    local = own_tmp / "remix"
    remote = {k: hashlib.sha256(v).hexdigest() for k, v in objects.items() if k.split("/", 1)[0] in ("data", "rejected")}
    assert remote == all_digests_local(local) and any(k.endswith(".arrow") for k in remote)
    assert m == shard_io.read_json(local / "manifest.json")
    report = json.loads(objects["remix_report.json"])
    assert {k: v for k, v in report.items() if k != "phases"} == \
        {k: v for k, v in shard_io.read_json(local / "remix_report.json").items() if k != "phases"}


def test_tokenizer_trains_from_and_into_s3(s3_env: S3, own_tmp: Path) -> None:
    """The tokenizer stage reads an `s3://` stage directory and writes its artifact directory to
    `s3://`: the files equal a local run's, the commit record is the last object written and a
    stored manifest follows; pack-style consumers find the same tokenizer.json."""
    from winnow.pipeline.runner import SerialRuntime, run_stage
    from winnow.stages.tokenizer_train import TokenizerStage

    url = hand_made_stage(s3_env, own_tmp, "tok/ingest", docs=300)
    cfg = {"vocab_size": 1024, "sample_bytes": 200_000}
    before = dict(s3_env.proxy.puts)
    m_remote = run_stage(TokenizerStage(cfg), [url], f"s3://{BUCKET}/tok/tokenizer", SerialRuntime())
    m_local = run_stage(TokenizerStage(cfg), [url], own_tmp / "tokenizer", SerialRuntime())
    assert _comparable(m_remote) == _comparable(m_local) and m_remote["input"] == 300
    objects = s3_env.keys("tok/tokenizer/")
    local = own_tmp / "tokenizer"
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "sample.parquet",
                 "rejected/tokenizer.parquet", "_progress/tokenizer.json"):
        assert objects[name] == (local / name).read_bytes(), name
    timing = ("train_s", "train_peak_rss_mb", "ray")
    assert {k: v for k, v in json.loads(objects["tokenizer_manifest.json"]).items() if k not in timing} == \
        {k: v for k, v in shard_io.read_json(local / "tokenizer_manifest.json").items() if k not in timing}
    # order of the uploads: every file of the stage before its commit record, the manifest after it
    order = [k.split("/tok/tokenizer/", 1)[1] for k in s3_env.proxy.puts if "/tok/tokenizer/" in k and k not in before
             and "probe" not in k]
    assert order.index("_progress/tokenizer.json") > max(order.index(n) for n in ("tokenizer.json", "sample.parquet",
                                                                                    "tokenizer_manifest.json"))
    assert order.index("manifest.json") > order.index("_progress/tokenizer.json")


DECONT_DRIVER = textwrap.dedent("""
    import json, sys
    from winnow.pipeline.runner import RayRuntime, run_stage
    from winnow.stages.decontaminate import DecontaminateStage
    from winnow.stages.ingest import IngestStage
    ingest_out, out, workers, benchmarks, *inputs = sys.argv[1:]
    rt = RayRuntime(workers=int(workers), show_progress=False)
    if inputs:
        run_stage(IngestStage({"extractor": "resiliparse"}), inputs, ingest_out, rt)
    m = run_stage(DecontaminateStage({"benchmarks": benchmarks.split(",")}), [ingest_out], out, rt)
    print("RESULT " + json.dumps({"input": m["input"], "kept": m["kept"], "shards": len(m["shards"])}))
""")


@pytest.mark.slow
def test_decontaminate_killed_on_s3_resumes(s3: S3, shared_data: Path, own_tmp: Path) -> None:
    """Decontaminate from an `s3://` ingest directory (16 shards) into `s3://`, SIGKILLed once a
    few shards are committed; the rerun reuses them, and the objects and the report equal a
    decontamination of the same input into a local directory."""
    n = 16
    for i in range(n):
        s3.client.upload_file(str(shared_data / JSONL), BUCKET, f"in-decont/copy-{i:02d}.jsonl.gz")
    benchmarks = ",".join(str(shared_data / "benchmarks" / b) for b in ("gsm8k", "arc"))
    ingest, out = f"s3://{BUCKET}/decont/ingest", f"s3://{BUCKET}/decont/decontaminate"
    prep = subprocess.run([sys.executable, "-c", DECONT_DRIVER, ingest, str(own_tmp / "warmup"), "2", benchmarks,
                           f"s3://{BUCKET}/in-decont/*"], cwd=REPO, env=s3.env, capture_output=True, text=True, timeout=900)
    assert prep.returncode == 0, prep.stderr[-4000:]
    proc = subprocess.Popen([sys.executable, "-c", DECONT_DRIVER, ingest, out, "1", benchmarks], cwd=REPO, env=s3.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def records() -> int:
        return object_count(s3, "decont/decontaminate/_progress/")

    kill_when(proc, lambda: records() >= 3, "a third shard commit")
    committed = records()
    assert 3 <= committed < n, "the kill must land part-way"
    done = subprocess.run([sys.executable, "-c", DECONT_DRIVER, ingest, out, "2", benchmarks], cwd=REPO, env=s3.env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    objects = s3.keys("decont/decontaminate/")
    assert json.loads(objects["stats.json"])["shards_resumed"] >= committed
    local = own_tmp / "warmup"   # the same stage from the same s3:// input, into a local directory
    assert remote_digests(objects) == local_digests(local) and len(local_digests(local)) == 2 * n
    m = json.loads(objects["manifest.json"])
    assert m == shard_io.read_json(local / "manifest.json")
    assert m["input"] == json.loads(s3.keys("decont/ingest/")["manifest.json"])["kept"] > n * 600
    assert json.loads(objects["decontaminate_report.json"]) == shard_io.read_json(local / "decontaminate_report.json")


def test_unreadable_input_store_is_a_clear_error(s3_env: S3, own_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage directory on a bucket that does not exist, without credentials, or on a store that
    does not answer: each an error saying which, at planning (before any work)."""
    import s3fs

    from winnow.stages.remote_io import InputUnreadable

    with pytest.raises(shard_io.NotAStageOutput, match="bucket 'no-such-bucket-here' does not exist"):
        shard_io.input_shard_entries("s3://no-such-bucket-here/run/ingest")
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(own_tmp / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(own_tmp / "none"))
    s3fs.S3FileSystem.clear_instance_cache()
    with pytest.raises(InputUnreadable, match="no credentials found for the object store.*AWS_ACCESS_KEY_ID"):
        shard_io.input_shard_entries(f"s3://{BUCKET}/run/ingest")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    s3fs.S3FileSystem.clear_instance_cache()
    with pytest.raises(InputUnreadable, match="the object store does not answer"):
        shard_io.input_shard_entries(f"s3://{BUCKET}/run/ingest")


def test_remix_on_s3_downloads_each_partition_once_not_every_label_file(s3_env: S3, own_tmp: Path,
                                                                        shared_data: Path) -> None:
    """Remix's gather on object storage reads only its own partition pieces: with 30 output
    partitions the bytes downloaded from the work prefix stay within a small multiple of the
    labelled data (label files read once by the scatter, pieces once by the gathers), where
    taking rows from every label file in every gather would download about 30 × the labelled
    data."""
    from winnow.pipeline.runner import SerialRuntime, run_stage
    from winnow.stages.ingest import IngestStage
    from winnow.stages.remix import RemixStage
    from winnow.stages.remote_io import list_files

    ingest = f"s3://{BUCKET}/traffic/ingest"
    run_stage(IngestStage({"extractor": "resiliparse"}), [str(shared_data / JSONL)], ingest, SerialRuntime())
    out = f"s3://{BUCKET}/traffic/remix"
    s3_env.proxy.got.clear()
    m = run_stage(RemixStage({"shard_bytes": 80_000, "keep_work": True}), [ingest], out, SerialRuntime())
    assert len(m["shards"]) >= 30
    files = list_files(out)
    labels = sum(n for k, n in files.items() if "/labels/" in k)
    work_read = sum(n for k, n in s3_env.proxy.got.items() if "/traffic/remix/_work/" in k)
    print(f"remix on s3: {len(m['shards'])} partitions, labels {labels:,} B, work bytes downloaded {work_read:,} B")
    assert labels > 0 and work_read < 4 * labels, (work_read, labels)


def test_filter_error_rate_removes_the_failing_shards_records_on_s3(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    """Filter's stage-level error check removes the commit records of the shards with errors
    from object storage too (so the rerun redoes them), and only those."""
    import fsspec

    from winnow.stages.filter import FilterErrorRate, FilterStage

    for k, v in s3.env.items():
        if k.startswith("AWS_"):
            monkeypatch.setenv(k, v)
    fsspec.filesystem("s3").clear_instance_cache()
    prefix = "filter-errors/out"
    for name in ("part-00000", "part-00001"):
        s3.client.put_object(Bucket=BUCKET, Key=f"{prefix}/_progress/{name}.json", Body=b"{}")
    manifest = {"input": 100, "counters": {"error_KeyError": 2}}
    records = [{"name": "part-00000", "counters": {"error_KeyError": 2}}, {"name": "part-00001", "counters": {}}]
    with pytest.raises(FilterErrorRate, match="2 of 100"):
        FilterStage().check_output(manifest, records, f"s3://{BUCKET}/{prefix}")
    assert sorted(s3.keys(f"{prefix}/")) == ["_progress/part-00001.json"]
