"""tasks/latent.py: sampling, SDEdit, inpainting and guidance through the encode/decode wrapper.

The autoencoder here is exact and linear (space-to-depth, ``pixel_unshuffle`` with factor 2, a
permutation of coordinates), and the latent denoiser is the exact Gaussian-mixture oracle, so every
expected value is known without training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hwaksan.distributions import GaussianMixture
from hwaksan.guidance import ClassifierFreeGuidance
from hwaksan.oracles import GaussianMixtureDenoiser
from hwaksan.processes import make_process
from hwaksan.samplers import sample
from hwaksan.tasks.edit import sdedit
from hwaksan.tasks.inpaint import inpaint
from hwaksan.tasks.latent import LatentModel

LATENT = (4, 4, 4)  # of 1x8x8 images


class SpaceToDepth:
    factor = 2

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(x, 2)

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(z, 2)


def _model() -> LatentModel:
    gen = torch.Generator().manual_seed(0)
    d = 64
    means = torch.stack([torch.full((d,), -0.5), torch.full((d,), 0.5)]) + 0.1 * torch.randn(
        2, d, generator=gen
    )
    mixture = GaussianMixture(means.double(), 0.05)
    return LatentModel(GaussianMixtureDenoiser(mixture, make_process("edm")), SpaceToDepth())


def _gens(n: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def test_latent_mask_keeps_only_fully_known_patches() -> None:
    lm = _model()
    mask = torch.ones(1, 1, 8, 8)
    mask[..., 0, 0] = 0  # one unknown pixel: its 2x2 patch is unknown in latent space
    mask[..., 4:, 4:] = 0  # a whole quadrant
    m = lm.latent_mask(mask)
    expected = torch.ones(1, 1, 4, 4)
    expected[..., 0, 0] = 0
    expected[..., 2:, 2:] = 0
    assert torch.equal(m, expected)


def test_sample_is_sample_then_decode() -> None:
    lm = _model()
    out = lm.sample(3, LATENT, sampler="heun", steps=4, generator=_gens(3))
    ref = sample(lm.denoiser, (3, *LATENT), sampler="heun", steps=4, generator=_gens(3))
    assert out.x.shape == (3, 1, 8, 8) and out.nfe == ref.nfe
    assert torch.equal(out.x, F.pixel_shuffle(ref.x, 2).clamp(-1, 1))


def test_guidance_composes_with_the_wrapper() -> None:
    lm = _model()
    labels = torch.tensor([0, 1, 1])
    cfg = LatentModel(ClassifierFreeGuidance(lm.denoiser, 1.0, uncond=lambda c: None), lm.autoencoder)
    a = cfg.sample(3, LATENT, steps=4, cond=labels, generator=_gens(3))
    b = lm.sample(3, LATENT, steps=4, cond=labels, generator=_gens(3))
    assert torch.equal(a.x, b.x)  # w = 1 is the conditional model
    strong = LatentModel(ClassifierFreeGuidance(lm.denoiser, 3.0, uncond=lambda c: None), lm.autoencoder)
    x = strong.sample(3, LATENT, steps=20, cond=labels, generator=_gens(3)).x
    assert bool((x[0].mean() < 0) and (x[1:].mean() > 0))  # pulled to the labelled components


def test_sdedit_at_strength_zero_round_trips() -> None:
    lm = _model()
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    out = lm.apply(sdedit, x, 0.0)
    assert out.nfe == 0 and torch.equal(out.x, x)
    edited = lm.apply(sdedit, x, 0.7, steps=3, generator=_gens(2))
    assert edited.x.shape == x.shape and edited.nfe > 0


def test_inpainting_in_latent_space_keeps_the_known_region() -> None:
    lm = _model()
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    mask = torch.ones(1, 1, 8, 8)
    mask[..., 3:6, 3:6] = 0  # straddles latent cells: they become unknown as a whole
    out = lm.apply(inpaint, x, mask=mask, steps=4, jump=1, generator=_gens(2), paste_known=False)
    known = lm.latent_mask(mask).repeat_interleave(2, -1).repeat_interleave(2, -2).bool().expand_as(x)
    assert torch.equal(out.x[known], x[known])  # fully known patches come back exactly
    assert not torch.allclose(out.x[~known], x[~known])
    pasted = lm.apply(inpaint, x, mask=mask, steps=4, jump=1, generator=_gens(2))
    keep = mask.bool().expand_as(x)
    assert torch.equal(pasted.x[keep], x[keep])  # every known pixel, also in straddled patches
    assert torch.equal(pasted.x[~keep], out.x[~keep])  # the filled pixels are the same
