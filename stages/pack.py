"""Pack stage: documents -> token ids -> Megatron `.bin`/`.idx` shards + winnow pack index.

Per input shard (remix `.arrow` or any stage's parquet), on a Ray actor holding one tokenizer:
the texts are encoded (`PieceCacheEncoder`: the pre-tokenizer compiled, each distinct pre-token's
BPE once per actor; `Tokenizer.encode_batch`'s ids), BOS/EOS added by the explicit policy of
the config (default: every document starts with BOS and ends with EOS), and written as

    data/part-NNNNN.bin    int32 token ids, one sequence per document (Megatron MMIDIDX)
    data/part-NNNNN.idx    Megatron's index: byte-identical to `IndexedDatasetBuilder`'s
    data/part-NNNNN.pidx   winnow pack index: windows of seq_len + 1 tokens -> document pieces
    rejected/part-NNNNN.parquet   empty documents (`pack:empty`)
    _progress/part-NNNNN.json     commit record (written last; what resume checks)

and, once every shard is committed, `pack_manifest.json` (tokenizer sha256, vocab size, dtype,
seq_len, packing, BOS/EOS ids, tokens per language and domain, packing figures, every file's
sha256) beside the runner's `manifest.json`. `winnow.tokenizer.PackedDataset` reads the result.

Resume: the runner reuses a shard whose commit record matches (config hash with the tokenizer's
sha256, input fingerprint) and whose named files (`shards.record_files`: `.bin`, `.idx`, `.pidx`,
rejected) all exist with their recorded sizes, so a shard missing its `.idx` or `.pidx` is redone.

Object storage (`object_storage = True`): the output directory may be an `s3://…` prefix (any
fsspec URL) and so may the tokenizer directory (the tokenizer stage's output on the store). Each
shard is committed in a local temporary directory on its worker and uploaded file by file, the
commit record last (`remote_io.commit_shard_remote` uploads every file the record names);
`pack_manifest.json` is PUT by `check_output` after every record. A tokenizer URL is fetched once per process into a local temporary directory
(`fetch_tokenizer_dir`); the sha256 of the fetched `tokenizer.json` is the config-hash input, as
for a local directory. Nothing assumes a disk shared between the driver and the workers.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from winnow.pipeline import shards as shard_io
from winnow.stages import remote_io
from winnow.stages.base import PATH, Runtime, ShardMapStage, ShardOutput, ShardTask, StageConfig, EXECUTION, identity_config
from winnow.tokenizer.indexed import check_vocab_fits, index_bytes
from winnow.tokenizer.packing import pack, pack_index_bytes, packing_stats, sha256_bytes
from winnow.tokenizer.piece_cache import PieceCacheEncoder

PACK_MANIFEST = "pack_manifest.json"
PACK_FORMAT_VERSION = 1
#: Files of a tokenizer directory that pack reads (`tokenizer_config.json` may be absent).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


class PackConfig(StageConfig):
    tokenizer: str | None = Field(None, json_schema_extra=PATH,
                                  description="directory with tokenizer.json + tokenizer_config.json, local or "
                                              "on object storage (s3://…) (default in `winnow run`: the "
                                              "tokenizer stage's output)")
    seq_len: int = Field(4096, ge=1, description="model context; a window holds seq_len + 1 tokens")
    packing: Literal["concat", "bestfit"] = "concat"
    bos: bool = Field(True, description="start every document with the tokenizer's BOS token")
    eos: bool = Field(True, description="end every document with the tokenizer's EOS token")
    dtype: Literal["int32", "uint16"] = Field("int32", description="token dtype of the .bin (uint16 only if the vocab fits)")
    text_column: str = "text"
    batch_size: int = Field(1024, ge=1, json_schema_extra=EXECUTION, description="documents per encode_batch call (tokenizers whose pre-tokenizer does not compile)")


def resolve_tokenizer_dir(path: str | os.PathLike[str]) -> Path:
    """The directory holding tokenizer.json (accepts the file itself too)."""
    p = Path(path)
    if p.is_file() and p.name.endswith(".json"):
        p = p.parent
    if not (p / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{path}: no tokenizer.json (give the tokenizer stage's output directory)")
    return p


#: Tokenizer URL -> (identity of its files when fetched, the local temporary directory this
#: process fetched them into): one fetch per process (the driver for planning, each Ray worker
#: for its shards) for as long as the objects stay the same.
_FETCHED: dict[str, tuple[tuple[str, ...], Path]] = {}


def _object_identity(url: str) -> str:
    """Path, size and ETag of an object (`remote_io.raw_file_identity`, past the listing cache:
    the tokenizer stage may have rewritten it in this process); "" when it does not exist."""
    fs, path = remote_io.url_fs(url)
    fs.invalidate_cache(path)
    try:
        return remote_io.raw_file_identity(url)
    except FileNotFoundError:
        return ""


def fetch_tokenizer_dir(url: str) -> Path:
    """A tokenizer directory on object storage (`s3://…/tokenizer`, or its `tokenizer.json`)
    fetched into a local temporary directory of this process, once while its objects keep their
    size and ETag (a retrained tokenizer at the same URL is fetched again); the directory is
    removed when the process exits. A missing `tokenizer.json`, or a store that cannot be read,
    is a clear error naming the URL; a missing `tokenizer_config.json` is fine, as locally."""
    url = url.rstrip("/")
    if url.endswith("/tokenizer.json"):
        url = url[: -len("/tokenizer.json")]
    try:
        ident = tuple(_object_identity(remote_io.join(url, f)) for f in TOKENIZER_FILES)
        if not ident[0]:
            raise FileNotFoundError(f"{url}: no tokenizer.json (give the tokenizer stage's output directory)")
        cached = _FETCHED.get(url)
        if cached is not None and cached[0] == ident and (cached[1] / "tokenizer.json").is_file():
            return cached[1]
        got = {f: remote_io.get_bytes(remote_io.join(url, f)) for f, i in zip(TOKENIZER_FILES, ident) if i}
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - worded for the user when it is the store's fault
        why = remote_io.unreadable_store(url, exc)
        if why is not None:
            raise why from exc
        raise
    if got.get("tokenizer.json") is None:
        raise FileNotFoundError(f"{url}: no tokenizer.json (give the tokenizer stage's output directory)")
    tmp = Path(tempfile.mkdtemp(prefix="winnow-pack-tokenizer-"))
    atexit.register(shutil.rmtree, tmp, True)
    for fname, raw in got.items():
        if raw is not None:
            (tmp / fname).write_bytes(raw)
    _FETCHED[url] = (ident, tmp)
    return tmp


def _special(cfg: dict[str, Any], key: str) -> str | None:
    v = cfg.get(key)
    if isinstance(v, dict):
        v = v.get("content")
    return v if isinstance(v, str) else None


def tokenizer_info(tok_dir: Path, tok: Any = None) -> dict[str, Any]:
    """sha256, vocab size and BOS/EOS/PAD ids of a tokenizer directory (checked: the named
    specials must be tokens of the vocabulary). `tok`: the directory's tokenizer, if loaded."""
    from tokenizers import Tokenizer

    if tok is None:
        tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    cfg_path = tok_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    info: dict[str, Any] = {"sha256": shard_io.sha256_file(tok_dir / "tokenizer.json"),
                            "vocab_size": tok.get_vocab_size(with_added_tokens=True)}
    for role in ("bos", "eos", "pad"):
        name = _special(cfg, f"{role}_token")
        tid = tok.token_to_id(name) if name is not None else None
        if name is not None and tid is None:
            raise ValueError(f"{cfg_path}: {role}_token {name!r} is not in the vocabulary")
        info[f"{role}_token"], info[f"{role}_id"] = name, tid
    return info


