"""Runs stages on Ray under the stage contract: plan, skip committed shards, execute, check the
counts, write the manifest.

The runner knows stages only through `stages.base.Stage`; it lends them a `RayRuntime` (worker
count, a pool of actors for shard-map stages, progress bars) instead of being imported by them.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from winnow.pipeline import __version__
from winnow.pipeline import shards as shard_io
from winnow.pipeline.ray_runtime import init_ray
from winnow.stages.base import Runtime, ShardMapStage, ShardTask, Stage

log = logging.getLogger("winnow")

#: How often a shard is retried after its worker process died.
SHARD_RETRIES = 2


def _call_measured(fn: Callable[..., Any], *args: Any) -> tuple[Any, float, float]:
    """Run one task; also report its CPU seconds and the worker's peak RSS (MB)."""
    import resource

    c0 = time.process_time()
    out = fn(*args)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out, time.process_time() - c0, rss_mb


class ShardFailed(RuntimeError):
    """A stage raised on one shard; the message names the stage, the shard and its input."""


class RayRuntime(Runtime):
    """Ray, as lent to a stage: `workers` concurrent actors/tasks at most."""

    def __init__(self, workers: int | None = None, address: str | None = None, show_progress: bool = True):
        init_ray(address=address, workers=workers)
        import ray

        cpus = int(ray.available_resources().get("CPU", 1)) or 1
        self.workers = max(1, min(workers or cpus, cpus))
        self.show_progress = show_progress

    def progress(self, total: int, desc: str, unit: str = "shard") -> Any:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, disable=not self.show_progress,
                    file=sys.stderr, dynamic_ncols=True)

    def put(self, obj: Any) -> Any:
        """Store `obj` once in Ray's object store; pass the reference as a task argument."""
        import ray

        return ray.put(obj)

    def map_tasks(self, fn: Callable[..., Any], arg_list: Sequence[tuple], desc: str, unit: str = "task",
                  num_cpus: float = 1, memory: int | None = None, retries: int = SHARD_RETRIES,
                  stats: dict[str, dict[str, float]] | None = None, stats_key: str | None = None) -> list[Any]:
        """Run `fn(*args)` for every tuple of `arg_list` as Ray tasks; results in argument order.

        The one way a whole-dataset stage schedules Ray work (stages never import `ray` for it):
        at most `workers` tasks in flight, each asking Ray for `num_cpus` (and `memory` bytes, so
        the autoscaler can size nodes); a task whose worker process dies is retried `retries`
        times (tasks must be idempotent: a retried or resumed task finds or rewrites its output);
        a progress bar; per-`desc` wall time, summed task CPU time and peak worker RSS go into
        `stats[stats_key or desc]` when given. Arguments may be `put` references."""
        import ray

        if not arg_list:
            return []
        opts: dict[str, Any] = {"num_cpus": num_cpus, "max_retries": retries}
        if memory:
            opts["memory"] = int(memory)
        remote = ray.remote(**opts)(_call_measured)
        window = max(1, int(self.workers))
        bar = self.progress(len(arg_list), desc=desc, unit=unit)
        results: list[Any] = [None] * len(arg_list)
        pending: dict[Any, int] = {}
        nxt = 0
        t0 = time.perf_counter()
        cpu = rss = 0.0
        try:
            while nxt < len(arg_list) or pending:
                while nxt < len(arg_list) and len(pending) < window:
                    pending[remote.remote(fn, *arg_list[nxt])] = nxt
                    nxt += 1
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    out, c, r = ray.get(ref)
                    results[pending.pop(ref)] = out
                    cpu += c
                    rss = max(rss, r)
                    bar.update(1)
        finally:
            bar.close()
            for ref in pending:
                ray.cancel(ref, force=True)
        if stats is not None:
            st = stats.setdefault(stats_key or desc, {"wall_s": 0.0, "cpu_s": 0.0, "tasks": 0, "max_rss_mb": 0.0})
            st["wall_s"] += time.perf_counter() - t0
            st["cpu_s"] += cpu
            st["tasks"] += len(arg_list)
            st["max_rss_mb"] = max(st["max_rss_mb"], rss)
        return results

    def map_shards(self, stage: ShardMapStage, tasks: Sequence[ShardTask], out_dir: Path) -> list[dict[str, Any]]:
        """Run `stage.run_and_commit` over tasks on a pool of actors: each actor calls
        `stage.setup()` once (models load once per worker), then takes shards as it frees up."""
        import ray
        from ray.util import ActorPool

        if not tasks:
            return []

        # A worker process that dies (a segfault in a native library, OOM-kill) is restarted and
        # its shard retried; a Python exception in the stage is not retried, it names the shard.
        @ray.remote(num_cpus=1, max_restarts=SHARD_RETRIES, max_task_retries=SHARD_RETRIES)
        class ShardWorker:
            def __init__(self, stage: ShardMapStage):
                self.stage = stage
                self.stage.setup()

            def run(self, task: ShardTask, out_dir: str) -> dict[str, Any]:
                try:
                    return self.stage.run_and_commit(task, Path(out_dir))
                except Exception as exc:
                    raise ShardFailed(f"{self.stage.name}: shard {task.name} (input {', '.join(task.inputs)}) "
                                      f"failed: {type(exc).__name__}: {exc}") from exc

        n = min(self.workers, len(tasks))
        stage_ref = ray.put(stage)
        actors = [ShardWorker.remote(stage_ref) for _ in range(n)]
        pool = ActorPool(actors)
        records: dict[str, dict[str, Any]] = {}
        bar = self.progress(len(tasks), desc=stage.name)
        docs = 0
        try:
            for record in pool.map_unordered(lambda a, t: a.run.remote(t, str(out_dir)), list(tasks)):
                records[record["name"]] = record
                docs += record["input"]
                bar.set_postfix(docs=docs, kept=sum(r["kept"] for r in records.values()), refresh=False)
                bar.update(1)
        finally:
            bar.close()
            for a in actors:
                ray.kill(a)
        return [records[t.name] for t in tasks]


