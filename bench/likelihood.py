"""Likelihood of trained digits models: L_vlb and PF-ODE bits/dim over evaluation seeds, and the
Hutchinson PF-ODE estimate against the exact-divergence one (docs/benchmarks-likelihood.md).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/likelihood.py vlb RUN_DIR [RUN_DIR ...]
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/likelihood.py ode RUN_DIR [RUN_DIR ...]
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/likelihood.py exact RUN_DIR
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/likelihood.py terms RUN_DIR [RUN_DIR ...]

Each writes ``RUN_DIR/likelihood-{vlb,ode,exact}.json`` and prints a table row per run. Images: the
digits ``val`` split (183 images of 8x8, 17 grey levels scaled to [-1, 1]; the bins of width 2/255
around them do not overlap, so the 8-bit bounds are valid for these values).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from hwaksan.data.images import load_dataset
from hwaksan.evaluation.likelihood import image_nll
from hwaksan.evaluation.vlb import vlb_bits_per_dim
from hwaksan.io.artifact import load_trained
from hwaksan.utils import generators_from_seeds

SEEDS = (0, 1, 2)


def _model(run: str):
    """``(denoiser, checkpoint path, step)`` of a checkpoint or a run folder's newest one (EMA 0)."""
    trained = load_trained(run)
    return trained.denoiser.float(), str(trained.path), trained.step


def _summary(values: list[float]) -> dict:
    t = torch.tensor(values, dtype=torch.float64)
    return {"mean": float(t.mean()), "spread_sd": float(t.std()) if len(values) > 1 else 0.0}


def run_vlb(
    runs: list[str], n_t: int | None, T: int | None, proposal: str, seeds=SEEDS, tag: str = ""
) -> None:
    images = load_dataset("digits", "val").images
    for run in runs:
        model, path, step = _model(run)
        rows = []
        steps = T or getattr(model.process, "T", 1000)
        p = None
        if n_t is not None and proposal == "loguniform":  # p_k ~ 1/k on k = 2..T: the terms decay with k
            p = 1.0 / torch.arange(2, steps + 1, dtype=torch.float64)
        for seed in seeds:
            gens = generators_from_seeds([10_000 * seed + i for i in range(len(images))])
            res = vlb_bits_per_dim(model, images, generator=gens, n_t=n_t, T=T, proposal=p)
            row = res.to_dict()
            row.pop("per_sample")
            rows.append({"seed": seed, **row})
            print(
                f"{run} seed {seed}: L_vlb {res.bits_per_dim:.4f} +- {res.std_error:.4f} bits/dim "
                f"(prior {res.prior_bpd:.4f}, decoder {res.decoder_bpd:.4f}, KL {res.kl_bpd:.4f}; "
                f"{res.variance}, {res.seconds:.0f} s)",
                flush=True,
            )
        out = {"checkpoint": path, "step": step, "n": len(images), "proposal": proposal, "seeds": rows}
        out["summary"] = _summary([r["bits_per_dim"] for r in rows])
        Path(run, f"likelihood-vlb{tag}.json").write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {Path(run, f'likelihood-vlb{tag}.json')}", flush=True)


def run_ode(runs: list[str], probes: int, rtol: float, n: int) -> None:
    images = load_dataset("digits", "val").images[:n]
    for run in runs:
        model, path, step = _model(run)
        rows = []
        for seed in SEEDS:
            gens = generators_from_seeds([10_000 * seed + i for i in range(len(images))])
            res = image_nll(
                model, images, probes=probes, generator=gens, rtol=rtol, atol=rtol, batch_size=len(images)
            )
            row = res.to_dict()
            row.pop("per_sample")
            rows.append({"seed": seed, **row})
            print(
                f"{run} seed {seed}: PF-ODE {res.bits_per_dim:.4f} +- {res.std_error:.4f} bits/dim "
                f"(Hutchinson part {res.hutchinson_std_error}, nfe {res.nfe}, {res.seconds:.0f} s)",
                flush=True,
            )
        out = {"checkpoint": path, "step": step, "n": len(images), "seeds": rows}
        out["summary"] = _summary([r["bits_per_dim"] for r in rows])
        Path(run, "likelihood-ode.json").write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {Path(run, 'likelihood-ode.json')}", flush=True)


