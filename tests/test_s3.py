"""Object storage end to end, against a real S3 server on loopback.

The server is moto's (`moto_server`, from PyPI `moto[server]`): the S3-compatible server s3fs's
own test suite runs against, installable here with pip (MinIO's server is a Go binary that is not
on PyPI or in Debian). winnow talks to it through s3fs/botocore exactly as it would to AWS: the
endpoint comes from the standard `AWS_ENDPOINT_URL` variable. In front of it sits a small
forwarding proxy of this test, which can fail chosen requests (a 503 SlowDown on the first PUT of
a key; 403 AccessDenied under a read-only prefix): faults the real server does not make on demand.

Covered: ingest reading `s3://` inputs and writing its stage directory to `s3://` (commit record
last, manifest once the counts add up) byte-identical to a local output; a PUT that fails once
and is retried; a run killed mid-stage and resumed; bad output locations failing before planning.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from winnow.pipeline import shards as shard_io

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
JSONL = "dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"  # 697 real documents
SMALL_INPUTS = ["resiliparse/warcfile.warc.gz", "whirlwind/whirlwind.warc.gz", "warcio/example.warc.gz",
                "dolma/cc_en_head-0091.jsonl", "cc_net/sample.warc.txt"]
BUCKET = "winnow"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FaultProxy(http.server.ThreadingHTTPServer):
    """Forwards every request to the S3 server; `fail_once` keys answer their first PUT with 503
    SlowDown, keys under a `deny` prefix answer every PUT with 403 AccessDenied. `puts` counts
    PUT requests per path."""

    daemon_threads = True

    def __init__(self, upstream_port: int):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream_port = upstream_port
        self.fail_once: set[str] = set()
        self.deny: tuple[str, ...] = ()
        self.puts: dict[str, int] = {}
        self.lock = threading.Lock()


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _error(self, status: int, code: str) -> None:
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{code} (test proxy)'
                f'</Message></Error>').encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self) -> None:
        server: FaultProxy = self.server  # type: ignore[assignment]
        body = self._body()
        path = self.path.split("?", 1)[0]
        if self.command == "PUT":
            with server.lock:
                server.puts[path] = server.puts.get(path, 0) + 1
                first_failure = path in server.fail_once
                server.fail_once.discard(path)
            if any(path.startswith(p) for p in server.deny):
                return self._error(403, "AccessDenied")
            if first_failure:
                return self._error(503, "SlowDown")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "connection")}
        headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection("127.0.0.1", server.upstream_port, timeout=60)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        self.send_response(resp.status)
        head = self.command == "HEAD"  # a HEAD answer's Content-Length is the object's size
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection") and (head or k.lower() != "content-length"):
                self.send_header(k, v)
        if not head:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


class S3:
    """The running server: `env` for processes that should use it, `client` (boto3, direct)."""

    def __init__(self, endpoint: str, proxy: FaultProxy):
        import boto3

        self.endpoint = endpoint
        self.proxy = proxy
        self.env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint, "RAY_ADDRESS": "",
                    "AWS_EC2_METADATA_DISABLED": "true"}
        self.env.pop("AWS_PROFILE", None)
        self.client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                                   aws_secret_access_key="testing", region_name="us-east-1")

    def keys(self, prefix: str) -> dict[str, bytes]:
        out = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for obj in page.get("Contents", []):
                out[obj["Key"][len(prefix):]] = self.client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
        return out


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    port = free_port()
    log = tempfile.TemporaryFile()
    server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proxy = FaultProxy(port)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.2)
        s = S3(f"http://127.0.0.1:{proxy.server_address[1]}", proxy)
        s.client.create_bucket(Bucket=BUCKET)
        yield s
    finally:
        proxy.shutdown()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


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


def remote_digests(objects: dict[str, bytes]) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in objects.items() if k.split("/", 1)[0] in ("data", "rejected")}


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
        page = s3.client.list_objects_v2(Bucket=BUCKET, Prefix="out-kill/ingest/_progress/")
        return len(page.get("Contents", []))

    deadline = time.monotonic() + 300
    while records() < 3:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no shard committed"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
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
