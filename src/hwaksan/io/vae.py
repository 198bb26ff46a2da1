"""Reading autoencoder checkpoints (``hwaksan train-vae``): the folder, the network and its latent
normalisation. The writer is :func:`hwaksan.training.vae.train_vae`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..models.vae import AutoencoderKL
from .checkpoint import CheckpointError, load_tensors

__all__ = ["resolve_vae", "vae_from_tensors", "load_vae"]


def resolve_vae(path: str | Path) -> Path:
    """The checkpoint path (without suffix) of a VAE: a ``train-vae`` folder or ``PATH[.json]``."""
    p = Path(path)
    if p.is_dir():
        p = p / "vae"
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    if not p.with_name(p.name + ".json").exists():
        raise CheckpointError(
            f"no autoencoder at {path} (expected {p}.json and {p}.safetensors; train one with "
            "hwaksan train-vae --out DIR)"
        )
    return p


def vae_from_tensors(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any], prefix: str = "model."
) -> AutoencoderKL:
    """Rebuild an :class:`AutoencoderKL` from checkpoint tensors under ``prefix`` and its metadata."""
    try:
        config = meta["network"]["config"]
    except KeyError:
        raise CheckpointError("not an autoencoder checkpoint: its metadata has no network config") from None
    vae = AutoencoderKL(**config)
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing, unexpected = vae.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"weights do not fit the autoencoder: missing {missing}, unexpected {unexpected}"
        )
    return vae.eval()


def load_vae(path: str | Path) -> tuple[AutoencoderKL, dict[str, Any]]:
    """Load a ``train-vae`` checkpoint; returns the autoencoder (eval mode, latent normalisation
    set) and its metadata."""
    ckpt = resolve_vae(path)
    tensors, meta = load_tensors(ckpt)
    if meta.get("kind") != "hwaksan-vae":
        raise CheckpointError(f"{ckpt} is not an autoencoder checkpoint (kind {meta.get('kind')!r})")
    vae = vae_from_tensors(tensors, meta)
    meta["path"] = str(ckpt)
    return vae, meta
