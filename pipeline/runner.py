"""Runs stages on Ray under the stage contract: plan, skip committed shards, execute, check the
counts, write the manifest.

The runner knows stages only through `stages.base.Stage`; it lends them a `RayRuntime` (one Ray
task per shard or phase task, placed by Ray on any node with the resources it asks for; progress
bars) instead of being imported by them. Parallelism comes from the number of shards and Ray's
scheduling, never from the CPUs counted at start-up, so nodes that join mid-stage (the autoscaler,
a KubeRay worker group still starting) take work as soon as they are up.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from winnow.pipeline import __version__
from winnow.pipeline import shards as shard_io
from winnow.pipeline.ray_runtime import init_ray
from winnow.stages import remote_io
from winnow.stages.base import Runtime, ShardMapStage, ShardTask, Stage

log = logging.getLogger("winnow")

#: How often a shard is retried after its worker process died.
SHARD_RETRIES = 2


def _call_measured(fn: Callable[..., Any], *args: Any) -> tuple[Any, float, float, str]:
    """Run one task; also report its CPU seconds, the worker's peak RSS (MB) and the id of the
    Ray node it ran on."""
    import resource

    if fn is not _run_shard:
        _SET_UP.clear()  # a worker moved on to another phase: free the last shard-map stage's models
    c0 = time.process_time()
    out = fn(*args)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out, time.process_time() - c0, rss_mb, _node_id()


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() or ""
    except Exception:  # noqa: BLE001 - outside Ray (a stage run in-process by a test)
        return ""


_REMOTE: list[Any] = []


def _remote_call_measured() -> Any:
    """`_call_measured` as a Ray remote function, made once per driver process (Ray exports a
    remote function's code to the cluster once; each phase then only sets its `.options`)."""
    import ray

    if not _REMOTE:
        _REMOTE.append(ray.remote(_call_measured))
    return _REMOTE[0]


class ShardFailed(RuntimeError):
    """A stage raised on one shard; the message names the stage, the shard and its input."""


#: In-flight tasks when no `workers` cap is given: at least this many, else twice the CPUs the
#: cluster has *now* (re-read while the stage runs, so nodes that join are used, and enough tasks
#: wait in Ray's queue for the autoscaler to see the demand and add nodes).
MIN_IN_FLIGHT = 256
#: Seconds between two reads of the cluster's CPU count while a stage runs.
RESOURCE_POLL_S = 2.0

#: Per Ray worker process: the shard-map stage it last set up (key -> stage), so `setup()` (model
#: loading) runs once per worker process and stage, not once per shard. One entry: a worker that
#: moves on to the next stage of a `winnow run` drops the previous stage's models.
_SET_UP: dict[str, ShardMapStage] = {}


def _run_shard(key: str, stage_box: list[Any], task: ShardTask, out_dir: str) -> dict[str, Any]:
    """One shard of a shard-map stage, as a plain Ray task (scheduled wherever Ray has a free CPU;
    see `RayRuntime.map_shards`). `stage_box` holds the stage's object reference, unresolved, so
    a worker that set the stage up already does not even deserialize it again. A local `out_dir`
    is committed in place; an object-store URL is committed in a local temporary directory and
    uploaded (`remote_io.upload_shard`: data files first, the commit record last)."""
    import ray

    stage = _SET_UP.get(key)
    if stage is None:
        _SET_UP.clear()
        stage = ray.get(stage_box[0])
        stage.setup()
        _SET_UP[key] = stage
    try:
        if remote_io.is_url(out_dir):
            return remote_io.commit_shard_remote(stage.run_and_commit, task, out_dir)
        return stage.run_and_commit(task, Path(out_dir))
    except Exception as exc:
        raise ShardFailed(f"{stage.name}: shard {task.name} (input {', '.join(task.inputs)}) "
                          f"failed: {type(exc).__name__}: {exc}") from exc


class RayRuntime(Runtime):
    """Ray, as lent to a stage. Parallelism comes from the work: every shard or task is a Ray
    task asking for the resources it needs (`num_cpus`, `memory`), and Ray places it on whichever
    node has them, so a node that joins mid-stage takes work at once and pending tasks are what
    Ray's autoscaler scales on. `workers`, when given, caps the tasks in flight (a politeness
    limit on a shared cluster); it is never taken from the CPUs counted at start-up.
    `tasks_by_node` counts the tasks each Ray node ran (node id -> tasks)."""

    def __init__(self, workers: int | None = None, address: str | None = None, show_progress: bool = True):
        init_ray(address=address, workers=workers)
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.cap = int(workers) if workers else None
        self.show_progress = show_progress
        self.tasks_by_node: dict[str, int] = {}
        self._cpus_at = 0.0
        self._cpus = 1

    def cluster_cpus(self) -> int:
        """CPUs of the whole cluster now (at least 1), re-read at most every `RESOURCE_POLL_S`."""
        import ray

        now = time.monotonic()
        if now - self._cpus_at >= RESOURCE_POLL_S:
            self._cpus = max(1, int(ray.cluster_resources().get("CPU", 0)))
            self._cpus_at = now
        return self._cpus

    def largest_node_cpus(self) -> int:
        """CPUs of the largest alive node now (at least 1): the most one task can be given."""
        import ray

        cpus = [n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
        return max(1, int(max(cpus, default=0)))

    @property
    def workers(self) -> int:  # type: ignore[override]
        """How many CPUs one task may ask for (the tokenizer trainer's threads): the CPUs of the
        largest node now, no more than the `workers` cap. Not the cluster's total: a task asking
        for more CPUs than any one node has would wait forever."""
        largest = self.largest_node_cpus()
        return min(self.cap, largest) if self.cap else largest

    def _window(self) -> int:
        return self.cap or max(MIN_IN_FLIGHT, 2 * self.cluster_cpus())

    def progress(self, total: int, desc: str, unit: str = "shard") -> Any:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, disable=not self.show_progress,
                    file=sys.stderr, dynamic_ncols=True)

    def put(self, obj: Any) -> Any:
        """Store `obj` once in Ray's object store; pass the reference as a task argument."""
        import ray

        return ray.put(obj)

    def _run_all(self, submit: Callable[[int], Any], n: int, bar: Any,
                 on_result: Callable[[int, Any], None]) -> tuple[float, float]:
        """Submit tasks 0..n-1 through `submit(i)` (a Ray object reference of a `_call_measured`
        result), keeping at most `_window()` in flight; `on_result(i, out)` in completion order.
        Returns (summed task CPU seconds, peak worker RSS MB). Unfinished tasks are cancelled
        when one fails."""
        import ray

        pending: dict[Any, int] = {}
        nxt = 0
        cpu = rss = 0.0
        try:
            while nxt < n or pending:
                window = self._window()
                while nxt < n and len(pending) < window:
                    pending[submit(nxt)] = nxt
                    nxt += 1
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=RESOURCE_POLL_S)
                for ref in ready:
                    i = pending.pop(ref)
                    out, c, r, node = ray.get(ref)
                    self.tasks_by_node[node] = self.tasks_by_node.get(node, 0) + 1
                    cpu += c
                    rss = max(rss, r)
                    on_result(i, out)
                    bar.update(1)
        finally:
            bar.close()
            for ref in pending:
                ray.cancel(ref, force=True)
        return cpu, rss

    def map_tasks(self, fn: Callable[..., Any], arg_list: Sequence[tuple], desc: str, unit: str = "task",
                  num_cpus: float = 1, memory: int | None = None, retries: int = SHARD_RETRIES,
                  stats: dict[str, dict[str, float]] | None = None, stats_key: str | None = None) -> list[Any]:
        """Run `fn(*args)` for every tuple of `arg_list` as Ray tasks; results in argument order.

        The one way a whole-dataset stage schedules Ray work (stages never import `ray` for it):
        every task asks Ray for `num_cpus` (and `memory` bytes, so the autoscaler can size nodes)
        and runs wherever Ray places it; in flight at most the `workers` cap, else
        `max(MIN_IN_FLIGHT, 2 × cluster CPUs now)`; a task whose worker process dies is retried
        `retries` times (tasks must be idempotent: a retried or resumed task finds or rewrites its
        output); a progress bar; per-`desc` wall time, summed task CPU time and peak worker RSS go
        into `stats[stats_key or desc]` when given. Arguments may be `put` references."""
        if not arg_list:
            return []
        opts: dict[str, Any] = {"num_cpus": num_cpus, "max_retries": retries}
        if memory:
            opts["memory"] = int(memory)
        remote = _remote_call_measured().options(**opts)
        results: list[Any] = [None] * len(arg_list)
        t0 = time.perf_counter()

        def _store(i: int, out: Any) -> None:
            results[i] = out

        cpu, rss = self._run_all(lambda i: remote.remote(fn, *arg_list[i]), len(arg_list),
                                 self.progress(len(arg_list), desc=desc, unit=unit), _store)
        if stats is not None:
            st = stats.setdefault(stats_key or desc, {"wall_s": 0.0, "cpu_s": 0.0, "tasks": 0, "max_rss_mb": 0.0})
            st["wall_s"] += time.perf_counter() - t0
            st["cpu_s"] += cpu
            st["tasks"] += len(arg_list)
            st["max_rss_mb"] = max(st["max_rss_mb"], rss)
        return results

    def task_memory(self, stage: ShardMapStage) -> int:
        """Bytes each of `stage`'s shard tasks asks Ray for: its `task_memory_mb`. On a Ray that
        this process started itself (no cluster address) the request is capped at the local
        node's memory resource, so a small machine runs the stage instead of waiting forever for
        a node that no autoscaler will add; on a cluster the full request stands (the
        autoscaler's signal)."""
        import ray

        want = int(stage.task_memory_mb) << 20
        if not self.address:
            have = int(ray.cluster_resources().get("memory", 0))
            if have and want > have:
                log.warning("%s: shard tasks ask for %d MiB but this machine's Ray has %d MiB; asking for %d MiB",
                            stage.name, want >> 20, have >> 20, have >> 20)
                want = have
        return want

    def map_shards(self, stage: ShardMapStage, tasks: Sequence[ShardTask], out_dir: Path | str) -> list[dict[str, Any]]:
        """Run `stage.run_and_commit` over tasks, one Ray task per shard (1 CPU and the stage's
        `task_memory_mb` each, see `task_memory`), placed by
        Ray on any node with a free CPU. Each worker process calls `stage.setup()` once (models
        load once per worker process, see `_run_shard`). A worker process that dies (a segfault
        in a native library, an OOM kill) is retried; a Python exception in the stage is not,
        it raises `ShardFailed` naming the shard. `out_dir` may be an object-store URL."""
        import ray

        if not tasks:
            return []
        key = f"{stage.name}:{stage.config_hash()}:{time.time_ns()}:{os.getpid()}"
        stage_box = [ray.put(stage)]
        remote = _remote_call_measured().options(num_cpus=1, memory=self.task_memory(stage), max_retries=SHARD_RETRIES)
        target = str(out_dir)
        records: dict[str, dict[str, Any]] = {}
        bar = self.progress(len(tasks), desc=stage.name)
        counts = {"docs": 0, "kept": 0}

        def _store(i: int, record: dict[str, Any]) -> None:
            records[record["name"]] = record
            counts["docs"] += record["input"]
            counts["kept"] += record["kept"]
            bar.set_postfix(docs=counts["docs"], kept=counts["kept"], refresh=False)

        self._run_all(lambda i: remote.remote(_run_shard, key, stage_box, tasks[i], target), len(tasks), bar, _store)
        return [records[t.name] for t in tasks]


