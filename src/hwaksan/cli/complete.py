"""``hwaksan complete``: inpainting in time with a sequence model (video, motion, audio).

The kept frames of a sequence are fixed and the others are filled by RePaint (Lugmayr et al. 2022,
:func:`hwaksan.tasks.inpaint.inpaint` with the mask of :func:`hwaksan.tasks.sequence.time_mask`):
future-frame prediction keeps a prefix, in-betweening keeps keyframes, frame interpolation keeps the
first and the last frame. The sequence is a real one of the model's own data set
(``--from-data val:3``) or an array file (``--input clip.npy``, float values in [-1, 1] of the
model's sample shape ``(C, T, ...)``, read without pickle).

::

    hwaksan complete runs/moving-mnist --from-data val:0 --keep 0:4 --n 4 --out future.png
    hwaksan complete runs/motion --input walk.npy --keep 0,-1 --class 2 --guidance 2 --out between.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ..data.catalog import load_data
from ..io.artifact import TrainedModel
from ..io.media import media_names, save_media, save_preview
from ..samplers import SampleResult
from ..tasks import inpaint
from ..tasks.edit import guided
from ..tasks.sequence import TIME_AXIS, parse_keep, time_mask
from .args import (
    GUIDANCE_WEIGHT,
    add_class_arguments,
    add_n_argument,
    add_overwrite_argument,
    add_repaint_arguments,
    png_path,
    repaint_summary,
)
from .common import UserError, check_outputs, load_model, one_line, record_outputs, seed_generators
from .images import add_editing_sampler_arguments, class_labels

__all__ = ["register", "cmd_complete", "complete_sequence", "read_sequence"]

SEQUENCE_MODALITIES = ("video", "motion", "audio")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hwaksan complete``."""
    p = sub.add_parser(
        "complete",
        help="fill the missing frames of a video / motion / audio sequence (prediction, in-betweening)",
        description="RePaint in time: the frames named by --keep are kept exactly and the others are "
        "filled by the model (future-frame prediction: --keep 0:4; in-betweening: --keep 0,8,-1; "
        "interpolation: --keep 0,-1). OUT.png shows the reference first, then the completions; "
        "OUT.npy holds the completions (n, C, T, ...) and the modality's media files are written "
        "beside it.",
    )
    p.add_argument("checkpoint", help="a checkpoint or run folder of a sequence model (hwaksan train)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--input",
        metavar="FILE.npy",
        help="the sequence: a .npy array of the model's sample shape (C, T, ...), values in [-1, 1]",
    )
    source.add_argument(
        "--from-data",
        metavar="SPLIT:INDEX",
        help="the sequence INDEX of the model's data set, split SPLIT (e.g. val:0)",
    )
    p.add_argument(
        "--keep",
        required=True,
        help="the frames kept: indices and ranges, Python style (0:4 = the first four; 0,-1 = the "
        "first and the last)",
    )
    p.add_argument(
        "--out", required=True, type=png_path, help="output PNG; OUT.npy and media files beside it"
    )
    add_overwrite_argument(p)
    add_repaint_arguments(p, 5)
    add_class_arguments(p, "class of a class-conditional model (default: unconditional)")
    p.add_argument(
        "--guidance",
        type=GUIDANCE_WEIGHT,
        default=None,
        metavar="W",
        help="classifier-free guidance weight w in [0, 100] with --class (1 or unset: none)",
    )
    add_n_argument(p, 4, "number of completions (default 4)")
    add_editing_sampler_arguments(p, "ddpm", 50)
    p.set_defaults(func=cmd_complete)


def cmd_complete(args: argparse.Namespace) -> int:
    """Run ``hwaksan complete``; returns the exit status."""
    out = Path(args.out)
    arrays = out.with_suffix(".npy")
    inputs = [args.checkpoint, args.input]
    check_outputs([out, arrays], overwrite=args.overwrite, inputs=inputs)
    model = load_model(args.checkpoint, "hwaksan complete")
    if model.modality not in SEQUENCE_MODALITIES:
        raise UserError(
            f"hwaksan complete works on sequence models ({', '.join(SEQUENCE_MODALITIES)}); "
            f"{args.checkpoint} is a {model.modality} model: use hwaksan inpaint for images"
        )
    media = check_outputs(
        media_names(out.with_suffix(""), args.n, model.modality, model.modality_params),
        overwrite=args.overwrite,
        inputs=inputs,
    )
    try:
        x = read_sequence(model, args)
        keep = parse_keep(args.keep, model.output_shape[TIME_AXIS])
        res = complete_sequence(model, x, keep, args)
    except ValueError as err:
        raise UserError(str(err)) from None
    mask = time_mask(model.output_shape, keep)
    known_err = float(((res.x - x) * mask).abs().max())
    with one_line("cannot write the outputs"):
        save_preview(torch.cat([x, res.x]), out, model.modality, model.modality_params, args.n + 1)
        np.save(arrays, res.x.numpy().astype(np.float32))
        written = save_media(res.x, out.with_suffix(""), model.modality, model.modality_params)
    record_outputs(out, arrays, *written)
    length = model.output_shape[TIME_AXIS]
    print(
        f"hwaksan complete: kept {len(keep)} of {length} frames {keep} (max error there {known_err:.2g}); "
        f"{repaint_summary(args)}: {res.nfe} NFE",
        file=sys.stderr,
    )
    print("hwaksan complete: outputs:")
    for path in [out, arrays, *written[:4]]:
        print(f"  {path}")
    if len(media) > 4:
        print(f"  ... ({len(media)} media files)")
    return 0


