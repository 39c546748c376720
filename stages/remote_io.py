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


def _retry(fn: Callable[[], T], transient: Callable[[BaseException], bool], give_up: Callable[[str], Exception],
           attempts: int, backoff_s: float) -> T:
    """`fn()`, retried while `transient(error)` with exponential backoff; after the last attempt
    `give_up(description of the last error)` is raised from it. Other errors propagate as they are."""
    delay = backoff_s
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified below
            if not transient(exc):
                raise
            if attempt == attempts:
                raise give_up(f"still failing after {attempts} attempts: {type(exc).__name__}: {exc}") from exc
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def with_retries(fn: Callable[[], T], what: str, attempts: int = READ_ATTEMPTS, backoff_s: float = BACKOFF_S) -> T:
    """`fn()`, retried on transient errors (`is_transient`) with exponential backoff; after the
    last attempt the error is raised as `InputUnreadable` naming `what`."""
    return _retry(fn, is_transient, lambda why: InputUnreadable(f"{what}: {why}"), attempts, backoff_s)


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


# --- writing stage outputs to object storage ----------------------------------------------------
#
# A stage directory on object storage (`s3://bucket/prefix/STAGE`, `gs://…`, any fsspec URL) has
# the local layout (data/, rejected/, _progress/, manifest.json), but object stores have no rename:
# a shard's data objects are uploaded first, under their final keys, and its commit record
# (`_progress/NAME.json`) is uploaded last. A data object without its record is not committed (a
# rerun rewrites it), exactly like a local file without its record; the manifest is written once
# every record adds up. Each PUT is atomic (an object appears whole or not at all), and each is
# retried with backoff on transient errors.

#: Attempts of a write (PUT) before its error is raised.
WRITE_ATTEMPTS = 5
#: Attempts of the pre-flight probe: a store that does not answer must fail within seconds.
PROBE_ATTEMPTS = 2


class OutputUnwritable(OSError):
    """The output location cannot be written: no credentials, no such bucket, access denied, or an
    object store that does not answer. Raised before any work is scheduled; names the location."""


def _transient_errno(exc: BaseException) -> bool:
    import errno

    codes = {errno.EBUSY, errno.EAGAIN, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE}
    codes.add(getattr(errno, "EREMOTEIO", -1))
    return isinstance(exc, OSError) and exc.errno in codes


def _botocore_kind(exc: BaseException) -> str | None:
    """'credentials', 'transient' or None for botocore's own exceptions (s3fs lets some through)."""
    try:
        from botocore import exceptions as bx
    except ImportError:
        return None
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return "credentials"
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError,
                        bx.ConnectionClosedError)):
        return "transient"
    return None


def is_transient_write(exc: BaseException) -> bool:
    """`is_transient`, plus what object-store clients raise for a PUT a retry may cure: s3fs's
    translation of HTTP 500/503 (SlowDown) to OSError(EREMOTEIO/EBUSY), botocore's connection
    and timeout errors."""
    return is_transient(exc) or _transient_errno(exc) or _botocore_kind(exc) == "transient"


def write_retrying(fn: Callable[[], T], what: str, attempts: int = WRITE_ATTEMPTS, backoff_s: float = BACKOFF_S) -> T:
    """`fn()` (a PUT), retried with exponential backoff on transient errors; the last error is
    raised as `OutputUnwritable` naming `what`. Other errors are raised as they are."""
    return _retry(fn, is_transient_write, lambda why: OutputUnwritable(f"{what}: write {why}"), attempts, backoff_s)


def url_fs(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it without a trailing slash) of an output URL."""
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path.rstrip("/")


def join(url: str, *parts: str) -> str:
    return "/".join([url.rstrip("/"), *parts])


def put_bytes(url: str, data: bytes) -> None:
    """One object with `data`, written with retries (`write_retrying`)."""
    fs, path = url_fs(url)
    write_retrying(lambda: fs.pipe_file(path, data), url)


def put_file(local: str, url: str) -> None:
    fs, path = url_fs(url)
    write_retrying(lambda: fs.put_file(local, path), url)


def get_bytes(url: str) -> bytes | None:
    """The object's bytes, None when it does not exist; transient errors retried."""
    fs, path = url_fs(url)
    try:
        return with_retries(lambda: fs.cat_file(path), url)
    except FileNotFoundError:
        return None


def list_files(url: str) -> dict[str, int]:
    """Every object under `url` (recursively): path relative to `url` -> size. Listing caches
    are dropped first: another process (a killed run, a worker) may have written since."""
    fs, root = url_fs(url)
    fs.invalidate_cache()
    try:
        found = with_retries(lambda: fs.find(root, detail=True), url)
    except FileNotFoundError:
        return {}
    out = {}
    for p, info in found.items():
        if info.get("type", "file") != "file":
            continue
        rel = p[len(root):].lstrip("/")
        if rel:
            out[rel] = int(info.get("size") or 0)
    return out


def remove(urls: list[str]) -> None:
    """Delete objects (missing ones are fine)."""
    if not urls:
        return
    fs, _ = url_fs(urls[0])
    paths = [url_fs(u)[1] for u in urls]
    try:
        write_retrying(lambda: fs.rm(paths), urls[0])
    except FileNotFoundError:
        pass


