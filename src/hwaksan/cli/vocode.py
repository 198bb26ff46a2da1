"""``hwaksan vocode``: log-mels back to sound with a diffusion vocoder, from a WAV or from a mel model.

::

    hwaksan vocode runs/speech-digits --input clip.wav --out vocoded.wav --steps 6
    hwaksan vocode runs/speech-digits --input clip.wav --out v.wav --sampler ddpm \\
        --betas 1e-5,1e-4,1e-3,1e-2,1e-1,0.5
    hwaksan vocode runs/speech-digits --mel-model runs/speech-digits-mel --class 7 --guidance 2 \\
        --n 4 --out seven.wav                  # spoken digits, end to end

Defaults: DDIM on 6 steps of the log-SNR grid with 8 mel-consistency steps per estimate, the best
6-step setting measured in ``docs/benchmarks-audio.md``.

``--input``: a mono 16-bit PCM WAV at the model's sample rate and at least one training window
long; it is zero-padded to a multiple of the mel hop. ``--consistency K`` (default 8) holds every
denoised estimate to the mel (:class:`hwaksan.tasks.vocode.ProjectedDenoiser` with
:func:`hwaksan.data.audio_features.mel_projection`). Writes the WAV
and a PNG beside it (input and output: waveform over log-mel).

``--mel-model``: a class-conditional model of normalised log-mels (``configs/speech-digits-mel.toml``)
draws ``--n`` spectrograms (class ``--class``, else ``i % K``; classifier-free guidance
``--guidance``), which the vocoder turns into sound: ``OUT`` for one clip, ``STEM_000.wav`` ... for
more, and ``STEM.png`` (each clip's waveform over its log-mel).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..data.audio_features import MelSettings, log_mel, mel_projection, normalise_log_mel
from ..io.media import media_names, save_media, save_preview
from ..io.media_audio import read_wav, write_wav
from ..tasks.edit import guided
from ..tasks.vocode import beta_grid, vocode
from ..utils import generators_from_seeds
from .args import (
    MAX_COUNT,
    MAX_STEPS,
    add_cfg_weight_argument,
    add_overwrite_argument,
    add_sampler_arguments,
    add_seed_argument,
    csv_of,
    int_in,
)
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
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="mono 16-bit PCM WAV at the model's sample rate")
    source.add_argument(
        "--mel-model",
        metavar="RUN",
        help="vocode the log-mels this model draws (a run of configs/speech-digits-mel.toml) instead",
    )
    p.add_argument(
        "--out",
        required=True,
        help="the output WAV (a PNG is written beside it; with --mel-model and --n > 1: STEM_000.wav, ...)",
    )
    mel = p.add_argument_group("mel model (with --mel-model)")
    mel.add_argument("--n", type=int_in(1, MAX_COUNT), default=1, help="clips to draw (default: 1)")
    mel.add_argument(
        "--class",
        dest="label",
        type=int_in(0),
        default=None,
        help="the digit of every clip (default: i %% K)",
    )
    add_cfg_weight_argument(
        mel,
        2.0,
        "classifier-free guidance weight of the mel model (default: 2, where its samples were "
        "recognised best; 1: none)",
    )
    mel.add_argument(
        "--mel-steps",
        type=int_in(1, MAX_STEPS),
        default=12,
        help="Heun steps (Karras grid) of the mel model (default: 12)",
    )
    add_sampler_arguments(p, sampler="ddim", steps=6, grid="log_snr")
    p.add_argument(
        "--betas",
        type=csv_of(float),
        default=None,
        metavar="B1,..,BN",
        help="a WaveGrad noise schedule (betas, low noise first): its grid replaces --steps / --grid",
    )
    p.add_argument(
        "--consistency",
        type=int_in(0, 100),
        default=8,
        metavar="K",
        help="hold every denoised estimate to the mel with K Griffin-Lim-style steps (the magnitude "
        "follows the mel bands, the network keeps the phase and the detail inside each band; "
        "default: 8; 0: the network alone)",
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


def _drawn_mels(args: argparse.Namespace, n_mels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(mels (n, n_mels, F), labels (n,) or None)`` drawn by ``--mel-model`` (Heun, Karras grid,
    clip ``i`` with seed ``SEED + i``)."""
    mel_model = load_model(args.mel_model, "hwaksan vocode --mel-model")
    shape = tuple(mel_model.output_shape)
    if len(shape) != 3 or shape[0] != 1 or shape[1] != n_mels:
        raise UserError(
            f"--mel-model {args.mel_model} makes {shape}; the vocoder needs log-mels (1, {n_mels}, frames)"
        )
    k = mel_model.num_classes
    if not k and (args.label is not None or args.guidance != 1.0):
        raise UserError(f"--mel-model {args.mel_model} has no classes: drop --class and use --guidance 1")
    if args.label is not None and args.label >= k:
        raise UserError(f"--class {args.label}: the mel model has classes 0..{k - 1}")
    labels = None
    if k:
        labels = torch.full((args.n,), args.label) if args.label is not None else torch.arange(args.n) % k
    with torch.no_grad():
        res = mel_model.sample(
            args.n,
            denoiser=guided(mel_model.denoiser, args.guidance if k else None),
            sampler="heun",
            steps=args.mel_steps,
            grid="karras",
            cond=labels,
            generator=generators_from_seeds(range(args.seed, args.seed + args.n), mel_model.device),
        )
    return res.x[:, 0].float().clamp(-1, 1), labels


