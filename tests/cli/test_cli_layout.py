"""The layout of the command line: one package ``hwaksan.cli``, one module per command, every
``--help`` works, and no module outside the package imports it."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import hwaksan
from hwaksan.cli import COMMANDS, build_parser, main

SRC = Path(hwaksan.__file__).resolve().parent
CLI = SRC / "cli"


def _subparsers() -> dict:
    parser = build_parser()
    return dict(parser._subparsers._group_actions[0].choices)


def test_top_level_help_exits_0(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "sample" in capsys.readouterr().out


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_every_subcommand_help_exits_0(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: hwaksan " + command in capsys.readouterr().out


def test_python_dash_m_runs_the_cli():
    """``python -m hwaksan.cli`` is the form torchrun runs."""
    done = subprocess.run([sys.executable, "-m", "hwaksan.cli", "samplers"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "grids:" in done.stdout


def test_every_command_lives_in_its_own_module_of_the_package():
    for name, sub in _subparsers().items():
        func = sub._defaults["func"]
        module = sys.modules[func.__module__]
        assert func.__module__.startswith("hwaksan.cli."), (name, func.__module__)
        assert Path(module.__file__).resolve().parent == CLI, (name, module.__file__)
        assert module in COMMANDS, f"{func.__module__} is not registered in hwaksan.cli.COMMANDS"
    for gone in ("hwaksan.commands", "hwaksan.training.cli_train"):
        assert importlib.util.find_spec(gone) is None, f"{gone} should be gone (moved into hwaksan.cli)"
    assert not (SRC / "cli.py").exists()


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved, function-level
    imports included)."""
    package = ".".join(("hwaksan", *path.relative_to(SRC).with_suffix("").parts))
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_no_module_outside_the_cli_imports_it():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if CLI in path.parents:
            continue
        bad = {m for m in _imported_modules(path) if m == "hwaksan.cli" or m.startswith("hwaksan.cli.")}
        if bad:
            offenders.append(f"{path.relative_to(SRC)}: {sorted(bad)}")
    assert not offenders, "modules outside hwaksan/cli import it:\n" + "\n".join(offenders)


def test_the_resolver_sees_relative_imports():
    """The check above is not vacuous: a relative import of the CLI is resolved to hwaksan.cli."""
    assert "hwaksan.cli" in _imported_modules(SRC / "cli" / "__main__.py")
    assert "hwaksan.cli.args" in _imported_modules(CLI / "sample.py")
