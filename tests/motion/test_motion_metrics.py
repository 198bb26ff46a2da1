"""Motion metrics on real data: their floors, and closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from hwaksan.data.motion import load_stick_motion
from hwaksan.evaluation.motion import (
    FeatureScaler,
    diversity,
    frame_jumps,
    motion_fd,
    motion_features,
    multimodality,
)
from hwaksan.evaluation.motion_classifier import classifier_accuracy, train_motion_classifier


@pytest.fixture(scope="module")
def val():
    return load_stick_motion("val", n=1024)


def test_fd_real_vs_real_is_far_below_real_vs_other(val) -> None:
    x, y = val.images, val.labels
    a, b = x[:512], x[512:]  # two halves with the same classes (label i % 8)
    scaler = FeatureScaler.fit(motion_features(a))
    floor = motion_fd(a, b, scaler)
    assert motion_fd(a, a, scaler) == pytest.approx(0.0, abs=1e-6)
    # other motion: the first four actions only; the same motion with jitter of 1/100 of the range
    assert motion_fd(a, x[y < 4], scaler) > 10 * floor
    jitter = 0.01 * torch.randn(b.shape, generator=torch.Generator().manual_seed(0))
    assert motion_fd(a, b + jitter, scaler) > 10 * floor


def test_diversity_floor_and_bounds(val) -> None:
    """For z-scored features of i.i.d. samples ``E ||f - f'||^2 = 2 tr(I) = 2 F``, so by Jensen the
    diversity is at most ``sqrt(2 F)`` (up to the sampling error of 200 pairs); within a class the
    features are closer (multimodality < diversity); identical samples have none."""
    feats = FeatureScaler.fit(motion_features(val.images))(motion_features(val.images))
    f = feats.shape[1]
    div = diversity(feats)
    assert 0.5 * math.sqrt(2 * f) < div < 1.1 * math.sqrt(2 * f)
    assert multimodality(feats, val.labels) < div
    assert diversity(feats[:1].expand(10, -1)) == 0.0


def test_frame_jumps_of_a_uniform_motion() -> None:
    """Every joint moving by (3, 4) / 100 per frame jumps exactly 0.05 between frames."""
    t = torch.arange(6, dtype=torch.float64)
    x = torch.zeros(1, 30, 6, dtype=torch.float64)
    x[:, 0::2], x[:, 1::2] = 0.03 * t, 0.04 * t
    assert torch.allclose(frame_jumps(x), torch.full((1, 5), 0.05, dtype=torch.float64))


def test_held_out_classifier_floor(val) -> None:
    train = load_stick_motion("train", n=1024)
    net = train_motion_classifier(train.images, train.labels, 8, steps=150)
    assert classifier_accuracy(net, val.images, val.labels) >= 0.85  # the bar samples must meet
