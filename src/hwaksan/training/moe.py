"""The load-balancing loss of a mixture of experts (Switch Transformer, Fedus et al. 2022) as a
trainer extension.

After every forward pass an MoE network (:class:`hwaksan.models.dit.MoEDiT`) exposes ``aux_loss``,
the Switch loss ``E sum_e f_e P_e`` (Fedus et al. 2022, eq. 4) summed over its MoE layers, and
``expert_usage (layers, E)``, the fractions ``f_e`` of tokens routed to each expert.
:class:`MoEExtension` adds ``model.aux_loss_weight * aux_loss`` to the objective, records both in
the metrics and shows the mean expert shares in the progress bar. Unrouted experts get no gradient
in a step, so the extension asks DDP to look for unused parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .config import Config
from .extension import Extension, RunContext, StepContext

__all__ = ["MoEExtension"]


class MoEExtension(Extension):
    """Add the network's auxiliary loss with weight ``model.aux_loss_weight`` (see the module docstring).

    Args:
        config: the experiment (``model.aux_loss_weight``).
    """

    name = "mixture-of-experts"
    unused_parameters = True

    def __init__(self, config: Config) -> None:
        self.weight = config.model.aux_loss_weight
        self.network: nn.Module | None = None
        self._aux: torch.Tensor | None = None

    def start(self, ctx: RunContext) -> None:
        self.network = ctx.network

    def extra_loss(self, ctx: StepContext) -> torch.Tensor | None:
        """``weight * aux_loss`` of this forward pass (None when the weight is 0)."""
        self._aux = getattr(self.network, "aux_loss", None)
        if self._aux is None or self.weight <= 0:
            return None
        return self.weight * self._aux.float()

    def metrics(self) -> dict[str, Any]:
        """``aux_loss`` and the mean ``expert_usage (E,)`` over layers, of the last step."""
        if self._aux is None:
            return {}
        out: dict[str, Any] = {"aux_loss": float(self._aux.detach())}
        usage = getattr(self.network, "expert_usage", None)
        if usage is not None:
            out["expert_usage"] = [round(float(u), 4) for u in usage.detach().float().mean(0).cpu()]
        return out

    def postfix(self, record: Mapping[str, Any]) -> dict[str, str]:
        usage = record.get("expert_usage")
        return {"experts": "/".join(f"{u:.2f}" for u in usage)} if usage else {}
