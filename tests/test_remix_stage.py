"""The remix stage end to end on Ray with real corpus and crawl documents: accounting, realised
shares, epochs, Arrow shards read by pyarrow / polars / DuckDB / HF datasets, identical bytes on
1 and 2 workers, a different order for another seed, resume, and bad input errors."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from remix_corpus import corpus_input, crawl_documents, write_shards
from winnow.pipeline import shards as shard_io
from winnow.pipeline.runner import RayRuntime, run_stage
from winnow.stages.remix import REPORT, RemixInputError, RemixStage
from winnow.stages.remix.mixture import ShortfallError

pytestmark = pytest.mark.slow

# input bytes: encyclopedia 707 k, reviews 260 k, code 558 k, other 976 k; budget 3 MB
MIXTURE = {"encyclopedia": 0.4, "reviews": 0.2, "code": {"share": 0.3, "max_epochs": 2.45}, "other": 0.1}


@pytest.fixture(scope="module")
def corpus_dir(shared_data, tmp_path_factory) -> Path:
    """1,200 real documents: en + zh Wikipedia, IMDb, GitHub code, poetry and LibreOffice help
    (no URL: `other` by default), in 3 shards."""
    return corpus_input(shared_data, tmp_path_factory.mktemp("remix_in"), per_file=200, shards=3)


def _run(inp, out, workers=2, **cfg):
    section = {"seed": 1, "shard_bytes": 1_000_000, **cfg}
    return run_stage(RemixStage(section), [str(inp)], out, RayRuntime(workers=workers, show_progress=False))


def _digests(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((out / "data").glob("*.arrow")) + sorted((out / "rejected").glob("*.parquet"))}


@pytest.fixture(scope="module")
def mixed(corpus_dir, tmp_path_factory, ray_local):
    out = tmp_path_factory.mktemp("remix_out") / "remix"
    budget = 3_000_000
    m = _run(corpus_dir, out, workers=2, mixture=MIXTURE, budget={"bytes": budget}, keep_rejected_text=True)
    return out, m, budget


def test_accounting_and_repeats(mixed):
    out, m, _ = mixed
    assert m["input"] == 1200
    assert m["kept"] + m["rejected"] == m["input"]
    assert set(m["reasons"]) <= {"remix:not_sampled"}
    rows = sum(shard_io.shard_rows(out / s["path"]) for s in m["shards"])
    assert rows == m["kept"] + m["counters"]["repeated"]          # output rows = sampled + repeats
    assert m["counters"]["repeated"] > 0 and m["rejected"] > 0    # reviews/code repeated, wiki sampled
    table = pa.concat_tables([shard_io.read_shard(out / s["path"]) for s in m["shards"]])
    assert (table.filter(pa.compute.equal(table.column("repeat"), 0)).num_rows == m["kept"])
    ids0 = table.filter(pa.compute.equal(table.column("repeat"), 0)).column("id").to_pylist()
    assert len(set(ids0)) == len(ids0)                            # each sampled document once at repeat 0
    rejected = pa.concat_tables([pq.read_table(out / r["path"]) for r in m["rejected_shards"]])
    assert not set(rejected.column("id").to_pylist()) & set(ids0)
    assert rejected.column("text").null_count == 0                # keep_rejected_text
    for col in ("domain", "domain_source", "domain_detail", "repeat", "lang", "text", "url"):
        assert col in table.column_names
    assert not [c for c in table.column_names if c.startswith("_")]
    assert not (out / "_work").exists()


def test_realised_shares_epochs_and_report(mixed):
    out, m, budget = mixed
    report = json.loads((out / REPORT).read_text())
    assert report["units"] == "bytes" and report["budget_units"] == budget
    assert abs(report["output_units"] - budget) < 0.01 * budget
    for g, v in report["groups"].items():
        assert v["epochs"] <= v["max_epochs"] + 1e-9, g
        if v["target_share"] > 0:
            assert abs(v["realised_share"] - v["target_share"]) < 0.005, (g, v)
        assert v["repeated"] == v["rows_out"] - v["documents_out"]
        assert v["tokens_estimated"] and v["tokens_out"] == round(v["bytes_out"] / 4.0)
    assert report["groups"]["code"]["max_epochs"] == 2.45
    # a group at e epochs repeats documents up to ceil(e) - 1 times: code 1.6, reviews 2.3, other 0.3
    table = pa.concat_tables([shard_io.read_shard(out / s["path"], ["domain", "repeat"]) for s in m["shards"]])
    for g, want in (("code", 1), ("reviews", 2), ("other", 0)):
        assert math.ceil(report["groups"][g]["epochs"]) - 1 == want
        rows = table.filter(pa.compute.equal(table.column("domain"), g))
        assert pa.compute.max(rows.column("repeat")).as_py() == want, g
    assert report["labels"]["rule/en/encyclopedia"] == 200 and report["labels"]["default/zh/other"] == 200
    # the manifest carries the report (without timings) and the per-domain integers
    assert m["remix"]["groups"] == report["groups"] and "phases" not in m["remix"]
    assert json.loads((out / "manifest.json").read_text())["remix"]["groups"]["code"]["max_epochs"] == 2.45
    assert m["counters"]["docs:reviews"] == report["groups"]["reviews"]["documents_out"]
    # the second axis: output per language × domain
    assert report["by_lang"]["zh/encyclopedia"]["rows_out"] + report["by_lang"]["en/encyclopedia"]["rows_out"] \
        == report["groups"]["encyclopedia"]["rows_out"]
    assert sum(v["bytes_out"] for v in report["by_lang"].values()) == report["output_units"]


def test_arrow_shards_are_read_by_pyarrow_polars_duckdb_and_hf_datasets(mixed, tmp_path):
    out, m, _ = mixed
    files = [str(out / s["path"]) for s in m["shards"]]
    n = m["kept"] + m["counters"]["repeated"]
    with pa.memory_map(files[0], "r") as src:               # memory-mappable IPC file
        first = pa.ipc.open_file(src).read_all()
    assert first.num_rows == m["shards"][0]["rows"]
    import polars as pl

    assert pl.scan_ipc(files).select(pl.len()).collect().item() == n
    import duckdb
    import pyarrow.dataset as ds

    arrow_ds = ds.dataset(files, format="ipc")   # DuckDB scans the memory-mapped dataset through Arrow
    got = duckdb.connect().execute("select count(*), count(distinct id) from arrow_ds").fetchone()
    assert got == (n, m["kept"])
    import datasets

    hf = datasets.load_dataset("arrow", data_files=files, split="train", cache_dir=str(tmp_path / "hf"))
    assert hf.num_rows == n and "domain" in hf.column_names


def test_same_seed_same_bytes_on_1_and_2_workers_other_seed_other_order(corpus_dir, tmp_path, ray_local):
    a = _run(corpus_dir, tmp_path / "w1", workers=1)
    b = _run(corpus_dir, tmp_path / "w2", workers=2)
    assert _digests(tmp_path / "w1") == _digests(tmp_path / "w2")
    assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]]
    c = _run(corpus_dir, tmp_path / "s2", workers=2, seed=2)
    order = lambda out, m: [i for s in m["shards"] for i in shard_io.read_shard(out / s["path"], ["id"]).column("id").to_pylist()]
    assert order(tmp_path / "w1", a) != order(tmp_path / "s2", c)
    # a rerun with the same config finds every shard committed and changes no byte
    before = _digests(tmp_path / "w1")
    again = _run(corpus_dir, tmp_path / "w1", workers=2)
    assert _digests(tmp_path / "w1") == before and again["shards"] == a["shards"]
    # a run killed after some commits: the missing shard is redone, byte-identical
    assert len(a["shards"]) >= 2
    for sub, ext in (("data", "arrow"), ("rejected", "parquet"), ("_progress", "json")):
        (tmp_path / "w1" / sub / f"part-00001.{ext}").unlink()
    (tmp_path / "w1" / "manifest.json").unlink()
    resumed = _run(corpus_dir, tmp_path / "w1", workers=2)
    assert _digests(tmp_path / "w1") == before and resumed["shards"] == a["shards"]


def test_token_budget_counted_with_a_tokenizer(corpus_dir, shared_data, tmp_path, ray_local):
    """budget in tokens + tokenizer.json: units are tokens counted with `tokenizers`."""
    from tokenizers import Tokenizer

    tok = shared_data / "anchors" / "deepseek_llm_tokenizer.json"
    m = _run(corpus_dir, tmp_path / "tok", workers=2, tokenizer=str(tok), budget={"tokens": 400_000},
             mixture={"encyclopedia": 0.5, "code": 0.3, "reviews": 0.2})
    report = json.loads((tmp_path / "tok" / REPORT).read_text())
    assert report["units"] == "tokens" and report["bytes_per_token"] is None
    assert abs(report["output_units"] - 400_000) < 0.01 * 400_000
    for g, v in report["groups"].items():
        assert not v["tokens_estimated"]
        if v["target_share"] > 0:
            assert abs(v["realised_share"] - v["target_share"]) < 0.005, (g, v)
    # the counts are the tokenizer's: recount the output
    texts = [x for sh in m["shards"] for x in shard_io.read_shard(tmp_path / "tok" / sh["path"], ["text"]).column("text").to_pylist()]
    enc = Tokenizer.from_file(str(tok)).encode_batch(texts, add_special_tokens=False)
    assert sum(len(e.ids) for e in enc) == report["output_units"]


def test_classifier_labels_documents_without_urls(corpus_dir, shared_data, tmp_path, ray_local):
    """With a trained topic classifier, documents no rule labels (poetry, LibreOffice help: no
    URL) get `domain_source` classifier; the model's sha256 is part of the config hash."""
    from remix_corpus import read_corpus
    from winnow.stages.remix.cli import MODEL_NAME, train_classifier

    docs = [d for name in ("wikipedia_en-001", "imdb_reviews-000", "github_code-000")
            for d in read_corpus(shared_data, name, 1200, 3000)[-600:]]
    m = train_classifier([str(write_shards(docs, tmp_path / "train", 1))], tmp_path / "model")
    model = str(tmp_path / "model" / MODEL_NAME)
    out = _run(corpus_dir, tmp_path / "out", workers=2, classifier=model)
    report = json.loads((tmp_path / "out" / REPORT).read_text())
    # 200 poems + 200 LibreOffice help pages have no URL: the classifier labels exactly those
    assert sum(v for k, v in report["labels"].items() if k.startswith("classifier/")) == 400
    assert not any(k.startswith("default/") for k in report["labels"])   # min_prob 0: every document labelled
    assert RemixStage({"classifier": model}).config_hash() != RemixStage({}).config_hash()
    assert out["input"] == 1200 and m["sha256"]


