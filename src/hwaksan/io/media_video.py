"""Clips written as pictures: a PNG of frame strips and one animated GIF (Pillow).

Clips are ``x (n, C, F, H, W)`` in [-1, 1]. Both outputs lay the clips out the same way: clip ``i``
in column ``i // nrow``, row ``i % nrow`` (so with ``nrow = num_classes`` and labels ``i %
num_classes`` each row holds one class, as in the image grids).

- :func:`save_strips` (the preview): each clip is a row of its F frames, left to right.
- :func:`save_gif`: frame ``f`` of the GIF shows frame ``f`` of every clip; it plays at the data's
  ``fps`` (``modality_params``) and loops.

:data:`hwaksan.io.media.MEDIA` names these writers for ``modality = "video"``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..plotting import image_grid

__all__ = ["gif_frames", "save_gif", "save_strips", "video_names", "video_files"]

_COLUMN_GAP = 8  # white pixels between columns of strips (before magnification)


def _check(x: torch.Tensor) -> None:
    if x.ndim != 5:
        raise ValueError(f"clips must be (n, C, F, H, W), got shape {tuple(x.shape)}")


def _layout(n: int, nrow: int | None) -> tuple[int, int]:
    """Rows and columns of ``n`` clips: ``nrow`` clips per column (default up to 10)."""
    rows = max(1, min(n, nrow or 10))
    return rows, math.ceil(n / rows)


def _scale(x: torch.Tensor, params: dict[str, Any]) -> int:
    return int(params.get("scale") or max(1, 64 // max(x.shape[-2:])))


def save_strips(x: torch.Tensor, path: str | Path, params: dict[str, Any], nrow: int | None = None) -> Path:
    """The PNG of clips ``x (n, C, F, H, W)``: one row of frames per clip, ``nrow`` clips per column."""
    _check(x)
    n, c, frames, h, w = x.shape
    rows, cols = _layout(n, nrow)
    scale = _scale(x, params)
    columns = []
    for j in range(cols):
        part = x[j * rows : (j + 1) * rows].transpose(1, 2).reshape(-1, c, h, w)
        columns.append(np.asarray(image_grid(part, nrow=frames, scale=scale)))
    height = max(a.shape[0] for a in columns)
    gap = np.full((height, _COLUMN_GAP * scale, *columns[0].shape[2:]), 255, dtype=np.uint8)
    padded = []
    for a in columns:
        fill = np.full((height - a.shape[0], *a.shape[1:]), 255, dtype=np.uint8)
        padded.extend([np.concatenate([a, fill]), gap])
    Image.fromarray(np.concatenate(padded[:-1], axis=1)).save(path)
    return Path(path)


def gif_frames(x: torch.Tensor, nrow: int | None = None, scale: int = 1) -> list[Image.Image]:
    """The F pictures of the GIF of clips ``x (n, C, F, H, W)``: picture ``f`` is the grid of every
    clip's frame ``f`` (clip ``i`` at column ``i // nrow``, row ``i % nrow``; empty cells black)."""
    _check(x)
    n, c, frames, h, w = x.shape
    rows, cols = _layout(n, nrow)
    cells = torch.full((rows * cols, c, frames, h, w), -1.0)
    # grid cell (r, j) in row-major order holds clip j * rows + r
    order = torch.arange(rows * cols).view(cols, rows).t().reshape(-1)
    valid = order < n
    cells[valid.nonzero()[:, 0]] = x[order[valid]].float()
    return [image_grid(cells[:, :, f], nrow=cols, scale=scale) for f in range(frames)]


def save_gif(x: torch.Tensor, path: str | Path, params: dict[str, Any], nrow: int | None = None) -> Path:
    """An animated GIF of clips ``x (n, C, F, H, W)`` at ``params["fps"]`` frames per second (4 by
    default), looping."""
    fps = float(params.get("fps") or 4)
    pictures = gif_frames(x, nrow, _scale(x, params))
    pictures[0].save(
        path,
        save_all=True,
        append_images=pictures[1:],
        duration=max(20, round(1000 / fps)),
        loop=0,
        optimize=False,
    )
    return Path(path)


def video_names(stem: Path, n: int, params: dict[str, Any]) -> list[Path]:
    """The files :func:`video_files` writes: ``<stem>.gif``."""
    return [stem.with_name(stem.name + ".gif")]


def video_files(x: torch.Tensor, stem: Path, params: dict[str, Any]) -> list[Path]:
    """Write the animated GIF of clips ``x (n, C, F, H, W)`` beside ``stem``; returns its path."""
    (path,) = video_names(stem, len(x), params)
    return [save_gif(x, path, params, params.get("nrow"))]
