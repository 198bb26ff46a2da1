"""Latent diffusion as a composition: encode -> the same machinery -> decode (Rombach et al. 2022).

A :class:`LatentModel` pairs a denoiser trained on normalised latents with the autoencoder that
made them. It *is* a denoiser on latents (``D(z_t, t, cond) -> z0_hat`` with a ``.process``), so
every sampler, guidance wrapper and task takes it unchanged; around that it adds the two maps to
and from pixels:

- :meth:`LatentModel.sample` draws latents with :func:`hwaksan.samplers.sample` and decodes them;
- :meth:`LatentModel.apply` runs any task written for pixel-space denoisers
  (``task(denoiser, x0, ...) -> SampleResult``, e.g. :func:`hwaksan.tasks.edit.sdedit`,
  :func:`hwaksan.tasks.inpaint.inpaint`) in latent space: the images are encoded, a pixel mask is
  down-sampled to the latent grid (:meth:`LatentModel.latent_mask`), the task runs on latents, the
  result is decoded and, for inpainting, the known pixels are pasted back;
- guidance composes the usual way: ``LatentModel(ClassifierFreeGuidance(denoiser, w), autoencoder)``.

The autoencoder is duck-typed (this module imports no network): it needs ``encode_latents(x)``,
``decode_latents(z)`` and ``factor`` (the down-sampling factor), as
:class:`hwaksan.models.vae.AutoencoderKL` has. No new math: the mask rule is the only choice made
here (a latent cell is *known* only when every pixel of its ``f x f`` patch is known: min-pooling,
so that no unknown pixel is ever held fixed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from .._typing import Cond, Denoiser
from ..samplers import SampleResult, sample

__all__ = ["Autoencoder", "LatentModel"]


class Autoencoder(Protocol):
    """What :class:`LatentModel` needs from an autoencoder."""

    factor: int

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor: ...


class LatentModel:
    """A latent-space denoiser with its autoencoder.

    Args:
        denoiser: ``D(z_t, t, cond)`` on normalised latents ``(B, c, h, w)`` (possibly wrapped, e.g.
            by :class:`hwaksan.guidance.ClassifierFreeGuidance`).
        autoencoder: see :class:`Autoencoder`.
        clamp: clamp decoded images to [-1, 1].

    Example (with any trained pair)::

        lm = LatentModel(denoiser, vae)
        images = lm.sample(16, (4, 8, 8), sampler="heun", steps=18).x           # (16, 3, 32, 32)
        edited = lm.apply(sdedit, images, 0.5, cond=new_cond).x
        filled = lm.apply(inpaint, images, mask=mask, resample=5).x
    """

    def __init__(self, denoiser: Denoiser, autoencoder: Autoencoder, clamp: bool = True) -> None:
        self.denoiser = denoiser
        self.autoencoder = autoencoder
        self.process = denoiser.process
        self.clamp = clamp

    def __call__(self, z: torch.Tensor, t: torch.Tensor, cond: Cond = None) -> torch.Tensor:
        """The wrapped denoiser on latents: ``z0_hat (B, c, h, w)``."""
        return self.denoiser(z, t, cond)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``(B, c, H/f, W/f)`` of images ``(B, C, H, W)`` in [-1, 1]."""
        return self.autoencoder.encode_latents(images)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, f h, f w)`` from normalised latents."""
        x = self.autoencoder.decode_latents(z)
        return x.clamp(-1, 1) if self.clamp else x

    def latent_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """A pixel mask ``(B or 1, 1 or C, H, W)`` (1 = known) on the latent grid ``(B or 1, 1, H/f,
        W/f)``: a cell is 1 only where its whole ``f x f`` patch is known in every channel
        (min-pooling), else 0."""
        mask = torch.as_tensor(mask, dtype=torch.float32)
        if mask.ndim != 4:
            raise ValueError(f"mask must be (B, C, H, W) with C = 1 or the image's, got {tuple(mask.shape)}")
        f = int(self.autoencoder.factor)
        if mask.shape[-2] % f or mask.shape[-1] % f:
            raise ValueError(f"mask sides {tuple(mask.shape[-2:])} are not multiples of the factor {f}")
        known = mask.amin(dim=1, keepdim=True)
        return -F.max_pool2d(-known, f) if f > 1 else known

    @torch.no_grad()
    def sample(self, n: int, latent_shape: tuple[int, ...], **kwargs: Any) -> SampleResult:
        """``n`` images: :func:`hwaksan.samplers.sample` on latents of ``latent_shape = (c, h, w)``
        (all keyword arguments are passed on), then :meth:`decode`. NFE and grid are the sampler's."""
        out = sample(self.denoiser, (n, *latent_shape), **kwargs)
        return SampleResult(self.decode(out.x), out.ts, out.nfe)

    @torch.no_grad()
    def apply(
        self,
        task: Callable[..., SampleResult],
        images: torch.Tensor,
        *args: Any,
        mask: torch.Tensor | None = None,
        paste_known: bool = True,
        **kwargs: Any,
    ) -> SampleResult:
        """Run ``task(denoiser, latents, *args, [mask=latent_mask,] **kwargs)`` and decode.

        Args:
            task: a pixel-space task, ``task(denoiser, x0, ...) -> SampleResult``.
            images: ``(B, C, H, W)`` in [-1, 1], encoded with :meth:`encode`.
            *args: passed on (e.g. SDEdit's ``strength``).
            mask: a pixel mask (1 = known), given to the task as ``mask=`` after
                :meth:`latent_mask`.
            paste_known: with a mask, copy the known pixels of ``images`` into the decoded result
                (``m x + (1 - m) decode(z)``), since the autoencoder only approximates them.
            **kwargs: passed on (``cond``, ``sampler``, ``steps``, ``generator``, ...).
        """
        z = self.encode(images)
        if mask is not None:
            kwargs["mask"] = self.latent_mask(mask).to(z)
        out = task(self.denoiser, z, *args, **kwargs)
        x = self.decode(out.x)
        if mask is not None and paste_known:
            m = torch.as_tensor(mask, dtype=x.dtype, device=x.device)
            x = m * images.to(x) + (1 - m) * x
        return SampleResult(x, out.ts, out.nfe)
