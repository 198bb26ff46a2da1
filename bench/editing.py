"""The editing measurements: inpainting, super-resolution, cascade, inversion, SDEdit.

Results: docs/benchmarks-editing.md.

Each part writes ``OUT/<part>.json`` (numbers), ``OUT/<part>.safetensors`` (the images it made) and
pictures under ``docs/img/editing-*.png``::

    python bench/editing.py gaussian            # RePaint vs replacement on the exact Gaussian posterior
    python bench/editing.py inpaint --n 300     # MNIST test digits, runs/mnist
    python bench/editing.py superres --n 500    # 14 -> 28, runs/editing/sr and sr-noaug vs bicubic
    python bench/editing.py cascade --n 500     # runs/editing/base14 + SR vs runs/mnist at 28x28
    python bench/editing.py inversion --n 64    # DDIM inversion error vs steps, runs/mnist
    python bench/editing.py sdedit              # picture only

Metrics: FD-mnist (Frechet distance in the feature space of hwaksan's own MNIST classifier,
:mod:`hwaksan.evaluation`; not FID) against the statistics of the 10,000 MNIST test images, and
class accuracy by the same classifier. Everything is seeded (image i uses seed i).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import hwaksan as hw  # noqa: E402
from hwaksan.io.artifact import load_trained  # noqa: E402
from hwaksan.io.checkpoint import save_tensors  # noqa: E402
from hwaksan.plotting import save_image_grid  # noqa: E402
from hwaksan.tasks import (  # noqa: E402
    inpaint,
    invert_and_generate,
    paste,
    psnr,
    sdedit,
    ssim,
    upscale,
)
from hwaksan.utils import downsample, upsample  # noqa: E402

IMG = ROOT / "docs" / "img"


def _gens(start: int, n: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(start + i) for i in range(n)]


def _load(path: str):
    """``(denoiser, step, checkpoint path)`` of a checkpoint or a run folder's newest one (EMA 0)."""
    trained = load_trained(path)
    return trained.denoiser, trained.step, trained.path


def _test_set(n: int, size: int | None = None):
    from hwaksan.data.images import load_dataset

    d = load_dataset("mnist", "test", size)
    return d.images[:n], d.labels[:n]


def _scores(images: torch.Tensor, labels: torch.Tensor | None = None, boot: int = 200) -> dict:
    """FD-mnist of ``images (N, 1, 28, 28)`` against the 10,000 test images, with a bootstrap standard
    error (``boot`` resamples of the N images, seed 0; the reference statistics held fixed), and, with
    ``labels (N,)``, the classifier's accuracy, its binomial standard error and the per-image hits
    (``correct``, for paired differences between methods on the same inputs)."""
    from hwaksan.evaluation import (
        frechet_distance_from_statistics,
        gaussian_statistics,
        image_features,
        real_statistics,
    )
    from hwaksan.evaluation.classifier import classifier_logits

    images = images.clamp(-1, 1)
    ref = real_statistics("mnist", "test", "classifier", image_size=tuple(images.shape[-2:]))
    feats = image_features(images, "classifier", "mnist").double()

    def fd(f: torch.Tensor) -> float:
        mu, cov = gaussian_statistics(f)
        return frechet_distance_from_statistics(mu, cov, ref.mu, ref.cov)

    n = len(feats)
    g = torch.Generator().manual_seed(0)
    draws = torch.tensor([fd(feats[torch.randint(n, (n,), generator=g)]) for _ in range(boot)])
    out: dict = {"fd": fd(feats), "fd_se": float(draws.std())}
    if labels is not None:
        correct = (classifier_logits(images, "mnist").argmax(-1) == labels.cpu()).double()
        acc = float(correct.mean())
        out.update(accuracy=acc, accuracy_se=math.sqrt(acc * (1 - acc) / n), correct=correct)
    return out


