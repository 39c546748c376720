"""winnow's stages: each module is one stage, a pure transform of Arrow data plus the few lines
that map it over shards with Ray. `registry()` is what the runner, the config and the CLI read."""

from __future__ import annotations

from winnow.stages.base import Stage, ShardMapStage, ShardTask, ShardOutput  # noqa: F401


def registry() -> dict[str, type[Stage]]:
    """Stage name -> class, in pipeline order. Imported lazily so `import stages` stays cheap."""
    from winnow.stages.decontaminate import DecontaminateStage
    from winnow.stages.dedup import DedupStage
    from winnow.stages.filter import FilterStage
    from winnow.stages.ingest import IngestStage
    from winnow.stages.pack import PackStage
    from winnow.stages.remix import RemixStage
    from winnow.stages.tokenizer_train import TokenizerStage

    return {cls.name: cls for cls in (IngestStage, FilterStage, DedupStage, DecontaminateStage, RemixStage, TokenizerStage, PackStage)}
