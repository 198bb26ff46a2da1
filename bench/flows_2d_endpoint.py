"""Why a rectified flow's one Euler step is worse than its paths: the network call at t = 1.

One Euler step from the source is ``x0 = x1 - v(x1, t_max)``: the only network call is at exactly
``t_max = 1``, where the flow interpolant has ``alpha = 0`` and the network's noise level
``-lambda(t)/8`` (``hwaksan.parameterizations.noise_level``) is the clamp value 5. Training times
from a density on [0, 1] give noise levels above 3 with probability ~1e-5, so that input is never
trained. This script queries the velocity of the cached models of ``bench/flows_2d.py`` at ``t_q``
just below 1 (the step is still from ``x1`` over the whole interval) and reports the sliced
Wasserstein distance of ``x1 - v(x1, t_q)`` to the data, as in the benchmark (5000 samples, same
source and reference draws)::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/flows_2d_endpoint.py [--out runs/flows/bench2d]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from hwaksan.data.toy import get_toy_dataset
from hwaksan.evaluation.lowdim import sliced_wasserstein
from hwaksan.io.checkpoint import load_model
from hwaksan.parameterizations import noise_level
from hwaksan.tasks.reflow import source_sample

PROBLEMS = {"8gaussians-moons": ("8gaussians", "moons"), "noise-checkerboard": ("gaussian", "checkerboard")}
STEMS = ("rf1", "otcfm", "rf2", "rf2-u_shaped", "rf2-u_shaped_tmax", "rf3-u_shaped_tmax", "distill")
T_QUERY = (1.0, 1 - 1e-6, 1 - 1e-4, 1 - 1e-3)
N_EVAL = 5000


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/flows/bench2d", help="the cache of bench/flows_2d.py")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    results = {}
    for name, (source_name, target_name) in PROBLEMS.items():
        source = None if source_name == "gaussian" else get_toy_dataset(source_name).sample
        reference = get_toy_dataset(target_name).sample(N_EVAL, torch.Generator().manual_seed(123)).double()
        x1 = source_sample(N_EVAL, (2,), 10**9, source)
        results[name] = {}
        for stem in STEMS:
            if not (out / name / f"{stem}.json").exists():
                continue
            model = load_model(out / name / stem)[0].eval()
            row = {}
            for tq in T_QUERY:
                t = torch.full((N_EVAL,), tq, dtype=torch.float64)
                with torch.no_grad():
                    v = model.predict(x1, t)  # a velocity-predicting flow: the raw output is v
                sw = sliced_wasserstein(x1 - v, reference, generator=torch.Generator().manual_seed(0))
                row[f"{tq:.6f}"] = {"noise_level": float(noise_level(model.process, t[:1])), "sw": sw}
            results[name][stem] = row
            print(
                f"{name:20s} {stem:18s} "
                + " ".join(
                    f"t={tq:.6f} (c={r['noise_level']:.2f}): {r['sw']:.4f}"
                    for tq, r in zip(T_QUERY, row.values(), strict=True)
                ),
                flush=True,
            )
    path = out / "endpoint.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"outputs:\n  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
