"""Spread of an evaluation's numbers over the real reference subset, from cached features only.

``hwaksan evaluate`` compares ``n`` generated images with ``n`` real images drawn with seed 0 from
the reference split. This script re-reads the generated images' features that the evaluation kept
in each sample folder (``OUT/samples/*/features-*.safetensors``) and measures FD / precision /
recall against the real subsets drawn with seeds ``0..seeds-1`` (the whole split's features are
cached by ``bench/eval_baselines.py`` or an earlier run, so no network runs). It shows how much of a
difference between two samplers the choice of real images alone can explain; the generated side's
own spread needs new samples (``hwaksan evaluate --seeds 3``).

    OMP_NUM_THREADS=1 python bench/eval_reference_spread.py runs/evaluation/mnist-eval \\
        --dataset mnist --split test --seeds 3 --out runs/evaluation/mnist-eval/reference-spread.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from hwaksan.evaluation import frechet_distance, precision_recall, real_statistics
from hwaksan.io.checkpoint import load_tensors


def _spread(values: list[float]) -> dict:
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": mean, "std": sd, "per_seed": values}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", help="the --out folder of hwaksan evaluate")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--split", default="test", help="the evaluation's reference split")
    p.add_argument("--seeds", type=int, default=3, help="real subsets drawn with seeds 0..seeds-1")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="JSON (default OUT_DIR/reference-spread.json)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for folder in sorted(Path(args.out_dir, "samples").iterdir()):
        for path in sorted(folder.glob("features-*.safetensors")):
            tensors, meta = load_tensors(path.with_suffix(""))
            fake, space = tensors["feats"], meta["space"]
            vals: dict[str, list[float]] = {"fd": [], "precision": [], "recall": []}
            for seed in range(args.seeds):
                real = real_statistics(args.dataset, args.split, space, len(fake), seed=seed)
                vals["fd"].append(frechet_distance(fake, real.feats, warn=False))
                pr = precision_recall(real.feats, fake, warn=False)
                vals["precision"].append(pr[0])
                vals["recall"].append(pr[1])
            row = {"samples": folder.name, "space": real.name, "n": len(fake)}
            row.update({k: _spread(v) for k, v in vals.items()})
            rows.append(row)
            print(
                f"{folder.name:<22} {real.name:<10} n={len(fake)}  FD {row['fd']['mean']:.4g} "
                f"+- {row['fd']['std']:.2g}  P {row['precision']['mean']:.3f} "
                f"+- {row['precision']['std']:.3f}  R {row['recall']['mean']:.3f} "
                f"+- {row['recall']['std']:.3f}",
                flush=True,
            )
    out = Path(args.out or Path(args.out_dir, "reference-spread.json"))
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
