"""Motion quality of a trained stick-motion model: class accuracy, FD, diversity over guidance scales,
and in-betweening / prefix completion (exactness at the kept frames, smoothness).

    python bench/motion_quality.py runs/motion --out docs/motion-quality.json

1. Floors on real data: a held-out action classifier (:mod:`hwaksan.evaluation.motion_classifier`)
   trained on the training sequences and scored on the validation ones; the motion FD
   (hand-crafted features, :mod:`hwaksan.evaluation.motion`) of the validation set against the
   training set, its diversity and multimodality, and the 99th percentile of the largest joint
   displacement between consecutive frames.
2. Class-conditional generation: ``--per-class`` samples per action (sample i has class i % 8 and
   seed i), classifier-free guidance with each ``--scales`` weight, DDIM on the uniform grid.
3. In-betweening (keyframes ``0,8,16,24,31`` kept) and prefix completion (frames ``0:8`` kept) of
   the first ``--n-complete`` validation sequences with RePaint (the mask of
   :func:`hwaksan.tasks.sequence.time_mask`), conditioned on the sequence's class: the largest error
   at the kept frames, the fraction of frame-to-frame jumps above the real 99th percentile, the
   largest jump next to a kept frame (the seam), and the classifier's accuracy on the completions.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from hwaksan.data.catalog import load_data
from hwaksan.evaluation.motion import (
    FeatureScaler,
    diversity,
    frame_jumps,
    motion_fd,
    motion_features,
    multimodality,
)
from hwaksan.evaluation.motion_classifier import classifier_accuracy, train_motion_classifier
from hwaksan.guidance import ClassifierFreeGuidance
from hwaksan.io.artifact import load_trained
from hwaksan.tasks.inpaint import inpaint
from hwaksan.tasks.sequence import parse_keep, time_mask
from hwaksan.utils import generators_from_seeds


def _stats(x: torch.Tensor, labels: torch.Tensor, clf, scaler, val: torch.Tensor, p99: float) -> dict:
    feats = scaler(motion_features(x))
    jumps = frame_jumps(x)
    return {
        "accuracy": classifier_accuracy(clf, x, labels),
        "fd": motion_fd(val, x, scaler),
        "diversity": diversity(feats),
        "multimodality": multimodality(feats, labels),
        "jumps_over_p99": float((jumps > p99).double().mean()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run folder or checkpoint of a stick-motion model")
    p.add_argument("--per-class", type=int, default=32)
    p.add_argument("--scales", default="1,1.5,2,3")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--n-complete", type=int, default=64)
    p.add_argument("--complete-steps", type=int, default=50)
    p.add_argument("--resample", type=int, default=5)
    p.add_argument("--jump", type=int, default=5)
    p.add_argument("--complete-sampler", default="ddpm")
    p.add_argument(
        "--reconstruction",
        default="0",
        help="reconstruction guidance weights of the completions (Ho et al. 2022)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load_trained(args.run)
    data_args = ((model.config or {}).get("data") or {}).get("args") or {}
    train = load_data(model.dataset, "train", None, data_args)
    val = load_data(model.dataset, "val", None, data_args)
    k = train.num_classes
    report: dict = {"run": str(args.run), "step": model.step}

    t0 = time.perf_counter()
    clf = train_motion_classifier(train.images, train.labels, k)
    scaler = FeatureScaler.fit(motion_features(train.images))
    p99 = float(torch.quantile(frame_jumps(val.images).flatten(), 0.99))
    vfeats = scaler(motion_features(val.images))
    report["real"] = {
        "classifier_seconds": time.perf_counter() - t0,
        "accuracy_val": classifier_accuracy(clf, val.images, val.labels),
        "fd_val_vs_train": motion_fd(train.images, val.images, scaler),
        "diversity_val": diversity(vfeats),
        "multimodality_val": multimodality(vfeats, val.labels),
        "jump_p99": p99,
    }
    print(json.dumps(report["real"], indent=1), flush=True)

    n = args.per_class * k
    labels = torch.arange(n) % k
    report["generation"] = []
    for w in [float(s) for s in args.scales.split(",")]:
        t0 = time.perf_counter()
        den = model.denoiser if w == 1.0 else ClassifierFreeGuidance(model.denoiser, w)
        with torch.no_grad():
            res = model.sample(
                n,
                denoiser=den,
                sampler="ddim",
                steps=args.steps,
                grid="uniform",
                cond=labels,
                generator=generators_from_seeds(range(n)),
            )
        row = {"scale": w, "n": n, "nfe": res.nfe, "seconds": time.perf_counter() - t0}
        row.update(_stats(res.x, labels, clf, scaler, val.images, p99))
        report["generation"].append(row)
        print(json.dumps(row), flush=True)

    x = val.images[: args.n_complete]
    y = val.labels[: args.n_complete]
    length = x.shape[-1]
    report["completion"] = []
    weights = [float(w) for w in args.reconstruction.split(",")]
    tasks = [
        (name, spec, w)
        for name, spec in (("in-betweening", "0,8,16,24,31"), ("prefix", "0:8"))
        for w in weights
    ]
    for name, spec, weight in tasks:
        keep = parse_keep(spec, length)
        mask = time_mask(x.shape[1:], keep)
        t0 = time.perf_counter()
        with torch.no_grad():
            res = inpaint(
                model.denoiser,
                x,
                mask,
                sampler=args.complete_sampler,
                steps=args.complete_steps,
                grid="uniform",
                jump=5,
                resample=args.resample,
                reconstruction=weight,
                cond=y,
                generator=generators_from_seeds(range(x.shape[0])),
            )
        jumps = frame_jumps(res.x)
        seam = sorted({i for f in keep for i in (f - 1, f) if 0 <= i < length - 1})
        seam = [i for i in seam if not (i in keep and i + 1 in keep)]  # the moves into and out of kept frames
        row = {
            "task": name,
            "keep": spec,
            "reconstruction": weight,
            "n": x.shape[0],
            "nfe": res.nfe,
            "seconds": time.perf_counter() - t0,
            "kept_max_error": float(((res.x - x) * mask).abs().max()),
            "jumps_over_p99": float((jumps > p99).double().mean()),
            "real_jumps_over_p99": float((frame_jumps(x) > p99).double().mean()),
            "seam_max_jump": float(jumps[:, seam].max()),
            "seam_max_jump_real": float(frame_jumps(x)[:, seam].max()),
            "max_jump": float(jumps.max()),
            "accuracy": classifier_accuracy(clf, res.x, y),
            "fd_vs_val": motion_fd(val.images, res.x, scaler),
        }
        report["completion"].append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
