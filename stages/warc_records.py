"""Reading WARC and WET files record by record, with every anomaly reported rather than hidden.

FastWARC does the parsing. It is strict and silent in two ways this module guards against:
a record cut short (the body ends before its Content-Length: truncated download or clipped file)
is flagged `truncated`, and a file FastWARC cannot parse at all (LF-only line endings, hand-edited
lengths, as in CCNet's test WET) is re-read by `resync_records`, which splits on `WARC/1.x`
version lines the way CCNet's own WET reader does and flags each record whose declared length is
wrong; it streams (memory is bounded by one record, capped at `max_body_bytes`). A stream that
breaks (corrupt gzip) ends the file with a `StreamError` naming the offset. Bodies are bounded
too: a record larger than `max_body_bytes`, or a gzip/deflate HTTP body that inflates beyond it
(a decompression bomb), is read no further and flagged `too_large`. A transient read error of a
remote file is raised (the caller retries the file), never turned into a `StreamError`.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator

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
    problem: str | None = None      # "truncated" | "length_mismatch" | "bad_chunked_encoding" | "too_large" | None


@dataclass
class StreamError:
    """The input stream broke at `offset`: nothing after it can be read (`stops`), or, with
    `stops=False`, bytes at `offset` were skipped and reading goes on."""

    offset: int
    message: str
    stops: bool = True


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


class BodyTooLarge(ValueError):
    """A Content-Encoded body inflates beyond the size cap (a decompression bomb or a huge page)."""


def _inflate(body: bytes, wbits: int, max_bytes: int | None) -> bytes:
    """Inflate every member of `body` (gzip files may hold several), never producing more than
    `max_bytes` (+1) bytes: the output is bounded whatever the input claims."""
    out = bytearray()
    data = body
    while data:
        d = zlib.decompressobj(wbits)
        room = -1 if max_bytes is None else max_bytes + 1 - len(out)
        out += d.decompress(data, room) if room != -1 else d.decompress(data)
        if max_bytes is not None and len(out) > max_bytes:
            raise BodyTooLarge(f"inflates beyond {max_bytes} bytes")
        while d.unconsumed_tail and (max_bytes is None or len(out) <= max_bytes):
            room = -1 if max_bytes is None else max_bytes + 1 - len(out)
            out += d.decompress(d.unconsumed_tail, room) if room != -1 else d.decompress(d.unconsumed_tail)
            if max_bytes is not None and len(out) > max_bytes:
                raise BodyTooLarge(f"inflates beyond {max_bytes} bytes")
        if not d.eof:
            raise zlib.error("incomplete compressed stream")
        data = d.unused_data if wbits > zlib.MAX_WBITS else b""  # gzip: the next member
        if data and not data.startswith(b"\x1f\x8b"):
            break  # trailing garbage after the last gzip member: ignore it, as gzip(1) does
    return bytes(out)


def decode_content_encoding(body: bytes, encoding: str | None, max_bytes: int | None = None) -> bytes:
    """Undo gzip/deflate Content-Encoding when a crawler stored the payload encoded. The output
    is capped at `max_bytes`: beyond it `BodyTooLarge` is raised (a bomb is `too_large`, not an
    OOM). A body that is not validly encoded is returned as it is."""
    enc = (encoding or "").strip().lower()
    if enc in ("gzip", "x-gzip"):
        try:
            return _inflate(body, 16 + zlib.MAX_WBITS, max_bytes)
        except (EOFError, zlib.error):
            return body
    if enc == "deflate":
        for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
            try:
                return _inflate(body, wbits, max_bytes)
            except zlib.error:
                continue
    return body


def _lower_keys(items) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in items:
        out.setdefault(k.lower() if isinstance(k, str) else k.decode("latin-1").lower(),
                       v if isinstance(v, str) else v.decode("latin-1"))
    return out


def _is_transient(exc: BaseException) -> bool:
    from winnow.stages.remote_io import is_transient

    return is_transient(exc)


def fastwarc_records(stream: BinaryIO, max_body_bytes: int | None = None) -> Iterator[RawRecord | StreamError]:
    """Records as FastWARC parses them. Yields a RawRecord with record_type "unknown" when the
    stream is not parseable as WARC at that point (the caller then falls back to resync). At
    most `max_body_bytes` (+1) of a body are read; a larger one is flagged `too_large`."""
    it = ArchiveIterator(stream, record_types=WarcRecordType.any_type, parse_http=True)
    last_offset = 0
    try:
        for rec in it:
            last_offset = rec.stream_pos
            rtype = str(rec.record_type)
            if rtype not in _RECORD_TYPES:
                rtype = "unknown"
            headers = _lower_keys(rec.headers.items())
            body = rec.reader.read() if max_body_bytes is None else rec.reader.read(max_body_bytes + 1)
            r = RawRecord(offset=rec.stream_pos, record_type=rtype, headers=headers, body=body,
                          declared_length=rec.content_length)
            if rtype == "unknown":
                yield r
                return
            if max_body_bytes is not None and len(body) > max_body_bytes:
                r.problem = "too_large"
                r.body = b""
            elif len(body) < rec.content_length:
                r.problem = "truncated"
            if rec.is_http and rec.http_headers is not None:
                r.http_status = rec.http_headers.status_code
                r.http_headers = _lower_keys(rec.http_headers.items())
                r.http_charset = rec.http_charset or None
                r.http_content_type = rec.http_content_type or None
                if r.problem != "too_large":
                    if "chunked" in r.http_headers.get("transfer-encoding", "").lower():
                        plain = dechunk(r.body)
                        if plain is None:
                            r.problem = r.problem or "bad_chunked_encoding"
                        else:
                            r.body = plain
                    try:
                        r.body = decode_content_encoding(r.body, r.http_headers.get("content-encoding"), max_body_bytes)
                    except BodyTooLarge:
                        r.problem, r.body = "too_large", b""
            yield r
    except Exception as exc:  # FastWARC raises on broken gzip members and the like
        if _is_transient(exc):
            raise  # a network hiccup, not corrupt data: the caller retries the file
        yield StreamError(offset=last_offset, message=f"{type(exc).__name__}: {exc}")


_VERSION_LINE = re.compile(rb"^WARC/1\.[01]\r?\n$")
#: Longest piece `resync_records` reads at once: a file without line breaks never becomes one line.
_MAX_LINE = 1 << 20


class _Prefixed(io.RawIOBase):
    """`head` followed by the rest of `stream`: lets the gzip sniff put its two bytes back."""

    def __init__(self, head: bytes, stream: BinaryIO):
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(b))
        b[:len(data)] = data
        return len(data)


def _finish_record(offset: int, header_lines: list[bytes], body_parts: list[bytes], too_large: bool) -> RawRecord:
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.decode("utf-8", "replace").partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    body = b"".join(body_parts)
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
    r = RawRecord(offset=offset, record_type=rtype, headers=headers, body=b"" if too_large else body,
                  declared_length=declared)
    if too_large:
        r.problem = "too_large"
    elif declared is not None and declared != len(body) and declared != len(body) + 1:
        r.problem = "length_mismatch"
    return r


def resync_records(stream: BinaryIO, max_body_bytes: int | None = None) -> Iterator[RawRecord | StreamError]:
    """A lenient WARC/WET reader: records start at `WARC/1.x` lines; a body runs to the next one.

    For files that FastWARC rejects. Each record whose body differs from its declared
    Content-Length is flagged `length_mismatch` (its text is still the record's own lines).
    Streams: it holds one record at a time, and a body past `max_body_bytes` is not kept (the
    record is flagged `too_large`), so memory stays bounded on any input.
    """
    head = stream.read(2)
    f: Any = io.BufferedReader(_Prefixed(head, stream), buffer_size=1 << 16)
    if head == b"\x1f\x8b":
        f = gzip.GzipFile(fileobj=f, mode="rb")
    pos = 0
    at_line_start = True
    offset: int | None = None       # byte offset of the current record (None: before the first)
    header_lines: list[bytes] = []
    body_parts: list[bytes] = []
    body_size = 0
    in_headers = False
    too_large = False
    while True:
        try:
            line = f.readline(_MAX_LINE)
        except Exception as exc:  # noqa: BLE001 - a broken gzip stream and the like
            if _is_transient(exc):
                raise
            yield StreamError(offset=pos, message=f"corrupt stream: {type(exc).__name__}: {exc}")
            return
        if not line:
            break
        starts_record = at_line_start and _VERSION_LINE.match(line) is not None
        at_line_start = line.endswith(b"\n")
        if starts_record:
            if offset is not None:
                yield _finish_record(offset, header_lines, body_parts, too_large)
            elif pos != 0:
                yield StreamError(offset=0, message=f"{pos} bytes before the first WARC record", stops=False)
            offset, header_lines, body_parts, body_size, in_headers, too_large = pos, [], [], 0, True, False
        elif offset is not None:
            if in_headers:
                if line.strip():
                    header_lines.append(line)
                else:
                    in_headers = False
            elif not too_large:
                body_size += len(line)
                if max_body_bytes is not None and body_size > max_body_bytes + 4:
                    too_large, body_parts = True, []
                else:
                    body_parts.append(line)
        pos += len(line)
    if offset is None:
        yield StreamError(offset=0, message="no WARC/1.x record header found")
        return
    yield _finish_record(offset, header_lines, body_parts, too_large)


def warc_records(opener, max_body_bytes: int | None = None) -> Iterator[RawRecord | StreamError]:
    """All records of one WARC/WET file, streamed. `opener()` returns a fresh binary stream of
    the file. If FastWARC cannot parse even the first record, the file is re-read leniently
    (`resync_records`); if it fails later, the rest of the file is a StreamError at that offset."""
    yielded = 0
    with opener() as stream:
        for item in fastwarc_records(stream, max_body_bytes):
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
        yield from resync_records(stream, max_body_bytes)
