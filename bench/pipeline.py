"""The cost model of a whole winnow pipeline: every stage on one real sample, measured per core,
and projected to one and to 91 CommonCrawl dumps (docs/scale.md quotes this output).

What runs: the stages of ``configs/demo.yaml`` (ingest → dedup → decontaminate → filter → remix
→ tokenizer → pack, the registry's pipeline order as ``winnow run`` chains them) with the demo's
settings, on a fixed real sample: the demo's crawl files (WARC / WET / JSONL from
``../shared/data``), the 181 real article pages of ``../shared/data/scrapinghub_aeb`` written as
WARC response records, and the first ``--corpus-docs`` documents of every
``../shared/data/corpus`` file. Each stage runs through the real runner (``run_stage``: planning, commit, manifest) in its
own child process with an in-process runtime (one worker: shard tasks and dedup phase tasks run
one after another, no Ray), so:

- **CPU seconds** = user + system time of that process and its children (threads included:
  the tokenizer trainer's Rust threads count), from the start of ``run_stage`` to its end, less
  the stage's ``setup()`` (models loaded once per worker, shown apart: at scale a worker loads
  them once for thousands of shards); documents/s per core = input documents / CPU seconds;
- **peak RSS** = the process's maximum resident set (``ru_maxrss``): what one Ray worker running
  that stage needs (imports and models included), on this sample's shard sizes;
- **ingest per WARC page** is measured on its own as well (the crawl files only, WARC and WET
  records: JSONL lines need no HTML extraction), because a dump is WARC;
- **shuffle bytes** = bytes of dedup work files written (``stages/dedup/shuffle.py`` counter),
  **stage I/O** = bytes of each stage's input and output shards (what object storage would carry).

The projection (``--dumps``): every document-proportional stage costs input documents / (docs/s
per core), where a dump has ``--docs-per-dump`` pages (CommonCrawl's published figure for
CC-MAIN-2024-22: 2.7·10^9; 3·10^9 by default) and each later stage gets the share of documents
the sample kept up to it (measured); the tokenizer trains on a fixed sample (``sample_bytes`` of
configs/commoncrawl.yaml), so its cost is CPU seconds per text byte × that size, once. The bill is
core-hours × ``--price`` (USD per vCPU-hour; default 0.0425 = AWS c6i.8xlarge on-demand, us-east-1,
$1.36/h for 32 vCPU).

Last line: ``RESULT core_hours_per_dump=… dominant_stage=… peak_worker_gb=… …``.
Run: ``.venv/bin/python bench/pipeline.py`` from the repo root (about 3-5 minutes on 2 cores;
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
    from winnow.pipeline.config import load_config
    from winnow.pipeline.runner import run_stage
    from winnow.stages.dedup import shuffle as sh

    cfg = load_config(args.config)
    stage = cfg.build_stage(args.child).with_artifacts(json.loads(args.artifacts))
    inputs = json.loads(args.inputs)
    out = Path(args.out)
    if args.child == "dedup":
        stage = type(stage)({**stage.config.model_dump(), "keep_work": False})
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
    print("STAGE_RESULT " + json.dumps(rec), flush=True)


def _tokenizer_sample_bytes(out: Path) -> int:
    """UTF-8 bytes the tokenizer trained on, from what its stage recorded."""
    for name in ("tokenizer_report.json", "train_report.json", "manifest.json"):
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


# ---- the parent: sample, stages, table, projection ---------------------------------------------

def make_sample(root: Path, corpus_docs: int) -> tuple[list[str], list[str]]:
    """(all inputs, crawl-only inputs): the demo's crawl files and a corpus slice as JSONL."""
    import glob

    import yaml

    demo = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    crawl = sorted({p for pat in demo["inputs"] for p in glob.glob(str((REPO / pat).resolve()))})
    if not crawl:
        raise SystemExit(f"no crawl files under {SHARED}: this benchmark reads the shared sample")
    sl = root / "corpus"
    sl.mkdir(parents=True)
    corpus = []
    for src in sorted((SHARED / "corpus").glob("*.jsonl.gz")):
        dst = sl / src.name
        with gzip.open(src, "rt", encoding="utf-8") as f, gzip.open(dst, "wt", encoding="utf-8") as g:
            for i, line in enumerate(f):
                if i >= corpus_docs:
                    break
                g.write(line)
        corpus.append(str(dst))
    aeb = write_aeb_warc(root / "aeb.warc.gz")
    crawl = crawl + [str(aeb)]
    return crawl + corpus, [p for p in crawl if not p.endswith((".jsonl", ".jsonl.gz"))]


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


