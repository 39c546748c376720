"""Per-shard dataset statistics that merge exactly: fixed-bin histograms and counters.

Every stage's shards are described as they are committed (`shards.commit_shard` calls
`shard_stats` on the in-memory kept / rejected tables, so there is no second pass over the data),
the runner merges the shard records into `STAGE/stats.json` with `merge_stats`, and
`pipeline/dashboard.py` draws them.

Why fixed bins: a histogram whose edges depend on the data (numpy's ``bins="auto"``) cannot be
added to another shard's. Every histogram here names one of the bin specs in `BIN_SPECS`; two
histograms merge by adding counts, and the result is identical whatever the sharding or the
order of the merge. Everything else is a counter (``{key: int}``, nested) or a sum, both additive.
Ratios (bytes per token, fill) are never stored: store numerator and denominator, divide when
showing.

A stats dict (per shard, and merged) looks like::

    {"version": 1, "stage": "filter", "stats_shards": 1,
     "bytes": {"kept_text": 123, "rejected_text": 0},           # UTF-8 bytes of the text column
     "hist":  {"text_chars": H, "text_bytes": H, "n_words": H, "dup_cluster_size": H,
               "lang_score_by_lang": {"en": H}, "ppl_by_lang": {"en": H},
               "rejected_text_chars_by_reason": {"filter:lang": H}, ...},
     "counts": {"lang": {"en": 3}, "ppl_bucket_by_lang": {"en": {"head": 2}}, "dump": {...},
                "dump_rejected": {"CC-MAIN-…": {"dedup:exact_dup": 4}},
                "dump_overlap": {"CC-MAIN-…": {"CC-MAIN-… of the original": 4}}, "domain": {...},
                "tld": {...}, "crawl_month": {...}, "dup": {"clusters": 2, "members": 7}},
     "sums":  {"tokens_by_lang": {...}, "tokens_by_domain": {...}, "bytes_by_lang": {...}},
     "meta":  {...}}                                              # not additive: first wins

where ``H`` is ``Histogram.to_json()``. A stage that writes its own commit records (pack,
remix, tokenizer) adds its own entries under the same keys with `Histogram` and passes them to
`commit_shard(..., stats=...)`; see docs/dashboard.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

STATS_VERSION = 1


def _log_edges(decades: int, per_decade: int = 10) -> tuple[float, ...]:
    # [0, 1) then 10 log-spaced bins per decade from 1 to 10**decades; rounded so the JSON is
    # short and the same on every platform.
    return (0.0,) + tuple(float(f"{10 ** (k / per_decade):.6g}") for k in range(decades * per_decade + 1))


#: The bin edges every histogram uses, by name. Values below the first edge count as underflow,
#: at or above the last as overflow. Changing a spec's edges requires a new name.
BIN_SPECS: dict[str, tuple[float, ...]] = {
    "log10x10": _log_edges(7),                                        # 0, 1 .. 1e7: lengths, counts, perplexity
    "unit50": tuple(round(i / 50, 6) for i in range(51)),             # 0 .. 1 in steps of 0.02: scores, ratios
    "int64": tuple(float(i) for i in range(65)) + (float("inf"),),    # 0 .. 64, then >= 64: small integers
}


@dataclass
class Histogram:
    """Counts of values in the fixed bins of `BIN_SPECS[spec]`; merges by adding counts.

    ``counts[i]`` counts values in ``[edges[i], edges[i+1])``; NaN/None are ``missing``. ``sum``,
    ``min`` and ``max`` describe the finite values seen (for the mean and the axis range)."""

    spec: str
    counts: list[int] = field(default_factory=list)
    underflow: int = 0
    overflow: int = 0
    missing: int = 0
    total: float = 0.0
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if self.spec not in BIN_SPECS:
            raise ValueError(f"unknown histogram bin spec {self.spec!r}; known: {sorted(BIN_SPECS)}")
        if not self.counts:
            self.counts = [0] * (len(BIN_SPECS[self.spec]) - 1)

    @property
    def edges(self) -> tuple[float, ...]:
        return BIN_SPECS[self.spec]

    @property
    def n(self) -> int:
        """Values seen, missing ones excluded."""
        return sum(self.counts) + self.underflow + self.overflow

    @classmethod
    def of(cls, values: Any, spec: str) -> "Histogram":
        """Histogram of an Arrow array/column, numpy array or sequence of numbers (None = missing)."""
        h = cls(spec)
        h.add(values)
        return h

    def add(self, values: Any) -> "Histogram":
        if isinstance(values, (pa.Array, pa.ChunkedArray)):
            arr = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
        else:
            arr = np.asarray([np.nan if v is None else v for v in values] if not isinstance(values, np.ndarray)
                             else values, dtype=np.float64)
        if arr.size == 0:
            return self
        nan = np.isnan(arr)
        self.missing += int(nan.sum())
        arr = arr[~nan]
        if arr.size == 0:
            return self
        edges = np.asarray(self.edges)
        idx = np.searchsorted(edges, arr, side="right") - 1
        self.underflow += int((idx < 0).sum())
        self.overflow += int((idx >= len(edges) - 1).sum())
        inside = idx[(idx >= 0) & (idx < len(edges) - 1)]
        binc = np.bincount(inside, minlength=len(edges) - 1)
        self.counts = [a + int(b) for a, b in zip(self.counts, binc)]
        finite = arr[np.isfinite(arr)]
        if finite.size:
            self.total += float(finite.sum())
            lo, hi = float(finite.min()), float(finite.max())
            self.min = lo if self.min is None else min(self.min, lo)
            self.max = hi if self.max is None else max(self.max, hi)
        return self

    def merge(self, other: "Histogram") -> "Histogram":
        """A new histogram holding both; the specs must match."""
        if other.spec != self.spec:
            raise ValueError(f"cannot merge histograms of bin specs {self.spec!r} and {other.spec!r}")
        mins = [m for m in (self.min, other.min) if m is not None]
        maxs = [m for m in (self.max, other.max) if m is not None]
        return Histogram(self.spec, [a + b for a, b in zip(self.counts, other.counts)],
                         self.underflow + other.underflow, self.overflow + other.overflow,
                         self.missing + other.missing, self.total + other.total,
                         min(mins) if mins else None, max(maxs) if maxs else None)

    def quantile(self, q: float) -> float | None:
        """Approximate quantile (the upper edge of the bin where the cumulative count passes q)."""
        n = self.n
        if not n:
            return None
        target, run = q * n, self.underflow
        if run >= target:
            return self.min
        for i, c in enumerate(self.counts):
            run += c
            if run >= target:
                return min(self.edges[i + 1], self.max) if self.max is not None else self.edges[i + 1]
        return self.max

    def to_json(self) -> dict[str, Any]:
        return {"type": "histogram", "spec": self.spec, "edges": list(self.edges), "counts": list(self.counts),
                "underflow": self.underflow, "overflow": self.overflow, "missing": self.missing,
                "sum": self.total, "min": self.min, "max": self.max}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Histogram":
        h = cls(d["spec"], list(d["counts"]), int(d.get("underflow", 0)), int(d.get("overflow", 0)),
                int(d.get("missing", 0)), float(d.get("sum", 0.0)), d.get("min"), d.get("max"))
        if len(h.counts) != len(BIN_SPECS[h.spec]) - 1:
            raise ValueError(f"histogram of spec {h.spec!r} has {len(h.counts)} bins, expected {len(BIN_SPECS[h.spec]) - 1}")
        return h


def is_histogram(obj: Any) -> bool:
    return isinstance(obj, Mapping) and obj.get("type") == "histogram"


# ---- what each column becomes ----------------------------------------------------------------------

#: Numeric document columns and their bins; other numeric columns get a bin by their name
#: (`_spec_for`), so every shard of a stage bins a column the same way whatever its values.
COLUMN_SPECS: dict[str, str] = {
    "n_words": "log10x10",
    "dup_cluster_size": "log10x10",
    "n_tokens": "log10x10",
    "tokens": "log10x10",
}
#: Columns that are identifiers, text or handled on their own: no histogram.
SKIP_COLUMNS = frozenset({"id", "url", "host", "dump", "text", "source", "crawl_date", "lang", "lang_score",
                          "ppl", "ppl_bucket", "dup_cluster", "domain", "reason"})
#: Most distinct keys kept for a string column's counter (a guard against id-like columns).
MAX_KEYS = 2000


def _spec_for(column: str) -> str:
    if column in COLUMN_SPECS:
        return COLUMN_SPECS[column]
    if column.endswith(("_ratio", "_frac", "_fraction", "_score", "_prob")):
        return "unit50"
    return "log10x10"


def _counter(column: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    vc = pc.value_counts(column)
    return {("" if v is None else str(v)): int(c) for v, c in zip(vc.field("values").to_pylist(),
                                                                   vc.field("counts").to_pylist())}


def _grouped(keys: pa.ChunkedArray | pa.Array, values: pa.ChunkedArray | pa.Array, spec: str) -> dict[str, dict]:
    """One histogram of `values` per distinct key."""
    enc = pc.fill_null(keys.cast(pa.string()), "").combine_chunks().dictionary_encode() if isinstance(
        keys, pa.ChunkedArray) else pc.fill_null(keys.cast(pa.string()), "").dictionary_encode()
    codes = enc.indices.to_numpy(zero_copy_only=False)
    vals = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return {key: Histogram.of(vals[codes == i], spec).to_json()
            for i, key in sorted(enumerate(enc.dictionary.to_pylist()), key=lambda kv: kv[1])}


def _grouped_sum(keys: pa.ChunkedArray | pa.Array, values: pa.ChunkedArray | pa.Array) -> dict[str, float]:
    t = pa.table({"k": keys.cast(pa.string()), "v": values.cast(pa.float64())})
    g = t.group_by("k").aggregate([("v", "sum")])
    return {("" if k is None else k): (int(v) if float(v).is_integer() else float(v))
            for k, v in zip(g.column("k").to_pylist(), g.column("v_sum").to_pylist()) if v is not None}


def _tld(hosts: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Last label of each host (`com`, `cn`, …): a bounded key for the domain mix before remix."""
    return pc.replace_substring_regex(pc.utf8_lower(hosts.cast(pa.string())), pattern=r"^.*\.", replacement="")