def read_sequence(model: TrainedModel, args: argparse.Namespace) -> torch.Tensor:
    """The reference sequence ``(1, *output_shape)`` of ``--input`` or ``--from-data``.

    Raises:
        ValueError: a file that is not a float array of the model's sample shape, values outside
            [-1, 1] or not finite, or a data reference that does not exist (one line each).
    """
    shape = tuple(model.output_shape)
    if args.input is not None:
        path = Path(args.input)
        if path.suffix != ".npy":
            raise ValueError(f"--input {path}: give a .npy array (numpy.save) of shape {shape}")
        with one_line(f"cannot read {path}"):
            try:
                array = np.load(path, allow_pickle=False)
            except ValueError as err:  # pickled objects, a truncated or foreign file
                raise ValueError(f"--input {path} is not a plain numpy array ({err})") from None
        if array.dtype.kind not in "fiu":
            raise ValueError(f"--input {path} holds {array.dtype} values: give floats in [-1, 1]")
        x = torch.from_numpy(np.asarray(array, dtype=np.float32))
        if x.ndim == len(shape) + 1 and x.shape[0] == 1:
            x = x[0]
        if tuple(x.shape) != shape:
            what = _shape_hint(shape, tuple(x.shape))
            raise ValueError(f"--input {path} has shape {tuple(x.shape)} but the model makes {shape}{what}")
        if not bool(torch.isfinite(x).all()) or float(x.abs().max()) > 1.0 + 1e-6:
            raise ValueError(
                f"--input {path}: values must be finite and lie in [-1, 1] (the model's data range)"
            )
    else:
        split, _, index = str(args.from_data).partition(":")
        if not index.strip().lstrip("-").isdigit():
            raise ValueError(f"--from-data {args.from_data!r}: give SPLIT:INDEX, e.g. val:0")
        if model.dataset is None:
            raise ValueError(f"{args.checkpoint} records no data set: give --input FILE.npy")
        data_args = ((model.config or {}).get("data") or {}).get("args") or {}
        data = load_data(model.dataset, split, None, data_args)
        i = int(index)
        if not -len(data) <= i < len(data):
            raise ValueError(
                f"--from-data: {model.dataset} {split} has {len(data)} sequences (0..{len(data) - 1})"
            )
        x = data.images[i]
        if tuple(x.shape) != shape:
            raise ValueError(f"{model.dataset} {split} gives shape {tuple(x.shape)}, the model makes {shape}")
    return x.unsqueeze(0).to(model.device)


def _shape_hint(want: tuple[int, ...], have: tuple[int, ...]) -> str:
    if len(want) == len(have) and want[TIME_AXIS] != have[TIME_AXIS]:
        return f": give {want[TIME_AXIS]} frames (axis {TIME_AXIS})"
    return ""


def complete_sequence(
    model: TrainedModel, x: torch.Tensor, keep: list[int], args: argparse.Namespace
) -> SampleResult:
    """``args.n`` RePaint completions ``(n, *output_shape)`` of ``x (1, *output_shape)`` keeping the
    frames ``keep``, with ``args``' sampler, RePaint settings, class and guidance."""
    labels = class_labels(model, args.label, args.n)
    if args.guidance is not None and labels is None:
        raise ValueError("--guidance needs --class K (classifier-free guidance towards a class)")
    denoiser = guided(model.denoiser, args.guidance)
    return model.apply(
        inpaint,
        x.repeat(args.n, *[1] * (x.ndim - 1)),
        mask=time_mask(model.output_shape, keep).to(x.device),
        denoiser=denoiser,
        sampler=args.sampler,
        steps=args.steps,
        grid=args.grid,
        jump=args.jump,
        resample=args.resample,
        reconstruction=args.reconstruction,
        cond=labels,
        generator=seed_generators(args.seed, args.n, model.device),
        **args.options,
    )
