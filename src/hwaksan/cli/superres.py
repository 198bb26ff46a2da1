"""``hwaksan upscale`` and ``hwaksan cascade``: super-resolution models (Saharia et al. 2022) and
cascades (Ho et al. 2022).

A super-resolution model is a pixel-space model trained with ``data.lowres`` (its
:class:`~hwaksan.io.artifact.SuperResSpec`); the low-resolution image enters the network as extra
input channels, so a latent-diffusion model cannot be one: both commands refuse it in one line.

::

    hwaksan upscale low.png --checkpoint runs/sr --out up.png
    hwaksan cascade runs/base runs/sr --n 40 --out cascade.png
"""

from __future__ import annotations

import argparse

import torch

from ..io.artifact import SuperResSpec, TrainedModel
from ..samplers import SAMPLERS
from ..tasks import Stage, cascade, psnr, ssim, upscale
from ..utils import downsample, upsample
from .args import (
    MAX_COUNT,
    MAX_SEED,
    MAX_STEPS,
    add_class_arguments,
    add_n_argument,
    add_overwrite_argument,
    float_in,
    int_in,
    png_path,
)
from .common import load_model, print_outputs, seed_generators
from .images import (
    add_editing_sampler_arguments,
    add_image_arguments,
    check_image_outputs,
    class_labels,
    load_image,
    save_outputs,
)

__all__ = ["register", "cmd_upscale", "cmd_cascade", "DEFAULT_AUG_FRACTION"]

DEFAULT_AUG_FRACTION = 0.2
"""Default sampling augmentation level as a fraction of the training ``aug_max``
(docs/benchmarks-editing.md: the best of the sweep for the MNIST cascade)."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hwaksan upscale`` and ``hwaksan cascade``."""
    p = sub.add_parser(
        "upscale",
        help="super-resolution of an image with an SR model (hwaksan train with data.lowres)",
        description="Upscale a low-resolution IMAGE (the model's data.lowres size) with a super-resolution "
        "checkpoint. A full-size IMAGE is downsampled first and the result is scored against it (PSNR, "
        "SSIM, and the same for bicubic upsampling).",
    )
    add_image_arguments(
        p, "PNG image: low resolution, or full size (then downsampled and used as the reference)"
    )
    p.add_argument(
        "--aug-level",
        type=float_in(0.0, 1.0),
        default=None,
        help="noise-conditioning augmentation level s (a time of the process, in [0, 1]) given to the "
        f"model (default {DEFAULT_AUG_FRACTION} x the training aug_max; models trained without it: none)",
    )
    add_class_arguments(p, "class (class-conditional SR models)")
    add_n_argument(p, 4, "number of samples (default 4)")
    add_editing_sampler_arguments(p, "heun", 12)
    p.set_defaults(func=cmd_upscale)

    p = sub.add_parser(
        "cascade",
        help="sample a cascade: a base model then one or more super-resolution stages",
        description="Sample BASE, then upscale with each SR checkpoint in turn (Ho et al. 2022).",
    )
    p.add_argument("base", help="checkpoint or run folder of the base (low-resolution) model")
    p.add_argument("stages", nargs="+", help="checkpoints or run folders of the SR stages, in order")
    p.add_argument(
        "--out", required=True, type=png_path, help="output PNG; OUT-compare.png shows every stage"
    )
    add_overwrite_argument(p)
    p.add_argument("--n", type=int_in(1, MAX_COUNT), default=40, help="number of images (default 40)")
    add_class_arguments(p, "class of every image (default i %% K)")
    p.add_argument(
        "--aug-level",
        type=float_in(0.0, 1.0),
        action="append",
        default=None,
        help="augmentation level of each SR stage, repeated in order (default "
        f"{DEFAULT_AUG_FRACTION} x its training aug_max)",
    )
    p.add_argument("--sampler", default="heun", choices=list(SAMPLERS), help="sampler of every stage")
    p.add_argument(
        "--steps", type=int_in(1, MAX_STEPS), default=12, help="steps of the base model (default 12)"
    )
    p.add_argument(
        "--sr-steps", type=int_in(1, MAX_STEPS), default=12, help="steps of each SR stage (default 12)"
    )
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help="image i uses seed SEED + i")
    p.set_defaults(func=cmd_cascade)


def _superres(model: TrainedModel) -> SuperResSpec:
    """The model's super-resolution spec.

    Raises:
        ValueError: not a super-resolution model.
    """
    if model.superres is None:
        raise ValueError(f"{model.path} is not a super-resolution model (its config has no data.lowres)")
    return model.superres


