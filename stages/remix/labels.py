"""Label a table of documents: `domain`, `domain_source` (rule | classifier | default) and
`domain_detail` (the rule that matched, or the classifier's probability), from labellers that
compose: URL/host rules first, the fastText topic classifier for what they leave, `other` last."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from winnow.filters.domains import OTHER, DomainRules

_RULES: dict[str, DomainRules] = {}
_CLASSIFIERS: dict[tuple[str, int], Any] = {}


def rules_for(taxonomy: str | None) -> DomainRules:
    """The compiled taxonomy, once per worker process."""
    key = taxonomy or ""
    if key not in _RULES:
        _RULES[key] = DomainRules.load(taxonomy)
    return _RULES[key]


def classifier_for(path: str, max_chars: int) -> Any:
    """The topic classifier, loaded once per worker process."""
    from winnow.filters.topic_classifier import TopicClassifier

    key = (path, max_chars)
    if key not in _CLASSIFIERS:
        _CLASSIFIERS[key] = TopicClassifier(path, max_chars=max_chars)
    return _CLASSIFIERS[key]


def label_columns(urls: list[str | None], hosts: list[str | None] | None, texts: Any, *,
                  taxonomy: str | None, classifier: str | None, classifier_chars: int = 2000,
                  min_prob: float = 0.0) -> dict[str, list[Any]]:
    """domain, domain_source, domain_detail for each document. `texts` is a list or an Arrow
    array; only the texts of documents no rule labels are turned into Python strings."""
    rules = rules_for(taxonomy)
    n = len(urls)
    domain: list[str] = [OTHER] * n
    source: list[str] = ["default"] * n
    detail: list[str | None] = [None] * n
    todo: list[int] = []
    for i in range(n):
        hit = rules.match(urls[i], hosts[i] if hosts is not None else None)
        if hit is not None:
            domain[i], source[i], detail[i] = hit.domain, "rule", hit.rule
        else:
            todo.append(i)
    if classifier and todo:
        model = classifier_for(classifier, classifier_chars)
        if isinstance(texts, (pa.Array, pa.ChunkedArray)):
            sub = texts.take(pa.array(todo, pa.int64())).to_pylist()
        else:
            sub = [texts[i] for i in todo]
        labels, probs = model.predict([t or "" for t in sub])
        for i, lab, p in zip(todo, labels, probs):
            if lab and lab in rules.domains and float(p) >= min_prob:
                domain[i], source[i], detail[i] = lab, "classifier", f"p={float(p):.3f}"
    return {"domain": domain, "domain_source": source, "domain_detail": detail}


LABEL_FIELDS = (pa.field("domain", pa.string()), pa.field("domain_source", pa.string()),
                pa.field("domain_detail", pa.string()))


def label_arrays(table: pa.Table, **kw: Any) -> dict[str, pa.Array]:
    """The three label columns of `table` (url, optional host, text) as Arrow arrays."""
    urls = table.column("url").to_pylist()
    hosts = table.column("host").to_pylist() if "host" in table.column_names else None
    cols = label_columns(urls, hosts, table.column("text"), **kw)
    return {f.name: pa.array(cols[f.name], type=f.type) for f in LABEL_FIELDS}


def attach(table: pa.Table, columns: dict[str, pa.Array]) -> pa.Table:
    """`table` with `columns` appended (replacing columns of the same name)."""
    for name, arr in columns.items():
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, arr)
        else:
            table = table.append_column(name, arr)
    return table


def label_table(table: pa.Table, **kw: Any) -> pa.Table:
    """`table` with the three label columns appended (replaced if present)."""
    return attach(table, label_arrays(table, **kw))
