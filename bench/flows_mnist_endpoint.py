"""The MNIST 2-RF's one Euler step with its velocity queried at t = 1 and just below (see
``bench/flows_2d_endpoint.py``): FD-MNIST of ``x1 - v(x1, t_q)`` on the 500 evaluation noises of
``bench/flows_mnist.py``::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/flows_mnist_endpoint.py \
        [--model runs/flows/mnist-reflow/rf2/checkpoints/step_0000300]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flows_mnist import EVAL_SEED, fd_of  # noqa: E402

from hwaksan.evaluation import real_statistics  # noqa: E402
from hwaksan.io.checkpoint import load_model  # noqa: E402
from hwaksan.tasks.reflow import source_sample  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/flows/mnist-reflow/rf2/checkpoints/step_0000300")
    parser.add_argument("--n", type=int, default=500, help="images (a multiple of 250)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    real = real_statistics("mnist", "test", "classifier", n=10000)
    model = load_model(args.model)[0].eval()
    x1 = torch.cat([source_sample(250, (1, 28, 28), EVAL_SEED + b0) for b0 in range(0, args.n, 250)])
    for tq in (1.0, 0.999):
        outs = []
        for b in range(0, args.n, 250):
            with torch.no_grad():
                v = model.predict(x1[b : b + 250], torch.full((250,), tq, dtype=torch.float64))
            outs.append((x1[b : b + 250] - v).clamp(-1, 1))
        print(
            f"one Euler step, velocity at t = {tq}: FD-MNIST {fd_of(torch.cat(outs), real):.3f}", flush=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
