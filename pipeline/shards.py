"""Shard I/O under the stage contract: atomic writes, checksums, manifests.

A stage output directory looks like::

    STAGE_DIR/
      data/part-00000.parquet        kept documents
      rejected/part-00000.parquet    id, url, reason (+ text when the config asks)
      _progress/part-00000.json      the shard's commit record (written last, atomically)
      manifest.json                  written once every shard is committed and the counts add up

A shard becomes visible only by rename after it is complete, so a reader never sees half a file,
and a shard without its commit record is simply rewritten by the next run.

A stage directory may also be an object-store prefix (`s3://bucket/run/filter`, `gs://…`, any
fsspec URL; written by the runner, see docs/object-storage.md). The reading half of this module
takes such URLs as it takes local paths: `input_shard_entries` lists the prefix and reads the
manifest from the store, `read_shard` fetches a shard's bytes (retrying transient errors) and
checks their sha256 against the manifest before parsing them, `upstream_kept` reads `kept` from
the stored manifest. Local paths take the same code as before.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from winnow.pipeline.stats import Histogram, merge_stats, record_stats, shard_stats  # noqa: F401 - stats hook; re-exported for stages

def is_url(path: str | os.PathLike[str]) -> bool:
    """True for an object-store / fsspec URL (`s3://…`); False for a local path or `file://`."""
    s = str(path)
    return "://" in s and not s.startswith("file://")


DATA_DIR = "data"
REJECTED_DIR = "rejected"
PROGRESS_DIR = "_progress"
MANIFEST = "manifest.json"

# Columns every rejected row carries; text is optional (config `keep_rejected_text`).
REJECTED_SCHEMA = pa.schema([("id", pa.string()), ("url", pa.string()), ("reason", pa.string())])
REJECTED_SCHEMA_WITH_TEXT = REJECTED_SCHEMA.append(pa.field("text", pa.string()))


@dataclass(frozen=True)
class ShardFile:
    """One committed parquet file: where it is, how many rows, its size and checksum."""

    path: str
    rows: int
    bytes: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _temp_pattern(name: str) -> re.Pattern[str]:
    """The names `atomic_path` gives temp files of `name` (mkstemp: 8 random characters)."""
    return re.compile(rf"\.{re.escape(name)}\.[A-Za-z0-9_]{{8}}\.tmp")


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temp files of `path` that earlier writers left beside it: a writer SIGKILLed
    (or its machine lost) mid-write never reaches its cleanup. Called once `path` has been
    written anew: every output path has one writer at a time (a task is retried only after its
    worker died), so any other temp of that path is dead. Returns what was removed."""
    path = Path(path)
    pattern = _temp_pattern(path.name)
    removed = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for n in names:
        if pattern.fullmatch(n):
            try:
                os.unlink(path.parent / n)
                removed.append(path.parent / n)
            except FileNotFoundError:
                pass
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temp path beside `path`; on success fsync it and rename it over `path`, on any
    error remove it. Readers see the old file or the whole new one, never a part. Temps of
    `path` that a killed earlier writer left are removed once the new file is in place
    (`remove_stale_temps`), so a retried task leaves its directory as an undisturbed one would."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode, as open() would
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        remove_stale_temps(path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if _is_disk_full(exc):
            raise DiskFull(f"{path}: no space left on device while writing it ({_free_space(path.parent)} free "
                           f"on its filesystem); nothing partial is visible: free space and rerun, finished "
                           f"shards are kept") from exc
        raise


class DiskFull(OSError):
    """A write ran out of space (ENOSPC / EDQUOT, or a file-size limit); the message names the file."""


def _is_disk_full(exc: BaseException) -> bool:
    """ENOSPC, EDQUOT or EFBIG from the OS, or pyarrow's IOError carrying that message."""
    if isinstance(exc, DiskFull):
        return False
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    text = str(exc)
    return isinstance(exc, (OSError, pa.ArrowException)) and (
        "No space left on device" in text or "Disk quota exceeded" in text or "File too large" in text)


def _free_space(directory: Path) -> str:
    try:
        st = os.statvfs(directory)
    except OSError:
        return "unknown"
    return f"{st.f_bavail * st.f_frsize:,} bytes"


def write_parquet_atomic(table: pa.Table, path: str | os.PathLike[str], *, relative_to: str | os.PathLike[str] | None = None,
                         row_group_size: int = 8192) -> ShardFile:
    """Write `table` to `path` atomically (`atomic_path`).

    The bytes depend only on the table (no timestamps), so equal tables give equal files.
    """
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_size,
                       write_statistics=True, use_dictionary=True)
        digest = sha256_file(tmp)
        size = os.path.getsize(tmp)
    shown = os.path.relpath(path, relative_to) if relative_to is not None else str(path)
    return ShardFile(path=shown, rows=table.num_rows, bytes=size, sha256=digest)


