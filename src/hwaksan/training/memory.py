"""Will one training step fit in memory? A cheap estimate before training, and one clear line when a
step runs out of memory all the same.

A step's memory grows with the batch through the activations its forward pass keeps for the
backward pass. :func:`step_memory` measures exactly those: the distinct storages that autograd saves
(``torch.autograd.graph.saved_tensors_hooks``) during a training forward of 1 and of 2 samples; the
difference is the cost of one more sample. The weights, their gradients, AdamW's two moments and the
sampling copy of the network come on top. :func:`check_step_memory` compares the estimate with the
memory available now (``/proc/meminfo``'s MemAvailable within the cgroup's limit on the CPU,
``torch.cuda.mem_get_info`` on a GPU) and refuses a batch that cannot fit, before the kernel's
out-of-memory killer ends the process without a word.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import ConfigError

__all__ = [
    "MemoryBudgetError",
    "StepMemory",
    "available_memory",
    "check_step_memory",
    "is_out_of_memory",
    "step_memory",
]

# The backward pass holds, besides the saved activations, the gradients of the activations of the
# layer it is in, and the allocator rounds up; measured peaks of the U-Nets and DiTs of the presets
# stay below this multiple of the saved activations.
ACTIVATION_FACTOR = 1.5
# Per parameter beyond the weights already allocated: the gradient, AdamW's two moments and the
# network the sample grids are drawn with.
STATE_COPIES = 4

_GiB = 2.0**30


class MemoryBudgetError(ConfigError):
    """One training step does not fit in the memory of the device (the message names a batch
    size that does)."""


@dataclass(frozen=True)
class StepMemory:
    """Bytes one training step needs: ``fixed + batch * per_sample`` for the activations, plus the
    optimiser state ``state``."""

    per_sample: int
    fixed: int
    state: int

    def need(self, batch: int) -> int:
        """Estimated peak bytes of a step with ``batch`` samples (this process's share)."""
        return int(ACTIVATION_FACTOR * (self.fixed + batch * self.per_sample)) + self.state

    def largest_batch(self, available: int) -> int:
        """The largest batch whose :meth:`need` fits in ``available`` bytes (0 when none does)."""
        room = (available - self.state) / ACTIVATION_FACTOR - self.fixed
        return max(0, int(room // max(self.per_sample, 1)))


def saved_bytes(forward: Callable[[], torch.Tensor], exclude: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the distinct storages that ``forward()``'s autograd graph keeps for the backward
    pass, leaving out the storages of ``exclude`` (the weights, which exist anyway)."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    del out
    return sum(seen.values())


def step_memory(forward: Callable[[int], torch.Tensor], parameters: Iterable[torch.Tensor]) -> StepMemory:
    """Measure :class:`StepMemory` with ``forward(b)``, the training loss of ``b`` samples."""
    params = list(parameters)
    one, two = (saved_bytes(lambda b=b: forward(b), params) for b in (1, 2))
    per_sample = max(two - one, 1)
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    return StepMemory(per_sample=per_sample, fixed=max(one - per_sample, 0), state=STATE_COPIES * param_bytes)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup memory limit (v2, else v1); None without a limit."""
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        cap, used = _read_int(Path(limit)), _read_int(Path(usage))
        if cap is not None and used is not None and cap < 2**60:
            return max(cap - used, 0)
    return None


def available_memory(device: torch.device) -> int | None:
    """Bytes a step may still allocate on ``device`` (None where it cannot be told)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type != "cpu":
        return None
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    room = _cgroup_room()
    if available is None:
        return room
    return available if room is None else min(available, room)


def check_step_memory(
    memory: StepMemory, batch: int, device: torch.device, *, available: int | None = None
) -> None:
    """Refuse a batch of ``batch`` samples (this process's share of ``train.batch_size``) whose step
    cannot fit in the memory available on ``device``.

    Raises:
        MemoryBudgetError: one line with the estimate, what is available and a batch size that fits.
    """
    if available is None:
        available = available_memory(device)
    need = memory.need(batch)
    if available is None or need <= available:
        return
    fits = memory.largest_batch(int(0.8 * available))
    hint = (
        f"lower it, e.g. --set train.batch_size={1 << (fits.bit_length() - 1)}"
        if fits >= 1
        else "even one sample does not fit: choose a smaller model (model.args) or image size"
    )
    raise MemoryBudgetError(
        f"train.batch_size = {batch} needs about {need / _GiB:.1f} GiB for one training step "
        f"({memory.per_sample / 2**20:.2f} MiB per sample) but only {available / _GiB:.1f} GiB is "
        f"available on {device.type}: {hint}"
    )


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is torch failing to allocate (CUDA or CPU)."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("not enough memory" in text or "out of memory" in text)
