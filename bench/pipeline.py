"""The cost model of a whole winnow pipeline: every stage measured per core on real samples of
several sizes, the cost split into per-document, per-shard-task and per-process parts by a fit,
and projected to one and to 91 CommonCrawl dumps (docs/scale.md quotes this output).

What runs: the stages of ``configs/demo.yaml`` (ingest → dedup → decontaminate → filter → remix
→ tokenizer → pack, the registry's pipeline order as ``winnow run`` chains them) with the demo's
settings, on four sample points built from the same real sources: the demo's crawl files (WARC /
WET / JSONL from ``../shared/data``), the 181 real article pages of ``../shared/data/scrapinghub_aeb``
written as WARC response records, and the first N documents of every ``../shared/data/corpus``
file, N = ``--small-docs`` or ``--large-docs``, each corpus slice one file (one ingest shard) or
cut into ``--split`` files (the same documents in more shards; on those points remix also writes
small shards and dedup uses 16 partitions, so pack's shards and dedup's reduce tasks vary too).
Each stage runs through the real runner (``run_stage``: planning, commit, manifest) in its own
child process with an in-process runtime (one worker, no Ray), ``--repeats`` times; so:

- **CPU seconds** = user + system time of that process and its children (threads included), from
  the start of ``run_stage`` to its end, less the stage's ``setup()`` (models, shown apart),
  median of the repeats;
- **the fit**, per stage: CPU s = per_doc × input documents + per_task × tasks + per_process,
  non-negative least squares over the four points, residuals printed. tasks = input shards (files
  for ingest) + dedup's reduce partitions + remix's output shards;
- **ingest per WARC page** is fitted on WARC alone: a "unit" = the well-formed .warc.gz files of
  the sample concatenated (gzip members, so k units in one file is a valid WARC of k× the real
  records), in 1 or ``--warc-units`` files of 1 or ``--warc-units`` units; the whole demo crawl
  sample's records/s (fixed costs included, the former figure) is printed beside it;
- **peak RSS** = the process's maximum resident set (``ru_maxrss``) over all points;
- **shuffle bytes** (dedup work files, ``stages/dedup/shuffle.py`` counter) and **stage output
  bytes** are fitted the same way.

The projection: a dump has ``--docs-per-dump`` pages (CC-MAIN-2024-22: 2.7·10^9; 3·10^9 by
default) in ``--warc-files`` WARC files (90,000). Each stage is charged per_doc × its documents
(ingest: every page at the WARC slope; later stages the large sample's measured share), per_task ×
its tasks at scale (one per WARC file for ingest, dedup's map side, decontaminate and filter;
dedup's partitions from ``configs/commoncrawl.yaml``; remix's output shards at 256 MB of its
measured output bytes per document, which are pack's shards), and (per_process + setup) × the
worker processes that run it (``--cores``, or fewer when there are fewer tasks). The tokenizer
trains on a fixed sample (``sample_bytes`` of configs/commoncrawl.yaml): CPU seconds per text byte
× that size, once. The bill is core-hours × ``--price`` (USD per vCPU-hour; default 0.0425 = AWS
c6i.8xlarge on-demand, us-east-1, $1.36/h for 32 vCPU). The former method (each stage's CPU over
its documents at the small point, ingest at the whole crawl sample's rate) is printed for
comparison. Then dedup, decontaminate and filter run once more under cProfile at the large point,
and their top functions by own time are printed.

Last line: ``RESULT core_hours_per_dump=… dominant_stage=… fixed_share=… …``.
Run: ``.venv/bin/python bench/pipeline.py`` from the repo root (about 10-15 minutes on 2 cores;
needs the perplexity models of ``make models``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from winnow.pipeline.runner import SerialRuntime  # noqa: E402 - after the path set-up
SHARED = (REPO / ".." / "shared" / "data").resolve()
#: CommonCrawl's published size of one dump (CC-MAIN-2024-22: 2.7·10^9 pages, 86 TiB of WARC)
DOCS_PER_DUMP = 3.0e9
WARC_BYTES_PER_DUMP = 80e12
#: WARC files per dump (CC-MAIN-2024-22's warc.paths.gz lists 90,000; ~1 GB, ~30k pages each): one ingest shard each
WARC_FILES_PER_DUMP = 90_000
DUMPS = 91
#: configs/commoncrawl.yaml's tokenizer sample (read from the config, so the projection follows it)
TOKENIZER_SAMPLE_BYTES = float(yaml.safe_load((REPO / "configs" / "commoncrawl.yaml").read_text(encoding="utf-8"))
                               ["tokenizer"]["sample_bytes"])


# ---- the child: one stage, in this process -------------------------------------------------------

class InProcessRuntime(SerialRuntime):
    """One worker: shard tasks and whole-dataset phase tasks run in this process, in order
    (the same calls a Ray worker makes); per-phase wall / CPU / RSS into `stats` like RayRuntime."""

    #: CPU seconds of `stage.setup()` (models loaded once per worker), kept apart from the per-document cost
    setup_cpu_s = 0.0

    def map_shards(self, stage: Any, tasks: Any, out_dir: Path) -> list[dict[str, Any]]:
        c0 = _cpu_s()
        stage.setup()
        InProcessRuntime.setup_cpu_s += _cpu_s() - c0
        return [stage.run_and_commit(t, Path(out_dir)) for t in tasks]

    def map_tasks(self, fn: Any, arg_list: Any, desc: str, unit: str = "task", num_cpus: float = 1,
                  memory: int | None = None, retries: int = 2, stats: dict | None = None,
                  stats_key: str | None = None) -> list[Any]:
        t0, c0 = time.perf_counter(), time.process_time()
        out = [fn(*a) for a in arg_list]
        if stats is not None:
            st = stats.setdefault(stats_key or desc, {"wall_s": 0.0, "cpu_s": 0.0, "tasks": 0, "max_rss_mb": 0.0})
            st["wall_s"] += time.perf_counter() - t0
            st["cpu_s"] += time.process_time() - c0
            st["tasks"] += len(arg_list)
            st["max_rss_mb"] = max(st["max_rss_mb"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return out


def _cpu_s() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _dir_bytes(d: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in d.rglob(pattern) if p.is_file()) if d.exists() else 0


def run_child(args: argparse.Namespace) -> None:
    from winnow.pipeline import shards as shard_io
    from winnow.pipeline.config import load_config
    from winnow.pipeline.runner import run_stage
    from winnow.stages.dedup import shuffle as sh

    cfg = load_config(args.config)
    stage = cfg.build_stage(args.child).with_artifacts(json.loads(args.artifacts))
    inputs = json.loads(args.inputs)
    out = Path(args.out)
    if args.child == "dedup":
        stage = type(stage)({**stage.config.model_dump(), "keep_work": False})
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    c0, t0 = _cpu_s(), time.perf_counter()
    manifest = run_stage(stage, inputs, out, runtime=InProcessRuntime())
    cpu, wall = _cpu_s() - c0, time.perf_counter() - t0
    rec = {"stage": args.child, "cpu_s": cpu - InProcessRuntime.setup_cpu_s, "setup_cpu_s": InProcessRuntime.setup_cpu_s,
           "wall_s": wall,
           "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "input": manifest.get("input", 0), "kept": manifest.get("kept", 0),
           "out_bytes": _dir_bytes(out / "data") + _dir_bytes(out / "rejected"),
           "in_bytes": sum(_dir_bytes(Path(p) / "data") if Path(p).is_dir() else Path(p).stat().st_size
                           for p in inputs if not str(p).startswith(("http", "s3:"))),
           "produces": stage.produces, "shuffle_bytes": sh.IO_COUNTERS["bytes_written"],
           "phases": getattr(stage, "phase_stats", {})}
    if args.child == "tokenizer":
        rec["sample_bytes"] = _tokenizer_sample_bytes(out)
    rec["in_shards"] = sum(len(shard_io.input_shard_entries(q)) if Path(q).is_dir() else 1 for q in inputs)
    rec["out_shards"] = len(manifest.get("shards", []))
    stats_json = out / "stats.json"
    rec["partitions"] = int(_find_key(json.loads(stats_json.read_text()), ("partitions",)) or 0) if (
        args.child == "dedup" and stats_json.exists()) else 0
    if args.profile:
        prof.disable()
        rec["hot"] = _hot_spots(prof, cpu)
    print("STAGE_RESULT " + json.dumps(rec), flush=True)


def _hot_spots(prof: Any, total_cpu_s: float, top: int = 400) -> list[dict[str, Any]]:
    """The functions with the most own time (cProfile tottime; a C extension's time is charged to
    the builtin call that enters it) and their share of the profiled stage's CPU seconds."""
    import pstats

    st = pstats.Stats(prof)
    rows = []
    for (file, line, fn), (cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        where = fn if file == "~" else f"{Path(file).name}:{line}({fn})"
        if "site-packages/" in file:
            where = file.split("site-packages/", 1)[1] + f":{line}({fn})"
        rows.append({"where": where, "own_s": tt, "cum_s": ct, "calls": nc})
    own_total = sum(r["own_s"] for r in rows) or 1.0
    rows.sort(key=lambda r: -r["own_s"])
    for r in rows:
        r["share"] = r["own_s"] / own_total
    return rows[:top]


def _tokenizer_sample_bytes(out: Path) -> int:
    """UTF-8 bytes the tokenizer trained on, from what its stage recorded."""
    for name in ("stats.json", "tokenizer_report.json", "train_report.json", "manifest.json"):
        p = out / name
        if p.exists():
            found = _find_key(json.loads(p.read_text()), ("sample_bytes", "train_bytes", "text_bytes"))
            if found:
                return int(found)
    return 0


def _find_key(obj: Any, keys: tuple[str, ...]) -> Any:
    if isinstance(obj, dict):
        for k in keys:
            if isinstance(obj.get(k), (int, float)) and obj[k] > 0:
                return obj[k]
        for v in obj.values():
            r = _find_key(v, keys)
            if r:
                return r
    return None


# ---- the parent: samples, stages, fits, projection ---------------------------------------------

def demo_crawl_files() -> list[str]:
    """The crawl files `configs/demo.yaml` names (WARC / WET / JSONL under ../shared/data)."""
    import glob

    demo = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    crawl = sorted({p for pat in demo["inputs"] for p in glob.glob(str((REPO / pat).resolve()))})
    if not crawl:
        raise SystemExit(f"no crawl files under {SHARED}: this benchmark reads the shared sample")
    return crawl


def corpus_slices(root: Path, corpus_docs: int, split: int) -> list[str]:
    """The first `corpus_docs` documents of every ../shared/data/corpus file, each cut into
    `split` JSONL files of consecutive documents (one ingest shard each): the same documents in
    more, smaller shards when `split` > 1."""
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sorted((SHARED / "corpus").glob("*.jsonl.gz")):
        with gzip.open(src, "rt", encoding="utf-8") as f:
            lines = [line for _, line in zip(range(corpus_docs), f)]
        per = -(-len(lines) // split)
        for k in range(split):
            part = lines[k * per:(k + 1) * per]
            if not part:
                continue
            dst = root / f"{src.name.split('.')[0]}-{k:02d}.jsonl.gz"
            with gzip.open(dst, "wt", encoding="utf-8") as g:
                g.writelines(part)
            out.append(str(dst))
    return out


def write_aeb_warc(path: Path) -> Path:
    """The 181 real article pages of ../shared/data/scrapinghub_aeb as WARC response records (with
    their URLs), so the WARC measurement extracts real HTML pages, not only the demo's few."""
    import io

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    truth = json.loads((SHARED / "scrapinghub_aeb" / "ground-truth.json").read_text(encoding="utf-8"))
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        writer.write_record(writer.create_warcinfo_record(path.name, {"isPartOf": "CC-MAIN-2024-22"}))
        for page in sorted((SHARED / "scrapinghub_aeb" / "html").glob("*.html.gz")):
            body = gzip.decompress(page.read_bytes())
            url = truth.get(page.name.split(".")[0], {}).get("url") or f"https://example.org/{page.name}"
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                               ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http))
    return path


