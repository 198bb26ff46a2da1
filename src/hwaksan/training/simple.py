"""A small training loop for low-dimensional data (the full trainer lives in ``trainer.py``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..losses import denoising_loss
from ..parameterizations import ModelDenoiser
from .ema import EMA

__all__ = ["FitResult", "fit", "NonFiniteLossError"]


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


@dataclass
class FitResult:
    """Loss history and the EMA of the weights (load it with ``net.load_state_dict``)."""

    losses: list[float] = field(default_factory=list)
    ema_state: dict[str, torch.Tensor] | None = None


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
    seed: int = 0,
    progress: bool = True,
    log_every: int = 50,
) -> FitResult:
    """Train ``model`` on batches from ``sample_data(n, generator) -> (n, D)`` with AdamW, linear
    warm-up then cosine decay, and an EMA of the weights (copied into the network at the end)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = model.net
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    ema = EMA(net, (ema_decay,))
    result = FitResult()
    bar = tqdm(range(steps), disable=not progress, desc="train", leave=False)
    running = None
    for step in bar:
        x0 = sample_data(batch_size, gen)
        loss = denoising_loss(model, x0, t_dist=t_dist, weighting=weighting, generator=gen, coupling=coupling)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss became {loss.item()} at step {step}: lower the learning rate (now {lr}) "
                "or check the data for NaNs"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        ema.update(net)
        value = loss.item()
        result.losses.append(value)
        running = value if running is None else 0.98 * running + 0.02 * value
        if step % log_every == 0:
            bar.set_postfix(loss=f"{running:.4f}")
    result.ema_state = ema.state()
    ema.copy_to(net)
    return result