def write_arrow_atomic(table: pa.Table, path: str | os.PathLike[str], *, relative_to: str | os.PathLike[str] | None = None,
                       max_chunksize: int = 8192) -> ShardFile:
    """Write `table` as an uncompressed Arrow IPC file (memory-mappable; read by pyarrow, polars,
    DuckDB and HF `datasets`) atomically. Equal tables give equal bytes."""
    with atomic_path(path) as tmp:
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=max_chunksize)
        digest = sha256_file(tmp)
        size = os.path.getsize(tmp)
    shown = os.path.relpath(path, relative_to) if relative_to is not None else str(path)
    return ShardFile(path=shown, rows=table.num_rows, bytes=size, sha256=digest)


class ShardCorrupt(ValueError):
    """A shard whose bytes are not what its stage committed (flipped bytes, a truncated or
    replaced file), or that cannot be parsed; the message names the file and what to rerun."""


#: manifest path -> ((mtime_ns, size), {absolute shard path: sha256}); files verified already
_MANIFEST_SUMS: dict[str, tuple[tuple[int, int], dict[str, str]]] = {}
_VERIFIED: set[tuple[str, int, int, str]] = set()


def expected_sha256(path: str | os.PathLike[str]) -> tuple[str, Path] | None:
    """The sha256 the finished stage's manifest records for shard `path` (`STAGE/data/NAME`),
    and that manifest's path; None for a file no manifest lists (work files, hand-made inputs)."""
    p = Path(os.path.abspath(path))
    if p.parent.name != DATA_DIR:
        return None
    manifest = p.parent.parent / MANIFEST
    try:
        st = os.stat(manifest)
    except OSError:
        return None
    key = str(manifest)
    cached = _MANIFEST_SUMS.get(key)
    if cached is None or cached[0] != (st.st_mtime_ns, st.st_size):
        try:
            m = read_json(manifest)
            sums = {str(manifest.parent / s["path"]): s["sha256"] for s in m.get("shards", [])
                    if isinstance(s, dict) and s.get("sha256") and s.get("path")}
        except (OSError, ValueError, TypeError, AttributeError):
            return None
        cached = _MANIFEST_SUMS[key] = ((st.st_mtime_ns, st.st_size), sums)
    digest = cached[1].get(str(p))
    return (digest, manifest) if digest else None


def verify_shard(path: str | os.PathLike[str]) -> None:
    """Raise ShardCorrupt when `path` is a shard of a finished stage whose bytes differ from the
    sha256 its manifest records. Each (file, mtime, size) is hashed once per process. An
    object-store URL is streamed and hashed each time (see `read_shard`, which hashes the bytes
    it parses instead)."""
    if is_url(path):
        expected_remote = _remote_expected_sha256(str(path))
        if expected_remote is not None:
            _check_digest(str(path), _remote_sha256(str(path)), *expected_remote)
        return
    expected = expected_sha256(path)
    if expected is None:
        return
    digest, manifest = expected
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_mtime_ns, st.st_size, digest)
    if key in _VERIFIED:
        return
    actual = sha256_file(path)
    if actual != digest:
        raise ShardCorrupt(f"{path}: corrupt shard: sha256 {actual[:16]}… does not match {digest[:16]}… "
                           f"recorded in {manifest}; the file changed after its stage finished "
                           f"(disk or copy error): rerun the stage in {manifest.parent}")
    _VERIFIED.add(key)


