"""Small real inputs for the remix tests: slices of ../shared/data/corpus written as stage-like
parquet shards (id, url, host, text, lang, source), and the crawl documents of the dolma sample."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

CORPUS_FILES = ("wikipedia_en-000", "wikipedia_zh-000", "imdb_reviews-000", "github_code-000",
                "chinese_poetry-000", "libreoffice_help_de-000")


def read_corpus(shared_data: Path, name: str, limit: int, max_chars: int | None = None) -> list[dict]:
    """The first `limit` documents of corpus file `name` with a stable id."""
    out = []
    with gzip.open(shared_data / "corpus" / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
        for n, line in enumerate(f):
            if n >= limit:
                break
            d = json.loads(line)
            text = d["text"] if max_chars is None else d["text"][:max_chars]
            url = d.get("url")
            out.append({"id": hashlib.blake2b(f"{name}:{n}".encode(), digest_size=16).hexdigest(),
                        "url": url, "host": (urlsplit(url).hostname or "") if url else "",
                        "text": text, "lang": d.get("lang") or "und", "source": f"{name}:{n}"})
    return out


def write_shards(docs: list[dict], out_dir: Path, shards: int) -> Path:
    """`docs` split round-robin over `shards` parquet files in out_dir (a hand-made stage dir)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("id", pa.string()), ("url", pa.string()), ("host", pa.string()), ("text", pa.string()),
                        ("lang", pa.string()), ("source", pa.string())])
    for s in range(shards):
        part = docs[s::shards]
        pq.write_table(pa.Table.from_pylist(part, schema=schema), out_dir / f"part-{s:05d}.parquet")
    return out_dir


def corpus_input(shared_data: Path, out_dir: Path, per_file: int = 300, shards: int = 3,
                 files: tuple[str, ...] = CORPUS_FILES, max_chars: int | None = 4000) -> Path:
    docs = [d for name in files for d in read_corpus(shared_data, name, per_file, max_chars)]
    return write_shards(docs, out_dir, shards)


def crawl_documents(shared_data: Path) -> list[dict]:
    """The 697 CC-MAIN-2019-30 documents of the dolma sample (real crawl URLs and texts)."""
    out = []
    path = next((shared_data / "dolma").glob("CC-MAIN-*.jsonl.gz"))
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            url = d["metadata"]["warc_url"]
            out.append({"id": d["id"], "url": url, "host": urlsplit(url).hostname or "", "text": d["text"],
                        "lang": "und", "source": "dolma"})
    return out
