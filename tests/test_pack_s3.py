"""The pack stage with its output directory, its input stage directory and its tokenizer on object
storage, against a real S3 server on loopback (moto's, behind the fault proxy of `s3_server.py`).

Covered: a pack from `s3://` input shards into `s3://` equals, object by object (sha256, the
pack manifest included), a pack of the same input into a local directory; every pack file of a
shard is uploaded before its commit record and `pack_manifest.json` after every record; PUTs that
fail once are retried; a rerun reuses every shard and PUTs no pack manifest; a shard whose `.idx`
vanished is caught and redone; the tokenizer directory on `s3://` (fetched once per process, its
sha256 the same as the local copy's); a missing tokenizer on `s3://` is a clear error before any
work; a run on Ray SIGKILLed mid-stage and resumed gives the same objects; and
`winnow.tokenizer.PackedDataset` reads the downloaded pack.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pytest

from pack_fixtures import corpus_rows, make_tokenizer_dir
from s3_server import BUCKET, S3, kill_when, object_count, s3  # noqa: F401 - s3 is the fixture
from winnow.pipeline import shards as shard_io
from winnow.pipeline.runner import SerialRuntime, run_stage
from winnow.stages.pack import PACK_MANIFEST, PackStage

REPO = Path(__file__).resolve().parents[1]
SEQ_LEN = 64


@pytest.fixture
def s3_env(s3: S3, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    """This process talks to the test server, with botocore's own retries off (a 503 from the
    fault proxy must be cured by winnow's `write_retrying`, not by botocore)."""
    import s3fs

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
              "AWS_EC2_METADATA_DISABLED"):
        monkeypatch.setenv(k, s3.env[k])
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3fs.S3FileSystem.clear_instance_cache()
    yield s3
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """The DeepSeek LLM anchor tokenizer with its BOS/EOS named (the pack tests' tokenizer)."""
    return make_tokenizer_dir(tmp_path_factory.mktemp("tok") / "tokenizer", shared_data)


def upload_dir(s3: S3, local: Path, prefix: str) -> str:
    for p in sorted(local.rglob("*")):
        if p.is_file():
            s3.client.upload_file(str(p), BUCKET, f"{prefix}/{p.relative_to(local)}")
    return f"s3://{BUCKET}/{prefix}"


def input_stage(s3: S3, where: Path, prefix: str, shards: list[list[dict[str, Any]]]) -> str:
    """A stage directory as the runner writes it (parquet shards, commit records, manifest), made
    from real corpus documents and uploaded under `prefix`; its URL."""
    local = where / prefix.replace("/", "_")
    recs = []
    for i, rows in enumerate(shards):
        recs.append(shard_io.commit_shard(local, f"part-{i:05d}", kept=pa.Table.from_pylist(rows),
                                          rejected=shard_io.empty_rejected(), input_rows=len(rows),
                                          config_hash="x", fingerprint=f"y{i}"))
    n = sum(map(len, shards))
    shard_io.write_json_atomic({"stage": "hand", "input": n, "kept": n, "rejected": 0, "counters": {},
                                "shards": [r["data"] for r in recs], "rejected_shards": [r["rejected_file"] for r in recs]},
                               local / "manifest.json")
    return upload_dir(s3, local, prefix)


def docs(shared_data: Path, n_shards: int, per_source: int) -> list[list[dict[str, Any]]]:
    """Real documents of four sources (three languages, four domains) in `n_shards` shards, with
    two empty texts (rejected by pack as `pack:empty`)."""
    rows = corpus_rows(shared_data, per_source=per_source, max_chars=1200)
    rows.insert(2, {"id": "empty-1", "url": "http://x/1", "text": "", "lang": "en", "domain": "reviews"})
    rows.insert(7, {"id": "empty-2", "url": None, "text": None, "lang": "zh", "domain": "code"})
    step = -(-len(rows) // n_shards)
    return [rows[i:i + step] for i in range(0, len(rows), step)]


def local_objects(stage_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(stage_dir)): p.read_bytes() for p in sorted(stage_dir.rglob("*")) if p.is_file()}


def sha(files: dict[str, bytes]) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}


def pack_objects(files: dict[str, bytes]) -> dict[str, str]:
    """sha256 of what a training job reads: every data and rejected object and the pack manifest."""
    return sha({k: v for k, v in files.items() if k.split("/", 1)[0] in ("data", "rejected") or k == PACK_MANIFEST})


