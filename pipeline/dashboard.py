"""`winnow dashboard RUNDIR --out report.html [--serve PORT]` and `winnow stats RUNDIR`.

Reads a run directory (`RUNDIR/<stage>/manifest.json`, `stats.json`, `_progress/`, `data/`,
`rejected/`) and writes one self-contained HTML page: the funnel across stages, a section per
stage drawn from its `stats.json` (see `pipeline/stats.py`), and a browser of sample kept and
rejected documents. Charts are Bokeh, with BokehJS inlined (about 1.3 MB; plotly.js would be
4.8 MB) so the page opens offline and asks nothing of the network.

Safety: every string that comes from crawled data (text, URLs, hosts, reasons, dump names) is
HTML-escaped before it reaches the page, and chart labels travel inside Bokeh's JSON, which
BokehJS draws as canvas text. A Content-Security-Policy allows only the page's own inline scripts
(by their sha256), no network at all: a `<script>` that slipped through would still not run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from winnow.pipeline import shards as shard_io
from winnow.pipeline.stats import Histogram, cross_dump_curve, is_histogram, merge_stats

log = logging.getLogger("winnow")

#: Stages in pipeline order, for sorting when the manifests do not say (unknown ones go last).
KNOWN_ORDER = ("ingest", "dedup", "filter", "decontaminate", "remix", "tokenizer", "pack")
#: Characters of a sample document shown (the rest is cut, and the cut is said).
SAMPLE_CHARS = 1500
#: Most bars in a counter chart (the rest are summed into "(other)").
TOP_BARS = 25


# ---- reading a run directory -------------------------------------------------------------------

@dataclass
class StageRun:
    """What a stage directory holds, finished or not."""

    name: str                   # the directory's name (unique in a run)
    path: Path
    kind: str = ""              # the stage that wrote it (manifest `stage`), e.g. ingest
    manifest: dict[str, Any] | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    committed: int = 0          # shard commit records under _progress/
    problems: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.manifest is not None:
            return "complete"
        return "unfinished" if self.committed else "missing"

    @property
    def counts(self) -> dict[str, Any]:
        """input / kept / rejected / reasons: the manifest's, else what the committed shards say."""
        src = self.manifest if self.manifest is not None else self.stats
        return {k: src.get(k, 0 if k != "reasons" else {}) for k in ("input", "kept", "rejected", "reasons")}


def _read_json_safe(path: Path, problems: list[str]) -> Any:
    try:
        return shard_io.read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        problems.append(f"{path.name} unreadable ({type(exc).__name__}: {exc})")
        return None


def load_stage(path: Path) -> StageRun:
    """One stage directory: its manifest and stats.json, or, for an unfinished stage, the stats
    and counts merged from the shard commit records that exist."""
    st = StageRun(name=path.name, path=path)
    st.manifest = _read_json_safe(path / shard_io.MANIFEST, st.problems)
    stats = _read_json_safe(path / "stats.json", st.problems)
    records = []
    progress = path / shard_io.PROGRESS_DIR
    if progress.is_dir():
        for p in sorted(progress.glob("*.json")):
            rec = _read_json_safe(p, st.problems)
            if isinstance(rec, dict):
                records.append(rec)
    st.committed = len(records)
    src = st.manifest if isinstance(st.manifest, dict) else (stats if isinstance(stats, dict) else {})
    st.kind = str(src.get("stage") or path.name)
    fresh = (st.manifest is not None and isinstance(stats, dict)
             and stats.get("input") == st.manifest.get("input") and stats.get("kept") == st.manifest.get("kept"))
    if fresh:
        st.stats = stats
    else:
        # No stats.json (unfinished run) or one of an older run: merge the commit records.
        st.stats = merge_stats(r.get("stats") for r in records)
        st.stats.update({"input": sum(r.get("input", 0) for r in records),
                         "kept": sum(r.get("kept", 0) for r in records),
                         "rejected": sum(r.get("rejected", 0) for r in records),
                         "reasons": _sum_dicts(r.get("reasons", {}) for r in records)})
        if st.manifest is not None and isinstance(stats, dict) and not fresh:
            st.problems.append("stats.json does not match manifest.json; shown from the shard records")
    if st.manifest is None:
        if st.committed:
            st.problems.append(f"unfinished: no manifest.json, {st.committed} shard(s) committed "
                               f"(a run that failed or is still going; rerun to resume)")
        else:
            st.problems.append("no manifest.json and no committed shard")
    shards_with_stats = st.stats.get("stats_shards", 0)
    total = len(st.manifest["shards"]) if st.manifest else st.committed
    if total and shards_with_stats < total:
        st.problems.append(f"statistics cover {shards_with_stats} of {total} shards (their commit records carry "
                           f"none: shards of an older winnow, or a stage that records counters only)")
    if st.stats.get("errors"):
        st.problems.append(f"statistics failed on {st.stats['errors']} shard(s)")
    return st


