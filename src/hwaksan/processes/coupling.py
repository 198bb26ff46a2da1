"""Couplings of a source batch with a data batch for flow matching.

Flow matching trains ``v(x_t, t)`` on ``x_t = alpha(t) x0 + sigma(t) x1`` with target
``alpha' x0 + sigma' x1`` (``x1 - x0`` on the linear interpolant), where ``(x0, x1)`` is drawn from
*a coupling* of the data and the source: any joint distribution with those two marginals. The
learned marginal velocity transports the source (t = 1) to the data (t = 0) whatever the coupling
(Liu et al. 2022, Thm. 3.3; Lipman et al. 2023; Tong et al. 2024), and a better coupling gives
straighter paths. The source ``x1`` is ``eps ~ N(0, I)`` by default but may be any distribution
that can be sampled (``8gaussians -> moons``); we keep the name ``eps`` for it throughout.

A coupling here is a function ``coupling(x0, eps) -> eps'`` that returns the source batch
re-ordered (or re-sampled) so that ``eps'[i]`` is paired with ``x0[i]``; ``losses.draw`` calls it.

==================  ==================================================================  =========
name                pairing                                                             reference
==================  ==================================================================  =========
``independent``     the product coupling: ``eps`` unchanged                             Lipman 2023
``ot``              exact minibatch OT: the permutation minimising ``sum ||x0_i - eps_j||^2``  Tong 2024
                    (Jonker-Volgenant, ``scipy.optimize.linear_sum_assignment``)
``sinkhorn``        entropic minibatch OT (POT's Sinkhorn-Knopp), each ``x0_i`` draws  Tong 2024
                    its partner from row ``i`` of the plan; O(B^2) per iteration, for
                    batches where the O(B^3) assignment is too slow
user pairing        :func:`pairing_coupling` wraps ``fn(x0, eps) -> indices``           --
fixed pairs         pass ``eps=`` to ``losses.draw`` (reflow: pairs simulated once)    Liu 2022
==================  ==================================================================  =========

Label-aware OT (conditional models): with ``labels`` the assignment is solved separately inside
every class, so a data point of class ``c`` is only ever paired with a source sample of class
``c``. The source class of ``eps[j]`` is ``source_labels[j]``; without it, position ``j`` of the
i.i.d. source batch is given the class of ``x0[j]`` (a random split of the source into groups of
the data's class sizes), which is the conditional OT-CFM of Tong et al. (2024, sec. 4).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = [
    "COUPLINGS",
    "Coupling",
    "independent_coupling",
    "ot_coupling",
    "ot_assignment",
    "sinkhorn_coupling",
    "sinkhorn_plan",
    "pairing_coupling",
    "make_coupling",
    "squared_distances",
]

#: ``coupling(x0, eps) -> eps'`` with ``eps'[i]`` the partner of ``x0[i]``; shapes ``(B, *shape)``.
Coupling = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Coupling names accepted by :func:`make_coupling` and by ``[diffusion] coupling`` in configs.
COUPLINGS = ("independent", "ot", "sinkhorn")

#: Default entropic regularisation of :func:`sinkhorn_coupling`, relative to the mean cost.
SINKHORN_REG = 0.05


def squared_distances(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The cost matrix ``C[i, j] = ||x0_i - eps_j||^2`` in float64, ``(B0, B1)``.

    Computed as ``|a|^2 + |b|^2 - 2 a.b`` on the flattened samples (memory ``O(B^2)``, not
    ``O(B^2 D)``), clamped at 0.
    """
    a = x0.reshape(x0.shape[0], -1).double()
    b = eps.reshape(eps.shape[0], -1).double()
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x0 {tuple(x0.shape)} and eps {tuple(eps.shape)} differ in dimension")
    cost = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return cost.clamp_min_(0.0)


