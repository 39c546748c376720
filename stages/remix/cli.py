"""`winnow remix train-classifier`: train the fastText topic classifier remix uses for documents
no URL rule labels.

``winnow remix train-classifier --in DIR... --out DIR [--label-column COL] [--holdout 0.1] …``

Labels: by default the weak labels of the host rules (documents a rule labels, `other` left out),
with the URL hidden — the model sees text only, so it generalises to pages without a telling URL.
`--label-column` uses a column of the input instead. Per class at most `--max-per-class`
documents, picked by a keyed hash of the id (not by position). Writes `OUT/topic_classifier.bin`
and `OUT/manifest.json` (sha256 of the model, classes, held-out accuracy per class), and prints
the per-class table. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from winnow.pipeline import shards as shard_io

log = logging.getLogger("winnow")

MODEL_NAME = "topic_classifier.bin"


def _key(seed: int, doc_id: str) -> bytes:
    return hashlib.blake2b(f"{seed}\x00train\x00{doc_id}".encode(), digest_size=8).digest()


def collect(inputs: Sequence[str], *, label_column: str | None, taxonomy: str | None, max_per_class: int,
            seed: int) -> tuple[list[str], list[str], list[str], dict[str, int]]:
    """(texts, labels, ids, available-per-class) of the training documents."""
    from winnow.filters.domains import OTHER, DomainRules

    rules = None if label_column else DomainRules.load(taxonomy)
    per_class: dict[str, list[tuple[bytes, str, str]]] = {}
    for d in inputs:
        for path in shard_io.input_shards(d):
            cols = ["id", "text"] + ([label_column] if label_column else ["url"])
            table = shard_io.read_shard(path)
            missing = [c for c in cols if c not in table.column_names]
            if missing:
                raise ValueError(f"{path}: no `{missing[0]}` column (columns: {', '.join(table.column_names)})")
            ids = table.column("id").to_pylist()
            texts = table.column("text").to_pylist()
            if label_column:
                labels = table.column(label_column).to_pylist()
            else:
                hosts = table.column("host").to_pylist() if "host" in table.column_names else [None] * len(ids)
                urls = table.column("url").to_pylist()
                labels = []
                for u, h in zip(urls, hosts):
                    m = rules.match(u, h)  # type: ignore[union-attr]
                    labels.append(m.domain if m else None)
            for doc_id, text, label in zip(ids, texts, labels):
                if not label or label == OTHER or not text:
                    continue
                per_class.setdefault(label, []).append((_key(seed, doc_id), doc_id, text))
    texts_out: list[str] = []
    labels_out: list[str] = []
    ids_out: list[str] = []
    available = {k: len(v) for k, v in sorted(per_class.items())}
    for label in sorted(per_class):
        for _, doc_id, text in sorted(per_class[label])[:max_per_class]:
            texts_out.append(text)
            labels_out.append(label)
            ids_out.append(doc_id)
    return texts_out, labels_out, ids_out, available


def train_classifier(inputs: Sequence[str], out: str | Path, *, label_column: str | None = None,
                     taxonomy: str | None = None, holdout: float = 0.1, max_per_class: int = 20000, seed: int = 0,
                     epoch: int = 10, dim: int = 32, max_chars: int = 2000) -> dict[str, Any]:
    """Train, save, and return the manifest (also written to OUT/manifest.json)."""
    from winnow.filters.topic_classifier import train

    texts, labels, ids, available = collect(inputs, label_column=label_column, taxonomy=taxonomy,
                                            max_per_class=max_per_class, seed=seed)
    if len(set(labels)) < 2:
        raise ValueError(f"need labelled documents of at least 2 classes; found {available or 'none'}"
                         + ("" if label_column else " (host rules labelled too few documents)"))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / MODEL_NAME
    reports = train(texts, labels, ids, model_path, holdout_fraction=holdout, seed=seed, epoch=epoch, dim=dim,
                    max_chars=max_chars)
    heldout = sum(r.heldout for r in reports)
    correct = sum(r.correct for r in reports)
    manifest = {
        "model": MODEL_NAME,
        "sha256": shard_io.sha256_file(model_path),
        "labels_from": f"column {label_column}" if label_column else "host rules (URL hidden from the features)",
        "inputs": [str(i) for i in inputs],
        "params": {"holdout": holdout, "max_per_class": max_per_class, "seed": seed, "epoch": epoch, "dim": dim,
                   "max_chars": max_chars},
        "documents": len(texts),
        "available_per_class": available,
        "heldout_accuracy": correct / heldout if heldout else None,
        "classes": {r.label: {"train": r.train, "heldout": r.heldout, "correct": r.correct,
                              "accuracy": None if r.heldout == 0 else r.accuracy,
                              "precision": None if r.predicted == 0 else r.precision} for r in reports},
    }
    shard_io.write_json_atomic(manifest, out / "manifest.json")
    return manifest


def format_table(manifest: dict[str, Any]) -> str:
    lines = [f"{'class':<14}{'train':>8}{'held-out':>10}{'accuracy':>10}{'precision':>11}"]
    for label, c in manifest["classes"].items():
        acc = "-" if c["accuracy"] is None else f"{c['accuracy']:.3f}"
        prec = "-" if c["precision"] is None else f"{c['precision']:.3f}"
        lines.append(f"{label:<14}{c['train']:>8}{c['heldout']:>10}{acc:>10}{prec:>11}")
    overall = manifest["heldout_accuracy"]
    lines.append(f"overall held-out accuracy: {'-' if overall is None else f'{overall:.3f}'}  "
                 f"model sha256 {manifest['sha256'][:16]}…")
    return "\n".join(lines)


def train_classifier_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="winnow remix train-classifier",
                                description="Train remix's fastText topic classifier (text only) from labelled documents.")
    p.add_argument("--in", dest="inputs", nargs="+", required=True, metavar="DIR", help="stage output directories")
    p.add_argument("--out", required=True, metavar="DIR", help="where the model and its manifest go")
    p.add_argument("--label-column", default=None, help="use this column as label (default: host-rule weak labels)")
    p.add_argument("--taxonomy", default=None, metavar="YAML", help="domain taxonomy (default: the bundled one)")
    p.add_argument("--holdout", type=float, default=0.1, help="held-out fraction, by hash of id (default 0.1)")
    p.add_argument("--max-per-class", type=int, default=20000, help="training documents per class at most")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epoch", type=int, default=10)
    p.add_argument("--dim", type=int, default=32)
    args = p.parse_args(list(argv))
    try:
        manifest = train_classifier(args.inputs, args.out, label_column=args.label_column, taxonomy=args.taxonomy,
                                    holdout=args.holdout, max_per_class=args.max_per_class, seed=args.seed,
                                    epoch=args.epoch, dim=args.dim)
    except (ValueError, shard_io.NotAStageOutput) as exc:
        print(f"winnow remix train-classifier: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(manifest))
    print(f"model: {Path(args.out) / MODEL_NAME}")
    return 0
