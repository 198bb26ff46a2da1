"""Exponential moving averages of parameters (Polyak averaging), several decay rates at once."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """``theta_ema <- d theta_ema + (1 - d) theta`` after every step, for each decay ``d``."""

    def __init__(self, module: nn.Module, decays: tuple[float, ...] = (0.999,)) -> None:
        self.decays = tuple(float(d) for d in decays)
        self.shadows = [{k: v.detach().clone() for k, v in module.state_dict().items()} for _ in self.decays]

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        state = module.state_dict()
        for d, shadow in zip(self.decays, self.shadows, strict=True):
            for k, v in state.items():
                if v.dtype.is_floating_point:
                    shadow[k].lerp_(v.detach(), 1.0 - d)
                else:
                    shadow[k].copy_(v)

    def state(self, index: int = 0) -> dict[str, torch.Tensor]:
        """The averaged state dict for decay ``decays[index]``."""
        return self.shadows[index]

    def copy_to(self, module: nn.Module, index: int = 0) -> None:
        module.load_state_dict(self.shadows[index])