class SerialRuntime(Runtime):
    """The `Runtime` contract in this process, one shard or task after another, without Ray:
    for stepping through a stage in a debugger and for tests whose subject is not Ray. Shard-map
    stages are set up once, as one Ray worker would; progress bars are silent."""

    workers = 1

    def map_shards(self, stage: ShardMapStage, tasks: Sequence[ShardTask], out_dir: Path) -> list[dict[str, Any]]:
        stage.setup()
        if remote_io.is_url(str(out_dir)):
            return [remote_io.commit_shard_remote(stage.run_and_commit, t, str(out_dir)) for t in tasks]
        return [stage.run_and_commit(t, Path(out_dir)) for t in tasks]

    def map_tasks(self, fn: Callable[..., Any], arg_list: Sequence[tuple], desc: str, unit: str = "task",
                  num_cpus: float = 1, memory: int | None = None, retries: int = 2,
                  stats: dict[str, dict[str, float]] | None = None, stats_key: str | None = None) -> list[Any]:
        return [fn(*args) for args in arg_list]

    def put(self, obj: Any) -> Any:
        return obj

    def progress(self, total: int, desc: str, unit: str = "shard") -> Any:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, disable=True)


class _LazyRayRuntime(Runtime):
    """A `RayRuntime` started on first use: a finished stage whose inputs did not change never
    needs Ray, so a rerun of it does not pay for starting one."""

    def __init__(self) -> None:
        self._rt: RayRuntime | None = None

    def _get(self) -> RayRuntime:
        if self._rt is None:
            self._rt = RayRuntime()
        return self._rt

    @property
    def workers(self) -> int:  # type: ignore[override]
        return self._get().workers

    def map_shards(self, stage: ShardMapStage, tasks: Sequence[ShardTask], out_dir: Path) -> list[dict[str, Any]]:
        return self._get().map_shards(stage, tasks, out_dir) if tasks else []

    def map_tasks(self, fn: Callable[..., Any], arg_list: Sequence[tuple], desc: str, **kw: Any) -> list[Any]:
        return self._get().map_tasks(fn, arg_list, desc, **kw) if arg_list else []

    def put(self, obj: Any) -> Any:
        return self._get().put(obj)

    def progress(self, total: int, desc: str, unit: str = "shard") -> Any:
        return self._get().progress(total, desc, unit)