def _sum_dicts(dicts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


def discover(run_dir: str | Path) -> tuple[list[StageRun], list[str]]:
    """The stage directories of a run in pipeline order, and notes on what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: run directory not found")
    stages = []
    for d in sorted(p for p in run_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        if any((d / n).exists() for n in (shard_io.MANIFEST, "stats.json", shard_io.PROGRESS_DIR)):
            stages.append(load_stage(d))
    notes: list[str] = []
    if not stages:
        notes.append(f"{run_dir} holds no stage output (no */manifest.json, */stats.json or */_progress)")
    by_path = {s.path.resolve(): s for s in stages}
    # Order: follow the manifests' inputs (a stage after the stage directory it read).
    parent: dict[str, str | None] = {}
    for s in stages:
        parent[s.name] = None
        for inp in (s.manifest or {}).get("inputs", []):
            p = Path(inp)
            up = by_path.get(p.resolve()) if p.exists() else None
            if up is not None:
                parent[s.name] = up.name
            elif not p.exists() and s.manifest and s.kind != "ingest" and not any(ch in inp for ch in "*?:"):
                notes.append(f"{s.name} read {inp}, which is no longer there")

    def depth(name: str, seen: frozenset = frozenset()) -> int:
        up = parent.get(name)
        return 0 if up is None or up in seen else 1 + depth(up, seen | {name})

    def key(s: StageRun) -> tuple:
        known = KNOWN_ORDER.index(s.kind) if s.kind in KNOWN_ORDER else len(KNOWN_ORDER)
        return (depth(s.name), known, s.name)

    stages.sort(key=key)
    present = {s.kind for s in stages}
    absent = [n for n in KNOWN_ORDER if n not in present]
    if stages and absent:
        notes.append("not in this run: " + ", ".join(absent))
    return stages, notes


# ---- samples -------------------------------------------------------------------------------------

def _iter_rows(paths: Sequence[Path], columns: Sequence[str]) -> Iterable[dict[str, Any]]:
    for path in paths:
        try:
            if str(path).endswith(".arrow"):
                table = shard_io.read_shard(path)
                names = [c for c in columns if c in table.column_names]
                batches = table.select(names).to_batches(1024)
            else:
                pf = pq.ParquetFile(path)
                names = [c for c in columns if c in pf.schema_arrow.names]
                batches = pf.iter_batches(batch_size=1024, columns=names)
            for batch in batches:
                yield from batch.to_pylist()
        except (OSError, pa.ArrowException) as exc:
            log.warning("dashboard: cannot read %s: %s", path, exc)


def samples(stage: StageRun, per_reason: int) -> dict[str, list[dict[str, Any]]]:
    """A few kept documents and a few rejected ones per reason: ``{"kept": [...], reason: [...]}``."""
    out: dict[str, list[dict[str, Any]]] = {}
    if per_reason <= 0:
        return out
    cols = ["id", "url", "dump", "lang", "lang_score", "ppl", "ppl_bucket", "dup_cluster_size", "domain", "text"]
    data = sorted((stage.path / shard_io.DATA_DIR).glob("*.parquet")) + sorted((stage.path / shard_io.DATA_DIR).glob("*.arrow"))
    for row in _iter_rows(data, cols):
        out.setdefault("kept", []).append(row)
        if len(out["kept"]) >= per_reason:
            break
    reasons = set(stage.counts["reasons"])
    rejected = sorted((stage.path / shard_io.REJECTED_DIR).glob("*.parquet"))
    for row in _iter_rows(rejected, ["id", "url", "reason", "text"]):
        bucket = out.setdefault(str(row.get("reason")), [])
        if len(bucket) < per_reason:
            bucket.append(row)
        if reasons and all(len(out.get(r, [])) >= per_reason for r in reasons):
            break
    return out


# ---- charts (Bokeh) ------------------------------------------------------------------------------

def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 1e4 or abs(x) < 1e-2:
        return f"{x:.3g}"
    return f"{x:,.4g}"


class Charts:
    """Collects Bokeh figures; `render` returns (bokeh script, {chart id: div})."""

    def __init__(self) -> None:
        self.figures: dict[str, Any] = {}

    def _figure(self, title: str, **kw: Any):
        from bokeh.plotting import figure

        p = figure(title=title, height=kw.pop("height", 260), width=kw.pop("width", 560),
                   toolbar_location="right", tools="pan,wheel_zoom,box_zoom,reset,save", **kw)
        p.title.text_font_size = "11pt"
        return p

    def _add(self, p: Any, note: str | None = None) -> str:
        if note:
            from bokeh.models import Label

            p.add_layout(Label(x=10, y=10, x_units="screen", y_units="screen", text=note,
                               text_color="#a33", text_font_size="10pt"))
        key = f"chart{len(self.figures)}"
        self.figures[key] = p
        return key

    def bars(self, title: str, data: Mapping[str, float], *, horizontal: bool = True, x_label: str = "documents",
             top: int = TOP_BARS, empty_note: str = "no data: empty stage") -> str:
        """A bar per key (largest first), the rest summed into "(other)"."""
        from bokeh.models import ColumnDataSource, HoverTool

        items = sorted(((str(k), float(v)) for k, v in data.items()), key=lambda kv: (-kv[1], kv[0]))
        if len(items) > top:
            rest = sum(v for _, v in items[top - 1:])
            items = items[:top - 1] + [(f"(other {len(items) - top + 1})", rest)]
        labels = [k if k else "(none)" for k, _ in items] or [" "]
        values = [v for _, v in items] or [0]
        src = ColumnDataSource({"label": labels, "value": values, "shown": [_fmt(v) for v in values]})
        if horizontal:
            p = self._figure(title, y_range=list(reversed(labels)), height=max(160, 28 + 22 * len(labels)))
            p.hbar(y="label", right="value", height=0.7, source=src, color="#3b7dd8")
            p.xaxis.axis_label = x_label
        else:
            p = self._figure(title, x_range=labels)
            p.vbar(x="label", top="value", width=0.7, source=src, color="#3b7dd8")
            p.yaxis.axis_label = x_label
            p.xaxis.major_label_orientation = 0.8
        p.add_tools(HoverTool(tooltips=[("", "@label"), (x_label, "@shown")]))
        return self._add(p, None if items else empty_note)

    def grouped_bars(self, title: str, series: Mapping[str, Mapping[str, float]], *, y_label: str = "share") -> str:
        """Bars of several series side by side per key (e.g. domain mix before / after / target)."""
        from bokeh.models import ColumnDataSource, FactorRange, HoverTool
        from bokeh.palettes import Category10

        series = {n: {(k or "(none)"): v for k, v in s.items()} for n, s in series.items()}
        keys = sorted({k for s in series.values() for k in s}) or [" "]
        names = list(series)
        factors = [(k, n) for k in keys for n in names]
        src = ColumnDataSource({"x": factors, "value": [float(series[n].get(k, 0)) for k, n in factors],
                                "series": [n for _, n in factors]})
        p = self._figure(title, x_range=FactorRange(*factors), width=max(560, 40 * len(factors)))
        colors = (Category10[10] * 3)
        from bokeh.transform import factor_cmap

        p.vbar(x="x", top="value", width=0.85, source=src,
               fill_color=factor_cmap("x", palette=colors[:max(3, len(names))], factors=names, start=1, end=2))
        p.xaxis.major_label_orientation = 0.9
        p.yaxis.axis_label = y_label
        p.add_tools(HoverTool(tooltips=[("", "@x"), (y_label, "@value{0.000}")]))
        return self._add(p, None if any(series.values()) else "no data")

    def histograms(self, title: str, hists: Mapping[str, Mapping[str, Any]], *, x_label: str,
                   vlines: Mapping[str, float] | None = None, max_series: int = 6,
                   empty_note: str = "no data: empty stage") -> str:
        """Step lines of fixed-bin histograms (log x axis for log bins), one per series."""
        from bokeh.models import ColumnDataSource, HoverTool, Span
        from bokeh.palettes import Category10

        ordered = sorted(hists.items(), key=lambda kv: -Histogram.from_json(kv[1]).n)[:max_series]
        spec = ordered[0][1]["spec"] if ordered else "log10x10"
        log_x = spec == "log10x10"
        p = self._figure(title, x_axis_type="log" if log_x else "linear")
        total_n = 0
        for (name, hj), color in zip(ordered, Category10[10]):
            h = Histogram.from_json(hj)
            total_n += h.n
            edges = list(h.edges)
            if math.isinf(edges[-1]):
                edges[-1] = edges[-2] + 1
            lo = [max(e, 0.5) if log_x else e for e in edges[:-1]]
            hi = [max(e, 1.0) if log_x else e for e in edges[1:]]
            nz = [i for i, c in enumerate(h.counts) if c]
            if not nz:
                continue
            a, b = nz[0], nz[-1] + 1
            src = ColumnDataSource({"left": lo[a:b], "right": hi[a:b], "count": h.counts[a:b],
                                    "range": [f"[{_fmt(edges[i])}, {_fmt(edges[i + 1])})" for i in range(a, b)],
                                    "series": [name] * (b - a)})
            p.quad(left="left", right="right", top="count", bottom=0, source=src, fill_alpha=0.35,
                   line_color=color, fill_color=color, legend_label=f"{name or '(none)'} (n={h.n:,})")
        for label, x in (vlines or {}).items():
            if x and x > 0:
                p.add_layout(Span(location=x, dimension="height", line_color="#c00", line_dash="dashed", line_width=2))
                from bokeh.models import Label

                p.add_layout(Label(x=x, y=5, y_units="screen", text=label, text_color="#c00", text_font_size="9pt"))
        p.xaxis.axis_label = x_label
        p.yaxis.axis_label = "documents"
        if p.legend:
            p.legend.click_policy = "hide"
            p.legend.label_text_font_size = "8pt"
        p.add_tools(HoverTool(tooltips=[("", "@series"), ("bin", "@range"), ("documents", "@count")]))
        if not total_n:
            p.quad(left=[1], right=[1], top=[0], bottom=[0])
        return self._add(p, None if total_n else empty_note)

    def curve(self, title: str, xs: Sequence[float], ys: Sequence[float], *, x_label: str, y_label: str,
              labels: Sequence[str] = ()) -> str:
        from bokeh.models import ColumnDataSource, HoverTool

        p = self._figure(title)
        src = ColumnDataSource({"x": list(xs), "y": list(ys), "label": list(labels) or [""] * len(xs),
                                "shown": [f"{y:.1%}" for y in ys]})
        p.line("x", "y", source=src, line_width=2, color="#3b7dd8")
        p.scatter("x", "y", source=src, size=7, color="#3b7dd8")
        p.xaxis.axis_label = x_label
        p.yaxis.axis_label = y_label
        p.add_tools(HoverTool(tooltips=[("dumps", "@x"), ("up to", "@label"), (y_label, "@shown")]))
        return self._add(p, None if xs else "no data")

    def heatmap(self, title: str, matrix: Mapping[str, Mapping[str, float]], *, x_label: str, y_label: str) -> str:
        """A cell per (row key, column key) with its count written in it (e.g. dump × dump)."""
        from bokeh.models import ColumnDataSource, HoverTool, LinearColorMapper
        from bokeh.palettes import Blues256

        rows = sorted(matrix)
        cols = sorted({c for r in matrix.values() for c in r})
        cells = [(r, c, float(matrix[r].get(c, 0))) for r in rows for c in cols]
        top = max((v for *_k, v in cells), default=0.0) or 1.0
        src = ColumnDataSource({"y": [r or "(none)" for r, _, _ in cells], "x": [c or "(none)" for _, c, _ in cells],
                                "value": [v for *_k, v in cells], "shown": [_fmt(v) for *_k, v in cells],
                                "ink": ["#fff" if v > top / 2 else "#222" for *_k, v in cells]})
        xs = [c or "(none)" for c in cols] or [" "]
        ys = list(reversed([r or "(none)" for r in rows])) or [" "]
        p = self._figure(title, x_range=xs, y_range=ys, width=max(420, 150 + 110 * len(xs)),
                         height=max(220, 90 + 40 * len(ys)))
        mapper = LinearColorMapper(palette=list(reversed(Blues256)), low=0, high=top)
        p.rect(x="x", y="y", width=1, height=1, source=src, fill_color={"field": "value", "transform": mapper},
               line_color="#ccc")
        p.text(x="x", y="y", text="shown", source=src, text_align="center", text_baseline="middle",
               text_color="ink", text_font_size="10pt")
        p.xaxis.axis_label = x_label
        p.yaxis.axis_label = y_label
        p.xaxis.major_label_orientation = 0.6
        p.add_tools(HoverTool(tooltips=[("removed from", "@y"), ("duplicates of", "@x"), ("documents", "@shown")]))
        return self._add(p, None if cells else "no data")

    def render(self) -> tuple[str, dict[str, str]]:
        from bokeh.embed import components

        if not self.figures:
            return "", {}
        script, divs = components(self.figures)
        return script, divs


# ---- sections ------------------------------------------------------------------------------------

def _cutoffs_for(stage: StageRun) -> dict[str, tuple[float, float]]:
    """Head / middle perplexity cutoffs of a filter stage, from the CSV its config names."""
    cfg = ((stage.manifest or {}).get("config") or {}).get("perplexity") or {}
    path = cfg.get("cutoffs")
    if not path:
        return {}
    candidates = [Path(path)] + [Path(base) / path for base in ((stage.manifest or {}).get("cwd"),) if base]
    for p in candidates:
        if p.is_file():
            try:
                from winnow.filters.perplexity import Cutoffs

                return dict(Cutoffs.from_csv(p, int(cfg.get("head_percentile", 30)),
                                             int(cfg.get("tail_percentile", 60))).thresholds)
            except (ValueError, OSError) as exc:
                stage.problems.append(f"perplexity cutoffs {p}: {exc}")
                return {}
    stage.problems.append(f"perplexity cutoffs {path} not found from here; cutoff lines not drawn")
    return {}


def dump_rejections_by_join(stage: StageRun) -> dict[str, dict[str, int]]:
    """Per dump, the stage's rejections by reason, for stages whose rejected rows carry no `dump`
    (dedup today): their ids joined with the `id, dump` columns of the stage's inputs. Reads two
    columns of the inputs at dashboard time; empty when the inputs are gone."""
    id_dump: dict[str, str] = {}
    for inp in (stage.manifest or {}).get("inputs", []):
        try:
            paths = shard_io.input_shards(inp)
        except (shard_io.NotAStageOutput, OSError, ValueError, KeyError):
            return {}
        for row in _iter_rows(paths, ["id", "dump"]):
            if row.get("id") is not None and "dump" in row:
                id_dump[row["id"]] = row["dump"] or ""
    if not id_dump:
        return {}
    out: dict[str, dict[str, int]] = {}
    for row in _iter_rows(sorted((stage.path / shard_io.REJECTED_DIR).glob("*.parquet")), ["id", "reason"]):
        dump = id_dump.get(row.get("id"))
        if dump is None:
            continue
        d = out.setdefault(dump, {})
        d[row["reason"]] = d.get(row["reason"], 0) + 1
    return out


def _remix_charts(stage: StageRun, report: Mapping[str, Any], charts: Charts, ids: list[str], notes: list[str]) -> None:
    """The remix report (manifest `remix`, written as the stage ran): each group's share of the
    input, its target and what was realised, and the epochs taken of it."""
    groups = report.get("groups") or {}
    units = report.get("units", "bytes")
    total_in = float(sum(g.get("bytes_in", 0) for g in groups.values())) or 1.0
    series = {"input (bytes)": {k: g.get("bytes_in", 0) / total_in for k, g in groups.items()},
              "target": {k: g.get("target_share", 0.0) for k, g in groups.items()},
              f"realised ({units})": {k: g.get("realised_share", 0.0) for k, g in groups.items()}}
    ids.append(charts.grouped_bars(f"{stage.name}: mixture — input share, target and realised share per group", series))
    caps = ", ".join(sorted({format(g.get("max_epochs", 0), "g") for g in groups.values()}))
    ids.append(charts.bars(f"{stage.name}: epochs per group (copies of its input; max_epochs {caps})",
                           {k: g.get("epochs", 0.0) for k, g in groups.items() if g.get("rows_out")}, x_label="epochs"))
    repeated = sum(g.get("repeated", 0) for g in groups.values())
    short = {k: g["shortfall_units"] for k, g in groups.items() if g.get("shortfall_units", 0) >= 1}
    notes.append(f"{report.get('mode', 'mixture')}, seed {report.get('seed')}: {report.get('output_units', 0):,.0f} of a "
                 f"{report.get('budget_units', 0):,.0f}-{units} budget; {repeated:,} repeated rows (extra copies)"
                 + (f"; shortfall ({report.get('policy')}): " + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(short.items()))
                    if short else ""))


def _tokenizer_charts(stage: StageRun, charts: Charts, ids: list[str], notes: list[str]) -> None:
    """The tokenizer's training sample per group and its vocabulary (tokenizer_manifest.json)."""
    problems: list[str] = []
    tm = _read_json_safe(stage.path / "tokenizer_manifest.json", problems) or {}
    stage.problems.extend(problems)
    sample = tm.get("sample") or {}
    groups = sample.get("groups") or {}
    ids.append(charts.bars(f"{stage.name}: training sample bytes per group", {k: g.get("bytes", 0) for k, g in groups.items()},
                           x_label="bytes", empty_note="no tokenizer_manifest.json"))
    if tm:
        notes.append(f"vocabulary {tm.get('vocab_size', 0):,} ({tm.get('learned_vocab_size', 0):,} learned); trained on "
                     f"{sample.get('docs', 0):,} documents, {sample.get('bytes', 0):,} bytes")
    notes.append("bytes per token per language: the tokenizer stage records none; the pack section shows them "
                 "for the packed documents")


def _pack_input_stats(stage: StageRun) -> dict[str, Any] | None:
    """stats.json of the stage directory pack read (its manifest `inputs`), when there is one."""
    inputs = (stage.manifest or {}).get("inputs") or []
    if len(inputs) != 1:
        return None
    st = _read_json_safe(Path(inputs[0]) / "stats.json", [])
    return st if isinstance(st, dict) else None


def _pack_charts(stage: StageRun, charts: Charts, ids: list[str], notes: list[str]) -> None:
    """Window fill, split documents and bytes per token per language of a pack stage, from its
    counters (and the text bytes its input stage counted)."""
    c = (stage.manifest or stage.stats).get("counters") or {}
    cfg = (stage.manifest or {}).get("config") or {}
    seq_len = cfg.get("seq_len")
    windows = c.get("windows", 0)
    if windows and seq_len:
        slots = windows * (int(seq_len) + 1)
        notes.append(f"{windows:,} windows of {int(seq_len) + 1:,} tokens ({cfg.get('packing', '?')}): fill "
                     f"{c.get('tokens_in_windows', 0) / slots:.1%}, padding {c.get('pad_tokens', 0) / slots:.1%}; "
                     f"{c.get('docs_split', 0):,} of {c.get('docs', 0):,} documents split across windows, "
                     f"{c.get('docs_longer_than_window', 0):,} longer than one window; "
                     f"{c.get('tokens_in_windows', 0):,} of {c.get('tokens', 0):,} tokens in windows")
    ids.append(charts.bars(f"{stage.name}: window slots (tokens)", {"document tokens": c.get("tokens_in_windows", 0),
                                                                   "padding": c.get("pad_tokens", 0)}, x_label="tokens"))
    ids.append(charts.bars(f"{stage.name}: documents whole or split across windows",
                           {"whole": c.get("docs", 0) - c.get("docs_split", 0), "split": c.get("docs_split", 0),
                            "longer than a window": c.get("docs_longer_than_window", 0)}))
    # bytes per token per language: the input stage's text bytes over the tokens packed, BOS/EOS
    # taken out; only when pack took every row its input stage handed on
    tokens = {k.split(":", 1)[1]: v for k, v in c.items() if k.startswith("tokens_lang:")}
    up = _pack_input_stats(stage)
    specials = int(bool(cfg.get("bos"))) + int(bool(cfg.get("eos")))
    handed = (up or {}).get("kept", -1) + ((up or {}).get("counters") or {}).get("repeated", 0)
    if tokens and up and stage.counts["rejected"] == 0 and stage.counts["input"] == handed:
        nbytes = (up.get("sums") or {}).get("bytes_by_lang") or {}
        rows = (up.get("counts") or {}).get("lang") or {}
        ratio = {lang: nbytes[lang] / (n - specials * rows.get(lang, 0)) for lang, n in tokens.items()
                 if lang in nbytes and n - specials * rows.get(lang, 0) > 0}
        if ratio:
            ids.append(charts.bars(f"{stage.name}: UTF-8 bytes per token by language (BOS/EOS excluded)", ratio,
                                   x_label="bytes/token"))
    elif tokens:
        notes.append("bytes per token per language not shown: the input stage's stats.json is missing or pack "
                     "did not take every row it handed on")


def stage_charts(stage: StageRun, charts: Charts) -> tuple[list[str], list[str]]:
    """The chart ids of one stage's section and notes to print above them."""
    s = stage.stats
    hist = s.get("hist", {}) or {}
    counts = s.get("counts", {}) or {}
    sums = s.get("sums", {}) or {}
    meta = s.get("meta", {}) or {}
    kept = stage.counts["kept"]
    empty = "no documents in this stage" if not kept else "no data"
    ids: list[str] = []
    notes: list[str] = []
    used_hist: set[str] = set()
    used_counts: set[str] = set()
    reasons = stage.counts["reasons"]
    ids.append(charts.bars(f"{stage.name}: rejections by reason", reasons,
                           empty_note="nothing rejected" if stage.counts["input"] else "no documents in this stage"))
    remix_report = (stage.manifest or {}).get("remix") if stage.kind == "remix" else None
    if remix_report:
        _remix_charts(stage, remix_report, charts, ids, notes)
        used_counts |= {"domain"}
    if stage.kind == "tokenizer":
        _tokenizer_charts(stage, charts, ids, notes)
    if stage.kind == "pack":
        _pack_charts(stage, charts, ids, notes)
    if "text_chars" in hist or (not hist and stage.kind not in ("tokenizer", "pack")):
        ids.append(charts.histograms(f"{stage.name}: text length of kept documents",
                                     {"chars": hist["text_chars"]} if "text_chars" in hist else {},
                                     x_label="characters (log)", empty_note=empty))
        used_hist |= {"text_chars", "text_bytes"}
    if "lang" in counts:
        ids.append(charts.bars(f"{stage.name}: language of kept documents", counts["lang"]))
        used_counts.add("lang")
    if "lang_score_by_lang" in hist:
        ids.append(charts.histograms(f"{stage.name}: language score per language", hist["lang_score_by_lang"],
                                     x_label="fastText score"))
        used_hist.add("lang_score_by_lang")
    if "ppl_by_lang" in hist:
        cut = _cutoffs_for(stage)
        for lang, h in sorted(hist["ppl_by_lang"].items(), key=lambda kv: -Histogram.from_json(kv[1]).n)[:4]:
            if not Histogram.from_json(h).n:
                continue
            lines = {}
            if lang in cut:
                lines = {f"head < {_fmt(cut[lang][0])}": cut[lang][0], f"middle < {_fmt(cut[lang][1])}": cut[lang][1]}
            ids.append(charts.histograms(f"{stage.name}: perplexity ({lang}) with head/middle cutoffs",
                                         {lang: h}, x_label="KenLM perplexity (log)", vlines=lines))
        used_hist.add("ppl_by_lang")
    if "ppl_bucket_by_lang" in counts:
        ids.append(charts.bars(f"{stage.name}: perplexity bucket of kept documents",
                               {f"{lang}/{b}": n for lang, d in counts["ppl_bucket_by_lang"].items() for b, n in d.items()}))
        used_counts.add("ppl_bucket_by_lang")
    if "n_words" in hist:
        ids.append(charts.histograms(f"{stage.name}: words per kept document", {"n_words": hist["n_words"]},
                                     x_label="words (log)"))
        used_hist.add("n_words")
    is_dedup = stage.kind == "dedup" or any(r.startswith("dedup:") for r in reasons)
    if not is_dedup:
        used_hist.add("dup_cluster_size")   # carried down from dedup: drawn in dedup's section
        used_counts |= {"dup", "dump_clusters"}
    if "dup_cluster_size" in hist and is_dedup:
        ids.append(charts.histograms(f"{stage.name}: duplicate cluster size (one per kept document)",
                                     {"cluster size": hist["dup_cluster_size"]}, x_label="documents in the cluster (log)"))
        used_hist.add("dup_cluster_size")
        dup = counts.get("dup", {})
        notes.append(f"{dup.get('clusters', 0):,} kept documents had duplicates; their clusters hold "
                     f"{dup.get('members', 0):,} documents")
        used_counts.add("dup")
    dump_rej = counts.get("dump_rejected")
    overlap = counts.get("dump_overlap")
    if dump_rej is None and any(r.startswith("dedup:") for r in reasons):
        # a dedup stage of an older winnow (no per-dump counts in stats.json): join its rejected
        # ids with its inputs' dumps, here, once
        dump_rej = dump_rejections_by_join(stage)
        if dump_rej:
            notes.append("removals per dump joined from the inputs at display time (stats.json of an older "
                         "winnow has none); the dump × dump overlap is not available")
    if "dump" in counts and (dump_rej or len(counts["dump"]) > 1):
        series = {"kept": counts["dump"]}
        if dump_rej:
            series["removed"] = {d: sum(v.values()) for d, v in dump_rej.items()}
        if len(series) == 1:
            ids.append(charts.bars(f"{stage.name}: kept documents per dump",
                                   {(k or "(none)"): v for k, v in sorted(counts["dump"].items())}, horizontal=False, top=60))
        else:
            ids.append(charts.grouped_bars(f"{stage.name}: documents kept and removed per dump", series,
                                           y_label="documents"))
        used_counts |= {"dump", "dump_rejected", "dump_overlap"}
        if overlap:
            ids.append(charts.heatmap(f"{stage.name}: dump × dump duplicates", overlap,
                                      x_label="dump of the document it duplicates", y_label="dump of the removed document"))
        if dump_rej and any(r.startswith("dedup:") for r in reasons):
            rows = cross_dump_curve(counts["dump"], dump_rej, overlap=overlap)
            ids.append(charts.curve(f"{stage.name}: removed vs dumps deduplicated together (DeepSeek Table 1)",
                                    [r["dumps"] for r in rows], [r["rate"] for r in rows],
                                    x_label="dumps (in order)", y_label="removed", labels=[r["last_dump"] for r in rows]))
    domain_series = {k: v for k, v in (("before", counts.get("domain_before")), ("after", counts.get("domain")),
                                       ("target", meta.get("domain_target"))) if v}
    if domain_series and not remix_report:   # remix: the mixture chart above, in bytes
        shares = {}
        for name, d in domain_series.items():
            tot = float(sum(d.values())) or 1.0
            shares[name] = {k: v / tot for k, v in d.items()}
        ids.append(charts.grouped_bars(f"{stage.name}: domain mix (share of documents)", shares))
        used_counts |= {"domain", "domain_before"}
    for key in sorted(k for k in sums if k.startswith("tokens_by_")):
        ids.append(charts.bars(f"{stage.name}: tokens by {key[len('tokens_by_'):]}", sums[key], x_label="tokens"))
        byte_key = "bytes_by_" + key[len("tokens_by_"):]
        if byte_key in sums:
            ratio = {k: sums[byte_key].get(k, 0) / v for k, v in sums[key].items() if v}
            ids.append(charts.bars(f"{stage.name}: bytes per token by {key[len('tokens_by_'):]}", ratio,
                                   x_label="bytes/token"))
    if "tld" in counts:
        ids.append(charts.bars(f"{stage.name}: top-level domain of kept documents", counts["tld"]))
        used_counts.add("tld")
    # Everything else a stage recorded (pack fill, remix repeats, unknown stages): drawn generically.
    for key in sorted(set(hist) - used_hist):
        v = hist[key]
        if is_histogram(v):
            ids.append(charts.histograms(f"{stage.name}: {key}", {key: v}, x_label=key))
        elif isinstance(v, Mapping) and v and all(is_histogram(x) for x in v.values()):
            ids.append(charts.histograms(f"{stage.name}: {key}", v, x_label=key))
    for key in sorted(set(counts) - used_counts - {"crawl_month", "dump_clusters"}):
        v = counts[key]
        if isinstance(v, Mapping) and v and all(isinstance(x, (int, float)) for x in v.values()):
            ids.append(charts.bars(f"{stage.name}: {key}", v))
    # Manifest counters named "group:key" (pack's tokens_lang:en, …): one bar chart per group.
    groups: dict[str, dict[str, float]] = {}
    for name, value in ((stage.manifest or stage.stats).get("counters") or {}).items():
        group, sep, sub = str(name).partition(":")
        if sep and isinstance(value, (int, float)):
            groups.setdefault(group, {})[sub] = value
    for group, values in sorted(groups.items()):
        ids.append(charts.bars(f"{stage.name}: {group} (counters)", values, x_label=group))
    if "crawl_month" in counts and len(counts["crawl_month"]) > 1:
        ids.append(charts.bars(f"{stage.name}: crawl month", dict(sorted(counts["crawl_month"].items())),
                               horizontal=False, top=60))
    return ids, notes


# ---- the page ------------------------------------------------------------------------------------

def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _sample_html(rows: list[dict[str, Any]], reason: str) -> str:
    parts = []
    for row in rows:
        meta = " · ".join(f"{k}={_e(row[k] if not isinstance(row[k], float) else f'{row[k]:.3g}')}"
                          for k in ("dump", "lang", "lang_score", "ppl", "ppl_bucket", "dup_cluster_size", "domain")
                          if row.get(k) not in (None, ""))
        text = row.get("text")
        if text is None:
            body = '<p class="none">(text not kept for rejected rows; set keep_rejected_text: true)</p>'
        else:
            cut = f"\n… ({len(text) - SAMPLE_CHARS:,} more characters)" if len(text) > SAMPLE_CHARS else ""
            body = f'<pre class="doc">{_e(text[:SAMPLE_CHARS] + cut)}</pre>'
        parts.append(f'<div class="sample" data-reason="{_e(reason)}"><div class="meta"><b>{_e(reason)}</b> · '
                     f'<span class="url">{_e(row.get("url"))}</span> · id {_e(row.get("id"))}'
                     f'{" · " + meta if meta else ""}</div>{body}</div>')
    return "\n".join(parts)


def build_dashboard(run_dir: str | Path, out: str | Path | None = None, *, samples_per_reason: int = 3) -> str:
    """Write (when `out` is given) and return the dashboard HTML of a run directory."""
    from bokeh.resources import Resources

    run_dir = Path(run_dir)
    stages, notes = discover(run_dir)
    charts = Charts()
    # Funnel: the manifests' numbers (an unfinished stage: what its committed shards say).
    funnel_rows = []
    for st in stages:
        c = st.counts
        funnel_rows.append((st, c["input"], c["kept"], c["rejected"]))
    funnel_id = charts.bars("documents kept after each stage", {f"{i + 1}. {st.name}": kept for i, (st, _, kept, _) in
                                                                 enumerate(funnel_rows)},
                            empty_note="no stage output in this run", top=50)
    # bars() sorts by value; the funnel keeps pipeline order.
    fig = charts.figures[funnel_id]
    fig.y_range.factors = list(reversed([f"{i + 1}. {st.name}" for i, (st, *_rest) in enumerate(funnel_rows)])) or [" "]
    sections = []
    for st in stages:
        chart_ids, st_notes = stage_charts(st, charts)
        sections.append((st, chart_ids, st_notes, samples(st, samples_per_reason)))
    script, divs = charts.render()
    bokeh_js = Resources(mode="inline", components=["bokeh"]).render_js() if divs else ""

    body = [f"<h1>winnow run: {_e(run_dir.resolve())}</h1>"]
    for n in notes:
        body.append(f'<p class="note">{_e(n)}</p>')
    body.append('<section id="funnel" class="stage"><h2>Funnel</h2><table class="funnel"><tr><th>stage</th>'
                '<th>status</th><th>input</th><th>kept</th><th>rejected</th><th>kept of input</th>'
                '<th title="kept + repeated copies (remix)">rows handed on</th></tr>')
    for st, inp, kept, rej in funnel_rows:
        share = f"{kept / inp:.1%}" if inp else "–"
        repeated = ((st.manifest or st.stats).get("counters") or {}).get("repeated", 0)
        repeated = repeated if isinstance(repeated, int) else 0
        body.append(f'<tr data-stage="{_e(st.name)}"><td>{_e(st.name)}</td><td class="status-{_e(st.status)}">'
                    f'{_e(st.status)}</td><td class="input">{inp:,}</td><td class="kept">{kept:,}</td>'
                    f'<td class="rejected">{rej:,}</td><td>{share}</td><td class="out">{kept + repeated:,}'
                    f'{f" (+{repeated:,} repeats)" if repeated else ""}</td></tr>')
    body.append("</table>")
    body.append(f'<div class="chart">{divs.get(funnel_id, "")}</div></section>')
    for st, chart_ids, st_notes, smp in sections:
        c = st.counts
        body.append(f'<section class="stage" id="stage-{_e(st.name)}" data-stage="{_e(st.name)}">'
                    f'<h2>{_e(st.name)}{f" ({_e(st.kind)})" if st.kind != st.name else ""} '
                    f'<span class="status-{_e(st.status)}">{_e(st.status)}</span></h2>')
        body.append(f'<p>input {c["input"]:,} · kept {c["kept"]:,} · rejected {c["rejected"]:,}'
                    + (f' · {st.stats["seconds"]:,.1f} s' if isinstance(st.stats.get("seconds"), (int, float)) else "")
                    + (f' · text {st.stats["bytes"]["kept_text"] / 1e6:,.2f} MB kept'
                       if isinstance(st.stats.get("bytes"), dict) and "kept_text" in st.stats["bytes"] else "") + "</p>")
        for n in st.problems:
            body.append(f'<p class="note">{_e(n)}</p>')
        for n in st_notes:
            body.append(f'<p class="info">{_e(n)}</p>')
        body.append('<div class="charts">' + "".join(f'<div class="chart">{divs[i]}</div>' for i in chart_ids) + "</div>")
        counters = (st.manifest or st.stats).get("counters") or {}
        if counters:
            body.append("<details class=\"counters\"><summary>counters</summary><table class=\"funnel\">"
                        + "".join(f"<tr><td>{_e(k)}</td><td>{_e(f'{v:,}' if isinstance(v, (int, float)) else v)}</td></tr>"
                                  for k, v in sorted(counters.items())) + "</table></details>")
        if smp:
            body.append(f"<details class=\"samples\"><summary>sample documents ({sum(len(v) for v in smp.values())})"
                        "</summary>")
            for reason in ["kept"] + sorted(k for k in smp if k != "kept"):
                if reason in smp:
                    body.append(f"<h3>{_e(reason)} ({len(smp[reason])} shown)</h3>{_sample_html(smp[reason], reason)}")
            body.append("</details>")
        body.append("</section>")
    scripts = [s for s in _script_bodies(bokeh_js) + _script_bodies(script)]
    csp = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; connect-src 'none'; "
           "script-src " + " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                                    for s in scripts))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>winnow dashboard: {_e(run_dir.name)}</title>
<style>{_CSS}</style>
{bokeh_js}
</head><body>
{chr(10).join(body)}
{script}
</body></html>
"""
    if out is not None:
        with shard_io.atomic_path(out) as tmp:
            Path(tmp).write_text(page, encoding="utf-8")
    return page


def _script_bodies(html_text: str) -> list[str]:
    """The text of each inline <script> element (for the CSP hashes)."""
    import re

    return [m.group(1) for m in re.finditer(r"<script[^>]*>(.*?)</script>", html_text, flags=re.S)]


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.3em} h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em}
section.stage{margin-bottom:2em}
.charts{display:flex;flex-wrap:wrap;gap:12px}
.chart{min-height:160px}
.note{color:#a33;margin:.2em 0} .info{color:#555;margin:.2em 0}
table.funnel{border-collapse:collapse;margin:.5em 0} table.funnel td,table.funnel th{border:1px solid #ccc;padding:3px 8px;text-align:right}
table.funnel td:first-child{text-align:left}
.status-complete{color:#276} .status-unfinished,.status-missing{color:#a33;font-weight:bold}
.sample{border:1px solid #ddd;margin:.4em 0;padding:.3em .5em;background:#fafafa}
.sample .meta{font-size:.85em;color:#555;word-break:break-all}
pre.doc{white-space:pre-wrap;word-break:break-word;max-height:18em;overflow:auto;font-size:.85em;margin:.3em 0}
.none{color:#888;font-style:italic}
"""


# ---- serving and the terminal table ---------------------------------------------------------------

def make_server(path: str | Path, port: int) -> Any:
    """An HTTP server for the one file at http://127.0.0.1:PORT/ (loopback only; port 0 = any free)."""
    import http.server

    data = Path(path).read_bytes()
    name = Path(path).name

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path not in ("/", "/" + name, "/index.html"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt: str, *args: Any) -> None:
            log.info("dashboard: " + fmt, *args)

    return http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)


