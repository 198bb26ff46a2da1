"""The optimiser pieces every training loop of hwaksan shares: AdamW, its learning-rate schedule,
the non-finite-loss check and the epoch-wise data order.

The diffusion trainer, the 2-D ``fit``, the autoencoder trainer and the classifier trainer each
call these, so a change of schedule or of the NaN policy is made once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from ..utils import mix_seed

__all__ = [
    "NonFiniteLossError",
    "lr_factor",
    "make_optimizer",
    "make_scheduler",
    "check_finite",
    "EpochOrder",
]


class NonFiniteLossError(RuntimeError, FloatingPointError):
    """Training produced a NaN or infinite loss (also a ``FloatingPointError``, what a
    floating-point failure raises)."""


def lr_factor(step: int, total: int, warmup: int, cosine: bool = True, min_ratio: float = 0.0) -> float:
    """Learning rate over its peak for optimiser step ``step`` (0-based).

    Linear warm-up ``(step + 1) / warmup`` for ``step < warmup``; then, with ``cosine``, the half
    cosine ``min_ratio + (1 - min_ratio) (1 + cos(pi p)) / 2`` with ``p`` going from 0 to 1 over the
    remaining steps (Loshchilov & Hutter 2017, without restarts); else 1.
    """
    if step < warmup:
        return (step + 1) / warmup
    if not cosine:
        return 1.0
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))


def make_optimizer(
    params: Iterable[torch.nn.Parameter],
    *,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    weight_decay: float = 0.0,
    eps: float = 1e-8,
    fused: bool = True,
) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019); ``fused`` runs one kernel over all parameters (on a CPU
    torch's default is a Python loop over them)."""
    return torch.optim.AdamW(
        list(params), lr=lr, betas=tuple(betas), weight_decay=weight_decay, eps=eps, fused=fused
    )


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    total: int,
    warmup: int,
    cosine: bool = True,
    min_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """The :func:`lr_factor` schedule as a ``LambdaLR`` (its function is a plain closure, which
    ``LambdaLR.state_dict`` leaves out, so the scheduler's state is only its step count)."""

    def factor(step: int) -> float:
        return lr_factor(step, total, warmup, cosine, min_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def check_finite(value: float, message: str | Callable[[], str]) -> None:
    """Raise :class:`NonFiniteLossError` with ``message`` (or ``message()``, built only then) when
    ``value`` is NaN or infinite."""
    if not math.isfinite(value):
        raise NonFiniteLossError(message() if callable(message) else message)


class EpochOrder:
    """The data order of a run as a pure function of ``(seed, step)``.

    Batch ``k`` of size ``B`` takes positions ``[k B, (k + 1) B)`` of the concatenation of one
    random permutation of ``range(n)`` per epoch, epoch ``e`` seeded by ``mix_seed(seed, stream, e)``:
    every item once per epoch, and a resumed run replays the same order.
    """

    def __init__(self, n: int, batch_size: int, seed: int, stream: int = 1) -> None:
        self.n, self.batch_size, self.seed, self.stream = int(n), int(batch_size), int(seed), int(stream)
        self._cache: dict[int, torch.Tensor] = {}

    def permutation(self, epoch: int) -> torch.Tensor:
        """The permutation ``(n,)`` of ``epoch`` (the current and previous ones are cached)."""
        perm = self._cache.get(epoch)
        if perm is None:
            gen = torch.Generator().manual_seed(mix_seed(self.seed, self.stream, epoch))
            perm = torch.randperm(self.n, generator=gen)
            self._cache = {epoch: perm, **{e: p for e, p in self._cache.items() if e == epoch - 1}}
        return perm

    def indices(self, step: int) -> torch.Tensor:
        """Data indices ``(B,)`` of batch ``step``."""
        pos, end, parts = step * self.batch_size, (step + 1) * self.batch_size, []
        while pos < end:
            epoch, offset = divmod(pos, self.n)
            take = min(end - pos, self.n - offset)
            parts.append(self.permutation(epoch)[offset : offset + take])
            pos += take
        return torch.cat(parts)
