"""Rectified flow "reflow": push a source sample through a trained model's ODE to build pairs
(Liu, Gong & Liu 2022, "Flow straight and fast", Alg. 1).

A trained flow (or any diffusion model, through its probability-flow ODE) defines a deterministic
map from the source at ``t = t_max`` to the data at ``t = 0``. Reflow simulates that map from fixed
source samples ``x1`` to get pairs ``(x0 = map(x1), x1)``, then trains a new flow on exactly those
pairs (the *k+1-rectified* flow); its paths are straighter, so few Euler steps suffice. One-step
distillation trains on the same pairs at ``t = t_max`` only (``losses`` t-distribution
``"terminal"``), so that one Euler step lands on the paired sample.

**Source.** The source is ``N(0, I)`` by default, but the linear interpolant works for any source
that can be sampled (``8gaussians -> moons``): training then passes the source sample as ``eps``
to ``losses.draw`` and sampling starts from a source sample at ``t = t_max`` instead of the prior.
Every conversion in ``parameterizations`` is algebraic in ``(x_t, t)`` and stays valid
(``x0_hat = E[x0 | x_t]``, ``eps_hat = E[x1 | x_t]``), so every *deterministic* sampler integrates
the same flow ODE; only samplers and formulas that assume Gaussian ``eps`` (stochastic samplers,
score, likelihood) do not apply. Throughout, ``x1`` is the *standardised* source: the sampler
starts from ``prior_std(ts[0]) * x1`` (``x1`` itself for the flow interpolant, ``80 x1`` for an EDM
teacher), so pairs from a diffusion teacher train a flow student on standard noise.

This module composes samplers and holds no new math; storage of the pairs as resumable shards
lives in :mod:`hwaksan.training.pairs`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .._typing import Cond, Denoiser
from ..samplers import CountingDenoiser, SampleResult, custom_grid, get_sampler, make_grid
from ..utils import randn

__all__ = ["Source", "default_grid", "source_sample", "push_forward", "one_step"]

#: A source distribution: ``source(n, generator) -> (n, *shape)`` samples (``ToyDataset.sample``).
Source = Callable[[int, torch.Generator], torch.Tensor]


def default_grid(denoiser: Denoiser) -> str:
    """``"uniform"`` for flows (straight paths are uniform in t), ``"karras"`` for diffusion."""
    return "uniform" if getattr(denoiser.process, "name", "") == "flow" else "karras"


def source_sample(
    n: int,
    shape: Sequence[int],
    first_seed: int,
    source: Source | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Source samples ``x1 (n, *shape)`` for pairs ``first_seed .. first_seed + n - 1``.

    Gaussian source (``source=None``): sample ``i`` is ``N(0, I)`` from its own generator seeded
    ``first_seed + i`` (as ``hwaksan sample`` draws image ``i``), so the pairs do not depend on how
    they are batched. Another source: one call ``source(n, Generator(first_seed))``.
    """
    if source is None:
        gens = [torch.Generator(device=device or "cpu").manual_seed(first_seed + i) for i in range(n)]
        return randn((n, *shape), gens, dtype=dtype, device=device)
    x = source(n, torch.Generator().manual_seed(first_seed))
    if tuple(x.shape) != (n, *shape):
        raise ValueError(f"the source gave {tuple(x.shape)}, expected {(n, *tuple(shape))}")
    return x.to(dtype=dtype, device=device)


def push_forward(
    denoiser: Denoiser,
    x1: torch.Tensor,
    *,
    sampler: str = "heun",
    steps: int = 20,
    grid: str | torch.Tensor | None = None,
    cond: Cond = None,
    callback=None,
    grid_options: dict | None = None,
    **options,
) -> SampleResult:
    """The model's ODE map applied to source samples: ``x0 = map(x1)``.

    Integrates from ``x = prior_std(ts[0]) x1`` at ``ts[0]`` to ``t = 0`` with a deterministic
    sampler of the registry, without recording a graph (the pairs it makes are data: a model trained
    on them next must not backpropagate into this one). Shapes: ``x1 (B, *shape)`` ->
    ``SampleResult.x (B, *shape)``.

    Raises:
        ValueError: for a stochastic sampler (the map must be deterministic).
    """
    spec = get_sampler(sampler)
    if spec.stochastic:
        raise ValueError(
            f"sampler {sampler!r} is stochastic; reflow needs a deterministic ODE map: use heun, euler, "
            "dpmpp_2m, unipc or adaptive"
        )
    process = denoiser.process
    grid = default_grid(denoiser) if grid is None else grid
    ts = (
        make_grid(process, steps, grid, **(grid_options or {}))
        if isinstance(grid, str)
        else custom_grid(process, grid)
    )
    x = process.prior_std(float(ts[0])) * x1
    counter = CountingDenoiser(denoiser)
    with torch.no_grad():
        out = spec.fn(counter, x, ts, cond=cond, callback=callback, **{**spec.defaults, **options})
    return SampleResult(out, ts, counter.nfe)


def one_step(denoiser: Denoiser, x1: torch.Tensor, cond: Cond = None) -> torch.Tensor:
    """One Euler step from ``t_max`` to 0: ``x0 = x1 - v(x1, 1)`` for the flow interpolant, the
    generator of a distilled one-step model (Liu et al. 2022, sec. 2.3). Shapes ``(B, *shape)``."""
    return push_forward(denoiser, x1, sampler="euler", steps=1, grid="uniform", cond=cond).x
