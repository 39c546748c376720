"""`winnow dashboard` / `winnow stats` on a run directory built here: ingest → dedup → filter on
real crawl files (plus a later "dump" that re-crawls 60 of them and a page with planted markup),
opened in real headless Chromium (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from winnow.pipeline import shards as shard_io

EVIL_SCRIPT = "<script>window.__pwned = 1</script>"
EVIL_IMG = '<img src="x" onerror="window.__pwned = 2">'
EVIL_URL = "https://example.org/?q=<script>window.__pwned=3</script>"
LATER_DUMP = "CC-MAIN-2024-10"
RECRAWLED = 60


def _wikitext_paragraph(shared_data: Path) -> str:
    """A real English paragraph (WikiText-2, detokenised enough to read)."""
    lines = (shared_data / "ref_text/wikitext2/test.txt").read_text(encoding="utf-8").splitlines()
    para = next(l for l in lines if len(l.split()) > 120 and not l.strip().startswith("="))
    return para.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".").replace(" ,", ",").replace(" .", ".")


def write_later_dump(shared_data: Path, path: Path) -> None:
    """A JSONL "re-crawl" in a later dump: 60 documents of the CC-MAIN-2019-30 sample again (exact
    cross-dump duplicates), and one page whose text holds a <script> and an onerror= attribute."""
    src = shared_data / "dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"
    docs = [json.loads(l) for l in gzip.open(src, "rt", encoding="utf-8")]
    with open(path, "w", encoding="utf-8") as f:
        for i, d in enumerate(docs[:RECRAWLED]):
            f.write(json.dumps({"id": f"recrawl-{i}", "url": d["metadata"]["warc_url"], "dump": LATER_DUMP,
                                "crawl_date": "2024-03-01T00:00:00Z", "text": d["text"]}) + "\n")
        para = _wikitext_paragraph(shared_data)
        half = len(para) // 2
        text = f"{para[:half]}\n{EVIL_SCRIPT}\n{para[half:]}\n{EVIL_IMG}\n{para}"
        f.write(json.dumps({"id": "planted", "url": EVIL_URL, "dump": LATER_DUMP,
                            "crawl_date": "2024-03-01T00:00:00Z", "text": text}) + "\n")


def build_run(shared_data: Path, out: Path, lm_dir: Path) -> dict[str, dict]:
    """ingest → dedup → filter into `out` (needs Ray), keeping rejected text; returns the manifests."""
    from winnow.pipeline.runner import RayRuntime, run_stage
    from winnow.stages import registry

    later = out.parent / "later_dump.jsonl"
    write_later_dump(shared_data, later)
    reg = registry()
    runtime = RayRuntime(workers=2, show_progress=False)
    inputs = [str(shared_data / "resiliparse/warcfile.warc.gz"),
              str(shared_data / "dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"),
              str(shared_data / "dolma/cc_en_head-0091.jsonl"), str(later)]
    manifests = {"ingest": run_stage(reg["ingest"]({"keep_rejected_text": True}), inputs, out / "ingest", runtime)}
    manifests["dedup"] = run_stage(reg["dedup"]({"keep_rejected_text": True, "scope": "global"}),
                                   [str(out / "ingest")], out / "dedup", runtime)
    filt = {"keep_rejected_text": True, "language": {"thresholds": {"en": 0.5, "zh": 0.5}},
            "perplexity": {"models": {"en": str(lm_dir)}, "cutoffs": str(shared_data / "cc_net/cutoff.csv"),
                           "keep_buckets": ["head", "middle", "tail", "all"]}}
    manifests["filter"] = run_stage(reg["filter"](filt), [str(out / "dedup")], out / "filter", runtime)
    return manifests


# ---- fixtures ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_dir(ray_local, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run directory: ingest → dedup → filter (en perplexity model trained on WikiText-2)."""
    from winnow.pipeline.cli import main

    base = tmp_path_factory.mktemp("dashboard_run")
    lm = base / "lm_en"
    assert main(["lm", "train", "--lang", "en", "--text", str(shared_data / "ref_text/wikitext2/valid.txt"),
                 "--out", str(lm)]) == 0
    out = base / "run"
    build_run(shared_data, out, lm)
    return out


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, driven by Playwright for Python (no browser download)."""
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(exe).exists(), "Debian chromium missing: `apt-get install -y chromium` (make test does it)"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def open_page(browser, path: Path) -> tuple[object, list, list]:
    """Open `path`, wait until BokehJS has drawn; return the page, console/page errors and requests."""
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.resolve().as_uri())
    page.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length > 0 && "
                           "Bokeh.documents.every(d => d.is_idle)", timeout=30000)
    page.wait_for_timeout(300)
    return page, errors, requests


# Per section: the canvases of its charts with something drawn (any pixel that is not the background).
CANVAS_INK_JS = """(section) => {
  const found = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.tagName === 'CANVAS') found.push(el);
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  walk(section);
  let inked = 0;
  for (const c of found) {
    if (!c.width || !c.height) continue;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let ink = 0;
    for (let i = 0; i < d.length; i += 4) { if (d[i + 3] > 0 && (d[i] < 200 || d[i + 1] < 200 || d[i + 2] < 200)) ink++; }
    if (ink > 50) inked++;
  }
  return {canvases: found.length, inked: inked, charts: section.querySelectorAll('.chart').length};
}"""


def section_ink(page) -> dict[str, dict]:
    out = {}
    for sec in page.locator("section").all():
        key = sec.get_attribute("id")
        out[key] = sec.evaluate(CANVAS_INK_JS)
    return out


# ---- tests ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_stats_json_is_written_as_the_stages_run(run_dir: Path) -> None:
    """stats.json of every stage holds the distributions of its kept documents, merged over shards,
    and its counts equal the manifest's."""
    from winnow.pipeline.stats import Histogram, merge_stats

    for stage in ("ingest", "dedup", "filter"):
        m = shard_io.read_json(run_dir / stage / "manifest.json")
        s = shard_io.read_json(run_dir / stage / "stats.json")
        assert (s["input"], s["kept"], s["rejected"], s["reasons"]) == (m["input"], m["kept"], m["rejected"], m["reasons"])
        assert s["stats_shards"] == len(m["shards"]) and "errors" not in s
        assert Histogram.from_json(s["hist"]["text_chars"]).n == m["kept"]
        records = [shard_io.read_json(p) for p in sorted((run_dir / stage / "_progress").glob("*.json"))]
        again = merge_stats(r["stats"] for r in records)
        assert again["hist"]["text_chars"]["counts"] == s["hist"]["text_chars"]["counts"]
    filt = shard_io.read_json(run_dir / "filter/stats.json")
    kept = shard_io.read_json(run_dir / "filter/manifest.json")["kept"]
    assert sum(filt["counts"]["lang"].values()) == kept
    assert sum(Histogram.from_json(h).n for h in filt["hist"]["ppl_by_lang"].values()) == filt["counts"]["lang"]["en"]
    import pyarrow.parquet as pq

    rejected = pq.read_table(run_dir / "filter/rejected", columns=["reason", "text"]).to_pylist()
    by_reason = {r: Histogram.from_json(h).n for r, h in filt["hist"]["rejected_text_chars_by_reason"].items()}
    assert by_reason == {r: sum(1 for x in rejected if x["reason"] == r and x["text"] is not None)
                         for r in {x["reason"] for x in rejected if x["text"] is not None}}
    dedup = shard_io.read_json(run_dir / "dedup/stats.json")
    sizes = Histogram.from_json(dedup["hist"]["dup_cluster_size"])
    assert sizes.n == shard_io.read_json(run_dir / "dedup/manifest.json")["kept"]
    assert dedup["counts"]["dup"]["clusters"] > 0 and dedup["counts"]["dup"]["members"] > dedup["counts"]["dup"]["clusters"]


