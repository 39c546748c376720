"""Per-page CPU of the whole ingest stage on WARC input, and where it goes (issue 12, cost model).

`bench/ingest.py` times HTML -> text alone; this times `IngestStage.process_shard` (one shard per
crawl file: WARC iteration, HTTP/gzip/chunked decoding, record-type and binary checks, charset
decoding, extraction, text checks, ids, host/url/date parsing, the Arrow tables) on the same
files `bench/pipeline.py`'s ``ingest (WARC)`` row reads: the WARC / WET files `configs/demo.yaml`
lists from ``../shared/data`` plus the 181 scrapinghub article pages written as WARC response
records (`bench/pipeline.write_aeb_warc`). The runner's shard commit (Parquet write, fsync,
manifest) is not included: it is not ingest's code and its cost is per shard, not per page.

What it prints, all from one process (CPU seconds = ``time.process_time``, median of ``--reps``
passes over the same files, the components timed round-robin with the full stage so machine
noise hits them alike):

- **stage**: records/s and HTML pages/s per core of `process_shard` (a "page" = a record that
  reaches extraction: an HTML response; warcinfo / request / metadata / revisit / WET
  conversion records are rows too, and cheap ones);
- **components**, each on exactly the inputs the stage handed it in the first pass (captured by
  wrapping the stage module's functions): ``read`` = `warc_records` over the files (gunzip, WARC
  and HTTP parsing, de-chunking, Content-Encoding), ``decode`` = `decode_html` (UTF-8, labels,
  uchardet detection), ``resiliparse`` = the library call `extract_plain_text` with winnow's
  options, ``extract wrapper`` = the rest of `extract_main_text` (tag count / deep-DOM guard,
  skip-selector fallback, normalisation), and ``winnow python`` = stage minus all of those
  (per-record Python: headers, ids, checks, builders, Arrow tables);
- **peer**: the bare library loop a minimal pipeline runs (FastWARC iterator -> resiliparse's own
  ``detect_encoding`` + ``bytes_to_str`` -> ``extract_plain_text`` with the same options), on the
  same HTML pages: the floor winnow's extra work is measured against.

``--digest FILE`` writes the sha256 of every shard's output (kept table, rejected table, input
rows and counters, with and without ``keep_rejected_text``) of each shared-data file as JSON, so
a change meant to keep output bytes can be checked: run it before and after and compare the files
(the generated scrapinghub WARC is left out: warcio stamps its records with the current date and
random record ids, so its shard differs on every run).

Last line: ``RESULT ingest_pages_per_core_s=… ingest_records_per_core_s=… resiliparse_share=…
read_share=… decode_share=… winnow_python_share=… vs_bare_loop=…`` (vs_bare_loop = the bare
loop's CPU per page / the stage's: 1.0 would mean no overhead at all).
Run: ``.venv/bin/python bench/ingest_stage.py`` from the repo root (under a minute).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import pyarrow.ipc as ipc
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import winnow.stages.ingest as ingest_mod  # noqa: E402
from winnow.stages.base import ShardOutput, ShardTask  # noqa: E402
from winnow.stages.extract import RESILIPARSE_OPTIONS, decode_html, extract_main_text  # noqa: E402
from winnow.stages.ingest import IngestStage, file_kind  # noqa: E402
from winnow.stages.warc_records import RawRecord, warc_records  # noqa: E402


def crawl_files(workdir: Path) -> list[str]:
    """The WARC / WET files of configs/demo.yaml plus the scrapinghub pages as a WARC file."""
    from pipeline import write_aeb_warc  # bench/pipeline.py: the same file its WARC row reads

    demo = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text(encoding="utf-8"))
    files = sorted({p for pat in demo["inputs"] for p in glob.glob(str((REPO / pat).resolve()))})
    files = [f for f in files if file_kind(f) == "warc"]
    if not files:
        raise SystemExit("no crawl files under ../shared/data: this benchmark reads the shared sample")
    return files + [str(write_aeb_warc(workdir / "aeb.warc.gz"))]


def output_digest(out: ShardOutput) -> str:
    """sha256 over a shard's kept and rejected tables (Arrow IPC bytes), input rows and counters."""
    h = hashlib.sha256()
    for table in (out.kept, out.rejected):
        buf = io.BytesIO()
        with ipc.new_stream(buf, table.schema) as w:
            w.write_table(table)
        h.update(buf.getvalue())
    h.update(json.dumps([out.input_rows, out.counters], sort_keys=True).encode())
    return h.hexdigest()


