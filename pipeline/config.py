"""The pipeline config: one YAML file, validated before anything runs.

    inputs: [../shared/data/resiliparse/*.warc.gz, ...]   # files, globs, URLs, *.paths.gz
    output: out/demo                                       # one sub-directory per stage
    ray: {address: null, workers: 2}                        # null address → local Ray
    stages: [ingest, filter, dedup]                         # what to run, in order
    ingest: {extractor: resiliparse}                        # each stage's own section
    filter: {...}

Each stage section is validated by that stage's pydantic `Config`; unknown keys anywhere are an
error that names them, never a silently ignored typo. Relative `inputs` and `output` (and the file
paths of stage sections, see `StageConfig`) are resolved against the directory winnow was started
in, on the driver, before any task reaches a Ray worker whose working directory is elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from winnow.stages import registry
from winnow.stages.base import Stage, StageConfig


class ConfigError(ValueError):
    """The config file is missing, unparseable or invalid; the message says where."""


class RayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str | None = Field(None, description="Ray cluster address; null → start a local Ray")
    workers: int | None = Field(None, ge=1, description="cap on Ray tasks in flight (default: none; one task per shard, placed by Ray as nodes join)")


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    inputs: list[str] = Field(default_factory=list)
    output: str = "out"
    ray: RayConfig = Field(default_factory=RayConfig)
    stages: list[str]

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, v: list[str]) -> list[str]:
        known = registry()
        unknown = [s for s in v if s not in known]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; known: {list(known)}")
        if len(set(v)) != len(v):
            raise ValueError("a stage is listed twice")
        return v

    def stage_config(self, name: str) -> StageConfig:
        """The validated config section of stage `name` (defaults when the section is absent)."""
        cls = registry()[name]
        section = (self.model_extra or {}).get(name) or {}
        return cls.Config(**section)

    def build_stage(self, name: str) -> Stage:
        return registry()[name](self.stage_config(name))


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read and validate a pipeline YAML; `overrides` replace top-level keys (CLI flags)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    for key, value in (overrides or {}).items():
        if value is not None:
            raw[key] = value
    return validate_config(raw, source=str(path))


def validate_config(raw: dict[str, Any], source: str = "<config>") -> PipelineConfig:
    known = registry()
    extra = set(raw) - set(PipelineConfig.model_fields) - set(known)
    if extra:
        raise ConfigError(f"{source}: unknown top-level key(s) {sorted(extra)}; "
                          f"allowed: {sorted(PipelineConfig.model_fields)} and stage sections {list(known)}")
    try:
        cfg = PipelineConfig(**raw)
        for name in known:
            if name in raw:
                cfg.stage_config(name)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    cfg.inputs = [_absolute(p) for p in cfg.inputs]
    cfg.output = _absolute(cfg.output)
    return cfg


def _absolute(path: str) -> str:
    """A local path made absolute against the current directory; URLs unchanged."""
    if "://" in path and not path.startswith("file://"):
        return path
    return os.path.abspath(os.path.expanduser(path[len("file://"):] if path.startswith("file://") else path))
