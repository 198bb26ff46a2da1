"""Feature spaces for image metrics, and cached statistics of real data in them.

Two spaces (see ``docs/evaluation.md`` for why neither number equals FID):

========== ===================== ==== =================================================================
space      metric name           dim  network
========== ===================== ==== =================================================================
effnet     FD-EffNet             1280 EfficientNet-Lite0, ImageNet weights, 128x128 input
classifier FD-<dataset>          64   a small classifier hwaksan trains on the data set itself
                                      (:func:`~hwaksan.evaluation.classifier.dataset_classifier`)
========== ===================== ==== =================================================================

:func:`real_statistics` computes the features of ``n`` real images (a seeded random subset of a
split), their mean and covariance, once, and caches them under
``$XDG_CACHE_HOME/hwaksan/statistics/`` keyed by data set, split, size, space, ``n``, seed and the
feature network's identity (the classifier's weights checksum). Once the whole split is cached
(``n=None``), subsets are taken from its features without running the network again.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.images import dataset_info, load_dataset
from .cache import cache_root, config_key, load_entry, safe_name, save_entry
from .classifier import dataset_classifier
from .effnet import FEATURE_DIM, RESOLUTION, effnet_features
from .frechet import gaussian_statistics

__all__ = [
    "SPACES",
    "space_name",
    "image_features",
    "cached_image_features",
    "RealStatistics",
    "real_statistics",
    "load_split",
]

SPACES = ("effnet", "classifier")
_REAL_KIND = "hwaksan-real-statistics"
_SAMPLE_KIND = "hwaksan-sample-features"


def space_name(space: str, dataset: str | None = None) -> str:
    """The metric name of a feature space: ``FD-EffNet`` or ``FD-<dataset>``."""
    _check_space(space, dataset)
    return "FD-EffNet" if space == "effnet" else f"FD-{dataset}"


def _check_space(space: str, dataset: str | None) -> None:
    if space not in SPACES:
        raise ValueError(f"unknown feature space {space!r}; choose one of {', '.join(SPACES)}")
    if space == "classifier" and not dataset:
        raise ValueError("the 'classifier' feature space needs dataset= (the data set its classifier learns)")


@torch.no_grad()
def image_features(
    images: torch.Tensor,
    space: str,
    dataset: str | None = None,
    batch_size: int = 256,
    progress: bool = False,
    **classifier_kwargs: Any,
) -> torch.Tensor:
    """Features ``(N, F)`` (float32, CPU) of images ``(N, C, H, W)`` in [-1, 1].

    Args:
        images: the images; for ``"classifier"`` at the size the classifier should see (it is
            trained at that size on first use).
        space: ``"effnet"`` (F = 1280) or ``"classifier"`` (F = the classifier's feature_dim).
        dataset: the data set of the ``"classifier"`` space.
        batch_size: images per forward pass.
        progress: show a progress bar.
        classifier_kwargs: passed to :func:`dataset_classifier` (``cache_dir``, ``config``, ...).
    """
    _check_space(space, dataset)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    if space == "effnet":
        return effnet_features(images, batch_size=batch_size, progress=progress)
    clf = dataset_classifier(dataset, tuple(images.shape[-2:]), progress=progress, **classifier_kwargs)
    net = clf.net.to(images.device)
    out = [net.features(images[i : i + batch_size]).float().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.empty(0, clf.feature_dim)


def _space_identity(
    space: str, dataset: str, size: tuple[int, int], progress: bool, classifier_kwargs: dict
) -> dict:
    if space == "effnet":
        return {"network": "efficientnet-lite0", "resolution": RESOLUTION, "dim": FEATURE_DIM}
    clf = dataset_classifier(dataset, size, progress=progress, **classifier_kwargs)
    return {"network": "dataset-classifier", "sha256": clf.sha256, "dim": clf.feature_dim}


@dataclass
class RealStatistics:
    """Statistics of real images in a feature space.

    ``mu (F,)`` and ``cov (F, F)`` float64; ``feats (n, F)`` the features themselves (for
    precision / recall); ``indices (n,)`` which images of the split; ``name`` the metric name.
    """

    mu: torch.Tensor
    cov: torch.Tensor
    feats: torch.Tensor
    indices: torch.Tensor
    dataset: str
    split: str
    space: str
    name: str
    seed: int

    @property
    def n(self) -> int:
        return int(self.feats.shape[0])


def load_split(dataset: str, split: str, image_size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """Images ``(N, C, H, W)`` of a split, resized when ``image_size`` differs from the native size."""
    size = (
        None
        if image_size is None
        else (image_size, image_size)
        if isinstance(image_size, int)
        else image_size
    )
    native = dataset_info(dataset).size
    return load_dataset(dataset, split, None if size is None or tuple(size) == native else tuple(size)).images


def subset_indices(total: int, n: int | None, seed: int) -> torch.Tensor:
    """``n`` distinct indices of ``0..total-1`` drawn with ``seed`` (sorted); all when ``n`` is None."""
    if n is None or n == total:
        return torch.arange(total)
    if not 1 <= n <= total:
        raise ValueError(f"asked for {n} real images but the split has {total}: lower n")
    return torch.randperm(total, generator=torch.Generator().manual_seed(int(seed)))[:n].sort().values


def real_statistics(
    dataset: str,
    split: str,
    space: str,
    n: int | None = None,
    *,
    seed: int = 0,
    image_size: int | tuple[int, int] | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    **classifier_kwargs: Any,
) -> RealStatistics:
    """Mean, covariance and features of ``n`` real images of ``dataset``'s ``split`` in ``space``,
    computed once and cached (module docstring).

    Args:
        dataset, split: which images (``n`` of them drawn at random with ``seed``; all when None).
        space: ``"effnet"`` or ``"classifier"``.
        image_size: resize the images first (the size generated images have); None: native.
        cache_dir: overrides the user cache directory (also for the classifier).
        progress: progress bars while computing.
        classifier_kwargs: passed to :func:`dataset_classifier` (``config``, ...).
    """
    _check_space(space, dataset)
    images = None
    info = dataset_info(dataset)
    size = (
        info.size
        if image_size is None
        else (image_size, image_size)
        if isinstance(image_size, int)
        else image_size
    )
    if size is None:
        images = load_split(dataset, split, None)
        size = tuple(images.shape[-2:])
    size = tuple(int(s) for s in size)
    total = (info.splits or {}).get(split)
    if total is None:
        images = images if images is not None else load_split(dataset, split, size)
        total = len(images)
    indices = subset_indices(total, n, seed)
    ident = _space_identity(space, dataset, size, progress, {"cache_dir": cache_dir, **classifier_kwargs})
    name = space_name(space, dataset)

    def entry(count: int, s: int) -> tuple[str, Path]:
        desc = {"dataset": dataset, "split": split, "size": list(size), "n": count, "seed": s, **ident}
        key = config_key(desc)
        tag = f"{safe_name(dataset)}-{split}-{size[0]}x{size[1]}-{space}-n{count}-s{s}-{key}"
        return key, cache_root(cache_dir) / "statistics" / tag

    def cached(count: int, s: int) -> dict[str, torch.Tensor] | None:
        key, stem = entry(count, s)
        tensors = load_entry(stem, _REAL_KIND, key)  # None: computed and written again
        return tensors if tensors is not None and "feats" in tensors else None

    if len(indices) == total:
        seed = 0  # the whole split: the seed picks nothing
    hit = cached(len(indices), seed)
    if hit is not None:
        return RealStatistics(
            hit["mu"], hit["cov"], hit["feats"], hit["indices"], dataset, split, space, name, seed
        )
    full = cached(total, 0) if len(indices) < total else None  # features of the whole split, if cached
    if full is not None:
        feats = full["feats"][indices]
    else:
        images = images if images is not None else load_split(dataset, split, size)
        feats = image_features(
            images[indices], space, dataset, progress=progress, cache_dir=cache_dir, **classifier_kwargs
        )
    mu, cov = gaussian_statistics(feats)
    key, stem = entry(len(indices), seed)
    save_entry(stem, _REAL_KIND, key, {"mu": mu, "cov": cov, "feats": feats, "indices": indices},
               dataset=dataset, split=split, space=space, size=list(size), n=len(indices), seed=seed,
               identity=ident)  # fmt: skip
    return RealStatistics(mu, cov, feats, indices, dataset, split, space, name, seed)


def cached_image_features(
    images: torch.Tensor,
    space: str,
    dataset: str | None,
    folder: str | os.PathLike | None,
    *,
    progress: bool = False,
    cache_dir: str | os.PathLike | None = None,
    **classifier_kwargs: Any,
) -> torch.Tensor:
    """:func:`image_features` of ``images (N, C, H, W)``, kept in ``folder`` (a sample folder of
    ``hwaksan evaluate``) so that a resumed or repeated evaluation does not run the feature network
    on the same images again. The entry is keyed by the SHA-256 of the image bytes and the feature
    network's identity (the classifier's weights checksum), so other images or another network never
    reuse it. ``folder=None``: no cache."""
    if folder is None:
        return image_features(images, space, dataset, progress=progress, cache_dir=cache_dir,
                              **classifier_kwargs)  # fmt: skip
    _check_space(space, dataset)
    size = tuple(int(s) for s in images.shape[-2:])
    ident = _space_identity(
        space, dataset or "", size, progress, {"cache_dir": cache_dir, **classifier_kwargs}
    )
    digest = hashlib.sha256(images.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()
    key = config_key({"images": digest, "shape": list(images.shape), **ident})
    stem = Path(folder) / f"features-{space}-n{len(images)}-{key}"
    hit = load_entry(stem, _SAMPLE_KIND, key)  # None: computed and written again
    if hit is not None and "feats" in hit:
        return hit["feats"]
    feats = image_features(
        images, space, dataset, progress=progress, cache_dir=cache_dir, **classifier_kwargs
    )
    save_entry(stem, _SAMPLE_KIND, key, {"feats": feats}, space=space, n=len(images), identity=ident)
    return feats
