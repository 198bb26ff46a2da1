"""Couplings of a noise batch with a data batch for flow matching (SPEC section 3).

A coupling returns the noise batch re-ordered (or re-drawn) so that ``eps[i]`` is paired with
``x0[i]``. The independent coupling keeps the order; the minibatch optimal-transport coupling
(Tong et al. 2024, OT-CFM; Pooladian et al. 2023) solves the exact assignment problem on squared
Euclidean cost for equal batches.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

__all__ = ["independent_coupling", "ot_coupling", "COUPLINGS"]


def independent_coupling(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The product coupling: ``eps`` unchanged. Shapes ``(B, *shape)``."""
    return eps


def ot_coupling(x0: torch.Tensor, eps: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Exact minibatch OT: permute ``eps`` to minimise ``sum_i ||x0_i - eps_pi(i)||^2``.

    Solved with ``scipy.optimize.linear_sum_assignment`` (Jonker-Volgenant, O(B^3)). With
    ``labels`` (``(B,)``), pairs only form within a class (label-aware OT for conditional models):
    cross-class costs are made prohibitive, which is exact as long as the noise batch is split
    among classes as the data batch is (true when ``eps`` is i.i.d. and has no labels).

    Shapes: ``x0, eps (B, *shape)`` -> ``(B, *shape)``.
    """
    if x0.shape != eps.shape:
        raise ValueError(f"x0 {tuple(x0.shape)} and eps {tuple(eps.shape)} must match for OT")
    a = x0.reshape(x0.shape[0], -1).double()
    b = eps.reshape(eps.shape[0], -1).double()
    cost = torch.cdist(a, b).pow(2).cpu().numpy()
    if labels is not None:
        lab = labels.cpu().numpy()
        cost = cost + np.where(lab[:, None] != lab[None, :], 1e12, 0.0)
    _, cols = linear_sum_assignment(cost)
    return eps[torch.as_tensor(cols, device=eps.device)]


COUPLINGS = {"independent": independent_coupling, "ot": ot_coupling}
