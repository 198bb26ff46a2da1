"""How straight a model's ODE map is, and how good its few-step samples are (Liu, Gong & Liu 2022).

:func:`flow_report` measures, on ``n`` evaluation paths from fixed source samples, the straightness
``S = int_0^1 E||(X1 - X0) - v(X_t, t)||^2 dt`` and the transport cost ``E||X1 - X0||^2``
(:func:`hwaksan.evaluation.straightness.straightness`), and for 2-D models with a data sample the
sliced Wasserstein distance of the samples at a few Euler step counts.
"""

from __future__ import annotations

from typing import Any

import torch

from ..tasks.reflow import Source, push_forward, source_sample
from .lowdim import sliced_wasserstein
from .straightness import straightness

__all__ = ["EVAL_SEED", "EULER_STEPS_2D", "EULER_STEPS_IMAGES", "flow_report"]

#: First seed of the source samples used for evaluation (far from the pair seeds 0, 1, 2, ...).
EVAL_SEED = 1_000_000_000
#: Euler step counts reported for 2-D models (the benchmark's columns).
EULER_STEPS_2D = (1, 2, 5, 10)
#: Euler step counts reported for image models.
EULER_STEPS_IMAGES = (1, 2, 4)


def flow_report(
    model: Any,
    *,
    shape: tuple[int, ...],
    source: Source | None = None,
    num_classes: int = 0,
    n: int = 256,
    straightness_steps: int = 100,
    euler_steps: tuple[int, ...] = EULER_STEPS_2D,
    reference: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 500,
) -> dict[str, Any]:
    """Straightness and transport cost of ``model`` on ``n`` evaluation paths (seeds from
    :data:`EVAL_SEED`), and with a ``reference`` data sample ``(M, D)`` the sliced Wasserstein
    distance of ``n`` samples at each of ``euler_steps``.

    Args:
        model: a data-space denoiser with a ``.process``.
        shape: per-sample data shape.
        source: the source distribution (None: the Gaussian prior).
        num_classes: path ``i`` of a class-conditional model has label ``i % num_classes``.
        n: evaluation paths.
        straightness_steps: Euler steps of the straightness integral.
        euler_steps: step counts of the sliced-Wasserstein columns (with ``reference``).
        reference: data samples to compare with (2-D models), or None.
        device: where to run.
        batch_size: paths per call.

    Returns:
        ``{"straightness", "transport_cost", "straightness_per_dim", "transport_cost_per_dim", "n",
        "straightness_steps"[, "sw_euler_K" ...]}``.
    """
    s_sum = c_sum = 0.0
    dim = 1
    for b0 in range(0, n, batch_size):
        nb = min(batch_size, n - b0)
        x1 = source_sample(nb, shape, EVAL_SEED + b0, source, device=device)
        cond = (torch.arange(b0, b0 + nb, device=device) % num_classes) if num_classes else None
        r = straightness(model, x1, steps=straightness_steps, cond=cond)
        s_sum += r.straightness * nb
        c_sum += r.transport_cost * nb
        dim = r.dim
    report: dict[str, Any] = {
        "straightness": s_sum / n,
        "transport_cost": c_sum / n,
        "straightness_per_dim": s_sum / n / dim,
        "transport_cost_per_dim": c_sum / n / dim,
        "n": n,
        "straightness_steps": straightness_steps,
    }
    if reference is not None:
        x1 = source_sample(n, shape, EVAL_SEED, source, device=device)
        for k in euler_steps:
            with torch.no_grad():
                x = push_forward(model, x1, sampler="euler", steps=k, grid="uniform").x
            sw = sliced_wasserstein(x, reference, generator=torch.Generator().manual_seed(0))
            report[f"sw_euler_{k}"] = sw
    return report
