"""Super-resolution (Ho et al. 2022, cascaded diffusion; Saharia et al. 2022, SR3) as a trainer
extension.

A super-resolution (SR) model is a U-Net trained on the high-resolution images ``x0 (B, C, H, W)``
with the low-resolution version concatenated to its input (extra input channels, SR3). With
``[data] lowres = h``, :class:`SuperResExtension`:

- adds ``in_extra_channels = C`` (and ``aug_conditioning`` when ``[diffusion] aug_max > 0``) to the
  network's arguments;
- adds to the batch condition ``{"image": z, "aug_level": s}`` with ``x_low = downsample(x0, h)``
  (the resize of ``load_dataset(..., image_size=h)``), ``u = upsample(x_low, H)`` (bicubic) and the
  **noise-conditioning augmentation** (Ho et al. 2022, sec. 3.2 and appendix B)
  ``z = alpha(s) u + sigma(s) eps``, ``s ~ U[0, aug_max]`` a time of the model's own process, given to
  the network as ``cond["aug_level"] = s``. With ``aug_max = 0`` the condition is the clean ``u``;
- conditions the sample grids written during training on training images, clean (``s = 0``): image
  ``i`` of the grid is the first training image not yet shown with the grid's label ``i``
  (the first ``n`` images for an unconditional model).

Sampling and cascades are in :mod:`hwaksan.tasks.superres`, which builds the same condition.
Determinism: sample ``j`` of step ``k`` draws ``s`` and ``eps`` from its own generator seeded by
``(train.seed, stream, k, j)``, so a resumed run replays the same augmentation.
"""

from __future__ import annotations

from typing import Any

import torch

from ..data.images import ImageDataset
from ..utils import append_dims, downsample, mix_seed, upsample
from .config import Config, ConfigError
from .extension import Extension, RunContext, StepContext

__all__ = ["SuperResExtension", "lowres_image"]

#: The random stream of the augmentation draws (the second part of ``mix_seed``).
_AUG_STREAM = 801


def lowres_image(x0: torch.Tensor, lowres: int) -> torch.Tensor:
    """``upsample(downsample(x0, lowres), x0's size)``: what an SR model is conditioned on before
    augmentation. Shapes ``(B, C, H, W)`` -> ``(B, C, H, W)``."""
    return upsample(downsample(x0, lowres), tuple(x0.shape[-2:]))


class SuperResExtension(Extension):
    """Condition on the low-resolution training image (see the module docstring).

    Args:
        config: the experiment (``data.lowres``, ``diffusion.aug_max``, ``train.seed``).
    """

    name = "super-resolution"

    def __init__(self, config: Config) -> None:
        self.lowres = config.data.lowres
        self.aug_max = config.diffusion.aug_max
        self.conditional = config.data.conditional

    def prepare_data(self, data: ImageDataset) -> ImageDataset:
        self.images = data.images
        self.labels = data.labels if self.conditional else None
        return data

    def network_spec(self, spec: dict[str, Any], image_shape: tuple[int, ...]) -> dict[str, Any]:
        """``in_extra_channels = C`` and, with ``aug_max > 0``, ``aug_conditioning = True``."""
        c, h, w = image_shape
        lowres = self.lowres
        if spec.get("arch") != "unet":
            raise ConfigError(
                f"data.lowres = {lowres} (super-resolution) needs a U-Net (model.preset = 'unet' or a unet "
                f"preset); got {spec.get('arch')!r}"
            )
        if lowres >= min(h, w):
            raise ConfigError(
                f"data.lowres = {lowres} must be smaller than the training images ({h}x{w}); allowed "
                f"values: 1..{min(h, w) - 1}"
            )
        spec = dict(spec)
        extra = spec.setdefault("in_extra_channels", c)
        if extra != c:
            raise ConfigError(f"model.args.in_extra_channels = {extra} but the images have {c}; allowed: {c}")
        if self.aug_max > 0:
            spec["aug_conditioning"] = True
        return spec

    def batch_cond(self, cond: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Add ``image (b, C, H, W)`` and, when ``aug_max > 0``, ``aug_level (b,)`` float64."""
        u = lowres_image(ctx.x0, self.lowres)
        if self.aug_max <= 0:
            return {**cond, "image": u}
        sl = ctx.positions
        gens = [
            torch.Generator().manual_seed(mix_seed(ctx.seed, _AUG_STREAM, ctx.step, j))
            for j in range(sl.start, sl.stop)
        ]
        s = torch.stack([self.aug_max * torch.rand((), generator=g, dtype=torch.float64) for g in gens])
        eps = torch.stack([torch.randn(u.shape[1:], generator=g) for g in gens]).to(u)
        s = s.to(u.device)
        alpha = append_dims(ctx.process.alpha(s), u.ndim).to(u.dtype)
        sigma = append_dims(ctx.process.sigma(s), u.ndim).to(u.dtype)
        return {**cond, "image": alpha * u + sigma * eps, "aug_level": s}  # = process.q_sample(u, s, eps)

    def _grid_indices(self, n: int, labels: torch.Tensor | None) -> torch.Tensor:
        """Training images of the grid: for each grid label, the next image of that class."""
        count = len(self.images)
        if labels is None or self.labels is None:
            return torch.arange(n) % count
        picks, seen = [], {}
        for y in labels.tolist():
            where = torch.nonzero(self.labels == y).flatten()
            r = seen.get(y, 0)
            seen[y] = r + 1
            picks.append(int(where[r % len(where)]) if len(where) else r % count)
        return torch.tensor(picks, dtype=torch.long)

    def sample_cond(self, cond: dict[str, Any], n: int, ctx: RunContext) -> dict[str, Any]:
        """Add the clean low-resolution training images of the grid (``aug_level = 0``)."""
        labels = cond.get("labels")
        x0 = self.images[self._grid_indices(n, None if labels is None else labels.cpu())].to(ctx.device)
        x0 = x0.reshape(n, *ctx.image_shape)
        added: dict[str, Any] = {"image": lowres_image(x0, self.lowres)}
        if self.aug_max > 0:
            added["aug_level"] = torch.zeros(n, dtype=torch.float64, device=ctx.device)
        return {**cond, **added}
