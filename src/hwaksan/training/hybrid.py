"""The trainer's ``[diffusion] loss = "hybrid" | "vlb"`` (Nichol & Dhariwal 2021), kept out of the
trainer loop: the objective of one step, the importance sampler of DDPM steps and its checkpoint
tensors.

Determinism: the step ``k`` and the noise of sample ``j`` come from its per-sample generator
(as in the ``simple`` loss), and the importance sampler is updated after every optimiser step with
the ``L_vlb`` terms of the *global* batch in batch order (gathered across ranks), so every rank
holds the same sampler, N ranks match one process, and a resumed run (the sampler's history is in
the checkpoint) replays the uninterrupted one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..losses import HybridLoss, ImportanceSampler, hybrid_loss
from ..processes import DiscreteVP, Process
from .distributed import all_reduce_mean

if TYPE_CHECKING:  # pragma: no cover
    from .config import DiffusionConfig
    from .trainer import Trainer

__all__ = ["make_importance_sampler", "vlb_objective", "record_vlb_terms", "sampler_tensors", "load_sampler"]

_PREFIX = "t_sampler."


def make_importance_sampler(config: DiffusionConfig, process: Process) -> ImportanceSampler | None:
    """The step sampler of ``diffusion.importance_sampling`` (None when off)."""
    if not config.importance_sampling:
        return None
    if not isinstance(process, DiscreteVP):  # the config check refuses this earlier
        raise ValueError("importance sampling of steps needs a DDPM table process")
    return ImportanceSampler(process.T)


def vlb_objective(trainer: Trainer, x0: torch.Tensor, labels, gens) -> HybridLoss:
    """``L_hybrid`` or ``L_vlb`` of this rank's batch (:func:`hwaksan.losses.hybrid_loss`)."""
    fc = trainer.config.diffusion
    return hybrid_loss(
        trainer.train_model,
        x0,
        kind=fc.loss,
        cond=labels,
        weighting=fc.weighting,
        min_snr_gamma=fc.min_snr_gamma,
        vlb_weight=fc.vlb_weight,
        sampler=trainer.t_sampler,
        generator=gens,
    )


def record_vlb_terms(trainer: Trainer, out: HybridLoss) -> None:
    """Add the global batch's ``(k, L_k)`` to the importance sampler, in global batch order."""
    if trainer.t_sampler is None:
        return
    k, vlb = out.k.detach().double(), out.vlb.detach().double()
    if trainer.dist.enabled:
        sl = trainer.batch_slice
        full = torch.zeros(2, trainer.config.train.batch_size, dtype=torch.float64, device=k.device)
        full[0, sl], full[1, sl] = k, vlb
        full = all_reduce_mean(full, trainer.dist) * trainer.dist.world_size
        k, vlb = full[0].round(), full[1]
    trainer.t_sampler.update(k.long().cpu(), vlb.cpu())


def sampler_tensors(sampler: ImportanceSampler | None) -> dict[str, torch.Tensor]:
    """Checkpoint tensors of the sampler (none when it is off)."""
    if sampler is None:
        return {}
    return {_PREFIX + k: v for k, v in sampler.state_dict().items()}


def load_sampler(sampler: ImportanceSampler | None, tensors: dict[str, torch.Tensor]) -> None:
    """Restore the sampler from checkpoint tensors (a checkpoint without them is a fresh run's)."""
    if sampler is None:
        return
    state = {k[len(_PREFIX) :]: v for k, v in tensors.items() if k.startswith(_PREFIX)}
    if state:
        sampler.load_state_dict(state)
