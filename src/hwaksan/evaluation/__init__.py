"""Measuring generative models: sample quality, memorisation and likelihood.

Images (see ``docs/evaluation.md``):

- :func:`image_features` in two feature spaces, ``"effnet"`` (FD-EffNet) and ``"classifier"``
  (FD-<dataset>); :func:`real_statistics` caches real-data statistics;
- :func:`frechet_distance`, :func:`gaussian_statistics`; :func:`precision_recall` (k-NN manifolds);
- :func:`class_accuracy`, :func:`class_entropy` with the cached :func:`dataset_classifier`;
- :func:`nearest_neighbours` and :func:`save_neighbour_grid` for the memorisation audit;
- :func:`evaluate_model` runs all of them on a trained model (pixel, latent or 2-D, its samples
  decoded to the output space first) and :func:`evaluate_checkpoint` on a checkpoint, for
  ``hwaksan evaluate``.

2-D samples: :mod:`hwaksan.evaluation.lowdim`. Likelihoods: :mod:`hwaksan.evaluation.likelihood`
(PF-ODE) and :mod:`hwaksan.evaluation.vlb` (the DDPM bound).
"""

from .classifier import (
    ClassEntropy,
    ClassifierChecksumError,
    DatasetClassifier,
    class_accuracy,
    class_entropy,
    dataset_classifier,
)
from .features import SPACES, RealStatistics, image_features, real_statistics, space_name
from .frechet import (
    SmallSampleWarning,
    frechet_distance,
    frechet_distance_from_statistics,
    gaussian_statistics,
)
from .manifold import precision_recall
from .neighbours import nearest_neighbours, neighbour_summary, save_neighbour_grid
from .pipeline import METRICS, EvalConfig, evaluate_checkpoint, evaluate_model

__all__ = [
    "SPACES",
    "METRICS",
    "image_features",
    "space_name",
    "real_statistics",
    "RealStatistics",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "gaussian_statistics",
    "SmallSampleWarning",
    "precision_recall",
    "dataset_classifier",
    "DatasetClassifier",
    "ClassifierChecksumError",
    "class_accuracy",
    "class_entropy",
    "ClassEntropy",
    "nearest_neighbours",
    "neighbour_summary",
    "save_neighbour_grid",
    "EvalConfig",
    "evaluate_checkpoint",
    "evaluate_model",
]
