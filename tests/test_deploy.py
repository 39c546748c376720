"""deploy/ agrees with the tested path: every recipe runs `winnow run CONFIG` (what
tests/test_cli.py submits with `ray job submit`) on configs/commoncrawl.yaml, which exists and is
a valid pipeline config; submit.sh builds exactly the tested command line."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
from pathlib import Path

import yaml

from winnow.pipeline.config import load_config

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
IMAGE_CONFIG = "/app/configs/commoncrawl.yaml"


def test_commoncrawl_config_is_valid_and_reads_a_crawl_listing(shared_data: Path, tmp_path: Path) -> None:
    """The config with its /data paths pointed at a directory holding what /data would hold."""
    (tmp_path / "models").mkdir()
    (tmp_path / "benchmarks").symlink_to(shared_data / "benchmarks")
    text = (REPO / "configs" / "commoncrawl.yaml").read_text(encoding="utf-8")
    cfg_file = tmp_path / "cc.yaml"
    cfg_file.write_text(text.replace("/data/", f"{tmp_path}/").replace("/data\n", f"{tmp_path}\n"), encoding="utf-8")
    cfg = load_config(cfg_file)
    assert cfg.inputs == ["s3://commoncrawl/crawl-data/CC-MAIN-2024-22/warc.paths.gz"]
    assert cfg.stages == ["ingest", "dedup", "decontaminate", "filter", "remix", "tokenizer", "pack"]
    for name in cfg.stages:
        cfg.stage_config(name)
    assert cfg.stage_config("ingest").paths_base_url == "s3://commoncrawl/"
    assert cfg.output == str(tmp_path / "winnow")


def test_every_recipe_runs_the_tested_entrypoint() -> None:
    assert (REPO / "configs" / "commoncrawl.yaml").exists()
    job = yaml.safe_load((DEPLOY / "kuberay-rayjob.yaml").read_text())
    assert shlex.split(job["spec"]["entrypoint"]) == ["winnow", "run", IMAGE_CONFIG]
    spec = job["spec"]["rayClusterSpec"]
    assert spec["enableInTreeAutoscaling"] is True
    group = spec["workerGroupSpecs"][0]
    assert 1 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    cluster = yaml.safe_load((DEPLOY / "ray-cluster.yaml").read_text())
    worker = cluster["available_node_types"]["cpu_worker"]
    assert worker["min_workers"] <= worker["max_workers"] <= cluster["max_workers"]
    # one image everywhere, the one the Dockerfile builds
    docker = (DEPLOY / "Dockerfile").read_text()
    tag = re.search(r"-t (\S+) \.", docker).group(1)
    assert cluster["docker"]["image"] == tag
    assert {c["image"] for g in [spec["headGroupSpec"], group] for c in g["template"]["spec"]["containers"]} == {tag}
    # the image installs winnow and s3fs, builds lmplz, and holds the config at the path used
    assert "COPY . /app" in docker and "pip install --no-cache-dir -e . s3fs" in docker
    assert "deploy/build_kenlm.sh" in docker and (DEPLOY / "build_kenlm.sh").exists()
    assert ".venv" in (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    env = yaml.safe_load((DEPLOY / "runtime_env.yaml").read_text())
    assert set(env) <= {"env_vars", "pip", "working_dir", "excludes", "py_modules"}
    assert yaml.safe_load(job["spec"]["runtimeEnvYAML"]) == env


def test_submit_sh_builds_the_tested_command_line(tmp_path: Path) -> None:
    """submit.sh with a `ray` that records its arguments: `ray job submit --address A
    [--runtime-env F] -- winnow run CONFIG [flags]`, as tests/test_cli.py runs it."""
    fake = tmp_path / "ray"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {tmp_path}/args\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "RAY": str(fake)}

    def args(*argv: str, **extra: str) -> list[str]:
        subprocess.run(["bash", str(DEPLOY / "submit.sh"), *argv], env={**env, **extra}, check=True)
        return (tmp_path / "args").read_text().splitlines()

    assert args("http://head:8265", WINNOW_RUNTIME_ENV="0") == [
        "job", "submit", "--address", "http://head:8265", "--", "winnow", "run", IMAGE_CONFIG]
    assert args("http://head:8265", "/x/my.yaml", "--workers", "8") == [
        "job", "submit", "--address", "http://head:8265", "--runtime-env", str(DEPLOY / "runtime_env.yaml"),
        "--", "winnow", "run", "/x/my.yaml", "--workers", "8"]
    r = subprocess.run(["bash", str(DEPLOY / "submit.sh")], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "usage" in r.stderr
