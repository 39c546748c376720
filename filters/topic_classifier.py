"""A fastText topic classifier for documents no URL rule labels (remix's second labeller).

Trained by `winnow remix train-classifier` from labelled documents — by default the weak labels
of the host rules, with the URL hidden: the features are the text only (lower-cased, whitespace
collapsed, CJK characters split apart so fastText sees them as words, first `max_chars`
characters). A held-out slice, picked by a keyed hash of the document id (not by position),
gives per-class accuracy. Nothing is downloaded; the model file is ours.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

LABEL_PREFIX = "__label__"
# CJK ideographs, kana and hangul: one "word" each (fastText splits on whitespace only); a
# str.translate table does it in C, 2.5x faster than a regular expression substitution
_CJK_RANGES = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF))
_SPACE_CJK = {c: f" {chr(c)} " for lo, hi in _CJK_RANGES for c in range(lo, hi + 1)}


def prepare_text(text: str, max_chars: int = 2000) -> str:
    """The classifier's view of a document: one line, lower case, CJK characters spaced."""
    return " ".join(text[:max_chars].lower().translate(_SPACE_CJK).split())


def holdout(doc_id: str, fraction: float, seed: int = 0) -> bool:
    """Whether a document is in the held-out slice: a keyed hash of its id, so the split does
    not depend on input order or worker count."""
    h = hashlib.blake2b(f"{seed}\x00{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64 < fraction


@dataclass
class ClassReport:
    """Held-out figures of one class: documents, recall ('accuracy' on that class), precision."""

    label: str
    train: int
    heldout: int
    correct: int
    predicted: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.heldout if self.heldout else float("nan")

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else float("nan")


class TopicClassifier:
    """A trained model: `predict(texts)` → (labels, probabilities)."""

    def __init__(self, path: str | os.PathLike[str], max_chars: int = 2000):
        import fasttext

        self.path = str(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"topic classifier model not found: {self.path}")
        self.model = fasttext.load_model(self.path)
        self.max_chars = max_chars
        self.labels = tuple(lab[len(LABEL_PREFIX):] for lab in self.model.get_labels())

    def predict(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        if not texts:
            return [], np.zeros(0, dtype=np.float32)
        lines = [prepare_text(t or "", self.max_chars) for t in texts]
        labels, probs = self.model.predict(lines, k=1)
        return ([lab[0][len(LABEL_PREFIX):] if lab else "" for lab in labels],
                np.array([p[0] if len(p) else 0.0 for p in probs], dtype=np.float32))


# what the training child process runs: train_supervised(**params), save to the given path
_TRAIN_CHILD = ("import json, sys, fasttext; "
                "fasttext.train_supervised(**json.loads(sys.argv[1])).save_model(sys.argv[2])")


def train(texts: Iterable[str], labels: Iterable[str], ids: Iterable[str], out_path: str | os.PathLike[str], *,
          holdout_fraction: float = 0.1, seed: int = 0, epoch: int = 10, dim: int = 32, lr: float = 0.5,
          word_ngrams: int = 2, min_count: int = 2, bucket: int = 100_000, max_chars: int = 2000,
          threads: int = 1) -> list[ClassReport]:
    """Train a supervised fastText model on (text, label) pairs, keeping a hashed `holdout_fraction`
    of ids aside; save it to `out_path` and return held-out figures per class. One thread by
    default so the same data gives the same model file."""
    import fasttext

    train_lines: list[str] = []
    held: list[tuple[str, str]] = []
    n_train: dict[str, int] = {}
    for text, label, doc_id in zip(texts, labels, ids):
        line = prepare_text(text or "", max_chars)
        if not line:
            continue
        if holdout(doc_id, holdout_fraction, seed):
            held.append((line, label))
        else:
            train_lines.append(f"{LABEL_PREFIX}{label} {line}")
            n_train[label] = n_train.get(label, 0) + 1
    if len(n_train) < 2:
        raise ValueError(f"need training documents of at least 2 classes, got {sorted(n_train) or 'none'}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False, dir=out_path.parent) as f:
        f.write("\n".join(train_lines) + "\n")
        train_file = f.name
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    params = dict(input=train_file, epoch=epoch, dim=dim, lr=lr, wordNgrams=word_ngrams, minCount=min_count,
                  bucket=bucket, thread=threads, seed=seed, verbose=0)
    try:
        # A fresh process per training: the fastText wheel keeps state across trainings in one
        # process (a second model comes out different, or training stops with "Encountered NaN");
        # the first training of a process is reproducible.
        import json
        import subprocess
        import sys

        proc = subprocess.run([sys.executable, "-c", _TRAIN_CHILD, json.dumps(params), str(tmp)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"fastText training failed: {proc.stderr.strip()[-2000:]}")
    finally:
        os.unlink(train_file)
    os.replace(tmp, out_path)
    model = fasttext.load_model(str(out_path))
    reports = {lab: ClassReport(lab, n, 0, 0, 0) for lab, n in n_train.items()}
    if held:
        pred, _ = model.predict([line for line, _ in held], k=1)
        for (_, truth), p in zip(held, pred):
            guess = p[0][len(LABEL_PREFIX):] if p else ""
            reports.setdefault(truth, ClassReport(truth, 0, 0, 0, 0)).heldout += 1
            reports.setdefault(guess, ClassReport(guess, 0, 0, 0, 0)).predicted += 1
            if guess == truth:
                reports[truth].correct += 1
    return [reports[k] for k in sorted(reports)]
