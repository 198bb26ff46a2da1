"""``hwaksan evaluate`` for 2-D checkpoints: the foundation's metrics against the true data.

A 2-D model of ``hwaksan train --data NAME`` is compared with fresh samples of the toy data set it
learned: sliced Wasserstein distance, the unbiased MMD^2 with fixed bandwidths (0.1, 0.3, 1.0: the
same kernel for every model) and, where the data set has a density, the mean log-likelihood of
the samples under it (:mod:`hwaksan.evaluation.lowdim`). The floor row is the same metric between
two independent true sample sets of the same size: what a perfect sampler would score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..data.toy import TOY_DATASETS, get_toy_dataset
from ..io.artifact import TrainedModel
from .lowdim import mean_log_likelihood, mmd, sliced_wasserstein

__all__ = ["LOWDIM_METRICS", "BANDWIDTHS", "toy_dataset_of", "lowdim_metrics", "lowdim_samples", "spread"]

LOWDIM_METRICS = ("sw", "mmd", "loglik")
"""Sliced Wasserstein distance, MMD^2, mean log-likelihood under the true density."""
BANDWIDTHS = (0.1, 0.3, 1.0)
_REFERENCE_SEED = 10_000  # true samples of run s use seed _REFERENCE_SEED + s (the floor: + 1000)


def toy_dataset_of(model: TrainedModel, override: str | None = None) -> str:
    """The 2-D data set ``model`` is compared with: ``override``, else the one it was trained on.

    Raises:
        ValueError: not a 2-D model, or no known 2-D data set (one line naming the fix).
    """
    if not model.is_lowdim:
        raise ValueError(f"the 2-D metrics need a model of points; this is a {model.describe()} model")
    name = override or model.dataset
    if name not in TOY_DATASETS:
        got = f"{name!r} is not one" if name else "the model names none"
        raise ValueError(
            f"the 2-D metrics compare with a toy data set ({got}): pass --dataset NAME, one of "
            f"{', '.join(TOY_DATASETS)}"
        )
    return str(name)


@torch.no_grad()
def lowdim_samples(
    model: TrainedModel, n: int, *, sampler: str, steps: int, grid, seed: int, options: dict
) -> tuple[torch.Tensor, int]:
    """``(samples (n, D), NFE)`` of a 2-D model (:meth:`TrainedModel.sample`, decoded); sample
    ``i`` uses seed ``seed + i``.

    Raises:
        ValueError: a flow from a non-Gaussian source (``hwaksan sample`` draws those).
    """
    if model.source != "gaussian":
        raise ValueError(
            f"this 2-D flow starts from {model.source!r}, not Gaussian noise: evaluate its samples "
            "with hwaksan sample --out FILE.png (CSV beside it) and hwaksan.evaluation.lowdim"
        )
    gens = [torch.Generator(device=model.device).manual_seed(seed + i) for i in range(n)]
    res = model.sample(n, sampler=sampler, steps=steps, grid=grid, generator=gens, **options)
    return res.x.float().cpu(), res.nfe


def spread(values: Sequence[float]) -> dict[str, Any]:
    """``{value: mean, std: sample std (None for one value), per_seed: values}``."""
    vals = [float(v) for v in values]
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
    return {"value": mean, "std": std, "per_seed": vals}


def lowdim_metrics(
    x: torch.Tensor, data_name: str, metrics: Sequence[str], n: int, seeds: int, floor: bool = True
) -> dict[str, Any]:
    """Metrics of samples ``x (seeds * n, D)`` (run ``s`` = rows ``s n .. (s + 1) n - 1``) against
    ``n`` true samples per run; with ``floor``, the same between two true sample sets."""
    dataset = get_toy_dataset(data_name)
    runs: dict[str, list[float]] = {m: [] for m in metrics}
    floors: dict[str, list[float]] = {m: [] for m in metrics if m != "loglik"}
    if "loglik" in metrics and not dataset.has_density:
        runs.pop("loglik")
    for s in range(seeds):
        xs = x[s * n : (s + 1) * n].double()
        ref = dataset.sample(n, torch.Generator().manual_seed(_REFERENCE_SEED + s)).double()
        other = dataset.sample(n, torch.Generator().manual_seed(_REFERENCE_SEED + 1000 + s)).double()
        gen = torch.Generator().manual_seed(s)
        finite = bool(torch.isfinite(xs).all())
        for m in runs:
            if m == "sw":
                runs[m].append(sliced_wasserstein(xs, ref, generator=gen) if finite else math.nan)
                if floor:
                    floors[m].append(
                        sliced_wasserstein(other, ref, generator=torch.Generator().manual_seed(s))
                    )
            elif m == "mmd":
                runs[m].append(mmd(xs, ref, bandwidths=list(BANDWIDTHS)) if finite else math.nan)
                if floor:
                    floors[m].append(mmd(other, ref, bandwidths=list(BANDWIDTHS)))
            else:
                runs[m].append(mean_log_likelihood(xs, dataset) if finite else math.nan)
                if floor:
                    floors.setdefault("loglik", []).append(mean_log_likelihood(other, dataset))
    out: dict[str, Any] = {}
    for m, vals in runs.items():
        entry = {"metric": spread(vals), "n_fake": n, "n_real": n}
        if floor and floors.get(m):
            entry["floor"] = spread(floors[m])
        out[m] = entry
    return out