@pytest.mark.slow
def test_cross_dump_curve_counts_the_recrawled_dump(run_dir: Path) -> None:
    """The later dump re-crawls 60 documents: dedup's stats.json (counted as it commits) holds the
    removals per dump and the dump x dump overlap — the re-crawled copies are duplicates of the
    earlier dump — and DeepSeek's Table 1 curve for this run's dumps follows from them. Checked
    against an independent join of the rejected ids with the inputs' dumps."""
    from winnow.pipeline.dashboard import dump_rejections_by_join, load_stage
    from winnow.pipeline.stats import cross_dump_curve

    st = load_stage(run_dir / "dedup")
    counts = st.stats["counts"]
    by_dump = counts["dump_rejected"]
    assert by_dump == dump_rejections_by_join(st)
    assert sum(sum(v.values()) for v in by_dump.values()) == st.counts["rejected"]
    later = by_dump[LATER_DUMP]
    assert later.get("dedup:exact_dup", 0) + later.get("dedup:minhash_dup", 0) >= RECRAWLED - 1
    overlap = counts["dump_overlap"]
    assert {d: sum(row.values()) for d, row in overlap.items()} == {d: sum(v.values()) for d, v in by_dump.items()}
    # the re-crawled copies duplicate the CC-MAIN-2019-30 sample's documents (whose JSONL names no
    # dump: ""), not documents of their own dump
    assert overlap[LATER_DUMP].get("", 0) >= RECRAWLED - 1 and LATER_DUMP not in overlap[LATER_DUMP]
    curve = cross_dump_curve(counts["dump"], by_dump, overlap=overlap)
    assert [r["dumps"] for r in curve] == list(range(1, len(curve) + 1))
    assert curve[-1]["last_dump"] == LATER_DUMP and curve[-1]["rate"] > curve[-2]["rate"]
    assert curve[-1]["documents"] == st.counts["input"] and curve[-1]["removed"] == st.counts["rejected"]


