"""Images on the command line: PNGs in and out of the editing commands (edit, invert, inpaint,
upscale, cascade).

Conventions: an IMAGE has the model's OUTPUT size and channels (pixels, also for a latent model;
``--resize`` resizes it; a grey image saved as RGB with equal channels is accepted); a MASK is a PNG
of the image's size, **white (>= 128) = keep, black = fill**, grey-scale (an RGB mask must have equal
channels). Tensors are ``(B, C, H, W)`` in [-1, 1].
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io.artifact import TrainedModel
from ..plotting import save_image_grid
from ..utils import downsample, upsample
from .args import add_overwrite_argument, add_sampler_arguments, add_seed_argument, png_path
from .common import check_outputs, one_line, record_outputs

__all__ = [
    "MASK_HELP",
    "load_image",
    "load_mask",
    "open_image",
    "compare_path",
    "check_image_outputs",
    "save_compare",
    "save_outputs",
    "result_layout",
    "add_image_arguments",
    "add_editing_sampler_arguments",
    "class_labels",
    "guidance_weight",
]

MASK_HELP = "MASK: a PNG of the image's size, white (>= 128) = keep, black (< 128) = fill."


def open_image(path: Path, what: str = "image") -> Any:
    """A PIL image of the file ``path``, decoded.

    Raises:
        ValueError: no file there, or one PIL cannot decode (one line naming the fix).
    """
    from PIL import Image

    if not path.is_file():
        raise ValueError(f"no {what} at {path}" + (": it is a folder" if path.is_dir() else ""))
    try:
        img = Image.open(path)
        img.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise ValueError(f"{path} is not a readable image ({reason}): give a PNG {what}") from None
    return img


def load_image(
    path: str | Path, channels: int, size: tuple[int, int] | None, resize: bool = False
) -> torch.Tensor:
    """A PNG as a ``(1, C, H, W)`` tensor in [-1, 1].

    Raises:
        ValueError: missing file, wrong channel count, or wrong size without ``resize`` (the
            message names the fix).
    """
    p = Path(path)
    img = open_image(p)
    img = img.convert("L") if img.mode in ("1", "L", "LA", "I", "I;16", "F") else img.convert("RGB")
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
        x = (downsample if x.shape[-1] > size[1] else upsample)(x, size)
    return x


def load_mask(path: str | Path, image: torch.Tensor) -> torch.Tensor:
    """A mask PNG as ``(1, 1, H, W)`` in {0, 1}: white (>= 128) = 1 = keep, black = 0 = fill.

    Raises:
        ValueError: missing file, a size other than the image's, or an RGB mask with unequal
            channels.
    """
    p = Path(path)
    img = open_image(p, "mask")
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
    images = torch.cat([p.detach().cpu().reshape(-1, *p.shape[-3:]) for p in panels])
    return save_image_grid(images, path, nrow=len(images), scale=scale)


def compare_path(out: str | os.PathLike) -> Path:
    """The comparison strip written beside ``out``: ``OUT-compare.png``."""
    out = Path(out)
    return out.with_name(out.stem + "-compare.png")


def check_image_outputs(
    args: argparse.Namespace, inputs: Iterable[str | os.PathLike | None], extra: Iterable[Path] = ()
) -> tuple[Path, Path]:
    """Check, before any work, ``--out``, its comparison strip and ``extra`` against ``inputs``
    and ``--overwrite`` (:func:`~hwaksan.cli.common.check_outputs`); returns ``(out, compare)``.

    Raises:
        UserError: an output that must not or cannot be written.
    """
    out = Path(args.out)
    check_outputs([out, compare_path(out), *extra], overwrite=args.overwrite, inputs=inputs)
    return out, compare_path(out)


def result_layout(x: torch.Tensor) -> tuple[int, int]:
    """The grid of an editing command's results ``x (B, C, H, W)``: ``(images per row, pixel
    magnification)``, at most 10 per row and about 96 px per image."""
    return (min(len(x), 10) if len(x) > 1 else 1), max(1, 96 // max(x.shape[-2:]))


def save_outputs(x: torch.Tensor, out: Path, compare: list[torch.Tensor]) -> tuple[Path, Path]:
    """Save the results ``x (B, C, H, W)`` at ``out`` and the comparison strip at
    ``OUT-compare.png`` and record both as hwaksan's; returns both paths.

    Raises:
        UserError: a write failed (a full disk, no permission; one line).
    """
    nrow, scale = result_layout(x)
    cmp = compare_path(out)
    with one_line("cannot write the outputs"):
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image_grid(x.detach().cpu(), out, nrow=nrow, scale=scale)
        save_compare(compare, cmp, scale)
    record_outputs(out, cmp)
    return out, cmp


def add_image_arguments(p: argparse.ArgumentParser, image_help: str) -> None:
    """``IMAGE``, ``--checkpoint``, ``--out`` and ``--overwrite`` of an editing command."""
    p.add_argument("image", help=image_help)
    p.add_argument("--checkpoint", required=True, help="a checkpoint or run folder of hwaksan train")
    p.add_argument(
        "--out", required=True, type=png_path, help="output PNG; OUT-compare.png is written beside it"
    )
    add_overwrite_argument(p)


def add_editing_sampler_arguments(p: argparse.ArgumentParser, sampler: str, steps: int) -> None:
    """``--sampler``, ``--steps``, ``--grid`` (names), ``--options`` and ``--seed`` of an editing command."""
    add_sampler_arguments(
        p,
        sampler=sampler,
        steps=steps,
        grid="karras",
        grid_files=False,
        options_help="sampler options, e.g. '{\"eta\": 1}'",
    )
    add_seed_argument(p, "result i uses seed SEED + i (default 0)")


def class_labels(
    model: TrainedModel, label: int | None, n: int, what: str = "--class"
) -> torch.Tensor | None:
    """``n`` copies of class ``label`` on the model's device (None: no class).

    Raises:
        ValueError: a class for a model without classes, or one out of range.
    """
    if label is None:
        return None
    k = model.num_classes
    if not k:
        raise ValueError(f"{what} needs a class-conditional model; this one has no classes")
    if not 0 <= label < k:
        raise ValueError(f"{what} must be in 0..{k - 1}")
    return torch.full((n,), label, dtype=torch.long, device=model.device)


def guidance_weight(guidance: float | None, labels: Any) -> float | None:
    """``--guidance W`` of an editing command: None when off (None or 1).

    Raises:
        ValueError: guidance without a class to guide towards.
    """
    if guidance is None or guidance == 1.0:
        return None
    if labels is None:
        raise ValueError("--guidance needs a class (--class / --to-class) to guide towards")
    return float(guidance)