def test_default_temperature_mix_on_crawl_documents(shared_data, tmp_path, ray_local):
    """No mixture: temperature 0.7 over the domains the crawl documents have, budget = input."""
    inp = write_shards(crawl_documents(shared_data), tmp_path / "crawl", 2)
    m = _run(inp, tmp_path / "out", workers=2)
    report = json.loads((tmp_path / "out" / REPORT).read_text())
    assert m["input"] == 697 and report["mode"] == "temperature 0.7"
    # whole documents: groups of 1-8 documents land within a document of their target
    assert abs(report["output_units"] - report["budget_units"]) < 0.03 * report["budget_units"]
    for g, v in report["groups"].items():
        if v["documents_in"] >= 40:   # enough documents for the granularity
            assert abs(v["bytes_out"] - v["target_units"]) < 0.005 * report["budget_units"], (g, v)
    shares = {g: v["realised_share"] for g, v in report["groups"].items()}
    natural = {g: v["bytes_in"] / sum(w["bytes_in"] for w in report["groups"].values()) for g, v in report["groups"].items()}
    small = min(natural, key=natural.get)
    assert shares[small] > natural[small]          # the smallest domain is lifted
    for g, v in report["groups"].items():
        assert v["epochs"] <= 4 + 1e-9


def test_bad_input_errors_before_work(shared_data, tmp_path, ray_local):
    docs = crawl_documents(shared_data)[:50]
    no_url = tmp_path / "no_url"
    no_url.mkdir()
    pq.write_table(pa.Table.from_pylist([{"id": d["id"], "text": d["text"]} for d in docs]), no_url / "part-00000.parquet")
    with pytest.raises(RemixInputError, match="no `url` column"):
        _run(no_url, tmp_path / "o1")
    no_text = tmp_path / "no_text"
    no_text.mkdir()
    pq.write_table(pa.Table.from_pylist([{"id": d["id"], "url": d["url"]} for d in docs]), no_text / "part-00000.parquet")
    with pytest.raises(RemixInputError, match="no `text` column"):
        _run(no_text, tmp_path / "o2")
    null_id = write_shards([dict(d, id=None) if k == 3 else d for k, d in enumerate(docs)], tmp_path / "null_id", 1)
    with pytest.raises(RemixInputError, match="1 document.s. with a null `id`"):
        _run(null_id, tmp_path / "o0")
    empty = write_shards([], tmp_path / "empty", 1)
    with pytest.raises(RemixInputError, match="empty input"):
        _run(empty, tmp_path / "o3")
    crawl = write_shards(docs, tmp_path / "crawl", 1)
    with pytest.raises(ShortfallError, match=r"mixture\.legal: target share 0\.1 but the input has no documents"):
        _run(crawl, tmp_path / "o4", mixture={"legal": 0.1, "encyclopedia": 0.9})
    assert not list((tmp_path / "o4").glob("data/*"))   # nothing written
    no_lang = tmp_path / "no_lang"
    no_lang.mkdir()
    pq.write_table(pa.Table.from_pylist([{"id": d["id"], "url": d["url"], "text": d["text"]} for d in docs]),
                   no_lang / "part-00000.parquet")
    with pytest.raises(RemixInputError, match="`lang` column"):
        _run(no_lang, tmp_path / "o5", mixture={"en/news": 1.0})