def _clear_other_config(stage: Stage, out_dir: Path, config_hash: str) -> None:
    """Clear the directory if it holds shards committed under another config: they can never be
    reused, and the stage's work files (`_work`) are of that config too."""
    progress_dir = out_dir / shard_io.PROGRESS_DIR
    if not progress_dir.exists():
        return
    hashes = set()
    for p in progress_dir.glob("*.json"):
        try:
            hashes.add(shard_io.read_json(p).get("config_hash"))
        except (OSError, ValueError):
            continue
    if hashes - {config_hash}:
        log.warning("%s: output of another config found in %s; clearing it", stage.name, out_dir)
        for sub in (shard_io.DATA_DIR, shard_io.REJECTED_DIR, shard_io.PROGRESS_DIR, "_work"):
            shutil.rmtree(out_dir / sub, ignore_errors=True)


def _relocate_moved_inputs(stage: Stage, out_dir: Path, tasks: Sequence[ShardTask], config_hash: str) -> int:
    """For a relocatable shard-map stage: a task whose own shard is not committed for its inputs,
    but whose inputs were committed under another shard name (an input was added or removed
    before it, so positions shifted), takes over that finished shard instead of redoing it.
    Returns how many shards were renamed."""
    if not stage.relocatable or stage.whole_dataset:
        return 0
    records = shard_io.committed_records(out_dir, config_hash)
    if not records:
        return 0
    by_fingerprint: dict[str, str] = {}
    for name, rec in records.items():
        if shard_io.committed_shard(out_dir, name, config_hash, rec.get("fingerprint", "")) is not None:
            by_fingerprint.setdefault(rec["fingerprint"], name)
    moves: dict[str, str] = {}
    for t in tasks:
        own = records.get(t.name)
        if own is not None and own.get("fingerprint") == t.fingerprint:
            continue
        src = by_fingerprint.get(t.fingerprint)
        if src is not None and src != t.name:
            moves[t.name] = src
    shard_io.relocate_shards(out_dir, moves)
    if moves:
        log.info("%s: %d finished shard(s) renamed to their input's new position", stage.name, len(moves))
    return len(moves)


