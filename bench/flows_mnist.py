"""MNIST rectified flow: 1-RF vs 2-RF vs the distilled one-step model at 1, 2 and 4 Euler steps.

The teacher is an unconditional MNIST flow (``configs/mnist-flow.toml``: linear interpolant,
velocity, independent coupling, 3000 steps of 64)::

    hwaksan train --config configs/mnist-flow.toml --out runs/flows/mnist-1rf

This script runs ``hwaksan reflow`` on it (resumable: pairs, 2-RF, distillation) and then measures
the Frechet distance in the feature space of the MNIST classifier that ``hwaksan.evaluation``
trains and caches (FD-MNIST; not FID) between ``--n`` generated images and the 10,000 test images,
for each model at 1, 2 and 4 Euler steps (same noise for every model), and the teacher with a
many-step sampler for reference. Numbers go to OUT/fd.json, a sample grid to
docs/img/flows-mnist-samples.png::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/flows_mnist.py --pairs 10000 --steps 12

The numbers in docs/benchmarks-flows.md are from a smaller run (teacher stopped at step 1000)::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/flows_mnist.py --pairs 2000 --sampler dpmpp_2m \
        --steps 8 --train-steps 300 --distill-steps 150 --lr 5e-4 --n 500 --reference-steps 4 \
        --eval-n 64 --eval-steps 20
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from hwaksan.cli import main as hwaksan
from hwaksan.evaluation import (
    frechet_distance_from_statistics,
    gaussian_statistics,
    image_features,
    real_statistics,
)
from hwaksan.evaluation.features import load_split
from hwaksan.io.checkpoint import latest_checkpoint, load_model
from hwaksan.plotting import save_image_grid
from hwaksan.tasks.reflow import push_forward, source_sample

EVAL_SEED = 2_000_000_000
IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


def fd_of(images: torch.Tensor, real) -> float:
    mu, cov = gaussian_statistics(image_features(images, "classifier", "mnist").double())
    return frechet_distance_from_statistics(mu, cov, real.mu, real.cov)


def generate(model, n: int, sampler: str, steps: int, batch: int = 250) -> torch.Tensor:
    out = []
    for b0 in range(0, n, batch):
        x1 = source_sample(min(batch, n - b0), (1, 28, 28), EVAL_SEED + b0)
        with torch.no_grad():
            out.append(push_forward(model, x1, sampler=sampler, steps=steps, grid="uniform").x.clamp(-1, 1))
    return torch.cat(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="runs/flows/mnist-1rf")
    p.add_argument("--out", default="runs/flows/mnist-reflow")
    p.add_argument("--pairs", type=int, default=10000)
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--train-steps", type=int, default=1500)
    p.add_argument("--distill-steps", type=int, default=800)
    p.add_argument("--n", type=int, default=2000, help="generated images per FD")
    p.add_argument("--reference-steps", type=int, default=8, help="Heun steps of the teacher's reference row")
    p.add_argument("--eval-n", type=int, default=128, help="paths of the straightness integral")
    p.add_argument("--eval-steps", type=int, default=32, help="Euler steps of the straightness integral")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate of 2-RF / distillation")
    p.add_argument("--distill-pairs", choices=("new", "last"), default="last", help="see hwaksan reflow")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    rc = hwaksan(
        [
            "reflow",
            args.teacher,
            "--pairs", str(args.pairs),
            "--sampler", args.sampler,
            "--steps", str(args.steps),
            "--train-steps", str(args.train_steps),
            "--distill-steps", str(args.distill_steps),
            "--distill-pairs", args.distill_pairs,
            "--eval-n", str(args.eval_n),
            "--eval-steps", str(args.eval_steps),
            *(["--lr", str(args.lr)] if args.lr else []),
            "--set", "train.checkpoint_every=50",
            "--set", "train.sample_every=0",
            "--set", f"optim.warmup={min(100, max(1, args.train_steps // 6))}",
            "--out", str(out),
            "--no-progress",
        ]
    )  # fmt: skip
    if rc != 0:
        return rc
    models = {
        "1-RF": load_model(latest_checkpoint(args.teacher))[0],
        "2-RF": load_model(latest_checkpoint(out / "rf2"))[0],
        "2-RF distilled": load_model(latest_checkpoint(out / "distill"))[0],
    }
    real = real_statistics("mnist", "test", "classifier", n=10000)
    floor = fd_of(load_split("mnist", "val", None)[: args.n], real)  # real images vs real statistics
    results = {"n": args.n, "floor_real_val_vs_test": floor, "fd": {}}
    print(f"FD-MNIST of {args.n} real validation images vs the test statistics: {floor:.3f}", flush=True)
    rows = []
    for label, model in models.items():
        for k in (1, 2, 4):
            x = generate(model, args.n, "euler", k)
            results["fd"][f"{label} / euler {k}"] = fd_of(x, real)
            print(f"  {label:15s} euler {k}: FD {results['fd'][f'{label} / euler {k}']:.3f}", flush=True)
            rows.append(x[:12])
    x = generate(models["1-RF"], args.n, "heun", args.reference_steps)
    key = f"1-RF / heun {args.reference_steps} ({2 * args.reference_steps - 1} NFE)"
    results["fd"][key] = fd_of(x, real)
    print(f"  {key}: FD {results['fd'][key]:.3f}", flush=True)
    rows.append(x[:12])
    report = out / "report.json"
    if report.exists():
        results["straightness"] = json.loads(report.read_text()).get("rounds", {})
    (out / "fd.json").write_text(json.dumps(results, indent=2) + "\n")
    grid = save_image_grid(torch.cat(rows), IMG / "flows-mnist-samples.png", nrow=12, scale=2)
    print(f"outputs:\n  {out / 'fd.json'}\n  {grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
