"""Exact tests of the stochastic samplers on Gaussian data.

Data ``x0 ~ N(mu, diag(s^2))``: the exact denoiser is affine,
``D(x, t) = mu + alpha s^2 / (alpha^2 s^2 + sigma^2) (x - alpha mu)``, so every step of a stochastic
sampler is an affine map of its state plus a coefficient times an independent standard-normal draw.
Two deterministic checks follow for every sampler of the registry that injects noise (DDPM with its
three variances, Euler-Maruyama, predictor-corrector, annealed Langevin, DPM-Solver++(2M/3M)-SDE),
and for DDIM with ``eta > 0`` and EDM's Heun with churn:

1. Pathwise. Each recursion is written out below from its paper, in float64, with the affine
   denoiser above, and driven by the very draws the sampler makes: the same ``torch.Generator`` seed
   replayed in the sampler's order (one draw shaped like ``x`` per noisy step or Langevin update),
   or, for the DPM-Solver++ SDE samplers, the same :class:`BrownianTree` (built from the generator as
   the sampler builds it; the tree's own properties are tested in test_multistep.py). The sampler,
   run with the library's Gaussian-mixture oracle (one component), must agree with the reference
   after every step to 1e-10 relative: a wrong drift coefficient or noise scale moves the state by
   that coefficient's error times O(1), far above float64 rounding (~1e-14 after tens of steps).
2. Exact moments. The sampler's output is ``c + a_0 xi_0 + sum_j a_j z_j`` per dimension (``xi_0``
   the standardised start, ``z_j`` its draws). With a batch larger than the number of draws, least
   squares on the replayed draws identifies ``c`` and ``a`` exactly (the residual is asserted to be
   at rounding level, which also confirms the draw order), so the sampler's own output mean ``c``
   and variance ``sum a^2`` are known without Monte-Carlo error. Started from the exact marginal at
   ``t_0`` and stopped at ``t_end > 0``, they are compared with the exact marginal
   ``N(alpha mu, alpha^2 s^2 + sigma^2)`` there: the error must fall at the method's weak order.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _exact_steps import combine, lagrange_weights, scalars

from hwaksan.distributions import GaussianMixture
from hwaksan.oracles import GaussianMixtureDenoiser
from hwaksan.processes import EDM, VPSDE, DiscreteVP
from hwaksan.samplers import SAMPLERS, karras_grid, log_snr_grid, uniform_grid
from hwaksan.samplers.multistep import BrownianTree

MU = torch.tensor([0.5, -1.0, 0.2], dtype=torch.float64)
S = torch.tensor([0.7, 0.3, 1.2], dtype=torch.float64)
DIM = 3
SEED = 11  # the sampler's generator seed, replayed by the references
TOL = {"rtol": 1e-10, "atol": 1e-10}


def _oracle(process) -> GaussianMixtureDenoiser:
    return GaussianMixtureDenoiser(GaussianMixture(MU[None], (S**2)[None]), process)


def _x0(process, x: torch.Tensor, t: float) -> torch.Tensor:
    """The exact denoiser ``E[x0 | x_t = x]`` of ``N(mu, diag(s^2))`` data, written out."""
    a, s, _ = scalars(process, t)
    return MU + (a * S**2 / (a * a * S**2 + s * s)) * (x - a * MU)


def _score(process, x: torch.Tensor, t: float) -> torch.Tensor:
    """Tweedie: ``grad log p_t(x) = (alpha D - x) / sigma^2``."""
    a, s, _ = scalars(process, t)
    return (a * _x0(process, x, t) - x) / s**2


def _start(process, t: float, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch from the exact marginal at ``t`` and its standardised draw ``xi_0``."""
    a, s, _ = scalars(process, t)
    xi0 = torch.randn(batch, DIM, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return a * MU + (a * a * S**2 + s * s).sqrt() * xi0, xi0


def _marginal(process, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    a, s, _ = scalars(process, t)
    return a * MU, a * a * S**2 + s * s


class _Draws:
    """The standard normals of a generator seeded like the sampler's, in the sampler's order."""

    def __init__(self, shape, seed: int = SEED) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.shape = tuple(shape)
        self.used: list[torch.Tensor] = []

    def __call__(self) -> torch.Tensor:
        z = torch.randn(self.shape, generator=self.g, dtype=torch.float64)
        self.used.append(z)
        return z


class _TreeDraws:
    """The Brownian-tree increments a DPM-Solver++ SDE sampler uses: the tree on ``[0, t_0]`` seeded
    from a generator like the sampler's, ``z = (W(t) - W(s)) / sqrt(t - s)`` per step."""

    def __init__(self, x: torch.Tensor, t0: float, seed: int = SEED) -> None:
        self.tree = BrownianTree.from_generator(x, torch.Generator().manual_seed(seed), 0.0, t0)
        self.used: list[torch.Tensor] = []

    def __call__(self, t: float, s: float) -> torch.Tensor:
        z = self.tree.normal(t, s)
        self.used.append(z)
        return z


# --------------------------------------------------------------------------------------------------
# the recursions, from the papers; each returns the state after every step
# --------------------------------------------------------------------------------------------------
def _ddpm_reference(process, ts, x, draws, variance="posterior", v=None):
    """Ancestral sampling (Ho et al. 2020, eq. 6-7 and Alg. 2) between grid points ``t > s`` of a
    variance-preserving path, with ``abar = alpha^2``, ``beta = 1 - abar_t / abar_s``:
    ``mu~ = sqrt(abar_s) beta / (1 - abar_t) x0^ + sqrt(1 - beta) (1 - abar_s) / (1 - abar_t) x_t``,
    ``beta~ = (1 - abar_s) / (1 - abar_t) beta``; noise of variance ``beta~`` ("posterior"),
    ``beta`` ("beta") or ``exp(f log beta + (1 - f) log beta~)``, ``f = (v + 1) / 2`` ("learned",
    Nichol & Dhariwal 2021 eq. 15); no noise onto sigma = 0."""
    states = []
    tl = ts.tolist()
    for t, s in zip(tl[:-1], tl[1:], strict=True):
        ab_t, ab_s = scalars(process, t)[0] ** 2, scalars(process, s)[0] ** 2
        beta = 1 - ab_t / ab_s
        x0 = _x0(process, x, t)
        x = math.sqrt(ab_s) * beta / (1 - ab_t) * x0 + math.sqrt(1 - beta) * (1 - ab_s) / (1 - ab_t) * x
        beta_tilde = (1 - ab_s) / (1 - ab_t) * beta
        if scalars(process, s)[1] > 0:
            if variance == "posterior":
                var = torch.tensor(beta_tilde, dtype=torch.float64)
            elif variance == "beta":
                var = torch.tensor(beta, dtype=torch.float64)
            else:
                f = (v + 1) / 2
                var = torch.exp(f * math.log(beta) + (1 - f) * math.log(beta_tilde))
            x = x + var.sqrt() * draws()
        states.append(x)
    return states


def _ddim_reference(process, ts, x, draws, eta):
    """DDIM (Song, Meng & Ermon 2021, eq. 12 and 16) on a variance-preserving path:
    ``x_s = sqrt(abar_s) x0^ + sqrt(1 - abar_s - c^2) eps^ + c z``,
    ``c = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s)``."""
    states = []
    tl = ts.tolist()
    for t, s in zip(tl[:-1], tl[1:], strict=True):
        ab_t, ab_s = scalars(process, t)[0] ** 2, scalars(process, s)[0] ** 2
        x0 = _x0(process, x, t)
        eps = (x - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)
        c = eta * math.sqrt((1 - ab_s) / (1 - ab_t)) * math.sqrt(1 - ab_t / ab_s)
        x = math.sqrt(ab_s) * x0 + math.sqrt(max(1 - ab_s - c * c, 0.0)) * eps
        if c > 0:
            x = x + c * draws()
        states.append(x)
    return states


def _drift_diffusion(process, t: float) -> tuple[float, float]:
    """``f(t), g(t)^2`` of the forward SDE ``dx = f x dt + g dW``: VP (Song et al. 2021, eq. 11)
    ``f = -beta(t)/2``, ``g^2 = beta(t) = beta_min + t (beta_max - beta_min)``; EDM's VE path
    ``sigma = sigma_max t`` (eq. 9 with ``g^2 = d sigma^2 / dt``): ``f = 0``, ``g^2 = 2 sigma_max^2 t``."""
    if isinstance(process, VPSDE):
        beta = process.beta_min + t * (process.beta_max - process.beta_min)
        return -0.5 * beta, beta
    assert isinstance(process, EDM)
    return 0.0, 2 * process.sigma_max**2 * t


def _em_step(process, t, s, x, draws):
    """Euler-Maruyama on the reverse SDE (Song et al. 2021, eq. 6), ``dt = t - s > 0`` backwards:
    ``x_s = x - (f x - g^2 score) dt + g sqrt(dt) z``; onto sigma = 0 the denoised mean ``alpha_s D``."""
    a_s, s_s, _ = scalars(process, s)
    if s_s == 0:
        return a_s * _x0(process, x, t)
    f, g2 = _drift_diffusion(process, t)
    dt = t - s
    return x - (f * x - g2 * _score(process, x, t)) * dt + math.sqrt(g2 * dt) * draws()


def _em_reference(process, ts, x, draws):
    tl = ts.tolist()
    states = []
    for t, s in zip(tl[:-1], tl[1:], strict=True):
        x = _em_step(process, t, s, x, draws)
        states.append(x)
    return states


def _pc_reference(process, ts, x, draws, snr, n_corrector):
    """Predictor-corrector (Song et al. 2021, Alg. 1 with the Langevin corrector of Alg. 5): at every
    ``t``, ``n_corrector`` times ``g = score``, ``z ~ N(0, I)``, ``e = 2 a (r ||z|| / ||g||)^2`` per
    sample with ``a = alpha_t^2 / alpha_s^2`` (``1 - beta_i`` of the VP SDE) and ``r`` the target
    signal-to-noise ratio, ``x <- x + e g + sqrt(2 e) z``; then the Euler-Maruyama step. The library
    caps ``e`` at ``2 a r^2 sigma_t^2`` (its value when ``x`` is pure noise at scale sigma_t)."""
    tl = ts.tolist()
    states = []
    for t, s in zip(tl[:-1], tl[1:], strict=True):
        a_t, s_t, _ = scalars(process, t)
        a_s = scalars(process, s)[0]
        a = (a_t / a_s) ** 2 if a_s > 0 else 1.0
        for _ in range(n_corrector):
            g = _score(process, x, t)
            z = draws()
            e = 2 * a * (snr * z.norm(dim=1, keepdim=True) / g.norm(dim=1, keepdim=True)) ** 2
            e = e.clamp(max=2 * a * snr**2 * s_t**2)
            x = x + e * g + (2 * e).sqrt() * z
        x = _em_step(process, t, s, x, draws)
        states.append(x)
    return states


def _langevin_reference(process, ts, x, draws, n_steps_each):
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1): for every level ``sigma_i > 0``,
    ``a_i = eps sigma_i^2 / sigma_L^2`` with ``eps = 0.2 sigma_L^2`` (the library's default, NCSN's
    ratio), ``n_steps_each`` updates ``x <- x + a_i / 2 score + sqrt(a_i) z``; then the denoised
    ``alpha(0) D(x, t_L)`` when the grid ends at sigma = 0 (Jolicoeur-Martineau et al. 2021)."""
    levels = [t for t in ts.tolist() if scalars(process, t)[1] > 0]
    sigma_l = scalars(process, levels[-1])[1]
    eps = 0.2 * sigma_l**2
    states = []
    for t in levels:
        a_i = eps * scalars(process, t)[1] ** 2 / sigma_l**2
        for _ in range(n_steps_each):
            x = x + 0.5 * a_i * _score(process, x, t) + math.sqrt(a_i) * draws()
        states.append(x)
    end = float(ts[-1])
    if scalars(process, end)[1] == 0:
        states.append(scalars(process, end)[0] * _x0(process, x, levels[-1]))
    return states


def _sde_kernel(eta: float, h: float):
    """``K(u) = (1 + eta) e^{-(1 + eta)(h - u)}`` on ``[0, h]``: the weight of ``D(lam_t + u)`` in the
    exact solution of the DPM-Solver++ SDE over one step (below)."""
    return lambda u: (1 + eta) * math.exp(-(1 + eta) * (h - u))


def _dpmpp_sde_reference(process, ts, x, tree, order, eta, s_noise=1.0):
    """DPM-Solver++(kM)-SDE (Lu et al. 2022, "DPM-Solver++", sec. 5; ``eta = 1`` is their
    SDE-DPM-Solver++ with ``x_s = (sigma_s / sigma_t) e^{-h} x_t + alpha_s (1 - e^{-2h}) D +
    sigma_s sqrt(1 - e^{-2h}) z``). With ``lam = log(alpha / sigma)`` and ``h = lam_s - lam_t``, the
    variation-of-constants solution of the reverse SDE with noise scale ``eta`` over one step is

        x_s = (sigma_s / sigma_t) e^{-eta h} x_t + alpha_s int_0^h K(u) D(lam_t + u) du
              + sigma_s sqrt(1 - e^{-2 eta h}) z,      K(u) = (1 + eta) e^{-(1 + eta)(h - u)}:

    for a point mass ``D = x0`` and ``x_t ~ N(alpha_t x0, sigma_t^2)`` its mean is
    ``alpha_s e^{-(1+eta)h} x0 + alpha_s (1 - e^{-(1+eta)h}) x0 = alpha_s x0`` (``(sigma_s /
    sigma_t) alpha_t = alpha_s e^{-h}``) and its variance ``sigma_s^2 e^{-2 eta h} + sigma_s^2 (1 -
    e^{-2 eta h}) = sigma_s^2``, the marginal. ``D`` is the polynomial through the last ``order``
    denoisings in ``lam``; for two points the integral is, in closed form,
    ``(1 - e^{-H}) D_0 + (H - 1 + e^{-H}) / H (D_0 - D_1) / r``, ``H = (1 + eta) h``,
    ``r = (lam_t - lam_prev) / h``; for three, scipy quadrature of ``K`` times the Lagrange basis.
    The step onto sigma = 0 is the denoising step ``alpha_s D``; ``s_noise`` scales the noise."""
    tl = ts.tolist()
    hist: list[tuple[float, torch.Tensor]] = []  # (lam_j, D_j), newest first
    states = []
    for t, s in zip(tl[:-1], tl[1:], strict=True):
        _, s_t, lam_t = scalars(process, t)
        a_s, s_s, lam_s = scalars(process, s)
        d = _x0(process, x, t)
        if s_s == 0:
            x = a_s * d
        else:
            h = lam_s - lam_t
            hist = [(lam_t, d), *hist][:order]
            if len(hist) == 1:
                integral = -math.expm1(-(1 + eta) * h) * d
            elif len(hist) == 2:
                big_h = (1 + eta) * h
                r = (lam_t - hist[1][0]) / h
                integral = (
                    -math.expm1(-big_h) * d + (big_h + math.expm1(-big_h)) / big_h * (d - hist[1][1]) / r
                )
            else:
                w = lagrange_weights(_sde_kernel(eta, h), 0.0, h, [lj - lam_t for lj, _ in hist])
                integral = combine(w, [dj for _, dj in hist])
            x = (s_s / s_t) * math.exp(-eta * h) * x + a_s * integral
            x = x + s_noise * s_s * math.sqrt(-math.expm1(-2 * eta * h)) * tree(t, s)
        states.append(x)
    return states


def _heun_churn_reference(process, ts, x, draws, s_churn, s_noise):
    """EDM's stochastic sampler (Karras et al. 2022, Alg. 2) on ``sigma(t) = sigma_max t``
    (``alpha = 1``) with ``S_tmin = 0``, ``S_tmax = inf``: ``gamma = min(S_churn / N, sqrt(2) - 1)``,
    ``s^ = s_i (1 + gamma)``, ``x^ = x + sqrt(s^^2 - s_i^2) S_noise z``, ``d = (x^ - D(x^, s^)) / s^``,
    ``x' = x^ + (s_{i+1} - s^) d`` and, when ``s_{i+1} > 0``, ``x = x^ + (s_{i+1} - s^)(d + d') / 2``."""
    assert isinstance(process, EDM)
    tl = ts.tolist()
    n = len(tl) - 1
    gamma = min(s_churn / n, math.sqrt(2) - 1)
    states = []
    for t, s in zip(tl[:-1], tl[1:], strict=True):
        sig, sig_next = process.sigma_max * t, process.sigma_max * s
        sig_hat = sig * (1 + gamma)
        x_hat = x + math.sqrt(sig_hat**2 - sig**2) * s_noise * draws()
        d = (x_hat - _x0(process, x_hat, sig_hat / process.sigma_max)) / sig_hat
        x = x_hat + (sig_next - sig_hat) * d
        if sig_next > 0:
            d_next = (x - _x0(process, x, s)) / sig_next
            x = x_hat + (sig_next - sig_hat) * 0.5 * (d + d_next)
        states.append(x)
    return states


# --------------------------------------------------------------------------------------------------
# 1. pathwise equality with the same draws
# --------------------------------------------------------------------------------------------------
def _run(name, process, ts, x, denoiser=None, **opts):
    """The sampler's state after every step (its callback) and its output."""
    log: list[torch.Tensor] = []
    out = SAMPLERS[name].fn(
        denoiser or _oracle(process),
        x.clone(),
        ts,
        generator=torch.Generator().manual_seed(SEED),
        callback=lambda d: log.append(d["x"].clone()),
        **opts,
    )
    return out, log