def test_pack_from_s3_into_s3_equals_a_local_pack(s3_env: S3, tmp_path: Path, tok: Path, shared_data: Path) -> None:
    """Pack reads `s3://` input shards and writes `s3://`: every object (the commit records and
    both manifests too) equals a pack of the same input into a local directory; each shard's
    `.idx`, `.pidx`, `.bin` and rejected objects are PUT before its commit record, the pack
    manifest after every record and before the runner's manifest; a PUT of an `.idx` and of the
    pack manifest that fails once (503) is retried. A rerun reuses every shard and PUTs no pack
    manifest; a shard whose `.idx` object vanished is redone by the next run. `PackedDataset` reads the pack downloaded with fsspec."""
    import fsspec

    from winnow.tokenizer.indexed import IndexedReader
    from winnow.tokenizer.reader import PackedDataset

    shards = docs(shared_data, 3, 8)
    inp = input_stage(s3_env, tmp_path, "pk1/ingest", shards)
    cfg = {"tokenizer": str(tok), "seq_len": SEQ_LEN, "packing": "bestfit"}
    out = f"s3://{BUCKET}/pk1/pack"
    flaky = {f"/{BUCKET}/pk1/pack/data/part-00001.idx", f"/{BUCKET}/pk1/pack/{PACK_MANIFEST}"}
    s3_env.proxy.fail_once |= flaky
    before = dict(s3_env.proxy.puts)
    m_remote = run_stage(PackStage(cfg), [inp], out, SerialRuntime())
    assert not s3_env.proxy.fail_once & flaky, "the failing PUTs were retried"
    m_local = run_stage(PackStage(cfg), [inp], tmp_path / "pack", SerialRuntime())
    assert m_remote == m_local and m_remote["input"] == sum(map(len, shards)) and m_remote["rejected"] == 2
    remote, local = s3_env.keys("pk1/pack/"), local_objects(tmp_path / "pack")
    assert set(remote) == set(local) and len(pack_objects(remote)) == 3 * 4 + 1
    assert pack_objects(remote) == pack_objects(local)
    assert {k: v for k, v in remote.items() if k != "stats.json"} == {k: v for k, v in local.items() if k != "stats.json"}

    # upload order: a shard's four objects, then its record; the pack manifest, then the manifest
    order = [k.split("/pk1/pack/", 1)[1] for k in s3_env.proxy.puts if "/pk1/pack/" in k and k not in before
             and "probe" not in k]
    for i in range(3):
        rec = order.index(f"_progress/part-{i:05d}.json")
        assert all(order.index(f"data/part-{i:05d}.{ext}") < rec for ext in ("bin", "idx", "pidx"))
        assert order.index(f"rejected/part-{i:05d}.parquet") < rec
    assert order.index(PACK_MANIFEST) > max(order.index(f"_progress/part-{i:05d}.json") for i in range(3))
    assert order.index("manifest.json") > order.index(PACK_MANIFEST)

    # a rerun: nothing redone, no pack manifest PUT
    puts = s3_env.proxy.puts.get(f"/{BUCKET}/pk1/pack/{PACK_MANIFEST}")
    run_stage(PackStage(cfg), [inp], out, SerialRuntime())
    assert json.loads(s3_env.keys("pk1/pack/")["stats.json"])["shards_resumed"] == 3
    assert s3_env.proxy.puts.get(f"/{BUCKET}/pk1/pack/{PACK_MANIFEST}") == puts

    # an .idx object gone: the runner checks every file a commit record names, so the next run
    # redoes exactly that shard, and the pack equals the local one again
    s3_env.client.delete_object(Bucket=BUCKET, Key="pk1/pack/data/part-00001.idx")
    run_stage(PackStage(cfg), [inp], out, SerialRuntime())
    again = s3_env.keys("pk1/pack/")
    assert pack_objects(again) == pack_objects(local)
    assert json.loads(again["stats.json"])["shards_resumed"] == 2

    # a training job's reader on the downloaded pack
    fs, path = fsspec.core.url_to_fs(out)
    fs.invalidate_cache()
    fs.get(path + "/", str(tmp_path / "downloaded"), recursive=True)
    down = tmp_path / "downloaded"
    assert pack_objects(local_objects(down)) == pack_objects(local)
    ds = PackedDataset(down, SEQ_LEN, tokenizer=tok, verify_checksums=True)
    pm = json.loads(remote[PACK_MANIFEST])
    assert ds.samples_per_epoch == pm["windows"] > 0
    s = ds.sample(0)
    assert s["input_ids"].shape == (SEQ_LEN,) and s["labels"].shape == (SEQ_LEN,)
    first = IndexedReader(down / pm["shards"][0]["bin"]["path"], down / pm["shards"][0]["idx"]["path"])
    assert int(np.asarray(first[0])[0]) == pm["bos_id"] and len(first) == pm["shards"][0]["documents"]