@pytest.mark.slow
def test_dump_overlap_names_originals_kept_by_an_earlier_run(run_dir: Path, tmp_path: Path) -> None:
    """Dedup against an index that already holds these documents: every document is removed and
    the originals are the index's (`(index)`), counted per dump as the shards commit — except an
    exact copy whose group representative is new here but was itself a near-duplicate removed by
    the first run (so not indexed): the matrix names that representative's dump."""
    from winnow.pipeline.runner import RayRuntime, run_stage
    from winnow.pipeline.stats import INDEX_DUMP
    from winnow.stages import registry

    dedup = registry()["dedup"]
    runtime = RayRuntime(workers=2, show_progress=False)
    index = tmp_path / "index"
    run_stage(dedup({"index": str(index)}), [str(run_dir / "ingest")], tmp_path / "first", runtime)
    m = run_stage(dedup({"index": str(index)}), [str(run_dir / "ingest")], tmp_path / "again", runtime)
    counts = shard_io.read_json(tmp_path / "again" / "stats.json")["counts"]
    assert m["kept"] == 0 and m["rejected"] == m["input"]
    overlap = counts["dump_overlap"]
    assert sum(sum(row.values()) for row in overlap.values()) == m["rejected"]
    from_index = sum(row.get(INDEX_DUMP, 0) for row in overlap.values())
    assert from_index >= m["rejected"] - 3 and from_index > 0
    assert {o for row in overlap.values() for o in row} <= {INDEX_DUMP} | set(overlap)
    assert overlap[LATER_DUMP].get(INDEX_DUMP, 0) >= RECRAWLED - 2


@pytest.mark.slow
def test_dashboard_in_headless_chromium(run_dir: Path, browser, tmp_path: Path) -> None:
    from winnow.pipeline.dashboard import build_dashboard

    out = tmp_path / "report.html"
    page_html = build_dashboard(run_dir, out, samples_per_reason=1000)
    assert out.read_text(encoding="utf-8") == page_html
    # self-contained: no URL to load anything from (BokehJS inline), and the planted markup escaped
    assert "<script src" not in page_html and "cdn.bokeh.org" not in page_html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page_html
    assert EVIL_SCRIPT not in page_html and EVIL_IMG not in page_html
    page, errors, requests = open_page(browser, out)
    try:
        assert errors == []
        assert requests == [out.resolve().as_uri()]        # no network request, not even for an <img>
        assert page.evaluate("window.__pwned") is None     # neither the <script> nor onerror= ran
        planted = page.locator("pre.doc", has_text="window.__pwned = 2")
        assert planted.count() >= 1                        # shown, as text
        assert page.locator("img").count() == 0
        # funnel numbers = the manifests'
        for stage in ("ingest", "dedup", "filter"):
            m = shard_io.read_json(run_dir / stage / "manifest.json")
            row = page.locator(f'table.funnel tr[data-stage="{stage}"]')
            got = [int(row.locator(f"td.{c}").inner_text().replace(",", "")) for c in ("input", "kept", "rejected")]
            assert got == [m["input"], m["kept"], m["rejected"]], stage
        # every section's charts were drawn
        ink = section_ink(page)
        assert set(ink) == {"funnel", "stage-ingest", "stage-dedup", "stage-filter"}
        for key, v in ink.items():
            assert v["charts"] >= 1 and v["inked"] >= v["charts"], (key, v)
        assert ink["stage-filter"]["charts"] >= 6   # reasons, length, lang, score, perplexity, words, …
        # sample browser: kept documents and every rejection reason, with the reason shown
        for stage in ("dedup", "filter"):
            m = shard_io.read_json(run_dir / stage / "manifest.json")
            sec = page.locator(f"#stage-{stage}")
            for reason in m["reasons"]:
                assert sec.locator(f'.sample[data-reason="{reason}"]').count() >= 1, reason
            assert sec.locator('.sample[data-reason="kept"]').count() >= 1
    finally:
        page.close()