def _prepare_out_dir(stage: Stage, out_dir: Path) -> dict[str, Any] | None:
    """Return the finished manifest if this stage already completed here under the same config;
    clear the directory if it holds output of another config (stale shards must not mix in)."""
    manifest_path = out_dir / shard_io.MANIFEST
    h = stage.config_hash()
    if manifest_path.exists():
        manifest = shard_io.read_json(manifest_path)
        if manifest.get("config_hash") == h and manifest.get("stage") == stage.name:
            return manifest
    progress_dir = out_dir / shard_io.PROGRESS_DIR
    if progress_dir.exists():
        hashes = set()
        for p in progress_dir.glob("*.json"):
            try:
                hashes.add(shard_io.read_json(p).get("config_hash"))
            except (OSError, ValueError):
                continue
        if hashes - {h}:
            log.warning("%s: output of another config found in %s; clearing it", stage.name, out_dir)
            for sub in (shard_io.DATA_DIR, shard_io.REJECTED_DIR, shard_io.PROGRESS_DIR, "_work"):
                shutil.rmtree(out_dir / sub, ignore_errors=True)
    if manifest_path.exists():
        manifest_path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    return None


def build_manifest(stage: Stage, inputs: Sequence[str], records: Sequence[dict[str, Any]],
                   tasks: Sequence[ShardTask] = ()) -> dict[str, Any]:
    """The stage's manifest from its shard commit records; raises AccountingError if the counts
    do not add up (kept + rejected == input, per shard and in total)."""
    total_in = total_kept = total_rej = 0
    reasons: dict[str, int] = {}
    counters: dict[str, int] = {}
    for r in records:
        if r["kept"] + r["rejected"] != r["input"]:
            raise shard_io.AccountingError(f"{stage.name} shard {r['name']}: kept {r['kept']} + rejected {r['rejected']} != input {r['input']}")
        total_in += r["input"]
        total_kept += r["kept"]
        total_rej += r["rejected"]
        for k, v in r["reasons"].items():
            reasons[k] = reasons.get(k, 0) + v
        for k, v in r.get("counters", {}).items():
            counters[k] = counters.get(k, 0) + v
    if sum(reasons.values()) != total_rej:
        raise shard_io.AccountingError(f"{stage.name}: rejection reasons sum to {sum(reasons.values())}, rejected is {total_rej}")
    return {
        "stage": stage.name,
        "stage_version": stage.version,
        "winnow_version": __version__,
        "config_hash": stage.config_hash(),
        "config": stage.config.model_dump(mode="json"),
        "inputs": list(inputs),
        "input": total_in,
        "kept": total_kept,
        "rejected": total_rej,
        "reasons": dict(sorted(reasons.items())),
        "counters": dict(sorted(counters.items())),
        "shards": [r["data"] for r in records],
        "shard_sources": {t.name: list(t.inputs) for t in tasks},
        "rejected_shards": [r["rejected_file"] for r in records],
    }


def run_stage(stage: Stage, inputs: Sequence[str], out_dir: str | Path, runtime: Runtime | None = None) -> dict[str, Any]:
    """Run one stage from `inputs` into `out_dir` and return its manifest.

    Resumes: shards committed under the same config hash and input fingerprint are not redone;
    a finished stage with the same config returns its manifest at once.
    """
    out_dir = Path(out_dir)
    done = _prepare_out_dir(stage, out_dir)
    if done is not None:
        log.info("%s: already complete in %s (config %s); skipping", stage.name, out_dir, done["config_hash"])
        return done
    runtime = runtime or RayRuntime()
    started = time.monotonic()
    tasks = stage.plan(list(inputs))
    h = stage.config_hash()
    committed = {t.name: shard_io.committed_shard(out_dir, t.name, h, t.fingerprint) for t in tasks}
    todo = [t for t in tasks if committed[t.name] is None]
    if len(todo) < len(tasks):
        log.info("%s: resuming, %d of %d shards already committed", stage.name, len(tasks) - len(todo), len(tasks))
    if isinstance(stage, ShardMapStage):
        new_records = stage.execute(todo, out_dir, runtime)
        by_name = {r["name"]: r for r in new_records}
        records = [committed[t.name] or by_name[t.name] for t in tasks]
    else:
        # Whole-dataset stages (dedup) see every task: their phases need all shards, and they
        # skip committing shards that are already committed themselves.
        records = stage.execute(tasks, out_dir, runtime)
    manifest = build_manifest(stage, inputs, records, tasks)
    shard_io.write_json_atomic(manifest, out_dir / shard_io.MANIFEST)
    elapsed = time.monotonic() - started
    shard_io.write_json_atomic({"stage": stage.name, "seconds": round(elapsed, 3), "input": manifest["input"],
                                "kept": manifest["kept"], "rejected": manifest["rejected"],
                                "reasons": manifest["reasons"], "counters": manifest["counters"],
                                "shards": len(tasks), "shards_resumed": len(tasks) - len(todo)},
                               out_dir / "stats.json")
    return manifest
