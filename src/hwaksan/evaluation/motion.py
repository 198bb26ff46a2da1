"""Measuring motion samples: hand-crafted features, Frechet distance, diversity, smoothness.

Motions are ``x (N, 2 J, T)`` in the layout of :mod:`hwaksan.data.motion` (channel ``2 j`` the x,
``2 j + 1`` the y of joint ``j``; joint 0 the root).

- :func:`motion_features`: per-sequence features ``(N, F)``: the mean and standard deviation over
  time of every other joint relative to the root, the root's displacement over the clip and the spread of
  its height, the mean and spread of every joint's speed, the mean acceleration of every joint and
  the mean length of every bone. No network: the features mean the same for every model.
- :class:`FeatureScaler` z-scores features with the statistics of a real reference set, so each
  feature counts once in the distances below (the raw ones differ in scale by 100x).
- :func:`motion_fd`: the Frechet distance between Gaussian fits of the scaled features of two sets
  (a "motion FD on hand-crafted features", not MDM's FID, whose encoder we do not have).
- :func:`diversity` and :func:`multimodality` (Guo et al. 2020, Action2Motion, sec. 5.1, as MDM
  reports them): the mean distance between the features of ``S`` random pairs of the set, and of
  ``S`` random pairs within each class, averaged over classes.
- :func:`frame_jumps`: the largest joint displacement between consecutive frames ``(N, T - 1)``;
  an in-betweened sequence is smooth when none exceeds the real data's 99th percentile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data.motion import PARENTS
from .frechet import frechet_distance

__all__ = [
    "FeatureScaler",
    "diversity",
    "frame_jumps",
    "motion_fd",
    "motion_features",
    "multimodality",
]


def _joints(x: torch.Tensor) -> torch.Tensor:
    """``(N, 2 J, T)`` -> ``(N, J, 2, T)`` float64."""
    if x.ndim != 3 or x.shape[1] % 2:
        raise ValueError(f"motions must be (N, 2 J, T), got {tuple(x.shape)}")
    return x.double().reshape(x.shape[0], x.shape[1] // 2, 2, x.shape[2])


def motion_features(x: torch.Tensor, parents: Sequence[int] = PARENTS) -> torch.Tensor:
    """Hand-crafted features ``(N, 7 J - 1 + n_bones)`` of motions ``x (N, 2 J, T)`` (module doc)."""
    p = _joints(x)
    n, j = p.shape[:2]
    rel = p[:, 1:] - p[:, :1]  # the other joints relative to the root
    vel = p.diff(dim=-1)
    speed = vel.norm(dim=2)  # (N, J, T-1)
    acc = vel.diff(dim=-1).norm(dim=2)  # (N, J, T-2)
    root = p[:, 0]  # (N, 2, T)
    child = [k for k, q in enumerate(parents) if q >= 0]
    parent = [parents[k] for k in child]
    if len(parents) != j:
        raise ValueError(f"motions have {j} joints but the skeleton has {len(parents)}")
    bones = (p[:, child] - p[:, parent]).norm(dim=2).mean(-1)  # (N, n_bones)
    return torch.cat(
        [
            rel.mean(-1).reshape(n, -1),
            rel.std(-1).reshape(n, -1),
            root[:, :, -1] - root[:, :, 0],
            root[:, 1].std(-1, keepdim=True),
            speed.mean(-1),
            speed.std(-1),
            acc.mean(-1),
            bones,
        ],
        dim=1,
    )


@dataclass(frozen=True)
class FeatureScaler:
    """``(f - mean) / std`` with the statistics of a reference set (features ``(N, F)``).

    A feature (nearly) constant in the reference (the hips' offsets from the root in a rigid
    skeleton) gets the floor ``std = 0.1 x`` the median feature's, so a deviation there counts
    like a large one elsewhere instead of dividing by zero.
    """

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, feats: torch.Tensor) -> FeatureScaler:
        feats = feats.double()
        std = feats.std(0)
        return cls(feats.mean(0), std.clamp_min(0.1 * float(std.median()) + 1e-12))

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        return (feats.double() - self.mean) / self.std


def motion_fd(real: torch.Tensor, fake: torch.Tensor, scaler: FeatureScaler | None = None) -> float:
    """Frechet distance between the scaled :func:`motion_features` of motions ``real`` and ``fake``
    ``(N, 2 J, T)``; the scaler defaults to one fitted on ``real``."""
    fr, ff = motion_features(real), motion_features(fake)
    scaler = scaler or FeatureScaler.fit(fr)
    return frechet_distance(scaler(fr), scaler(ff))


def diversity(feats: torch.Tensor, pairs: int = 200, seed: int = 0) -> float:
    """Mean distance between the features ``(N, F)`` of ``pairs`` random pairs (Guo et al. 2020):
    two disjoint random subsets of ``min(pairs, N // 2)`` samples, paired in order."""
    n = feats.shape[0]
    s = min(pairs, n // 2)
    if s < 1:
        raise ValueError("diversity needs at least 2 samples")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    a, b = feats[perm[:s]].double(), feats[perm[s : 2 * s]].double()
    return float((a - b).norm(dim=1).mean())


def multimodality(feats: torch.Tensor, labels: torch.Tensor, pairs: int = 20, seed: int = 0) -> float:
    """:func:`diversity` within each class (``pairs`` pairs each), averaged over the classes with at
    least two samples (Guo et al. 2020)."""
    values = []
    for k, c in enumerate(labels.unique().tolist()):
        idx = (labels == c).nonzero().flatten()
        if idx.numel() >= 2:
            values.append(diversity(feats[idx], pairs, seed + k))
    if not values:
        raise ValueError("multimodality needs a class with at least 2 samples")
    return float(sum(values) / len(values))


def frame_jumps(x: torch.Tensor) -> torch.Tensor:
    """The largest joint displacement between frames ``t`` and ``t + 1``: ``(N, T - 1)``."""
    return _joints(x).diff(dim=-1).norm(dim=2).amax(dim=1)
