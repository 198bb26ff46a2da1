"""Real-vs-real baselines of the image metrics: two held-out splits of the same data set.

A perfect generator scores what one real sample scores against another real sample of the same
size, so these numbers are the floor (FD) and ceiling (precision, recall) that generated samples
are read against. Features of both splits are computed once (cached under the user cache dir),
then for each n and seed the two subsets are drawn as ``hwaksan evaluate`` draws its reference.

    OMP_NUM_THREADS=1 python bench/eval_baselines.py --dataset mnist --a val --b test \\
        --n 1000,2000,5000 --seeds 3 --out runs/evaluation/baselines-mnist.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from hwaksan.evaluation import frechet_distance, precision_recall, real_statistics
from hwaksan.evaluation.features import subset_indices


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--a", default="val", help="first split")
    p.add_argument("--b", default="test", help="second split")
    p.add_argument("--n", default="1000,2000,5000")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--spaces", default="classifier,effnet")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/evaluation/baselines.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows, timing = [], {}
    for space in args.spaces.split(","):
        start = time.perf_counter()
        full_a = real_statistics(args.dataset, args.a, space, None, progress=True)
        full_b = real_statistics(args.dataset, args.b, space, None, progress=True)
        timing[space] = time.perf_counter() - start
        print(f"{space}: features of {full_a.n} + {full_b.n} images in {timing[space]:.0f} s", flush=True)
        for n in (int(v) for v in args.n.split(",")):
            vals: dict[str, list[float]] = {"fd": [], "precision": [], "recall": []}
            for seed in range(args.seeds):
                fa = full_a.feats[subset_indices(full_a.n, n, seed)]
                fb = full_b.feats[subset_indices(full_b.n, n, seed + 1000)]
                vals["fd"].append(frechet_distance(fa, fb, warn=False))
                pr = precision_recall(fa, fb, warn=False)
                vals["precision"].append(pr[0])
                vals["recall"].append(pr[1])
            row = {"space": full_a.name, "n": n, "dim": int(full_a.feats.shape[1]), "seeds": args.seeds}
            for key, v in vals.items():
                mean = sum(v) / len(v)
                std = (
                    math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else float("nan")
                )
                row[key] = {"mean": mean, "std": std, "per_seed": v}
            rows.append(row)
            print(
                f"  {row['space']:<10} n={n:<5} FD {row['fd']['mean']:.4g} +- {row['fd']['std']:.2g}  "
                f"P {row['precision']['mean']:.3f} +- {row['precision']['std']:.3f}  "
                f"R {row['recall']['mean']:.3f} +- {row['recall']['std']:.3f}",
                flush=True,
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows, "feature_seconds": timing}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
