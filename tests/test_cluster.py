"""winnow on a Ray cluster of several nodes, all started by the test on this one machine.

Each node is a real `ray start` (a head with `--num-cpus 1` and custom resource `node_a`, a second
node with `node_b`), so the runner sees what it would see on KubeRay or the cluster launcher:
nodes that join while a stage runs, tasks placed by Ray, a job driver started by `ray job submit`.
Both nodes share this machine's disk; the tests say where that matters.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from winnow.pipeline import shards as shard_io

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
JSONL = "dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"  # 697 real documents


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """Ray nodes started with `ray start --block` on this machine, each in its own process group,
    stopped by process id (never `ray stop`, which would stop every Ray on the machine, other
    users' included). `temp_dir` is unique and short (Ray's socket paths are length-limited)."""

    def __init__(self, dashboard: bool = False):
        self.temp_dir = tempfile.mkdtemp(prefix="wc", dir="/tmp")
        self.gcs_port = free_port()
        self.dash_port = free_port()
        self.address = f"127.0.0.1:{self.gcs_port}"
        self.dashboard = dashboard
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                    "RAY_USAGE_STATS_ENABLED": "0"}
        self.env.pop("RAY_ADDRESS", None)
        self.procs: list[subprocess.Popen] = []
        self.node_dirs: list[str] = []

    def _node_args(self) -> list[str]:
        # every port explicit: other Ray instances on this machine hold the defaults
        return ["--block", "--object-store-memory=200000000", f"--node-manager-port={free_port()}",
                f"--object-manager-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
                f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
                f"--metrics-export-port={free_port()}", "--disable-usage-stats"]

    def start_head(self, num_cpus: int, resource: str) -> None:
        args = [str(BIN / "ray"), "start", "--head", f"--port={self.gcs_port}", f"--num-cpus={num_cpus}",
                f"--resources={json.dumps({resource: 1})}", f"--temp-dir={self.temp_dir}",
                f"--ray-client-server-port={free_port()}", *self._node_args()]
        if self.dashboard:
            args += ["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dash_port}"]
        else:
            args += ["--include-dashboard=false"]
        self._spawn(args)
        self.wait_for_nodes(1)

    def add_node(self, num_cpus: int, resource: str, wait: bool = True) -> None:
        # its own temp dir, as on a machine of its own: two nodes sharing one would share (and
        # clean up) each other's unpacked job working directories
        node_dir = tempfile.mkdtemp(prefix="wc", dir="/tmp")
        self.node_dirs.append(node_dir)
        self._spawn([str(BIN / "ray"), "start", f"--address={self.address}", f"--num-cpus={num_cpus}",
                     f"--resources={json.dumps({resource: 1})}", f"--temp-dir={node_dir}", *self._node_args()])
        if wait:
            self.wait_for_nodes(len(self.procs))

    def _spawn(self, args: list[str]) -> None:
        self.procs.append(subprocess.Popen(args, env=self.env, cwd=REPO, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL, start_new_session=True))

    def nodes(self) -> list[dict[str, Any]]:
        """Alive nodes as `ray list nodes` sees them, through a short-lived driver."""
        code = ("import json, ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
                "print(json.dumps([{'id': n['NodeID'], 'resources': n['Resources']} for n in ray.nodes() if n['Alive']]))"
                % self.address)
        out = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            return []
        return json.loads(out.stdout.strip().splitlines()[-1])

    def wait_for_nodes(self, n: int, timeout: float = 180) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            nodes = self.nodes()
            if len(nodes) >= n:
                return nodes
            for p in self.procs:
                assert p.poll() is None, f"a `ray start` exited with {p.returncode}"
            assert time.monotonic() < deadline, f"{n} Ray node(s) did not come up (have {len(nodes)})"
            time.sleep(1)

    def stop(self) -> None:
        """SIGTERM each `ray start --block` process group (it stops its node), then SIGKILL any
        process still running whose command line names this cluster's temp dir (by pid)."""
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in reversed(self.procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        for d in [self.temp_dir, *self.node_dirs]:
            for pid in _pids_naming(d):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            shutil.rmtree(d, ignore_errors=True)


def _pids_naming(text: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if text.encode() in (d / "cmdline").read_bytes():
                out.append(int(d.name))
        except OSError:
            continue
    return out


@pytest.fixture
def own_tmp():
    """A temp directory of this test alone (pytest's numbered basetemp dirs are pruned by other
    pytest sessions on a shared machine, which can pull a long test's files from under it)."""
    d = Path(tempfile.mkdtemp(prefix="winnow-cluster-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def cluster():
    c = LocalCluster()
    yield c
    c.stop()


def node_with(nodes: list[dict[str, Any]], resource: str) -> str:
    return next(n["id"] for n in nodes if resource in n["resources"])


DRIVER = textwrap.dedent("""
    import json, sys
    from winnow.pipeline.runner import RayRuntime, run_stage
    from winnow.stages.ingest import IngestStage
    address, out, *inputs = sys.argv[1:]
    runtime = RayRuntime(address=address, show_progress=False)
    m = run_stage(IngestStage({"extractor": "resiliparse"}), inputs, out, runtime)
    print("RESULT " + json.dumps({"tasks_by_node": runtime.tasks_by_node, "input": m["input"], "kept": m["kept"]}))
""")


@pytest.mark.slow
def test_a_run_started_on_one_cpu_uses_a_node_that_joins(cluster: LocalCluster, shared_data: Path, tmp_path: Path) -> None:
    """Issue 12 item 3: the head has 1 CPU when the stage starts; a node with 2 CPUs joins while
    it runs, and takes shards. With the worker count frozen at start-up (1) it never would."""
    src = tmp_path / "src"
    src.mkdir()
    n = 160  # ~0.25 s each on one CPU: the stage is still running when the second node is up
    for i in range(n):
        os.symlink(shared_data / JSONL, src / f"copy-{i:02d}.jsonl.gz")
    out = tmp_path / "out"
    cluster.start_head(num_cpus=1, resource="node_a")
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, cluster.address, str(out), str(src / "*.jsonl.gz")],
                              env=cluster.env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while len(list((out / "_progress").glob("part-*.json"))) < 1:  # the stage is under way on 1 CPU
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "no shard committed"
            time.sleep(0.2)
        cluster.add_node(num_cpus=2, resource="node_b")
        done_when_joined = len(list((out / "_progress").glob("part-*.json")))
        assert done_when_joined < n, "inconclusive: the stage finished before the second node joined"
        stdout, stderr = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, stderr[-3000:]
    result = json.loads(stdout.split("RESULT ", 1)[1])
    nodes = cluster.wait_for_nodes(2)
    a, b = node_with(nodes, "node_a"), node_with(nodes, "node_b")
    by_node = result["tasks_by_node"]
    assert sum(by_node.values()) == n
    assert by_node.get(a, 0) >= 1, by_node
    assert by_node.get(b, 0) >= 1, f"the joined node ran no shard: {by_node}"
    assert result["input"] == n * 697
    manifest = shard_io.read_json(out / "manifest.json")
    assert manifest["input"] == manifest["kept"] + manifest["rejected"] == n * 697


DEMO_INPUTS = ["resiliparse/warcfile.warc.gz", "resiliparse/clueweb-quirk.warc.gz", "resiliparse/clipped.warc.gz",
               "whirlwind/whirlwind.warc.gz", "whirlwind/whirlwind.warc.wet.gz", "dolma/sample-0000.warc.gz",
               "dolma/sample-0001.warc.gz", JSONL, "dolma/cc_en_head-0091.jsonl", "cc_net/sample.warc.txt",
               "warcio/example.warc.gz"]


def stage_bytes(root: Path) -> dict[str, str]:
    """sha256 of every data and rejected file under `root/<stage>/`, by relative path."""
    return {str(p.relative_to(root)): shard_io.sha256_file(p)
            for p in sorted(root.glob("*/data/*")) + sorted(root.glob("*/rejected/*")) if p.is_file()}


def ray_cli(cluster: LocalCluster, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], env=cluster.env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_ray_job_submit_on_two_nodes_matches_one_node(shared_data: Path, own_tmp: Path) -> None:
    """Issue 12 item 2: a head (`node_a`, 1 CPU) and a second node (`node_b`, 2 CPUs); the
    demo-like pipeline (ingest, dedup, filter) submitted with `ray job submit --working-dir`,
    whose config names its inputs relative to that working directory (the driver resolves them
    inside its unpacked copy). Work must run on both nodes and every output byte must equal a
    single-node local run. Outputs go to this machine's disk, which both nodes share here; the
    object-storage path is tests/test_s3.py."""
    tmp_path = own_tmp
    job_dir = tmp_path / "job"
    (job_dir / "data").mkdir(parents=True)
    for i, rel in enumerate(DEMO_INPUTS):
        # copied, not linked: Ray's working_dir package leaves symlinks out (2.1 MB in all)
        shutil.copyfile(shared_data / rel, job_dir / "data" / f"{i:02d}-{Path(rel).name}")
    config = {"inputs": ["data/*"], "stages": ["ingest", "dedup", "filter"],
              "ingest": {"extractor": "resiliparse"},
              "dedup": {"scope": "global"}, "filter": {"language": {"thresholds": {"en": 0.5, "zh": 0.5}}}}
    (job_dir / "job.yaml").write_text(yaml.safe_dump({**config, "output": str(tmp_path / "cluster-out")}))
    (job_dir / "local.yaml").write_text(yaml.safe_dump({**config, "output": str(tmp_path / "local-out")}))

    c = LocalCluster(dashboard=True)
    try:
        c.start_head(num_cpus=1, resource="node_a")
        c.add_node(num_cpus=2, resource="node_b")
        address = f"http://127.0.0.1:{c.dash_port}"
        deadline = time.monotonic() + 180
        while True:  # the dashboard answers before its job agent is ready
            job = ray_cli(c, "job", "submit", "--address", address, "--working-dir", str(job_dir), "--",
                          "winnow", "run", "job.yaml")
            if "No available agent" not in job.stderr + job.stdout or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout + job.stderr
        nodes = c.wait_for_nodes(2)
        listed = ray_cli(c, "list", "tasks", "--address", address, "--format", "json", "--limit", "10000", "--detail")
        assert listed.returncode == 0, listed.stderr[-2000:]
        tasks = json.loads(listed.stdout)
    finally:
        c.stop()
    ran = [t for t in tasks if t.get("type") == "NORMAL_TASK" and t.get("state") == "FINISHED"]
    by_node: dict[str, int] = {}
    for t in ran:
        by_node[t["node_id"]] = by_node.get(t["node_id"], 0) + 1
    a, b = node_with(nodes, "node_a"), node_with(nodes, "node_b")
    assert by_node.get(a, 0) >= 1 and by_node.get(b, 0) >= 1, by_node

    env = {**os.environ, "RAY_ADDRESS": ""}
    local = subprocess.run([str(BIN / "winnow"), "run", "local.yaml", "--workers", "2"], cwd=job_dir, env=env,
                           capture_output=True, text=True, timeout=900)
    assert local.returncode == 0, local.stderr[-3000:]
    cluster_bytes, local_bytes = stage_bytes(tmp_path / "cluster-out"), stage_bytes(tmp_path / "local-out")
    assert {Path(k).parts[0] for k in cluster_bytes} == {"ingest", "dedup", "filter"}
    assert cluster_bytes == local_bytes
    for stage in ("ingest", "dedup", "filter"):
        mc = shard_io.read_json(tmp_path / "cluster-out" / stage / "manifest.json")
        ml = shard_io.read_json(tmp_path / "local-out" / stage / "manifest.json")
        assert (mc["input"], mc["kept"], mc["rejected"]) == (ml["input"], ml["kept"], ml["rejected"])
    # relative inputs were resolved by the job's driver inside its own unpacked working directory
    inputs = shard_io.read_json(tmp_path / "cluster-out/ingest/manifest.json")["shard_sources"]
    assert all(p.startswith("/") and "/runtime_resources/working_dir_files/" in p
               for srcs in inputs.values() for p in srcs), inputs
