"""The stage contract, hardened (issue 7): a stage's identity includes its inputs, counts chain
across stages, execution settings are not identity, paths are resolved where winnow was started,
and bad input is bounded.

Every "changed inputs" test compares the rerun directory with a clean run into a new directory:
the same kept and rejected bytes, the same manifest counts, and `data/` holding exactly the
planned shards."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tracemalloc
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

from winnow.pipeline import shards as shard_io
from winnow.pipeline.runner import RayRuntime, run_stage
from winnow.stages.base import ShardMapStage, ShardOutput, ShardTask
from winnow.stages.dedup import DedupStage
from winnow.stages.ingest import IngestStage

CC_JSONL = "dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"


# ---- helpers ------------------------------------------------------------------------------------

def rt(workers: int = 2) -> RayRuntime:
    return RayRuntime(workers=workers, show_progress=False)


def digests(stage_dir: Path) -> dict[str, str]:
    """Every output file of a stage directory (any extension) and its sha256."""
    return {str(p.relative_to(stage_dir)): shard_io.sha256_file(p)
            for sub in ("data", "rejected") for p in sorted((stage_dir / sub).iterdir()) if p.is_file()}


def counts(m: dict) -> tuple:
    return m["input"], m["kept"], m["rejected"], m["reasons"], m["counters"]


def assert_same_as_clean(stage, inputs: list[str], rerun_dir: Path, clean_dir: Path) -> dict:
    """Rerun into `rerun_dir` (which holds an older output), run clean into `clean_dir`: equal."""
    m = run_stage(stage, inputs, rerun_dir, rt())
    c = run_stage(stage, inputs, clean_dir, rt())
    assert digests(rerun_dir) == digests(clean_dir)
    assert counts(m) == counts(c)
    assert m == c  # shard paths are relative: the whole manifest is the same
    planned = {Path(s["path"]).name.split(".")[0] for s in m["shards"]}
    for sub in ("data", "rejected", "_progress"):
        assert {p.name.split(".")[0] for p in (rerun_dir / sub).iterdir()} == planned, sub
    return m


def stats(stage_dir: Path) -> dict:
    return shard_io.read_json(stage_dir / "stats.json")


def split_jsonl(shared: Path, d: Path, parts: int = 3, limit: int = 240) -> list[Path]:
    """The real CC-MAIN-2019-30 sample split into `parts` JSONL files (small: fast tests)."""
    d.mkdir(parents=True, exist_ok=True)
    with gzip.open(shared / CC_JSONL, "rt", encoding="utf-8") as f:
        lines = [line for line in f][:limit]
    step = -(-len(lines) // parts)
    files = []
    for i in range(parts):
        p = d / f"part{i}.jsonl"
        p.write_text("".join(lines[i * step:(i + 1) * step]), encoding="utf-8")
        files.append(p)
    return files


def earlier_copies(src: Path, dst: Path, n: int = 40) -> Path:
    """The first `n` documents of `src` again, with new ids and an earlier crawl date: under the
    keep rule they win over the originals, so adding them changes which documents are kept."""
    out = []
    for line in src.read_text(encoding="utf-8").splitlines()[:n]:
        obj = json.loads(line)
        obj["id"] = obj["id"] + "-early"
        obj["metadata"]["warc_date"] = "2010-01-01T00:00:00Z"
        out.append(json.dumps(obj))
    dst.write_text("\n".join(out) + "\n", encoding="utf-8")
    return dst


class KeepLong(ShardMapStage):
    """A small shard-map stage for contract tests: keeps documents with at least 500 characters."""

    name = "keep_long"

    def process_shard(self, task: ShardTask) -> ShardOutput:
        t = shard_io.read_shard(task.inputs[0])
        long = pa.array([len(x or "") >= 500 for x in t.column("text").to_pylist()])
        rej = t.filter(pc.invert(long))
        rejected = shard_io.rejected_table({"id": i, "url": u, "reason": "keep_long:short"}
                                           for i, u in zip(rej.column("id").to_pylist(), rej.column("url").to_pylist()))
        return ShardOutput(kept=t.filter(long), rejected=rejected, input_rows=t.num_rows)


class ReadsHalf(ShardMapStage):
    """A broken stage whose shards add up on their own but that reads only half of each input."""

    name = "reads_half"

    def process_shard(self, task: ShardTask) -> ShardOutput:
        t = shard_io.read_shard(task.inputs[0])
        half = t.slice(0, t.num_rows // 2)
        return ShardOutput(kept=half, rejected=shard_io.empty_rejected(), input_rows=half.num_rows)


# ---- 1. identity = code version + config + inputs ------------------------------------------------

def test_issue_scenario_second_input_is_not_ignored(ray_local, shared_data: Path, tmp_path: Path) -> None:
    """The issue's exact commands: a second input file added to a finished ingest is read."""
    a = str(shared_data / "warcio/example.warc.gz")
    b = str(shared_data / "resiliparse/warcfile.warc.gz")
    out = tmp_path / "X"
    m = run_stage(IngestStage(), [a], out, rt())
    assert (m["input"], m["kept"]) == (6, 1)
    m = assert_same_as_clean(IngestStage(), [a, b], out, tmp_path / "clean")
    assert (m["input"], m["kept"]) == (56, 17)
    assert stats(out)["shards_resumed"] == 1


