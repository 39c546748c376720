"""Benchmark test sets as items (passage, question, choices, answer), read with a field mapping.

A benchmark is one or more files (``.jsonl``, ``.json`` (an array), ``.csv``, ``.parquet``; any of
them may be gzipped) plus a :class:`FieldMap` that says where each part of an item is:

- a JSON/Parquet field path: ``question``, ``question.stem`` (nested), ``question.choices[].text``
  (a list of values), ``0`` (an element of a list record), ``^0`` (of the parent record, after
  ``explode``);
- a CSV column name, or its number for headerless CSV (``csv_header: false``);
- ``choices`` is one path holding a list, or a list of paths (``[A, B, C, D]``);
- ``explode``: a path to a list inside each record whose elements are the items (C3: one record
  is a dialogue and its list of questions).

Built-in mappings (``BUILTIN``) cover the sets in ``../shared/data/benchmarks`` by directory name
(gsm8k, humaneval, mmlu, arc, cmmlu, ceval, agieval_zh, c3), so a directory of them needs no
mapping at all. Answers that are only a choice label (``B``, ``["A", "C"]``) carry no text and are
left out; answers that are text (GSM8K's worked solution, C3's choice text, HumanEval's canonical
solution) are part of the item.

Bad input raises :class:`BenchmarkError` naming the file, the row and the field: a missing field,
an empty question, an empty file or benchmark, bytes that are not UTF-8, JSON/CSV that does not
parse. Nothing here imports winnow.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

#: File name endings read as benchmark files (after removing ``.gz``).
FORMATS = (".jsonl", ".json", ".csv", ".parquet")
_LABEL_ONLY = re.compile(r"^\s*[\(（\[]?[A-Ha-h1-8][\)）\]]?\s*$")
_LEADING_LABEL = re.compile(r"^\s*[\(（\[]?[A-Ha-h][\)）\]\.．、:：]\s*")
_MISSING = object()
#: Characters of a long question repeated in its extra index texts (see `BenchmarkItem.sequences`).
QUESTION_TAIL = 300


class BenchmarkError(ValueError):
    """A benchmark file or mapping is unusable; the message names the file and the field."""


@dataclass(frozen=True)
class FieldMap:
    """Where the parts of an item are in one record of a benchmark file."""

    question: str
    choices: str | tuple[str, ...] | None = None
    answer: str | None = None
    passage: str | None = None
    id: str | None = None
    extra: tuple[str, ...] = ()          # more text fields that are part of the item
    optional: tuple[str, ...] = ()       # mapped fields that may be absent from a record
    explode: str | None = None
    csv_header: bool = True

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "FieldMap":
        raw = dict(raw)
        if "question" not in raw:
            raise BenchmarkError(f"field mapping {raw} has no 'question'")
        choices = raw.get("choices")
        if isinstance(choices, list):
            raw["choices"] = tuple(str(c) for c in choices)
        for key in ("extra", "optional"):
            if key in raw:
                raw[key] = tuple(raw[key])
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise BenchmarkError(f"field mapping: unknown key(s) {sorted(unknown)}; "
                                 f"known: {sorted(cls.__dataclass_fields__)}")
        return cls(**raw)


#: Mappings for the sets in ../shared/data/benchmarks, by directory name (MANIFEST.md's table).
BUILTIN: dict[str, FieldMap] = {
    "gsm8k": FieldMap(question="question", answer="answer"),
    "humaneval": FieldMap(question="prompt", answer="canonical_solution", id="task_id"),
    "mmlu": FieldMap(question="0", choices=("1", "2", "3", "4"), answer="5", csv_header=False),
    "arc": FieldMap(question="question.stem", choices="question.choices[].text", answer="answerKey", id="id"),
    "cmmlu": FieldMap(question="Question", choices=("A", "B", "C", "D"), answer="Answer"),
    # C-Eval withholds test answers (no `answer` column there); dev also has `explanation`.
    "ceval": FieldMap(question="question", choices=("A", "B", "C", "D"), answer="answer", id="id",
                      extra=("explanation",), optional=("answer", "explanation")),
    "agieval_zh": FieldMap(passage="passage", question="question", choices="options", answer="answer"),
    "c3": FieldMap(explode="1", passage="^0", question="question", choices="choice", answer="answer", id="^2"),
}


@dataclass(frozen=True)
class BenchmarkItem:
    """One test item. `id` is unique within its benchmark (``file:row`` when the data has none)."""

    benchmark: str
    id: str
    question: str
    passage: str = ""
    choices: tuple[str, ...] = ()
    answer: str = ""
    extra: tuple[str, ...] = ()

    def sequences(self) -> list[tuple[str, str]]:
        """The texts to index, each with how: ``"grams+whole"`` (its n-grams; its whole text when it
        is shorter than n) or ``"whole"`` (only when shorter than n). The item with labelled
        choices ("A. x B. y") and with bare choices (web copies renumber or drop the labels), and
        the question alone (matched whole when short: copies often drop the choices). The passage
        is indexed apart (`passage`), once however many questions share it."""
        bare = [_LEADING_LABEL.sub("", c) for c in self.choices]
        labelled = [f"{chr(65 + i)}. {c}" for i, c in enumerate(bare)]
        tail = [t for t in (self.answer, *self.extra) if t]
        out = [("\n".join([self.question, *labelled, *tail]), "grams+whole")]
        # The other two only add windows at the question's edges; a long question's own n-grams
        # are in the first text already, so they get its last QUESTION_TAIL characters (a cut
        # token at the start only adds a window nothing matches).
        long_q = len(self.question) > QUESTION_TAIL
        if self.choices:
            q = self.question[-QUESTION_TAIL:] if long_q else self.question
            out.append(("\n".join([q, *bare, *tail]), "grams" if long_q else "grams+whole"))
        if not long_q:
            out.append((self.question, "whole"))
        return out

@dataclass
class Benchmark:
    """A named benchmark: its items and the sha256 of every file read (for config hashes)."""

    name: str
    items: list[BenchmarkItem]
    files: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        payload = json.dumps(sorted(self.files.items())).encode()
        return hashlib.sha256(payload).hexdigest()[:16]


# --- reading files --------------------------------------------------------------------------------
def benchmark_files(path: str | Path) -> list[Path]:
    """The benchmark files of a file or directory (recursive, sorted; LICENSE etc. skipped)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise BenchmarkError(f"{p}: benchmark path does not exist")
    return sorted(f for f in p.rglob("*") if f.is_file() and _format(f) is not None)


