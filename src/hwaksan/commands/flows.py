"""``hwaksan reflow`` and ``hwaksan straightness``: rectified flow with reflow and one-step
distillation (Liu, Gong & Liu 2022), for 2-D models and image models alike.

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
one-step model (``OUT/distill``). Everything is resumable: re-running the same command skips the
finished shards and models and continues an interrupted one. The glue lives here; the pieces are
:mod:`hwaksan.tasks.reflow` (the ODE map), :mod:`hwaksan.training.pairs` (shards, paired data),
:func:`hwaksan.training.simple.fit` / :class:`hwaksan.training.trainer.Trainer` (the training) and
:mod:`hwaksan.evaluation.straightness` (the metrics).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "register",
    "add_toy_flow_arguments",
    "toy_source",
    "sample_from_source",
    "simulate_pairs",
    "train_on_pairs_2d",
    "flow_report",
]

#: First seed of the source samples used for evaluation (far from the pair seeds 0, 1, 2, ...).
EVAL_SEED = 1_000_000_000
#: Euler step counts reported for 2-D models (the benchmark's columns).
EULER_STEPS_2D = (1, 2, 5, 10)
EULER_STEPS_IMAGES = (1, 2, 4)


# ------------------------------------------------------------------------------------------------
# 2-D training with a source and a coupling (hooks used by hwaksan train / sample)


def add_toy_flow_arguments(p: argparse.ArgumentParser) -> None:
    """``--coupling`` and ``--source`` for 2-D training (``hwaksan train`` / ``demo``)."""
    from ..data.toy import TOY_DATASETS
    from ..processes import COUPLINGS

    p.add_argument(
        "--coupling",
        default="independent",
        choices=COUPLINGS,
        help="pairing of noise and data in each batch (default independent): ot = exact minibatch optimal "
        "transport (OT-CFM, Tong et al. 2024), sinkhorn = entropic minibatch OT",
    )
    p.add_argument(
        "--source",
        default="gaussian",
        choices=("gaussian", *TOY_DATASETS),
        help="distribution at t = 1 (default gaussian = N(0, I)); a 2-D set gives a flow between two data "
        "sets, e.g. --source 8gaussians --data moons (needs --process flow --prediction velocity; sample "
        "it with deterministic samplers only)",
    )


def toy_source(name: str | None):
    """``source(n, generator)`` of a 2-D set by name; None for ``gaussian`` / None (the prior)."""
    if name in (None, "gaussian"):
        return None
    from ..data.toy import get_toy_dataset

    return get_toy_dataset(name).sample


def check_toy_source(args: argparse.Namespace) -> None:
    """A non-Gaussian source needs the flow interpolant (its ``x_t`` is not a Gaussian path)."""
    source = getattr(args, "source", "gaussian")
    if source != "gaussian" and args.process != "flow":
        raise ValueError(f"--source {source} needs --process flow (got {args.process})")


def sample_from_source(model, source: str, n: int, *, sampler: str, steps: int, grid, seed: int, **options):
    """Samples of a 2-D model trained from a non-Gaussian ``source``: its ODE map applied to
    ``n`` source samples (one generator seeded ``seed``). Returns a ``SampleResult``."""
    from ..tasks.reflow import push_forward, source_sample

    x1 = source_sample(n, (model.net.config["dim"],), seed, toy_source(source))
    with torch.no_grad():
        return push_forward(model, x1, sampler=sampler, steps=steps, grid=grid, **options)


# ------------------------------------------------------------------------------------------------
# pieces of a reflow round


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def simulate_pairs(
    model,
    folder: Path,
    n: int,
    *,
    shape: tuple[int, ...],
    source=None,
    num_classes: int = 0,
    sampler: str = "heun",
    steps: int = 20,
    grid=None,
    seed: int = 0,
    shard_size: int = 1000,
    batch_size: int = 500,
    spec: dict[str, Any] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    max_shards: int | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """Simulate (or finish simulating) ``n`` pairs of ``model``'s ODE map into shards under
    ``folder`` and return them all: ``{"noise": x1, "sample": x0[, "labels"]}``.

    Pair ``i`` starts from the source sample of seed ``seed + i`` (Gaussian source) and, for a
    class-conditional model, has label ``i % num_classes``. Returns None when ``max_shards`` stopped
    the simulation before the end.
    """
    from ..tasks.reflow import push_forward, source_sample
    from ..training.pairs import PairShards

    grid_name = grid if isinstance(grid, str) or grid is None else [float(v) for v in grid]
    full_spec = {
        "sampler": sampler,
        "steps": steps,
        "grid": grid_name,
        "seed": seed,
        "shape": list(shape),
        "num_classes": num_classes,
        "options": options or {},
        **(spec or {}),
    }
    if source is not None:
        full_spec["batch_size"] = batch_size  # a custom source draws per batch
    shards = PairShards(folder, n, shard_size, full_spec)

    def make(start: int, count: int) -> dict[str, torch.Tensor]:
        out: dict[str, list[torch.Tensor]] = {"noise": [], "sample": [], "labels": []}
        for b0 in range(start, start + count, batch_size):
            nb = min(batch_size, start + count - b0)
            x1 = source_sample(nb, shape, seed + b0, source, device=device)
            cond = None
            if num_classes:
                cond = torch.arange(b0, b0 + nb, device=device) % num_classes
                out["labels"].append(cond.cpu())
            with torch.no_grad():
                res = push_forward(
                    model, x1, sampler=sampler, steps=steps, grid=grid, cond=cond, **(options or {})
                )
            out["noise"].append(x1.cpu())
            out["sample"].append(res.x.float().cpu())
        return {k: torch.cat(v) for k, v in out.items() if v}

    shards.fill(make, progress=progress, max_shards=max_shards)
    if shards.missing():
        return None
    return shards.load()


def train_on_pairs_2d(
    teacher,
    pairs: dict[str, torch.Tensor],
    *,
    steps: int,
    batch_size: int = 512,
    lr: float = 2e-3,
    seed: int = 0,
    t_dist: str = "uniform",
    init: str = "auto",
    progress: bool = True,
):
    """Train a 2-D flow (same MLP as ``teacher``, linear interpolant, velocity) on fixed pairs.

    ``t_dist="terminal"`` is one-step distillation. ``init``: ``teacher`` copies the teacher's
    weights first (Liu et al. 2022 initialise each reflow from the previous flow), ``scratch``
    does not, ``auto`` copies when the teacher is itself a velocity flow. Returns ``(model, fit
    result)``.
    """
    from ..models.mlp import MLP
    from ..parameterizations import ModelDenoiser
    from ..processes import LinearInterpolant
    from ..training.pairs import pair_sampler
    from ..training.simple import fit

    net = MLP(**teacher.net.config)
    student = ModelDenoiser(net, LinearInterpolant(), "velocity", teacher.sigma_data)
    if _copy_teacher(teacher, init):
        net.load_state_dict(teacher.net.state_dict())
    result = fit(
        student,
        pair_sampler(pairs["sample"].float(), pairs["noise"].float()),
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        t_dist=t_dist,
        seed=seed,
        progress=progress,
    )
    return student.eval(), result


def _copy_teacher(teacher, init: str) -> bool:
    if init not in ("auto", "teacher", "scratch"):
        raise ValueError(f"--init must be auto, teacher or scratch, got {init!r}")
    is_flow = getattr(teacher.process, "name", "") == "flow" and teacher.prediction == "velocity"
    if init == "teacher" and not is_flow:
        raise ValueError(
            "--init teacher needs a velocity-predicting flow teacher (a diffusion model's weights predict "
            "another quantity): use --init scratch"
        )
    return init == "teacher" or (init == "auto" and is_flow)


def _train_on_pairs_images(
    teacher_meta: dict,
    teacher_model,
    pairs: dict[str, torch.Tensor],
    out: Path,
    *,
    steps: int,
    t_dist: str,
    init: str,
    overrides: list[str],
    sample_steps: int,
    progress: bool,
):
    """Train an image flow on fixed pairs with the image Trainer (resumable); returns the model
    (EMA weights) and its checkpoint path."""
    from ..io.checkpoint import latest_checkpoint, load_model
    from ..training.config import Config, apply_overrides
    from ..training.ema import EMA
    from ..training.pairs import PairedImageDataset
    from ..training.trainer import Trainer

    cfg = copy.deepcopy(teacher_meta["config"])
    cfg["diffusion"] = {
        "process": "flow",
        "process_args": {},
        "prediction": "velocity",
        "weighting": "simple",
        "t_dist": t_dist,
        "sigma_data": cfg.get("diffusion", {}).get("sigma_data", 0.5),
        "coupling": "independent",
    }
    cfg.setdefault("train", {})["steps"] = steps
    cfg["train"]["max_seconds"] = 0.0
    cfg["sample"] = {"sampler": "euler", "steps": sample_steps, "grid": "uniform", "n": 64, "seed": 0}
    config = Config.from_dict(apply_overrides(cfg, overrides))
    data = PairedImageDataset.from_pairs(pairs, teacher_meta.get("data", {}).get("name", "pairs"))
    data.images = data.images.reshape(-1, *teacher_meta["image_shape"])
    data.noise = data.noise.reshape(data.images.shape)
    final = out / "checkpoints" / f"step_{steps:07d}"
    if not final.with_name(final.name + ".json").exists():
        trainer = Trainer(config, out, progress=progress, data=data)
        resume = latest_checkpoint(out) is not None
        if not resume and _copy_teacher(teacher_model, init):
            trainer.net.load_state_dict(teacher_model.net.state_dict())
            trainer.ema = EMA(trainer.net, config.ema.decays)
        trainer.run(resume=resume)
    model, _ = load_model(final)
    return model.eval(), final


def flow_report(
    model,
    *,
    shape: tuple[int, ...],
    source=None,
    num_classes: int = 0,
    n: int = 256,
    straightness_steps: int = 100,
    euler_steps: tuple[int, ...] = EULER_STEPS_2D,
    reference: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 500,
) -> dict[str, Any]:
    """Straightness and transport cost of ``model`` on ``n`` evaluation paths (seeds from
    :data:`EVAL_SEED`), and for 2-D models with a ``reference`` data sample the sliced Wasserstein
    distance of ``n`` samples at each Euler step count."""
    from ..evaluation.straightness import straightness
    from ..tasks.reflow import push_forward, source_sample

    s_sum = c_sum = 0.0
    dim = 1
    for b0 in range(0, n, batch_size):
        nb = min(batch_size, n - b0)
        x1 = source_sample(nb, shape, EVAL_SEED + b0, source, device=device)
        cond = (torch.arange(b0, b0 + nb, device=device) % num_classes) if num_classes else None
        r = straightness(model, x1, steps=straightness_steps, cond=cond)
        s_sum += r.straightness * nb
        c_sum += r.transport_cost * nb
        dim = r.dim
    report: dict[str, Any] = {
        "straightness": s_sum / n,
        "transport_cost": c_sum / n,
        "straightness_per_dim": s_sum / n / dim,
        "transport_cost_per_dim": c_sum / n / dim,
        "n": n,
        "straightness_steps": straightness_steps,
    }
    if reference is not None:
        from ..evaluation.lowdim import sliced_wasserstein

        x1 = source_sample(n, shape, EVAL_SEED, source, device=device)
        for k in euler_steps:
            with torch.no_grad():
                x = push_forward(model, x1, sampler="euler", steps=k, grid="uniform").x
            sw = sliced_wasserstein(x, reference, generator=torch.Generator().manual_seed(0))
            report[f"sw_euler_{k}"] = sw
    return report


# ------------------------------------------------------------------------------------------------
# the commands


def _load(checkpoint: str):
    from ..io.checkpoint import load_model, resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    model, meta = load_model(path)
    is_toy = meta.get("network", {}).get("class") == "MLP" and not meta.get("image_shape")
    if is_toy:
        shape = (int(model.net.config["dim"]),)
    else:
        shape = tuple(int(v) for v in (meta.get("data_shape") or meta.get("image_shape") or ()))
        if not shape:
            raise ValueError(f"{path} records no data shape: not a checkpoint of hwaksan train")
    num_classes = 0 if is_toy else int(meta.get("num_classes") or 0)
    if meta.get("config", {}).get("data", {}).get("conditional") is False:
        num_classes = 0
    return path, model, meta, is_toy, shape, num_classes


def _reference_2d(meta: dict, n: int) -> torch.Tensor | None:
    from ..data.toy import TOY_DATASETS, get_toy_dataset

    name = meta.get("data")
    if name not in TOY_DATASETS:
        return None
    return get_toy_dataset(name).sample(n, torch.Generator().manual_seed(10_000)).double()


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


def cmd_reflow(args: argparse.Namespace) -> int:
    """Run ``hwaksan reflow``; returns the exit status."""
    from ..io.checkpoint import CheckpointError, load_model, save_model
    from ..training.config import ConfigError

    try:
        path, teacher, meta, is_toy, shape, num_classes = _load(args.checkpoint)
    except (CheckpointError, ValueError) as err:
        print(f"hwaksan reflow: error: {err}", file=sys.stderr)
        return 1
    if args.pairs < 1 or args.rounds < 0 or args.steps < 1:
        print("hwaksan reflow: error: --pairs and --steps must be >= 1, --rounds >= 0", file=sys.stderr)
        return 1
    if args.rounds == 0 and args.distill_steps <= 0:
        print(
            "hwaksan reflow: error: nothing to do: give --rounds >= 1 or --distill-steps > 0", file=sys.stderr
        )
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = _device(args.device)
    teacher = teacher.to(device)
    source = toy_source(meta.get("source")) if is_toy else None
    eval_n = args.eval_n if args.eval_n else (2000 if is_toy else 256)
    reference = _reference_2d(meta, eval_n) if is_toy else None
    train_steps = args.train_steps or (
        3000 if is_toy else int(meta.get("config", {}).get("train", {}).get("steps", 1000))
    )
    report_kwargs = {
        "shape": shape,
        "source": source,
        "num_classes": num_classes,
        "n": eval_n,
        "straightness_steps": args.eval_steps,
        "euler_steps": EULER_STEPS_2D if is_toy else EULER_STEPS_IMAGES,
        "reference": reference,
        "device": device,
    }
    report_path = out / "report.json"
    report: dict[str, Any] = json.loads(report_path.read_text()) if report_path.exists() else {}
    report.update(
        {
            "teacher": str(path),
            "pairs": args.pairs,
            "sampler": args.sampler,
            "steps": args.steps,
            "t_dist": args.t_dist,
        }
    )
    print(
        f"hwaksan reflow: teacher {path} ({'2-D' if is_toy else 'image'} model, {teacher.process.name}/"
        f"{teacher.prediction}); writing to {out}",
        flush=True,
    )
    progress = not args.no_progress
    start = time.perf_counter()
    files: dict[str, Path] = {}

    def evaluate(tag: str, model) -> None:
        r = flow_report(model, **report_kwargs)
        report.setdefault("rounds", {})[tag] = r
        _print_report(tag, r)
        report_path.write_text(json.dumps(report, indent=2) + "\n")

    def pairs_of(model, folder: Path, tag: str):
        spec = {"teacher": tag}
        return simulate_pairs(
            model,
            folder,
            args.pairs,
            shape=shape,
            source=source,
            num_classes=num_classes,
            sampler=args.sampler,
            steps=args.steps,
            grid=args.grid,
            seed=args.seed,
            shard_size=args.shard_size,
            batch_size=args.sim_batch,
            spec=spec,
            device=device,
            progress=progress,
            options=args.options,
        )

    def train(model, pairs, folder: Path, t_dist: str, steps: int, init: str, sample_steps: int):
        if is_toy:
            ckpt = folder / "model"
            if ckpt.with_name("model.json").exists():
                student, _ = load_model(ckpt)
                return student.to(device).eval(), ckpt
            student, result = train_on_pairs_2d(
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
            save_model(
                ckpt,
                student,
                extra_meta={"data": meta.get("data"), "source": meta.get("source"), "reflow": str(folder)},
            )
            return student.to(device), ckpt
        overrides = list(args.set)
        if args.batch_size:
            overrides.append(f"train.batch_size={args.batch_size}")
        if args.lr:
            overrides.append(f"optim.lr={args.lr}")
        return _train_on_pairs_images(
            meta,
            model,
            pairs,
            folder,
            steps=steps,
            t_dist=t_dist,
            init=init,
            overrides=overrides,
            sample_steps=sample_steps,
            progress=progress,
        )

    try:
        if "1" not in report.get("rounds", {}) and not args.skip_teacher_eval:
            evaluate("1", teacher)
        model, tag = teacher, "teacher"
        pairs = None
        for k in range(1, args.rounds + 1):
            print(
                f"round {k}: {args.pairs} pairs from the {'teacher' if k == 1 else f'{k}-rectified flow'} "
                f"({args.sampler}, {args.steps} steps) -> {out / f'pairs_{k}'}",
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
        print(f"hwaksan reflow: error: {err}", file=sys.stderr)
        return 1
    report["seconds"] = report.get("seconds", 0.0) + time.perf_counter() - start
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    print("outputs:")
    for key, value in files.items():
        print(f"  {key:13s} {value}")
    print(f"  {'report':13s} {report_path}")
    return 0


def cmd_straightness(args: argparse.Namespace) -> int:
    """Run ``hwaksan straightness``; returns the exit status."""
    from ..io.checkpoint import CheckpointError

    try:
        path, model, meta, is_toy, shape, num_classes = _load(args.checkpoint)
    except (CheckpointError, ValueError) as err:
        print(f"hwaksan straightness: error: {err}", file=sys.stderr)
        return 1
    device = _device(args.device)
    n = args.n or (2000 if is_toy else 256)
    report = flow_report(
        model.to(device),
        shape=shape,
        source=toy_source(meta.get("source")) if is_toy else None,
        num_classes=num_classes,
        n=n,
        straightness_steps=args.steps,
        euler_steps=EULER_STEPS_2D if is_toy else (),
        reference=_reference_2d(meta, n) if is_toy else None,
        device=device,
    )
    report["checkpoint"] = str(path)
    _print_report(path.parent.name if path.name == "model" else path.name, report)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"outputs:\n  report {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hwaksan reflow`` and ``hwaksan straightness`` to ``sub``."""
    from ..samplers import GRIDS
    from ..training.cli_train import grid_argument, sampler_options

    p = sub.add_parser(
        "reflow",
        help="rectified flow: simulate (noise, sample) pairs from a model, retrain on them (k-RF), distil",
        description="Reflow (Liu et al. 2022): from CHECKPOINT (a flow, or a diffusion model through its "
        "probability-flow ODE) simulate --pairs pairs into resumable safetensors shards (OUT/pairs_K), train "
        "the (K+1)-rectified flow on exactly those pairs (OUT/rfK+1), repeat --rounds times, then optionally "
        "distil into a one-step model (OUT/distill). After each round the straightness "
        "int E||(X1-X0) - v(X_t,t)||^2 dt and transport cost E||X1-X0||^2 are printed and saved in "
        "OUT/report.json (2-D models also get the sliced Wasserstein distance at 1, 2, 5, 10 Euler steps). "
        "Re-run the same command to continue an interrupted run.",
    )
    p.add_argument("checkpoint", help="a checkpoint of hwaksan train, or its run folder (newest checkpoint)")
    p.add_argument("--pairs", type=int, required=True, help="number of (noise, sample) pairs per round")
    p.add_argument(
        "--sampler",
        default="heun",
        help="deterministic sampler that simulates the pairs (default heun; euler, dpmpp_2m, unipc, "
        "adaptive, ...)",
    )
    p.add_argument("--steps", type=int, default=20, help="sampler steps for the pairs (default 20)")
    p.add_argument(
        "--grid",
        type=grid_argument,
        default=None,
        metavar="{" + ",".join(GRIDS) + "} or FILE.json",
        help="time grid for the pairs (default: uniform for flows, karras for diffusion models)",
    )
    p.add_argument("--options", type=sampler_options, default={}, metavar="JSON", help="sampler options")
    p.add_argument(
        "--rounds", type=int, default=1, help="reflow rounds: 1 gives the 2-rectified flow (default 1)"
    )
    p.add_argument(
        "--train-steps",
        type=int,
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
        type=int,
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
        "--batch-size", type=int, default=None, help="training batch (default: 512 for 2-D, the teacher's)"
    )
    p.add_argument(
        "--lr", type=float, default=None, help="peak learning rate (default: 2e-3 for 2-D, the teacher's)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="image models: override the student's training config (e.g. --set train.bf16=true)",
    )
    p.add_argument("--shard-size", type=int, default=1000, help="pairs per safetensors shard (default 1000)")
    p.add_argument("--sim-batch", type=int, default=500, help="pairs simulated per batch (default 500)")
    p.add_argument(
        "--eval-n", type=int, default=None, help="paths for the metrics (default 2000 2-D, 256 images)"
    )
    p.add_argument(
        "--eval-steps", type=int, default=100, help="Euler steps of the straightness integral (default 100)"
    )
    p.add_argument("--skip-teacher-eval", action="store_true", help="do not measure the teacher itself")
    p.add_argument(
        "--seed", type=int, default=0, help="pair i starts from the noise of seed SEED + i (default 0)"
    )
    p.add_argument("--out", default="runs/reflow", help="output folder (default runs/reflow)")
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run (default auto)"
    )
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
    p.add_argument("--n", type=int, default=None, help="paths (default 2000 for 2-D, 256 for images)")
    p.add_argument("--steps", type=int, default=100, help="Euler steps of the integral (default 100)")
    p.add_argument("--out", default=None, help="also write the numbers as JSON here")
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run (default auto)"
    )
    p.set_defaults(func=cmd_straightness)
