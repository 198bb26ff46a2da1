"""Guidance on MNIST: classifier-free guidance sweep and classifier-guidance sweep.

    # 1. samples (resumable: a point already on disk is skipped)
    python bench/guidance_mnist.py sample --mode cfg --bf16
    # classifier A: EDM process, ln sigma~ ~ N(-1.2, 1.2^2), 16 channels, 1200 steps
    CLF=runs/guidance/classifier-mnist/classifier
    python bench/guidance_mnist.py sample --mode classifier --classifier $CLF --bf16
    # classifier B: VP process, t ~ U(0, 1) (covers the high noise levels), 16 channels, 1600 steps
    CLF=runs/guidance/classifier-mnist-vp/classifier
    python bench/guidance_mnist.py sample --mode classifier --classifier $CLF --bf16 \
        --out runs/guidance/mnist-vp
    # 2. metrics, plots and grids
    python bench/guidance_mnist.py evaluate \
        --classifier-run runs/guidance/mnist "classifier guidance, classifier A (EDM)" \
        --classifier-run runs/guidance/mnist-vp "classifier guidance, classifier B (VP)"

Every point draws N = 1000 images (100 per class, image i has class i % 10 and seed i) from the newest
checkpoint of runs/mnist (EMA 0) with Heun, 12 steps on the Karras grid (23 NFE per branch). CFG uses the
class-conditional model with w in {1, 1.5, 2, 3, 5}; classifier guidance uses the same network's null
class (its unconditional mode) with a noise-aware classifier at s in {0, 1, 2, 5, 10, 20, 40} (the issue's
sweep extended by 20 and 40). Class accuracy and the Frechet distance use the *evaluation* classifier of
:mod:`hwaksan.evaluation` (FD-mnist against the 10,000 test images), never the guiding one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from hwaksan.guidance import ClassifierFreeGuidance, ClassifierGuidance
from hwaksan.io.artifact import load_trained
from hwaksan.samplers import sample
from hwaksan.training.classifier import classifier_log_prob, load_classifier

CFG_SCALES = (1.0, 1.5, 2.0, 3.0, 5.0)
CLASSIFIER_SCALES = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0)
N, BATCH, STEPS, SAMPLER, GRID = 1000, 100, 12, "heun", "karras"


def _points(mode: str, only: list[float] | None = None) -> list[tuple[str, float]]:
    scales = CFG_SCALES if mode == "cfg" else CLASSIFIER_SCALES
    return [(f"{mode}_{s:g}", s) for s in scales if only is None or s in only]


class _Autocast:
    """The network in bfloat16 autocast (as it was trained: ``train.bf16 = true``); the sampler's
    state and the denoiser's arithmetic stay float32."""

    def __init__(self, model) -> None:
        self.model, self.process = model, model.process

    def __call__(self, x, t, cond=None):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.model(x, t, cond).float()


