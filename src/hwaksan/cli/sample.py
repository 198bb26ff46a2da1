"""``hwaksan sample``: draw samples from any trained model with any sampler.

::

    hwaksan sample runs/digits --sampler heun --steps 18 --n 64 --seed 0 --out grid.png
    hwaksan sample runs/mnist --class 7 --guidance 3.0 [--negative-class 1] [--guidance-rescale 0.7]
    hwaksan sample runs/mnist --uncond --class 7 --classifier runs/classifier-mnist/classifier
    hwaksan sample runs/emoji-ldm --prompt "red apple" --guidance 3 [--negative-prompt "green"]
    hwaksan sample runs/moons --plan plan.json --n 2000 --out moons.png

An image model (pixel or latent: latents are decoded) gives a PNG grid; a 2-D model a scatter plot
and a CSV of the points; an audio, video or motion model a PNG and its media files beside it (WAV
per clip, animated GIF; :mod:`hwaksan.io.media`). A 2-D flow from another 2-D set starts from that
set's samples.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import IO

import numpy as np
import torch

from ..conditioning.text import TextEncoderUnavailable
from ..io.artifact import TrainedModel
from ..io.media import media_names, save_media, save_preview
from ..plotting import plot_samples_2d, save_image_grid
from ..samplers import SAMPLERS, SampleResult
from ..samplers._common import Callback
from ..tasks.reflow import push_forward, source_sample
from ..training.lowdim import toy_source
from .args import (
    add_class_arguments,
    add_device_argument,
    add_ema_arguments,
    add_guidance_arguments,
    add_n_argument,
    add_overwrite_argument,
    add_prompt_arguments,
    add_sampler_arguments,
    add_seed_argument,
    ema_index,
    int_in,
    pick_device,
    png_path,
)
from .common import UserError, check_outputs, load_model, one_line, record_outputs, seed_generators
from .guidance import sample_conditioning

__all__ = [
    "register",
    "cmd_sample",
    "default_n",
    "sample_points",
    "sample_images",
    "write_points_csv",
    "grid_scale",
]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hwaksan sample``."""
    p = sub.add_parser(
        "sample",
        help="draw samples from a checkpoint with any sampler",
        description="Sample a checkpoint of hwaksan train: a 2-D model gives a scatter plot and a CSV, "
        "an image model (pixel or latent) a PNG grid.",
    )
    p.add_argument(
        "checkpoint",
        help="a checkpoint written by hwaksan train (PATH, PATH.json or PATH.safetensors), or a run "
        "folder (its newest checkpoint is used)",
    )
    add_sampler_arguments(
        p,
        sampler="heun",
        steps=18,
        grid="karras",
        plan=True,
        sampler_help="sampler (default: heun): "
        + "; ".join(f"{k}: {v.description}" for k, v in SAMPLERS.items()),
        grid_help="time discretisation (default: karras), or a grid file written by hwaksan plan-steps --out",
    )
    add_n_argument(p, None, "number of samples (default: 64 images, or 2000 2-D points)")
    add_seed_argument(p, "image i uses seed SEED + i, whatever --n is (default: 0)")
    p.add_argument(
        "--out",
        default="grid.png",
        type=png_path,
        help="output PNG (default: grid.png); 2-D models also write OUT.csv beside it",
    )
    add_overwrite_argument(p)
    add_class_arguments(
        p,
        "class of every image for a class-conditional model (default: image i gets class i %% K)",
        aliases=("--class", "--label"),
        uncond=True,
    )
    add_ema_arguments(p, "sample")
    p.add_argument(
        "--nrow",
        type=int_in(1, 10_000),
        default=None,
        help="images per grid row (default: K classes, or a square)",
    )
    p.add_argument(
        "--scale",
        type=int_in(1, 64),
        default=None,
        help="pixel magnification of the PNG, 1..64 (default: about 96 px per image)",
    )
    add_device_argument(p, "sample")
    add_guidance_arguments(p)
    add_prompt_arguments(p)
    p.set_defaults(func=cmd_sample)


def cmd_sample(args: argparse.Namespace) -> int:
    """Run ``hwaksan sample``; returns the exit status.

    The PNG is checked before the model is loaded; a 2-D model's CSV (``OUT.csv``) once the model
    is known to be one, before sampling.
    """
    device = pick_device(args.device)
    (out,) = check_outputs([args.out], overwrite=args.overwrite, inputs=[args.checkpoint])
    model = load_model(args.checkpoint, "hwaksan sample", ema=ema_index(args), device=device)
    args.n = default_n(model, args)
    if model.is_lowdim:
        csv = out.with_suffix(".csv")
        check_outputs([csv], overwrite=args.overwrite, inputs=[args.checkpoint])
        res = sample_points(model, args)
        points = res.x.detach().cpu()
        with one_line("cannot write the outputs"):
            plot_samples_2d({f"{args.sampler}, {res.nfe} NFE": points}, out, cols=1)
            write_points_csv(points, csv)
        record_outputs(out, csv)
        print(
            f"{args.n} samples with {args.sampler} ({res.nfe} NFE)\noutputs:\n  plot    {out}\n"
            f"  samples {csv}"
        )
        return 0
    if not model.is_image:
        return _sample_media(model, args, out)
    result, nrow = sample_images(model, args)
    with one_line("cannot write the outputs"):
        save_image_grid(result.x, out, nrow=nrow, scale=grid_scale(result.x, args.scale))
    record_outputs(out)
    print(
        f"hwaksan sample: wrote {out} ({args.n} images, {args.sampler} {len(result.ts) - 1} steps = "
        f"{result.nfe} NFE, seeds {args.seed}..{args.seed + args.n - 1}) from {model.path}",
        file=sys.stderr,
    )
    return 0