def serve(path: str | Path, port: int) -> None:
    """Serve the page on 127.0.0.1:PORT until interrupted."""
    with make_server(path, port) as httpd:
        print(f"serving {path} at http://127.0.0.1:{httpd.server_address[1]}/ (Ctrl-C stops)", flush=True)
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass


def stats_text(run_dir: str | Path, width: int | None = None) -> str:
    """`winnow stats RUNDIR`: the dashboard's numbers as terminal tables (rich)."""
    import io

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table as RichTable

    class Table(RichTable):
        """Cells hold crawled strings (hosts, dumps, reasons): never read them as rich markup."""

        def add_row(self, *cells: Any, **kw: Any) -> None:
            super().add_row(*(escape(str(c)) for c in cells), **kw)

    stages, notes = discover(run_dir)
    import shutil

    width = width or max(100, shutil.get_terminal_size((120, 40)).columns)
    console = Console(file=io.StringIO(), record=True, width=width, force_terminal=False, color_system=None)
    funnel = Table(title=escape(f"winnow run {Path(run_dir)}"), title_justify="left")
    for col in ("stage", "status", "input", "kept", "rejected", "kept %", "top reasons"):
        funnel.add_column(col, justify="left" if col in ("stage", "status", "top reasons") else "right")
    for st in stages:
        c = st.counts
        top = sorted(c["reasons"].items(), key=lambda kv: (-kv[1], kv[0]))[:4]
        funnel.add_row(st.name, st.status, f"{c['input']:,}", f"{c['kept']:,}", f"{c['rejected']:,}",
                       f"{c['kept'] / c['input']:.1%}" if c["input"] else "–", ", ".join(f"{k}={v:,}" for k, v in top))
    console.print(funnel)
    for n in notes:
        console.print(escape(f"note: {n}"))
    for st in stages:
        t = Table(title=escape(st.name), title_justify="left")
        t.add_column("statistic")
        t.add_column("value", justify="left")
        for n in st.problems:
            t.add_row("note", n)
        hist = st.stats.get("hist", {}) or {}
        counts = st.stats.get("counts", {}) or {}
        flat = {k: v for k, v in hist.items() if is_histogram(v)}
        for key, h in sorted(flat.items()):
            H = Histogram.from_json(h)
            if H.n:
                t.add_row(key, f"n={H.n:,}  mean={_fmt(H.total / H.n)}  p10≈{_fmt(H.quantile(0.1) or 0)}  "
                               f"p50≈{_fmt(H.quantile(0.5) or 0)}  p90≈{_fmt(H.quantile(0.9) or 0)}")
        for key, group in sorted((k, v) for k, v in hist.items() if not is_histogram(v) and isinstance(v, Mapping)):
            for sub, h in sorted(group.items(), key=lambda kv: -Histogram.from_json(kv[1]).n)[:5]:
                H = Histogram.from_json(h)
                if H.n:
                    t.add_row(f"{key}[{sub}]", f"n={H.n:,}  p50≈{_fmt(H.quantile(0.5) or 0)}  "
                                               f"p90≈{_fmt(H.quantile(0.9) or 0)}")
        for key, v in sorted(counts.items()):
            if isinstance(v, Mapping) and v and all(isinstance(x, (int, float)) for x in v.values()):
                top = sorted(v.items(), key=lambda kv: (-kv[1], kv[0]))[:8]
                t.add_row(key, ", ".join(f"{k or '(none)'}={n:,}" for k, n in top) + (" …" if len(v) > 8 else ""))
        if any(r.startswith("dedup:") for r in st.counts["reasons"]) and "dump" in counts:
            dump_rej = counts.get("dump_rejected") or dump_rejections_by_join(st)
            overlap = counts.get("dump_overlap")
            if dump_rej:
                curve = cross_dump_curve(counts["dump"], dump_rej, overlap=overlap)
                t.add_row("removed by dumps together", ", ".join(f"{r['dumps']}: {r['rate']:.1%}" for r in curve))
            for dump, row in sorted((overlap or {}).items()):
                t.add_row(f"dump_overlap[{dump or '(none)'}]",
                          "duplicates of " + ", ".join(f"{o or '(none)'}={n:,}" for o, n in sorted(row.items())))
        for key, v in sorted((st.stats.get("sums") or {}).items()):
            if isinstance(v, Mapping):
                top = sorted(v.items(), key=lambda kv: -kv[1])[:8]
                t.add_row(key, ", ".join(f"{k or '(none)'}={n:,}" for k, n in top))
            else:
                t.add_row(key, f"{v:,}")
        console.print(t)
    return console.export_text()


