"""Rectified flow on 2-D problems: independent vs OT coupling, 1-, 2- and 3-rectified flow.

Two problems: ``8gaussians -> moons`` (a flow between two data sets: the source at t = 1 is the
8-Gaussians set, not noise) and ``noise -> checkerboard``. For each, five models (same MLP):

- ``1-RF``: flow matching with the independent coupling (Liu et al. 2022's 1-rectified flow);
- ``OT-CFM``: flow matching on exact minibatch OT pairs (Tong et al. 2024), batch 512;
- ``2-RF``: trained on ``N_PAIRS`` (source, sample) pairs of the 1-RF's ODE map, initialised from it;
- ``3-RF``: the same from the 2-RF;
- ``2-RF distilled``: the 2-RF fine-tuned at t = 1 only on pairs of its own map (one-step model).

``--reflow-t-dist u_shaped`` trains the reflow rounds (2-RF, 3-RF) with the U-shaped time density
of Lee, Lin & Fanti 2024 (``hwaksan.losses.sample_t``) instead of U(0, 1), ``u_shaped_tmax`` with
that density plus an atom of mass 0.1 at t = 1 (see ``bench/flows_2d_endpoint.py``); with ``--reflow-steps``
and ``--pairs`` it names a *variant*: its models are cached as ``rf2-<variant>``, ``rf3-<variant>``
and reported as ``2-RF [<variant>]`` next to the default ones (the distilled model always comes
from the default 2-RF).

For every model: straightness ``int E||(X1-X0) - v(X_t,t)||^2 dt`` and transport cost
``E||X1-X0||^2`` (Euler, 100 steps, 2000 paths) and the sliced Wasserstein distance to the data
(``N_EVAL`` samples vs ``N_EVAL`` data points, 256 directions) at 1, 2, 5 and 10 Euler steps, with
the noise floor (SW between two data samples of that size), and the mean and standard error of the
SW over ``N_REPEATS`` independent (source, data) draws. Models are cached under OUT, so a
re-run only measures. Plots go to docs/img/flows-*.png, numbers to OUT/results.json::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/flows_2d.py [--out runs/flows/bench2d] [--steps 3000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from hwaksan.data.toy import get_toy_dataset  # noqa: E402
from hwaksan.evaluation.flow_report import flow_report  # noqa: E402
from hwaksan.evaluation.lowdim import sliced_wasserstein  # noqa: E402
from hwaksan.io.checkpoint import load_model, save_model  # noqa: E402
from hwaksan.models.mlp import MLP  # noqa: E402
from hwaksan.parameterizations import ModelDenoiser  # noqa: E402
from hwaksan.processes import LinearInterpolant  # noqa: E402
from hwaksan.tasks.reflow import push_forward, source_sample  # noqa: E402
from hwaksan.training.reflow import simulate_pairs, train_on_pairs_2d  # noqa: E402
from hwaksan.training.simple import fit  # noqa: E402

PROBLEMS = {"8gaussians-moons": ("8gaussians", "moons"), "noise-checkerboard": ("gaussian", "checkerboard")}
MODELS = ("1-RF", "OT-CFM", "2-RF", "3-RF", "2-RF distilled")
EULER = (1, 2, 5, 10)
N_PAIRS = 20_000
N_EVAL = 5000
N_REPEATS = 5
WIDTH, DEPTH = 256, 3
IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


def _source(name):
    return None if name == "gaussian" else get_toy_dataset(name).sample


def _new_model() -> ModelDenoiser:
    return ModelDenoiser(MLP(2, width=WIDTH, depth=DEPTH), LinearInterpolant(), "velocity", 1.0)


def _cached(path: Path, build, steps: int):
    if path.with_name(path.name + ".json").exists():
        return load_model(path)[0].eval()
    t0 = time.perf_counter()
    model = build()
    save_model(path, model, extra_meta={"seconds": time.perf_counter() - t0, "train_steps": steps})
    print(f"  trained {path.parent.name}/{path.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return model.eval()


def _pairs(model, folder: Path, source_name: str, tag: str):
    return simulate_pairs(
        model,
        folder,
        N_PAIRS,
        shape=(2,),
        source=_source(source_name),
        sampler="heun",
        steps=50,
        grid="uniform",
        shard_size=N_PAIRS,
        batch_size=5000,
        spec={"teacher": tag},
        progress=False,
    )


def variant_tag(t_dist: str, reflow_steps: int, pairs: int, steps: int) -> str:
    """``""`` for the default reflow recipe (uniform t, ``steps`` training steps, ``N_PAIRS`` 20,000
    pairs), else e.g. ``"u_shaped"`` or ``"u_shaped-s9000-p50000"``: the suffix of the cached files."""
    parts = [] if t_dist == "uniform" else [t_dist]
    if reflow_steps != steps:
        parts.append(f"s{reflow_steps}")
    if pairs != 20_000:
        parts.append(f"p{pairs}")
    return "-".join(parts)


def _label(base: str, tag: str) -> str:
    return f"{base} [{tag}]" if tag and base in ("2-RF", "3-RF") else base


def train_problem(
    name: str,
    out: Path,
    steps: int,
    wanted=MODELS,
    *,
    reflow_t_dist: str = "uniform",
    reflow_steps: int | None = None,
) -> dict[str, ModelDenoiser]:
    """Train (or load from OUT/NAME) the models named in ``wanted`` (and those they depend on).

    The reflow rounds use ``reflow_t_dist`` and ``reflow_steps`` (default ``steps``); a non-default
    recipe is a variant (:func:`variant_tag`) with its own cached files and labels."""
    reflow_steps = reflow_steps or steps
    tag = variant_tag(reflow_t_dist, reflow_steps, N_PAIRS, steps)
    sfx = f"-{tag}" if tag else ""
    source_name, target_name = PROBLEMS[name]
    target = get_toy_dataset(target_name)
    source = _source(source_name)
    folder = out / name
    models: dict[str, ModelDenoiser] = {}

    def cfm(coupling):
        def build():
            model = _new_model()
            torch.manual_seed(0)
            fit(model, target.sample, sample_source=source, coupling=coupling, steps=steps, progress=False)
            return model

        return build

    need = set(wanted)
    if "2-RF distilled" in need:
        need.add("2-RF")
    if "3-RF" in need:
        need.add("2-RF")
    if "2-RF" in need:
        need.add("1-RF")
    if "1-RF" in need:
        models["1-RF"] = _cached(folder / "rf1", cfm(None), steps)
    if "OT-CFM" in need:
        models["OT-CFM"] = _cached(folder / "otcfm", cfm("ot"), steps)
    for k, prev in ((2, "1-RF"), (3, "2-RF")):
        if f"{k}-RF" not in need:
            continue
        teacher = models[prev]
        # pairs of the 1-RF are shared by every variant with the default pair count
        pairs_dir = folder / (f"pairs_{k - 1}" + (sfx if k > 2 or N_PAIRS != 20_000 else ""))

        def build(teacher=teacher, k=k, pairs_dir=pairs_dir):
            pairs = _pairs(teacher, pairs_dir, source_name, f"rf{k - 1}{sfx if k > 2 else ''}")
            return train_on_pairs_2d(
                teacher, pairs, steps=reflow_steps, t_dist=reflow_t_dist, init="teacher", progress=False
            )[0]

        models[f"{k}-RF"] = _cached(folder / f"rf{k}{sfx}", build, reflow_steps)

    def distill():
        rf2 = models["2-RF"] if not sfx else load_model(folder / "rf2")[0].eval()
        pairs = _pairs(rf2, folder / "pairs_2", source_name, "rf2")
        return train_on_pairs_2d(
            rf2,
            pairs,
            steps=steps // 2,
            lr=5e-4,
            t_dist="terminal",
            init="teacher",
            progress=False,
        )[0]

    if "2-RF distilled" in need:
        models["2-RF distilled"] = _cached(folder / "distill", distill, steps // 2)
    out_models = {}
    for label in MODELS:
        if label == "2-RF" and sfx and (folder / "rf2.json").exists():
            out_models["2-RF"] = load_model(folder / "rf2")[0].eval()  # the "before" row of a variant
        if label in need:
            out_models[_label(label, tag)] = models[label]
    return out_models


def _train_steps(folder: Path, label: str) -> int | None:
    stems = {"1-RF": "rf1", "OT-CFM": "otcfm", "2-RF": "rf2", "3-RF": "rf3", "2-RF distilled": "distill"}
    base, _, tag = label.partition(" [")
    stem = stems[base] + (f"-{tag.rstrip(']')}" if tag else "")
    meta = json.loads((folder / f"{stem}.json").read_text())
    return meta.get("train_steps", 3000 if label != "2-RF distilled" else 1500)  # earlier runs: --steps 3000


def measure(name: str, models: dict[str, ModelDenoiser], folder: Path | None = None) -> dict:
    source_name, target_name = PROBLEMS[name]
    target = get_toy_dataset(target_name)
    reference = target.sample(N_EVAL, torch.Generator().manual_seed(123)).double()
    floor = sliced_wasserstein(
        target.sample(N_EVAL, torch.Generator().manual_seed(456)).double(),
        reference,
        generator=torch.Generator().manual_seed(0),
    )
    rows = {}
    for label, model in models.items():
        r = flow_report(model, shape=(2,), source=_source(source_name), n=2000, straightness_steps=100)
        x1 = source_sample(N_EVAL, (2,), 10**9, _source(source_name))
        for k in EULER:
            with torch.no_grad():
                x = push_forward(model, x1, sampler="euler", steps=k, grid="uniform").x
            r[f"sw_euler_{k}"] = sliced_wasserstein(x, reference, generator=torch.Generator().manual_seed(0))
            reps = []  # independent source and data draws: the spread of the SW estimate itself
            for i in range(N_REPEATS):
                xi = source_sample(N_EVAL, (2,), 10**9 + 10 * (i + 1), _source(source_name))
                ref_i = target.sample(N_EVAL, torch.Generator().manual_seed(1000 + i)).double()
                with torch.no_grad():
                    xi = push_forward(model, xi, sampler="euler", steps=k, grid="uniform").x
                reps.append(sliced_wasserstein(xi, ref_i, generator=torch.Generator().manual_seed(i + 1)))
            reps_t = torch.tensor(reps, dtype=torch.float64)
            r[f"sw_euler_{k}_mean"] = float(reps_t.mean())
            r[f"sw_euler_{k}_se"] = float(reps_t.std() / N_REPEATS**0.5)
        if folder is not None:
            r["train_steps"] = _train_steps(folder, label)
        rows[label] = r
        print(
            f"  {label:15s} steps={r.get('train_steps')} S={r['straightness']:.4f} "
            f"cost={r['transport_cost']:.3f} "
            + " ".join(
                f"SW@{k}={r[f'sw_euler_{k}']:.4f} "
                f"({r[f'sw_euler_{k}_mean']:.4f}+-{r[f'sw_euler_{k}_se']:.4f})"
                for k in EULER
            ),
            flush=True,
        )
    return {"floor": floor, "models": rows, "source": source_name, "target": target_name}


def plot_problem(name: str, models: dict[str, ModelDenoiser], out_img: Path) -> list[Path]:
    source_name, target_name = PROBLEMS[name]
    source = _source(source_name)
    target = get_toy_dataset(target_name).sample(3000, torch.Generator().manual_seed(7))
    x1 = source_sample(3000, (2,), 10**9 + 1, source)
    lim = 3.2
    # samples: rows = models, columns = Euler steps
    fig, axes = plt.subplots(len(models), len(EULER) + 1, figsize=(2.3 * (len(EULER) + 1), 2.3 * len(models)))
    for i, (label, model) in enumerate(models.items()):
        ax = axes[i, 0]
        ax.scatter(target[:, 0], target[:, 1], s=0.5, color="k", alpha=0.4)
        ax.set_ylabel(label, fontsize=9)
        if i == 0:
            ax.set_title(f"data ({target_name})", fontsize=9)
        for j, k in enumerate(EULER):
            with torch.no_grad():
                x = push_forward(model, x1, sampler="euler", steps=k, grid="uniform").x
            ax = axes[i, j + 1]
            ax.scatter(x[:, 0], x[:, 1], s=0.5, color="C0", alpha=0.4)
            if i == 0:
                ax.set_title(f"{k} Euler step{'s' if k > 1 else ''}", fontsize=9)
    for ax in axes.flat:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{source_name} -> {target_name}", fontsize=10)
    fig.tight_layout()
    samples_png = out_img / f"flows-{name}-samples.png"
    fig.savefig(samples_png, dpi=100)
    plt.close(fig)
    # trajectories (100 Euler steps) of 80 source points
    fig, axes = plt.subplots(1, len(models), figsize=(3.0 * len(models), 3.2))
    x1 = source_sample(80, (2,), 10**9 + 2, source)
    for ax, (label, model) in zip(axes, models.items(), strict=True):
        path = [x1]
        with torch.no_grad():
            push_forward(
                model,
                x1,
                sampler="euler",
                steps=100,
                grid="uniform",
                callback=lambda i, path=path: path.append(i["x"]),
            )
        traj = torch.stack(path).numpy()
        ax.scatter(target[:, 0], target[:, 1], s=0.3, color="0.8")
        for p in range(traj.shape[1]):
            ax.plot(traj[:, p, 0], traj[:, p, 1], lw=0.6, color="C1", alpha=0.8)
        ax.scatter(traj[0, :, 0], traj[0, :, 1], s=6, color="k", marker="x", lw=0.6)
        ax.scatter(traj[-1, :, 0], traj[-1, :, 1], s=5, color="C0", zorder=3)
        ax.set_title(label, fontsize=9)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{source_name} (x) -> {target_name} (dots): ODE paths, 100 Euler steps", fontsize=10)
    fig.tight_layout()
    traj_png = out_img / f"flows-{name}-trajectories.png"
    fig.savefig(traj_png, dpi=100)
    plt.close(fig)
    return [samples_png, traj_png]


def plot_sw(results: dict, path: Path) -> Path:
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6))
    for ax, (name, res) in zip(axes, results.items(), strict=True):
        for label, r in res["models"].items():
            ys = [r[f"sw_euler_{k}"] for k in EULER]
            ax.plot(EULER, ys, marker="o", ms=3, label=f"{label} (S={r['straightness']:.3f})")
        ax.axhline(res["floor"], color="k", ls=":", lw=0.8, label="noise floor")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(EULER, [str(k) for k in EULER])
        ax.set_xlabel("Euler steps (NFE)")
        ax.set_ylabel("sliced Wasserstein to data")
        ax.set_title(name, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _shown(models: dict) -> set[str]:
    """The labels of this run's models, plus the default 2-RF as the "before" curve of a variant."""
    return set(models) | ({"2-RF"} if any("[" in label for label in models) else set())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/flows/bench2d", help="cache of models and results")
    parser.add_argument("--steps", type=int, default=3000, help="training steps per model")
    parser.add_argument("--problems", default=",".join(PROBLEMS), help="comma-separated problems")
    parser.add_argument("--pairs", type=int, default=N_PAIRS, help="reflow pairs per round")
    parser.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated subset of " + ", ".join(MODELS)
    )
    parser.add_argument(
        "--reflow-t-dist",
        default="uniform",
        choices=("uniform", "u_shaped", "u_shaped_tmax"),
        help="training time distribution of the reflow rounds (2-RF, 3-RF); u_shaped: Lee et al. 2024; "
        "u_shaped_tmax: the same with 10%% of the draws at t = 1 (hwaksan.losses.sample_t)",
    )
    parser.add_argument(
        "--reflow-steps", type=int, default=None, help="training steps of each reflow round (default --steps)"
    )
    parser.add_argument("--plot-only", action="store_true", help="load cached models, skip the measurement")
    parser.add_argument("--no-plots", action="store_true", help="measure only, leave docs/img as it is")
    args = parser.parse_args(argv)
    globals()["N_PAIRS"] = args.pairs
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    IMG.mkdir(parents=True, exist_ok=True)
    wanted = [m.strip() for m in args.models.split(",")]
    unknown = sorted(set(wanted) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    files = []
    for name in args.problems.split(","):
        print(f"{name}:", flush=True)
        models = train_problem(
            name, out, args.steps, wanted, reflow_t_dist=args.reflow_t_dist, reflow_steps=args.reflow_steps
        )
        if not args.plot_only:
            new = measure(name, models, out / name)
            old = results.get(name, {}).get("models", {})
            results[name] = {**new, "models": {**old, **new["models"]}}  # keep the rows of other variants
        if not args.no_plots:
            files += plot_problem(name, models, IMG)
    if len(results) == len(PROBLEMS) and not args.no_plots:
        shown = {
            name: {**res, "models": {k: v for k, v in res["models"].items() if k in _shown(models)}}
            for name, res in results.items()
        }
        files.append(plot_sw(shown, IMG / "flows-sw-vs-steps.png"))
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    print("outputs:")
    for f in [results_path, *files]:
        print(f"  {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
