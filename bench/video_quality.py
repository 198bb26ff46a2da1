"""Moving-MNIST clip model: identity, motion, per-frame quality, future-frame prediction, interpolation.

    python bench/video_quality.py runs/moving-mnist --out runs/bench-video

Measures (:mod:`hwaksan.evaluation.video`, the project's 28x28 MNIST classifier on each frame's digit
crop) of

1. ``--n`` class-conditional clips (clip i has class i % 10 and seed i; Heun, ``--steps`` steps on the
   Karras grid, EMA 0, classifier-free guidance ``--guidance``, default none) against ``--n-real``
   real val clips, and a real-vs-real reference row (test clips against the same val clips: the
   floor of every number);
2. future-frame prediction: ``--n-complete`` val clips, the first ``--keep`` frames kept, the rest
   filled by RePaint (:func:`hwaksan.tasks.inpaint.inpaint` with :func:`hwaksan.tasks.sequence.time_mask`;
   ddpm, 50 steps, jump 5, 3 resamplings) without the label (with ``--guidance``: with the clip's
   label and that guidance); scored against the real continuation and
   against repeating the last kept frame;
3. frame interpolation: the same with the first and the last frame kept.

Writes ``metrics.json`` and pictures (``samples.png`` / ``.gif``, ``future.png``, ``between.png``:
each reference clip above its completion) into ``--out`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from hwaksan.data.catalog import load_data
from hwaksan.evaluation.video import mnist_readout, prediction_metrics, video_metrics
from hwaksan.io.artifact import load_trained
from hwaksan.io.media import save_media, save_preview
from hwaksan.tasks.edit import guided
from hwaksan.tasks.inpaint import inpaint
from hwaksan.tasks.sequence import TIME_AXIS, parse_keep, time_mask
from hwaksan.utils import generators_from_seeds


def _complete(model, clips: torch.Tensor, keep: list[int], seed: int, denoiser, cond) -> torch.Tensor:
    mask = time_mask(model.output_shape, keep)
    generator = generators_from_seeds(range(seed, seed + len(clips)), model.device)
    res = model.apply(
        inpaint,
        clips,
        mask=mask,
        denoiser=denoiser,
        cond=cond,
        sampler="ddpm",
        steps=50,
        jump=5,
        resample=3,
        generator=generator,
    )
    return res.x


def _interleave(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Reference clip i above its completion: (2n, ...)."""
    return torch.stack([real, fake], 1).flatten(0, 1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a moving-mnist run folder or checkpoint")
    p.add_argument("--out", default="runs/bench-video")
    p.add_argument("--n", type=int, default=200, help="generated clips (default 200)")
    p.add_argument("--n-real", type=int, default=1000, help="real val clips (default 1000)")
    p.add_argument("--n-complete", type=int, default=40, help="clips to complete (default 40)")
    p.add_argument("--keep", type=int, default=4, help="frames kept for prediction (default 4)")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance w (1: none)")
    p.add_argument("--no-complete", action="store_true", help="skip prediction and interpolation")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_trained(args.run)
    if model.modality != "video":
        sys.exit(f"video_quality: {args.run} is a {model.modality} model, not a clip model")
    data_args = dict(((model.config or {}).get("data") or {}).get("args") or {})
    frames = model.output_shape[TIME_AXIS]
    real = load_data(model.dataset, "val", None, {**data_args, "n": args.n_real})
    other = load_data(model.dataset, "test", None, {**data_args, "n": args.n_real})
    readout = mnist_readout()
    report: dict = {"run": str(args.run), "step": model.step, "frames": frames, "guidance": args.guidance}

    t0 = time.perf_counter()
    labels = torch.arange(args.n) % 10
    denoiser = guided(model.denoiser, args.guidance if args.guidance != 1.0 else None)
    res = model.sample(
        args.n,
        denoiser=denoiser,
        sampler="heun",
        steps=args.steps,
        grid="karras",
        cond=labels,
        generator=generators_from_seeds(range(args.n), model.device),
    )
    report["sample_seconds"] = time.perf_counter() - t0
    report["sample_nfe"] = res.nfe
    report["generated"] = video_metrics(res.x, real.images, labels, readout)
    report["real_vs_real"] = video_metrics(other.images, real.images, other.labels, readout)
    save_preview(res.x[:20], out / "samples.png", "video", model.modality_params, 10)
    save_media(res.x[:20], out / "samples", "video", model.modality_params)

    clips = real.images[: args.n_complete]
    tasks = () if args.no_complete else (("future", f"0:{args.keep}"), ("between", "0,-1"))
    for name, spec in tasks:
        keep = parse_keep(spec, frames)
        t0 = time.perf_counter()
        # without the label, or with the clip's own label under the same guidance as the samples
        cond = None if args.guidance == 1.0 else real.labels[: args.n_complete]
        done = _complete(model, clips, keep, 1, denoiser, cond)
        report[name] = {
            "keep": keep,
            "seconds": time.perf_counter() - t0,
            **prediction_metrics(done, clips, keep),
            "frame_agreement": video_metrics(done, real.images, None, readout)["frame_agreement"],
        }
        save_preview(
            _interleave(clips[:5], done[:5]), out / f"{name}.png", "video", model.modality_params, 10
        )
    (out / "metrics.json").write_text(json.dumps(report, indent=2))

    g, r = report["generated"], report["real_vs_real"]
    print(f"| measure | generated ({args.n} clips) | real test vs val |")
    print("|---|---|---|")
    for key in ("frame_agreement", "first_frame_accuracy", "frame_accuracy", "displacement",
                "displacement_ratio", "acceleration", "step_feature_distance", "fd_frames"):  # fmt: skip
        print(f"| {key} | {g[key]:.3f} | {r[key]:.3f} |")
    print()
    print(
        "| task | kept | kept max error | MSE (rest) | MSE copy-last | track error px | copy-last px "
        "| agreement |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, _ in tasks:
        m = report[name]
        print(
            f"| {name} | {m['keep']} | {m['kept_max_error']:.2g} | {m['mse_future']:.4f} | "
            f"{m['mse_copy_last']:.4f} | {m['track_error']:.2f} | {m['track_error_copy_last']:.2f} | "
            f"{m['frame_agreement']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
