"""Trainer glue for latent diffusion (Rombach et al. 2022): encode once, train on latents, decode.

With ``[latent] vae = "DIR"`` (a ``hwaksan train-vae`` output) the trainer calls :class:`LatentSetup`:

- the training images are encoded **once** into normalised latents ``(z - shift) * scale``
  (posterior means; :meth:`hwaksan.models.vae.AutoencoderKL.encode_latents`) and cached in
  ``DIR/cache/`` under a key of the autoencoder file and the image ids, so later runs skip the
  encoder; the trainer then sees an :class:`~hwaksan.data.images.ImageDataset` of latents (same
  labels and captions) and trains any process / network on it unchanged;
- sample grids written during training are decoded (:meth:`LatentSetup.decode`);
- checkpoints carry the autoencoder's weights (``vae.*`` tensors) and its metadata (``meta["latent"]``),
  so ``hwaksan sample`` and :func:`load_latent_model` decode without the original folder.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..data.images import ImageDataset
from ..io.checkpoint import CheckpointError, load_tensors, save_tensors
from ..io.vae import load_vae, resolve_vae, vae_from_tensors
from ..models.vae import AutoencoderKL
from .config import ConfigError
from .vae import encode_dataset

if TYPE_CHECKING:  # pragma: no cover
    from .config import Config

__all__ = ["LatentSetup", "latent_from_checkpoint", "decode_with_checkpoint", "VAE_PREFIX"]

VAE_PREFIX = "vae."
"""Prefix of the autoencoder's tensors inside a latent-diffusion checkpoint."""


class LatentSetup:
    """The autoencoder of a latent-diffusion run and the training set encoded by it.

    Args:
        config: the experiment (``latent.vae``).
        data: the training images ``(N, C, H, W)`` in [-1, 1].
        cache: read / write the encoded latents in ``DIR/cache/``.
        progress: show a progress bar while encoding.

    Attributes:
        vae: the autoencoder (eval mode, frozen).
        vae_meta: its checkpoint metadata.
        data: the latents as an ImageDataset ``(N, c, H/f, W/f)`` with ``data``'s labels, captions, ids.
        image_shape: ``(C, H, W)`` of the decoded images.
    """

    def __init__(self, config: Config, data: ImageDataset, cache: bool = True, progress: bool = True) -> None:
        try:
            self.vae, self.vae_meta = load_vae(config.latent.vae)
        except CheckpointError as err:
            raise ConfigError(f"latent.vae = {config.latent.vae!r}: {err}") from None
        self.vae.requires_grad_(False)
        want = tuple(self.vae_meta["image_shape"])
        have = tuple(data.images.shape[1:])
        if have != want:
            raise ConfigError(
                f"latent.vae was trained on images of shape {want} but the data gives {have}: set "
                f"data.image_size = {want[-1]} (or train an autoencoder at this size)"
            )
        self.image_shape = have
        z = self._encode(data, cache, progress)
        self.data = ImageDataset(
            images=z,
            labels=data.labels,
            captions=data.captions,
            class_names=data.class_names,
            name=data.name,
            ids=data.ids,
        )

    def _cache_path(self, data: ImageDataset) -> Path:
        ckpt = Path(self.vae_meta["path"])
        st = ckpt.with_name(ckpt.name + ".safetensors").stat()
        h = hashlib.sha256(f"{ckpt.resolve()}|{st.st_size}|{st.st_mtime_ns}|{data.name}".encode())
        h.update(repr(tuple(data.images.shape)).encode())
        for i in data.ids or []:
            h.update(i.encode() + b"\0")
        if data.ids is None:  # no stable ids: hash the pixels
            h.update(data.images.numpy().tobytes())
        return ckpt.parent / "cache" / f"latents-{h.hexdigest()[:16]}"

    def _encode(self, data: ImageDataset, cache: bool, progress: bool) -> torch.Tensor:
        path = self._cache_path(data)
        if cache and path.with_name(path.name + ".json").exists():
            try:
                tensors, _ = load_tensors(path)
                z = tensors["latents"]
                if z.shape[0] == len(data):
                    print(f"hwaksan: latents read from {path}.safetensors", file=sys.stderr)
                    return z
            except (CheckpointError, OSError, KeyError):
                pass
        z = encode_dataset(self.vae, data.images, progress=progress)
        if cache:
            try:
                save_tensors(
                    path, {"latents": z}, {"kind": "hwaksan-latent-cache", "vae": self.vae_meta["path"]}
                )
                print(
                    f"hwaksan: encoded {len(data)} images, latents cached in {path}.safetensors",
                    file=sys.stderr,
                )
            except OSError as err:
                print(f"hwaksan: could not cache the latents in {path.parent}: {err}", file=sys.stderr)
        return z

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` in [-1, 1] from normalised latents ``(B, c, h, w)``."""
        vae = self.vae.to(z.device)
        return vae.decode_latents(z.float()).clamp(-1, 1)

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """The autoencoder's weights for a diffusion checkpoint (``vae.*``)."""
        return {VAE_PREFIX + k: v for k, v in self.vae.state_dict().items()}

    def meta(self) -> dict[str, Any]:
        """``meta["latent"]`` of a diffusion checkpoint."""
        m = self.vae_meta
        return {
            "vae": m["path"],
            "network": m["network"],
            "scale": m["latent"]["scale"],
            "shift": m["latent"]["shift"],
            "image_shape": list(self.image_shape),
            "psnr_val": m.get("metrics", {}).get("psnr_val"),
        }


def latent_from_checkpoint(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> tuple[AutoencoderKL, tuple[int, ...]] | None:
    """The autoencoder stored in a latent-diffusion checkpoint and the decoded image shape; None
    for a pixel-space checkpoint."""
    info = meta.get("latent")
    if not info:
        return None
    if not any(k.startswith(VAE_PREFIX) for k in tensors):
        try:  # older layout: only the path was recorded
            vae, _ = load_vae(resolve_vae(info["vae"]))
        except (CheckpointError, KeyError) as err:
            raise CheckpointError(f"the checkpoint's autoencoder is missing: {err}") from None
    else:
        vae = vae_from_tensors(tensors, info, prefix=VAE_PREFIX)
    return vae, tuple(info["image_shape"])


@torch.no_grad()
def decode_with_checkpoint(path: str | Path, meta: dict[str, Any], z: torch.Tensor) -> torch.Tensor:
    """Decode latents ``z (B, c, h, w)`` sampled from the latent-diffusion checkpoint ``path`` with
    the autoencoder it carries: images ``(B, C, H, W)`` in [-1, 1]."""
    tensors, _ = load_tensors(path)
    found = latent_from_checkpoint(tensors, meta)
    if found is None:
        raise CheckpointError(f"{path} is not a latent-diffusion checkpoint (no meta['latent'])")
    vae, _ = found
    vae = vae.to(z.device)
    return torch.cat([vae.decode_latents(c.float()) for c in z.split(256)]).clamp(-1, 1)
