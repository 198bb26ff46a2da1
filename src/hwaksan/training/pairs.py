"""Training on fixed pairs ``(x0, x1)`` (reflow, Liu et al. 2022): a resumable on-disk store of
simulated pairs, and the data sources that hand them to the trainers.

**Shards.** :class:`PairShards` keeps ``n`` pairs as ``folder/shard_NNNNN.{safetensors,json}``,
each holding ``shard_size`` consecutive pairs (``sample`` = x0, ``noise`` = x1, optionally
``labels``), written atomically by :func:`~hwaksan.io.checkpoint.save_tensors` (the JSON last,
so a shard with a JSON is complete). :meth:`PairShards.fill` computes only the shards that are
missing: an interrupted run continues where it stopped, and because pair ``i`` depends only on
its seed, the result is the same as an uninterrupted run. Every shard records a ``spec`` (what
made the pairs: checkpoint, sampler, steps, seed, ...); a folder written with another spec is
refused rather than mixed.

**Data sources.** ``fit`` (2-D) takes ``sample_data(n, generator) -> (x0, x1)`` from
:func:`pair_sampler`; the image :class:`~hwaksan.training.trainer.Trainer` takes a
:class:`PairedImageDataset` (an ``ImageDataset`` whose ``noise`` holds the partner of every image)
and, through the :class:`PairsExtension` that data set brings, trains on ``(images[i], noise[i])``
with the pairing fixed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data.images import ImageDataset
from ..io.checkpoint import CheckpointError, load_tensors, read_metadata, save_tensors
from .extension import Extension, RunContext, StepContext

__all__ = ["PairShards", "PairedImageDataset", "PairsExtension", "pair_sampler"]

_KIND = "hwaksan-pairs"


class PairShards:
    """``n`` pairs in shards of ``shard_size`` under ``folder`` (see the module docstring).

    Args:
        folder: where the shards go (created).
        n: number of pairs.
        shard_size: pairs per shard (the last one may be smaller).
        spec: JSON-serialisable description of how pairs are made; must match existing shards.
    """

    def __init__(self, folder: str | Path, n: int, shard_size: int, spec: dict[str, Any]) -> None:
        if n < 1 or shard_size < 1:
            raise ValueError(f"need n >= 1 and shard_size >= 1, got {n}, {shard_size}")
        self.folder = Path(folder)
        self.n = int(n)
        self.shard_size = int(shard_size)
        self.spec = json.loads(json.dumps(spec))  # normalised as JSON stores it

    @property
    def num_shards(self) -> int:
        return -(-self.n // self.shard_size)

    def path(self, k: int) -> Path:
        """The checkpoint-style path (no suffix) of shard ``k``."""
        return self.folder / f"shard_{k:05d}"

    def bounds(self, k: int) -> tuple[int, int]:
        """``(start, count)`` of shard ``k``'s pairs."""
        start = k * self.shard_size
        return start, min(self.shard_size, self.n - start)

    def is_done(self, k: int) -> bool:
        """Whether shard ``k`` is complete; raises if it was written with another spec or layout."""
        path = self.path(k)
        if not path.with_name(path.name + ".json").exists():
            return False
        meta = read_metadata(path)
        start, count = self.bounds(k)
        if meta.get("kind") != _KIND or meta.get("spec") != self.spec:
            raise CheckpointError(
                f"{path}.json was written with other settings ({meta.get('spec')}), not {self.spec}: "
                "use another --out folder, or delete the old shards"
            )
        if (meta.get("start"), meta.get("count")) != (start, count):
            raise CheckpointError(
                f"{path}.json holds pairs {meta.get('start')}+{meta.get('count')}, expected {start}+{count} "
                f"(shard size {self.shard_size}): keep the shard size of the first run"
            )
        return path.with_name(path.name + ".safetensors").exists()

    def missing(self) -> list[int]:
        """Indices of the shards still to compute."""
        return [k for k in range(self.num_shards) if not self.is_done(k)]

    def fill(
        self,
        make: Callable[[int, int], dict[str, torch.Tensor]],
        *,
        progress: bool = True,
        max_shards: int | None = None,
    ) -> list[int]:
        """Compute the missing shards with ``make(start, count) -> {"sample", "noise"[, "labels"]}``
        (tensors with ``count`` rows) and write each as soon as it is done.

        Args:
            make: the simulation of pairs ``start .. start + count - 1``.
            progress: show a tqdm bar over the missing shards.
            max_shards: stop after this many shards (for tests and slicing long runs).

        Returns:
            The indices of the shards written by this call.
        """
        todo = self.missing()
        if max_shards is not None:
            todo = todo[:max_shards]
        written = []
        for k in tqdm(todo, desc="pairs", unit="shard", disable=not progress, leave=False):
            start, count = self.bounds(k)
            tensors = make(start, count)
            for key in ("sample", "noise"):
                if key not in tensors:
                    raise ValueError(f"make() must return {key!r}")
            for key, value in tensors.items():
                if value.shape[0] != count:
                    raise ValueError(f"make() returned {value.shape[0]} rows of {key!r} for {count} pairs")
            meta = {"kind": _KIND, "spec": self.spec, "start": start, "count": count, "n": self.n}
            save_tensors(self.path(k), tensors, meta)
            written.append(k)
        return written

    def load(self) -> dict[str, torch.Tensor]:
        """All pairs, concatenated in order: ``{"sample": (n, *shape), "noise": (n, *shape), ...}``.

        Raises:
            CheckpointError: some shard is missing (run :meth:`fill` first).
        """
        missing = self.missing()
        if missing:
            raise CheckpointError(
                f"{len(missing)} of {self.num_shards} pair shards are missing under {self.folder} "
                f"(first: {self.path(missing[0]).name}); run the simulation again to finish them"
            )
        parts = [load_tensors(self.path(k))[0] for k in range(self.num_shards)]
        return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


