"""``winnow lm``: the command line over :mod:`filters.lm_train` (train the perplexity models and
compute their bucket cutoffs). Parsing, printing and exit codes only; the work is in the library.

``winnow lm train --lang L --text FILE... --out DIR``
    CCNet's recipe on local reference text (no downloads): normalise every line (lowercase, strip
    accents, digits -> 0, unicode punctuation -> ASCII), train a Unigram subword tokeniser on it
    (``tokenizers``, in place of SentencePiece), cut the text into pieces, estimate a 5-gram model
    with KenLM's ``lmplz`` and turn it into a binary with ``build_binary``. WikiText files are
    detokenised first (detected, or ``--format wikitext``). A rerun with the same inputs and
    parameters finds DIR up to date and does nothing (``--force`` retrains).

``winnow lm cutoffs --model en=DIR --model zh=DIR --in SAMPLE... --out cutoffs.csv``
    Score a sample of documents (parquet/Arrow shards or stage directories, JSONL(.gz), or text
    files with one document per line) with each language's model and write the percentiles 0..100
    per language in CCNet's ``cutoff.csv`` layout; the filter stage reads p30/p60 from it.

``lmplz``/``build_binary`` are looked up as ``--lmplz``/``--build-binary``, on PATH, then next to
the Python interpreter (where ``bash deploy/build_kenlm.sh .venv`` installs them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterator, Sequence

from winnow.filters.errors import ModelError
from winnow.filters.lm_train import compute_cutoffs, read_documents, train_lm
from winnow.filters.perplexity import PerplexityModel, write_percentile_csv

__all__ = ["add_lm_commands", "compute_cutoffs", "iter_documents"]


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
                    help="parquet/Arrow files or stage directories, *.jsonl[.gz], or text files (one document per line)")
    cu.add_argument("--out", required=True, type=Path, help="CSV to write (rows: percentile 0..100)")
    cu.add_argument("--sample", type=int, default=50_000, help="at most this many documents per language (default 50000)")
    cu.add_argument("--lid-model", help="fastText model for documents without a lang field (default: lid.176.ftz)")
    cu.add_argument("--min-lang-score", type=float, default=0.5, help="language ID score to count a document (default 0.5)")
    cu.set_defaults(func=cmd_cutoffs)


def cmd_train(args: argparse.Namespace) -> int:
    try:
        train_lm(args.lang, args.text, args.out, vocab_size=args.vocab_size, order=args.order, fmt=args.format,
                 memory=args.memory, force=args.force, lmplz=args.lmplz, build_binary=args.build_binary, log=print)
    except (ModelError, RuntimeError) as exc:
        print(f"winnow lm train: {exc}", file=sys.stderr)
        return 1
    return 0


def shard_files(paths: Sequence[str]) -> list[str]:
    """Files to read: a stage directory becomes its kept shards (from its manifest)."""
    from winnow.pipeline.shards import input_shards

    out: list[str] = []
    for name in paths:
        out += [str(p) for p in input_shards(name)] if Path(name).is_dir() else [name]
    return out


def iter_documents(paths: Sequence[str]) -> Iterator[tuple[str, str | None]]:
    """(text, lang or None) of every document under `paths` (stage directories resolved)."""
    return read_documents(shard_files(paths))


def cmd_cutoffs(args: argparse.Namespace) -> int:
    models = {}
    try:
        for spec in args.model:
            lang, sep, directory = spec.partition("=")
            if not sep or not lang or not directory:
                print(f"winnow lm cutoffs: --model expects LANG=DIR, got {spec!r}", file=sys.stderr)
                return 2
            models[lang] = PerplexityModel(directory, lang)
        table, counts = compute_cutoffs(models, shard_files(args.inputs), args.sample, args.lid_model,
                                        args.min_lang_score)
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