def _assert_path(out, log, states):
    assert len(log) == len(states)
    for i, (got, want) in enumerate(zip(log, states, strict=True)):
        torch.testing.assert_close(got, want, **TOL, msg=lambda m, i=i: f"step {i}: {m}")
    torch.testing.assert_close(out, states[-1], **TOL)


DDPM_TABLE = DiscreteVP.linear()


@pytest.mark.parametrize(
    "process, grid",
    [
        (DDPM_TABLE, lambda p: uniform_grid(p, 10)),
        (VPSDE(), lambda p: torch.linspace(1.0, 0.0, 9, dtype=torch.float64)),
    ],
    ids=["ddpm-table", "vp-sde"],
)
@pytest.mark.parametrize("variance", ["posterior", "beta"])
def test_ddpm_path(process, grid, variance):
    ts = grid(process)
    x, _ = _start(process, float(ts[0]), 16)
    out, log = _run("ddpm", process, ts, x, variance=variance)
    states = _ddpm_reference(process, ts, x, _Draws(x.shape), variance)
    _assert_path(out, log, states)


class _LearnedVarianceGaussian:
    """The exact denoiser plus a fixed variance output ``v`` per dimension (a network with
    ``learn_sigma``): ``x0_and_variance`` returns both from one call."""

    V = torch.tensor([-0.6, 0.1, 0.8], dtype=torch.float64)

    def __init__(self, process):
        self.process = process
        self.oracle = _oracle(process)

    def __call__(self, x, t, cond=None):
        return self.oracle(x, t, cond)

    def x0_and_variance(self, x, t, cond=None):
        return self.oracle(x, t, cond), self.V.expand_as(x)


