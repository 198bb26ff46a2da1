"""Where evaluation keeps what it computes once: data-set classifiers and real-data statistics.

Everything lives under the user cache directory, ``$XDG_CACHE_HOME/hwaksan`` (default
``~/.cache/hwaksan``), the same root as the rendered data sets of :mod:`hwaksan.data.images`;
``cache_dir=`` arguments override it. Files are written atomically (temporary name, then rename), so
two processes filling the same entry never see half a file.

Tensor entries (:func:`save_entry` / :func:`load_entry`) are safetensors files of
:mod:`hwaksan.io.checkpoint` whose JSON names their kind and the key they were made for; an entry
whose kind or key differs, or that cannot be read, is a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..io.checkpoint import CheckpointError, load_tensors, save_tensors

__all__ = [
    "cache_root",
    "config_key",
    "file_sha256",
    "safe_name",
    "write_json_atomic",
    "load_entry",
    "save_entry",
]


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` if given, else ``$XDG_CACHE_HOME/hwaksan`` (default ``~/.cache/hwaksan``)."""
    if cache_dir is not None:
        return Path(cache_dir)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hwaksan"


def config_key(config: Any, length: int = 12) -> str:
    """A short stable hash of a JSON-able config (keys sorted)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def safe_name(name: str) -> str:
    """A data-set name as a file-name part (``folder:/a/b`` -> ``folder__a_b``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "data"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as indented JSON to ``path`` via a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_entry(
    stem: str | os.PathLike, kind: str, key: str, tensors: dict[str, torch.Tensor], **info: Any
) -> Path:
    """Write a tensor cache entry ``stem.safetensors`` + ``stem.json`` (``kind``, ``key`` and the
    JSON-able ``info``) atomically; returns the stem."""
    return save_tensors(stem, tensors, {"kind": kind, "key": key, **info})


def load_entry(stem: str | os.PathLike, kind: str, key: str) -> dict[str, torch.Tensor] | None:
    """The tensors of the entry :func:`save_entry` wrote for ``kind`` and ``key``, or None when
    it is missing, unreadable or was made for another kind or key."""
    try:
        tensors, info = load_tensors(stem)
    except (CheckpointError, OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("kind") != kind or info.get("key") != key:
        return None
    return tensors
