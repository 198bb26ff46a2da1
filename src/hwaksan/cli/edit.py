"""``hwaksan edit``: SDEdit (Meng et al. 2022) of an image with any trained image model.

A latent model edits in its latent space: the image is encoded, noised and denoised there, and
decoded (:meth:`hwaksan.io.artifact.TrainedModel.apply`).

::

    hwaksan edit digit.png --checkpoint runs/digits --strength 0.5 --class 3 --guidance 2 --out e.png
"""

from __future__ import annotations

import argparse

import torch

from ..io.artifact import TrainedModel
from ..samplers import SampleResult
from ..samplers._common import Callback
from ..tasks import sdedit
from .args import GUIDANCE_WEIGHT, add_class_arguments, add_n_argument, float_in
from .common import load_model, print_outputs, seed_generators
from .images import (
    add_editing_sampler_arguments,
    add_image_arguments,
    check_image_outputs,
    class_labels,
    guidance_weight,
    load_image,
    save_outputs,
)

__all__ = ["register", "cmd_edit", "edit_images"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hwaksan edit``."""
    p = sub.add_parser(
        "edit",
        help="SDEdit: noise an image to a strength and denoise it (optionally as another class)",
        description="SDEdit (Meng et al. 2022): noise IMAGE to --strength on the sampler's grid and denoise "
        "it, optionally under another class and classifier-free guidance. Strength s is the fraction of the "
        "grid's noise range (karras: on sigma^(1/rho); uniform: t = s; log_snr: on log sigma); 0 returns "
        "the image, 1 starts from the prior's noise level. A latent model edits the image's latents. "
        "See docs/editing.md.",
    )
    add_image_arguments(p, "PNG image of the model's output size and channels")
    p.add_argument(
        "--strength", type=float_in(0.0, 1.0), default=0.5, help="edit strength in [0, 1] (default 0.5)"
    )
    add_class_arguments(p, "class to edit towards (conditional models)")
    p.add_argument(
        "--guidance", type=GUIDANCE_WEIGHT, default=None, help="classifier-free guidance weight w (1 = off)"
    )
    add_n_argument(p, 4, "number of edits (seeds SEED..SEED+n-1; default 4)")
    p.add_argument("--resize", action="store_true", help="resize IMAGE to the model's size")
    add_editing_sampler_arguments(p, "heun", 12)
    p.set_defaults(func=cmd_edit)


def cmd_edit(args: argparse.Namespace) -> int:
    """Run ``hwaksan edit``; returns the exit status."""
    out, _ = check_image_outputs(args, [args.image, args.checkpoint])
    model = load_model(args.checkpoint, "hwaksan edit", image=True)
    res, x = edit_images(model, args)
    out, cmp = save_outputs(res.x, out, [x, res.x])
    t0 = float(res.ts[0])
    sigma = float(model.process.sigma_tilde(t0)) if t0 > 0 else 0.0
    print(
        f"hwaksan edit: strength {args.strength} starts at t = {t0:.4g} (sigma~ = {sigma:.4g}); "
        f"{len(res.ts) - 1} steps of {args.sampler}, {res.nfe} NFE, from {model.path}"
    )
    print_outputs("edit", {"edited": out, "compare": f"{cmp} (input, then the edits)"})
    return 0


def edit_images(
    model: TrainedModel, args: argparse.Namespace, callback: Callback = None
) -> tuple[SampleResult, torch.Tensor]:
    """SDEdit ``args.n`` edits of ``args.image`` (a file) as ``args`` ask; returns the result
    ``x (n, C, H, W)`` and the image ``(1, C, H, W)`` as read.

    ``callback`` is passed to the sampler (``{"i", "t", "x", "denoised"}`` after every step, data
    space: latents for a latent model).

    Raises:
        ValueError: an image that does not fit the model, a class out of range, or guidance
            without a class (one line).
    """
    c, h, w = model.output_shape
    x = load_image(args.image, c, (h, w), args.resize).to(model.device)
    xs = x.repeat(args.n, 1, 1, 1)
    labels = class_labels(model, args.label, args.n)
    guidance = guidance_weight(args.guidance, labels)
    res = model.apply(
        sdedit,
        xs,
        args.strength,
        sampler=args.sampler,
        steps=args.steps,
        grid=args.grid,
        cond=labels,
        guidance=guidance,
        generator=seed_generators(args.seed, args.n, model.device),
        callback=callback,
        **args.options,
    )
    return res, x
