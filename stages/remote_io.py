"""Opening input files, local or remote, with the three failures told apart.

- A file that does not exist or cannot be opened is `InputUnreadable`, an error naming it: the
  run stops (before work starts where the planner can see it), it is never a data rejection.
- A transient failure of a remote read (connection reset, timeout, HTTP 5xx through fsspec /
  aiohttp) is retried a few times with backoff (`with_retries`), never recorded as corrupt data.
- A stream that opens but breaks part-way (corrupt gzip, garbage) is the caller's business: a
  counted `corrupt_input` row, with the bytes of the file that were not read.

`raw_file_identity` is the input half of a raw-file task's identity: path, size and mtime (ns)
for a local file; for an fsspec URL what `fs.info` reports (size and ETag, else its modification
time), so a changed object is redone even when its name stays the same.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, TypeVar

import fsspec

T = TypeVar("T")

#: Attempts of a remote read before its error is raised (the first try included).
READ_ATTEMPTS = 4
#: Seconds before the first retry; doubled each time.
BACKOFF_S = 0.5


class InputUnreadable(FileNotFoundError):
    """An input file that does not exist or cannot be opened (or a remote file that kept failing)."""


def is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def local_path(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def is_transient(exc: BaseException) -> bool:
    """True for errors a retry may cure: network resets and timeouts, HTTP 5xx/429 from fsspec.
    A missing file, a permission error or corrupt bytes are not transient."""
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    try:
        from fsspec.exceptions import FSTimeoutError

        if isinstance(exc, FSTimeoutError):
            return True
    except ImportError:  # pragma: no cover - old fsspec
        pass
    try:
        import aiohttp

        if isinstance(exc, aiohttp.ClientResponseError):
            return exc.status >= 500 or exc.status == 429
        if isinstance(exc, aiohttp.ClientError):
            return True
    except ImportError:
        pass
    return False


def with_retries(fn: Callable[[], T], what: str, attempts: int = READ_ATTEMPTS, backoff_s: float = BACKOFF_S) -> T:
    """`fn()`, retried on transient errors (`is_transient`) with exponential backoff; after the
    last attempt the error is raised as `InputUnreadable` naming `what`."""
    delay = backoff_s
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified below
            if not is_transient(exc):
                raise
            if attempt == attempts:
                raise InputUnreadable(f"{what}: still failing after {attempts} attempts: "
                                      f"{type(exc).__name__}: {exc}") from exc
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def open_raw(path: str) -> Any:
    """Open `path` (local or fsspec URL) for binary reading, undecompressed. A file that is not
    there or cannot be opened raises `InputUnreadable` naming it; transient errors are retried."""

    def _open() -> Any:
        if is_url(path):
            return fsspec.open(path, "rb").open()
        return open(local_path(path), "rb")

    try:
        return with_retries(_open, path)
    except InputUnreadable:
        raise
    except OSError as exc:
        raise InputUnreadable(f"{path}: cannot be opened ({type(exc).__name__}: {exc})") from exc


def file_size(path: str) -> int | None:
    """Size in bytes of an input file, None when the filesystem does not say."""
    try:
        if is_url(path):
            fs, p = fsspec.core.url_to_fs(path)
            return with_retries(lambda: fs.info(p), path).get("size")
        return os.path.getsize(local_path(path))
    except Exception:  # noqa: BLE001 - only used for reporting unread bytes
        return None


def raw_file_identity(path: str) -> str:
    """What a raw input file's task identity is made of (see the module docstring). A file that
    does not exist raises `InputUnreadable` naming it, so the planner fails before work starts."""
    if is_url(path):
        fs, p = fsspec.core.url_to_fs(path)
        try:
            info = with_retries(lambda: fs.info(p), path)
        except (FileNotFoundError, PermissionError) as exc:
            raise InputUnreadable(f"{path}: no such file or not readable ({type(exc).__name__}: {exc})") from exc
        tag = next((str(info[k]) for k in ("ETag", "etag", "e_tag", "md5_hash", "crc32c", "generation")
                    if info.get(k)), "")
        if not tag:
            tag = next((str(info[k]) for k in ("mtime", "LastModified", "last_modified", "updated", "Last-Modified")
                        if info.get(k)), "")
        return f"{path}:{info.get('size')}:{tag}"
    p = os.path.abspath(local_path(path))
    try:
        st = os.stat(p)
    except OSError as exc:
        raise InputUnreadable(f"{path}: no such file or not readable ({exc.strerror})") from exc
    if not os.access(p, os.R_OK):
        raise InputUnreadable(f"{path}: not readable (permission denied)")
    return f"{p}:{st.st_size}:{st.st_mtime_ns}"
