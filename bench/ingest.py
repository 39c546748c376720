"""Benchmark of HTML -> main text for ingest: quality (token F1 against gold) and speed.

What it measures, and why:

- **Quality** on ``../shared/data/scrapinghub_aeb`` (181 article pages with the gold
  ``articleBody``), scored exactly as the article-extraction-benchmark's ``evaluate.py`` does:
  text -> tokens with the regex ``\\w+`` (Unicode word characters; no lower-casing; Chinese or
  Japanese runs clump into one token, which the benchmark accepts), tokens -> a bag (multiset) of
  4-token shingles; per page tp / fp / fn over the bags, normalised to sum 1 so long pages do not
  weigh more; precision and recall are means over pages; F1 is their harmonic mean. The same
  formula on single tokens (bag-of-words F1, ``F1w``) is printed too. A second, held-out quality
  number (``F1rd``) comes from mozilla/readability's 130 test pages (gold = ``expected.html``
  rendered to text), so option choices tuned on the first set are checked on pages they were
  not tuned on.
- **Speed**: pages/s per core = pages / CPU seconds of this single process
  (``time.process_time``; both libraries are single-threaded), decode (`decode_html`) included,
  gzip decompression of the benchmark files excluded; median of ``--reps`` (>= 3) passes over
  the same pages in memory, timed round-robin across configurations. CPU time rather than wall time because the benchmark shares a small
  machine with other work; wall-clock pages/s is printed beside it (``wall/s``).
- **WARC throughput**: fastwarc iterates the response records of the crawl files in
  ``../shared/data`` (gunzip + WARC + HTTP parsing included), then binary sniffing, charset from
  the Content-Type header, decode and extraction: HTML responses per second, median of reps.

Every option set of both extractors is measured; the last line is
``RESULT extract_f1=... f1_gap_vs_trafilatura=... speed_vs_trafilatura=...`` where the default
is `stages.extract`'s default extractor with its chosen options and the reference is
trafilatura with its library defaults (``trafilatura.extract(html)``).

Run: ``.venv/bin/python bench/ingest.py`` from the repo root (about 2-3 minutes on one core).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from winnow.stages.extract import (  # noqa: E402
    DEFAULT_EXTRACTOR,
    RESILIPARSE_OPTIONS,
    TRAFILATURA_OPTIONS,
    charset_from_content_type,
    decode_html,
    extract_main_text,
    is_probably_binary,
)

DEFAULT_DATA = REPO.parent / "shared" / "data"
WARC_FILES = (
    "resiliparse/warcfile.warc.gz",
    "resiliparse/clueweb-quirk.warc.gz",
    "dolma/sample-0000.warc.gz",
    "dolma/sample-0001.warc.gz",
)

# ---------------------------------------------------------------------------------------------
# The article-extraction-benchmark metric (scrapinghub/article-extraction-benchmark evaluate.py)
# ---------------------------------------------------------------------------------------------
_TOKEN_RE = re.compile(r"\w+", re.UNICODE | re.MULTILINE | re.IGNORECASE | re.DOTALL)


def _shingles(text: str, n: int) -> Counter:
    """Bag of n-token shingles of `text` (n=1: bag of tokens)."""
    tokens = _TOKEN_RE.findall(text or "")
    return Counter(
        tuple(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1)) if tokens[i : i + n]
    )


def tp_fp_fn(true: str, pred: str, n: int = 4) -> tuple[float, float, float]:
    """Per-page true/false positives and false negatives over shingle bags, normalised to sum 1."""
    t, p = _shingles(true, n), _shingles(pred, n)
    tp = fp = fn = 0.0
    for key in t.keys() | p.keys():
        tc, pc = t.get(key, 0), p.get(key, 0)
        tp += min(tc, pc)
        fp += max(0, pc - tc)
        fn += max(0, tc - pc)
    s = tp + fp + fn
    return (tp / s, fp / s, fn / s) if s > 0 else (tp, fp, fn)


def _precision(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    if tp == fp == 0:
        return 0.0
    return tp / (tp + fp)


def _recall(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    if tp == fn == 0:
        return 0.0
    return tp / (tp + fn)


def aeb_scores(gold: dict[str, str], pred: dict[str, str], n: int = 4) -> tuple[float, float, float]:
    """(F1, precision, recall) as the article-extraction-benchmark computes them."""
    rows = [tp_fp_fn(gold[k], pred.get(k, ""), n) for k in gold]
    p = statistics.mean(_precision(*r) for r in rows if r[0] + r[1] > 0)
    r = statistics.mean(_recall(*r) for r in rows if r[0] + r[2] > 0)
    return (2 * p * r / (p + r) if p + r else 0.0), p, r


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def load_aeb(data: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    """scrapinghub pages (decompressed bytes, as a crawler would hold them) and gold bodies."""
    root = data / "scrapinghub_aeb"
    truth = json.loads((root / "ground-truth.json").read_text("utf-8"))
    pages = {
        p.name.split(".")[0]: gzip.decompress(p.read_bytes())
        for p in sorted((root / "html").glob("*.html.gz"))
    }
    gold = {k: v.get("articleBody", "") for k, v in truth.items() if k in pages}
    return {k: pages[k] for k in gold}, gold


def load_readability(data: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    """mozilla/readability test pages; gold = expected.html rendered to plain text."""
    from resiliparse.extract.html2text import extract_plain_text

    root = data / "readability_testpages" / "test-pages"
    pages, gold = {}, {}
    if not root.is_dir():
        return pages, gold
    for d in sorted(root.iterdir()):
        src, exp = d / "source.html", d / "expected.html"
        if src.is_file() and exp.is_file():
            pages[d.name] = src.read_bytes()
            gold[d.name] = extract_plain_text(
                exp.read_text("utf-8", "replace"),
                main_content=False,
                preserve_formatting=True,
                alt_texts=False,
                list_bullets=False,
            )
    return pages, gold


# ---------------------------------------------------------------------------------------------
# Option sets
# ---------------------------------------------------------------------------------------------
_LONG_LINE_TOKENS = 10
_SHORT_LINE_TOKENS = 5


def trim_short_edge_lines(text: str) -> str:
    """Candidate post-processing (measured, not adopted): drop lines of <= 5 word tokens before
    the first and after the last line of >= 10 tokens (titles, datelines, share / follow links)."""
    lines = text.split("\n")
    counts = [len(_TOKEN_RE.findall(line)) for line in lines]
    long_idx = [i for i, c in enumerate(counts) if c >= _LONG_LINE_TOKENS]
    if not long_idx:
        return text
    a, b = long_idx[0], long_idx[-1]
    return "\n".join(
        line for i, line in enumerate(lines) if a <= i <= b or counts[i] > _SHORT_LINE_TOKENS
    )


def option_sets() -> list[tuple[str, str, dict[str, Any] | None, Callable[[str], str] | None]]:
    """(name, extractor, options, post-processing) for every configuration measured.

    ``None`` options = the module's chosen options; ``{}`` for trafilatura = library defaults."""
    chosen = dict(RESILIPARSE_OPTIONS)
    no_skip = {**chosen, "skip_elements": None}
    base_skip = ["h1", "header", "footer"]
    res: list[tuple[str, dict[str, Any] | None, Callable[[str], str] | None]] = [
        ("lib-default(main_content)", {"main_content": True}, None),
        ("+no-alt+no-bullets", no_skip, None),
        ("  ...+alt_texts", {**no_skip, "alt_texts": True}, None),
        ("  ...+list_bullets", {**no_skip, "list_bullets": True}, None),
        ("  ...+comments", {**no_skip, "comments": True}, None),
        ("  ...+noscript", {**no_skip, "noscript": True}, None),
        ("  ...+form_fields", {**no_skip, "form_fields": True}, None),
        ("  ...main_content=False", {**no_skip, "main_content": False}, None),
        ("+skip h1,header,footer", {**no_skip, "skip_elements": base_skip}, None),
        ("  ...+caption", {**no_skip, "skip_elements": [*base_skip, "[class*=caption i]"]}, None),
        ("  ...+related/ads/tags", {**chosen, "skip_elements": [*chosen["skip_elements"],
            "[class*=related i]", "[class*=advert i]", "[class*=tags i]"]}, None),
        ("chosen", None, None),
        ("chosen+trim-short-edges", None, trim_short_edge_lines),
    ]
    tra: list[tuple[str, dict[str, Any] | None, Callable[[str], str] | None]] = [
        ("lib-default", {}, None),
        ("no-comments", {"include_comments": False}, None),
        ("fast+no-comments", {"fast": True, "include_comments": False}, None),
        ("favor_recall", {"favor_recall": True, "include_comments": False}, None),
        ("chosen(favor_precision,no-c)", None, None),
    ]
    return [(n, "resiliparse", o, pp) for n, o, pp in res] + [
        (n, "trafilatura", o, pp) for n, o, pp in tra
    ]


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------
def run_pages(
    pages: dict[str, bytes], extractor: str, options: dict[str, Any] | None,
    post: Callable[[str], str] | None,
) -> tuple[dict[str, str], float, float]:
    """Decode + extract every page once; (outputs, CPU seconds, wall seconds)."""
    out: dict[str, str] = {}
    c0, t0 = time.process_time(), time.perf_counter()
    for key, body in pages.items():
        text = extract_main_text(decode_html(body), extractor, options)
        out[key] = post(text) if post else text
    return out, time.process_time() - c0, time.perf_counter() - t0


