"""The ``hwaksan`` command line: ``demo``, ``train``, ``sample``, ``plan-steps``, ``models``, ``samplers``.

Every command prints where its outputs went. ``hwaksan COMMAND --help`` explains every option.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import torch

from .commands import COMMAND_MODULES
from .commands.flows import add_toy_flow_arguments
from .processes import PROCESSES, make_process
from .samplers import GRIDS, SAMPLERS
from .training.cli_train import add_sample_arguments, add_train_arguments

__all__ = ["main", "build_parser"]

DEMO_SAMPLERS = {
    # sampler: (grid, step counts)
    "ddpm": ("uniform", (10, 20, 50, 100)),
    "ddim": ("uniform", (5, 10, 20, 50)),
    "euler_maruyama": ("uniform", (10, 20, 50, 100)),
    "heun": ("karras", (3, 5, 10, 25)),
    "dpmpp_2m": ("log_snr", (5, 10, 20, 50)),
}


def _toy_names() -> tuple[str, ...]:
    from .data.toy import TOY_DATASETS

    return TOY_DATASETS


def _train_toy(args: argparse.Namespace, out: Path, progress: bool = True):
    """Train an MLP denoiser on a 2-D toy set; returns (model, dataset, losses, seconds)."""
    from .commands.flows import check_toy_source, toy_source
    from .data.toy import get_toy_dataset
    from .io.checkpoint import save_model
    from .models.mlp import MLP
    from .parameterizations import ModelDenoiser
    from .plotting import plot_loss
    from .training.simple import fit

    check_toy_source(args)
    dataset = get_toy_dataset(args.data)
    process = make_process(args.process)
    net = MLP(dim=2, width=args.width, depth=args.depth)
    model = ModelDenoiser(net, process, prediction=args.prediction, sigma_data=1.0)
    start = time.perf_counter()
    result = fit(
        model,
        dataset.sample,
        steps=args.train_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weighting=args.weighting,
        t_dist="discrete" if args.process.startswith("ddpm") else "uniform",
        seed=args.seed,
        progress=progress,
        coupling=getattr(args, "coupling", None),  # flows (commands/flows.py)
        sample_source=toy_source(getattr(args, "source", None)),
    )
    seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    ckpt = save_model(
        out / "model",
        model,
        extra_meta={
            "data": args.data,
            "train_steps": args.train_steps,
            "seconds": seconds,
            "source": getattr(args, "source", "gaussian"),
            "coupling": getattr(args, "coupling", "independent"),
        },
    )
    plot_loss(result.losses, out / "loss.png")
    return model.eval(), dataset, result.losses, seconds, ckpt


def _evaluate_toy(x: torch.Tensor, dataset, reference: torch.Tensor, seed: int) -> dict:
    from .evaluation.lowdim import mean_log_likelihood, mmd, sliced_wasserstein

    x = x.double()
    ok = bool(torch.isfinite(x).all())
    row = {
        "sliced_wasserstein": sliced_wasserstein(x, reference, generator=torch.Generator().manual_seed(seed))
        if ok
        else float("nan"),
        "mmd": mmd(x, reference, bandwidths=[0.1, 0.3, 1.0]) if ok else float("nan"),
    }
    if dataset.has_density and ok:
        row["log_likelihood"] = mean_log_likelihood(x, dataset)
    return row


def cmd_demo(args: argparse.Namespace) -> int:
    from .plotting import plot_metric_vs_nfe, plot_samples_2d, plot_trajectories_2d
    from .samplers import sample

    out = Path(args.out)
    print(
        f"hwaksan demo: training an MLP on '{args.data}' ({args.train_steps} steps, process {args.process})"
    )
    model, dataset, losses, seconds, ckpt = _train_toy(args, out / "checkpoint")
    print(f"  trained in {seconds:.1f} s, final loss {sum(losses[-100:]) / 100:.4f}")
    reference = dataset.sample(args.n, torch.Generator().manual_seed(10_000 + args.seed)).double()
    metrics, panels = [], {"data": reference}
    curves: dict[str, list] = {"sliced_wasserstein": {}, "mmd": {}}
    with torch.no_grad():
        for name, (grid, step_counts) in DEMO_SAMPLERS.items():
            for n_steps in step_counts:
                res = sample(
                    model,
                    (args.n, 2),
                    sampler=name,
                    steps=n_steps,
                    grid=grid,
                    generator=torch.Generator().manual_seed(args.seed),
                )
                row = {"sampler": name, "grid": grid, "steps": n_steps, "nfe": res.nfe}
                row.update(_evaluate_toy(res.x, dataset, reference, args.seed))
                metrics.append(row)
                for key in curves:
                    curves[key].setdefault(name, []).append((res.nfe, max(row[key], 1e-6)))
                print(
                    f"  {name:15s} {grid:8s} steps={n_steps:4d} nfe={res.nfe:4d} "
                    f"SW={row['sliced_wasserstein']:.4f} MMD={row['mmd']:.5f}"
                )
            panels[f"{name}, {res.nfe} NFE"] = res.x
        # trajectories of a few points under Heun
        traj = []
        gen = torch.Generator().manual_seed(args.seed + 1)
        from .samplers import karras_grid, sample_heun

        ts = karras_grid(model.process, 25)
        x = model.process.prior_sample((64, 2), gen, t=float(ts[0]))
        traj.append(x)
        sample_heun(model, x, ts, callback=lambda info: traj.append(info["x"]))
    files = {
        "samples": plot_samples_2d(panels, out / "samples.png"),
        "trajectories": plot_trajectories_2d(traj, out / "trajectories.png", data=reference[:2000]),
        "sliced_wasserstein_vs_nfe": plot_metric_vs_nfe(
            curves["sliced_wasserstein"], out / "sw_vs_nfe.png", "sliced Wasserstein to data"
        ),
        "mmd_vs_nfe": plot_metric_vs_nfe(curves["mmd"], out / "mmd_vs_nfe.png", "MMD^2 to data"),
        "loss": out / "checkpoint" / "loss.png",
    }
    summary = {
        "data": args.data,
        "process": args.process,
        "prediction": args.prediction,
        "train_steps": args.train_steps,
        "train_seconds": seconds,
        "n_samples": args.n,
        "results": metrics,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    print("outputs:")
    for key, path in files.items():
        print(f"  {key:28s} {path}")
    print(f"  {'metrics':28s} {out / 'metrics.json'}")
    print(f"  {'checkpoint':28s} {ckpt}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    if args.config is not None:
        from .training.cli_train import run_train

        return run_train(args)
    out = Path(args.out or "runs/toy")
    model, dataset, losses, seconds, ckpt = _train_toy(args, out)
    print(f"trained '{args.data}' in {seconds:.1f} s; final loss {sum(losses[-100:]) / 100:.4f}")
    print(f"outputs:\n  checkpoint {ckpt}\n  loss curve {out / 'loss.png'}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from .io.checkpoint import CheckpointError, load_model, read_metadata, resolve_checkpoint
    from .training.cli_train import run_sample

    try:
        path = resolve_checkpoint(args.checkpoint)
        is_toy = read_metadata(path).get("network", {}).get("class") == "MLP"
    except CheckpointError as err:
        print(f"hwaksan sample: error: {err}", file=sys.stderr)
        return 1
    if not is_toy:
        return run_sample(args)
    from .plotting import plot_samples_2d
    from .samplers import sample

    model, meta = load_model(path, use_ema=not args.no_ema)
    n = args.n or 2000
    if meta.get("source", "gaussian") != "gaussian":  # a flow from another 2-D set (commands/flows.py)
        from .commands.flows import sample_from_source

        grid = "uniform" if args.grid == "karras" else args.grid
        res = sample_from_source(
            model,
            meta["source"],
            n,
            sampler=args.sampler,
            steps=args.steps,
            grid=grid,
            seed=args.seed,
            **args.options,
        )
    else:
        with torch.no_grad():
            res = sample(
                model,
                (n, model.net.config["dim"]),
                sampler=args.sampler,
                steps=args.steps,
                grid=args.grid,
                generator=[torch.Generator().manual_seed(args.seed + i) for i in range(n)],
                **args.options,
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    title = f"{args.sampler}, {res.nfe} NFE"
    plot_samples_2d({title: res.x}, out, cols=1)
    csv = out.with_suffix(".csv")
    import numpy as np

    np.savetxt(csv, res.x.double().numpy(), delimiter=",", header="x,y", comments="")
    print(f"{n} samples with {args.sampler} ({res.nfe} NFE)\noutputs:\n  plot    {out}\n  samples {csv}")
    return 0


def _load_for_planning(checkpoint: str):
    """``(denoiser, data_shape)`` from a 2-D or image checkpoint of ``hwaksan train``."""
    from .io.checkpoint import load_model, resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    model, meta = load_model(path)
    if meta.get("network", {}).get("class") == "MLP":
        return model, (int(model.net.config["dim"]),)
    shape = meta.get("data_shape") or meta.get("image_shape")
    if not shape:
        raise ValueError(f"{path} records no data shape: not a checkpoint of hwaksan train")
    return model, tuple(int(v) for v in shape)


def cmd_plan_steps(args: argparse.Namespace) -> int:
    from .samplers.plan import calibration_set, plan_steps

    if (args.checkpoint is None) == (args.oracle is None):
        print(
            "hwaksan plan-steps: error: give a CHECKPOINT or --oracle 2d|64d (one of them)", file=sys.stderr
        )
        return 1
    if args.oracle is not None:
        from .oracles import GaussianMixtureDenoiser, anisotropic_mixture

        dim = int(args.oracle.removesuffix("d"))
        denoiser = GaussianMixtureDenoiser(anisotropic_mixture(dim), make_process(args.process))
        shape, source = (dim,), f"oracle {args.oracle} / {args.process}"
    else:
        from .io.checkpoint import CheckpointError

        try:
            denoiser, shape = _load_for_planning(args.checkpoint)
        except CheckpointError as err:
            print(f"hwaksan plan-steps: error: {err}", file=sys.stderr)
            return 1
        source = args.checkpoint
    spec = SAMPLERS[args.sampler]
    if spec.stochastic or spec.nfe is None:
        print(
            f"hwaksan plan-steps: error: {args.sampler!r} is stochastic or adaptive; plan a "
            f"deterministic fixed-step sampler: {', '.join(_plannable())}",
            file=sys.stderr,
        )
        return 1
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(args.seed)
    if args.fit:  # issue 3: grid and solver coefficients fitted together (samplers/fit.py)
        from .commands.plan_fit import fit_plan_command

        return fit_plan_command(args, denoiser, shape, source, gen, start)
    args.n = args.n or 64
    with torch.no_grad():
        calib = calibration_set(denoiser, args.n, gen, shape=shape)
        plan = plan_steps(
            denoiser, args.steps, sampler=args.sampler, calibration=calib, max_evals=args.max_evals
        )
    nfe = spec.nfe(plan.ts, denoiser.process, dict(spec.defaults))
    print(f"hwaksan plan-steps: {args.sampler}, {args.steps} steps ({nfe} NFE) for {source}")
    print(f"  {'i':>3s} {'t':>12s} {'sigma~':>12s}")
    for i, t in enumerate(plan.ts.tolist()):
        sig = float(denoiser.process.sigma_tilde(t)) if t > 0 else 0.0
        print(f"  {i:3d} {t:12.6f} {sig:12.5g}")
    print(
        f"  estimated error (mean L2 to the PF-ODE end point, {args.n} calibration samples): "
        f"{plan.error:.4g}; {plan.initial} grid: {plan.initial_error:.4g} "
        f"({plan.evaluations} sampler runs, {time.perf_counter() - start:.1f} s)"
    )
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "ts": plan.ts.tolist(),
            "sigmas": plan.sigmas.tolist(),
            "sampler": args.sampler,
            "steps": args.steps,
            "nfe": nfe,
            "error": plan.error,
            "initial": plan.initial,
            "initial_error": plan.initial_error,
            "source": source,
            "options": {},
        }
        out.write_text(json.dumps(record, indent=2))
        print(
            f"outputs:\n  grid {out} (use it with: hwaksan sample ... --sampler {args.sampler} --grid {out})"
        )
    return 0


def _plannable() -> list[str]:
    return [k for k, v in SAMPLERS.items() if not v.stochastic and v.nfe is not None]


def cmd_models(args: argparse.Namespace) -> int:
    from .models.presets import preset_table

    rows = preset_table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'preset':14s} {'arch':8s} {'input':>12s} {'params':>10s} {'GFLOP/sample':>13s}")
    for r in rows:
        shape = "x".join(str(v) for v in r["input_shape"])
        print(f"{r['name']:14s} {r['arch']:8s} {shape:>12s} {r['params'] / 1e6:9.2f}M {r['gflops']:13.3f}")
    print("FLOPs: one forward pass of one sample (multiply-add = 2; matmul, convolution, attention).")
    print("A training step costs about 3x the forward. Use a preset with [model] preset = NAME.")
    return 0


def cmd_samplers(args: argparse.Namespace) -> int:
    print(f"{'name':20s} {'kind':13s} {'order':5s} description")
    for name, spec in SAMPLERS.items():
        kind = "stochastic" if spec.stochastic else "deterministic"
        print(f"{name:20s} {kind:13s} {spec.order or '-'!s:5s} {spec.description}")
    print(f"grids: {', '.join(GRIDS)}")
    return 0


def _add_toy_training(p: argparse.ArgumentParser, steps: int) -> None:
    p.add_argument("--data", default="8gaussians", choices=_toy_names(), help="2-D data set")
    p.add_argument(
        "--process",
        default="ddpm-linear",
        choices=PROCESSES,
        help="forward process (default ddpm-linear, Ho et al. 2020; see docs/conventions.md)",
    )
    p.add_argument(
        "--prediction",
        default="v",
        choices=("eps", "x0", "v", "velocity", "edm"),
        help="what the network predicts",
    )
    p.add_argument(
        "--weighting",
        default="simple",
        help="loss weighting: simple (the prediction's own MSE), eps, x0, v, velocity, min_snr, edm",
    )
    p.add_argument("--train-steps", type=int, default=steps, help="optimisation steps")
    p.add_argument("--batch-size", type=int, default=512, help="training batch size")
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    p.add_argument("--width", type=int, default=256, help="MLP hidden width")
    p.add_argument("--depth", type=int, default=3, help="number of MLP residual blocks")
    p.add_argument("--seed", type=int, default=0, help="random seed (training and sampling)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwaksan", description="Diffusion and flow generative models: train, sample, evaluate."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train a 2-D model and compare samplers (README's main job)")
    p.add_argument("--out", default="demo-out", help="output folder (created)")
    p.add_argument("--n", type=int, default=2000, help="samples per sampler and step count")
    _add_toy_training(p, steps=2000)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "train",
        help="train a model: 2-D toy data (--data ...) or images (--config configs/NAME.toml)",
        description="Without --config: train an MLP denoiser on 2-D toy data (options below). With "
        "--config: the image trainer (U-Net / DiT / MoE-DiT), configured by the TOML file and --set; "
        "under torchrun it trains data-parallel with no change.",
    )
    add_train_arguments(p, toy=True)
    _add_toy_training(p, steps=3000)
    add_toy_flow_arguments(p)  # --coupling, --source (commands/flows.py)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "sample",
        help="draw samples from a checkpoint with any sampler",
        description="Sample a checkpoint of hwaksan train: a 2-D model gives a scatter plot and a CSV, "
        "an image model a PNG grid.",
    )
    add_sample_arguments(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "plan-steps",
        help="choose the time grid that minimises a sampler's error for a step budget",
        description="Optimise the interior noise levels of an N-step grid for one sampler: the error "
        "proxy is the sampler's end-point distance to a float64 PF-ODE solution from the same noise on a "
        "calibration batch. Prints the grid and its estimated error; --out writes it for hwaksan sample.",
    )
    p.add_argument("checkpoint", nargs="?", default=None, help="a checkpoint or run folder of hwaksan train")
    p.add_argument(
        "--oracle",
        choices=("2d", "64d"),
        default=None,
        help="plan for the exact denoiser of the benchmark's Gaussian mixture instead of a checkpoint",
    )
    p.add_argument("--process", default="edm", choices=PROCESSES, help="process of --oracle (default edm)")
    p.add_argument(
        "--sampler",
        default="unipc",
        choices=_plannable(),
        help="deterministic sampler to plan for (default unipc)",
    )
    p.add_argument("--steps", type=int, default=8, help="grid steps (default 8)")
    p.add_argument("--n", type=int, default=None, help="calibration samples (default 64; 512 with --fit)")
    p.add_argument(
        "--max-evals", type=int, default=200, help="sampler runs the search may spend (default 200)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration noise")
    p.add_argument(
        "--out", default=None, help="write the plan as JSON, for hwaksan sample --plan FILE (or --grid FILE)"
    )
    from .commands.plan_fit import add_fit_arguments  # issue 3: --fit, --iterations

    add_fit_arguments(p)
    p.set_defaults(func=cmd_plan_steps)

    p = sub.add_parser(
        "models",
        help="list the network presets with parameter counts and FLOPs per sample",
        description="Every preset of hwaksan.models.presets: architecture, input shape, parameters and "
        "forward GFLOPs per sample (counted by torch's FlopCounterMode).",
    )
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("samplers", help="list the samplers and grids")
    p.set_defaults(func=cmd_samplers)

    for name in COMMAND_MODULES:
        importlib.import_module(f".commands.{name}", __package__).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"hwaksan {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
