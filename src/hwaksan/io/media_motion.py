"""Motion samples as pictures: stick figures drawn with Pillow.

Samples are ``x (n, 2 J, T)`` in the normalised coordinates of :mod:`hwaksan.data.motion` (channel
``2 j`` the x, ``2 j + 1`` the y of joint ``j``); ``params`` are the data set's
``modality_params`` (``parents``, ``fps``, ``center``, ``scale``). Each figure is drawn in a square
cell whose view is the normalised box ``[-VIEW, VIEW]^2`` (y up), with the ground line at world
``y = 0``; left limbs blue, right limbs red.

- :func:`motion_preview`: one PNG, a grid of cells; each cell holds the paths of the hands, feet
  and head over time and four poses at evenly spaced frames, faint to solid (the trainer's grids
  and ``hwaksan sample --out``).
- :func:`motion_files`: ``STEM.gif``, the same grid animated at the clip's frame rate, one figure
  per cell.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["VIEW", "motion_files", "motion_names", "motion_preview", "render_pose"]

#: Half-width of the normalised box every cell shows.
VIEW = 1.0
_SS = 2  # supersampling of the drawing (smooth lines after the downscale)
_LEFT, _RIGHT, _MID = (40, 90, 200), (200, 50, 40), (30, 30, 30)


def _skeleton(params: dict[str, Any], joints: int) -> list[int]:
    parents = list(params.get("parents") or [])
    if len(parents) != joints:  # no skeleton recorded: joints alone
        return [-1] * joints
    return [int(p) for p in parents]


def _colour(j: int, params: dict[str, Any]) -> tuple[int, int, int]:
    names = params.get("joints") or []
    name = names[j] if j < len(names) else ""
    return _LEFT if name.startswith("l_") else _RIGHT if name.startswith("r_") else _MID


def _to_pixels(xy: np.ndarray, cell: int) -> np.ndarray:
    """Normalised ``(..., 2)`` -> pixel coordinates in a cell of side ``cell`` (y down)."""
    px = (xy[..., 0] + VIEW) / (2 * VIEW) * cell
    py = (VIEW - xy[..., 1]) / (2 * VIEW) * cell
    return np.stack([px, py], -1)


def _ground(params: dict[str, Any]) -> float:
    center = params.get("center") or [0.0, 0.0]
    return (0.0 - float(center[1])) / float(params.get("scale") or 1.0)


def _fade(colour: tuple[int, int, int], alpha: float) -> tuple[int, int, int]:
    return tuple(int(round(255 - alpha * (255 - c))) for c in colour)  # type: ignore[return-value]


def render_pose(draw: Any, pose: np.ndarray, params: dict[str, Any], cell: int, origin, alpha=1.0, width=2):
    """Draw one pose ``(J, 2)`` (normalised) into ``draw`` (a Pillow ``ImageDraw``) at the cell whose
    top-left corner is ``origin`` (pixels), faded towards white by ``1 - alpha``."""
    parents = _skeleton(params, pose.shape[0])
    pts = _to_pixels(pose, cell) + np.asarray(origin, dtype=np.float64)
    for j, p in enumerate(parents):
        if p >= 0:
            draw.line([tuple(pts[p]), tuple(pts[j])], fill=_fade(_colour(j, params), alpha), width=width)
    names = params.get("joints") or []
    if "head" in names:
        h = pts[names.index("head")]
        r = 0.07 / (2 * VIEW) * cell
        draw.ellipse([h[0] - r, h[1] - r, h[0] + r, h[1] + r], outline=_fade(_MID, alpha), width=width)
    if all(p < 0 for p in parents):
        for q in pts:
            draw.ellipse([q[0] - width, q[1] - width, q[0] + width, q[1] + width], fill=_fade(_MID, alpha))


def _poses(x: torch.Tensor) -> np.ndarray:
    """``(n, 2 J, T)`` -> ``(n, T, J, 2)`` float64."""
    if x.ndim != 3 or x.shape[1] % 2:
        raise ValueError(f"motion samples must be (n, 2 J, T), got {tuple(x.shape)}")
    n, d, t = x.shape
    return x.detach().double().cpu().numpy().reshape(n, d // 2, 2, t).transpose(0, 3, 1, 2)


def _layout(n: int, nrow: int | None) -> tuple[int, int]:
    cols = max(1, min(n, nrow or math.ceil(math.sqrt(n))))
    return cols, math.ceil(n / cols)


def _canvas(n: int, nrow: int | None, cell: int):
    from PIL import Image, ImageDraw

    cols, rows = _layout(n, nrow)
    image = Image.new("RGB", (cols * cell, rows * cell), "white")
    return image, ImageDraw.Draw(image), cols


def _cell_background(draw: Any, i: int, cols: int, cell: int, params: dict[str, Any]) -> tuple[int, int]:
    origin = ((i % cols) * cell, (i // cols) * cell)
    gy = _to_pixels(np.array([0.0, _ground(params)]), cell)[1] + origin[1]
    draw.line([(origin[0], gy), (origin[0] + cell, gy)], fill=(200, 200, 200), width=_SS)
    draw.rectangle(
        [origin[0], origin[1], origin[0] + cell - 1, origin[1] + cell - 1], outline=(225, 225, 225)
    )
    return origin


def motion_preview(x: torch.Tensor, path: Path, params: dict[str, Any], nrow: int | None) -> None:
    """One PNG of samples ``x (n, 2 J, T)``: per cell the paths of the extremities and four poses
    (module docstring); ``nrow`` cells per row (default: a square grid)."""
    from PIL import Image

    poses = _poses(x)
    n, t = poses.shape[:2]
    cell = 112 * _SS
    image, draw, cols = _canvas(n, nrow, cell)
    names = params.get("joints") or []
    tracked = [names.index(k) for k in ("head", "l_hand", "r_hand", "l_foot", "r_foot") if k in names]
    frames = sorted({round(k * (t - 1) / 3) for k in range(4)})
    for i in range(n):
        origin = _cell_background(draw, i, cols, cell, params)
        for j in tracked:
            path_px = _to_pixels(poses[i, :, j], cell) + np.asarray(origin, dtype=np.float64)
            draw.line([tuple(p) for p in path_px], fill=_fade(_colour(j, params), 0.35), width=_SS)
        for k, f in enumerate(frames):
            alpha = 0.3 + 0.7 * (k + 1) / len(frames)
            render_pose(draw, poses[i, f], params, cell, origin, alpha=alpha, width=2 * _SS)
    image = image.resize((image.width // _SS, image.height // _SS), Image.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def motion_names(stem: Path, n: int, params: dict[str, Any]) -> list[Path]:
    """The file :func:`motion_files` writes: ``STEM.gif``."""
    return [stem.with_suffix(".gif")]


def motion_files(x: torch.Tensor, stem: Path, params: dict[str, Any]) -> list[Path]:
    """Write ``STEM.gif``: all samples ``x (n, 2 J, T)`` animated, one frame per time step at
    ``params["fps"]``; returns its path."""
    from PIL import Image

    poses = _poses(x)
    n, t = poses.shape[:2]
    cell = 96 * _SS
    nrow = math.ceil(math.sqrt(n))
    frames = []
    for f in range(t):
        image, draw, cols = _canvas(n, nrow, cell)
        for i in range(n):
            origin = _cell_background(draw, i, cols, cell, params)
            render_pose(draw, poses[i, f], params, cell, origin, width=2 * _SS)
        frames.append(image.resize((image.width // _SS, image.height // _SS), Image.LANCZOS))
    (gif,) = motion_names(stem, n, params)
    gif.parent.mkdir(parents=True, exist_ok=True)
    duration = int(round(1000 / float(params.get("fps") or 16)))
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=duration, loop=0)
    return [gif]