def _text_lengths(table: pa.Table) -> tuple[pa.Array, pa.Array] | None:
    if "text" not in table.column_names:
        return None
    text = table.column("text").cast(pa.string())
    return pc.utf8_length(text), pc.binary_length(text)


def _add_length_hists(hist: dict[str, Any], table: pa.Table, prefix: str) -> int:
    lengths = _text_lengths(table)
    if lengths is None:
        return 0
    chars, nbytes = lengths
    hist[f"{prefix}text_chars"] = Histogram.of(chars, "log10x10").to_json()
    hist[f"{prefix}text_bytes"] = Histogram.of(nbytes, "log10x10").to_json()
    return int(pc.sum(nbytes).as_py() or 0)


def table_stats(kept: pa.Table) -> dict[str, Any]:
    """Distributions of the kept documents' columns (whatever of the schema is present)."""
    hist: dict[str, Any] = {}
    counts: dict[str, Any] = {}
    sums: dict[str, Any] = {}
    cols = set(kept.column_names)
    text_bytes = _add_length_hists(hist, kept, "")
    if "lang" in cols:
        counts["lang"] = _counter(kept.column("lang"))
        if "lang_score" in cols:
            hist["lang_score_by_lang"] = _grouped(kept.column("lang"), kept.column("lang_score"), "unit50")
        if "ppl" in cols:
            hist["ppl_by_lang"] = _grouped(kept.column("lang"), kept.column("ppl"), "log10x10")
        if "ppl_bucket" in cols:
            pair = pc.binary_join_element_wise(kept.column("lang").cast(pa.string()),
                                               kept.column("ppl_bucket").cast(pa.string()), "\t")
            nested: dict[str, dict[str, int]] = {}
            for key, n in _counter(pair).items():
                lang, _, bucket = key.partition("\t")
                nested.setdefault(lang, {})[bucket] = n
            counts["ppl_bucket_by_lang"] = nested
        if "text" in cols:
            sums["bytes_by_lang"] = _grouped_sum(kept.column("lang"), pc.binary_length(kept.column("text").cast(pa.string())))
    if "dump" in cols:
        counts["dump"] = _counter(kept.column("dump"))
    if "domain" in cols:
        counts["domain"] = _counter(kept.column("domain"))
        if "text" in cols:
            sums["bytes_by_domain"] = _grouped_sum(kept.column("domain"), pc.binary_length(kept.column("text").cast(pa.string())))
    if "host" in cols:
        counts["tld"] = _counter(_tld(kept.column("host")))
    if "crawl_date" in cols and pa.types.is_timestamp(kept.schema.field("crawl_date").type):
        months = pc.strftime(kept.column("crawl_date"), format="%Y-%m")
        counts["crawl_month"] = _counter(months)
    if "dup_cluster_size" in cols:
        size = kept.column("dup_cluster_size")
        hist["dup_cluster_size"] = Histogram.of(size, "log10x10").to_json()
        multi = pc.greater(size, 1)
        sizes = pc.filter(size, multi)
        counts["dup"] = {"clusters": int(pc.sum(multi).as_py() or 0),
                         "members": int(pc.sum(sizes).as_py() or 0)}
        if "dump" in cols:
            counts["dump_clusters"] = _counter(pc.filter(kept.column("dump"), multi))
    tok_col = "n_tokens" if "n_tokens" in cols else ("tokens" if "tokens" in cols and
                                                     pa.types.is_integer(kept.schema.field("tokens").type) else None)
    if tok_col:
        sums["tokens"] = int(pc.sum(kept.column(tok_col)).as_py() or 0)
        for key in ("lang", "domain"):
            if key in cols:
                sums[f"tokens_by_{key}"] = _grouped_sum(kept.column(key), kept.column(tok_col))
    for f in kept.schema:
        if f.name in SKIP_COLUMNS or f.name in hist:
            continue
        if pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_boolean(f.type):
            spec = "unit50" if pa.types.is_boolean(f.type) else _spec_for(f.name)
            hist[f.name] = Histogram.of(kept.column(f.name).cast(pa.float64()), spec).to_json()
    out = {"hist": hist, "counts": _trim(counts), "sums": sums}
    out["bytes"] = {"kept_text": text_bytes} if "text" in cols else {}
    return out


