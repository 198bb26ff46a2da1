"""The extension protocol of the image trainer: what a task adds to the loop, as a few hooks.

The loop (:class:`hwaksan.training.loop.TrainingLoop`) does the data order, the per-sample noise, the
optimiser step, the EMAs, checkpoints, grids and metrics, and knows no task. Latent diffusion, text
conditioning, super-resolution, ``L_hybrid``, reflow pairs and the MoE load-balancing loss are
:class:`Extension` objects (one module each, importing this protocol and never the loop);
:func:`hwaksan.training.extensions.extensions_for` picks them from a config. Every hook is a no-op by
default, so an extension overrides only what it changes.

The loop calls, in this order:

- at construction: :meth:`Extension.prepare_data` (each extension sees the previous one's output),
  :meth:`Extension.network_spec`, then :meth:`Extension.start` with a :class:`RunContext` once the
  network, process and device are known;
- every step: :meth:`Extension.batch_cond` (the condition of this rank's batch, composed: each
  extension adds its own keys to the dict and may not change another's), :meth:`Extension.batch_source`
  (a fixed source side ``x1``), :meth:`Extension.loss` (replace the objective), :meth:`Extension.extra_loss`
  (add a term), and after the optimiser step :meth:`Extension.after_step`;
- at log time :meth:`Extension.metrics` and :meth:`Extension.postfix`; for grids
  :meth:`Extension.sample_cond`; for checkpoints :meth:`Extension.checkpoint_tensors`,
  :meth:`Extension.load_checkpoint_tensors` and :meth:`Extension.metadata` (keyword arguments of
  :func:`hwaksan.io.artifact.model_metadata`, e.g. ``codec=`` or ``text=``, so that
  :func:`hwaksan.io.artifact.load_trained` reads the model back).

The condition a network receives is the composed dict packed by :func:`pack_cond`: ``None`` when
empty, the label tensor when class labels are all there is (what a class-conditional network and the
label-aware couplings take), else the dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data.dataset import ImageDataset
from ..processes import Process
from .config import Config
from .distributed import DistInfo

__all__ = ["Extension", "RunContext", "StepContext", "compose_cond", "pack_cond"]

Cond = dict[str, Any]


@dataclass(frozen=True)
class RunContext:
    """What an extension may know about the run once the network is built.

    Attributes:
        config: the experiment.
        process: the forward process of the model.
        network: the raw network (not wrapped by DDP or ``torch.compile``).
        data_shape: per-sample shape the model works in (flattened for an MLP).
        image_shape: per-sample shape of the prepared data set ``(C, H, W)``.
        device: where batches and conditions live.
        dist: this process's rank and the world size.
        batch_slice: this rank's positions in the global batch.
    """

    config: Config
    process: Process
    network: nn.Module
    data_shape: tuple[int, ...]
    image_shape: tuple[int, ...]
    device: torch.device
    dist: DistInfo
    batch_slice: slice


@dataclass(frozen=True)
class StepContext:
    """One optimiser step of this rank.

    Attributes:
        step: the 0-based step.
        seed: ``train.seed``; random draws of an extension use generators seeded by
            ``mix_seed(seed, stream, step, ...)`` with a stream of its own.
        x0: this rank's batch ``(b, *data_shape)`` on ``device``.
        indices: the data indices ``(b,)`` of ``x0``.
        positions: this rank's positions in the global batch (``x0[i]`` is global sample
            ``positions.start + i``).
        batch_size: the global batch size ``B``.
        device: where the batch lives.
        process: the forward process.
        dist: this process's rank and the world size.
    """

    step: int
    seed: int
    x0: torch.Tensor
    indices: torch.Tensor
    positions: slice
    batch_size: int
    device: torch.device
    process: Process
    dist: DistInfo


class Extension:
    """A task's additions to the training loop; every hook is a no-op (see the module docstring).

    Attributes:
        name: shown in error messages.
        unused_parameters: the network may leave parameters without a gradient in a step (DDP then
            needs ``find_unused_parameters``), e.g. the unrouted experts of a mixture of experts.
    """

    name = "extension"
    unused_parameters = False

    def prepare_data(self, data: ImageDataset) -> ImageDataset:
        """The data set to train on, from the previous extension's (e.g. encoded to latents)."""
        return data

    def network_spec(self, spec: dict[str, Any], image_shape: tuple[int, ...]) -> dict[str, Any]:
        """The network's constructor arguments (``{"arch": ..., ...}``) with this extension's
        (extra input channels, ``context_dim``, ...); ``image_shape`` is the prepared data's
        ``(C, H, W)``. Raise :class:`~hwaksan.training.config.ConfigError` for one it cannot use."""
        return spec

    def start(self, ctx: RunContext) -> None:
        """Called once the network, process and device are known (before any step or resume)."""

    def batch_cond(self, cond: Cond, ctx: StepContext) -> Cond:
        """The condition of this rank's batch with this extension's keys added (``(b, ...)`` each)."""
        return cond

    def batch_source(self, ctx: StepContext) -> torch.Tensor | None:
        """A fixed source side ``x1 (b, *data_shape)`` of this batch (None: fresh noise, paired by
        ``diffusion.coupling``)."""
        return None

    def sample_cond(self, cond: Cond, n: int, ctx: RunContext) -> Cond:
        """The condition of the ``n`` sample-grid images with this extension's keys added."""
        return cond

    def loss(
        self,
        model: nn.Module,
        x0: torch.Tensor,
        cond: Any,
        generators: list[torch.Generator],
        ctx: StepContext,
    ) -> torch.Tensor | None:
        """The objective of this rank's batch, replacing the loop's ``denoising_loss`` (None: keep it).

        Args:
            model: the training denoiser (:class:`~hwaksan.parameterizations.ModelDenoiser`).
            x0: ``(b, *data_shape)``.
            cond: the packed condition (:func:`pack_cond`).
            generators: one per sample (its noise and time).
            ctx: the step.
        """
        return None

    def extra_loss(self, ctx: StepContext) -> torch.Tensor | None:
        """A scalar added to the objective (after the forward pass), or None."""
        return None

    def after_step(self, ctx: StepContext) -> None:
        """Called after the optimiser, scheduler and EMA updates of a step."""

    def metrics(self) -> dict[str, Any]:
        """JSON entries of the metrics record (values of the last step)."""
        return {}

    def postfix(self, record: Mapping[str, Any]) -> dict[str, str]:
        """Short strings for the progress bar, from the metrics ``record``."""
        return {}

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors this extension adds to a checkpoint (names with a prefix of its own)."""
        return {}

    def load_checkpoint_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Restore from a checkpoint's tensors (all of those the loop does not own)."""

    def metadata(self) -> dict[str, Any]:
        """Keyword arguments of :func:`hwaksan.io.artifact.model_metadata` this extension sets
        (``codec=``, ``text=``, ...)."""
        return {}


def compose_cond(cond: Cond, added: Cond, name: str) -> Cond:
    """``added`` (what extension ``name`` returned) checked to keep every key of ``cond`` as it was.

    Raises:
        ValueError: the extension dropped or replaced another's key (two extensions that write the
            same condition do not compose).
    """
    for key, value in cond.items():
        if key not in added or added[key] is not value:
            raise ValueError(
                f"the {name} extension changed the condition key {key!r} set before it: two extensions "
                "that write the same condition do not compose"
            )
    return added


def pack_cond(cond: Cond) -> Any:
    """The network's ``cond``: None for ``{}``, the labels ``(B,)`` for ``{"labels": y}``, else the dict."""
    if not cond:
        return None
    if set(cond) == {"labels"}:
        return cond["labels"]
    return cond
