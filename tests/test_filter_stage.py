"""stages/filter: the stage contract (accounting, columns, determinism, bad input) on real data,
without Ray for the unit tests and through pipeline.runner.run_stage on Ray for one end to end."""

from __future__ import annotations

import collections
import gzip
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow.filters.errors import ModelError
from winnow.stages import registry
from winnow.stages.base import ShardTask
from winnow.stages.filter import ADDED_COLUMNS, FilterStage
from winnow.stages.schema import BASE_DOCUMENT_SCHEMA
from tests.test_perplexity import trained_models, zh_spam_pages

BAD_INPUTS = {
    "none": None,
    "empty": "",
    "blank": " \n\t \n",
    "punct": "!!! ??? ... --- *** ;;; ,,,\n!!! ???",
    "huge": "All work and no play makes Jack a dull boy. " * 240_000,  # ~10.5 MB
    "mixed": "Привет мир こんにちは 你好 hello שלום مرحبا " * 20,
    "binaryish": "\x00\x01\x02\ufffd\ufffd\x7f" * 50,
}


def _table(rows: list[tuple[str, str | None]]) -> pa.Table:
    n = len(rows)
    return pa.table({
        "id": [r[0] for r in rows], "url": [f"http://example.com/{r[0]}" for r in rows],
        "host": ["example.com"] * n, "dump": ["CC-MAIN-2024-22"] * n,
        "crawl_date": [datetime(2024, 5, 1, tzinfo=timezone.utc)] * n, "text": [r[1] for r in rows],
        "source": ["test"] * n,
    }, schema=BASE_DOCUMENT_SCHEMA)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Path]:
    return trained_models(tmp_path_factory, shared_data)


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory, shared_data: Path, models: dict[str, Path]) -> Path:
    """Two input shards: 697 real CC documents; CCNet head docs, zh Wikipedia, zh spam, bad input."""
    d = tmp_path_factory.mktemp("filter_in")
    cc = [json.loads(l) for l in gzip.open(shared_data / "dolma" / "CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz", "rt")]
    pq.write_table(_table([(f"cc{i}", doc["text"]) for i, doc in enumerate(cc)]), d / "part-00000.parquet")
    rows = []
    for name in sorted((shared_data / "dolma").glob("cc_en_head-*.jsonl")):
        rows += [(f"head{len(rows)}", json.loads(l)["text"]) for l in name.read_text().splitlines() if l.strip()]
    zh_wiki = [l for l in models["zh_heldout"].read_text(encoding="utf-8").splitlines() if l.strip()][:30]
    rows += [(f"zhwiki{i}", t) for i, t in enumerate(zh_wiki)]
    rows += [(f"spam{i}", t) for i, t in enumerate(zh_spam_pages(shared_data))]
    rows += [(f"bad_{k}", v) for k, v in BAD_INPUTS.items()]
    pq.write_table(_table(rows), d / "part-00001.parquet")
    return d


def _config(models: dict[str, Path], perplexity: dict | None = None, **extra) -> dict:
    """A filter config with the test models; `perplexity` keys are added to that section."""
    ppl = {"models": {"en": str(models["en"]), "zh": str(models["zh"])}, **(perplexity or {})}
    return {"perplexity": ppl, **extra}


def _run_local(stage: FilterStage, shard: Path):
    return stage.process_shard(ShardTask(index=0, name="part-00000", inputs=(str(shard),)))


def test_registered_and_configurable(models: dict[str, Path]) -> None:
    assert registry()["filter"] is FilterStage
    with pytest.raises(ValueError):
        FilterStage({"langauge": {}})  # typo: extra keys are errors
    with pytest.raises(ValueError, match="unknown component"):
        FilterStage({"quality": {"rules": {"en": {"gopherr": {}}}}})
    stage = FilterStage(_config(models))
    assert stage.config.language.thresholds == {"en": 0.5, "zh": 0.5}


