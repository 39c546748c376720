"""Building small WARC files for bad-input tests, with warcio (an independent WARC writer)."""

from __future__ import annotations

import io
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter


def write_warc(path: Path, responses: list[tuple[str, bytes, str]], gzip: bool = True) -> Path:
    """Write HTTP responses [(url, body, content_type)] as WARC response records."""
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=gzip)
        info = writer.create_warcinfo_record(path.name, {"isPartOf": "CC-MAIN-2099-01", "software": "winnow-tests"})
        writer.write_record(info)
        for url, body, ctype in responses:
            http = StatusAndHeaders("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
            rec = writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http)
            writer.write_record(rec)
    return path
