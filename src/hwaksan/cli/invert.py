"""``hwaksan invert``: DDIM inversion of an image to noise and back, optionally to another class.

A latent model inverts the image's latents (encoded first; the reconstruction and the edit are
decoded).

::

    hwaksan invert digit.png --checkpoint runs/digits --class 1 --to-class 2 --steps 50 --out inv.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..io.checkpoint import save_tensors
from ..samplers import GRIDS, get_sampler, make_grid
from ..tasks import invert_and_generate
from ..tasks.edit import guided
from .args import GUIDANCE_WEIGHT, MAX_STEPS, add_class_arguments, int_in
from .common import load_model, one_line, print_outputs, record_outputs
from .images import (
    add_image_arguments,
    check_image_outputs,
    class_labels,
    guidance_weight,
    load_image,
    save_outputs,
)

__all__ = ["register", "cmd_invert"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hwaksan invert``."""
    p = sub.add_parser(
        "invert",
        help="DDIM inversion of an image to noise and back (optionally edited to another class)",
        description="Run the deterministic DDIM / probability-flow ODE step from t = 0 up the grid to get "
        "the latent of IMAGE, then DDIM back down under the same class (a reconstruction) or under "
        "--to-class (an edit). Writes the reconstruction or edit, a comparison strip and the latent.",
    )
    add_image_arguments(p, "PNG image of the model's output size and channels")
    p.add_argument(
        "--steps", type=int_in(1, MAX_STEPS), default=50, help="grid steps of both passes (default 50)"
    )
    p.add_argument("--grid", default="karras", choices=list(GRIDS), help="time grid (default karras)")
    add_class_arguments(p, "class of IMAGE for the inversion")
    p.add_argument("--to-class", type=int_in(0), default=None, help="class of the reverse pass (an edit)")
    p.add_argument(
        "--guidance", type=GUIDANCE_WEIGHT, default=None, help="guidance weight of the reverse pass (1 = off)"
    )
    p.add_argument(
        "--fixed-point",
        type=int_in(0, 100),
        default=0,
        metavar="K",
        help="fixed-point iterations per inversion step (0: plain DDIM inversion; 2-5 make the "
        "reconstruction exact up to the fixed point)",
    )
    p.add_argument("--resize", action="store_true", help="resize IMAGE to the model's size")
    p.set_defaults(func=cmd_invert)


def cmd_invert(args: argparse.Namespace) -> int:
    """Run ``hwaksan invert``; returns the exit status."""
    latent_stem = Path(args.out).with_suffix(".latent")
    latent_files = [latent_stem.with_name(latent_stem.name + ext) for ext in (".safetensors", ".json")]
    out, _ = check_image_outputs(args, [args.image, args.checkpoint], latent_files)
    model = load_model(args.checkpoint, "hwaksan invert", image=True)
    c, h, w = model.output_shape
    x = load_image(args.image, c, (h, w), args.resize).to(model.device)
    src = class_labels(model, args.label, 1)
    dst = class_labels(model, args.to_class, 1, "--to-class")
    guidance = guidance_weight(args.guidance, dst if dst is not None else src)
    ts = make_grid(model.process, args.steps, args.grid)
    with torch.no_grad():
        latent, rec = invert_and_generate(
            model.denoiser, model.encode(x), ts, cond=src, fixed_point_iters=args.fixed_point
        )
        reconstruction = model.decode(rec.x)
        panels = [x, reconstruction]
        edit = None
        if dst is not None:
            z = get_sampler("ddim").fn(guided(model.denoiser, guidance), latent, ts, cond=dst)
            edit = model.decode(z)
            panels.append(edit)
    err = float((reconstruction - x).abs().max())
    rmse = float((reconstruction - x).pow(2).mean().sqrt())
    out, cmp = save_outputs(edit if edit is not None else reconstruction, out, panels)
    with one_line("cannot write the latent"):
        lat = save_tensors(
            latent_stem,
            {"latent": latent.detach().cpu(), "ts": ts},
            {"kind": "hwaksan-inversion", "checkpoint": str(model.path), "image": str(args.image)},
        )
    record_outputs(*latent_files)
    print(
        f"hwaksan invert: DDIM inversion over {args.steps} {args.grid} steps (fixed-point iterations "
        f"{args.fixed_point}); reconstruction RMSE {rmse:.4g}, max error {err:.4g} (images in [-1, 1])"
    )
    what = f"the edit to class {args.to_class}" if edit is not None else "reconstruction"
    print_outputs(
        "invert",
        {
            "output": f"{out} ({what})",
            "compare": f"{cmp} (input, reconstruction" + (", edit)" if edit is not None else ")"),
            "latent": lat,
        },
    )
    return 0
