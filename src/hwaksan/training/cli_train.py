"""The ``hwaksan train`` and ``hwaksan sample`` sub-commands (argument parsers and runners).

``cli.py`` builds one sub-parser per command and calls ``add_train_arguments`` /
``add_sample_arguments`` on it, then ``run_train(args)`` / ``run_sample(args)``, which return the
process exit status (0 success, 1 a user error already explained on stderr)::

    hwaksan train --config configs/digits.toml [--set train.steps=500 ...] [--out DIR] [--resume]
    torchrun --nproc_per_node 2 -m hwaksan.cli train --config configs/digits.toml
    hwaksan sample runs/digits --sampler heun --steps 18 --n 64 --seed 0 --out grid.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

__all__ = [
    "add_train_arguments",
    "run_train",
    "add_sample_arguments",
    "run_sample",
    "grid_argument",
]


def add_train_arguments(parser: argparse.ArgumentParser, toy: bool = False) -> argparse.ArgumentParser:
    """Options of ``hwaksan train`` (with ``toy``, ``--config`` is optional: 2-D training without it)."""
    parser.add_argument(
        "--config",
        required=not toy,
        default=None,
        metavar="FILE",
        help="experiment config in TOML (e.g. configs/digits.toml) or a run's config.json; "
        "missing keys take their defaults" + ("; without it, train an MLP on 2-D toy data" if toy else ""),
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set train.steps=500 --set optim.lr=1e-3 "
        "--set model.args.model_channels=32 (repeatable; values are TOML: 3, 1e-4, true, [0.9, 0.99])",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="output folder for checkpoints, samples, metrics and plots (default: runs/CONFIG_NAME, "
        "or runs/toy for 2-D data)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint in --out; bit-identical to an uninterrupted run "
        "(the config must match the checkpoint's, except logging and sampling keys)",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    return parser


def run_train(args: argparse.Namespace) -> int:
    """Run ``hwaksan train``; returns the exit status."""
    from ..data.images import DatasetUnavailable
    from ..io.checkpoint import CheckpointError
    from .config import ConfigError, load_config
    from .distributed import cleanup
    from .optim import NonFiniteLossError
    from .trainer import Trainer

    trainer = None
    try:
        config = load_config(args.config, args.overrides)
        out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
        trainer = Trainer(config, out, progress=not getattr(args, "no_progress", False))
        trainer.run(resume=args.resume)
    except (ConfigError, CheckpointError, NonFiniteLossError, DatasetUnavailable) as err:
        print(f"hwaksan train: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        where = args.out or f"runs/{Path(args.config).stem}"
        print(
            f"hwaksan train: interrupted; continue from the last checkpoint with --resume --out {where}",
            file=sys.stderr,
        )
        return 130
    finally:
        if trainer is not None:
            cleanup(trainer.dist)
    return 0


def add_sample_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``hwaksan sample``."""
    from ..samplers import GRIDS, SAMPLERS

    parser.add_argument(
        "checkpoint",
        help="a checkpoint written by hwaksan train (PATH, PATH.json or PATH.safetensors), or a run "
        "folder (its newest checkpoint is used)",
    )
    parser.add_argument(
        "--sampler",
        default="heun",
        choices=list(SAMPLERS),
        help="sampler (default: heun): " + "; ".join(f"{k}: {v.description}" for k, v in SAMPLERS.items()),
    )
    parser.add_argument("--steps", type=int, default=18, help="sampler steps (default: 18)")
    parser.add_argument(
        "--grid",
        default="karras",
        type=grid_argument,
        metavar="{" + ",".join(GRIDS) + "} or FILE.json",
        help="time discretisation (default: karras), or a grid file written by hwaksan plan-steps --out",
    )
    parser.add_argument(
        "--n", type=int, default=None, help="number of samples (default: 64 images, or 2000 2-D points)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="image i uses seed SEED + i, whatever --n is (default: 0)"
    )
    parser.add_argument(
        "--out",
        default="grid.png",
        help="output PNG (default: grid.png); 2-D models also write a CSV beside it",
    )
    parser.add_argument(
        "--class",
        "--label",
        dest="label",
        metavar="K",
        type=int,
        default=None,
        help="class of every image for a class-conditional model (default: image i gets class i %% K)",
    )
    parser.add_argument(
        "--uncond", action="store_true", help="sample a class-conditional model without labels (null class)"
    )
    parser.add_argument(
        "--ema",
        type=int,
        default=0,
        metavar="INDEX",
        help="which EMA of the checkpoint to sample (index into its ema.decays; default: 0, the first)",
    )
    parser.add_argument("--no-ema", action="store_true", help="sample the raw (not averaged) weights")
    parser.add_argument(
        "--nrow", type=int, default=None, help="images per grid row (default: K classes, or a square)"
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=None,
        help="pixel magnification of the PNG (default: about 96 px per image)",
    )
    parser.add_argument(
        "--options",
        type=sampler_options,
        default={},
        metavar="JSON",
        help="sampler options as a JSON object, e.g. '{\"eta\": 1.0}' (see hwaksan samplers)",
    )
    from ..samplers.planfile import PlanAction  # issue 3: a plan of hwaksan plan-steps --out

    parser.add_argument(
        "--plan",
        action=PlanAction,
        default=None,
        metavar="FILE.json",
        help="a plan file of hwaksan plan-steps --out: sets --sampler, --grid, --steps and --options "
        "(fitted solver coefficients included); options given after it override it",
    )
    parser.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to sample (default: auto)"
    )
    return parser


