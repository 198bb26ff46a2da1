"""The KL autoencoder: shapes, the KL term, the latent normalisation, the loss and a tiny training."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from hwaksan.io.vae import load_vae
from hwaksan.models.vae import AutoencoderKL, DiagonalGaussian, kl_standard_normal
from hwaksan.training.vae import VAEConfig, latent_normalisation, psnr, train_vae, vae_loss


def _perturbed(vae: AutoencoderKL, seed: int = 0) -> AutoencoderKL:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return vae.eval()


@pytest.mark.parametrize(
    ("shape", "mult", "latent"),
    [((3, 32, 32), (1, 2, 2), (4, 8, 8)), ((1, 8, 8), (1, 2), (3, 4, 4)), ((3, 12, 20), (1,), (3, 12, 20))],
)
def test_encode_decode_shapes(shape, mult, latent) -> None:
    vae = AutoencoderKL(shape[0], latent[0], model_channels=8, channel_mult=mult, num_groups=4)
    x = torch.randn(2, *shape)
    mean, logvar = vae.encode(x)
    assert mean.shape == logvar.shape == (2, *latent)
    assert vae.factor == 2 ** (len(mult) - 1)
    assert vae.decode(mean).shape == (2, *shape)
    rec, q = vae(x, generator=torch.Generator().manual_seed(0))
    assert rec.shape == x.shape and q.kl().shape == (2,)
    assert vae.encode_latents(x).shape == (2, *latent) and vae.decode_latents(mean).shape == (2, *shape)


def test_sides_must_be_multiples_of_the_factor() -> None:
    vae = AutoencoderKL(3, 4, model_channels=8, channel_mult=(1, 2, 2), num_groups=4)
    with pytest.raises(ValueError, match="multiples of 4"):
        vae.encode(torch.randn(1, 3, 30, 32))


def test_kl_matches_the_closed_form_of_torch_distributions() -> None:
    gen = torch.Generator().manual_seed(1)
    mean = torch.randn(5, 4, 3, 3, generator=gen, dtype=torch.float64)
    logvar = 2 * torch.randn(5, 4, 3, 3, generator=gen, dtype=torch.float64)
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch.distributions.kl_divergence(q, p).reshape(5, -1).sum(1)
    torch.testing.assert_close(kl_standard_normal(mean, logvar), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(DiagonalGaussian(mean, logvar).kl(), expected, rtol=1e-12, atol=1e-12)
    # KL is zero exactly at the prior
    assert float(kl_standard_normal(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max()) == 0.0


def test_posterior_sample_is_the_reparameterisation() -> None:
    mean, logvar = torch.randn(3, 2, 2, 2), torch.randn(3, 2, 2, 2)
    z = DiagonalGaussian(mean, logvar).sample(torch.Generator().manual_seed(7))
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(z, mean + (0.5 * logvar).exp() * eps)


def test_latent_scale_gives_unit_variance_on_a_batch() -> None:
    torch.manual_seed(0)
    vae = _perturbed(AutoencoderKL(3, 4, model_channels=8, channel_mult=(1, 2), num_groups=4))
    x = torch.rand(16, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        z = vae.encode(x)[0]
        scale, shift = latent_normalisation(z)
        zz = ((z.double() - shift) * scale).reshape(-1)
        assert abs(float(zz.mean())) < 1e-12 and abs(float(zz.var(unbiased=False)) - 1) < 1e-12
        vae.set_latent_normalisation(scale, shift)
        normed = vae.encode_latents(x)  # through the buffers, float32
        assert abs(float(normed.var(unbiased=False)) - 1) < 1e-5 and abs(float(normed.mean())) < 1e-5
        # decode_latents undoes the normalisation
        torch.testing.assert_close(vae.decode_latents(normed), vae.decode(z), rtol=1e-4, atol=1e-5)


def test_loss_is_the_documented_sum() -> None:
    torch.manual_seed(0)
    vae = _perturbed(AutoencoderKL(1, 2, model_channels=8, channel_mult=(1, 2), num_groups=4))
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    for kind in ("l1", "l2"):
        out = vae_loss(vae, x, loss=kind, kl_weight=0.01, generator=torch.Generator().manual_seed(3))
        rec, q = vae(x, generator=torch.Generator().manual_seed(3))
        err = (rec - x).abs() if kind == "l1" else (rec - x).pow(2)
        expected = ((err.reshape(4, -1).sum(1) + 0.01 * q.kl()) / 64).mean()
        torch.testing.assert_close(out["loss"], expected)
        torch.testing.assert_close(out["kl"], q.kl().mean())


def test_psnr_closed_form() -> None:
    x = torch.zeros(2, 1, 4, 4)
    y = x.clone()
    y[0] += 0.1  # MSE 0.01 on [-1, 1]: 10 log10(4 / 0.01) = 26.02 dB
    y[1, :, :2] += 0.2  # MSE 0.02
    torch.testing.assert_close(psnr(x, y), torch.tensor([10 * math.log10(400.0), 10 * math.log10(200.0)]))


def test_tiny_training_writes_a_loadable_checkpoint(tmp_path) -> None:
    from hwaksan.data.images import load_dataset

    digits = load_dataset("digits", "train")
    data = dataclasses.replace(digits, images=digits.images[:64], labels=None, ids=None)
    cfg = VAEConfig(
        data="digits", image_size=8, latent_channels=2, model_channels=8, channel_mult=(1, 2),
        steps=3, batch_size=8, warmup=2, threads=1, log_every=3,
    )  # fmt: skip
    result = train_vae(cfg, tmp_path, data=data, val=data, progress=False, pictures=False)
    vae, meta = load_vae(tmp_path)
    assert meta["latent"]["shape"] == [2, 4, 4] and result.steps == 3
    assert meta["latent"]["scale"] == pytest.approx(result.scale)
    assert float(vae.latent_scale) == pytest.approx(result.scale, rel=1e-6)
    assert math.isfinite(meta["metrics"]["psnr_val"])
    # the stored normalisation gives unit variance on the training set it was fitted on
    with torch.no_grad():
        z = vae.encode_latents(data.images)
    assert abs(float(z.var(unbiased=False)) - 1) < 1e-4 and abs(float(z.mean())) < 1e-4
    # the saved EMA (with warm-up) follows the trained weights, not the initialisation; the raw
    # weights are saved too, and init= continues from them
    from hwaksan.io.checkpoint import load_tensors

    tensors, _ = load_tensors(tmp_path / "vae")
    torch.manual_seed(cfg.seed)
    fresh = AutoencoderKL(**cfg.network_config(1)).state_dict()
    for k, v in vae.state_dict().items():
        if k in ("latent_scale", "latent_shift"):
            continue
        raw = tensors["raw." + k]
        assert (v - raw).norm() <= (fresh[k] - raw).norm()
    cont = train_vae(dataclasses.replace(cfg, steps=1, init=str(tmp_path)), tmp_path / "cont", data=data,
                     val=data, progress=False, pictures=False)  # fmt: skip
    assert cont.steps == 1
    # same seed, same weights
    train_vae(cfg, tmp_path / "again", data=data, val=data, progress=False, pictures=False)
    vae2, _ = load_vae(tmp_path / "again")
    for a, b in zip(vae.state_dict().values(), vae2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
