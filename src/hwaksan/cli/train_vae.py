"""``hwaksan train-vae``: the KL autoencoder of latent diffusion (Rombach et al. 2022).

::

    hwaksan train-vae --data emoji --image-size 32 --steps 3000 --out runs/vae-emoji

Latent diffusion itself trains with ``hwaksan train --config configs/emoji-ldm.toml`` (the
``[latent]`` and ``[text]`` tables) and samples with ``hwaksan sample RUN --prompt "red apple"``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path

from ..data.images import DatasetUnavailable
from ..evaluation import features
from ..training.vae import VAEConfig, train_vae
from .args import MAX_COUNT, MAX_SEED, add_overwrite_argument, float_in, int_in
from .common import UserError, check_outputs, one_line, record_outputs

__all__ = ["register", "run_train_vae"]

_HELP = {
    "data": "image set: emoji, fashion, mnist, digits or folder:PATH (default: emoji)",
    "split": "training split (default: train); the PSNR is measured on the val split",
    "image_size": "resize images to SIZE x SIZE, a multiple of the down-sampling factor; 0 keeps the "
    "native size (default: 32)",
    "latent_channels": "latent channels (default: 4)",
    "model_channels": "width of the first level (default: 32)",
    "channel_mult": "width multipliers per level; N levels down-sample by 2^(N-1) (default: 1 2 2, 4x)",
    "num_res_blocks": "residual blocks per level (default: 1)",
    "mid_attention": "self-attention in the middle blocks (default: on; --no-mid-attention turns it off)",
    "loss": "reconstruction loss: l1 or l2 (default: l1)",
    "kl_weight": "weight of KL(q(z|x) || N(0, I)) against the per-pixel sum of the reconstruction error, "
    "LDM's convention (default: 1e-6)",
    "perceptual_weight": "weight of a feature-space loss on EfficientNet-Lite0 features (needs "
    "hwaksan.evaluation.image_features; default: 0, off)",
    "lr": "AdamW peak learning rate; linear warm-up then cosine decay to 5%% (default: 1e-3)",
    "warmup": "warm-up steps (default: 100)",
    "steps": "optimiser steps (default: 3000)",
    "batch_size": "images per step (default: 32)",
    "ema_decay": "EMA decay of the saved weights; 0 saves the raw weights (default: 0.999)",
    "hflip": "random horizontal flips (default: on; --no-hflip turns them off)",
    "seed": "seed of all randomness (default: 0)",
    "max_seconds": "stop after this many seconds of training (default: 0, no limit)",
    "bf16": "bfloat16 autocast for the forward pass (default: off)",
    "threads": "torch threads; 0 keeps torch's default (default: 0)",
    "log_every": "steps between records in metrics.jsonl (default: 50)",
    "init": "start from the weights of this train-vae output folder (continue training in slices; the "
    "network options must match); default: a fresh initialisation",
}


_TYPES: dict[str, Callable[[str], object]] = {
    "image_size": int_in(0, 4096),
    "latent_channels": int_in(1, 1024),
    "model_channels": int_in(1, 4096),
    "channel_mult": int_in(1, 64),
    "num_res_blocks": int_in(1, 64),
    "kl_weight": float_in(0.0, 1e6),
    "perceptual_weight": float_in(0.0, 1e6),
    "lr": float_in(0.0, 10.0, above=True),
    "warmup": int_in(0, 10**9),
    "steps": int_in(1, 10**9),
    "batch_size": int_in(1, MAX_COUNT),
    "ema_decay": float_in(0.0, 1.0, below=True),
    "seed": int_in(0, MAX_SEED),
    "max_seconds": float_in(0.0, 1e9),
    "threads": int_in(0, 1024),
    "log_every": int_in(1, 10**9),
}
"""The parser of each numeric option (finite, in range); the others are strings."""

OUTPUT_FILES = ("vae.safetensors", "vae.json", "recon.png", "loss.png", "metrics.jsonl")
"""The files train-vae writes into its folder."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hwaksan train-vae`` (one option per field of :class:`~hwaksan.training.vae.VAEConfig`)."""
    p = sub.add_parser(
        "train-vae",
        help="train the KL autoencoder of latent diffusion",
        description="Train a KL-regularised convolutional autoencoder (Rombach et al. 2022) on an image "
        "set. Writes DIR/vae.{safetensors,json} (weights, latent scale and shift, reconstruction PSNR), "
        "DIR/recon.png (held-out images over their reconstructions), DIR/loss.png and "
        'DIR/metrics.jsonl. Use it in a diffusion config as [latent] vae = "DIR".',
    )
    for f in dataclasses.fields(VAEConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=_HELP[f.name])
        elif f.name == "channel_mult":
            p.add_argument(flag, type=_TYPES[f.name], nargs="+", default=list(f.default), help=_HELP[f.name])
        else:
            choices = ["l1", "l2"] if f.name == "loss" else None
            p.add_argument(
                flag, type=_TYPES.get(f.name, str), default=f.default, choices=choices, help=_HELP[f.name]
            )
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: runs/vae-DATA)")
    add_overwrite_argument(p)
    p.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    p.set_defaults(func=run_train_vae)


def run_train_vae(args: argparse.Namespace) -> int:
    """Run ``hwaksan train-vae``; returns the exit status."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(VAEConfig)}
    values["channel_mult"] = tuple(values["channel_mult"])
    try:
        cfg = VAEConfig(**values)
    except ValueError as err:
        raise UserError(str(err)) from None
    name = cfg.data.replace(":", "-").replace("/", "_")
    out = Path(args.out) if args.out else Path("runs") / f"vae-{name}"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: give a folder")
    files = [out / f for f in OUTPUT_FILES]
    check_outputs(files, overwrite=args.overwrite)
    try:
        feature_map = _perceptual_features() if cfg.perceptual_weight > 0 else None
        with one_line(f"training into {out}"):
            train_vae(cfg, out, features=feature_map, progress=not args.no_progress)
    except (ValueError, DatasetUnavailable, FloatingPointError, ImportError) as err:
        raise UserError(" ".join(str(err).split())) from None
    record_outputs(*files)
    return 0


def _perceptual_features() -> Callable:
    """EfficientNet-Lite0 features from the evaluation package, differentiable in the images.

    Raises:
        ImportError: the evaluation package offers no differentiable feature map.
    """
    fn = getattr(features, "effnet_feature_map", None) or getattr(features, "differentiable_features", None)
    if fn is None:
        raise ImportError("hwaksan.evaluation.features has no differentiable EfficientNet feature map")
    return fn