def cmd_vocode(args: argparse.Namespace) -> int:
    """Run ``hwaksan vocode``; returns the exit status."""
    out = Path(args.out)
    if out.suffix.lower() != ".wav":
        raise UserError(f"--out {out} must end in .wav")
    png = out.with_suffix(".png")
    many = args.mel_model is not None and args.n > 1
    wavs = media_names(out.with_suffix(""), args.n, "audio") if many else [out]
    inputs = [args.checkpoint, args.input or args.mel_model]
    check_outputs([*wavs, png], overwrite=args.overwrite, inputs=inputs)
    model = load_model(args.checkpoint, "hwaksan vocode")
    if model.modality != "audio" or getattr(model.denoiser.net, "hop", None) is None:
        raise UserError(
            f"hwaksan vocode needs a mel-conditioned audio model; this is a {model.describe()} model"
        )
    settings = MelSettings.from_dict(model.modality_params)
    if args.mel_model is not None:
        mel, labels = _drawn_mels(args, settings.n_mels)
        x = None
    else:
        x = _load_input(args.input, settings, model.data_shape[-1])
        mel, labels = normalise_log_mel(log_mel(x, settings)), None
    grid = args.grid
    if args.betas is not None:
        try:
            grid = beta_grid(model.process, args.betas)
        except ValueError as err:
            raise UserError(f"--betas: {err}") from None
    with torch.no_grad():
        result = vocode(
            model,
            mel,
            sampler=args.sampler,
            steps=args.steps,
            grid=grid,
            seed=args.seed,
            project=mel_projection(mel, settings, args.consistency) if args.consistency else None,
            **args.options,
        )
    y = result.x.cpu()
    if not torch.isfinite(y).all():
        raise UserError(
            "the vocoder's output is not finite (a diverging sampler step): try --sampler ddim, "
            "more --steps, or --consistency 0"
        )
    with one_line("cannot write the outputs"):
        if many:
            save_media(y, out.with_suffix(""), "audio", model.modality_params)
        else:
            write_wav(out, y[0, 0], settings.sample_rate)
        shown = y if x is None else torch.cat([x[:, None], y])
        save_preview(shown, png, "audio", model.modality_params, 1)
    record_outputs(*wavs, png)
    source = (
        f"{args.n} log-mels of {args.mel_model} (classes {labels.tolist() if labels is not None else '-'}, "
        f"guidance {args.guidance:g}, Heun {args.mel_steps} steps)"
        if x is None
        else f"{x.shape[-1]} samples ({x.shape[-1] / settings.sample_rate:.2f} s)"
    )
    picture = "each clip's waveform over its log-mel" if x is None else "input above, output below"
    print(
        f"hwaksan vocode: {source}; {args.sampler} {len(result.ts) - 1} steps = {result.nfe} NFE, "
        f"{args.consistency} mel-consistency steps each, seed {args.seed}\noutputs:\n"
        + "".join(f"  {w}\n" for w in wavs)
        + f"  {png} ({picture})",
        file=sys.stderr,
    )
    return 0
