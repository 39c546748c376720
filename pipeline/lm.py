"""``winnow lm``: train the perplexity models and compute their bucket cutoffs.

``winnow lm train --lang L --text FILE... --out DIR``
    CCNet's recipe on local reference text (no downloads): normalise every line (lowercase, strip
    accents, digits -> 0, unicode punctuation -> ASCII), train a Unigram subword tokeniser on it
    (``tokenizers``, in place of SentencePiece), cut the text into pieces, estimate a 5-gram model
    with KenLM's ``lmplz`` and turn it into a binary with ``build_binary``. WikiText files are
    detokenised first (detected, or ``--format wikitext``). A rerun with the same inputs and
    parameters finds DIR up to date and does nothing (``--force`` retrains).

``winnow lm cutoffs --model en=DIR --model zh=DIR --in SAMPLE... --out cutoffs.csv``
    Score a sample of documents (parquet shards or stage directories, JSONL(.gz), or text files
    with one document per line) with each language's model and write the percentiles 0..100 per
    language in CCNet's ``cutoff.csv`` layout; the filter stage reads p30/p60 from it.

``lmplz``/``build_binary`` are looked up as ``--lmplz``/``--build-binary``, on PATH, then next to
the Python interpreter (where ``bash deploy/build_kenlm.sh .venv`` installs them).
"""

from __future__ import annotations

import argparse
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
from typing import Iterator, Sequence

from winnow.filters.errors import ModelError
from winnow.filters.model_files import sha256_file
from winnow.filters.perplexity import (LM_FILE, META_FILE, META_FORMAT, TOKENIZER_FILE, PerplexityModel,
                                write_percentile_csv)
from winnow.filters.reftext import documents
from winnow.filters.text_normalize import normalize_line

BUILD_HINT = "build it with: bash deploy/build_kenlm.sh .venv"


