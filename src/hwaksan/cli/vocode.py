"""``hwaksan vocode``: a real WAV through its log-mel and back to sound with a diffusion vocoder.

::

    hwaksan vocode runs/speech-digits --input clip.wav --out vocoded.wav --steps 6
    hwaksan vocode runs/speech-digits --input clip.wav --out v.wav --sampler ddpm \\
        --betas 1e-5,1e-4,1e-3,1e-2,1e-1,0.5

The input must be a mono 16-bit PCM WAV at the model's sample rate and at least one training window
long; it is zero-padded to a multiple of the mel hop. Writes the WAV and a PNG beside it (input and
output: waveform over log-mel).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..data.audio_features import MelSettings, log_mel, normalise_log_mel
from ..io.media import save_preview
from ..io.media_audio import read_wav, write_wav
from ..tasks.vocode import beta_grid, vocode
from .args import add_overwrite_argument, add_sampler_arguments, add_seed_argument, csv_of
from .common import UserError, check_outputs, load_model, one_line, record_outputs

__all__ = ["register", "cmd_vocode"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hwaksan vocode``."""
    p = sub.add_parser(
        "vocode",
        help="a WAV through its log-mel spectrogram and a diffusion vocoder back to sound",
        description="Compute the log-mel spectrogram of a mono WAV and vocode it with a mel-conditioned "
        "waveform model (configs/speech-digits.toml); writes the WAV and a PNG of input and output.",
    )
    p.add_argument("checkpoint", help="the vocoder: a run folder or a checkpoint")
    p.add_argument("--input", required=True, help="mono 16-bit PCM WAV at the model's sample rate")
    p.add_argument("--out", required=True, help="the output WAV (a PNG is written beside it)")
    add_sampler_arguments(p, sampler="heun", steps=6, grid="karras")
    p.add_argument(
        "--betas",
        type=csv_of(float),
        default=None,
        metavar="B1,..,BN",
        help="a WaveGrad noise schedule (betas, low noise first): its grid replaces --steps / --grid",
    )
    add_seed_argument(p)
    add_overwrite_argument(p)
    p.set_defaults(func=cmd_vocode)


def _load_input(path: str, settings: MelSettings, window: int) -> torch.Tensor:
    """The input as ``(1, T)``, padded to a multiple of the hop; one clear error otherwise."""
    if not Path(path).is_file():
        raise UserError(f"--input {path}: no such file")
    try:
        x, rate = read_wav(path)
    except ValueError as err:
        raise UserError(f"--input {err}") from None
    if rate != settings.sample_rate:
        raise UserError(
            f"--input {path} is sampled at {rate} Hz but the model's rate is {settings.sample_rate} Hz: "
            f"resample it (e.g. sox {path} -r {settings.sample_rate} out.wav)"
        )
    if len(x) < window:
        raise UserError(
            f"--input {path} has {len(x)} samples; the model needs at least one window of {window} "
            f"({window / settings.sample_rate:.2f} s)"
        )
    pad = -len(x) % settings.hop
    return torch.nn.functional.pad(torch.from_numpy(x.copy()), (0, pad))[None]


def cmd_vocode(args: argparse.Namespace) -> int:
    """Run ``hwaksan vocode``; returns the exit status."""
    out = Path(args.out)
    if out.suffix.lower() != ".wav":
        raise UserError(f"--out {out} must end in .wav")
    png = out.with_suffix(".png")
    check_outputs([out, png], overwrite=args.overwrite, inputs=[args.checkpoint, args.input])
    model = load_model(args.checkpoint, "hwaksan vocode")
    if model.modality != "audio" or getattr(model.denoiser.net, "hop", None) is None:
        raise UserError(
            f"hwaksan vocode needs a mel-conditioned audio model; this is a {model.describe()} model"
        )
    settings = MelSettings.from_dict(model.modality_params)
    x = _load_input(args.input, settings, model.data_shape[-1])
    mel = normalise_log_mel(log_mel(x, settings))
    grid = args.grid
    if args.betas is not None:
        try:
            grid = beta_grid(model.process, args.betas)
        except ValueError as err:
            raise UserError(f"--betas: {err}") from None
    with torch.no_grad():
        result = vocode(
            model, mel, sampler=args.sampler, steps=args.steps, grid=grid, seed=args.seed, **args.options
        )
    y = result.x.cpu()
    with one_line("cannot write the outputs"):
        write_wav(out, y[0, 0], settings.sample_rate)
        save_preview(torch.cat([x[:, None], y]), png, "audio", model.modality_params, 1)
    record_outputs(out, png)
    print(
        f"hwaksan vocode: {x.shape[-1]} samples ({x.shape[-1] / settings.sample_rate:.2f} s), "
        f"{args.sampler} {len(result.ts) - 1} steps = {result.nfe} NFE, seed {args.seed}\n"
        f"outputs:\n  {out}\n  {png} (input above, output below)",
        file=sys.stderr,
    )
    return 0
