"""Output files: never replace an input, or a file hwaksan did not write, without ``--overwrite``.

Every command checks each file it is about to write with :func:`check_output` before any work, and
records it with :func:`record_output` once written. The record is a small JSON beside the outputs,
``DIR/.hwaksan-outputs.json``: file name -> size and modification time when hwaksan wrote it. A file
that is still as hwaksan left it may be replaced by the next run (re-running a command is normal); a
file hwaksan did not write, one changed since, and any input of the command are refused unless the
user says ``--overwrite``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = ["OutputError", "check_output", "record_output", "written_by_hwaksan", "REGISTRY_NAME"]

REGISTRY_NAME = ".hwaksan-outputs.json"


class OutputError(RuntimeError):
    """An output path that cannot or must not be written (the message names the fix)."""


def _registry(folder: Path) -> dict[str, dict[str, int]]:
    try:
        data = json.loads((folder / REGISTRY_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def written_by_hwaksan(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file hwaksan recorded and that has not changed since."""
    p = Path(path)
    if not p.is_file():
        return False
    entry = _registry(p.parent).get(p.name)
    return isinstance(entry, dict) and entry == _stamp(p)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> Path:
    """Check that ``path`` may be written now; create its folder. Returns it as a ``Path``.

    Args:
        path: the file the command will write.
        overwrite: the user's ``--overwrite``: replace whatever is there.
        inputs: the command's input files (never replaced without ``overwrite``).

    Raises:
        OutputError: ``path`` is a folder, its folder is a file or cannot be created or written, it
            is one of ``inputs``, or it exists and hwaksan did not write it (each one line).
    """
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{p} is a folder: give a file name (e.g. {p / 'out.png'})")
    for src in inputs:
        if src is not None and _same_file(p, Path(src)) and not overwrite:
            raise OutputError(f"{p} is an input of this command: choose another output, or pass --overwrite")
    if p.exists() and not overwrite and not written_by_hwaksan(p):
        raise OutputError(
            f"{p} exists and was not written by hwaksan: choose another output, or pass --overwrite"
        )
    folder = p.parent
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"cannot write {p}: {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create the folder {folder}: {err.strerror or err}") from None
    if not os.access(folder, os.W_OK):
        raise OutputError(f"cannot write in {folder}: permission denied (choose another output)")
    return p


def record_output(*paths: str | os.PathLike) -> None:
    """Record files hwaksan has just written (so a later run may replace them). Best effort: a
    folder where the record cannot be written only costs the next run an ``--overwrite``."""
    by_folder: dict[Path, list[Path]] = {}
    for path in paths:
        p = Path(path)
        if p.is_file():
            by_folder.setdefault(p.parent, []).append(p)
    for folder, files in by_folder.items():
        registry = _registry(folder)
        for p in files:
            registry[p.name] = _stamp(p)
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{REGISTRY_NAME}.", suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                json.dump(registry, fh, indent=1, sort_keys=True)
            os.replace(tmp, folder / REGISTRY_NAME)
        except OSError:
            try:
                os.unlink(tmp)
            except (OSError, UnboundLocalError):
                pass
