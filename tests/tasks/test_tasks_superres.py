"""Super-resolution: the U-Net's aug-level field, the trainer's SR conditioning, upscale / cascade, PSNR /
SSIM (hwaksan.tasks.superres, hwaksan.training.superres)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import hwaksan as hw
from hwaksan.io.artifact import load_trained
from hwaksan.models.unet import UNet, cond_field, unpack_cond
from hwaksan.parameterizations import ModelDenoiser
from hwaksan.tasks import Stage, cascade, psnr, ssim, superres_cond, upscale
from hwaksan.training.config import ConfigError, load_config
from hwaksan.training.superres import lowres_image
from hwaksan.training.trainer import Trainer
from hwaksan.utils import downsample, upsample

SR_NET = (
    "{model_channels = 8, channel_mult = [1, 2], num_res_blocks = 1, attention_levels = [], "
    "num_head_channels = 8}"
)


def _sr_net(aug: bool = True, classes: int | None = None) -> UNet:
    torch.manual_seed(0)
    net = UNet(
        in_channels=1,
        model_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_levels=[],
        in_extra_channels=1,
        aug_conditioning=aug,
        num_classes=classes,
    )
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)  # non-zero output
    return net


# -- the network field ------------------------------------------------------------------------------


def test_aug_level_reaches_the_unet():
    net = _sr_net()
    x, img, noise = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8), torch.zeros(2)
    a = net(x, noise, {"image": img, "aug_level": torch.tensor([0.0, 0.0])})
    b = net(x, noise, {"image": img, "aug_level": torch.tensor([0.0, 0.3])})
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])
    assert torch.equal(net(x, noise, {"image": img}), a)  # absent = level 0
    assert torch.equal(net(x, noise, {"image": img, "aug_level": torch.tensor(0.0)}), a)  # a scalar
    assert net.config["aug_conditioning"] is True
    assert UNet(**net.config).state_dict().keys() == net.state_dict().keys()


def test_aug_conditioning_is_off_by_default_and_old_configs_load():
    plain = UNet(in_channels=1, model_channels=8, channel_mult=(1,), num_res_blocks=1, in_extra_channels=1)
    assert "aug_conditioning" not in plain.config
    assert not any(k.startswith("aug_embed") for k in plain.state_dict())
    with pytest.raises(ValueError, match="aug_conditioning"):
        plain(
            torch.zeros(1, 1, 8, 8),
            torch.zeros(1),
            {"image": torch.zeros(1, 1, 8, 8), "aug_level": torch.zeros(1)},
        )
    parts = unpack_cond({"image": torch.zeros(1), "aug_level": torch.zeros(1)})
    assert parts.image is not None and parts.labels is None
    assert cond_field({"aug_level": 3}, "aug_level") == 3 and cond_field(torch.zeros(1), "aug_level") is None
    with pytest.raises(ValueError, match="unknown cond keys"):
        unpack_cond({"aug": torch.zeros(1)})


# -- training glue ------------------------------------------------------------------------------------


def _trainer(tmp_path, aug_max=0.05, steps=2, extra=()):
    cfg = load_config(
        None,
        [
            "data.name=digits",
            "data.lowres=4",
            "data.conditional=false",
            f"diffusion.aug_max={aug_max}",
            "model.preset=unet",
            f"model.args={SR_NET}",
            f"train.steps={steps}",
            "train.batch_size=16",
            "sample.n=4",
            "sample.steps=2",
            *extra,
        ],
    )
    return Trainer(cfg, tmp_path / "run", progress=False, pictures=False)


def test_trainer_builds_the_sr_condition(tmp_path):
    tr = _trainer(tmp_path)
    assert tr.net.config["in_extra_channels"] == 1 and tr.net.config["aug_conditioning"]
    x0, cond, _ = tr.batch(3)
    s, z = cond["aug_level"], cond["image"]
    assert s.shape == (16,) and bool(((s >= 0) & (s <= 0.05)).all()) and float(s.std()) > 0
    u = lowres_image(x0, 4)
    assert torch.equal(u, upsample(downsample(x0, 4), 8))
    # z = alpha(s) u + sigma(s) eps with eps ~ N(0, 1): 16 x 64 = 1024 values, so the sample mean and
    # std are within 4 standard errors (4/sqrt(1024) and 4/sqrt(2 * 1024)) of 0 and 1
    a = hw.utils.append_dims(tr.process.alpha(s), 4).float()
    sg = hw.utils.append_dims(tr.process.sigma(s), 4).float()
    eps = (z - a * u) / sg
    assert abs(float(eps.mean())) < 4 / 32 and abs(float(eps.std()) - 1) < 4 / math.sqrt(2048)
    _, again, _ = tr.batch(3)  # a pure function of (seed, step)
    assert torch.equal(again["image"], z) and torch.equal(again["aug_level"], s)
    # the task builds the same condition from the same draws
    task = superres_cond(tr.process, downsample(x0, 4), 8, aug_level=s, noise=eps)
    assert torch.allclose(task["image"], z, atol=1e-6) and torch.equal(task["aug_level"], s)


def test_trainer_without_augmentation_and_bad_configs(tmp_path):
    tr = _trainer(tmp_path, aug_max=0.0)
    x0, cond, _ = tr.batch(0)
    assert "aug_level" not in cond and torch.equal(cond["image"], lowres_image(x0, 4))
    assert "aug_conditioning" not in tr.net.config
    with pytest.raises(ConfigError, match="smaller than the training images"):
        _trainer(tmp_path, extra=["data.lowres=8"])
    with pytest.raises(ConfigError, match="U-Net"):
        _trainer(tmp_path, extra=["model.preset=dit", "model.args={}"])
    with pytest.raises(ConfigError, match="aug_max"):
        load_config(None, ["diffusion.aug_max=2"])


def test_sr_training_checkpoint_upscale_and_cascade(tmp_path):
    tr = _trainer(tmp_path)
    result = tr.run()
    trained = load_trained(result.checkpoint)
    model = trained.denoiser
    assert trained.superres.lowres == 4 and model.net.aug_embed is not None

    seen = []
    inner = model.net

    class Spy(torch.nn.Module):
        config = inner.config

        def forward(self, x, noise_level, cond=None):
            seen.append(cond)
            return inner(x, noise_level, cond)

    spy = ModelDenoiser(Spy(), model.process, model.prediction, model.sigma_data)
    low = torch.rand(3, 1, 4, 4) * 2 - 1
    with torch.no_grad():
        res = upscale(spy, low, 8, aug_level=0.003, steps=3, generator=torch.Generator().manual_seed(0))
    assert res.x.shape == (3, 1, 8, 8) and res.nfe == 5
    assert all(torch.equal(c["aug_level"], torch.full((3,), 0.003, dtype=torch.float64)) for c in seen)
    assert all(c["image"].shape == (3, 1, 8, 8) for c in seen)

    base = ModelDenoiser(
        UNet(in_channels=1, model_channels=8, channel_mult=(1,), num_res_blocks=1, num_classes=10),
        hw.make_process("edm"),
        "edm",
        0.5,
    )
    seen.clear()
    stages = [Stage(base, 4, use_labels=True, steps=2), Stage(spy, 8, aug_level=0.01, steps=2)]
    with torch.no_grad():
        out = cascade(
            stages,
            5,
            1,
            labels=torch.arange(5),
            generator=[torch.Generator().manual_seed(i) for i in range(5)],
        )
    assert [r.x.shape for r in out] == [(5, 1, 4, 4), (5, 1, 8, 8)]
    assert "labels" not in seen[0] and float(seen[0]["aug_level"][0]) == 0.01


# -- metrics -----------------------------------------------------------------------------------------


def test_psnr_and_ssim():
    x = torch.rand(2, 1, 12, 12) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))
    assert float(psnr(torch.zeros(1, 4), torch.full((1, 4), 0.1))) == pytest.approx(10 * math.log10(4 / 0.01))
    y = (x + 0.3 * torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    assert torch.allclose(ssim(x, y), ssim(y, x)) and bool((ssim(x, y) < 0.99).all())
    # one 7x7 window: Wang et al. (2004) eq. 13 with Gaussian weights, computed independently
    a = np.random.default_rng(0).uniform(-1, 1, (7, 7))
    b = np.clip(a + np.random.default_rng(1).normal(0, 0.2, (7, 7)), -1, 1)
    r = np.arange(7) - 3.0
    g = np.exp(-(r**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    ma, mb = (w * a).sum(), (w * b).sum()
    va, vb = (w * a * a).sum() - ma**2, (w * b * b).sum() - mb**2
    cab = (w * a * b).sum() - ma * mb
    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    ref = (2 * ma * mb + c1) * (2 * cab + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    got = ssim(torch.tensor(a)[None, None], torch.tensor(b)[None, None])
    assert float(got) == pytest.approx(ref, rel=1e-10)
