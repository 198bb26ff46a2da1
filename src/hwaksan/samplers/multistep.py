"""Multistep and exponential-integrator samplers of the probability-flow ODE.

Notation (shared by every docstring below). A grid ``t_0 > t_1 > ... > t_n = 0``; one step goes from
``t`` to ``s``. ``alpha, sigma`` are the path's scales, ``lam = log(alpha / sigma)`` (half our
log-SNR, the ``lambda`` of the DPM-Solver papers), ``h = lam_s - lam_t > 0``, ``sigma~ = sigma /
alpha`` (EDM's noise level) and ``x~ = x / alpha``. ``D_j`` is the denoiser's ``x0^`` and ``eps_j``
the implied noise at grid point ``j``. The exact PF-ODE solution over one step has two equivalent
"variation of constants" forms (Lu et al. 2022, DPM-Solver eq. 3.4 and DPM-Solver++ eq. 9):

    data form:   x_s = (sigma_s / sigma_t) x_t + alpha_s int_0^h exp(-(h - u)) D(lam_t + u) du
    noise form:  x~_s = x~_t + int_{sigma~_t}^{sigma~_s} eps dsigma~
                      = x~_t - sigma~_t int_0^h exp(-u) eps(lam_t + u) du

Every multistep method here replaces ``D`` or ``eps`` by the polynomial through its last ``k``
values (in ``lam``, or in ``sigma~`` for LMS) and integrates that polynomial *exactly*:
``int_0^h exp(-(h-u)) (u/h)^m du = m! h phi_{m+1}(-h)`` and ``int_0^h exp(-u) (u/h)^m du =
m! h exp(-h) phi_{m+1}(h)``, with ``phi_k(z) = sum_j z^j / (j + k)!``. The weights are computed in
float64 from a small Vandermonde system, so every method handles non-uniform grids.

Warm-up and the end: the first steps use the history they have (order 1, 2, ...); a step from a
point where ``alpha = 0`` (flows, zero terminal SNR) is a DDIM step and leaves no usable history;
the last step onto ``sigma = 0`` is the denoising step ``x = alpha_s D`` (order 1), the library's
one convention for the end of sampling, so all samplers target the same quantity. Both are
:func:`hwaksan.samplers._common.boundary_step`.

Stochastic variants draw their noise from a :class:`BrownianTree`: the Brownian increments over a
step are the same whatever grid visits it, so the sample converges as the grid is refined.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .._typing import Cond, Denoiser
from ..utils import GeneratorLike, splitmix64, wrap_int64
from ._common import Callback, Step, boundary_step, denoise, eps_of, steps

__all__ = [
    "BrownianTree",
    "phi",
    "sample_dpmpp_3m",
    "sample_dpmpp_sde",
    "sample_dpmpp_2m_sde",
    "sample_dpmpp_3m_sde",
    "sample_unipc",
    "sample_deis",
    "sample_lms",
    "sample_dpm_2",
]

UNIPC_VARIANTS = ("bh1", "bh2")


# --------------------------------------------------------------------------------------------------
# scalar helpers (float64, python floats)
# --------------------------------------------------------------------------------------------------
def phi(k: int, z: float) -> float:
    """``phi_k(z) = sum_{j >= 0} z^j / (j + k)!`` (``phi_0 = exp``, ``phi_1 = (e^z - 1)/z``, ...).

    A Taylor series for ``|z| < 1`` (no cancellation), the recurrence ``phi_{k+1} = (phi_k - 1/k!) / z``
    otherwise.
    """
    if abs(z) < 1.0:
        total, term, j = 0.0, 1.0 / math.factorial(k), 0
        while abs(term) > 1e-18 * max(abs(total), 1e-300) or j < 2:
            total += term
            j += 1
            term = term * z / (j + k)
            if j > 60:
                break
        return total
    val = math.exp(z)
    for i in range(k):
        val = (val - 1.0 / math.factorial(i)) / z
    return val


def _solve_transpose(nodes: Sequence[float], rhs: Sequence[float]) -> list[float]:
    """Weights ``w`` with ``sum_j w_j nodes_j^m = rhs_m`` (``m = 0..k-1``): integrating the
    interpolating polynomial through ``(nodes_j, f_j)`` against a functional with moments ``rhs``
    equals ``sum_j w_j f_j``."""
    k = len(nodes)
    v = np.vander(np.asarray(nodes, dtype=np.float64), k, increasing=True)  # v[j, m] = r_j^m
    return np.linalg.solve(v.T, np.asarray(rhs[:k], dtype=np.float64)).tolist()


def _data_weights(h: float, rs: Sequence[float]) -> list[float]:
    """Data-form weights: ``int_0^h e^{-(h-u)} p(u) du = sum_j w_j D_j`` for the polynomial through
    ``(r_j h, D_j)``; ``r_0 = 0`` is the current point."""
    moments = [math.factorial(m) * h * phi(m + 1, -h) for m in range(len(rs))]
    return _solve_transpose(rs, moments)


def _noise_weights(h: float, rs: Sequence[float]) -> list[float]:
    """Noise-form weights: ``int_0^h e^{-u} p(u) du = sum_j w_j eps_j``."""
    moments = [math.factorial(m) * h * math.exp(-h) * phi(m + 1, h) for m in range(len(rs))]
    return _solve_transpose(rs, moments)


def _lam(x: float) -> float:
    return 0.5 * x


def _order_now(order: int, history: int, i: int, n: int, lower_order_final: bool) -> int:
    """Order of step ``i`` of ``n``: limited by the stored history and, with ``lower_order_final``,
    by the number of steps left (DPM-Solver++ / UniPC's habit for short grids)."""
    k = min(order, history)
    if lower_order_final and n < 15:
        k = min(k, n - i)
    return max(k, 1)


# --------------------------------------------------------------------------------------------------
# Brownian tree
# --------------------------------------------------------------------------------------------------
class BrownianTree:
    """A deterministic Brownian path ``W(t)`` on ``[t0, t1]``, one independent path per sample.

    A "virtual Brownian tree" (Gaines & Lyons 1997; Li et al. 2020, sec. 5): ``W(t0) = 0``,
    ``W(t1) ~ N(0, t1 - t0)``, and the value at the midpoint of a dyadic interval ``[a, b]`` is the
    Brownian bridge draw ``(W(a) + W(b))/2 + sqrt((b - a)/4) z`` with ``z`` a counter-based normal
    (:func:`hwaksan.utils.splitmix64` hash of the sample's seed, the node and the element, then
    Box-Muller), so ``W(t)``
    at any ``t`` is reproducible without storing anything and independent of the order of queries.
    Bisection stops at width ``(t1 - t0) 2^-depth`` and interpolates linearly inside the leaf.
    Increments ``(W(s) - W(t)) / sqrt(t - s)`` are therefore standard normal and *the same path is
    seen by every grid* (step-count-consistent noise).

    Args:
        shape: ``(B, *shape)`` of the noise.
        seeds: ``B`` integer seeds (one per sample: sample i is the same at any batch size).
        t0, t1: the interval.
        depth: bisection depth.
    """

    def __init__(
        self,
        shape: Sequence[int],
        seeds: Sequence[int] | torch.Tensor,
        t0: float = 0.0,
        t1: float = 1.0,
        depth: int = 24,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
    ) -> None:
        self.shape = tuple(shape)
        self.t0, self.t1, self.depth = float(t0), float(t1), int(depth)
        self.dtype, self.device = dtype, device
        seeds = torch.as_tensor(seeds, dtype=torch.int64).reshape(-1)
        if seeds.shape[0] != self.shape[0]:
            raise ValueError(f"need one seed per sample: {seeds.shape[0]} seeds for batch {self.shape[0]}")
        per = int(np.prod(self.shape[1:], dtype=np.int64)) if len(self.shape) > 1 else 1
        self._per = per
        pairs = torch.arange((per + 1) // 2, dtype=torch.int64)  # one hash gives two normals
        self._keys = splitmix64(splitmix64(seeds)[:, None] + 2 * pairs[None])  # (B, ceil(per/2))
        self._cache: dict[float, torch.Tensor] = {}  # the last queried values (a step reuses one)
        self._work = torch.float64 if dtype == torch.float64 else torch.float32
        # node 0: the end point; 1, 2, ...: midpoints
        self._w1 = math.sqrt(self.t1 - self.t0) * self._normal(0)

    @classmethod
    def from_generator(
        cls,
        x: torch.Tensor,
        generator: GeneratorLike,
        t0: float = 0.0,
        t1: float = 1.0,
        depth: int = 24,
    ) -> BrownianTree:
        """One seed per sample drawn from ``generator`` (a generator, one per sample, or None)."""
        b = x.shape[0]
        if generator is None or isinstance(generator, torch.Generator):
            seeds = torch.randint(0, 2**62, (b,), generator=generator, dtype=torch.int64)
        else:
            gens = list(generator)
            if len(gens) != b:
                raise ValueError(f"got {len(gens)} generators for a batch of {b}: give one per sample")
            seeds = torch.stack(
                [torch.randint(0, 2**62, (1,), generator=g, dtype=torch.int64)[0] for g in gens]
            )
        return cls(x.shape, seeds, t0, t1, depth, x.dtype, x.device)

    def _normal(self, node: int) -> torch.Tensor:
        """``(B, per)`` standard normals for one tree node: one SplitMix64 hash per pair of elements,
        its two 32-bit halves as uniforms, Box-Muller's cosine and sine as the pair. Computed in float64
        for a float64 tree, else in float32 (the tree's values are then exact to float32 rounding)."""
        h = splitmix64(self._keys + wrap_int64(node * 0xD1B54A32D192ED03))
        u1 = (((h >> 32) & 0xFFFFFFFF).to(self._work) + 0.5) * 2.0**-32
        u2 = ((h & 0xFFFFFFFF).to(self._work) + 0.5) * 2.0**-32
        r, theta = torch.sqrt(-2.0 * torch.log(u1)), (2.0 * math.pi) * u2
        return torch.cat([r * torch.cos(theta), r * torch.sin(theta)], dim=1)[:, : self._per]

    def _value(self, t: float) -> torch.Tensor:
        if t in self._cache:
            return self._cache[t]
        w = self._descend(t)
        if len(self._cache) >= 4:
            self._cache.pop(next(iter(self._cache)))
        self._cache[t] = w
        return w

    def _descend(self, t: float) -> torch.Tensor:
        if not self.t0 <= t <= self.t1:
            raise ValueError(f"t = {t} outside the tree's interval [{self.t0}, {self.t1}]")
        a, b = self.t0, self.t1
        wa, wb = torch.zeros_like(self._w1), self._w1
        node = 1
        for _ in range(self.depth):
            if t == a:
                return wa
            if t == b:
                return wb
            m = 0.5 * (a + b)
            wm = 0.5 * (wa + wb) + math.sqrt(0.25 * (b - a)) * self._normal(node)
            if t < m:
                b, wb, node = m, wm, 2 * node
            else:
                a, wa, node = m, wm, 2 * node + 1
        frac = (t - a) / (b - a)
        return wa + frac * (wb - wa)

    def __call__(self, t: float) -> torch.Tensor:
        """``W(t)`` of shape ``(B, *shape)`` (a copy: the tree keeps its own values)."""
        return self._value(float(t)).reshape(self.shape).to(dtype=self.dtype, device=self.device, copy=True)

    def normal(self, t: float, s: float) -> torch.Tensor:
        """The standard normal ``(W(t) - W(s)) / sqrt(|t - s|)`` of the step between ``t`` and ``s``."""
        t, s = float(t), float(s)
        z = (self._value(t) - self._value(s)) / math.sqrt(abs(t - s))
        return z.reshape(self.shape).to(dtype=self.dtype, device=self.device)


# --------------------------------------------------------------------------------------------------
# DPM-Solver++ (data form), deterministic and SDE
# --------------------------------------------------------------------------------------------------
def _dpmpp_multistep(
    denoiser: Denoiser,
    x: torch.Tensor,
    ts: torch.Tensor,
    order: int,
    eta: float,
    s_noise: float,
    lower_order_final: bool,
    cond: Cond,
    generator: GeneratorLike,
    callback: Callback,
) -> torch.Tensor:
    all_steps = list(steps(denoiser, ts))
    n = len(all_steps)
    tree = None
    if eta > 0:
        t_hi = float(torch.as_tensor(ts, dtype=torch.float64)[0])
        tree = BrownianTree.from_generator(x, generator, 0.0, t_hi)
    hist: list[tuple[float, torch.Tensor]] = []  # (lam_j, D_j), newest first
    for st in all_steps:
        x0 = denoise(denoiser, x, st.t, cond)
        if st.boundary:
            x = boundary_step(st, x, x0)
            hist = [] if st.from_noise else hist
        else:
            lam_t, lam_s = _lam(st.lambda_t), _lam(st.lambda_s)
            h = lam_s - lam_t
            hist = [(lam_t, x0), *hist][:order]
            k = _order_now(order, len(hist), st.i, n, lower_order_final)
            rs = [(lj - lam_t) / h for lj, _ in hist[:k]]
            he = (1.0 + eta) * h  # the SDE kernel (1 + eta) e^{-(1+eta)(h-u)}: data weights at (1+eta) h
            w = _data_weights(he, rs)
            x = (st.sigma_s / st.sigma_t) * math.exp(-eta * h) * x
            for wj, (_, dj) in zip(w, hist[:k], strict=True):
                x = x + (st.alpha_s * wj) * dj
            if tree is not None:
                z = tree.normal(st.t, st.s)
                x = x + (st.sigma_s * math.sqrt(-math.expm1(-2.0 * eta * h)) * s_noise) * z
        if callback is not None:
            callback({"i": st.i, "t": st.t, "x": x, "denoised": x0})
    return x


def sample_dpmpp_3m(
    denoiser: Denoiser,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    order: int = 3,
    lower_order_final: bool = False,
    cond: Cond = None,
    generator: GeneratorLike = None,
    callback: Callback = None,
) -> torch.Tensor:
    """DPM-Solver++(3M) (Lu et al. 2022, "DPM-Solver++", sec. 4 and App. B), multistep in ``lam``.

    Data form with the quadratic through ``(lam_t, D_0), (lam_{t-1}, D_1), (lam_{t-2}, D_2)``
    integrated exactly: with ``r_j = (lam_j - lam_t)/h`` and weights ``w`` solving
    ``sum_j w_j r_j^m = m! h phi_{m+1}(-h)`` (``m = 0, 1, 2``),

        x_s = (sigma_s / sigma_t) x_t + alpha_s sum_j w_j D_j.

    With one point this is DPM-Solver++(1) = DDIM, ``w_0 = 1 - e^{-h}``; with two it integrates the
    linear interpolant exactly (weight ``h phi_2(-h)`` on ``h dD/dlam``, where Alg. 2's 2M uses
    ``(1 - e^{-h})/2``). In Newton form the third-order term is ``2 h^3 phi_3(-h) D[t, t-1, t-2]``
    (the second divided difference); the reference DPM-Solver / k-diffusion 3M code uses half of it
    (``h^3 phi_3``), which leaves an O(h^3) local error: k-diffusion's ``dpmpp_3m_sde(eta=0)``
    measures a slope of 2.1 where this one measures 3.0 (tests/samplers/test_multistep.py problem).
    Warm-up: order 1, 2, then ``order``; ``lower_order_final`` caps the order by the steps left on
    grids shorter than 15 steps; the last step onto sigma = 0 is ``x = alpha_s D``.
    NFE = number of steps. Declared order 3.
    """
    return _dpmpp_multistep(denoiser, x, ts, order, 0.0, 1.0, lower_order_final, cond, generator, callback)


def sample_dpmpp_sde(
    denoiser: Denoiser,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    order: int = 2,
    eta: float = 1.0,
    s_noise: float = 1.0,
    lower_order_final: bool = False,
    cond: Cond = None,
    generator: GeneratorLike = None,
    callback: Callback = None,
) -> torch.Tensor:
    """DPM-Solver++(kM)-SDE (Lu et al. 2022, "DPM-Solver++", sec. 5, eq. 18-19 and App. B; eta as in
    k-diffusion's generalisation), multistep in ``lam`` with Brownian-tree noise.

    The reverse SDE with noise scale ``eta`` (``eta = 0``: the PF-ODE, ``eta = 1``: the reverse
    diffusion SDE) has the exact one-step solution

        x_s = (sigma_s / sigma_t) e^{-eta h} x_t + alpha_s int_0^h (1+eta) e^{-(1+eta)(h-u)} D(lam_t+u) du
              + sigma_s sqrt(1 - e^{-2 eta h}) z,

    whose integral, with ``D`` replaced by the polynomial through the last ``order`` values, is the data-form
    quadrature at ``h' = (1 + eta) h`` with the same normalised nodes ``r_j``. ``z`` is the step's
    increment of a :class:`BrownianTree` in ``t`` (seeded per sample from ``generator``).
    First order: ``x_s = (sigma_s/sigma_t) e^{-eta h} x_t + alpha_s (1 - e^{-(1+eta) h}) D_0 + ...``.
    NFE = number of steps.
    """
    return _dpmpp_multistep(
        denoiser, x, ts, order, eta, s_noise, lower_order_final, cond, generator, callback
    )


def sample_dpmpp_2m_sde(
    denoiser: Denoiser, x: torch.Tensor, ts: torch.Tensor, *, eta: float = 1.0, s_noise: float = 1.0, **kw
) -> torch.Tensor:
    """DPM-Solver++(2M)-SDE: :func:`sample_dpmpp_sde` with ``order = 2``."""
    return sample_dpmpp_sde(denoiser, x, ts, order=2, eta=eta, s_noise=s_noise, **kw)


def sample_dpmpp_3m_sde(
    denoiser: Denoiser, x: torch.Tensor, ts: torch.Tensor, *, eta: float = 1.0, s_noise: float = 1.0, **kw
) -> torch.Tensor:
    """DPM-Solver++(3M)-SDE: :func:`sample_dpmpp_sde` with ``order = 3``."""
    return sample_dpmpp_sde(denoiser, x, ts, order=3, eta=eta, s_noise=s_noise, **kw)


# --------------------------------------------------------------------------------------------------
# UniPC
# --------------------------------------------------------------------------------------------------
def _unipc_coefficients(h: float, rs: Sequence[float], b_h: float) -> list[float]:
    """UniPC's ``a_m`` (Zhao et al. 2023, eq. 10/12): ``sum_m a_m r_m^{n-1} = n! h phi_{n+1}(-h) / B(h)``
    for ``n = 1..K``; with ``K = 1`` the paper's fixed ``a_1 = 1/2``."""
    if len(rs) == 1:
        return [0.5]
    rhs = [math.factorial(n) * h * phi(n + 1, -h) / b_h for n in range(1, len(rs) + 1)]
    return _solve_transpose(rs, rhs)


def sample_unipc(
    denoiser: Denoiser,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    order: int = 3,
    variant: str = "bh2",
    corrector: bool = True,
    lower_order_final: bool = True,
    cond: Cond = None,
    generator: GeneratorLike = None,
    callback: Callback = None,
) -> torch.Tensor:
    """UniPC (Zhao et al. 2023, Alg. 1-3): the UniP-p predictor and the UniC corrector, data form.

    With ``h = lam_s - lam_t``, ``r_m = (lam_m - lam_t)/h`` for the history points (``r < 0``) and
    ``D_m = x0^_m - x0^_t``, one predictor step is (their eq. 8 in data prediction)

        x~_s = (sigma_s/sigma_t) x_t + alpha_s [(1 - e^{-h}) x0^_t + B(h) sum_m a_m D_m / r_m],

    where ``a`` solves ``sum_m a_m r_m^{n-1} = n! h phi_{n+1}(-h) / B(h)``, ``n = 1..K`` (so the
    ``K + 1``-point polynomial is integrated exactly), and ``a = 1/2`` when ``K = 1``; ``B(h) = h``
    ("bh1") or ``B(h) = 1 - e^{-h}`` ("bh2", both Sec. 3.3). The corrector UniC adds the point
    ``r = 1`` with ``x0^_s = D(x~_s, s)`` — the evaluation the next step needs anyway — and
    recomputes ``x_s`` from ``x_t`` with one more order, at no extra NFE. The last step onto
    ``sigma = 0`` is ``x = alpha_s D`` (no corrector). Warm-up: predictor order ``1, 2, ...,
    order``; ``lower_order_final`` caps it by the steps left on grids shorter than 15 steps.
    NFE = number of steps. Declared order: ``order + 1`` with the corrector (Zhao et al. 2023, sec.
    3: UniC-p raises the order of a p-th order predictor to p + 1); the low-order warm-up steps
    are taken at the highest noise, where ``D`` is flat in ``lam``, so they do not show in practice.
    """
    if variant not in UNIPC_VARIANTS:
        raise ValueError(f"unknown UniPC variant {variant!r}; choose one of {', '.join(UNIPC_VARIANTS)}")
    all_steps = list(steps(denoiser, ts))
    n = len(all_steps)
    hist: list[tuple[float, torch.Tensor]] = []  # (lam_j, x0_j) newest first, hist[0] at the current t
    pending = None  # (step, x_t, k) of the predictor step awaiting its corrector
    x0 = None
    for st in all_steps:
        x0 = denoise(denoiser, x, st.t, cond)
        if pending is not None and corrector:
            x = _unipc_update(pending[0], pending[1], hist[: pending[2]], x0, variant)
        if st.boundary:
            x = boundary_step(st, x, x0)
            hist, pending = ([] if st.from_noise else hist), None
        else:
            hist = [(_lam(st.lambda_t), x0), *hist][:order]
            k = _order_now(order, len(hist), st.i, n, lower_order_final)
            x_t = x
            x = _unipc_update(st, x_t, hist[:k], None, variant)
            pending = (st, x_t, k)
        if callback is not None:
            callback({"i": st.i, "t": st.t, "x": x, "denoised": x0})
    return x


def _unipc_update(st: Step, x_t: torch.Tensor, hist, x0_new, variant: str) -> torch.Tensor:
    """One UniP step (``x0_new is None``) or UniC step from ``x_t`` over step ``st``."""
    lam_t, lam_s = _lam(st.lambda_t), _lam(st.lambda_s)
    h = lam_s - lam_t
    x0_t = hist[0][1]
    rs = [(lj - lam_t) / h for lj, _ in hist[1:]]
    ds = [dj - x0_t for _, dj in hist[1:]]
    if x0_new is not None:
        rs.append(1.0)
        ds.append(x0_new - x0_t)
    out = (st.sigma_s / st.sigma_t) * x_t + (st.alpha_s * -math.expm1(-h)) * x0_t
    if rs:
        b_h = h if variant == "bh1" else -math.expm1(-h)
        a = _unipc_coefficients(h, rs, b_h)
        for am, rm, dm in zip(a, rs, ds, strict=True):
            out = out + (st.alpha_s * b_h * am / rm) * dm
    return out


# --------------------------------------------------------------------------------------------------
# Noise-form multistep: DEIS (polynomial in lam), LMS (polynomial in sigma~)
# --------------------------------------------------------------------------------------------------
def _eps_multistep(
    denoiser: Denoiser,
    x: torch.Tensor,
    ts: torch.Tensor,
    order: int,
    variable: str,
    lower_order_final: bool,
    cond: Cond,
    callback: Callback,
) -> torch.Tensor:
    all_steps = list(steps(denoiser, ts))
    n = len(all_steps)
    hist: list[tuple[float, torch.Tensor]] = []  # (coordinate_j, eps_j), newest first
    for st in all_steps:
        x0 = denoise(denoiser, x, st.t, cond)
        if st.boundary:
            x = boundary_step(st, x, x0)
            hist = [] if st.from_noise else hist
        else:
            eps = eps_of(x, x0, st.alpha_t, st.sigma_t)
            sig_t, sig_s = st.sigma_tilde_t, st.sigma_tilde_s
            if variable == "lambda":
                c_t, step = _lam(st.lambda_t), _lam(st.lambda_s) - _lam(st.lambda_t)
            else:
                c_t, step = sig_t, sig_s - sig_t
            hist = [(c_t, eps), *hist][:order]
            k = _order_now(order, len(hist), st.i, n, lower_order_final)
            rs = [(cj - c_t) / step for cj, _ in hist[:k]]
            if variable == "lambda":
                w = _noise_weights(step, rs)
                scale = -sig_t
            else:
                w = _solve_transpose(rs, [1.0 / (m + 1) for m in range(k)])
                scale = step
            x_tilde = x / st.alpha_t
            for wj, (_, ej) in zip(w, hist[:k], strict=True):
                x_tilde = x_tilde + (scale * wj) * ej
            x = st.alpha_s * x_tilde
        if callback is not None:
            callback({"i": st.i, "t": st.t, "x": x, "denoised": x0})
    return x


def sample_deis(
    denoiser: Denoiser,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    order: int = 3,
    lower_order_final: bool = False,
    cond: Cond = None,
    generator: GeneratorLike = None,
    callback: Callback = None,
) -> torch.Tensor:
    """DEIS-style exponential integrator (Zhang & Chen 2023, "DEIS", eq. 14 with the polynomial
    extrapolation of eq. 15 taken in log-SNR, their "lambda-AB"; = DPM-Solver multistep in noise form).

    Noise form: ``x~_s = x~_t - sigma~_t int_0^h e^{-u} eps(lam_t + u) du`` with ``eps`` replaced
    by the polynomial through its last ``order`` values at ``lam_j`` and integrated exactly:
    weights ``w`` solve ``sum_j w_j r_j^m = m! h e^{-h} phi_{m+1}(h)``, ``r_j = (lam_j - lam_t)/h``,

        x_s = alpha_s (x_t / alpha_t - sigma~_t sum_j w_j eps_j).

    With one point this is DDIM (``w_0 = 1 - e^{-h}``). Warm-up 1, 2, ..., ``order``; the last step
    onto sigma = 0 is the denoising step. NFE = number of steps. Declared order 3 (default).
    """
    return _eps_multistep(denoiser, x, ts, order, "lambda", lower_order_final, cond, callback)


def sample_lms(
    denoiser: Denoiser,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    order: int = 4,
    lower_order_final: bool = False,
    cond: Cond = None,
    generator: GeneratorLike = None,
    callback: Callback = None,
) -> torch.Tensor:
    """Linear multistep (variable-step Adams-Bashforth) on ``dx~/dsigma~ = eps`` (Karras et al. 2022,
    sec. 4 for the ODE; k-diffusion's "LMS"; = DEIS's "rho-AB", Zhang & Chen 2023 eq. 15 in rho = sigma~).

    ``x~_s = x~_t + int_{sigma~_t}^{sigma~_s} P(sigma) dsigma`` with ``P`` the Lagrange polynomial
    through the last ``order`` points ``(sigma~_j, eps_j)``: with ``Delta = sigma~_s - sigma~_t`` and
    ``r_j = (sigma~_j - sigma~_t) / Delta``, weights solve ``sum_j w_j r_j^m = 1/(m+1)`` and
    ``x~_s = x~_t + Delta sum_j w_j eps_j`` (exact quadrature, no numerical integration). One point:
    Euler (= DDIM). Warm-up 1, 2, ..., ``order``; the last step onto sigma = 0 is the denoising step.
    NFE = number of steps. Declared order 4 (default).
    """
    return _eps_multistep(denoiser, x, ts, order, "sigma", lower_order_final, cond, callback)


# --------------------------------------------------------------------------------------------------
# DPM-2
# --------------------------------------------------------------------------------------------------
def sample_dpm_2(
    denoiser: Denoiser,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    cond: Cond = None,
    generator: GeneratorLike = None,
    callback: Callback = None,
) -> torch.Tensor:
    """DPM-Solver-2 (Lu et al. 2022, "DPM-Solver", Alg. 1 with ``r_1 = 1/2``), k-diffusion's "DPM2".

    Noise form: the midpoint in log-SNR ``lam_m = lam_t + h/2`` (``sigma~_m = sqrt(sigma~_t
    sigma~_s)``), ``u = alpha_m (x~_t + (sigma~_m - sigma~_t) eps_t)`` and
    ``x_s = alpha_s (x~_t + (sigma~_s - sigma~_t) eps(u, lam_m))``. (The noise-form exponential
    integrator is exactly Euler in ``sigma~``, so this is the explicit midpoint method in ``sigma~``
    with a geometric midpoint.) A last step onto sigma = 0 is the denoising step, and a step from
    ``alpha = 0`` the DDIM step (the boundary step). NFE = 2 n - (boundary steps). Declared order 2.
    """
    process = denoiser.process
    for st in steps(denoiser, ts):
        x0 = denoise(denoiser, x, st.t, cond)
        if st.boundary:
            x = boundary_step(st, x, x0)
        else:
            eps = eps_of(x, x0, st.alpha_t, st.sigma_t)
            sig_t, sig_s = st.sigma_tilde_t, st.sigma_tilde_s
            sig_m = math.sqrt(sig_t * sig_s)
            t_m = float(process.t_from_sigma_tilde(sig_m))
            a_m, s_m = float(process.alpha(t_m)), float(process.sigma(t_m))
            x_tilde = x / st.alpha_t
            u = a_m * (x_tilde + (sig_m - sig_t) * eps)
            eps_m = eps_of(u, denoise(denoiser, u, t_m, cond), a_m, s_m)
            x = st.alpha_s * (x_tilde + (sig_s - sig_t) * eps_m)
        if callback is not None:
            callback({"i": st.i, "t": st.t, "x": x, "denoised": x0})
    return x
