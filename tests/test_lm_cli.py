"""`winnow lm train` / `winnow lm cutoffs` through the real CLI, and deploy/build_kenlm.sh."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from winnow.filters.perplexity import LM_FILE, META_FILE, TOKENIZER_FILE, Cutoffs, PerplexityModel, read_percentile_csv
from winnow.pipeline.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def zh_model(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A Chinese model trained through the CLI on cmrc2018 (Simplified) + DRCD (Traditional)."""
    out = tmp_path_factory.mktemp("cli") / "zh"
    ref = shared_data / "ref_text"
    rc = main(["lm", "train", "--lang", "zh", "--text", str(ref / "cmrc2018" / "cmrc2018_contexts_zh.txt"),
               str(ref / "drcd" / "drcd_contexts_zh_hant.txt"), "--out", str(out)])
    assert rc == 0
    return out


def test_train_writes_a_loadable_model(zh_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert {p.name for p in zh_model.iterdir()} >= {TOKENIZER_FILE, LM_FILE, META_FILE}
    meta = json.loads((zh_model / META_FILE).read_text(encoding="utf-8"))
    assert meta["lang"] == "zh" and meta["order"] == 5
    assert [f["documents"] for f in meta["train"]["files"]] == [1104, 2000]
    lm = PerplexityModel(zh_model, "zh")
    simplified = lm.perplexity("北京是中华人民共和国的首都，也是全国的政治中心和文化中心。")
    traditional = lm.perplexity("臺北是中華民國的首都，也是全國的政治中心和文化中心。")
    gibberish = lm.perplexity("心中化文和心中治政的国全是也，都首的国和共民人华中是京北。")
    assert simplified < gibberish and traditional < gibberish
    # A rerun with the same inputs does nothing.
    capsys.readouterr()
    ref = REPO.parent / "shared" / "data" / "ref_text"
    assert main(["lm", "train", "--lang", "zh", "--text", str(ref / "cmrc2018" / "cmrc2018_contexts_zh.txt"),
                 str(ref / "drcd" / "drcd_contexts_zh_hant.txt"), "--out", str(zh_model)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_cutoffs_from_a_sample(zh_model: Path, shared_data: Path, tmp_path: Path, tmp_path_factory) -> None:
    from tests.test_perplexity import trained_models

    en = trained_models(tmp_path_factory, shared_data)["en"]
    out = tmp_path / "cutoffs.csv"
    sample = shared_data / "dolma" / "CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"
    assert main(["lm", "cutoffs", "--model", f"en={en}", "--model", f"zh={zh_model}",
                 "--in", str(sample), "--out", str(out)]) == 0
    table = read_percentile_csv(out)
    assert set(table) == {"en", "zh"}
    for values in table.values():
        ps = [values[p] for p in range(101)]
        assert ps == sorted(ps)
    cut = Cutoffs.from_csv(out)
    assert cut.thresholds["en"] == (table["en"][30], table["en"][60])
    # The sample's English documents spread over the three buckets by construction.
    lm = PerplexityModel(en, "en")
    from winnow.pipeline.lm import iter_documents
    from winnow.filters.language import LanguageIdentifier

    lid = LanguageIdentifier()
    buckets = [cut.bucket("en", lm.perplexity(t)) for t, _ in iter_documents([str(sample)])
               if t.strip() and lid.predict(t).lang == "en" and lid.predict(t).score >= 0.5]
    shares = {b: buckets.count(b) / len(buckets) for b in ("head", "middle", "tail")}
    assert 0.25 <= shares["head"] <= 0.35 and 0.25 <= shares["middle"] <= 0.35


def test_train_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "ref.txt"
    text.write_text("some reference text\n", encoding="utf-8")
    assert main(["lm", "train", "--lang", "en", "--text", str(text), "--out", str(tmp_path / "m"),
                 "--lmplz", str(tmp_path / "no_lmplz")]) == 1
    err = capsys.readouterr().err
    assert "no_lmplz" in err and "deploy/build_kenlm.sh" in err
    assert main(["lm", "train", "--lang", "en", "--text", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "m")]) == 1
    assert "missing.txt" in capsys.readouterr().err
    assert main(["lm", "cutoffs", "--model", f"en={tmp_path / 'nomodel'}", "--in", str(text),
                 "--out", str(tmp_path / "c.csv")]) == 1
    err = capsys.readouterr().err
    assert "nomodel" in err and "winnow lm train" in err
    assert not (tmp_path / "m").exists()


def test_build_script_is_idempotent() -> None:
    """`make` runs it when .venv/bin/lmplz is missing; with lmplz present it must do nothing."""
    venv = REPO / ".venv"
    assert (venv / "bin" / "lmplz").exists(), "run: bash deploy/build_kenlm.sh .venv"
    proc = subprocess.run(["bash", str(REPO / "deploy" / "build_kenlm.sh"), str(venv)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to do" in proc.stdout


def test_cutoffs_from_a_stage_directory(zh_model: Path, shared_data: Path, tmp_path: Path) -> None:
    """The CLI resolves a directory of shards; the library (filters/lm_train.py) takes files only."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from winnow.filters.lm_train import read_documents

    stage = tmp_path / "stage"
    stage.mkdir()
    paragraphs = (shared_data / "ref_text" / "cmrc2018" / "cmrc2018_contexts_zh.txt").read_text(encoding="utf-8").splitlines()
    pq.write_table(pa.table({"text": paragraphs[:60], "lang": ["zh"] * 60}), stage / "part-00000.parquet")
    out = tmp_path / "cutoffs.csv"
    assert main(["lm", "cutoffs", "--model", f"zh={zh_model}", "--in", str(stage), "--out", str(out)]) == 0
    assert set(read_percentile_csv(out)) == {"zh"}
    with pytest.raises(ValueError, match="is a directory"):
        list(read_documents([stage]))
