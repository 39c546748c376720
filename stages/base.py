"""The stage contract every winnow stage implements.

A stage turns input shards into output shards under the contract of ARCHITECTURE.md: every input
row is either kept or rejected with a reason, shards are committed atomically, and a rerun skips
shards already committed under the same config hash and input fingerprint.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from winnow.pipeline import shards as shard_io


class StageConfig(BaseModel):
    """Base of every stage's config section: unknown keys are an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_rejected_text: bool = False


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
    """A cheap identity for input files: path, size and mtime for local files, the path otherwise."""
    parts = []
    for p in paths:
        try:
            st = os.stat(p)
            parts.append(f"{os.path.abspath(p)}:{st.st_size}:{int(st.st_mtime)}")
        except OSError:
            parts.append(p)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


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

    def __init__(self, config: StageConfig | dict[str, Any] | None = None):
        if config is None:
            config = self.Config()
        elif isinstance(config, dict):
            config = self.Config(**config)
        self.config = config

    # --- identity -------------------------------------------------------------------------
    def config_hash(self) -> str:
        payload = {"stage": self.name, "version": self.version, "config": self.config.model_dump(mode="json")}
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
        """One task per input shard of the given stage directories, named part-00000…"""
        files: list[str] = []
        for d in inputs:
            files.extend(str(p) for p in shard_io.input_shards(d))
        return [ShardTask(index=i, name=shard_name(i), inputs=(f,), fingerprint=file_fingerprint([f]))
                for i, f in enumerate(files)]

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
