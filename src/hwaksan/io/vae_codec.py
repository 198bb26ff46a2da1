"""An autoencoder checkpoint (``hwaksan train-vae``) as the codec of a latent-diffusion run.

The latent trainer encodes its data with :func:`load_vae_codec`'s codec and records it in its
checkpoints through :func:`hwaksan.io.artifact.model_metadata` (``codec=``), which
:func:`hwaksan.io.artifact.load_trained` reads back.
"""

from __future__ import annotations

import os
from pathlib import Path

from .checkpoint import CheckpointError
from .codec import VAECodec
from .vae import load_vae

__all__ = ["load_vae_codec"]


def load_vae_codec(path: str | os.PathLike) -> tuple[VAECodec, Path]:
    """The autoencoder at ``path`` (a ``train-vae`` folder or checkpoint) as a frozen
    :class:`~hwaksan.io.codec.VAECodec` whose output shape is the images it was trained on, and
    its checkpoint path (no suffix).

    Raises:
        CheckpointError: no autoencoder there, or an incomplete one.
    """
    vae, meta = load_vae(path)
    vae.requires_grad_(False)
    ckpt = Path(meta["path"])
    try:
        latent = meta["latent"]
        info = {
            "vae": str(ckpt),
            "network": meta["network"],
            "scale": latent["scale"],
            "shift": latent["shift"],
            "psnr_val": (meta.get("metrics") or {}).get("psnr_val"),
        }
        image_shape = tuple(int(v) for v in meta["image_shape"])
    except KeyError as err:
        raise CheckpointError(f"{ckpt}: the autoencoder's metadata lacks {err}") from None
    return VAECodec(vae, image_shape, info=info), ckpt
