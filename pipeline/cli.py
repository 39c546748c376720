"""The `winnow` command line: `winnow run CONFIG` runs a whole pipeline; `winnow STAGE` runs one
stage (`--in DIR --out DIR`, ingest takes input files); `winnow lm` trains perplexity models."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from winnow.pipeline import __version__

log = logging.getLogger("winnow")


def _common_ray_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None, help="cap on Ray tasks in flight (default: none; one task per shard, placed by Ray as nodes join)")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (default: $RAY_ADDRESS, else start a local Ray)")


def summarize(manifest: dict[str, Any], out_dir: Path) -> str:
    """One human line per stage: counts and the top rejection reasons."""
    reasons = sorted(manifest["reasons"].items(), key=lambda kv: (-kv[1], kv[0]))[:6]
    shown = ", ".join(f"{k}={v}" for k, v in reasons) or "none"
    repeated = int(manifest.get("counters", {}).get("repeated", 0))  # remix: extra copies handed on
    extra = f" + {repeated:,} repeated copies" if repeated else ""
    return (f"{manifest['stage']:>13}: input {manifest['input']:,}  kept {manifest['kept']:,}{extra}  "
            f"rejected {manifest['rejected']:,}  ({shown})  → {out_dir}")


def cmd_run(args: argparse.Namespace) -> int:
    from winnow.pipeline.config import load_config
    from winnow.pipeline.runner import RayRuntime, run_stage
    from winnow.stages.remote_io import is_url, join

    cfg = load_config(args.config, overrides={"output": args.out})
    # where winnow was started, before any worker sees it; an object-store URL stays as it is
    out_root: Any = cfg.output if is_url(str(cfg.output)) else Path(cfg.output).absolute()
    runtime = RayRuntime(workers=args.workers or cfg.ray.workers, address=args.address or cfg.ray.address)
    previous: list[str] | None = None
    artifacts: dict[str, str] = {}  # stage name -> output dir of stages that make a model, not documents
    for name in cfg.stages:
        stage = cfg.build_stage(name).with_artifacts(artifacts)
        if previous is None:
            inputs = list(cfg.inputs)
            if not inputs:
                raise ValueError(f"{args.config}: `inputs` is empty; nothing for stage {name} to read")
        else:
            inputs = previous
        stage_out = join(out_root, name) if isinstance(out_root, str) else out_root / name
        manifest = run_stage(stage, inputs, stage_out, runtime)
        print(summarize(manifest, stage_out), flush=True)
        if stage.produces == "documents":
            previous = [str(stage_out)]   # the next stage reads these documents
        else:
            artifacts[name] = str(stage_out)  # e.g. a trained tokenizer, for the pack stage
    root = out_root if isinstance(out_root, str) else out_root.resolve()
    print(f"outputs: {root}/<stage>/data/  (parquet; remix: Arrow IPC .arrow; pack: Megatron "
          f".bin/.idx; tokenizer: tokenizer.json in {root}/tokenizer/; manifest.json, "
          f"stats.json and rejected/ beside each)", flush=True)
    return 0


def _stage_section(config_path: str | None, stage_name: str) -> dict[str, Any]:
    """A stage's section from --config: a full pipeline YAML (its `STAGE:` key) or a bare section."""
    if not config_path:
        return {}
    raw = yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{config_path}: expected a mapping")
    if "stages" in raw or stage_name in raw:
        return dict(raw.get(stage_name) or {})
    return raw


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`, merging nested sections key by key (a flag that sets
    `perplexity.cutoffs` must not wipe the YAML's `perplexity.models`)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def cmd_stage(args: argparse.Namespace) -> int:
    from winnow.pipeline.runner import RayRuntime, run_stage
    from winnow.stages import registry
    from winnow.stages.remote_io import is_url

    cls = registry()[args.stage_name]
    section = deep_merge(_stage_section(args.config, cls.name), cls.cli_overrides(args))
    stage = cls(section)
    inputs = args.inputs
    out: Any = args.out if is_url(args.out) else Path(args.out)  # Path("s3://b/x") would be "s3:/b/x"
    runtime = RayRuntime(workers=args.workers, address=args.address)
    manifest = run_stage(stage, inputs, out, runtime)
    print(summarize(manifest, out), flush=True)
    counters = manifest.get("counters", {})
    if stage.produces == "artifact" and "vocab_size" in counters:  # the tokenizer: what was trained, where
        print(f"tokenizer: {counters['vocab_size']:,} entries ({counters['learned_vocab_size']:,} learned) from "
              f"{counters['sample_docs']:,} of {manifest['input']:,} documents, {counters['sample_bytes'] / 1e6:,.1f} MB "
              f"-> {out}/tokenizer.json", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from winnow.stages import registry

    parser = argparse.ArgumentParser(
        prog="winnow",
        description="CommonCrawl → pretraining token streams, on Ray. Run a whole pipeline with "
                    "`winnow run CONFIG`, or one stage at a time.")
    parser.add_argument("--version", action="version", version=f"winnow {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="run every stage a pipeline config names",
                       description="Run the stages listed in CONFIG into OUT/<stage>/, resuming finished shards.")
    p.add_argument("config", help="pipeline YAML (see configs/demo.yaml)")
    p.add_argument("--out", default=None, help="output root (default: the config's `output`)")
    _common_ray_args(p)
    p.set_defaults(func=cmd_run)

    for name, cls in registry().items():
        p = sub.add_parser(name, help=cls.help, description=(cls.__doc__ or cls.help).strip().splitlines()[0])
        if cls.reads_raw_files:
            p.add_argument("inputs", nargs="+", metavar="INPUT",
                           help="files, globs, fsspec URLs (s3://, https://) or CommonCrawl *.paths.gz listings")
        else:
            p.add_argument("--in", dest="inputs", nargs="+", required=True, metavar="DIR",
                           help="stage output directories (or directories of parquet shards)")
        p.add_argument("--out", required=True, metavar="DIR", help="this stage's output directory")
        p.add_argument("--config", default=None, metavar="YAML",
                       help=f"a pipeline config (its `{name}:` section is used) or a bare `{name}` section")
        cls.add_cli_arguments(p)
        _common_ray_args(p)
        p.set_defaults(func=cmd_stage, stage_name=name)

    from winnow.pipeline.lm import add_lm_commands

    add_lm_commands(sub)

    # `winnow dashboard RUNDIR --out report.html [--serve PORT]` and `winnow stats RUNDIR`
    from winnow.pipeline.dashboard import add_commands as add_dashboard_commands

    add_dashboard_commands(sub)
    return parser


#: Commands nested under a stage name (`winnow remix train-classifier …`) that are not the stage
#: itself: (stage, verb) -> "module:function", the function taking the remaining argv and
#: returning an exit code. Checked before the main parser, so the stage keeps its plain flags.
SUBCOMMANDS: dict[tuple[str, str], str] = {
    ("tokenizer", "eval"): "winnow.tokenizer.evaluate:main",
    ("remix", "train-classifier"): "winnow.stages.remix.cli:train_classifier_main",
    ("dedup", "index"): "winnow.stages.dedup.index:index_main",
}


#: Verbs that are the stage command itself under a second name: `winnow tokenizer train --in … --out …`
#: is `winnow tokenizer --in … --out …` (the stage run through the runner, as in `winnow run`).
STAGE_VERBS: dict[tuple[str, str], str] = {("tokenizer", "train"): "tokenizer"}


def _dispatch_subcommand(argv: Sequence[str]) -> int | None:
    rest = [a for a in argv if a not in ("-v", "--verbose")]
    if len(rest) >= 2 and (rest[0], rest[1]) in SUBCOMMANDS:
        import importlib

        module, func = SUBCOMMANDS[(rest[0], rest[1])].split(":")
        logging.basicConfig(level=logging.DEBUG if len(rest) < len(argv) else logging.INFO,
                            format="%(asctime)s winnow %(levelname)s %(message)s", datefmt="%H:%M:%S")
        return int(getattr(importlib.import_module(module), func)(rest[2:]) or 0)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = [a for a in argv if a not in ("-v", "--verbose")]
    if len(rest) >= 2 and (rest[0], rest[1]) in STAGE_VERBS:
        argv = [a for a in argv if a in ("-v", "--verbose")] + [STAGE_VERBS[(rest[0], rest[1])]] + rest[2:]
    code = _dispatch_subcommand(argv)
    if code is not None:
        return code
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s winnow %(levelname)s %(message)s", datefmt="%H:%M:%S")
    from winnow.filters.errors import ModelError
    from winnow.pipeline.config import ConfigError
    from winnow.pipeline.shards import AccountingError, NotAStageOutput
    from winnow.stages.base import StageCheckFailed
    from winnow.stages.ingest_sources import InputNotFound

    try:
        return int(args.func(args) or 0)
    except (ConfigError, InputNotFound, NotAStageOutput, ModelError, FileNotFoundError, ValueError) as exc:
        print(f"winnow: error: {exc}", file=sys.stderr)
        return 2
    except StageCheckFailed as exc:
        print(f"winnow: error: {exc}", file=sys.stderr)
        return 1
    except AccountingError as exc:
        print(f"winnow: accounting error (a document was lost or invented): {exc}", file=sys.stderr)
        return 3
    except Exception as exc:
        from winnow.pipeline.runner import ShardFailed

        failed = exc if isinstance(exc, ShardFailed) else getattr(exc, "cause", None)
        if not isinstance(failed, ShardFailed):
            raise
        print(f"winnow: error: {failed} (committed shards are kept; rerun to resume)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
