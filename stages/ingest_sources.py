"""Expanding what a user names as ingest input into a sorted list of files.

Accepts local paths and globs, any fsspec URL (s3://, gs://, https://, …; globs where the
filesystem can list), and CommonCrawl `*.paths` / `*.paths.gz` listings, whose lines are paths
relative to the crawl's base URL (entries that are absolute paths or URLs of their own are refused
unless allowed). The order is deterministic: it becomes the shard numbering.
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


class UnsafeListingEntry(ValueError):
    """A `*.paths.gz` entry that is an absolute path, carries its own scheme or climbs out of the
    base URL with `..`: a listing may only name files under its base URL unless allowed."""


def _unsafe(entry: str) -> str | None:
    if "://" in entry or entry.lower().startswith(("file:", "data:")):
        return "carries its own scheme"
    if entry.startswith(("/", "\\", "~")) or (len(entry) > 1 and entry[1] == ":"):
        return "is an absolute path"
    if ".." in entry.replace("\\", "/").split("/"):
        return "climbs out of the base URL with '..'"
    return None


def read_paths_listing(path: str, base_url: str = COMMONCRAWL_BASE_URL, limit: int | None = None,
                       allow_absolute: bool = False) -> list[str]:
    """Entries of a CommonCrawl `*.paths.gz` listing, joined to `base_url`.

    An entry that is an absolute path, has its own scheme (`s3://`, `file:`) or contains `..`
    raises `UnsafeListingEntry` naming the listing and line, unless `allow_absolute` (config
    `ingest.paths_allow_absolute`), in which case absolute entries are taken as they are: a
    listing fetched from the web must not make workers read arbitrary local files or buckets.
    """
    from winnow.stages.remote_io import open_raw, with_retries

    def _read() -> bytes:
        with open_raw(path) as f:
            return f.read()

    raw = with_retries(_read, path)
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    out = []
    for line_no, line in enumerate(io.StringIO(raw.decode("utf-8")), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        problem = _unsafe(line)
        if problem and not allow_absolute:
            raise UnsafeListingEntry(f"{path} line {line_no}: entry {line!r} {problem}; set "
                                     f"`ingest.paths_allow_absolute: true` to allow such entries")
        absolute = "://" in line or line.startswith("/")
        out.append(line if absolute and allow_absolute else base_url.rstrip("/") + "/" + line.lstrip("/"))
        if limit is not None and len(out) >= limit:
            break
    return out


def expand_inputs(inputs: Iterable[str], base_url: str = COMMONCRAWL_BASE_URL, paths_limit: int | None = None,
                  allow_absolute: bool = False) -> list[str]:
    """Every input file named by `inputs`, expanded, de-duplicated, in a stable order.

    Listings are expanded in place (their order kept); globs are sorted. Raises InputNotFound
    naming the first input that matches nothing.
    """
    files: list[str] = []
    for item in inputs:
        item = str(item)
        if is_paths_listing(item):
            files.extend(read_paths_listing(item, base_url=base_url, limit=paths_limit, allow_absolute=allow_absolute))
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