def write_config(root: Path, name: str, inputs: list[str], stages: list[str]) -> Path:
    import yaml

    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    for sect in ("filter",):  # models relative to the repo
        ppl = cfg[sect].get("perplexity") or {}
        ppl["models"] = {k: str((REPO / v).resolve()) for k, v in ppl.get("models", {}).items()}
        if ppl.get("cutoffs"):
            ppl["cutoffs"] = str((REPO / ppl["cutoffs"]).resolve())
    cfg["decontaminate"]["benchmarks"] = [str((REPO / b).resolve()) for b in cfg["decontaminate"]["benchmarks"]]
    cfg["remix"] = {"seed": 0, "max_epochs": 1}  # temperature sampling over whatever domains the sample has
    cfg.update({"inputs": inputs, "output": str(root / name), "stages": stages})
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_stage_child(config: Path, stage: str, inputs: list[str], out: Path, artifacts: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", stage, "--config", str(config),
           "--inputs", json.dumps(inputs), "--out", str(out), "--artifacts", json.dumps(artifacts)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("STAGE_RESULT ")]
    if r.returncode != 0 or not lines:
        raise SystemExit(f"stage {stage} failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    return json.loads(lines[-1][len("STAGE_RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus-docs", type=int, default=300, help="documents taken from each corpus file")
    ap.add_argument("--docs-per-dump", type=float, default=DOCS_PER_DUMP)
    ap.add_argument("--dumps", type=int, default=DUMPS)
    ap.add_argument("--price", type=float, default=0.0425, help="USD per vCPU-hour")
    ap.add_argument("--tokenizer-sample-bytes", type=float, default=TOKENIZER_SAMPLE_BYTES)
    ap.add_argument("--cores", type=int, default=2048, help="cluster size for the wall-time line (ray-cluster.yaml's maximum)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--artifacts", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child(args)
        return

    import yaml

    from winnow.stages import registry

    stages = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())["stages"]
    order = [s for s in registry() if s in stages]  # noqa: F841  (printed below)
    t_start = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="winnow-bench-pipeline-"))
    inputs, crawl = make_sample(root, args.corpus_docs)
    cfg = write_config(root, "run", inputs, stages)
    print(f"sample: {len(inputs)} files ({len(crawl)} WARC/WET crawl files from configs/demo.yaml, "
          f"{len(inputs) - len(crawl)} corpus slices of {args.corpus_docs} docs); one worker per stage, "
          f"CPU = user+sys of the stage's process")

    # ingest on the crawl files alone: the per-page cost of a WARC dump
    warc_cfg = write_config(root, "warc", crawl, ["ingest"])
    warc = run_stage_child(warc_cfg, "ingest", crawl, root / "warc" / "ingest", {})

    results: list[dict[str, Any]] = []
    previous = inputs
    artifacts: dict[str, str] = {}
    for name in stages:
        out = root / "run" / name
        rec = run_stage_child(cfg, name, previous, out, artifacts)
        results.append(rec)
        if rec["produces"] == "documents":
            previous = [str(out)]
        else:
            artifacts[name] = str(out)

    # ---- per-stage table ----------------------------------------------------------------------
    first_in = results[0]["input"]
    warc["docs_per_core_s"] = warc["input"] / warc["cpu_s"] if warc["cpu_s"] > 0 else 0.0
    warc["share"] = 1.0
    print(f"\n{'stage':14} {'docs in':>8} {'kept':>8} {'CPU s':>7} {'setup s':>7} {'docs/s/core':>12} "
          f"{'peak RSS MB':>12} {'in MB':>7} {'out MB':>7} {'share of docs':>13}")
    for r in [dict(warc, stage="ingest (WARC)")] + results:
        r.setdefault("docs_per_core_s", r["input"] / r["cpu_s"] if r["cpu_s"] > 0 else 0.0)
        r.setdefault("share", r["input"] / first_in if first_in else 0.0)
        print(f"{r['stage']:14} {r['input']:>8,} {r['kept']:>8,} {r['cpu_s']:>7.1f} {r['setup_cpu_s']:>7.1f} "
              f"{r['docs_per_core_s']:>12,.0f} "
              f"{r['max_rss_mb']:>12,.0f} {r['in_bytes'] / 1e6:>7.1f} {r['out_bytes'] / 1e6:>7.1f} {r['share']:>13.3f}")
    dd = next(r for r in results if r["stage"] == "dedup")
    if dd.get("phases"):
        print("\ndedup phases (one worker): " + ", ".join(f"{k} {v['cpu_s']:.2f}s" for k, v in dd["phases"].items()))

    # ---- projection ---------------------------------------------------------------------------
    D = args.docs_per_dump
    proj = []
    for r in results:
        if r["stage"] == "tokenizer":
            trained = r.get("sample_bytes") or r["in_bytes"]
            per_byte = r["cpu_s"] / max(1, trained)
            core_h = per_byte * args.tokenizer_sample_bytes / 3600
            basis = (f"{args.tokenizer_sample_bytes / 1e9:.0f} GB sample once, at {trained / r['cpu_s'] / 1e6:.2f} MB/s/core "
                     f"(measured on {trained / 1e6:.1f} MB; BPE training is not linear in its sample)")
            docs = 0.0
        else:
            rate = warc["docs_per_core_s"] if r["stage"] == "ingest" else r["docs_per_core_s"]
            docs = D * (1.0 if r["stage"] == "ingest" else r["share"])
            core_h = docs / rate / 3600 if rate else 0.0
            basis = f"{docs:.2e} docs at {rate:,.0f}/s/core"
        proj.append({"stage": r["stage"], "core_h": core_h, "basis": basis, "docs": docs,
                     "rss_gb": r["max_rss_mb"] / 1024,
                     "io_bytes": (r["out_bytes"] / max(1, r["input"])) * docs})
    total = sum(p["core_h"] for p in proj)
    dom = max(proj, key=lambda p: p["core_h"])
    peak = max(proj, key=lambda p: p["rss_gb"])
    shuffle_per_doc = dd["shuffle_bytes"] / max(1, dd["input"])
    shuffle_dump = shuffle_per_doc * D * dd["share"]
    io_dump = WARC_BYTES_PER_DUMP + sum(p["io_bytes"] for p in proj) * 2  # each output written once, read once
    print(f"\nprojection: {D:.1e} pages per dump (CommonCrawl), {args.dumps} dumps, "
          f"${args.price}/vCPU-hour; later stages get the sample's measured share of documents")
    print(f"{'stage':14} {'core-hours/dump':>16} {'share':>6} {'peak GB/worker':>15}  basis")
    for p in proj:
        print(f"{p['stage']:14} {p['core_h']:>16,.1f} {p['core_h'] / total:>6.1%} {p['rss_gb']:>15.2f}  {p['basis']}")
    tok = next((p["core_h"] for p in proj if p["stage"] == "tokenizer"), 0.0)
    total_91 = (total - tok) * args.dumps + tok
    print(f"{'total':14} {total:>16,.0f}")
    print(f"\n1 dump:   {total:,.0f} core-hours, ${total * args.price:,.0f}; shuffle {shuffle_dump / 1e12:.2f} TB; "
          f"object-store traffic {io_dump / 1e12:.0f} TB (80 TB WARC read + stage outputs written and read once)")
    print(f"{args.dumps} dumps: {total_91:,.0f} core-hours, ${total_91 * args.price:,.0f} "
          f"(tokenizer once; dedup per document as measured: the global shuffle of 91 dumps is {args.dumps}x "
          f"the rows, shuffle {shuffle_dump * args.dumps / 1e15:.2f} PB); "
          f"object-store traffic {io_dump * args.dumps / 1e15:.1f} PB")
    print(f"wall time on {args.cores:,} cores at full use: {total / args.cores:.1f} h per dump, "
          f"{total_91 / args.cores / 24:.1f} days for {args.dumps} dumps")
    print(f"dominant stage: {dom['stage']} ({dom['core_h'] / total:.0%}); peak RSS per worker: "
          f"{peak['rss_gb']:.2f} GB ({peak['stage']}); goal <= 3,000 core-hours per dump: "
          f"{'met' if total <= 3000 else 'NOT met'}; bench wall {time.perf_counter() - t_start:.0f} s")
    print(json.dumps({"stages": results, "warc_ingest": warc, "projection": proj}, default=str)[:20000])
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    print(f"RESULT core_hours_per_dump={total:.0f} core_hours_91_dumps={total_91:.0f} dominant_stage={dom['stage']} "
          f"dominant_share={dom['core_h'] / total:.2f} peak_worker_gb={peak['rss_gb']:.2f} "
          f"usd_per_dump={total * args.price:.0f} shuffle_tb_per_dump={shuffle_dump / 1e12:.2f} "
          f"ingest_pages_per_core_s={warc['docs_per_core_s']:.0f}")


if __name__ == "__main__":
    main()
