"""DESIGN's import rules, enforced by reading every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "hwaksan"

# what each part of the package may import from hwaksan (besides itself)
ALLOWED = {
    "utils": set(),
    "distributions": {"utils"},
    "_typing": {"processes"},
    "processes": {"utils"},
    "parameterizations": {"processes", "utils", "_typing"},
    "losses": {"parameterizations", "processes", "utils", "_typing"},
    "samplers": {"parameterizations", "processes", "utils", "_typing"},
    "guidance": {"parameterizations", "processes", "utils", "_typing"},
    "oracles": {"parameterizations", "processes", "utils", "_typing", "distributions"},
    "models": set(),
    "data": {"utils", "distributions"},
    "tasks": {"samplers", "guidance", "parameterizations", "processes", "utils", "_typing"},
    "io": {"models", "processes", "parameterizations", "utils", "_typing"},
    "training": {
        "io",
        "losses",
        "models",
        "data",
        "processes",
        "parameterizations",
        "samplers",
        "utils",
        "plotting",
        "_typing",
    },
    "evaluation": {
        "io",
        "samplers",
        "data",
        "models",
        "training",  # the data-set classifier behind FD-<dataset> is trained (and cached) on demand
        "utils",
        "processes",
        "parameterizations",
        "_typing",
        "plotting",  # the evaluation report's pictures (sample grid, nearest neighbours, metric vs NFE)
        "losses",  # the variational bound's terms are the L_vlb / L_hybrid training terms
    },
    "plotting": set(),
    "cli": None,  # anything
    "commands": None,  # the CLI's sub-commands: anything
    "__init__": None,
}


def _part(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    rel = path.relative_to(PKG)
    depth = len(rel.parts) - 1  # folders below the package root
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                mod = node.module or ""
                if mod.startswith("hwaksan."):
                    found.add(mod.split(".")[1])
            elif node.level > depth:  # climbs to the package root: hwaksan.<part>
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("hwaksan."):
                    found.add(a.name.split(".")[1])
    return found


MODULES = sorted(p for p in PKG.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_import_rules(path):
    part = _part(path)
    allowed = ALLOWED.get(part, "unknown")
    assert allowed != "unknown", f"{part} has no layering rule: add it to DESIGN and this test"
    if allowed is None:
        return
    bad = _imports(path) - allowed - {part}
    assert not bad, f"{path.relative_to(PKG)} imports {sorted(bad)}; {part} may import only {sorted(allowed)}"


def test_core_imports_no_torch_nn_models():
    """The core does not import networks, data or training."""
    for part in ("processes", "parameterizations", "losses", "samplers"):
        for path in (PKG / part).rglob("*.py") if (PKG / part).is_dir() else [PKG / f"{part}.py"]:
            assert not _imports(path) & {"models", "data", "training"}, path
