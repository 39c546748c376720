"""Where dedup's files live: a local directory, or an object store (``s3://``, ``gs://``, any
fsspec URL) with no shared disk between the workers.

Every file dedup reads or writes — its output stage directory, the shuffle and signature files
under ``OUT/_work``, the cross-dump index — goes through this module, which takes a local path
(`pathlib.Path` or str) or a URL and does the same thing on either:

- **Writing** (`writing`, `write_json`, `save_int64_array`, `commit_shard`): a local file appears by atomic rename
  (`shards.atomic_path`, as before); an object is written to a local temporary file first and
  uploaded in one PUT, retried with backoff on transient errors (`remote_io.write_retrying`).
  A PUT is atomic — the object appears whole or not at all — and object stores have no rename,
  so "invisible until complete" is kept by the commit record written *after* the data: a task's
  ``.done.json`` after its shuffle file, a shard's ``_progress`` record after its data objects,
  the index's ``index.json`` after its segment. An object without its record is redone.
- **Reading** (`with_ipc`, `read_ipc`, `with_int64_array`, `read_bytes`, `parquet_file`,
  `read_parquet`): local files are memory-mapped as before; objects are read with ranged GETs (a
  shuffle reducer fetches the footer and its own record batch of each map file, not the whole
  file; records in one GET, without s3fs's HEAD) or whole when the whole file is needed;
  transient errors are retried (`remote_io.with_retries`).
- **Listing and deleting** (`exists`, `list_names`, `remove_tree`), with fsspec's listing cache
  dropped first: another process (a worker, a killed run) may have written since.

Paths stay `Path` objects for local files and become plain strings for URLs (`join`), so the
local layout, names and bytes are exactly those of a run that never heard of object storage.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar, Union

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from winnow.pipeline import shards as shard_io
from winnow.stages import remote_io

#: A local path or an object-store URL.
Loc = Union[str, "os.PathLike[str]"]
T = TypeVar("T")

#: Bytes fetched per ranged GET at least: one GET usually covers a small record batch with its
#: metadata, or an Arrow footer (and a whole small file); never the 50 MB s3fs reads ahead by default.
RANGE_BLOCK = 1 << 16


def is_remote(loc: Loc) -> bool:
    """True for an object-store URL; False for a local path or ``file://``."""
    return remote_io.is_url(str(loc))


def join(base: Loc, *parts: str) -> Any:
    """`base / parts`: a `Path` for a local base (unchanged behaviour), a str for a URL."""
    if is_remote(base):
        return remote_io.join(str(base), *(x for x in parts if x))
    return Path(base).joinpath(*parts)


def parent(loc: Loc) -> Any:
    """The folder `loc` is in (a `Path`, or a URL string)."""
    if is_remote(loc):
        return str(loc).rstrip("/").rsplit("/", 1)[0]
    return Path(loc).parent


def name(loc: Loc) -> str:
    """The last component of `loc`."""
    return str(loc).rstrip("/").rsplit("/", 1)[-1] if is_remote(loc) else Path(loc).name


def _fs(loc: Loc) -> tuple[Any, str]:
    return remote_io.url_fs(str(loc))


# ---- existence, listing, deleting -----------------------------------------------------------------

def exists(loc: Loc) -> bool:
    """Whether the file exists (remote: a HEAD, fsspec's cache of listings dropped first)."""
    if not is_remote(loc):
        return Path(loc).exists()
    fs, p = _fs(loc)
    fs.invalidate_cache(p)
    return bool(remote_io.with_retries(lambda: fs.exists(p), str(loc)))


def is_dir(loc: Loc) -> bool:
    """A local directory, or a prefix with at least one object under it."""
    return Path(loc).is_dir() if not is_remote(loc) else bool(list_names(loc))


def list_names(loc: Loc) -> list[str]:
    """Names of the entries (files and folders) directly under `loc`, sorted; [] if none."""
    if not is_remote(loc):
        d = Path(loc)
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []
    fs, p = _fs(loc)
    fs.invalidate_cache(p)
    try:
        found = remote_io.with_retries(lambda: fs.ls(p, detail=False), str(loc))
    except FileNotFoundError:
        return []
    return sorted({str(f).rstrip("/").rsplit("/", 1)[-1] for f in found if str(f).rstrip("/") != p})