def absolute_input(path: str) -> str:
    """A local input path made absolute against the directory winnow was started in (Ray workers
    run elsewhere); URLs are left as they are."""
    path = str(path)
    if "://" in path and not path.startswith("file://"):
        return path
    if path.startswith("file://"):
        path = path[len("file://"):]
    return os.path.abspath(os.path.expanduser(path))


def check_counts_chain(stage: Stage, inputs: Sequence[str], manifest: dict[str, Any]) -> None:
    """A stage reading stage directories must report as its `input` exactly the documents those
    directories hand on (their manifests' `kept`): nothing lost or invented between stages.
    Artifact stages (a tokenizer trainer) read documents too; the rule is the same for them."""
    if stage.reads_raw_files:
        return
    expected = sum(shard_io.upstream_kept(d) for d in inputs)
    if manifest["input"] != expected:
        raise shard_io.AccountingError(
            f"{stage.name}: input {manifest['input']} != {expected} documents kept by its input stage(s) "
            f"{', '.join(inputs)}")


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
    sources = {t.name: t.inputs for t in tasks}
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
        # input files a stream broke in part-way: at least `unread_bytes` of each were not read
        "incomplete_inputs": [{"shard": r["name"], "inputs": list(sources.get(r["name"], ())),
                               "unread_bytes": r["counters"]["unread_bytes"]}
                              for r in records if r.get("counters", {}).get("unread_bytes")],
    }


