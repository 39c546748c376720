"""Issue 14, item 6 (load): 10^6 documents through dedup → remix → tokenizer → pack on Ray, with
the peak memory of every process (the driver and each Ray worker) measured, printed and held
to a stated bound, and the counts adding up at every stage.

The corpus is made here, in a temporary directory, from real text in ../shared/data: sentences
of English Wikipedia articles and IMDb reviews (../shared/data/corpus/), recombined by keyed
hashes of the document number into short documents (two or three runs of 5–8 consecutive words
of real sentences, ~100 bytes: the test must run in a few minutes on 2 cores), each with a real URL of its source (`?d=N` makes it
one page per document) so remix labels real domains. Every 50th document repeats the text of
the one before it (an exact duplicate dedup must find). It is written as parquet shards in the
ingest output schema (`stages/schema.py`), the hand-made-directory input every stage accepts.

Memory is read from the kernel, not sampled: a thread polls `/proc/PID/status` `VmHWM` (the
process's peak resident set, a high-water mark the kernel keeps) of the driver and of every
process under this test's raylet; before each stage the marks are reset (`clear_refs` = 5) so
each stage's peak is its own. The driver is this pytest process, whose resident set already holds
whatever earlier tests left (torch, browsers' bindings, …: over 1 GB late in `make test`), so the
driver figure is the stage's growth over the driver's resident set when the stage began. Ray's
object store is shared memory: pages a worker maps count in its RSS, so they are included.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fault_injection import descendant_pids, process_args
from winnow.pipeline import shards as shard_io
from winnow.pipeline.runner import RayRuntime, run_stage
from winnow.stages.schema import BASE_DOCUMENT_SCHEMA

DOCS = int(os.environ.get("WINNOW_LOAD_DOCS", 1_000_000))
SHARDS = 20
DUP_EVERY = 50
#: The stated bounds: peak resident memory of any one Ray worker process, and of the driver,
#: during any stage at 10^6 documents (20 input shards of 50,000). Measured (docs/faults.md):
#: workers 0.4–0.7 GB except dedup's LSH reducer, ~1.3 GB, which holds one partition of band
#: keys (auto partitions keep it under `rows_per_partition` = 8·10^6 rows: 2 partitions of 7·10^6
#: here); the driver ~0.6 GB. A reducer holding all 14·10^6 band rows at once (no partitioning)
#: would not fit the worker bound.
WORKER_BOUND_MB = 2048
DRIVER_BOUND_MB = 1024
KEY = b"winnow-load-test"

SOURCES = {  # corpus file → how many of its documents to split into sentences
    "wikipedia_en-000.jsonl.gz": 3000,
    "imdb_reviews-000.jsonl.gz": 6000,
}


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def keyed(n: np.ndarray, purpose: str) -> np.ndarray:
    """A keyed 64-bit hash of each document number for one purpose (blake2b of the key and the
    purpose seeds splitmix64): deterministic, independent of Python's `hash()`."""
    seed = int.from_bytes(hashlib.blake2b(purpose.encode(), key=KEY, digest_size=8).digest(), "little")
    with np.errstate(over="ignore"):
        return _splitmix64(n.astype(np.uint64) ^ np.uint64(seed))


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def real_sentences(shared_data: Path) -> list[tuple[list[list[str]], list[str]]]:
    """Per source: (the words of each of its sentences of 40–300 characters, the real URLs of
    its documents)."""
    out = []
    for name, limit in SOURCES.items():
        sents: list[str] = []
        urls: list[str] = []
        with gzip.open(shared_data / "corpus" / name, "rt", encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i >= limit:
                    break
                doc = json.loads(line)
                if doc.get("url"):
                    urls.append(doc["url"])
                for para in doc["text"].split("\n"):
                    sents.extend(s.strip() for s in _SENTENCE.split(para) if 40 <= len(s.strip()) <= 300)
        assert len(sents) > 10_000 and urls, name
        out.append(([s.split() for s in sorted(set(sents))], sorted(set(urls))))
    return out


def write_corpus(shared_data: Path, out: Path, docs: int = DOCS, shards: int = SHARDS) -> dict[str, int]:
    """Write `docs` documents as `shards` parquet files under `out/data/`; return what was made."""
    pools = real_sentences(shared_data)
    (out / "data").mkdir(parents=True, exist_ok=True)
    per = -(-docs // shards)
    date0 = int(datetime(2024, 5, 1, tzinfo=timezone.utc).timestamp() * 1000)
    made = {"docs": 0, "text_bytes": 0, "planted_exact_dups": 0}
    for s in range(shards):
        n = np.arange(s * per, min(docs, (s + 1) * per), dtype=np.int64)
        src = (keyed(n, "source") % np.uint64(len(pools))).astype(np.int64)
        k = (keyed(n, "length") % np.uint64(2)).astype(np.int64) + 2
        picks = [keyed(n, f"sentence-{j}") for j in range(3)]
        starts = [keyed(n, f"start-{j}") for j in range(3)]
        widths = [keyed(n, f"width-{j}") for j in range(3)]
        upick = keyed(n, "url")
        texts, urls = [], []
        for r, i in enumerate(n.tolist()):
            sents, srcurls = pools[src[r]]
            parts = []
            for j in range(k[r]):
                words = sents[int(picks[j][r] % np.uint64(len(sents)))]
                w = 5 + int(widths[j][r] % np.uint64(4))            # 5–8 words of the sentence
                a = int(starts[j][r] % np.uint64(max(1, len(words) - w + 1)))
                parts.append(" ".join(words[a:a + w]))
            texts.append(". ".join(parts) + ".")
            urls.append(f"{srcurls[int(upick[r] % np.uint64(len(srcurls)))]}?d={i}")
        for r, i in enumerate(n.tolist()):
            if i % DUP_EVERY == DUP_EVERY - 1 and r > 0:
                texts[r] = texts[r - 1]
                made["planted_exact_dups"] += 1
        hosts = [u.split("/")[2] for u in urls]
        ids = [hashlib.blake2b(f"load|{i}".encode(), digest_size=16).hexdigest() for i in n.tolist()]
        table = pa.table({
            "id": ids, "url": urls, "host": hosts, "dump": ["CC-MAIN-2024-22"] * len(n),
            "crawl_date": pa.array(date0 + (n % 86_400_000), pa.timestamp("ms", tz="UTC")),
            "text": texts, "source": [f"load-test:{i}" for i in n.tolist()],
        }, schema=BASE_DOCUMENT_SCHEMA)
        pq.write_table(table, out / "data" / f"part-{s:05d}.parquet", compression="zstd")
        made["docs"] += table.num_rows
        made["text_bytes"] += sum(len(t.encode("utf-8")) for t in texts)
    return made


# --- memory -------------------------------------------------------------------------------------

def _status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class PeakMemory:
    """Peak RSS (VmHWM) of the driver and of each Ray worker process, per stage."""

    def __init__(self, raylet_pid: int):
        self.raylet = raylet_pid
        self.stage = ""
        self.peaks: dict[str, dict[str, float]] = {}   # stage → {"driver": MB, "worker": MB, "workers": n}
        self._seen: dict[int, float] = {}
        self.driver_base_mb = 0.0  # the driver's resident set when the current stage began
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _workers(self) -> list[int]:
        # Ray task workers (process title `ray::…` once they run a task, `default_worker.py`
        # before); Ray's own agents (dashboard, runtime env) are not workers.
        out = []
        for p in descendant_pids(self.raylet):
            t = (process_args(p) or [""])[0]
            if (t.startswith("ray::") and "Agent" not in t and "RuntimeEnv" not in t) or t.endswith("default_worker.py"):
                out.append(p)
        return out

    def _sample(self) -> None:
        if not self.stage:
            return
        st = self.peaks.setdefault(self.stage, {"driver": 0.0, "worker": 0.0, "workers": 0})
        d = _status_kb(os.getpid(), "VmHWM")
        if d:
            st["driver"] = max(st["driver"], d / 1024 - self.driver_base_mb)
            st["driver_base"] = self.driver_base_mb
        for pid in self._workers():
            kb = _status_kb(pid, "VmHWM")
            if kb:
                self._seen[pid] = kb / 1024
                st["worker"] = max(st["worker"], kb / 1024)
        st["workers"] = max(st["workers"], len(self._seen))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(0.05)

    def begin(self, stage: str) -> None:
        """Reset every process's high-water mark to its current RSS and attribute to `stage`."""
        self._sample()
        self._seen = {}
        for pid in [os.getpid(), *self._workers()]:
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                pass
        self.driver_base_mb = (_status_kb(os.getpid(), "VmRSS") or 0) / 1024
        self.stage = stage

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sample()
        self._stop.set()
        self._thread.join()


# --- the test -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_million_documents_dedup_remix_pack_memory_and_counts(shared_data: Path, tmp_path: Path, ray_local) -> None:
    import ray

    from winnow.stages.dedup import DedupStage
    from winnow.stages.pack import PackStage
    from winnow.stages.remix import RemixStage
    from winnow.stages.tokenizer_train import TokenizerStage

    t0 = time.perf_counter()
    made = write_corpus(shared_data, tmp_path / "ingest")
    assert made["docs"] == DOCS >= (10**6 if "WINNOW_LOAD_DOCS" not in os.environ else 1)
    print(f"\ncorpus: {made['docs']:,} documents, {made['text_bytes'] / 1e6:.1f} MB of text, "
          f"{made['planted_exact_dups']:,} planted exact duplicates ({time.perf_counter() - t0:.0f} s)")
    rt = RayRuntime(workers=2, show_progress=False)
    raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    out = tmp_path / "out"
    stages = [
        ("dedup", DedupStage({}), [tmp_path / "ingest"]),
        # downsample to 40 % of the bytes (temperature sampling over the domains present): every
        # document is kept or rejected with a reason
        ("remix", RemixStage({"seed": 0, "budget": {"bytes": int(made["text_bytes"] * 0.4)}, "max_epochs": 1,
                              "on_shortfall": "redistribute", "shard_bytes": 8 * 2**20}), [out / "dedup"]),
        ("tokenizer", TokenizerStage({"vocab_size": 2048, "sample_bytes": 4_000_000}), [out / "remix"]),
        ("pack", None, [out / "remix"]),
    ]
    manifests: dict[str, dict] = {}
    instances: dict[str, object] = {}
    seconds: dict[str, float] = {}
    with PeakMemory(raylet) as mem:
        for name, stage, inputs in stages:
            if stage is None:
                stage = PackStage({"seq_len": 2048, "dtype": "uint16"}).with_artifacts({"tokenizer": str(out / "tokenizer")})
            instances[name] = stage
            mem.begin(name)
            t = time.perf_counter()
            manifests[name] = run_stage(stage, [str(p) for p in inputs], out / name, rt)
            seconds[name] = time.perf_counter() - t
    print(f"{'stage':<10} {'input':>10} {'kept':>10} {'rejected':>9} {'s':>6} {'driver +MB':>10} {'(base MB)':>10} {'worker MB':>10} workers")
    for name, m in manifests.items():
        p = mem.peaks[name]
        print(f"{name:<10} {m['input']:>10,} {m['kept']:>10,} {m['rejected']:>9,} {seconds[name]:>6.0f} "
              f"{p['driver']:>10.0f} {p.get('driver_base', 0):>10.0f} {p['worker']:>10.0f} {p['workers']:>3}")
    worst_worker = max(p["worker"] for p in mem.peaks.values())
    worst_driver = max(p["driver"] for p in mem.peaks.values())
    for name, stage in instances.items():
        for phase, st in getattr(stage, "phase_stats", {}).items():
            print(f"  {name} {phase:<28} wall {st['wall_s']:6.1f} s  cpu {st['cpu_s']:6.1f} s  "
                  f"tasks {st['tasks']:>4}  peak rss {st['max_rss_mb']:6.0f} MB")
    print(f"RESULT load_docs={DOCS} peak_worker_rss_mb={worst_worker:.0f} driver_growth_mb={worst_driver:.0f} "
          f"bound_mb={WORKER_BOUND_MB}")

    # counts add up at every stage and chain from one to the next
    dd, rx, tk, pk = (manifests[s] for s in ("dedup", "remix", "tokenizer", "pack"))
    for name, m in manifests.items():
        assert m["input"] == m["kept"] + m["rejected"], name
        assert sum(m["reasons"].values()) == m["rejected"], name
    assert dd["input"] == DOCS
    assert dd["reasons"].get("dedup:exact_dup", 0) >= made["planted_exact_dups"]
    assert set(dd["reasons"]) <= {"dedup:exact_dup", "dedup:minhash_dup"}
    if DOCS >= 10**6:
        assert dd["counters"]["partitions"] >= 2  # the LSH reducer's memory is one partition's
    handed_on = rx["kept"] + rx["counters"].get("repeated", 0)
    assert rx["input"] == dd["kept"] and 0 < rx["kept"] < rx["input"]
    assert set(rx["reasons"]) and all(r.startswith("remix:") for r in rx["reasons"])
    assert tk["input"] == handed_on
    assert pk["input"] == handed_on and pk["kept"] == handed_on
    assert pk["counters"]["docs"] == handed_on and pk["counters"]["tokens"] > 0
    rows = sum(pq.ParquetFile(out / "dedup" / f["path"]).metadata.num_rows for f in dd["shards"])
    assert rows == dd["kept"]
    assert sum(shard_io.read_json(out / "remix" / "_progress" / p.name)["kept"]
               for p in (out / "remix" / "_progress").glob("*.json")) == rx["kept"]
    # every stage ran on Ray workers, each within the stated bound; the driver too
    for name, p in mem.peaks.items():
        assert p["workers"] >= 1, name
        assert 0 < p["worker"] <= WORKER_BOUND_MB, (name, p)
        assert 0 <= p["driver"] <= DRIVER_BOUND_MB, (name, p)   # the driver's growth during the stage
