"""URL/host rules that give a web document its domain (encyclopedia, news, qa, code, …).

The rules live in a YAML taxonomy kept in the repo (`domain_taxonomy.yaml` beside this file, or a
file of the same layout): exact hosts and registered domains, host patterns, public suffixes
(`.gov`, `.edu`, `.ac.*`, `.gov.cn` …) and URL path patterns, tried in that order. Registered
domains and suffixes come from `tldextract` with its bundled public-suffix snapshot: no network
fetch (`suffix_list_urls=()`) and no cache directory, so labels never depend on the day or machine.

A URL no rule matches gets `None`; the caller decides what then (the topic classifier, or `other`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

DEFAULT_TAXONOMY = Path(__file__).with_name("domain_taxonomy.yaml")
#: The label of documents no labeller claims.
OTHER = "other"


class TaxonomyError(ValueError):
    """A taxonomy file that is malformed or names a domain it does not declare."""


@dataclass(frozen=True)
class RuleMatch:
    """A rule label and the rule that gave it (`host:wikipedia.org`, `suffix:gov`, `path:^/wiki/`)."""

    domain: str
    rule: str


def _suffix_regex(pattern: str) -> re.Pattern[str]:
    """`gov.*` → any suffix `gov.<label>`; `k12.*.us` → `k12.<label>.us`; exact otherwise."""
    parts = [r"[^.]+" if p == "*" else re.escape(p) for p in pattern.split(".")]
    return re.compile(r"^" + r"\.".join(parts) + r"$")


class DomainRules:
    """The compiled taxonomy: `match(url)` → `RuleMatch` or None."""

    def __init__(self, taxonomy: dict[str, Any], source: str = "<dict>"):
        domains = taxonomy.get("domains")
        if not isinstance(domains, list) or not domains:
            raise TaxonomyError(f"{source}: `domains` must be a non-empty list")
        self.domains: tuple[str, ...] = tuple(str(d) for d in domains)
        if OTHER not in self.domains:
            self.domains = self.domains + (OTHER,)
        known = set(self.domains)

        def section(name: str) -> dict[str, list[str]]:
            sec = taxonomy.get(name) or {}
            if not isinstance(sec, dict):
                raise TaxonomyError(f"{source}: `{name}` must map domain -> list")
            for dom, items in sec.items():
                if dom not in known:
                    raise TaxonomyError(f"{source}: `{name}.{dom}`: domain {dom!r} is not in `domains`")
                if not isinstance(items, list):
                    raise TaxonomyError(f"{source}: `{name}.{dom}` must be a list")
            return sec

        self.hosts: dict[str, str] = {}
        for dom, names in section("hosts").items():
            for h in names:
                h = str(h).lower().strip(".")
                if h in self.hosts and self.hosts[h] != dom:
                    raise TaxonomyError(f"{source}: host {h!r} listed under {self.hosts[h]!r} and {dom!r}")
                self.hosts[h] = dom
        self.host_patterns = [(dom, re.compile(p), p) for dom, ps in section("host_patterns").items() for p in ps]
        self.suffixes = [(dom, _suffix_regex(str(p)), str(p)) for dom, ps in section("suffixes").items() for p in ps]
        self.path_patterns = [(dom, re.compile(p), p) for dom, ps in section("path_patterns").items() for p in ps]
        import tldextract

        # bundled public-suffix snapshot only: no fetch, no cache directory
        self._extract = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)
        self.match_host = functools.lru_cache(maxsize=1 << 16)(self._match_host)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "DomainRules":
        """The taxonomy at `path` (default: the one shipped beside this module)."""
        path = Path(path) if path else DEFAULT_TAXONOMY
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise TaxonomyError(f"taxonomy {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise TaxonomyError(f"{path}: expected a mapping")
        return cls(data, source=str(path))

    def registered_domain(self, host: str) -> tuple[str, str]:
        """(registered domain, public suffix) of `host` from the bundled public-suffix list."""
        ext = self._extract(host)
        reg = f"{ext.domain}.{ext.suffix}" if ext.domain and ext.suffix else (ext.domain or host)
        return reg, ext.suffix

    def _match_host(self, host: str) -> RuleMatch | None:
        """Rules that look at the host only (cached per host: a crawl repeats hosts)."""
        host = host.lower().strip(".")
        if host.startswith("www."):
            host = host[4:]
        # 1. exact host, then each parent host down to the registered domain
        reg, suffix = self.registered_domain(host)
        labels = host.split(".")
        for i in range(len(labels) - 1):
            cand = ".".join(labels[i:])
            if cand in self.hosts:
                return RuleMatch(self.hosts[cand], f"host:{cand}")
            if cand == reg:
                break
        # 2. host patterns
        for dom, rx, p in self.host_patterns:
            if rx.search(host):
                return RuleMatch(dom, f"host_pattern:{p}")
        # 3. public suffix
        if suffix:
            for dom, rx, p in self.suffixes:
                if rx.match(suffix):
                    return RuleMatch(dom, f"suffix:{p}")
        return None

    def match(self, url: str | None, host: str | None = None) -> RuleMatch | None:
        """The rule label of a URL, or None when no rule applies (or there is no URL)."""
        if not url and not host:
            return None
        parts = None
        if not host:
            try:
                parts = urlsplit(url if "://" in url else "http://" + url)  # type: ignore[operator]
            except ValueError:
                return None
            host = parts.hostname or ""
        if host:
            hit = self.match_host(host)
            if hit is not None:
                return hit
        if url:
            if parts is None:
                try:
                    parts = urlsplit(url if "://" in url else "http://" + url)
                except ValueError:
                    return None
            path = (parts.path or "/").lower() + (("?" + parts.query.lower()) if parts.query else "")
            for dom, rx, p in self.path_patterns:
                if rx.search(path):
                    return RuleMatch(dom, f"path:{p}")
        return None