# ---- CLI ------------------------------------------------------------------------------------------

def add_commands(sub: Any) -> None:
    """`winnow dashboard` and `winnow stats` (called from `pipeline/cli.py`'s build_parser)."""
    p = sub.add_parser("dashboard", help="write a run's statistics as one self-contained HTML page",
                       description="Write RUNDIR's funnel, per-stage statistics and sample documents as one "
                                   "HTML file that opens offline.")
    p.add_argument("run_dir", metavar="RUNDIR", help="a run's output root (the `output` of `winnow run`)")
    p.add_argument("--out", default=None, metavar="HTML", help="where to write the page (default RUNDIR/report.html)")
    p.add_argument("--samples", type=int, default=3, metavar="N", help="sample documents per reason (default 3)")
    p.add_argument("--serve", type=int, default=None, metavar="PORT",
                   help="then serve the page on http://127.0.0.1:PORT/ (loopback only)")
    p.set_defaults(func=_cmd_dashboard)
    p = sub.add_parser("stats", help="print a run's statistics as tables",
                       description="Print RUNDIR's funnel and per-stage statistics in the terminal.")
    p.add_argument("run_dir", metavar="RUNDIR")
    p.set_defaults(func=_cmd_stats)


def _cmd_dashboard(args: Any) -> int:
    out = Path(args.out) if args.out else Path(args.run_dir) / "report.html"
    build_dashboard(args.run_dir, out, samples_per_reason=args.samples)
    print(f"dashboard: {out.resolve()}", flush=True)
    if args.serve is not None:
        serve(out, args.serve)
    return 0


def _cmd_stats(args: Any) -> int:
    print(stats_text(args.run_dir), end="", flush=True)
    return 0


__all__ = ["build_dashboard", "discover", "load_stage", "samples", "stats_text", "serve", "make_server", "add_commands",
           "dump_rejections_by_join", "StageRun"]
