"""Editing a real image with a trained model: SDEdit and deterministic (DDIM) inversion.

Both are short recipes over the core: a grid from :mod:`hwaksan.samplers.schedules`, one-shot noising
with :meth:`Process.q_sample`, and any registered sampler. Conditional edits (a new class, guidance)
only change the ``cond`` and the denoiser the sampler sees (:mod:`hwaksan.guidance`).

**Strength.** An edit of strength ``s`` in [0, 1] starts at the point of the sampler's grid curve
that lies the fraction ``s`` of the way from its lowest to its highest noise level, measured on the
grid's own axis, then runs ``steps`` steps of the same kind of grid from there to ``t = 0``:

- ``grid="uniform"``: ``t_s = s t_hi`` (SDEdit's ``t0``, Meng et al. 2022, for VP / DDPM / flows);
- ``grid="karras"``: ``sigma~_s = (sigma_lo^(1/rho) + s (sigma_hi^(1/rho) - sigma_lo^(1/rho)))^rho``
  (the Karras ramp, EDM eq. 5, read at ``1 - s``);
- ``grid="log_snr"``: ``log sigma~_s = log sigma_lo + s (log sigma_hi - log sigma_lo)``;

with ``t_hi``, ``sigma_hi`` the first point and ``sigma_lo`` the smallest positive point of that grid
for the same ``grid_options``. So ``s = 1`` starts where plain sampling starts, and ``s = 0`` returns
the input unchanged (no step, no noise). For the EDM process and the Karras grid,
``s = 0.3, 0.5, 0.6`` start at ``sigma~ = 0.32, 2.5, 5.8``.

**Inversion** (Song et al. 2021, DDIM sec. 4.3 / eq. 14; Dhariwal & Nichol 2021, App. F): the DDIM
step (Euler on ``dx~/dsigma~ = eps^``) run from ``t = 0`` up the grid. Step ``u -> v`` (``u < v``):
``x0^ = (x_u - sigma_u eps^) / alpha_u`` and ``x_v = alpha_v x0^ + sigma_v eps^``, the samplers' DDIM
update (:func:`hwaksan.samplers._common.ddim_step`) in the other direction, i.e.
``x_v = (alpha_v / alpha_u) x_u + (sigma_v - alpha_v sigma_u / alpha_u) eps^``. The explicit version
takes ``eps^`` at ``(x_u, u)`` (``eps^ = 0`` at ``sigma_u = 0``, its limit for a smooth density), so
inversion followed by DDIM generation on the same grid reconstructs the input up to ``O(1/steps)``.
With ``fixed_point_iters = k`` each step refines ``eps^ <- eps^(x_v, v)`` k times, which solves the
implicit equation "the DDIM step ``v -> u`` maps ``x_v`` back onto ``x_u``" (Pan et al. 2023,
fixed-point inversion) and makes the reconstruction exact up to the fixed point's convergence.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .._typing import Cond, Denoiser
from ..guidance import ClassifierFreeGuidance
from ..processes import Process
from ..samplers import CountingDenoiser, SampleResult, get_sampler, make_grid, uniform_grid
from ..samplers._common import Callback, ddim_step, denoise
from ..utils import GeneratorLike, as_time, randn_like

__all__ = ["strength_time", "edit_grid", "sdedit", "ddim_invert", "invert_and_generate", "guided"]

_FINITE_T = 1.0 - 1e-3  # where sigma~ is infinite at the grid's top (flows), read the curve here


def _sigma_tilde(process: Process, t: float) -> float:
    return float(process.sigma_tilde(t)) if float(process.alpha(t)) > 0 else math.inf


def strength_time(process: Process, strength: float, grid: str = "karras", **grid_options: Any) -> float:
    """The time ``t_s`` where an edit of ``strength`` starts on a grid of kind ``grid`` (module doc).

    Returns 0.0 for ``strength = 0``. Raises ValueError outside [0, 1].
    """
    s = float(strength)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"strength must lie in [0, 1], got {strength}")
    top = make_grid(process, 2, grid, **grid_options)  # [t_hi, t_lo, 0]
    t_hi = float(top[0])
    if s == 0.0:
        return 0.0
    if s == 1.0:
        return t_hi
    if grid == "uniform":
        return s * t_hi
    sig_hi = _sigma_tilde(process, t_hi)
    if not math.isfinite(sig_hi):
        sig_hi = _sigma_tilde(process, min(t_hi, _FINITE_T))
    sig_lo = _sigma_tilde(process, float(top[1]))
    if grid == "karras":
        rho = float(grid_options.get("rho", 7.0))
        sig = (sig_lo ** (1 / rho) + s * (sig_hi ** (1 / rho) - sig_lo ** (1 / rho))) ** rho
    else:  # log_snr
        sig = math.exp(math.log(sig_lo) + s * (math.log(sig_hi) - math.log(sig_lo)))
    return float(process.t_from_sigma_tilde(sig))


def edit_grid(
    process: Process, strength: float, steps: int, grid: str = "karras", **grid_options: Any
) -> torch.Tensor:
    """The float64 grid of an edit: ``steps`` steps of kind ``grid`` from ``strength_time`` to 0.

    For ``strength = 0`` the grid is ``[0.]`` (no step). When ``t_s`` lies at or below the grid's
    smallest positive time (within 0.1%) the edit is the single step ``[t_s, 0]``.
    """
    if steps < 1:
        raise ValueError("an edit needs at least one step")
    t_s = strength_time(process, strength, grid, **grid_options)
    if t_s == 0.0:
        return torch.zeros(1, dtype=torch.float64)
    if float(strength) == 1.0:
        return make_grid(process, steps, grid, **grid_options)
    if grid == "uniform":
        t_min = grid_options.get("t_min", process.t_min)
        if t_s <= t_min * (1 + 1e-3):
            return torch.tensor([t_s, 0.0], dtype=torch.float64)
        opts = {k: v for k, v in grid_options.items() if k != "t_max"}
        return uniform_grid(process, steps, t_max=t_s, **opts)
    opts = {k: v for k, v in grid_options.items() if k != "sigma_max"}
    lo = float(make_grid(process, 2, grid, **opts)[1])
    if t_s <= lo * (1 + 1e-3):
        return torch.tensor([t_s, 0.0], dtype=torch.float64)
    return make_grid(process, steps, grid, sigma_max=_sigma_tilde(process, t_s), **opts)


def guided(denoiser: Denoiser, guidance: float | None, **cfg_options: Any) -> Denoiser:
    """``denoiser`` under classifier-free guidance of weight ``guidance`` (``None`` or 1: unchanged),
    via :class:`hwaksan.guidance.ClassifierFreeGuidance` (``uncond + w (cond - uncond)``)."""
    if guidance is None or float(guidance) == 1.0:
        return denoiser
    return ClassifierFreeGuidance(denoiser, float(guidance), **cfg_options)


def sdedit(
    denoiser: Denoiser,
    x0: torch.Tensor,
    strength: float,
    *,
    sampler: str = "heun",
    steps: int = 20,
    grid: str = "karras",
    cond: Cond = None,
    guidance: float | None = None,
    guidance_options: dict[str, Any] | None = None,
    generator: GeneratorLike = None,
    noise: torch.Tensor | None = None,
    callback: Callback = None,
    grid_options: dict[str, Any] | None = None,
    **options: Any,
) -> SampleResult:
    """SDEdit (Meng et al. 2022, Alg. 1): noise ``x0`` to strength ``s`` and denoise it.

    ``x_{t_s} = alpha(t_s) x0 + sigma(t_s) eps`` (one shot, :meth:`Process.q_sample`), then ``sampler``
    over :func:`edit_grid` under ``cond`` (e.g. a new class) and, with ``guidance = w``,
    classifier-free guidance. ``strength = 0`` returns ``x0`` itself (a copy; NFE 0).

    Args:
        denoiser: the trained model.
        x0: images (or vectors) to edit, ``(B, *shape)``.
        strength: ``s`` in [0, 1] (module doc).
        sampler: any name of :data:`hwaksan.samplers.SAMPLERS`.
        steps: steps actually run from ``t_s``.
        grid: ``karras``, ``log_snr`` or ``uniform``; defines what ``s`` means.
        cond: the condition of the reverse pass.
        guidance: classifier-free guidance weight (None or 1: off).
        guidance_options: keyword arguments of :class:`hwaksan.guidance.ClassifierFreeGuidance`
            (``uncond``, ``null_class``, ``rescale``, ``interval``).
        generator: noise for ``eps`` and the sampler (per-sample generators: per-sample results).
        noise: ``eps`` itself (``(B, *shape)``) instead of drawing it.
        callback: passed to the sampler.
        grid_options: options of the grid (``rho``, ``sigma_min``, ...).
        **options: sampler options (``eta``, ``s_churn``, ...).

    Returns:
        ``SampleResult(x, ts, nfe)`` with the edited ``x (B, *shape)``.
    """
    ts = edit_grid(denoiser.process, strength, steps, grid, **(grid_options or {}))
    if len(ts) == 1:
        return SampleResult(x0.clone(), ts, 0)
    spec = get_sampler(sampler)
    eps = randn_like(x0, generator) if noise is None else noise.to(x0)
    x = denoiser.process.q_sample(x0, as_time(float(ts[0]), x0.shape[0], x0.device), eps)
    counter = CountingDenoiser(guided(denoiser, guidance, **(guidance_options or {})))
    out = spec.fn(
        counter, x, ts, cond=cond, generator=generator, callback=callback, **{**spec.defaults, **options}
    )
    return SampleResult(out, ts, counter.nfe)


def _eps(denoiser: Denoiser, x: torch.Tensor, t: float, cond: Cond) -> torch.Tensor:
    process = denoiser.process
    a, s = float(process.alpha(t)), float(process.sigma(t))
    if s == 0.0:
        return torch.zeros_like(x)
    return (x - a * denoise(denoiser, x, t, cond)) / s


def _up_step(
    x_u: torch.Tensor, eps: torch.Tensor, a_u: float, s_u: float, a_v: float, s_v: float
) -> torch.Tensor:
    """The DDIM step ``u -> v`` (``u < v``, ``alpha_u > 0``) from ``x_u`` with the noise ``eps``."""
    return ddim_step((x_u - s_u * eps) / a_u, eps, a_v, s_v)


def ddim_invert(
    denoiser: Denoiser,
    x0: torch.Tensor,
    ts: torch.Tensor,
    *,
    cond: Cond = None,
    fixed_point_iters: int = 0,
    callback: Callback = None,
) -> torch.Tensor:
    """Deterministic DDIM inversion: run the DDIM / Euler PF-ODE step from ``ts[-1]`` up to ``ts[0]``.

    ``ts`` is the *sampling* grid (strictly decreasing, usually ending at 0): the inversion visits it
    backwards, so ``sample_ddim(denoiser, ddim_invert(denoiser, x0, ts), ts)`` reconstructs ``x0``
    (module doc for the step and ``fixed_point_iters``). ``x0`` lives at time ``ts[-1]``.

    Shapes: ``x0 (B, *shape)`` -> the latent ``x_{ts[0]} (B, *shape)``. NFE: one per step whose
    start has ``sigma > 0``, plus ``fixed_point_iters`` per step.
    """
    ts = torch.as_tensor(ts, dtype=torch.float64)
    if ts.ndim != 1 or len(ts) < 2 or bool((ts[1:] >= ts[:-1]).any()):
        raise ValueError("ts must be a strictly decreasing sampling grid of at least two times")
    if fixed_point_iters < 0:
        raise ValueError("fixed_point_iters must be >= 0")
    process = denoiser.process
    up = ts.flip(0).tolist()
    x = x0
    for i, (u, v) in enumerate(zip(up[:-1], up[1:], strict=True)):
        a_u, s_u = float(process.alpha(u)), float(process.sigma(u))
        a_v, s_v = float(process.alpha(v)), float(process.sigma(v))
        x_v = _up_step(x, _eps(denoiser, x, u, cond), a_u, s_u, a_v, s_v)
        for _ in range(fixed_point_iters):
            x_v = _up_step(x, _eps(denoiser, x_v, v, cond), a_u, s_u, a_v, s_v)
        x = x_v
        if callback is not None:
            callback({"i": i, "t": v, "x": x, "denoised": None})
    return x


def invert_and_generate(
    denoiser: Denoiser,
    x0: torch.Tensor,
    ts: torch.Tensor,
    *,
    cond: Cond = None,
    new_cond: Cond = None,
    guidance: float | None = None,
    fixed_point_iters: int = 0,
) -> tuple[torch.Tensor, SampleResult]:
    """Invert ``x0`` under ``cond``, then generate with DDIM (eta = 0) on the same grid under
    ``new_cond`` (default: ``cond``, a reconstruction; another class: an edit) and optional guidance.

    Returns ``(latent, SampleResult)``; the result's ``nfe`` counts both passes.
    """
    counter = CountingDenoiser(denoiser)
    latent = ddim_invert(counter, x0, ts, cond=cond, fixed_point_iters=fixed_point_iters)
    gen = CountingDenoiser(guided(denoiser, guidance))
    target = cond if new_cond is None else new_cond
    out = get_sampler("ddim").fn(gen, latent, torch.as_tensor(ts, dtype=torch.float64), cond=target)
    return latent, SampleResult(out, torch.as_tensor(ts, dtype=torch.float64), counter.nfe + gen.nfe)
