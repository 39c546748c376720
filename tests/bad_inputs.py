"""A corpus of broken crawl input, written into a temporary directory at test time (issue 14,
item 4). Nothing here is committed crawl data: every file is built from a few paragraphs of real
text read from `../shared/data` and then broken on purpose, the way CommonCrawl files break.

`write_bad_corpus(shared_data, out_dir)` writes one file per kind and returns a list of
`BadItem`s: the kind, the file, the URLs of the records it holds (or None for a file-level
break, whose rejection row is named after the file) and what ingest must do with them:
`reasons` = the `ingest:<reason>` values allowed for its rejected rows; `kept` = URLs that must
be kept (a broken file may still hold good records before or after the break).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


@dataclass
class BadItem:
    kind: str
    path: Path
    reasons: set[str]                    # allowed ingest reasons for this file's rejected rows
    rejected_urls: set[str] = field(default_factory=set)   # URLs that must be rejected (record-level kinds)
    kept_urls: set[str] = field(default_factory=set)       # URLs that must be kept
    file_level: bool = False             # a break outside a record: one row named after the file


def real_paragraphs(shared_data: Path, n: int = 40) -> list[str]:
    """Paragraphs of real English text (CCNet head documents, then WikiText-2)."""
    paras: list[str] = []
    for p in sorted((shared_data / "dolma").glob("cc_en_head-*.jsonl")):
        for line in p.read_text(encoding="utf-8").splitlines():
            if line.strip():
                text = json.loads(line)["raw_content"] if "raw_content" in json.loads(line) else json.loads(line)["text"]
                paras.extend(t for t in text.split("\n") if len(t) > 200)
    return paras[:n]


def _html(title: str, paras: list[str], charset: str | None = "utf-8") -> str:
    meta = f'<meta charset="{charset}">' if charset else ""
    body = "".join(f"<p>{p}</p>\n" for p in paras)
    return f"<!DOCTYPE html><html><head>{meta}<title>{title}</title></head><body><article><h1>{title}</h1>\n{body}</article></body></html>"


def http_response(payload: bytes, content_type: str | None = "text/html", extra: str = "", status: str = "200 OK") -> bytes:
    head = f"HTTP/1.1 {status}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    head += extra
    head += f"Content-Length: {len(payload)}\r\n\r\n"
    return head.encode("ascii") + payload


def warc_record(url: str, block: bytes, *, rtype: str = "response", content_length: int | None = None,
                rid: int = 0, content_type: str = "application/http; msgtype=response") -> bytes:
    n = len(block) if content_length is None else content_length
    head = (f"WARC/1.0\r\nWARC-Type: {rtype}\r\nWARC-Target-URI: {url}\r\n"
            f"WARC-Date: 2024-05-20T10:00:{rid % 60:02d}Z\r\n"
            f"WARC-Record-ID: <urn:uuid:00000000-0000-4000-8000-{rid:012d}>\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {n}\r\n\r\n")
    return head.encode("ascii") + block + b"\r\n\r\n"


def _gz_members(records: list[bytes]) -> bytes:
    return b"".join(gzip.compress(r, mtime=0) for r in records)


def write_bad_corpus(shared_data: Path, out_dir: Path) -> list[BadItem]:
    """Write every kind of bad input into `out_dir`; return what each must become."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paras = real_paragraphs(shared_data)
    assert len(paras) >= 20, "not enough real text in ../shared/data/dolma/cc_en_head-*.jsonl"
    rng = random.Random(14)
    items: list[BadItem] = []

    def good_page(kind: str, i: int) -> tuple[str, bytes]:
        url = f"http://bad.example/{kind}/{i}"
        html = _html(f"{kind} page {i}", paras[(i * 3) % len(paras):(i * 3) % len(paras) + 3])
        return url, warc_record(url, http_response(html.encode("utf-8"), "text/html; charset=utf-8"), rid=i)

    # 1. truncated gzip: a WARC.gz of five good pages cut inside its fourth member
    recs = [good_page("truncated_gzip", i) for i in range(5)]
    members = [gzip.compress(r, mtime=0) for _, r in recs]
    cut = sum(len(m) for m in members[:3]) + len(members[3]) // 2
    p = out_dir / "truncated-gzip.warc.gz"
    p.write_bytes(b"".join(members)[:cut])
    items.append(BadItem("truncated_gzip", p, {"corrupt_input", "truncated_record"},
                         kept_urls={u for u, _ in recs[:3]}, file_level=True))

    # 2. clipped record: the last record's body ends before its Content-Length (uncompressed WARC)
    recs = [good_page("clipped_record", i) for i in range(3)]
    last = recs[-1][1]
    p = out_dir / "clipped-record.warc"
    p.write_bytes(recs[0][1] + recs[1][1] + last[: len(last) * 2 // 3])
    items.append(BadItem("clipped_record", p, {"truncated_record", "corrupt_input"},
                         kept_urls={recs[0][0], recs[1][0]}))

    # 3. wrong Content-Length: one record says 40 bytes more than it has, one 40 bytes fewer
    u0, r0 = good_page("wrong_content_length", 0)
    u1, _ = good_page("wrong_content_length", 1)
    u2, _ = good_page("wrong_content_length", 2)
    u3, r3 = good_page("wrong_content_length", 3)
    b1 = http_response(_html("long", paras[5:7]).encode(), "text/html")
    b2 = http_response(_html("short", paras[7:9]).encode(), "text/html")
    p = out_dir / "wrong-content-length.warc"
    p.write_bytes(r0 + warc_record(u1, b1, content_length=len(b1) + 40, rid=1)
                  + warc_record(u2, b2, content_length=len(b2) - 40, rid=2) + r3)
    items.append(BadItem("wrong_content_length", p, {"length_mismatch", "corrupt_input", "truncated_record"},
                         file_level=True))

    # 4. GBK without any charset (no HTTP charset, no meta): must be decoded, not mojibake
    zh = "中华人民共和国是工人阶级领导的、以工农联盟为基础的人民民主专政的社会主义国家。" * 6
    html = f"<html><head><title>新闻</title></head><body><article><h1>新闻报道</h1><p>{zh}</p><p>{zh}</p></article></body></html>"
    u = "http://bad.example/gbk_no_charset/0"
    p = out_dir / "gbk-no-charset.warc.gz"
    p.write_bytes(_gz_members([warc_record(u, http_response(html.encode("gbk"), "text/html"), rid=4)]))
    items.append(BadItem("gbk_no_charset", p, set(), kept_urls={u}))

    # 5. binary body declared as HTML (a PNG header and random bytes)
    u = "http://bad.example/binary_as_html/0"
    body = b"\x89PNG\r\n\x1a\n" + bytes(rng.getrandbits(8) for _ in range(20000))
    p = out_dir / "binary-as-html.warc.gz"
    p.write_bytes(_gz_members([warc_record(u, http_response(body, "text/html"), rid=5)]))
    items.append(BadItem("binary_as_html", p, {"binary_body", "undecodable", "empty_text"}, rejected_urls={u}))

    # 6. a 10 MB page
    u = "http://bad.example/page_10mb/0"
    big = _html("big", [paras[i % len(paras)] for i in range(10_500_000 // 400)]).encode()
    big = big + b" " * max(0, 10 * 2**20 - len(big))
    p = out_dir / "page-10mb.warc.gz"
    p.write_bytes(_gz_members([warc_record(u, http_response(big, "text/html"), rid=6)]))
    items.append(BadItem("page_10mb", p, {"too_large"}, rejected_urls={u}))

    # 7. gzip bomb: a Content-Encoding: gzip body of ~100 KB inflating to 128 MB
    u = "http://bad.example/gzip_bomb/0"
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b" " * (1 << 20)
    bomb = b"".join(co.compress(chunk) for _ in range(128)) + co.flush()
    p = out_dir / "gzip-bomb.warc.gz"
    p.write_bytes(_gz_members([warc_record(u, http_response(bomb, "text/html", extra="Content-Encoding: gzip\r\n"), rid=7)]))
    items.append(BadItem("gzip_bomb", p, {"too_large"}, rejected_urls={u}))

    # 8. zero-length record: a response record with Content-Length 0
    u = "http://bad.example/zero_length/0"
    p = out_dir / "zero-length.warc.gz"
    p.write_bytes(_gz_members([warc_record(u, b"", rid=8)]))
    items.append(BadItem("zero_length", p, {"empty_text", "truncated_record", "corrupt_input", "non_html"},
                         rejected_urls={u}))

    # 9. invalid WARC header: garbage header lines and a non-numeric length, then a good record
    u_ok, r_ok = good_page("invalid_warc_header", 1)
    garbage = (b"WARC/1.0\r\nWARC-Type response\r\n:::: not a header ::::\r\nContent-Length: twelve\r\n\r\n"
               b"<html>lost</html>\r\n\r\n")
    p = out_dir / "invalid-warc-header.warc"
    p.write_bytes(garbage + r_ok)
    items.append(BadItem("invalid_warc_header", p, {"corrupt_input", "truncated_record", "length_mismatch", "record_type_unknown"},
                         file_level=True))

    # 10. NUL bytes inside a JSONL document's text (stripped, the document kept)
    u = "http://bad.example/nul_bytes/0"
    p = out_dir / "nul-bytes.jsonl"
    p.write_text(json.dumps({"url": u, "text": "\x00".join(paras[10:13]) + "\x00\x00"}) + "\n", encoding="utf-8")
    items.append(BadItem("nul_bytes", p, set(), kept_urls={u}))

    # 11. mixed line endings (CRLF, CR, LF) in an HTML page
    u = "http://bad.example/mixed_line_endings/0"
    html = "<html><head><title>mixed</title></head>\r\n<body>\r<article>\n" + "\r\n".join(
        f"<p>{x}</p>" if i % 2 else f"<p>{x}</p>\r" for i, x in enumerate(paras[13:17])) + "</article></body></html>"
    p = out_dir / "mixed-line-endings.warc.gz"
    p.write_bytes(_gz_members([warc_record(u, http_response(html.encode(), "text/html; charset=utf-8"), rid=11)]))
    items.append(BadItem("mixed_line_endings", p, set(), kept_urls={u}))

    # 12. JSONL with a broken line (cut JSON), a non-object line and invalid UTF-8, between good ones
    p = out_dir / "broken-line.jsonl"
    good = [json.dumps({"url": f"http://bad.example/jsonl_broken_line/{i}", "text": "\n".join(paras[17 + 2 * i:19 + 2 * i])})
            for i in range(3)]
    p.write_bytes((good[0] + "\n" + good[1][: len(good[1]) // 2] + "\n[1, 2, 3]\n").encode()
                  + b'{"url": "http://bad.example/latin1", "text": "caf\xe9 au lait"}\n' + (good[2] + "\n").encode())
    items.append(BadItem("jsonl_broken_line", p, {"bad_json"},
                         kept_urls={"http://bad.example/jsonl_broken_line/0", "http://bad.example/jsonl_broken_line/2"},
                         file_level=True))

    # 13. a document of one 4.9 MB line (under max_body_bytes: it must survive every stage)
    u = "http://bad.example/one_line_5mb/0"
    words = " ".join(paras).replace("\n", " ").split()
    line = []
    size = 0
    while size < 4_900_000:
        w = words[rng.randrange(len(words))]
        line.append(w)
        size += len(w) + 1
    p = out_dir / "one-line-5mb.jsonl"
    p.write_text(json.dumps({"url": u, "text": " ".join(line)}) + "\n", encoding="utf-8")
    items.append(BadItem("one_line_5mb", p, set(), kept_urls={u}))

    # 14. a Parquet file with a wrong schema (no text column; an int where text should be)
    p = out_dir / "wrong-schema.parquet"
    pq.write_table(pa.table({"url": [f"http://bad.example/wrong_schema/{i}" for i in range(3)],
                             "body": [1, 2, 3], "content": [1, 2, 3]}), p)
    items.append(BadItem("parquet_wrong_schema", p, {"no_text_field"},
                         rejected_urls={f"http://bad.example/wrong_schema/{i}" for i in range(3)}))

    # 15. a clipped Parquet file (footer cut off)
    p = out_dir / "clipped.parquet"
    buf = io.BytesIO()
    pq.write_table(pa.table({"url": ["http://bad.example/clipped_parquet/0"], "text": [paras[0]]}), buf)
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) - 20])
    items.append(BadItem("clipped_parquet", p, {"corrupt_input"}, file_level=True))

    # 16. random bytes named .warc.gz, and an empty .warc.gz
    p = out_dir / "random-bytes.warc.gz"
    p.write_bytes(bytes(rng.getrandbits(8) for _ in range(4096)))
    items.append(BadItem("random_bytes", p, {"corrupt_input"}, file_level=True))
    p = out_dir / "empty.warc.gz"
    p.write_bytes(b"")
    items.append(BadItem("empty_file", p, set()))  # no records: input 0, nothing to reject

    # 17. HTTP errors and a broken chunked transfer encoding
    u404, u_chunk = "http://bad.example/http_404/0", "http://bad.example/bad_chunked/0"
    chunked = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"zz\r\n<html>not hex</html>\r\n0\r\n\r\n")
    p = out_dir / "http-errors.warc.gz"
    p.write_bytes(_gz_members([warc_record(u404, http_response(b"<html>gone</html>", "text/html", status="404 Not Found"), rid=17),
                               warc_record(u_chunk, chunked, rid=18)]))
    items.append(BadItem("http_error_and_bad_chunked", p, {"http_4xx", "bad_chunked_encoding", "empty_text"},
                         rejected_urls={u404, u_chunk}))

    # 18. a URL that tries to climb out of the output directory (security: never a path)
    u = "file:///../../../../etc/passwd?x=/../../evil"
    p = out_dir / "evil-url.warc.gz"
    p.write_bytes(_gz_members([warc_record(u, http_response(_html("evil", paras[1:4]).encode(), "text/html; charset=utf-8"), rid=19)]))
    items.append(BadItem("path_traversal_url", p, set(), kept_urls={u}))

    os.sync()
    return items
