"""Reading WARC and WET files record by record, with every anomaly reported rather than hidden.

FastWARC does the parsing. It is strict and silent in two ways this module guards against:
a record cut short (the body ends before its Content-Length: truncated download or clipped file)
is flagged `truncated`, and a file FastWARC cannot parse at all (LF-only line endings, hand-edited
lengths, as in CCNet's test WET) is re-read by `resync_records`, which splits on `WARC/1.x`
version lines the way CCNet's own WET reader does and flags each record whose declared length is
wrong. A stream that breaks (corrupt gzip) ends the file with a `StreamError` naming the offset.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

from fastwarc.warc import ArchiveIterator, WarcRecordType

_RECORD_TYPES = {"warcinfo", "response", "resource", "request", "metadata", "revisit", "conversion", "continuation"}


@dataclass
class RawRecord:
    """One WARC record: WARC headers, and for HTTP responses the parsed status and headers."""

    offset: int
    record_type: str
    headers: dict[str, str]
    body: bytes
    declared_length: int | None = None
    http_status: int | None = None
    http_headers: dict[str, str] = field(default_factory=dict)
    http_charset: str | None = None
    http_content_type: str | None = None
    problem: str | None = None      # "truncated" | "length_mismatch" | "bad_chunked_encoding" | None


@dataclass
class StreamError:
    """The input stream broke at `offset`: nothing after it can be read."""

    offset: int
    message: str


def dechunk(body: bytes) -> bytes | None:
    """Decode HTTP/1.1 chunked transfer encoding; None when the body is not validly chunked."""
    out = bytearray()
    pos = 0
    n = len(body)
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_field = body[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            return None
        pos = eol + 2
        if size == 0:
            return bytes(out)
        if pos + size > n:
            return None
        out += body[pos:pos + size]
        pos += size + 2


def decode_content_encoding(body: bytes, encoding: str | None) -> bytes:
    """Undo gzip/deflate Content-Encoding when a crawler stored the payload encoded."""
    enc = (encoding or "").strip().lower()
    if enc in ("gzip", "x-gzip"):
        try:
            return gzip.decompress(body)
        except (OSError, EOFError, zlib.error):
            return body
    if enc == "deflate":
        for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
            try:
                return zlib.decompress(body, wbits)
            except zlib.error:
                continue
    return body


def _lower_keys(items) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in items:
        out.setdefault(k.lower() if isinstance(k, str) else k.decode("latin-1").lower(),
                       v if isinstance(v, str) else v.decode("latin-1"))
    return out


def fastwarc_records(stream: BinaryIO) -> Iterator[RawRecord | StreamError]:
    """Records as FastWARC parses them. Yields a RawRecord with record_type "unknown" when the
    stream is not parseable as WARC at that point (the caller then falls back to resync)."""
    it = ArchiveIterator(stream, record_types=WarcRecordType.any_type, parse_http=True)
    last_offset = 0
    try:
        for rec in it:
            last_offset = rec.stream_pos
            rtype = str(rec.record_type)
            if rtype not in _RECORD_TYPES:
                rtype = "unknown"
            headers = _lower_keys(rec.headers.items())
            body = rec.reader.read()
            r = RawRecord(offset=rec.stream_pos, record_type=rtype, headers=headers, body=body,
                          declared_length=rec.content_length)
            if rtype == "unknown":
                yield r
                return
            if len(body) < rec.content_length:
                r.problem = "truncated"
            if rec.is_http and rec.http_headers is not None:
                r.http_status = rec.http_headers.status_code
                r.http_headers = _lower_keys(rec.http_headers.items())
                r.http_charset = rec.http_charset or None
                r.http_content_type = rec.http_content_type or None
                if "chunked" in r.http_headers.get("transfer-encoding", "").lower():
                    plain = dechunk(r.body)
                    if plain is None:
                        r.problem = r.problem or "bad_chunked_encoding"
                    else:
                        r.body = plain
                r.body = decode_content_encoding(r.body, r.http_headers.get("content-encoding"))
            yield r
    except Exception as exc:  # FastWARC raises on broken gzip members and the like
        yield StreamError(offset=last_offset, message=f"{type(exc).__name__}: {exc}")


_VERSION_LINE = re.compile(rb"^WARC/1\.[01]\r?\n$")


def resync_records(stream: BinaryIO) -> Iterator[RawRecord | StreamError]:
    """A lenient WARC/WET reader: records start at `WARC/1.x` lines; a body runs to the next one.

    For files that FastWARC rejects. Each record whose body differs from its declared
    Content-Length is flagged `length_mismatch` (its text is still the record's own lines).
    """
    head = stream.read(2)
    rest = stream.read()
    data = head + rest
    if head == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            yield StreamError(offset=0, message=f"corrupt gzip: {exc}")
            return
    lines = io.BytesIO(data).readlines()
    pos = 0
    starts: list[tuple[int, int]] = []  # (line index, byte offset)
    for i, line in enumerate(lines):
        if _VERSION_LINE.match(line):
            starts.append((i, pos))
        pos += len(line)
    if not starts:
        yield StreamError(offset=0, message="no WARC/1.x record header found")
        return
    if starts[0][1] != 0:
        yield StreamError(offset=0, message=f"{starts[0][1]} bytes before the first WARC record")
    for k, (i, offset) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(lines)
        j = i + 1
        headers: dict[str, str] = {}
        while j < end and lines[j].strip():
            name, _, value = lines[j].decode("utf-8", "replace").partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
            j += 1
        body = b"".join(lines[j + 1:end])
        # the record separator is two CRLFs (or LFs) after the block
        for sep in (b"\r\n\r\n", b"\n\n", b"\r\n", b"\n"):
            if body.endswith(sep):
                body = body[: -len(sep)]
                break
        try:
            declared = int(headers.get("content-length", ""))
        except ValueError:
            declared = None
        rtype = headers.get("warc-type", "unknown").lower()
        r = RawRecord(offset=offset, record_type=rtype, headers=headers, body=body, declared_length=declared)
        if declared is not None and declared != len(body) and declared != len(body) + 1:
            r.problem = "length_mismatch"
        yield r


def warc_records(opener) -> Iterator[RawRecord | StreamError]:
    """All records of one WARC/WET file, streamed. `opener()` returns a fresh binary stream of
    the file. If FastWARC cannot parse even the first record, the file is re-read leniently
    (`resync_records`); if it fails later, the rest of the file is a StreamError at that offset."""
    yielded = 0
    with opener() as stream:
        for item in fastwarc_records(stream):
            if isinstance(item, RawRecord) and item.record_type == "unknown":
                if yielded:
                    yield StreamError(offset=item.offset, message="unparseable WARC record")
                    return
                break
            yielded += 1
            yield item
        else:
            return
    with opener() as stream:
        yield from resync_records(stream)
