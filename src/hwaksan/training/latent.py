"""Latent diffusion (Rombach et al. 2022) as a trainer extension: encode once, train on latents.

With ``[latent] vae = "DIR"`` (a ``hwaksan train-vae`` output), :class:`LatentExtension`:

- encodes the training images **once** into normalised latents ``(z - shift) * scale`` (posterior
  means; :meth:`hwaksan.models.vae.AutoencoderKL.encode_latents`), cached in ``DIR/cache/`` under a
  key of the autoencoder file and the image ids, so later runs skip the encoder; the loop then
  trains any process / network on an :class:`~hwaksan.data.images.ImageDataset` of latents (same
  labels and captions). A data set whose samples already have the latent shape (reflow pairs
  sampled by a latent model) is kept as it is;
- gives the loop its codec (:class:`hwaksan.io.codec.VAECodec`): sample grids are decoded with it,
  and checkpoints carry the autoencoder's weights (``vae.*``) and its description, so
  :func:`hwaksan.io.artifact.load_trained` decodes without the original folder.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import torch

from ..data.images import ImageDataset
from ..io.artifact import VAE_PREFIX
from ..io.checkpoint import CheckpointError, load_tensors, save_tensors
from ..io.vae_codec import load_vae_codec
from .config import Config, ConfigError
from .extension import Extension
from .vae import encode_dataset

__all__ = ["LatentExtension"]

_CACHE_KIND = "hwaksan-latent-cache"


class LatentExtension(Extension):
    """Train on the latents of the autoencoder ``config.latent.vae`` (see the module docstring).

    Args:
        config: the experiment (``latent.vae``).
        cache: read / write the encoded latents in ``DIR/cache/``.
        progress: show a progress bar while encoding.

    Attributes:
        codec: the autoencoder between latents ``(c, H/f, W/f)`` and images ``(C, H, W)``.
    """

    name = "latent"

    def __init__(self, config: Config, cache: bool = True, progress: bool = True) -> None:
        try:
            self.codec, self.path = load_vae_codec(config.latent.vae)
        except CheckpointError as err:
            raise ConfigError(f"latent.vae = {config.latent.vae!r}: {err}") from None
        self.cache = cache
        self.progress = progress

    def prepare_data(self, data: ImageDataset) -> ImageDataset:
        have = tuple(data.images.shape[1:])
        if have == self.codec.data_shape:
            return data  # already latents (pairs sampled in the model's data space)
        if have != self.codec.output_shape:
            raise ConfigError(
                f"latent.vae was trained on images of shape {self.codec.output_shape} but the data gives "
                f"{have}: set data.image_size = {self.codec.output_shape[-1]} (or train an autoencoder at "
                "this size)"
            )
        return ImageDataset(
            images=self._encode(data),
            labels=data.labels,
            captions=data.captions,
            class_names=data.class_names,
            name=data.name,
            ids=data.ids,
        )

    def _cache_path(self, data: ImageDataset) -> Path:
        st = self.path.with_name(self.path.name + ".safetensors").stat()
        h = hashlib.sha256(f"{self.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{data.name}".encode())
        h.update(repr(tuple(data.images.shape)).encode())
        for i in data.ids or []:
            h.update(i.encode() + b"\0")
        if data.ids is None:  # no stable ids: hash the pixels
            h.update(data.images.numpy().tobytes())
        return self.path.parent / "cache" / f"latents-{h.hexdigest()[:16]}"

    def _encode(self, data: ImageDataset) -> torch.Tensor:
        path = self._cache_path(data)
        if self.cache and path.with_name(path.name + ".json").exists():
            try:
                tensors, _ = load_tensors(path)
                z = tensors["latents"]
                if z.shape[0] == len(data):
                    print(f"hwaksan: latents read from {path}.safetensors", file=sys.stderr)
                    return z
            except (CheckpointError, OSError, KeyError):
                pass
        z = encode_dataset(self.codec.autoencoder, data.images, progress=self.progress)
        if self.cache:
            try:
                save_tensors(path, {"latents": z}, {"kind": _CACHE_KIND, "vae": str(self.path)})
                print(
                    f"hwaksan: encoded {len(data)} images, latents cached in {path}.safetensors",
                    file=sys.stderr,
                )
            except OSError as err:
                print(f"hwaksan: could not cache the latents in {path.parent}: {err}", file=sys.stderr)
        return z

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        return self.codec.tensors(VAE_PREFIX)

    def metadata(self) -> dict[str, Any]:
        return {"codec": self.codec}