def _format(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for ext in FORMATS:
        if name.endswith(ext):
            return ext
    return None


def _read_text(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BenchmarkError(f"{path}: not UTF-8 text (invalid byte 0x{raw[exc.start]:02x} at byte {exc.start})") from None


def read_records(path: Path, fields: FieldMap) -> Iterator[tuple[int, Any]]:
    """(row number, record) for every record of one file: dicts, or lists for headerless CSV."""
    fmt = _format(path)
    if fmt is None:
        raise BenchmarkError(f"{path}: unknown benchmark format (expected {', '.join(FORMATS)}, optionally .gz)")
    try:
        raw = path.read_bytes()
        if path.name.lower().endswith(".gz"):
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise BenchmarkError(f"{path}: cannot be read ({exc})") from None
    if fmt == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(io.BytesIO(raw)).to_pylist()
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise BenchmarkError(f"{path}: not a readable parquet file ({exc})") from None
        yield from enumerate(rows)
        return
    text = _read_text(path, raw)
    if fmt == ".jsonl":
        for i, line in enumerate(text.splitlines()):
            if line.strip():
                try:
                    yield i, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise BenchmarkError(f"{path}: line {i + 1} is not JSON ({exc.msg})") from None
    elif fmt == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BenchmarkError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, list):
            raise BenchmarkError(f"{path}: a .json benchmark must be an array of records")
        yield from enumerate(data)
    else:
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            rows = list(reader)
        except csv.Error as exc:
            raise BenchmarkError(f"{path}: not CSV ({exc})") from None
        if fields.csv_header:
            if not rows:
                return
            header = rows[0]
            for i, row in enumerate(rows[1:], start=1):
                if row:
                    yield i, dict(zip(header, row))
        else:
            for i, row in enumerate(rows):
                if row:
                    yield i, row


def _get(record: Any, path: str, parent: Any = None) -> Any:
    """Value at a field path (see the module doc); _MISSING when a step is absent."""
    if path.startswith("^"):
        return _get(parent, path[1:]) if parent is not None else _MISSING
    cur: Any = record
    parts = path.split(".")
    for i, part in enumerate(parts):
        many = part.endswith("[]")
        name = part[:-2] if many else part
        if isinstance(cur, dict):
            if name not in cur:
                return _MISSING
            cur = cur[name]
        elif isinstance(cur, (list, tuple)) and name.lstrip("-").isdigit():
            idx = int(name)
            if not -len(cur) <= idx < len(cur):
                return _MISSING
            cur = cur[idx]
        else:
            return _MISSING
        if many:
            if not isinstance(cur, list):
                return _MISSING
            rest = ".".join(parts[i + 1:])
            return [_get(x, rest) if rest else x for x in cur]
    return cur


def _text(value: Any) -> str:
    if value is None or value is _MISSING:
        return ""
    if isinstance(value, list):
        return "\n".join(_text(v) for v in value if v is not None)
    return str(value)


def _items_of_file(name: str, path: Path, rel: str, fields: FieldMap) -> Iterator[BenchmarkItem]:
    for row, record in read_records(path, fields):
        if fields.explode:
            subs = _get(record, fields.explode)
            if not isinstance(subs, list):
                raise BenchmarkError(f"{path}: record {row}: field {fields.explode!r} (explode) is missing or not a list")
            pairs = [(f"{row}.{j}", sub, record) for j, sub in enumerate(subs)]
        else:
            pairs = [(str(row), record, None)]
        for where, rec, parent in pairs:
            yield _item(name, path, rel, where, rec, parent, fields)


def _item(name: str, path: Path, rel: str, where: str, rec: Any, parent: Any, fields: FieldMap) -> BenchmarkItem:
    def get(fname: str, path_: str | None) -> Any:
        if path_ is None:
            return None
        value = _get(rec, path_, parent)
        if value is _MISSING and path_ not in fields.optional and fname not in fields.optional:
            raise BenchmarkError(f"{path}: record {where}: field {path_!r} ({fname}) is missing")
        return None if value is _MISSING else value

    question = _text(get("question", fields.question)).strip()
    if not question:
        raise BenchmarkError(f"{path}: record {where}: field {fields.question!r} (question) is empty")
    if isinstance(fields.choices, tuple):
        choices = [get("choices", c) for c in fields.choices]
    else:
        raw = get("choices", fields.choices)
        choices = raw if isinstance(raw, list) else ([] if raw is None else [raw])
    choices_t = tuple(_text(c).strip() for c in choices if _text(c).strip())
    answer_raw = get("answer", fields.answer)
    answer = "" if _is_label(answer_raw) else _text(answer_raw).strip()
    if answer and answer in choices_t:
        answer = ""  # C3: the answer is the text of a choice, already in the item
    extra = tuple(t for t in (_text(get(e, e)).strip() for e in fields.extra) if t)
    item_id = _text(get("id", fields.id)).strip() if fields.id else ""
    if item_id and parent is not None:
        item_id += where[where.index("."):]  # exploded: one id per question of the record
    return BenchmarkItem(benchmark=name, id=f"{rel}:{item_id or where}", question=question,
                         passage=_text(get("passage", fields.passage)).strip(), choices=choices_t,
                         answer=answer, extra=extra)


def _is_label(value: Any) -> bool:
    if value is None or value is _MISSING:
        return True
    if isinstance(value, list):
        return all(_is_label(v) for v in value)
    return bool(_LABEL_ONLY.match(str(value)))


def load_benchmark(name: str, paths: Sequence[str | Path], fields: FieldMap | dict[str, Any] | None = None) -> Benchmark:
    """Read every file of a benchmark; errors name the file and field."""
    if fields is None:
        if name not in BUILTIN:
            raise BenchmarkError(f"benchmark {name!r} ({', '.join(map(str, paths))}): no built-in field mapping "
                                 f"(built-in: {sorted(BUILTIN)}); give `fields: {{question: ..., choices: ..., answer: ...}}`")
        fields = BUILTIN[name]
    elif isinstance(fields, dict):
        fields = FieldMap.from_dict(fields)
    items: list[BenchmarkItem] = []
    files: dict[str, str] = {}
    for root in paths:
        root = Path(root)
        found = benchmark_files(root)
        if not found:
            raise BenchmarkError(f"benchmark {name!r}: {root} holds no benchmark files ({', '.join(FORMATS)})")
        for f in found:
            rel = f.relative_to(root).as_posix() if root.is_dir() else f.name
            before = len(items)
            items.extend(_items_of_file(name, f, rel, fields))
            if len(items) == before:
                raise BenchmarkError(f"{f}: benchmark file is empty (no records)")
            files[str(f.resolve())] = hashlib.sha256(f.read_bytes()).hexdigest()
    if not items:
        raise BenchmarkError(f"benchmark {name!r} ({', '.join(map(str, paths))}) is empty")
    return Benchmark(name=name, items=items, files=files)


def discover(path: str | Path) -> list[tuple[str, Path]]:
    """(benchmark name, path) for a path given without a mapping: a directory or file named after
    a built-in benchmark, or a directory whose sub-directories are (``../shared/data/benchmarks``)."""
    p = Path(path)
    if not p.exists():
        raise BenchmarkError(f"{p}: benchmark path does not exist")
    stem = p.name.split(".")[0].lower()
    if stem in BUILTIN:
        return [(stem, p)]
    if p.is_dir():
        subs = sorted(d for d in p.iterdir() if d.is_dir())
        known = [(d.name.lower(), d) for d in subs if d.name.lower() in BUILTIN]
        unknown = [d.name for d in subs if d.name.lower() not in BUILTIN and benchmark_files(d)]
        if unknown:
            raise BenchmarkError(f"{p}: sub-directories {unknown} are not built-in benchmarks "
                                 f"({sorted(BUILTIN)}); list them with a `fields:` mapping")
        if known:
            return known
    raise BenchmarkError(f"{p}: not a built-in benchmark ({sorted(BUILTIN)}) nor a directory of them; "
                         f"give it as {{name: ..., paths: [...], fields: {{question: ...}}}}")


def iter_items(benchmarks: Iterable[Benchmark]) -> Iterator[BenchmarkItem]:
    for b in benchmarks:
        yield from b.items


def index_texts(items: Sequence[BenchmarkItem]) -> tuple[list[str], list[int], list[int], list[str]]:
    """(texts, item index, group, mode) for every text to index: each item's `sequences()` and each
    distinct passage once (credited to the first item that has it). Items on one passage share a
    group, so a phrase repeated by its questions is not mistaken for boilerplate."""
    texts: list[str] = []
    item_of: list[int] = []
    group_of: list[int] = []
    modes: list[str] = []
    passage_group: dict[str, int] = {}
    for i, item in enumerate(items):
        group = len(items) + i
        if item.passage:
            if item.passage not in passage_group:
                passage_group[item.passage] = i
                texts.append(item.passage)
                item_of.append(i)
                group_of.append(i)
                modes.append("grams+whole")
            group = passage_group[item.passage]
        for text, mode in item.sequences():
            texts.append(text)
            item_of.append(i)
            group_of.append(group)
            modes.append(mode)
    return texts, item_of, group_of, modes
