"""The data-set classifier behind "FD-<dataset>", class accuracy and class entropy.

:func:`dataset_classifier` trains a small clean :class:`~hwaksan.models.classifier.Classifier` on
the training split of a data set with a fixed seed and config (deterministic: the same weights on
the same machine), measures its accuracy on the held-out split, and caches it under
``$XDG_CACHE_HOME/hwaksan/classifiers/<dataset>-<H>x<W>-<config hash>/``:

- ``classifier.safetensors`` + ``classifier.json``: weights and metadata (config, accuracy), written
  by :func:`hwaksan.training.classifier.save_classifier`;
- ``checksum.json``: the SHA-256 of the weights file, written last. Loading recomputes it and
  refuses weights that changed (:class:`ClassifierChecksumError`).

Its penultimate features (``Classifier.features``, pooled, ``feature_dim``-d) are the feature space
of FD-<dataset>; its predictions give the class accuracy and the entropies of generated images.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ..data.images import dataset_info, load_dataset
from ..io.checkpoint import CheckpointError
from ..models.classifier import Classifier
from ..training.classifier import load_classifier, save_classifier, train_classifier
from .cache import cache_root, config_key, file_sha256, safe_name, write_json_atomic

__all__ = [
    "ClassifierChecksumError",
    "DatasetClassifier",
    "ClassEntropy",
    "classifier_config",
    "dataset_classifier",
    "classifier_logits",
    "class_accuracy",
    "class_entropy",
]

CACHE_VERSION = 1


class ClassifierChecksumError(CheckpointError):
    """The cached classifier's weights do not match the checksum written with them."""


@dataclass
class DatasetClassifier:
    """A trained, cached data-set classifier.

    Attributes:
        net: the classifier (eval mode, CPU).
        dataset: data-set name; ``image_size``: ``(H, W)`` it was trained at.
        accuracy: top-1 accuracy on the held-out split ``accuracy_split``.
        path: the checkpoint stem in the cache; ``sha256``: its weights' checksum.
        meta: the classifier checkpoint's metadata, as
            :func:`hwaksan.training.classifier.load_classifier` returns it.
    """

    net: Classifier
    dataset: str
    image_size: tuple[int, int]
    accuracy: float | None
    accuracy_split: str | None
    path: Path
    sha256: str
    meta: dict[str, Any]

    @property
    def name(self) -> str:
        """Name of its Frechet distance: ``FD-<dataset>``."""
        return f"FD-{self.dataset}"

    @property
    def feature_dim(self) -> int:
        return self.net.feature_dim


def classifier_config(dataset: str, image_size: tuple[int, int]) -> dict[str, Any]:
    """The fixed training config for a data set at ``image_size``: a 3-level, 16-channel network
    (feature_dim 64) for 16 px and up, 2 levels (32) below; 600 steps of 128 images (99.1% on the
    MNIST val split; about 2 minutes on 2 idle CPU cores), 300 of 64 on the 8x8 digits; seed 0."""
    small = min(image_size) < 16
    return {
        "net_args": {
            "model_channels": 16,
            "channel_mult": [1, 2] if small else [1, 2, 4],
            "num_res_blocks": 1,
            "attention": False,
        },
        "steps": 300 if small else 600,
        "batch_size": 64 if small else 128,
        "lr": 1e-2,
        "weight_decay": 0.05,
        "seed": 0,
    }


_LOADED: dict[str, DatasetClassifier] = {}


def _held_out_split(dataset: str) -> str | None:
    splits = dataset_info(dataset).splits or {}
    return "val" if "val" in splits else ("test" if "test" in splits else None)


def _native_size(dataset: str) -> tuple[int, int]:
    size = dataset_info(dataset).size
    if size is None:
        raise ValueError(f"{dataset!r} has images of mixed sizes: pass image_size")
    return tuple(size)


def _as_size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int):
        return (image_size, image_size)
    return (int(image_size[0]), int(image_size[1]))


def _load_verified(folder: Path, dataset: str, size: tuple[int, int]) -> DatasetClassifier:
    stem = folder / "classifier"
    record = _read_checksum(folder)
    actual = file_sha256(stem.with_name("classifier.safetensors"))
    if actual != record["sha256"]:
        raise ClassifierChecksumError(
            f"the cached {dataset} classifier in {folder} does not match its checksum "
            f"(sha256 {actual[:16]}..., "
            f"recorded {record['sha256'][:16]}...): the weights file changed. Delete {folder} to retrain it, "
            "or pass retrain=True"
        )
    net, _, meta = load_classifier(stem)
    return DatasetClassifier(
        net, dataset, size, record.get("accuracy"), record.get("accuracy_split"), stem, actual, meta
    )


def _read_checksum(folder: Path) -> dict[str, Any]:
    """The record :func:`dataset_classifier` writes beside the weights (``checksum.json``:
    ``sha256``, ``file``, ``accuracy``, ``accuracy_split``)."""
    try:
        return json.loads((folder / "checksum.json").read_text())
    except (OSError, ValueError) as err:
        raise ClassifierChecksumError(
            f"{folder}/checksum.json is unreadable ({err}): delete {folder}"
        ) from None


