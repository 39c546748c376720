"""Issue 12 item 2, the whole demo: `configs/demo.yaml` (ingest → dedup → decontaminate → filter →
remix → tokenizer → pack) submitted with `ray job submit` to a Ray cluster of two nodes, every
stage directory on object storage (moto's S3 server on loopback, `tests/s3_server.py`), byte for
byte what the same config gives on one machine.

Nothing rests on a shared local disk:
- the demo's crawl files are uploaded to the S3 server and read from `s3://`; every stage
  directory (dedup's `_work` included) is an `s3://` prefix;
- the job ships its config with `--working-dir` (each node unpacks its own copy);
- the second node runs in its own mount namespace with an empty tmpfs over the head's Ray temp
  dir (where the head unpacks the job's working dir) and over the test's job files, so it cannot
  read them; it sees what a machine of the same image would see: the installed winnow (the venv,
  wherever the clone is, /tmp included) and the read-only files the demo's filter and
  decontaminate sections name (KenLM models, benchmark sets), which a real cluster bakes into its
  image or mounts.
Where `unshare --mount` is not allowed (not root), the second node shares the disk; the test says
so on stdout and checks everything else the same way.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from s3_server import BUCKET, S3, s3  # noqa: F401 - s3 is the fixture
from test_cluster import BIN, LocalCluster, node_with, ray_cli

REPO = Path(__file__).resolve().parents[1]
STAGES = ["ingest", "dedup", "decontaminate", "filter", "remix", "tokenizer", "pack"]
IN_PREFIX = "demo-in"
OUT_PREFIX = "demo-out"


@pytest.fixture
def own_tmp() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="winnow-demo-s3-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def private_mounts_allowed() -> bool:
    """Whether this process may give a child its own mount namespace with a tmpfs over a dir."""
    if shutil.which("unshare") is None:
        return False
    d = tempfile.mkdtemp(prefix="wc-probe-")
    try:
        (Path(d) / "x").write_text("x")
        probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                f'mount -t tmpfs tmpfs "{d}" && test -z "$(ls -A "{d}")"'],
                               capture_output=True, text=True, timeout=30)
        return probe.returncode == 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


class IsolatedCluster(LocalCluster):
    """`LocalCluster` whose added nodes may run in their own mount namespace with an empty tmpfs
    over chosen directories (the head's Ray temp dir with its unpacked job working dir, the
    test's job files): that node cannot read them. The venv, the repo and the read-only inputs
    (models, benchmark sets: on a real cluster, in the image) stay visible wherever they are,
    e.g. a clone under /tmp."""

    def add_private_node(self, num_cpus: int, resource: str, hide: list[str]) -> None:
        node_dir = tempfile.mkdtemp(prefix="wc")
        self.node_dirs.append(node_dir)
        ray = [str(BIN / "ray"), "start", f"--address={self.address}", f"--num-cpus={num_cpus}",
               f"--resources={json.dumps({resource: 1})}", f"--temp-dir={node_dir}", *self._node_args()]
        mounts = " && ".join(f'mount -t tmpfs tmpfs "{d}"' for d in hide)
        script = f'{mounts} && exec "$@"'
        self._spawn(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *ray])
        self.wait_for_nodes(len(self.procs))


SEES = (
    "import json, os, sys, ray; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False); "
    "f = ray.remote(lambda paths: {p: os.path.exists(p) for p in paths}); "
    "print(json.dumps(ray.get(f.options(resources={sys.argv[2]: 0.01}, num_cpus=0).remote(sys.argv[3:]))))")


def seen_from(c: LocalCluster, resource: str, paths: list[str]) -> dict[str, bool]:
    """Which of `paths` exist for a Ray task placed on the node holding `resource`."""
    out = subprocess.run([str(BIN / "python"), "-c", SEES, c.address, resource, *paths], env=c.env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def demo_path(value: str, shared_data: Path) -> str:
    """A path of configs/demo.yaml (relative to the repo root) as an absolute path here;
    `../shared/data/…` is the `shared_data` fixture's directory (WINNOW_SHARED_DATA)."""
    if value.startswith("../shared/data/"):
        return str(shared_data / value[len("../shared/data/"):])
    return str((REPO / value).resolve())


def perplexity_models(demo: dict[str, Any], shared_data: Path, where: Path) -> dict[str, Any]:
    """The demo's `filter.perplexity` section with absolute paths: the repo's `models/lm` (made
    by `make demo`) when it is there, else trained into `where` by the Makefile's `models`
    commands (`winnow lm train`, `winnow lm cutoffs`; ~15 s), so the test does not depend on
    `make demo` having run."""
    ppl = dict(demo["filter"]["perplexity"])
    models = {lang: demo_path(p, shared_data) for lang, p in ppl["models"].items()}
    cutoffs = demo_path(ppl["cutoffs"], shared_data)
    if not all((Path(m) / "meta.json").is_file() for m in models.values()) or not Path(cutoffs).is_file():
        ref = shared_data / "ref_text"
        texts = {"en": [ref / "wikitext2/valid.txt", ref / "wikitext2/test.txt"],
                 "zh": [ref / "cmrc2018/cmrc2018_contexts_zh.txt", ref / "drcd/drcd_contexts_zh_hant.txt"]}
        models = {lang: str(where / "lm" / lang) for lang in ppl["models"]}
        cutoffs = str(where / "lm" / "cutoffs.csv")
        winnow = str(BIN / "winnow")
        for lang, out in models.items():
            subprocess.run([winnow, "lm", "train", "--lang", lang, "--text", *map(str, texts[lang]), "--out", out],
                           check=True, capture_output=True, timeout=600)
        subprocess.run([winnow, "lm", "cutoffs", *[a for lang, m in models.items() for a in ("--model", f"{lang}={m}")],
                        "--in", str(shared_data / "dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"),
                        "--out", cutoffs], check=True, capture_output=True, timeout=600)
    return {**ppl, "models": models, "cutoffs": cutoffs}


def upload_demo_inputs(s3: S3, demo: dict[str, Any], shared_data: Path) -> int:
    """Every file the demo's `inputs` name, in the order ingest expands them (entries in order,
    each glob sorted), uploaded under `IN_PREFIX/NN-name` so `s3://…/IN_PREFIX/*` lists them in
    that same order. Returns how many."""
    files = [f for entry in demo["inputs"] for f in sorted(glob.glob(demo_path(entry, shared_data)))]
    for i, f in enumerate(files):
        s3.client.upload_file(f, BUCKET, f"{IN_PREFIX}/{i:02d}-{Path(f).name}")
    return len(files)


def s3_demo_config(demo: dict[str, Any], shared_data: Path, ppl: dict[str, Any], output: str) -> dict[str, Any]:
    """configs/demo.yaml with its inputs read from the S3 server, its output at `output`, and the
    read-only files its sections name (benchmarks, perplexity models) as absolute paths."""
    cfg = json.loads(json.dumps(demo))
    cfg["inputs"] = [f"s3://{BUCKET}/{IN_PREFIX}/*"]
    cfg["output"] = output
    cfg["stages"] = STAGES
    cfg["ray"] = {"address": None, "workers": demo["ray"]["workers"]}
    cfg["decontaminate"]["benchmarks"] = [demo_path(b, shared_data) for b in demo["decontaminate"]["benchmarks"]]
    cfg["filter"]["perplexity"] = ppl
    return cfg


def _is_timing(key: str) -> bool:
    """Keys of run reports that hold this run's seconds or memory, not output."""
    return key == "seconds" or key.endswith("_s") or "rss" in key


def _normalised(value: Any, root: str) -> Any:
    """A JSON value with the output root replaced by `<OUT>` and timing keys left out."""
    if isinstance(value, dict):
        return {k: _normalised(v, root) for k, v in value.items() if not _is_timing(k)}
    if isinstance(value, list):
        return [_normalised(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<OUT>")
    return value


def comparable(files: dict[str, bytes], root: str) -> dict[str, str]:
    """What must be equal between two runs of one config: the sha256 of every data object
    (shards, rejected rows, remix's Arrow, the tokenizer files, the packs' .bin/.idx/.pidx) as
    stored, and every JSON report and manifest with its own output root named `<OUT>` (manifests
    name their inputs by URL or path) and timings left out. Not compared: stats.json (this run's
    seconds), commit records under `_progress/` (their fingerprints name the upstream objects'
    identities, ETags vs mtimes), dedup's `_work/`."""
    out = {}
    for key, data in sorted(files.items()):
        parts = key.split("/")
        if parts[-1] == "stats.json" or "_progress" in parts or "_work" in parts or "probe" in parts[-1]:
            continue
        if key.endswith(".json"):
            obj = _normalised(json.loads(data), root)
            data = json.dumps(obj, sort_keys=True).encode()
        out[key] = hashlib.sha256(data).hexdigest()
    return out


def json_diff(remote: dict[str, bytes], local_root: Path, key: str, out: str) -> Any:
    """For an assertion message: the top-level keys of a JSON object that differ, both sides."""
    if not key.endswith(".json"):
        return "bytes differ"
    r = _normalised(json.loads(remote[key]), out)
    loc = _normalised(json.loads((local_root / key).read_bytes()), str(local_root))
    return {k: (r.get(k), loc.get(k)) for k in sorted(set(r) | set(loc)) if r.get(k) != loc.get(k)}


def local_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def submit(c: LocalCluster, address: str, job_dir: Path, env_vars: dict[str, str]) -> subprocess.CompletedProcess:
    """`ray job submit --working-dir JOB_DIR -- winnow run job.yaml`, retried while the head's
    job agent is not up yet (the dashboard answers before it is)."""
    deadline = time.monotonic() + 180
    while True:
        job = ray_cli(c, "job", "submit", "--address", address, "--working-dir", str(job_dir),
                      "--runtime-env-json", json.dumps({"env_vars": env_vars}), "--",
                      "winnow", "run", "job.yaml", timeout=1800)
        if "No available agent" not in job.stderr + job.stdout or time.monotonic() > deadline:
            return job
        time.sleep(2)


@pytest.mark.slow
def test_demo_on_two_nodes_into_s3_matches_one_machine(s3: S3, shared_data: Path, own_tmp: Path) -> None:
    """The demo on a head (`node_a`, 1 CPU) and a second node (`node_b`, 2 CPUs, own mounts),
    submitted with `ray job submit`, every stage directory under `s3://winnow/demo-out/`: the job
    succeeds, Ray tasks ran on both nodes, the counts chain from stage to stage, and every object
    equals what `winnow run` of the same config writes into a local directory on one machine."""
    demo = yaml.safe_load((REPO / "configs/demo.yaml").read_text(encoding="utf-8"))
    assert demo["stages"] == STAGES, "configs/demo.yaml's stage list changed: update this test"
    n_files = upload_demo_inputs(s3, demo, shared_data)
    ppl = perplexity_models(demo, shared_data, own_tmp)
    out = f"s3://{BUCKET}/{OUT_PREFIX}"
    job_dir = own_tmp / "job"
    job_dir.mkdir()
    (job_dir / "job.yaml").write_text(yaml.safe_dump(s3_demo_config(demo, shared_data, ppl, out)), encoding="utf-8")
    aws = {k: s3.env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                  "AWS_ENDPOINT_URL", "AWS_EC2_METADATA_DISABLED")}

    private = private_mounts_allowed()
    print(f"second node in its own mount namespace: {private}")
    c = IsolatedCluster(dashboard=True)
    try:
        c.start_head(num_cpus=1, resource="node_a")
        if private:
            c.add_private_node(num_cpus=2, resource="node_b", hide=[c.temp_dir, str(job_dir)])
        else:
            c.add_node(num_cpus=2, resource="node_b")
        if private:  # the second node sees neither the head's Ray files nor this test's job files
            probe = [str(Path(c.temp_dir) / "session_latest"), str(job_dir / "job.yaml")]  # the dirs are empty mountpoints there
            assert seen_from(c, "node_b", probe) == dict.fromkeys(probe, False)
            assert seen_from(c, "node_a", probe) == dict.fromkeys(probe, True)
        address = f"http://127.0.0.1:{c.dash_port}"
        t0 = time.monotonic()
        job = submit(c, address, job_dir, aws)
        job_s = time.monotonic() - t0
        assert job.returncode == 0, job.stdout[-5000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout + job.stderr
        nodes = c.wait_for_nodes(2)
        listed = ray_cli(c, "list", "tasks", "--address", address, "--format", "json", "--limit", "10000", "--detail")
        assert listed.returncode == 0, listed.stderr[-2000:]
        tasks = json.loads(listed.stdout)
    finally:
        c.stop()
    by_node: dict[str, int] = {}
    for t in tasks:
        if t.get("type") == "NORMAL_TASK" and t.get("state") == "FINISHED" and "_call_measured" in (t.get("name") or ""):
            by_node[t["node_id"]] = by_node.get(t["node_id"], 0) + 1
    a, b = node_with(nodes, "node_a"), node_with(nodes, "node_b")
    print(f"job wall {job_s:.1f} s; finished tasks: node_a {by_node.get(a, 0)}, node_b {by_node.get(b, 0)}")
    assert by_node.get(a, 0) >= 1 and by_node.get(b, 0) >= 1, by_node
    for name in STAGES:
        assert f"{out}/{name}" in job.stdout, (name, job.stdout[-3000:])

    # the same config on one machine, into a local directory
    local_root = own_tmp / "local"
    local_cfg = own_tmp / "local.yaml"
    local_cfg.write_text(yaml.safe_dump(s3_demo_config(demo, shared_data, ppl, str(local_root))), encoding="utf-8")
    t0 = time.monotonic()
    local = subprocess.run([str(BIN / "winnow"), "run", str(local_cfg)], cwd=own_tmp, env=s3.env,
                           capture_output=True, text=True, timeout=1800)
    print(f"single-node local run wall {time.monotonic() - t0:.1f} s")
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]

    remote = s3.keys(f"{OUT_PREFIX}/")
    remote_cmp, local_cmp = comparable(remote, out), comparable(local_files(local_root), str(local_root))
    assert {k.split("/", 1)[0] for k in remote_cmp} == set(STAGES)
    assert sorted(remote_cmp) == sorted(local_cmp)
    differ = sorted(k for k in remote_cmp if remote_cmp[k] != local_cmp[k])
    assert not differ, {k: json_diff(remote, local_root, k, out) for k in differ}
    print(f"objects compared: {len(remote_cmp)} ({sum(k.endswith('.json') for k in remote_cmp)} JSON reports)")
    # the data objects are there and are what the manifests record
    manifests = {s: json.loads(remote[f"{s}/manifest.json"]) for s in STAGES}
    for s in STAGES:
        for shard in manifests[s].get("shards", []) + manifests[s].get("rejected_shards", []):
            assert hashlib.sha256(remote[f"{s}/{shard['path']}"]).hexdigest() == shard["sha256"], (s, shard["path"])
    assert {k for k in remote if k.startswith("pack/data/")} >= {"pack/data/part-00000.bin", "pack/data/part-00000.idx"}
    assert "tokenizer/tokenizer.json" in remote
    # every document accounted for, the counts chained from stage to stage (remix hands on its
    # kept rows plus the repeated copies of rare domains)
    assert manifests["ingest"]["input"] > 0 and len(manifests["ingest"]["shards"]) == n_files
    previous = None
    for s in STAGES:
        m = manifests[s]
        assert m["input"] == m["kept"] + m["rejected"], s
        if previous is not None:
            handed_on = manifests[previous]["kept"] + int(manifests[previous].get("counters", {}).get("repeated", 0))
            assert m["input"] == handed_on, (s, previous)
        if s != "tokenizer":
            previous = s
