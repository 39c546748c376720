"""`winnow decontaminate`: normalisation and hashing, the index, benchmark reading (every shared
set and every kind of bad input), drop/redact on real documents, the stage on Ray and the CLI."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow.filters import benchmarks as bm
from winnow.filters import ngram_index as ni

KEY = ni.HashKey.from_seed(0)

# Item counts of every shared benchmark (MANIFEST.md's table: test + val/dev splits).
EXPECTED_ITEMS = {"gsm8k": 1319, "humaneval": 164, "mmlu": 14042 + 1531 + 285, "arc": 1172 + 299 + 2376 + 570,
                  "cmmlu": 11582 + 335, "ceval": 12342 + 1346 + 260, "agieval_zh": 4723, "c3": 3892 + 3816}


def tokens(text: str) -> list[str]:
    b = ni.tokenize([text], KEY)
    return [text[s:e] for s, e in zip(b.start.tolist(), b.end.tolist())]


def wiki(shared: Path, lang: str, n: int) -> list[str]:
    out = []
    with gzip.open(shared / "corpus" / f"wikipedia_{lang}-000.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line)["text"])
            if len(out) >= n:
                return out
    return out


# --- normalisation and hashing ---------------------------------------------------------------------------
def test_tokens_fold_case_width_punctuation_and_split_cjk_by_character():
    assert tokens("Hello, World!  it's") == ["Hello", "World", "it", "s"]
    assert tokens("中文ABC，测试") == ["中", "文", "ABC", "测", "试"]
    assert tokens("snake_case x") == ["snake", "case", "x"]
    # Same tokens → same values, whatever the case, width, punctuation and spacing.
    a = ni.tokenize(["(A) The QUICK brown fox; １２３"], KEY).value
    b = ni.tokenize(["a. the quick\n\nbrown   fox 123"], KEY).value
    assert a.tolist() == b.tolist()


def test_window_hash_is_position_independent_and_keyed():
    batch = ni.tokenize(["one two three four five", "zero one two three"], KEY)
    h = ni.WindowHasher(batch, KEY)
    w = h.all_windows(3)
    assert w[0] == w[6]  # "one two three" at token 0 of doc 0 and token 1 of doc 1
    assert len(set(w.tolist())) == len(w) - 1
    assert h.at(np.array([0]), np.array([3]))[0] == w[0]
    other = ni.WindowHasher(ni.tokenize(["one two three"], ni.HashKey.from_seed(1)), ni.HashKey.from_seed(1))
    assert other.all_windows(3)[0] != w[0]
    assert not h.inside_doc(np.array([3]), 3)[0]  # "four five zero" spans two documents


def test_index_ngrams_short_items_boilerplate_and_offsets():
    texts = ["alpha beta gamma delta epsilon zeta eta theta",      # 8 tokens: n-grams of 4
             "short item text here",                              # 4 tokens: whole only
             "tiny",                                              # below min: not indexed
             *[f"which of the following is item{i}" for i in range(5)]]  # boilerplate prefix
    idx, stats = ni.build_index(texts, items=list(range(len(texts))), groups=list(range(len(texts))),
                                modes=[ni.GRAMS | ni.WHOLE] * len(texts), n=4, n_cjk=6, min_tokens=3,
                                min_cjk_tokens=3, max_groups=3, key=KEY)
    assert stats.too_short == 1 and stats.boilerplate_hashes >= 1
    docs = ["xx GAMMA, delta. Epsilon zeta yy",   # one 4-gram of item 0 (and its neighbours)
            "a short item text here!",             # the whole of item 1
            "short item text",                     # not the whole of item 1
            "which of the following is",           # boilerplate: no match
            "tiny tiny tiny"]
    found = ni.find_matches(idx, docs)
    assert [m.item for m in found[0]] == [0] and docs[0][found[0][0].start:found[0][0].end] == "GAMMA, delta. Epsilon zeta"
    assert [(m.item, m.k) for m in found[1]] == [(1, 4)] and docs[1][found[1][0].start:found[1][0].end] == "short item text here"
    assert found[2] == [] and found[3] == [] and found[4] == []
    assert idx.false_positive_rate() == len(idx) / 2.0 ** 64


# --- benchmarks --------------------------------------------------------------------------------------------
def test_every_shared_benchmark_reads_with_its_builtin_mapping(shared_data):
    found = bm.discover(shared_data / "benchmarks")
    assert sorted(name for name, _ in found) == sorted(EXPECTED_ITEMS)
    for name, path in found:
        b = bm.load_benchmark(name, [path])
        assert len(b.items) == EXPECTED_ITEMS[name], name
        assert all(it.question for it in b.items)
        assert len({it.id for it in b.items}) == len(b.items), name
    arc = bm.load_benchmark("arc", [shared_data / "benchmarks" / "arc"]).items[0]
    assert len(arc.choices) >= 3 and arc.answer == ""  # the answer key is a label, not text
    c3 = bm.load_benchmark("c3", [shared_data / "benchmarks" / "c3"]).items[0]
    assert c3.passage.startswith("男：") and c3.answer == ""  # the answer text is one of the choices


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_custom_mapping_jsonl_csv_parquet_and_json_gz(tmp_path):
    rows = [{"q": "What is the boiling point of water at sea level in degrees?", "opts": ["90", "100"], "a": "B"}]
    _write(tmp_path / "j" / "a.jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    _write(tmp_path / "g" / "a.json.gz", gzip.compress(json.dumps(rows).encode()))
    pq.write_table(pa.Table.from_pylist(rows), _write(tmp_path / "p" / "a.parquet", b""))
    _write(tmp_path / "c" / "a.csv", b"q,x,y,a\n\"What is the boiling point, at sea level?\",90,100,B\n")
    fields = {"question": "q", "choices": "opts", "answer": "a"}
    for sub in ("j", "g", "p"):
        (item,) = bm.load_benchmark("mine", [tmp_path / sub], fields).items
        assert item.choices == ("90", "100") and item.answer == "" and item.id == "a" + {"j": ".jsonl", "g": ".json.gz", "p": ".parquet"}[sub] + ":0"
    (item,) = bm.load_benchmark("mine", [tmp_path / "c"], {"question": "q", "choices": ["x", "y"]}).items
    assert item.question == "What is the boiling point, at sea level?"


@pytest.mark.parametrize("name, content, fields, message", [
    ("missing.jsonl", b'{"question": "q1 long enough"}\n{"prompt": "q2"}\n', {"question": "question"},
     "record 1: field 'question' (question) is missing"),
    ("nochoice.jsonl", b'{"question": "q1", "A": "x"}\n', {"question": "question", "choices": ["A", "B"]},
     "field 'B' (choices) is missing"),
    ("empty.jsonl", b"\n", {"question": "question"}, "empty"),
    ("gbk.jsonl", '{"question": "中文问题"}\n'.encode("gbk"), {"question": "question"}, "not UTF-8"),
    ("bad.jsonl", b'{"question": \n', {"question": "question"}, "not JSON"),
    ("blank.jsonl", b'{"question": "  "}\n', {"question": "question"}, "is empty"),
])
def test_bad_benchmark_files_name_file_and_field(tmp_path, name, content, fields, message):
    path = _write(tmp_path / name, content)
    with pytest.raises(bm.BenchmarkError) as err:
        bm.load_benchmark("mine", [path], fields)
    assert str(path) in str(err.value) and message in str(err.value)


def test_bad_benchmark_paths_and_config_fail_before_any_work(tmp_path, shared_data):
    from winnow.pipeline.config import ConfigError, validate_config

    (tmp_path / "emptydir").mkdir()
    with pytest.raises(bm.BenchmarkError, match="holds no benchmark files"):
        bm.load_benchmark("mine", [tmp_path / "emptydir"], {"question": "q"})
    with pytest.raises(bm.BenchmarkError, match="no built-in field mapping"):
        bm.load_benchmark("mine", [shared_data / "benchmarks" / "gsm8k"])
    with pytest.raises(bm.BenchmarkError, match="does not exist"):
        bm.discover(tmp_path / "nope")
    bad = _write(tmp_path / "b" / "x.jsonl", b'{"prompt": "p"}\n')
    raw = {"stages": ["decontaminate"], "decontaminate": {
        "benchmarks": [{"name": "mine", "paths": [str(bad)], "fields": {"question": "question"}}]}}
    with pytest.raises(ConfigError) as err:
        validate_config(raw)
    assert str(bad) in str(err.value) and "'question'" in str(err.value)
    with pytest.raises(ConfigError, match="benchmarks is empty"):
        validate_config({"stages": ["decontaminate"], "decontaminate": {"benchmarks": []}})


# --- the stage, without Ray -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stage_and_items(shared_data):
    from winnow.stages.decontaminate import DecontaminateStage, load_benchmarks

    cfg = {"benchmarks": [str(shared_data / "benchmarks" / b) for b in ("gsm8k", "arc", "cmmlu")]}
    stage = DecontaminateStage(cfg)
    stage.build_index()
    items = {b.name: b.items for b in load_benchmarks(stage.config.benchmarks)}
    return stage, items


def planted_table(shared: Path, items: dict) -> tuple[pa.Table, dict[str, str]]:
    """Real wiki documents, three with a real item planted: id -> benchmark expected."""
    en, zh = wiki(shared, "en", 40), wiki(shared, "zh", 40)
    gsm, arc, cm = items["gsm8k"][5], items["arc"][7], items["cmmlu"][200]
    docs = en + zh
    planted = {"en-0": gsm.question, "en-1": arc.question + "\n" + "\n".join(f"({chr(97 + i)}) {c}" for i, c in enumerate(arc.choices)),
               "zh-0": cm.question + "\nA. " + "\nB. ".join(cm.choices)}
    ids = [f"en-{i}" for i in range(len(en))] + [f"zh-{i}" for i in range(len(zh))]
    texts = [docs[i] + ("\n" + planted[d] + "\n" + docs[i][:200] if d in planted else "") for i, d in enumerate(ids)]
    table = pa.table({"id": ids, "url": [f"https://example.org/{d}" for d in ids], "text": texts})
    return table, {"en-0": "gsm8k", "en-1": "arc", "zh-0": "cmmlu"}


def test_drop_rejects_exactly_the_planted_documents(stage_and_items, shared_data):
    stage, items = stage_and_items
    table, expected = planted_table(shared_data, items)
    out = stage.decontaminate_table(table)
    got = dict(zip(out.rejected.column("id").to_pylist(), out.rejected.column("reason").to_pylist()))
    assert got == {d: f"decontaminate:{b}" for d, b in expected.items()}
    assert out.kept.num_rows + out.rejected.num_rows == table.num_rows
    assert out.counters["match:gsm8k"] == out.counters["match:arc"] == out.counters["match:cmmlu"] == 1
    assert out.counters[f"item:gsm8k:{items['gsm8k'][5].id}"] == 1
    assert out.kept.column_names == table.column_names
    again = stage.decontaminate_table(table)
    assert again.kept.equals(out.kept) and again.counters == out.counters


def test_redact_cuts_the_spans_and_keeps_the_rest(stage_and_items, shared_data):
    from winnow.stages.decontaminate import DecontaminateStage

    stage, items = stage_and_items
    red = DecontaminateStage(stage.config.model_copy(update={"action": "redact"}))
    red._index = stage._index
    table, expected = planted_table(shared_data, items)
    out = red.decontaminate_table(table)
    assert out.rejected.num_rows == 0 and out.counters["docs_redacted"] == 3
    by_id = {r["id"]: r for r in out.kept.to_pylist()}
    original = dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))
    for doc, bench in expected.items():
        spans = by_id[doc]["decontam_spans"]
        assert spans and {s["benchmark"] for s in spans} == {bench}
        text = original[doc]
        cut = "".join(text[a["end"]:b["start"]] for a, b in zip([{"end": 0}] + spans, spans + [{"start": len(text)}]))
        assert by_id[doc]["text"] == cut
        assert not ni.find_matches(red._index.index, [cut])[0]  # nothing of the item is left
        assert len(cut) > len(text) * 0.5  # the host document stays
    untouched = [r for d, r in by_id.items() if d not in expected]
    assert all(r["decontam_spans"] == [] and r["text"] == original[r["id"]] for r in untouched)


# --- on Ray, and the CLI ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_stage_on_ray_manifest_report_and_cli(ray_local, stage_and_items, shared_data, tmp_path):
    from winnow.pipeline.cli import main
    from winnow.pipeline.runner import RayRuntime, run_stage
    from winnow.stages.decontaminate import REPORT

    stage, items = stage_and_items
    table, expected = planted_table(shared_data, items)
    inp = tmp_path / "in"
    inp.mkdir()
    pq.write_table(table.slice(0, 40), inp / "part-00000.parquet")
    pq.write_table(table.slice(40), inp / "part-00001.parquet")
    manifest = run_stage(stage, [str(inp)], tmp_path / "out", RayRuntime(workers=2, show_progress=False))
    assert manifest["reasons"] == {"decontaminate:arc": 1, "decontaminate:cmmlu": 1, "decontaminate:gsm8k": 1}
    assert manifest["counters"]["docs_matched"] == 3
    report = json.loads((tmp_path / "out" / REPORT).read_text())
    assert report["benchmarks"]["gsm8k"]["docs_matched"] == 1 and report["benchmarks"]["gsm8k"]["items"] == 1319
    assert {r["benchmark"] for r in report["top_items"]} == {"gsm8k", "arc", "cmmlu"}
    assert report["index"]["gram_hashes"] > 100_000 and report["input"] == table.num_rows
    assert {r["item"] for r in report["top_items"]} == {items["gsm8k"][5].id, items["arc"][7].id, items["cmmlu"][200].id}
    # A rerun with nothing to do changes no byte, the report included.
    before = (tmp_path / "out" / REPORT).read_bytes()
    run_stage(stage, [str(inp)], tmp_path / "out", RayRuntime(workers=2, show_progress=False))
    assert (tmp_path / "out" / REPORT).read_bytes() == before
    # The CLI: same stage, same result; a bad benchmark path is a clear error (exit 2).
    code = main(["decontaminate", "--in", str(inp), "--out", str(tmp_path / "cli"), "--benchmarks",
                 *[str(shared_data / "benchmarks" / b) for b in ("gsm8k", "arc", "cmmlu")]])
    assert code == 0
    cli_manifest = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    assert cli_manifest["reasons"] == manifest["reasons"]
    a = pq.read_table(tmp_path / "out" / "data" / "part-00000.parquet")
    b = pq.read_table(tmp_path / "cli" / "data" / "part-00000.parquet")
    assert a.equals(b)
    assert main(["decontaminate", "--in", str(inp), "--out", str(tmp_path / "x"), "--benchmarks", str(tmp_path / "nope")]) == 2


def test_relative_benchmark_paths_become_absolute_on_the_driver(shared_data, monkeypatch):
    from winnow.stages.decontaminate import DecontaminateStage

    monkeypatch.chdir(shared_data)
    stage = DecontaminateStage({"benchmarks": ["benchmarks/humaneval",
                                               {"name": "g", "paths": ["benchmarks/gsm8k/test.jsonl"],
                                                "fields": {"question": "question", "answer": "answer"}}]})
    plain, spec = stage.config.benchmarks
    # absolute, the same directory (the cwd is the physical path when ../shared is a symlink)
    assert Path(plain).is_absolute() and Path(plain).resolve() == (shared_data / "benchmarks" / "humaneval").resolve()
    assert spec.paths == [str((shared_data / "benchmarks" / "gsm8k" / "test.jsonl").resolve())]
