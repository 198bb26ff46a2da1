"""Data-parallel training under ``torchrun`` with no code change (DESIGN "Scaling past one machine").

``torchrun --nproc_per_node N hwaksan train ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them and joins the process
group (gloo on CPU, nccl on CUDA). Without them everything here is a no-op for one process.

How the global batch is split: every rank computes the *same* global batch (data indices and
per-sample noise seeds depend only on ``(seed, step)`` and the sample's position in the global
batch) and takes the contiguous share :func:`shard` gives it. DDP averages the gradients of the
per-rank mean losses, which is the gradient of the global mean loss because the shares are equal
in size; so N ranks and one rank with the same global batch take the same optimiser steps, up to
floating-point summation order. Rank 0 writes checkpoints, logs and pictures; the others wait at
:func:`barrier`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistInfo",
    "detect",
    "init_distributed",
    "shard",
    "wrap_ddp",
    "barrier",
    "all_reduce_mean",
    "broadcast_object",
    "cleanup",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        """True when there is more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the rank that writes files (rank 0)."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def detect() -> DistInfo:
    """Rank and world size from the torchrun environment (one process when it is absent)."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} does not fit WORLD_SIZE={world}")
    return DistInfo(rank, world, local, None)


def init_distributed(device: torch.device | str = "cpu") -> DistInfo:
    """Join the process group when running under torchrun (gloo on CPU, nccl on CUDA).

    Returns the :class:`DistInfo`; for a single process nothing is initialised. Safe to call when
    the group already exists (e.g. a test that initialised it).
    """
    info = detect()
    if not info.enabled:
        return info
    device = torch.device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank, dist.get_backend())
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(
                f"WORLD_SIZE={info.world_size} but {var} is not set: launch with "
                "`torchrun --nproc_per_node N hwaksan train ...`"
            )
    if device.type == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return DistInfo(info.rank, info.world_size, info.local_rank, backend)


def shard(global_batch: int, info: DistInfo) -> slice:
    """This rank's positions ``[rank * B/N, (rank + 1) * B/N)`` in a global batch of ``B``.

    Raises:
        ValueError: when ``B`` is not a multiple of the world size (unequal shares would weight
            the ranks' samples unequally in DDP's gradient average).
    """
    if global_batch % info.world_size:
        raise ValueError(
            f"train.batch_size = {global_batch} is not divisible by the {info.world_size} processes: "
            f"use a multiple of {info.world_size}"
        )
    per = global_batch // info.world_size
    return slice(info.rank * per, (info.rank + 1) * per)


def wrap_ddp(net: nn.Module, info: DistInfo, device: torch.device, find_unused: bool = False) -> nn.Module:
    """``DistributedDataParallel(net)`` when distributed, else ``net`` unchanged.

    ``find_unused`` is needed by networks whose forward may skip parameters (an MoE expert that
    receives no token on one rank).
    """
    if not info.enabled:
        return net
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else info.local_rank] if device.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=ids, find_unused_parameters=find_unused)


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for one process)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of ``value`` over ranks (a copy; ``value`` itself for one process)."""
    if not info.enabled:
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / info.world_size


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup(info: DistInfo) -> None:
    """Leave the process group if this module joined one."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
