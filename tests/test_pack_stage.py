"""The pack stage under the stage contract: BOS/EOS policy, accounting and rejections, the pack
manifest, resume from its own commit records, bad settings refused before work, and one run on
Ray that gives the same bytes as the serial run."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from pack_fixtures import build_pack, corpus_rows, make_tokenizer_dir, write_input_dir
from winnow.pipeline.runner import SerialRuntime, run_stage
from winnow.stages.pack import PackStage
from winnow.tokenizer.indexed import IndexedReader
from winnow.tokenizer.packing import read_pack_index


@pytest.fixture(scope="module")
def tok(tmp_path_factory, shared_data):
    return make_tokenizer_dir(tmp_path_factory.mktemp("tok") / "tok", shared_data)


@pytest.fixture(scope="module")
def rows(shared_data):
    r = corpus_rows(shared_data, per_source=6)
    r.insert(3, {"id": "empty-1", "url": "http://x/1", "text": "", "lang": "en", "domain": "reviews"})
    r.insert(9, {"id": "empty-2", "url": None, "text": None, "lang": "zh", "domain": "code"})
    return r


def _all_docs(out):
    m = json.loads((out / "pack_manifest.json").read_text())
    docs = []
    for s in m["shards"]:
        r = IndexedReader(out / s["bin"]["path"], out / s["idx"]["path"])
        docs.extend(np.array(r[i]) for i in range(len(r)))
    return m, docs


def test_pack_stage_outputs_and_accounting(tmp_path, tok, rows):
    out, manifest = build_pack(tmp_path, tok, [rows[:14], rows[14:]], seq_len=64, packing="bestfit")
    assert manifest["input"] == len(rows) and manifest["rejected"] == 2
    assert manifest["reasons"] == {"pack:empty": 2}
    m, docs = _all_docs(out)
    assert len(docs) == len(rows) - 2 == m["documents"]
    assert all(d[0] == m["bos_id"] == 100000 and d[-1] == m["eos_id"] == 100001 for d in docs)
    # BOS/EOS appear only at the ends (datatrove loses BOS when EOS is set: its issue #345)
    assert all(np.count_nonzero(d == 100000) == 1 and np.count_nonzero(d == 100001) == 1 for d in docs)
    assert m["tokens"] == sum(len(d) for d in docs)
    assert m["vocab_size"] == 100002 and m["dtype"] == "int32" and m["seq_len"] == 64
    from winnow.pipeline.shards import sha256_file
    assert m["tokenizer_sha256"] == sha256_file(tok / "tokenizer.json") and m["packing"] == "bestfit"
    assert m["megatron"] == {"index_header": "MMIDIDX", "index_version": 1, "dtype_code": 4, "sequences_per_document": 1}
    assert m["bos"] is True and m["eos"] is True and m["pad_id"] == m["eos_id"]  # no pad token named: EOS pads
    assert m["windows"] == sum(s["windows"] for s in m["shards"]) and m["documents"] == sum(s["documents"] for s in m["shards"])
    assert m["packing_stats"]["docs_split"] == m["packing_stats"]["docs_longer_than_window"]  # bestfit splits only those
    assert sum(m["tokens_by_lang"].values()) == m["tokens"] == sum(m["tokens_by_domain"].values())
    assert set(m["tokens_by_lang"]) == {"en", "zh", "code"}
    assert 0 <= m["packing_stats"]["padding_share"] < 0.2 and m["packing_stats"]["tokens_kept_share"] == 1.0
    for s in m["shards"]:
        for k in ("bin", "idx", "pidx"):
            assert sha256_file(out / s[k]["path"]) == s[k]["sha256"]
        ix = read_pack_index(out / s["pidx"]["path"])
        assert ix.idx_sha256 == s["idx"]["sha256"] and ix.packing == "bestfit"
    assert manifest["counters"]["tokens"] == m["tokens"]
    assert [s["path"] for s in manifest["shards"]] == ["data/part-00000.bin", "data/part-00001.bin"]


@pytest.mark.parametrize("bos,eos", [(False, True), (True, False), (False, False)])
def test_bos_eos_policy(tmp_path, tok, rows, bos, eos):
    out, _ = build_pack(tmp_path, tok, [rows[:8]], seq_len=64, bos=bos, eos=eos)
    m, docs = _all_docs(out)
    for d in docs:
        assert (d[0] == 100000) == bos and (d[-1] == 100001) == eos
    assert m["bos"] == bos and m["eos"] == eos


def test_rerun_and_resume(tmp_path, tok, rows):
    out, first = build_pack(tmp_path, tok, [rows[:10], rows[10:20], rows[20:]], seq_len=64)
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "stats.json")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    # a killed run: shard 1's commit record never got written
    (out / "_progress" / "part-00001.json").unlink()
    (out / "manifest.json").unlink()
    stage = PackStage({"tokenizer": str(tok), "seq_len": 64})
    again = run_stage(stage, [str(tmp_path / "pack-in")], out, runtime=SerialRuntime())
    assert again == first
    for p, (data, mtime) in before.items():
        assert p.read_bytes() == data, p
        if "part-00001" not in p.name and p.name not in ("manifest.json", "pack_manifest.json"):
            assert p.stat().st_mtime_ns == mtime, f"{p} was rewritten although committed"
    assert (out / "data" / "part-00001.bin").stat().st_mtime_ns != before[out / "data" / "part-00001.bin"][1]


def test_config_hash_includes_tokenizer_sha(tmp_path, tok, shared_data):
    other = make_tokenizer_dir(tmp_path / "tok2", shared_data)
    data = json.loads((other / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"]["vocab"]["winnowtest"] = 100002 + 5
    (other / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    a = PackStage({"tokenizer": str(tok)}).config_hash()
    b = PackStage({"tokenizer": str(other)}).config_hash()
    assert a != b
    assert PackStage({"tokenizer": str(tok)}).config_hash() == a
    # the same tokenizer files in another directory: the same hash (its location is not identity)
    import shutil

    copy = tmp_path / "tok-copy"
    shutil.copytree(tok, copy)
    assert PackStage({"tokenizer": str(copy)}).config_hash() == a
    assert PackStage({"tokenizer": str(copy), "seq_len": 128}).config_hash() != a


def test_bad_settings_refused_before_work(tmp_path, tok, rows, shared_data):
    inp = write_input_dir(tmp_path / "in", [rows[:4]])
    with pytest.raises(ValueError, match="does not fit dtype uint16"):
        PackStage({"tokenizer": str(tok), "dtype": "uint16"}).plan([str(inp)])
    no_bos = make_tokenizer_dir(tmp_path / "nobos", shared_data, with_bos=False)
    with pytest.raises(ValueError, match="names no bos_token"):
        PackStage({"tokenizer": str(no_bos)}).plan([str(inp)])
    PackStage({"tokenizer": str(no_bos), "bos": False}).plan([str(inp)])
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        PackStage({"tokenizer": str(tmp_path)}).plan([str(inp)])
    with pytest.raises(ValueError, match="no tokenizer given"):
        PackStage({}).plan([str(inp)])
    assert PackStage({}).with_artifacts({"tokenizer": str(tok)}).config.tokenizer == str(tok)


@pytest.mark.slow
def test_million_token_document_split_and_counted(tmp_path, tok):
    big = {"id": "big", "url": None, "text": " a" * 1_000_000, "lang": "en", "domain": "x"}
    small = {"id": "small", "url": None, "text": "hello world", "lang": "en", "domain": "x"}
    out, manifest = build_pack(tmp_path, tok, [[small, big, small]], seq_len=4096, packing="bestfit")
    m, docs = _all_docs(out)
    assert len(docs[1]) == 1_000_002  # " a" is one token; plus BOS and EOS
    assert m["packing_stats"]["docs_split"] == 1 and m["packing_stats"]["docs_longer_than_window"] == 1
    assert m["windows"] == -(-(1_000_002 % 4097 + 2 * 4) // 4097) + 1_000_002 // 4097


@pytest.mark.slow
def test_pack_on_ray_matches_serial(tmp_path, tok, rows, ray_local):
    """`winnow pack --in … --tokenizer … --out … --seq-len … --packing …` (the issue's command line)
    on Ray actors writes the bytes of the serial in-process run."""
    from winnow.pipeline.cli import main

    serial, _ = build_pack(tmp_path, tok, [rows[:12], rows[12:]], name="serial", seq_len=64, packing="concat")
    ray_out = tmp_path / "ray"
    assert main(["pack", "--in", str(tmp_path / "serial-in"), "--tokenizer", str(tok), "--out", str(ray_out),
                 "--seq-len", "64", "--packing", "concat", "--workers", "2"]) == 0
    for p in sorted((serial / "data").iterdir()):
        assert (ray_out / "data" / p.name).read_bytes() == p.read_bytes()
    assert (ray_out / "pack_manifest.json").read_bytes() == (serial / "pack_manifest.json").read_bytes()
    assert not [p for p in ray_out.rglob(".*.tmp")]
    assert os.path.exists(ray_out / "manifest.json")


EDGE_TEXTS = ["\n", "\r\n", "a\n\n b  \n", "  \n  x", "x  ", "\n\n\n  \t\n", "foo\rbar", "数字 123\n４５６ ",
              "<｜end▁of▁sentence｜>\nhi<｜begin▁of▁sentence｜>", " \u2028 line sep\u0085x", "emoji 😀\n😀", "tab\t\n\tx",
              "}\n}\n}\n", "same line\nsame line\nsame line"]


def test_piece_cache_gives_the_ids_of_whole_texts(tmp_path, tok, rows):
    """The stage's compiled pre-tokenizer + piece cache must give exactly `encode_batch` (with
    BOS/EOS around non-empty texts) on real documents, newline / added-token / whitespace edge
    cases, on a cold and a warm cache and with a cache small enough to be cleared between
    chunks; a tokenizer whose pre-tokenizer does not compile falls back to `encode_batch`."""
    import pyarrow as pa
    from tokenizers import Tokenizer

    texts = [r["text"] or "" for r in rows] + EDGE_TEXTS
    t = Tokenizer.from_file(str(tok / "tokenizer.json"))
    bos, eos = 100000, 100001
    want = [[bos] + e.ids + [eos] if e.ids else [] for e in t.encode_batch(texts, add_special_tokens=False)]
    data = json.loads((tok / "tokenizer.json").read_text(encoding="utf-8"))
    stage = PackStage({"tokenizer": str(tok), "batch_size": 7})
    stage.setup()
    assert stage._pieces is not None
    for _ in range(2):  # cold, then every piece cached
        flat, lengths = stage.encode(texts)
        got = np.split(flat, np.cumsum(lengths)[:-1])
        assert [g.tolist() for g in got] == want
    stage._pieces.max_pieces = 50  # cleared before every chunk: same ids
    stage._pieces.CHUNK_BYTES = 300  # many chunks; texts longer than this go to encode_batch whole
    stage._pieces._clear()
    for _ in range(2):
        flat, lengths = stage.encode(pa.array(texts))
        assert [g.tolist() for g in np.split(flat, np.cumsum(lengths)[:-1])] == want
    # a normalizer the piece cache does not compile: whole texts through encode_batch
    other = tmp_path / "normalized"
    other.mkdir()
    (other / "tokenizer_config.json").write_bytes((tok / "tokenizer_config.json").read_bytes())
    changed = json.loads(json.dumps(data))
    changed["normalizer"] = {"type": "NFKC"}
    (other / "tokenizer.json").write_text(json.dumps(changed, ensure_ascii=False), encoding="utf-8")
    s2 = PackStage({"tokenizer": str(other), "batch_size": 5})
    s2.setup()
    assert s2._pieces is None
    t2 = Tokenizer.from_file(str(other / "tokenizer.json"))
    want2 = [[bos] + e.ids + [eos] if e.ids else [] for e in t2.encode_batch(texts, add_special_tokens=False)]
    flat, lengths = s2.encode(texts)
    assert [g.tolist() for g in np.split(flat, np.cumsum(lengths)[:-1])] == want2
