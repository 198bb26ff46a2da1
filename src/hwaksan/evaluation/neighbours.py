"""Nearest training neighbours of generated images: the memorisation audit.

A model that memorises returns (near-)copies of training images. For each generated image the L2
distance in pixel space to its closest training image is compared with the same distance for
held-out real images, which the model never saw: generated images much closer to the training set
than held-out images are (a distance near 0, or a ratio well below 1) are copies.
:func:`save_neighbour_grid` shows the closest pairs so a person can judge.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..plotting import save_image_grid

__all__ = ["nearest_neighbours", "neighbour_summary", "save_neighbour_grid"]

_BLOCK = 2**22  # entries of a distance block: 32 MiB of float64


def nearest_neighbours(
    fake: torch.Tensor, train: torch.Tensor, k: int = 1, batch_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest rows of ``train`` to each row of ``fake`` in L2 over all pixels.

    Args:
        fake: ``(N, *shape)`` images (or vectors).
        train: ``(M, *shape)`` with the same ``shape``.
        k: neighbours per image.
        batch_size: rows of ``fake`` per block (default: a block of ~32 MiB of distances).

    Returns:
        ``(distances (N, k) float64 ascending, indices (N, k) long into train)``. Distances use
        ``|a|^2 + |b|^2 - 2 a.b`` in float64 (round-off ~1e-7 of the norms), clamped at 0.
    """
    a = torch.as_tensor(fake).detach().flatten(1).to(torch.float64)
    b = torch.as_tensor(train).detach().flatten(1).to(device=a.device, dtype=torch.float64)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"fake and train differ in size: {tuple(fake.shape[1:])} vs {tuple(train.shape[1:])}"
        )
    if not 1 <= k <= b.shape[0]:
        raise ValueError(f"k must be in 1..{b.shape[0]} (the training set size), got {k}")
    rows = batch_size or max(1, _BLOCK // b.shape[0])
    b_sq = (b * b).sum(1)
    dists, idx = [], []
    for i in range(0, a.shape[0], rows):
        q = a[i : i + rows]
        d2 = ((q * q).sum(1, keepdim=True) + b_sq[None, :] - 2 * q @ b.T).clamp_min_(0)
        v, j = d2.topk(k, dim=1, largest=False)
        dists.append(v.sqrt())
        idx.append(j)
    return torch.cat(dists), torch.cat(idx)


def neighbour_summary(dist_fake: torch.Tensor, dist_real: torch.Tensor | None = None) -> dict[str, float]:
    """Quantiles of the nearest-neighbour distances ``(N,)`` of generated images and, given the
    distances of held-out real images, the same for them and the ratio of the medians."""
    d = dist_fake.double().flatten()
    q = torch.tensor([0.0, 0.01, 0.5], dtype=torch.float64)
    lo, p1, med = torch.quantile(d, q).tolist()
    out = {"min": lo, "p01": p1, "median": med, "mean": float(d.mean()), "n": int(d.numel())}
    if dist_real is not None:
        r = dist_real.double().flatten()
        r_lo, r_p1, r_med = torch.quantile(r, q).tolist()
        out.update(
            heldout_min=r_lo,
            heldout_p01=r_p1,
            heldout_median=r_med,
            heldout_n=int(r.numel()),
            median_ratio=med / r_med if r_med > 0 else float("nan"),
        )
    return out


def save_neighbour_grid(
    fake: torch.Tensor,
    train: torch.Tensor,
    dist: torch.Tensor,
    idx: torch.Tensor,
    path: str | Path,
    n: int = 16,
    per_row: int = 8,
    scale: int | None = None,
) -> Path:
    """PNG of the ``n`` generated images closest to the training set: blocks of two rows, generated
    images on top, each one's nearest training image below it.

    Args:
        fake: generated images ``(N, C, H, W)`` in [-1, 1].
        train: training images ``(M, C, H, W)``.
        dist, idx: ``(N,)`` or ``(N, k)`` from :func:`nearest_neighbours` (the first column is used).
        path: output PNG.
        n: number of pairs shown (the closest ones).
        per_row: pairs per block.
        scale: pixel magnification (default: about 64 px per image).
    """
    d, j = dist.reshape(len(fake), -1)[:, 0], idx.reshape(len(fake), -1)[:, 0]
    order = d.argsort()[: min(n, len(fake))]
    tiles = []
    for start in range(0, len(order), per_row):
        block = order[start : start + per_row]
        pad = per_row - len(block)
        top, bottom = fake[block].cpu(), train[j[block]].cpu()
        if pad:
            blank = torch.ones((pad, *fake.shape[1:]))
            top, bottom = torch.cat([top, blank]), torch.cat([bottom, blank])
        tiles += [top, bottom]
    scale = scale or max(1, 64 // max(fake.shape[-2:]))
    return save_image_grid(torch.cat(tiles), path, nrow=per_row, scale=scale)