def test_ddpm_learned_variance_path():
    process = DiscreteVP.cosine()
    ts = uniform_grid(process, 8)
    x, _ = _start(process, float(ts[0]), 16)
    out, log = _run("ddpm", process, ts, x, denoiser=_LearnedVarianceGaussian(process), variance="learned")
    states = _ddpm_reference(process, ts, x, _Draws(x.shape), "learned", _LearnedVarianceGaussian.V)
    _assert_path(out, log, states)


@pytest.mark.parametrize("eta", [1.0, 0.4])
def test_ddim_eta_path(eta):
    process = DDPM_TABLE
    ts = uniform_grid(process, 10)
    x, _ = _start(process, float(ts[0]), 16)
    out, log = _run("ddim", process, ts, x, eta=eta)
    _assert_path(out, log, _ddim_reference(process, ts, x, _Draws(x.shape), eta))


@pytest.mark.parametrize(
    "process, ts",
    [
        (VPSDE(), torch.linspace(1.0, 0.0, 11, dtype=torch.float64)),
        (EDM(), torch.linspace(1.0, 0.0, 11, dtype=torch.float64) ** 2),
    ],
    ids=["vp", "edm"],
)
def test_euler_maruyama_path(process, ts):
    x, _ = _start(process, float(ts[0]), 16)
    out, log = _run("euler_maruyama", process, ts, x)
    _assert_path(out, log, _em_reference(process, ts, x, _Draws(x.shape)))


