"""Data flows one way: sources < normalize < rules < store < notify < pipeline < daemon < cli.
A stage may import the shared modules (model, errors, registry, config, ...) and stages before it,
never a stage after it; so each stage can be tested with plain data in place of the one before."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).parents[1] / "usagewatch"
ORDER = ["sources", "normalize", "rules", "store", "notify", "pipeline", "daemon", "cli"]


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "usagewatch" and parts[1] in ORDER else None


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_no_stage_imports_a_later_stage():
    wrong = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        mine = stage_of(".".join(rel.parts))
        if mine is None:
            continue
        for mod in imports(path):
            theirs = stage_of(mod)
            if theirs is not None and ORDER.index(theirs) > ORDER.index(mine):
                wrong.append(f"{rel}: imports {mod}")
    assert wrong == []


def test_only_normalize_imports_sqlglot():
    users = sorted(str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                   if any(m == "sqlglot" or m.startswith("sqlglot.") for m in imports(p)))
    assert users and all(u.startswith("normalize/") for u in users)