def test_pack_with_the_tokenizer_on_s3(s3_env: S3, tmp_path: Path, tok: Path, shared_data: Path) -> None:
    """The tokenizer directory given as `s3://…/tokenizer` (the tokenizer stage's output on the
    store): fetched into a local temporary directory of the process, its sha256 the local
    copy's, and the pack's objects (pack manifest included) equal a pack with the local copy."""
    from winnow.stages import pack as pack_mod

    tok_url = upload_dir(s3_env, tok, "pk2/tokenizer")
    inp = input_stage(s3_env, tmp_path, "pk2/ingest", docs(shared_data, 2, 5))
    stage = PackStage({"tokenizer": tok_url, "seq_len": SEQ_LEN})
    assert stage.info()["sha256"] == shard_io.sha256_file(tok / "tokenizer.json")
    fetched = stage.tokenizer_dir()
    assert not str(fetched).startswith("s3:") and (fetched / "tokenizer_config.json").read_bytes() == \
        (tok / "tokenizer_config.json").read_bytes()
    assert PackStage({"tokenizer": tok_url + "/tokenizer.json"}).tokenizer_dir() == fetched  # once per process
    assert pack_mod._FETCHED[tok_url][1] == fetched
    run_stage(stage, [inp], f"s3://{BUCKET}/pk2/pack", SerialRuntime())
    run_stage(PackStage({"tokenizer": str(tok), "seq_len": SEQ_LEN}), [inp], tmp_path / "pack", SerialRuntime())
    remote = s3_env.keys("pk2/pack/")
    assert pack_objects(remote) == pack_objects(local_objects(tmp_path / "pack"))
    assert json.loads(remote[PACK_MANIFEST])["tokenizer_sha256"] == shard_io.sha256_file(tok / "tokenizer.json")
    # a tokenizer rewritten at the same URL (retrained) is fetched again: its sha256 is the new
    # bytes', so the config hash changes and every shard would be repacked
    changed = (tok / "tokenizer.json").read_bytes() + b"\n"
    s3_env.client.put_object(Bucket=BUCKET, Key="pk2/tokenizer/tokenizer.json", Body=changed)
    again = PackStage({"tokenizer": tok_url, "seq_len": SEQ_LEN})
    assert again.info()["sha256"] == hashlib.sha256(changed).hexdigest()
    assert again.config_hash() != stage.config_hash() and again.tokenizer_dir() != fetched
    assert (again.tokenizer_dir() / "tokenizer.json").read_bytes() == changed


def test_a_missing_tokenizer_on_s3_is_a_clear_error_before_work(s3_env: S3, tmp_path: Path, shared_data: Path) -> None:
    """A tokenizer prefix without `tokenizer.json` (or on a bucket that does not exist): an error
    naming it at planning; nothing is written under the output prefix."""
    inp = input_stage(s3_env, tmp_path, "pk3/ingest", docs(shared_data, 1, 2))
    for where in (f"s3://{BUCKET}/pk3/no-tokenizer", "s3://no-such-bucket-here/tokenizer"):
        with pytest.raises(FileNotFoundError, match=f"{where}: no tokenizer.json"):
            run_stage(PackStage({"tokenizer": where}), [inp], f"s3://{BUCKET}/pk3/pack", SerialRuntime())
    assert s3_env.keys("pk3/pack/") == {}


PACK_DRIVER = textwrap.dedent("""
    import json, sys
    from winnow.pipeline.runner import RayRuntime, run_stage
    from winnow.stages.pack import PackStage
    inp, out, tokenizer, workers = sys.argv[1:]
    rt = RayRuntime(workers=int(workers), show_progress=False)
    m = run_stage(PackStage({"tokenizer": tokenizer, "seq_len": 64}), [inp], out, rt)
    print("RESULT " + json.dumps({"input": m["input"], "kept": m["kept"], "shards": len(m["shards"])}))
""")


