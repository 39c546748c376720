"""The stage contract every winnow stage implements.

A stage turns input shards into output shards under the contract of ARCHITECTURE.md: every input
row is either kept or rejected with a reason, shards are committed atomically, and a rerun skips
shards already committed under the same config hash and input fingerprint.

Identity: a committed shard is reused only when both its config hash (stage name, `version`, the
config without its execution settings, see `identity_config`) and its task fingerprint (what its
inputs are now, see `Stage.plan`) match. Whole-dataset stages (`whole_dataset = True`) key every
task by a digest of all task fingerprints, since each of their shards depends on every input.

Two shapes:
- `ShardMapStage`: output shard i depends only on input shard i (ingest, filter). The stage
  implements `setup` (load models, once per Ray worker) and `process_shard`; the runner maps it
  over shards with a pool of Ray actors.
- `Stage` with its own `execute` (dedup): several Ray phases over all shards, ending in the same
  per-shard commits. The runner still plans, resumes, builds the manifest and checks the counts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from winnow.pipeline import shards as shard_io


class StageConfig(BaseModel):
    """Base of every stage's config section: unknown keys are an error, not a silent default.

    Two field markers (pydantic `json_schema_extra`):
    - `{"execution": True}`: a setting that cannot change the output bytes (workers, batch size,
      partitions, memory budgets, keeping work files). Left out of the config hash, so changing
      it never wipes finished work.
    - `{"path": True}`: a local file or directory (str, or list/dict of str). Made absolute
      against the directory winnow was started in when the stage is built on the driver, before
      the config reaches a Ray worker whose working directory is elsewhere.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_rejected_text: bool = False


EXECUTION: dict[str, Any] = {"execution": True}
PATH: dict[str, Any] = {"path": True}


def _marked(field_info: Any, key: str) -> bool:
    extra = field_info.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get(key))


def identity_config(config: BaseModel) -> dict[str, Any]:
    """The config as JSON without its execution settings (nested sections included): what the
    config hash is made of."""
    out: dict[str, Any] = {}
    for name, info in type(config).model_fields.items():
        if _marked(info, "execution"):
            continue
        value = getattr(config, name)
        if isinstance(value, BaseModel):
            out[name] = identity_config(value)
        else:
            out[name] = config.model_dump(mode="json", include={name})[name]
    return out


def _absolute(value: Any) -> Any:
    if isinstance(value, str):
        if not value or ("://" in value and not value.startswith("file://")):
            return value
        return os.path.abspath(os.path.expanduser(value[len("file://"):] if value.startswith("file://") else value))
    if isinstance(value, (list, tuple)):
        return type(value)(_absolute(v) for v in value)
    if isinstance(value, dict):
        return {k: _absolute(v) for k, v in value.items()}
    return value


def resolve_config_paths(config: BaseModel) -> BaseModel:
    """A copy of `config` whose `path`-marked fields (in nested sections too) are absolute."""
    update: dict[str, Any] = {}
    for name, info in type(config).model_fields.items():
        value = getattr(config, name)
        if _marked(info, "path") and value is not None:
            update[name] = _absolute(value)
        elif isinstance(value, BaseModel):
            resolved = resolve_config_paths(value)
            if resolved is not value:
                update[name] = resolved
    return config.model_copy(update=update) if update else config


@dataclass(frozen=True)
class ShardTask:
    """One unit of work: output shard `name` made from `inputs` (files or parquet shards)."""

    index: int
    name: str
    inputs: tuple[str, ...]
    fingerprint: str = ""


@dataclass
class ShardOutput:
    """What `process_shard` returns: kept rows, rejected rows (id, url, reason[, text]), counts."""

    kept: pa.Table
    rejected: pa.Table
    input_rows: int
    counters: dict[str, int] = field(default_factory=dict)