@pytest.mark.parametrize("n_corrector", [1, 2])
def test_pc_path(n_corrector):
    process = VPSDE()
    ts = torch.linspace(1.0, 0.0, 9, dtype=torch.float64)
    x, _ = _start(process, 1.0, 16)
    out, log = _run("pc", process, ts, x, snr=0.16, n_corrector=n_corrector)
    _assert_path(out, log, _pc_reference(process, ts, x, _Draws(x.shape), 0.16, n_corrector))


def test_annealed_langevin_path():
    process = EDM()
    ts = log_snr_grid(process, 6, sigma_min=0.05, sigma_max=20.0)
    x, _ = _start(process, float(ts[0]), 16)
    out, log = _run("annealed_langevin", process, ts, x, n_steps_each=4)
    states = _langevin_reference(process, ts, x, _Draws(x.shape), 4)
    _assert_path(log[-1], log, states[:-1])  # one callback per level, then the denoising step
    torch.testing.assert_close(out, states[-1], **TOL)


@pytest.mark.parametrize("name, order", [("dpmpp_2m_sde", 2), ("dpmpp_3m_sde", 3)])
@pytest.mark.parametrize(
    "process, grid, eta, s_noise",
    [
        (EDM(), lambda p: karras_grid(p, 8), 1.0, 1.0),
        (VPSDE(), lambda p: log_snr_grid(p, 8), 0.5, 1.0),
        (DiscreteVP.cosine(), lambda p: karras_grid(p, 7), 1.0, 0.8),
    ],
    ids=["edm-eta1", "vp-eta0.5", "cosine-snoise0.8"],
)
def test_dpmpp_sde_path(name, order, process, grid, eta, s_noise):
    ts = grid(process)
    x, _ = _start(process, float(ts[0]), 16)
    out, log = _run(name, process, ts, x, eta=eta, s_noise=s_noise)
    tree = _TreeDraws(x, float(ts[0]))
    _assert_path(out, log, _dpmpp_sde_reference(process, ts, x, tree, order, eta, s_noise))


