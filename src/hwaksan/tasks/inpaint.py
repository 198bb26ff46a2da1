"""Inpainting with an unconditional model: RePaint (Lugmayr et al. 2022, Alg. 1 and the jump schedule).

Notation (paper -> code): ``m`` is the mask (1 = known pixel, keep; 0 = to fill), ``x0`` the reference
image, ``x_t`` the state at grid time ``t``. One *down* move ``t -> s`` (``s < t``) is:

1. ``x_s^unknown``: one step of any registered sampler on the two-point grid ``[t, s]`` (``ddpm``:
   the ancestral step of the paper; ``ddim``, ``heun``, ``dpmpp_2m``, ...: their first step);
2. ``x_s^known = alpha(s) x0 + sigma(s) eps`` (the forward-noised reference, :meth:`Process.q_sample`;
   ``x0`` itself at ``s = 0``);
3. ``x_s = m * x_s^known + (1 - m) * x_s^unknown``.

One *up* move ``s -> t`` resamples: ``x_t ~ q(x_t | x_s) = N(alpha_ts x_s, sigma_ts^2 I)``
(:meth:`Process.transition`; ``N(sqrt(1 - beta_t) x_{t-1}, beta_t I)`` on DDPM knots).

The walk over the grid is :func:`repaint_schedule` (the jump schedule of the paper's code): with jump
length ``j`` and ``n`` resamplings, every ``j``-th grid level goes back up ``j`` levels ``n - 1``
times. ``jump=1`` is Alg. 1 with ``U = n``; ``resample=1`` is plain replacement (no resampling).
Known pixels of the result are ``x0`` exactly (the last move replaces them with ``x0`` itself).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .._typing import Cond, Denoiser
from ..guidance import ReconstructionGuidance
from ..samplers import CountingDenoiser, SampleResult, custom_grid, get_sampler, make_grid
from ..samplers._common import Callback
from ..utils import GeneratorLike, as_time, randn_like

__all__ = ["repaint_schedule", "check_mask", "inpaint", "paste"]


def repaint_schedule(n_steps: int, jump: int = 10, resample: int = 10) -> list[int]:
    """The RePaint walk over noise levels ``k`` (``n_steps`` = the grid's first time, 0 = data).

    A move from ``k`` to ``k - 1`` is a denoising step, from ``k`` to ``k + 1`` a forward
    (resampling) step. Every level ``k = 1, 1 + jump, 1 + 2 jump, ... < n_steps - jump + 1`` is
    left ``resample - 1`` extra times by going back up ``jump`` levels (Lugmayr et al. 2022, sec. 4.2,
    the ``get_schedule_jump`` of their code with ``t_T = n_steps`` and levels shifted by one so that
    0 is data). The number of denoising moves is ``n_steps + (resample - 1) jump * #levels``.

    Example:
        >>> repaint_schedule(4, jump=2, resample=2)
        [4, 3, 2, 1, 2, 3, 2, 1, 0]
    """
    if n_steps < 1 or jump < 1 or resample < 1:
        raise ValueError("n_steps, jump and resample must be >= 1")
    # the paper's code, on its indices t in [-1, T-1] (k = t + 1)
    jumps = {t: resample - 1 for t in range(0, n_steps - jump, jump)}
    t = n_steps
    seq = []
    while t >= 1:
        t -= 1
        seq.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(jump):
                t += 1
                seq.append(t)
    seq.append(-1)
    return [t + 1 for t in seq]


def check_mask(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Validate a mask against images ``x (B, C, H, W)`` (or any ``(B, *shape)``) and return it as
    ``x``'s dtype. The mask has ``x.ndim`` dims, each equal to ``x``'s or 1 (e.g. ``(1, 1, H, W)``),
    and values in [0, 1] (1 = known / keep, 0 = fill)."""
    mask = torch.as_tensor(mask)
    if mask.ndim != x.ndim or any(m not in (1, d) for m, d in zip(mask.shape, x.shape, strict=True)):
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not fit images of shape {tuple(x.shape)}: give "
            f"{x.ndim} dims, each equal to the image's or 1 (e.g. (1, 1, H, W))"
        )
    mask = mask.to(device=x.device, dtype=x.dtype)
    if bool(((mask < 0) | (mask > 1)).any()):
        raise ValueError("mask values must lie in [0, 1] (1 = keep, 0 = fill)")
    return mask


