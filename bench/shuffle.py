"""Benchmark of the dedup shuffle layout: files opened per reducer and bytes written, for S map
tasks and P partitions (default S = P = 1,024) on synthetic keys, before and after issue 12.

- **before**: ``stages/dedup/shuffle.py`` as of commit ``BEFORE`` (read with ``git show``, so the
  code measured is the code that shipped): every map file holds one record batch per partition,
  empty ones included, and every reducer opens all S map files.
- **after**: the current ``winnow.stages.dedup.shuffle``: a map file holds only its non-empty
  partitions, the driver writes one ``_directory.npy`` per phase from the tasks' done records,
  and a reducer opens the directory and the files that hold its partition.

Both sides run the same steps in this process: S map tasks (``write_partitioned`` +
``mark_done``), for "after" the driver's ``publish_directories``, then P reduce tasks
(``read_partition``), checked to return the same rows. Files opened = calls of
``pyarrow.memory_map`` and ``numpy.load`` (the two ways the shuffle opens a file); bytes written =
every file left in the shuffle folder (map files, done records, the directory).

Key sets (rows per map task, uint64 keys, partition = key mod P, like the band and edge phases):
``dense`` 4,096 rows (every map file holds almost every partition: the band-key shuffle),
``sparse`` 16 rows (the edge, component and election shuffles of a corpus with few duplicates),
``empty`` 0 rows (late component rounds). Reduce side: the same evenly spaced sample of
``--reduce-sample`` reducers (default 16) on both sides; files opened per reducer is the mean
over that sample, totals and reduce time are scaled to P.

Last line: ``RESULT files_per_reducer_before=… files_per_reducer_after=… bytes_ratio_sparse=…``.
Run: ``.venv/bin/python bench/shuffle.py`` from the repo root (about 5 minutes on 2 shared cores).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from winnow.stages.dedup import shuffle as after  # noqa: E402

#: the last commit with the former layout (every partition a batch, reducers open every file)
BEFORE = "2c9df50"
SCHEMA = pa.schema([("band", pa.uint64()), ("key", pa.int64()), ("prio", pa.uint64())])


def load_before() -> types.ModuleType:
    src = subprocess.run(["git", "show", f"{BEFORE}:stages/dedup/shuffle.py"], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    mod = types.ModuleType("shuffle_before")
    exec(compile(src, f"{BEFORE}:stages/dedup/shuffle.py", "exec"), mod.__dict__)
    return mod


class OpenCounter:
    """Counts pyarrow.memory_map and numpy.load calls while active."""

    def __init__(self) -> None:
        self.n = 0

    def __enter__(self) -> "OpenCounter":
        self._mm, self._load = pa.memory_map, np.load

        def mm(*a: Any, **k: Any) -> Any:
            self.n += 1
            return self._mm(*a, **k)

        def load(*a: Any, **k: Any) -> Any:
            self.n += 1
            return self._load(*a, **k)
        pa.memory_map, np.load = mm, load
        return self

    def __exit__(self, *exc: Any) -> None:
        pa.memory_map, np.load = self._mm, self._load


def map_table(i: int, rows: int) -> pa.Table:
    rng = np.random.default_rng(i)
    band = rng.integers(0, 2**63, rows, dtype=np.uint64)
    return pa.table([band, np.arange(rows, dtype=np.int64) | (i << 32), band ^ np.uint64(12345)], schema=SCHEMA)


def run_side(mod: types.ModuleType, root: Path, S: int, P: int, rows: int, reducers: list[int],
             directory: bool) -> dict[str, Any]:
    folder = root / "bands"
    results = []
    t0 = time.perf_counter()
    for i in range(S):
        t = map_table(i, rows)
        out = folder / f"part-{i:05d}.arrow"
        mod.write_partitioned(out, t, (t.column("band").to_numpy() % np.uint64(P)).astype(np.int64), P)
        results.append(mod.mark_done(out, {"rows": rows}))
    if directory:
        mod.publish_directories(results)
    map_s = time.perf_counter() - t0
    written = sum(f.stat().st_size for f in folder.iterdir())
    files = sum(1 for _ in folder.iterdir())
    paths = [folder / f"part-{i:05d}.arrow" for i in range(S)]
    rows_out = {}
    t0 = time.perf_counter()
    with OpenCounter() as c:
        for j in reducers:
            rows_out[j] = mod.read_partition(paths, j, SCHEMA).num_rows
    reduce_s = time.perf_counter() - t0
    return {"files": files, "bytes": written, "opens": c.n, "reducers": len(reducers), "rows": rows_out,
            "map_s": map_s, "reduce_s": reduce_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--maps", type=int, default=1024, help="S: map tasks")
    ap.add_argument("--partitions", type=int, default=1024, help="P: reduce partitions")
    ap.add_argument("--reduce-sample", type=int, default=16, help="reducers run on each side (evenly spaced)")
    args = ap.parse_args()
    S, P = args.maps, args.partitions
    before = load_before()
    sample = sorted(set(np.linspace(0, P - 1, min(P, args.reduce_sample)).astype(int).tolist()))
    print(f"S = {S} map tasks, P = {P} partitions, {len(sample)} reducers sampled; before = {BEFORE}, "
          "after = working tree")
    print(f"{'keys':8} {'side':7} {'rows/map':>8} {'files':>6} {'MB written':>11} {'opens/reducer':>14} "
          f"{'opens total':>12} {'map s':>7} {'reduce s (all P)':>17}")
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for name, rows in (("sparse", 16), ("empty", 0), ("dense", 4096)):
        summary[name] = {}
        for side, mod, reducers, directory in (("before", before, sample, False),
                                               ("after", after, sample, True)):
            root = Path(tempfile.mkdtemp(prefix=f"winnow-shuffle-{name}-{side}-", dir=REPO / "out"
                                         if (REPO / "out").exists() else None))
            try:
                r = run_side(mod, root, S, P, rows, reducers, directory)
            finally:
                shutil.rmtree(root, ignore_errors=True)
            per = r["opens"] / r["reducers"]
            r["opens_per_reducer"] = per
            r["opens_total"] = per * P
            r["reduce_all_s"] = r["reduce_s"] / r["reducers"] * P
            summary[name][side] = r
            print(f"{name:8} {side:7} {rows:>8} {r['files']:>6} {r['bytes'] / 1e6:>11.2f} {per:>14.1f} "
                  f"{r['opens_total']:>12.0f} {r['map_s']:>7.1f} {r['reduce_all_s']:>17.1f}", flush=True)
        b, a = summary[name]["before"], summary[name]["after"]
        same = all(b["rows"][j] == a["rows"][j] for j in b["rows"])
        if not same:
            raise SystemExit(f"{name}: before and after reducers returned different rows")
    print("\nratios before/after: " + ", ".join(
        f"{k}: bytes {v['before']['bytes'] / v['after']['bytes']:.1f}x, opens "
        f"{v['before']['opens_total'] / max(1, v['after']['opens_total']):.1f}x" for k, v in summary.items()))
    print(json.dumps({k: {s: {m: v for m, v in d.items() if m != "rows"} for s, d in v.items()}
                      for k, v in summary.items()}))
    d, s, e = summary["dense"], summary["sparse"], summary["empty"]
    print(f"RESULT files_per_reducer_before={s['before']['opens_per_reducer']:.0f} "
          f"files_per_reducer_after={s['after']['opens_per_reducer']:.1f} "
          f"bytes_ratio_sparse={s['before']['bytes'] / s['after']['bytes']:.1f} "
          f"bytes_ratio_empty={e['before']['bytes'] / e['after']['bytes']:.1f} "
          f"bytes_ratio_dense={d['before']['bytes'] / d['after']['bytes']:.2f} "
          f"opens_ratio_dense={d['before']['opens_total'] / d['after']['opens_total']:.2f}")


if __name__ == "__main__":
    main()
