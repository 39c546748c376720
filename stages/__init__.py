"""winnow's stages: each module is one stage, a pure transform of Arrow data plus the few lines
that map it over shards with Ray. `STAGES` is the registry the runner and the CLI read."""

from __future__ import annotations

from stages.base import Stage, ShardMapStage, ShardTask, ShardOutput  # noqa: F401


def registry() -> dict[str, type[Stage]]:
    """Stage name -> class, in pipeline order. Imported lazily so `winnow --help` stays fast."""
    from stages.ingest import IngestStage

    found: list[type[Stage]] = [IngestStage]
    try:
        from stages.filter import FilterStage
        found.append(FilterStage)
    except ImportError as exc:  # only while the module does not exist yet
        if "stages.filter" not in str(exc):
            raise
    try:
        from stages.dedup import DedupStage
        found.append(DedupStage)
    except ImportError as exc:
        if "stages.dedup" not in str(exc):
            raise
    return {cls.name: cls for cls in found}