def commit_shard_remote(run_and_commit: Callable[[Any, Any], dict[str, Any]], task: Any, out_url: str) -> dict[str, Any]:
    """Process and commit one shard into a local temporary stage directory (named like the remote
    one, so its statistics name the stage), then upload it: every file the record names first
    (`shards.record_files`: data, rejected, and any a stage adds), the commit record last.
    Returns the commit record (its paths are relative, as for a local shard)."""
    import tempfile
    from pathlib import Path

    name = out_url.rstrip("/").rsplit("/", 1)[-1] or "stage"
    with tempfile.TemporaryDirectory(prefix="winnow-shard-") as tmp:
        local = Path(tmp) / name
        record = run_and_commit(task, local)
        from winnow.pipeline.shards import record_files

        for entry in record_files(record).values():  # every file the record names, then the record
            put_file(str(local / entry["path"]), join(out_url, entry["path"]))
        put_file(str(local / "_progress" / f"{record['name']}.json"), join(out_url, "_progress", f"{record['name']}.json"))
    return record


def unreadable_store(url: str, exc: BaseException) -> InputUnreadable | None:
    """An `InputUnreadable` saying what to fix when reading `url` failed for a reason that is not
    the data's (no credentials, access denied, a store that does not answer); None otherwise."""
    text = f"{type(exc).__name__}: {exc}"
    kind = _botocore_kind(exc)
    if kind == "credentials" or ("Unable to locate credentials" in text):
        return InputUnreadable(f"{url}: no credentials found for the object store ({text}); set AWS_ACCESS_KEY_ID "
                               f"and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with an instance/pod role")
    if isinstance(exc, PermissionError) or "AccessDenied" in text or "Forbidden" in text:
        return InputUnreadable(f"{url}: not readable with these credentials (access denied: {text})")
    if kind == "transient" or isinstance(exc, InputUnreadable) and "still failing" in str(exc):
        return InputUnreadable(f"{url}: the object store does not answer ({text}); check the endpoint and network")
    return None


def bucket_exists(url: str) -> bool:
    """Whether the bucket (first path component) of an object-store URL exists."""
    fs, path = url_fs(url)
    bucket = path.split("/", 1)[0]
    try:
        return bool(with_retries(lambda: fs.exists(bucket), url))
    except Exception:  # noqa: BLE001 - only used to word an error
        return True


def check_output_writable(out: str) -> None:
    """Fail fast, before planning or scheduling anything, when the output location cannot be
    written: write a small probe object (or file) under it and delete it again. Missing
    credentials, a bucket that does not exist, access denied and a store that does not answer
    each raise `OutputUnwritable` with what to fix."""
    import uuid

    if not is_url(out):
        from pathlib import Path

        import tempfile

        d = Path(local_path(out))
        try:
            d.mkdir(parents=True, exist_ok=True)
            # an unnamed file (O_TMPFILE where the filesystem has it): a run killed right here
            # leaves nothing behind in the output directory
            with tempfile.TemporaryFile(dir=d) as f:
                f.write(b"probe")
        except OSError as exc:
            raise OutputUnwritable(f"output {out} is not writable: {type(exc).__name__}: {exc}") from exc
        return
    probe = join(out, f"_winnow_probe-{uuid.uuid4().hex}")
    protocol = out.split("://", 1)[0]
    if protocol in ("s3", "s3a"):
        # a probe that gives up quickly: botocore and s3fs would otherwise retry a dead endpoint
        # for tens of seconds before the first answer
        fs, path = fsspec.core.url_to_fs(probe, config_kwargs={
            "connect_timeout": 3, "read_timeout": 15, "retries": {"max_attempts": 2, "mode": "standard"}})
        fs.retries = 1  # s3fs's own retry loop (a class attribute), on this probe-only instance
    else:
        fs, path = url_fs(probe)
    bucket = path.split("/", 1)[0]
    try:
        write_retrying(lambda: fs.pipe_file(path, b""), probe, attempts=PROBE_ATTEMPTS, backoff_s=0.2)
        fs.rm_file(path)
    except OutputUnwritable as exc:
        raise OutputUnwritable(f"output {out}: the object store does not answer ({exc.__cause__}); check the "
                               f"endpoint and network") from exc
    except Exception as exc:  # noqa: BLE001 - classified for the message
        text = f"{type(exc).__name__}: {exc}"
        if _botocore_kind(exc) == "credentials" or "credentials" in text.lower() and "Unable to locate" in text:
            raise OutputUnwritable(f"output {out}: no credentials found for the object store ({text}); set "
                                   f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with an "
                                   f"instance/pod role") from exc
        if isinstance(exc, FileNotFoundError) or "NoSuchBucket" in text:
            raise OutputUnwritable(f"output {out}: bucket {bucket!r} does not exist ({text})") from exc
        if isinstance(exc, PermissionError) or "AccessDenied" in text or "Forbidden" in text:
            raise OutputUnwritable(f"output {out}: not writable with these credentials (access denied: {text})") from exc
        raise OutputUnwritable(f"output {out}: cannot write a probe object: {text}") from exc
