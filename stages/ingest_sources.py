"""Expanding what a user names as ingest input into a sorted list of files.

Accepts local paths and globs, any fsspec URL (s3://, gs://, https://, …; globs where the
filesystem can list), and CommonCrawl `*.paths` / `*.paths.gz` listings, whose lines are paths
relative to the crawl's base URL. The order is deterministic: it becomes the shard numbering.
"""

from __future__ import annotations

import glob
import gzip
import io
import os
from typing import Iterable

import fsspec

COMMONCRAWL_BASE_URL = "https://data.commoncrawl.org/"


class InputNotFound(FileNotFoundError):
    """An input path or glob that matched nothing."""


def _is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def is_paths_listing(path: str) -> bool:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name.endswith(".paths") or name.endswith(".paths.gz")


def read_paths_listing(path: str, base_url: str = COMMONCRAWL_BASE_URL, limit: int | None = None) -> list[str]:
    """Entries of a CommonCrawl `*.paths.gz` listing, joined to `base_url` (kept as-is if absolute)."""
    with fsspec.open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    out = []
    for line in io.StringIO(raw.decode("utf-8")):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append(line if "://" in line or line.startswith("/") else base_url.rstrip("/") + "/" + line)
        if limit is not None and len(out) >= limit:
            break
    return out


def expand_inputs(inputs: Iterable[str], base_url: str = COMMONCRAWL_BASE_URL, paths_limit: int | None = None) -> list[str]:
    """Every input file named by `inputs`, expanded, de-duplicated, in a stable order.

    Listings are expanded in place (their order kept); globs are sorted. Raises InputNotFound
    naming the first input that matches nothing.
    """
    files: list[str] = []
    for item in inputs:
        item = str(item)
        if is_paths_listing(item):
            files.extend(read_paths_listing(item, base_url=base_url, limit=paths_limit))
            continue
        if _is_url(item):
            if any(ch in item for ch in "*?["):
                fs, _, _ = fsspec.get_fs_token_paths(item)
                protocol = item.split("://", 1)[0]
                matches = sorted(fs.glob(item))
                if not matches:
                    raise InputNotFound(f"{item}: glob matched nothing")
                files.extend(m if "://" in m else f"{protocol}://{m}" for m in matches)
            else:
                files.append(item)
            continue
        if item.startswith("file://"):
            item = item[len("file://"):]
        if any(ch in item for ch in "*?["):
            matches = sorted(glob.glob(item))
            if not matches:
                raise InputNotFound(f"{item}: glob matched nothing")
            files.extend(matches)
        elif os.path.isdir(item):
            found = sorted(p for p in glob.glob(os.path.join(item, "**", "*"), recursive=True) if os.path.isfile(p))
            if not found:
                raise InputNotFound(f"{item}: directory holds no files")
            files.extend(found)
        elif os.path.exists(item):
            files.append(item)
        else:
            raise InputNotFound(f"{item}: no such file")
    seen: set[str] = set()
    unique = []
    for f in files:
        if f not in seen:
            seen.add(f)
            unique.append(f)
    return unique
