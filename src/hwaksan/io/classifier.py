"""Classifier checkpoints (``hwaksan train-classifier``): safetensors + JSON with
``kind = "hwaksan-classifier"``, written atomically.

The writer describes a classifier with :func:`classifier_metadata` and saves it with
:func:`save_classifier`; :func:`load_classifier` reads it back as a :class:`ClassifierCheckpoint`
(the network, the process it was trained on, the metadata), so no other module reads these keys.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ..models.classifier import Classifier
from ..processes import Process, process_from_config
from .checkpoint import CheckpointError, load_tensors, save_tensors

__all__ = [
    "CLASSIFIER_KIND",
    "ClassifierCheckpoint",
    "classifier_metadata",
    "save_classifier",
    "load_classifier",
]

CLASSIFIER_KIND = "hwaksan-classifier"


def classifier_metadata(
    net: Classifier,
    *,
    process: Process | None,
    sigma_data: float,
    t_dist: str,
    dataset: str,
    image_shape: Sequence[int],
    class_names: Sequence[str] | None,
    train: dict[str, Any],
    val_accuracy: float | None,
    seconds: float,
) -> dict[str, Any]:
    """The JSON of a classifier checkpoint.

    Args:
        net: the trained classifier.
        process: the process its inputs were noised with (None: a clean classifier).
        sigma_data: the data std of its input scaling.
        t_dist: the training time distribution (recorded for noise-aware classifiers only).
        dataset: the training set's name.
        image_shape: ``(C, H, W)`` of its inputs.
        class_names: the names of the classes, if known.
        train: the training settings (steps, batch size, lr, ...).
        val_accuracy: held-out accuracy, if measured.
        seconds: training time.
    """
    return {
        "kind": CLASSIFIER_KIND,
        "network": {"class": "Classifier", "config": net.config},
        "process": process.config() if process is not None else None,
        "sigma_data": sigma_data,
        "t_dist": t_dist if process is not None else None,
        "data": {"name": dataset, "image_shape": [int(v) for v in image_shape]},
        "class_names": list(class_names) if class_names else None,
        "train": dict(train),
        "val_accuracy": val_accuracy,
        "seconds": seconds,
    }


def save_classifier(
    path: str | os.PathLike, net: Classifier, losses: Sequence[float], meta: dict[str, Any]
) -> Path:
    """Write ``PATH.safetensors`` (weights under ``model.``, the loss history) and ``PATH.json``
    (``meta`` from :func:`classifier_metadata`) atomically; returns the ``.safetensors`` path."""
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    tensors["history.loss"] = torch.tensor(list(losses), dtype=torch.float64)
    return save_tensors(path, tensors, meta)


class ClassifierCheckpoint(NamedTuple):
    """A classifier read back: unpacks as ``(net, process, meta)``."""

    net: Classifier
    process: Process | None
    meta: dict[str, Any]

    @property
    def sigma_data(self) -> float:
        """The data std of the input scaling it was trained with."""
        return float(self.meta.get("sigma_data", 0.5))

    @property
    def num_classes(self) -> int:
        return int(self.net.config["num_classes"])


def load_classifier(path: str | os.PathLike) -> ClassifierCheckpoint:
    """Read a classifier written by :func:`save_classifier` (eval mode).

    Raises:
        CheckpointError: not a classifier checkpoint, or weights that do not fit.
    """
    tensors, meta = load_tensors(path)
    if meta.get("kind") != CLASSIFIER_KIND:
        raise CheckpointError(
            f"{path} is not a classifier checkpoint (kind {meta.get('kind')!r}): train one with "
            "hwaksan train-classifier"
        )
    try:
        net = Classifier(**meta["network"]["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: malformed classifier metadata: {err}") from None
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the classifier: {err}") from None
    process = process_from_config(meta["process"]) if meta.get("process") else None
    return ClassifierCheckpoint(net.eval(), process, meta)
