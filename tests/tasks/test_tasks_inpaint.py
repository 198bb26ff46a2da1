"""RePaint inpainting (hwaksan.tasks.inpaint): schedule, exact known region, and the Gaussian posterior.

For a Gaussian ``x ~ N(0, C)`` split into a known block K and an unknown block U, the exact
inpainting posterior is Gaussian conditioning:
``x_U | x_K ~ N(C_UK C_KK^-1 x_K, C_UU - C_UK C_KK^-1 C_KU)``. Plain replacement (no resampling)
samples the unknown block against an independently noised known block at every level, which biases
it towards the marginal when the blocks are correlated; RePaint's resampling moves the samples'
moments towards the exact posterior (Lugmayr et al. 2022, sec. 4.2).
"""

from __future__ import annotations

import math

import pytest
import torch

import hwaksan as hw
from hwaksan.models.unet import UNet
from hwaksan.parameterizations import ModelDenoiser
from hwaksan.tasks import check_mask, inpaint, paste, repaint_schedule

D, KNOWN, UNKNOWN = 6, [0, 1, 2], [3, 4, 5]


def _covariance(correlated: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(D, D, generator=g, dtype=torch.float64)
    cov = a @ a.T / D + 0.05 * torch.eye(D, dtype=torch.float64)
    if not correlated:
        cov[:3, 3:] = 0
        cov[3:, :3] = 0
    return cov


def _posterior(cov: torch.Tensor, x_known: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ckk = cov[KNOWN][:, KNOWN]
    cuk = cov[UNKNOWN][:, KNOWN]
    mean = cuk @ torch.linalg.solve(ckk, x_known)
    var = cov[UNKNOWN][:, UNKNOWN] - cuk @ torch.linalg.solve(ckk, cuk.T)
    return mean, var


def _moments_distance(x_u: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> tuple[float, float]:
    """Mahalanobis distance of the sample mean to the exact mean, and KL(N(sample moments) || exact)."""
    m1, s1 = x_u.mean(0), torch.cov(x_u.T)
    dm = m1 - mean
    maha = float((dm @ torch.linalg.solve(var, dm)).sqrt())
    vi = torch.linalg.inv(var)
    kl = 0.5 * float(torch.trace(vi @ s1) + dm @ vi @ dm - len(mean) + torch.logdet(var) - torch.logdet(s1))
    return maha, kl


def _run(cov, jump, resample, n=2000, steps=100, seed=1):
    oracle = hw.GaussianMixtureDenoiser(
        hw.GaussianMixture(torch.zeros(1, D, dtype=torch.float64), cov[None]), hw.make_process("edm")
    )
    x_known = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    x0 = torch.zeros(n, D, dtype=torch.float64)
    x0[:, KNOWN] = x_known
    mask = torch.zeros(1, D, dtype=torch.float64)
    mask[:, KNOWN] = 1
    res = inpaint(
        oracle,
        x0,
        mask,
        sampler="ddpm",
        steps=steps,
        grid="karras",
        jump=jump,
        resample=resample,
        generator=torch.Generator().manual_seed(seed),
    )
    assert torch.equal(res.x[:, KNOWN], x0[:, KNOWN])  # known block exactly the reference
    return res, _posterior(cov, x_known)


# -- the schedule -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "jump", "resample"), [(20, 1, 1), (20, 1, 3), (20, 5, 4), (50, 10, 10), (7, 10, 3)]
)
def test_repaint_schedule(n, jump, resample):
    walk = repaint_schedule(n, jump, resample)
    assert walk[0] == n and walk[-1] == 0
    moves = [b - a for a, b in zip(walk[:-1], walk[1:], strict=True)]
    assert set(moves) <= {-1, 1}
    levels = len(range(1, n - jump + 1, jump))  # the paper's range(0, T - j, j), shifted by one
    assert moves.count(-1) == n + (resample - 1) * jump * levels
    assert moves.count(1) == (resample - 1) * jump * levels
    assert min(walk) == 0 and max(walk) == n
    if resample == 1:
        assert walk == list(range(n, -1, -1))


def test_repaint_schedule_matches_the_paper_example():
    # Lugmayr et al.'s get_schedule_jump(t_T=10, jump_length=5, jump_n_sample=2), times + 1
    assert repaint_schedule(10, 5, 2) == [10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 2, 3, 4, 5, 6, 5, 4, 3, 2, 1, 0]


# -- the Gaussian posterior ---------------------------------------------------------------------------


def test_resampling_moves_the_moments_towards_the_exact_posterior():
    """Correlated 6-D Gaussian, 3 known coordinates, 2000 completions, 100 Karras steps of DDPM.

    Plain replacement leaves a systematic bias of the unknown block's mean (Mahalanobis ~0.37, which
    does not shrink with more steps); RePaint with j = 5, n = 5 brings it to ~0.1. Monte-Carlo scale:
    ``N * maha^2 ~ chi^2_3`` for unbiased samples, whose 0.9999 quantile is 21.1, so a mean within
    ``sqrt(21.1 / 2000) = 0.10`` of the truth is indistinguishable from it; the required gap below is
    twice that. The KL of the fitted Gaussians (bias ~ (3 + 6) / (2 N) = 0.002) must halve.
    """
    cov = _covariance()
    plain, (mean, var) = _run(cov, jump=1, resample=1)
    repaint, _ = _run(cov, jump=5, resample=5)
    maha_plain, kl_plain = _moments_distance(plain.x[:, UNKNOWN], mean, var)
    maha_rp, kl_rp = _moments_distance(repaint.x[:, UNKNOWN], mean, var)
    mc = math.sqrt(21.1 / 2000)
    print(
        f"plain: maha {maha_plain:.3f} KL {kl_plain:.4f}; RePaint j=5 n=5: maha {maha_rp:.3f} KL {kl_rp:.4f}"
    )
    assert maha_plain - maha_rp > 2 * mc
    assert kl_rp < 0.5 * kl_plain
    assert repaint.nfe == 100 + 4 * 5 * len(range(1, 96, 5))


def test_replacement_is_exact_for_independent_blocks():
    """Control: with C_UK = 0 the posterior is the marginal of U and plain replacement is unbiased
    (its mean within the chi^2_3 0.9999 bound above)."""
    cov = _covariance(correlated=False)
    plain, (mean, var) = _run(cov, jump=1, resample=1)
    maha, _ = _moments_distance(plain.x[:, UNKNOWN], mean, var)
    assert maha < math.sqrt(21.1 / 2000)


# -- images, samplers, masks --------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "heun", "dpmpp_2m", "euler_maruyama"])
def test_known_region_is_exact_for_every_sampler(sampler):
    torch.manual_seed(0)
    net = UNet(in_channels=1, model_channels=8, channel_mult=(1,), num_res_blocks=1, attention_levels=[])
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)  # a network with a non-zero output
    model = ModelDenoiser(net, hw.make_process("edm"), "edm", 0.5).eval()
    x0 = torch.rand(3, 1, 8, 8) * 2 - 1
    mask = (torch.rand(3, 1, 8, 8) > 0.5).float()
    with torch.no_grad():
        res = inpaint(
            model,
            x0,
            mask,
            sampler=sampler,
            steps=6,
            jump=2,
            resample=2,
            generator=torch.Generator().manual_seed(0),
        )
    keep = mask.bool()
    assert torch.equal(res.x[keep], x0[keep])
    assert bool(torch.isfinite(res.x).all())
    assert not torch.equal(res.x[~keep], x0[~keep])


def test_per_sample_generators_make_results_batch_independent():
    cov = _covariance()
    oracle = hw.GaussianMixtureDenoiser(
        hw.GaussianMixture(torch.zeros(1, D, dtype=torch.float64), cov[None]), hw.make_process("edm")
    )
    x0 = torch.randn(3, D, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0]], dtype=torch.float64)
    gens = [torch.Generator().manual_seed(10 + i) for i in range(3)]
    batch = inpaint(oracle, x0, mask, steps=10, jump=3, resample=2, generator=gens).x
    one = inpaint(
        oracle, x0[1:2], mask, steps=10, jump=3, resample=2, generator=[torch.Generator().manual_seed(11)]
    ).x
    assert torch.allclose(batch[1:2], one)


def test_mask_errors_and_paste():
    x = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match="does not fit"):
        check_mask(torch.ones(1, 1, 4, 4), x)
    with pytest.raises(ValueError, match="does not fit"):
        check_mask(torch.ones(8, 8), x)
    with pytest.raises(ValueError, match="does not fit"):
        check_mask(torch.ones(1, 3, 8, 8), x)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check_mask(torch.full((1, 1, 8, 8), 2.0), x)
    m = torch.zeros(1, 1, 8, 8)
    m[..., :4] = 1
    out = paste(torch.ones(2, 1, 8, 8), -torch.ones(2, 1, 8, 8), m)
    assert float(out[..., :4].max()) == -1 and float(out[..., 4:].min()) == 1
