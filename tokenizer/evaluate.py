"""Compare tokenizers on text: bytes per token, tokens per word (characters per token for CJK)
and the share of the vocabulary ever used, per language, side by side.

``winnow tokenizer eval TOKENIZER... --text FILE... [--json OUT]``

A TOKENIZER is a `tokenizer.json` file or a directory holding one (`NAME=PATH` names it in the
table). A FILE is JSON Lines (optionally gzipped) with a `text` field, grouped by its `lang` field
(winnow shards' and the corpus' layout), or plain text grouped under its file name;
`LABEL=FILE` puts a whole file under LABEL. Nothing is normalised: bytes are UTF-8 bytes of the
text as given, tokens are ids without special tokens.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

from tokenizers import Tokenizer

#: Languages written without spaces between words: report characters per token for them.
CJK_LANGS = frozenset({"zh", "ja", "ko", "zh-hans", "zh-hant", "zh_cn", "zh_tw", "yue", "wuu"})
#: Plain-text files are cut at line ends into pieces of about this many bytes before encoding.
TEXT_PIECE_BYTES = 1 << 16


@dataclass
class LanguageScore:
    """One tokenizer on one language's texts."""

    tokenizer: str
    lang: str
    docs: int
    bytes: int
    chars: int
    words: int
    tokens: int
    bytes_per_token: float
    tokens_per_word: float | None      # None for CJK languages
    chars_per_token: float
    vocab_used: int                    # distinct ids that occurred
    vocab_used_share: float            # ... as a share of the whole vocabulary


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A `tokenizers` tokenizer from a tokenizer.json file or a directory holding one."""
    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no tokenizer.json there")
    try:
        return Tokenizer.from_file(str(p))
    except Exception as exc:  # the Rust side raises a bare Exception on malformed JSON
        raise ValueError(f"{p}: not a tokenizers JSON file: {exc}") from None


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _is_jsonl(path: Path) -> bool:
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    return name.endswith((".jsonl", ".json", ".ndjson"))


def _pieces(text: str, size: int = TEXT_PIECE_BYTES) -> Iterable[str]:
    """Cut a long plain text at line ends into pieces of about `size` characters."""
    buf: list[str] = []
    n = 0
    for line in text.splitlines(keepends=True):
        buf.append(line)
        n += len(line)
        if n >= size:
            yield "".join(buf)
            buf, n = [], 0
    if buf:
        yield "".join(buf)


def read_texts(specs: Sequence[str], max_docs: int | None = None) -> dict[str, list[str]]:
    """Label -> texts from `FILE` / `LABEL=FILE` specs (see the module doc)."""
    groups: dict[str, list[str]] = {}
    for spec in specs:
        label, _, file = spec.rpartition("=") if "=" in spec and not Path(spec).exists() else ("", "", spec)
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"{file}: text file not found")
        if _is_jsonl(path):
            with _open_text(path) as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}:{n}: not JSON: {exc}") from None
                    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                        raise ValueError(f"{path}:{n}: a JSON object with a string `text` field expected")
                    lang = label or str(row.get("lang") or row.get("language") or path.name.split(".")[0])
                    bucket = groups.setdefault(lang, [])
                    if max_docs is None or len(bucket) < max_docs:
                        bucket.append(row["text"])
        else:
            with _open_text(path) as f:
                text = f.read()
            groups.setdefault(label or path.name.split(".")[0], []).extend(_pieces(text))
    empty = [k for k, v in groups.items() if not any(v)]
    if not groups or len(empty) == len(groups):
        raise ValueError(f"no text in {', '.join(specs)}")
    return groups


def score(name: str, tok: Tokenizer, lang: str, texts: Sequence[str]) -> LanguageScore:
    """Encode `texts` (no special tokens) and measure the compression figures."""
    vocab = tok.get_vocab_size(with_added_tokens=True)
    used: set[int] = set()
    n_tokens = n_bytes = n_chars = n_words = 0
    for i in range(0, len(texts), 256):
        batch = list(texts[i:i + 256])
        for text, enc in zip(batch, tok.encode_batch(batch, add_special_tokens=False)):
            n_tokens += len(enc.ids)
            used.update(enc.ids)
            n_bytes += len(text.encode("utf-8"))
            n_chars += len(text)
            n_words += len(text.split())
    cjk = lang.lower() in CJK_LANGS
    return LanguageScore(
        tokenizer=name, lang=lang, docs=len(texts), bytes=n_bytes, chars=n_chars, words=n_words, tokens=n_tokens,
        bytes_per_token=n_bytes / n_tokens if n_tokens else 0.0,
        tokens_per_word=None if cjk or not n_words else n_tokens / n_words,
        chars_per_token=n_chars / n_tokens if n_tokens else 0.0,
        vocab_used=len(used), vocab_used_share=len(used) / vocab if vocab else 0.0)


def evaluate(tokenizers: dict[str, Tokenizer], groups: dict[str, list[str]]) -> list[LanguageScore]:
    """Every tokenizer on every language, plus an `all` row per tokenizer."""
    rows: list[LanguageScore] = []
    everything = [t for lang in sorted(groups) for t in groups[lang]]
    for name, tok in tokenizers.items():
        for lang in sorted(groups):
            rows.append(score(name, tok, lang, groups[lang]))
        if len(groups) > 1:
            rows.append(score(name, tok, "all", everything))
    return rows


def format_table(rows: Sequence[LanguageScore]) -> str:
    """A fixed-width table: one line per language, the tokenizers side by side."""
    names = list(dict.fromkeys(r.tokenizer for r in rows))
    langs = list(dict.fromkeys(r.lang for r in rows))
    by = {(r.tokenizer, r.lang): r for r in rows}
    head = f"{'lang':<8} {'docs':>7} {'MB':>8}"
    for n in names:
        head += f" | {n[:24]:>24}: {'B/tok':>6} {'tok/w':>6} {'ch/tok':>6} {'vocab%':>6}"
    lines = [head, "-" * len(head)]
    for lang in langs:
        first = next(by[(n, lang)] for n in names if (n, lang) in by)
        line = f"{lang:<8} {first.docs:>7,} {first.bytes / 1e6:>8.2f}"
        for n in names:
            r = by.get((n, lang))
            if r is None:
                line += " | " + " " * 53
                continue
            tpw = f"{r.tokens_per_word:.3f}" if r.tokens_per_word is not None else "-"
            line += (f" | {'':>24}  {r.bytes_per_token:>6.3f} {tpw:>6} {r.chars_per_token:>6.3f} "
                     f"{100 * r.vocab_used_share:>6.2f}")
        lines.append(line)
    return "\n".join(lines)


def _named(spec: str) -> tuple[str, str]:
    if "=" in spec and not Path(spec).exists():
        name, _, path = spec.partition("=")
        return name, path
    p = Path(spec)
    return (p.parent.name if p.name == "tokenizer.json" else p.name), spec


def main(argv: Sequence[str] | None = None) -> int:
    """`winnow tokenizer eval`: print the table; `--json OUT` also writes the rows as JSON."""
    ap = argparse.ArgumentParser(prog="winnow tokenizer eval", description=__doc__.split("\n\n")[0])
    ap.add_argument("tokenizers", nargs="+", metavar="TOKENIZER", help="tokenizer.json or its directory (NAME=PATH)")
    ap.add_argument("--text", nargs="+", required=True, metavar="FILE",
                    help="JSON Lines (.gz) with text/lang, or plain text (LABEL=FILE)")
    ap.add_argument("--max-docs", type=int, default=None, help="at most this many documents per language")
    ap.add_argument("--json", default=None, metavar="OUT", help="write the rows as JSON here ('-': stdout)")
    args = ap.parse_args(list(argv) if argv is not None else None)
    try:
        toks = {}
        for spec in args.tokenizers:
            name, path = _named(spec)
            if name in toks:
                name = f"{name}#{len(toks)}"
            toks[name] = load_tokenizer(path)
        groups = read_texts(args.text, max_docs=args.max_docs)
    except (OSError, ValueError) as exc:
        print(f"winnow tokenizer eval: error: {exc}", file=sys.stderr)
        return 2
    rows = evaluate(toks, groups)
    payload = json.dumps([asdict(r) for r in rows], indent=2, ensure_ascii=False)
    if args.json == "-":
        print(payload)
        return 0
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(payload + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