def paste(x: torch.Tensor, x0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``m * x0 + (1 - m) * x``: the known region of ``x0`` pasted into ``x``."""
    mask = check_mask(mask, x)
    return mask * x0 + (1 - mask) * x


def inpaint(
    denoiser: Denoiser,
    x0: torch.Tensor,
    mask: torch.Tensor,
    *,
    sampler: str = "ddpm",
    steps: int = 100,
    grid: str | torch.Tensor = "karras",
    jump: int = 10,
    resample: int = 1,
    reconstruction: float = 0.0,
    cond: Cond = None,
    generator: GeneratorLike = None,
    callback: Callback = None,
    grid_options: dict[str, Any] | None = None,
    **options: Any,
) -> SampleResult:
    """Fill the unknown region (``mask = 0``) of ``x0`` with RePaint (module doc).

    Args:
        denoiser: an (unconditional or conditional) model of the images.
        x0: reference images ``(B, *shape)``; only the known pixels are read.
        mask: 1 = known (keep), 0 = fill; shape as in :func:`check_mask`.
        sampler: the sampler taking each down move (default ``ddpm``, the paper's ancestral step).
        steps: grid steps (the grid from the prior to data); ignored when ``grid`` is a tensor.
        grid: a grid name or an explicit tensor of times.
        jump: jump length ``j``.
        resample: number of resamplings ``n`` (1: plain replacement, no resampling).
        reconstruction: weight ``w`` of reconstruction guidance on the unknown region
            (:class:`hwaksan.guidance.ReconstructionGuidance`, Ho et al. 2022); 0: none.
        cond: condition passed to the denoiser.
        generator: all noise (prior, known-region noise, sampler, up moves).
        callback: called after every move with ``{"i", "t", "x", "up"}``.
        grid_options: options of the grid.
        **options: sampler options.

    Returns:
        ``SampleResult(x, ts, nfe)``; ``x`` equals ``x0`` on the known pixels.
    """
    spec = get_sampler(sampler)
    opts = {**spec.defaults, **options}
    process = denoiser.process
    mask = check_mask(mask, x0)
    if reconstruction:
        denoiser = ReconstructionGuidance(denoiser, x0, mask, reconstruction)
    if isinstance(grid, str):
        ts = make_grid(process, steps, grid, **(grid_options or {}))
    else:
        ts = custom_grid(process, grid)
    n = len(ts) - 1
    tl = ts.tolist()
    b = x0.shape[0]
    counter = CountingDenoiser(denoiser)
    x = process.prior_sample(x0.shape, generator, dtype=x0.dtype, device=x0.device, t=tl[0])

    def known(t: float) -> torch.Tensor:
        if t == 0.0:
            return x0
        return process.q_sample(x0, as_time(t, b, x0.device), randn_like(x0, generator))

    walk = repaint_schedule(n, jump, resample)
    for i, (k_from, k_to) in enumerate(zip(walk[:-1], walk[1:], strict=True)):
        t_from, t_to = tl[n - k_from], tl[n - k_to]
        if k_to < k_from:  # down: a sampler step, then the known region from the reference
            pair = torch.tensor([t_from, t_to], dtype=torch.float64)
            unknown = spec.fn(counter, x, pair, cond=cond, generator=generator, **opts)
            x = mask * known(t_to) + (1 - mask) * unknown
        else:  # up: the forward transition q(x_to | x_from)
            a, var = (float(v) for v in process.transition(t_to, t_from))
            x = a * x + math.sqrt(max(var, 0.0)) * randn_like(x, generator)
        if callback is not None:
            callback({"i": i, "t": t_to, "x": x, "up": k_to > k_from})
    return SampleResult(x, ts, counter.nfe)
