"""Ingest: crawl files → document shards (one output shard per input file).

Reads WARC (HTML responses → main text), WET (already-extracted text) and JSONL / Parquet text,
from local paths, globs, fsspec URLs and CommonCrawl `*.paths.gz` listings. Every record of every
file is one input row: a document kept, or a rejection with its reason (`ingest:revisit`,
`ingest:non_html`, `ingest:empty_text`, `ingest:truncated_record`, …). A file that breaks part-way
(corrupt gzip, unparseable record) yields one `ingest:corrupt_input` row naming the offset, the
records before it are kept, and the shard's `unread_bytes` counter says how much of the file was
not read: one bad file never stops the run. A file that does not exist or cannot be opened is an
error naming it (`remote_io.InputUnreadable`), found by the planner before work starts where it
can be; a transient error reading a remote file retries the file (`remote_io.with_retries`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import lzma
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, ClassVar, Literal, Sequence
from urllib.parse import urlsplit

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from winnow.pipeline.shards import rejected_table
from winnow.stages.base import ShardMapStage, ShardOutput, ShardTask, StageConfig, file_fingerprint, shard_name
from winnow.stages.remote_io import InputUnreadable, file_size, is_transient, is_url, open_raw, with_retries
from winnow.stages.extract import DEFAULT_EXTRACTOR, decode_html, extract_main_text, is_probably_binary
from winnow.stages.ingest_sources import COMMONCRAWL_BASE_URL, expand_inputs
from winnow.stages.schema import BASE_DOCUMENT_SCHEMA
from winnow.stages.warc_records import RawRecord, StreamError, warc_records

_DUMP_RE = re.compile(r"CC-MAIN-\d{4}-\d{2}(?!\d)")
_HTML_TYPES = ("text/html", "application/xhtml+xml", "application/xml", "text/xml", "text/plain")


class IngestConfig(StageConfig):
    """The `ingest:` section of a pipeline config."""

    extractor: Literal["resiliparse", "trafilatura"] = DEFAULT_EXTRACTOR  # type: ignore[assignment]
    max_body_bytes: int = Field(5_000_000, gt=0, description="larger HTTP bodies are rejected as too_large")
    max_replacement_ratio: float = Field(0.1, ge=0, le=1, description="share of U+FFFD above which text is 'undecodable'")
    dump: str | None = Field(None, description="dump name to use when the input does not say (e.g. CC-MAIN-2024-22)")
    paths_base_url: str = COMMONCRAWL_BASE_URL
    paths_limit: int | None = Field(None, gt=0, description="take only the first N entries of each *.paths.gz listing")
    paths_allow_absolute: bool = Field(False, description="allow *.paths.gz entries that are absolute paths or URLs")
    on_length_mismatch: Literal["keep", "reject"] = "keep"


def document_id(dump: str, url: str, digest: str) -> str:
    """Stable id: blake2b-128 of dump, url and the record's content digest."""
    return hashlib.blake2b(f"{dump}\0{url}\0{digest}".encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def host_of(url: str) -> str:
    try:
        return (urlsplit(url if "://" in url else "http://" + url).hostname or "").lower()
    except ValueError:
        return ""


def parse_date(value: Any) -> datetime | None:
    """ISO-8601 (the WARC-Date form and its relatives) → aware UTC datetime; None if unparseable."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc).replace(microsecond=0)
    s = str(value).strip().replace("Z", "+00:00")
    try:
        d = datetime.fromisoformat(s)
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.astimezone(timezone.utc).replace(microsecond=0)


def dump_from(*candidates: str | None) -> str | None:
    for c in candidates:
        if c:
            m = _DUMP_RE.search(c)
            if m:
                return m.group(0)
    return None


def file_kind(path: str) -> str:
    """'warc' (WARC or WET), 'jsonl' or 'parquet', from the file name."""
    name = path.lower().rsplit("/", 1)[-1]
    for suffix in (".gz", ".zst", ".bz2", ".xz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith((".warc", ".wet", ".arc")) or ".warc" in name or name.endswith(".txt"):
        return "warc"
    raise ValueError(f"{path}: unknown input kind (expected .warc[.gz], .wet[.gz], .jsonl[.gz], .parquet)")


class _ShardBuilder:
    """Collects kept documents and rejections of one shard, in input order."""

    def __init__(self, source: str, keep_text: bool):
        self.source = source
        self.keep_text = keep_text
        self.docs: dict[str, list[Any]] = {name: [] for name in BASE_DOCUMENT_SCHEMA.names}
        self.rejected: list[dict[str, Any]] = []
        self.input_rows = 0
        self.counters: dict[str, int] = {}

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def keep(self, *, id: str, url: str, dump: str, crawl_date: datetime | None, text: str, offset: int | str) -> None:
        self.input_rows += 1
        self.docs["id"].append(id)
        self.docs["url"].append(url)
        self.docs["host"].append(host_of(url))
        self.docs["dump"].append(dump)
        self.docs["crawl_date"].append(crawl_date)
        self.docs["text"].append(text)
        self.docs["source"].append(f"{self.source}@{offset}")

    def reject(self, *, id: str, url: str, reason: str, text: str | None = None) -> None:
        self.input_rows += 1
        self.rejected.append({"id": id, "url": url, "reason": f"ingest:{reason}", "text": text if self.keep_text else None})

    def output(self) -> ShardOutput:
        kept = pa.table(self.docs, schema=BASE_DOCUMENT_SCHEMA)
        rejected = rejected_table(self.rejected, with_text=self.keep_text)
        return ShardOutput(kept=kept, rejected=rejected, input_rows=self.input_rows, counters=self.counters)


class _Borrowed:
    """A stream handed to a reader that closes it (`with opener() as stream`) while the caller
    still needs its position (`tell`) for the unread-bytes count: closing it is left to the caller."""

    def __init__(self, stream: Any):
        self._stream = stream

    def __enter__(self) -> Any:
        return self._stream

    def __exit__(self, *exc: Any) -> None:
        return None


class IngestStage(ShardMapStage):
    """Crawl files → documents with id, url, host, dump, crawl_date, text."""

    name: ClassVar[str] = "ingest"
    Config = IngestConfig
    help = "read WARC / WET / JSONL / Parquet crawl files into document shards"
    reads_raw_files = True
    config: IngestConfig

    @classmethod
    def add_cli_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--extractor", choices=["resiliparse", "trafilatura"], default=None,
                            help=f"HTML main-text extractor (default {DEFAULT_EXTRACTOR})")
        parser.add_argument("--dump", default=None, help="dump name when the input does not say it")
        parser.add_argument("--paths-limit", type=int, default=None,
                            help="take only the first N entries of each CommonCrawl *.paths.gz listing")

    @classmethod
    def cli_overrides(cls, args: argparse.Namespace) -> dict[str, Any]:
        out = {}
        for key in ("extractor", "dump", "paths_limit"):
            if getattr(args, key, None) is not None:
                out[key] = getattr(args, key)
        return out

    def plan(self, inputs: Sequence[str]) -> list[ShardTask]:
        """One task per input file, keyed by `file_fingerprint` (path, size, mtime_ns; for URLs
        size and ETag). A missing or unreadable file is an error naming it, raised here on the
        driver before any worker starts."""
        files = expand_inputs(inputs, base_url=self.config.paths_base_url, paths_limit=self.config.paths_limit,
                              allow_absolute=self.config.paths_allow_absolute)
        for f in files:
            file_kind(f)  # fail fast, before any worker starts, on a file we cannot read
        if any(is_url(f) for f in files) and len(files) > 1:
            with ThreadPoolExecutor(max_workers=min(64, len(files))) as pool:  # one HEAD request per remote file
                fingerprints = list(pool.map(lambda f: file_fingerprint([f]), files))
        else:
            fingerprints = [file_fingerprint([f]) for f in files]
        return [ShardTask(index=i, name=shard_name(i), inputs=(f,), fingerprint=fp)
                for i, (f, fp) in enumerate(zip(files, fingerprints))]

    def process_shard(self, task: ShardTask) -> ShardOutput:
        """Read one file. A transient remote read error restarts the file (a few attempts with
        backoff); a file that cannot be opened raises `InputUnreadable`, naming it."""
        path = task.inputs[0]
        return with_retries(lambda: self._read_file(path), path)

    def _read_file(self, path: str) -> ShardOutput:
        out = _ShardBuilder(source=path.rsplit("/", 1)[-1], keep_text=self.config.keep_rejected_text)
        kind = file_kind(path)
        raw = open_raw(path)  # InputUnreadable (an error, not a rejection) when it cannot be opened
        try:
            if kind == "warc":
                self._read_warc(path, raw, out)
            elif kind == "jsonl":
                self._read_jsonl(path, raw, out)
            else:
                self._read_parquet(path, raw, out)
        except (OSError, EOFError, zlib.error, lzma.LZMAError, pa.ArrowInvalid) as exc:
            if is_transient(exc) or isinstance(exc, InputUnreadable):
                raise
            # The stream broke outside a record boundary (corrupt gzip, a clipped parquet file).
            self._corrupt(out, path, raw, "", "corrupt", path, f"{type(exc).__name__}: {exc}")
        finally:
            raw.close()
        return out.output()

    def _corrupt(self, out: _ShardBuilder, path: str, raw: Any, dump: str, key: str, url: str, message: str,
                 offset: int | None = None, stops: bool = True) -> None:
        """One `corrupt_input` row, and how many bytes of the file were not read (`unread_bytes`):
        the file's size less the furthest point the break can be at (the reader's offset of the
        broken record, or the raw stream's position, whichever is smaller: read-ahead buffers
        and gzip offsets only overstate it), so the count is a lower bound."""
        out.count("corrupt_files")
        size = file_size(path)
        try:
            pos = raw.tell() if not raw.closed else None
        except (OSError, ValueError):
            pos = None
        if offset is not None:
            pos = offset if pos is None else min(pos, offset)
        if stops and size is not None and pos is not None:
            out.count("unread_bytes", max(0, size - pos))
        out.reject(id=document_id(dump, path, key), url=url, reason="corrupt_input", text=message)

    # --- WARC / WET -------------------------------------------------------------------------
    def _read_warc(self, path: str, raw: Any, out: _ShardBuilder) -> None:
        dump = self.config.dump or dump_from(path)
        opened = [raw]

        def opener() -> Any:  # the first pass reads `raw`; a lenient re-read opens the file again
            if len(opened) == 1 and opened[0].tell() == 0:
                opened.append(opened[0])
            else:
                opened.append(open_raw(path))
            return _Borrowed(opened[-1])

        try:
            for item in warc_records(opener, max_body_bytes=self.config.max_body_bytes):
                if isinstance(item, StreamError):
                    self._corrupt(out, path, opened[-1], dump or "", f"offset:{item.offset}", f"{path}@{item.offset}",
                                  item.message, offset=item.offset, stops=item.stops)
                    continue
                if item.record_type == "warcinfo":
                    dump = dump or dump_from(item.body[:4096].decode("utf-8", "replace"))
                self._warc_record(item, dump or "", out)
        finally:
            for f in opened[1:]:
                if f is not raw:
                    f.close()

    def _warc_record(self, r: RawRecord, dump: str, out: _ShardBuilder) -> None:
        h = r.headers
        url = h.get("warc-target-uri", "").strip("<>")
        digest = h.get("warc-payload-digest") or h.get("warc-block-digest") or h.get("warc-record-id", "") or str(r.offset)
        rid = document_id(dump, url or h.get("warc-record-id", ""), digest)
        rtype = r.record_type
        out.count(f"records_{rtype}")
        if rtype not in ("response", "conversion", "resource"):
            out.reject(id=rid, url=url, reason="revisit" if rtype == "revisit" else f"record_type_{rtype}")
            return
        if r.problem == "too_large":  # body over max_body_bytes, read no further (or a gzip bomb)
            out.reject(id=rid, url=url, reason="too_large")
            return
        if r.problem == "truncated" or r.problem == "bad_chunked_encoding":
            out.reject(id=rid, url=url, reason="truncated_record" if r.problem == "truncated" else "bad_chunked_encoding")
            return
        if r.problem == "length_mismatch":
            out.count("length_mismatch")
            if self.config.on_length_mismatch == "reject":
                out.reject(id=rid, url=url, reason="length_mismatch")
                return
        if len(r.body) > self.config.max_body_bytes:
            out.reject(id=rid, url=url, reason="too_large")
            return
        date = parse_date(h.get("warc-date"))
        if rtype == "conversion":
            text = r.body.decode("utf-8", "replace")
        else:
            if r.http_status is not None and not 200 <= r.http_status < 300:
                out.reject(id=rid, url=url, reason=f"http_{r.http_status // 100}xx")
                return
            # The HTTP Content-Type, else the crawler's identified type; none (quirky or missing
            # HTTP headers) → judge by the body itself.
            ctype = (r.http_content_type or h.get("warc-identified-payload-type") or "").lower()
            if rtype == "resource":
                ctype = ctype or h.get("content-type", "").lower()
            ctype = ctype.split(";", 1)[0].strip()
            if ctype and not ctype.startswith(_HTML_TYPES):
                out.reject(id=rid, url=url, reason="non_html")
                return
            if is_probably_binary(r.body):
                out.reject(id=rid, url=url, reason="binary_body")
                return
            text = extract_main_text(decode_html(r.body, r.http_charset), self.config.extractor)
        self._keep_text(out, rid=rid, url=url, dump=dump, date=date, text=text, offset=r.offset)

    def _keep_text(self, out: _ShardBuilder, *, rid: str, url: str, dump: str, date: datetime | None,
                   text: str, offset: int | str) -> None:
        text = text.strip()
        if not text:
            out.reject(id=rid, url=url, reason="empty_text")
            return
        if "\x00" in text or "\ufffd" in text:
            text = text.replace("\x00", "")
            if text.count("\ufffd") > self.config.max_replacement_ratio * len(text):
                out.reject(id=rid, url=url, reason="undecodable", text=text)
                return
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:  # lone surrogates from JSON escapes
            text = text.encode("utf-8", "replace").decode("utf-8")
            size = len(text.encode("utf-8"))
        if size > self.config.max_body_bytes:
            out.reject(id=rid, url=url, reason="too_large")
            return
        out.keep(id=rid, url=url, dump=dump, crawl_date=date, text=text, offset=offset)

    # --- already-extracted text --------------------------------------------------------------
    def _json_document(self, obj: dict[str, Any], path: str, line_no: int, out: _ShardBuilder) -> None:
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        url = str(obj.get("url") or meta.get("warc_url") or meta.get("url") or "")
        if not url and isinstance(obj.get("id"), str) and "://" in obj["id"]:
            url = obj["id"]
        dump = self.config.dump or dump_from(str(obj.get("dump") or ""), str(meta.get("cc_segment") or ""), path) or ""
        text = obj.get("text", obj.get("content", obj.get("raw_content")))
        digest = str(meta.get("digest") or obj.get("digest") or obj.get("id") or "")
        if not digest:
            digest = hashlib.sha1(str(text).encode("utf-8", "replace")).hexdigest()
        rid = document_id(dump, url, digest)
        if not isinstance(text, str):
            out.reject(id=rid, url=url, reason="no_text_field")
            return
        date = parse_date(obj.get("crawl_date") or meta.get("warc_date") or meta.get("date_download")
                          or obj.get("date") or obj.get("created"))
        self._keep_text(out, rid=rid, url=url, dump=dump, date=date, text=text, offset=f"line{line_no}")

    def _read_jsonl(self, path: str, raw: Any, out: _ShardBuilder) -> None:
        compression = fsspec.utils.infer_compression(path)
        f = raw if compression is None else fsspec.compression.compr[compression](raw, mode="rb")
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, UnicodeDecodeError) as exc:
                out.reject(id=document_id("", path, f"line{line_no}"), url=f"{path}@line{line_no}",
                           reason="bad_json", text=str(exc))
                continue
            if not isinstance(obj, dict):
                out.reject(id=document_id("", path, f"line{line_no}"), url=f"{path}@line{line_no}", reason="bad_json")
                continue
            self._json_document(obj, path, line_no, out)

    def _read_parquet(self, path: str, raw: Any, out: _ShardBuilder) -> None:
        pf = pq.ParquetFile(raw)
        row = 0
        for batch in pf.iter_batches(batch_size=4096):
            for obj in batch.to_pylist():
                row += 1
                self._json_document(obj, path, row, out)
