"""``hwaksan reflow`` and ``hwaksan straightness``: rectified flow with reflow and one-step
distillation (Liu, Gong & Liu 2022), for 2-D models and pixel-space image models alike.

::

    hwaksan train --data moons --source 8gaussians --process flow --prediction velocity --out runs/m
    hwaksan reflow runs/m --pairs 50000 --rounds 2 --distill-steps 2000 --out runs/m-reflow
    hwaksan reflow runs/flows/mnist-1rf --pairs 12000 --sampler heun --steps 16 --out runs/flows/mnist-reflow
    hwaksan straightness runs/m-reflow/rf2 --n 2000

``reflow`` works from any checkpoint of ``hwaksan train`` (a flow, or a diffusion model through
its probability-flow ODE). For each round ``k = 1 .. --rounds`` it simulates ``--pairs`` pairs
(source ``x1``, sample ``x0``) from the current model into resumable safetensors shards
(``OUT/pairs_k``), trains the (k+1)-rectified flow on exactly those pairs (``OUT/rfK``) and reports
its straightness and transport cost; ``--distill-steps`` then distils the last flow into a
one-step model (``OUT/distill``). Re-running the same command skips the finished shards and models
and continues an interrupted one. The pieces: :mod:`hwaksan.training.reflow` (pairs, training),
:mod:`hwaksan.evaluation.flow_report` (the metrics). A latent-diffusion model is refused in one
line: its students would have no autoencoder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from ..data.toy import TOY_DATASETS, get_toy_dataset
from ..evaluation.flow_report import EULER_STEPS_2D, EULER_STEPS_IMAGES, flow_report
from ..io.artifact import TrainedModel, load_trained
from ..io.checkpoint import CheckpointError
from ..training.config import ConfigError
from ..training.lowdim import save_lowdim, toy_source
from ..training.reflow import simulate_pairs, train_on_pairs_2d, train_on_pairs_images
from .args import (
    MAX_COUNT,
    MAX_SEED,
    MAX_STEPS,
    add_device_argument,
    add_overwrite_argument,
    add_sampler_arguments,
    float_in,
    int_in,
    json_path,
    pick_device,
)
from .common import UserError, check_outputs, describe_os_error, load_model, one_line, record_outputs

__all__ = ["register", "cmd_reflow", "cmd_straightness"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hwaksan reflow`` and ``hwaksan straightness``."""
    p = sub.add_parser(
        "reflow",
        help="rectified flow: simulate (noise, sample) pairs from a model, retrain on them (k-RF), distil",
        description="Reflow (Liu et al. 2022): from CHECKPOINT (a flow, or a diffusion model through its "
        "probability-flow ODE) simulate --pairs pairs into resumable safetensors shards (OUT/pairs_K), train "
        "the (K+1)-rectified flow on exactly those pairs (OUT/rfK+1), repeat --rounds times, then optionally "
        "distil into a one-step model (OUT/distill). After each round the straightness "
        "int E||(X1-X0) - v(X_t,t)||^2 dt and transport cost E||X1-X0||^2 are printed and saved in "
        "OUT/report.json (2-D models also get the sliced Wasserstein distance at 1, 2, 5, 10 Euler steps). "
        "Re-run the same command to continue an interrupted run. 2-D and pixel-space image models.",
    )
    p.add_argument("checkpoint", help="a checkpoint of hwaksan train, or its run folder (newest checkpoint)")
    p.add_argument(
        "--pairs", type=int_in(1, MAX_COUNT), required=True, help="number of (noise, sample) pairs per round"
    )
    add_sampler_arguments(
        p,
        sampler="heun",
        steps=20,
        grid=None,
        sampler_choices=None,
        sampler_help="deterministic sampler that simulates the pairs (default heun; euler, dpmpp_2m, unipc, "
        "adaptive, ...)",
        steps_help="sampler steps for the pairs (default 20)",
        grid_help="time grid for the pairs (default: uniform for flows, karras for diffusion models)",
        options_help="sampler options",
    )
    p.add_argument(
        "--rounds",
        type=int_in(0, 100),
        default=1,
        help="reflow rounds: 1 gives the 2-rectified flow (default 1)",
    )
    p.add_argument(
        "--train-steps",
        type=int_in(1, 10**9),
        default=None,
        help="training steps per round (default: 3000 for 2-D, the teacher's train.steps for images)",
    )
    p.add_argument(
        "--t-dist",
        choices=("uniform", "u_shaped", "u_shaped_tmax"),
        default="u_shaped_tmax",
        help="training times of the reflow rounds: uniform U(0, 1) (Liu et al. 2022); u_shaped, the density "
        "cosh(4 (t - 1/2)) that puts weight on both ends (Lee, Lin & Fanti 2024); u_shaped_tmax, the same "
        "with 10%% of the draws at exactly t = 1, the time of every sampler's first network call: the "
        "one-step quality of a 2-D 2-RF goes from SW 0.16 to 0.02 (docs/benchmarks-flows.md) (default "
        "u_shaped_tmax)",
    )
    p.add_argument(
        "--distill-steps",
        type=int_in(0, 10**9),
        default=0,
        help="train a one-step model for this many steps (default 0: off)",
    )
    p.add_argument(
        "--distill-pairs",
        choices=("new", "last"),
        default="new",
        help="pairs for distillation: new = simulated from the last rectified flow (Liu et al. 2022), "
        "last = reuse the last round's pairs (cheaper)",
    )
    p.add_argument(
        "--init",
        choices=("auto", "teacher", "scratch"),
        default="auto",
        help="initialise each student from its teacher's weights (auto: when the teacher is a velocity flow)",
    )
    p.add_argument(
        "--batch-size",
        type=int_in(1, MAX_COUNT),
        default=None,
        help="training batch (default: 512 for 2-D, the teacher's)",
    )
    p.add_argument(
        "--lr",
        type=float_in(0.0, 10.0, above=True),
        default=None,
        help="peak learning rate (default: 2e-3 for 2-D, the teacher's)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="image models: override the student's training config (e.g. --set train.bf16=true)",
    )
    p.add_argument(
        "--shard-size",
        type=int_in(1, MAX_COUNT),
        default=1000,
        help="pairs per safetensors shard (default 1000)",
    )
    p.add_argument(
        "--sim-batch", type=int_in(1, MAX_COUNT), default=500, help="pairs simulated per batch (default 500)"
    )
    p.add_argument(
        "--eval-n",
        type=int_in(1, MAX_COUNT),
        default=None,
        help="paths for the metrics (default 2000 2-D, 256 images)",
    )
    p.add_argument(
        "--eval-steps",
        type=int_in(1, MAX_STEPS),
        default=100,
        help="Euler steps of the straightness integral (default 100)",
    )
    p.add_argument("--skip-teacher-eval", action="store_true", help="do not measure the teacher itself")
    p.add_argument(
        "--seed",
        type=int_in(0, MAX_SEED),
        default=0,
        help="pair i starts from the noise of seed SEED + i (default 0)",
    )
    p.add_argument("--out", default="runs/reflow", help="output folder (default runs/reflow)")
    add_overwrite_argument(p)
    add_device_argument(p, "run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_reflow)

    p = sub.add_parser(
        "straightness",
        help="straightness and transport cost of a model's ODE map (Liu et al. 2022)",
        description="S = int_0^1 E||(X1 - X0) - v(X_t, t)||^2 dt along Euler paths from --n source samples, "
        "and the transport cost E||X1 - X0||^2 (2-D models: also the sliced Wasserstein distance at 1, 2, 5, "
        "10 Euler steps).",
    )
    p.add_argument("checkpoint", help="a checkpoint of hwaksan train / reflow, or a run folder")
    p.add_argument(
        "--n", type=int_in(1, MAX_COUNT), default=None, help="paths (default 2000 for 2-D, 256 for images)"
    )
    p.add_argument(
        "--steps", type=int_in(1, MAX_STEPS), default=100, help="Euler steps of the integral (default 100)"
    )
    p.add_argument("--out", default=None, type=json_path, help="also write the numbers as JSON here")
    add_overwrite_argument(p)
    add_device_argument(p, "run")
    p.set_defaults(func=cmd_straightness)


def _reference_2d(model: TrainedModel, n: int) -> torch.Tensor | None:
    """``n`` fresh samples of a 2-D model's data set (None when the set is unknown)."""
    if model.dataset not in TOY_DATASETS:
        return None
    return get_toy_dataset(model.dataset).sample(n, torch.Generator().manual_seed(10_000)).double()


def _print_report(tag: str, report: dict[str, Any]) -> None:
    sws = " ".join(
        f"SW@{k.removeprefix('sw_euler_')}={v:.4f}" for k, v in report.items() if k.startswith("sw_")
    )
    print(
        f"  {tag:9s} straightness {report['straightness']:.5g} ({report['straightness_per_dim']:.4g}/dim), "
        f"transport cost {report['transport_cost']:.5g} ({report['transport_cost_per_dim']:.4g}/dim)"
        + (f"; {sws}" if sws else ""),
        flush=True,
    )


def _report_kwargs(
    model: TrainedModel, n: int, steps: int, euler: bool, device: torch.device
) -> dict[str, Any]:
    """The :func:`flow_report` arguments of a model (2-D: its source and data set)."""
    lowdim = model.is_lowdim
    return {
        "shape": model.data_shape,
        "source": toy_source(model.source) if lowdim else None,
        "num_classes": model.num_classes,
        "n": n,
        "straightness_steps": steps,
        "euler_steps": (EULER_STEPS_2D if lowdim else EULER_STEPS_IMAGES) if euler else (),
        "reference": _reference_2d(model, n) if lowdim else None,
        "device": device,
    }


def cmd_reflow(args: argparse.Namespace) -> int:
    """Run ``hwaksan reflow``; returns the exit status.

    ``OUT/report.json`` is checked before any work but loading the teacher (an existing one that
    hwaksan wrote is the report of the run this one continues); the shards and models are resumed,
    never replaced.
    """
    if args.rounds == 0 and args.distill_steps <= 0:
        raise UserError("nothing to do: give --rounds >= 1 or --distill-steps > 0")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: give a folder")
    device = pick_device(args.device)
    teacher = load_model(args.checkpoint, "hwaksan reflow", pixel=True, device=device)
    # checked once the teacher is known to apply (a refused teacher leaves no folder behind)
    (report_path,) = check_outputs([out / "report.json"], overwrite=args.overwrite, inputs=[args.checkpoint])
    lowdim = teacher.is_lowdim
    if not lowdim and teacher.config is None:
        raise UserError(
            f"{teacher.path} records no training config: image reflow needs a run of hwaksan train"
        )
    eval_n = args.eval_n if args.eval_n else (2000 if lowdim else 256)
    report_kwargs = _report_kwargs(teacher, eval_n, args.eval_steps, True, device)
    train_steps = args.train_steps or (
        3000 if lowdim else int(teacher.config.get("train", {}).get("steps", 1000))
    )
    report = _read_report(report_path)
    report.update(
        {
            "teacher": str(teacher.path),
            "pairs": args.pairs,
            "sampler": args.sampler,
            "steps": args.steps,
            "t_dist": args.t_dist,
        }
    )
    kind = "2-D" if lowdim else "image"
    print(
        f"hwaksan reflow: teacher {teacher.path} ({kind} model, {teacher.process.name}/"
        f"{teacher.denoiser.prediction}); writing to {out}",
        flush=True,
    )
    progress = not args.no_progress
    start = time.perf_counter()
    files: dict[str, Path] = {}

    def evaluate(tag: str, model: Any) -> None:
        r = flow_report(model, **report_kwargs)
        report.setdefault("rounds", {})[tag] = r
        _print_report(tag, r)
        _write_report(report_path, report)

    def pairs_of(model: Any, folder: Path, tag: str) -> dict[str, torch.Tensor]:
        return simulate_pairs(
            model,
            folder,
            args.pairs,
            shape=teacher.data_shape,
            source=report_kwargs["source"],
            num_classes=teacher.num_classes,
            sampler=args.sampler,
            steps=args.steps,
            grid=args.grid,
            seed=args.seed,
            shard_size=args.shard_size,
            batch_size=args.sim_batch,
            spec={"teacher": tag},
            device=device,
            progress=progress,
            options=args.options,
        )

    def train_2d(
        model: Any, pairs: dict, folder: Path, t_dist: str, steps: int, init: str
    ) -> tuple[Any, Path]:
        ckpt = folder / "model"
        if ckpt.with_name("model.json").exists():
            return load_trained(ckpt, ema=None, device=device).denoiser, ckpt
        student, _ = train_on_pairs_2d(
            model.cpu(),
            pairs,
            steps=steps,
            batch_size=args.batch_size or 512,
            lr=args.lr or 2e-3,
            seed=args.seed,
            t_dist=t_dist,
            init=init,
            progress=progress,
        )
        model.to(device)
        save_lowdim(
            ckpt, student, dataset=teacher.dataset, source=teacher.source, info={"reflow": str(folder)}
        )
        return student.to(device), ckpt

    def train(model: Any, pairs: dict, folder: Path, t_dist: str, steps: int, init: str, sample_steps: int):
        if lowdim:
            return train_2d(model, pairs, folder, t_dist, steps, init)
        overrides = list(args.set)
        if args.batch_size:
            overrides.append(f"train.batch_size={args.batch_size}")
        if args.lr:
            overrides.append(f"optim.lr={args.lr}")
        student = train_on_pairs_images(
            teacher,
            pairs,
            folder,
            steps=steps,
            t_dist=t_dist,
            init=init,
            init_from=model,
            overrides=overrides,
            sample_steps=sample_steps,
            progress=progress,
        )
        return student.to(device).denoiser, student.path

    try:
        if "1" not in report.get("rounds", {}) and not args.skip_teacher_eval:
            evaluate("1", teacher.denoiser)
        model, tag = teacher.denoiser, "teacher"
        pairs = None
        for k in range(1, args.rounds + 1):
            source_name = "teacher" if k == 1 else f"{k}-rectified flow"
            print(
                f"round {k}: {args.pairs} pairs from the {source_name} ({args.sampler}, {args.steps} steps) "
                f"-> {out / f'pairs_{k}'}",
                flush=True,
            )
            pairs = pairs_of(model, out / f"pairs_{k}", tag)
            print(
                f"round {k}: training the {k + 1}-rectified flow ({train_steps} steps) -> "
                f"{out / f'rf{k + 1}'}",
                flush=True,
            )
            model, ckpt = train(model, pairs, out / f"rf{k + 1}", args.t_dist, train_steps, args.init, 2)
            files[f"rf{k + 1}"] = ckpt
            files[f"pairs_{k}"] = out / f"pairs_{k}"
            tag = f"rf{k + 1}"
            evaluate(str(k + 1), model)
        if args.distill_steps > 0:
            if args.distill_pairs == "new" or pairs is None:
                folder = out / f"pairs_{args.rounds + 1}"
                print(f"distill: {args.pairs} pairs from {tag} -> {folder}", flush=True)
                pairs = pairs_of(model, folder, tag)
                files["distill_pairs"] = folder
            print(
                f"distill: one-step model ({args.distill_steps} steps at t = 1) -> {out / 'distill'}",
                flush=True,
            )
            distilled, ckpt = train(model, pairs, out / "distill", "terminal", args.distill_steps, "auto", 1)
            files["distill"] = ckpt
            evaluate("distill", distilled)
    except (CheckpointError, ConfigError, ValueError) as err:
        raise UserError(" ".join(str(err).split())) from None
    except OSError as err:
        raise UserError(f"reflow in {out}: {describe_os_error(err)}") from None
    report["seconds"] = float(report.get("seconds", 0.0)) + time.perf_counter() - start
    _write_report(report_path, report)
    print("outputs:")
    for key, value in files.items():
        print(f"  {key:13s} {value}")
    print(f"  {'report':13s} {report_path}")
    return 0


def _read_report(path: Path) -> dict[str, Any]:
    """The report of the run being continued (an empty one when there is none).

    Raises:
        UserError: a report that cannot be read or is not a JSON object (one line).
    """
    if not path.exists():
        return {}
    with one_line("cannot read the report"):
        text = path.read_text()
    try:
        report = json.loads(text)
    except ValueError:
        report = None
    if not isinstance(report, dict) or not isinstance(report.get("rounds", {}), dict):
        raise UserError(f"{path} is not a reflow report: remove it, or choose another --out")
    return report


def _write_report(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` as JSON and record it as hwaksan's."""
    with one_line("cannot write the report"):
        path.write_text(json.dumps(report, indent=2) + "\n")
    record_outputs(path)


def cmd_straightness(args: argparse.Namespace) -> int:
    """Run ``hwaksan straightness``; returns the exit status."""
    if args.out:
        check_outputs([args.out], overwrite=args.overwrite, inputs=[args.checkpoint])
    device = pick_device(args.device)
    model = load_model(args.checkpoint, "hwaksan straightness", device=device)
    n = args.n or (2000 if model.is_lowdim else 256)
    report = flow_report(model.denoiser, **_report_kwargs(model, n, args.steps, model.is_lowdim, device))
    path = model.path
    report["checkpoint"] = str(path)
    _print_report(path.parent.name if path.name == "model" else path.name, report)
    if args.out:
        out = Path(args.out)
        with one_line("cannot write the report"):
            out.write_text(json.dumps(report, indent=2) + "\n")
        record_outputs(out)
        print(f"outputs:\n  report {out}")
    return 0
