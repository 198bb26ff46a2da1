"""Codecs: the maps between the space a sampler works in and the output a user sees.

A trained model samples in its **data space** ``(B, *data_shape)`` and shows its results in its
**output space** ``(B, *output_shape)``:

- :class:`IdentityCodec` for pixel and 2-D models (a reshape only: an MLP trained on flattened
  ``C x H x W`` images samples ``(B, C H W)`` and shows ``(B, C, H, W)``);
- :class:`VAECodec` for latent diffusion (Rombach et al. 2022): the autoencoder's normalised
  posterior mean ``(mean - shift) * scale`` is the data space, its decoder maps back to pixels.

:func:`apply_through_codec` runs any task written for data-space denoisers
(``task(denoiser, x0, ...) -> SampleResult``, e.g. SDEdit or inpainting) on output-space inputs:
encode, move the mask to the data grid, run, decode and paste the known pixels back. It is the one
implementation behind :meth:`hwaksan.io.artifact.TrainedModel.apply` and
:class:`hwaksan.tasks.latent.LatentModel`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from .._typing import Denoiser
from ..samplers import SampleResult

__all__ = ["Codec", "IdentityCodec", "VAECodec", "apply_through_codec", "min_pool_mask"]


@runtime_checkable
class Codec(Protocol):
    """What a trained model needs to go between data space and output space."""

    data_shape: tuple[int, ...]
    output_shape: tuple[int, ...]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *output_shape) -> (B, *data_shape)``."""
        ...

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, *data_shape) -> (B, *output_shape)``."""
        ...

    def data_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """An output-space mask (1 = known) as a mask that broadcasts against data-space tensors."""
        ...


def _check_batch(x: torch.Tensor, shape: tuple[int, ...], what: str) -> None:
    if tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"{what} must be (B, {', '.join(map(str, shape))}), got {tuple(x.shape)}")


class IdentityCodec:
    """Data space = output space up to a reshape (pixel-space and 2-D models).

    Args:
        data_shape: per-sample shape the sampler works in, e.g. ``(1, 28, 28)``, ``(2,)`` or
            ``(784,)`` for an MLP on flattened images.
        output_shape: per-sample shape of the output (default: ``data_shape``); must have as many
            elements as ``data_shape``.
    """

    is_identity = True

    def __init__(self, data_shape: tuple[int, ...], output_shape: tuple[int, ...] | None = None) -> None:
        self.data_shape = tuple(int(v) for v in data_shape)
        self.output_shape = tuple(int(v) for v in (output_shape or data_shape))
        if _numel(self.data_shape) != _numel(self.output_shape):
            raise ValueError(
                f"data shape {self.data_shape} and output shape {self.output_shape} differ in size"
            )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        _check_batch(x, self.output_shape, "the input")
        return x.reshape(x.shape[0], *self.data_shape)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z.reshape(z.shape[0], *self.output_shape)

    def data_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """The mask broadcast to the output shape, then reshaped like :meth:`encode` (a no-op for
        image models whose data shape is their output shape)."""
        mask = torch.as_tensor(mask, dtype=torch.float32)
        if self.data_shape == self.output_shape:
            return mask
        full = mask.expand(mask.shape[0], *self.output_shape)
        return full.reshape(mask.shape[0], *self.data_shape)

    def to_meta(self) -> None:
        """An identity codec records nothing (the checkpoint's shapes describe it)."""
        return None


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for v in shape:
        n *= int(v)
    return n


def min_pool_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """A pixel mask ``(B or 1, 1 or C, H, W)`` (1 = known) on a grid ``factor`` times coarser,
    ``(B or 1, 1, H/f, W/f)``: a cell is 1 only where its whole ``f x f`` patch is known in every
    channel (min-pooling), so no unknown pixel is ever held fixed."""
    mask = torch.as_tensor(mask, dtype=torch.float32)
    if mask.ndim != 4:
        raise ValueError(f"mask must be (B, C, H, W) with C = 1 or the image's, got {tuple(mask.shape)}")
    f = int(factor)
    if mask.shape[-2] % f or mask.shape[-1] % f:
        raise ValueError(f"mask sides {tuple(mask.shape[-2:])} are not multiples of the factor {f}")
    known = mask.amin(dim=1, keepdim=True)
    return -F.max_pool2d(-known, f) if f > 1 else known


class VAECodec:
    """The autoencoder of a latent-diffusion model (Rombach et al. 2022).

    Args:
        autoencoder: an object with ``encode_latents(x)``, ``decode_latents(z)``, ``factor`` and
            ``latent_channels`` (:class:`hwaksan.models.vae.AutoencoderKL`), in eval mode.
        output_shape: ``(C, H, W)`` of the decoded images.
        info: what the checkpoint records about the autoencoder (kept for :meth:`to_meta`).
        clamp: clamp decoded images to [-1, 1].
        chunk: decode at most this many latents at a time (bounded memory).
    """

    is_identity = False

    def __init__(
        self,
        autoencoder: Any,
        output_shape: tuple[int, ...],
        info: dict[str, Any] | None = None,
        clamp: bool = True,
        chunk: int = 256,
    ) -> None:
        self.autoencoder = autoencoder
        self.output_shape = tuple(int(v) for v in output_shape)
        f = int(autoencoder.factor)
        c, h, w = self.output_shape
        self.data_shape = (int(autoencoder.latent_channels), h // f, w // f)
        self.factor = f
        self.info = dict(info or {})
        self.clamp = clamp
        self.chunk = chunk

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``(B, c, H/f, W/f)`` of images ``(B, C, H, W)`` in [-1, 1]."""
        _check_batch(x, self.output_shape, "the images")
        vae = self.autoencoder.to(x.device)
        return torch.cat([vae.encode_latents(part.float()) for part in x.split(self.chunk)])

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` from normalised latents ``(B, c, h, w)``."""
        vae = self.autoencoder.to(z.device)
        x = torch.cat([vae.decode_latents(part.float()) for part in z.split(self.chunk)])
        return x.clamp(-1, 1) if self.clamp else x

    def data_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """:func:`min_pool_mask` with the autoencoder's factor."""
        return min_pool_mask(mask, self.factor)

    def to_meta(self) -> dict[str, Any]:
        """What a checkpoint records (``meta["latent"]``); the weights travel as ``vae.*`` tensors."""
        return {**self.info, "image_shape": list(self.output_shape)}

    def tensors(self, prefix: str = "vae.") -> dict[str, torch.Tensor]:
        """The autoencoder's weights for a diffusion checkpoint."""
        return {prefix + k: v for k, v in self.autoencoder.state_dict().items()}


@torch.no_grad()
def apply_through_codec(
    task: Callable[..., SampleResult],
    denoiser: Denoiser,
    codec: Codec,
    images: torch.Tensor,
    *args: Any,
    mask: torch.Tensor | None = None,
    paste_known: bool = True,
    **kwargs: Any,
) -> SampleResult:
    """Run ``task(denoiser, codec.encode(images), *args, [mask=codec.data_mask(mask),] **kwargs)``
    and decode its result.

    Args:
        task: a data-space task, ``task(denoiser, x0, ...) -> SampleResult``.
        denoiser: the data-space denoiser (possibly wrapped by guidance).
        codec: see :class:`Codec`.
        images: ``(B, *codec.output_shape)``.
        *args: passed on (e.g. SDEdit's ``strength``).
        mask: an output-space mask (1 = known), given to the task as ``mask=`` on the data grid.
        paste_known: with a mask and a lossy codec, copy the known pixels of ``images`` into the
            decoded result (``m x + (1 - m) decode(z)``), since the autoencoder only approximates
            them.
        **kwargs: passed on (``cond``, ``sampler``, ``steps``, ``generator``, ...).

    Returns:
        the task's result with ``x`` in output space ``(B, *codec.output_shape)``.
    """
    z = codec.encode(images)
    if mask is not None:
        kwargs["mask"] = codec.data_mask(mask).to(z)
    out = task(denoiser, z, *args, **kwargs)
    x = codec.decode(out.x)
    if mask is not None and paste_known and not getattr(codec, "is_identity", False):
        m = torch.as_tensor(mask, dtype=x.dtype, device=x.device)
        x = m * images.to(x) + (1 - m) * x
    return SampleResult(x, out.ts, out.nfe)
