"""The rooms hold: no two modules of the package import each other (static, from the sources)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_names() -> dict[str, Path]:
    names = {}
    for path in (SRC / "shapeood").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _imports(path: Path, known: dict[str, Path]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in known}


def test_no_two_modules_import_each_other():
    known = _module_names()
    graph = {name: _imports(path, known) - {name} for name, path in known.items()}
    mutual = sorted(
        f"{a} <-> {b}"
        for a, deps in graph.items()
        for b in deps
        if a < b and a in graph[b] and not (b.startswith(a + ".") or a.startswith(b + "."))
    )
    assert not mutual, f"modules importing each other: {mutual}"
    assert "shapeood.evaluation" not in graph["shapeood.search"]
    assert "shapeood.features.store" not in graph["shapeood.features.featureset"]
