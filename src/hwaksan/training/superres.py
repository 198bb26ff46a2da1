"""Training glue for super-resolution models (SPEC section 6; Ho et al. 2022, cascaded diffusion).

A super-resolution (SR) model is a U-Net trained on the high-resolution images ``x0 (B, C, H, W)``
with the low-resolution version concatenated to its input (extra input channels, Saharia et al. 2022,
SR3). With ``[data] lowres = h`` the trainer calls the hooks below:

- :func:`superres_network_spec` adds ``in_extra_channels = C`` (and ``aug_conditioning`` when
  ``[diffusion] aug_max > 0``) to the network's arguments;
- :func:`superres_cond` turns the batch's labels into the condition
  ``{"labels": labels, "image": z, "aug_level": s}`` with ``x_low = downsample(x0, h)`` (the resize
  of ``load_dataset(..., image_size=h)``), ``u = upsample(x_low, H)`` (bicubic) and the
  **noise-conditioning augmentation** (Ho et al. 2022, sec. 3.2; SPEC appendix)
  ``z = alpha(s) u + sigma(s) eps``, ``s ~ U[0, aug_max]`` a time of the model's own process, given to
  the network as ``cond["aug_level"] = s``. With ``aug_max = 0`` the condition is the clean ``u``;
- :func:`superres_sample_cond` conditions the sample grids written during training on the first
  ``n`` training images, clean (``s = 0``).

Sampling and cascades are in :mod:`hwaksan.tasks.superres`, which builds the same condition.
Determinism: sample ``j`` of step ``k`` draws ``s`` and ``eps`` from its own generator seeded by
``(train.seed, stream, k, j)``, so a resumed run replays the same augmentation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..utils import append_dims, downsample, upsample
from .config import Config, ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Trainer

__all__ = ["superres_network_spec", "superres_cond", "superres_sample_cond", "lowres_image"]

#: The random stream of the augmentation draws (the second part of ``mix_seed``; 8 = issue 8).
_AUG_STREAM = 801


def lowres_image(x0: torch.Tensor, lowres: int) -> torch.Tensor:
    """``upsample(downsample(x0, lowres), x0's size)``: what an SR model is conditioned on before
    augmentation. Shapes ``(B, C, H, W)`` -> ``(B, C, H, W)``."""
    return upsample(downsample(x0, lowres), tuple(x0.shape[-2:]))


def superres_network_spec(
    config: Config, spec: dict[str, Any], image_shape: tuple[int, ...]
) -> dict[str, Any]:
    """The network arguments of an SR model: ``in_extra_channels = C`` and, with ``aug_max > 0``,
    ``aug_conditioning = True``. Raises :class:`ConfigError` for a network or size that cannot."""
    c, h, w = image_shape
    lowres = config.data.lowres
    if spec.get("arch") != "unet":
        raise ConfigError(
            f"data.lowres = {lowres} (super-resolution) needs a U-Net (model.preset = 'unet' or a unet "
            f"preset); got {spec.get('arch')!r}"
        )
    if lowres >= min(h, w):
        raise ConfigError(
            f"data.lowres = {lowres} must be smaller than the training images ({h}x{w}); allowed values: "
            f"1..{min(h, w) - 1}"
        )
    if config.diffusion.coupling != "independent":
        raise ConfigError("data.lowres (super-resolution) needs diffusion.coupling = 'independent'")
    spec = dict(spec)
    extra = spec.setdefault("in_extra_channels", c)
    if extra != c:
        raise ConfigError(f"model.args.in_extra_channels = {extra} but the images have {c}; allowed: {c}")
    if config.diffusion.aug_max > 0:
        spec["aug_conditioning"] = True
    return spec


def superres_cond(trainer: Trainer, step: int, x0: torch.Tensor, labels: torch.Tensor | None) -> dict:
    """The condition of this rank's batch of ``step``: ``{"labels", "image", "aug_level"}``.

    Shapes: ``x0 (B, C, H, W)``, ``labels (B,)`` or None -> ``image (B, C, H, W)``, ``aug_level (B,)``
    float64 (only when ``aug_max > 0``).
    """
    from ..utils import mix_seed

    cfg = trainer.config
    u = lowres_image(x0, cfg.data.lowres)
    cond: dict[str, Any] = {"labels": labels, "image": u}
    aug_max = cfg.diffusion.aug_max
    if aug_max > 0:
        sl = trainer.batch_slice
        gens = [
            torch.Generator().manual_seed(mix_seed(cfg.train.seed, _AUG_STREAM, step, j))
            for j in range(sl.start, sl.stop)
        ]
        s = torch.stack([aug_max * torch.rand((), generator=g, dtype=torch.float64) for g in gens])
        eps = torch.stack([torch.randn(u.shape[1:], generator=g) for g in gens]).to(u)
        s = s.to(u.device)
        alpha = append_dims(trainer.process.alpha(s), u.ndim).to(u.dtype)
        sigma = append_dims(trainer.process.sigma(s), u.ndim).to(u.dtype)
        cond["image"] = alpha * u + sigma * eps  # = process.q_sample(u, s, eps)
        cond["aug_level"] = s
    return cond


def superres_sample_cond(trainer: Trainer, n: int, labels: torch.Tensor | None) -> dict:
    """The condition of the training sample grid: the first ``n`` training images, downsampled and
    upsampled, clean (``aug_level = 0``), with their own labels (class-conditional models)."""
    n = min(n, len(trainer.images))
    x0 = trainer.images[:n]
    cond: dict[str, Any] = {"image": lowres_image(x0, trainer.config.data.lowres)}
    if labels is not None:
        cond["labels"] = trainer.labels[:n] if trainer.labels is not None else labels
    if trainer.config.diffusion.aug_max > 0:
        cond["aug_level"] = torch.zeros(n, dtype=torch.float64, device=x0.device)
    return cond
