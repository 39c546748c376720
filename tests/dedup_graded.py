"""A graded near-duplicate set built from real text, and its scoring: how the dedup quality figures
(precision / recall against exact Jaccard ≥ 0.8 on 5-gram shingles) are measured, by the tests and
by bench/dedup.py alike. Evaluation code, so it lives beside the tests, not in the installed
package (bench/dedup.py puts tests/ on sys.path to import it). :func:`cluster_labels` reads a
finished dedup run's work files to say which document each input ended up with.

Each *family* is one real document (Common Crawl text, Wikipedia, Chinese Wikipedia) and one
variant of it made at a known grade:

- ``format``   case, punctuation, whitespace, digits and accents changed: identical after normalisation;
- ``edit r``   each word (character, for Chinese) replaced, deleted or followed by an insertion with
               probability r (drawn from the corpus vocabulary);
- ``append f`` f × length words of another document appended (boilerplate, a comment thread);
- ``truncate f`` the last f of the document cut off.

The truth of a family is the exact Jaccard similarity of the two documents' shingle sets under
winnow's own normalisation; a family is *positive* when it is ≥ 0.8. A family is *detected* when
base and variant end in the same cluster. Precision and recall are over families; clusters that
join different families are counted separately (with their exact Jaccard, so a real duplicate in
the source text is not held against the system).
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Sequence

import pyarrow as pa

from winnow.stages.dedup import minhash as mh
from winnow.stages.dedup import normalize as nz
from winnow.stages.dedup import phases as ph
from winnow.stages.dedup import shuffle as sh

GRADES: tuple[tuple[str, float], ...] = (
    ("format", 0.0), ("edit", 0.005), ("edit", 0.01), ("edit", 0.02), ("edit", 0.04), ("edit", 0.08),
    ("edit", 0.15), ("append", 0.1), ("append", 0.3), ("append", 0.6), ("truncate", 0.1), ("truncate", 0.35),
)


def _detok_wikitext(line: str) -> str:
    line = line.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".").replace("<unk>", "")
    line = re.sub(r" ([.,;:!?)\]'])", r"\1", line)
    line = re.sub(r"([(\[]) ", r"\1", line)
    return re.sub(r"\s+", " ", line).strip()


def english_bases(shared: Path, min_words: int = 60, chunk_words: int = 350) -> list[str]:
    """Real English documents: the Common Crawl sample (distinct texts) and WikiText-2 articles
    cut into ~350-word documents."""
    out: list[str] = []
    seen: set[str] = set()
    cc = shared / "dolma" / "CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"
    with gzip.open(cc, "rt", encoding="utf-8") as f:
        for line in f:
            t = json.loads(line)["text"]
            if t not in seen and len(t.split()) >= min_words:
                seen.add(t)
                out.append(t)
    for name in ("valid.txt", "test.txt"):
        paras: list[str] = []
        for raw in (shared / "ref_text" / "wikitext2" / name).read_text(encoding="utf-8").splitlines():
            s = raw.strip()
            if not s:
                continue
            if s.startswith("= ") and s.endswith(" =") and not s.startswith("= ="):
                paras = _flush(paras, out, chunk_words, min_words)
                continue
            if s.startswith("= ="):
                continue
            paras.append(_detok_wikitext(s))
        _flush(paras, out, chunk_words, min_words)
    return out


def _flush(paras: list[str], out: list[str], chunk_words: int, min_words: int) -> list[str]:
    cur: list[str] = []
    n = 0
    for p in paras:
        cur.append(p)
        n += len(p.split())
        if n >= chunk_words:
            out.append("\n\n".join(cur))
            cur, n = [], 0
    if n >= min_words:
        out.append("\n\n".join(cur))
    return []


def chinese_bases(shared: Path, min_chars: int = 200) -> list[str]:
    """Chinese Wikipedia paragraphs (Simplified: CMRC 2018; Traditional: DRCD)."""
    out = []
    for p in (shared / "ref_text" / "cmrc2018" / "cmrc2018_contexts_zh.txt",
              shared / "ref_text" / "drcd" / "drcd_contexts_zh_hant.txt"):
        for line in p.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if len(line) >= min_chars:
                out.append(line)
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Family:
    base: str
    variant: str
    grade: str


def _units(text: str, zh: bool) -> list[str]:
    return list(text) if zh else text.split(" ")


def _join(units: Sequence[str], zh: bool) -> str:
    return "".join(units) if zh else " ".join(units)


def _format_variant(text: str, rng: random.Random) -> str:
    out = []
    for w in text.split(" "):
        r = rng.random()
        if r < 0.15:
            w = w.upper()
        elif r < 0.25:
            w = w + rng.choice([",", ";", " -", "!", "..."])
        elif r < 0.3:
            w = "  " + w
        w = re.sub(r"\d", lambda m: str(rng.randrange(10)), w)
        w = w.replace("e", "é") if rng.random() < 0.05 else w
        out.append(w)
    return " ".join(out)


def make_variant(text: str, kind: str, rate: float, rng: random.Random, vocab: Sequence[str],
                 other: str, zh: bool) -> str:
    """One near-duplicate of `text` at a known grade (see module docstring)."""
    if kind == "format":
        return _format_variant(text, rng) if not zh else text.replace("，", ",").replace("。", ". ")
    units = _units(text, zh)
    if kind == "edit":
        out: list[str] = []
        for u in units:
            if rng.random() < rate:
                op = rng.randrange(3)
                if op == 0:
                    out.append(rng.choice(vocab))
                elif op == 1:
                    continue
                else:
                    out.extend([u, rng.choice(vocab)])
            else:
                out.append(u)
        return _join(out, zh)
    if kind == "append":
        extra = _units(other, zh)
        k = max(1, int(len(units) * rate))
        start = rng.randrange(max(1, len(extra) - k))
        return _join(units + extra[start:start + k], zh)
    if kind == "truncate":
        return _join(units[: max(1, int(len(units) * (1 - rate)))], zh)
    raise ValueError(kind)


def build_families(bases: Sequence[str], seed: int = 0, zh: bool = False,
                   grades: Sequence[tuple[str, float]] = GRADES) -> list[Family]:
    """One variant per base, grades assigned round-robin, everything seeded."""
    rng = random.Random(seed)
    vocab: list[str] = []
    for b in bases[:200]:
        vocab.extend(_units(b, zh))
    vocab = [v for v in vocab if v.strip()]
    fams = []
    for i, b in enumerate(bases):
        kind, rate = grades[i % len(grades)]
        other = bases[(i * 7919 + 13) % len(bases)]
        fams.append(Family(b, make_variant(b, kind, rate, rng, vocab, other, zh), f"{kind} {rate:g}"))
    return fams


def families_table(families: Sequence[Family], dumps: Sequence[str] = ("CC-MAIN-2024-10", "CC-MAIN-2024-18")) -> pa.Table:
    """Documents of the families in the stage's input schema; ids ``f000123-b`` / ``f000123-v``."""
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    rows: dict[str, list] = {"id": [], "url": [], "host": [], "dump": [], "crawl_date": [], "text": []}
    for i, f in enumerate(families):
        for side, text in (("b", f.base), ("v", f.variant)):
            rows["id"].append(f"f{i:06d}-{side}")
            rows["url"].append(f"https://example{i % 97}.org/{i}/{side}")
            rows["host"].append(f"example{i % 97}.org")
            rows["dump"].append(dumps[(i + (side == "v")) % len(dumps)])
            rows["crawl_date"].append(t0 + timedelta(seconds=i * 2 + (side == "v")))
            rows["text"].append(text)
    return pa.table({k: pa.array(v, pa.timestamp("s", tz="UTC") if k == "crawl_date" else pa.string())
                     for k, v in rows.items()})


