"""``hwaksan inpaint``: RePaint inpainting (Lugmayr et al. 2022) with any trained image model.

A latent model fills its latent grid: the mask moves to the latent grid (a cell is known only where
its whole patch is known), the result is decoded and the known pixels are pasted back
(:meth:`hwaksan.io.artifact.TrainedModel.apply`).

::

    hwaksan inpaint digit.png mask.png --checkpoint runs/digits --jump 10 --resample 10 --out i.png
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from ..io.artifact import TrainedModel
from ..samplers import SampleResult
from ..samplers._common import Callback
from ..tasks import inpaint
from .args import add_class_arguments, add_n_argument, add_repaint_arguments, repaint_summary
from .common import load_model, print_outputs, seed_generators
from .images import (
    MASK_HELP,
    add_editing_sampler_arguments,
    add_image_arguments,
    check_image_outputs,
    class_labels,
    load_image,
    load_mask,
    save_outputs,
)

__all__ = ["register", "cmd_inpaint", "Inpainted", "inpaint_images"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hwaksan inpaint``."""
    p = sub.add_parser(
        "inpaint",
        help="RePaint inpainting: fill the black region of MASK",
        description="RePaint (Lugmayr et al. 2022): at every step the known region is replaced by the "
        "forward-noised image; with --resample n > 1 every --jump j levels the walk goes back up j levels "
        "n - 1 times (resampling), which harmonises the fill with the known region. " + MASK_HELP,
        epilog=MASK_HELP,
    )
    add_image_arguments(p, "PNG image of the model's output size and channels")
    p.add_argument("mask", help="PNG mask of the image's size: white = keep, black = fill")
    add_repaint_arguments(p, 10)
    add_class_arguments(p, "class (default: unconditional)")
    add_n_argument(p, 4, "number of completions (default 4)")
    p.add_argument("--resize", action="store_true", help="resize IMAGE to the model's size")
    add_editing_sampler_arguments(p, "ddpm", 50)
    p.set_defaults(func=cmd_inpaint)


def cmd_inpaint(args: argparse.Namespace) -> int:
    """Run ``hwaksan inpaint``; returns the exit status."""
    out, _ = check_image_outputs(args, [args.image, args.mask, args.checkpoint])
    model = load_model(args.checkpoint, "hwaksan inpaint", image=True)
    done = inpaint_images(model, args)
    res, x, mask = done.result, done.image, done.mask
    known_err = float(((res.x - x) * mask).abs().max())
    shown = x * mask + (1 - mask) * -0.4  # the unknown region in grey
    out, cmp = save_outputs(res.x, out, [x, shown, res.x])
    print(
        f"hwaksan inpaint: {repaint_summary(args)}: {res.nfe} NFE; "
        f"{int(mask.sum())} of {mask.numel()} pixels kept (max error there {known_err:.2g})"
    )
    print_outputs(
        "inpaint", {"completed": out, "compare": f"{cmp} (image, masked image (grey = fill), results)"}
    )
    return 0


@dataclass
class Inpainted:
    """What :func:`inpaint_images` returns: the completions ``result.x (n, C, H, W)``, the image
    ``(1, C, H, W)`` and the mask ``(1, 1, H, W)`` (1 = keep) as read from their files."""

    result: SampleResult
    image: torch.Tensor
    mask: torch.Tensor


def inpaint_images(model: TrainedModel, args: argparse.Namespace, callback: Callback = None) -> Inpainted:
    """RePaint ``args.n`` completions of ``args.image`` outside ``args.mask`` (files) as ``args`` ask.

    ``callback`` is called after every move of the walk with ``{"i", "t", "x", "up"}`` (data
    space: latents for a latent model; no ``denoised``).

    Raises:
        ValueError: an image or mask that does not fit the model, or a class out of range (one line).
    """
    c, h, w = model.output_shape
    x = load_image(args.image, c, (h, w), args.resize).to(model.device)
    mask = load_mask(args.mask, x).to(model.device)
    xs = x.repeat(args.n, 1, 1, 1)
    res = model.apply(
        inpaint,
        xs,
        mask=mask,
        sampler=args.sampler,
        steps=args.steps,
        grid=args.grid,
        jump=args.jump,
        resample=args.resample,
        reconstruction=args.reconstruction,
        cond=class_labels(model, args.label, args.n),
        generator=seed_generators(args.seed, args.n, model.device),
        callback=callback,
        **args.options,
    )
    return Inpainted(res, x, mask)