def test_heun_churn_path():
    process = EDM()
    ts = karras_grid(process, 6)
    x, _ = _start(process, float(ts[0]), 16)
    out, log = _run("heun", process, ts, x, s_churn=2.0, s_noise=1.007)
    _assert_path(out, log, _heun_churn_reference(process, ts, x, _Draws(x.shape), 2.0, 1.007))


# --------------------------------------------------------------------------------------------------
# 2. exact output moments and the weak order
# --------------------------------------------------------------------------------------------------
def _identify(out: torch.Tensor, xi0: torch.Tensor, draws: list[torch.Tensor]):
    """Least squares of ``out (B, D)`` on ``[1, xi_0, z_1, ...]`` per dimension: the affine map's
    constant ``c (D,)`` and coefficients ``a (D, M)``, and the largest residual."""
    xis = torch.stack([xi0, *draws]).numpy()  # (M, B, D)
    y = out.numpy()
    consts, coefs, resid = [], [], 0.0
    for d in range(y.shape[1]):
        design = np.concatenate([np.ones((y.shape[0], 1)), xis[:, :, d].T], axis=1)
        sol, *_ = np.linalg.lstsq(design, y[:, d], rcond=None)
        resid = max(resid, float(np.abs(design @ sol - y[:, d]).max()))
        consts.append(sol[0])
        coefs.append(sol[1:])
    return np.array(consts), np.array(coefs), resid


