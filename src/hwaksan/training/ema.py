"""Exponential moving averages of parameters (Polyak averaging), several decay rates at once."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """``theta_ema <- d theta_ema + (1 - d) theta`` after every step, for each decay ``d``.

    With ``step`` given to :meth:`update`, the decay is ``min(d, (1 + step) / (10 + step))`` so
    that early averages are not dominated by the random initialisation (the usual warm-up of
    diffusion training). Floating tensors are averaged with one fused ``torch._foreach_lerp_``
    per decay; integer buffers are copied.
    """

    def __init__(self, module: nn.Module, decays: tuple[float, ...] = (0.999,)) -> None:
        self.decays = tuple(float(d) for d in decays)
        self.shadows = [{k: v.detach().clone() for k, v in module.state_dict().items()} for _ in self.decays]

    @torch.no_grad()
    def update(self, module: nn.Module, step: int | None = None) -> None:
        state = module.state_dict()
        floats = [k for k, v in state.items() if v.dtype.is_floating_point]
        others = [k for k, v in state.items() if not v.dtype.is_floating_point]
        current = [state[k].detach() for k in floats]
        for d, shadow in zip(self.decays, self.shadows, strict=True):
            if step is not None:
                d = min(d, (1.0 + step) / (10.0 + step))
            if floats:
                torch._foreach_lerp_([shadow[k] for k in floats], current, 1.0 - d)
            for k in others:
                shadow[k].copy_(state[k])

    def state(self, index: int = 0) -> dict[str, torch.Tensor]:
        """The averaged state dict for decay ``decays[index]``."""
        return self.shadows[index]

    def copy_to(self, module: nn.Module, index: int = 0) -> None:
        module.load_state_dict(self.shadows[index])
