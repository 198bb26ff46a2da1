"""Fit the time grid and the coefficients of :func:`hwaksan.samplers.fitted.sample_fitted`.

For one denoiser (a trained model or the oracle) and one step budget ``n``, :func:`fit_solver`
minimises the mean end-point error ``E |x_n(theta) - x_ref|_2`` of the sampler on calibration noise
against a float64 high-accuracy solution of the same PF-ODE
(:func:`hwaksan.samplers.plan.calibration_set`), by back-propagation through the sampler: the idea
of S4S (Frankel et al. 2025, eq. 7, coefficients and times jointly) and LD3 (Tong et al. 2025, sec.
3, the grid by gradient through the solver). The parameters ``theta`` are

- the grid: ``n - 1`` log-noise-level increments ``softmax(g) (log sigma~_max - log sigma~_end)``
  (every ``g`` gives a valid decreasing grid) and the last level before the denoising step,
  ``log sigma~_end = log sigma~_min + softplus(e)``;
- the coefficients of :mod:`hwaksan.samplers.fitted` (``order - 1`` predictor, ``order``
  corrector values per step and ``order - 1`` for the final step), all dimensionless and zero for
  the plain method.

Gradients reach the grid through the weights (functions of ``lam = -log sigma~``) and through the
denoiser's time input: the time of a level is the process's inverse (``t_from_log_snr``) with the
first-order straight-through correction ``t = t_0 + (l - l_0) / (d log sigma~/dt)`` (and ``alpha,
sigma`` likewise), so ``dD/dl`` is exact wherever the network (or oracle) is differentiable in ``t``.

The search: four starting methods, {data, noise} form x {corrector on, off} (the "off" start is the
corrector coefficients that reproduce the predictor, so one family holds all four), are scored on
the calibration batch on the standard grids (log-SNR, Karras over the full range, uniform in t with
each spacing); the two best get their grid planned by :func:`hwaksan.samplers.plan.plan_steps`
(Nelder-Mead, started from every standard grid); the better plan starts Adam on all parameters.
A quarter of the calibration batch is held out: the parameters kept are the best on it (early
stopping), and its error is the one reported. Evaluate a fitted solver on other noise still.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch

from .._typing import Denoiser
from ..utils import GeneratorLike
from .fitted import FORMS, Node, _weights, nodes_from_grid, run_fitted, sample_fitted, zero_coefficients
from .plan import calibration_set, plan_steps
from .schedules import SPACINGS, _sigma_range, karras_grid, log_snr_grid, uniform_grid

__all__ = ["FittedPlan", "fit_solver", "predictor_only_coefficients"]


@dataclass(frozen=True)
class FittedPlan:
    """A fitted solver: pass ``ts`` and ``options`` to ``sample_fitted`` (sampler ``"fitted"``).

    Attributes:
        ts: ``(n + 1,)`` float64 grid, decreasing to 0.
        options: ``{"coefficients": ..., "form": ..., "order": ..., "corrector": True}``.
        error: mean L2 end-point error on the held-out part of the calibration batch.
        initial_error: the same for the starting method and grid (before any fitting).
        start: the starting method, e.g. "noise, no corrector, planned grid".
        fit_error: the error on the part of the batch used for fitting.
        iterations: Adam iterations run.
        start_ts, start_options: the starting method and its planned grid (``initial_error``).
        trace: ``(iteration, fit error, held-out error)`` every 5 iterations.
    """

    ts: torch.Tensor
    options: dict
    error: float
    initial_error: float
    start: str
    fit_error: float
    iterations: int
    start_ts: torch.Tensor | None = None
    start_options: dict | None = None
    trace: list = field(default_factory=list, repr=False)


def predictor_only_coefficients(ts: torch.Tensor, process, order: int, form: str) -> dict:
    """Corrector coefficients that make the corrector reproduce the predictor exactly (as if the
    corrector were off): with predictor weights ``w`` (``k`` points) and corrector weights ``v``
    (``k + 1`` points, the new one first), ``c_0 = -v_new / (1 - rho)`` and ``c_j = (w_j - v_j) /
    (1 - rho)``; then ``sum v + (1 - rho) c . differences = sum w`` term by term."""
    nodes = nodes_from_grid(process, ts)
    coef = zero_coefficients(len(nodes) - 1, order)
    history: list[float] = []
    for i in range(len(nodes) - 1):
        nt, ns = nodes[i], nodes[i + 1]
        if not nt.finite:
            history = []
            continue
        if float(ns.sigma) == 0:
            break
        history = [nt.lam, *history][:order]
        h = ns.lam - nt.lam
        rho = math.exp(-h)
        rs = [(lj - nt.lam) / h for lj in history]
        w = _weights(h, rs, form)
        v = _weights(h, [1.0, *rs], form)
        row = coef["corrector"][i]
        row[0] = -v[0] / (1.0 - rho)
        for j in range(1, len(rs)):
            row[j] = (w[j] - v[j + 1]) / (1.0 - rho)
    return coef


def _straight_through_nodes(process, log_sigmas: torch.Tensor) -> list[Node]:
    """Nodes at the noise levels ``exp(log_sigmas)`` whose time, alpha and sigma carry the exact
    first derivative with respect to ``log_sigmas`` (one vectorised inversion of the schedule)."""
    l0 = log_sigmas.detach()
    t0 = process.t_from_log_snr(-2.0 * l0)
    a0, s0 = process.alpha(t0), process.sigma(t0)
    da, ds = process.d_alpha(t0), process.d_sigma(t0)
    dl_dt = ds / s0 - da / a0  # d log sigma~ / dt
    t = t0 + (log_sigmas - l0) / dl_dt
    alpha, sigma = a0 + da * (t - t0), s0 + ds * (t - t0)
    return [Node(t[i], alpha[i], sigma[i], -log_sigmas[i]) for i in range(len(t))]


def _inv_softplus(v: float) -> float:
    v = max(v, 1e-3)
    return v + math.log(-math.expm1(-v))


class _Params:
    """Grid and coefficient tensors of one fit."""

    def __init__(self, process, ts: torch.Tensor, coefficients: dict) -> None:
        self.process = process
        s_min, s_max, self.prepend = _sigma_range(process, None, None)
        self.l_min = math.log(s_min)
        sig = process.sigma_tilde(ts[int(self.prepend) : -1]).clamp(min=s_min)
        ls = sig.log()
        self.l_max, self.t_first = float(ls[0]), float(ts[int(self.prepend)])
        inc = (ls[:-1] - ls[1:]).clamp(min=1e-6)
        self.g = inc.log().clone().requires_grad_(True) if len(inc) else torch.zeros(0, dtype=torch.float64)
        self.e = torch.tensor(_inv_softplus(float(ls[-1]) - self.l_min), dtype=torch.float64)
        self.e.requires_grad_(len(inc) > 0)
        self.p = torch.tensor(coefficients["predictor"], dtype=torch.float64).requires_grad_(True)
        self.c = torch.tensor(coefficients["corrector"], dtype=torch.float64).requires_grad_(True)
        self.f = torch.tensor(coefficients["final"], dtype=torch.float64).requires_grad_(True)

    def tensors(self) -> list[torch.Tensor]:
        out = [self.p, self.c, self.f]
        return out + ([self.g, self.e] if self.g.numel() else [])

    def log_sigmas(self) -> torch.Tensor:
        if not self.g.numel():
            return torch.tensor([self.l_max], dtype=torch.float64)
        l_end = self.l_min + torch.nn.functional.softplus(self.e)
        l_end = torch.minimum(l_end, torch.tensor(self.l_max - 1e-3, dtype=torch.float64))
        cum = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(torch.softmax(self.g, 0), 0)])
        return self.l_max + (l_end - self.l_max) * cum

    def nodes(self) -> list[Node]:
        p = self.process
        first = [p.t_max] if self.prepend else []
        out = nodes_from_grid(p, torch.tensor([*first, self.t_first], dtype=torch.float64))
        out.extend(_straight_through_nodes(p, self.log_sigmas()[1:]))
        return out + nodes_from_grid(p, torch.zeros(1, dtype=torch.float64))

    def coefficients(self) -> dict:
        return {"predictor": list(self.p), "corrector": list(self.c), "final": self.f}

    def frozen(self) -> tuple[torch.Tensor, dict]:
        with torch.no_grad():
            ts = torch.tensor([float(n.t) for n in self.nodes()], dtype=torch.float64)
        coef = {
            "predictor": self.p.detach().tolist(),
            "corrector": self.c.detach().tolist(),
            "final": self.f.detach().tolist(),
        }
        return ts, coef


def _mean_error(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    d = (out.double() - ref.double()).reshape(len(ref), -1)
    return (d.square().sum(1) + 1e-30).sqrt().mean()


def fit_solver(
    denoiser: Denoiser,
    n_steps: int,
    *,
    calibration: tuple[torch.Tensor, torch.Tensor] | None = None,
    n_samples: int = 512,
    generator: GeneratorLike = None,
    order: int = 3,
    forms: tuple[str, ...] = FORMS,
    iterations: int = 300,
    lr: float = 0.02,
    plan_evals: int = 120,
    holdout: float = 0.25,
    progress: bool = False,
) -> FittedPlan:
    """Fit an ``n_steps`` grid and the solver coefficients of ``sample_fitted`` (module docstring).

    Args:
        denoiser: a model or the oracle, differentiable in its input (and time, for the grid).
        n_steps: steps = NFE of the fitted solver.
        calibration: ``(x, reference)`` from :func:`hwaksan.samplers.plan.calibration_set`
            (computed here with ``n_samples`` and ``generator`` when omitted).
        order: predictor history points (the corrector uses one more).
        forms: the forms tried as starting methods ("data", "noise").
        iterations: Adam iterations on all parameters (0: only choose the start and plan its grid).
        lr: Adam learning rate (cosine-decayed to lr / 20).
        plan_evals: sampler runs for the Nelder-Mead grid search of the starting method.
        holdout: fraction of the calibration batch held out for early stopping and the reported error.
        progress: show a tqdm bar.

    Returns:
        a :class:`FittedPlan`; sample with
        ``sample_fitted(denoiser, x, plan.ts, **plan.options)``.

    Example:
        >>> from hwaksan.oracles import GaussianMixtureDenoiser, anisotropic_mixture
        >>> from hwaksan.processes import EDM
        >>> den = GaussianMixtureDenoiser(anisotropic_mixture(2), EDM())
        >>> plan = fit_solver(den, 4, n_samples=32, iterations=10, plan_evals=10)
        >>> len(plan.ts), plan.error <= plan.initial_error
        (5, True)
    """
    if n_steps < 1:
        raise ValueError("need at least one step")
    for form in forms:
        if form not in FORMS:
            raise ValueError(f"unknown form {form!r}; choose from {', '.join(FORMS)}")
    process = denoiser.process
    if calibration is None:
        with torch.no_grad():
            calibration = calibration_set(denoiser, n_samples, generator)
    x_all, ref_all = calibration
    n_cal = len(x_all)
    n_val = max(1, int(round(holdout * n_cal))) if n_cal > 1 else 0
    x_fit, ref_fit = x_all[: n_cal - n_val], ref_all[: n_cal - n_val]
    x_val, ref_val = (x_all[n_cal - n_val :], ref_all[n_cal - n_val :]) if n_val else (x_fit, ref_fit)

    def error(x, ref, ts, opts) -> float:
        with torch.no_grad():
            out = sample_fitted(denoiser, x.clone(), ts, **opts)
        e = float(_mean_error(out, ref))
        return e if math.isfinite(e) else math.inf

    # 1. the starting methods: form x corrector (off = coefficients reproducing the predictor), each
    #    scored on its best standard grid; 2. the grids of the two best by Nelder-Mead (plan_steps)
    s_min, s_max, _ = _sigma_range(process, None, None)
    grids = {
        "log_snr": log_snr_grid(process, n_steps),
        "karras": karras_grid(process, n_steps, sigma_max=s_max),
    }
    for spacing in SPACINGS:
        try:
            grids[f"uniform-{spacing}"] = uniform_grid(process, n_steps, spacing)
        except ValueError:  # 'leading' exists for DDPM tables only
            continue

    def method(form: str, corrector: bool):
        def sampler(den, x, ts, **_):
            coef = zero_coefficients(len(ts) - 1, order)
            if not corrector:
                coef = predictor_only_coefficients(ts, process, order, form)
            return sample_fitted(den, x, ts, coefficients=coef, form=form, order=order)

        return sampler

    ranked = []
    for form in forms:
        for corrector in (True, False):
            fn = method(form, corrector)
            errs = []
            for ts in grids.values():
                with torch.no_grad():
                    e = float(_mean_error(fn(denoiser, x_fit.clone(), ts), ref_fit))
                errs.append(e if math.isfinite(e) else math.inf)
            ranked.append((min(errs), form, corrector))
    ranked.sort()
    plans = []
    for _, form, corrector in ranked[: min(2, len(ranked))]:
        plan = plan_steps(
            denoiser,
            n_steps,
            sampler=method(form, corrector),
            calibration=(x_fit, ref_fit),
            max_evals=plan_evals,
            starts={k: v for k, v in grids.items() if k not in ("log_snr", "karras")},
        )
        plans.append((plan.error, form, corrector, plan))
    _, form, corrector, plan = min(plans, key=lambda p: p[0])
    ts0 = plan.ts
    coef0 = (
        zero_coefficients(len(ts0) - 1, order)  # a grid from alpha = 0 has a boundary step more
        if corrector
        else predictor_only_coefficients(ts0, process, order, form)
    )
    start = f"{form} form, corrector {'on' if corrector else 'off'}, grid planned from {plan.initial}"
    base = {"form": form, "order": order}
    initial_error = error(x_val, ref_val, ts0, {**base, "coefficients": coef0})

    # 3. Adam on everything, early-stopped on the held-out samples (the network's weights frozen)
    with _frozen(denoiser):
        best_ts, best_coef, best_val, fit_err, trace = _adam(
            denoiser,
            process,
            ts0,
            coef0,
            base,
            x_fit,
            ref_fit,
            x_val,
            ref_val,
            iterations,
            lr,
            progress,
            error,
        )
        if best_ts is None:
            best_ts, best_coef = ts0, coef0
    options = {**base, "corrector": True, "coefficients": best_coef}
    start_options = {**base, "corrector": True, "coefficients": coef0}
    return FittedPlan(
        best_ts, options, best_val, initial_error, start, fit_err, iterations, ts0, start_options, trace
    )


@contextlib.contextmanager
def _frozen(denoiser):
    """No gradients for a network's own weights while the solver is fitted."""
    params = [
        p for p in (denoiser.parameters() if hasattr(denoiser, "parameters") else []) if p.requires_grad
    ]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _adam(
    denoiser, process, ts0, coef0, base, x_fit, ref_fit, x_val, ref_val, iterations, lr, progress, error
):
    """Adam on grid and coefficients; returns the best (by held-out error) ``ts, coefficients`` (None
    when nothing beat the start), their held-out and fit errors and the trace."""
    order, form, n_steps = base["order"], base["form"], len(ts0) - 1
    params = _Params(process, ts0, coef0)
    best_ts, best_coef = None, None
    best_val = error(x_val, ref_val, ts0, {**base, "coefficients": coef0})
    fit_err = error(x_fit, ref_fit, ts0, {**base, "coefficients": coef0})
    trace = [(0, fit_err, best_val)]
    if iterations > 0 and n_steps >= 2:
        opt = torch.optim.Adam(params.tensors(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations, eta_min=lr / 20)
        bar = range(iterations)
        if progress:
            from tqdm import tqdm

            bar = tqdm(bar, desc=f"fit {n_steps}-step solver", leave=False)
        for it in bar:
            opt.zero_grad()
            out = run_fitted(
                denoiser, x_fit.clone(), params.nodes(), params.coefficients(), order, True, form
            )
            loss = _mean_error(out, ref_fit)
            if not bool(torch.isfinite(loss)):
                break
            loss.backward()
            for tensor in params.tensors():
                if tensor.grad is not None:
                    torch.nan_to_num_(tensor.grad, nan=0.0, posinf=0.0, neginf=0.0)
            opt.step()
            sched.step()
            if (it + 1) % 5 == 0 or it + 1 == iterations:
                ts, coef = params.frozen()
                if bool((ts[1:] >= ts[:-1]).any()):
                    continue
                val = error(x_val, ref_val, ts, {**base, "coefficients": coef})
                trace.append((it + 1, float(loss.detach()), val))
                if val < best_val:
                    best_val, best_ts, best_coef = val, ts, coef
            if progress:
                bar.set_postfix(fit=f"{float(loss.detach()):.3g}", held_out=f"{best_val:.3g}")
    if best_ts is not None:
        fit_err = error(x_fit, ref_fit, best_ts, {**base, "coefficients": best_coef})
    return best_ts, best_coef, best_val, fit_err, trace
