"""``hwaksan evaluate``: sample-quality metrics, likelihoods and a report for a trained model.

::

    hwaksan evaluate runs/mnist --metrics fd,precision,recall,accuracy,nn --n 2000 --out runs/mnist/eval
    hwaksan evaluate runs/mnist --n 2000 --seeds 3                 # mean +- std over 3 seed runs
    hwaksan evaluate runs/mnist --nfe-sweep heun,dpmpp_2m --sweep-steps 4,8,16 --resume

The engine is :func:`hwaksan.evaluation.pipeline.evaluate_checkpoint`; the report writer
:func:`hwaksan.evaluation.report.write_report`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..evaluation.effnet import FeatureNetworkUnavailable
from ..evaluation.features import SPACES
from ..evaluation.generate import SamplesExistError, SampleSpec
from ..evaluation.pipeline import METRICS, EvalConfig, MetricUnavailable, check_metrics, evaluate_checkpoint
from ..evaluation.report import metric_rows, write_report
from ..io.checkpoint import CheckpointError
from .args import (
    MAX_COUNT,
    MAX_SEED,
    MAX_STEPS,
    add_cfg_weight_argument,
    add_device_argument,
    add_ema_arguments,
    add_overwrite_argument,
    add_sampler_arguments,
    csv_of,
    int_in,
    pick_device,
)
from .common import UserError, check_outputs, one_line, record_outputs

__all__ = ["register", "run_evaluate"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hwaksan evaluate``."""
    p = sub.add_parser(
        "evaluate",
        help="measure a trained model (images, 2-D, clips, motion): Frechet distances, precision/recall, "
        "accuracy, memorisation, likelihood; writes report.json and report.html",
        description="Draw samples from a checkpoint of hwaksan train (resumable shards), compare them with "
        "held-out real images in two feature spaces (FD-EffNet: EfficientNet-Lite0 ImageNet features; "
        "FD-<dataset>: a classifier hwaksan trains on the data set; neither is FID), and write "
        "OUT/report.json and a one-page OUT/report.html. Clip and motion models are measured by their "
        "modality's measures instead (--metrics video / motion), each beside its real-data floor.",
    )
    p.add_argument(
        "checkpoint",
        help="a checkpoint of hwaksan train: image, 2-D, clip or motion (PATH or a run folder: its newest "
        "checkpoint)",
    )
    p.add_argument(
        "--metrics",
        type=csv_of(str),
        default=None,
        metavar="LIST",
        help=f"comma-separated metrics from {','.join(METRICS)} (default: fd,precision,recall,accuracy,nn "
        "for images, sw,mmd,loglik for 2-D models, video for clip models, motion for motion models). "
        "fd/precision/recall: in each --features space against the reference split; accuracy: the data-set "
        "classifier's accuracy on class-conditional samples (label i %% K) and the class entropies; nn: "
        "nearest-training-image distances and a picture of the closest pairs; nll: PF-ODE bits/dim and "
        "vlb: the DDPM bound, both on --likelihood-n real images; sw, mmd, loglik: sliced Wasserstein, MMD^2 "
        "and mean log-likelihood of 2-D samples against fresh data (with the two-true-sets floor); video: "
        "identity across frames, frame accuracy, motion and per-frame FD of clips against val clips (floor: "
        "test clips); motion: held-out action-classifier accuracy, motion FD, diversity, multimodality and "
        "jumps above the real 99th percentile against val motions (floor: val vs train)",
    )
    p.add_argument(
        "--n", type=int_in(1, MAX_COUNT), default=2000, help="generated images per seed run (default: 2000)"
    )
    p.add_argument(
        "--seeds",
        type=int_in(1, 1000),
        default=1,
        help="independent runs (new samples, new real subset each); >1 reports mean +- std (default: 1)",
    )
    p.add_argument(
        "--seed", type=int_in(0, MAX_SEED), default=0, help="image j uses seed SEED + j (default: 0)"
    )
    add_sampler_arguments(
        p,
        sampler="heun",
        steps=18,
        grid="karras",
        sampler_help="sampler (default: heun)",
        options_help="sampler options, a JSON object",
    )
    p.add_argument(
        "--features",
        type=csv_of(str),
        default=SPACES,
        metavar="LIST",
        help="feature spaces for fd/precision/recall: effnet,classifier (default: both)",
    )
    p.add_argument(
        "--k",
        type=int_in(1, 1000),
        default=3,
        help="neighbour rank of the precision/recall balls (default: 3)",
    )
    p.add_argument("--dataset", default=None, help="data set of the real images (default: the checkpoint's)")
    p.add_argument(
        "--reference-split",
        default=None,
        help="held-out split of real images for fd/precision/recall (default: test, else val)",
    )
    p.add_argument(
        "--train-split", default="train", help="split searched for nearest neighbours (default: train)"
    )
    p.add_argument(
        "--label", type=int_in(0), default=None, help="one class for every image (default: i %% K)"
    )
    p.add_argument("--uncond", action="store_true", help="sample a class-conditional model without labels")
    add_cfg_weight_argument(
        p,
        1.0,
        "classifier-free guidance weight of class-conditional samples, uncond + W (cond - uncond) "
        "(default: 1, none)",
    )
    p.add_argument(
        "--likelihood-n",
        type=int_in(1, MAX_COUNT),
        default=64,
        help="real images for nll and vlb (default: 64)",
    )
    p.add_argument(
        "--nfe-sweep",
        type=csv_of(str),
        default=(),
        metavar="SAMPLERS",
        help="also measure fd/precision/recall/accuracy for these samplers at each --sweep-steps and plot "
        "metric vs NFE, e.g. heun,dpmpp_2m,euler",
    )
    p.add_argument(
        "--sweep-steps",
        type=csv_of(int_in(1, MAX_STEPS)),
        default=(4, 8, 16, 32),
        metavar="LIST",
        help="step counts of every --nfe-sweep sampler (default: 4,8,16,32)",
    )
    p.add_argument(
        "--sweep-n", type=int_in(1, MAX_COUNT), default=None, help="images per sweep point (default: --n)"
    )
    add_ema_arguments(p, "evaluate")
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="output folder (default: RUN/eval-SAMPLER-STEPS next to the run)",
    )
    add_overwrite_argument(p)
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse the sample shards already in --out (an interrupted evaluation continues where it "
        "stopped)",
    )
    p.add_argument(
        "--shard-size",
        type=int_in(1, MAX_COUNT),
        default=250,
        help="images per sample shard file (default: 250)",
    )
    p.add_argument(
        "--batch-size", type=int_in(1, MAX_COUNT), default=250, help="images per sampler call (default: 250)"
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="cache for classifiers and real statistics (default: $XDG_CACHE_HOME/hwaksan)",
    )
    add_device_argument(p, "run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_evaluate)


def _default_out(checkpoint: str, sampler: str, steps: int) -> Path:
    p = Path(checkpoint)
    run = p if p.is_dir() else p.parent.parent if p.parent.name == "checkpoints" else p.parent
    return run / f"eval-{sampler}-{steps}"


def run_evaluate(args: argparse.Namespace) -> int:
    """Run ``hwaksan evaluate``; returns the exit status."""
    bad = [s for s in args.features if s not in SPACES]
    if bad:
        raise UserError(f"unknown --features {','.join(bad)}; choose from {','.join(SPACES)}")
    try:
        check_metrics(args.metrics or ())
    except MetricUnavailable as err:
        raise UserError(str(err)) from None
    grid = args.grid if isinstance(args.grid, str) else tuple(float(t) for t in args.grid)
    spec = SampleSpec(
        args.sampler, args.steps, grid, args.seed, dict(args.options), args.label, args.uncond, args.guidance
    )
    cfg = EvalConfig(
        metrics=tuple(args.metrics) if args.metrics else None,
        n=args.n,
        spec=spec,
        spaces=tuple(args.features),
        seeds=args.seeds,
        k=args.k,
        dataset=args.dataset,
        reference_split=args.reference_split,
        train_split=args.train_split,
        likelihood_n=args.likelihood_n,
        sweep_samplers=tuple(args.nfe_sweep),
        sweep_steps=tuple(args.sweep_steps),
        sweep_n=args.sweep_n,
        ema=args.ema,
        use_ema=not args.no_ema,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        device=pick_device(args.device).type,
        progress=not args.no_progress,
        cache_dir=args.cache_dir,
    )
    out = Path(args.out) if args.out else _default_out(args.checkpoint, args.sampler, args.steps)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: give a folder")
    reports = [out / "report.json", out / "report.html", out / "samples.png"]
    check_outputs(reports, overwrite=args.overwrite, inputs=[args.checkpoint])
    try:
        with one_line(f"evaluating into {out}"):
            report = evaluate_checkpoint(args.checkpoint, out, cfg, resume=args.resume)
    except (
        CheckpointError,
        MetricUnavailable,
        SamplesExistError,
        FeatureNetworkUnavailable,
        ValueError,
    ) as err:
        raise UserError(str(err)) from None
    except KeyboardInterrupt:
        print(
            f"hwaksan evaluate: interrupted; continue with the same options and --resume --out {out}",
            file=sys.stderr,
        )
        return 130
    with one_line("cannot write the report"):
        paths = write_report(report, out)
    record_outputs(*paths.values())
    width = max(len(a) for a, _, _ in metric_rows(report)) if report["metrics"] else 0
    for name, value, note in metric_rows(report):
        plain = value.replace("&plusmn;", "+-")
        print(f"  {name:<{width}}  {plain:<22} {note.replace('&lt;', '<').replace('&plusmn;', '+-')}")
    for w in report["warnings"]:
        print(f"  warning: {w}", file=sys.stderr)
    print(
        f"hwaksan evaluate: wrote {paths['html']} and {paths['json']} "
        f"({report['n']} x {report['seeds']} samples in {report['samples']['folder']})",
        file=sys.stderr,
    )
    return 0