def run_exact(run: str, n: int, probes: int, rtol: float, out_path: str | None = None) -> None:
    """Exact divergence (64 backward passes per evaluation) vs Hutchinson on the same images and
    dequantisation noise (the per-image generators draw the noise first, then the probes).

    The exact solve is the expensive one: when ``out_path`` already holds it for the same
    checkpoint, images and tolerance, it is reused and only the Hutchinson solve runs (each probe
    count is kept under ``hutchinson_by_probes``)."""
    images = load_dataset("digits", "val").images[:n]
    model, path, step = _model(run)
    target = Path(out_path) if out_path else Path(run, "likelihood-exact.json")
    out = {"checkpoint": path, "step": step, "n": n, "rtol": rtol}
    old = json.loads(target.read_text()) if target.exists() else {}
    same = all(old.get(k) == out[k] for k in ("checkpoint", "n", "rtol")) and "exact" in old
    kinds = [("hutchinson", {"exact": False, "probes": probes})]
    if same:
        out["exact"] = old["exact"]
        out["hutchinson_by_probes"] = old.get("hutchinson_by_probes", {})
        if "hutchinson" in old:
            out["hutchinson_by_probes"].setdefault(str(old["hutchinson"]["probes"]), old["hutchinson"])
        print(f"{run} exact: {old['exact']['bits_per_dim']:.4f} bits/dim (reused from {target})", flush=True)
    else:
        kinds.insert(0, ("exact", {"exact": True}))
        out["hutchinson_by_probes"] = {}
    for name, kw in kinds:
        gens = generators_from_seeds(n)
        t0 = time.perf_counter()
        res = image_nll(model, images, generator=gens, rtol=rtol, atol=rtol, batch_size=n, **kw)
        out[name] = {**res.to_dict(), "wall_s": time.perf_counter() - t0}
        print(
            f"{run} {name}: {res.bits_per_dim:.4f} bits/dim, nfe {res.nfe}, {res.seconds:.0f} s", flush=True
        )
    out["hutchinson_by_probes"][str(probes)] = out["hutchinson"]
    e = torch.tensor(out["exact"]["per_sample"])
    out["difference_by_probes"] = {}
    for m, h in out["hutchinson_by_probes"].items():
        diff = torch.tensor(h["per_sample"]) - e
        out["difference_by_probes"][m] = {
            "mean": float(diff.mean()),
            "std_error": float(diff.std()) / math.sqrt(n),
            "reported_hutchinson_std_error": h["hutchinson_std_error"],
            "max_abs": float(diff.abs().max()),
        }
    out["difference"] = out["difference_by_probes"][str(probes)]
    target.write_text(json.dumps(out, indent=1) + "\n")
    print(f"difference Hutchinson - exact: {out['difference_by_probes']}; wrote {target}")


def run_terms(runs: list[str], n: int, out_png: str) -> None:
    """Mean of each term ``L_{k-1}`` (bits/dim) at 40 log-spaced steps ``k``, one curve per run
    (Nichol & Dhariwal 2021, Fig. 2): where the bound's mass sits and what a learned variance changes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hwaksan.losses import vlb_term

    images = load_dataset("digits", "val").images[:n]
    fig, ax = plt.subplots(figsize=(6, 4))
    table = {}
    for run in runs:
        model, path, step = _model(run)
        T = model.process.T
        ks = sorted({int(round(v)) for v in torch.logspace(0, math.log10(T), 40).tolist()})
        means = []
        for k in ks:
            t = torch.full((n,), k / T, dtype=torch.float64)
            s = torch.full((n,), (k - 1) / T, dtype=torch.float64)
            with torch.no_grad():
                nats = vlb_term(model, images, t, s, generator=generators_from_seeds(n))
            means.append(float(nats.mean()) / (images[0].numel() * math.log(2)))
        label = f"{Path(run).name} ({'learned' if model.learn_sigma else 'beta'} variance)"
        ax.loglog(ks, means, marker=".", label=label)
        table[run] = {"checkpoint": path, "step": step, "k": ks, "bits_per_dim": means}
        print(
            f"{run}: L_0 {means[0]:.3f}, L_k at k = {ks[len(ks) // 2]}: {means[len(ks) // 2]:.2e} bits/dim",
            flush=True,
        )
    ax.set_xlabel("step k (t = k / T)")
    ax.set_ylabel("E[L_{k-1}] (bits/dim)")
    ax.set_title(f"terms of the variational bound, digits val ({n} images)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    out_json = Path(runs[0]).parent / "likelihood-terms.json"
    out_json.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {out_png} and {out_json}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["vlb", "ode", "exact", "terms"])
    p.add_argument("runs", nargs="+", help="training run folders or checkpoints")
    p.add_argument("--n-t", type=int, default=None, help="vlb: KL terms drawn per image (default all)")
    p.add_argument("--T", type=int, default=None, help="vlb: chain steps (default the table's)")
    p.add_argument(
        "--proposal", choices=["uniform", "loguniform"], default="uniform", help="vlb: law of the n_t steps"
    )
    p.add_argument("--probes", type=int, default=4, help="ode/exact: Hutchinson probes per image")
    p.add_argument("--rtol", type=float, default=1e-5, help="ode/exact: ODE rtol = atol")
    p.add_argument("--n", type=int, default=183, help="ode/exact: images (the first n of val)")
    p.add_argument("--png", default="docs/img/likelihood-terms.png", help="terms: the plot")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="vlb: evaluation seeds")
    p.add_argument("--tag", default="", help="vlb: suffix of the output file name")
    p.add_argument("--out", default=None, help="exact: the JSON (default RUN_DIR/likelihood-exact.json)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.what == "vlb":
        run_vlb(a.runs, a.n_t, a.T, a.proposal, a.seeds, a.tag)
    elif a.what == "ode":
        run_ode(a.runs, a.probes, a.rtol, a.n)
    elif a.what == "terms":
        run_terms(a.runs, a.n, a.png)
    else:
        run_exact(a.runs[0], a.n, a.probes, a.rtol, a.out)


if __name__ == "__main__":
    sys.exit(main())
