"""Training the perplexity models and computing their bucket cutoffs, as plain functions.

:func:`train_lm` is CCNet's recipe on local reference text (no downloads): normalise every line
(lowercase, strip accents, digits -> 0, unicode punctuation -> ASCII), train a Unigram subword
tokeniser on it (``tokenizers``, in place of SentencePiece), cut the text into pieces, estimate an
n-gram model with KenLM's ``lmplz`` and turn it into a binary with ``build_binary``. WikiText files
are detokenised first (detected, or ``fmt="wikitext"``). A call with the same inputs and
parameters finds the output directory up to date and does nothing (``force=True`` retrains).

:func:`compute_cutoffs` scores a sample of documents with each language's model and returns the
percentiles 0..100 per language; :func:`filters.perplexity.write_percentile_csv` writes them in
CCNet's ``cutoff.csv`` layout, which the filter stage reads.

``lmplz``/``build_binary`` are looked up as given, on PATH, then next to the Python interpreter
(where ``bash deploy/build_kenlm.sh .venv`` installs them).

The ``winnow lm`` command (``pipeline/lm.py``) is a thin argparse front end over these functions.
Like everything in ``filters/``, this module imports nothing from ``pipeline`` or ``stages``: stage
directories are resolved to shard files by the caller.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from winnow.filters.errors import ModelError
from winnow.filters.model_files import sha256_file
from winnow.filters.perplexity import LM_FILE, META_FILE, META_FORMAT, TOKENIZER_FILE, PerplexityModel
from winnow.filters.reftext import documents
from winnow.filters.text_normalize import normalize_line

BUILD_HINT = "build it with: bash deploy/build_kenlm.sh .venv"
Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# --- training --------------------------------------------------------------------------------
def find_tool(name: str, given: str | None = None) -> str:
    """Path of a KenLM program: `given`, else PATH, else next to the interpreter."""
    if given:
        if not (os.path.isfile(given) and os.access(given, os.X_OK)):
            raise ModelError(f"{name} {given} is not an executable file; {BUILD_HINT}")
        return given
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    raise ModelError(f"{name} not found on PATH or in {beside.parent}; {BUILD_HINT}")


def read_training_lines(files: Sequence[str | os.PathLike[str]], fmt: str = "auto") -> tuple[list[str], list[dict]]:
    """Normalised training lines from reference files, and a description of each file."""
    lines: list[str] = []
    described = []
    for name in files:
        path = Path(name)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"reference text {path} cannot be read: {exc}") from exc
        text = raw.decode("utf-8", errors="replace")
        n_docs, before = 0, len(lines)
        for doc in documents(text.splitlines(), fmt, text[:200_000]):
            n_docs += 1
            for line in doc.split("\n"):
                norm = normalize_line(line)
                if norm:
                    lines.append(norm)
        described.append({"path": str(path), "sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw),
                          "documents": n_docs, "lines": len(lines) - before})
    return lines, described


def _fingerprint(lang: str, order: int, vocab_size: int, fmt: str, files: list[dict]) -> str:
    payload = {"lang": lang, "order": order, "vocab_size": vocab_size, "format": fmt,
               "files": [f["sha256"] for f in files], "meta_format": META_FORMAT}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _run(cmd: list[str], log: Path, **kw) -> None:
    with open(log, "ab") as f:
        f.write(("$ " + " ".join(cmd) + "\n").encode())
        f.flush()
        proc = subprocess.run(cmd, stdout=kw.pop("stdout", f), stderr=f, **kw)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}):\n" + "\n".join(tail))


def build_kenlm(corpus: Path, out_binary: Path, order: int = 5, memory: str = "20%",
                lmplz: str | None = None, build_binary: str | None = None) -> None:
    """``lmplz`` + ``build_binary`` (probing) over a text file of space-separated tokens, one
    sentence per line. Temporary files go next to `out_binary`; a log of both commands too."""
    lmplz_path = find_tool("lmplz", lmplz)
    build_path = find_tool("build_binary", build_binary)
    work = out_binary.parent
    log = work / "kenlm.log"
    arpa = work / (out_binary.name + ".arpa")
    try:
        _run([lmplz_path, "-o", str(order), "-S", memory, "-T", str(work), "--skip_symbols",
              "--discount_fallback", "--text", str(corpus), "--arpa", str(arpa)], log)
        _run([build_path, str(arpa), str(out_binary)], log, stdout=subprocess.DEVNULL)
    finally:
        arpa.unlink(missing_ok=True)


def train_lm(lang: str, texts: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str], *,
             vocab_size: int = 8000, order: int = 5, fmt: str = "auto", memory: str = "20%", force: bool = False,
             lmplz: str | None = None, build_binary: str | None = None, log: Log | None = None) -> dict:
    """Train one language's tokeniser + KenLM model into `out_dir`; return its meta.json content.

    Raises :class:`ModelError` for missing tools or unreadable/empty text and ``RuntimeError``
    when lmplz/build_binary fail. The directory is replaced atomically, and only by a model that
    loads. `log` receives progress lines (the CLI passes ``print``).
    """
    say = log or _quiet
    t0 = time.time()
    find_tool("lmplz", lmplz)  # fail before any work
    find_tool("build_binary", build_binary)
    lines, files = read_training_lines(texts, fmt)
    if not lines:
        raise ModelError(f"no text in {', '.join(map(str, texts))} after normalisation")
    out = Path(out_dir)
    fingerprint = _fingerprint(lang, order, vocab_size, fmt, files)
    meta_path = out / META_FILE
    if meta_path.exists() and not force:
        try:
            old = json.loads(meta_path.read_text(encoding="utf-8"))
        except ValueError:
            old = {}
        if old.get("fingerprint") == fingerprint and all((out / n).is_file() for n in (TOKENIZER_FILE, LM_FILE)):
            say(f"[lm train] {out} is up to date ({lang}, fingerprint {fingerprint}); --force retrains")
            return old

    from winnow.filters.lm_tokenizer import WORD_SPLIT_VERSION, PieceCutter, train_unigram

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    work.chmod(0o755)
    try:
        say(f"[lm train] {lang}: {len(lines):,} lines, {sum(map(len, lines)):,} characters from {len(files)} file(s)")
        t = time.time()
        tok, vocab_asked = train_unigram(lines, vocab_size)
        tok.save(str(work / TOKENIZER_FILE))
        say(f"[lm train] tokeniser: Unigram, {tok.get_vocab_size():,} pieces ({time.time() - t:.1f}s)")
        corpus = work / "corpus.txt"
        n_tokens = 0
        cutter = PieceCutter(tok)
        with open(corpus, "w", encoding="utf-8") as f:
            for line in lines:
                ps = cutter.line(line)
                n_tokens += len(ps)
                f.write(" ".join(ps) + "\n")
        t = time.time()
        build_kenlm(corpus, work / LM_FILE, order, memory, lmplz, build_binary)
        say(f"[lm train] KenLM {order}-gram over {n_tokens:,} pieces ({time.time() - t:.1f}s)")
        corpus.unlink()
        meta = {
            "format": META_FORMAT, "lang": lang, "order": order, "fingerprint": fingerprint,
            "normalizer": "ccnet (lowercase, strip accents, digits->0, unicode punct->ascii, drop controls)",
            "word_split": WORD_SPLIT_VERSION,
            "tokenizer": {"model": "unigram", "vocab_size": tok.get_vocab_size(), "vocab_size_asked": vocab_asked},
            "train": {"files": files, "lines": len(lines), "pieces": n_tokens, "format": fmt},
            "kenlm": {"binary": "probing", "lmplz_args": f"-o {order} --skip_symbols --discount_fallback"},
            "sha256": {TOKENIZER_FILE: sha256_file(work / TOKENIZER_FILE), LM_FILE: sha256_file(work / LM_FILE)},
        }
        (work / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
        PerplexityModel(work, lang)  # loads, or raises: never publish a model that does not load
        if out.exists():
            old_dir = out.with_name(f".{out.name}.old")
            shutil.rmtree(old_dir, ignore_errors=True)
            out.rename(old_dir)
            work.rename(out)
            shutil.rmtree(old_dir, ignore_errors=True)
        else:
            work.rename(out)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    say(f"[lm train] wrote {out} in {time.time() - t0:.1f}s")
    return meta


# --- cutoffs ---------------------------------------------------------------------------------
def read_documents(paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[str, str | None]]:
    """(text, lang or None) of every document in files: parquet or Arrow IPC shards (``text`` and
    optional ``lang`` columns), ``*.jsonl[.gz]`` (``text`` or ``raw_content``; ``lang`` or
    ``language``), or text files with one document per line. Directories are refused: the caller
    resolves a stage directory to its shard files (``winnow lm cutoffs`` does)."""
    for name in paths:
        path = Path(name)
        if path.is_dir():
            raise ValueError(f"{path} is a directory; pass its shard files")
        if path.suffix in (".parquet", ".arrow"):
            yield from _table_documents(path)
        elif path.name.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".json")):
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.strip():
                        row = json.loads(line)
                        text = row.get("text") or row.get("raw_content") or ""
                        yield text, row.get("lang") or row.get("language")
        else:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.strip():
                        yield line.rstrip("\n"), None


def _table_documents(path: Path) -> Iterator[tuple[str, str | None]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        pf = pq.ParquetFile(path)
        cols = [c for c in ("text", "lang") if c in pf.schema_arrow.names]
        batches = pf.iter_batches(columns=cols, batch_size=1024)
    else:
        with pa.OSFile(str(path)) as src:
            table = pa.ipc.open_file(src).read_all()
        cols = [c for c in ("text", "lang") if c in table.schema.names]
        batches = table.select(cols).to_batches(max_chunksize=1024)
    if "text" not in cols:
        raise ValueError(f"{path} has no text column")
    for batch in batches:
        texts = batch.column("text").to_pylist()
        langs = batch.column("lang").to_pylist() if "lang" in cols else [None] * len(texts)
        for text, lang in zip(texts, langs):
            yield text or "", lang


def percentiles(values: Sequence[float]) -> list[float]:
    """p0..p100 with linear interpolation (numpy's default)."""
    import numpy as np

    return [float(x) for x in np.percentile(np.asarray(values, dtype=np.float64), list(range(101)))]


def cutoffs_from_documents(models: Mapping[str, PerplexityModel], docs: Iterable[tuple[str, str | None]],
                           sample: int = 50_000, lid_model: str | None = None, min_lang_score: float = 0.5
                           ) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Perplexity percentiles (p0..p100) per language over the first `sample` documents of each
    language, and how many documents each language's percentiles rest on. A document without a
    language is identified with fastText lid.176 (`lid_model`) and counted when its score is at
    least `min_lang_score`."""
    scores: dict[str, list[float]] = {lang: [] for lang in models}
    lid = None
    for text, lang in docs:
        if lang is None:
            if lid is None:
                from winnow.filters.language import LanguageIdentifier

                lid = LanguageIdentifier(lid_model)
            pred = lid.predict(text)
            if pred.score < min_lang_score:
                continue
            lang = pred.lang
        if lang not in models or len(scores[lang]) >= sample:
            continue
        ppl = models[lang].perplexity(text)
        if ppl is not None:
            scores[lang].append(ppl)
        if all(len(v) >= sample for v in scores.values()):
            break
    return {lang: percentiles(v) for lang, v in scores.items() if v}, {lang: len(v) for lang, v in scores.items()}


def compute_cutoffs(models: Mapping[str, PerplexityModel], inputs: Sequence[str | os.PathLike[str]],
                    sample: int = 50_000, lid_model: str | None = None, min_lang_score: float = 0.5
                    ) -> tuple[dict[str, list[float]], dict[str, int]]:
    """:func:`cutoffs_from_documents` over the documents of files (see :func:`read_documents`)."""
    return cutoffs_from_documents(models, read_documents(inputs), sample, lid_model, min_lang_score)
