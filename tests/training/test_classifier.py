"""The image classifier and its training (clean and noise-aware)."""

from __future__ import annotations

import pytest
import torch

from hwaksan.data.images import load_dataset
from hwaksan.io.checkpoint import CheckpointError, save_tensors
from hwaksan.models.classifier import Classifier
from hwaksan.processes import make_process
from hwaksan.training.classifier import (
    classifier_accuracy,
    classifier_inputs,
    load_classifier,
    save_classifier,
    train_classifier,
)

SMALL = {"model_channels": 16, "channel_mult": [1, 2]}


def test_shapes_and_gradients():
    net = Classifier(in_channels=3, num_classes=5, model_channels=16, channel_mult=(1, 2, 2))
    x = torch.randn(3, 3, 28, 28, requires_grad=True)  # 28 is not a multiple of 4: padded inside
    logits = net(x)
    assert logits.shape == (3, 5)
    assert net.features(x).shape == (3, net.feature_dim)
    logits.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in net.parameters())


def test_noise_aware_uses_the_noise_level():
    net = Classifier(in_channels=1, num_classes=3, model_channels=16, noise_aware=True)
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match="noise_level"):
        net(x)
    a, b = net(x, torch.zeros(2)), net(x, torch.ones(2))
    assert not torch.allclose(a, b)


def test_classifier_inputs_match_the_denoiser_scaling():
    process = make_process("edm")
    t = torch.tensor([0.2, 0.7], dtype=torch.float64)
    x = torch.randn(2, 1, 4, 4)
    x_in, c_noise = classifier_inputs(process, x, t, sigma_data=0.5)
    # EDM: c_in = 1 / sqrt(sigma^2 + sd^2), c_noise = ln(sigma) / 4 (Karras et al. 2022, Table 1)
    sigma = process.sigma(t)
    expected = x / (sigma**2 + 0.25).sqrt().view(2, 1, 1, 1).float()
    torch.testing.assert_close(x_in, expected)
    torch.testing.assert_close(c_noise.double(), sigma.log() / 4, rtol=1e-6, atol=1e-6)
    assert classifier_inputs(None, x, None)[1] is None


def test_training_is_deterministic_and_round_trips(tmp_path):
    data = load_dataset("digits", "train")
    r1 = train_classifier(data, net_args=SMALL, steps=3, batch_size=16, progress=False, seed=3)
    r2 = train_classifier(data, net_args=SMALL, steps=3, batch_size=16, progress=False, seed=3)
    for (k, a), b in zip(r1.net.state_dict().items(), r2.net.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    stem = save_classifier(tmp_path / "clf", r1)
    net, process, meta = load_classifier(stem)
    assert process is None and meta["train"]["steps"] == 3
    x = data.images[:4]
    torch.testing.assert_close(net(x), r1.net.eval()(x))


def test_training_works_under_no_grad():
    # feature extraction runs under no_grad and trains the data-set classifier on a cache miss
    data = load_dataset("digits", "train")
    with torch.no_grad():
        r = train_classifier(data, net_args=SMALL, steps=2, batch_size=8, progress=False)
    assert r.losses and all(torch.isfinite(torch.tensor(r.losses)))


def test_load_rejects_other_checkpoints(tmp_path):
    save_tensors(tmp_path / "other", {"a": torch.zeros(1)}, {"kind": "hwaksan-train"})
    with pytest.raises(CheckpointError, match="not a classifier"):
        load_classifier(tmp_path / "other")


def test_digits_classifiers_learn():
    """Clean: 98% is typical after 250 steps (above 90% required); noise-aware: near-clean accuracy
    at small noise (above 85%) and at least 40 points less at sigma = 5, towards chance (10%): the
    8x8 digits, std 0.75, are then buried."""
    train, val = load_dataset("digits", "train"), load_dataset("digits", "val")
    clean = train_classifier(train, net_args=SMALL, steps=250, batch_size=64, val=val, progress=False)
    assert clean.val_accuracy > 0.9
    process = make_process("edm")
    noisy = train_classifier(
        train,
        net_args=SMALL,
        process=process,
        t_dist="edm",
        sigma_data=0.75,
        steps=250,
        batch_size=64,
        progress=False,
    )

    def acc(sigma):
        t = float(process.t_from_sigma_tilde(torch.tensor([sigma], dtype=torch.float64)))
        return classifier_accuracy(noisy.net, val, process=process, sigma_data=0.75, t=t)

    low, high = acc(0.1), acc(5.0)
    assert low > 0.85
    assert high < low - 0.4
