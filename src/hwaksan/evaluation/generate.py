"""Generate many samples from a trained model in resumable shards.

Sample ``i`` is drawn with its own generator seeded ``seed + i`` (and, for a class-conditional
model, label ``i % K``), so it is the same image whatever the shard or batch size. Samples are
drawn in the model's data space and decoded to its output space
(:meth:`hwaksan.io.artifact.TrainedModel.sample`): a latent-diffusion model's shards hold pixels,
never latents. Shards of ``shard_size`` images (the last one possibly fewer) are written atomically
to ``FOLDER/shard_<start>.safetensors`` (+ ``.json``) as they finish; a later call with
``resume=True`` keeps every finished shard whose settings match and generates only the rest, so
an interrupted evaluation loses at most one shard of work.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..io.artifact import TrainedModel
from ..io.checkpoint import CheckpointError, load_tensors, read_metadata, save_tensors
from ..tasks.edit import guided

__all__ = ["SampleSpec", "SamplesExistError", "generate_samples", "GeneratedSamples", "shard_record"]


class SamplesExistError(RuntimeError):
    """The output folder already holds shards made with other settings (or resume was not asked)."""


@dataclass(frozen=True)
class SampleSpec:
    """How to draw samples; everything that changes the images (the shard files record it).

    ``grid`` is a grid name or an explicit list of times; ``label`` None means image i gets class
    ``i % K`` (class-conditional models), ``uncond`` samples the null class.
    """

    sampler: str = "heun"
    steps: int = 18
    grid: str | tuple[float, ...] = "karras"
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    label: int | None = None
    uncond: bool = False
    guidance: float = 1.0  # classifier-free guidance weight w (1: none)

    def describe(self) -> str:
        grid = self.grid if isinstance(self.grid, str) else "custom"
        return f"{self.sampler}, {self.steps} steps, {grid} grid"

    def folder_name(self) -> str:
        grid = self.grid if isinstance(self.grid, str) else "custom"
        plain = not (self.options or self.label is not None or self.uncond or self.guidance != 1.0)
        extra = "" if plain else "-" + _short(self)
        return f"{self.sampler}-{self.steps}-{grid}-s{self.seed}{extra}"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["grid"] = self.grid if isinstance(self.grid, str) else list(self.grid)
        if self.guidance == 1.0:  # unguided: the record of shards made before guidance existed
            del d["guidance"]
        return d


def _short(spec: SampleSpec) -> str:
    return hashlib.sha256(json.dumps(spec.to_json(), sort_keys=True).encode()).hexdigest()[:8]


@dataclass
class GeneratedSamples:
    """``images (n, *output_shape)`` (decoded), ``labels (n,)`` or None, ``nfe`` per image,
    ``folder``, and how many images were reused from earlier shards."""

    images: torch.Tensor
    labels: torch.Tensor | None
    nfe: int
    folder: Path
    reused: int


def _labels(spec: SampleSpec, start: int, count: int, num_classes: int) -> torch.Tensor | None:
    if not num_classes or spec.uncond:
        return None
    if spec.label is not None:
        if not 0 <= spec.label < num_classes:
            raise ValueError(f"label must be in 0..{num_classes - 1}, got {spec.label}")
        return torch.full((count,), spec.label, dtype=torch.long)
    return torch.arange(start, start + count) % num_classes


def shard_record(model: TrainedModel, spec: SampleSpec, checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    """What a shard records about how its images were made (compared on resume): the sampler
    settings, the checkpoint's identity and the output shape; for a latent model also the latent
    shape, so shards of decoded images are never confused with shards of latents."""
    record: dict[str, Any] = {
        "spec": spec.to_json(),
        "checkpoint": checkpoint or {},
        "image_shape": list(model.output_shape),
    }
    if model.is_latent:
        record["decoded_from"] = list(model.data_shape)
    return record


def generate_samples(
    model: TrainedModel,
    spec: SampleSpec,
    n: int,
    folder: str | Path,
    *,
    checkpoint: dict[str, Any] | None = None,
    shard_size: int = 250,
    batch_size: int = 250,
    resume: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> GeneratedSamples:
    """Draw ``n`` outputs ``(n, *model.output_shape)`` of ``model`` into shards under ``folder``
    (module docstring).

    Args:
        model: the trained model (:func:`hwaksan.io.artifact.load_trained`); it is moved to
            ``device``. Its samples are decoded to output space before they are stored.
        spec: sampler settings.
        n: number of images (images ``0..n-1``).
        folder: where the shards go.
        checkpoint: identity of the checkpoint (path, step), recorded in and checked against shards.
        shard_size: images per shard file; ``batch_size``: images per sampler call.
        resume: keep matching shards found in ``folder``; without it a folder with shards is refused.
        device: where to sample.
        progress: show a progress bar over images.

    Raises:
        SamplesExistError: shards exist and ``resume`` is off, or they were made with other settings.
        ValueError: guidance (``spec.guidance != 1``) without class-conditional samples.
    """
    if spec.guidance != 1.0 and (not model.num_classes or spec.uncond):
        raise ValueError("guidance needs class-conditional samples: drop --guidance, or --uncond")
    folder = Path(folder)
    output_shape = model.output_shape
    record = shard_record(model, spec, checkpoint)
    existing = sorted(folder.glob("shard_*.json"))
    if existing and not resume:
        raise SamplesExistError(
            f"{folder} already holds {len(existing)} sample shards: pass --resume to reuse them, or choose "
            "another --out"
        )
    done: dict[int, Path] = {}
    for js in existing:
        try:
            m = read_metadata(js)
        except CheckpointError:
            continue  # unreadable: generated again
        if m.get("record") != record or m.get("shard_size") != shard_size:
            raise SamplesExistError(
                f"{js} was made with other settings ({m.get('record')}, shard size {m.get('shard_size')}); "
                f"now {record}, shard size {shard_size}: choose another --out or delete {folder}"
            )
        done[int(m["start"])] = js.with_suffix("")
    images, labels, nfe, reused = [], [], 0, 0
    bar = tqdm(total=n, desc=f"sampling ({spec.describe()})", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)  # fmt: skip
    model.to(device)
    denoiser = guided(model.denoiser, spec.guidance)
    grid = spec.grid if isinstance(spec.grid, str) else torch.tensor(spec.grid, dtype=torch.float64)
    for start in range(0, n, shard_size):
        count = min(shard_size, n - start)
        stem = folder / f"shard_{start:07d}"
        if start in done:
            tensors, m = load_tensors(done[start])
            if tensors["images"].shape[0] >= count:
                images.append(tensors["images"][:count])
                labels.append(tensors["labels"][:count] if "labels" in tensors else None)
                nfe = int(m["nfe"])
                reused += count
                bar.update(count)
                continue
        shard_x, shard_nfe = [], 0
        shard_y = _labels(spec, start, count, model.num_classes)
        for b in range(start, start + count, batch_size):
            m_b = min(batch_size, start + count - b)
            gens = [torch.Generator(device=device).manual_seed(spec.seed + i) for i in range(b, b + m_b)]
            cond = None if shard_y is None else shard_y[b - start : b - start + m_b].to(device)
            res = model.sample(m_b, sampler=spec.sampler, steps=spec.steps, grid=grid, cond=cond,
                               generator=gens, device=device, denoiser=denoiser, **spec.options)  # fmt: skip
            shard_x.append(res.x.float().cpu())
            shard_nfe = res.nfe
            bar.update(m_b)
        x = torch.cat(shard_x)
        tensors = {"images": x} if shard_y is None else {"images": x, "labels": shard_y}
        save_tensors(stem, tensors, {"kind": "hwaksan-samples", "record": record, "start": start,
                                     "shard_size": shard_size, "nfe": shard_nfe})  # fmt: skip
        images.append(x)
        labels.append(shard_y)
        nfe = shard_nfe
    bar.close()
    x = torch.cat(images) if images else torch.empty(0, *output_shape)
    y = None if not labels or labels[0] is None else torch.cat(labels)
    return GeneratedSamples(x, y, nfe, folder, reused)