def _trim(counts: dict[str, Any]) -> dict[str, Any]:
    """Drop counters of id-like columns (more than MAX_KEYS keys in one shard)."""
    return {k: v for k, v in counts.items() if not (isinstance(v, dict) and len(v) > MAX_KEYS)}


def shard_stats(stage_name: str, kept: pa.Table, rejected: pa.Table) -> dict[str, Any]:
    """Statistics of one committed shard, from its in-memory kept and rejected tables.

    Computes what the columns present allow (see the module docstring); rejected rows add
    per-reason text lengths when they carry `text` and per-dump removals when they carry `dump`.
    """
    out = {"version": STATS_VERSION, "stage": stage_name, "stats_shards": 1}
    out.update(table_stats(kept))
    cols = set(rejected.column_names)
    if rejected.num_rows and "reason" in cols:
        reasons = rejected.column("reason")
        if "text" in cols:
            text = rejected.column("text").cast(pa.string())
            out["bytes"]["rejected_text"] = int(pc.sum(pc.binary_length(text)).as_py() or 0)
            has_text = pc.is_valid(text)
            if pc.any(has_text).as_py():
                out["hist"]["rejected_text_chars_by_reason"] = _grouped(
                    pc.filter(reasons, has_text), pc.utf8_length(pc.filter(text, has_text)), "log10x10")
        if "dump" in cols:
            pair = pc.binary_join_element_wise(rejected.column("dump").cast(pa.string()), reasons.cast(pa.string()), "\t")
            nested: dict[str, dict[str, int]] = {}
            for key, n in _counter(pair).items():
                dump, _, reason = key.partition("\t")
                nested.setdefault(dump, {})[reason] = n
            out["counts"]["dump_rejected"] = nested
    return out