@pytest.mark.slow
def test_pack_on_ray_killed_mid_stage_resumes(s3_env: S3, tmp_path: Path, tok: Path, shared_data: Path) -> None:
    """Pack on Ray from `s3://` input into `s3://` with the tokenizer on `s3://` (each worker
    fetches it itself: no disk shared with the driver), SIGKILLed once a few shards are
    committed; the rerun (whose pack-manifest PUT fails once) reuses them, and every object
    equals a pack of the same input into a local directory."""
    shards = docs(shared_data, 24, 60)
    n = len(shards)
    tok_url = upload_dir(s3_env, tok, "pk4/tokenizer")
    inp = input_stage(s3_env, tmp_path, "pk4/ingest", shards)
    out = f"s3://{BUCKET}/pk4/pack"
    args = [sys.executable, "-c", PACK_DRIVER, inp, out, tok_url, "1"]
    proc = subprocess.Popen(args, cwd=REPO, env=s3_env.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)

    def records() -> int:
        return object_count(s3_env, "pk4/pack/_progress/")

    kill_when(proc, lambda: records() >= 3, "a third shard commit")
    committed = records()
    assert 3 <= committed < n, "the kill must land part-way"
    assert PACK_MANIFEST not in s3_env.keys("pk4/pack/")
    flaky = {f"/{BUCKET}/pk4/pack/{PACK_MANIFEST}"}
    s3_env.proxy.fail_once |= flaky
    done = subprocess.run(args[:-1] + ["2"], cwd=REPO, env={**s3_env.env, "AWS_MAX_ATTEMPTS": "1"},
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert not s3_env.proxy.fail_once & flaky
    print(f"pack killed with {committed} of {n} shards committed")  # for the report
    remote = s3_env.keys("pk4/pack/")
    assert json.loads(remote["stats.json"])["shards_resumed"] >= committed
    run_stage(PackStage({"tokenizer": str(tok), "seq_len": SEQ_LEN}), [inp], tmp_path / "pack", SerialRuntime())
    local = local_objects(tmp_path / "pack")
    assert pack_objects(remote) == pack_objects(local) and len(pack_objects(local)) == 4 * n + 1
    m = json.loads(remote["manifest.json"])
    assert m["input"] == m["kept"] + m["rejected"] == sum(map(len, shards))


def test_pack_takes_the_tokenizer_stage_output_on_s3(s3_env: S3, tmp_path: Path, shared_data: Path) -> None:
    """`winnow run`'s chain on object storage: the tokenizer stage trains into `s3://…/tokenizer`,
    pack gets that URL as its artifact (`with_artifacts`, as `winnow run` passes it) and packs
    into `s3://`; the result equals a pack with a local copy of the same tokenizer files."""
    import fsspec

    from winnow.stages.tokenizer_train import TokenizerStage

    shards = docs(shared_data, 2, 10)
    inp = input_stage(s3_env, tmp_path, "pk5/ingest", shards)
    tok_url = f"s3://{BUCKET}/pk5/tokenizer"
    run_stage(TokenizerStage({"vocab_size": 1024, "sample_bytes": 200_000}), [inp], tok_url, SerialRuntime())
    stage = PackStage({"seq_len": SEQ_LEN}).with_artifacts({"tokenizer": tok_url})
    assert stage.config.tokenizer == tok_url
    m = run_stage(stage, [inp], f"s3://{BUCKET}/pk5/pack", SerialRuntime())
    assert m["input"] == sum(map(len, shards)) and m["rejected"] == 2
    local_tok = tmp_path / "tok"
    fs, path = fsspec.core.url_to_fs(tok_url)
    local_tok.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        fs.get(f"{path}/{name}", str(local_tok / name))
    run_stage(PackStage({"seq_len": SEQ_LEN, "tokenizer": str(local_tok)}), [inp], tmp_path / "pack", SerialRuntime())
    remote = s3_env.keys("pk5/pack/")
    assert pack_objects(remote) == pack_objects(local_objects(tmp_path / "pack"))
    pm = json.loads(remote[PACK_MANIFEST])
    from tokenizers import Tokenizer

    assert pm["vocab_size"] == Tokenizer.from_file(str(local_tok / "tokenizer.json")).get_vocab_size(True)
    assert pm["tokenizer_sha256"] == shard_io.sha256_file(local_tok / "tokenizer.json")
    assert pm["bos_id"] is not None and pm["tokens"] > 0


def test_a_reused_local_shard_missing_its_pidx_is_redone(tmp_path: Path, tok: Path, shared_data: Path) -> None:
    """The same on a local directory: a shard whose `.pidx` is gone is not reused (the runner
    checks every file its commit record names); the rerun redoes that shard only and the files
    equal the first run's."""
    from pack_fixtures import build_pack

    out, _ = build_pack(tmp_path, tok, docs(shared_data, 2, 4), seq_len=SEQ_LEN)
    first = local_objects(out)
    (out / "data" / "part-00000.pidx").unlink()
    stage = PackStage({"tokenizer": str(tok), "seq_len": SEQ_LEN})
    run_stage(stage, [str(tmp_path / "pack-in")], out, SerialRuntime())
    assert pack_objects(local_objects(out)) == pack_objects(first)
    assert json.loads((out / "stats.json").read_text())["shards_resumed"] == 1
