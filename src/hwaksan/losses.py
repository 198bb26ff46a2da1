"""Training objectives (SPEC section 3).

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

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ._typing import Cond
from .parameterizations import ModelDenoiser, prediction_from_x0_eps, prediction_scale
from .processes import DiscreteVP, Process
from .utils import GeneratorLike, rand, randn, randn_like

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
]

T_DISTRIBUTIONS = ("uniform", "discrete", "edm", "logit_normal")
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
    device=None,
) -> torch.Tensor:
    """Training times ``(n,)`` float64.

    ``uniform``: U(t_eps, t_max) with ``t_eps = process.t_min`` (U(0, 1) for flows);
    ``discrete``: DDPM's uniform integer step ``k in 1..T``, t = k/T;
    ``edm``: ``ln sigma~ ~ N(p_mean, p_std^2)`` (Karras et al. 2022, sec. 5), mapped to t;
    ``logit_normal``: ``t = sigmoid(N(0, 1))`` (Esser et al. 2024), for flows.
    """
    if dist not in T_DISTRIBUTIONS:
        raise ValueError(f"unknown t distribution {dist!r}; choose one of {', '.join(T_DISTRIBUTIONS)}")
    u = rand((n,), generator, dtype=torch.float64, device=device)
    if dist == "uniform":
        lo = process.t_min
        return lo + (process.t_max - lo) * u
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
) -> TrainingDraw:
    """Draw ``eps`` (optionally re-paired with ``x0`` by a coupling) and ``t``, and form ``x_t``."""
    eps = randn_like(x0, generator)
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
) -> torch.Tensor:
    """The denoising objective of ``model`` on a batch ``x0 (B, *shape)``.

    ``L = w_pred(t) mean_dims (pred(x_t, t) - pred*)^2`` with ``pred*`` the true value of the
    model's prediction type for the drawn ``(x0, eps)``, ``w_pred = 1`` for ``simple`` and
    ``x0_weight / prediction_scale`` otherwise. With ``prediction="velocity"`` on the linear
    interpolant and ``simple`` this is flow matching ``||v - (eps - x0)||^2`` (Lipman et al. 2023);
    with a coupling it is OT-CFM / rectified flow.

    Returns a scalar (``reduction="mean"``) or per-sample losses ``(B,)`` (``"none"``).
    """
    d = draw(model.process, x0, t, t_dist=t_dist, generator=generator, coupling=coupling)
    pred = model.predict(d.x_t, d.t, cond)
    target = prediction_from_x0_eps(model.prediction, d.x0, d.eps, d.t, model.process, model.sigma_data)
    per_sample = (pred - target).pow(2).reshape(x0.shape[0], -1).mean(1)
    if weighting != "simple":
        w = x0_weight(weighting, model.process, d.t, min_snr_gamma=min_snr_gamma, sigma_data=model.sigma_data)
        w = w / prediction_scale(model.prediction, model.process, d.t, model.sigma_data)
        per_sample = per_sample * w.to(per_sample.dtype)
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