def read_shard(path: str | os.PathLike[str], columns: list[str] | None = None) -> pa.Table:
    """A kept-document shard of any stage: parquet, or Arrow IPC (`.arrow`, memory-mapped).

    A shard of a finished stage is checked against the sha256 its manifest records first, and
    a file pyarrow cannot parse is reported naming it: both raise `ShardCorrupt`. An
    object-store URL is fetched whole (transient errors retried), its bytes checked against the
    sha256 its stage's stored manifest records, then parsed from memory."""
    path = str(path)
    if is_url(path):
        return _read_remote_shard(path, columns)
    verify_shard(path)
    try:
        if path.endswith(".arrow"):
            with pa.memory_map(path, "r") as source:
                table = pa.ipc.open_file(source).read_all()
            return table.select(columns) if columns is not None else table
        return pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ShardCorrupt(f"{path}: unreadable shard ({type(exc).__name__}: {exc}); rerun the stage that wrote it") from exc


# --- stage directories on object storage: the reading half ---------------------------------------

#: manifest URL -> (the store's tag of it: ETag/size, parsed manifest); re-validated by a HEAD
_REMOTE_MANIFESTS: dict[str, tuple[str, dict[str, Any]]] = {}


def _rio() -> Any:
    """`stages.remote_io` (imported late: `stages` imports this module)."""
    from winnow.stages import remote_io

    return remote_io


def _remote_tag(info: dict[str, Any]) -> str:
    tag = next((str(info[k]) for k in ("ETag", "etag", "e_tag", "md5_hash", "crc32c", "generation") if info.get(k)), "")
    return f"{info.get('size')}:{tag}"


def read_remote_manifest(stage_url: str) -> dict[str, Any] | None:
    """The manifest of the stage directory at `stage_url` (an object-store prefix), read from the
    store; None when there is none. Cached per process while the object's ETag/size stay the
    same. A manifest that is not a JSON object raises `NotAStageOutput` naming it."""
    import fsspec

    rio = _rio()
    url = rio.join(stage_url, MANIFEST)
    fs, p = fsspec.core.url_to_fs(url)
    fs.invalidate_cache(p)   # a listing cached earlier in this process may predate a rerun upstream
    try:
        info = rio.with_retries(lambda: fs.info(p), url)
    except FileNotFoundError:
        _REMOTE_MANIFESTS.pop(url, None)
        return None
    tag = _remote_tag(info)
    cached = _REMOTE_MANIFESTS.get(url)
    if cached is not None and cached[0] == tag:
        return cached[1]
    raw = rio.get_bytes(url)
    if raw is None:
        return None
    try:
        m = json.loads(raw)
    except ValueError as exc:
        raise NotAStageOutput(f"{url}: not valid JSON ({exc}); rerun that stage") from exc
    if not isinstance(m, dict) or not isinstance(m.get("shards"), list):
        raise NotAStageOutput(f"{url}: not a stage manifest (no `shards` list); rerun that stage")
    _REMOTE_MANIFESTS[url] = (tag, m)
    return m


def _remote_expected_sha256(url: str) -> tuple[str, str] | None:
    """(sha256, manifest URL) the stored manifest of shard `url`'s stage (`STAGE/data/NAME`)
    records for it; None when the shard is not under `data/` or no manifest lists it."""
    head, _, name = url.rstrip("/").rpartition("/")
    stage, _, sub = head.rpartition("/")
    if sub != DATA_DIR or not stage:
        return None
    m = read_remote_manifest(stage)
    if m is None:
        return None
    rel = f"{DATA_DIR}/{name}"
    digest = next((s.get("sha256") for s in m["shards"] if isinstance(s, dict) and s.get("path") == rel), None)
    return (digest, _rio().join(stage, MANIFEST)) if digest else None


