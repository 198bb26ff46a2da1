"""Reference pieces shared by the exact sampler tests (tests/samplers/test_stochastic_exact.py and
tests/samplers/test_one_step.py), written from the papers and independent of the library's
sampler code: path scalars of a process at one time, and the exponential-integrator quadrature by
scipy instead of phi functions and Vandermonde solves."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from scipy.integrate import quad


def scalars(process, t: float) -> tuple[float, float, float]:
    """``alpha, sigma, lam = log(alpha / sigma)`` at ``t`` as python floats (``lam`` is the
    DPM-Solver ``lambda``, half the log-SNR; ``inf`` where sigma = 0)."""
    a, s = float(process.alpha(t)), float(process.sigma(t))
    return a, s, (math.log(a / s) if s > 0 else math.inf)


def lagrange_weights(
    kernel: Callable[[float], float], lo: float, hi: float, nodes: Sequence[float]
) -> list[float]:
    """``w_j = int_lo^hi kernel(u) L_j(u) du`` for the Lagrange basis ``L_j`` through ``nodes``, so that
    ``sum_j w_j f_j`` integrates ``kernel`` times the interpolating polynomial of ``(nodes_j, f_j)``
    exactly (scipy quadrature, relative accuracy 1e-13)."""
    out = []
    for j, uj in enumerate(nodes):

        def basis(u, j=j, uj=uj):
            return math.prod((u - um) / (uj - um) for m, um in enumerate(nodes) if m != j)

        w, _ = quad(lambda u, basis=basis: kernel(u) * basis(u), lo, hi, epsabs=0.0, epsrel=1e-13, limit=200)
        out.append(w)
    return out


def combine(weights: Sequence[float], values: Sequence[torch.Tensor]) -> torch.Tensor:
    """``sum_j w_j v_j``."""
    out = torch.zeros_like(values[0])
    for w, v in zip(weights, values, strict=True):
        out = out + w * v
    return out


def batch_time(x: torch.Tensor, t: float) -> torch.Tensor:
    """``(B,)`` float64 times for a denoiser call."""
    return torch.full((x.shape[0],), t, dtype=torch.float64)