def _sample_media(model: TrainedModel, args: argparse.Namespace, out: Path) -> int:
    """Sample an audio / video / motion model: the PNG ``out`` and the modality's media files
    beside it (:mod:`hwaksan.io.media`), all checked before sampling."""
    stem = out.with_suffix("")
    media = check_outputs(
        media_names(stem, args.n, model.modality, model.modality_params),
        overwrite=args.overwrite,
        inputs=[args.checkpoint],
    )
    result, nrow = sample_images(model, args)
    with one_line("cannot write the outputs"):
        save_preview(result.x, out, model.modality, model.modality_params, args.nrow or nrow)
        written = save_media(result.x, stem, model.modality, model.modality_params)
    record_outputs(out, *written)
    listing = "".join(f"\n  {p}" for p in [out, *written][:6]) + ("\n  ..." if len(written) > 5 else "")
    print(
        f"hwaksan sample: {args.n} {model.modality} samples, {args.sampler} {len(result.ts) - 1} steps = "
        f"{result.nfe} NFE, seeds {args.seed}..{args.seed + args.n - 1}, from {model.path}\n"
        f"outputs ({len(media) + 1} files):{listing}",
        file=sys.stderr,
    )
    return 0


def default_n(model: TrainedModel, args: argparse.Namespace) -> int:
    """``--n``, or its default: 2000 points for a 2-D model, 64 images otherwise."""
    return args.n if args.n is not None else (2000 if model.is_lowdim else 64)


def sample_points(model: TrainedModel, args: argparse.Namespace, callback: Callback = None) -> SampleResult:
    """The samples of a 2-D model as ``args`` ask: ``x (n, 2)`` in output space.

    A flow from another 2-D set runs its ODE map from that set's samples (on the uniform grid
    where ``--grid`` is the default ``karras``). ``callback`` is passed to the sampler
    (``{"i", "t", "x", "denoised"}`` after every step, data space).
    """
    n, device = default_n(model, args), model.device
    if model.source != "gaussian":  # a flow from another 2-D set: its ODE map from that set's samples
        grid = "uniform" if isinstance(args.grid, str) and args.grid == "karras" else args.grid
        x1 = source_sample(n, model.data_shape, args.seed, toy_source(model.source), device=device)
        with torch.no_grad():
            res = push_forward(
                model.denoiser,
                x1,
                sampler=args.sampler,
                steps=args.steps,
                grid=grid,
                callback=callback,
                **args.options,
            )
        return SampleResult(model.decode(res.x), res.ts, res.nfe)
    return model.sample(
        n,
        sampler=args.sampler,
        steps=args.steps,
        grid=args.grid,
        generator=seed_generators(args.seed, n, device),
        callback=callback,
        **args.options,
    )


def write_points_csv(points: torch.Tensor, target: str | Path | IO[str]) -> None:
    """Write points ``(n, 2)`` as the CSV of ``hwaksan sample`` (header ``x,y``) to a path or a
    text file."""
    np.savetxt(target, points.detach().cpu().double().numpy(), delimiter=",", header="x,y", comments="")


def sample_images(
    model: TrainedModel, args: argparse.Namespace, callback: Callback = None
) -> tuple[SampleResult, int]:
    """The images of an image model as ``args`` ask (latents decoded); returns the result,
    ``x (n, C, H, W)`` in [-1, 1], and the grid's images per row.

    ``callback`` is passed to the sampler (``{"i", "t", "x", "denoised"}`` after every step, in
    the model's data space: latents for a latent model).

    Raises:
        UserError: options that do not fit the model (one line).
    """
    n = default_n(model, args)
    try:
        conditioning = sample_conditioning(model, args)
    except (ValueError, TextEncoderUnavailable) as err:
        raise UserError(str(err)) from None
    result = model.sample(
        n,
        denoiser=conditioning.denoiser,
        sampler=args.sampler,
        steps=args.steps,
        grid=args.grid,
        cond=conditioning.cond,
        generator=seed_generators(args.seed, n, model.device),
        device=model.device,
        callback=callback,
        **args.options,
    )
    labelled = model.num_classes and not args.uncond and args.label is None and model.text is None
    nrow = args.nrow or conditioning.nrow or (model.num_classes if labelled else math.ceil(math.sqrt(n)))
    return result, min(nrow, n)


def grid_scale(images: torch.Tensor, scale: int | None = None) -> int:
    """The pixel magnification of a grid of ``images (n, C, H, W)``: ``scale``, or about 96 px per
    image."""
    return scale or max(1, 96 // max(images.shape[2:]))
