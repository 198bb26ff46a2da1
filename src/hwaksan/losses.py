"""Training objectives.

Every denoising loss is a weighted squared error of the model's own prediction:
``L = E_t,x0,eps [ w(t) mean ||pred - pred*||^2 ]``. Weightings are stated as weights on the
x0-error (Kingma & Gao 2023) and converted into the prediction's space with
:func:`hwaksan.parameterizations.prediction_scale`, so that "min-SNR-5" means the same objective
whether the network predicts eps, x0 or v:

=============  ==============================  =========================================
weighting      weight on ``||x0^ - x0||^2``      equals
=============  ==============================  =========================================
``simple``     the prediction's own MSE         Ho et al. L_simple for eps, FM for velocity
``eps``        ``snr``                           eps-MSE (and NCSN's DSM for a score model)
``x0``         1                                 x0-MSE
``v``          ``(alpha^2 + sigma^2)^2/sigma^2``    v-MSE (``snr + 1`` for VP)
``velocity``   ``(alpha' - sigma' alpha/sigma)^2``  flow-matching MSE
``min_snr``    ``min(snr, gamma)``               Hang et al. 2023 (eps: min/snr, v: min/(snr+1))
``edm``        ``(s^2 + sd^2)/(s sd)^2``         Karras et al. 2022 (s = sigma~)
=============  ==============================  =========================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ._typing import Cond
from .parameterizations import (
    ModelDenoiser,
    prediction_from_x0_eps,
    prediction_scale,
    reverse_log_variance,
    x0_eps_from_prediction,
)
from .processes import DiscreteVP, Process
from .utils import GeneratorLike, append_dims, rand, randn, randn_like

__all__ = [
    "TrainingDraw",
    "T_DISTRIBUTIONS",
    "WEIGHTINGS",
    "sample_t",
    "draw",
    "x0_weight",
    "denoising_loss",
    "dsm_loss",
    "score_matching_loss",
    "LOSSES",
    "normal_kl",
    "discretized_gaussian_log_likelihood",
    "prior_kl",
    "vlb_term",
    "HybridLoss",
    "hybrid_loss",
    "ImportanceSampler",
]

T_DISTRIBUTIONS = ("uniform", "discrete", "edm", "logit_normal", "terminal", "u_shaped", "u_shaped_tmax")
WEIGHTINGS = ("simple", "eps", "x0", "v", "velocity", "min_snr", "edm")


@dataclass(frozen=True)
class TrainingDraw:
    """One training draw: data ``x0``, noise ``eps``, times ``t (B,)`` and ``x_t`` (``(B, *shape)``)."""

    x0: torch.Tensor
    eps: torch.Tensor
    t: torch.Tensor
    x_t: torch.Tensor


def sample_t(
    process: Process,
    n: int,
    dist: str = "uniform",
    generator: GeneratorLike = None,
    *,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    u_shape_a: float = 4.0,
    p_t_max: float = 0.1,
    device=None,
) -> torch.Tensor:
    """Training times ``(n,)`` float64.

    ``uniform``: U(t_eps, t_max) with ``t_eps = process.t_min`` (U(0, 1) for flows);
    ``discrete``: DDPM's uniform integer step ``k in 1..T``, t = k/T;
    ``edm``: ``ln sigma~ ~ N(p_mean, p_std^2)`` (Karras et al. 2022, sec. 5), mapped to t;
    ``logit_normal``: ``t = sigmoid(N(0, 1))`` (Esser et al. 2024), for flows;
    ``terminal``: ``t = t_max`` for every sample: one-step distillation of a rectified flow, whose
    one Euler step from ``t_max`` must land on the paired sample (Liu et al. 2022, sec. 2.3);
    ``u_shaped``: ``t = t_min + (t_max - t_min) u`` with the U-shaped density
    ``p(u) = a cosh(a (u - 1/2)) / (2 sinh(a/2))`` on [0, 1], ``a = u_shape_a`` (4), i.e.
    ``p(u) ∝ exp(a u) + exp(a (1 - u))``, which puts weight on both ends: Lee, Lin & Fanti 2024,
    "Improving the Training of Rectified Flows", sec. 4.1 (written ``exp(a u) + exp(-a u)`` there;
    their code draws ``u ~ exp(a u)`` mirrored with probability 1/2, the same density). Drawn exactly
    by inverting its CDF ``F(u) = (sinh(a (u - 1/2)) + sinh(a/2)) / (2 sinh(a/2))`` in float64;
    ``u_shaped_tmax``: ``t = t_max`` with probability ``p_t_max`` (0.1), else ``u_shaped``. Every
    sampler's first network call is at exactly ``t_max``, and for the flow interpolant (alpha = 0
    there) the network's noise level ``-lambda(t)/8`` is the clamp value there, an input that no
    density on [t_min, t_max] reaches; this atom trains it. One Euler step uses only that call.
    """
    if dist not in T_DISTRIBUTIONS:
        raise ValueError(f"unknown t distribution {dist!r}; choose one of {', '.join(T_DISTRIBUTIONS)}")
    if dist == "terminal":
        return torch.full((n,), process.t_max, dtype=torch.float64, device=device)
    u = rand((n,), generator, dtype=torch.float64, device=device)
    if dist == "uniform":
        lo = process.t_min
        return lo + (process.t_max - lo) * u
    if dist == "u_shaped":  # (u_shaped_tmax below draws its U-shaped part through this branch)
        if not u_shape_a > 0:
            raise ValueError(f"u_shape_a must be > 0, got {u_shape_a}")
        half = math.sinh(u_shape_a / 2)
        u = 0.5 + torch.asinh((2 * u - 1) * half) / u_shape_a
        return process.t_min + (process.t_max - process.t_min) * u.clamp(0.0, 1.0)
    if dist == "u_shaped_tmax":
        if not 0.0 <= p_t_max <= 1.0:
            raise ValueError(f"p_t_max must be in [0, 1], got {p_t_max}")
        at_end = u < p_t_max
        t = sample_t(process, n, "u_shaped", generator, u_shape_a=u_shape_a, device=device)
        return torch.where(at_end, torch.full_like(t, process.t_max), t)
    if dist == "discrete":
        if not isinstance(process, DiscreteVP):
            raise ValueError("the 'discrete' t distribution needs a DDPM table process")
        return ((u * process.T).floor().clamp(max=process.T - 1) + 1) / process.T
    if dist == "edm":
        z = randn((n,), generator, dtype=torch.float64, device=device)
        t = process.t_from_sigma_tilde(torch.exp(p_mean + p_std * z))
        return t.clamp(1e-9, process.t_max)
    z = randn((n,), generator, dtype=torch.float64, device=device)
    return torch.sigmoid(z).clamp(1e-6, process.t_max - 1e-6)


def draw(
    process: Process,
    x0: torch.Tensor,
    t: torch.Tensor | None = None,
    *,
    t_dist: str = "uniform",
    generator: GeneratorLike = None,
    coupling: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    eps: torch.Tensor | None = None,
) -> TrainingDraw:
    """Draw ``eps`` (optionally re-paired with ``x0`` by a coupling) and ``t``, and form ``x_t``.

    A given ``eps (B, *shape)`` is used instead of fresh noise: a sample of another source
    distribution (flows between two data sets), or the fixed partner of ``x0`` (reflow pairs).
    """
    if eps is None:
        eps = randn_like(x0, generator)
    elif eps.shape != x0.shape:
        raise ValueError(f"eps {tuple(eps.shape)} must have the shape of x0 {tuple(x0.shape)}")
    if coupling is not None:
        eps = coupling(x0, eps)
    if t is None:
        t = sample_t(process, x0.shape[0], t_dist, generator, device=x0.device)
    return TrainingDraw(x0, eps, t, process.q_sample(x0, t, eps))


def x0_weight(
    weighting: str,
    process: Process,
    t: torch.Tensor,
    *,
    min_snr_gamma: float = 5.0,
    sigma_data: float = 1.0,
) -> torch.Tensor:
    """Weight ``(B,)`` on the x0 squared error for a named weighting (table in the module doc)."""
    if weighting not in WEIGHTINGS or weighting == "simple":
        raise ValueError(f"x0_weight takes one of {', '.join(WEIGHTINGS[1:])}, got {weighting!r}")
    if weighting in ("eps", "x0", "v", "velocity"):
        return prediction_scale(weighting, process, t, sigma_data)
    if weighting == "min_snr":
        return process.snr(t).clamp(max=min_snr_gamma)
    st = process.sigma_tilde(t)
    return (st**2 + sigma_data**2) / (st * sigma_data) ** 2


def _prediction_error(
    model: ModelDenoiser, pred: torch.Tensor, d: TrainingDraw, weighting: str, min_snr_gamma: float
) -> torch.Tensor:
    """Per-sample ``w_pred(t) mean_dims (pred - pred*)^2`` ``(B,)`` of :func:`denoising_loss`."""
    target = prediction_from_x0_eps(model.prediction, d.x0, d.eps, d.t, model.process, model.sigma_data)
    per_sample = (pred - target).pow(2).reshape(d.x0.shape[0], -1).mean(1)
    if weighting != "simple":
        w = x0_weight(weighting, model.process, d.t, min_snr_gamma=min_snr_gamma, sigma_data=model.sigma_data)
        w = w / prediction_scale(model.prediction, model.process, d.t, model.sigma_data)
        per_sample = per_sample * w.to(per_sample.dtype)
    return per_sample


def denoising_loss(
    model: ModelDenoiser,
    x0: torch.Tensor,
    *,
    cond: Cond = None,
    t: torch.Tensor | None = None,
    t_dist: str = "uniform",
    weighting: str = "simple",
    min_snr_gamma: float = 5.0,
    generator: GeneratorLike = None,
    coupling: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    reduction: str = "mean",
    eps: torch.Tensor | None = None,
) -> torch.Tensor:
    """The denoising objective of ``model`` on a batch ``x0 (B, *shape)``.

    ``L = w_pred(t) mean_dims (pred(x_t, t) - pred*)^2`` with ``pred*`` the true value of the
    model's prediction type for the drawn ``(x0, eps)``, ``w_pred = 1`` for ``simple`` and
    ``x0_weight / prediction_scale`` otherwise. With ``prediction="velocity"`` on the linear
    interpolant and ``simple`` this is flow matching ``||v - (eps - x0)||^2`` (Lipman et al. 2023);
    with a coupling it is OT-CFM / rectified flow, and with given pairs ``eps`` (the partners of
    ``x0``) it is reflow (Liu et al. 2022).

    Returns a scalar (``reduction="mean"``) or per-sample losses ``(B,)`` (``"none"``).
    """
    d = draw(model.process, x0, t, t_dist=t_dist, generator=generator, coupling=coupling, eps=eps)
    pred = model.predict(d.x_t, d.t, cond)
    per_sample = _prediction_error(model, pred, d, weighting, min_snr_gamma)
    if reduction == "none":
        return per_sample
    if reduction != "mean":
        raise ValueError("reduction must be 'mean' or 'none'")
    return per_sample.mean()


def dsm_loss(
    score_model: ModelDenoiser, x0: torch.Tensor, *, generator: GeneratorLike = None, **kwargs
) -> torch.Tensor:
    """Denoising score matching for NCSN (Vincent 2011; Song & Ermon 2019, eq. 2 with lambda =
    sigma^2): ``E sigma^2 || s(x~, sigma) + (x~ - x)/sigma^2 ||^2`` — the ``eps`` weighting of a
    ``score``-predicting model."""
    if score_model.prediction != "score":
        raise ValueError("dsm_loss needs a model with prediction='score'")
    return denoising_loss(score_model, x0, weighting="eps", generator=generator, **kwargs)


def score_matching_loss(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    method: str = "exact",
    n_probes: int = 1,
    probe: str = "rademacher",
    generator: GeneratorLike = None,
) -> torch.Tensor:
    """Score matching without noise (Hyvarinen 2005; the article's form):
    ``E [ ||f(x)||^2 + 2 div f(x) ]``, which differs from ``E ||f - grad log p||^2`` by a constant.

    ``method="exact"``: the divergence by one backward pass per dimension (low dimension);
    ``"sliced"``: Hutchinson / sliced score matching (Song et al. 2019),
    ``div f ~ mean_probes v^T (df/dx) v`` with Rademacher or Gaussian ``v``.
    Differentiable with respect to the parameters of ``score_fn``. Shapes ``x (B, D)`` -> scalar.
    """
    if method not in ("exact", "sliced"):
        raise ValueError("method must be 'exact' or 'sliced'")
    x = x.detach().requires_grad_(True)
    f = score_fn(x)
    flat = f.reshape(x.shape[0], -1)
    if method == "exact":
        div = torch.zeros(x.shape[0], dtype=f.dtype, device=x.device)
        for i in range(flat.shape[1]):
            (g,) = torch.autograd.grad(flat[:, i].sum(), x, create_graph=True)
            div = div + g.reshape(x.shape[0], -1)[:, i]
    else:
        div = 0.0
        for _ in range(n_probes):
            v = randn_like(f, generator)
            if probe == "rademacher":
                v = v.sign()
            (g,) = torch.autograd.grad((f * v).sum(), x, create_graph=True)
            div = div + (g * v).reshape(x.shape[0], -1).sum(1)
        div = div / n_probes
    return (flat.pow(2).sum(1) + 2 * div).mean()


# --------------------------------------------------------------------------------------------------
# the variational bound as a loss: L_vlb, L_hybrid and importance-sampled steps
# (Ho et al. 2020 eq. 5; Nichol & Dhariwal 2021 sec. 3.1-3.3)
# --------------------------------------------------------------------------------------------------

#: Training objectives of the trainer's ``[diffusion] loss``.
LOSSES = ("simple", "hybrid", "vlb")

#: Width of one 8-bit level of data scaled by ``x = k / 127.5 - 1``.
BIN_WIDTH_8BIT = 2.0 / 255.0


def normal_kl(
    mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor
) -> torch.Tensor:
    """Elementwise ``KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2)))`` in nats:
    ``(logvar2 - logvar1 + exp(logvar1 - logvar2) + (mean1 - mean2)^2 exp(-logvar2) - 1) / 2``.
    Arguments broadcast against each other."""
    return 0.5 * (
        -1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2)
    )


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, *, bin_width: float = BIN_WIDTH_8BIT
) -> torch.Tensor:
    """Elementwise log-mass of ``N(mean, exp(log_scale)^2)`` on the bin ``[x - w/2, x + w/2]`` of
    each value of ``x`` in [-1, 1] (Ho et al. 2020 eq. 13, the decoder ``L_0``), float64.

    The bins of ``x = -1`` and ``x = +1`` extend to ``-inf`` and ``+inf`` (values within half a
    bin of the ends count as the ends). ``w = 2/255`` for 8-bit data. The mass
    ``Phi(b) - Phi(a)`` is evaluated in log space on the side of the mean where it does not cancel,
    so tiny bins far in a tail keep their precision.
    """
    x, mean, log_scale = (torch.as_tensor(v).double() for v in (x, mean, log_scale))
    inv = torch.exp(-log_scale)
    hi = (x - mean + bin_width / 2) * inv
    lo = (x - mean - bin_width / 2) * inv
    upper = (lo + hi) > 0  # the bin lies above the mean: use Phi(-lo) - Phi(-hi)
    a, b = torch.where(upper, -hi, lo), torch.where(upper, -lo, hi)
    log_b = torch.special.log_ndtr(b)
    log_mid = log_b + torch.log(-torch.expm1(torch.special.log_ndtr(a) - log_b))
    first = x < -1 + bin_width / 2
    last = x > 1 - bin_width / 2
    return torch.where(
        first, torch.special.log_ndtr(hi), torch.where(last, torch.special.log_ndtr(-lo), log_mid)
    )


def prior_kl(process: Process, x0: torch.Tensor, t: float | None = None) -> torch.Tensor:
    """``L_T = KL(q(x_t | x0) || N(0, sigma_p^2 I))`` per sample ``(B,)`` in nats, ``t`` defaulting
    to ``t_max``, with ``sigma_p^2 = alpha_t^2 + sigma_t^2`` (the marginal variance of unit-variance
    data): ``N(0, I)`` for every variance-preserving path, as Ho et al. (2020) use."""
    t = process.t_max if t is None else float(t)
    a, s = float(process.alpha(t)), float(process.sigma(t))
    logvar_p = math.log(a**2 + s**2)
    x = x0.reshape(x0.shape[0], -1).double()
    kl = normal_kl(a * x, torch.tensor(2 * math.log(s), dtype=torch.float64), 0.0, torch.tensor(logvar_p))
    return kl.sum(1)


def _vlb_from_x0(
    process: Process,
    x0: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    s: torch.Tensor,
    x0_hat: torch.Tensor,
    v: torch.Tensor | None,
    variance: str,
    bin_width: float,
) -> torch.Tensor:
    """``L_{t->s}`` per sample ``(B,)`` in nats: the KL term where ``sigma_s > 0``, the decoder's
    ``-log`` discretised-Gaussian mass where ``sigma_s = 0``."""
    b = x0.shape[0]
    true_mean, true_var = process.posterior(x_t.double(), x0.double(), t, s)
    model_mean, _ = process.posterior(x_t.double(), x0_hat.double(), t, s)
    log_var = reverse_log_variance(process, t, s, variance, v)
    if log_var.ndim == 1:
        log_var = append_dims(log_var, x0.ndim)
    decoder = process.sigma(s) <= 0
    kl = normal_kl(true_mean, append_dims(true_var.clamp_min(1e-300).log(), x0.ndim), model_mean, log_var)
    kl = kl.reshape(b, -1).sum(1)
    if not bool(decoder.any()):
        return kl
    nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * log_var, bin_width=bin_width)
    return torch.where(decoder.to(kl.device), nll.reshape(b, -1).sum(1), kl)


def _default_variance(denoiser) -> str:
    return "learned" if getattr(denoiser, "learn_sigma", False) else "beta"


def vlb_term(
    denoiser,
    x0: torch.Tensor,
    t: torch.Tensor,
    s: torch.Tensor,
    *,
    cond: Cond = None,
    eps: torch.Tensor | None = None,
    generator: GeneratorLike = None,
    variance: str | None = None,
    bin_width: float = BIN_WIDTH_8BIT,
) -> torch.Tensor:
    """One term of the variational bound (Ho et al. 2020 eq. 5) per sample ``(B,)`` in nats.

    For the step ``t -> s`` (per-sample float64 times ``(B,)``, ``s < t``) at
    ``x_t = alpha_t x0 + sigma_t eps``: ``KL(q(x_s | x_t, x0) || p(x_s | x_t))`` when
    ``sigma_s > 0``, and the decoder ``L_0 = -log p(x0 | x_t)`` (a discretised Gaussian with bins of
    width ``bin_width``, :func:`discretized_gaussian_log_likelihood`) when ``sigma_s = 0``. The model's
    reverse step is ``N(mu~(x_t, x0^), Sigma)``: the posterior mean at the denoised estimate and the
    variance ``variance`` (:data:`~hwaksan.parameterizations.VARIANCES`; default ``learned`` for a
    model with a learned variance, else ``beta``; see
    :func:`~hwaksan.parameterizations.reverse_log_variance`). One denoiser call.

    Shapes: ``x0 (B, *shape)`` in [-1, 1] (the decoder term needs data on the bins), ``eps`` like
    ``x0`` (drawn from ``generator`` when None).
    """
    process = denoiser.process
    variance = _default_variance(denoiser) if variance is None else variance
    t = torch.as_tensor(t, dtype=torch.float64, device=x0.device)
    s = torch.as_tensor(s, dtype=torch.float64, device=x0.device)
    if eps is None:
        eps = randn_like(x0, generator)
    x_t = process.q_sample(x0, t, eps)
    v = None
    if variance == "learned":
        fn = getattr(denoiser, "x0_and_variance", None)
        if fn is None or not getattr(denoiser, "learn_sigma", True):
            raise ValueError(
                "variance='learned' needs a model whose network has learn_sigma=True; use "
                "variance='beta' or 'posterior'"
            )
        x0_hat, v = fn(x_t, t, cond)
    else:
        x0_hat = denoiser(x_t, t, cond)
    return _vlb_from_x0(process, x0, x_t, t, s, x0_hat, v, variance, bin_width)


class ImportanceSampler:
    """Importance sampling of DDPM steps for ``L_vlb`` (Nichol & Dhariwal 2021, eq. 18).

    Keeps the last ``history`` values of ``L_k`` for each step ``k = 1..T``. Until every step has
    ``history`` values, steps are uniform; after that ``p_k ~ sqrt(E[L_k^2])`` over the stored
    values, mixed with ``uniform_mix`` of the uniform law (improved-diffusion's guard against a
    step whose probability would vanish): ``p = (1 - u) p_sqrt + u / T``. A draw of ``k`` carries the
    weight ``1 / (T p_k)``, so that ``E[w L_k] = mean_k L_k`` is unchanged.

    Its state (:meth:`state_dict`, two tensors) goes into the trainer's checkpoint, so resuming
    replays the same steps.
    """

    def __init__(self, T: int, history: int = 10, uniform_mix: float = 1e-3) -> None:
        if T < 1 or history < 1 or not 0 <= uniform_mix <= 1:
            raise ValueError("need T >= 1, history >= 1 and 0 <= uniform_mix <= 1")
        self.T, self.history_len, self.uniform_mix = int(T), int(history), float(uniform_mix)
        self.history = torch.zeros(self.T, self.history_len, dtype=torch.float64)
        self.count = torch.zeros(self.T, dtype=torch.int64)

    def warmed_up(self) -> bool:
        """Whether every step has ``history`` stored values."""
        return bool((self.count >= self.history_len).all())

    def probabilities(self) -> torch.Tensor:
        """``(T,)`` probabilities of the steps ``k = 1..T`` (float64)."""
        uniform = torch.full((self.T,), 1.0 / self.T, dtype=torch.float64)
        if not self.warmed_up():
            return uniform
        p = self.history.pow(2).mean(1).sqrt()
        p = p / p.sum()
        return (1 - self.uniform_mix) * p + self.uniform_mix * uniform

    def sample(
        self, n: int, generator: GeneratorLike = None, device=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps ``k (n,)`` (long, 1..T) and their weights ``1 / (T p_k)`` ``(n,)`` (float64)."""
        u = rand((n,), generator, dtype=torch.float64, device=device)
        p = self.probabilities().to(u.device)
        if not self.warmed_up():
            k = (u * self.T).floor().clamp(max=self.T - 1).long()
        else:
            k = torch.searchsorted(p.cumsum(0), u, right=True).clamp(max=self.T - 1)
        return k + 1, 1.0 / (self.T * p[k])

    def update(self, k: torch.Tensor, losses: torch.Tensor) -> None:
        """Record ``losses (n,)`` of steps ``k (n,)`` (1..T), in order."""
        for step, value in zip(k.reshape(-1).tolist(), losses.reshape(-1).double().tolist(), strict=True):
            i, c = int(step) - 1, int(self.count[int(step) - 1])
            if c == self.history_len:
                self.history[i, :-1] = self.history[i, 1:].clone()
                self.history[i, -1] = value
            else:
                self.history[i, c] = value
                self.count[i] = c + 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``{"history": (T, history) float64, "count": (T,) int64}``."""
        return {"history": self.history.clone(), "count": self.count.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` output."""
        if tuple(state["history"].shape) != tuple(self.history.shape):
            raise ValueError(
                f"importance-sampler state of shape {tuple(state['history'].shape)} does not fit "
                f"T = {self.T} steps x {self.history_len} values"
            )
        self.history = state["history"].double().cpu().clone()
        self.count = state["count"].long().cpu().clone()


