"""Latent diffusion as a composition: encode -> the same machinery -> decode (Rombach et al. 2022).

A :class:`LatentModel` pairs a denoiser trained on normalised latents with the autoencoder that
made them. It *is* a denoiser on latents (``D(z_t, t, cond) -> z0_hat`` with a ``.process``), so
every sampler, guidance wrapper and task takes it unchanged; around that it adds the two maps to
and from pixels:

- :meth:`LatentModel.sample` draws latents with :func:`hwaksan.samplers.sample` and decodes them;
- :meth:`LatentModel.apply` runs any task written for pixel-space denoisers
  (``task(denoiser, x0, ...) -> SampleResult``, e.g. :func:`hwaksan.tasks.edit.sdedit`,
  :func:`hwaksan.tasks.inpaint.inpaint`) in latent space through
  :func:`hwaksan.io.codec.apply_through_codec`: the images are encoded, a pixel mask is
  down-sampled to the latent grid (:func:`hwaksan.io.codec.min_pool_mask`), the task runs on
  latents, the result is decoded and, for inpainting, the known pixels are pasted back;
- guidance composes the usual way: ``LatentModel(ClassifierFreeGuidance(denoiser, w), autoencoder)``.

The autoencoder is duck-typed (this module imports no network): it needs ``encode_latents(x)``,
``decode_latents(z)`` and ``factor`` (the down-sampling factor), as
:class:`hwaksan.models.vae.AutoencoderKL` has. A trained latent model loaded with
:func:`hwaksan.io.artifact.load_trained` carries the same maps as its
:class:`~hwaksan.io.codec.VAECodec` (``model.sample``, ``model.apply``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from .._typing import Cond, Denoiser
from ..io.codec import apply_through_codec, min_pool_mask
from ..samplers import SampleResult, sample

__all__ = ["Autoencoder", "LatentModel"]


class Autoencoder(Protocol):
    """What :class:`LatentModel` needs from an autoencoder."""

    factor: int

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor: ...


class LatentModel:
    """A latent-space denoiser with its autoencoder (also a :class:`hwaksan.io.codec.Codec`
    between pixels and latents, without fixed shapes).

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

    is_identity = False  # a lossy codec: apply_through_codec pastes known pixels back

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
        W/f)``: :func:`hwaksan.io.codec.min_pool_mask` with the autoencoder's factor."""
        return min_pool_mask(mask, int(self.autoencoder.factor))

    data_mask = latent_mask  # the Codec protocol's name

    @torch.no_grad()
    def sample(self, n: int, latent_shape: tuple[int, ...], **kwargs: Any) -> SampleResult:
        """``n`` images: :func:`hwaksan.samplers.sample` on latents of ``latent_shape = (c, h, w)``
        (all keyword arguments are passed on), then :meth:`decode`. NFE and grid are the sampler's."""
        out = sample(self.denoiser, (n, *latent_shape), **kwargs)
        return SampleResult(self.decode(out.x), out.ts, out.nfe)

    def apply(
        self,
        task: Callable[..., SampleResult],
        images: torch.Tensor,
        *args: Any,
        mask: torch.Tensor | None = None,
        paste_known: bool = True,
        **kwargs: Any,
    ) -> SampleResult:
        """Run ``task(denoiser, latents, *args, [mask=latent_mask,] **kwargs)`` and decode
        (:func:`hwaksan.io.codec.apply_through_codec` with this model as the codec).

        Args:
            task: a pixel-space task, ``task(denoiser, x0, ...) -> SampleResult``.
            images: ``(B, C, H, W)`` in [-1, 1], encoded with :meth:`encode`.
            *args: passed on (e.g. SDEdit's ``strength``).
            mask: a pixel mask (1 = known), given to the task as ``mask=`` after
                :meth:`latent_mask`.
            paste_known: with a mask, copy the known pixels of ``images`` into the decoded result
                (``m x + (1 - m) decode(z)``), since the autoencoder only approximates them.
            **kwargs: passed on (``cond``, ``sampler``, ``steps``, ``generator``, ...).

        Returns:
            the task's result with ``x (B, C, H, W)`` decoded.
        """
        return apply_through_codec(
            task, self.denoiser, self, images, *args, mask=mask, paste_known=paste_known, **kwargs
        )
