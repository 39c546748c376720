"""Remix: label every document's domain, sample to a target mixture, shuffle, write Arrow shards.

``winnow remix --in DIR... --out DIR [--mixture YAML] [--seed N]``

DeepSeek LLM's third stage ("increase the presence of under-represented domains"), with the
mixture spec of OLMo-core: per domain (or per `lang/domain`) a target share or a temperature, a
budget in bytes or tokens, `max_epochs`, `max_share`, and an error — or a reported
redistribution — when a domain is too small for its target. Labels come from URL/host rules
(`filters/domains.py`) and, for what they leave, a fastText topic classifier
(`winnow remix train-classifier`); `domain`, `domain_source` and `domain_detail` are columns.

Output: `data/part-*.arrow` (Arrow IPC files, ≈ `shard_bytes` each), globally shuffled by keyed
hashes of (seed, id, repeat), with a `repeat` column. Accounting: documents not chosen are
rejected as `remix:not_sampled`; each record's `kept` counts distinct input documents and the
extra copies are the counter `repeated` (output rows = kept + repeated). `remix_report.json`
beside the manifest has, per domain (and per language), documents, bytes, tokens, epochs,
target vs realised share and any shortfall.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

import numpy as np
import pyarrow as pa
import yaml
from pydantic import Field, field_validator, model_validator

from winnow.pipeline import shards as shard_io
from winnow.stages.base import EXECUTION, PATH, Runtime, ShardTask, Stage, StageConfig, identity_config, shard_fingerprint, shard_name
from winnow.stages.remix.mixture import DEFAULT_TEMPERATURE, SHARE_TOLERANCE, Budget, GroupSpec

log = logging.getLogger("winnow")

REPORT = "remix_report.json"


class RemixInputError(ValueError):
    """Input the remix stage cannot work on (missing column, no documents); raised before work."""


_DOMAINS: dict[tuple[str, int, int], frozenset[str]] = {}


def _taxonomy_domains(path: str | None) -> frozenset[str]:
    """The domains a taxonomy file names, parsed once per process and file version (a config is
    validated on every stage construction; the taxonomy is a few hundred YAML lines)."""
    import os

    from winnow.filters.domains import DEFAULT_TAXONOMY, DomainRules

    p = str(path or DEFAULT_TAXONOMY)
    try:
        st = os.stat(p)
        key = (p, st.st_mtime_ns, st.st_size)
    except OSError:   # DomainRules.load says what is wrong with the path
        return frozenset(DomainRules.load(path).domains)
    if key not in _DOMAINS:
        _DOMAINS[key] = frozenset(DomainRules.load(path).domains)
    return _DOMAINS[key]


class RemixConfig(StageConfig):
    """The `remix:` section of a pipeline config."""

    seed: int = Field(0, description="seed of every keyed hash (selection, repeats, shuffle)")
    mixture: dict[str, GroupSpec] | None = Field(
        None, description="group -> share (or {share, max_epochs, max_share}); a group is a domain or `lang/domain`; "
                          "shares sum to 1. None: temperature sampling over the domains present")
    temperature: float | None = Field(None, gt=0, le=1,
                                      description=f"p ∝ n^α when no mixture is given (default {DEFAULT_TEMPERATURE})")
    by_lang: bool = Field(False, description="with temperature: groups are lang × domain instead of domain")
    budget: Budget | None = Field(None, description="output size {bytes: N} or {tokens: N}; None: the input's size in bytes")
    tokenizer: str | None = Field(None, json_schema_extra=PATH, description="tokenizer.json to count tokens with; else tokens ≈ bytes / bytes_per_token")
    bytes_per_token: float = Field(4.0, gt=0, description="the stated ratio when no tokenizer is given")
    max_epochs: float = Field(4.0, gt=0, description="default most passes over a group (Muennighoff et al. 2023: 4)")
    max_share: float | None = Field(None, gt=0, le=1, description="default most of the output one group may take")
    on_shortfall: Literal["error", "redistribute"] | None = Field(
        None, description="a group too small for its target: error (default with a mixture) or redistribute "
                          "(default with temperature)")
    taxonomy: str | None = Field(None, json_schema_extra=PATH, description="domain taxonomy YAML (default: filters/domain_taxonomy.yaml)")
    classifier: str | None = Field(None, json_schema_extra=PATH, description="fastText topic classifier (.bin from `winnow remix train-classifier`)")
    classifier_min_prob: float = Field(0.0, ge=0, le=1, description="below this probability the label is `other` (default)")
    classifier_chars: int = Field(2000, ge=100, description="characters of text the classifier reads")
    shard_bytes: int = Field(256 * 2**20, ge=1, description="target size of an output Arrow shard (text bytes)")
    keep_work: bool = Field(False, json_schema_extra=EXECUTION, description="keep OUT/_work (label files, partitions) after the run")

    @field_validator("mixture", mode="before")
    @classmethod
    def _shares(cls, v: Any) -> Any:
        """`domain: 0.3` is short for `domain: {share: 0.3}`."""
        if isinstance(v, dict):
            return {k: ({"share": s} if isinstance(s, (int, float)) and not isinstance(s, bool) else s)
                    for k, s in v.items()}
        return v

    @model_validator(mode="after")
    def _check(self) -> "RemixConfig":
        if self.mixture is not None:
            if not self.mixture:
                raise ValueError("mixture: empty; give at least one group, or leave it out for temperature sampling")
            if self.temperature is not None:
                raise ValueError("give either mixture or temperature, not both")
            known = _taxonomy_domains(self.taxonomy)
            keyed = {("/" in k) for k in self.mixture}
            if len(keyed) > 1:
                raise ValueError("mixture: mix of `domain` and `lang/domain` keys; use one form")
            for k, spec in self.mixture.items():
                dom = k.split("/", 1)[1] if "/" in k else k
                if dom not in known:
                    raise ValueError(f"mixture.{k}: unknown domain {dom!r}; the taxonomy has {', '.join(sorted(known))}")
                ms = spec.max_share if spec.max_share is not None else self.max_share
                if ms is not None and spec.share > ms + SHARE_TOLERANCE:
                    raise ValueError(f"mixture.{k}: share {spec.share} is above its max_share {ms}")
            total = sum(s.share for s in self.mixture.values())
            if abs(total - 1.0) > SHARE_TOLERANCE:
                raise ValueError(f"mixture: shares sum to {total:.9g}, not 1 (± {SHARE_TOLERANCE:g})")
        if self.tokenizer is not None and not Path(self.tokenizer).is_file():
            raise ValueError(f"tokenizer: file not found: {self.tokenizer}")
        if self.classifier is not None and not Path(self.classifier).is_file():
            raise ValueError(f"classifier: file not found: {self.classifier}")
        if self.taxonomy is not None and not Path(self.taxonomy).is_file():
            raise ValueError(f"taxonomy: file not found: {self.taxonomy}")
        return self

    @property
    def by_lang_groups(self) -> bool:
        return any("/" in k for k in self.mixture) if self.mixture is not None else self.by_lang

    @property
    def policy(self) -> str:
        return self.on_shortfall or ("error" if self.mixture is not None else "redistribute")


class RemixStage(Stage):
    """Label domains, sample to a target mixture, shuffle globally, write Arrow IPC shards."""

    name: ClassVar[str] = "remix"
    version: ClassVar[int] = 1
    Config: ClassVar[type[StageConfig]] = RemixConfig
    help: ClassVar[str] = "label domains, sample a target mixture (shares, epochs), shuffle, write Arrow shards"
    config: RemixConfig
    whole_dataset: ClassVar[bool] = True
    #: The output directory may be an object-store URL: work files, shards and the report are
    #: then objects (see `phases` and docs/object-storage.md).
    object_storage: ClassVar[bool] = True
    #: per phase of the last `execute`: wall seconds, task CPU seconds, tasks, peak worker RSS (MB)
    phase_stats: dict[str, dict[str, float]]

    # --- identity: the models it reads are part of it ------------------------------------------
    def config_hash(self) -> str:
        cfg = self.config
        files = {k: shard_io.sha256_file(p) for k, p in
                 (("taxonomy", cfg.taxonomy), ("classifier", cfg.classifier), ("tokenizer", cfg.tokenizer)) if p}
        if not cfg.taxonomy:
            from winnow.filters.domains import DEFAULT_TAXONOMY

            files["taxonomy"] = shard_io.sha256_file(DEFAULT_TAXONOMY)
        payload = {"stage": self.name, "version": self.version, "config": identity_config(cfg), "files": files}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    # --- CLI ---------------------------------------------------------------------------------
    @classmethod
    def add_cli_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--mixture", default=None, metavar="YAML",
                            help="a mixture file: a `remix:` section, or its keys (mixture, budget, max_epochs …)")
        parser.add_argument("--seed", type=int, default=None, help="seed of sampling and shuffle (default 0)")

    @classmethod
    def cli_overrides(cls, args: argparse.Namespace) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if getattr(args, "mixture", None):
            raw = yaml.safe_load(Path(args.mixture).read_text(encoding="utf-8")) or {}
            if not isinstance(raw, dict):
                raise ValueError(f"{args.mixture}: expected a mapping")
            section = raw.get("remix", raw) if isinstance(raw.get("remix", raw), dict) else raw
            if "mixture" not in section and "temperature" not in section and "budget" not in section:
                section = {"mixture": section}   # a bare group -> share mapping
            out.update(section)
        if getattr(args, "seed", None) is not None:
            out["seed"] = args.seed
        return out

    # --- planning: input checks happen here, before any work -----------------------------------
    def plan(self, inputs: Sequence[str]) -> list[ShardTask]:
        """One task per OUTPUT shard, each reading every input shard (a global shuffle): as many
        as the planned output size over `shard_bytes` (text bytes from the parquet footers).
        Checks the input first: no shards or no documents, a missing `id`/`url`/`text` column, or
        `lang/domain` groups without a `lang` column are errors naming what is missing."""
        entries = [e for d in inputs for e in shard_io.input_shard_entries(d)]
        if not entries:
            raise RemixInputError(f"remix: empty input: no shards in {', '.join(inputs)}")
        rows = 0
        has_lang = True
        text_bytes = 0
        for e in entries:
            path = str(e.path)
            schema, shard_rows, shard_text_bytes, nulls = _shard_facts(path)
            for col in ("id", "url", "text"):
                if col not in schema.names:
                    raise RemixInputError(f"remix: input {path} has no `{col}` column (columns: {', '.join(schema.names)})")
            has_lang = has_lang and "lang" in schema.names
            rows += e.rows if e.rows is not None else shard_rows
            text_bytes += shard_text_bytes
            if nulls:
                raise RemixInputError(f"remix: input {path}: {nulls} document(s) with a null `id` "
                                      f"(ids key the sampling and the shuffle)")
        if rows == 0:
            raise RemixInputError(f"remix: empty input: {len(entries)} shard(s) in {', '.join(inputs)} hold no documents")
        if self.config.by_lang_groups and not has_lang:
            raise RemixInputError("remix: mixture groups are `lang/domain` but the input has no `lang` column "
                                  "(run the filter stage first, or use domain keys)")
        cfg = self.config
        if cfg.budget is None:
            out_bytes = text_bytes
        elif cfg.budget.bytes is not None:
            out_bytes = cfg.budget.bytes
        else:
            out_bytes = int(cfg.budget.tokens * cfg.bytes_per_token)  # type: ignore[operator]
        n_out = max(1, math.ceil(out_bytes / cfg.shard_bytes))
        files = tuple(str(e.path) for e in entries)
        fingerprint = shard_fingerprint(entries)
        return [ShardTask(index=j, name=shard_name(j), inputs=files, fingerprint=fingerprint) for j in range(n_out)]

    # --- the phases --------------------------------------------------------------------------
    def execute(self, tasks: Sequence[ShardTask], out_dir: Path, runtime: Runtime) -> list[dict[str, Any]]:
        from winnow.stages.remix import phases as ph

        cfg = self.config
        remote = shard_io.is_url(out_dir)
        out_dir = str(out_dir).rstrip("/") if remote else Path(out_dir)  # type: ignore[assignment]
        h = self.config_hash()
        fingerprint = tasks[0].fingerprint
        names = [t.name for t in tasks]
        committed = {n: shard_io.committed_shard(out_dir, n, h, t.fingerprint) for n, t in zip(names, tasks)}
        if all(committed.values()):   # finished under this config and these inputs: nothing to do
            return [committed[n] for n in names]  # type: ignore[misc]
        inputs = tasks[0].inputs
        work_key = hashlib.sha256(json.dumps([h, fingerprint, list(inputs), len(tasks)]).encode()).hexdigest()[:16]
        work = shard_io.stage_file(out_dir, "_work", work_key)
        # work files live for one execute: a rerun redoes the phases and resumes only committed shards
        _remove_tree(shard_io.stage_file(out_dir, "_work"))
        units = "tokens" if (cfg.budget is not None and cfg.budget.tokens is not None and cfg.tokenizer) else "bytes"
        plan = ph.Plan(work=str(work), inputs=tuple(inputs), seed=cfg.seed,
                       by_lang=cfg.by_lang_groups, taxonomy=cfg.taxonomy, classifier=cfg.classifier,
                       classifier_chars=cfg.classifier_chars, classifier_min_prob=cfg.classifier_min_prob,
                       tokenizer=cfg.tokenizer, units=units, with_text=remote and cfg.keep_rejected_text)
        stats: dict[str, dict[str, float]] = {}
        self.phase_stats = stats
        plan_ref = runtime.put(plan)
        labelled = runtime.map_tasks(ph.label_shard, [(plan_ref, i) for i in range(len(inputs))],
                                     desc="remix label", unit="shard", stats=stats)
        solution, decisions, summary = self._decide(labelled, units, len(tasks))
        dec_ref = runtime.put(decisions)
        runtime.map_tasks(ph.scatter_shard, [(plan_ref, dec_ref, i) for i in range(len(inputs))],
                          desc="remix sample", unit="shard", stats=stats)
        todo = [j for j, n in enumerate(names) if committed[n] is None]
        new = runtime.map_tasks(ph.gather_partition,
                                [(plan_ref, dec_ref, j, str(out_dir), names[j], h, fingerprint, cfg.keep_rejected_text)
                                 for j in todo], desc="remix shuffle+write", unit="shard", stats=stats)
        for j, rec in zip(todo, new):
            committed[names[j]] = rec
        records = [committed[n] for n in names]
        report = build_report(cfg, solution, summary, records, units, stats)
        shard_io.write_json_at(report, shard_io.stage_file(out_dir, REPORT))
        log.info("remix: %s", format_report(report))
        if not cfg.keep_work:
            _remove_tree(work)
            if not remote:
                try:
                    work.parent.rmdir()  # type: ignore[union-attr]
                except OSError:
                    pass
        return records  # type: ignore[return-value]

    def check_output(self, manifest: dict[str, Any], records: Sequence[dict[str, Any]], out_dir: Path) -> None:
        """Check the report against the manifest, and put it in the manifest (`manifest["remix"]`:
        per domain and language documents, bytes, tokens, epochs, target vs realised share,
        shortfall; timings stay in remix_report.json so equal runs give equal manifests).
        The runner has no hook for extra manifest keys; this one is called before it writes."""
        path = shard_io.stage_file(out_dir, REPORT)   # a local path or an object-store URL
        report = shard_io.read_json_at(path)
        if report is None:
            raise RemixInputError(f"remix: {path} missing: the stage did not finish its report")
        rows = sum(v["rows_out"] for v in report["groups"].values())
        if rows != manifest["kept"] + manifest["counters"].get("repeated", 0):
            raise shard_io.AccountingError(f"remix: report has {rows} output rows, the manifest "
                                           f"{manifest['kept']} kept + {manifest['counters'].get('repeated', 0)} repeated")
        manifest["remix"] = {k: v for k, v in report.items() if k != "phases"}

    def _decide(self, labelled: list[dict[str, Any]], units: str, partitions: int) -> tuple[dict[str, Any], Any, dict[str, Any]]:
        """Driver step: solve the mixture on the group totals and turn it into copy rules."""
        from winnow.stages.remix import mixture as mx
        from winnow.stages.remix import phases as ph
        from winnow.stages.remix.sample import copy_rule

        cfg = self.config
        # per group: keys, shard index, row index, units (the driver holds 24 bytes per document)
        per: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {}
        label_counts: dict[str, int] = {}
        for i, r in enumerate(labelled):
            codes = r["codes"]
            for c, g in enumerate(r["vocab"]):
                sel = np.flatnonzero(codes == c)
                per.setdefault(g, []).append((r["keys"][sel], np.full(len(sel), i, dtype=np.int64), sel.astype(np.int64),
                                              r["units"][sel], r["bytes"][sel]))
            for k, v in r["labels"].items():
                label_counts[k] = label_counts.get(k, 0) + v
        arrays = {g: tuple(np.concatenate([p[k] for p in parts]) for k in range(5)) for g, parts in per.items()}
        available = {g: float(a[3].sum()) for g, a in arrays.items()}
        input_bytes = sum(float(a[4].sum()) for a in arrays.values())
        if cfg.budget is None:
            budget = sum(available.values())
        elif cfg.budget.bytes is not None:
            budget = float(cfg.budget.bytes)
        elif units == "tokens":
            budget = float(cfg.budget.tokens)  # type: ignore[arg-type]
        else:
            budget = float(cfg.budget.tokens) * cfg.bytes_per_token  # type: ignore[operator]
        if cfg.mixture is not None:
            shares = {g: s.share for g, s in cfg.mixture.items()}
            for g in available:
                shares.setdefault(g, 0.0)   # groups the mixture does not name get nothing
            specs = cfg.mixture
        else:
            shares = mx.temperature_shares(available, cfg.temperature or mx.DEFAULT_TEMPERATURE)
            specs = {}
        max_epochs = {g: (specs[g].max_epochs if g in specs and specs[g].max_epochs is not None else cfg.max_epochs)
                      for g in shares}
        max_share = {g: (specs[g].max_share if g in specs and specs[g].max_share is not None else cfg.max_share)
                     for g in shares}
        solution = mx.solve(available, shares, budget, max_epochs=max_epochs, max_share=max_share, policy=cfg.policy)
        rules = {}
        out_bytes = 0.0
        out_rows = 0
        for g, plan in solution.items():
            if g not in arrays:
                continue
            keys, shards_, rows, u, b = arrays[g]
            rule = copy_rule(keys, shards_, rows, u, plan.planned, plan.max_epochs)
            rules[g] = rule
            # bytes the copies add up to (units may be tokens)
            frac = rule.planned_units / max(1.0, float(u.sum()))
            out_bytes += frac * float(b.sum())
            out_rows += rule.full * len(keys) + rule.extra_docs
        schema = pa.unify_schemas([r["schema"] for r in labelled], promote_options="default")
        decisions = ph.Decisions(rules=rules, partitions=partitions, schema=schema, groups=tuple(sorted(solution)))
        summary = {"budget": budget, "input_bytes": input_bytes, "label_counts": label_counts,
                   "docs": {g: int(len(a[0])) for g, a in arrays.items()},
                   "input_bytes_by_group": {g: int(a[4].sum()) for g, a in arrays.items()},
                   "planned_rows": out_rows, "planned_text_bytes": out_bytes, "rules": {g: {"full": r.full, "extra_docs": r.extra_docs,
                                                           "planned_units": r.planned_units} for g, r in rules.items()}}
        return solution, decisions, summary


def _remove_tree(where: Path | str) -> None:
    """Delete a local directory tree, or every object under an object-store prefix."""
    if isinstance(where, str):
        from winnow.stages import remote_io

        remote_io.remove([remote_io.join(where, rel) for rel in remote_io.list_files(where)])
    else:
        shutil.rmtree(where, ignore_errors=True)


def _shard_facts(path: str) -> tuple[pa.Schema, int, int, int]:
    """(schema, rows, text bytes, null ids) of an input shard, from one read of its footer where
    it is parquet (text bytes: the uncompressed size of the `text` column chunks; null ids: the
    `id` chunks' statistics, the column itself only when a chunk has none); an Arrow IPC file gives
    its schema and rows from its footer, its file size as the text bytes (enough to size the
    output shards) and reads only the `id` column for nulls. An object-store URL is read the same
    way through fsspec (ranged reads of the footer)."""
    import contextlib
    import os

    remote = shard_io.is_url(path)
    if remote:
        from winnow.stages import remote_io

        opened: Any = remote_io.open_raw(path)
    else:
        opened = contextlib.nullcontext()
    with opened as f:
        return _facts_of(path, f if remote else None, os.path.getsize(path) if not remote and path.endswith(".arrow") else None)


def _facts_of(path: str, f: Any, size: int | None) -> tuple[pa.Schema, int, int, int]:
    """`_shard_facts` of a local path (`f` None) or an open remote file `f`."""
    if path.endswith(".arrow"):
        if f is None:
            with pa.memory_map(path, "r") as src:
                reader = pa.ipc.open_file(src)
                schema = reader.schema
                rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        else:
            reader = pa.ipc.open_file(f)
            schema = reader.schema
            rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
            size = f.size if hasattr(f, "size") else f.seek(0, 2)
        nulls = shard_io.read_shard(path, ["id"]).column("id").null_count if "id" in schema.names else 0
        return schema, rows, int(size or 0), nulls
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(f if f is not None else path)
    md = pf.metadata
    chunks = [md.row_group(rg).column(c) for rg in range(md.num_row_groups) for c in range(md.num_columns)]
    text_bytes = sum(col.total_uncompressed_size for col in chunks if col.path_in_schema == "text")
    nulls = 0
    for col in (col for col in chunks if col.path_in_schema == "id"):
        st = col.statistics
        if st is None or not st.has_null_count:
            ids = shard_io.read_shard(path, ["id"]) if f is not None else pq.read_table(path, columns=["id"])
            nulls = int(ids.column("id").null_count)
            break
        nulls += st.null_count
    return pf.schema_arrow, md.num_rows, text_bytes, nulls


def build_report(cfg: RemixConfig, solution: dict[str, Any], summary: dict[str, Any], records: Sequence[dict[str, Any]],
                 units: str, stats: dict[str, Any]) -> dict[str, Any]:
    """Per group: documents, bytes, tokens, epochs, target vs realised share, shortfall; and the
    label counts per source × language × domain."""
    counters: dict[str, int] = {}
    for r in records:
        for k, v in r["counters"].items():
            counters[k] = counters.get(k, 0) + v
    out_units = {g: counters.get(f"{'tokens' if units == 'tokens' else 'bytes'}:{g}", 0) for g in solution}
    total_units = sum(out_units.values())
    groups = {}
    for g, plan in sorted(solution.items()):
        b_out = counters.get(f"bytes:{g}", 0)
        tok_counted = bool(cfg.tokenizer)   # with a tokenizer every document's tokens are counted
        groups[g] = {
            "documents_in": summary["docs"].get(g, 0),
            "documents_out": counters.get(f"docs:{g}", 0),
            "rows_out": counters.get(f"rows:{g}", 0),
            "repeated": counters.get(f"rows:{g}", 0) - counters.get(f"docs:{g}", 0),
            "bytes_in": summary["input_bytes_by_group"].get(g, 0),
            "bytes_out": b_out,
            "tokens_out": counters.get(f"tokens:{g}", 0) if tok_counted else round(b_out / cfg.bytes_per_token),
            "tokens_estimated": not tok_counted,
            "epochs": (out_units[g] / plan.available) if plan.available else 0.0,
            "max_epochs": plan.max_epochs,
            "target_share": plan.target_share,
            "realised_share": out_units[g] / total_units if total_units else 0.0,
            "target_units": plan.target,
            "shortfall_units": plan.shortfall,
            "limited_by": plan.limited_by,
        }
    return {
        "units": units,
        "bytes_per_token": None if units == "tokens" else cfg.bytes_per_token,
        "budget_units": summary["budget"],
        "output_units": total_units,
        "shortfall_units": max(0.0, summary["budget"] - total_units),
        "policy": cfg.policy,
        "mode": "mixture" if cfg.mixture is not None else f"temperature {cfg.temperature or DEFAULT_TEMPERATURE}",
        "seed": cfg.seed,
        "groups": groups,
        "labels": {k.replace("\t", "/"): v for k, v in sorted(summary["label_counts"].items())},
        "by_lang": {k.split(":", 1)[1]: {"rows_out": v, "bytes_out": counters.get("lang_bytes:" + k.split(":", 1)[1], 0)}
                    for k, v in sorted(counters.items()) if k.startswith("lang_rows:")},
        "phases": stats,
        "passes_over_data": 2,
    }


def format_report(report: dict[str, Any]) -> str:
    return "; ".join(f"{g} {v['target_share']:.1%}→{v['realised_share']:.1%} ({v['epochs']:.2f} ep)"
                     for g, v in report["groups"].items() if v["target_share"] > 0 or v["realised_share"] > 0)