def cmd_sample(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trained = load_trained(args.model)  # a run folder's newest checkpoint, EMA 0
    ckpt, model = trained.path, trained.denoiser
    if not trained.num_classes:
        raise SystemExit(f"{ckpt} is not a class-conditional model")
    net_model = _Autocast(model) if args.bf16 else model
    k, n = trained.num_classes, args.n
    labels = torch.arange(n) % k
    log_prob = None
    if args.mode == "classifier":
        net, process, cmeta = load_classifier(args.classifier)
        log_prob = classifier_log_prob(net, process, cmeta["sigma_data"], model_process=model.process)
    for tag, scale in _points(args.mode, args.scales):
        path = out / f"{tag}.safetensors"
        if path.exists():
            print(f"{tag}: exists, skipped", file=sys.stderr)
            continue
        if args.mode == "cfg":
            denoiser = ClassifierFreeGuidance(net_model, scale, null_class=k)
        else:
            denoiser = ClassifierGuidance(net_model, log_prob, scale)  # the model's unconditional mode
        start, parts, nfe = time.perf_counter(), [], 0
        for i in tqdm(range(0, n, BATCH), desc=tag, file=sys.stderr):
            b = min(BATCH, n - i)
            gens = [torch.Generator().manual_seed(j) for j in range(i, i + b)]
            with torch.no_grad():
                res = sample(
                    denoiser,
                    (b, 1, 28, 28),
                    sampler=SAMPLER,
                    steps=STEPS,
                    grid=GRID,
                    cond=labels[i : i + b],
                    generator=gens,
                )
            parts.append(res.x.clamp(-1, 1))
            nfe = res.nfe
        seconds = time.perf_counter() - start
        meta_out = {
            "checkpoint": str(ckpt),
            "mode": args.mode,
            "scale": str(scale),
            "nfe": str(nfe),
            "seconds": f"{seconds:.1f}",
            "classifier": str(args.classifier or ""),
            "bf16": str(bool(args.bf16)),
        }
        save_file({"images": torch.cat(parts), "labels": labels}, str(path), metadata=meta_out)
        print(f"{tag}: {n} images in {seconds:.0f} s ({nfe} sampler NFE) -> {path}", file=sys.stderr)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from safetensors import safe_open

    from hwaksan.data.images import load_dataset
    from hwaksan.evaluation import class_accuracy, dataset_classifier, frechet_distance, image_features

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    clf = dataset_classifier("mnist")
    test = load_dataset("mnist", "test")
    real = image_features(test.images, "classifier", dataset="mnist")
    train = load_dataset("mnist", "train")
    floor_idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:N]
    floor_imgs, floor_lab = train.images[floor_idx], train.labels[floor_idx]
    rows = [
        {
            "tag": "real",
            "scale": None,
            "accuracy": class_accuracy(floor_imgs, floor_lab, "mnist"),
            "fd": frechet_distance(image_features(floor_imgs, "classifier", dataset="mnist"), real),
        }
    ]
    runs = [("cfg", out, "classifier-free (w)")] + [
        ("classifier", Path(d), name) for d, name in (args.classifier_run or [(str(out), "classifier (s)")])
    ]
    for mode, folder, name in runs:
        for tag, scale in _points(mode):
            path = folder / f"{tag}.safetensors"
            if not path.exists():
                continue
            data = load_file(str(path))
            with safe_open(str(path), "pt") as f:
                info = f.metadata()
            images, labels = data["images"], data["labels"]
            feats = image_features(images, "classifier", dataset="mnist")
            rows.append(
                {
                    "tag": tag,
                    "mode": mode,
                    "run": name,
                    "folder": str(folder),
                    "guiding_classifier": info.get("classifier", ""),
                    "scale": scale,
                    "accuracy": class_accuracy(images, labels, "mnist"),
                    "fd": frechet_distance(feats, real),
                    "seconds": float(info.get("seconds", "nan")),
                    "nfe": int(info.get("nfe", "0")),
                }
            )
    record = {
        "n": N,
        "sampler": f"{SAMPLER} {STEPS} steps {GRID}",
        "evaluation_classifier": {"path": str(clf.path), "val_accuracy": clf.accuracy, "sha256": clf.sha256},
        "rows": rows,
    }
    (out / "results.json").write_text(json.dumps(record, indent=2))
    for r in rows:
        print(
            f"{r.get('run', 'real'):28s} {r['tag']:16s} accuracy {100 * r['accuracy']:6.2f}%  "
            f"FD-mnist {r['fd']:8.3f}"
        )
    print(f"evaluation classifier val accuracy {clf.accuracy}; results -> {out / 'results.json'}")
    _plots(rows, out, Path(args.docs_img), args.grid_scales)


