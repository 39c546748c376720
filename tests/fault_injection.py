"""SIGKILL of a Ray worker at a chosen point of a chosen stage or phase (issue 14, item 1).

A kill from outside at a random moment often lands between tasks, and on a small corpus most
phases last milliseconds, so "a worker killed in the middle of connected components" cannot be
hit reliably by a watcher thread. Instead the test wraps, on the driver, the callables the
stages hand to the runtime (`RayRuntime.map_tasks`'s `fn`, `RayRuntime.map_shards`'s stage),
for the descriptions it targets. In the Ray worker, the first attempt of the first task of a
target claims a marker file and then SIGKILLs its own process (the same signal, from the same
kernel, as a kill from outside: no cleanup, no `finally`, no flush) at the kill point:

- `"write"`: right after the task's first atomic rename (`os.replace`) — one of its output files
  is in place, the rest and its done/commit record are not: the nastiest partial state;
- `"timer:S"`: S seconds into the task (while it computes), or at its first rename if earlier.

Ray sees the worker die, restarts the actor or retries the task, and the retry (the marker is
taken) runs normally. The test then compares the run's outputs byte for byte with an undisturbed
run. The wrappers are plain picklable objects of this module (tests/ is on the workers'
PYTHONPATH, see conftest.py); nothing here changes winnow's code.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable


def _claim(fault_dir: str, label: str) -> bool:
    """True for exactly one caller per label across all processes (O_EXCL create)."""
    path = Path(fault_dir) / f"{_safe(label)}.json"
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump({"label": label, "pid": os.getpid(), "state": "armed"}, f)
    return True


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label)


def _die(fault_dir: str, label: str, how: str) -> None:
    """Record where the kill happened, then SIGKILL this process."""
    path = Path(fault_dir) / f"{_safe(label)}.json"
    path.write_text(json.dumps({"label": label, "pid": os.getpid(), "state": "killed", "at": how}))
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # never reached: SIGKILL is not catchable


def _armed_call(fault_dir: str, label: str, mode: str, call: Callable[[], Any]) -> Any:
    """Run `call()` with the kill point of `mode` armed in this process."""
    real_replace = os.replace
    timer = None

    def replace_then_die(src: Any, dst: Any, *a: Any, **k: Any) -> None:
        real_replace(src, dst, *a, **k)
        _die(fault_dir, label, f"after rename of {Path(str(dst)).name}")

    os.replace = replace_then_die  # type: ignore[assignment]
    if mode.startswith("timer:"):
        timer = threading.Timer(float(mode.split(":", 1)[1]), _die, (fault_dir, label, f"{mode} into the task"))
        timer.daemon = True
        timer.start()
    try:
        out = call()
    finally:
        os.replace = real_replace  # type: ignore[assignment]
        if timer is not None:
            timer.cancel()
    # the task wrote nothing by rename and ended before the timer: kill before it returns
    _die(fault_dir, label, "after the work, before the result was returned")
    return out  # never reached


class KillOnce:
    """`fn` for `map_tasks`: the first call (across all workers) dies at the kill point."""

    def __init__(self, fn: Callable[..., Any], label: str, fault_dir: str, mode: str = "write"):
        self.fn, self.label, self.fault_dir, self.mode = fn, label, fault_dir, mode
        # dedup's phase stats key tasks by function name
        self.__name__ = getattr(fn, "__name__", "task")

    def __call__(self, *args: Any) -> Any:
        if not _claim(self.fault_dir, self.label):
            return self.fn(*args)
        return _armed_call(self.fault_dir, self.label, self.mode, lambda: self.fn(*args))


class KillOnceStage:
    """A shard-map stage as lent to `map_shards`: delegates everything to the real stage; the
    first `run_and_commit` (across all actors) dies at the kill point. The actor is restarted by
    Ray (`setup` again) and the shard retried."""

    def __init__(self, stage: Any, fault_dir: str, mode: str = "write"):
        self.__dict__.update(_stage=stage, _fault_dir=fault_dir, _mode=mode)

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __getattr__(self, name: str) -> Any:
        stage = self.__dict__.get("_stage")
        if stage is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(stage, name)

    def run_and_commit(self, task: Any, out_dir: Path) -> dict[str, Any]:
        stage = self._stage
        label = stage.name
        if not _claim(self._fault_dir, label):
            return stage.run_and_commit(task, out_dir)
        return _armed_call(self._fault_dir, label, self._mode, lambda: stage.run_and_commit(task, out_dir))


def install(monkeypatch: Any, fault_dir: Path, targets: dict[str, str]) -> None:
    """Patch the driver's `RayRuntime` so that the tasks or shards of every target die once.

    `targets` maps a label to a kill mode; a label is a shard-map stage's name (`ingest`) or the
    start of a `map_tasks` description (`dedup: components`, `remix shuffle+write`)."""
    from winnow.pipeline.runner import RayRuntime

    real_tasks, real_shards = RayRuntime.map_tasks, RayRuntime.map_shards
    fault_dir.mkdir(parents=True, exist_ok=True)

    def map_tasks(self: Any, fn: Callable[..., Any], arg_list: Any, desc: str, *a: Any, **k: Any) -> list[Any]:
        for label, mode in targets.items():
            if desc.startswith(label) and arg_list:
                fn = KillOnce(fn, label, str(fault_dir), mode)
                break
        return real_tasks(self, fn, arg_list, desc, *a, **k)

    def map_shards(self: Any, stage: Any, tasks: Any, out_dir: Path) -> list[dict[str, Any]]:
        if stage.name in targets and tasks:
            stage = KillOnceStage(stage, str(fault_dir), targets[stage.name])
        return real_shards(self, stage, tasks, out_dir)

    monkeypatch.setattr(RayRuntime, "map_tasks", map_tasks)
    monkeypatch.setattr(RayRuntime, "map_shards", map_shards)


def kills(fault_dir: Path) -> dict[str, dict[str, Any]]:
    """label → the marker each target left: `state` is `killed` (with `at`) or `armed`."""
    out = {}
    for p in sorted(fault_dir.glob("*.json")):
        rec = json.loads(p.read_text())
        out[rec["label"]] = rec
    return out


# --- the process tree, from /proc (no psutil in the environment) -------------------------------

def descendant_pids(pid: int) -> list[int]:
    """Every descendant process of `pid` (children, their children, ...)."""
    by_parent: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            by_parent.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in by_parent.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def process_args(pid: int) -> list[str]:
    """A process's command line as its arguments (a Ray worker's first one is its title,
    `ray::<task>`); empty when the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
