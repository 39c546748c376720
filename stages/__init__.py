"""winnow's stages: each module is one stage, a pure transform of Arrow data plus the few lines
that map it over shards with Ray. `registry()` is what the runner, the config and the CLI read."""

from __future__ import annotations

from stages.base import Stage, ShardMapStage, ShardTask, ShardOutput  # noqa: F401


def registry() -> dict[str, type[Stage]]:
    """Stage name -> class, in pipeline order. Imported lazily so `import stages` stays cheap."""
    from stages.dedup import DedupStage
    from stages.filter import FilterStage
    from stages.ingest import IngestStage

    return {cls.name: cls for cls in (IngestStage, FilterStage, DedupStage)}
