"""Checkpoints as safetensors + JSON (never pickle), written atomically.

A checkpoint ``PATH`` is two files: ``PATH.safetensors`` (tensors) and ``PATH.json`` (metadata:
network class and config, process, prediction, training state). Each file is written to a
temporary name in the same folder, flushed and renamed over the target, so a crash never leaves a
half-written checkpoint.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..models.presets import ARCHITECTURES
from ..parameterizations import ModelDenoiser
from ..processes import process_from_config

__all__ = [
    "CheckpointError",
    "save_tensors",
    "load_tensors",
    "save_model",
    "load_model",
    "read_metadata",
    "NETWORKS",
    "list_checkpoints",
    "latest_checkpoint",
    "prune_checkpoints",
    "resolve_checkpoint",
    "remove_partial_writes",
]

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or inconsistent."""


def _networks() -> dict[str, type]:
    """Every network class a checkpoint may name (``meta["network"]["class"]``)."""
    return {cls.__name__: cls for cls in ARCHITECTURES.values()}


NETWORKS = _networks


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def _as_os_error(err: SafetensorError) -> OSError:
    """safetensors reports a failed write (a full disk, a file over the size limit) as a
    ``SafetensorError`` whose message carries the OS error code; give it back as the ``OSError``
    every other writer raises."""
    code = re.search(r"code: (\d+)", str(err))
    number = int(code.group(1)) if code else errno.EIO
    return OSError(number, os.strerror(number))


def _atomic_write(target: Path, write) -> None:
    """Run ``write(tmp)`` on a temporary beside ``target``, fsync it and rename it over ``target``.

    Raises:
        OSError: the write failed (the temporary is removed; ``target`` is unchanged).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        try:
            write(tmp)
        except SafetensorError as err:
            raise _as_os_error(err) from None
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``tensors`` and JSON ``meta`` atomically; returns the ``.safetensors`` path.

    The JSON is written last, so a reader that finds it also finds complete tensors.
    """
    st_path, js_path = _paths(path)
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic_write(st_path, lambda tmp: save_file(contiguous, tmp))
    payload = json.dumps({"format_version": FORMAT_VERSION, **meta}, indent=2, sort_keys=True)

    def write_json(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write(payload)

    _atomic_write(js_path, write_json)
    return st_path


def _one_line(err: BaseException) -> str:
    """An exception's message on one line (safetensors and JSON messages may span several)."""
    return " ".join(str(err).split()) or type(err).__name__


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a checkpoint.

    Raises:
        CheckpointError: the JSON is missing, unreadable, not JSON or not a JSON object (one line
            naming the file).
    """
    _, js_path = _paths(path)
    if not js_path.exists():
        raise CheckpointError(
            f"no checkpoint metadata at {js_path} (expected PATH.json beside PATH.safetensors)"
        )
    try:
        meta = json.loads(js_path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"cannot read {js_path}: {_one_line(err)}") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{js_path} is not valid JSON: {err}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"{js_path} holds a JSON {type(meta).__name__}, not an object: not a hwaksan checkpoint"
        )
    return meta


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint's tensors and metadata.

    Raises:
        CheckpointError: either file is missing, unreadable or corrupt (one line naming the file).
    """
    st_path, _ = _paths(path)
    meta = read_metadata(path)
    if not st_path.exists():
        raise CheckpointError(f"checkpoint tensors missing: {st_path}")
    try:
        return load_file(str(st_path)), meta
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{st_path} is not a readable safetensors file ({_one_line(err)}): the file is corrupt "
            "or truncated"
        ) from None


def save_model(
    path: str | os.PathLike,
    model: ModelDenoiser,
    *,
    ema: dict[str, torch.Tensor] | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> Path:
    """Save a :class:`ModelDenoiser` (network weights, optional EMA weights, configs)."""
    net = model.net
    if not hasattr(net, "config"):
        raise CheckpointError(f"{type(net).__name__} has no .config dict: it cannot be rebuilt")
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.items()})
    tensors.update(extra_tensors or {})
    meta = {
        "network": {"class": type(net).__name__, "config": net.config},
        "denoiser": model.config(),
        **(extra_meta or {}),
    }
    return save_tensors(path, tensors, meta)


def load_model(path: str | os.PathLike, *, use_ema: bool = True) -> tuple[ModelDenoiser, dict[str, Any]]:
    """Rebuild a :class:`ModelDenoiser` from :func:`save_model`; EMA weights when present."""
    tensors, meta = load_tensors(path)
    try:
        net_cls = _networks()[meta["network"]["class"]]
        net = net_cls(**meta["network"]["config"])
        dcfg = meta["denoiser"]
        process = process_from_config(dcfg["process"])
    except KeyError as err:
        raise CheckpointError(f"checkpoint metadata lacks {err}: not a hwaksan model checkpoint") from None
    prefix = "ema." if use_ema and any(k.startswith("ema.") for k in tensors) else "model."
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"weights do not fit the network: missing {missing}, unexpected {unexpected}")
    model = ModelDenoiser(net, process, dcfg["prediction"], dcfg.get("sigma_data", 1.0))
    return model.eval(), meta


_CKPT_RE = re.compile(r"^step_(\d+)\.json$")


def list_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the complete checkpoints under ``out_dir/checkpoints``, by step."""
    folder = Path(out_dir) / "checkpoints"
    found = []
    if folder.is_dir():
        for js in folder.iterdir():
            m = _CKPT_RE.match(js.name)
            if m and js.with_suffix(".safetensors").exists():
                found.append((int(m.group(1)), js.with_suffix("")))
    return sorted(found)


def prune_checkpoints(out_dir: str | Path, keep_last: int) -> None:
    """Delete all but the ``keep_last`` newest checkpoints under ``out_dir/checkpoints``; each
    pair's JSON goes first, so a reader never lists half a pair (``keep_last >= 1``)."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    for _, old in list_checkpoints(out_dir)[:-keep_last]:
        for suffix in (".json", ".safetensors"):
            old.with_name(old.name + suffix).unlink(missing_ok=True)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint under ``out_dir/checkpoints`` (None when there is none)."""
    found = list_checkpoints(out_dir)
    return found[-1][1] if found else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint path from a checkpoint file name or a run folder (its newest checkpoint)."""
    p = Path(path)
    if p.is_dir() and (p / "model.json").exists():  # a 2-D run of hwaksan train (runs/NAME/model)
        return p / "model"
    if p.is_dir():
        found = latest_checkpoint(p) or (latest_checkpoint(p.parent) if p.name == "checkpoints" else None)
        if found is None:
            raise CheckpointError(f"no checkpoint under {p} (expected {p}/checkpoints/step_*.json)")
        return found
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    if not p.with_name(p.name + ".json").exists():
        raise CheckpointError(f"no checkpoint at {path} (expected {p}.json and {p}.safetensors)")
    return p


def remove_partial_writes(folder: str | Path) -> list[Path]:
    """Delete the temporaries a killed writer left in ``folder`` (``.NAME.XXXX.tmp``, hidden and
    ending in ``.tmp``, as :func:`save_tensors` and the output record name them); returns them.

    Call it only while holding the folder (:class:`~hwaksan.io.runlock.RunLock`): another live
    writer's temporaries look the same.
    """
    removed = []
    p = Path(folder)
    if p.is_dir():
        for f in p.iterdir():
            if f.name.startswith(".") and f.name.endswith(".tmp") and f.is_file() and not f.is_symlink():
                f.unlink(missing_ok=True)
                removed.append(f)
    return removed