def sampler_options(value: str) -> dict:
    """``--options``: a JSON object of keyword arguments for the sampler."""
    try:
        options = json.loads(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from None
    if not isinstance(options, dict):
        raise argparse.ArgumentTypeError("give a JSON object, e.g. '{\"eta\": 1.0}'")
    return options


def grid_argument(value: str) -> str | torch.Tensor:
    """``--grid``: a grid name, or a JSON file with a list ``"ts"`` of decreasing times (from
    ``hwaksan plan-steps --out``), returned as a float64 tensor."""
    from ..samplers import GRIDS

    if value in GRIDS:
        return value
    path = Path(value)
    if path.suffix != ".json":
        raise argparse.ArgumentTypeError(f"{value!r}: choose one of {', '.join(GRIDS)} or give a FILE.json")
    try:
        ts = json.loads(path.read_text())["ts"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise argparse.ArgumentTypeError(f"{value}: not a grid file with a list 'ts' ({err})") from None
    return torch.tensor(ts, dtype=torch.float64)


def run_sample(args: argparse.Namespace) -> int:
    """Run ``hwaksan sample``; returns the exit status."""
    from ..io.checkpoint import CheckpointError, load_model, load_tensors, resolve_checkpoint
    from ..plotting import save_image_grid
    from ..samplers import sample

    try:
        path = resolve_checkpoint(args.checkpoint)
        model, meta = load_model(path, use_ema=not args.no_ema)
        if args.ema and not args.no_ema:
            decays = meta.get("ema_decays", [])
            if not 0 <= args.ema < len(decays):
                raise CheckpointError(
                    f"--ema {args.ema}: the checkpoint has EMAs 0..{len(decays) - 1} ({decays})"
                )
            tensors, _ = load_tensors(path)
            prefix = f"ema{args.ema}."
            model.net.load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            )
        image_shape = meta.get("image_shape")
        if not image_shape:
            raise CheckpointError(f"{path} has no image_shape: not an image checkpoint from hwaksan train")
    except CheckpointError as err:
        print(f"hwaksan sample: error: {err}", file=sys.stderr)
        return 1
    args.n = 64 if args.n is None else args.n
    if args.n < 1 or args.steps < 1:
        print("hwaksan sample: error: --n and --steps must be >= 1", file=sys.stderr)
        return 1
    data_shape = meta.get("data_shape") or image_shape
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    model = model.to(device)
    k = int(meta.get("num_classes") or 0)
    cond = None
    if k and not args.uncond:
        if args.label is not None:
            if not 0 <= args.label < k:
                print(f"hwaksan sample: error: --label must be in 0..{k - 1}", file=sys.stderr)
                return 1
            cond = torch.full((args.n,), args.label, dtype=torch.long, device=device)
        else:
            cond = torch.arange(args.n, device=device) % k
    denoiser, hook = model, getattr(args, "guidance_hook", None)
    if meta.get("text") and getattr(args, "text_hook", None) is not None:
        hook = args.text_hook  # a text model: --prompt, --negative-prompt, --guidance (commands/latent.py)
    if hook is not None:  # --guidance / --classifier (hwaksan.commands.guidance)
        try:
            denoiser, cond = hook(model, cond, meta, args)
        except ValueError as err:
            print(f"hwaksan sample: error: {err}", file=sys.stderr)
            return 1
    gens = [torch.Generator(device=device).manual_seed(args.seed + i) for i in range(args.n)]
    with torch.no_grad():
        result = sample(
            denoiser,
            (args.n, *data_shape),
            sampler=args.sampler,
            steps=args.steps,
            grid=args.grid,
            cond=cond,
            generator=gens,
            device=device,
            **args.options,
        )
    images = result.x.reshape(args.n, *image_shape)
    if meta.get("latent"):  # latent diffusion: decode with the checkpoint's autoencoder (training/latent.py)
        from .latent import decode_with_checkpoint

        images = decode_with_checkpoint(path, meta, images)
    nrow = args.nrow or (k if (cond is not None and args.label is None) else math.ceil(math.sqrt(args.n)))
    scale = args.scale or max(1, 96 // max(images.shape[2:]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image_grid(images, out, nrow=nrow, scale=scale)
    print(
        f"hwaksan sample: wrote {out} ({args.n} images, {args.sampler} {len(result.ts) - 1} steps = "
        f"{result.nfe} NFE, "
        f"seeds {args.seed}..{args.seed + args.n - 1}) from {path}",
        file=sys.stderr,
    )
    return 0