class PackStage(ShardMapStage):
    name: ClassVar[str] = "pack"
    version: ClassVar[int] = 1
    Config: ClassVar[type[StageConfig]] = PackConfig
    help: ClassVar[str] = "tokenize documents into Megatron .bin/.idx shards with a concat/bestfit pack index"

    config: PackConfig
    #: `execute` and `check_output` take an object-store URL as `out_dir` (runner.supports_object_storage)
    object_storage: ClassVar[bool] = True

    def __init__(self, config: Any = None):
        super().__init__(config)
        self._tok: Any = None
        self._pieces: PieceCacheEncoder | None = None
        self._info: dict[str, Any] | None = None

    # --- identity, artifacts, CLI -------------------------------------------------------------
    def tokenizer_dir(self) -> Path:
        if not self.config.tokenizer:
            raise ValueError("pack: no tokenizer given (--tokenizer DIR, `pack.tokenizer`, or a tokenizer stage in `winnow run`)")
        if remote_io.is_url(self.config.tokenizer):
            return fetch_tokenizer_dir(self.config.tokenizer)
        return resolve_tokenizer_dir(self.config.tokenizer)

    def info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = tokenizer_info(self.tokenizer_dir())
        return self._info

    def config_hash(self) -> str:
        """The config with the tokenizer's sha256 in place of its location: a retrained
        tokenizer repacks; the same tokenizer files elsewhere (a copy, the store instead of a
        local directory) do not."""
        import hashlib

        ident = {k: v for k, v in identity_config(self.config).items() if k != "tokenizer"}
        base = json.dumps({"stage": self.name, "version": self.version, "config": ident}, sort_keys=True)
        sha = self.info()["sha256"] if self.config.tokenizer else ""
        return hashlib.sha256(f"{base}:{sha}".encode()).hexdigest()[:16]

    def with_artifacts(self, artifacts: dict[str, str]) -> "PackStage":
        if self.config.tokenizer or "tokenizer" not in artifacts:
            return self
        return type(self)(self.config.model_copy(update={"tokenizer": str(artifacts["tokenizer"])}))

    @classmethod
    def add_cli_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--tokenizer", dest="pack_tokenizer", default=None, metavar="DIR",
                            help="tokenizer directory (tokenizer.json + tokenizer_config.json)")
        parser.add_argument("--seq-len", dest="pack_seq_len", type=int, default=None, help="context length (default 4096)")
        parser.add_argument("--packing", dest="pack_packing", choices=["concat", "bestfit"], default=None,
                            help="window packing (default concat)")

    @classmethod
    def cli_overrides(cls, args: argparse.Namespace) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("tokenizer", "seq_len", "packing"):
            v = getattr(args, f"pack_{key}", None)
            if v is not None:
                out[key] = v
        return out

    # --- planning: refuse bad settings before any work ----------------------------------------
    def plan(self, inputs: Sequence[str]) -> list[ShardTask]:
        info = self.info()
        try:
            check_vocab_fits(info["vocab_size"], self.config.dtype)
        except ValueError as exc:
            raise ValueError(f"pack: {exc}; use dtype int32") from None
        for role in ("bos", "eos"):
            if getattr(self.config, role) and info[f"{role}_id"] is None:
                where = self.config.tokenizer.rstrip("/") if remote_io.is_url(str(self.config.tokenizer)) \
                    else self.tokenizer_dir()
                raise ValueError(f"pack: {role}=true but {where}/tokenizer_config.json names no "
                                 f"{role}_token; set pack.{role}: false or fix the tokenizer")
        return super().plan(inputs)

    # --- per shard ------------------------------------------------------------------------------
    def setup(self) -> None:
        from tokenizers import Tokenizer

        path = self.tokenizer_dir() / "tokenizer.json"
        self._tok = Tokenizer.from_file(str(path))
        if self._info is None:  # one tokenizer load per actor, not two
            self._info = tokenizer_info(self.tokenizer_dir(), self._tok)
        with open(path, encoding="utf-8") as f:
            self._pieces = PieceCacheEncoder.for_tokenizer(self._tok, json.load(f))

    def encode(self, texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of `texts` with the BOS/EOS policy: (flat int32 ids, per-text lengths). An
        empty text gets length 0 (no BOS/EOS) so the caller can reject it.

        When the tokenizer's pre-tokenizer compiles (DeepSeek LLM's and winnow's own do), texts go
        through `PieceCacheEncoder`: the pre-tokenizer as one compiled pass over the Arrow UTF-8
        buffer and each distinct pre-token's BPE computed once per actor; the ids are those of
        `encode_batch` (tested on real text and edge cases). Otherwise `encode_batch`."""
        if self._tok is None:
            self.setup()
        info = self.info()
        if self._pieces is not None:
            arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(list(texts), pa.large_string())
            ids, counts = self._pieces.encode_arrow(arr)
        else:
            if isinstance(texts, (pa.Array, pa.ChunkedArray)):
                texts = texts.fill_null("").to_pylist()
            encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
            bs = self.config.batch_size
            encs = [e for a in range(0, len(texts), bs) for e in encode(list(texts[a:a + bs]), add_special_tokens=False)]
            counts = np.fromiter((len(e.ids) for e in encs), np.int64, count=len(encs))
            ids = np.fromiter((t for e in encs for t in e.ids), np.int32, count=int(counts.sum()))
        return with_bos_eos(ids, counts, info["bos_id"] if self.config.bos else None,
                            info["eos_id"] if self.config.eos else None)

    def process_shard(self, task: ShardTask) -> ShardOutput:
        """Kept: one row per packed document (id, lang, domain, tokens list<int32>)."""
        table = pa.concat_tables([shard_io.read_shard(p) for p in task.inputs]) if len(task.inputs) > 1 \
            else shard_io.read_shard(task.inputs[0])
        col = self.config.text_column
        if col not in table.column_names:
            raise ValueError(f"pack: input {task.inputs[0]} has no {col!r} column (columns: {table.column_names})")
        n = table.num_rows
        flat, lengths = self.encode(table.column(col))
        empty = lengths == 0
        ids = table.column("id") if "id" in table.column_names else pa.array([f"{task.name}:{i}" for i in range(n)])
        urls = table.column("url") if "url" in table.column_names else pa.nulls(n, pa.string())
        keep = pa.array(~empty)
        offsets = np.concatenate([[0], np.cumsum(lengths[~empty])]).astype(np.int64)
        tokens = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(flat.astype(np.int32, copy=False)))
        # UTF-8 bytes of each kept text: bytes per token per language/domain in stats.json
        text_bytes = pc.filter(pc.binary_length(table.column(col).fill_null("").cast(pa.string())), keep)
        kept_cols = {"id": pc.filter(ids, keep), "tokens": tokens, "text_bytes": text_bytes.cast(pa.int64())}
        for extra in ("lang", "domain"):
            if extra in table.column_names:
                kept_cols[extra] = pc.filter(table.column(extra), keep).cast(pa.string())
        kept = pa.table(kept_cols)
        rej_mask = pa.array(empty)
        rejected = pa.table({"id": pc.filter(ids, rej_mask).cast(pa.string()),
                             "url": pc.filter(urls, rej_mask).cast(pa.string()),
                             "reason": pa.array(["pack:empty"] * int(empty.sum()), pa.string())},
                            schema=shard_io.REJECTED_SCHEMA)
        return ShardOutput(kept=kept, rejected=rejected, input_rows=n, counters={})

    def run_and_commit(self, task: ShardTask, out_dir: Path) -> dict[str, Any]:
        out = self.process_shard(task)
        return commit_pack_shard(Path(out_dir), task.name, out, self.config, self.info(),
                                 self.config_hash(), task.fingerprint)

    # --- whole stage: the pack manifest once every shard is committed --------------------------
    def execute(self, tasks: Sequence[ShardTask], out_dir: Path, runtime: Runtime) -> list[dict[str, Any]]:
        """Map the shards the runner found uncommitted (it checks every file a record names,
        `.idx` and `.pidx` included); first remove `pack_manifest.json`, since the directory is
        about to change. `out_dir` may be an object-store URL."""
        target = shard_io.stage_file(out_dir, PACK_MANIFEST)
        if isinstance(target, str):
            remote_io.remove([target])
        else:
            target.unlink(missing_ok=True)
        return runtime.map_shards(self, tasks, out_dir)

    def check_output(self, manifest: dict[str, Any], records: Sequence[dict[str, Any]], out_dir: Path) -> None:
        """Every shard is committed and the counts add up: write `pack_manifest.json` (what a
        training job's reader opens) from all shard records, deterministically. `out_dir` may be
        an object-store URL (the manifest is then one PUT, after every record; none when a
        rerun changed nothing)."""
        body, target = pack_manifest(self.config, self.info(), records), shard_io.stage_file(out_dir, PACK_MANIFEST)
        if isinstance(target, str) and remote_io.get_bytes(target) == shard_io.json_bytes(body):
            return
        shard_io.write_json_at(body, target)


def with_bos_eos(ids: np.ndarray, counts: np.ndarray, bos: int | None, eos: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Every non-empty document's ids wrapped in BOS/EOS (when given); empty ones stay empty.
    Returns (flat ids, per-document lengths)."""
    extra = (bos is not None) + (eos is not None)
    lengths = np.where(counts > 0, counts + extra, 0).astype(np.int64)
    if not extra:
        return ids.astype(np.int32, copy=False), lengths
    out = np.empty(int(lengths.sum()), np.int32)
    dst = np.concatenate([[0], np.cumsum(lengths)])
    nonempty = np.flatnonzero(counts > 0)
    body = np.ones(out.size, bool)
    if bos is not None:
        out[dst[nonempty]] = bos
        body[dst[nonempty]] = False
    if eos is not None:
        out[dst[nonempty + 1] - 1] = eos
        body[dst[nonempty + 1] - 1] = False
    out[body] = ids
    return out, lengths


def _write_bytes_atomic(data: bytes, path: Path, out_dir: Path) -> shard_io.ShardFile:
    with shard_io.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return shard_io.ShardFile(path=os.path.relpath(path, out_dir), rows=0, bytes=len(data), sha256=sha256_bytes(data))


def commit_pack_shard(out_dir: Path, name: str, out: ShardOutput, config: PackConfig, info: dict[str, Any],
                      config_hash: str, fingerprint: str) -> dict[str, Any]:
    """Write .bin, .idx, .pidx, rejected parquet, then the commit record, each atomically."""
    kept, rejected = out.kept, out.rejected
    if kept.num_rows + rejected.num_rows != out.input_rows:
        raise shard_io.AccountingError(f"shard {name}: kept {kept.num_rows} + rejected {rejected.num_rows} != input {out.input_rows}")
    tokens_col = kept.column("tokens").combine_chunks() if kept.num_rows else None
    if tokens_col is not None:
        offsets = np.asarray(tokens_col.offsets, dtype=np.int64)
        flat = np.asarray(tokens_col.values, dtype=np.int32)[offsets[0]:offsets[-1]]
        lengths = np.diff(offsets)
    else:
        flat, lengths = np.zeros(0, np.int32), np.zeros(0, np.int64)
    dtype = np.dtype(config.dtype)
    data_dir = out_dir / shard_io.DATA_DIR
    bin_bytes = flat.astype(dtype.newbyteorder("<")).tobytes()
    bin_file = _write_bytes_atomic(bin_bytes, data_dir / f"{name}.bin", out_dir)
    bin_file = shard_io.ShardFile(bin_file.path, kept.num_rows, bin_file.bytes, bin_file.sha256)
    idx = index_bytes(lengths, np.arange(lengths.size + 1, dtype=np.int64), dtype)
    idx_file = _write_bytes_atomic(idx, data_dir / f"{name}.idx", out_dir)
    index = pack(lengths, config.seq_len, config.packing)
    index = dataclasses.replace(index, idx_sha256=idx_file.sha256)
    pidx_file = _write_bytes_atomic(pack_index_bytes(index), data_dir / f"{name}.pidx", out_dir)
    pidx_file = shard_io.ShardFile(pidx_file.path, index.num_windows, pidx_file.bytes, pidx_file.sha256)
    rejected_file = shard_io.write_parquet_atomic(rejected, out_dir / shard_io.REJECTED_DIR / f"{name}.parquet",
                                                  relative_to=out_dir)
    st = packing_stats(index, lengths)
    counters: dict[str, int] = {"docs": int(kept.num_rows), "tokens": int(st["tokens"]), "windows": int(st["windows"]),
                                "pad_tokens": int(st["pad_tokens"]),
                                "tokens_in_windows": int(st["tokens_in_windows"]), "docs_split": int(st["docs_split"]),
                                "docs_longer_than_window": int(np.count_nonzero(lengths > config.seq_len + 1))}
    for key in ("lang", "domain"):
        if key in kept.column_names:
            groups = pa.table({"g": kept.column(key).fill_null(""), "n": pa.array(lengths)}).group_by("g").aggregate([("n", "sum")])
            for g, n in zip(groups.column("g").to_pylist(), groups.column("n_sum").to_pylist()):
                counters[f"tokens_{key}:{g or 'unknown'}"] = int(n)
    reasons: dict[str, int] = {}
    for r in rejected.column("reason").to_pylist():
        reasons[r] = reasons.get(r, 0) + 1
    summary_cols = {"id": kept.column("id"), "tokens": pa.array(lengths)}
    for key in ("lang", "domain"):
        if key in kept.column_names:
            summary_cols[key] = kept.column(key).fill_null("unknown")
    summary = pa.table(summary_cols)
    record = {
        "name": name,
        "config_hash": config_hash,
        "fingerprint": fingerprint,
        "input": out.input_rows,
        "kept": kept.num_rows,
        "rejected": rejected.num_rows,
        "reasons": dict(sorted(reasons.items())),
        "counters": dict(sorted(counters.items())),
        "data": bin_file.to_json(),
        "idx_file": idx_file.to_json(),
        "pack_index_file": pidx_file.to_json(),
        "rejected_file": rejected_file.to_json(),
        "stats": shard_io.record_stats(str(out_dir), summary, rejected, pack_shard_stats(index, kept, lengths)),
    }
    shard_io.write_json_atomic(record, out_dir / shard_io.PROGRESS_DIR / f"{name}.json")
    return record


def pack_shard_stats(index: Any, kept: pa.Table, lengths: np.ndarray) -> dict[str, Any]:
    """A shard's packing statistics for stats.json, additive across shards: the fill of every
    window (real tokens / (seq_len + 1), fixed `unit50` bins), documents split across windows
    (per language when known) and UTF-8 bytes per language and domain (with the generic
    `tokens_by_*` sums: bytes per token)."""
    cap = index.seq_len + 1
    fill = index.window_tokens / cap if index.num_windows else np.zeros(0)
    pieces_per_doc = (np.bincount(index.piece_doc, minlength=lengths.size) if index.piece_doc.size
                      else np.zeros(lengths.size, np.int64))
    split = pieces_per_doc > 1
    counts: dict[str, Any] = {"split": {"split across windows": int(split.sum()), "whole": int((~split).sum())}}
    sums: dict[str, Any] = {}
    if "text_bytes" in kept.column_names:
        nbytes = kept.column("text_bytes")
        sums["text_bytes"] = int(pc.sum(nbytes).as_py() or 0)
        for key in ("lang", "domain"):
            if key in kept.column_names:
                g = pa.table({"g": kept.column(key).fill_null("unknown"), "n": nbytes}).group_by("g").aggregate([("n", "sum")])
                sums[f"bytes_by_{key}"] = dict(zip(g.column("g").to_pylist(), (int(v) for v in g.column("n_sum").to_pylist())))
    if "lang" in kept.column_names and lengths.size:
        langs = np.asarray(kept.column("lang").fill_null("unknown").to_pylist(), dtype=object)
        counts["split_by_lang"] = {str(l): int(n) for l, n in zip(*np.unique(langs[split], return_counts=True))}
    return {"hist": {"window_fill": shard_io.Histogram.of(fill, "unit50").to_json()}, "counts": counts, "sums": sums}


def pack_manifest(config: PackConfig, info: dict[str, Any], records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What a training job checks before reading: tokenizer identity, layout, per-shard files
    with checksums, token counts by language and domain, packing figures."""
    totals: dict[str, int] = {}
    for r in records:
        for k, v in r["counters"].items():
            totals[k] = totals.get(k, 0) + v
    slots = totals.get("windows", 0) * (config.seq_len + 1)
    docs = totals.get("docs", 0)
    pad_id = info["pad_id"] if info["pad_id"] is not None else (info["eos_id"] if info["eos_id"] is not None else 0)
    return {
        "format": "winnow-pack",
        "format_version": PACK_FORMAT_VERSION,
        "megatron": {"index_header": "MMIDIDX", "index_version": 1, "dtype_code": 4 if config.dtype == "int32" else 8,
                     "sequences_per_document": 1},
        "tokenizer_sha256": info["sha256"],
        "vocab_size": info["vocab_size"],
        "bos_id": info["bos_id"] if config.bos else None,
        "eos_id": info["eos_id"] if config.eos else None,
        "pad_id": pad_id,
        "bos": config.bos,
        "eos": config.eos,
        "dtype": config.dtype,
        "seq_len": config.seq_len,
        "packing": config.packing,
        "documents": docs,
        "tokens": totals.get("tokens", 0),
        "windows": totals.get("windows", 0),
        "packing_stats": {
            "docs_split": totals.get("docs_split", 0),
            "split_share": totals.get("docs_split", 0) / docs if docs else 0.0,
            "pad_tokens": totals.get("pad_tokens", 0),
            "padding_share": totals.get("pad_tokens", 0) / slots if slots else 0.0,
            "tokens_kept_share": totals.get("tokens_in_windows", 0) / totals["tokens"] if totals.get("tokens") else 1.0,
            "docs_longer_than_window": totals.get("docs_longer_than_window", 0),
        },
        "tokens_by_lang": {k.split(":", 1)[1]: v for k, v in sorted(totals.items()) if k.startswith("tokens_lang:")},
        "tokens_by_domain": {k.split(":", 1)[1]: v for k, v in sorted(totals.items()) if k.startswith("tokens_domain:")},
        "shards": [{"name": r["name"], "documents": r["kept"], "tokens": r["counters"].get("tokens", 0),
                    "windows": r["counters"].get("windows", 0), "bin": r["data"], "idx": r["idx_file"],
                    "pidx": r["pack_index_file"]} for r in records],
    }