def shingle_set(text: str, ngram: int = 5, cjk: str = "char") -> set[tuple[str, ...]]:
    return set(mh.shingles(nz.tokens(text, cjk), ngram))


def exact_jaccard(a: str, b: str, ngram: int = 5, cjk: str = "char") -> float:
    """Exact Jaccard similarity of two documents' shingle sets (winnow's normalisation)."""
    sa, sb = shingle_set(a, ngram, cjk), shingle_set(b, ngram, cjk)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


@dataclass
class Score:
    precision: float
    recall: float
    tp: int
    fp: int
    fn: int
    tn: int
    per_grade: dict[str, dict[str, float]]
    cross_family_pairs: int
    cross_family_true: int

    def line(self) -> str:
        return (f"precision {self.precision:.4f} recall {self.recall:.4f} (tp {self.tp} fp {self.fp} fn {self.fn} "
                f"tn {self.tn}; cross-family pairs {self.cross_family_pairs}, of which J≥0.8: {self.cross_family_true})")


def score(families: Sequence[Family], labels: dict[str, str], ngram: int = 5, cjk: str = "char",
          threshold: float = 0.8) -> Score:
    """Precision / recall of cluster labels (doc id → cluster) over the families."""
    tp = fp = fn = tn = 0
    per: dict[str, dict[str, float]] = {}
    for i, f in enumerate(families):
        j = exact_jaccard(f.base, f.variant, ngram, cjk)
        truth = j >= threshold
        pred = labels[f"f{i:06d}-b"] == labels[f"f{i:06d}-v"]
        tp += truth and pred
        fp += (not truth) and pred
        fn += truth and not pred
        tn += (not truth) and not pred
        g = per.setdefault(f.grade, {"n": 0, "jaccard_sum": 0.0, "positive": 0, "detected": 0})
        g["n"] += 1
        g["jaccard_sum"] += j
        g["positive"] += truth
        g["detected"] += pred
    for g in per.values():
        g["mean_jaccard"] = round(g.pop("jaccard_sum") / g["n"], 3)
    # clusters spanning families
    by_label: dict[str, set[int]] = {}
    for doc, lab in labels.items():
        if doc.startswith("f") and "-" in doc:
            by_label.setdefault(lab, set()).add(int(doc[1:7]))
    cross = cross_true = 0
    for fams in by_label.values():
        if len(fams) > 1:
            fl = sorted(fams)
            for a in fl:
                for b in fl:
                    if a < b:
                        cross += 1
                        cross_true += exact_jaccard(families[a].base, families[b].base, ngram, cjk) >= threshold
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return Score(precision, recall, tp, fp, fn, tn, per, cross, cross_true)


