"""The `winnow` CLI, the pipeline config, and `ray job submit -- winnow run CONFIG` against a
Ray head started by the test."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from winnow.pipeline.cli import main
from winnow.pipeline.config import ConfigError, load_config
from winnow.pipeline.shards import read_json

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_help_lists_the_stages(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "ingest"):
        assert command in out
    with pytest.raises(SystemExit):
        main(["ingest", "--help"])
    assert "--out" in capsys.readouterr().out


def test_config_errors_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("inputs: [x]\nstages: [ingest]\ningest: {extractr: resiliparse}\n")
    with pytest.raises(ConfigError, match="extractr"):
        load_config(bad)
    bad.write_text("inputs: [x]\nstages: [ingest, polish]\n")
    with pytest.raises(ConfigError, match="polish"):
        load_config(bad)
    bad.write_text("inputs: [x]\nstages: [ingest]\noutptu: y\n")
    with pytest.raises(ConfigError, match="outptu"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_demo_config_is_valid() -> None:
    for name in ("demo.yaml", "demo-remote.yaml"):
        cfg = load_config(REPO / "configs" / name)
        assert cfg.stages[0] == "ingest" and cfg.inputs


def test_missing_input_is_a_clear_error(tmp_path: Path, capsys) -> None:
    code = main(["ingest", str(tmp_path / "nothing-*.warc.gz"), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "matched nothing" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ray_job_submit_runs_winnow_unchanged(shared_data: Path, tmp_path: Path) -> None:
    """`ray start --head`, then `ray job submit -- winnow run CONFIG`: the job's driver joins that
    cluster through RAY_ADDRESS and writes the same shards as a local run."""
    temp_dir = tempfile.mkdtemp(prefix="wr", dir="/tmp")  # short: Ray's socket paths are length-limited
    # every port explicit: other Ray instances on this machine (tests, users) hold the defaults
    gcs_port, dash_port, agent_port, client_port = _free_port(), _free_port(), _free_port(), _free_port()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_ADDRESS", None)
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump({
        "inputs": [str(shared_data / "whirlwind/whirlwind.warc.gz"), str(shared_data / "warcio/example.warc.gz"),
                   str(shared_data / "resiliparse/warcfile.warc.gz")],
        "output": str(tmp_path / "job-out"), "stages": ["ingest"], "ray": {"workers": 2}}))
    head = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs_port}", "--num-cpus=2",
                             "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}",
                             f"--dashboard-agent-listen-port={agent_port}", f"--ray-client-server-port={client_port}",
                             f"--temp-dir={temp_dir}"], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        address = f"http://127.0.0.1:{dash_port}"
        deadline = time.monotonic() + 90
        while True:
            probe = subprocess.run([str(BIN / "ray"), "job", "list", "--address", address], env=env,
                                   capture_output=True, text=True)
            if probe.returncode == 0:
                break
            assert time.monotonic() < deadline, f"Ray head did not come up: {probe.stderr[-2000:]}"
            time.sleep(2)
        while True:  # the dashboard answers before its job agent is ready
            job = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", address, "--", "winnow", "run", str(cfg)],
                                 env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
            if "No available agent" not in job.stderr + job.stdout or time.monotonic() > deadline + 60:
                break
            time.sleep(2)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout + job.stderr
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        subprocess.run(["pkill", "-9", "-f", temp_dir], check=False)
        shutil.rmtree(temp_dir, ignore_errors=True)
    manifest = read_json(tmp_path / "job-out/ingest/manifest.json")
    assert manifest["input"] == manifest["kept"] + manifest["rejected"] == 4 + 6 + 50
    assert manifest["kept"] == 1 + 1 + 16