def _aug_level(value: float | None, spec: SuperResSpec, model: TrainedModel) -> float | None:
    if not spec.aug_conditioning:
        if value not in (None, 0.0):
            raise ValueError(
                f"{model.path} was trained without noise-conditioning augmentation: drop --aug-level"
            )
        return None
    if value is None:
        return DEFAULT_AUG_FRACTION * spec.aug_max
    if not 0.0 <= value <= 1.0:
        raise ValueError("--aug-level is a time of the process in [0, 1]")
    return float(value)


def cmd_upscale(args: argparse.Namespace) -> int:
    """Run ``hwaksan upscale``; returns the exit status."""
    out, _ = check_image_outputs(args, [args.image, args.checkpoint])
    model = load_model(args.checkpoint, "hwaksan upscale", image=True, pixel=True)
    spec = _superres(model)
    lowres = spec.lowres
    level = _aug_level(args.aug_level, spec, model)
    c, h, w = model.output_shape
    x = load_image(args.image, c, None).to(model.device)
    truth = None
    if tuple(x.shape[-2:]) == (h, w):
        truth, x = x, downsample(x, lowres)
    elif tuple(x.shape[-2:]) != (lowres, lowres):
        raise ValueError(
            f"{args.image} is {x.shape[-1]}x{x.shape[-2]}: give a {lowres}x{lowres} low-resolution image "
            f"(or a {w}x{h} one, which is downsampled first)"
        )
    xs = x.repeat(args.n, 1, 1, 1)
    with torch.no_grad():
        res = upscale(
            model.denoiser,
            xs,
            (h, w),
            aug_level=level,
            labels=class_labels(model, args.label, args.n),
            sampler=args.sampler,
            steps=args.steps,
            grid=args.grid,
            generator=seed_generators(args.seed, args.n, model.device),
            **args.options,
        )
    bicubic = upsample(x, (h, w))
    panels = [bicubic, res.x] + ([truth] if truth is not None else [])
    out, cmp = save_outputs(res.x, out, panels)
    msg = f"hwaksan upscale: {lowres}x{lowres} -> {w}x{h}, aug level {level}, {res.nfe} NFE"
    if truth is not None:
        t = truth.expand_as(res.x)
        msg += (
            f"; PSNR {float(psnr(res.x, t).mean()):.2f} dB (bicubic {float(psnr(bicubic, truth)[0]):.2f}), "
            f"SSIM {float(ssim(res.x, t).mean()):.3f} (bicubic {float(ssim(bicubic, truth)[0]):.3f})"
        )
    print(msg)
    print_outputs(
        "upscale",
        {
            "upscaled": out,
            "compare": f"{cmp} (bicubic, results" + (", original)" if truth is not None else ")"),
        },
    )
    return 0


def cmd_cascade(args: argparse.Namespace) -> int:
    """Run ``hwaksan cascade``; returns the exit status."""
    out, _ = check_image_outputs(args, [args.base, *args.stages])
    base = load_model(args.base, "hwaksan cascade", image=True, pixel=True)
    k = base.num_classes
    if k:
        labels = class_labels(base, args.label, args.n) if args.label is not None else base.labels(args.n)
    elif args.label is not None:
        raise ValueError("--class needs a class-conditional base model")
    else:
        labels = None
    channels, *size = base.output_shape
    stages = [
        Stage(
            base.denoiser, tuple(size), use_labels=labels is not None, sampler=args.sampler, steps=args.steps
        )
    ]
    levels = args.aug_level or []
    for i, path in enumerate(args.stages):
        model = load_model(path, "hwaksan cascade", image=True, pixel=True)
        spec = _superres(model)
        if spec.lowres != size[0]:
            raise ValueError(
                f"stage {i + 1} ({model.path}) upscales {spec.lowres}x{spec.lowres} but receives "
                f"{size[1]}x{size[0]}"
            )
        level = _aug_level(levels[i] if i < len(levels) else None, spec, model)
        size = list(model.output_shape[1:])
        stages.append(
            Stage(
                model.denoiser,
                tuple(size),
                aug_level=level,
                use_labels=bool(model.num_classes) and labels is not None,
                sampler=args.sampler,
                steps=args.sr_steps,
            )
        )
    with torch.no_grad():
        results = cascade(
            stages, args.n, channels, labels=labels, generator=seed_generators(args.seed, args.n)
        )
    final = results[-1].x
    panels = [upsample(r.x.clamp(-1, 1), tuple(size)) for r in results]
    out, cmp = save_outputs(final, out, panels)
    nfe = sum(r.nfe for r in results)
    print(
        f"hwaksan cascade: {' -> '.join(str(r.x.shape[-1]) for r in results)} pixels, {args.n} images, "
        f"{nfe} NFE in all (" + ", ".join(str(r.nfe) for r in results) + ")"
    )
    print_outputs("cascade", {"images": out, "stages": f"{cmp} (each stage's images, upsampled, in a row)"})
    return 0