def file_fingerprint(paths: Sequence[str]) -> str:
    """The identity of raw input files: absolute path, size and mtime in nanoseconds for a local
    file; for an fsspec URL what `fs.info` gives (size, ETag or modification time). A missing
    file raises `InputUnreadable` naming it (see `stages.remote_io.raw_file_identity`)."""
    from winnow.stages.remote_io import raw_file_identity

    return _digest([raw_file_identity(p) for p in paths])


def shard_fingerprint(shards: Sequence[shard_io.InputShard]) -> str:
    """The identity of upstream stage shards: the sha256 their stage's manifest records (their
    bytes, not their mtime: a rerun upstream that rewrites equal bytes changes nothing here);
    path, size and mtime for a hand-made shard without a manifest."""
    return _digest([f"sha256:{s.sha256}" if s.sha256 else f"file:{file_fingerprint([str(s.path)])}" for s in shards])


def whole_dataset_fingerprint(tasks: Sequence["ShardTask"]) -> str:
    """One digest of every task's fingerprint, in task order: the identity of each shard of a
    stage whose every output shard depends on all its inputs."""
    return _digest([f"{t.name}={t.fingerprint}" for t in tasks])


def _digest(parts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:16]


class StageCheckFailed(RuntimeError):
    """A stage's own check of its finished output failed (`Stage.check_output`)."""


def shard_name(index: int) -> str:
    return f"part-{index:05d}"


class Stage(ABC):
    """A pipeline stage. Subclasses set `name`, `Config`, and `version` (bump it when the same
    config would now produce different bytes, so old shards are not reused)."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    Config: ClassVar[type[StageConfig]] = StageConfig
    help: ClassVar[str] = ""
    #: True for stages whose inputs are raw files (ingest); False: inputs are stage directories.
    reads_raw_files: ClassVar[bool] = False
    #: "documents": the next stage of `winnow run` reads this stage's output; "artifact": it makes
    #: a model (a tokenizer) that later stages get through `with_artifacts`, and the document
    #: chain skips it.
    produces: ClassVar[str] = "documents"
    #: True when every output shard depends on all inputs (dedup, remix): `plan_tasks` then keys
    #: every task by a digest of all task fingerprints, so any input change redoes the stage.
    whole_dataset: ClassVar[bool] = False
    #: See `ShardMapStage.relocatable`; never for whole-dataset stages.
    relocatable: ClassVar[bool] = False

    def __init__(self, config: StageConfig | dict[str, Any] | None = None):
        if config is None:
            config = self.Config()
        elif isinstance(config, dict):
            config = self.Config(**config)
        self.config = resolve_config_paths(config)  # type: ignore[assignment]

    # --- identity -------------------------------------------------------------------------
    def config_hash(self) -> str:
        """Stage name, `version` and the config without its execution settings."""
        payload = {"stage": self.name, "version": self.version, "config": identity_config(self.config)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def with_artifacts(self, artifacts: dict[str, str]) -> "Stage":
        """This stage, given the output directories of earlier artifact stages of the same
        `winnow run` (stage name -> dir). Default: unchanged. Pack uses it to find the tokenizer."""
        return self

    # --- CLI hooks: a stage's own flags, mapped onto its config section --------------------
    @classmethod
    def add_cli_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add this stage's own flags (defaults must be None: only given flags override YAML)."""

    @classmethod
    def cli_overrides(cls, args: argparse.Namespace) -> dict[str, Any]:
        """Config keys set by this stage's flags (only those the user gave)."""
        return {}

    # --- planning ---------------------------------------------------------------------------
    def plan(self, inputs: Sequence[str]) -> list[ShardTask]:
        """One task per input shard of the given stage directories, named part-00000…, keyed by
        the shard's checksum in its stage's manifest (`shard_fingerprint`)."""
        shards: list[shard_io.InputShard] = []
        for d in inputs:
            shards.extend(shard_io.input_shard_entries(d))
        return [ShardTask(index=i, name=shard_name(i), inputs=(str(s.path),), fingerprint=shard_fingerprint([s]))
                for i, s in enumerate(shards)]

    def plan_tasks(self, inputs: Sequence[str]) -> list[ShardTask]:
        """`plan`, then for a `whole_dataset` stage every task keyed by the digest of all of them.
        What the runner calls; stages override `plan`, not this."""
        tasks = self.plan(inputs)
        if self.whole_dataset:
            digest = whole_dataset_fingerprint(tasks)
            tasks = [replace(t, fingerprint=digest) for t in tasks]
        return tasks

    def check_output(self, manifest: dict[str, Any], records: Sequence[dict[str, Any]], out_dir: Path) -> None:
        """Called by the runner once every shard is committed and the counts add up, before the
        manifest is written: raise to fail the stage (e.g. too many filter errors), or add the
        stage's own section to `manifest` in place (remix's per-domain report, pack's tokenizer
        and packing figures). It must be deterministic: equal runs give equal manifests.
        Default: nothing."""

    @abstractmethod
    def execute(self, tasks: Sequence[ShardTask], out_dir: Path, runtime: "Runtime") -> list[dict[str, Any]]:
        """Produce and commit every task's shard; return the commit records in task order."""


