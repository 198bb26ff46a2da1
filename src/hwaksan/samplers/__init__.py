"""Samplers: plain, stateless functions over an explicit time grid (DESIGN idea 3).

Every sampler has the signature ``fn(denoiser, x, ts, *, cond=None, generator=None,
callback=None, **options) -> Tensor``; :data:`SAMPLERS` names them for the CLI and the contract
tests, and :func:`sample` runs one from the prior and reports the number of network evaluations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .._typing import Cond, Denoiser
from ..processes import Process
from ..utils import GeneratorLike
from ._common import grid_steps
from .fitted import sample_fitted
from .langevin import langevin_correct, sample_annealed_langevin, sample_pc
from .likelihood import LikelihoodResult, divergence, log_likelihood
from .multistep import (
    BrownianTree,
    sample_deis,
    sample_dpm_2,
    sample_dpmpp_2m_sde,
    sample_dpmpp_3m,
    sample_dpmpp_3m_sde,
    sample_dpmpp_sde,
    sample_lms,
    sample_unipc,
)
from .ode import sample_adaptive, sample_ddim, sample_dpmpp_2m, sample_heun
from .schedules import (
    GRIDS,
    KARRAS_SIGMA_MAX,
    SPACINGS,
    custom_grid,
    karras_grid,
    log_snr_grid,
    make_grid,
    uniform_grid,
)
from .stochastic import sample_ddpm, sample_euler_maruyama, sde_coefficients, x0_and_variance

__all__ = [
    "SAMPLERS",
    "SamplerSpec",
    "SampleResult",
    "CountingDenoiser",
    "sample",
    "get_sampler",
    "sample_ddpm",
    "sample_ddim",
    "sample_heun",
    "sample_dpmpp_2m",
    "sample_adaptive",
    "sample_dpmpp_3m",
    "sample_dpmpp_sde",
    "sample_dpmpp_2m_sde",
    "sample_dpmpp_3m_sde",
    "sample_unipc",
    "sample_deis",
    "sample_lms",
    "sample_dpm_2",
    "BrownianTree",
    "sample_fitted",
    "sample_euler_maruyama",
    "sample_pc",
    "sample_annealed_langevin",
    "langevin_correct",
    "sde_coefficients",
    "log_likelihood",
    "LikelihoodResult",
    "divergence",
    "uniform_grid",
    "karras_grid",
    "log_snr_grid",
    "custom_grid",
    "make_grid",
    "GRIDS",
    "SPACINGS",
    "KARRAS_SIGMA_MAX",
]


def _n_steps(ts: torch.Tensor, process: Process, options: dict) -> int:
    return len(ts) - 1


def _heun_nfe(ts: torch.Tensor, process: Process, options: dict) -> int:
    """Two calls per step, one on a boundary step (onto sigma = 0, from alpha = 0)."""
    return sum(1 if st.boundary else 2 for st in grid_steps(process, ts))


def _pc_nfe(ts: torch.Tensor, process: Process, options: dict) -> int:
    return (len(ts) - 1) * (1 + options.get("n_corrector", 1))


def _langevin_nfe(ts: torch.Tensor, process: Process, options: dict) -> int:
    sig = process.sigma(ts)
    levels = int((sig > 0).sum())
    extra = int(options.get("denoise_last", True) and float(sig[-1]) == 0)
    return levels * options.get("n_steps_each", 100) + extra


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler.

    Attributes:
        fn: the sampler function.
        stochastic: whether it injects noise (with its default options).
        order: declared convergence order on the PF-ODE (deterministic samplers), else None.
        nfe: ``nfe(ts, process, options) -> int``, the exact number of network calls (None when an
            error controller decides).
        description: one line for ``--help``.
        defaults: default options.
    """

    fn: Callable[..., torch.Tensor]
    stochastic: bool
    order: int | None
    nfe: Callable[[torch.Tensor, Process, dict], int] | None
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)