def run_stage(stage: Stage, inputs: Sequence[str], out_dir: str | Path, runtime: Runtime | None = None) -> dict[str, Any]:
    """Run one stage from `inputs` into `out_dir` and return its manifest.

    Always plans from the inputs as they are now. A shard committed under the same config hash
    and task fingerprint (its inputs' identity) is reused; every other planned shard is redone;
    files of shards that are no longer planned are removed, so `data/` holds exactly the output.
    A finished stage with unchanged inputs executes nothing and changes no byte. Checks
    `kept + rejected == input` per shard and in total, and that `input` equals what the input
    stages kept (`check_counts_chain`); raises AccountingError otherwise.
    """
    if remote_io.is_url(str(out_dir)):
        return _run_stage_remote(stage, inputs, str(out_dir).rstrip("/"), runtime)
    out_dir = Path(absolute_input(str(out_dir)))
    inputs = [absolute_input(p) for p in inputs]
    started = time.monotonic()
    tasks = stage.plan_tasks(list(inputs))
    h = stage.config_hash()
    _clear_other_config(stage, out_dir, h)
    moved = _relocate_moved_inputs(stage, out_dir, tasks, h)
    removed = shard_io.remove_stale_shards(out_dir, [t.name for t in tasks])
    if removed:
        log.info("%s: removed %d file(s) of shards no longer planned", stage.name, len(removed))
    if not out_dir.is_dir():
        remote_io.check_output_writable(str(out_dir))  # creates it, or names why it cannot
    committed = {t.name: shard_io.committed_shard(out_dir, t.name, h, t.fingerprint) for t in tasks}
    todo = [t for t in tasks if committed[t.name] is None]
    manifest_path = out_dir / shard_io.MANIFEST
    if (todo or removed or moved) and manifest_path.exists():
        manifest_path.unlink()  # the directory is about to change: no manifest until it adds up again
    if todo and len(todo) < len(tasks):
        log.info("%s: resuming, %d of %d shards already committed", stage.name, len(tasks) - len(todo), len(tasks))
    if todo:
        remote_io.check_output_writable(str(out_dir))  # a clear error before any work is scheduled
    runtime = runtime or _LazyRayRuntime()
    if isinstance(stage, ShardMapStage):
        new_records = stage.execute(todo, out_dir, runtime) if todo else []
        by_name = {r["name"]: r for r in new_records}
        records = [committed[t.name] or by_name[t.name] for t in tasks]
    else:
        # Whole-dataset stages (dedup) see every task: their phases need all shards, and they
        # skip committing shards that are already committed themselves.
        records = stage.execute(tasks, out_dir, runtime)
    manifest = build_manifest(stage, inputs, records, tasks)
    check_counts_chain(stage, inputs, manifest)
    stage.check_output(manifest, records, out_dir)
    if not manifest_path.exists() or shard_io.read_json(manifest_path) != manifest:
        shard_io.write_json_atomic(manifest, manifest_path)
    elapsed = time.monotonic() - started
    # Distributions: the shards' commit-record stats (pipeline/stats.py), merged exactly.
    shard_io.write_json_atomic({**shard_io.merge_stats(r.get("stats") for r in records),
                                "stage": stage.name, "seconds": round(elapsed, 3), "input": manifest["input"],
                                "kept": manifest["kept"], "rejected": manifest["rejected"],
                                "reasons": manifest["reasons"], "counters": manifest["counters"],
                                "shards": len(tasks), "shards_resumed": len(tasks) - len(todo)},
                               out_dir / "stats.json")
    return manifest