def test_bad_input_is_counted_never_a_crash(models: dict[str, Path], shards: Path) -> None:
    stage = FilterStage(_config(models, keep_rejected_text=True))
    out = _run_local(stage, shards / "part-00001.parquet")
    assert out.kept.num_rows + out.rejected.num_rows == out.input_rows
    reasons = dict(zip(out.rejected.column("id").to_pylist(), out.rejected.column("reason").to_pylist()))
    assert reasons["bad_none"] == reasons["bad_empty"] == reasons["bad_blank"] == "filter:empty"
    assert reasons["bad_huge"] == "filter:too_long"
    assert reasons["bad_punct"] in {"filter:lang", "filter:lang_score", "filter:gopher_min_words"}
    assert reasons["bad_mixed"].startswith("filter:")
    assert reasons["bad_binaryish"].startswith("filter:")
    assert all(r.startswith("filter:") for r in reasons.values())
    assert "filter:error" not in reasons.values()
    # keep_rejected_text keeps the text of rejected rows
    texts = dict(zip(out.rejected.column("id").to_pylist(), out.rejected.column("text").to_pylist()))
    assert texts["bad_punct"] == BAD_INPUTS["punct"]


def test_columns_added_none_dropped_and_language_split(models: dict[str, Path], shards: Path) -> None:
    stage = FilterStage(_config(models))
    out = _run_local(stage, shards / "part-00001.parquet")
    kept = out.kept
    assert kept.schema.names == BASE_DOCUMENT_SCHEMA.names + ADDED_COLUMNS.names
    rows = kept.to_pylist()
    by_id = {r["id"]: r for r in rows}
    head = [r for r in rows if r["id"].startswith("head")]
    zh = [r for r in rows if r["id"].startswith("zhwiki")]
    assert len(head) >= 14 and len(zh) >= 15
    assert all(r["lang"] == "en" and r["lang_score"] >= 0.5 and r["ppl"] > 0 for r in head)
    assert all(r["lang"] == "zh" and r["n_words"] >= 50 for r in zh)
    assert {r["ppl_bucket"] for r in rows} == {"all"}  # no cutoffs configured
    assert out.rejected.schema.names == ["id", "url", "reason"]
    assert "bad_huge" not in by_id
    assert sum(v for k, v in out.counters.items() if k.startswith("lang_")) == out.input_rows - 4  # 4 rejected before lang ID


def test_buckets_from_cutoffs(models: dict[str, Path], shards: Path, tmp_path: Path, shared_data: Path) -> None:
    from winnow.pipeline.lm import compute_cutoffs
    from winnow.filters.perplexity import PerplexityModel, write_percentile_csv

    lms = {"en": PerplexityModel(models["en"], "en"), "zh": PerplexityModel(models["zh"], "zh")}
    table, counts = compute_cutoffs(lms, [str(shards / "part-00000.parquet")], sample=10_000)
    cut = tmp_path / "cutoffs.csv"
    write_percentile_csv(cut, table)
    labelled = _run_local(FilterStage(_config(models, perplexity={"cutoffs": str(cut),
                                                                  "keep_buckets": ["head", "middle", "tail", "all"]})),
                          shards / "part-00000.parquet")
    buckets = collections.Counter(labelled.kept.column("ppl_bucket").to_pylist())
    assert buckets["head"] and buckets["middle"] and buckets["tail"]
    head_only = _run_local(FilterStage(_config(models, perplexity={"cutoffs": str(cut), "keep_buckets": ["head"]})),
                           shards / "part-00000.parquet")
    assert set(head_only.kept.column("ppl_bucket").to_pylist()) == {"head"}
    n_bucket_rejects = head_only.rejected.column("reason").to_pylist().count("filter:ppl_bucket")
    assert n_bucket_rejects == buckets["middle"] + buckets["tail"] + buckets["all"]
    # CCNet's own cutoff.csv is accepted as is (its values fit CCNet's models, not ours).
    ccnet = _run_local(FilterStage(_config(models, perplexity={"cutoffs": str(shared_data / "cc_net" / "cutoff.csv"),
                                                               "keep_buckets": ["head", "middle", "tail"]})),
                       shards / "part-00000.parquet")
    assert ccnet.kept.num_rows > 0 and set(ccnet.kept.column("ppl_bucket").to_pylist()) <= {"head", "middle", "tail"}