def labels_from_docs(ids: Iterable[str]) -> dict[str, str]:
    """Every document its own cluster (the no-dedup baseline)."""
    return {i: i for i in ids}


def _col(table: pa.Table, name: str):
    return table.column(name).to_numpy()


def cluster_labels(out_dir: str | os.PathLike[str]) -> dict[str, str]:
    """For a finished run: every input document's id → the id of the document kept for its
    cluster (itself when it had no duplicate; ``index:<key>`` for a document in the index).

    Reads the run's work files (``OUT/_work``, kept with ``keep_work: true``), so it works until
    they are deleted; used by the quality evaluation and for audits of what was removed as a
    duplicate of what.
    """
    root = Path(out_dir) / "_work"
    works = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not works:
        raise FileNotFoundError(f"{root}: no work directory")
    work = works[-1]
    key_to_id: dict[int, str] = {}
    for f in sorted((work / "sig").glob("part-*.arrow")):
        t = ph.load_sig_file(f)
        key_to_id.update(zip(_col(t, "key").tolist(), t.column("id").to_pylist()))
    rep: dict[int, int] = {}
    exact_files = sorted((work / "exact_reduce").glob("part-*.arrow"))
    if exact_files:
        t = sh.read_all(exact_files, ph.EXACT_OUT_SCHEMA)
        rep = dict(zip(_col(t, "key").tolist(), _col(t, "rep").tolist()))
    t = sh.read_all(sorted((work / "elect").glob("part-*.arrow")), ph.ELECT_SCHEMA)
    keeper = dict(zip(_col(t, "node").tolist(), _col(t, "keeper").tolist()))
    out = {}
    for k, i in key_to_id.items():
        r = rep.get(k, k)
        lab = keeper.get(r, r)
        out[i] = key_to_id.get(lab, f"index:{lab}")
    return out