def remove_tree(loc: Loc) -> None:
    """Delete a folder and everything under it (missing is fine)."""
    if not is_remote(loc):
        shutil.rmtree(loc, ignore_errors=True)
        return
    files = remote_io.list_files(str(loc))
    remote_io.remove([remote_io.join(str(loc), rel) for rel in sorted(files)])


def remove_files(locs: list[Loc]) -> None:
    """Delete files (missing ones are fine)."""
    remote = [str(x) for x in locs if is_remote(x)]
    remote_io.remove(remote)
    for x in locs:
        if not is_remote(x):
            Path(x).unlink(missing_ok=True)


# ---- writing --------------------------------------------------------------------------------------

@contextlib.contextmanager
def writing(loc: Loc) -> Iterator[str]:
    """Yield a local temporary path to write `loc`'s bytes into; on success it becomes `loc`
    (local: atomic rename; remote: one retried PUT), on error nothing appears."""
    if not is_remote(loc):
        with shard_io.atomic_path(loc) as tmp:
            yield tmp
        return
    fd, tmp = tempfile.mkstemp(prefix="winnow-dedup-", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        remote_io.put_file(tmp, str(loc))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def json_bytes(obj: Any) -> bytes:
    """JSON exactly as `shards.write_json_atomic` writes it (sorted keys, indented, newline)."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def write_json(loc: Loc, obj: Any) -> None:
    if is_remote(loc):
        remote_io.put_bytes(str(loc), json_bytes(obj))
    else:
        shard_io.write_json_atomic(obj, loc)


# ---- reading --------------------------------------------------------------------------------------

def _get_small(loc: Loc) -> bytes | None:
    """A small object (a done or commit record) in one GET, None when it does not exist. A ranged
    GET (``bytes=0-``): s3fs fetches a whole object by a HEAD first, and a missing key then costs
    a HEAD, a listing and the GET. An object the range does not suit (an empty one) is fetched
    the ordinary way (`remote_io.get_bytes`)."""
    fs, p = _fs(loc)
    try:
        return remote_io.with_retries(lambda: fs.cat_file(p, start=0), str(loc))
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - e.g. 416 InvalidRange for an empty object
        return remote_io.get_bytes(str(loc))


def read_bytes(loc: Loc) -> bytes | None:
    """The whole file, None when it does not exist (remote: meant for small files, `_get_small`)."""
    if is_remote(loc):
        return _get_small(loc)
    try:
        return Path(loc).read_bytes()
    except FileNotFoundError:
        return None


def _open_ranged(loc: Loc) -> Any:
    """A seekable file object of a remote object whose reads are ranged GETs of at least
    `RANGE_BLOCK` bytes (fsspec's "bytes" cache)."""
    fs, p = _fs(loc)
    return fs.open(p, "rb", cache_type="bytes", block_size=RANGE_BLOCK)


class _TailedFile:
    """A read-only, seekable view of a remote object for pyarrow, whose last `len(tail)` bytes
    are already fetched: reads inside the tail cost nothing, other reads one ranged GET of at
    least `RANGE_BLOCK` bytes (kept as a window, so a batch's metadata and body are one GET)."""

    def __init__(self, fs: Any, path: str, size: int, tail: bytes):
        self.fs, self.path, self.size = fs, path, size
        self.tail_at, self.tail = size - len(tail), tail
        self.win_at, self.win = 0, b""
        self.pos = 0
        self.closed = False

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset if whence == 1 else self.size + offset
        return self.pos

    def read(self, n: int = -1) -> bytes:
        lo = self.pos
        hi = self.size if n is None or n < 0 else min(self.size, lo + n)
        if hi <= lo:
            return b""
        for at, buf in ((self.tail_at, self.tail), (self.win_at, self.win)):
            if at <= lo and hi <= at + len(buf):
                self.pos = hi
                return buf[lo - at:hi - at]
        end = min(self.size, max(hi, lo + RANGE_BLOCK))
        self.win_at, self.win = lo, self.fs.cat_file(self.path, start=lo, end=end)
        self.pos = hi
        return self.win[:hi - lo]

    def close(self) -> None:
        self.closed = True


def with_ipc(loc: Loc, fn: Callable[[pa.ipc.RecordBatchFileReader], T]) -> T:
    """`fn(reader)` on an Arrow IPC file: memory-mapped locally; remotely over ranged reads (the
    footer, then only the batches `fn` asks for), the whole call retried on transient errors."""
    if not is_remote(loc):
        return fn(pa.ipc.open_file(pa.memory_map(str(loc), "r")))

    def _go() -> T:
        fs, p = _fs(loc)
        # one suffix GET (no HEAD): the footer, and for a file under RANGE_BLOCK the whole file
        tail = fs.cat_file(p, start=-RANGE_BLOCK)
        if len(tail) < RANGE_BLOCK:
            return fn(pa.ipc.open_file(pa.BufferReader(tail)))
        size = int(fs.info(p)["size"])
        return fn(pa.ipc.open_file(pa.PythonFile(_TailedFile(fs, p, size, tail), mode="r")))

    return remote_io.with_retries(_go, str(loc))


def read_ipc(loc: Loc) -> pa.Table:
    """Every batch of an Arrow IPC file (locally memory-mapped; remotely one GET of the object)."""
    if not is_remote(loc):
        return pa.ipc.open_file(pa.memory_map(str(loc), "r")).read_all()
    raw = remote_io.get_bytes(str(loc))
    if raw is None:
        raise FileNotFoundError(str(loc))
    return pa.ipc.open_file(pa.BufferReader(raw)).read_all()


class _RangedInt64:
    """A 1-d int64 .npy file on object storage, read by slices (ranged GETs), not whole."""

    def __init__(self, loc: Loc):
        self.loc = loc
        self.f = _open_ranged(loc)
        version = np.lib.format.read_magic(self.f)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f"{loc}: .npy format {version} is not supported")
        shape, _fortran, dtype = read_header(self.f)
        if dtype != np.dtype("<i8") or len(shape) != 1:
            raise ValueError(f"{loc}: not a 1-d int64 array")
        self.n = int(shape[0])
        self.start = self.f.tell()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: int | slice) -> Any:
        if isinstance(key, slice):
            lo, hi, step = key.indices(self.n)
            if step != 1:
                raise ValueError("step slices are not supported")
            if hi <= lo:
                return np.zeros(0, np.int64)
            self.f.seek(self.start + 8 * lo)
            return np.frombuffer(self.f.read(8 * (hi - lo)), "<i8")
        i = key + self.n if key < 0 else key
        if not 0 <= i < self.n:
            raise IndexError(key)
        self.f.seek(self.start + 8 * i)
        return np.frombuffer(self.f.read(8), "<i8")[0]

    def close(self) -> None:
        self.f.close()