def warc_unit(crawl: list[str]) -> tuple[bytes, int, int]:
    """One "unit" of real WARC, shaped like CommonCrawl's files: the bytes of every well-formed
    gzipped WARC of the sample (the demo's CC-MAIN-2020-34 excerpt, ClueWeb quirks, wget pages,
    the CC-MAIN-2024-22 whirlwind record, warcio's revisit, the scrapinghub article pages)
    concatenated, then request and metadata records (CCBot's request headers, CC's warc-fields
    metadata) for the pages that lack them, so that every response comes with two other records as
    in a CommonCrawl WARC (ingest reads and rejects those: they cost per page too). A .warc.gz is a
    sequence of gzip members, so k units in one file are a valid WARC of k× the records; the clipped
    file is left out (it ends a file early). Returns (bytes, response pages, HTML bytes)."""
    import io

    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    files = [p for p in crawl if p.endswith(".warc.gz") and "clipped" not in p]
    urls: list[str] = []
    others = html = 0
    for p in files:
        with open(p, "rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.any_type, parse_http=False):
                if rec.record_type == WarcRecordType.response:
                    urls.append(rec.headers.get("WARC-Target-URI", "https://example.org/"))
                    html += rec.content_length
                elif rec.record_type != WarcRecordType.warcinfo:
                    others += 1
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    need = max(0, 2 * len(urls) - others)
    for i in range(need):
        url = urls[(i // 2) % len(urls)]
        if i % 2 == 0:
            host = url.split("://", 1)[-1].split("/", 1)[0]
            path = "/" + (url.split("://", 1)[-1].split("/", 1) + [""])[1]
            http = StatusAndHeaders(f"GET {path} HTTP/1.1", [
                ("User-Agent", "CCBot/2.0 (https://commoncrawl.org/faq/)"),
                ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                ("Accept-Language", "en-US,en;q=0.5"), ("Accept-Encoding", "br,gzip"), ("Host", host),
                ("Connection", "Keep-Alive")], protocol="HTTP/1.1", is_http_request=True)
            writer.write_record(writer.create_warc_record(url, "request", payload=io.BytesIO(b""), http_headers=http))
        else:
            body = (b"fetchTimeMs: 412\r\ncharset-detected: UTF-8\r\nlanguages-cld2: "
                    b'{"reliable":true,"text-bytes":5210,"languages":[{"code":"en","code-iso-639-3":"eng",'
                    b'"text-covered":0.99,"score":960.0,"name":"ENGLISH"}]}\r\n')
            writer.write_record(writer.create_warc_record(url, "metadata", payload=io.BytesIO(body),
                                                          warc_content_type="application/warc-fields"))
    return b"".join(Path(p).read_bytes() for p in files) + buf.getvalue(), len(urls), html


def write_config(root: Path, name: str, inputs: list[str], stages: list[str], split: int = 1,
                 remix_shard_bytes: int = 0, dedup_partitions: int = 0) -> Path:
    """The demo's config on `inputs`, models and benchmark sets as absolute paths. On the split
    sample points remix writes `remix_shard_bytes` shards and dedup uses `dedup_partitions`, so
    pack's input shards and dedup's reduce tasks vary across the sample points as well."""
    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    for sect in ("filter",):  # models relative to the repo
        ppl = cfg[sect].get("perplexity") or {}
        ppl["models"] = {k: str((REPO / v).resolve()) for k, v in ppl.get("models", {}).items()}
        if ppl.get("cutoffs"):
            ppl["cutoffs"] = str((REPO / ppl["cutoffs"]).resolve())
    cfg["decontaminate"]["benchmarks"] = [str((REPO / b).resolve()) for b in cfg["decontaminate"]["benchmarks"]]
    cfg["remix"] = {"seed": 0, "max_epochs": 1}  # temperature sampling over whatever domains the sample has
    if split > 1:
        if remix_shard_bytes:
            cfg["remix"]["shard_bytes"] = remix_shard_bytes
        if dedup_partitions:
            cfg["dedup"]["partitions"] = dedup_partitions
    cfg.update({"inputs": inputs, "output": str(root / name), "stages": stages})
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_stage_child(config: Path, stage: str, inputs: list[str], out: Path, artifacts: dict[str, str],
                    profile: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", stage, "--config", str(config),
           "--inputs", json.dumps(inputs), "--out", str(out), "--artifacts", json.dumps(artifacts)]
    if profile:
        cmd.append("--profile")
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("STAGE_RESULT ")]
    if r.returncode != 0 or not lines:
        raise SystemExit(f"stage {stage} failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    return json.loads(lines[-1][len("STAGE_RESULT "):])


def run_repeated(config: Path, stage: str, inputs: list[str], out: Path, artifacts: dict[str, str],
                 repeats: int) -> dict[str, Any]:
    """Run one stage `repeats` times on the same input (fresh output directory each time): the first
    run's record with CPU and setup seconds replaced by the medians and RSS by the maximum; the
    first run's output is the one the chain continues from."""
    import shutil
    import statistics

    runs = []
    for k in range(repeats):
        o = out if k == 0 else out.with_name(f"{out.name}.rep{k}")
        runs.append(run_stage_child(config, stage, inputs, o, artifacts))
        if k:
            shutil.rmtree(o, ignore_errors=True)
    rec = dict(runs[0])
    rec["cpu_runs"] = [r["cpu_s"] for r in runs]
    rec["cpu_s"] = statistics.median(rec["cpu_runs"])
    rec["setup_cpu_s"] = statistics.median(r["setup_cpu_s"] for r in runs)
    rec["max_rss_mb"] = max(r["max_rss_mb"] for r in runs)
    return rec


def run_chain(root: Path, tag: str, inputs: list[str], stages: list[str], repeats: int, split: int,
              args: argparse.Namespace) -> tuple[list[dict[str, Any]], Path, dict[str, str], dict[str, list[str]]]:
    """Every stage in pipeline order on one sample point; returns the per-stage records, the config
    and what each stage read (for the profile run)."""
    cfg = write_config(root, tag, inputs, stages, split, args.split_remix_shard_bytes, args.split_dedup_partitions)
    results: list[dict[str, Any]] = []
    previous, artifacts, read = inputs, {}, {}
    for name in stages:
        out = root / tag / name
        read[name] = previous
        rec = run_repeated(cfg, name, previous, out, dict(artifacts), 1 if name == "tokenizer" else repeats)
        rec["units"] = task_units(rec)
        results.append(rec)
        if rec["produces"] == "documents":
            previous = [str(out)]
        else:
            artifacts[name] = str(out)
    return results, cfg, artifacts, read


def task_units(rec: dict[str, Any]) -> int:
    """The per-shard work items of a stage on one run: input shards (files for ingest), plus dedup's
    reduce partitions and remix's output shards (each is a task with its own fixed costs)."""
    n = int(rec.get("in_shards", 0))
    if rec["stage"] == "dedup":
        n += int(rec.get("partitions", 0))
    if rec["stage"] == "remix":
        n += int(rec.get("out_shards", 0))
    return n


def fit_cost(points: list[tuple[float, float, float]]) -> dict[str, Any]:
    """Non-negative least squares of y = per_doc·docs + per_unit·units + const over the sample
    points (docs, units, y): the slope is the per-document cost, per_unit the per-shard-task cost,
    const what a stage pays once per process (imports, JIT, planning). Residuals in y's units."""
    import numpy as np
    from scipy.optimize import nnls

    A = np.array([[d, u, 1.0] for d, u, _ in points], dtype=float)
    y = np.array([p[2] for p in points], dtype=float)
    scale = A.max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(A / scale, y)
    coef = coef / scale
    pred = A @ coef
    ident = bool(len({p[1] for p in points}) > 1 and len({p[0] for p in points}) > 1)
    return {"per_doc": float(coef[0]), "per_unit": float(coef[1]), "const": float(coef[2]),
            "pred": pred.tolist(), "resid": (y - pred).tolist(), "y": y.tolist(), "identified": ident}


def pair_slopes(recs: list[dict[str, Any]], docs_key: str) -> list[float]:
    """Per-document CPU between two sample points of the same shard layout: (1 vs 2) and (3 vs 4)
    of the four points (small/large at one layout, then small/large at the other)."""
    out = []
    for a, b in ((recs[0], recs[1]), (recs[2], recs[3])):
        dd = b[docs_key] - a[docs_key]
        if dd > 0 and b.get("units", b.get("in_shards")) == a.get("units", a.get("in_shards")):
            out.append((b["cpu_s"] - a["cpu_s"]) / dd)
    return out


def pow2_partitions(docs: float, cfg: dict[str, Any]) -> int:
    """dedup's automatic partition count (stages/dedup: docs × bands / rows_per_partition, next power of two)."""
    import math

    need = math.ceil(max(docs, 1) * cfg.get("num_bands", 14) / cfg.get("rows_per_partition", 8_000_000))
    return 1 << max(0, math.ceil(math.log2(need)))


def main() -> None:
    import math
    import shutil

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small-docs", type=int, default=300, help="documents taken from each corpus file (small point)")
    ap.add_argument("--large-docs", type=int, default=1200, help="documents taken from each corpus file (large point)")
    ap.add_argument("--split", type=int, default=4, help="corpus files cut into this many shards on the split points")
    ap.add_argument("--split-remix-shard-bytes", type=int, default=256 * 1024,
                    help="remix shard_bytes on the split points (several pack input shards)")
    ap.add_argument("--split-dedup-partitions", type=int, default=16, help="dedup partitions on the split points")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each stage per sample point (median CPU)")
    ap.add_argument("--warc-units", type=int, default=4, help="copies of the WARC unit in the large WARC files")
    ap.add_argument("--docs-per-dump", type=float, default=DOCS_PER_DUMP)
    ap.add_argument("--warc-files", type=int, default=WARC_FILES_PER_DUMP,
                    help="WARC files per dump = ingest shards (CommonCrawl: ~90,000, ~1 GB / ~30k pages each)")
    ap.add_argument("--dumps", type=int, default=DUMPS)
    ap.add_argument("--price", type=float, default=0.0425, help="USD per vCPU-hour")
    ap.add_argument("--tokenizer-sample-bytes", type=float, default=TOKENIZER_SAMPLE_BYTES)
    ap.add_argument("--cores", type=int, default=2048,
                    help="cluster size: worker processes that each pay a stage's per-process cost once "
                         "(ray-cluster.yaml's maximum), and the wall-time line")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile run of dedup/decontaminate/filter")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--artifacts", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child(args)
        return

    stages = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())["stages"]
    t_start = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="winnow-bench-pipeline-"))
    crawl = demo_crawl_files() + [str(write_aeb_warc(root / "aeb.warc.gz"))]
    crawl_only = [p for p in crawl if not p.endswith((".jsonl", ".jsonl.gz"))]
    R = args.repeats
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "stages", "filters", "pipeline", "tokenizer"],
                           capture_output=True, text=True, cwd=REPO).stdout.split("\n")
    dirty = [ln[3:] for ln in dirty if ln.strip()]
    print(f"code measured: commit {head}" + (f" + uncommitted changes in {', '.join(dirty)}" if dirty else " (clean)"))

    # ---- ingest on WARC alone: per page and per file ----------------------------------------------
    warc_old_cfg = write_config(root, "warc", crawl_only, ["ingest"])
    warc_sample = run_repeated(warc_old_cfg, "ingest", crawl_only, root / "warc" / "ingest", {}, R)
    unit, unit_pages, unit_html = warc_unit(crawl_only)
    warc_points = []
    for files, k in ((1, 1), (1, args.warc_units), (args.warc_units, 1), (args.warc_units, args.warc_units)):
        d = root / f"warc-{files}x{k}"
        d.mkdir()
        paths = []
        for i in range(files):
            p = d / f"w{i:02d}.warc.gz"
            p.write_bytes(unit * k)
            paths.append(str(p))
        c = write_config(root, f"warc-{files}x{k}-run", paths, ["ingest"])
        rec = run_repeated(c, "ingest", paths, root / f"warc-{files}x{k}-run" / "ingest", {}, R)
        rec["label"] = f"{files} file(s) x {k} unit(s)"
        rec["pages"] = files * k * unit_pages
        warc_points.append(rec)
        shutil.rmtree(root / f"warc-{files}x{k}-run", ignore_errors=True)
    warc_fit = fit_cost([(r["pages"], r["in_shards"], r["cpu_s"]) for r in warc_points])
    print(f"ingest on WARC only, CommonCrawl-shaped (a unit = the {len(crawl_only)} crawl files' well-formed .warc.gz "
          f"concatenated + request/metadata records: {len(unit) / 1e6:.1f} MB, {warc_points[0]['input']} records, "
          f"{unit_pages} response pages of {unit_html / unit_pages / 1e3:.0f} kB HTML on average), median of {R} runs:")
    print(f"  {'point':24} {'records':>8} {'pages':>6} {'shards':>6} {'CPU s':>7} {'fit s':>7} {'resid':>7}  runs")
    for r, pred, res in zip(warc_points, warc_fit["pred"], warc_fit["resid"]):
        print(f"  {r['label']:24} {r['input']:>8,} {r['pages']:>6,} {r['in_shards']:>6} {r['cpu_s']:>7.2f} {pred:>7.2f} "
              f"{res:>+7.2f}  " + " ".join(f"{x:.2f}" for x in r["cpu_runs"]))
    warc_fit["pair_slopes"] = pair_slopes(warc_points, "pages")
    warc_rate = 1.0 / warc_fit["per_doc"] if warc_fit["per_doc"] > 0 else 0.0
    warc_sample_rate = warc_sample["input"] / warc_sample["cpu_s"]
    print(f"  fit: {warc_fit['per_doc'] * 1e3:.3f} ms per page with its request and metadata records "
          f"({warc_rate:,.0f} pages/s/core; {warc_fit['per_doc'] / (unit_html / unit_pages) * 1e9:.1f} us per kB of HTML), "
          f"pairwise {'/'.join(f'{x * 1e3:.3f}' for x in warc_fit['pair_slopes'])} ms/page, "
          f"{warc_fit['per_unit'] * 1e3:.1f} ms per file, {warc_fit['const']:.2f} s per process; "
          f"the demo's crawl files as one sample: {warc_sample['input']} records in {warc_sample['cpu_s']:.2f} s "
          f"= {warc_sample_rate:,.0f} records/s/core (fixed costs included)")

    # ---- the whole chain at four sample points -----------------------------------------------------
    points = [("small", args.small_docs, 1), ("large", args.large_docs, 1),
              ("small-split", args.small_docs, args.split), ("large-split", args.large_docs, args.split)]
    chains: dict[str, list[dict[str, Any]]] = {}
    keep: dict[str, dict[str, Any]] = {}
    for tag, n, split in points:
        inputs = crawl + corpus_slices(root / f"corpus-{tag}", n, split)
        res, cfg, arts, read = run_chain(root, tag, inputs, stages, R, split, args)
        chains[tag] = res
        if split == 1:
            keep[tag] = {"cfg": cfg, "artifacts": arts, "read": read}
        print(f"point {tag:12} ({n} docs x {split} file(s) per corpus file): "
              + ", ".join(f"{r['stage']} {r['input']:,}d/{r['units']}t {r['cpu_s']:.1f}s" for r in res), flush=True)

    large = chains["large"]
    first_in = large[0]["input"]
    print(f"\nsample points (median CPU of {R} runs; d = input documents, t = per-shard tasks):")
    print(f"{'stage':14} " + " ".join(f"{t:>24}" for t, _, _ in points))
    for i, name in enumerate(stages):
        print(f"{name:14} " + " ".join(
            f"{chains[t][i]['input']:>7,}d {chains[t][i]['units']:>3}t {chains[t][i]['cpu_s']:>7.2f}s" for t, _, _ in points))

    # ---- per-stage fits ------------------------------------------------------------------------------
    fits: dict[str, dict[str, Any]] = {}
    print("\nfit per stage: CPU s = per_doc x docs + per_task x tasks + per_process (non-negative least squares)")
    print(f"{'stage':14} {'ms/doc':>8} {'docs/s/core':>12} {'ms/task':>8} {'s/process':>9} {'setup s':>7}  "
          f"residuals s ({', '.join(t for t, _, _ in points)})")
    for i, name in enumerate(stages):
        f = fit_cost([(chains[t][i]["input"], chains[t][i]["units"], chains[t][i]["cpu_s"]) for t, _, _ in points])
        f["setup_s"] = max(chains[t][i]["setup_cpu_s"] for t, _, _ in points)
        f["pair_slopes"] = pair_slopes([chains[t][i] for t, _, _ in points], "input")
        fits[name] = f
        rate = 1 / f["per_doc"] if f["per_doc"] > 0 else float("inf")
        print(f"{name:14} {f['per_doc'] * 1e3:>8.3f} {rate:>12,.0f} {f['per_unit'] * 1e3:>8.1f} {f['const']:>9.2f} "
              f"{f['setup_s']:>7.2f}  " + " ".join(f"{x:+.2f}" for x in f["resid"])
              + "  pairwise ms/doc " + "/".join(f"{x * 1e3:.3f}" for x in f["pair_slopes"])
              + ("" if f["identified"] else "  (tasks or docs constant: per_task not identified)"))
    print("  pairwise ms/doc: (large - small) / extra documents at 1 shard per corpus file, then at the split layout;\n"
          "    the projection's high estimate charges each stage its largest of fit and pairwise slopes.")
    print("  per_doc: parsing, extraction, hashing, scoring, encoding, row writing: what grows with documents;\n"
          "  per_task: one shard's open/read of a file, parquet writer and footer, commit record, fingerprint,\n"
          "    manifest entry, stats merge, and for dedup each map/reduce task's shuffle files;\n"
          "  per_process: imports and JIT inside the stage, planning and manifest of a run, paid once per\n"
          "    stage per worker process; setup (models) is measured apart and charged the same way.")
    dd_idx = stages.index("dedup")
    shuffle_fit = fit_cost([(chains[t][dd_idx]["input"], chains[t][dd_idx]["units"], chains[t][dd_idx]["shuffle_bytes"])
                            for t, _, _ in points])
    io_fits = {name: fit_cost([(chains[t][i]["input"], chains[t][i]["units"], chains[t][i]["out_bytes"])
                               for t, _, _ in points]) for i, name in enumerate(stages)}

    # ---- projection ----------------------------------------------------------------------------------
    D, W = args.docs_per_dump, args.warc_files
    cc = yaml.safe_load((REPO / "configs" / "commoncrawl.yaml").read_text(encoding="utf-8"))
    remix_rec = next(r for r in large if r["stage"] == "remix")
    remix_docs = D * remix_rec["input"] / first_in
    remix_out_shards = max(1, math.ceil(remix_rec["out_bytes"] / max(1, remix_rec["input"]) * remix_docs
                                        / cc.get("remix", {}).get("shard_bytes", 256 * 2**20)))
    dedup_docs = D * large[dd_idx]["input"] / first_in
    dump_parts = pow2_partitions(dedup_docs, cc.get("dedup", {}))
    units_at_scale = {"ingest": W, "dedup": W + dump_parts, "decontaminate": W, "filter": W,
                      "remix": W + remix_out_shards, "pack": remix_out_shards, "tokenizer": 1}
    proj = []
    for r in large:
        name = r["stage"]
        f = fits[name]
        share = r["input"] / first_in if first_in else 0.0
        workers = min(args.cores, units_at_scale[name])
        if name == "tokenizer":
            trained = r.get("sample_bytes") or r["in_bytes"]
            per_byte = r["cpu_s"] / max(1, trained)
            doc_h, unit_h, proc_h = per_byte * args.tokenizer_sample_bytes / 3600, 0.0, 0.0
            high_h = doc_h
            docs = 0.0
            basis = (f"{args.tokenizer_sample_bytes / 1e9:.0f} GB sample once at {trained / r['cpu_s'] / 1e6:.2f} MB/s/core "
                     f"(measured on {trained / 1e6:.1f} MB; BPE training is not linear in its sample)")
        else:
            per_doc, per_unit, const = f["per_doc"], f["per_unit"], f["const"]
            high = max([per_doc] + f["pair_slopes"])
            if name == "ingest":
                per_doc, per_unit, const = warc_fit["per_doc"], warc_fit["per_unit"], warc_fit["const"]
                high = max([per_doc] + warc_fit["pair_slopes"])
            docs = D * (1.0 if name == "ingest" else share)
            doc_h = docs * per_doc / 3600
            high_h = docs * high / 3600
            unit_h = units_at_scale[name] * per_unit / 3600
            proc_h = workers * (const + f["setup_s"]) / 3600
            basis = (f"{docs:.2e} docs x {per_doc * 1e3:.3f} ms + {units_at_scale[name]:,} tasks x "
                     f"{per_unit * 1e3:.0f} ms + {workers:,} processes x {const + f['setup_s']:.1f} s")
        io = io_fits[name]
        proj.append({"stage": name, "core_h": doc_h + unit_h + proc_h, "doc_h": doc_h, "fixed_h": unit_h + proc_h,
                     "high_h": high_h + unit_h + proc_h,
                     "basis": basis, "docs": docs, "units": units_at_scale[name],
                     "rss_gb": max(c[stages.index(name)]["max_rss_mb"] for c in chains.values()) / 1024,
                     "io_bytes": io["per_doc"] * docs + io["per_unit"] * units_at_scale[name]})
    total = sum(p["core_h"] for p in proj)
    total_high = sum(p["high_h"] for p in proj)
    fixed = sum(p["fixed_h"] for p in proj)
    dom = max(proj, key=lambda p: p["core_h"])
    peak = max(proj, key=lambda p: p["rss_gb"])
    shuffle_dump = shuffle_fit["per_doc"] * dedup_docs + shuffle_fit["per_unit"] * units_at_scale["dedup"]
    io_dump = WARC_BYTES_PER_DUMP + sum(p["io_bytes"] for p in proj) * 2  # each output written once, read once

    # the former method: CPU / documents of one sample point, every cost charged per document
    def per_doc_only(chain: list[dict[str, Any]], warc_rate_: float) -> float:
        tot, fi = 0.0, chain[0]["input"]
        for r in chain:
            if r["stage"] == "tokenizer":
                tot += next(p["core_h"] for p in proj if p["stage"] == "tokenizer")
            elif r["stage"] == "ingest":
                tot += D / warc_rate_ / 3600
            else:
                tot += D * r["input"] / fi * r["cpu_s"] / r["input"] / 3600
        return tot
    old_small = per_doc_only(chains["small"], warc_sample_rate)

    print(f"\nprojection: {D:.1e} pages per dump in {W:,} WARC files (= ingest/dedup/decontaminate/filter shards, "
          f"~{D / W:,.0f} pages each), dedup {dump_parts:,} partitions, remix {remix_out_shards:,} output shards "
          f"(= pack shards), per-process costs x min({args.cores:,} workers, tasks); later stages get the large "
          f"sample's share of documents; ${args.price}/vCPU-hour")
    print(f"{'stage':14} {'core-h/dump':>11} {'per-doc h':>10} {'fixed h':>8} {'share':>6} {'high':>8} {'peak GB':>7}  basis")
    for p in proj:
        print(f"{p['stage']:14} {p['core_h']:>11,.1f} {p['doc_h']:>10,.1f} {p['fixed_h']:>8,.1f} "
              f"{p['core_h'] / total:>6.1%} {p['high_h']:>8,.1f} {p['rss_gb']:>7.2f}  {p['basis']}")
    tok = next((p["core_h"] for p in proj if p["stage"] == "tokenizer"), 0.0)
    total_91 = (total - tok) * args.dumps + tok
    print(f"{'total':14} {total:>11,.0f} {total - fixed:>10,.0f} {fixed:>8,.1f} {'':>6} {total_high:>8,.0f}")
    print(f"\nformer method (CPU / documents of the {args.small_docs}-doc sample, ingest at the demo crawl files' "
          f"whole-sample rate): {old_small:,.0f} core-hours per dump; this fit: {total:,.0f} "
          f"({total / old_small:.2f}x)")
    print(f"1 dump:   {total:,.0f} core-hours, ${total * args.price:,.0f}; shuffle {shuffle_dump / 1e12:.2f} TB; "
          f"object-store traffic {io_dump / 1e12:.0f} TB (80 TB WARC read + stage outputs written and read once)")
    print(f"{args.dumps} dumps: {total_91:,.0f} core-hours, ${total_91 * args.price:,.0f} "
          f"(tokenizer once; dedup per document as measured: the global shuffle of {args.dumps} dumps is {args.dumps}x "
          f"the rows, shuffle {shuffle_dump * args.dumps / 1e15:.2f} PB); "
          f"object-store traffic {io_dump * args.dumps / 1e15:.1f} PB")
    print(f"wall time on {args.cores:,} cores at full use: {total / args.cores:.1f} h per dump, "
          f"{total_91 / args.cores / 24:.1f} days for {args.dumps} dumps")
    print(f"dominant stage: {dom['stage']} ({dom['core_h'] / total:.0%}); fixed (per-task + per-process) share "
          f"{fixed / total:.1%}; peak RSS per worker: {peak['rss_gb']:.2f} GB ({peak['stage']}); goal <= 3,000 "
          f"core-hours per dump: {'met' if total <= 3000 else 'NOT met'} by the fit, "
          f"{'met' if total_high <= 3000 else 'NOT met'} by the high estimate ({total_high:,.0f})")

    # ---- where the per-document CPU goes: profile at the large point less profile at the small one ---
    hot: dict[str, Any] = {}
    if not args.no_profile:
        print("\nper-document hot spots: cProfile own time per function at the large point minus the same at the "
              "small point (both one shard per corpus file), i.e. what the extra documents cost; share of that "
              "difference. cProfile adds overhead to Python calls, so Python-heavy rows are inflated; a C "
              "extension's time is charged to the builtin call that enters it (parquet decoding under the "
              "generator that iterates it)")
        for name in ("dedup", "decontaminate", "filter"):
            recs = {tag: run_stage_child(keep[tag]["cfg"], name, keep[tag]["read"][name],
                                         root / "profile" / tag / name, dict(keep[tag]["artifacts"]), profile=True)
                    for tag in ("small", "large")}
            small = {h["where"]: h for h in recs["small"]["hot"]}
            rows = [dict(h, delta_s=h["own_s"] - small.get(h["where"], {}).get("own_s", 0.0))
                    for h in recs["large"]["hot"]]
            d_docs = recs["large"]["input"] - recs["small"]["input"]
            d_cpu = recs["large"]["cpu_s"] - recs["small"]["cpu_s"]
            d_total = sum(max(0.0, r["delta_s"]) for r in rows) or 1.0
            rows.sort(key=lambda r: -r["delta_s"])
            for r in rows:
                r["delta_share"] = max(0.0, r["delta_s"]) / d_total
            hot[name] = rows[:10]
            print(f"  {name}: +{d_docs:,} documents, +{d_cpu:.1f} s CPU under the profiler "
                  f"({d_cpu / max(1, d_docs) * 1e3:.3f} ms/doc; unprofiled fit {fits[name]['per_doc'] * 1e3:.3f})")
            for h in rows[:5]:
                print(f"    {h['delta_share']:>6.1%} {h['delta_s'] / max(1, d_docs) * 1e6:>7.1f} us/doc  "
                      f"{h['calls']:>9,} calls  {h['where']}")

    print(f"bench wall {time.perf_counter() - t_start:.0f} s")
    print(json.dumps({"points": {t: [{k: v for k, v in r.items() if k != 'phases'} for r in c] for t, c in chains.items()},
                      "warc_points": warc_points, "fits": fits, "warc_fit": warc_fit, "projection": proj,
                      "hot": hot}, default=str)[:30000])
    shutil.rmtree(root, ignore_errors=True)
    print(f"RESULT core_hours_per_dump={total:.0f} core_hours_91_dumps={total_91:.0f} dominant_stage={dom['stage']} "
          f"dominant_share={dom['core_h'] / total:.2f} peak_worker_gb={peak['rss_gb']:.2f} "
          f"usd_per_dump={total * args.price:.0f} shuffle_tb_per_dump={shuffle_dump / 1e12:.2f} "
          f"ingest_pages_per_core_s={warc_rate:.0f} fixed_share={fixed / total:.3f} "
          f"core_hours_per_dump_high={total_high:.0f} "
          f"per_doc_only_core_hours={old_small:.0f} ingest_records_per_core_s_whole_sample={warc_sample_rate:.0f}")


if __name__ == "__main__":
    main()
