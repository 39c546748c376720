"""`winnow dedup` end to end on Ray: accounting and the keep rule on real Common Crawl text,
determinism across workers / shards / partitions, resume, scope, the incremental index, bad input."""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow.pipeline import shards as shard_io
from winnow.pipeline.runner import RayRuntime, run_stage
from winnow.stages.dedup import DedupStage
from winnow.stages.dedup import phases as ph

import dedup_graded as graded  # tests/dedup_graded.py

CC_FILE = "dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"


def cc_table(shared: Path) -> pa.Table:
    """The 697 real CC-MAIN-2019-30 documents in the stage's input schema."""
    rows = []
    with gzip.open(shared / CC_FILE, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            date = datetime.fromisoformat(r["metadata"]["warc_date"].replace("Z", "+00:00")).replace(microsecond=0)
            rows.append({"id": r["id"], "url": r["metadata"]["url"], "host": "", "dump": "CC-MAIN-2019-30",
                         "crawl_date": date, "text": r["text"]})
    return pa.Table.from_pylist(rows, schema=pa.schema([("id", pa.string()), ("url", pa.string()), ("host", pa.string()),
                                                        ("dump", pa.string()), ("crawl_date", pa.timestamp("s", tz="UTC")),
                                                        ("text", pa.string())]))


def write_shards(table: pa.Table, d: Path, n: int) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    step = -(-table.num_rows // n)
    for i in range(n):
        pq.write_table(table.slice(i * step, step), d / f"part-{i:05d}.parquet")
    return d


def run(inp: Path | list[Path], out: Path, workers: int = 2, **cfg) -> dict:
    cfg.setdefault("keep_work", True)
    inputs = [str(p) for p in (inp if isinstance(inp, list) else [inp])]
    return run_stage(DedupStage(cfg), inputs, out, RayRuntime(workers=workers, show_progress=False))


def kept(out: Path) -> dict[str, int]:
    t = pq.read_table(sorted((out / "data").glob("*.parquet")))
    return dict(zip(t.column("id").to_pylist(), t.column("dup_cluster_size").to_pylist()))


def rejected(out: Path) -> dict[str, str]:
    t = pq.read_table(sorted((out / "rejected").glob("*.parquet")))
    return dict(zip(t.column("id").to_pylist(), t.column("reason").to_pylist()))


def digests(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): shard_io.sha256_file(p)
            for sub in ("data", "rejected") for p in sorted((out / sub).glob("*.parquet"))}


@pytest.fixture(scope="module")
def families(shared_data: Path) -> pa.Table:
    """~300 graded near-duplicate families from real text (bases and variants)."""
    bases = graded.english_bases(shared_data)[::5]
    return graded.families_table(graded.build_families(bases, seed=1))


def test_real_cc_sample_accounting_and_keep_rule(ray_local, shared_data: Path, tmp_path: Path) -> None:
    table = cc_table(shared_data)
    out = tmp_path / "out"
    m = run(write_shards(table, tmp_path / "in", 3), out, partitions=4)
    assert m["input"] == 697 == m["kept"] + m["rejected"]
    assert m["reasons"]["dedup:exact_dup"] == 35            # the sample's 35 exact duplicates
    assert m["counters"]["exact_dup"] == 35 and m["counters"]["minhash_dup"] == m["reasons"].get("dedup:minhash_dup", 0)
    k, r = kept(out), rejected(out)
    assert len(k) == m["kept"] and not set(k) & set(r)
    assert sum(k.values()) == 697                            # every document is counted in exactly one cluster
    # keep rule for exact copies: earliest crawl_date, then smallest id
    rows = table.to_pylist()
    by_text: dict[str, list[dict]] = {}
    for row in rows:
        by_text.setdefault(row["text"], []).append(row)
    for group in by_text.values():
        if len(group) > 1:
            first = min(group, key=lambda x: (x["crawl_date"], x["id"]))
            assert first["id"] in k or r.get(first["id"]) == "dedup:minhash_dup"
            for other in group:
                if other is not first:
                    assert r[other["id"]] == "dedup:exact_dup"
    data = pq.read_table(out / "data" / "part-00000.parquet")
    assert data.column_names[:6] == table.column_names and data.column_names[-2:] == ["dup_cluster", "dup_cluster_size"]
    sizes = np.array(data.column("dup_cluster_size").to_pylist())
    clusters = data.column("dup_cluster").to_pylist()
    assert all((c is None) == (s == 1) for c, s in zip(clusters, sizes))


def test_same_result_for_any_workers_shards_partitions(ray_local, families: pa.Table, tmp_path: Path) -> None:
    a = tmp_path / "a"
    run(write_shards(families, tmp_path / "in1", 1), a, workers=1, partitions=1)
    b = tmp_path / "b"
    run(write_shards(families, tmp_path / "in3", 3), b, workers=2, partitions=4)
    c = tmp_path / "c"  # the distributed star rounds instead of union-find
    run(write_shards(families, tmp_path / "in5", 5), c, workers=2, partitions=2, union_find_max_edges=0)
    e = tmp_path / "e"  # the numpy kernels instead of numba: the same values, so the same result
    run(tmp_path / "in3", e, workers=2, partitions=4, backend="numpy")
    ka, kb, kc = kept(a), kept(b), kept(c)
    assert ka == kb == kc == kept(e)
    assert len(ka) < families.num_rows * 0.8                 # it did remove near-duplicates
    # same sharding, other worker count → same bytes
    d = tmp_path / "d"
    run(tmp_path / "in3", d, workers=1, partitions=4)
    assert digests(b) == digests(d)


def test_resume_after_a_kill_gives_the_same_bytes(ray_local, families: pa.Table, tmp_path: Path) -> None:
    inp = write_shards(families, tmp_path / "in", 3)
    out = tmp_path / "out"
    run(inp, out, partitions=2, union_find_max_edges=0)
    before = digests(out)
    work = next((out / "_work").iterdir())
    # what a kill leaves: no manifest, one shard uncommitted, another half written, a phase half done,
    # and the components phase to be redone from its input
    (out / "manifest.json").unlink()
    (out / "_progress" / "part-00001.json").unlink()
    (out / "data" / "part-00002.parquet").unlink()
    for p in list((work / "elect").glob("part-00001*")) + list((work / "lsh").glob("part-00000*")):
        p.unlink()
    (work / "cc-progress.json").unlink()
    for d in list(work.glob("cc-0[0-9][1-9]")) + [work / "cc-final", work / "attach"]:
        shutil.rmtree(d)
    m = run(inp, out, partitions=2, union_find_max_edges=0)
    assert digests(out) == before
    assert m["input"] == m["kept"] + m["rejected"] == families.num_rows


def test_scope_dump_keeps_one_copy_per_dump(ray_local, shared_data: Path, tmp_path: Path) -> None:
    t = cc_table(shared_data).slice(0, 120)
    t2 = t.set_column(t.schema.get_field_index("dump"), "dump", pa.array(["CC-MAIN-2024-22"] * t.num_rows))
    t2 = t2.set_column(0, "id", pa.array([f"{i}-again" for i in t.column("id").to_pylist()]))
    both = pa.concat_tables([t, t2])
    inp = write_shards(both, tmp_path / "in", 2)
    g = run(inp, tmp_path / "global", scope="global", partitions=2)
    d = run(inp, tmp_path / "dump", scope="dump", partitions=2)
    assert g["kept"] <= t.num_rows                     # the copies in the second dump are gone
    assert d["kept"] == 2 * g["kept"]                  # per dump: each dump keeps its own copy
    assert set(kept(tmp_path / "dump")) >= set(kept(tmp_path / "global"))


def test_incremental_index(ray_local, shared_data: Path, tmp_path: Path) -> None:
    bases = graded.english_bases(shared_data)[1::6][:200]
    fams = graded.build_families(bases, seed=2)
    table = graded.families_table(fams, dumps=("A",))
    ids = table.column("id").to_pylist()
    old = table.filter(pa.array([i.endswith("-b") for i in ids]))          # dump A: the originals
    new = table.filter(pa.array([i.endswith("-v") for i in ids]))          # dump B: their variants ...
    fresh = cc_table(shared_data).slice(300, 60)                            # ... plus unrelated documents
    fresh = fresh.set_column(fresh.schema.get_field_index("crawl_date"), "crawl_date",
                             pa.array([datetime(2025, 1, 1, tzinfo=timezone.utc)] * 60, pa.timestamp("s", tz="UTC")))
    new = pa.concat_tables([new, fresh.select(new.column_names)])
    ia = write_shards(old, tmp_path / "A", 2)
    ib = write_shards(new, tmp_path / "B", 2)
    index = tmp_path / "index"

    ma = run(ia, tmp_path / "outA", index=str(index), partitions=4)
    meta = json.loads((index / "index.json").read_text())
    assert len(meta["segments"]) == 1 and meta["docs"] == ma["kept"]

    mb = run(ib, tmp_path / "outB", index=str(index), partitions=4)
    stats = json.loads((tmp_path / "outB" / "stats.json").read_text())
    assert stats["counters"]["index_docs_before"] == ma["kept"]
    # only B's documents were signed: A's signatures came from the index
    work = next((tmp_path / "outB" / "_work").iterdir())
    signed = sum(ph.load_sig_file(p).num_rows for p in (work / "sig").glob("*.arrow"))
    assert signed == new.num_rows
    meta = json.loads((index / "index.json").read_text())
    assert len(meta["segments"]) == 2 and meta["docs"] == ma["kept"] + mb["kept"]

    # the same as deduplicating A and B together, as far as B is concerned
    g = run([ia, ib], tmp_path / "together", partitions=4)
    new_ids = set(new.column("id").to_pylist())
    assert {i for i in kept(tmp_path / "together") if i in new_ids} == set(kept(tmp_path / "outB"))
    assert mb["rejected"] > 0.4 * len(fams)             # most variants were duplicates of A's originals
    assert g["kept"] == ma["kept"] + mb["kept"]

    # rerunning B changes nothing, and does not add B to the index twice
    run(ib, tmp_path / "outB", index=str(index), partitions=4)
    assert len(json.loads((index / "index.json").read_text())["segments"]) == 2
    # deduplicating B again into a fresh output: everything B kept is now already indexed
    again = run(ib, tmp_path / "outB2", index=str(index), partitions=4)
    assert again["kept"] == 0


def test_bad_input(ray_local, shared_data: Path, tmp_path: Path) -> None:
    base = cc_table(shared_data).slice(0, 1).column("text")[0].as_py()
    t0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
    texts: list[bytes | None] = []
    texts += [b""] * 40 + [b"   \n "] * 10 + [None] * 5               # empty, whitespace-only, null
    texts += [b"hello"] * 30 + [f"word{chr(97 + i % 26)}{chr(97 + i // 26)}".encode() for i in range(30)]  # one word
    texts += [b"the very same page"] * 3000                               # identical by the thousand
    texts += [f"{base}\nvisit {i} today".encode() for i in range(2000)]   # one giant near-duplicate cluster
    texts += [b"caf\xe9 au lait \xff\xfe broken bytes " * 5, b"\xc3\x28 half a char \xe2\x82"]  # not UTF-8
    n = len(texts)
    table = pa.table({
        "id": [f"doc{i:05d}" for i in range(n)], "url": [f"https://x.org/{i}" for i in range(n)],
        "host": ["x.org"] * n, "dump": ["CC-MAIN-2024-22"] * n,
        "crawl_date": pa.array([t0 + timedelta(seconds=i) for i in range(n)], pa.timestamp("s", tz="UTC")),
        "text": pa.array(texts, pa.binary()).view(pa.string()),
    })
    out = tmp_path / "out"
    m = run(write_shards(table, tmp_path / "in", 2), out, partitions=4)
    assert m["input"] == n == m["kept"] + m["rejected"]
    c = m["counters"]
    # exact groups: "" ×40 with null ×5, whitespace ×10, "hello" ×30, the same page ×3000
    assert c["exact_dup"] == (40 + 5 - 1) + (10 - 1) + (30 - 1) + (3000 - 1)
    assert c["no_words"] == 2                              # the kept empty and the kept whitespace document
    assert c["invalid_utf8"] == 2
    assert c["short_docs"] >= 31                           # "hello" + 30 distinct one-word documents
    k = kept(out)
    assert k["doc00000"] == 45 and k["doc00040"] == 10   # empties: one kept, size counts the copies
    assert k["doc00055"] == 30                            # first "hello"
    assert all(f"doc{i:05d}" in k for i in range(85, 115))   # distinct one-word docs are not near-dups
    giant = [f"doc{i:05d}" for i in range(3115, 5115)]
    assert giant[0] in k and k[giant[0]] == 2000 and sum(g in k for g in giant) == 1
    assert c["minhash_dup"] == 1999
    assert c["lsh_edges"] <= 14 * n                         # star edges: linear in the bucket sizes


def test_work_files_are_removed_unless_kept(ray_local, shared_data: Path, tmp_path: Path) -> None:
    inp = write_shards(cc_table(shared_data).slice(0, 100), tmp_path / "in", 2)
    out = tmp_path / "out"
    m = run(inp, out, keep_work=False, partitions=2)
    assert not (out / "_work").exists()
    # a rerun finds every shard committed and needs no work files
    (out / "manifest.json").unlink()
    assert run(inp, out, keep_work=False, partitions=2) == m


def test_winnow_dedup_command(ray_local, shared_data: Path, tmp_path: Path) -> None:
    from winnow.pipeline.cli import main

    inp = write_shards(cc_table(shared_data).slice(0, 200), tmp_path / "in", 2)
    out = tmp_path / "out"
    assert main(["dedup", "--in", str(inp), "--out", str(out), "--scope", "dump",
                 "--index", str(tmp_path / "idx"), "--workers", "2"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["stage"] == "dedup" and m["config"]["scope"] == "dump" and m["input"] == 200
    assert json.loads((tmp_path / "idx" / "index.json").read_text())["docs"] == m["kept"]


def test_cli_flags_map_to_config() -> None:
    from winnow.pipeline.cli import build_parser

    args = build_parser().parse_args(["dedup", "--in", "a", "b", "--out", "o", "--scope", "dump", "--index", "idx"])
    assert args.inputs == ["a", "b"]
    assert DedupStage.cli_overrides(args) == {"scope": "dump", "index": "idx"}
    args = build_parser().parse_args(["dedup", "--in", "a", "--out", "o"])
    assert DedupStage.cli_overrides(args) == {}
    with pytest.raises(ValueError):
        DedupStage({"partitions": 3})
    with pytest.raises(ValueError):
        DedupStage({"no_such_key": 1})
