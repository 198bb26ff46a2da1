"""The first steps of every fixed-step deterministic sampler, written out from its paper in float64.

Each reference below calls the same exact denoiser (the Gaussian-mixture oracle: nonlinear, so
every evaluation point matters) at the points its paper prescribes and combines the results with
coefficients derived here, independently of the library (closed forms, or scipy quadrature of the
interpolating polynomial against the exponential kernel instead of phi functions and Vandermonde
solves). The sampler runs on a short, non-uniform grid of a variance-preserving process (``alpha <
1``, so every ``alpha`` and ``sigma`` factor matters) that stops before ``sigma = 0``; its state after
every step (its callback) must agree with the reference to 1e-10 relative. Float64 rounding and
the 1e-13 quadrature tolerance stay below 1e-12 here, while a changed coefficient moves a step by
its error times a denoiser output or a difference of them, O(h) of the data scale on this grid.

The last step onto ``sigma = 0`` is the denoising step ``alpha_0 D`` for every sampler (one test);
the adaptive samplers (no fixed steps) are checked against their tolerance in test_adaptive.py.
Convergence orders are tested in tests/test_samplers.py and tests/samplers/test_multistep.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from _exact_steps import batch_time, combine, lagrange_weights, scalars

from hwaksan.distributions import GaussianMixture
from hwaksan.oracles import GaussianMixtureDenoiser
from hwaksan.processes import VPSDE
from hwaksan.samplers import SAMPLERS

TOL = {"rtol": 1e-10, "atol": 1e-12}
SIGMA_TILDES = (4.0, 2.3, 1.1, 0.62, 0.3, 0.17)  # EDM noise levels of the grid: unequal log-SNR steps


def _mixture() -> GaussianMixture:
    means = torch.tensor([[-1.0, 0.2], [0.8, 0.6], [0.1, -1.1]], dtype=torch.float64)
    covs = torch.tensor([[0.2**2, 0.4**2], [0.5**2, 0.15**2], [0.3**2, 0.3**2]], dtype=torch.float64)
    return GaussianMixture(means, covs, torch.tensor([0.5, 0.3, 0.2]))


@pytest.fixture(scope="module")
def problem():
    process = VPSDE()
    den = GaussianMixtureDenoiser(_mixture(), process)
    ts = process.t_from_sigma_tilde(torch.tensor(SIGMA_TILDES, dtype=torch.float64))
    a, s, _ = scalars(process, float(ts[0]))
    g = torch.Generator().manual_seed(0)
    x0 = _mixture().means[torch.randint(0, 3, (12,), generator=g)]
    x = a * x0 + s * torch.randn(12, 2, generator=g, dtype=torch.float64)
    return process, den, ts, x


def _states(name, den, x, ts, **opts):
    spec = SAMPLERS[name]
    log: list[torch.Tensor] = []
    out = spec.fn(
        den, x.clone(), ts, callback=lambda d: log.append(d["x"].clone()), **{**spec.defaults, **opts}
    )
    torch.testing.assert_close(out, log[-1], rtol=0, atol=0)
    return log


def _assert_steps(got, want):
    for i, w in enumerate(want):
        torch.testing.assert_close(got[i], w, **TOL, msg=lambda m, i=i: f"step {i}: {m}")


def _d(den, x, t):
    return den(x, batch_time(x, t))


def _eps(process, den, x, t):
    a, s, _ = scalars(process, t)
    return (x - a * _d(den, x, t)) / s


def _data_form(process, t, s, x_t, lams, values):
    """DPM-Solver++ (Lu et al. 2022b, eq. 9): ``x_s = (sigma_s / sigma_t) x_t + sigma_s
    int_{lam_t}^{lam_s} e^lam D(lam) dlam`` with ``D`` the polynomial through ``(lams, values)``."""
    _, s_t, lam_t = scalars(process, t)
    _, s_s, lam_s = scalars(process, s)
    w = lagrange_weights(math.exp, lam_t, lam_s, lams)
    return (s_s / s_t) * x_t + s_s * combine(w, values)


def _noise_form(process, t, s, x_t, lams, values):
    """DPM-Solver (Lu et al. 2022a, eq. 3.4): ``x_s = (alpha_s / alpha_t) x_t - alpha_s
    int_{lam_t}^{lam_s} e^-lam eps(lam) dlam`` with ``eps`` the polynomial through ``(lams, values)``."""
    a_t, _, lam_t = scalars(process, t)
    a_s, _, lam_s = scalars(process, s)
    w = lagrange_weights(lambda u: math.exp(-u), lam_t, lam_s, lams)
    return (a_s / a_t) * x_t - a_s * combine(w, values)


# --------------------------------------------------------------------------------------------------
# single-step methods
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ddim", "euler"])
def test_ddim_steps(problem, name):
    """DDIM (Song, Meng & Ermon 2021, eq. 12 with sigma_t = 0): ``x_s = alpha_s x0^ + sigma_s eps^``."""
    process, den, ts, x = problem
    got = _states(name, den, x, ts)
    want, tl = [], ts.tolist()
    for t, s in zip(tl[:-1], tl[1:], strict=True):
        a_s, s_s, _ = scalars(process, s)
        x = a_s * _d(den, x, t) + s_s * _eps(process, den, x, t)
        want.append(x)
    _assert_steps(got, want)


def test_heun_steps(problem):
    """EDM's Heun (Karras et al. 2022, Alg. 1) on ``x~ = x / alpha`` with ``sigma~`` as time (their
    sec. 4: ``dx~/dsigma~ = (x~ - D(alpha x~)) / sigma~``): ``d = (x~ - D) / sigma~_t``, Euler
    ``x~' = x~ + (sigma~_s - sigma~_t) d``, then the trapezoid with ``d'`` at ``(x~', sigma~_s)``:
    ``x~_s = x~ + (sigma~_s - sigma~_t) (d + d') / 2``."""
    process, den, ts, x = problem
    got = _states("heun", den, x, ts)
    want, tl = [], ts.tolist()
    for t, s in zip(tl[:-1], tl[1:], strict=True):
        a_t, s_t, _ = scalars(process, t)
        a_s, s_s, _ = scalars(process, s)
        sig_t, sig_s = s_t / a_t, s_s / a_s
        xt = x / a_t
        d = (xt - _d(den, a_t * xt, t)) / sig_t
        x_euler = xt + (sig_s - sig_t) * d
        d_next = (x_euler - _d(den, a_s * x_euler, s)) / sig_s
        x = a_s * (xt + (sig_s - sig_t) * (d / 2 + d_next / 2))
        want.append(x)
    _assert_steps(got, want)


def test_dpm_2_steps(problem):
    """DPM-Solver-2 (Lu et al. 2022a, Alg. 1 with r_1 = 1/2): the midpoint ``lam_m = (lam_t + lam_s)
    / 2``, ``u = (alpha_m / alpha_t) x - sigma_m (e^{h/2} - 1) eps_t`` and ``x_s = (alpha_s /
    alpha_t) x - sigma_s (e^h - 1) eps(u, t_m)``, ``h = lam_s - lam_t``."""
    process, den, ts, x = problem
    got = _states("dpm_2", den, x, ts)
    want, tl = [], ts.tolist()
    for t, s in zip(tl[:-1], tl[1:], strict=True):
        a_t, _, lam_t = scalars(process, t)
        a_s, s_s, lam_s = scalars(process, s)
        h = lam_s - lam_t
        t_m = float(process.t_from_log_snr(torch.tensor(lam_t + lam_s, dtype=torch.float64)))  # 2 lam_m
        a_m, s_m, _ = scalars(process, t_m)
        u = (a_m / a_t) * x - s_m * math.expm1(h / 2) * _eps(process, den, x, t)
        x = (a_s / a_t) * x - s_s * math.expm1(h) * _eps(process, den, u, t_m)
        want.append(x)
    _assert_steps(got, want)


# --------------------------------------------------------------------------------------------------
# multistep methods
# --------------------------------------------------------------------------------------------------
def test_dpmpp_2m_steps(problem):
    """DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2): with ``h_i = lam_i - lam_{i-1}``,
    ``x_1 = (sigma_1 / sigma_0) x_0 - alpha_1 (e^{-h_1} - 1) D_0``; then ``r_i = h_{i-1} / h_i``,
    ``D = (1 + 1 / (2 r_i)) D_{i-1} - 1 / (2 r_i) D_{i-2}``, ``x_i = (sigma_i / sigma_{i-1}) x_{i-1}
    - alpha_i (e^{-h_i} - 1) D``."""
    process, den, ts, x = problem
    got = _states("dpmpp_2m", den, x, ts)
    want, tl = [], ts.tolist()
    prev = None  # (h, D) of the previous step
    for t, s in zip(tl[:-1], tl[1:], strict=True):
        _, s_t, lam_t = scalars(process, t)
        a_s, s_s, lam_s = scalars(process, s)
        h = lam_s - lam_t
        d_now = _d(den, x, t)
        if prev is None:
            d = d_now
        else:
            r = prev[0] / h
            d = (1 + 1 / (2 * r)) * d_now - 1 / (2 * r) * prev[1]
        x = (s_s / s_t) * x - a_s * math.expm1(-h) * d
        prev = (h, d_now)
        want.append(x)
    _assert_steps(got, want)


def _history_steps(process, den, x, ts, order, form, cap=None):
    """Multistep exponential integrators that integrate the interpolating polynomial through the
    last ``k = min(order, history)`` values exactly (``cap(i)`` may lower ``k``): data form on
    ``D`` (DPM-Solver++(3M), Lu et al. 2022b sec. 4 / App. B) or noise form on ``eps`` (DEIS, Zhang
    & Chen 2023 eq. 14-15 with the polynomial in log-SNR)."""
    want, hist, tl = [], [], ts.tolist()
    for i, (t, s) in enumerate(zip(tl[:-1], tl[1:], strict=True)):
        lam_t = scalars(process, t)[2]
        value = _d(den, x, t) if form == "data" else _eps(process, den, x, t)
        hist = [(lam_t, value), *hist][:order]
        k = len(hist) if cap is None else min(len(hist), cap(i))
        step = _data_form if form == "data" else _noise_form
        x = step(process, t, s, x, [lj for lj, _ in hist[:k]], [v for _, v in hist[:k]])
        want.append(x)
    return want


def test_dpmpp_3m_steps(problem):
    process, den, ts, x = problem
    _assert_steps(_states("dpmpp_3m", den, x, ts), _history_steps(process, den, x, ts, 3, "data"))


def test_deis_steps(problem):
    process, den, ts, x = problem
    _assert_steps(_states("deis", den, x, ts), _history_steps(process, den, x, ts, 3, "noise"))


def test_lms_steps(problem):
    """Linear multistep in ``sigma~`` (Karras et al. 2022 sec. 4's ODE ``dx~/dsigma~ = eps``; variable-
    step Adams-Bashforth, k-diffusion's LMS): ``x~_s = x~_t + int_{sigma~_t}^{sigma~_s} P(sigma~)
    dsigma~`` with ``P`` the polynomial through the last four ``(sigma~_j, eps_j)``."""
    process, den, ts, x = problem
    got = _states("lms", den, x, ts)
    want, hist, tl = [], [], ts.tolist()
    for t, s in zip(tl[:-1], tl[1:], strict=True):
        a_t, s_t, _ = scalars(process, t)
        a_s, s_s, _ = scalars(process, s)
        hist = [(s_t / a_t, _eps(process, den, x, t)), *hist][:4]
        w = lagrange_weights(lambda u: 1.0, s_t / a_t, s_s / a_s, [sj for sj, _ in hist])
        x = a_s * (x / a_t + combine(w, [e for _, e in hist]))
        want.append(x)
    _assert_steps(got, want)


def _unipc_reference(process, den, x, ts, order, variant, lower_order_final):
    """UniPC (Zhao et al. 2023, Alg. 1-3, data prediction). A predictor with ``k`` history points,
    ``K = k - 1`` differences, and the corrector UniC with the value ``D(x~_s, s)`` at the predicted
    point added (``K = k``), recomputing ``x_s`` from ``x_t``. With ``r_m = (lam_m - lam_t) / h``,
    ``D_m = x0^_m - x0^_t``, ``B(h) = h`` (bh1) or ``1 - e^{-h}`` (bh2):
    ``x_s = (sigma_s / sigma_t) x_t + alpha_s [(1 - e^{-h}) x0^_t + B(h) sum_m a_m D_m / r_m]``,
    ``a = 1/2`` for ``K = 1`` (their fixed choice) and, for ``K >= 2``, ``a`` solving their order
    conditions ``sum_m a_m r_m^{n-1} = n! h phi_{n+1}(-h) / B(h)``, ``n = 1..K``, which makes the
    bracket the exact integral of the degree-K polynomial through the K + 1 points, whatever
    ``B(h)`` (the data-form integral of DPM-Solver++ above). Predictor order ``min(order, history,
    steps left)`` with ``lower_order_final``; the next evaluation is at the predicted point."""
    tl = ts.tolist()
    n = len(tl) - 1

    def update(i, x_t, pts):  # pts: [(lam, D)], pts[0] at t_i; extra point (if any) at t_{i+1}
        t, s = tl[i], tl[i + 1]
        _, s_t, lam_t = scalars(process, t)
        a_s, s_s, lam_s = scalars(process, s)
        h = lam_s - lam_t
        if len(pts) >= 3:
            return _data_form(process, t, s, x_t, [lj for lj, _ in pts], [dj for _, dj in pts])
        out = (s_s / s_t) * x_t - a_s * math.expm1(-h) * pts[0][1]
        if len(pts) == 2:
            b_h = h if variant == "bh1" else -math.expm1(-h)
            r = (pts[1][0] - lam_t) / h
            out = out + a_s * b_h * 0.5 * (pts[1][1] - pts[0][1]) / r
        return out

    want, hist, pending = [], [], None
    for i in range(n):
        t = tl[i]
        d = _d(den, x, t)
        if pending is not None:
            j, x_prev, k = pending
            lam_new = scalars(process, tl[j + 1])[2]
            x = update(j, x_prev, [hist[0], (lam_new, d), *hist[1:k]])
        hist = [(scalars(process, t)[2], d), *hist][:order]
        k = min(len(hist), n - i) if lower_order_final and n < 15 else len(hist)
        pending = (i, x, k)
        x = update(i, x, hist[:k])
        want.append(x)
    return want


@pytest.mark.parametrize("name", ["unipc", "unipc_bh1"])
def test_unipc_steps(problem, name):
    process, den, ts, x = problem
    opts = {"order": 3, "variant": "bh2", "lower_order_final": True, **SAMPLERS[name].defaults}
    got = _states(name, den, x, ts)
    _assert_steps(got, _unipc_reference(process, den, x, ts, 3, opts["variant"], True))


def test_fitted_plain_steps(problem):
    """The fitted solver with no coefficients (hwaksan.samplers.fitted, data form, order 3): the
    predictor integrates the polynomial through its ``k`` history values exactly, and the corrector
    recomputes ``x_s`` from ``x_t`` with the value at the predicted point added (an exponential
    Adams-Moulton step: UniC with the exact integral)."""
    process, den, ts, x = problem
    got = _states("fitted", den, x, ts)
    tl = ts.tolist()
    want, hist, pending = [], [], None
    for i in range(len(tl) - 1):
        t = tl[i]
        d = _d(den, x, t)
        if pending is not None:
            j, x_prev, k = pending
            pts = [(scalars(process, t)[2], d), *hist[:k]]
            x = _data_form(process, tl[j], t, x_prev, [lj for lj, _ in pts], [dj for _, dj in pts])
        hist = [(scalars(process, t)[2], d), *hist][:3]
        pending = (i, x, len(hist))
        x = _data_form(process, t, tl[i + 1], x, [lj for lj, _ in hist], [dj for _, dj in hist])
        want.append(x)
    _assert_steps(got, want)


# --------------------------------------------------------------------------------------------------
# the registry: every fixed-step deterministic sampler has a reference here, and all end alike
# --------------------------------------------------------------------------------------------------
CHECKED = {
    "ddim",
    "euler",
    "heun",
    "dpm_2",
    "dpmpp_2m",
    "dpmpp_3m",
    "deis",
    "lms",
    "unipc",
    "unipc_bh1",
    "fitted",
}


def test_every_fixed_step_deterministic_sampler_is_checked():
    fixed = {name for name, spec in SAMPLERS.items() if not spec.stochastic and spec.nfe is not None}
    assert fixed == CHECKED, fixed ^ CHECKED


@pytest.mark.parametrize("name", sorted(CHECKED))
def test_last_step_onto_data_is_the_denoising_step(problem, name):
    """Onto ``sigma = 0`` every sampler returns ``alpha_0 D(x_t, t)`` (the library's convention;
    Karras et al. 2022 Alg. 1 takes the Euler step there, which is the same point)."""
    process, den, ts, x = problem
    grid = torch.tensor([float(ts[-2]), float(ts[-1]), 0.0], dtype=torch.float64)
    got = _states(name, den, x, grid)
    torch.testing.assert_close(got[-1], scalars(process, 0.0)[0] * _d(den, got[0], float(ts[-1])), **TOL)