def warc_pass(paths: Iterable[Path], extractor: str) -> tuple[int, int, float, float]:
    """One pass over the WARC files: (HTML responses, documents with text, CPU s, wall s)."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    n_html = n_docs = 0
    c0, t0 = time.process_time(), time.perf_counter()
    for path in paths:
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
                ctype = rec.http_headers.get("Content-Type") if rec.http_headers else None
                if ctype and "html" not in ctype.lower():
                    continue
                body = rec.reader.read()
                n_html += 1
                if is_probably_binary(body):
                    continue
                html = decode_html(body, charset_from_content_type(ctype))
                if extract_main_text(html, extractor):
                    n_docs += 1
    return n_html, n_docs, time.process_time() - c0, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    ap.add_argument("--reps", type=int, default=3, help="timed passes per configuration (>= 3)")
    args = ap.parse_args(argv)
    reps = max(3, args.reps)

    import logging

    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
    pages, gold = load_aeb(args.data)
    rd_pages, rd_gold = load_readability(args.data)
    print(f"scrapinghub_aeb: {len(pages)} pages; readability test pages: {len(rd_pages)}; "
          f"reps={reps}; F1 = AEB 4-token-shingle F1 (\\w+ tokens), F1w = same on single tokens, "
          f"F1rd = AEB F1 on readability test pages (held out)", flush=True)
    extract_main_text(decode_html(next(iter(pages.values()))), "trafilatura")  # import / warm-up

    hdr = (f"{'extractor':<12} {'options':<28} {'F1':>6} {'P':>6} {'R':>6} {'F1w':>6} "
           f"{'F1rd':>6} {'pages/s':>8} {'wall/s':>7}")
    print(hdr)
    print("-" * len(hdr))
    # Quality: one pass per configuration (deterministic), plus the held-out readability pages.
    sets = option_sets()
    quality: list[dict[str, float]] = []
    for name, extractor, options, post in sets:
        outputs = run_pages(pages, extractor, options, post)[0]
        f1, p, r = aeb_scores(gold, outputs, 4)
        rd = float("nan")
        if rd_pages:
            rd = aeb_scores(rd_gold, run_pages(rd_pages, extractor, options, post)[0], 4)[0]
        quality.append({"f1": f1, "p": p, "r": r, "f1w": aeb_scores(gold, outputs, 1)[0], "f1rd": rd})

    # Speed: `reps` rounds, each timing every configuration once (round-robin, so a burst of load
    # from other work on the machine hits all configurations alike), then the median per config.
    cpu: list[list[float]] = [[] for _ in sets]
    wall: list[list[float]] = [[] for _ in sets]
    for i in range(reps):
        for j, (name, extractor, options, post) in enumerate(sets):
            _, dc, dt = run_pages(pages, extractor, options, post)
            cpu[j].append(dc)
            wall[j].append(dt)
        print(f"  timing round {i + 1}/{reps} done", file=sys.stderr, flush=True)

    results: dict[tuple[str, str], dict[str, float]] = {}
    for j, (name, extractor, _, _) in enumerate(sets):
        q = quality[j]
        pps = len(pages) / statistics.median(cpu[j])
        wps = len(pages) / statistics.median(wall[j])
        results[(extractor, name)] = {**q, "pps": pps}
        print(f"{extractor:<12} {name:<28} {q['f1']:6.4f} {q['p']:6.4f} {q['r']:6.4f} "
              f"{q['f1w']:6.4f} {q['f1rd']:6.4f} {pps:8.1f} {wps:7.1f}", flush=True)

    warcs = [args.data / w for w in WARC_FILES if (args.data / w).is_file()]
    print(f"\nWARC -> documents ({', '.join(w.name for w in warcs)}), chosen options per extractor")
    warc_runs: dict[str, list[tuple[int, int, float, float]]] = {"resiliparse": [], "trafilatura": []}
    for _ in range(reps):
        for extractor in warc_runs:
            warc_runs[extractor].append(warc_pass(warcs, extractor))
    warc_pps: dict[str, float] = {}
    for extractor, runs in warc_runs.items():
        n_html, n_docs = runs[0][0], runs[0][1]
        warc_pps[extractor] = n_html / statistics.median(r[2] for r in runs)
        wall_pps = n_html / statistics.median(r[3] for r in runs)
        print(f"{extractor:<12} html_responses={n_html} docs_with_text={n_docs} "
              f"pages/s={warc_pps[extractor]:.1f} (wall {wall_pps:.1f})", flush=True)

    default = results[(DEFAULT_EXTRACTOR, "chosen")]
    tra = results[("trafilatura", "lib-default")]
    gap = tra["f1"] - default["f1"]
    speed = default["pps"] / tra["pps"]
    print(f"\ndefault = {DEFAULT_EXTRACTOR} chosen options {RESILIPARSE_OPTIONS}")
    print(f"trafilatura chosen options {TRAFILATURA_OPTIONS}")
    print(
        f"RESULT extract_f1={default['f1']:.4f} f1_gap_vs_trafilatura={gap:.4f} "
        f"speed_vs_trafilatura={speed:.1f} trafilatura_f1={tra['f1']:.4f} "
        f"default_pages_per_s={default['pps']:.1f} trafilatura_pages_per_s={tra['pps']:.1f} "
        f"readability_f1={default['f1rd']:.4f} trafilatura_readability_f1={tra['f1rd']:.4f} "
        f"warc_pages_per_s={warc_pps[DEFAULT_EXTRACTOR]:.1f} "
        f"warc_speed_vs_trafilatura={warc_pps[DEFAULT_EXTRACTOR] / warc_pps['trafilatura']:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
