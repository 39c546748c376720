"""Ingest on the real crawl files in ../shared/data and on constructed bad input: every record is
kept or rejected with a reason, nothing crashes, ids are stable."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from winnow.stages.ingest import IngestStage, document_id, dump_from, file_kind
from winnow.stages.ingest_sources import InputNotFound, UnsafeListingEntry, expand_inputs
from tests.warc_fixtures import write_warc

CJK = set("的一是不了人在有这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严")


def run_file(path: Path, **config) -> tuple:
    stage = IngestStage(config)
    (task,) = stage.plan([str(path)])
    out = stage.process_shard(task)
    reasons = Counter(out.rejected.column("reason").to_pylist())
    return out, reasons


def count_records_with_warcio(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in ArchiveIterator(f, check_digests=False))


@pytest.mark.parametrize("name", ["resiliparse/warcfile.warc.gz", "resiliparse/clueweb-quirk.warc.gz",
                                  "whirlwind/whirlwind.warc.gz", "whirlwind/whirlwind.warc.wet.gz",
                                  "whirlwind/whirlwind.warc.wat.gz", "dolma/sample-0000.warc.gz",
                                  "dolma/sample-0001.warc.gz", "warcio/example.warc.gz",
                                  "warcio/example-iana.org-chunked.warc"])
def test_every_warc_record_is_accounted_for(shared_data: Path, name: str) -> None:
    path = shared_data / name
    out, reasons = run_file(path)
    expected = count_records_with_warcio(path)
    assert out.input_rows == expected
    assert out.kept.num_rows + out.rejected.num_rows == expected
    assert all(r.startswith("ingest:") for r in reasons)


def test_cc_warc_documents_carry_metadata(shared_data: Path) -> None:
    out, reasons = run_file(shared_data / "whirlwind/whirlwind.warc.gz")
    (doc,) = out.kept.to_pylist()
    assert doc["url"] == "https://an.wikipedia.org/wiki/Escopete"
    assert doc["host"] == "an.wikipedia.org"
    assert doc["dump"] == "CC-MAIN-2024-22"
    assert doc["crawl_date"].year == 2024
    assert "Escopete" in doc["text"] and "<div" not in doc["text"]
    assert reasons == {"ingest:record_type_warcinfo": 1, "ingest:record_type_request": 1, "ingest:record_type_metadata": 1}


def test_gbk_pages_decode_to_chinese(shared_data: Path) -> None:
    out, _ = run_file(shared_data / "resiliparse/warcfile.warc.gz")
    texts = out.kept.column("text").to_pylist()
    assert len(texts) == 16
    assert all(d == "CC-MAIN-2020-34" for d in out.kept.column("dump").to_pylist())
    # 11 of the 16 pages are Chinese (some nearly empty); decoded wrongly, GBK shows no common hanzi
    chinese = [t for t in texts if sum(ch in CJK for ch in t) >= 10]
    assert len(chinese) >= 11, "the Chinese SEO pages (half GBK) must decode to Chinese text"
    for t in texts:
        assert t.count("\ufffd") < 0.01 * len(t)


def test_ids_are_stable_and_unique(shared_data: Path) -> None:
    a, _ = run_file(shared_data / "resiliparse/warcfile.warc.gz")
    b, _ = run_file(shared_data / "resiliparse/warcfile.warc.gz")
    assert a.kept.column("id").to_pylist() == b.kept.column("id").to_pylist()
    ids = a.kept.column("id").to_pylist() + a.rejected.column("id").to_pylist()
    assert len(set(ids)) == len(ids)
    url = a.kept.column("url")[0].as_py()
    assert document_id("CC-MAIN-2020-34", url, "x") != document_id("CC-MAIN-2020-35", url, "x")


def test_revisit_and_clipped_records_are_rejected_with_reasons(shared_data: Path) -> None:
    _, reasons = run_file(shared_data / "warcio/example.warc.gz")
    assert reasons["ingest:revisit"] == 1
    out, reasons = run_file(shared_data / "resiliparse/clipped.warc.gz")
    assert out.input_rows == 1 and reasons == {"ingest:truncated_record": 1}


def test_wet_with_wrong_lengths_is_read_and_counted(shared_data: Path) -> None:
    path = shared_data / "cc_net/sample.warc.txt"
    n_records = path.read_bytes().count(b"\nWARC/1.0\n") + 1
    out, reasons = run_file(path)
    assert out.input_rows == n_records == 4
    assert out.kept.num_rows == 3 and reasons == {"ingest:record_type_warcinfo": 1}
    assert out.counters["length_mismatch"] == 3
    assert {u.split("//")[1] for u in out.kept.column("url").to_pylist()} == {"sample_english.com", "sample_chinese.zh", "sample_russian.ru"}
    out, reasons = run_file(path, on_length_mismatch="reject")
    assert reasons["ingest:length_mismatch"] == 3


def test_truncated_gzip_keeps_what_came_before(shared_data: Path, tmp_path: Path) -> None:
    data = (shared_data / "resiliparse/warcfile.warc.gz").read_bytes()
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(data[: len(data) // 2])
    out, reasons = run_file(cut)
    assert out.kept.num_rows >= 4
    assert out.kept.num_rows + out.rejected.num_rows == out.input_rows
    bad = reasons.get("ingest:truncated_record", 0) + reasons.get("ingest:corrupt_input", 0)
    assert bad >= 1, "the cut must be reported, not silently dropped"


def test_corrupt_bytes_in_gzip_are_reported(tmp_path: Path, shared_data: Path) -> None:
    data = bytearray((shared_data / "resiliparse/warcfile.warc.gz").read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = b"\x00" * 64
    bad = tmp_path / "corrupt.warc.gz"
    bad.write_bytes(bytes(data))
    out, reasons = run_file(bad)
    assert out.kept.num_rows + out.rejected.num_rows == out.input_rows
    assert reasons.get("ingest:corrupt_input", 0) + reasons.get("ingest:truncated_record", 0) >= 1


def test_bad_bodies_become_counted_rejections(tmp_path: Path) -> None:
    page = b"<html><body><article><p>" + b"A real paragraph of text about rivers and hills. " * 20 + b"</p></article></body></html>"
    huge = b"<html><body><p>" + b"word " * 2_200_000 + b"</p></body></html>"  # ~11 MB
    binary = bytes(range(256)) * 64
    path = write_warc(tmp_path / "bad.warc.gz", [
        ("http://ok.example/", page, "text/html; charset=utf-8"),
        ("http://huge.example/", huge, "text/html"),
        ("http://bin.example/", binary, "text/html"),
        ("http://pdf.example/", b"%PDF-1.4 ...", "application/pdf"),
        ("http://empty.example/", b"<html><body></body></html>", "text/html"),
        ("http://latin.example/", "<html><body><p>Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, d\u00e9j\u00e0 vu. </p></body></html>".encode("latin-1") * 5, "text/html"),
    ])
    out, reasons = run_file(path)
    assert out.input_rows == 7
    assert reasons == {"ingest:record_type_warcinfo": 1, "ingest:too_large": 1, "ingest:binary_body": 1,
                       "ingest:non_html": 1, "ingest:empty_text": 1}
    kept = dict(zip(out.kept.column("url").to_pylist(), out.kept.column("text").to_pylist()))
    assert set(kept) == {"http://ok.example/", "http://latin.example/"}
    assert "Café crème" in kept["http://latin.example/"]
    assert out.kept.column("dump").to_pylist() == ["CC-MAIN-2099-01"] * 2


def test_jsonl_bad_lines_are_rejected(tmp_path: Path) -> None:
    p = tmp_path / "docs.jsonl.gz"
    with gzip.open(p, "wt") as f:
        f.write(json.dumps({"text": "hello world", "url": "http://a.example/x"}) + "\n")
        f.write("{not json\n")
        f.write(json.dumps([1, 2]) + "\n")
        f.write(json.dumps({"url": "http://b.example/"}) + "\n")
        f.write(json.dumps({"text": "   ", "url": "http://c.example/"}) + "\n")
    out, reasons = run_file(p)
    assert out.input_rows == 5 and out.kept.num_rows == 1
    assert reasons == {"ingest:bad_json": 2, "ingest:no_text_field": 1, "ingest:empty_text": 1}
    assert out.kept.column("host").to_pylist() == ["a.example"]


def test_extracted_jsonl_keeps_cc_metadata(shared_data: Path) -> None:
    out, reasons = run_file(shared_data / "dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz")
    assert out.input_rows == 697
    assert out.kept.num_rows + sum(reasons.values()) == 697
    assert set(reasons) <= {"ingest:empty_text"}
    urls = out.kept.column("url").to_pylist()
    assert all(u.startswith("http") for u in urls)
    assert all(d is not None for d in out.kept.column("crawl_date").to_pylist())


def test_input_expansion(tmp_path: Path, shared_data: Path) -> None:
    listing = tmp_path / "warc.paths.gz"
    with gzip.open(listing, "wt") as f:
        f.write(f"{shared_data / 'whirlwind/whirlwind.warc.gz'}\n{shared_data / 'warcio/example.warc.gz'}\n")
    # absolute entries are refused unless the config allows them (a listing must not make
    # workers read arbitrary local files)
    with pytest.raises(UnsafeListingEntry, match="line 1: entry .*whirlwind.warc.gz' is an absolute path"):
        expand_inputs([str(listing)])
    files = expand_inputs([str(listing)], paths_limit=1, allow_absolute=True)
    assert files == [str(shared_data / "whirlwind/whirlwind.warc.gz")]
    files = expand_inputs([str(shared_data / "resiliparse/*.warc.gz"), str(listing)], allow_absolute=True)
    assert len(files) == 5 and files[:3] == sorted(files[:3])
    for entry, problem in [("s3://bucket/x.warc.gz", "its own scheme"), ("file:/etc/passwd", "its own scheme"),
                           ("crawl-data/../../secret.warc.gz", "'..'")]:
        with gzip.open(listing, "wt") as f:
            f.write(f"crawl-data/CC-MAIN-2024-22/a.warc.wet.gz\n{entry}\n")
        with pytest.raises(UnsafeListingEntry, match=f"line 2: .*{problem}"):
            expand_inputs([str(listing)])
    with gzip.open(listing, "wt") as f:
        f.write("crawl-data/CC-MAIN-2024-22/a.warc.wet.gz\n")
    assert expand_inputs([str(listing)]) == ["https://data.commoncrawl.org/crawl-data/CC-MAIN-2024-22/a.warc.wet.gz"]
    with pytest.raises(InputNotFound, match="nothing"):
        expand_inputs([str(tmp_path / "*.warc.gz")])
    with pytest.raises(InputNotFound, match="no such file"):
        expand_inputs([str(tmp_path / "missing.warc.gz")])
    assert dump_from("crawl-data/CC-MAIN-2024-22/segments/x/wet/CC-MAIN-20240518-00001.warc.wet.gz") == "CC-MAIN-2024-22"
    with pytest.raises(ValueError, match="unknown input kind"):
        file_kind("notes.docx")


def test_undecodable_wet_text_is_rejected(tmp_path: Path) -> None:
    from warcio.warcwriter import WARCWriter
    import io as _io
    path = tmp_path / "bad.warc.wet.gz"
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        for url, body in [("http://good.example/", "Plain readable text, ünïcödé included.".encode()),
                          ("http://bad.example/", bytes(range(128, 256)) * 8)]:
            w.write_record(w.create_warc_record(url, "conversion", payload=_io.BytesIO(body),
                                                warc_content_type="text/plain"))
    out, reasons = run_file(path)
    assert out.input_rows == 2 and reasons == {"ingest:undecodable": 1}
    assert out.kept.column("text").to_pylist() == ["Plain readable text, ünïcödé included."]
