"""``hwaksan`` sub-commands for editing with a trained model: edit, invert, inpaint, upscale, cascade.

Every command loads a checkpoint of ``hwaksan train`` (a run folder: its newest checkpoint), reads
PNG images scaled to [-1, 1], runs a recipe of :mod:`hwaksan.tasks` and writes a PNG (``--out``) plus
a comparison strip beside it (``OUT-compare.png``); it prints where both went.

Conventions: an IMAGE must have the model's size (``--resize`` resizes it) and channels (a grey
image saved as RGB with equal channels is accepted); a MASK is a PNG of the image's size, **white
(>= 128) = keep, black = fill**, grey-scale (an RGB mask must have equal channels).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from ..samplers import GRIDS, SAMPLERS

__all__ = ["register", "load_image", "load_mask", "save_compare"]

_EPILOG_MASK = "MASK: a PNG of the image's size, white (>= 128) = keep, black (< 128) = fill."


# ------------------------------------------------------------------------------------------------
# images


def load_image(path: str | Path, channels: int, size: tuple[int, int] | None, resize: bool = False):
    """A PNG as a ``(1, C, H, W)`` tensor in [-1, 1].

    Raises:
        ValueError: missing file, wrong channel count, or wrong size without ``resize`` (the
            message names the fix).
    """
    import numpy as np
    from PIL import Image

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"no image at {p}")
    img = Image.open(p)
    if img.mode in ("1", "L", "LA", "I", "I;16", "F"):
        img = img.convert("L")
    else:
        img = img.convert("RGB")
    x = torch.from_numpy(np.asarray(img, dtype=np.float32).copy())
    x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
    x = x / 127.5 - 1.0
    if x.shape[0] != channels:
        if channels == 1 and x.shape[0] == 3 and bool((x[0] == x[1]).all() and (x[1] == x[2]).all()):
            x = x[:1]
        else:
            kind = "grey-scale" if channels == 1 else "RGB"
            raise ValueError(
                f"{p} has {x.shape[0]} channel(s) but the model takes {channels} ({kind}): convert the "
                f"image to {kind} first"
            )
    x = x[None]
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        if not resize:
            raise ValueError(
                f"{p} is {x.shape[-1]}x{x.shape[-2]} but the model works on {size[1]}x{size[0]} images: "
                "resize it, or pass --resize"
            )
        from ..utils import downsample, upsample

        x = (downsample if x.shape[-1] > size[1] else upsample)(x, size)
    return x


def load_mask(path: str | Path, image: torch.Tensor) -> torch.Tensor:
    """A mask PNG as ``(1, 1, H, W)`` in {0, 1}: white (>= 128) = 1 = keep, black = 0 = fill.

    Raises:
        ValueError: missing file, a size other than the image's, or an RGB mask with unequal
            channels.
    """
    import numpy as np
    from PIL import Image

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"no mask at {p}")
    img = Image.open(p)
    if img.mode not in ("1", "L", "LA", "I", "I;16", "F"):
        arr = np.asarray(img.convert("RGB"), dtype=np.float32)
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])):
            raise ValueError(
                f"{p} is a colour image: a mask must be grey-scale (white = keep, black = fill), one "
                "channel or RGB with equal channels"
            )
    arr = np.asarray(img.convert("L"), dtype=np.float32)
    h, w = image.shape[-2:]
    if arr.shape != (h, w):
        raise ValueError(
            f"mask {p} is {arr.shape[1]}x{arr.shape[0]} but the image is {w}x{h}: give a mask of the "
            "image's size"
        )
    return torch.from_numpy((arr >= 128).astype(np.float32))[None, None]


def save_compare(panels: list[torch.Tensor], path: Path, scale: int) -> Path:
    """Save images ``(N, C, H, W)`` side by side in one row."""
    from ..plotting import save_image_grid

    images = torch.cat([p.reshape(-1, *p.shape[-3:]) for p in panels])
    return save_image_grid(images, path, nrow=len(images), scale=scale)


def _save_outputs(x: torch.Tensor, out: Path, compare: list[torch.Tensor]) -> tuple[Path, Path]:
    from ..plotting import save_image_grid

    out.parent.mkdir(parents=True, exist_ok=True)
    scale = max(1, 96 // max(x.shape[-2:]))
    save_image_grid(x, out, nrow=min(len(x), 10) if len(x) > 1 else 1, scale=scale)
    cmp = out.with_name(out.stem + "-compare.png")
    save_compare(compare, cmp, scale)
    return out, cmp


# ------------------------------------------------------------------------------------------------
# checkpoints and conditions


def _load(checkpoint: str):
    from ..io.checkpoint import load_model, resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    model, meta = load_model(path)
    shape = meta.get("image_shape")
    if not shape:
        raise ValueError(f"{path} has no image_shape: not an image checkpoint of hwaksan train")
    return model, meta, tuple(int(v) for v in shape), int(meta.get("num_classes") or 0), path


def _labels(k: int, cls: int | None, n: int, what: str = "--class") -> torch.Tensor | None:
    if cls is None:
        return None
    if not k:
        raise ValueError(f"{what} needs a class-conditional model; this one has no classes")
    if not 0 <= cls < k:
        raise ValueError(f"{what} must be in 0..{k - 1}")
    return torch.full((n,), cls, dtype=torch.long)


def _gens(seed: int, n: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def _check_guidance(args: argparse.Namespace, labels) -> float | None:
    g = getattr(args, "guidance", None)
    if g is None or g == 1.0:
        return None
    if labels is None:
        raise ValueError("--guidance needs a class (--class / --to-class) to guide towards")
    return float(g)


def _report(cmd: str, lines: dict[str, Any]) -> None:
    print(f"hwaksan {cmd}: outputs:")
    for key, val in lines.items():
        print(f"  {key:12s} {val}")


# ------------------------------------------------------------------------------------------------
# commands


def cmd_edit(args: argparse.Namespace) -> int:
    from ..tasks import sdedit

    model, meta, shape, k, path = _load(args.checkpoint)
    x = load_image(args.image, shape[0], shape[1:], args.resize).repeat(args.n, 1, 1, 1)
    labels = _labels(k, args.cls, args.n)
    guidance = _check_guidance(args, labels)
    with torch.no_grad():
        res = sdedit(
            model,
            x,
            args.strength,
            sampler=args.sampler,
            steps=args.steps,
            grid=args.grid,
            cond=labels,
            guidance=guidance,
            generator=_gens(args.seed, args.n),
            **args.options,
        )
    out, cmp = _save_outputs(res.x, Path(args.out), [x[:1], res.x])
    t0 = float(res.ts[0])
    print(
        f"hwaksan edit: strength {args.strength} starts at t = {t0:.4g} (sigma~ = "
        f"{float(model.process.sigma_tilde(t0)) if t0 > 0 else 0.0:.4g}); {len(res.ts) - 1} steps of "
        f"{args.sampler}, {res.nfe} NFE, from {path}"
    )
    _report("edit", {"edited": out, "compare": f"{cmp} (input, then the edits)"})
    return 0


def cmd_invert(args: argparse.Namespace) -> int:
    from ..io.checkpoint import save_tensors
    from ..samplers import make_grid
    from ..tasks import invert_and_generate

    model, meta, shape, k, path = _load(args.checkpoint)
    x = load_image(args.image, shape[0], shape[1:], args.resize)
    src = _labels(k, args.cls, 1)
    dst = _labels(k, args.to_class, 1, "--to-class")
    guidance = _check_guidance(args, dst if dst is not None else src)
    ts = make_grid(model.process, args.steps, args.grid)
    with torch.no_grad():
        latent, rec = invert_and_generate(model, x, ts, cond=src, fixed_point_iters=args.fixed_point)
        panels = [x, rec.x]
        edit = None
        if dst is not None:
            from ..samplers import get_sampler
            from ..tasks.edit import guided

            edit = get_sampler("ddim").fn(guided(model, guidance), latent, ts, cond=dst)
            panels.append(edit)
    err = float((rec.x - x).abs().max())
    rmse = float((rec.x - x).pow(2).mean().sqrt())
    out, cmp = _save_outputs(edit if edit is not None else rec.x, Path(args.out), panels)
    lat = save_tensors(
        Path(args.out).with_suffix(".latent"),
        {"latent": latent, "ts": ts},
        {"kind": "hwaksan-inversion", "checkpoint": str(path), "image": str(args.image)},
    )
    print(
        f"hwaksan invert: DDIM inversion over {args.steps} {args.grid} steps (fixed-point iterations "
        f"{args.fixed_point}); reconstruction RMSE {rmse:.4g}, max error {err:.4g} (images in [-1, 1])"
    )
    what = f"the edit to class {args.to_class}" if edit is not None else "reconstruction"
    _report(
        "invert",
        {
            "output": f"{out} ({what})",
            "compare": f"{cmp} (input, reconstruction" + (", edit)" if edit is not None else ")"),
            "latent": lat,
        },
    )
    return 0


def cmd_inpaint(args: argparse.Namespace) -> int:
    from ..tasks import inpaint

    model, meta, shape, k, path = _load(args.checkpoint)
    x = load_image(args.image, shape[0], shape[1:], args.resize)
    mask = load_mask(args.mask, x)
    xs = x.repeat(args.n, 1, 1, 1)
    labels = _labels(k, args.cls, args.n)
    with torch.no_grad():
        res = inpaint(
            model,
            xs,
            mask,
            sampler=args.sampler,
            steps=args.steps,
            grid=args.grid,
            jump=args.jump,
            resample=args.resample,
            cond=labels,
            generator=_gens(args.seed, args.n),
            **args.options,
        )
    known_err = float(((res.x - xs) * mask).abs().max())
    shown = x * mask + (1 - mask) * -0.4  # the unknown region in grey
    out, cmp = _save_outputs(res.x, Path(args.out), [x, shown, res.x])
    print(
        f"hwaksan inpaint: RePaint with {args.sampler} on {args.steps} {args.grid} steps, jump {args.jump}, "
        f"{args.resample} resampling(s): {res.nfe} NFE; {int(mask.sum())} of {mask.numel()} pixels kept "
        f"(max error there {known_err:.2g})"
    )
    _report("inpaint", {"completed": out, "compare": f"{cmp} (image, masked image (grey = fill), results)"})
    return 0


def _sr_info(meta: dict, path) -> tuple[int, float, bool]:
    cfg = meta.get("config", {})
    lowres = int(cfg.get("data", {}).get("lowres") or 0)
    if not lowres:
        raise ValueError(f"{path} is not a super-resolution model (its config has no data.lowres)")
    aug_max = float(cfg.get("diffusion", {}).get("aug_max") or 0.0)
    aug = bool(meta.get("network", {}).get("config", {}).get("aug_conditioning"))
    return lowres, aug_max, aug


def _aug_level(value: float | None, aug_max: float, aug: bool, path) -> float | None:
    if not aug:
        if value not in (None, 0.0):
            raise ValueError(f"{path} was trained without noise-conditioning augmentation: drop --aug-level")
        return None
    if value is None:
        return DEFAULT_AUG_FRACTION * aug_max
    if not 0.0 <= value <= 1.0:
        raise ValueError("--aug-level is a time of the process in [0, 1]")
    return float(value)


#: Default sampling augmentation level as a fraction of the training ``aug_max``
#: (docs/benchmarks-editing.md: the best of the sweep for the MNIST cascade).
DEFAULT_AUG_FRACTION = 0.2


def cmd_upscale(args: argparse.Namespace) -> int:
    from ..tasks import psnr, ssim, upscale
    from ..utils import downsample, upsample

    model, meta, shape, k, path = _load(args.checkpoint)
    lowres, aug_max, aug = _sr_info(meta, path)
    level = _aug_level(args.aug_level, aug_max, aug, path)
    x = load_image(args.image, shape[0], None)
    truth = None
    if tuple(x.shape[-2:]) == tuple(shape[1:]):
        truth, x = x, downsample(x, lowres)
    elif tuple(x.shape[-2:]) != (lowres, lowres):
        raise ValueError(
            f"{args.image} is {x.shape[-1]}x{x.shape[-2]}: give a {lowres}x{lowres} low-resolution image "
            f"(or a {shape[2]}x{shape[1]} one, which is downsampled first)"
        )
    xs = x.repeat(args.n, 1, 1, 1)
    labels = _labels(k, args.cls, args.n)
    with torch.no_grad():
        res = upscale(
            model,
            xs,
            shape[1:],
            aug_level=level,
            labels=labels,
            sampler=args.sampler,
            steps=args.steps,
            grid=args.grid,
            generator=_gens(args.seed, args.n),
            **args.options,
        )
    bicubic = upsample(x, shape[1:])
    panels = [bicubic, res.x] + ([truth] if truth is not None else [])
    out, cmp = _save_outputs(res.x, Path(args.out), panels)
    msg = f"hwaksan upscale: {lowres}x{lowres} -> {shape[2]}x{shape[1]}, aug level {level}, {res.nfe} NFE"
    if truth is not None:
        t = truth.expand_as(res.x)
        msg += (
            f"; PSNR {float(psnr(res.x, t).mean()):.2f} dB (bicubic {float(psnr(bicubic, truth)[0]):.2f}), "
            f"SSIM {float(ssim(res.x, t).mean()):.3f} (bicubic {float(ssim(bicubic, truth)[0]):.3f})"
        )
    print(msg)
    _report(
        "upscale",
        {
            "upscaled": out,
            "compare": f"{cmp} (bicubic, results" + (", original)" if truth is not None else ")"),
        },
    )
    return 0


def cmd_cascade(args: argparse.Namespace) -> int:
    from ..tasks import Stage, cascade
    from ..utils import upsample

    base, bmeta, bshape, k, bpath = _load(args.base)
    labels = None
    if k:
        labels = _labels(k, args.cls, args.n) if args.cls is not None else torch.arange(args.n) % k
    elif args.cls is not None:
        raise ValueError("--class needs a class-conditional base model")
    stages = [Stage(base, bshape[1:], use_labels=labels is not None, sampler=args.sampler, steps=args.steps)]
    levels = args.aug_level or []
    size = bshape[1:]
    for i, ck in enumerate(args.stages):
        model, meta, shape, sk, path = _load(ck)
        lowres, aug_max, aug = _sr_info(meta, path)
        if lowres != size[0]:
            raise ValueError(
                f"stage {i + 1} ({path}) upscales {lowres}x{lowres} but receives {size[1]}x{size[0]}"
            )
        level = _aug_level(levels[i] if i < len(levels) else None, aug_max, aug, path)
        stages.append(
            Stage(
                model,
                shape[1:],
                aug_level=level,
                use_labels=bool(sk) and labels is not None,
                sampler=args.sampler,
                steps=args.sr_steps,
            )
        )
        size = shape[1:]
    with torch.no_grad():
        results = cascade(stages, args.n, bshape[0], labels=labels, generator=_gens(args.seed, args.n))
    final = results[-1].x
    out, cmp = _save_outputs(final, Path(args.out), [upsample(r.x.clamp(-1, 1), size) for r in results])
    nfe = sum(r.nfe for r in results)
    print(
        f"hwaksan cascade: {' -> '.join(str(r.x.shape[-1]) for r in results)} pixels, {args.n} images, "
        f"{nfe} NFE in all (" + ", ".join(str(r.nfe) for r in results) + ")"
    )
    _report("cascade", {"images": out, "stages": f"{cmp} (each stage's images, upsampled, in a row)"})
    return 0


# ------------------------------------------------------------------------------------------------
# parsers


def _sampling_args(p: argparse.ArgumentParser, sampler: str, steps: int, grid: str = "karras") -> None:
    from ..training.cli_train import sampler_options

    p.add_argument(
        "--sampler",
        default=sampler,
        choices=list(SAMPLERS),
        help=f"sampler (default {sampler}); see hwaksan samplers",
    )
    p.add_argument("--steps", type=int, default=steps, help=f"sampler steps (default {steps})")
    p.add_argument("--grid", default=grid, choices=list(GRIDS), help=f"time grid (default {grid})")
    p.add_argument(
        "--options",
        type=sampler_options,
        default={},
        metavar="JSON",
        help="sampler options, e.g. '{\"eta\": 1}'",
    )
    p.add_argument("--seed", type=int, default=0, help="result i uses seed SEED + i (default 0)")


def _common(p: argparse.ArgumentParser, image_help: str) -> None:
    p.add_argument("image", help=image_help)
    p.add_argument("--checkpoint", required=True, help="a checkpoint or run folder of hwaksan train")
    p.add_argument("--out", required=True, help="output PNG; OUT-compare.png is written beside it")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``edit``, ``invert``, ``inpaint``, ``upscale`` and ``cascade`` to ``sub``."""
    p = sub.add_parser(
        "edit",
        help="SDEdit: noise an image to a strength and denoise it (optionally as another class)",
        description="SDEdit (Meng et al. 2022): noise IMAGE to --strength on the sampler's grid and denoise "
        "it, optionally under another class and classifier-free guidance. Strength s is the fraction of the "
        "grid's noise range (karras: on sigma^(1/rho); uniform: t = s; log_snr: on log sigma); 0 returns "
        "the image, 1 starts from the prior's noise level. See docs/editing.md.",
    )
    _common(p, "PNG image of the model's size and channels")
    p.add_argument("--strength", type=float, default=0.5, help="edit strength in [0, 1] (default 0.5)")
    p.add_argument(
        "--class",
        dest="cls",
        type=int,
        default=None,
        metavar="K",
        help="class to edit towards (conditional models)",
    )
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance weight w (1 = off)")
    p.add_argument("--n", type=int, default=4, help="number of edits (seeds SEED..SEED+n-1; default 4)")
    p.add_argument("--resize", action="store_true", help="resize IMAGE to the model's size")
    _sampling_args(p, "heun", 12)
    p.set_defaults(func=cmd_edit)

    p = sub.add_parser(
        "invert",
        help="DDIM inversion of an image to noise and back (optionally edited to another class)",
        description="Run the deterministic DDIM / probability-flow ODE step from t = 0 up the grid to get "
        "the latent of IMAGE, then DDIM back down under the same class (a reconstruction) or under "
        "--to-class (an edit). Writes the reconstruction or edit, a comparison strip and the latent.",
    )
    _common(p, "PNG image of the model's size and channels")
    p.add_argument("--steps", type=int, default=50, help="grid steps of both passes (default 50)")
    p.add_argument("--grid", default="karras", choices=list(GRIDS), help="time grid (default karras)")
    p.add_argument(
        "--class", dest="cls", type=int, default=None, metavar="K", help="class of IMAGE for the inversion"
    )
    p.add_argument("--to-class", type=int, default=None, help="class of the reverse pass (an edit)")
    p.add_argument(
        "--guidance", type=float, default=None, help="guidance weight of the reverse pass (1 = off)"
    )
    p.add_argument(
        "--fixed-point",
        type=int,
        default=0,
        metavar="K",
        help="fixed-point iterations per inversion step (0: plain DDIM inversion; 2-5 make the "
        "reconstruction exact up to the fixed point)",
    )
    p.add_argument("--resize", action="store_true", help="resize IMAGE to the model's size")
    p.set_defaults(func=cmd_invert)

    p = sub.add_parser(
        "inpaint",
        help="RePaint inpainting: fill the black region of MASK",
        description="RePaint (Lugmayr et al. 2022): at every step the known region is replaced by the "
        "forward-noised image; with --resample n > 1 every --jump j levels the walk goes back up j levels "
        "n - 1 times (resampling), which harmonises the fill with the known region. " + _EPILOG_MASK,
        epilog=_EPILOG_MASK,
    )
    _common(p, "PNG image of the model's size and channels")
    p.add_argument("mask", help="PNG mask of the image's size: white = keep, black = fill")
    p.add_argument("--jump", type=int, default=10, help="jump length j (default 10)")
    p.add_argument(
        "--resample", type=int, default=10, help="resamplings n (1 = plain replacement; default 10)"
    )
    p.add_argument(
        "--class", dest="cls", type=int, default=None, metavar="K", help="class (default: unconditional)"
    )
    p.add_argument("--n", type=int, default=4, help="number of completions (default 4)")
    p.add_argument("--resize", action="store_true", help="resize IMAGE to the model's size")
    _sampling_args(p, "ddpm", 50)
    p.set_defaults(func=cmd_inpaint)

    p = sub.add_parser(
        "upscale",
        help="super-resolution of an image with an SR model (hwaksan train with data.lowres)",
        description="Upscale a low-resolution IMAGE (the model's data.lowres size) with a super-resolution "
        "checkpoint. A full-size IMAGE is downsampled first and the result is scored against it (PSNR, "
        "SSIM, and the same for bicubic upsampling).",
    )
    _common(p, "PNG image: low resolution, or full size (then downsampled and used as the reference)")
    p.add_argument(
        "--aug-level",
        type=float,
        default=None,
        help="noise-conditioning augmentation level s (a time of the process) given to the model "
        f"(default {DEFAULT_AUG_FRACTION} x the training aug_max; models trained without it: none)",
    )
    p.add_argument(
        "--class", dest="cls", type=int, default=None, metavar="K", help="class (class-conditional SR models)"
    )
    p.add_argument("--n", type=int, default=4, help="number of samples (default 4)")
    _sampling_args(p, "heun", 12)
    p.set_defaults(func=cmd_upscale)

    p = sub.add_parser(
        "cascade",
        help="sample a cascade: a base model then one or more super-resolution stages",
        description="Sample BASE, then upscale with each SR checkpoint in turn (Ho et al. 2022).",
    )
    p.add_argument("base", help="checkpoint or run folder of the base (low-resolution) model")
    p.add_argument("stages", nargs="+", help="checkpoints or run folders of the SR stages, in order")
    p.add_argument("--out", required=True, help="output PNG; OUT-compare.png shows every stage")
    p.add_argument("--n", type=int, default=40, help="number of images (default 40)")
    p.add_argument(
        "--class",
        dest="cls",
        type=int,
        default=None,
        metavar="K",
        help="class of every image (default i %% K)",
    )
    p.add_argument(
        "--aug-level",
        type=float,
        action="append",
        default=None,
        help="augmentation level of each SR stage, repeated in order (default "
        f"{DEFAULT_AUG_FRACTION} x its training aug_max)",
    )
    p.add_argument("--sampler", default="heun", choices=list(SAMPLERS), help="sampler of every stage")
    p.add_argument("--steps", type=int, default=12, help="steps of the base model (default 12)")
    p.add_argument("--sr-steps", type=int, default=12, help="steps of each SR stage (default 12)")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed SEED + i")
    p.set_defaults(func=cmd_cascade)