@dataclass
class PairedImageDataset(ImageDataset):
    """An :class:`ImageDataset` of data samples ``images`` (x0) with a fixed partner ``noise[i]``
    (x1, the source side) for every image; the :class:`Trainer` then trains on these pairs.

    ``noise``: ``(N, C, H, W)`` float32 (or ``(N, D)`` with ``N * D`` matching the images).
    """

    noise: torch.Tensor | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.noise is None:
            raise ValueError("a PairedImageDataset needs noise (the partner of every image)")
        if self.noise.shape[0] != self.images.shape[0] or self.noise[0].numel() != self.images[0].numel():
            raise ValueError(
                f"noise {tuple(self.noise.shape)} does not pair with images {tuple(self.images.shape)}"
            )
        self.noise = self.noise.reshape(self.images.shape).to(torch.float32)

    @classmethod
    def from_pairs(
        cls, pairs: dict[str, torch.Tensor], name: str, image_shape: tuple[int, ...] | None = None
    ) -> PairedImageDataset:
        """Build from :meth:`PairShards.load` output (``sample``, ``noise``, optional ``labels``)."""
        sample = pairs["sample"]
        if image_shape is not None:
            sample = sample.reshape(-1, *image_shape)
        labels = pairs.get("labels")
        return cls(
            images=sample.float().contiguous(),
            labels=None if labels is None else labels.long(),
            captions=None,
            class_names=None,
            name=name,
            noise=pairs["noise"].float(),
        )


def pair_sampler(x0: torch.Tensor, x1: torch.Tensor) -> Callable[[int, torch.Generator], tuple]:
    """A ``sample_data`` for :func:`~hwaksan.training.simple.fit` that draws ``n`` random pairs
    (with replacement) and returns ``(x0[idx], x1[idx])``: training with the pairing fixed."""
    if x0.shape != x1.shape:
        raise ValueError(f"pairs must match: x0 {tuple(x0.shape)}, x1 {tuple(x1.shape)}")

    def sample(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, x0.shape[0], (n,), generator=generator)
        return x0[idx], x1[idx]

    return sample


class PairsExtension(Extension):
    """Train on the fixed pairs of a :class:`PairedImageDataset`: the source side of image ``i`` is
    ``noise[i]`` instead of fresh noise (reflow, Liu et al. 2022)."""

    name = "reflow pairs"

    def prepare_data(self, data: ImageDataset) -> ImageDataset:
        noise = getattr(data, "noise", None)
        if noise is None:
            raise ValueError(
                "the reflow pairs extension needs a PairedImageDataset (images with their noise)"
            )
        self.noise = noise
        return data

    def start(self, ctx: RunContext) -> None:
        self.noise = self.noise.reshape(len(self.noise), *ctx.data_shape).to(ctx.device)

    def batch_source(self, ctx: StepContext) -> torch.Tensor:
        """The partners ``x1 (b, *data_shape)`` of this rank's images."""
        return self.noise[ctx.indices]