def _paired(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Accuracy difference ``mean(a - b)`` of per-image hits on the same inputs and its standard error."""
    d = a - b
    return {"diff": float(d.mean()), "se": float(d.std() / math.sqrt(len(d)))}


def _paired_fd(a: torch.Tensor, b: torch.Tensor, boot: int = 200) -> dict:
    """FD-mnist(a) - FD-mnist(b) for two image sets ``(N, 1, H, W)`` made from the same inputs (row i of
    both from input i), with a paired bootstrap standard error: the same resampled rows for both."""
    from hwaksan.evaluation import (
        frechet_distance_from_statistics,
        gaussian_statistics,
        image_features,
        real_statistics,
    )

    ref = real_statistics("mnist", "test", "classifier", image_size=tuple(a.shape[-2:]))
    fa, fb = (image_features(t.clamp(-1, 1), "classifier", "mnist").double() for t in (a, b))

    def fd(f: torch.Tensor) -> float:
        mu, cov = gaussian_statistics(f)
        return frechet_distance_from_statistics(mu, cov, ref.mu, ref.cov)

    g = torch.Generator().manual_seed(0)
    draws = []
    for _ in range(boot):
        i = torch.randint(len(fa), (len(fa),), generator=g)
        draws.append(fd(fa[i]) - fd(fb[i]))
    return {"diff": fd(fa) - fd(fb), "se": float(torch.tensor(draws).std())}


def _row_scores(row: dict, images: torch.Tensor, labels: torch.Tensor | None, hits: dict, name: str) -> None:
    sc = _scores(images, labels)
    if "correct" in sc:
        hits[name] = sc.pop("correct")
    row.update(sc)


def _batched(fn, n: int, batch: int, desc: str, start: int = 0):
    """Run ``fn(lo, hi) -> Tensor`` over batches of the indices ``start .. n-1``; concatenates the results."""
    out = []
    for lo in tqdm(range(start, n, batch), desc=desc, file=sys.stderr):
        out.append(fn(lo, min(n, lo + batch)))
    return torch.cat(out)


def _write(out: Path, part: str, record: dict, tensors: dict[str, torch.Tensor] | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    record = {"part": part, "date": time.strftime("%Y-%m-%d"), "argv": sys.argv, **record}
    (out / f"{part}.json").write_text(json.dumps(record, indent=2))
    if tensors:  # PART-images.safetensors + PART-images.json (its metadata holds the record too)
        save_tensors(
            out / f"{part}-images", tensors, {"kind": "bench-editing", "part": part, "record": record}
        )
    print(json.dumps(record, indent=2))


def _resumed(out: Path, part: str, args) -> tuple[dict, dict]:
    """The rows and tensors of an interrupted run of ``part`` (``--resume``), or empty dicts."""
    path = out / f"{part}-images.safetensors"
    if not (getattr(args, "resume", False) and path.is_file()):
        return {}, {}
    from hwaksan.io.checkpoint import load_tensors

    tensors, meta = load_tensors(path)
    record = meta.get("record", {})
    if record.get("steps") != args.steps:
        raise SystemExit(f"{path} has steps={record.get('steps')}: rerun without --resume")
    # image i always uses seed i, so the first args.n images of a larger run are this run's images, and
    # a method with fewer images is extended (part_inpaint samples only the missing ones); the stored
    # tensors are kept whole, so a smaller run never throws away images of a larger one
    print(f"resuming from {path} (n={record.get('n')} -> {args.n}): {sorted(tensors)}", file=sys.stderr)
    return record.get("rows", {}), tensors


# ------------------------------------------------------------------------------------------------


def part_gaussian(args) -> None:
    """RePaint vs plain replacement on a correlated 6-D Gaussian: distance of the sampled moments of
    the unknown block to the exact Gaussian conditional (tests/tasks/test_tasks_inpaint.py)."""
    d, known, unknown = 6, [0, 1, 2], [3, 4, 5]
    g = torch.Generator().manual_seed(0)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    cov = a @ a.T / d + 0.05 * torch.eye(d, dtype=torch.float64)
    oracle = hw.GaussianMixtureDenoiser(
        hw.GaussianMixture(torch.zeros(1, d, dtype=torch.float64), cov[None]), hw.make_process("edm")
    )
    xk = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    ckk, cuk = cov[known][:, known], cov[unknown][:, known]
    mean = cuk @ torch.linalg.solve(ckk, xk)
    var = cov[unknown][:, unknown] - cuk @ torch.linalg.solve(ckk, cuk.T)
    vi = torch.linalg.inv(var)
    n = args.n or 4000
    x0 = torch.zeros(n, d, dtype=torch.float64)
    x0[:, known] = xk
    mask = torch.zeros(1, d, dtype=torch.float64)
    mask[:, known] = 1
    rows = []
    for steps in (25, 50, 100, 200):
        for jump, resample in ((1, 1), (5, 5), (10, 10), (1, 10)):
            if jump >= steps:
                continue
            t0 = time.perf_counter()
            res = inpaint(
                oracle,
                x0,
                mask,
                steps=steps,
                jump=jump,
                resample=resample,
                generator=torch.Generator().manual_seed(1),
            )
            xu = res.x[:, unknown]
            m1, s1 = xu.mean(0), torch.cov(xu.T)
            dm = m1 - mean
            kl = 0.5 * float(torch.trace(vi @ s1) + dm @ vi @ dm - 3 + torch.logdet(var) - torch.logdet(s1))
            rows.append(
                {
                    "steps": steps,
                    "jump": jump,
                    "resample": resample,
                    "nfe": res.nfe,
                    "mahalanobis_mean": float((dm @ vi @ dm).sqrt()),
                    "kl": kl,
                    "cov_rel_error": float((s1 - var).norm() / var.norm()),
                    "seconds": time.perf_counter() - t0,
                }
            )
            print(rows[-1], file=sys.stderr)
    _write(Path(args.out), "gaussian", {"n": n, "mc_mahalanobis_9999": math.sqrt(21.1 / n), "rows": rows})


# ------------------------------------------------------------------------------------------------


def _masks(kind: str, n: int) -> torch.Tensor:
    if kind == "half":  # keep the top half, fill the bottom half
        m = torch.zeros(n, 1, 28, 28)
        m[:, :, :14] = 1
        return m
    if kind == "random":  # keep 25% of the pixels, image i with seed 10_000 + i
        return torch.stack([(torch.rand(1, 28, 28, generator=g) < 0.25).float() for g in _gens(10_000, n)])
    raise ValueError(kind)


def part_inpaint(args) -> None:
    """Sampling first (images saved after every method), metrics at the end, so that an interrupted run
    keeps its images and the evaluation classifier is needed only once they exist."""
    model, _, ckpt = _load(args.checkpoint)
    n, steps, batch = args.n, args.steps, args.batch
    x, labels = _test_set(n)
    methods = {
        "paste": dict(resample=0),
        "replace": dict(jump=10, resample=1),
        "repaint": dict(jump=10, resample=10),
    }
    if args.equal_nfe:
        methods["replace-equal-nfe"] = dict(jump=10, resample=1, steps=None)
    part = f"inpaint-{'-'.join(args.masks)}"
    record: dict = {"checkpoint": str(ckpt), "n": n, "steps": steps, "sampler": "ddpm", "grid": "karras"}
    rows, tensors = _resumed(Path(args.out), part, args)
    tensors.update({"originals": x, "labels": labels})
    for kind in args.masks:
        masks = _masks(kind, n)
        tensors[f"{kind}.mask"] = masks
        tensors[f"{kind}.masked_input"] = x * masks + (1 - masks) * -1
        rows.setdefault(kind, {"masked_input": {}})
        repaint_nfe = rows[kind].get("repaint", {}).get("nfe_per_image")
        for name, opts in methods.items():
            done = tensors.get(f"{kind}.{name}") if name in rows[kind] else None
            start = 0 if done is None else len(done)
            if start >= n:
                continue  # done before the interruption (--resume), maybe for more images
            opts = dict(opts)
            s = opts.pop("steps", steps) or repaint_nfe
            t0 = time.perf_counter()
            nfe = [0]

            def run(lo, hi, opts=opts, s=s, masks=masks, nfe=nfe):
                with torch.no_grad():
                    if opts.get("resample") == 0:
                        res = hw.sample(
                            model,
                            (hi - lo, 1, 28, 28),
                            sampler="ddpm",
                            steps=s,
                            grid="karras",
                            generator=_gens(lo, hi - lo),
                        )
                        out = paste(res.x, x[lo:hi], masks[lo:hi])
                    else:
                        res = inpaint(
                            model, x[lo:hi], masks[lo:hi], steps=s, generator=_gens(lo, hi - lo), **opts
                        )
                        out = res.x
                nfe[0] = res.nfe
                return out

            out = _batched(run, n, batch, f"{kind}/{name}", start)
            if done is not None and start:
                out = torch.cat([done, out])
            if name == "repaint":
                repaint_nfe = nfe[0]
            rows[kind][name] = {
                "steps": s,
                "nfe_per_image": nfe[0],
                "known_max_abs_error": float((out - x)[masks.bool()].abs().max()),
                "seconds": time.perf_counter() - t0,
                "timed_images": n - start,
            }
            tensors[f"{kind}.{name}"] = out
            print(kind, name, rows[kind][name], file=sys.stderr)
            _write(Path(args.out), part, {**record, "rows": rows}, tensors)  # partial results
        show = 10
        panels = [x[:show], tensors[f"{kind}.masked_input"][:show]] + [
            tensors[f"{kind}.{m}"][:show] for m in methods
        ]
        save_image_grid(torch.cat(panels), IMG / f"editing-inpaint-{kind}.png", nrow=show, scale=3)
    _score_inpaint(record, rows, {k: v[:n] for k, v in tensors.items()})
    _write(Path(args.out), part, {**record, "rows": rows}, tensors)


def _score_inpaint(record: dict, rows: dict, tensors: dict) -> None:
    """FD and accuracy of every completion (in place), and paired accuracy differences."""
    x, labels = tensors["originals"], tensors["labels"]
    record["originals"] = {k: v for k, v in _scores(x, labels).items() if k != "correct"}
    for kind in rows:
        hits: dict = {}
        for name, row in rows[kind].items():
            if name not in ("paired", "paired_fd"):
                _row_scores(row, tensors[f"{kind}.{name}"], labels, hits, name)
        pairs = [(a, b) for a, b in (("repaint", "replace"), ("repaint", "paste"), ("replace", "paste"))]
        rows[kind]["paired"] = {
            f"{a} - {b}": _paired(hits[a], hits[b]) for a, b in pairs if a in hits and b in hits
        }
        rows[kind]["paired_fd"] = {
            f"{a} - {b}": _paired_fd(tensors[f"{kind}.{a}"], tensors[f"{kind}.{b}"])
            for a, b in pairs
            if a in hits and b in hits
        }


def part_rescore(args) -> None:
    """Recompute the metrics of a finished inpainting part from its images (``--target inpaint-half``)."""
    from hwaksan.io.checkpoint import load_tensors

    tensors, meta = load_tensors(Path(args.out) / f"{args.target}-images.safetensors")
    n = min(args.n or len(tensors["originals"]), len(tensors["originals"]))
    tensors = {k: v[:n] for k, v in tensors.items()}
    record = dict(meta["record"])
    record["n"] = n
    rows = record.pop("rows")
    _score_inpaint(record, rows, tensors)
    _write(Path(args.out), args.target, {**record, "rows": rows, "rescored": True})


# ------------------------------------------------------------------------------------------------


def part_superres(args) -> None:
    """14 -> 28 on MNIST test digits: bicubic vs the SR models (PSNR, SSIM, FD-mnist, accuracy)."""
    n, batch = args.n, args.batch
    x, labels = _test_set(n)
    low = downsample(x, 14)
    tensors = {"original": x, "bicubic": upsample(low, 28)}
    rows: dict = {"original": {}, "bicubic": {"nfe": 0}}
    runs = [("sr", args.sr, lvl) for lvl in args.levels] + [("sr-noaug", args.sr_noaug, None)]
    for tag, path, level in runs:
        model, step, ckpt = _load(path)
        t0 = time.perf_counter()
        nfe = [0]

        def run(lo, hi, model=model, level=level, nfe=nfe):
            with torch.no_grad():
                res = upscale(
                    model, low[lo:hi], 28, aug_level=level, steps=args.steps, generator=_gens(lo, hi - lo)
                )
            nfe[0] = res.nfe
            return res.x.clamp(-1, 1)

        name = f"{tag} @ s={level}" if level is not None else tag
        tensors[name] = _batched(run, n, batch, name)
        rows[name] = {
            "checkpoint": str(ckpt),
            "step": step,
            "aug_level": level,
            "nfe": nfe[0],
            "seconds": time.perf_counter() - t0,
        }
    for name, row in rows.items():
        out = tensors[name]
        if name != "original":
            p, q = psnr(out, x), ssim(out, x)
            row.update(
                psnr=float(p.mean()),
                psnr_se=float(p.std() / math.sqrt(n)),
                ssim=float(q.mean()),
                ssim_se=float(q.std() / math.sqrt(n)),
            )
        _row_scores(row, out, labels, {}, name)
        print(name, row, file=sys.stderr)
    show = 10
    keys = [k for k in tensors if k != "original"] + ["original"]
    save_image_grid(
        torch.cat([tensors[k][:show] for k in keys]), IMG / "editing-superres.png", nrow=show, scale=3
    )
    _write(
        Path(args.out), "superres", {"n": n, "steps": args.steps, "rows": rows, "panel_rows": keys}, tensors
    )


# ------------------------------------------------------------------------------------------------


def _stored_samples(args, n: int, labels: torch.Tensor, checkpoint: str) -> torch.Tensor:
    """The first ``n`` samples of a ``hwaksan evaluate`` sample folder (shards of 250), after checking
    that they were made like this bench's: heun, ``args.steps`` Karras steps, seed ``i``, labels i % 10."""
    from hwaksan.io.checkpoint import load_tensors

    images, labs = [], []
    for path in sorted(Path(args.single_samples).glob("shard_*.safetensors")):
        t, meta = load_tensors(path)
        spec, ck = meta["record"]["spec"], meta["record"]["checkpoint"]["path"]
        want = {"sampler": "heun", "steps": args.steps, "grid": "karras", "seed": 0, "label": None}
        if {k: spec.get(k) for k in want} != want or spec.get("uncond") or Path(ck) != Path(checkpoint):
            raise SystemExit(f"{path}: made with {spec} from {ck}, not like this bench's samples")
        images.append(t["images"])
        labs.append(t["labels"])
        if sum(len(i) for i in images) >= n:
            break
    x, lab = torch.cat(images)[:n], torch.cat(labs)[:n]
    if len(x) < n or not torch.equal(lab, labels):
        raise SystemExit(f"{args.single_samples} has {len(x)} samples or other labels than i % 10")
    return x.clamp(-1, 1)


def part_cascade(args) -> None:
    """Base 14x14 + SR 14 -> 28 (with and without augmentation, several sampling levels) vs the
    single-stage 28x28 model, all class-conditional with labels i % 10 (FD-mnist, accuracy)."""
    n, batch = args.n, args.batch
    labels = torch.arange(n) % 10
    base, base_step, base_ckpt = _load(args.base)
    single, single_step, single_ckpt = _load(args.checkpoint)
    rows: dict = {}
    tensors: dict = {}

    def sample_with(model, size, lo, hi):
        with torch.no_grad():
            return hw.sample(
                model,
                (hi - lo, 1, size, size),
                sampler="heun",
                steps=args.steps,
                grid="karras",
                cond=labels[lo:hi],
                generator=_gens(lo, hi - lo),
            )

    t0 = time.perf_counter()
    tensors["base14"] = _batched(
        lambda lo, hi: sample_with(base, 14, lo, hi).x.clamp(-1, 1), n, batch, "base14"
    )
    base_seconds = time.perf_counter() - t0
    rows["base14"] = {"checkpoint": str(base_ckpt), "step": base_step, "seconds": base_seconds}
    tensors["base14 + bicubic"] = upsample(tensors["base14"], 28)
    rows["base14 + bicubic"] = {"seconds": base_seconds}
    t0 = time.perf_counter()
    if args.single_samples:  # the same samples, made earlier by `hwaksan evaluate` (checked below)
        tensors["single-stage 28x28"] = _stored_samples(args, n, labels, str(single_ckpt))
        check = sample_with(single, 28, 0, 2).x.clamp(-1, 1)
        if not torch.allclose(check, tensors["single-stage 28x28"][:2], atol=1e-5):
            raise SystemExit(
                f"{args.single_samples} does not hold this bench's samples: drop --single-samples"
            )
    else:
        tensors["single-stage 28x28"] = _batched(
            lambda lo, hi: sample_with(single, 28, lo, hi).x.clamp(-1, 1), n, batch, "single-stage"
        )
    rows["single-stage 28x28"] = {
        "checkpoint": str(single_ckpt),
        "step": single_step,
        "seconds": time.perf_counter() - t0,
        "from": args.single_samples or "sampled here",
    }
    runs = [("sr", args.sr, lvl) for lvl in args.levels] + [("sr-noaug", args.sr_noaug, None)]
    for tag, path, level in runs:
        model, step, ckpt = _load(path)
        t0 = time.perf_counter()

        def run(lo, hi, model=model, level=level):
            with torch.no_grad():
                res = upscale(
                    model,
                    tensors["base14"][lo:hi],
                    28,
                    aug_level=level,
                    steps=args.sr_steps,
                    generator=_gens(100_000 + lo, hi - lo),
                )
            return res.x.clamp(-1, 1)

        name = f"base14 + {tag}" + (f" @ s={level}" if level is not None else "")
        tensors[name] = _batched(run, n, batch, name)
        rows[name] = {
            "checkpoint": str(ckpt),
            "step": step,
            "aug_level": level,
            "seconds": time.perf_counter() - t0 + base_seconds,
        }
    real, _ = _test_set(n)
    rows[f"real test images (n = {n})"] = _scores(real)
    for name, row in rows.items():
        if name in tensors and tensors[name].shape[-1] == 28:  # 14x14 would need its own classifier
            _row_scores(row, tensors[name], labels, {}, name)
        print(name, row, file=sys.stderr)
    noaug = "base14 + sr-noaug"
    rows["paired FD differences"] = {
        f"{k} - {noaug}": _paired_fd(tensors[k], tensors[noaug])
        for k in tensors
        if k.startswith("base14 + sr @")
    }
    print(rows["paired FD differences"], file=sys.stderr)
    show = 10
    names = [k for k in tensors if k != "base14"]
    save_image_grid(
        torch.cat([tensors[k][:show] for k in names]), IMG / "editing-cascade.png", nrow=show, scale=3
    )
    _write(
        Path(args.out),
        "cascade",
        {"n": n, "steps": args.steps, "sr_steps": args.sr_steps, "rows": rows, "panel_rows": names},
        tensors,
    )


# ------------------------------------------------------------------------------------------------


def part_inversion(args) -> None:
    model, _, ckpt = _load(args.checkpoint)
    x, labels = _test_set(args.n)
    rows = []
    panels = [x[:8]]
    for cond_name, cond in (("true class", labels), ("unconditional", None)):
        for steps in args.inv_steps:
            for k in (0, 2) if cond is not None else (0,):
                if k and steps > 50:
                    continue
                ts = hw.make_grid(model.process, steps, "karras")
                t0 = time.perf_counter()
                with torch.no_grad():
                    _, rec = invert_and_generate(model, x, ts, cond=cond, fixed_point_iters=k)
                err = rec.x - x
                rows.append(
                    {
                        "cond": cond_name,
                        "steps": steps,
                        "fixed_point_iters": k,
                        "nfe": rec.nfe,
                        "rmse": float(err.pow(2).mean().sqrt()),
                        "max_abs": float(err.abs().max()),
                        "psnr": float(psnr(rec.x, x).mean()),
                        "seconds": time.perf_counter() - t0,
                    }
                )
                print(rows[-1], file=sys.stderr)
                if cond is not None and k == 0 and steps in (10, 50, 200):
                    panels.append(rec.x[:8])
    # an edit: invert under the true class, generate under class (label + 1) % 10
    ts = hw.make_grid(model.process, 50, "karras")
    with torch.no_grad():
        _, edit = invert_and_generate(model, x[:8], ts, cond=labels[:8], new_cond=(labels[:8] + 1) % 10)
    panels.append(edit.x)
    save_image_grid(torch.cat(panels), IMG / "editing-inversion.png", nrow=8, scale=3)
    _write(Path(args.out), "inversion", {"checkpoint": str(ckpt), "n": args.n, "rows": rows})


def part_sdedit(args) -> None:
    model, _, ckpt = _load(args.checkpoint)
    x, labels = _test_set(1)
    rows = [torch.cat([x, torch.full((9, 1, 28, 28), -1.0)])]
    for strength in (0.3, 0.5, 0.7, 0.9):
        xs = x.repeat(10, 1, 1, 1)
        with torch.no_grad():
            res = sdedit(
                model,
                xs,
                strength,
                steps=12,
                cond=torch.arange(10),
                guidance=args.guidance,
                generator=_gens(0, 10),
            )
        rows.append(res.x)
    save_image_grid(torch.cat(rows), IMG / "editing-sdedit.png", nrow=10, scale=3)
    print(f"wrote {IMG / 'editing-sdedit.png'} (input, then strengths 0.3, 0.5, 0.7, 0.9; column = class)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "part", choices=["gaussian", "inpaint", "superres", "cascade", "inversion", "sdedit", "rescore"]
    )
    p.add_argument("--target", default="inpaint-half", help="rescore: the part whose images to score")
    p.add_argument("--out", default="runs/editing/bench", help="where the JSON and tensors go")
    p.add_argument("--checkpoint", default="runs/mnist", help="the 28x28 MNIST model")
    p.add_argument("--base", default="runs/editing/base14", help="the 14x14 base model")
    p.add_argument("--sr", default="runs/editing/sr", help="SR model with augmentation")
    p.add_argument("--sr-noaug", default="runs/editing/sr-noaug", help="SR model without augmentation")
    p.add_argument("--levels", type=float, nargs="+", default=[0.0, 0.001, 0.002, 0.004], help="aug levels")
    p.add_argument("--n", type=int, default=None, help="images (parts have their own defaults)")
    p.add_argument("--steps", type=int, default=None, help="steps (inpaint: 50, others: 12)")
    p.add_argument("--sr-steps", type=int, default=12, help="SR steps in the cascade")
    p.add_argument(
        "--single-samples",
        default=None,
        help="cascade: a `hwaksan evaluate` sample folder holding the single-stage samples (checked)",
    )
    p.add_argument("--inv-steps", type=int, nargs="+", default=[5, 10, 20, 50, 100, 200])
    p.add_argument("--masks", nargs="+", default=["half", "random"])
    p.add_argument("--equal-nfe", action="store_true", help="inpaint: also replacement at RePaint's NFE")
    p.add_argument("--guidance", type=float, default=2.0, help="sdedit: CFG weight")
    p.add_argument(
        "--resume", action="store_true", help="inpaint: keep the methods an interrupted run finished"
    )
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    defaults = {"inpaint": (300, 50), "superres": (500, 12), "cascade": (500, 12), "inversion": (64, None)}
    n, steps = defaults.get(args.part, (None, None))
    args.n = args.n or n
    args.steps = args.steps or steps
    globals()[f"part_{args.part}"](args)


if __name__ == "__main__":
    main()
