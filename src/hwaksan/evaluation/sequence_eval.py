"""``hwaksan evaluate`` for clip and motion models: the measures of the modality against held-out data.

A model of Moving-MNIST clips (``modality = "video"``) is measured by
:func:`hwaksan.evaluation.video.video_metrics` (identity kept across frames, class accuracy of the
frames, motion of the digit against real clips', per-frame FD in the MNIST classifier's space)
against the data set's ``val`` clips; its floor row is the same measures of the ``test`` clips.

A model of stick-figure motions (``modality = "motion"``) is measured by
:mod:`hwaksan.evaluation.motion`: the accuracy of a held-out action classifier trained on the
``train`` motions, the Frechet distance of hand-crafted motion features to the ``val`` motions,
diversity, multimodality and the share of frame-to-frame jumps above the real 99th percentile; its
floor row is the ``val`` motions themselves (the classifier's held-out accuracy, FD val vs train).

Both take the samples of :func:`hwaksan.evaluation.generate.generate_samples` (resumable shards, any
output shape); with ``seeds > 1`` each measure is the mean and std over the runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..data.catalog import load_data
from ..io.artifact import TrainedModel
from .lowdim_eval import spread
from .motion import FeatureScaler, diversity, frame_jumps, motion_fd, motion_features, multimodality
from .motion_classifier import classifier_accuracy, train_motion_classifier
from .video import Readout, mnist_readout, video_metrics

__all__ = ["SEQUENCE_METRICS", "sequence_metrics"]

SEQUENCE_METRICS = ("video", "motion")
"""One metric group per sequence modality: ``video`` for clip models, ``motion`` for motion models."""

MIN_REAL = 500
"""Real sequences of the reference (at least; as many as the generated ones above it)."""


def _data(model: TrainedModel, split: str, n: int | None = None):
    """The split of the model's data set, with the loader arguments it was trained with (and ``n``
    sequences where given: the procedural clips take a count)."""
    args = dict(((model.config or {}).get("data") or {}).get("args") or {})
    if n is not None:
        args["n"] = n
    return load_data(str(model.dataset), split, None, args)


def _runs(x: torch.Tensor, labels: torch.Tensor | None, n: int, seeds: int):
    """Seed run ``s``'s samples and labels: rows ``s n .. (s + 1) n - 1``."""
    for s in range(seeds):
        yield x[s * n : (s + 1) * n], None if labels is None else labels[s * n : (s + 1) * n]


def _per_seed(rows: Sequence[dict[str, float]]) -> dict[str, Any]:
    return {k: spread([r[k] for r in rows]) for k in rows[0]}


def video_report(
    model: TrainedModel,
    x: torch.Tensor,
    labels: torch.Tensor | None,
    n: int,
    seeds: int,
    readout: Readout | None = None,
) -> dict[str, Any]:
    """The ``video`` metric group of clips ``x (seeds * n, 1, F, H, W)``: the measures of
    :func:`~hwaksan.evaluation.video.video_metrics` per seed run against ``val`` clips, and the
    ``test`` clips' as the floor."""
    n_real = max(n, MIN_REAL)
    real, other = _data(model, "val", n_real), _data(model, "test", n_real)
    readout = readout or mnist_readout()
    rows = [video_metrics(xs, real.images, ys, readout) for xs, ys in _runs(x, labels, n, seeds)]
    floor = video_metrics(other.images, real.images, other.labels, readout)
    generated = {k: v for k, v in _per_seed(rows).items() if not k.endswith("_real")}
    return {
        "generated": generated,
        "real": {k: floor[k] for k in generated},
        "n_fake": n,
        "n_real": len(real.images),
        "reference": "val clips; floor: test clips",
    }


def motion_report(
    model: TrainedModel, x: torch.Tensor, labels: torch.Tensor | None, n: int, seeds: int
) -> dict[str, Any]:
    """The ``motion`` metric group of motions ``x (seeds * n, D, T)`` (module docstring)."""
    train, val = _data(model, "train"), _data(model, "val")
    scaler = FeatureScaler.fit(motion_features(train.images))
    p99 = float(torch.quantile(frame_jumps(val.images).flatten().double(), 0.99))
    k = train.num_classes or int(train.labels.max()) + 1
    clf = train_motion_classifier(train.images, train.labels, k) if labels is not None else None

    def measures(y: torch.Tensor, y_labels: torch.Tensor | None, reference: torch.Tensor) -> dict[str, float]:
        feats = scaler(motion_features(y))
        row = {
            "fd": motion_fd(reference, y, scaler),
            "diversity": diversity(feats),
            "jumps_over_real_p99": float((frame_jumps(y) > p99).double().mean()),
        }
        if clf is not None and y_labels is not None:
            row["accuracy"] = classifier_accuracy(clf, y, y_labels)
            row["multimodality"] = multimodality(feats, y_labels)
        return row

    rows = [measures(xs, ys, val.images) for xs, ys in _runs(x, labels, n, seeds)]
    return {
        "generated": _per_seed(rows),
        "real": measures(val.images, val.labels, train.images),
        "n_fake": n,
        "n_real": len(val.images),
        "reference": "val motions; floor: val vs train motions (classifier trained on train)",
    }


def sequence_metrics(
    model: TrainedModel,
    x: torch.Tensor,
    labels: torch.Tensor | None,
    metric: str,
    n: int,
    seeds: int,
    *,
    cache_dir: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The metric group ``metric`` (:data:`SEQUENCE_METRICS`) of samples ``x (seeds * n, ...)``
    (labels ``(seeds * n,)`` or None); ``cache_dir`` and ``progress`` go to the MNIST classifier of
    the clip measures (trained and cached on first use).

    Raises:
        ValueError: a metric group of another modality.
    """
    if metric != model.modality or metric not in SEQUENCE_METRICS:
        raise ValueError(f"the {metric} metrics need a {metric} model; this is a {model.describe()} model")
    if metric == "video":
        return video_report(model, x, labels, n, seeds, mnist_readout(cache_dir=cache_dir, progress=progress))
    return motion_report(model, x, labels, n, seeds)