def test_deterministic_bytes_and_models_load_once(models: dict[str, Path], shards: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import winnow.stages.filter as filter_mod

    loads = []
    real = filter_mod._Models

    def counting(*a, **kw):
        loads.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(filter_mod, "_Models", counting)
    stage = FilterStage(_config(models))
    blobs = []
    for _ in range(2):
        for shard in sorted(shards.glob("*.parquet")):
            out = _run_local(stage, shard)
            buf = io.BytesIO()
            pq.write_table(out.kept, buf)
            blobs.append(buf.getvalue())
    assert loads == [1]  # one load for four shards
    assert blobs[:2] == blobs[2:]
    fresh = FilterStage(_config(models))
    buf = io.BytesIO()
    pq.write_table(_run_local(fresh, shards / "part-00000.parquet").kept, buf)
    assert buf.getvalue() == blobs[0]


def test_missing_model_dir_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "models" / "en"
    stage = FilterStage({"perplexity": {"models": {"en": str(missing)}}})
    with pytest.raises(ModelError, match=rf"{missing}.*winnow lm train --lang en"):
        stage.config_hash()
    with pytest.raises(ModelError, match=str(missing)):
        stage.setup()
    with pytest.raises(ModelError, match="nope.ftz"):
        FilterStage({"language": {"model_path": str(tmp_path / "nope.ftz")}}).setup()


def test_end_to_end_on_ray(ray_local, models: dict[str, Path], shards: Path, tmp_path: Path) -> None:
    from winnow.pipeline.runner import RayRuntime, run_stage

    stage = FilterStage(_config(models))
    out = tmp_path / "filter"
    manifest = run_stage(stage, [str(shards)], out, RayRuntime(workers=2))
    assert manifest["input"] == 697 + 20 + 30 + len(zh_spam_pages_count(shards)) + len(BAD_INPUTS)
    assert manifest["kept"] + manifest["rejected"] == manifest["input"]
    assert manifest["kept"] > 100
    assert manifest["reasons"]["filter:lang"] > 200  # the CC sample is multilingual
    assert manifest["reasons"]["filter:too_long"] == 1
    kept = pq.read_table(out / "data" / "part-00001.parquet")
    assert kept.schema.names == BASE_DOCUMENT_SCHEMA.names + ADDED_COLUMNS.names
    # Ray's bytes are the bytes of the same stage run in this process.
    local = FilterStage(_config(models)).run_and_commit(
        ShardTask(index=1, name="part-00001", inputs=(str(shards / "part-00001.parquet"),)), tmp_path / "local")
    assert local["data"]["sha256"] == json.loads((out / "_progress" / "part-00001.json").read_text())["data"]["sha256"]
    again = run_stage(FilterStage(_config(models)), [str(shards)], out, RayRuntime(workers=2))
    assert again["shards"] == manifest["shards"]


def zh_spam_pages_count(shards: Path) -> list[str]:
    ids = pq.read_table(shards / "part-00001.parquet", columns=["id"]).column("id").to_pylist()
    return [i for i in ids if i.startswith("spam")]


def test_an_exception_in_a_filter_is_a_counted_rejection(models: dict[str, Path], shards: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from winnow.filters.quality import QualityFilter

    real = QualityFilter.check

    def flaky(self, text, lang):
        if "Eiffel" in text:
            raise RuntimeError("boom")
        return real(self, text, lang)

    monkeypatch.setattr(QualityFilter, "check", flaky)
    table = _table([("ok", "\n".join(["The Eiffel Tower is a wrought-iron lattice tower in Paris, France."] * 3)),
                    ("empty", "")])
    out = FilterStage(_config(models)).filter_table(table)
    assert out.rejected.column("reason").to_pylist() == ["filter:error", "filter:empty"]
    assert out.counters["error_RuntimeError"] == 1


def test_retraining_a_model_changes_the_config_hash(models: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "en"
    shutil.copytree(models["en"], copy)
    cfg = {"perplexity": {"models": {"en": str(copy)}}}
    before = FilterStage(cfg).config_hash()
    assert FilterStage(cfg).config_hash() == before
    meta = json.loads((copy / "meta.json").read_text())
    meta["sha256"]["lm.binary"] = "0" * 64  # what a retrained model looks like to the hash
    (copy / "meta.json").write_text(json.dumps(meta))
    assert FilterStage(cfg).config_hash() != before


def test_no_network_from_setup_to_output(models: dict[str, Path], shards: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every model is a local file: loading them all and filtering real documents opens no socket."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    out = _run_local(FilterStage(_config(models)), shards / "part-00001.parquet")
    assert out.kept.num_rows > 30
    assert "zh" in set(out.kept.column("lang").to_pylist())


def test_one_pass_rules_leave_every_output_unchanged(models: dict[str, Path], shards: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage with the one-pass quality rules and our jieba loop writes exactly what it wrote
    with datatrove's classes run one by one and jieba's lcut: kept rows with every column, rejected
    rows with their reasons, counters, on both shards (real CC pages, zh Wikipedia, spam, bad input)."""
    from winnow.filters.quality import QualityFilter
    from winnow.filters.wordsplit import JiebaWordTokenizer

    stage = FilterStage(_config(models, keep_rejected_text=True))
    shard_files = sorted(shards.glob("*.parquet"))
    new = [_run_local(stage, p) for p in shard_files]
    monkeypatch.setattr(QualityFilter, "check", QualityFilter.check_reference)
    monkeypatch.setattr(JiebaWordTokenizer, "word_tokenize", JiebaWordTokenizer.reference_word_tokenize)
    old = [_run_local(stage, p) for p in shard_files]
    for a, b in zip(new, old):
        assert a.kept.equals(b.kept)
        assert a.rejected.equals(b.rejected)
        assert a.counters == b.counters
    reasons = collections.Counter(r for o in new for r in o.rejected.column("reason").to_pylist())
    assert sum(v for k, v in reasons.items() if k.startswith(("filter:gopher", "filter:fineweb", "filter:c4"))) >= 100


def test_batched_perplexity_equals_one_document_at_a_time(models: dict[str, Path], shards: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """filter_table scores perplexity per language in one `perplexities` call; the verdicts,
    added columns and counters equal `_judge` run document by document, and a batch that raises
    falls back to scoring each document alone (an error counted against that document only)."""
    from winnow.filters.perplexity import PerplexityModel

    table = pq.read_table(shards / "part-00001.parquet")
    stage = FilterStage(_config(models))
    out = stage.filter_table(table)
    counters: dict[str, int] = {}

    def count(key: str) -> None:
        counters[key] = counters.get(key, 0) + 1

    one_by_one = [stage._judge(t, count) for t in table.column("text").to_pylist()]
    assert out.kept.column("id").to_pylist() == [table.column("id")[i].as_py() for i, (r, _) in enumerate(one_by_one) if r is None]
    assert out.kept.column("ppl").to_pylist() == [v[3] for r, v in one_by_one if r is None]
    assert out.rejected.column("reason").to_pylist() == [f"filter:{r}" for r, _ in one_by_one if r is not None]
    assert out.counters == dict(sorted(counters.items()))
    assert any(v[3] is not None for r, v in one_by_one if r is None)  # perplexity was really scored

    real = PerplexityModel.perplexity

    def batch_fails(self, texts):
        raise RuntimeError("batch")

    scored = out.kept.column("text")[0].as_py()  # a document that reaches the perplexity step

    def one_fails(self, text):
        if text == scored:
            raise ValueError("this document")
        return real(self, text)

    monkeypatch.setattr(PerplexityModel, "perplexities", batch_fails)
    assert FilterStage(_config(models)).filter_table(table).kept.equals(out.kept)   # fallback: same output
    monkeypatch.setattr(PerplexityModel, "perplexity", one_fails)
    flaky = FilterStage(_config(models, max_error_share=1.0)).filter_table(table)
    assert flaky.counters["error_ValueError"] == 1
    assert flaky.rejected.column("reason").to_pylist().count("filter:error") == 1
    assert flaky.kept.num_rows == out.kept.num_rows - 1