def dataset_classifier(
    dataset: str,
    image_size: int | tuple[int, int] | None = None,
    *,
    config: dict[str, Any] | None = None,
    cache_dir: str | os.PathLike | None = None,
    retrain: bool = False,
    progress: bool = True,
) -> DatasetClassifier:
    """The cached classifier of ``dataset`` at ``image_size``, trained on first use.

    Args:
        dataset: a data-set name of :func:`hwaksan.data.images.load_dataset` (with labels).
        image_size: ``(H, W)`` or an int; None: the data set's native size.
        config: training config (default :func:`classifier_config`); part of the cache key.
        cache_dir: overrides the user cache directory.
        retrain: train again and overwrite the cache entry.
        progress: show the training progress bar and a line on stderr.

    Raises:
        ClassifierChecksumError: the cached weights do not match their checksum.
        ValueError: the data set has no labels.
    """
    size = _as_size(image_size) or _native_size(dataset)
    config = config if config is not None else classifier_config(dataset, size)
    key = config_key({"v": CACHE_VERSION, "dataset": dataset, "size": list(size), "config": config})
    folder = cache_root(cache_dir) / "classifiers" / f"{safe_name(dataset)}-{size[0]}x{size[1]}-{key}"
    memo = str(folder)
    if not retrain and memo in _LOADED:
        return _LOADED[memo]
    if not retrain and (folder / "checksum.json").exists():
        clf = _load_verified(folder, dataset, size)
        _LOADED[memo] = clf
        return clf
    native = _native_size(dataset) if dataset_info(dataset).size is not None else None
    resize = None if native == size else size
    train = load_dataset(dataset, "train", resize)
    if train.labels is None:
        raise ValueError(f"{dataset!r} has no labels: FD-<dataset> needs a labelled data set")
    split = _held_out_split(dataset)
    val = load_dataset(dataset, split, resize) if split else None
    if progress:
        print(
            f"hwaksan: training the FD-{dataset} classifier ({config['steps']} steps, once; "
            f"cached in {folder})",
            file=sys.stderr,
        )
    result = train_classifier(
        train,
        net_args=config["net_args"],
        steps=config["steps"],
        batch_size=config["batch_size"],
        lr=config["lr"],
        weight_decay=config["weight_decay"],
        seed=config["seed"],
        val=val,
        progress=progress,
    )
    result.meta["evaluation"] = {
        "config": config,
        "dataset": dataset,
        "image_size": list(size),
        "split": split,
    }
    stem = folder / "classifier"
    save_classifier(stem, result)
    digest = file_sha256(stem.with_name("classifier.safetensors"))
    write_json_atomic(
        folder / "checksum.json",
        {
            "sha256": digest,
            "file": "classifier.safetensors",
            "accuracy": result.val_accuracy,
            "accuracy_split": split,
        },
    )
    if progress and result.val_accuracy is not None:
        print(
            f"hwaksan: FD-{dataset} classifier: {split} accuracy {result.val_accuracy:.4f}", file=sys.stderr
        )
    clf = _load_verified(folder, dataset, size)
    _LOADED[memo] = clf
    return clf


def _classifier_for(images: torch.Tensor, dataset: str, **kwargs: Any) -> DatasetClassifier:
    return dataset_classifier(dataset, tuple(images.shape[-2:]), **kwargs)


@torch.no_grad()
def classifier_logits(
    images: torch.Tensor, dataset: str, batch_size: int = 512, **kwargs: Any
) -> torch.Tensor:
    """Logits ``(N, K)`` of the data-set classifier for images ``(N, C, H, W)`` in [-1, 1] (trained
    at the images' size on first use; ``kwargs`` go to :func:`dataset_classifier`)."""
    net = _classifier_for(images, dataset, **kwargs).net.to(images.device)
    return torch.cat(
        [net(images[i : i + batch_size]).float().cpu() for i in range(0, len(images), batch_size)]
    )


def class_accuracy(images: torch.Tensor, labels: torch.Tensor, dataset: str, **kwargs: Any) -> float:
    """Share of ``images (N, C, H, W)`` that the data-set classifier assigns to ``labels (N,)``: the
    class accuracy of class-conditional samples (the classifier's own held-out accuracy bounds what
    it can confirm)."""
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    pred = classifier_logits(images, dataset, **kwargs).argmax(-1)
    return float((pred == labels.cpu()).double().mean())


class ClassEntropy(NamedTuple):
    """Entropies in nats of the data-set classifier's predictions on a set of images.

    ``conditional``: mean over images of ``H[p(y | x)]`` (low: each image is clearly one class);
    ``marginal``: entropy of the histogram of predicted classes (``log K`` when all classes are
    equally frequent, 0 when one class takes all); ``max``: ``log K``.
    """

    conditional: float
    marginal: float
    max: float


def class_entropy(images: torch.Tensor, dataset: str, **kwargs: Any) -> ClassEntropy:
    """:class:`ClassEntropy` of ``images (N, C, H, W)`` under the data-set classifier."""
    logits = classifier_logits(images, dataset, **kwargs).double()
    logp = logits.log_softmax(-1)
    conditional = float(-(logp.exp() * logp).sum(-1).mean())
    k = logits.shape[1]
    hist = torch.bincount(logits.argmax(-1), minlength=k).double()
    p = hist / hist.sum()
    marginal = float(-(p[p > 0] * p[p > 0].log()).sum())
    return ClassEntropy(conditional, marginal, math.log(k))