def with_int64_array(loc: Loc, fn: Callable[[Any], T]) -> T:
    """`fn(array)` on a 1-d int64 .npy file: memory-mapped locally, read by slices remotely (a
    shuffle reducer reads a few entries of its phase's partition directory, not all of it)."""
    if not is_remote(loc):
        return fn(np.load(loc, mmap_mode="r"))

    def _go() -> T:
        arr = _RangedInt64(loc)
        try:
            return fn(arr)
        finally:
            arr.close()

    return remote_io.with_retries(_go, str(loc))


def save_int64_array(loc: Loc, arr: np.ndarray) -> None:
    """`np.save` of `arr` to `loc`, atomically (local) or as one PUT (remote)."""
    with writing(loc) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr)


def parquet_file(path: str) -> pq.ParquetFile:
    """An input shard for reading: the local file, or the object fetched whole (retried) and
    parsed from memory — a dedup phase reads (nearly) every column of its shard anyway."""
    if not is_remote(path):
        return pq.ParquetFile(path)
    raw = remote_io.get_bytes(path)
    if raw is None:
        raise remote_io.InputUnreadable(f"{path}: no such object")
    return pq.ParquetFile(pa.BufferReader(raw))


def read_parquet(path: str, columns: list[str] | None = None, **kw: Any) -> pa.Table:
    """`pq.read_table` of an input shard; a remote one through ranged reads of only the columns
    asked for (the footer, then their column chunks), retried on transient errors."""
    if not is_remote(path):
        return pq.read_table(path, columns=columns, **kw)

    def _go() -> pa.Table:
        fs, p = _fs(path)
        with fs.open(p, "rb", cache_type="bytes", block_size=1 << 20) as f:
            return pq.read_table(f, columns=columns, **kw)

    try:
        return remote_io.with_retries(_go, path)
    except FileNotFoundError as exc:
        raise remote_io.InputUnreadable(f"{path}: no such object") from exc