def _plots(rows: list[dict], out: Path, img: Path, grid_scales: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hwaksan.plotting import save_image_grid

    img.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.4))
    names = list(dict.fromkeys(r["run"] for r in rows if "run" in r))
    real = next(r for r in rows if r["tag"] == "real")
    for k, ax in enumerate(axes):  # left: the whole sweep; right: zoom on accuracy >= 84%
        for name, marker in zip(names, "osD^v", strict=False):
            pts = [r for r in rows if r.get("run") == name and (k == 0 or r["accuracy"] >= 0.84)]
            sym = "w" if pts[0]["mode"] == "cfg" else "s"
            xs, ys = [100 * r["accuracy"] for r in pts], [r["fd"] for r in pts]
            ax.plot(xs, ys, marker=marker, label=name)
            for i, (r, x, y) in enumerate(zip(pts, xs, ys, strict=True)):
                off = (4, 4) if i % 2 == 0 else (-6, -12)  # alternate so that close points stay readable
                ax.annotate(
                    f"{sym}={r['scale']:g}", (x, y), textcoords="offset points", xytext=off, fontsize=7
                )
        ax.axhline(real["fd"], color="grey", ls=":", lw=1, label="1000 real training images")
        ax.set_xlabel("class accuracy of samples (%), evaluation classifier")
        ax.set_ylabel("FD-mnist to the test set (lower is better, log scale)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_title("MNIST guidance: fidelity vs class agreement (N=1000, Heun 12 steps)", fontsize=9)
    axes[1].set_title("zoom: accuracy >= 84%", fontsize=9)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(img / "guidance-fd-vs-accuracy.png", dpi=130)
    plt.close(fig)

    # sample grids: 10 per class (columns = classes), for a few scales of each mode
    cls_folder = Path(next((r["folder"] for r in reversed(rows) if r.get("mode") == "classifier"), out))
    panels = [("cfg", out, (1.0, 3.0, 5.0), "w"), ("classifier", cls_folder, tuple(grid_scales), "s")]
    for mode, folder, scales, sym in panels:
        loaded = []
        for s in scales:
            path = folder / f"{mode}_{s:g}.safetensors"
            if path.exists():
                loaded.append((s, load_file(str(path))["images"][:100]))
                save_image_grid(loaded[-1][1], folder / f"grid_{mode}_{s:g}.png", nrow=10, scale=2)
        if not loaded:
            continue
        fig, axes = plt.subplots(1, len(loaded), figsize=(3.3 * len(loaded), 3.6))
        for a, (s, x) in zip(list(axes) if len(loaded) > 1 else [axes], loaded, strict=True):
            grid = x.reshape(10, 10, 28, 28).permute(0, 2, 1, 3).reshape(280, 280)
            a.imshow(((grid.clamp(-1, 1) + 1) / 2).numpy(), cmap="gray", vmin=0, vmax=1)
            a.set_title(f"{sym} = {s:g}", fontsize=10)
            a.axis("off")
        title = "classifier-free guidance" if mode == "cfg" else "classifier guidance (unconditional mode)"
        fig.suptitle(f"{title}; column = class 0..9", fontsize=10)
        fig.tight_layout()
        fig.savefig(img / f"guidance-{mode}-grid.png", dpi=110)
        plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sample", help="draw the samples of one sweep")
    p.add_argument("--mode", choices=("cfg", "classifier"), required=True)
    p.add_argument("--model", default="runs/mnist", help="checkpoint or run folder (default runs/mnist)")
    p.add_argument("--classifier", default=None, help="noise-aware classifier checkpoint (--mode classifier)")
    p.add_argument("--out", default="runs/guidance/mnist", help="sample folder")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n", type=int, default=N, help=f"images per point (default {N})")
    p.add_argument("--bf16", action="store_true", help="run the U-Net under bfloat16 autocast (2.2x here)")
    p.add_argument(
        "--scales", type=float, nargs="+", default=None, help="only these scales of the sweep (default: all)"
    )
    p.set_defaults(func=cmd_sample)
    p = sub.add_parser("evaluate", help="accuracy, FD, plots and grids of the samples on disk")
    p.add_argument("--out", default="runs/guidance/mnist", help="sample folder")
    p.add_argument("--docs-img", default="docs/img", help="where the PNGs for the docs go")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--classifier-run",
        nargs=2,
        action="append",
        metavar=("DIR", "NAME"),
        help="a folder of classifier-guidance samples and its legend name (repeatable; default: --out)",
    )
    p.add_argument(
        "--grid-scales",
        type=float,
        nargs="+",
        default=[0.0, 10.0, 40.0],
        help="classifier scales shown in guidance-classifier-grid.png (from the last --classifier-run)",
    )
    p.set_defaults(func=cmd_evaluate)
    args = parser.parse_args()
    if args.command == "sample" and args.mode == "classifier" and not args.classifier:
        parser.error("--mode classifier needs --classifier CKPT")
    args.func(args)


if __name__ == "__main__":
    main()