def _exact_moments(name, process, ts, **opts):
    """Mean and variance ``(D,)`` of the sampler's output started from the exact marginal at
    ``ts[0]``, identified exactly from one batch."""
    n = len(ts) - 1
    x, xi0 = _start(process, float(ts[0]), n + 12)
    out = SAMPLERS[name].fn(_oracle(process), x, ts, generator=torch.Generator().manual_seed(SEED), **opts)
    if name.startswith("dpmpp"):
        replay = _TreeDraws(x, float(ts[0]))
        tl = ts.tolist()
        draws = [replay(t, s) for t, s in zip(tl[:-1], tl[1:], strict=True)]
    else:
        replay = _Draws(x.shape)
        draws = [replay() for _ in range(n)]
    c, a, resid = _identify(out, xi0, draws)
    assert resid < 1e-11, resid  # affine in the replayed draws: the draws are the sampler's
    return c, (a**2).sum(1)


WEAK_STEPS = (16, 32, 64, 128)
T_END = 0.05  # the VP grids stop at t = 0.05 (sigma~ = 0.17), before the final denoising step


def _vp_t_grid(process, n):
    return torch.linspace(1.0, T_END, n + 1, dtype=torch.float64)


def _edm_lam_grid(process, n):
    return log_snr_grid(process, n, sigma_min=0.05, sigma_max=80.0)[:-1]


