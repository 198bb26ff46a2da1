"""``hwaksan demo``: train a 2-D model and compare samplers across step counts (the README's main job)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from ..data.toy import ToyDataset, get_toy_dataset
from ..evaluation.lowdim import mean_log_likelihood, mmd, sliced_wasserstein
from ..io.outputs import OutputError, check_output, record_output
from ..plotting import plot_metric_vs_nfe, plot_samples_2d, plot_trajectories_2d
from ..samplers import karras_grid, sample, sample_heun
from ..training.optim import NonFiniteLossError
from .common import UserError
from .train import add_lowdim_arguments, add_run_arguments, final_loss, interrupted, train_from_args

__all__ = ["register", "DEMO_SAMPLERS"]

DEMO_SAMPLERS = {
    # sampler: (grid, step counts)
    "ddpm": ("uniform", (10, 20, 50, 100)),
    "ddim": ("uniform", (5, 10, 20, 50)),
    "euler_maruyama": ("uniform", (10, 20, 50, 100)),
    "heun": ("karras", (3, 5, 10, 25)),
    "dpmpp_2m": ("log_snr", (5, 10, 20, 50)),
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hwaksan demo``."""
    p = sub.add_parser("demo", help="train a 2-D model and compare samplers (README's main job)")
    p.add_argument("--out", default="demo-out", help="output folder (created)")
    p.add_argument("--n", type=int, default=2000, help="samples per sampler and step count")
    add_lowdim_arguments(p, steps=2000)
    add_run_arguments(p)
    p.set_defaults(func=cmd_demo)


def _evaluate(x: torch.Tensor, dataset: ToyDataset, reference: torch.Tensor, seed: int) -> dict[str, Any]:
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


#: the files ``hwaksan demo`` writes beside its checkpoint folder
DEMO_FILES = ("samples.png", "trajectories.png", "sw_vs_nfe.png", "mmd_vs_nfe.png", "metrics.json")


def cmd_demo(args: argparse.Namespace) -> int:
    """Run ``hwaksan demo``; returns the exit status.

    The training in ``OUT/checkpoint`` is reused (or continued) when it was made with the same
    options, and redone otherwise."""
    out = Path(args.out)
    try:
        for name in DEMO_FILES:
            check_output(out / name, overwrite=args.overwrite)
    except OutputError as err:
        raise UserError(str(err)) from None
    print(
        f"hwaksan demo: training an MLP on '{args.data}' ({args.train_steps} steps, process {args.process})"
    )
    try:
        trained = train_from_args(
            args,
            out / "checkpoint",
            progress=not args.no_progress,
            resume=False if args.overwrite else None,
            overwrite=args.overwrite,
        )
    except KeyboardInterrupt as err:
        return interrupted("demo", err, "the same command (it continues the training)")
    except NonFiniteLossError as err:
        raise UserError(str(err)) from None
    model = trained.model.denoiser
    loss, n_loss = final_loss(trained.losses)
    done = f"resumed at step {trained.resumed_from}, " if trained.resumed_from else ""
    print(
        f"  trained ({done}{trained.seconds:.1f} s), final loss {loss:.4f} (mean of the last {n_loss} steps)"
    )
    dataset = get_toy_dataset(args.data)
    reference = dataset.sample(args.n, torch.Generator().manual_seed(10_000 + args.seed)).double()
    metrics, panels = [], {"data": reference}
    curves: dict[str, dict] = {"sliced_wasserstein": {}, "mmd": {}}
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
                row.update(_evaluate(res.x, dataset, reference, args.seed))
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
        "train_seconds": trained.seconds,
        "n_samples": args.n,
        "results": metrics,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    record_output(*(out / name for name in DEMO_FILES))
    print("outputs:")
    for key, path in files.items():
        print(f"  {key:28s} {path}")
    print(f"  {'metrics':28s} {out / 'metrics.json'}")
    print(f"  {'checkpoint':28s} {trained.checkpoint}")
    return 0
