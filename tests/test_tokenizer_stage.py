"""The tokenizer stage: sampling to a byte budget by group, the manifest, accounting, the CLI."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow.pipeline import shards as shard_io
from winnow.pipeline.runner import SerialRuntime, run_stage
from winnow.stages.tokenizer_train import TOKENIZER_MANIFEST, TokenizerStage, plan_sample, scan_shard

REPO = Path(__file__).resolve().parents[1]
VOCAB = 2048


def _docs(shared_data: Path, name: str, lang: str, n: int) -> list[dict]:
    with gzip.open(shared_data / "corpus" / name, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in itertools.islice(f, n)]
    return [{"id": f"{name}:{i}", "text": r["text"], "lang": lang} for i, r in enumerate(rows)]


@pytest.fixture(scope="module")
def shards_dir(shared_data, tmp_path_factory) -> Path:
    """Two parquet shards of real corpus documents (en, zh, code) with id/text/lang columns."""
    d = tmp_path_factory.mktemp("upstream")
    en = _docs(shared_data, "wikipedia_en-000.jsonl.gz", "en", 120)
    zh = _docs(shared_data, "wikipedia_zh-000.jsonl.gz", "zh", 120)
    code = _docs(shared_data, "github_code-000.jsonl.gz", "code", 60)
    rows = en + zh + code
    for i, part in enumerate((rows[0::2], rows[1::2])):
        pq.write_table(pa.Table.from_pylist(part), d / f"part-{i:05d}.parquet")
    return d


def _bytes(rows) -> int:
    return sum(len(r["text"].encode()) for r in rows)


def test_stage_trains_samples_and_accounts(shards_dir, tmp_path):
    out = tmp_path / "tok"
    stage = TokenizerStage({"vocab_size": VOCAB, "sample_bytes": 400_000})
    manifest = run_stage(stage, [str(shards_dir)], out, SerialRuntime())
    assert manifest["input"] == manifest["kept"] == 300 and manifest["rejected"] == 0
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "sample.parquet", TOKENIZER_MANIFEST):
        assert (out / name).is_file(), name
    tm = shard_io.read_json(out / TOKENIZER_MANIFEST)
    assert tm["vocab_size"] == VOCAB
    assert tm["weights_source" if False else "sample"]["weights_source"].startswith("input mixture")
    sample = pq.read_table(out / "sample.parquet").to_pylist()
    assert len(sample) == tm["sample"]["docs"] == manifest["counters"]["sample_docs"]
    assert sum(r["bytes"] for r in sample) == tm["sample"]["bytes"]
    # each group reaches its share of the budget (by at most one document over)
    groups = tm["sample"]["groups"]
    assert set(groups) == {"en", "zh", "code"}
    for g, v in groups.items():
        assert v["bytes"] >= v["target_bytes"]
        assert v["docs"] == sum(1 for r in sample if r["group"] == g)
    total_in = sum(v["available_bytes"] for v in groups.values())
    for v in groups.values():
        assert abs(v["weight"] - v["available_bytes"] / total_in) < 1e-9
    assert tm["files"]["tokenizer.json"]["sha256"] == shard_io.sha256_file(out / "tokenizer.json")


def test_stage_is_deterministic_and_weights_apply(shards_dir, tmp_path):
    cfg = {"vocab_size": VOCAB, "sample_bytes": 300_000, "weights": {"en": 0.5, "zh": 0.25, "code": 0.25}}
    a = tmp_path / "a"
    b = tmp_path / "b"
    run_stage(TokenizerStage(cfg), [str(shards_dir)], a, SerialRuntime())
    run_stage(TokenizerStage(cfg), [str(shards_dir)], b, SerialRuntime())
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    assert (a / "sample.parquet").read_bytes() == (b / "sample.parquet").read_bytes()
    groups = shard_io.read_json(a / TOKENIZER_MANIFEST)["sample"]["groups"]
    assert groups["en"]["target_bytes"] == 150_000 and groups["zh"]["target_bytes"] == 75_000
    assert groups["en"]["bytes"] >= 150_000 and groups["en"]["bytes"] < 150_000 + 100_000


def test_budget_larger_than_data_warns_and_uses_everything(shards_dir, tmp_path, caplog):
    out = tmp_path / "all"
    with caplog.at_level("WARNING", logger="winnow"):
        manifest = run_stage(TokenizerStage({"vocab_size": VOCAB, "sample_bytes": 10**12}), [str(shards_dir)], out,
                             SerialRuntime())
    tm = shard_io.read_json(out / TOKENIZER_MANIFEST)
    assert any("training on all of it" in w for w in tm["warnings"])
    assert "training on all of it" in caplog.text
    assert tm["sample"]["docs"] == manifest["input"] == 300
    assert tm["sample"]["bytes"] == tm["input_bytes"]


def test_weights_naming_unknown_or_missing_groups_are_an_error(shards_dir):
    scans = [scan_shard(str(p), TokenizerStage.Config(vocab_size=VOCAB)) for p in sorted(shards_dir.glob("*.parquet"))]
    with pytest.raises(ValueError, match=r"\['fr'\] are not in the input.*\['code'\] have no weight"):
        plan_sample(scans, TokenizerStage.Config(vocab_size=VOCAB, weights={"en": 1, "zh": 1, "fr": 1}))


def test_bad_config_is_an_error():
    with pytest.raises(ValueError, match="smaller than the 256 byte symbols"):
        TokenizerStage({"vocab_size": 100})
    with pytest.raises(ValueError, match="weights must be"):
        TokenizerStage({"weights": {"en": 0}})
    with pytest.raises(ValueError):
        TokenizerStage({"sample_bytes": 0})


def test_shards_without_text_column_are_refused_before_work(tmp_path):
    d = tmp_path / "notext"
    d.mkdir()
    pq.write_table(pa.table({"id": ["a"], "body": ["hello"]}), d / "part-00000.parquet")
    with pytest.raises(ValueError, match="no `text` column"):
        TokenizerStage({"vocab_size": VOCAB}).plan([str(d)])


def test_empty_text_is_an_error(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["", ""]}), d / "part-00000.parquet")
    with pytest.raises(ValueError, match="no text"):
        run_stage(TokenizerStage({"vocab_size": VOCAB}), [str(d)], tmp_path / "out", SerialRuntime())


def test_arrow_shards_are_read(shards_dir, tmp_path):
    d = tmp_path / "arrow"
    for p in sorted(shards_dir.glob("*.parquet")):
        shard_io.write_arrow_atomic(pq.read_table(p), d / p.name.replace(".parquet", ".arrow"))
    out = tmp_path / "tok"
    m = run_stage(TokenizerStage({"vocab_size": VOCAB, "sample_bytes": 10**12}), [str(d)], out, SerialRuntime())
    ref = tmp_path / "ref"
    run_stage(TokenizerStage({"vocab_size": VOCAB, "sample_bytes": 10**12}), [str(shards_dir)], ref, SerialRuntime())
    assert m["input"] == 300
    assert (out / "tokenizer.json").read_bytes() == (ref / "tokenizer.json").read_bytes()


def _winnow(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / ".venv" / "bin" / "winnow"), *args], capture_output=True, text=True,
                          timeout=600, env=env or dict(os.environ), cwd=REPO)


@pytest.mark.slow
def test_cli_train_on_ray_then_eval(shards_dir, shared_data, tmp_path):
    """`winnow tokenizer train` (local Ray, 2 workers) then `winnow tokenizer eval` against the anchor."""
    out = tmp_path / "tok"
    res = _winnow("tokenizer", "train", "--in", str(shards_dir), "--out", str(out), "--vocab-size", str(VOCAB),
                  "--sample-bytes", "300000", "--workers", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "entries" in res.stdout
    m = shard_io.read_json(out / "manifest.json")
    assert m["stage"] == "tokenizer" and m["input"] == m["kept"] == 300
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                            for r in _docs(shared_data, "wikipedia_en-001.jsonl.gz", "en", 20)
                            + _docs(shared_data, "libreoffice_help_zh_cn-000.jsonl.gz", "zh", 20)), encoding="utf-8")
    js = tmp_path / "eval.json"
    res = _winnow("tokenizer", "eval", f"ours={out}", f"deepseek={shared_data / 'anchors' / 'deepseek_llm_tokenizer.json'}",
                  "--text", str(held), "--json", str(js))
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads(js.read_text(encoding="utf-8"))
    assert {(r["tokenizer"], r["lang"]) for r in rows} == {(t, l) for t in ("ours", "deepseek") for l in ("en", "zh", "all")}
    assert "B/tok" in res.stdout and "deepseek" in res.stdout
    bad = _winnow("tokenizer", "train", "--in", str(shards_dir), "--out", str(tmp_path / "bad"), "--vocab-size", "10")
    assert bad.returncode == 2 and "smaller than the 256 byte symbols" in bad.stderr