SAMPLERS: dict[str, SamplerSpec] = {
    "ddpm": SamplerSpec(
        sample_ddpm, True, None, _n_steps, "DDPM ancestral (variance posterior|beta|learned)"
    ),
    "ddim": SamplerSpec(sample_ddim, False, 1, _n_steps, "DDIM; eta=0 deterministic, eta=1 DDPM"),
    "euler": SamplerSpec(sample_ddim, False, 1, _n_steps, "Euler on the EDM ODE (= DDIM eta=0)"),
    "heun": SamplerSpec(sample_heun, False, 2, _heun_nfe, "EDM Heun, 2nd order (optional churn)"),
    "dpmpp_2m": SamplerSpec(sample_dpmpp_2m, False, 2, _n_steps, "DPM-Solver++(2M) multistep"),
    "adaptive": SamplerSpec(
        sample_adaptive,
        False,
        None,
        None,
        "adaptive Runge-Kutta (dopri5, rtol/atol)",
        {"rtol": 1e-4, "atol": 1e-4},
    ),
    "euler_maruyama": SamplerSpec(sample_euler_maruyama, True, None, _n_steps, "reverse SDE, Euler-Maruyama"),
    "pc": SamplerSpec(sample_pc, True, None, _pc_nfe, "predictor-corrector (EM + Langevin)"),
    "annealed_langevin": SamplerSpec(
        sample_annealed_langevin, True, None, _langevin_nfe, "annealed Langevin dynamics (NCSN)"
    ),
    # multistep / exponential integrators (samplers/multistep.py)
    "dpmpp_3m": SamplerSpec(sample_dpmpp_3m, False, 3, _n_steps, "DPM-Solver++(3M) multistep, 3rd order"),
    "dpmpp_2m_sde": SamplerSpec(
        sample_dpmpp_2m_sde, True, None, _n_steps, "DPM-Solver++(2M)-SDE, Brownian-tree noise (eta)"
    ),
    "dpmpp_3m_sde": SamplerSpec(
        sample_dpmpp_3m_sde, True, None, _n_steps, "DPM-Solver++(3M)-SDE, Brownian-tree noise (eta)"
    ),
    "unipc": SamplerSpec(sample_unipc, False, 4, _n_steps, "UniPC-3 predictor + UniC corrector, B(h)=1-e^-h"),
    "unipc_bh1": SamplerSpec(
        sample_unipc, False, 4, _n_steps, "UniPC-3 predictor + UniC corrector, B(h)=h", {"variant": "bh1"}
    ),
    "deis": SamplerSpec(sample_deis, False, 3, _n_steps, "DEIS exponential integrator, eps poly in log-SNR"),
    "lms": SamplerSpec(sample_lms, False, 4, _n_steps, "linear multistep in sigma (4th order)"),
    "dpm_2": SamplerSpec(sample_dpm_2, False, 2, _heun_nfe, "DPM-Solver-2 (midpoint in log-SNR)"),
    "fitted": SamplerSpec(
        sample_fitted, False, 4, _n_steps, "predictor-corrector with fitted coefficients (plan-steps --fit)"
    ),
}


def get_sampler(name: str) -> SamplerSpec:
    """Look a sampler up by name; the error lists the valid names."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


class CountingDenoiser:
    """Wraps a denoiser and counts its calls (``.nfe``)."""

    def __init__(self, denoiser: Denoiser) -> None:
        self.denoiser = denoiser
        self.process = denoiser.process
        self.nfe = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Cond = None) -> torch.Tensor:
        self.nfe += 1
        return self.denoiser(x, t, cond)

    def x0_and_variance(self, x: torch.Tensor, t: torch.Tensor, cond: Cond = None):
        """``(x0_hat, v)`` of a denoiser with a learned variance: one network call."""
        self.nfe += 1
        return x0_and_variance(self.denoiser, x, t, cond)


@dataclass(frozen=True)
class SampleResult:
    """Samples ``x (B, *shape)``, the grid used and the number of network evaluations."""

    x: torch.Tensor
    ts: torch.Tensor
    nfe: int


def sample(
    denoiser: Denoiser,
    shape: tuple[int, ...],
    *,
    sampler: str = "heun",
    steps: int = 20,
    grid: str | torch.Tensor = "karras",
    cond: Cond = None,
    generator: GeneratorLike = None,
    callback=None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    grid_options: dict[str, Any] | None = None,
    **options: Any,
) -> SampleResult:
    """Draw ``shape = (B, *data_shape)`` samples: prior noise ``N(0, sigma(ts[0])^2)``, then ``sampler``.

    ``grid`` is a grid name (:data:`GRIDS`) built with ``steps`` steps, or an explicit tensor.
    """
    spec = get_sampler(sampler)
    process = denoiser.process
    if isinstance(grid, str):
        ts = make_grid(process, steps, grid, **(grid_options or {}))
    else:
        ts = custom_grid(process, grid)
    x = process.prior_sample(shape, generator, dtype=dtype, device=device, t=float(ts[0]))
    counter = CountingDenoiser(denoiser)
    out = spec.fn(
        counter,
        x,
        ts,
        cond=cond,
        generator=generator,
        callback=callback,
        **{**spec.defaults, **options},
    )
    return SampleResult(out, ts, counter.nfe)