def _check_digest(path: str, actual: str, digest: str, manifest: str) -> None:
    if actual != digest:
        stage = manifest.rsplit("/", 1)[0]
        raise ShardCorrupt(f"{path}: corrupt shard: sha256 {actual[:16]}… does not match {digest[:16]}… "
                           f"recorded in {manifest}; the object changed after its stage finished "
                           f"(overwritten or copied wrongly): rerun the stage in {stage}")


def _open_remote(url: str) -> Any:
    """A seekable binary file object of an object (ranged reads); a missing one raises
    `InputUnreadable` naming it."""
    rio = _rio()
    try:
        return rio.with_retries(lambda: _fsspec_open(url), url)
    except FileNotFoundError as exc:
        raise rio.InputUnreadable(f"{url}: no such object ({exc})") from exc


def _fsspec_open(url: str) -> Any:
    import fsspec

    return fsspec.open(url, "rb").open()


def _remote_sha256(url: str) -> str:
    h = hashlib.sha256()
    with _open_remote(url) as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _read_remote_shard(url: str, columns: list[str] | None) -> pa.Table:
    rio = _rio()
    fs, p = rio.url_fs(url)
    try:
        data = rio.with_retries(lambda: fs.cat_file(p), url)
    except FileNotFoundError as exc:
        raise rio.InputUnreadable(f"{url}: no such object ({exc}); rerun the stage that wrote it") from exc
    expected = _remote_expected_sha256(url)
    if expected is not None:
        _check_digest(url, hashlib.sha256(data).hexdigest(), *expected)
    try:
        if url.endswith(".arrow"):
            table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
            return table.select(columns) if columns is not None else table
        return pq.read_table(pa.BufferReader(data), columns=columns)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise ShardCorrupt(f"{url}: unreadable shard ({type(exc).__name__}: {exc}); rerun the stage that wrote it") from exc


def _remote_entries(stage_url: str) -> list["InputShard"]:
    """`input_shard_entries` of a stage directory on object storage (see there)."""
    rio = _rio()
    stage_url = stage_url.rstrip("/")
    try:
        files = rio.list_files(stage_url)
    except Exception as exc:  # noqa: BLE001 - credentials, access, a store that does not answer: said plainly
        clear = rio.unreadable_store(stage_url, exc)
        if clear is None:
            raise
        raise clear from exc
    if not files:
        if not rio.bucket_exists(stage_url):
            raise NotAStageOutput(f"{stage_url}: bucket {rio.url_fs(stage_url)[1].split('/', 1)[0]!r} does not exist")
        raise NotAStageOutput(f"{stage_url}: no objects under this prefix (not a stage output, or the stage "
                              f"never ran)")
    if MANIFEST in files:
        m = read_remote_manifest(stage_url)
        if m is None:  # deleted between the listing and the read
            raise NotAStageOutput(f"{stage_url}: manifest.json disappeared while it was read; rerun that stage")
        entries = []
        for s in m["shards"]:
            rel = s.get("path") if isinstance(s, dict) else None
            if not isinstance(rel, str):
                raise NotAStageOutput(f"{stage_url}/{MANIFEST}: a shard entry without a path; rerun that stage")
            url = rio.join(stage_url, rel)
            if rel not in files:
                raise NotAStageOutput(f"{stage_url}: manifest.json lists {url}, which does not exist; rerun that stage")
            if isinstance(s.get("bytes"), int) and files[rel] != s["bytes"]:
                raise ShardCorrupt(f"{url}: corrupt shard: {files[rel]} bytes, its manifest records {s['bytes']}; "
                                   f"the object changed after its stage finished: rerun the stage in {stage_url}")
            entries.append(InputShard(url, s.get("sha256"), s.get("rows")))
        return entries
    if any(rel.startswith(f"{PROGRESS_DIR}/") for rel in files):
        raise NotAStageOutput(f"{stage_url}: stage output without manifest.json (unfinished run); rerun that stage first")
    for sub, ext in (("", "parquet"), (DATA_DIR, "parquet"), ("", "arrow"), (DATA_DIR, "arrow")):
        found = sorted(rel for rel in files if rel.endswith(f".{ext}")
                       and rel.rpartition("/")[0] == sub and not rel.rpartition("/")[2].startswith("."))
        if found:
            return [InputShard(rio.join(stage_url, rel)) for rel in found]
    raise NotAStageOutput(f"{stage_url}: no manifest.json and no *.parquet or *.arrow shards")