def _cpu(fn: Callable[[], Any]) -> float:
    c = time.process_time()
    fn()
    return time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="timed passes (median), >= 3")
    ap.add_argument("--digest", type=Path, default=None, help="write per-shard output sha256 to this JSON file")
    args = ap.parse_args()
    reps = max(3, args.reps)

    demo_ingest = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text(encoding="utf-8")).get("ingest") or {}
    with tempfile.TemporaryDirectory(prefix="winnow-bench-ingest-stage-") as tmp:
        files = crawl_files(Path(tmp))
        stage = IngestStage(demo_ingest)
        tasks = [ShardTask(index=i, name=f"s{i}", inputs=(f,)) for i, f in enumerate(files)]

        if args.digest:
            digests = {}
            for keep in (False, True):
                st = IngestStage({**demo_ingest, "keep_rejected_text": keep})
                for t in tasks[:-1]:  # not the generated aeb WARC: warcio stamps it with today's date
                    name = "/".join(Path(t.inputs[0]).parts[-2:])  # e.g. dolma/sample-0000.warc.gz
                    digests[f"keep_rejected_text={keep}:{name}"] = output_digest(st.process_shard(t))
            args.digest.write_text(json.dumps(digests, indent=1, sort_keys=True))
            print(f"digests of {len(digests)} shard outputs -> {args.digest}")

        # One pass with the stage's decode / extract calls recorded: the exact component inputs.
        bodies: list[tuple[bytes, str | None]] = []
        htmls: list[str] = []
        real_decode, real_extract = ingest_mod.decode_html, ingest_mod.extract_main_text

        def rec_decode(body: bytes, charset: str | None = None) -> str:
            bodies.append((body, charset))
            return real_decode(body, charset)

        def rec_extract(html: str, extractor: str = "resiliparse", options: Any = None) -> str:
            htmls.append(html)
            return real_extract(html, extractor, options)

        ingest_mod.decode_html, ingest_mod.extract_main_text = rec_decode, rec_extract  # type: ignore[assignment]
        try:
            outs = [stage.process_shard(t) for t in tasks]
        finally:
            ingest_mod.decode_html, ingest_mod.extract_main_text = real_decode, real_extract  # type: ignore[assignment]
        records = sum(o.input_rows for o in outs)
        kept = sum(o.kept.num_rows for o in outs)
        pages = len(htmls)
        html_bytes = sum(len(b) for b, _ in bodies)

        from fastwarc.warc import ArchiveIterator, WarcRecordType
        from resiliparse.extract.html2text import extract_plain_text
        from resiliparse.parse.encoding import bytes_to_str, detect_encoding

        opts = dict(RESILIPARSE_OPTIONS)
        max_body = stage.config.max_body_bytes
        raw_html = [b for b, _ in bodies]

        def full() -> None:
            for t in tasks:
                stage.process_shard(t)

        def read() -> None:
            for f in files:
                def opener(f: str = f) -> Any:
                    return open(f, "rb")
                for item in warc_records(opener, max_body_bytes=max_body):
                    if isinstance(item, RawRecord):
                        item.body  # noqa: B018 - the records are the work

        def decode() -> None:
            for b, cs in bodies:
                decode_html(b, cs)

        def lib() -> None:
            for h in htmls:
                extract_plain_text(h, **opts)

        def wrapper() -> None:
            for h in htmls:
                extract_main_text(h, stage.config.extractor)

        def bare() -> None:
            """The peer: a minimal fastwarc + resiliparse loop over the same HTML bodies."""
            for f in files:
                with open(f, "rb") as s:
                    for r in ArchiveIterator(s, record_types=WarcRecordType.response, parse_http=True):
                        r.reader.read()
            for b in raw_html:
                extract_plain_text(bytes_to_str(b, detect_encoding(b)), **opts)

        parts: dict[str, Callable[[], None]] = {"stage": full, "read": read, "decode": decode,
                                                 "extract_main_text": wrapper, "resiliparse": lib, "bare_loop": bare}
        for fn in parts.values():  # warm-up: imports, caches
            fn()
        times: dict[str, list[float]] = {k: [] for k in parts}
        for _ in range(reps):
            for k, fn in parts.items():
                times[k].append(_cpu(fn))
        med = {k: statistics.median(v) for k, v in times.items()}

    st = med["stage"]
    share = {
        "resiliparse": med["resiliparse"] / st,
        "extract wrapper": (med["extract_main_text"] - med["resiliparse"]) / st,
        "read": med["read"] / st,
        "decode": med["decode"] / st,
    }
    share["winnow python"] = 1.0 - sum(share.values())
    print(f"{len(files)} crawl files: {records} records, {pages} HTML pages extracted "
          f"({html_bytes / 1e6:.1f} MB of HTML), {kept} kept; median of {reps} passes, CPU s per pass")
    print(f"{'part':<20}{'cpu s':>9}{'share':>8}{'per page ms':>13}")
    for k, label in (("resiliparse", "resiliparse"), ("extract_main_text", "extract wrapper"),
                     ("read", "read"), ("decode", "decode")):
        cpu = med[k] if k != "extract_main_text" else med[k] - med["resiliparse"]
        print(f"{label:<20}{cpu:>9.4f}{share[label]:>8.1%}{cpu / pages * 1e3:>13.3f}")
    rest = st * share["winnow python"]
    print(f"{'winnow python':<20}{rest:>9.4f}{share['winnow python']:>8.1%}{rest / pages * 1e3:>13.3f}")
    print(f"{'stage (total)':<20}{st:>9.4f}{1:>8.0%}{st / pages * 1e3:>13.3f}")
    print(f"{'bare loop (peer)':<20}{med['bare_loop']:>9.4f}{med['bare_loop'] / st:>8.1%}"
          f"{med['bare_loop'] / pages * 1e3:>13.3f}")
    print(f"RESULT ingest_pages_per_core_s={pages / st:.0f} ingest_records_per_core_s={records / st:.0f} "
          f"resiliparse_share={share['resiliparse']:.3f} read_share={share['read']:.3f} "
          f"decode_share={share['decode']:.3f} winnow_python_share={share['winnow python']:.3f} "
          f"vs_bare_loop={med['bare_loop'] / st:.3f}")


if __name__ == "__main__":
    main()
