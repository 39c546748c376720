"""`winnow run` end to end on real crawl files: ingest → filter → dedup, each stage's input is
the previous stage's kept output, and every manifest adds up."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from winnow.pipeline.cli import main
from winnow.pipeline.shards import read_json, sha256_file


@pytest.mark.slow
def test_run_chains_stages_and_accounts_for_every_document(ray_local, shared_data: Path, tmp_path: Path, capsys) -> None:
    cfg = {
        "inputs": [str(shared_data / "resiliparse/warcfile.warc.gz"), str(shared_data / "whirlwind/whirlwind.warc.gz"),
                   str(shared_data / "dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"),
                   str(shared_data / "dolma/cc_en_head-*.jsonl")],
        "output": str(tmp_path / "out"),
        "stages": ["ingest", "filter", "dedup"],
        "filter": {"language": {"thresholds": {"en": 0.5, "zh": 0.5}}},
        "dedup": {"scope": "global"},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path)]) == 0
    printed = capsys.readouterr().out
    manifests = {s: read_json(tmp_path / "out" / s / "manifest.json") for s in cfg["stages"]}
    for name, m in manifests.items():
        assert m["input"] == m["kept"] + m["rejected"], name
        assert sum(m["reasons"].values()) == m["rejected"], name
        assert f"{name}: input {m['input']:,}" in printed
    assert manifests["filter"]["input"] == manifests["ingest"]["kept"]
    assert manifests["dedup"]["input"] == manifests["filter"]["kept"]
    assert manifests["ingest"]["input"] == 50 + 4 + 697 + 20
    assert any(r.startswith("filter:lang") for r in manifests["filter"]["reasons"])
    assert manifests["dedup"]["kept"] > 0
    # rerunning a finished pipeline plans again from the inputs (no finished-manifest shortcut),
    # finds every shard committed for the same inputs, redoes nothing and changes no byte
    before = {p: sha256_file(p) for p in sorted((tmp_path / "out").rglob("*")) if p.is_file() and p.name != "stats.json"}
    assert main(["run", str(path)]) == 0
    assert {p: sha256_file(p) for p in sorted((tmp_path / "out").rglob("*")) if p.is_file() and p.name != "stats.json"} == before
    for name in cfg["stages"]:
        stats = read_json(tmp_path / "out" / name / "stats.json")
        assert stats["shards_resumed"] == stats["shards"] == len(manifests[name]["shards"]), name
