"""``[diffusion] loss = "hybrid" | "vlb"`` (Nichol & Dhariwal 2021) as a trainer extension: the
objective of a step, the importance sampler of DDPM steps and its checkpoint tensors.

Determinism: the step ``k`` and the noise of sample ``j`` come from its per-sample generator
(as in the ``simple`` loss), and the importance sampler is updated after every optimiser step with
the ``L_vlb`` terms of the *global* batch in batch order (gathered across ranks), so every rank
holds the same sampler, N ranks match one process, and a resumed run (the sampler's history is in
the checkpoint) replays the uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..losses import HybridLoss, ImportanceSampler, hybrid_loss
from ..processes import DiscreteVP
from .config import Config
from .distributed import all_reduce_mean
from .extension import Extension, RunContext, StepContext

__all__ = ["HybridLossExtension"]

_PREFIX = "t_sampler."


class HybridLossExtension(Extension):
    """``L_hybrid = L_simple + lambda L_vlb`` or ``L_vlb`` (Nichol & Dhariwal 2021, eq. 16) in
    place of the loop's loss, with the steps drawn by the importance sampler of their sec. 3.3
    when ``diffusion.importance_sampling`` is on.

    Args:
        config: the experiment (``[diffusion]``).
    """

    name = "hybrid-loss"

    def __init__(self, config: Config) -> None:
        self.config = config.diffusion
        self.sampler: ImportanceSampler | None = None
        self._last: HybridLoss | None = None

    def start(self, ctx: RunContext) -> None:
        if not self.config.importance_sampling:
            return
        if not isinstance(ctx.process, DiscreteVP):  # the config check refuses this earlier
            raise ValueError("importance sampling of steps needs a DDPM table process")
        self.sampler = ImportanceSampler(ctx.process.T)

    def loss(
        self,
        model: nn.Module,
        x0: torch.Tensor,
        cond: Any,
        generators: list[torch.Generator],
        ctx: StepContext,
    ) -> torch.Tensor:
        """``L_hybrid`` or ``L_vlb`` of this rank's batch (:func:`hwaksan.losses.hybrid_loss`)."""
        fc = self.config
        self._last = hybrid_loss(
            model,
            x0,
            kind=fc.loss,
            cond=cond,
            weighting=fc.weighting,
            min_snr_gamma=fc.min_snr_gamma,
            vlb_weight=fc.vlb_weight,
            sampler=self.sampler,
            generator=generators,
        )
        return self._last.loss

    def after_step(self, ctx: StepContext) -> None:
        """Add the global batch's ``(k, L_k)`` to the importance sampler, in global batch order."""
        out, self._last = self._last, None
        if self.sampler is None or out is None:
            return
        k, vlb = out.k.detach().double(), out.vlb.detach().double()
        if ctx.dist.enabled:
            sl = ctx.positions
            full = torch.zeros(2, ctx.batch_size, dtype=torch.float64, device=k.device)
            full[0, sl], full[1, sl] = k, vlb
            full = all_reduce_mean(full, ctx.dist) * ctx.dist.world_size
            k, vlb = full[0].round(), full[1]
        self.sampler.update(k.long().cpu(), vlb.cpu())

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """The sampler's history (none when it is off)."""
        if self.sampler is None:
            return {}
        return {_PREFIX + k: v for k, v in self.sampler.state_dict().items()}

    def load_checkpoint_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Restore the sampler (a checkpoint without its tensors is a fresh run's)."""
        if self.sampler is None:
            return
        state = {k[len(_PREFIX) :]: v for k, v in tensors.items() if k.startswith(_PREFIX)}
        if state:
            self.sampler.load_state_dict(state)