class UnsupportedOutput(ValueError):
    """The stage cannot write its output to object storage (yet); the message says which can."""


def supports_object_storage(stage: Stage | type[Stage]) -> bool:
    """Whether a stage (or stage class) can write its output directory to object storage: a
    shard-map stage that keeps the default `execute` (every shard goes through
    `Runtime.map_shards`, which commits remotely), or a stage that says so with a class attribute
    `object_storage = True` (its `execute` and `check_output` take a URL `out_dir`)."""
    cls = stage if isinstance(stage, type) else type(stage)
    if getattr(cls, "object_storage", False):
        return True
    return issubclass(cls, ShardMapStage) and not cls.whole_dataset and cls.execute is ShardMapStage.execute


def _registry() -> dict[str, type[Stage]]:
    from winnow.stages import registry

    return registry()


def _run_stage_remote(stage: Stage, inputs: Sequence[str], out_url: str, runtime: Runtime | None) -> dict[str, Any]:
    """`run_stage` into a stage directory on object storage (`s3://…`, `gs://…`).

    Same contract as the local path, with the commit record as the commit (object stores have no
    rename): each worker uploads a shard's data objects, then its `_progress/NAME.json` record
    (`remote_io.commit_shard_remote`); a shard is reused on a rerun when its record matches the
    config hash and input fingerprint and the objects it names have the sizes it records; data
    objects of shards no longer planned (or of another config) are deleted; the manifest is the
    last object written, once the counts add up. The output location is probed first
    (`remote_io.check_output_writable`), before planning: no credentials, no bucket or access
    denied fail in seconds. Supported for the stages `supports_object_storage` names: shard-map
    stages that keep the default `execute`, and stages with `object_storage = True` (today every
    stage winnow ships: whole-dataset ones get every task and the URL and skip their committed
    shards themselves, as on the local path); a stage that does not opt in raises
    `UnsupportedOutput`. Inputs may be stage directories on object storage too
    (`shards.input_shard_entries` reads their manifests from the store)."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    if not supports_object_storage(stage):
        able = ", ".join(sorted(n for n, cls in _registry().items() if supports_object_storage(cls)))
        raise UnsupportedOutput(f"{stage.name}: writing to object storage ({out_url}) is supported for {able} "
                                f"only; give {stage.name} a local or mounted output directory")
    remote_io.check_output_writable(out_url)
    inputs = [absolute_input(p) for p in inputs]
    started = time.monotonic()
    tasks = stage.plan_tasks(list(inputs))
    h = stage.config_hash()
    # Only the shard folders are listed (a whole-dataset stage's `_work` may hold thousands of
    # objects), plus whether the manifest is there.
    files = {f"{d}/{rel}": n for d in shard_io.SHARD_DIRS for rel, n in remote_io.list_files(remote_io.join(out_url, d)).items()}
    fs, manifest_path = remote_io.url_fs(remote_io.join(out_url, shard_io.MANIFEST))
    try:
        files[shard_io.MANIFEST] = int(remote_io.with_retries(lambda: fs.info(manifest_path), manifest_path).get("size") or 0)
    except FileNotFoundError:
        pass
    progress = [rel for rel in files if rel.startswith(f"{shard_io.PROGRESS_DIR}/") and rel.endswith(".json")
                and not rel.rsplit("/", 1)[-1].startswith(".")]

    def _read(rel: str) -> dict[str, Any] | None:
        raw = remote_io.get_bytes(remote_io.join(out_url, rel))
        try:
            rec = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        return rec if isinstance(rec, dict) else None

    with ThreadPoolExecutor(max_workers=32) as pool:
        found = dict(zip(progress, pool.map(_read, progress)))
    records_now = {rel.rsplit("/", 1)[-1][:-len(".json")]: rec for rel, rec in found.items() if rec is not None}
    if {r.get("config_hash") for r in records_now.values()} - {h}:
        log.warning("%s: output of another config found in %s; clearing it", stage.name, out_url)
        doomed = [rel for rel in files if rel.split("/", 1)[0] in shard_io.SHARD_DIRS]
        doomed += [f"_work/{rel}" for rel in remote_io.list_files(remote_io.join(out_url, "_work"))]
        remote_io.remove([remote_io.join(out_url, rel) for rel in doomed])
        files = {rel: n for rel, n in files.items() if rel not in set(doomed)}
        records_now = {}
    planned = {t.name for t in tasks}
    stale = [rel for rel in files if "/" in rel and rel.split("/", 1)[0] in shard_io.SHARD_DIRS
             and (rel.rsplit("/", 1)[-1].split(".", 1)[0] not in planned or rel.rsplit("/", 1)[-1].startswith("."))]
    remote_io.remove([remote_io.join(out_url, rel) for rel in stale])
    if stale:
        log.info("%s: removed %d object(s) of shards no longer planned", stage.name, len(stale))

    def _committed(t: ShardTask) -> dict[str, Any] | None:
        rec = records_now.get(t.name)
        if rec is None or rec.get("config_hash") != h or rec.get("fingerprint") != t.fingerprint:
            return None
        named = shard_io.record_files(rec)
        if "data" not in named or "rejected_file" not in named:
            return None
        if any(files.get(entry["path"]) != entry["bytes"] for entry in named.values()):
            return None
        return rec

    committed = {t.name: _committed(t) for t in tasks}
    todo = [t for t in tasks if committed[t.name] is None]
    manifest_url = remote_io.join(out_url, shard_io.MANIFEST)
    if (todo or stale) and shard_io.MANIFEST in files:
        remote_io.remove([manifest_url])  # about to change: no manifest until it adds up again
    if todo and len(todo) < len(tasks):
        log.info("%s: resuming, %d of %d shards already committed", stage.name, len(tasks) - len(todo), len(tasks))
    runtime = runtime or _LazyRayRuntime()
    if isinstance(stage, ShardMapStage):
        new_records = stage.execute(todo, out_url, runtime) if todo else []  # type: ignore[arg-type]
        by_name = {r["name"]: r for r in new_records}
        records = [committed[t.name] or by_name[t.name] for t in tasks]
    else:
        # whole-dataset stages see every task and skip their committed shards themselves (local path)
        records = stage.execute(tasks, out_url, runtime)  # type: ignore[arg-type]
    manifest = build_manifest(stage, inputs, records, tasks)
    check_counts_chain(stage, inputs, manifest)
    stage.check_output(manifest, records, out_url)  # type: ignore[arg-type]
    body = shard_io.json_bytes(manifest)
    if remote_io.get_bytes(manifest_url) != body:
        remote_io.put_bytes(manifest_url, body)
    elapsed = time.monotonic() - started
    remote_io.put_bytes(remote_io.join(out_url, "stats.json"), shard_io.json_bytes({
        **shard_io.merge_stats(r.get("stats") for r in records), "stage": stage.name, "seconds": round(elapsed, 3),
        "input": manifest["input"], "kept": manifest["kept"], "rejected": manifest["rejected"],
        "reasons": manifest["reasons"], "counters": manifest["counters"], "shards": len(tasks),
        "shards_resumed": len(tasks) - len(todo)}))
    return manifest
