"""A predictor-corrector exponential integrator with fitted per-step coefficients.

Notation of :mod:`hwaksan.samplers.multistep`: a step ``t -> s``, ``lam = -log sigma~``, ``h =
lam_s - lam_t``, ``rho = e^{-h} = sigma~_s / sigma~_t``; ``V_j`` is the history value at point ``j``
(newest ``j = 0``): the denoiser's ``D_j = x0^`` in the *data form*, the implied noise ``eps_j`` in
the *noise form*. With ``k`` history values one step is

    predictor   x^_s = A x_t + B [ sum_j w_j V_j + (1 - rho) sum_{j>=1} p_j (V_j - V_0) ]
    evaluate    D_new = D(x^_s, s), V_new from it         (the next step's V_0: no extra NFE)
    corrector   x_s  = A x_t + B [ v_new V_new + sum_j v_j V_j
                                   + (1 - rho) (c_0 (V_new - V_0) + sum_{j>=1} c_j (V_j - V_0)) ]

data form:  ``A = sigma_s / sigma_t``, ``B = alpha_s`` (DPM-Solver++, Lu et al. 2022, eq. 9);
noise form: ``A = alpha_s / alpha_t``, ``B = -alpha_s sigma~_t`` (DPM-Solver / DEIS, Lu et al. 2022
eq. 3.4, Zhang & Chen 2023 eq. 14). ``w`` integrates the polynomial through the ``k`` history points
exactly (the weights of ``sample_dpmpp_3m`` / ``sample_deis``) and ``v`` the one through the
``k + 1`` points with the new value (an exponential Adams-Moulton step: UniC, Zhao et al. 2023 Alg.
2, with the exact integral instead of the ``B(h)`` approximation). The last step onto ``sigma = 0``
is the denoising step ``x = alpha_s (D_0 + sum_{j>=1} f_j (D_j - D_0))`` and a step from ``alpha =
0`` the DDIM step, which leaves no history: the boundary step of :mod:`hwaksan.samplers._common`
(with the corrected ``x0^`` at the data end).

With every ``p, c, f = 0`` this is a plain solver of order ``order + 1`` (predictor order
``order``, raised by one by the corrector as UniC-p raises UniP-p, Zhao et al. 2023 Thm. 3.3); with
``corrector=False`` and zero coefficients the data form is ``sample_dpmpp_3m`` and the noise form
``sample_deis``. The free coefficients multiply *differences* of history values scaled by
``1 - rho = int_0^h e^{-(h-u)} du``, so every choice keeps the method consistent (a constant ``D``
is still integrated exactly) and the coefficients are dimensionless. Fitting them, with the time
grid, to the end points of calibration trajectories of one model for one NFE
(:func:`hwaksan.samplers.fit.fit_solver`) is the idea of S4S (Frankel et al. 2025, "S4S: Solving
for a diffusion model solver": optimised multistep coefficients and time steps) and LD3 (Tong et
al. 2025, "Learning to discretize denoising diffusion ODEs": the grid by back-propagation through
the sampler), in the spirit of DPM-Solver-v3 (Zheng et al. 2023: coefficients fitted to the
model's statistics).

The coefficients are a dict of lists (JSON), ``None`` for the plain method::

    {"predictor": [[p_1, ..., p_{order-1}] per step], "corrector": [[c_0, ..., c_{order-1}] per step],
     "final": [f_1, ..., f_{order-1}]}

Entries a step cannot use (warm-up steps have fewer history points) are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .._typing import Cond, Denoiser
from ..utils import GeneratorLike
from ._common import Callback, ddim_step, eps_of, validate_grid
from .multistep import _data_weights, _noise_weights

FORMS = ("data", "noise")

__all__ = ["sample_fitted", "FORMS", "zero_coefficients", "check_coefficients", "Node", "nodes_from_grid"]


# --------------------------------------------------------------------------------------------------
# grid nodes: python floats, or 0-d float64 tensors carrying gradients to the grid (fitting)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    """One grid point: time ``t`` and ``alpha, sigma, lam = -log sigma~`` (floats or 0-d tensors)."""

    t: Any
    alpha: Any
    sigma: Any
    lam: Any

    @property
    def finite(self) -> bool:
        """``alpha > 0`` and ``sigma > 0``: a point with a finite log-SNR."""
        return _val(self.alpha) > 0 and _val(self.sigma) > 0


def _val(v) -> float:
    """A python float of a float or a (maybe graph-carrying) 0-d tensor."""
    return float(v.detach()) if isinstance(v, torch.Tensor) else float(v)


def nodes_from_grid(process, ts: torch.Tensor) -> list[Node]:
    """Nodes of a float64 grid ``ts`` (python floats: no gradient)."""
    ts = torch.as_tensor(ts, dtype=torch.float64)
    alpha, sigma = process.alpha(ts).tolist(), process.sigma(ts).tolist()
    out = []
    for t, a, s in zip(ts.tolist(), alpha, sigma, strict=True):
        lam = math.log(a / s) if a > 0 and s > 0 else (math.inf if s == 0 else -math.inf)
        out.append(Node(t, a, s, lam))
    return out


def zero_coefficients(n_steps: int, order: int = 3) -> dict[str, list]:
    """The coefficients of the plain method (all zero) for an ``n_steps`` grid."""
    return {
        "predictor": [[0.0] * (order - 1) for _ in range(n_steps)],
        "corrector": [[0.0] * order for _ in range(n_steps)],
        "final": [0.0] * (order - 1),
    }


def check_coefficients(coefficients: dict, n_steps: int, order: int) -> None:
    """Raise one clear error when ``coefficients`` does not fit an ``n_steps`` grid of ``order``."""
    want = {"predictor": (n_steps, order - 1), "corrector": (n_steps, order)}
    for key, (rows, cols) in want.items():
        table = coefficients.get(key)
        if table is None or len(table) != rows or any(len(r) != cols for r in table):
            raise ValueError(
                f"fitted coefficients {key!r} must be {rows} lists of {cols} numbers for this {n_steps}-step "
                f"grid of order {order}: fit them for this grid (hwaksan plan-steps --fit) or pass "
                "coefficients=None"
            )
    final = coefficients.get("final")
    if final is None or len(final) != order - 1:
        raise ValueError(f"fitted coefficients 'final' must be {order - 1} numbers (order {order})")


# --------------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------------
def _phi_t(k: int, z: torch.Tensor) -> torch.Tensor:
    """``phi_k(z)`` of a 0-d tensor, differentiable (Taylor series for |z| < 1, else the recurrence)."""
    if abs(_val(z)) < 1.0:
        total, term = torch.zeros_like(z), torch.ones_like(z) / math.factorial(k)
        for j in range(1, 26):
            total = total + term
            term = term * z / (j + k)
        return total
    val = torch.exp(z)
    for i in range(k):
        val = (val - 1.0 / math.factorial(i)) / z
    return val


def _weights(h, rs: Sequence, form: str = "data") -> list:
    """Exact-integration weights of the polynomial through ``(r_j h, value_j)``: data form
    ``int_0^h e^{-(h-u)} p(u) du`` (:func:`hwaksan.samplers.multistep._data_weights`), noise form
    ``int_0^h e^{-u} p(u) du`` (``_noise_weights``). With tensors, a differentiable torch solve."""
    if not any(isinstance(v, torch.Tensor) and v.requires_grad for v in (h, *rs)):
        fn = _data_weights if form == "data" else _noise_weights
        return fn(_val(h), [_val(r) for r in rs])
    h = torch.as_tensor(h, dtype=torch.float64)
    r = torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in rs])
    k = len(rs)
    if form == "data":
        moments = [math.factorial(m) * h * _phi_t(m + 1, -h) for m in range(k)]
    else:
        moments = [math.factorial(m) * h * torch.exp(-h) * _phi_t(m + 1, h) for m in range(k)]
    v = torch.stack([r**m for m in range(k)], dim=1)  # v[j, m] = r_j^m
    return list(torch.linalg.solve(v.T, torch.stack(moments)).unbind(0))


def _f(v):
    """A python float where no gradient is needed (fast path), else the tensor."""
    return v if isinstance(v, torch.Tensor) and v.requires_grad else _val(v)


# --------------------------------------------------------------------------------------------------
# the solver
# --------------------------------------------------------------------------------------------------
def run_fitted(
    denoiser: Denoiser,
    x: torch.Tensor,
    nodes: Sequence[Node],
    coefficients: dict | None,
    order: int,
    corrector: bool,
    form: str = "data",
    cond: Cond = None,
    callback: Callback = None,
) -> torch.Tensor:
    """The method of the module docstring over ``nodes`` (``len(nodes) - 1`` steps). Coefficients may
    be tensors (fitting: gradients flow to them and to tensor-valued nodes)."""
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; choose one of {', '.join(FORMS)}")
    n = len(nodes) - 1
    if coefficients is None:
        coefficients = zero_coefficients(n, order)
    check_coefficients(coefficients, n, order)
    pc, cc, fc = coefficients["predictor"], coefficients["corrector"], coefficients["final"]
    b = x.shape[0]
    hist: list[tuple[Any, torch.Tensor, torch.Tensor]] = []  # (lam_j, D_j, value_j), newest first
    pending = None  # (i, x_t, k) of the predictor step awaiting its corrector
    for i in range(n):
        nt, ns = nodes[i], nodes[i + 1]
        t_in = nt.t if isinstance(nt.t, torch.Tensor) else torch.tensor(nt.t, dtype=torch.float64)
        d = denoiser(x, t_in.expand(b).to(x.device), cond)
        if pending is not None and corrector:
            j, x_prev, k = pending
            new = d if form == "data" else (x - _f(nt.alpha) * d) / _f(nt.sigma)
            x = _step(nodes[j], nodes[j + 1], x_prev, hist[:k], new, cc[j], form)
        if _val(ns.sigma) == 0:  # the boundary step onto data, with the fitted x0^
            ds = [d] + ([dj for _, dj, _ in hist] if nt.finite else [])
            k = min(order, len(ds))
            out = d
            for fj, dj in zip(fc[: k - 1], ds[1:k], strict=True):
                out = out + _f(fj) * (dj - d)
            x = ddim_step(out, None, _f(ns.alpha), 0.0)
            pending = None
        elif not nt.finite:  # the boundary step from alpha = 0 (flows, zero terminal SNR): no history
            eps = eps_of(x, d, _f(nt.alpha), _f(nt.sigma))
            x = ddim_step(d, eps, _f(ns.alpha), _f(ns.sigma))
            hist, pending = [], None
        else:
            value = d if form == "data" else (x - _f(nt.alpha) * d) / _f(nt.sigma)
            hist = [(nt.lam, d, value), *hist][:order]
            x_t = x
            x = _step(nt, ns, x_t, hist, None, pc[i], form)
            pending = (i, x_t, len(hist))
        if callback is not None:
            callback({"i": i, "t": _val(nt.t), "x": x, "denoised": d})
    return x


def _step(nt: Node, ns: Node, x_t: torch.Tensor, hist, new, coef, form: str) -> torch.Tensor:
    """Predictor (``new is None``) or corrector (``new``: the value at the predicted point) from
    ``x_t`` over ``nt -> ns``. Data form: ``x_s = (sigma_s/sigma_t) x_t + alpha_s [...]`` on ``D``;
    noise form: ``x_s = (alpha_s/alpha_t) x_t - alpha_s sigma~_t [...]`` on ``eps``."""
    h = ns.lam - nt.lam
    rho = torch.exp(-h) if isinstance(h, torch.Tensor) else math.exp(-h)
    rs = [(lj - nt.lam) / h for lj, _, _ in hist]
    vs = [vj for _, _, vj in hist]
    v0 = vs[0]
    if new is None:
        extra = [(coef[j - 1], vs[j] - v0) for j in range(1, len(vs))]
    else:
        extra = [(coef[0], new - v0)] + [(coef[j], vs[j] - v0) for j in range(1, len(vs))]
        rs, vs = [1.0, *rs], [new, *vs]
    w = _weights(h, rs, form)
    if form == "data":
        out, scale = _f(ns.sigma / nt.sigma) * x_t, _f(ns.alpha)
    else:
        out, scale = _f(ns.alpha / nt.alpha) * x_t, -_f(ns.alpha * nt.sigma / nt.alpha)
    acc = None
    for wj, vj in zip(w, vs, strict=True):
        term = _f(wj) * vj
        acc = term if acc is None else acc + term
    for cj, diff in extra:
        acc = acc + _f((1.0 - rho) * cj) * diff
    return out + scale * acc


def sample_fitted(
    denoiser: Denoiser,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    coefficients: dict | None = None,
    order: int = 3,
    corrector: bool = True,
    form: str = "data",
    cond: Cond = None,
    generator: GeneratorLike = None,
    callback: Callback = None,
) -> torch.Tensor:
    """Predictor-corrector exponential integrator with optional fitted coefficients (module docstring).

    Args:
        denoiser: ``D(x_t, t, cond) -> x0_hat``.
        x: ``(B, *shape)`` prior noise at ``ts[0]``.
        ts: float64 grid, decreasing to 0 (``n`` steps, ``n`` NFE).
        coefficients: fitted per-step coefficients for this grid (from
            :func:`hwaksan.samplers.fit.fit_solver` / ``hwaksan plan-steps --fit``), or None for
            the plain method (order ``order + 1``).
        order: history points of the predictor (the corrector uses one more).
        corrector: apply the corrector (no extra NFE).
        form: "data" (interpolate ``D``, DPM-Solver++ / UniPC) or "noise" (interpolate ``eps``,
            DEIS / DPM-Solver: ``x_s = (alpha_s/alpha_t) x_t - alpha_s sigma~_t [sum_j w_j eps_j
            + (1 - rho) sum_j c_j (eps_j - eps_0)]`` with the noise-form weights).

    Returns:
        ``(B, *shape)`` samples in ``x``'s dtype.
    """
    if order < 1:
        raise ValueError("order must be at least 1")
    nodes = nodes_from_grid(denoiser.process, validate_grid(ts))
    return run_fitted(denoiser, x, nodes, coefficients, order, corrector, form, cond, callback)