# ---- merging ---------------------------------------------------------------------------------------

def _merge_two(a: Any, b: Any, path: str) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    if is_histogram(a) and is_histogram(b):
        return Histogram.from_json(a).merge(Histogram.from_json(b)).to_json()
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = dict(a)
        for k, v in b.items():
            out[k] = _merge_two(out.get(k), v, f"{path}.{k}")
        return out
    if isinstance(a, bool) or isinstance(b, bool):
        return a
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a + b
    return a  # strings, lists: descriptive, first wins


def merge_stats(parts: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Merge shard stats (or already merged stats) into one: counters and sums add, histograms
    add bin by bin, ``meta``/``stage``/``version`` are taken from the first. Exact: the result
    does not depend on how the shards were grouped."""
    merged: dict[str, Any] = {}
    for part in parts:
        if not part:
            continue
        if "error" in part:
            merged["errors"] = merged.get("errors", 0) + 1
            continue
        for k, v in part.items():
            if k in ("version", "stage", "meta"):
                merged.setdefault(k, v)
            else:
                merged[k] = _merge_two(merged.get(k), v, k)
    return merged


# ---- reading stats back (dashboard, `winnow stats`) -------------------------------------------------

INDEX_DUMP = "(index)"   # the dump of a document kept by an earlier run (stages/dedup/phases.py)


def cross_dump_curve(dump_kept: Mapping[str, int], dump_rejected: Mapping[str, Mapping[str, int]],
                     reasons: Sequence[str] = ("dedup:exact_dup", "dedup:minhash_dup"),
                     overlap: Mapping[str, Mapping[str, int]] | None = None) -> list[dict[str, Any]]:
    """DeepSeek LLM Table 1 for the run's own dumps: deduplicating the first k dumps (in name
    order, i.e. chronological for CC-MAIN-YYYY-WW) together removes what fraction of them.

    With the dedup stage's dump × dump `overlap` (``{removed doc's dump: {dump of the document it
    duplicates: n}}``, in its stats.json since it is counted as the stage commits): a removed
    document counts from the first k at which both its dump and its original's are in — exact
    whenever an original is not in a later dump than its duplicate (winnow keeps the earliest
    crawl date, so only a crawl date that disagrees with the dump order breaks it; such
    documents are then counted late, a lower bound). Originals kept by an earlier run
    (`INDEX_DUMP`) count from k = 1. Without `overlap` (run directories of older winnows): a
    removed document counts from its own dump on — the same number under the same assumption.
    ``documents`` is the first k dumps' input (kept + removed by `reasons`)."""
    dumps = sorted(set(dump_kept) | set(dump_rejected) | set(overlap or {}))
    rank = {d: i for i, d in enumerate(dumps)}
    # removals by the step k at which they start to count
    starts = [0] * len(dumps)
    if overlap is not None:
        for d, row in overlap.items():
            for o, n in row.items():
                starts[max(rank[d], -1 if o == INDEX_DUMP else rank.get(o, len(dumps) - 1))] += n
    else:
        for d, row in dump_rejected.items():
            starts[rank[d]] += sum(n for r, n in row.items() if r in reasons)
    rows, docs, removed = [], 0, 0
    for k, dump in enumerate(dumps, start=1):
        rem = sum(n for r, n in dump_rejected.get(dump, {}).items() if r in reasons)
        docs += dump_kept.get(dump, 0) + rem
        removed += starts[k - 1]
        rows.append({"dumps": k, "last_dump": dump, "documents": docs, "removed": removed,
                     "rate": (removed / docs) if docs else 0.0})
    return rows


def mean(h: Mapping[str, Any]) -> float | None:
    """Mean of the finite values a histogram saw."""
    hist = Histogram.from_json(h)
    n = hist.n
    return hist.total / n if n else None


def record_stats(stage_dir: str, kept: pa.Table, rejected: pa.Table,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What `commit_shard` stores under a commit record's ``"stats"``: `shard_stats` of the shard
    merged with the stage's own `extra` stats. Never raises: statistics must not fail a shard;
    a failure is recorded as ``{"error": "..."}`` and counted by the merge."""
    import logging
    from pathlib import Path

    try:
        out = shard_stats(Path(stage_dir).name, kept, rejected)
        if extra:
            out = _merge_two(out, dict(extra), "")
            if "meta" in extra:
                out["meta"] = dict(extra["meta"])
        return out
    except Exception as exc:  # noqa: BLE001 - reported in stats.json, the shard itself is fine
        logging.getLogger("winnow").warning("stats of %s failed: %s: %s", stage_dir, type(exc).__name__, exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