# --- argument parsing ------------------------------------------------------------------------
def add_lm_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``lm train`` and ``lm cutoffs`` to the ``winnow`` CLI."""
    lm = subparsers.add_parser("lm", help="train perplexity models (tokeniser + KenLM) and their cutoffs",
                               description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = lm.add_subparsers(dest="lm_command", required=True)

    tr = sub.add_parser("train", help="train a language's normaliser/tokeniser + KenLM 5-gram on reference text")
    tr.add_argument("--lang", required=True, help="language code as lid.176 emits it (en, zh, ...)")
    tr.add_argument("--text", nargs="+", required=True, metavar="FILE", help="reference text files (UTF-8)")
    tr.add_argument("--out", required=True, type=Path, help="model directory to write")
    tr.add_argument("--format", choices=["auto", "wikitext", "plain"], default="auto",
                    help="wikitext: detokenise WikiText; plain: one paragraph per line (default: detect)")
    tr.add_argument("--order", type=int, default=5, help="n-gram order (default 5, as CCNet)")
    tr.add_argument("--vocab-size", type=int, default=8000, help="Unigram vocabulary size (default 8000)")
    tr.add_argument("--memory", default="20%", help="lmplz sorting memory, e.g. 1G or 20%% (default 20%%)")
    tr.add_argument("--lmplz", help="path of lmplz (default: PATH, then next to python)")
    tr.add_argument("--build-binary", help="path of build_binary (default: PATH, then next to python)")
    tr.add_argument("--force", action="store_true", help="retrain even if DIR is up to date")
    tr.set_defaults(func=cmd_train)

    cu = sub.add_parser("cutoffs", help="per-language perplexity percentiles (CCNet cutoff.csv) from a sample")
    cu.add_argument("--model", action="append", required=True, metavar="LANG=DIR",
                    help="a language's model directory; repeat per language")
    cu.add_argument("--in", dest="inputs", nargs="+", required=True, metavar="PATH",
                    help="parquet files or stage directories, *.jsonl[.gz], or text files (one document per line)")
    cu.add_argument("--out", required=True, type=Path, help="CSV to write (rows: percentile 0..100)")
    cu.add_argument("--sample", type=int, default=50_000, help="at most this many documents per language (default 50000)")
    cu.add_argument("--lid-model", help="fastText model for documents without a lang field (default: lid.176.ftz)")
    cu.add_argument("--min-lang-score", type=float, default=0.5, help="language ID score to count a document (default 0.5)")
    cu.set_defaults(func=cmd_cutoffs)


# --- lm train --------------------------------------------------------------------------------
def find_tool(name: str, given: str | None) -> str:
    """Path of a KenLM program: the flag, else PATH, else next to the interpreter."""
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


def read_training_lines(files: Sequence[str], fmt: str) -> tuple[list[str], list[dict]]:
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


def _fingerprint(args: argparse.Namespace, files: list[dict]) -> str:
    payload = {"lang": args.lang, "order": args.order, "vocab_size": args.vocab_size, "format": args.format,
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


def train_model(args: argparse.Namespace) -> dict:
    """Train one language's model into ``args.out``; return its meta.json content."""
    t0 = time.time()
    lmplz = find_tool("lmplz", args.lmplz)
    build_binary = find_tool("build_binary", args.build_binary)
    lines, files = read_training_lines(args.text, args.format)
    if not lines:
        raise ModelError(f"no text in {', '.join(args.text)} after normalisation")
    out: Path = args.out
    fingerprint = _fingerprint(args, files)
    meta_path = out / META_FILE
    if meta_path.exists() and not args.force:
        try:
            old = json.loads(meta_path.read_text(encoding="utf-8"))
        except ValueError:
            old = {}
        if old.get("fingerprint") == fingerprint and all((out / n).is_file() for n in (TOKENIZER_FILE, LM_FILE)):
            print(f"[lm train] {out} is up to date ({args.lang}, fingerprint {fingerprint}); --force retrains")
            return old

    from winnow.filters.lm_tokenizer import WORD_SPLIT_VERSION, PieceCutter, train_unigram

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    work.chmod(0o755)
    try:
        print(f"[lm train] {args.lang}: {len(lines):,} lines, {sum(map(len, lines)):,} characters from {len(files)} file(s)")
        t = time.time()
        tok, vocab_asked = train_unigram(lines, args.vocab_size)
        tok.save(str(work / TOKENIZER_FILE))
        print(f"[lm train] tokeniser: Unigram, {tok.get_vocab_size():,} pieces ({time.time() - t:.1f}s)")
        corpus = work / "corpus.txt"
        n_tokens = 0
        cutter = PieceCutter(tok)
        with open(corpus, "w", encoding="utf-8") as f:
            for line in lines:
                ps = cutter.line(line)
                n_tokens += len(ps)
                f.write(" ".join(ps) + "\n")
        log = work / "kenlm.log"
        t = time.time()
        arpa = work / "lm.arpa"
        _run([lmplz, "-o", str(args.order), "-S", args.memory, "-T", str(work), "--skip_symbols",
              "--discount_fallback", "--text", str(corpus), "--arpa", str(arpa)], log)
        _run([build_binary, str(arpa), str(work / LM_FILE)], log, stdout=subprocess.DEVNULL)
        print(f"[lm train] KenLM {args.order}-gram over {n_tokens:,} pieces ({time.time() - t:.1f}s)")
        arpa.unlink()
        corpus.unlink()
        meta = {
            "format": META_FORMAT, "lang": args.lang, "order": args.order, "fingerprint": fingerprint,
            "normalizer": "ccnet (lowercase, strip accents, digits->0, unicode punct->ascii, drop controls)",
            "word_split": WORD_SPLIT_VERSION,
            "tokenizer": {"model": "unigram", "vocab_size": tok.get_vocab_size(), "vocab_size_asked": vocab_asked},
            "train": {"files": files, "lines": len(lines), "pieces": n_tokens, "format": args.format},
            "kenlm": {"binary": "probing", "lmplz_args": f"-o {args.order} --skip_symbols --discount_fallback"},
            "sha256": {TOKENIZER_FILE: sha256_file(work / TOKENIZER_FILE), LM_FILE: sha256_file(work / LM_FILE)},
        }
        (work / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
        PerplexityModel(work, args.lang)  # loads, or raises: never publish a model that does not load
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
    print(f"[lm train] wrote {out} in {time.time() - t0:.1f}s")
    return meta


def train(lang: str, texts: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *, vocab_size: int = 8000,
          order: int = 5, fmt: str = "auto", memory: str = "20%", force: bool = False,
          lmplz: str | None = None, build_binary: str | None = None) -> dict:
    """``winnow lm train`` as a function (tests, notebooks): returns the model's meta.json content."""
    args = argparse.Namespace(lang=lang, text=[str(t) for t in texts], out=Path(out), format=fmt, order=order,
                              vocab_size=vocab_size, memory=memory, lmplz=lmplz, build_binary=build_binary, force=force)
    return train_model(args)


def cmd_train(args: argparse.Namespace) -> int:
    try:
        train_model(args)
    except (ModelError, RuntimeError) as exc:
        print(f"winnow lm train: {exc}", file=sys.stderr)
        return 1
    return 0


# --- lm cutoffs ------------------------------------------------------------------------------
def iter_documents(paths: Sequence[str]) -> Iterator[tuple[str, str | None]]:
    """(text, lang or None) of every document in parquet shards/stage dirs, JSONL(.gz), or text files."""
    for name in paths:
        path = Path(name)
        if path.is_dir() or path.suffix == ".parquet":
            yield from _parquet_documents(path)
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


def _parquet_documents(path: Path) -> Iterator[tuple[str, str | None]]:
    import pyarrow.parquet as pq

    from winnow.pipeline.shards import input_shards

    files = input_shards(path) if path.is_dir() else [path]
    for file in files:
        pf = pq.ParquetFile(file)
        cols = [c for c in ("text", "lang") if c in pf.schema_arrow.names]
        for batch in pf.iter_batches(columns=cols, batch_size=1024):
            texts = batch.column("text").to_pylist()
            langs = batch.column("lang").to_pylist() if "lang" in cols else [None] * len(texts)
            for text, lang in zip(texts, langs):
                yield text or "", lang


def percentiles(values: Sequence[float]) -> list[float]:
    """p0..p100 with linear interpolation (numpy's default)."""
    import numpy as np

    return [float(x) for x in np.percentile(np.asarray(values, dtype=np.float64), list(range(101)))]


def compute_cutoffs(models: dict[str, PerplexityModel], inputs: Sequence[str], sample: int,
                    lid_model: str | None = None, min_lang_score: float = 0.5
                    ) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Perplexity percentiles (p0..p100) per language over the first `sample` documents of each
    language, and how many documents each language's percentiles rest on."""
    scores: dict[str, list[float]] = {lang: [] for lang in models}
    lid = None
    for text, lang in iter_documents(inputs):
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


def cmd_cutoffs(args: argparse.Namespace) -> int:
    models = {}
    try:
        for spec in args.model:
            lang, sep, directory = spec.partition("=")
            if not sep or not lang or not directory:
                print(f"winnow lm cutoffs: --model expects LANG=DIR, got {spec!r}", file=sys.stderr)
                return 2
            models[lang] = PerplexityModel(directory, lang)
        table, counts = compute_cutoffs(models, args.inputs, args.sample, args.lid_model, args.min_lang_score)
    except (ModelError, ValueError, OSError) as exc:
        print(f"winnow lm cutoffs: {exc}", file=sys.stderr)
        return 1
    for lang in sorted(models):
        if lang in table:
            print(f"[lm cutoffs] {lang}: {counts[lang]:,} documents, p30 {table[lang][30]:.1f}, p60 {table[lang][60]:.1f}")
        else:
            print(f"[lm cutoffs] {lang}: no documents in the sample; no cutoffs (its documents get bucket 'all')")
    if not table:
        print("winnow lm cutoffs: no document of any modelled language in the sample", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_percentile_csv(args.out, table)
    print(f"[lm cutoffs] wrote {args.out}")
    return 0