def test_gather_takes_rows_per_batch_in_the_given_order(tmp_path):
    """The gather's row take across several label files of several record batches gives the
    rows in the given order (what a concat + take gives, without concatenating the files)."""
    import numpy as np

    from winnow.stages.remix import phases as ph

    plan = ph.Plan(work=str(tmp_path), inputs=("a", "b", "c"), seed=0, by_lang=False, taxonomy=None, classifier=None,
                   classifier_chars=2000, classifier_min_prob=0.0, tokenizer=None, units="bytes")
    tables = []
    for s, n in enumerate((20000, 5, 9000)):   # 20,000 rows: 3 record batches of 8,192
        t = pa.table({"id": [f"{s}-{r}" for r in range(n)], "text": [f"text {s} {r}" * (r % 7) for r in range(n)]})
        ph.write_work(t, ph.labelled_path(plan, s))
        tables.append(t)
    rng = np.random.default_rng(1)
    src = rng.integers(0, 3, 5000)
    idx = np.array([rng.integers(0, (20000, 5, 9000)[s]) for s in src])
    got = ph._take_in_order(plan, tables[0].schema, src, idx)
    base = np.array([0, 20000, 20005])
    want = pa.concat_tables(tables).take(pa.array(base[src] + idx))
    assert got.equals(want)
    # null texts (and repeated rows) come through as they are
    with_null = pa.table({"id": ["n-0", "n-1"], "text": ["x", None]})
    ph.write_work(with_null, ph.labelled_path(plan, 1))
    got = ph._take_in_order(plan, with_null.schema, np.array([1, 1, 1]), np.array([1, 0, 1]))
    assert got.column("text").to_pylist() == [None, "x", None]


def test_cli_flags_map_onto_the_config(tmp_path):
    import argparse

    mix = tmp_path / "mix.yaml"
    mix.write_text("remix:\n  mixture: {news: 0.4, blog: 0.6}\n  budget: {tokens: 1000}\n")
    args = argparse.Namespace(mixture=str(mix), seed=9)
    over = RemixStage.cli_overrides(args)
    assert over == {"mixture": {"news": 0.4, "blog": 0.6}, "budget": {"tokens": 1000}, "seed": 9}
    bare = tmp_path / "bare.yaml"
    bare.write_text("news: 0.5\nblog: 0.5\n")
    assert RemixStage.cli_overrides(argparse.Namespace(mixture=str(bare), seed=None)) == {"mixture": {"news": 0.5, "blog": 0.5}}
    assert RemixStage(over).config.budget.tokens == 1000