def shard_rows(path: str | os.PathLike[str]) -> int:
    """Row count of a shard from its footer/metadata, without reading the data (an object-store
    URL: ranged reads of its footer)."""
    path = str(path)
    if is_url(path):
        with _open_remote(path) as f:
            if path.endswith(".arrow"):
                reader = pa.ipc.open_file(f)
                return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
            return pq.ParquetFile(f).metadata.num_rows
    if path.endswith(".arrow"):
        with pa.memory_map(path, "r") as source:
            reader = pa.ipc.open_file(source)
            return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    return pq.ParquetFile(path).metadata.num_rows


def write_json_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write JSON deterministically (sorted keys) and atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True, ensure_ascii=False)
            f.write("\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def json_bytes(obj: Any) -> bytes:
    """The bytes `write_json_atomic` writes for `obj` (sorted keys, indented, trailing newline)."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def read_json_at(path: str | os.PathLike[str]) -> Any | None:
    """The JSON at a local path or object-store URL, None when it does not exist (transient
    store errors are retried)."""
    if is_url(path):
        raw = _rio().get_bytes(str(path))
        return None if raw is None else json.loads(raw)
    try:
        return read_json(path)
    except FileNotFoundError:
        return None


def write_json_at(obj: Any, path: str | os.PathLike[str]) -> None:
    """`write_json_atomic` for a local path; one PUT (atomic, retried) of the same bytes for an
    object-store URL."""
    if is_url(path):
        _rio().put_bytes(str(path), json_bytes(obj))
    else:
        write_json_atomic(obj, path)


def stage_file(stage_dir: str | os.PathLike[str], *parts: str) -> Path | str:
    """A file inside a stage directory: a `Path` for a local one, a URL (str) for a prefix on
    object storage (`Path("s3://b/x")` would be `s3:/b/x`)."""
    if is_url(stage_dir):
        return "/".join([str(stage_dir).rstrip("/"), *parts])
    return Path(stage_dir).joinpath(*parts)


def remove_commit_record(stage_dir: str | os.PathLike[str], name: str) -> None:
    """Delete shard `name`'s commit record (local or on object storage), so the next run redoes
    that shard; a missing record is fine."""
    target = stage_file(stage_dir, PROGRESS_DIR, f"{name}.json")
    if isinstance(target, str):
        _rio().remove([target])
    else:
        target.unlink(missing_ok=True)


def empty_rejected(with_text: bool = False) -> pa.Table:
    schema = REJECTED_SCHEMA_WITH_TEXT if with_text else REJECTED_SCHEMA
    return schema.empty_table()


def rejected_table(rows: Iterable[dict[str, Any]], with_text: bool = False) -> pa.Table:
    """Build a rejected-rows table from dicts with id, url, reason (and text)."""
    schema = REJECTED_SCHEMA_WITH_TEXT if with_text else REJECTED_SCHEMA
    cols: dict[str, list[Any]] = {name: [] for name in schema.names}
    for row in rows:
        for name in schema.names:
            cols[name].append(row.get(name))
    return pa.table(cols, schema=schema)


class NotAStageOutput(ValueError):
    """Raised when a directory given as a stage input holds neither a manifest nor parquet shards."""


@dataclass(frozen=True)
class InputShard:
    """One kept-document shard of an upstream stage: its path, and, when the upstream directory
    has a manifest, the sha256 and row count the manifest records for it (None otherwise).
    `path` is a local `Path`, or a `str` URL for a stage directory on object storage."""

    path: Path | str
    sha256: str | None = None
    rows: int | None = None


def input_shard_entries(stage_dir: str | os.PathLike[str]) -> list[InputShard]:
    """The kept-document shards of a finished stage directory, in manifest order, with the
    checksum and row count the manifest gives each (the identity a downstream task is keyed by).

    Accepts a stage directory with `manifest.json`, or any directory of `*.parquet` / `*.arrow`
    files (sorted by name) so hand-made inputs work too. A stage directory without a manifest is
    an unfinished run and is refused rather than read half-way; a manifest naming a shard that is
    not there is refused too (the directory was edited by hand or is half deleted).

    `stage_dir` may be an object-store prefix (`s3://…`): the same rules, with the manifest read
    from the store and each listed object checked to exist with the size the manifest records;
    the entries' paths are then URLs (str).
    """
    if is_url(stage_dir):
        return _remote_entries(str(stage_dir))
    stage_dir = Path(stage_dir)
    if not stage_dir.is_dir():
        raise NotAStageOutput(f"{stage_dir}: not a directory")
    manifest = stage_dir / MANIFEST
    if manifest.exists():
        m = read_json(manifest)
        entries = [InputShard(stage_dir / s["path"], s.get("sha256"), s.get("rows")) for s in m["shards"]]
        for e in entries:
            if not e.path.is_file():
                raise NotAStageOutput(f"{stage_dir}: manifest.json lists {e.path}, which does not exist; rerun that stage")
        return entries
    if (stage_dir / PROGRESS_DIR).exists():
        raise NotAStageOutput(f"{stage_dir}: stage output without manifest.json (unfinished run); rerun that stage first")
    files = (sorted(stage_dir.glob("*.parquet")) or sorted((stage_dir / DATA_DIR).glob("*.parquet"))
             or sorted(stage_dir.glob("*.arrow")) or sorted((stage_dir / DATA_DIR).glob("*.arrow")))
    if not files:
        raise NotAStageOutput(f"{stage_dir}: no manifest.json and no *.parquet or *.arrow shards")
    return [InputShard(f) for f in files]


def input_shards(stage_dir: str | os.PathLike[str]) -> list[Path | str]:
    """The kept-document shards of a finished stage directory, in manifest order (see
    `input_shard_entries`, which also gives each shard's checksum and row count)."""
    return [e.path for e in input_shard_entries(stage_dir)]


def upstream_kept(stage_dir: str | os.PathLike[str]) -> int:
    """How many documents a stage directory hands on: its manifest's `kept` plus the extra copies
    it wrote (counter `repeated`: remix repeats whole documents, so its shards hold kept + repeated
    rows), or for a hand-made directory of shards the row count of their footers. What the next
    stage must report as input. An object-store prefix: its stored manifest."""
    if is_url(stage_dir):
        m = read_remote_manifest(str(stage_dir).rstrip("/"))
        if m is not None:
            return int(m["kept"]) + int(m.get("counters", {}).get("repeated", 0))
        return sum(shard_rows(p) for p in input_shards(stage_dir))
    manifest = Path(stage_dir) / MANIFEST
    if manifest.exists():
        m = read_json(manifest)
        return int(m["kept"]) + int(m.get("counters", {}).get("repeated", 0))
    return sum(shard_rows(p) for p in input_shards(stage_dir))


#: Directories of a stage output whose files are named after their shard (`part-00003.<ext>`).
SHARD_DIRS = (DATA_DIR, REJECTED_DIR, PROGRESS_DIR)


def remove_stale_shards(stage_dir: str | os.PathLike[str], names: Iterable[str]) -> list[Path]:
    """Delete every file under data/, rejected/ and _progress/ whose shard name (the file name up
    to its first dot, any extension: .parquet, .arrow, .bin, .idx, .json) is not in `names`, and
    temp files a killed write left behind, so `data/` holds exactly the planned shards. Returns
    what was removed."""
    keep = set(names)
    removed: list[Path] = []
    for sub in SHARD_DIRS:
        d = Path(stage_dir) / sub
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if not p.is_file():
                continue
            stale_temp = p.name.startswith(".") and p.name.endswith(".tmp")
            if stale_temp or p.name.split(".", 1)[0] not in keep:
                p.unlink()
                removed.append(p)
    return removed


def committed_records(stage_dir: str | os.PathLike[str], config_hash: str) -> dict[str, dict[str, Any]]:
    """Every readable commit record under `_progress/` written under `config_hash`, by shard name."""
    out: dict[str, dict[str, Any]] = {}
    d = Path(stage_dir) / PROGRESS_DIR
    if not d.is_dir():
        return out
    for p in sorted(d.glob("*.json")):
        if p.name.startswith("."):
            continue
        try:
            rec = read_json(p)
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("config_hash") == config_hash and rec.get("name") == p.stem:
            out[p.stem] = rec
    return out


def _renamed(value: Any, src: str, dst: str) -> Any:
    """`value` (a commit record or part of one) with every shard path of `src` renamed to `dst`."""
    if isinstance(value, dict):
        return {k: _renamed(v, src, dst) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, src, dst) for v in value]
    if isinstance(value, str) and "/" in value:
        head, _, tail = value.rpartition("/")
        if head in SHARD_DIRS and tail.split(".", 1)[0] == src:
            return f"{head}/{dst}{tail[len(src):]}"
    return value


RELOCATING_DIR = "_relocating"


def relocate_shards(stage_dir: str | os.PathLike[str], moves: dict[str, str]) -> None:
    """Give committed shards new names: `moves` maps a destination shard name to the committed
    shard whose files (data/, rejected/, any extension) and commit record it takes. Used when
    inputs were added or removed and the same input now sits at another position: its finished
    output is renamed instead of recomputed. Sources are copied (hard links) to a staging
    directory first, so swaps and one source for several destinations work; a destination's old
    commit record is removed before its files are replaced and its new record is written last,
    so a kill part-way leaves shards that are simply redone."""
    stage_dir = Path(stage_dir)
    staging = stage_dir / RELOCATING_DIR
    shutil.rmtree(staging, ignore_errors=True)
    if not moves:
        return
    staged: dict[str, list[tuple[Path, Path]]] = {}
    records: dict[str, dict[str, Any]] = {}
    for dst, src in moves.items():
        records[dst] = _renamed(read_json(stage_dir / PROGRESS_DIR / f"{src}.json"), src, dst)
        records[dst]["name"] = dst
        files = []
        for sub in (DATA_DIR, REJECTED_DIR):
            for p in sorted((stage_dir / sub).glob(f"{src}.*")):
                if p.name.split(".", 1)[0] != src:
                    continue
                tmp = staging / dst / sub / p.name
                tmp.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(p, tmp)
                except OSError:
                    shutil.copy2(p, tmp)
                files.append((tmp, stage_dir / sub / f"{dst}{p.name[len(src):]}"))
        staged[dst] = files
    for dst, files in staged.items():
        (stage_dir / PROGRESS_DIR / f"{dst}.json").unlink(missing_ok=True)
        for sub in (DATA_DIR, REJECTED_DIR):
            for p in (stage_dir / sub).glob(f"{dst}.*"):
                if p.name.split(".", 1)[0] == dst:
                    p.unlink()
        for tmp, final in files:
            os.replace(tmp, final)
        write_json_atomic(records[dst], stage_dir / PROGRESS_DIR / f"{dst}.json")
    shutil.rmtree(staging, ignore_errors=True)


def shard_paths(stage_dir: str | os.PathLike[str], name: str, data_format: str = "parquet") -> tuple[Path, Path, Path]:
    """(data, rejected, progress-record) paths of shard `name` inside a stage directory; the data
    file is `.parquet` or (`data_format="arrow"`) an Arrow IPC `.arrow` file."""
    stage_dir = Path(stage_dir)
    return (stage_dir / DATA_DIR / f"{name}.{data_format}",
            stage_dir / REJECTED_DIR / f"{name}.parquet",
            stage_dir / PROGRESS_DIR / f"{name}.json")


def record_files(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The files a commit record names: every entry that is a `ShardFile` (a dict with a `path`
    and its `bytes`), e.g. `data` and `rejected_file`, and a pack shard's `idx_file` and
    `pack_index_file`. Resume checks all of them and an object-store commit uploads all of them
    before the record, so a stage with more files per shard needs nothing else."""
    return {k: v for k, v in sorted(record.items())
            if isinstance(v, dict) and isinstance(v.get("path"), str) and isinstance(v.get("bytes"), int)}


def committed_shard(stage_dir: str | os.PathLike[str], name: str, config_hash: str, fingerprint: str
                    ) -> dict[str, Any] | None:
    """The commit record of shard `name` if it was written under this config and input, else None.
    Every file the record names (`record_files`: at least its data and rejected files) must
    exist with the size it records; a file cut short (or grown) since its commit is redone (full
    checksums are checked when a shard is read, `verify_shard`). `stage_dir` may be an
    object-store prefix: the record is read from the store and so are the objects' sizes."""
    if is_url(stage_dir):
        url = str(stage_dir).rstrip("/")
        rio = _rio()
        try:
            record = read_json_at(f"{url}/{PROGRESS_DIR}/{name}.json")
        except ValueError:
            return None

        def size(rel: str) -> int | None:
            fs, p = rio.url_fs(f"{url}/{rel}")
            try:
                return rio.with_retries(lambda: fs.info(p), f"{url}/{rel}").get("size")
            except FileNotFoundError:
                return None
    else:
        try:
            record = read_json(Path(stage_dir) / PROGRESS_DIR / f"{name}.json")
        except (OSError, ValueError):
            return None

        def size(rel: str) -> int | None:
            try:
                return os.path.getsize(Path(stage_dir) / rel)
            except OSError:
                return None
    if not isinstance(record, dict) or record.get("config_hash") != config_hash or record.get("fingerprint") != fingerprint:
        return None
    files = record_files(record)
    if "data" not in files or "rejected_file" not in files:
        return None
    return record if all(size(e["path"]) == e["bytes"] for e in files.values()) else None


def commit_shard(stage_dir: str | os.PathLike[str], name: str, *, kept: pa.Table, rejected: pa.Table,
                 input_rows: int, config_hash: str, fingerprint: str,
                 counters: dict[str, int] | None = None, data_format: str = "parquet",
                 stats: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write one shard's kept and rejected tables, then its commit record, each atomically.
    Kept rows go to parquet, or to an Arrow IPC file with `data_format="arrow"` (remix).
    The record's ``"stats"`` are `shard_stats` of the in-memory tables plus the stage's own
    `stats` (made with `Histogram`; see docs/dashboard.md), merged into stats.json by the runner.

    Checks the shard's own accounting (`kept + rejected == input`) before anything is written,
    so a stage bug fails loudly at the shard that caused it. Returns the commit record.
    """
    if kept.num_rows + rejected.num_rows != input_rows:
        raise AccountingError(f"shard {name}: kept {kept.num_rows} + rejected {rejected.num_rows} != input {input_rows}")
    data_path, rejected_path, progress_path = shard_paths(stage_dir, name, data_format)
    write = write_arrow_atomic if data_format == "arrow" else write_parquet_atomic
    data_file = write(kept, data_path, relative_to=stage_dir)
    rejected_file = write_parquet_atomic(rejected, rejected_path, relative_to=stage_dir)
    reasons: dict[str, int] = {}
    if rejected.num_rows:
        for reason, n in zip(*_value_counts(rejected.column("reason"))):
            reasons[reason] = n
    record = {
        "name": name,
        "config_hash": config_hash,
        "fingerprint": fingerprint,
        "input": input_rows,
        "kept": kept.num_rows,
        "rejected": rejected.num_rows,
        "reasons": dict(sorted(reasons.items())),
        "counters": dict(sorted((counters or {}).items())),
        "data": data_file.to_json(),
        "rejected_file": rejected_file.to_json(),
        "stats": record_stats(str(stage_dir), kept, rejected, stats),
    }
    write_json_atomic(record, progress_path)
    return record


def _value_counts(column: pa.ChunkedArray) -> tuple[list[str], list[int]]:
    counts = column.value_counts()
    return counts.field("values").to_pylist(), counts.field("counts").to_pylist()


class AccountingError(RuntimeError):
    """kept + rejected != input somewhere: a document was lost or invented."""
