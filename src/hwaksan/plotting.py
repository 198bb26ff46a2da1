"""Pictures for people: 2-D samples, trajectories, metric-vs-NFE curves, loss curves, image grids.

Uses matplotlib's non-interactive Agg backend; every function writes a PNG and returns its path.
matplotlib is imported on the first plot (:func:`_pyplot`), so importing this module, and every
command that may draw, costs nothing until a picture is made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "plot_samples_2d",
    "plot_trajectories_2d",
    "plot_metric_vs_nfe",
    "plot_loss",
    "image_grid",
    "save_image_grid",
]


def _pyplot():
    """matplotlib's pyplot on the Agg backend (imported on first use: a heavy optional package)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _np(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def plot_samples_2d(
    panels: Mapping[str, torch.Tensor], path: str | Path, lim: float = 3.5, cols: int = 3
) -> Path:
    """Scatter plots of 2-D sample sets, one panel per entry (e.g. "data", "heun, 10 NFE")."""
    plt = _pyplot()
    n = len(panels)
    cols = min(cols, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (title, x) in zip(axes.flat, panels.items(), strict=False):
        x = _np(x)
        ax.scatter(x[:, 0], x[:, 1], s=1.5, alpha=0.5, color="C0" if title != "data" else "k")
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_trajectories_2d(
    trajectory: Sequence[torch.Tensor], path: str | Path, data: torch.Tensor | None = None, lim: float = 3.5
) -> Path:
    """Paths of a few points from noise (black crosses) to samples (blue) over the data (light grey)."""
    plt = _pyplot()
    traj = np.stack([_np(x) for x in trajectory])  # (steps, n, 2)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if data is not None:
        d = _np(data)
        ax.scatter(d[:, 0], d[:, 1], s=1, color="0.75", alpha=0.5, label="data")
    for i in range(traj.shape[1]):
        ax.plot(traj[:, i, 0], traj[:, i, 1], lw=0.6, color="C1", alpha=0.7)
    ax.scatter(traj[0, :, 0], traj[0, :, 1], s=10, color="k", marker="x", lw=0.8, label="noise")
    ax.scatter(traj[-1, :, 0], traj[-1, :, 1], s=8, color="C0", label="sample", zorder=3)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("denoising trajectories", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_metric_vs_nfe(
    curves: Mapping[str, Sequence[tuple[int, float]]],
    path: str | Path,
    ylabel: str,
    dashed: Sequence[str] = (),
    title: str | None = None,
    legend_outside: bool = False,
    highlight: Sequence[str] = (),
) -> Path:
    """Log-log curves of a metric against the number of network evaluations, one per sampler.
    ``legend_outside``: a wider figure with the legend to the right of the axes and 20 distinct
    colours (for many curves); ``highlight``: curves drawn thick and black."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10.5, 5.5) if legend_outside else (5.5, 4))
    colours = plt.get_cmap("tab20").colors if legend_outside else [None] * len(curves)
    for i, (name, pts) in enumerate(curves.items()):
        pts = sorted(pts)
        ax.plot(
            [p[0] for p in pts],
            [max(p[1], 1e-12) for p in pts],
            marker="o",
            ms=3,
            ls="--" if name in dashed else "-",
            label=name,
            color="black" if name in highlight else (colours[i % len(colours)] if legend_outside else None),
            lw=2.5 if name in highlight else 1.5,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("NFE")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if legend_outside:
        ax.legend(fontsize=6.5, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    else:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_loss(losses: Sequence[float], path: str | Path, smooth: int = 50) -> Path:
    """Training loss (raw and moving average) against the step."""
    plt = _pyplot()
    y = np.asarray(losses, dtype=float)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(y, lw=0.5, alpha=0.4, label="loss")
    if len(y) >= smooth:
        k = np.ones(smooth) / smooth
        ax.plot(np.arange(smooth - 1, len(y)), np.convolve(y, k, mode="valid"), label=f"mean of {smooth}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def image_grid(images: torch.Tensor, nrow: int | None = None, scale: int = 1):
    """``(N, C, H, W)`` images in [-1, 1] as one ``PIL.Image`` grid (2-pixel white gaps, ``nrow``
    per row, default a square; each pixel magnified ``scale`` times, nearest neighbour). Grey-scale
    for ``C = 1``, else RGB."""
    from PIL import Image

    x = ((images.detach().cpu().float().clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    n, c, h, w = x.shape
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    rows = (n + nrow - 1) // nrow
    gap = 2
    # every image with its gap below and to the right, in rows of nrow: one reshape, no loop
    cells = np.full((rows * nrow, h + gap, w + gap, c), 255, dtype=np.uint8)
    cells[:n, :h, :w] = x.transpose(0, 2, 3, 1)
    tiled = cells.reshape(rows, nrow, h + gap, w + gap, c).transpose(0, 2, 1, 3, 4)
    arr = np.full((rows * (h + gap) + gap, nrow * (w + gap) + gap, c), 255, dtype=np.uint8)
    arr[gap:, gap:] = tiled.reshape(rows * (h + gap), nrow * (w + gap), c)
    img = Image.fromarray(arr[..., 0] if c == 1 else arr)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 1) -> Path:
    """Save ``(N, C, H, W)`` images in [-1, 1] as one PNG grid (2-pixel white gaps; :func:`image_grid`)."""
    image_grid(images, nrow, scale).save(path)
    return Path(path)
