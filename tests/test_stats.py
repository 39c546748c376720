"""pipeline/stats.py: fixed-bin histograms and counters that merge exactly, computed from the
in-memory tables of a shard (real documents from ../shared/data, ingested without Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from winnow.pipeline import shards as shard_io
from winnow.pipeline.stats import (BIN_SPECS, INDEX_DUMP, Histogram, cross_dump_curve, merge_stats, record_stats,
                                   shard_stats)


@pytest.fixture(scope="module")
def documents(shared_data: Path) -> pa.Table:
    """697 CC-MAIN-2019-30 documents (+ 16 CC-MAIN-2020-34 pages) as ingest keeps them."""
    from winnow.stages import registry
    from winnow.stages.base import ShardTask

    ingest = registry()["ingest"]()
    tables = []
    for i, name in enumerate(["dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz", "resiliparse/warcfile.warc.gz"]):
        path = str(shared_data / name)
        tables.append(ingest.process_shard(ShardTask(i, f"part-{i:05d}", (path,), "x")).kept)
    return pa.concat_tables(tables)


def test_histogram_bins_agree_with_numpy(documents: pa.Table) -> None:
    import pyarrow.compute as pc

    lengths = pc.utf8_length(documents.column("text")).to_numpy()
    h = Histogram.of(lengths, "log10x10")
    edges = np.asarray(BIN_SPECS["log10x10"])
    want, _ = np.histogram(lengths, bins=edges)
    # numpy's last bin is closed; ours is half-open with overflow beyond: no length reaches 1e7
    assert h.counts == want.tolist() and h.overflow == 0 and h.underflow == 0
    assert h.n == documents.num_rows and h.total == lengths.sum()
    assert h.min == lengths.min() and h.max == lengths.max()
    q = h.quantile(0.5)
    assert np.mean(lengths <= q) >= 0.5 > np.mean(lengths <= edges[np.searchsorted(edges, q) - 1] - 1e-9)


def test_under_overflow_missing_and_spec_checks() -> None:
    h = Histogram.of([None, float("nan"), -1.0, 0.0, 0.5, 1.0, 2.0], "unit50")
    assert (h.missing, h.underflow, h.overflow) == (2, 1, 2)   # 1.0 is at the last edge: overflow
    assert h.counts[0] == 1 and h.counts[25] == 1 and h.n == 5
    with pytest.raises(ValueError, match="cannot merge"):
        h.merge(Histogram("log10x10"))
    with pytest.raises(ValueError, match="unknown histogram bin spec"):
        Histogram("auto")
    bad = h.to_json()
    bad["counts"] = bad["counts"][:-1]
    with pytest.raises(ValueError, match="bins"):
        Histogram.from_json(bad)
    assert Histogram.from_json(h.to_json()) == h


def test_shards_merge_exactly_whatever_the_split(documents: pa.Table) -> None:
    """Stats of 1, 3 or 7 shards, merged in any grouping, equal the stats of the whole table."""
    whole = shard_stats("ingest", documents, shard_io.empty_rejected())
    n = documents.num_rows
    for parts in (3, 7):
        cuts = np.linspace(0, n, parts + 1).astype(int)
        pieces = [shard_stats("ingest", documents.slice(a, b - a), shard_io.empty_rejected()) for a, b in zip(cuts, cuts[1:])]
        flat = merge_stats(pieces)
        nested = merge_stats([merge_stats(pieces[:2]), merge_stats(pieces[2:])])
        for merged in (flat, nested):
            assert merged["stats_shards"] == parts
            for key in ("hist", "counts", "sums", "bytes"):
                assert json.dumps(merged[key], sort_keys=True) == json.dumps(whole[key], sort_keys=True), key
    assert sum(whole["counts"]["dump"].values()) == n
    assert whole["counts"]["dump"]["CC-MAIN-2020-34"] == 16
    assert whole["bytes"]["kept_text"] == sum(len(t.encode()) for t in documents.column("text").to_pylist())
    assert whole["counts"]["tld"]["com"] > 0 and sum(whole["counts"]["crawl_month"].values()) <= n


def test_columns_of_later_stages(documents: pa.Table) -> None:
    """lang / lang_score / ppl / ppl_bucket / n_words (filter), dup_cluster_size (dedup), domain and
    n_tokens (remix, pack) and unknown numeric columns each get their distribution."""
    n = documents.num_rows
    rng = np.random.default_rng(0)
    lang = np.where(np.arange(n) % 5 == 0, "zh", "en")
    t = (documents.append_column("lang", pa.array(lang))
         .append_column("lang_score", pa.array(rng.uniform(0.5, 1, n), pa.float32()))
         .append_column("ppl", pa.array(np.where(lang == "en", rng.uniform(50, 2000, n), np.nan)))
         .append_column("ppl_bucket", pa.array(np.where(lang == "en", "head", "all")))
         .append_column("n_words", pa.array(rng.integers(50, 5000, n), pa.int32()))
         .append_column("dup_cluster_size", pa.array(np.where(np.arange(n) % 10 == 0, 3, 1), pa.int64()))
         .append_column("domain", pa.array(np.where(np.arange(n) % 2 == 0, "news", "forum")))
         .append_column("n_tokens", pa.array(rng.integers(10, 1000, n), pa.int64()))
         .append_column("stopword_ratio", pa.array(rng.uniform(0, 1, n))))
    s = shard_stats("x", t, shard_io.empty_rejected())
    assert s["counts"]["lang"] == {"en": int((lang == "en").sum()), "zh": int((lang == "zh").sum())}
    assert Histogram.from_json(s["hist"]["ppl_by_lang"]["en"]).n == (lang == "en").sum()
    assert Histogram.from_json(s["hist"]["ppl_by_lang"]["zh"]).missing == (lang == "zh").sum()
    assert s["counts"]["ppl_bucket_by_lang"] == {"en": {"head": int((lang == "en").sum())}, "zh": {"all": int((lang == "zh").sum())}}
    assert s["hist"]["lang_score_by_lang"]["en"]["spec"] == "unit50"
    assert s["counts"]["dup"] == {"clusters": len(range(0, n, 10)), "members": 3 * len(range(0, n, 10))}
    assert s["sums"]["tokens"] == int(pa.compute.sum(t.column("n_tokens")).as_py())
    assert sum(s["sums"]["tokens_by_domain"].values()) == s["sums"]["tokens"] == sum(s["sums"]["tokens_by_lang"].values())
    assert s["hist"]["stopword_ratio"]["spec"] == "unit50" and s["hist"]["n_words"]["spec"] == "log10x10"


def test_rejected_rows_by_reason_and_dump() -> None:
    rejected = pa.table({"id": ["a", "b", "c", "d"], "url": ["u"] * 4,
                         "reason": ["dedup:exact_dup", "dedup:exact_dup", "dedup:minhash_dup", "dedup:exact_dup"],
                         "text": ["x" * 10, "y" * 100, None, "z" * 1000],
                         "dump": ["CC-MAIN-2024-10", "CC-MAIN-2024-18", "CC-MAIN-2024-18", "CC-MAIN-2024-18"]})
    kept = pa.table({"id": ["k1", "k2"], "dump": ["CC-MAIN-2024-10", "CC-MAIN-2024-18"], "text": ["kept", "kept"],
                     "dup_cluster_size": pa.array([3, 3], pa.int64())})
    s = shard_stats("dedup", kept, rejected)
    assert s["counts"]["dump_rejected"] == {"CC-MAIN-2024-10": {"dedup:exact_dup": 1},
                                            "CC-MAIN-2024-18": {"dedup:exact_dup": 2, "dedup:minhash_dup": 1}}
    assert Histogram.from_json(s["hist"]["rejected_text_chars_by_reason"]["dedup:exact_dup"]).n == 3
    assert s["bytes"]["rejected_text"] == 1110
    # DeepSeek Table 1 for these two dumps: dump 1 alone loses 1 of 2, both together 4 of 6
    curve = cross_dump_curve(s["counts"]["dump"], s["counts"]["dump_rejected"])
    assert [(r["dumps"], r["documents"], r["removed"]) for r in curve] == [(1, 2, 1), (2, 6, 4)]


def test_cross_dump_curve_from_the_dump_overlap_matrix() -> None:
    """The curve from dedup's dump x dump matrix: a removal counts once both its dump and its
    original's are in; an original in a later dump (a crawl date against the dump order) counts
    late, one kept by an earlier run (the index) from the first dump on. Without the matrix every
    removal counts from its own dump."""
    a, b = "CC-MAIN-2024-10", "CC-MAIN-2024-18"
    kept = {a: 1, b: 1}
    rejected = {a: {"dedup:exact_dup": 1, "dedup:minhash_dup": 1}, b: {"dedup:exact_dup": 3, "dedup:minhash_dup": 1}}
    overlap = {a: {a: 1, b: 1}, b: {a: 2, b: 1, INDEX_DUMP: 1}}
    with_matrix = cross_dump_curve(kept, rejected, overlap=overlap)
    assert [(r["dumps"], r["last_dump"], r["documents"], r["removed"]) for r in with_matrix] == [(1, a, 3, 1), (2, b, 8, 6)]
    without = cross_dump_curve(kept, rejected)
    assert [(r["documents"], r["removed"]) for r in without] == [(3, 2), (8, 6)]
    # merged shard records add up to the same matrix, whatever the split
    parts = [{"counts": {"dump_overlap": {a: {a: 1}}}}, {"counts": {"dump_overlap": {a: {b: 1}, b: {a: 2}}}},
             {"counts": {"dump_overlap": {b: {b: 1, INDEX_DUMP: 1}}}}]
    assert merge_stats(parts)["counts"]["dump_overlap"] == overlap
    assert merge_stats(parts[::-1])["counts"]["dump_overlap"] == overlap


def test_commit_records_stats_and_a_failure_never_fails_the_shard(documents: pa.Table, tmp_path: Path) -> None:
    kept = documents.slice(0, 20)
    extra = {"hist": {"fill": Histogram.of([0.5, 1.0 - 1e-9], "unit50").to_json()}, "meta": {"seq_len": 4096}}
    rec = shard_io.commit_shard(tmp_path / "pack", "part-00000", kept=kept, rejected=shard_io.empty_rejected(),
                                input_rows=20, config_hash="h", fingerprint="f", stats=extra)
    assert rec["stats"]["stage"] == "pack" and rec["stats"]["meta"] == {"seq_len": 4096}
    assert Histogram.from_json(rec["stats"]["hist"]["fill"]).n == 2
    assert Histogram.from_json(rec["stats"]["hist"]["text_chars"]).n == 20
    assert shard_io.read_json(tmp_path / "pack/_progress/part-00000.json")["stats"] == rec["stats"]
    # a column the statistics cannot handle: the shard still commits, the error is counted
    odd = pa.table({"id": ["a"], "lang": pa.array([[1, 2]], pa.list_(pa.int64())), "lang_score": [0.5]})
    rec = shard_io.commit_shard(tmp_path / "odd", "part-00000", kept=odd, rejected=shard_io.empty_rejected(),
                                input_rows=1, config_hash="h", fingerprint="f")
    assert "error" in rec["stats"] and (tmp_path / "odd/data/part-00000.parquet").exists()
    assert merge_stats([rec["stats"], record_stats("odd", kept, shard_io.empty_rejected())])["errors"] == 1