def test_ingest_add_remove_change_a_file(ray_local, shared_data: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    f1 = src / "a.warc.gz"
    shutil.copy(shared_data / "warcio/example.warc.gz", f1)
    f2 = src / "b.warc.gz"
    shutil.copy(shared_data / "whirlwind/whirlwind.warc.gz", f2)
    f3 = src / "c.jsonl"
    shutil.copy(shared_data / "dolma/cc_en_head-0091.jsonl", f3)
    out = tmp_path / "out"
    run_stage(IngestStage(), [str(src / "*")], out, rt())
    # remove the middle file: its shard goes and the last one moves up (renamed, not redone);
    # nothing stale is left
    f2.unlink()
    m = assert_same_as_clean(IngestStage(), [str(src / "*")], out, tmp_path / "clean-removed")
    assert len(m["shards"]) == 2 and stats(out)["shards_resumed"] == 2
    # add a file that sorts first: every finished shard moves down one position, only it is new
    shutil.copy(shared_data / "dolma/cc_en_head-0174.jsonl", src / "0.jsonl")
    m = assert_same_as_clean(IngestStage(), [str(src / "*")], out, tmp_path / "clean-added")
    assert len(m["shards"]) == 3 and stats(out)["shards_resumed"] == 2
    (src / "0.jsonl").unlink()
    m = assert_same_as_clean(IngestStage(), [str(src / "*")], out, tmp_path / "clean-removed-again")
    assert stats(out)["shards_resumed"] == 2
    # change a file's bytes under the same name
    shutil.copy(shared_data / "resiliparse/warcfile.warc.gz", f1)
    m = assert_same_as_clean(IngestStage(), [str(src / "*")], out, tmp_path / "clean-changed")
    assert m["input"] == 50 + 10 and stats(out)["shards_resumed"] == 1
    # unchanged inputs: nothing is executed and no byte changes (the manifest is not rewritten)
    before = {p: (p.stat().st_mtime_ns, shard_io.sha256_file(p)) for p in sorted(out.rglob("*")) if p.is_file()
              and p.name != "stats.json"}
    m2 = run_stage(IngestStage(), [str(src / "*")], out)  # no runtime given: none is needed
    assert m2 == m and stats(out)["shards_resumed"] == 2
    assert {p: (p.stat().st_mtime_ns, shard_io.sha256_file(p)) for p in before} == before


def test_downstream_keys_upstream_shards_by_checksum(ray_local, shared_data: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = split_jsonl(shared_data, src, parts=3, limit=120)
    ing, down = tmp_path / "ingest", tmp_path / "keep_long"
    run_stage(IngestStage(), [str(src / "*.jsonl")], ing, rt())
    first = run_stage(KeepLong(), [str(ing)], down, rt())
    # touching an input rewrites its ingest shard with equal bytes: downstream reuses everything
    os.utime(files[1], ns=(1, 1))
    run_stage(IngestStage(), [str(src / "*.jsonl")], ing, rt())
    assert stats(ing)["shards_resumed"] == 2
    assert run_stage(KeepLong(), [str(ing)], down, rt()) == first
    assert stats(down)["shards_resumed"] == 3
    # a changed upstream shard redoes exactly that shard downstream
    lines = files[1].read_text(encoding="utf-8").splitlines()
    files[1].write_text("\n".join(lines[: len(lines) // 2]) + "\n", encoding="utf-8")
    run_stage(IngestStage(), [str(src / "*.jsonl")], ing, rt())
    m = assert_same_as_clean(KeepLong(), [str(ing)], down, tmp_path / "clean")
    assert m["input"] < first["input"]
    assert stats(down)["shards_resumed"] == 2


@pytest.mark.slow
def test_dedup_add_remove_change_inputs(ray_local, shared_data: Path, tmp_path: Path) -> None:
    """Dedup is whole-dataset: any input change redoes every shard, so no old commit survives
    beside new decisions (a document rejected in favour of a keeper that is gone)."""
    src = tmp_path / "src"
    files = split_jsonl(shared_data, src, parts=3, limit=240)
    ing, dd = tmp_path / "ingest", tmp_path / "dedup"
    cfg = {"partitions": 2}

    def ingest() -> None:
        run_stage(IngestStage(), [str(src / "*.jsonl")], ing, rt())

    ingest()
    base = run_stage(DedupStage(cfg), [str(ing)], dd, rt())
    # add a file whose copies are older: they become the keepers, the originals duplicates
    earlier_copies(files[0], src / "part3.jsonl")
    ingest()
    m = assert_same_as_clean(DedupStage(cfg), [str(ing)], dd, tmp_path / "clean-added")
    assert stats(dd)["shards_resumed"] == 0 and m["rejected"] >= base["rejected"] + 30
    # remove a file
    files[2].unlink()
    ingest()
    assert_same_as_clean(DedupStage(cfg), [str(ing)], dd, tmp_path / "clean-removed")
    # change a file's bytes
    files[1].write_text(files[0].read_text(encoding="utf-8"), encoding="utf-8")
    ingest()
    m = assert_same_as_clean(DedupStage(cfg), [str(ing)], dd, tmp_path / "clean-changed")
    assert m["reasons"]["dedup:exact_dup"] >= 40
    # unchanged: every shard reused (no runtime given: none is started for a finished stage)
    assert run_stage(DedupStage(cfg), [str(ing)], dd) == m and stats(dd)["shards_resumed"] == len(m["shards"])


@pytest.mark.slow
def test_winnow_run_follows_changed_inputs(ray_local, shared_data: Path, tmp_path: Path, capsys) -> None:
    from winnow.pipeline.cli import main

    src = tmp_path / "src"
    files = split_jsonl(shared_data, src, parts=2, limit=120)
    extra = shutil.copy(shared_data / "warcio/example.warc.gz", src / "z.warc.gz")

    def run(inputs: list[str], out: Path) -> dict[str, dict]:
        cfg = {"inputs": inputs, "output": str(out), "stages": ["ingest", "dedup"], "dedup": {"partitions": 2}}
        path = tmp_path / "pipeline.yaml"
        path.write_text(yaml.safe_dump(cfg))
        assert main(["run", str(path)]) == 0
        return {s: shard_io.read_json(out / s / "manifest.json") for s in cfg["stages"]}

    out = tmp_path / "out"
    run([str(f) for f in files], out)
    scenarios = [("added", [str(f) for f in files] + [str(extra)]),
                 ("removed", [str(files[1]), str(extra)])]
    for name, inputs in scenarios:
        m = run(inputs, out)
        c = run(inputs, tmp_path / f"clean-{name}")
        for stage in ("ingest", "dedup"):
            assert digests(out / stage) == digests(tmp_path / f"clean-{name}" / stage), (name, stage)
            assert counts(m[stage]) == counts(c[stage])
        assert m["dedup"]["input"] == m["ingest"]["kept"]
    # change a file's bytes, same config
    files[1].write_text(files[0].read_text(encoding="utf-8"), encoding="utf-8")
    m = run(scenarios[-1][1], out)
    c = run(scenarios[-1][1], tmp_path / "clean-changed")
    for stage in ("ingest", "dedup"):
        assert digests(out / stage) == digests(tmp_path / "clean-changed" / stage)
    assert m["dedup"]["kept"] == c["dedup"]["kept"]
    capsys.readouterr()


# ---- 2. counts chain, paths, missing inputs -------------------------------------------------------

def test_counts_chain_violation_raises(ray_local, shared_data: Path, tmp_path: Path) -> None:
    ing = tmp_path / "ingest"
    run_stage(IngestStage(), [str(shared_data / "dolma/cc_en_head-0091.jsonl")], ing, rt())
    with pytest.raises(shard_io.AccountingError, match=r"reads_half: input \d+ != \d+ documents kept by its input"):
        run_stage(ReadsHalf(), [str(ing)], tmp_path / "half", rt())
    assert not (tmp_path / "half/manifest.json").exists()


def test_relative_paths_are_resolved_where_winnow_started(ray_local, shared_data: Path, tmp_path: Path,
                                                          monkeypatch) -> None:
    """Ray's workers were started in another directory: relative paths only work if the driver
    made them absolute before shipping anything."""
    from winnow.pipeline.config import validate_config
    from winnow.stages.filter import FilterStage

    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    shutil.copy(shared_data / "warcio/example.warc.gz", work / "data/example.warc.gz")
    monkeypatch.chdir(work)
    m = run_stage(IngestStage(), ["data/example.warc.gz"], "out/ingest", rt())
    assert (m["input"], m["kept"]) == (6, 1) and "ingest:corrupt_input" not in m["reasons"]
    assert m["inputs"] == [str(work / "data/example.warc.gz")]
    assert (work / "out/ingest/manifest.json").exists()
    cfg = validate_config({"inputs": ["data/*.warc.gz", "s3://bucket/x.warc.gz"], "output": "out",
                           "stages": ["ingest", "filter", "dedup"], "dedup": {"index": "idx"},
                           "filter": {"perplexity": {"models": {"en": "models/en"}, "cutoffs": "c.csv"}}})
    assert cfg.inputs == [str(work / "data/*.warc.gz"), "s3://bucket/x.warc.gz"] and cfg.output == str(work / "out")
    assert cfg.build_stage("dedup").config.index == str(work / "idx")
    f = FilterStage({"perplexity": {"models": {"en": "models/en"}, "cutoffs": "c.csv"}, "language": {"model_path": "lid.bin"}})
    assert f.config.perplexity.models == {"en": str(work / "models/en")}
    assert f.config.perplexity.cutoffs == str(work / "c.csv") and f.config.language.model_path == str(work / "lid.bin")


def test_missing_input_is_an_error_naming_it(ray_local, shared_data: Path, tmp_path: Path, capsys) -> None:
    from winnow.pipeline.cli import main
    from winnow.stages.ingest_sources import InputNotFound
    from winnow.stages.remote_io import InputUnreadable

    missing = tmp_path / "missing.warc.gz"
    good = str(shared_data / "warcio/example.warc.gz")
    with pytest.raises(InputNotFound, match="missing.warc.gz: no such file"):
        run_stage(IngestStage(), [good, str(missing)], tmp_path / "out")  # before any work: no Ray needed
    assert not (tmp_path / "out/data").exists()
    assert main(["ingest", good, str(missing), "--out", str(tmp_path / "out")]) == 2
    assert "missing.warc.gz" in capsys.readouterr().err
    # a file that disappears between planning and reading is an error too, never corrupt_input
    gone = tmp_path / "gone.warc.gz"
    shutil.copy(good, gone)
    stage = IngestStage()
    (task,) = stage.plan([str(gone)])
    gone.unlink()
    with pytest.raises(InputUnreadable, match="gone.warc.gz"):
        stage.process_shard(task)
    # a remote URL that does not exist fails at planning, naming it
    with pytest.raises(FileNotFoundError, match="nothing-here.warc.gz"):
        IngestStage().plan([f"memory://{tmp_path}/nothing-here.warc.gz"])


def test_broken_stream_keeps_its_row_and_counts_unread_bytes(shared_data: Path, tmp_path: Path) -> None:
    from winnow.pipeline.runner import build_manifest

    data = bytearray((shared_data / "resiliparse/warcfile.warc.gz").read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = b"\x00" * 64
    bad = tmp_path / "corrupt.warc.gz"
    bad.write_bytes(bytes(data))
    stage = IngestStage()
    (task,) = stage.plan([str(bad)])
    out = stage.process_shard(task)
    reasons = out.rejected.column("reason").to_pylist()
    assert reasons.count("ingest:corrupt_input") == 1
    assert 0 < out.counters["unread_bytes"] < len(data) - mid + 64 * 1024
    record = {"name": task.name, "input": out.input_rows, "kept": out.kept.num_rows, "rejected": out.rejected.num_rows,
              "reasons": {"ingest:corrupt_input": 1, **{r: reasons.count(r) for r in set(reasons) - {"ingest:corrupt_input"}}},
              "counters": out.counters, "data": {}, "rejected_file": {}}
    m = build_manifest(stage, [str(bad)], [record], [task])
    assert m["incomplete_inputs"] == [{"shard": "part-00000", "inputs": [str(bad)], "unread_bytes": out.counters["unread_bytes"]}]


def test_transient_remote_errors_are_retried(shared_data: Path, monkeypatch) -> None:
    from winnow.stages import ingest as ingest_mod
    from winnow.stages import remote_io

    monkeypatch.setattr(remote_io, "BACKOFF_S", 0.0)
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionResetError("connection reset by peer")
        return "ok"

    assert remote_io.with_retries(flaky, "x", backoff_s=0) == "ok" and calls["n"] == 3
    with pytest.raises(remote_io.InputUnreadable, match="still failing after 2 attempts"):
        remote_io.with_retries(lambda: (_ for _ in ()).throw(TimeoutError("slow")), "x", attempts=2, backoff_s=0)
    with pytest.raises(FileNotFoundError):  # not transient: not retried
        remote_io.with_retries(lambda: open("/nonexistent/file"), "x", backoff_s=0)
    # a read that breaks with a network error mid-file restarts the file: no corrupt_input row
    path = str(shared_data / "warcio/example.warc.gz")
    real_open = remote_io.open_raw
    failures = {"n": 0}

    class Breaks(io.RawIOBase):
        def __init__(self, f):
            self.f, self.read_bytes = f, 0

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            if self.read_bytes > 1000:
                raise ConnectionResetError("peer reset")
            data = self.f.read(min(len(b), 512))
            b[:len(data)] = data
            self.read_bytes += len(data)
            return len(data)

        def tell(self) -> int:
            return self.read_bytes

    def open_flaky(p: str):
        if failures["n"] < 2:
            failures["n"] += 1
            return Breaks(real_open(p))
        return real_open(p)

    monkeypatch.setattr(ingest_mod, "open_raw", open_flaky)
    monkeypatch.setattr(ingest_mod, "with_retries", lambda fn, what: remote_io.with_retries(fn, what, backoff_s=0))
    stage = IngestStage()
    (task,) = stage.plan([path])
    out = stage.process_shard(task)
    assert failures["n"] == 2 and out.input_rows == 6 and out.kept.num_rows == 1
    assert "ingest:corrupt_input" not in out.rejected.column("reason").to_pylist()


# ---- 3. execution settings are not identity -------------------------------------------------------

def test_execution_settings_change_neither_hash_nor_bytes(ray_local, shared_data: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    split_jsonl(shared_data, src, parts=3, limit=240)
    earlier_copies(src / "part0.jsonl", src / "part3.jsonl")
    ing = tmp_path / "ingest"
    run_stage(IngestStage(), [str(src / "*.jsonl")], ing, rt())
    a = DedupStage({"partitions": 1})
    b = DedupStage({"partitions": 4, "batch_size": 7, "union_find_max_edges": 0, "backend": "numpy",
                    "keep_work": True, "rows_per_partition": 1000})
    assert a.config_hash() == b.config_hash()
    assert DedupStage({"ngram": 4}).config_hash() != a.config_hash()
    ma = run_stage(a, [str(ing)], tmp_path / "a", rt(workers=1))
    mb = run_stage(b, [str(ing)], tmp_path / "b", rt(workers=2))
    assert digests(tmp_path / "a") == digests(tmp_path / "b") and ma["config_hash"] == mb["config_hash"]
    assert ma["reasons"].get("dedup:minhash_dup", 0) + ma["reasons"]["dedup:exact_dup"] >= 40
    # changing only execution settings never wipes finished work
    run_stage(b, [str(ing)], tmp_path / "a", rt())
    assert stats(tmp_path / "a")["shards_resumed"] == len(ma["shards"])
    assert digests(tmp_path / "a") == digests(tmp_path / "b")


# ---- 6. bad input, bounded ----------------------------------------------------------------------

def _warc_response(path: Path, body: bytes, headers: list[tuple[str, str]]) -> None:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        http = StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1")
        w.write_record(w.create_warc_record("http://bomb.example/", "response", payload=io.BytesIO(body),
                                            http_headers=http))


def _gzip_of_zeros(n: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1 << 20)
    return b"".join(c.compress(chunk) for _ in range(n >> 20)) + c.flush()


def test_gzip_bomb_body_is_too_large_with_bounded_memory(tmp_path: Path) -> None:
    from winnow.stages.warc_records import BodyTooLarge, decode_content_encoding

    bomb = _gzip_of_zeros(256 << 20)  # 256 MB of zeros in ~250 KB
    tracemalloc.start()
    with pytest.raises(BodyTooLarge):
        decode_content_encoding(bomb, "gzip", 5_000_000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20_000_000, f"inflating a bomb must stop at the cap, peaked at {peak} bytes"
    page = b"<html><body><p>" + b"A paragraph about rivers and hills. " * 30 + b"</p></body></html>"
    assert decode_content_encoding(gzip.compress(page), "gzip", 5_000_000) == page
    path = tmp_path / "bomb.warc.gz"
    _warc_response(path, bomb, [("Content-Type", "text/html"), ("Content-Encoding", "gzip")])
    stage = IngestStage()
    (task,) = stage.plan([str(path)])
    out = stage.process_shard(task)
    assert out.rejected.column("reason").to_pylist() == ["ingest:too_large"]


def test_lenient_wet_reader_streams(shared_data: Path) -> None:
    from winnow.stages.warc_records import RawRecord, StreamError, resync_records

    text = (shared_data / "cc_net/sample.warc.txt").read_bytes()
    big = text * 200  # ~800 records

    class Counting(io.BytesIO):
        def read(self, n: int = -1) -> bytes:
            if n is None or n < 0:
                raise AssertionError("the lenient reader must not read the whole file at once")
            return super().read(n)

    stream = Counting(big)
    it = resync_records(stream)
    first = next(it)
    assert isinstance(first, RawRecord) and stream.tell() < len(big) // 4
    items = [first, *it]
    assert sum(isinstance(i, RawRecord) for i in items) == 4 * 200
    assert not any(isinstance(i, StreamError) for i in items)
    # the same records as read from the gzip of the file, and the too-large cap holds
    g = list(resync_records(io.BytesIO(gzip.compress(text))))
    assert [r.body for r in g] == [r.body for r in items[:4]]
    capped = list(resync_records(io.BytesIO(text), max_body_bytes=50))
    assert {r.problem for r in capped if r.record_type == "conversion"} == {"too_large"}


def test_filter_error_share_fails_the_stage(tmp_path: Path) -> None:
    from winnow.stages.filter import FilterErrorRate, FilterStage

    n = 400
    table = pa.table({"id": [f"d{i}" for i in range(n)], "url": ["u"] * n, "text": [f"text {i}" for i in range(n)]})

    def stage_raising_on(every: int) -> FilterStage:
        st = FilterStage()
        st._models = object()  # no models needed: the per-document steps are replaced

        def judge(text, count):
            if int(text.split()[1]) % every == 0:
                raise KeyError("a bug")
            return None, ("en", 0.9, 2, None, "all")

        st._screen = judge  # type: ignore[method-assign]
        return st

    with pytest.raises(FilterErrorRate, match=r"raised on 20 of 400 documents .*KeyError"):
        stage_raising_on(20).filter_table(table)                    # 5% > 1%
    out = stage_raising_on(200).filter_table(table)                 # 0.5%: counted rejections
    assert out.rejected.column("reason").to_pylist() == ["filter:error"] * 2
    # the stage total: shards too small to judge alone still fail the stage together
    (tmp_path / "_progress").mkdir()
    (tmp_path / "_progress/part-00000.json").write_text("{}")
    (tmp_path / "_progress/part-00001.json").write_text("{}")
    manifest = {"input": 100, "counters": {"error_KeyError": 2}}
    records = [{"name": "part-00000", "counters": {"error_KeyError": 2}}, {"name": "part-00001", "counters": {}}]
    with pytest.raises(FilterErrorRate, match="2 of 100"):
        FilterStage().check_output(manifest, records, tmp_path)
    assert not (tmp_path / "_progress/part-00000.json").exists()      # redone on the next run
    assert (tmp_path / "_progress/part-00001.json").exists()
    FilterStage({"max_error_share": 0.05}).check_output(manifest, records, tmp_path)


def test_stale_shard_files_of_any_extension_are_removed(tmp_path: Path) -> None:
    for sub, name in [("data", "part-00000.parquet"), ("data", "part-00007.arrow"), ("data", "part-00007.bin"),
                      ("data", "part-00007.idx"), ("rejected", "part-00009.parquet"), ("_progress", "part-00009.json"),
                      ("data", ".part-00000.parquet.x1.tmp")]:
        (tmp_path / sub).mkdir(exist_ok=True)
        (tmp_path / sub / name).write_bytes(b"x")
    removed = shard_io.remove_stale_shards(tmp_path, ["part-00000"])
    assert len(removed) == 6
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["part-00000.parquet"]


def test_relocating_committed_shards_swaps_and_copies(tmp_path: Path) -> None:
    """Renaming finished shards when inputs shift: a swap, and one source for two names."""
    for name, ids in [("part-00000", ["a"]), ("part-00001", ["b", "c"])]:
        shard_io.commit_shard(tmp_path, name, kept=pa.table({"id": ids}), rejected=shard_io.empty_rejected(),
                              input_rows=len(ids), config_hash="h", fingerprint=f"fp-{ids[0]}")
    (tmp_path / "data/part-00001.idx").write_bytes(b"sidecar of b")
    shard_io.relocate_shards(tmp_path, {"part-00000": "part-00001", "part-00001": "part-00000", "part-00002": "part-00001"})
    for name, ids, fp in [("part-00000", ["b", "c"], "fp-b"), ("part-00001", ["a"], "fp-a"), ("part-00002", ["b", "c"], "fp-b")]:
        rec = shard_io.committed_shard(tmp_path, name, "h", fp)
        assert rec is not None and rec["name"] == name and rec["data"]["path"] == f"data/{name}.parquet"
        assert shard_io.read_shard(tmp_path / rec["data"]["path"]).column("id").to_pylist() == ids
        assert shard_io.sha256_file(tmp_path / rec["data"]["path"]) == rec["data"]["sha256"]
    assert (tmp_path / "data/part-00000.idx").read_bytes() == b"sidecar of b"
    assert not (tmp_path / "data/part-00001.idx").exists() and not (tmp_path / "_relocating").exists()


def test_finished_stages_rerun_without_starting_ray(ray_local, shared_data: Path, tmp_path: Path) -> None:
    """A rerun of finished stages with unchanged inputs plans, finds everything committed and
    returns the same manifests without starting Ray (checked in a fresh process)."""
    import subprocess
    import sys

    inputs = [str(shared_data / "dolma/cc_en_head-0091.jsonl"), str(shared_data / "dolma/cc_en_head-0174.jsonl")]
    mi = run_stage(IngestStage(), inputs, tmp_path / "ingest", rt())
    md = run_stage(DedupStage({"partitions": 1}), [str(tmp_path / "ingest")], tmp_path / "dedup", rt())
    script = f"""
import json, ray
from winnow.pipeline.runner import run_stage
from winnow.stages.dedup import DedupStage
from winnow.stages.ingest import IngestStage
mi = run_stage(IngestStage(), {inputs!r}, {str(tmp_path / "ingest")!r})
md = run_stage(DedupStage({{"partitions": 1}}), [{str(tmp_path / "ingest")!r}], {str(tmp_path / "dedup")!r})
print(json.dumps({{"ray": ray.is_initialized(), "ingest": mi, "dedup": md}}))
"""
    env = {**os.environ, "RAY_ADDRESS": ""}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300, check=True)
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got == {"ray": False, "ingest": mi, "dedup": md}
