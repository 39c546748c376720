"""Issue 14, item 7: configs are safe-loaded (no object construction from YAML); nothing
unpickles data from inputs; crawled content (URLs, ids, file names inside records) never steers
an output path; no model or data is fetched at run time unless the config names a URL (the
stages run here with every socket connection refused). The dashboard's escaping is tested in a
headless browser by tests/test_dashboard.py (planted <script>, onerror=, hostile reasons)."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from winnow.pipeline.runner import SerialRuntime, run_stage

REPO = Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("pipeline", "stages", "filters", "tokenizer") for p in sorted((REPO / d).rglob("*.py"))]


def test_no_unsafe_yaml_or_unpickling_in_the_code() -> None:
    """Every YAML read is `yaml.safe_load`; no `pickle`/`cloudpickle`/`torch.load`/`np.load(...,
    allow_pickle=True)`/`eval`/`exec` anywhere in winnow's own code (Ray pickles task arguments
    it makes itself, never bytes read from inputs)."""
    assert SOURCES
    bad = []
    patterns = [r"yaml\.load\(", r"yaml\.unsafe_load", r"yaml\.full_load", r"Loader\s*=\s*yaml\.(Unsafe|Full)?Loader",
                r"\bpickle\.loads?\(", r"cloudpickle\.loads?\(", r"torch\.load\(", r"allow_pickle\s*=\s*True",
                r"(?<![\w.])eval\(", r"(?<![\w.])exec\(", r"\bmarshal\.loads?\(", r"\bshelve\."]
    for p in SOURCES:
        text = p.read_text(encoding="utf-8")
        for pat in patterns:
            for m in re.finditer(pat, text):
                bad.append(f"{p.relative_to(REPO)}:{text[:m.start()].count(chr(10)) + 1}: {m.group(0)}")
    assert not bad, bad


def test_yaml_tags_that_build_objects_are_refused(tmp_path: Path) -> None:
    from winnow.pipeline.config import ConfigError, load_config

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f'stages: [ingest]\ninputs: [x]\noutput: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(evil)
    # a stage section given to a single-stage command is safe-loaded too
    section = tmp_path / "section.yaml"
    section.write_text(f'extractor: !!python/object/apply:os.system ["touch {marker}"]\n')
    import yaml

    from winnow.pipeline.cli import _stage_section

    with pytest.raises(yaml.YAMLError):
        _stage_section(str(section), "ingest")
    assert not marker.exists()


def _block_network(monkeypatch) -> list[str]:
    """Refuse every outgoing connection (and name lookup), recording each attempt."""
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("network access is blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", lambda self, *a, **k: refuse(*a))
    monkeypatch.setattr(socket.socket, "connect_ex", lambda self, *a, **k: refuse(*a))
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_stages_run_offline_and_crawled_names_never_become_paths(shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    """ingest → filter (language model bundled in a wheel) → decontaminate (local benchmark
    files) → tokenizer → pack with every socket connection refused: nothing is fetched. Records
    whose id, url and file-name fields are path traversals land in positional shard files only."""
    from winnow.stages.decontaminate import DecontaminateStage
    from winnow.stages.filter import FilterStage
    from winnow.stages.ingest import IngestStage
    from winnow.stages.pack import PackStage
    from winnow.stages.tokenizer_train import TokenizerStage

    attempts = _block_network(monkeypatch)
    hostile = tmp_path / "in" / "hostile.jsonl"
    hostile.parent.mkdir()
    text = (shared_data / "dolma/cc_en_head-0091.jsonl").read_text(encoding="utf-8").splitlines()
    rows = []
    for i, line in enumerate(l for l in text if l.strip()):
        doc = json.loads(line)
        body = doc.get("raw_content") or doc.get("text")
        evil = ["../../../../tmp/evil", "/etc/passwd", "..\\..\\win", "file:///etc/shadow", "%2e%2e%2fescape"][i % 5]
        rows.append({"id": evil, "url": evil, "filename": evil, "path": evil, "text": body})
    hostile.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    rt = SerialRuntime()
    out = tmp_path / "out"
    m = run_stage(IngestStage({}), [str(hostile.parent)], out / "ingest", rt)
    assert m["kept"] == len(rows)
    m = run_stage(FilterStage({"language": {"thresholds": {"en": 0.5}}}), [str(out / "ingest")], out / "filter", rt)
    m = run_stage(DecontaminateStage({"benchmarks": [str(shared_data / "benchmarks/gsm8k")]}), [str(out / "filter")],
                  out / "decontaminate", rt)
    tok = TokenizerStage({"vocab_size": 1024})
    run_stage(tok, [str(out / "decontaminate")], out / "tokenizer", rt)
    pack = PackStage({"seq_len": 256}).with_artifacts({"tokenizer": str(out / "tokenizer")})
    m = run_stage(pack, [str(out / "decontaminate")], out / "pack", rt)
    assert m["counters"]["tokens"] > 0
    assert attempts == []
    for p in tmp_path.rglob("*"):
        assert p == tmp_path / "in" or p.is_relative_to(tmp_path / "in") or p.is_relative_to(out), p
        if p.is_relative_to(out):
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+", p.name), p
    assert not Path("/tmp/evil").exists()
