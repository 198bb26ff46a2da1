"""The trainer hooks of latent diffusion and text conditioning, end to end on 8x8 digits.

A tiny autoencoder (factor 2: 2x4x4 latents) is trained for three steps; a text-conditional U-Net
is trained on its latents with the digit caption templates; the checkpoint carries the autoencoder
and ``hwaksan sample --prompt`` decodes. Everything is tiny: this checks the wiring, not quality.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from hwaksan.data.images import load_dataset
from hwaksan.data.text import TextEncoderUnavailable
from hwaksan.io.checkpoint import latest_checkpoint
from hwaksan.training.config import ConfigError, load_config
from hwaksan.training.trainer import Trainer
from hwaksan.training.vae import VAEConfig, train_vae

DIGITS = Path(__file__).resolve().parents[2] / "configs" / "digits.toml"


@pytest.fixture(scope="module")
def encoder():
    from hwaksan.conditioning.text import load_text_encoder

    try:
        return load_text_encoder(32)
    except TextEncoderUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def data():
    full = load_dataset("digits", "train")
    return dataclasses.replace(
        full, images=full.images[:48].clone(), labels=full.labels[:48].clone(), ids=full.ids[:48]
    )


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("vae")
    cfg = VAEConfig(
        data="digits", image_size=8, latent_channels=2, model_channels=8, channel_mult=(1, 2),
        mid_attention=False, steps=3, batch_size=8, warmup=1, threads=1,
    )  # fmt: skip
    train_vae(cfg, out, data=data, val=data, progress=False, pictures=False)
    return out


def _config(vae_dir: Path, *extra: str):
    return load_config(
        DIGITS,
        [
            "data.conditional=false",
            "text.encoder=minilm",
            "text.captions=templates",
            f"latent.vae={vae_dir.as_posix()}",
            "diffusion.sigma_data=1.0",
            "model.preset=unet",
            "model.args={in_channels=2, model_channels=8, channel_mult=[1], num_res_blocks=1, "
            "attention_levels=[0], mid_attention=false, num_head_channels=8, num_groups=2, num_classes=0}",
            "train.batch_size=8",
            "train.steps=2",
            "train.threads=1",
            "train.log_every=1",
            "train.sample_every=0",
            "optim.warmup=1",
            "sample.n=4",
            "sample.steps=2",
            *extra,
        ],
    )


def test_text_needs_unconditional_labels(vae_dir) -> None:
    with pytest.raises(ConfigError, match="data.conditional = false"):
        _config(vae_dir, "data.conditional=true")
    with pytest.raises(ConfigError, match="text.encoder"):
        _config(vae_dir, "text.encoder=clip")


def test_latent_text_training_checkpoint_and_sampling(tmp_path, vae_dir, data, encoder, capsys) -> None:
    cfg = _config(vae_dir)
    trainer = Trainer(cfg, tmp_path / "run", progress=False, pictures=False, data=data)
    assert tuple(trainer.images.shape[1:]) == (2, 4, 4)  # trained on latents
    assert trainer.net.config["context_dim"] == 384 and trainer.net.config["pooled_dim"] == 384
    caches = list((vae_dir / "cache").glob("latents-*.safetensors"))
    assert len(caches) == 1
    # the batch condition: templates of each image's class, dropped captions are the null caption
    x0, cond, _ = trainer.batch(0)
    assert (
        set(cond) == {"context", "context_mask", "pooled"}
        and cond["context"].shape[:2] == cond["context_mask"].shape
    )
    dropped = ~cond["context_mask"].any(1)
    assert float(cond["pooled"][dropped].abs().sum()) == 0.0
    result = trainer.run()
    assert result.step == 2
    images = trainer.sample_images(4)
    assert images.shape == (4, 1, 8, 8) and float(images.abs().max()) <= 1.0

    ckpt = latest_checkpoint(tmp_path / "run")
    meta = json.loads(ckpt.with_name(ckpt.name + ".json").read_text())
    assert meta["latent"]["image_shape"] == [1, 8, 8] and meta["text"]["encoder"] == "minilm"
    from safetensors import safe_open

    with safe_open(str(ckpt.with_name(ckpt.name + ".safetensors")), "pt") as f:
        assert any(k.startswith("vae.") for k in f.keys())

    # a second trainer reads the cached latents instead of encoding again
    capsys.readouterr()
    again = Trainer(cfg, tmp_path / "run2", progress=False, pictures=False, data=data)
    assert "latents read from" in capsys.readouterr().err
    assert torch.equal(again.images, trainer.images)

    # hwaksan sample decodes, with prompts, guidance and a negative prompt
    from hwaksan.cli import main

    out = tmp_path / "grid.png"
    argv = ["sample", str(tmp_path / "run"), "--n", "4", "--steps", "2", "--out", str(out)]
    assert main([*argv, "--prompt", "a handwritten seven", "--prompt", "the digit one", "--guidance", "2",
                 "--negative-prompt", "a handwritten one"]) == 0  # fmt: skip
    from PIL import Image

    with Image.open(out) as im:  # 2 columns x 2 rows of 8x8 images at scale 12 with 2-pixel gaps
        assert im.size == ((2 * (8 + 2) + 2) * 12, (2 * (8 + 2) + 2) * 12)
    assert main(argv) == 1  # a text model needs --prompt
    assert "give --prompt" in capsys.readouterr().err


def test_text_conditioning_resumes_exactly(tmp_path, vae_dir, data, encoder) -> None:
    cfg = _config(vae_dir, "train.steps=3", "data.p_uncond=0.3")
    straight = Trainer(cfg, tmp_path / "a", progress=False, pictures=False, data=data)
    straight.run()
    first = Trainer(cfg, tmp_path / "b", progress=False, pictures=False, data=data)
    first.run(stop_after=1)
    resumed = Trainer(cfg, tmp_path / "b", progress=False, pictures=False, data=data)
    resumed.run(resume=True)
    for k, v in straight.net.state_dict().items():
        assert torch.equal(v, resumed.net.state_dict()[k]), k
