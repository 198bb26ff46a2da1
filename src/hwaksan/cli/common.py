"""What every ``hwaksan`` command does the same way: load a model, report a user error, name outputs.

A command raises :class:`UserError` for a mistake the user can fix; :func:`hwaksan.cli.main` prints
it as one line ``hwaksan COMMAND: error: ...`` and exits with status 1.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ..io.artifact import TrainedModel, load_trained
from ..io.checkpoint import CheckpointError
from ..utils import generators_from_seeds

__all__ = ["UserError", "load_model", "seed_generators", "print_outputs"]


class UserError(Exception):
    """A mistake on the command line, explained in one line (exit status 1)."""


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
        model = load_trained(path, ema=ema, device=device)
        model.requires(operation, image=image, pixel=pixel)
    except (CheckpointError, ValueError) as err:
        raise UserError(str(err)) from None
    return model


def seed_generators(seed: int, n: int, device: str | torch.device = "cpu") -> list[torch.Generator]:
    """One generator per result: result ``i`` uses seed ``seed + i``, whatever ``n`` is."""
    return generators_from_seeds(range(seed, seed + n), device)


def print_outputs(command: str, lines: dict[str, Any]) -> None:
    """``hwaksan COMMAND: outputs:`` and one ``name  value`` line per output."""
    print(f"hwaksan {command}: outputs:")
    for key, val in lines.items():
        print(f"  {key:12s} {val}")