@pytest.mark.slow
def test_missing_unfinished_empty_and_unknown_stages(run_dir: Path, browser, tmp_path: Path, capsys) -> None:
    """A run with an unfinished stage (no manifest), an empty stage, a stage the dashboard does not
    know, and a stage whose input was deleted: the page shows what exists and says what is missing."""
    from winnow.pipeline.cli import main
    from winnow.pipeline.runner import RayRuntime, run_stage
    from winnow.pipeline.stats import Histogram
    from winnow.stages import registry

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "filter" / "manifest.json").unlink()            # a run killed during filter
    (run / "filter" / "stats.json").unlink()
    empty_input = tmp_path / "empty.jsonl"
    empty_input.write_text("")
    run_stage(registry()["ingest"](), [str(empty_input)], run / "ingest_empty", RayRuntime(workers=1, show_progress=False))
    odd = run / "mystage"
    odd.mkdir()
    evil_reason = "mystage:</script><script>window.__pwned=4</script>"
    shard_io.write_json_atomic({"stage": "mystage", "input": 10, "kept": 7, "rejected": 3, "reasons": {evil_reason: 3},
                                "counters": {"tokens_lang:en": 500, "tokens_lang:zh": 200, "windows": 3},
                                "shards": [], "inputs": [str(tmp_path / "gone")]}, odd / "manifest.json")
    shard_io.write_json_atomic({"stage": "mystage", "input": 10, "kept": 7, "rejected": 3, "reasons": {evil_reason: 3},
                                "stats_shards": 0,
                                "hist": {"fill": Histogram.of([0.5, 0.9, 0.99, 1.0], "unit50").to_json()},
                                "counts": {"bucket": {"a<b>": 4, "c": 3}}}, odd / "stats.json")

    out = tmp_path / "report.html"
    assert main(["dashboard", str(run), "--out", str(out), "--samples", "2"]) == 0
    assert str(out.resolve()) in capsys.readouterr().out
    html_text = out.read_text(encoding="utf-8")
    assert "unfinished: no manifest.json, 4 shard(s) committed" in html_text
    assert "mystage read" in html_text and "no longer there" in html_text
    page, errors, requests = open_page(browser, out)
    try:
        assert errors == [] and requests == [out.resolve().as_uri()]
        assert page.evaluate("window.__pwned") is None
        row = page.locator('table.funnel tr[data-stage="filter"]')
        assert row.locator("td.status-unfinished").count() == 1
        committed = [shard_io.read_json(p) for p in (run / "filter" / "_progress").glob("*.json")]
        assert int(row.locator("td.kept").inner_text().replace(",", "")) == sum(r["kept"] for r in committed)
        ink = section_ink(page)
        assert {"stage-ingest_empty", "stage-mystage", "stage-filter"} <= set(ink)
        for key, v in ink.items():
            assert v["charts"] >= 1 and v["inked"] >= v["charts"], (key, v)
        assert "no documents in this stage" in html_text
        # reasons, the fill histogram, the bucket counter, the tokens_lang counters
        assert page.locator("#stage-mystage .chart").count() == 4
    finally:
        page.close()
    assert main(["stats", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "unfinished" in printed and "ingest_empty" in printed and "mystage" in printed
    m = shard_io.read_json(run / "dedup" / "manifest.json")
    assert f"{m['input']:,}" in printed and f"{m['kept']:,}" in printed


def test_serve_binds_loopback_only(tmp_path: Path) -> None:
    import threading
    import urllib.request

    from winnow.pipeline.dashboard import make_server

    page = tmp_path / "report.html"
    page.write_text("<!DOCTYPE html><p>x</p>", encoding="utf-8")
    with make_server(page, 0) as httpd:
        host, port = httpd.server_address[:2]
        assert host == "127.0.0.1"
        t = threading.Thread(target=httpd.serve_forever, daemon=True)
        t.start()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
                assert r.read() == page.read_bytes()
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/etc/passwd", timeout=10)
        finally:
            httpd.shutdown()


def test_a_missing_run_dir_is_a_clear_error(tmp_path: Path, capsys) -> None:
    from winnow.pipeline.cli import main

    assert main(["dashboard", str(tmp_path / "nope")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["stats", str(tmp_path / "empty")]) == 0
    assert "holds no stage output" in capsys.readouterr().out


def test_remix_tokenizer_and_pack_sections_from_their_records(tmp_path: Path) -> None:
    """The remix section draws its manifest's mixture report (input / target / realised share,
    epochs), the tokenizer section its training sample per group, and the pack section the
    window fill, split documents and bytes per token per language — text bytes counted by the
    stage pack read, over the tokens packed less BOS/EOS."""
    from winnow.pipeline.dashboard import build_dashboard, discover, stage_charts, Charts

    run = tmp_path / "run"
    remix, tok, pack = run / "remix", run / "tokenizer", run / "pack"
    groups = {"blog": {"bytes_in": 600, "target_share": 0.5, "realised_share": 0.52, "epochs": 0.6, "max_epochs": 4.0,
                       "rows_out": 6, "repeated": 0, "shortfall_units": 0.0},
              "news": {"bytes_in": 100, "target_share": 0.5, "realised_share": 0.48, "epochs": 3.2, "max_epochs": 4.0,
                       "rows_out": 7, "repeated": 5, "shortfall_units": 0.0}}
    counts = {"input": 10, "kept": 8, "rejected": 2, "reasons": {"remix:not_sampled": 2}}
    shard_io.write_json_atomic({"stage": "remix", **counts, "counters": {"repeated": 5}, "shards": [], "inputs": [],
                                "remix": {"units": "bytes", "groups": groups, "mode": "mixture", "seed": 0,
                                          "budget_units": 1000, "output_units": 1000, "policy": "error"}},
                               remix / "manifest.json")
    # 13 rows handed on (8 kept + 5 repeated): en 10 rows, 3000 bytes; zh 3 rows, 900 bytes
    shard_io.write_json_atomic({"stage": "remix", **counts, "counters": {"repeated": 5}, "stats_shards": 0,
                                "counts": {"lang": {"en": 10, "zh": 3}, "domain": {"blog": 6, "news": 7}},
                                "sums": {"bytes_by_lang": {"en": 3000, "zh": 900}}}, remix / "stats.json")
    shard_io.write_json_atomic({"stage": "tokenizer", "input": 13, "kept": 13, "rejected": 0, "reasons": {},
                                "counters": {}, "shards": [], "inputs": [str(remix)]}, tok / "manifest.json")
    shard_io.write_json_atomic({"vocab_size": 1000, "learned_vocab_size": 700,
                                "sample": {"docs": 13, "bytes": 3900, "groups": {"en/blog": {"bytes": 3000, "docs": 10},
                                                                                 "zh/news": {"bytes": 900, "docs": 3}}}},
                               tok / "tokenizer_manifest.json")
    pack_counters = {"docs": 13, "tokens": 1326, "tokens_in_windows": 1326, "windows": 2, "pad_tokens": 724,
                     "docs_split": 1, "docs_longer_than_window": 0, "tokens_lang:en": 1020, "tokens_lang:zh": 306}
    shard_io.write_json_atomic({"stage": "pack", "input": 13, "kept": 13, "rejected": 0, "reasons": {},
                                "counters": pack_counters, "shards": [], "inputs": [str(remix)],
                                "config": {"seq_len": 1024, "bos": True, "eos": True, "packing": "bestfit"}},
                               pack / "manifest.json")
    stages, _notes = discover(run)
    by_kind = {st.kind: st for st in stages}
    charts = Charts()
    ids, notes = stage_charts(by_kind["remix"], charts)
    titles = [charts.figures[i].title.text for i in ids]
    assert any("input share, target and realised share" in t for t in titles)
    assert any("epochs per group" in t for t in titles) and "5 repeated rows" in notes[0]
    ids, notes = stage_charts(by_kind["tokenizer"], charts)
    assert any("training sample bytes per group" in charts.figures[i].title.text for i in ids)
    assert "vocabulary 1,000 (700 learned)" in notes[0]
    ids, notes = stage_charts(by_kind["pack"], charts)
    assert "fill 64.7%" in notes[0] and "1 of 13 documents split" in notes[0]   # 1326 / (2 x 1025)
    bpt = next(charts.figures[i] for i in ids if "bytes per token" in charts.figures[i].title.text)
    data = bpt.renderers[0].data_source.data
    assert dict(zip(data["label"], data["value"])) == {"en": 3000 / (1020 - 2 * 10), "zh": 900 / (306 - 2 * 3)}
    page = build_dashboard(run, tmp_path / "report.html")
    assert 'id="stage-pack"' in page and 'id="stage-tokenizer"' in page and 'id="stage-remix"' in page