@dataclass(frozen=True)
class HybridLoss:
    """What :func:`hybrid_loss` computed: the objective (scalar or ``(B,)``) and, per sample, the
    ``L_simple`` term, the ``L_{k-1}`` term in bits/dim (detached) and the DDPM step ``k``."""

    loss: torch.Tensor
    simple: torch.Tensor
    vlb: torch.Tensor
    k: torch.Tensor


def hybrid_loss(
    model: ModelDenoiser,
    x0: torch.Tensor,
    *,
    kind: str = "hybrid",
    cond: Cond = None,
    weighting: str = "simple",
    min_snr_gamma: float = 5.0,
    vlb_weight: float = 1e-3,
    variance: str | None = None,
    sampler: ImportanceSampler | None = None,
    generator: GeneratorLike = None,
    bin_width: float = BIN_WIDTH_8BIT,
    reduction: str = "mean",
) -> HybridLoss:
    """``L_hybrid = L_simple + lambda L_vlb`` (Nichol & Dhariwal 2021, eq. 16) or ``L_vlb`` alone.

    One DDPM step ``k`` per sample (uniform on ``1..T``, or from ``sampler``), one network call:
    ``L_simple`` is the prediction's squared error (:func:`denoising_loss`'s ``weighting``);
    ``L_vlb = sum_k L_{k-1}`` is estimated by ``T L_{k-1}`` with ``L_{k-1}`` in bits/dim
    (:func:`vlb_term`'s KL or decoder term; the prior term has no parameters). For ``hybrid`` the
    model's mean is detached inside ``L_vlb`` (stop-gradient: ``L_vlb`` trains the variance only)
    and ``lambda = vlb_weight`` (0.001); for ``vlb`` nothing is detached. This is
    improved-diffusion's ``loss = mse + vb * T / 1000``.

    With ``sampler``, steps are drawn from it and each sample's loss is weighted by ``1 / (T p_k)``
    (both terms, so the objective's expectation is unchanged); record the returned ``vlb`` terms
    with ``sampler.update(out.k, out.vlb)`` after the step.

    Args:
        model: a model on a :class:`~hwaksan.processes.DiscreteVP` table; ``hybrid`` needs a
            learned variance (``learn_sigma``).
        x0: ``(B, *shape)`` data in [-1, 1] on bins of width ``bin_width`` (8-bit: 2/255).
    """
    if kind not in ("hybrid", "vlb"):
        raise ValueError(f"kind must be 'hybrid' or 'vlb', got {kind!r}")
    process = model.process
    if not isinstance(process, DiscreteVP):
        raise ValueError(
            f"the {kind} loss sums over the steps of a DDPM table: use a ddpm-* process, not "
            f"{process.config().get('name')!r}"
        )
    variance = _default_variance(model) if variance is None else variance
    if kind == "hybrid" and variance != "learned":
        raise ValueError(
            "L_hybrid trains a learned variance (the mean is detached in its L_vlb term): build the "
            "network with learn_sigma=True (--set model.args.learn_sigma=true)"
        )
    T, b = process.T, x0.shape[0]
    if sampler is None:
        k = (rand((b,), generator, dtype=torch.float64, device=x0.device) * T).floor().clamp(max=T - 1) + 1
        k, weight = k.long(), None
    else:
        if sampler.T != T:
            raise ValueError(f"the importance sampler has {sampler.T} steps but the process has {T}")
        k, weight = sampler.sample(b, generator, device=x0.device)
    t = k.double() / T
    s = (k.double() - 1) / T
    d = draw(process, x0, t, generator=generator)
    if variance == "learned":
        pred, v = model.predict_with_variance(d.x_t, d.t, cond)
    else:
        pred, v = model.predict(d.x_t, d.t, cond), None
    simple = _prediction_error(model, pred, d, weighting, min_snr_gamma)
    mean_pred = pred.detach() if kind == "hybrid" else pred
    x0_hat, _ = x0_eps_from_prediction(model.prediction, mean_pred, d.x_t, d.t, process, model.sigma_data)
    nats = _vlb_from_x0(process, x0, d.x_t, t, s, x0_hat, v, variance, bin_width)
    bpd = nats / (x0[0].numel() * math.log(2.0))
    if kind == "hybrid":
        per_sample = simple + (vlb_weight * T) * bpd.to(simple.dtype)
    else:
        per_sample = T * bpd.to(simple.dtype)
    if weight is not None:
        per_sample = per_sample * weight.to(per_sample.dtype)
    if reduction == "mean":
        loss = per_sample.mean()
    elif reduction == "none":
        loss = per_sample
    else:
        raise ValueError("reduction must be 'mean' or 'none'")
    return HybridLoss(loss, simple.detach(), bpd.detach(), k)
