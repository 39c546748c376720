"""Decontamination quality on real data: real benchmark items planted into real Wikipedia
documents, verbatim and lightly edited (bench/decontaminate.py's planting, the same code the
benchmark reports with), and the flagged rate on the clean documents.

Thresholds sit below what bench/decontaminate.py measures on all shared benchmarks (verbatim and
whitespace/punctuation 1.000; reformatted choices ~0.97; 60 % truncation ~0.92: items whose first
60 % is shorter than n are out of reach by design; clean documents flagged 0 / 4000 in en and zh).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from winnow.filters import ngram_index as ni

REPO = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("winnow_bench_decontaminate", REPO / "bench" / "decontaminate.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def setup(shared_data):
    from winnow.stages.decontaminate import BenchmarkIndex, DecontaminateConfig, load_benchmarks

    cfg = DecontaminateConfig(benchmarks=[str(shared_data / "benchmarks" / b) for b in ("gsm8k", "arc", "cmmlu", "c3")])
    benchmarks = load_benchmarks(cfg.benchmarks)
    return _bench(), BenchmarkIndex(benchmarks, cfg), {b.name: b.items for b in benchmarks}


@pytest.mark.parametrize("lang, names", [("en", ("gsm8k", "arc")), ("zh", ("cmmlu", "c3"))])
def test_recall_per_edit_kind_and_clean_flag_rate(setup, shared_data, lang, names):
    bench, index, items = setup
    pool = [it for n in names for it in items[n]]
    docs = bench.corpus_docs(f"wikipedia_{lang}-000", 1000, min_chars=300, data=shared_data)
    cases = bench.planted_cases(pool, docs[800:], per_edit=80, seed=5)
    recall = bench.score(ni.find_matches(index.index, [c["text"] for c in cases]), cases)
    assert recall["verbatim"] == 1.0
    assert recall["whitespace_punct"] >= 0.97
    assert recall["reformatted_choices"] >= 0.9
    assert recall["truncated"] >= 0.8
    flagged = sum(1 for m in ni.find_matches(index.index, docs[:800]) if m)
    assert flagged / 800 <= 0.005


def test_edits_really_change_the_text(setup, shared_data):
    """The edit kinds are not no-ops: each changes the characters of the planted snippet."""
    import random

    bench, _, items = setup
    item = items["arc"][3]
    rng = random.Random(0)
    verbatim = bench.render(item, "verbatim", rng)
    assert item.question in verbatim and "A. " in verbatim
    for edit in ("reformatted_choices", "whitespace_punct", "truncated"):
        assert bench.render(item, edit, rng) != verbatim
