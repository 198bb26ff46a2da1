"""The import rules of docs/architecture.md, enforced by reading every module's imports.

Every import counts: module level, function level and ``TYPE_CHECKING`` blocks alike (a lazy import
still ties two modules together; it only hides the tie). Imports run one way::

    cli -> {training, evaluation} -> tasks -> io -> {models, data, conditioning}
        -> core (guidance, samplers, losses, oracles -> parameterizations -> processes) -> utils
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "hwaksan"

CORE = {"processes", "parameterizations", "utils", "_typing"}
# what each part of the package may import from hwaksan (besides itself)
ALLOWED: dict[str, set[str] | None] = {
    "utils": set(),
    "plotting": set(),
    "distributions": {"utils"},
    "_typing": {"processes"},
    "processes": {"utils"},
    "parameterizations": {"processes", "utils", "_typing"},
    "losses": CORE,
    "samplers": CORE,
    "guidance": CORE,
    "oracles": CORE | {"distributions"},
    "models": set(),
    "data": {"utils", "distributions"},
    "conditioning": {"data", "models", "utils"},
    "io": CORE | {"models", "data", "conditioning", "samplers", "guidance", "plotting"},
    "tasks": CORE | {"samplers", "guidance", "io"},
    "training": CORE
    | {"io", "tasks", "losses", "models", "data", "conditioning", "samplers", "guidance", "plotting"},
    "evaluation": CORE
    | {"io", "tasks", "training", "losses", "models", "data", "samplers", "plotting", "distributions"},
    "cli": None,  # the command line: anything; nothing imports it
    "__init__": None,  # the curated public API
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _part(path: Path) -> str:
    return path.relative_to(PKG).parts[0].removesuffix(".py")


def _resolve(path: Path, node: ast.ImportFrom) -> list[str]:
    """Absolute hwaksan module names an ``ImportFrom`` names (``from .x import y`` may import a
    module ``x.y`` or a name in ``x``: both are returned, unknown ones are filtered later)."""
    if node.level == 0:
        base = node.module or ""
    else:
        pkg = _module_name(path).split(".")
        if path.name != "__init__.py":
            pkg = pkg[:-1]
        pkg = pkg[: len(pkg) - (node.level - 1)]
        base = ".".join(pkg + ([node.module] if node.module else []))
    if not base.startswith("hwaksan"):
        return []
    return [base] + [f"{base}.{a.name}" for a in node.names]


def _imports(path: Path) -> list[tuple[str, bool]]:
    """``(module, at_function_level)`` for every hwaksan import of ``path``."""
    tree = ast.parse(path.read_text())
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom):
                found.extend((m, in_function) for m in _resolve(path, child))
            elif isinstance(child, ast.Import):
                found.extend((a.name, in_function) for a in child.names if a.name.startswith("hwaksan"))
            visit(child, inner)

    visit(tree, False)
    return found


MODULES = sorted(PKG.rglob("*.py"))
NAMES = {_module_name(p): p for p in MODULES}


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in NAMES.items():
        for target, _ in _imports(path):
            if target in NAMES and target != name:
                graph[name].add(target)
    return graph


def _parts_imported(path: Path) -> set[str]:
    """The parts of hwaksan (top-level modules and packages) that ``path`` imports."""
    parts = set()
    for target, _ in _imports(path):
        bits = target.split(".")
        if len(bits) > 1 and f"hwaksan.{bits[1]}" in NAMES:
            parts.add(bits[1])
    return parts


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_import_rules(path):
    part = _part(path)
    assert part in ALLOWED, f"{part} has no layering rule: add it to docs/architecture.md and this test"
    allowed = ALLOWED[part]
    if allowed is None:
        return
    bad = _parts_imported(path) - allowed - {part}
    assert not bad, f"{path.relative_to(PKG)} imports {sorted(bad)}; {part} may import only {sorted(allowed)}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan 1972)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    nodes = set(graph) | {w for targets in graph.values() for w in targets}
    for v in sorted(nodes):
        if v not in index:
            strong(v)
    return out


def test_no_import_circle_between_modules():
    """No two modules import each other, directly or through others, lazy imports included
    (a package ``__init__`` re-exporting its submodules is not a circle of the code)."""
    graph = _graph()
    for name in NAMES:  # an __init__ that re-exports is its package's table of contents
        if NAMES[name].name == "__init__.py":
            graph[name] = {t for t in graph.get(name, set()) if not t.startswith(name + ".")}
    assert _cycles(graph) == []


def test_no_import_circle_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    for path in MODULES:
        part = _part(path)
        if part == "__init__":
            continue
        graph[part] |= _parts_imported(path) - {part}
    assert _cycles(graph) == []


def test_nothing_outside_the_cli_imports_it():
    for path in MODULES:
        if _part(path) in ("cli", "__init__"):
            continue
        assert "cli" not in _parts_imported(path), path


def test_the_training_loop_names_no_task():
    """The loop imports no extension, and no task's name appears in it (EDM's rule: a new task is
    an extension in its own module)."""
    loop = PKG / "training" / "loop.py"
    if not loop.exists():
        loop = PKG / "training" / "trainer.py"
    extensions = {"latent", "text", "superres", "hybrid", "pairs", "moe", "extensions"}
    imported = {t.split(".")[-1] for t, _ in _imports(loop)} | {
        t.split(".")[-2] for t, _ in _imports(loop) if t.count(".") >= 3
    }
    assert not imported & extensions, sorted(imported & extensions)
    source = loop.read_text().lower()
    for word in ("latent", "lowres", "superres", "hybrid", "vlb", "aux_loss", "expert", "caption", "reflow"):
        assert word not in source, f"{loop.name} mentions {word!r}"


def test_function_level_imports_of_hwaksan_are_few():
    """A function-level import of a hwaksan module saves no start-up time and hides the dependency
    graph; the few that remain are listed here with their reason."""
    reasons: set[str] = set()
    lazy = sorted(
        {
            f"{_module_name(p)} -> {t}"
            for p in MODULES
            for t, inner in _imports(p)
            if inner and t in NAMES and _module_name(p) not in reasons
        }
    )
    assert lazy == [], "\n".join(lazy)


def test_core_imports_no_network_data_or_training():
    for part in ("processes", "parameterizations", "losses", "samplers", "guidance"):
        paths = (PKG / part).rglob("*.py") if (PKG / part).is_dir() else [PKG / f"{part}.py"]
        for path in paths:
            assert not _parts_imported(path) & {"models", "data", "training", "io", "cli"}, path


def test_importing_the_package_loads_no_slow_optional_module():
    """``import hwaksan`` loads torch and numpy only: scipy (through torchdiffeq), matplotlib and
    POT cost a second or more together and are imported where they are used."""
    code = (
        "import sys, hwaksan, hwaksan.samplers, hwaksan.processes; "
        "print(sorted(m for m in ('scipy', 'torchdiffeq', 'matplotlib', 'ot') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
