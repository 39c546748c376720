"""The dependency arrows of ARCHITECTURE.md, checked on the source: `filters/` and `tokenizer/`
import nothing of ours outside themselves; `stages/` import only `pipeline.shards` of the
pipeline package (never the CLI or the runner) and never `ray` (they schedule through the
`Runtime` the runner lends them); evaluation code stays out of the installed packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ["pipeline", "stages", "filters", "tokenizer"]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, relative imports resolved."""
    package = "winnow." + ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def sources(folder: str) -> list[Path]:
    return sorted(p for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("folder", ["filters", "tokenizer"])
def test_filters_and_tokenizer_import_nothing_of_ours(folder: str) -> None:
    bad = [f"{p.relative_to(REPO)}:{line} imports {mod}"
           for p in sources(folder) for line, mod in imported_modules(p)
           if mod.startswith("winnow.") and not mod.startswith(f"winnow.{folder}")]
    assert not bad, "\n".join(bad)


def test_stages_import_only_shard_io_of_the_pipeline_and_never_ray() -> None:
    bad = []
    for p in sources("stages"):
        for line, mod in imported_modules(p):
            if mod.startswith("winnow.pipeline") and mod not in ("winnow.pipeline", "winnow.pipeline.shards"):
                bad.append(f"{p.relative_to(REPO)}:{line} imports {mod}")
            if mod == "ray" or mod.startswith("ray."):
                bad.append(f"{p.relative_to(REPO)}:{line} imports {mod} (schedule through the Runtime)")
    assert not bad, "\n".join(bad)


def test_the_scanner_sees_imports() -> None:
    """The checks above would pass vacuously if the scan found nothing."""
    mods = {m for p in sources("stages") for _, m in imported_modules(p)}
    assert "winnow.pipeline.shards" in mods or "winnow.pipeline" in mods
    assert "pyarrow" in mods


def test_no_evaluation_code_in_the_package() -> None:
    """Graded sets and benchmark helpers live in tests/ and bench/, not in what pip installs."""
    names = {p.stem for folder in PACKAGES for p in sources(folder)}
    assert not names & {"graded", "bench", "cluster_labels"}, names & {"graded", "bench", "cluster_labels"}
