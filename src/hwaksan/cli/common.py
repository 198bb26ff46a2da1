"""What every ``hwaksan`` command does the same way: load a model, report a user error, check and
record outputs, name them.

A command raises :class:`UserError` for a mistake the user can fix; :func:`hwaksan.cli.main` prints
it as one line ``hwaksan COMMAND: error: ...`` and exits with status 1. Where a command reads or
writes files it wraps that step in :func:`one_line`, which turns the errors of files (a corrupt
checkpoint, a refused output, a full disk, a folder where a file should be, a file that is not an
image) into such a line, naming what was being done.

Outputs: every command checks each file it will write with :func:`check_outputs` before any work
(never replacing an input or a file hwaksan did not write without ``--overwrite``) and records them
with :func:`record_outputs` once written (:mod:`hwaksan.io.outputs`).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..io.artifact import TrainedModel, load_trained
from ..io.checkpoint import CheckpointError
from ..io.outputs import OutputError, check_output, record_output
from ..utils import generators_from_seeds

__all__ = [
    "UserError",
    "load_model",
    "seed_generators",
    "print_outputs",
    "one_line",
    "describe_os_error",
    "check_outputs",
    "record_outputs",
]


class UserError(Exception):
    """A mistake on the command line, explained in one line (exit status 1)."""


_OS_HINTS = {
    errno.ENOSPC: "free some space or write somewhere else",
    errno.EDQUOT: "free some space or write somewhere else",
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "the file system is read-only: choose another path",
    errno.EISDIR: "it is a folder: give a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.ENOENT: "check the path",
}


def describe_os_error(err: OSError) -> str:
    """An ``OSError`` (``PIL.UnidentifiedImageError`` included) as one line naming the file, what
    went wrong and what to do."""
    if type(err).__name__ == "UnidentifiedImageError":
        return f"{err}: not an image PIL can read; give a PNG"
    reason = err.strerror or str(err) or type(err).__name__
    where = f"{err.filename}: " if err.filename else ""
    hint = _OS_HINTS.get(err.errno or 0)
    return f"{where}{reason}" + (f" ({hint})" if hint else "")


@contextmanager
def one_line(doing: str) -> Iterator[None]:
    """Turn the errors of reading and writing files inside the block into one :class:`UserError`
    line: a corrupt or missing checkpoint and a refused output as they explain themselves, any
    ``OSError`` (a full disk, no permission, a folder given as a file, a file that is not an image)
    as ``DOING: FILE: what went wrong (what to do)``."""
    try:
        yield
    except (CheckpointError, OutputError) as err:
        raise UserError(_one(str(err))) from None
    except OSError as err:
        raise UserError(f"{doing}: {_one(describe_os_error(err))}") from None


def _one(message: str) -> str:
    """A message on one line."""
    return " ".join(message.split())


def check_outputs(
    paths: Iterable[str | os.PathLike],
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> list[Path]:
    """:func:`~hwaksan.io.outputs.check_output` for every file a command will write, before any work.

    Raises:
        UserError: a path that must not or cannot be written (one line naming the fix).
    """
    inputs = [i for i in inputs if i is not None]
    with one_line("cannot write the outputs"):
        return [check_output(p, overwrite=overwrite, inputs=inputs) for p in paths]


def record_outputs(*paths: str | os.PathLike) -> None:
    """Record files the command has just written (:func:`~hwaksan.io.outputs.record_output`)."""
    record_output(*paths)


def load_model(
    path: str | os.PathLike,
    operation: str,
    *,
    ema: int | None = 0,
    device: str | torch.device | None = None,
    image: bool = False,
    pixel: bool = False,
) -> TrainedModel:
    """:func:`~hwaksan.io.artifact.load_trained`, then :meth:`TrainedModel.requires`.

    Args:
        path: a checkpoint or a run folder.
        operation: the command, for the messages (``"hwaksan upscale"``).
        ema: which EMA (None: the raw weights).
        device: move the model there.
        image, pixel: the operation needs an image model / a pixel-space model.

    Raises:
        UserError: no readable model there, or one the operation does not apply to.
    """
    try:
        with one_line(f"cannot load the model {path}"):
            model = load_trained(path, ema=ema, device=device)
        model.requires(operation, image=image, pixel=pixel)
    except ValueError as err:
        raise UserError(_one(str(err))) from None
    return model


def seed_generators(seed: int, n: int, device: str | torch.device = "cpu") -> list[torch.Generator]:
    """One generator per result: result ``i`` uses seed ``seed + i``, whatever ``n`` is."""
    return generators_from_seeds(range(seed, seed + n), device)


def print_outputs(command: str, lines: dict[str, Any]) -> None:
    """``hwaksan COMMAND: outputs:`` and one ``name  value`` line per output."""
    print(f"hwaksan {command}: outputs:")
    for key, val in lines.items():
        print(f"  {key:12s} {val}")