# name, process, grid, options, weak order of the variance, whether the mean is exact.
# Orders: DDPM ancestral sampling and Euler-Maruyama are first-order weak schemes. The
# DPM-Solver++ SDE steps are exact for a constant D and draw Gaussian increments of the exact
# variance; their multistep correction multiplies history differences D_j - D_0, which carry the
# Brownian increments between the points (size sqrt(h)), by O(h) weights: a random term of variance
# O(h^3) per step, O(h^2) over the grid. So the variance converges at order 2 for 2M and 3M alike
# (3M reaches it from above: its O(h^3) deterministic part dominates on coarse grids).
# Means: for Gaussian data E[D(x_t)] = mu when E[x_t] = alpha_t mu (D is affine), and the DDPM
# posterior mean maps alpha_t mu to alpha_s mu (c_xt alpha_t + c_x0 = alpha_s), as does the
# DPM-Solver++ SDE step ((sigma_s / sigma_t) e^{-eta h} alpha_t + alpha_s (1 - e^{-(1+eta) h}) =
# alpha_s, since sigma_s alpha_t / sigma_t = alpha_s e^{-h}, and its weights sum to the kernel's
# integral 1 - e^{-(1+eta) h}): their output mean is exact to rounding. Euler-Maruyama's is not
# (first order).
WEAK_CASES = {
    "ddpm": ("ddpm", VPSDE(), _vp_t_grid, {}, 1, True),
    "ddpm-beta": ("ddpm", VPSDE(), _vp_t_grid, {"variance": "beta"}, 1, True),
    "euler_maruyama": ("euler_maruyama", VPSDE(), _vp_t_grid, {}, 1, False),
    "dpmpp_2m_sde": ("dpmpp_2m_sde", EDM(), _edm_lam_grid, {}, 2, True),
    "dpmpp_3m_sde": ("dpmpp_3m_sde", EDM(), _edm_lam_grid, {}, 2, True),
    "dpmpp_2m_sde-eta0.5": ("dpmpp_2m_sde", EDM(), _edm_lam_grid, {"eta": 0.5}, 2, True),
}


def _assert_order(errors, order, what):
    """The observed order between successive step counts, ``p_k = log2(e_k / e_{k+1})``, must
    approach ``order``. With the expansion ``e_N = C N^-p (1 + c / N + O(N^-2))`` the deviation
    ``p_k - p = c / (2 ln 2 N_k) + O(N^-2)`` halves with every doubling; required: it falls to at
    most 3/4 of its previous value over the last doubling (room for the O(N^-2) term) and ends
    within 1/4 of ``order``. A wrong rate keeps the deviation constant, an O(1) bias or a
    lower-order term makes it grow."""
    e = np.asarray(errors)
    dev = np.log2(e[:-1] / e[1:]) - order
    assert abs(dev[-1]) <= 0.75 * abs(dev[-2]) and abs(dev[-1]) < 0.25, (what, errors, dev + order)


@pytest.mark.parametrize("case", list(WEAK_CASES))
def test_weak_order_of_exact_moments(case):
    name, process, grid, opts, order, mean_exact = WEAK_CASES[case]
    mean_err, var_err = [], []
    for n in WEAK_STEPS:
        ts = grid(process, n)
        mean, var = _exact_moments(name, process, ts, **opts)
        true_mean, true_var = _marginal(process, float(ts[-1]))
        mean_err.append(float(np.linalg.norm(mean - true_mean.numpy())))
        var_err.append(float(np.linalg.norm(var - true_var.numpy())))
    _assert_order(var_err, order, "variance")
    if mean_exact:
        assert max(mean_err) < 1e-12, mean_err
    else:
        _assert_order(mean_err, order, "mean")