def independent_coupling(
    x0: torch.Tensor, eps: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """The product coupling: ``eps`` unchanged. Shapes ``(B, *shape)``."""
    return eps


def _groups(
    x0: torch.Tensor, eps: torch.Tensor, labels: torch.Tensor | None, source_labels: torch.Tensor | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Index pairs ``(rows of x0, rows of eps)`` to couple: one pair of index sets per class."""
    if x0.shape != eps.shape:
        raise ValueError(
            f"x0 {tuple(x0.shape)} and eps {tuple(eps.shape)} must have the same shape for minibatch OT "
            "(draw as many source samples as data samples)"
        )
    b = x0.shape[0]
    if labels is None:
        if source_labels is not None:
            raise ValueError("source_labels needs labels for the data batch too")
        everything = np.arange(b)
        return [(everything, everything)]
    lab = torch.as_tensor(labels).reshape(-1).cpu().numpy()
    if lab.shape != (b,):
        raise ValueError(f"labels must have shape ({b},), got {tuple(lab.shape)}")
    src = lab if source_labels is None else torch.as_tensor(source_labels).reshape(-1).cpu().numpy()
    if src.shape != (b,):
        raise ValueError(f"source_labels must have shape ({b},), got {tuple(src.shape)}")
    out = []
    for c in np.unique(np.concatenate([lab, src])):
        rows, cols = np.flatnonzero(lab == c), np.flatnonzero(src == c)
        if len(rows) != len(cols):
            raise ValueError(
                f"label-aware OT: class {c} has {len(rows)} data and {len(cols)} source samples; "
                "give every class as many source samples as data samples"
            )
        out.append((rows, cols))
    return out


def ot_assignment(
    x0: torch.Tensor,
    eps: torch.Tensor,
    labels: torch.Tensor | None = None,
    source_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """The optimal permutation ``perm (B,)`` (long): ``eps[perm[i]]`` is the partner of ``x0[i]``.

    Minimises ``sum_i ||x0_i - eps_perm(i)||^2`` exactly (Jonker-Volgenant via
    ``scipy.optimize.linear_sum_assignment``, O(B^3)); with ``labels`` separately inside each class
    (module docstring). Equal batches make the minibatch OT plan a permutation (Birkhoff), so this
    is the exact minibatch OT coupling (``ot.emd`` finds the same one).
    """
    from scipy.optimize import linear_sum_assignment  # scipy.optimize is slow to import: only here

    perm = np.empty(x0.shape[0], dtype=np.int64)
    groups = _groups(x0, eps, labels, source_labels)
    cost = squared_distances(x0, eps).cpu().numpy()
    for rows, cols in groups:
        r, c = linear_sum_assignment(cost[np.ix_(rows, cols)])
        perm[rows[r]] = cols[c]
    return torch.from_numpy(perm).to(eps.device)


def ot_coupling(
    x0: torch.Tensor,
    eps: torch.Tensor,
    labels: torch.Tensor | None = None,
    source_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact minibatch OT (OT-CFM, Tong et al. 2024; Pooladian et al. 2023): ``eps`` permuted by
    :func:`ot_assignment`. Shapes: ``x0, eps (B, *shape)``, ``labels (B,)`` -> ``(B, *shape)``."""
    return eps[ot_assignment(x0, eps, labels, source_labels)]


def sinkhorn_plan(x0: torch.Tensor, eps: torch.Tensor, reg: float = SINKHORN_REG) -> torch.Tensor:
    """Entropic OT plan ``P (B0, B1)`` (float64, rows sum to ``1/B0``) between uniform weights.

    Solves ``min <P, C'> + reg sum P log P`` with ``C' = C / mean(C)`` the squared distances
    scaled by their mean (so ``reg`` is relative to a typical cost, whatever the dimension) by
    POT's Sinkhorn-Knopp iterations (Cuturi 2013; the log-domain variant below ``reg = 0.01``).
    Since the entropy of a coupling of two uniform measures lies in ``[log B, 2 log B]``, the plan
    costs at most ``reg log B`` (in units of ``mean(C)``) more than exact OT.
    """
    import ot  # POT: imported on first use (it takes a while)

    if reg <= 0:
        raise ValueError(f"reg must be > 0, got {reg}; use the 'ot' coupling for exact OT")
    cost = squared_distances(x0, eps)
    scale = float(cost.mean())
    cost = cost / scale if scale > 0 else cost
    a = torch.full((cost.shape[0],), 1.0 / cost.shape[0], dtype=torch.float64)
    b = torch.full((cost.shape[1],), 1.0 / cost.shape[1], dtype=torch.float64)
    method = "sinkhorn" if reg >= 0.01 else "sinkhorn_log"
    plan = ot.sinkhorn(
        a.numpy(), b.numpy(), cost.cpu().numpy(), reg, method=method, numItermax=10000, stopThr=1e-9
    )
    return torch.from_numpy(np.asarray(plan)).to(torch.float64)


def sinkhorn_coupling(
    x0: torch.Tensor,
    eps: torch.Tensor,
    labels: torch.Tensor | None = None,
    source_labels: torch.Tensor | None = None,
    *,
    reg: float = SINKHORN_REG,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Entropic minibatch OT: ``x0[i]`` keeps its place and draws its partner ``j`` with probability
    ``P[i, j] / sum_j P[i, j]`` from the Sinkhorn plan (:func:`sinkhorn_plan`); with ``labels``, one
    plan per class. Partners may repeat (a draw from the plan, as in Tong et al. 2024). Random
    draws use ``generator`` (torch's global generator when None).

    Shapes: ``x0, eps (B, *shape)`` -> ``(B, *shape)``.
    """
    idx = torch.empty(x0.shape[0], dtype=torch.long)
    for rows, cols in _groups(x0, eps, labels, source_labels):
        r = torch.from_numpy(rows)
        c = torch.from_numpy(cols)
        if len(rows) == 1:
            idx[r] = c
            continue
        plan = sinkhorn_plan(x0[r.to(x0.device)], eps[c.to(eps.device)], reg)
        probs = plan / plan.sum(1, keepdim=True)
        idx[r] = c[torch.multinomial(probs, 1, generator=generator).squeeze(1)]
    return eps[idx.to(eps.device)]


def pairing_coupling(pair: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Coupling:
    """A user-supplied pairing as a coupling: ``pair(x0, eps) -> idx (B,)`` (long), and ``eps[idx]``
    is returned (``idx`` need not be a permutation). The indices are checked."""

    def coupling(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        idx = torch.as_tensor(pair(x0, eps))
        if idx.shape != (x0.shape[0],) or idx.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"a pairing must return integer indices of shape ({x0.shape[0]},), got "
                f"{idx.dtype} {tuple(idx.shape)}"
            )
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= eps.shape[0]):
            raise ValueError(f"pairing indices must lie in 0..{eps.shape[0] - 1}")
        return eps[idx.long().to(eps.device)]

    return coupling


def make_coupling(
    name: str | Coupling | None,
    *,
    labels: torch.Tensor | None = None,
    reg: float = SINKHORN_REG,
    generator: torch.Generator | None = None,
) -> Coupling | None:
    """A coupling by name (:data:`COUPLINGS`), bound to a batch's ``labels`` for label-aware OT.

    ``None`` and ``"independent"`` give ``None`` (``losses.draw`` then keeps ``eps``); a callable is
    returned unchanged. ``reg`` and ``generator`` apply to ``"sinkhorn"``.
    """
    if name is None or name == "independent":
        return None
    if callable(name):
        return name
    if name == "ot":
        return lambda x0, eps: ot_coupling(x0, eps, labels)
    if name == "sinkhorn":
        return lambda x0, eps: sinkhorn_coupling(x0, eps, labels, reg=reg, generator=generator)
    raise ValueError(f"unknown coupling {name!r}; choose one of {', '.join(COUPLINGS)}")
