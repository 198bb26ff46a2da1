"""Protocols shared across the library: networks, denoisers and conditions."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from .processes import Process

__all__ = ["Cond", "Network", "Denoiser"]

#: A condition: None, class labels ``(B,)``, a dict of tensors (e.g. ``context`` for
#: cross-attention, ``image`` for concatenation), or anything a network understands.
Cond = Any


@runtime_checkable
class Network(Protocol):
    """A raw network: ``net(x, noise_level, cond) -> Tensor``. It knows nothing about diffusion."""

    def __call__(self, x: torch.Tensor, noise_level: torch.Tensor, cond: Cond = None) -> torch.Tensor: ...


@runtime_checkable
class Denoiser(Protocol):
    """The canonical model interface consumed by samplers, guidance and tasks.

    ``denoiser(x_t, t, cond) -> x0_hat`` with ``x_t (B, *shape)``, per-sample times ``t (B,)``
    (float64) and the same shape out. ``denoiser.process`` is the Gaussian path it was trained on.
    """

    process: Process

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Cond = None) -> torch.Tensor: ...
