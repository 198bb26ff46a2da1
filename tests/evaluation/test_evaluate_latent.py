"""Evaluating a latent-diffusion model: its latents are decoded to pixels before any metric.

The model is the tiny latent U-Net of ``tests/data/legacy/latent`` (2x4x4 latents of 1x8x8
digits, its autoencoder inside the checkpoint), read by :func:`hwaksan.io.artifact.load_trained`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hwaksan.cli import main
from hwaksan.evaluation.generate import SampleSpec
from hwaksan.evaluation.pipeline import EvalConfig, MetricUnavailable, evaluate_checkpoint, evaluate_model
from hwaksan.io.artifact import load_trained
from hwaksan.io.checkpoint import load_tensors

LATENT = Path(__file__).resolve().parents[1] / "data" / "legacy" / "latent"


def _config(cache: Path, **kw) -> EvalConfig:
    base = dict(metrics=("fd", "precision", "recall", "accuracy", "nn"), n=16, spec=SampleSpec("heun", 2),
                spaces=("classifier",), shard_size=8, batch_size=8, progress=False,
                cache_dir=str(cache))  # fmt: skip
    return EvalConfig(**{**base, **kw})


def test_latent_samples_are_decoded_before_the_metrics(tiny_classifier, tmp_path):
    out = tmp_path / "eval"
    report = evaluate_checkpoint(LATENT, out, _config(tiny_classifier))
    ck = report["checkpoint"]
    assert ck["image_shape"] == [1, 8, 8] and ck["latent_shape"] == [2, 4, 4] and ck["dataset"] == "digits"
    images = report["_images"]
    assert images.shape == (16, 1, 8, 8) and images.abs().max() <= 1  # pixels in [-1, 1], not latents
    # the shards hold the decoded pixels: the model's own sample-then-decode, image i with seed i
    shards = sorted((out / "samples").rglob("shard_*.safetensors"))
    assert len(shards) == 2
    tensors, info = load_tensors(shards[0].with_suffix(""))
    assert tensors["images"].shape == (8, 1, 8, 8) and info["record"]["decoded_from"] == [2, 4, 4]
    model = load_trained(LATENT)
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    ref = model.sample(3, sampler="heun", steps=2, generator=gens).x
    torch.testing.assert_close(images[:3], ref, rtol=0, atol=1e-3)  # batch-size rounding only
    m = report["metrics"]
    assert set(m) == {"FD-digits", "accuracy", "nn"}
    assert m["FD-digits"]["n_fake"] == 16 and m["FD-digits"]["fd"]["value"] > 0
    assert m["accuracy"]["n"] == 16 and "accuracy" not in m["accuracy"]  # unconditional model
    assert m["nn"]["n"] == 16 and m["nn"]["median"] > 0
    # resume reuses the decoded shards and gives the same numbers
    again = evaluate_model(load_trained(LATENT), out, _config(tiny_classifier), resume=True)
    assert again["samples"]["reused"] == 16 and again["metrics"]["FD-digits"] == m["FD-digits"]


def test_pixel_likelihoods_are_refused_for_a_latent_model(tmp_path):
    with pytest.raises(MetricUnavailable, match="latent"):
        evaluate_checkpoint(LATENT, tmp_path / "x", _config(tmp_path, metrics=("fd", "nll")))
    assert not (tmp_path / "x").exists()  # refused before any sample


def test_cli_evaluates_a_latent_model(tiny_classifier, tmp_path):
    out = tmp_path / "cli"
    args = ["evaluate", str(LATENT), "--n", "16", "--steps", "2", "--metrics", "fd,accuracy,nn",
            "--features", "classifier", "--shard-size", "8", "--batch-size", "8", "--out", str(out),
            "--cache-dir", str(tiny_classifier), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["checkpoint"]["image_shape"] == [1, 8, 8] and report["n"] == 16
    assert (out / "samples.png").stat().st_size > 0
