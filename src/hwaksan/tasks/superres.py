"""Super-resolution and cascades (Saharia et al. 2022, SR3; Ho et al. 2022, cascaded diffusion).

A super-resolution (SR) model is a denoiser of high-resolution images ``x (B, C, H, W)`` whose network
also receives the bicubic-upsampled low-resolution image as extra input channels
(``cond["image"]``). With **noise-conditioning augmentation** (Ho et al. 2022, sec. 3.2) that
image is itself noised, ``z = alpha(s) u + sigma(s) eps`` with ``u`` the upsampled
image and ``s`` a time of the model's process, and the network sees ``s`` as ``cond["aug_level"]``:
training draws ``s ~ U[0, aug_max]`` (:mod:`hwaksan.training.superres`), sampling fixes ``s``.
Augmentation makes the SR stage robust to the artefacts of a base model's samples, which it never
saw in training; :func:`cascade` chains a base model and SR stages.

:func:`psnr` and :func:`ssim` (Wang et al. 2004) score restorations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .._typing import Denoiser
from ..samplers import SampleResult, sample
from ..utils import GeneratorLike, as_time, randn_like, upsample

__all__ = ["superres_cond", "upscale", "Stage", "cascade", "psnr", "ssim"]


def superres_cond(
    process,
    low: torch.Tensor,
    size: int | Sequence[int],
    *,
    aug_level: float | torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    generator: GeneratorLike = None,
    noise: torch.Tensor | None = None,
) -> dict[str, Any]:
    """The condition of an SR model for low-resolution images ``low (B, C, h, w)``.

    ``{"image": z, "aug_level": s, "labels": labels}`` with ``u = upsample(low, size)`` and
    ``z = alpha(s) u + sigma(s) eps`` (:meth:`Process.q_sample`). ``aug_level = None`` leaves the
    field out (a model trained without augmentation) and ``z = u``; ``labels = None`` leaves them out.
    ``s`` is a float or ``(B,)`` times; ``eps`` is ``noise`` or drawn from ``generator``.
    """
    u = upsample(low, size)
    cond: dict[str, Any] = {"image": u}
    if aug_level is not None:
        s = as_time(aug_level, low.shape[0], low.device)
        if bool(((s < 0) | (s > 1)).any()):
            raise ValueError(f"aug_level must be a time in [0, 1], got {aug_level}")
        eps = randn_like(u, generator) if noise is None else noise.to(u)
        cond["image"] = process.q_sample(u, s, eps)
        cond["aug_level"] = s
    if labels is not None:
        cond["labels"] = labels
    return cond


def upscale(
    denoiser: Denoiser,
    low: torch.Tensor,
    size: int | Sequence[int],
    *,
    aug_level: float | None = None,
    labels: torch.Tensor | None = None,
    sampler: str = "heun",
    steps: int = 18,
    grid: str | torch.Tensor = "karras",
    generator: GeneratorLike = None,
    grid_options: dict[str, Any] | None = None,
    **options: Any,
) -> SampleResult:
    """Sample high-resolution images ``(B, C, *size)`` from an SR model given ``low (B, C, h, w)``.

    The augmentation noise is drawn first, then the sampler's prior, from ``generator`` (per-sample
    generators: image ``i`` does not depend on the batch).
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    cond = superres_cond(denoiser.process, low, size, aug_level=aug_level, labels=labels, generator=generator)
    return sample(
        denoiser,
        (low.shape[0], low.shape[1], *size),
        sampler=sampler,
        steps=steps,
        grid=grid,
        cond=cond,
        generator=generator,
        dtype=low.dtype,
        device=low.device,
        grid_options=grid_options,
        **options,
    )


@dataclass(frozen=True)
class Stage:
    """One stage of a cascade.

    Attributes:
        denoiser: the model (the base model for the first stage, an SR model after it).
        size: output size ``(H, W)`` or an int.
        aug_level: SR stages: the augmentation time ``s`` given to the model (None: a model trained
            without augmentation).
        use_labels: pass the cascade's class labels to this stage.
        sampler, steps, grid, options: how to sample this stage.
    """

    denoiser: Denoiser
    size: int | tuple[int, int]
    aug_level: float | None = None
    use_labels: bool = False
    sampler: str = "heun"
    steps: int = 18
    grid: str = "karras"
    options: dict[str, Any] = field(default_factory=dict)


def cascade(
    stages: Sequence[Stage],
    n: int,
    channels: int,
    *,
    labels: torch.Tensor | None = None,
    generator: GeneratorLike = None,
    device: str | torch.device | None = None,
) -> list[SampleResult]:
    """Sample a cascade: ``stages[0]`` generates ``(n, channels, *size)`` from noise, every later stage
    upscales the previous stage's output (Ho et al. 2022, Fig. 1). Returns every stage's result."""
    if not stages:
        raise ValueError("a cascade needs at least one stage")
    results: list[SampleResult] = []
    for i, st in enumerate(stages):
        size = (st.size, st.size) if isinstance(st.size, int) else tuple(st.size)
        lab = labels if st.use_labels else None
        if i == 0:
            res = sample(
                st.denoiser,
                (n, channels, *size),
                sampler=st.sampler,
                steps=st.steps,
                grid=st.grid,
                cond=lab,
                generator=generator,
                device=device,
                **st.options,
            )
        else:
            low = results[-1].x.clamp(-1, 1)
            res = upscale(
                st.denoiser,
                low,
                size,
                aug_level=st.aug_level,
                labels=lab,
                sampler=st.sampler,
                steps=st.steps,
                grid=st.grid,
                generator=generator,
                **st.options,
            )
        results.append(res)
    return results


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, ``10 log10(range^2 / MSE)`` in dB; ``(B, ...)`` -> ``(B,)``.
    ``data_range = 2`` for images in [-1, 1]."""
    mse = (x.double() - y.double()).pow(2).reshape(x.shape[0], -1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, window: int = 7, sigma: float = 1.5
) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004, eq. 13), ``(B, C, H, W)`` -> ``(B,)``.

    Local statistics under a Gaussian window (``window`` x ``window`` pixels, std ``sigma``; "valid"
    positions only), ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` with ``L = data_range``, averaged over
    positions and channels. The paper uses an 11-pixel window; 7 suits 28x28 images (scikit-image's
    default size).
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim needs two (B, C, H, W) batches of one shape, got {x.shape} and {y.shape}")
    if min(x.shape[-2:]) < window:
        raise ValueError(f"images of {tuple(x.shape[-2:])} are smaller than the {window}-pixel window")
    x, y = x.double(), y.double()
    c = x.shape[1]
    g = _gaussian_window(window, sigma).to(x.device)
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window)

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, kernel, groups=c)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx**2
    vy = blur(y * y) - my**2
    cxy = blur(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))
