"""A small training loop for low-dimensional data (the full trainer lives in ``trainer.py``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..losses import denoising_loss
from ..parameterizations import ModelDenoiser
from ..processes import make_coupling
from .ema import EMA
from .optim import NonFiniteLossError, check_finite, make_optimizer, make_scheduler

__all__ = ["FitResult", "fit", "NonFiniteLossError"]


@dataclass
class FitResult:
    """Loss history and the EMA of the weights (load it with ``net.load_state_dict``)."""

    losses: list[float] = field(default_factory=list)
    ema_state: dict[str, torch.Tensor] | None = None


def _labelled(batch, model: ModelDenoiser, p_uncond: float, gen: torch.Generator):
    """``(x0, labels)`` from a ``{"x0", "labels"}`` batch, labels dropped to the null class
    (``num_classes``) with probability ``p_uncond``; any other batch is returned with ``None``."""
    if not isinstance(batch, dict):
        return batch, None
    k = (getattr(model.net, "config", None) or {}).get("num_classes")
    if not k:
        raise ValueError("sample_data returned labels but the network has no num_classes: build it with one")
    labels = batch["labels"].long()
    if p_uncond > 0:
        drop = torch.rand(labels.shape, generator=gen) < p_uncond
        labels = torch.where(drop, torch.full_like(labels, int(k)), labels)
    return batch["x0"], labels


def fit(
    model: ModelDenoiser,
    sample_data: Callable[[int, torch.Generator], torch.Tensor],
    *,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 2e-3,
    weight_decay: float = 0.0,
    warmup: int = 100,
    ema_decay: float = 0.995,
    t_dist: str = "uniform",
    weighting: str = "simple",
    coupling=None,
    sample_source: Callable[[int, torch.Generator], torch.Tensor] | None = None,
    seed: int = 0,
    progress: bool = True,
    log_every: int = 50,
    p_uncond: float = 0.0,
) -> FitResult:
    """Train ``model`` on batches from ``sample_data(n, generator) -> (n, D)`` with AdamW, linear
    warm-up then cosine decay, and an EMA of the weights (copied into the network at the end).

    Flows: ``coupling`` (a name of :data:`hwaksan.processes.COUPLINGS` or a function
    ``(x0, eps) -> eps``) pairs every batch with its noise, e.g. ``"ot"`` for OT-CFM;
    ``sample_source(n, generator)`` draws the source side (t = 1) from another distribution than
    ``N(0, I)`` (a flow between two data sets); and a ``sample_data`` that returns a tuple
    ``(x0, x1)`` gives fixed pairs (reflow, :func:`hwaksan.training.pairs.pair_sampler`).

    Class-conditional training: a ``sample_data`` that returns a dict ``{"x0": (n, D), "labels":
    (n,)}`` trains a network with ``num_classes`` on those labels, each replaced by the null class
    ``num_classes`` with probability ``p_uncond`` (condition dropout for classifier-free guidance,
    Ho & Salimans 2022).
    """
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond must be in [0, 1], got {p_uncond}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = model.net
    opt = make_optimizer(net.parameters(), lr=lr, weight_decay=weight_decay, fused=False)
    sched = make_scheduler(opt, steps, warmup)
    ema = EMA(net, (ema_decay,))
    result = FitResult()
    bar = tqdm(range(steps), disable=not progress, desc="train", leave=False)
    running = None
    pairing = make_coupling(coupling) if isinstance(coupling, str) else coupling
    for step in bar:
        x0, eps, fixed = sample_data(batch_size, gen), None, False
        x0, labels = _labelled(x0, model, p_uncond, gen)
        if isinstance(x0, tuple):  # fixed pairs: the coupling is given
            (x0, eps), fixed = x0, True
        elif sample_source is not None:
            eps = sample_source(batch_size, gen)
        loss = denoising_loss(
            model,
            x0,
            cond=labels,
            t_dist=t_dist,
            weighting=weighting,
            generator=gen,
            coupling=None if fixed else pairing,
            eps=eps,
        )
        value = loss.item()
        check_finite(
            value,
            f"loss became {value} at step {step}: lower the learning rate (now {lr}) "
            "or check the data for NaNs",
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        ema.update(net)
        result.losses.append(value)
        running = value if running is None else 0.98 * running + 0.02 * value
        if step % log_every == 0:
            bar.set_postfix(loss=f"{running:.4f}")
    result.ema_state = ema.state()
    ema.copy_to(net)
    return result