class Runtime(ABC):
    """What the runner lends a stage: how many workers, `map_shards` for shard-map stages and
    `map_tasks` (+ `put`) for every whole-dataset phase, with progress bars. Stages get this
    object instead of importing the runner or scheduling Ray themselves."""

    workers: int

    @abstractmethod
    def map_shards(self, stage: "ShardMapStage", tasks: Sequence[ShardTask], out_dir: Path) -> list[dict[str, Any]]:
        ...

    @abstractmethod
    def map_tasks(self, fn: Callable[..., Any], arg_list: Sequence[tuple], desc: str, unit: str = "task",
                  num_cpus: float = 1, memory: int | None = None, retries: int = 2,
                  stats: dict[str, dict[str, float]] | None = None, stats_key: str | None = None) -> list[Any]:
        """`[fn(*args) for args in arg_list]`, run as retried Ray tasks; results in order."""

    @abstractmethod
    def put(self, obj: Any) -> Any:
        """Share a large read-only object with tasks (a Ray object reference)."""

    @abstractmethod
    def progress(self, total: int, desc: str, unit: str = "shard") -> Any:
        """A tqdm-like progress bar (update(n), close())."""


class ShardMapStage(Stage):
    """A stage whose output shard i depends only on input shard i."""

    #: The bytes of an output shard depend only on the config and the task's inputs (its
    #: fingerprint), not on its position: when inputs are added or removed, the runner renames
    #: a finished shard whose input moved instead of redoing it. Set False if that is not true.
    relocatable: ClassVar[bool] = True
    #: Memory (MiB) each shard task asks Ray for, so Ray packs no more shards on a node than fit
    #: and the autoscaler sizes nodes by it: the worker's measured peak on the real sample
    #: (bench/pipeline.py: imports + models, 0.3-0.65 GB) plus room for a CommonCrawl-sized shard
    #: (one ~1 GB WARC: ~30k pages, ~150 MB of text held as Arrow with its outputs).
    task_memory_mb: ClassVar[int] = 1024

    def setup(self) -> None:
        """Load models and other per-worker state. Called once per Ray actor."""

    @abstractmethod
    def process_shard(self, task: ShardTask) -> ShardOutput:
        ...

    def execute(self, tasks: Sequence[ShardTask], out_dir: Path, runtime: Runtime) -> list[dict[str, Any]]:
        return runtime.map_shards(self, tasks, out_dir)

    def run_and_commit(self, task: ShardTask, out_dir: Path) -> dict[str, Any]:
        """Process one shard and commit it; what each Ray actor calls."""
        out = self.process_shard(task)
        return shard_io.commit_shard(out_dir, task.name, kept=out.kept, rejected=out.rejected,
                                     input_rows=out.input_rows, config_hash=self.config_hash(),
                                     fingerprint=task.fingerprint, counters=out.counters)
