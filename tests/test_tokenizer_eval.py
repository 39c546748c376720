"""`winnow tokenizer eval`: figures per language, side by side, table and JSON; bad input."""

from __future__ import annotations

import gzip
import itertools
import json

import pytest

from winnow.tokenizer.evaluate import evaluate, format_table, load_tokenizer, main, read_texts, score


@pytest.fixture(scope="module")
def anchor(shared_data):
    return load_tokenizer(shared_data / "anchors" / "deepseek_llm_tokenizer.json")


@pytest.fixture()
def corpus_jsonl(shared_data, tmp_path):
    """A gzipped JSON Lines file mixing en and zh documents of the corpus (lang field)."""
    rows = []
    for name in ("wikipedia_en-001.jsonl.gz", "libreoffice_help_zh_cn-000.jsonl.gz"):
        with gzip.open(shared_data / "corpus" / name, "rt", encoding="utf-8") as f:
            rows += [json.loads(line) for line in itertools.islice(f, 10)]
    path = tmp_path / "mix.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return path, rows


def test_score_counts_exactly(anchor):
    texts = ["Hello world, 2024!", "中文文本"]
    s = score("ds", anchor, "mixed", texts)
    ids = [anchor.encode(t, add_special_tokens=False).ids for t in texts]
    assert s.tokens == sum(map(len, ids))
    assert s.bytes == sum(len(t.encode()) for t in texts)
    assert s.bytes_per_token == s.bytes / s.tokens
    assert s.words == 4  # whitespace-separated: 3 + the unsplit Chinese run
    assert s.vocab_used == len({i for x in ids for i in x})
    assert s.vocab_used_share == s.vocab_used / anchor.get_vocab_size(with_added_tokens=True)
    zh = score("ds", anchor, "zh", ["中文文本"])
    assert zh.tokens_per_word is None and zh.chars_per_token == 4 / zh.tokens


def test_read_texts_groups_by_lang_and_label(corpus_jsonl, tmp_path):
    path, rows = corpus_jsonl
    groups = read_texts([str(path)])
    assert sorted(groups) == ["en", "zh"] and len(groups["en"]) == 10
    plain = tmp_path / "notes.txt"
    plain.write_text("line one\nline two\n", encoding="utf-8")
    groups = read_texts([f"code={path}", str(plain)])
    assert len(groups["code"]) == 20 and "".join(groups["notes"]) == "line one\nline two\n"


def test_evaluate_side_by_side_and_table(anchor, corpus_jsonl):
    path, _ = corpus_jsonl
    rows = evaluate({"a": anchor, "b": anchor}, read_texts([str(path)]))
    assert [(r.tokenizer, r.lang) for r in rows] == [("a", "en"), ("a", "zh"), ("a", "all"),
                                                      ("b", "en"), ("b", "zh"), ("b", "all")]
    a_all = rows[2]
    assert a_all.tokens == rows[0].tokens + rows[1].tokens
    table = format_table(rows)
    assert table.count("\n") == 4 and "B/tok" in table


def test_cli_table_and_json(anchor, corpus_jsonl, shared_data, tmp_path, capsys):
    path, _ = corpus_jsonl
    out = tmp_path / "r.json"
    anchor_path = shared_data / "anchors" / "deepseek_llm_tokenizer.json"
    assert main([f"deepseek={anchor_path}", "--text", str(path), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "deepseek" in printed and "en" in printed
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert {r["lang"] for r in rows} == {"en", "zh", "all"}
    assert all(r["bytes_per_token"] > 1 for r in rows)


def test_bad_input_is_a_clear_error(shared_data, tmp_path, capsys):
    anchor_path = str(shared_data / "anchors" / "deepseek_llm_tokenizer.json")
    assert main([str(tmp_path / "nope"), "--text", anchor_path]) == 2
    assert "no tokenizer.json" in capsys.readouterr().err
    assert main([anchor_path, "--text", str(tmp_path / "missing.txt")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\nnot json\n', encoding="utf-8")
    assert main([anchor_path, "--text", str(bad)]) == 2
    assert "bad.jsonl:2: not JSON" in capsys.readouterr().err
    notext = tmp_path / "notext.jsonl"
    notext.write_text('{"body": "x"}\n', encoding="utf-8")
    assert main([anchor_path, "--text", str(notext)]) == 2
    assert "string `text` field" in capsys.readouterr().err
    junk = tmp_path / "tokenizer.json"
    junk.write_text("{}", encoding="utf-8")
    assert main([str(junk), "--text", str(notext)]) == 2