def parquet_rows(path: str) -> int:
    """Row count of an input shard from its footer (remote: ranged reads of the footer)."""
    if not is_remote(path):
        return shard_io.shard_rows(path)

    def _go() -> int:
        fs, p = _fs(path)
        with fs.open(p, "rb", cache_type="bytes", block_size=RANGE_BLOCK) as f:
            return pq.ParquetFile(f).metadata.num_rows

    return remote_io.with_retries(_go, path)


def parquet_columns(path: str) -> list[str]:
    """Column names of an input shard, from its footer."""
    if not is_remote(path):
        return pq.ParquetFile(path).schema_arrow.names

    def _go() -> list[str]:
        fs, p = _fs(path)
        with fs.open(p, "rb", cache_type="bytes", block_size=RANGE_BLOCK) as f:
            return pq.ParquetFile(f).schema_arrow.names

    return remote_io.with_retries(_go, path)


# ---- committed output shards ------------------------------------------------------------------------

def committed_shards(out: Loc, names: list[tuple[str, str]], config_hash: str) -> dict[str, dict[str, Any] | None]:
    """name -> commit record of each (name, fingerprint) whose shard is committed in the stage
    directory `out` under this config and input, else None. Local: `shards.committed_shard`.
    Remote: one listing of the shard folders, then the records (read in parallel, each one GET);
    a record counts only when the
    data and rejected objects it names exist with the sizes it records (what the runner checks
    for shard-map stages on object storage)."""
    if not is_remote(out):
        return {n: shard_io.committed_shard(out, n, config_hash, fp) for n, fp in names}
    from concurrent.futures import ThreadPoolExecutor

    # the shard folders only: `_work` may hold thousands of objects
    files = {f"{sub}/{rel}": n for sub in shard_io.SHARD_DIRS
             for rel, n in remote_io.list_files(join(out, sub)).items()}

    def _one(item: tuple[str, str]) -> dict[str, Any] | None:
        n, fp = item
        rel = f"{shard_io.PROGRESS_DIR}/{n}.json"
        if rel not in files:
            return None
        raw = _get_small(join(out, rel))
        try:
            rec = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        if not isinstance(rec, dict) or rec.get("config_hash") != config_hash or rec.get("fingerprint") != fp:
            return None
        for k in ("data", "rejected_file"):
            entry = rec.get(k)
            if not isinstance(entry, dict) or files.get(str(entry.get("path"))) != entry.get("bytes"):
                return None
        return rec

    with ThreadPoolExecutor(max_workers=16) as pool:
        return dict(zip((n for n, _ in names), pool.map(_one, names)))


def commit_shard(out: Loc, name_: str, **kw: Any) -> dict[str, Any]:
    """`shards.commit_shard` into the stage directory `out`; on object storage the shard is
    committed in a local temporary directory and uploaded by `remote_io.commit_shard_remote`
    (data and rejected objects first, the commit record last)."""
    if not is_remote(out):
        return shard_io.commit_shard(out, name_, **kw)
    return remote_io.commit_shard_remote(lambda _task, local: shard_io.commit_shard(local, name_, **kw), None,
                                         str(out).rstrip("/"))
