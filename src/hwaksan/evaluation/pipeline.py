"""Evaluate a trained model end to end: the engine behind ``hwaksan evaluate``.

:func:`evaluate_model` takes a :class:`~hwaksan.io.artifact.TrainedModel` (pixel, latent or 2-D),
draws ``n x seeds`` samples into resumable shards (:mod:`hwaksan.evaluation.generate`), decoded
to the model's output space (a latent model's samples are pixels before any metric sees them),
computes the asked metrics against cached real-data statistics, and returns the report that
:mod:`hwaksan.evaluation.report` writes as ``report.json`` and ``report.html``.
:func:`evaluate_checkpoint` is :func:`~hwaksan.io.artifact.load_trained` followed by it.

Seeds: run ``s`` of ``seeds`` uses generated images ``s n .. (s + 1) n - 1`` (image ``j`` drawn with
seed ``seed + j``) and its own random subset of real images, so the spread over runs includes
both sources of sampling noise. Every number carries its sample counts.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..data.images import dataset_info
from ..io.artifact import TrainedModel, load_trained
from ..io.media import save_preview
from .classifier import class_entropy, classifier_logits, dataset_classifier
from .features import cached_image_features, load_split, real_statistics, subset_indices
from .frechet import SmallSampleWarning, frechet_distance, min_samples_fd
from .generate import SampleSpec, generate_samples
from .likelihood import image_nll
from .lowdim_eval import LOWDIM_METRICS, lowdim_metrics, lowdim_samples, spread, toy_dataset_of
from .manifold import MIN_SAMPLES_PR, knn_radii, manifold_coverage
from .neighbours import nearest_neighbours, neighbour_summary, save_neighbour_grid
from .sequence_eval import SEQUENCE_METRICS, sequence_metrics
from .vlb import vlb_bits_per_dim

__all__ = [
    "METRICS",
    "EvalConfig",
    "MetricUnavailable",
    "check_metrics",
    "evaluate_checkpoint",
    "evaluate_model",
]

IMAGE_METRICS = ("fd", "precision", "recall", "accuracy", "nn", "nll", "vlb")
"""Image metrics: Frechet distance, precision, recall (in each feature space), class accuracy and
entropy, nearest-training-neighbour distances, PF-ODE NLL and the DDPM bound L_vlb."""
METRICS = IMAGE_METRICS + LOWDIM_METRICS + SEQUENCE_METRICS
"""Every name ``--metrics`` accepts: the image metrics, the 2-D models' (sliced Wasserstein,
MMD^2, mean log-likelihood under the true density) and one group per sequence modality."""
KIND_METRICS = {"image": IMAGE_METRICS, "2d": LOWDIM_METRICS, "video": ("video",), "motion": ("motion",)}
"""The metrics that apply to each kind of model."""
DEFAULT_METRICS = {**KIND_METRICS, "image": ("fd", "precision", "recall", "accuracy", "nn")}

_FEATURE_METRICS = ("fd", "precision", "recall")
_LIKELIHOODS = ("nll", "vlb")


class MetricUnavailable(RuntimeError):
    """A requested metric cannot be computed for this model or installation."""


@dataclass
class EvalConfig:
    """Settings of one evaluation (the CLI's options; see ``hwaksan evaluate --help``)."""

    metrics: tuple[str, ...] | None = None  # None: DEFAULT_METRICS of the model's kind
    n: int = 2000
    spec: SampleSpec = field(default_factory=SampleSpec)
    spaces: tuple[str, ...] = ("effnet", "classifier")
    seeds: int = 1
    k: int = 3
    dataset: str | None = None
    reference_split: str | None = None
    train_split: str = "train"
    likelihood_n: int = 64
    sweep_samplers: tuple[str, ...] = ()
    sweep_steps: tuple[int, ...] = (4, 8, 16, 32)
    sweep_n: int | None = None
    ema: int = 0
    use_ema: bool = True
    shard_size: int = 250
    batch_size: int = 250
    device: str = "cpu"
    progress: bool = True
    cache_dir: str | None = None


def _likelihood_function(metric: str):
    """The bits/dim estimator of ``metric``: :func:`~hwaksan.evaluation.likelihood.image_nll`
    (PF-ODE, Song et al. 2021) or :func:`~hwaksan.evaluation.vlb.vlb_bits_per_dim` (the bound
    L_vlb of Ho et al. 2020, Nichol & Dhariwal 2021)."""
    return {"nll": image_nll, "vlb": vlb_bits_per_dim}[metric]


def check_metrics(metrics: Sequence[str]) -> None:
    """Refuse unknown metrics before any work starts.

    Raises:
        MetricUnavailable: a name not in :data:`METRICS`.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise MetricUnavailable(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")


def _model_kind(model: TrainedModel) -> str:
    """``"2d"`` for a model of points, ``"image"`` for one of images (pixel or latent), ``"video"``
    or ``"motion"`` for a clip or motion model."""
    if model.is_lowdim:
        return "2d"
    if model.is_image:
        return "image"
    if model.modality in SEQUENCE_METRICS:
        return model.modality
    raise ValueError(
        f"evaluate measures image, 2-D, clip and motion models; this is a {model.describe()} model "
        "(audio: bench/audio_quality.py)"
    )


def _check_kind(model: TrainedModel, kind: str, metrics: Sequence[str]) -> None:
    wrong = [m for m in metrics if m not in KIND_METRICS[kind]]
    if wrong:
        name = {"2d": "2-D"}.get(kind, kind)
        allowed = ", ".join(KIND_METRICS[kind])
        raise MetricUnavailable(
            f"{', '.join(wrong)} cannot be measured on a {name} model; choose from {allowed}"
        )
    latent = [m for m in metrics if m in _LIKELIHOODS and model.is_latent]
    if latent:
        raise MetricUnavailable(
            f"{', '.join(latent)} measure the density of pixels, and a latent-diffusion model's is over "
            f"latents: drop {', '.join(latent)} from --metrics"
        )


def _dataset_of(model: TrainedModel, override: str | None) -> str:
    name = override or model.dataset
    if not name:
        raise ValueError("the model does not name its data set: pass --dataset NAME")
    return str(name)


def _identity(model: TrainedModel) -> dict[str, Any]:
    """The checkpoint's identity as shards and reports record it."""
    return {"path": None if model.path is None else str(model.path), "step": model.step, "ema": model.ema}


def _reference_split(dataset: str, split: str | None) -> str:
    splits = dataset_info(dataset).splits or {}
    if split:
        if splits and split not in splits:
            raise ValueError(f"{dataset} has no split {split!r}; choose one of {', '.join(splits)}")
        return split
    for s in ("test", "val"):
        if s in splits:
            return s
    raise ValueError(f"{dataset} has no held-out split: pass --reference-split")


class _Log:
    def __init__(self, progress: bool) -> None:
        self.progress = progress

    def __call__(self, msg: str) -> None:
        if self.progress:
            print(f"hwaksan evaluate: {msg}", file=sys.stderr, flush=True)


def _feature_metrics(
    images: torch.Tensor,
    labels: torch.Tensor | None,
    dataset: str,
    ref_split: str,
    cfg: EvalConfig,
    run: int,
    metrics: Sequence[str],
    warn_list: list[str],
    feature_dir: Path | None = None,
) -> dict[str, Any]:
    """FD / precision / recall in each space and class accuracy / entropy for one seed run; the
    features of the generated images are kept in ``feature_dir`` (their sample folder)."""
    out: dict[str, Any] = {}
    size = tuple(images.shape[-2:])
    n_ref_total = (dataset_info(dataset).splits or {}).get(ref_split)
    n_real = min(len(images), n_ref_total) if n_ref_total else len(images)
    ckw = {"cache_dir": cfg.cache_dir}
    for space in cfg.spaces if any(m in metrics for m in _FEATURE_METRICS) else ():
        real = real_statistics(dataset, ref_split, space, n_real, seed=run, image_size=size,
                               progress=cfg.progress, **ckw)  # fmt: skip
        fake = cached_image_features(images, space, dataset, feature_dir, progress=cfg.progress, **ckw)
        name = real.name
        row: dict[str, Any] = {"n_fake": len(fake), "n_real": real.n, "dim": int(fake.shape[1])}
        if "fd" in metrics:
            row["fd"] = frechet_distance(fake, real.feats, warn=False)
            need = min_samples_fd(fake.shape[1])
            if min(len(fake), real.n) < need:
                warn_list.append(
                    f"{name}: {min(len(fake), real.n)} samples in {fake.shape[1]} dimensions is below {need} "
                    "(2 x dim): the covariance is poorly estimated and the distance is biased upwards"
                )
        if "precision" in metrics or "recall" in metrics:
            if "precision" in metrics:
                row["precision"] = float(
                    manifold_coverage(fake, real.feats, knn_radii(real.feats, cfg.k)).double().mean()
                )
            if "recall" in metrics:
                row["recall"] = float(
                    manifold_coverage(real.feats, fake, knn_radii(fake, cfg.k)).double().mean()
                )
            if min(len(fake), real.n) < MIN_SAMPLES_PR:
                warn_list.append(
                    f"precision/recall in {name} space from {min(len(fake), real.n)} samples "
                    f"(< {MIN_SAMPLES_PR}): "
                    "the k-NN balls are wide and both numbers read optimistic"
                )
        out[name] = row
    if "accuracy" in metrics:
        clf = dataset_classifier(dataset, size, progress=cfg.progress, **ckw)
        ent = class_entropy(images, dataset, **ckw)
        acc: dict[str, Any] = {
            "n": len(images),
            "entropy_conditional": ent.conditional,
            "entropy_marginal": ent.marginal,
            "entropy_max": ent.max,
            "classifier_accuracy": clf.accuracy,
            "classifier_split": clf.accuracy_split,
        }
        if labels is not None:
            pred = classifier_logits(images, dataset, **ckw).argmax(-1)
            acc["accuracy"] = float((pred == labels).double().mean())
        out["accuracy"] = acc
    return out


def _collect(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge per-run metric dicts into mean / std / per-seed entries."""
    merged: dict[str, Any] = {}
    for key, first in runs[0].items():
        entry: dict[str, Any] = {}
        for field_name, value in first.items():
            if isinstance(value, float) and field_name not in ("classifier_accuracy", "entropy_max"):
                entry[field_name] = spread([r[key][field_name] for r in runs])
            else:
                entry[field_name] = value
        merged[key] = entry
    return merged


def _likelihood(
    metric: str, model: TrainedModel, dataset: str, ref_split: str, size, cfg: EvalConfig
) -> dict[str, Any]:
    """Bits/dim of ``cfg.likelihood_n`` held-out images under a pixel-space model."""
    fn = _likelihood_function(metric)
    images = load_split(dataset, ref_split, size)
    idx = subset_indices(len(images), min(cfg.likelihood_n, len(images)), seed=12345)
    start = time.perf_counter()
    gens = [torch.Generator(device=cfg.device).manual_seed(cfg.spec.seed + i) for i in range(len(idx))]
    x = model.encode(images[idx].to(cfg.device))  # a reshape for pixel models
    # cond=None: the unconditional density p(x) (a class-conditional model's null class)
    res = fn(model.denoiser, x, generator=gens, progress=cfg.progress)
    return {
        "bits_per_dim": float(res.bits_per_dim),
        "std_error": float(res.std_error),
        "n": int(res.n),
        "split": ref_split,
        "condition": None,
        "seconds": time.perf_counter() - start,
    }


def evaluate_checkpoint(
    checkpoint: str | Path, out: str | Path, cfg: EvalConfig, resume: bool = False
) -> dict[str, Any]:
    """Evaluate a checkpoint: :func:`~hwaksan.io.artifact.load_trained` (EMA ``cfg.ema``, or the
    raw weights without ``cfg.use_ema``), then :func:`evaluate_model`.

    Raises:
        MetricUnavailable: an unknown metric, or one that does not apply to the model.
        CheckpointError: no usable checkpoint.
        SamplesExistError: ``out`` holds samples and ``resume`` is off (or they differ).
        ValueError: a model evaluate cannot measure, or a data set it cannot find.
    """
    check_metrics(cfg.metrics or ())
    model = load_trained(checkpoint, ema=cfg.ema if cfg.use_ema else None)
    return evaluate_model(model, out, cfg, resume=resume)


def evaluate_model(
    model: TrainedModel, out: str | Path, cfg: EvalConfig, resume: bool = False
) -> dict[str, Any]:
    """Evaluate a trained model (module docstring); writes samples under ``out/samples`` and
    returns the report (a JSON-able dict; :func:`hwaksan.evaluation.report.write_report` writes it).

    Args:
        model: a pixel, latent or 2-D model; it is moved to ``cfg.device``.
        out: the evaluation folder (samples, pictures).
        cfg: what to measure and how to sample.
        resume: reuse the sample shards already in ``out``.

    Raises:
        MetricUnavailable: an unknown metric, or one that does not apply to the model.
        SamplesExistError: ``out`` holds samples and ``resume`` is off (or they differ).
        ValueError: a model evaluate cannot measure, or a data set it cannot find.
    """
    check_metrics(cfg.metrics or ())
    log = _Log(cfg.progress)
    out = Path(out)
    t0 = time.perf_counter()
    kind = _model_kind(model)
    metrics = list(cfg.metrics or DEFAULT_METRICS[kind])
    _check_kind(model, kind, metrics)
    if kind == "2d":
        return _evaluate_lowdim(model, cfg, metrics, t0)
    if kind in SEQUENCE_METRICS:
        return _evaluate_sequence(model, out, cfg, metrics, resume, t0)
    model.to(cfg.device)
    dataset = _dataset_of(model, cfg.dataset)
    ref_split = _reference_split(dataset, cfg.reference_split)
    k = model.num_classes
    ident = _identity(model)
    log(f"{model.path} (step {model.step}): {model.describe()}")
    log(f"data set {dataset}, reference split {ref_split}")
    warn_list: list[str] = []
    if "accuracy" in metrics and (not k or cfg.spec.uncond):
        warn_list.append("accuracy: the samples are unconditional, so only the class entropies are reported")

    def draw(spec: SampleSpec, n: int):
        return _draw(model, spec, n, out, cfg, ident, resume)

    timings: dict[str, float] = {}
    start = time.perf_counter()
    gen = draw(cfg.spec, cfg.n * cfg.seeds)
    timings["sampling"] = time.perf_counter() - start
    if gen.reused:
        log(f"reused {gen.reused} images from earlier shards in {gen.folder}")
    images = gen.images
    if not torch.isfinite(images).all():
        raise MetricUnavailable(f"the sampler produced non-finite images (see {gen.folder}): check the model")
    labels = gen.labels
    start = time.perf_counter()
    runs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)  # stated in the report instead
        for s in range(cfg.seeds):
            sl = slice(s * cfg.n, (s + 1) * cfg.n)
            runs.append(
                _feature_metrics(
                    images[sl],
                    None if labels is None else labels[sl],
                    dataset,
                    ref_split,
                    cfg,
                    s,
                    metrics,
                    warn_list if s == 0 else [],
                    gen.folder,
                )  # fmt: skip
            )
    timings["feature_metrics"] = time.perf_counter() - start
    result: dict[str, Any] = _collect(runs) if runs and runs[0] else {}
    size = tuple(images.shape[-2:])
    files: dict[str, str] = {}
    if "nn" in metrics:
        start = time.perf_counter()
        log(f"nearest training neighbours of {cfg.n} images among the {cfg.train_split} split")
        train = load_split(dataset, cfg.train_split, size)
        fake0 = images[: cfg.n]
        d_fake, i_fake = nearest_neighbours(fake0, train)
        held = load_split(dataset, ref_split, size)
        held = held[subset_indices(len(held), min(cfg.n, len(held)), seed=0)]
        d_real, _ = nearest_neighbours(held, train)
        summary = neighbour_summary(d_fake[:, 0], d_real[:, 0])
        summary.update(train_split=cfg.train_split, train_n=len(train), heldout_split=ref_split)
        result["nn"] = summary
        out.mkdir(parents=True, exist_ok=True)
        save_neighbour_grid(fake0, train, d_fake, i_fake, out / "nearest_neighbours.png")
        files["nearest_neighbours"] = "nearest_neighbours.png"
        timings["nn"] = time.perf_counter() - start
    for metric in _LIKELIHOODS:
        if metric in metrics:
            log(f"{metric} on {cfg.likelihood_n} {ref_split} images")
            start = time.perf_counter()
            result[metric] = _likelihood(metric, model, dataset, ref_split, size, cfg)
            timings[metric] = time.perf_counter() - start
    sweep = []
    if cfg.sweep_samplers:
        sweep = _sweep(cfg, draw, gen, dataset, ref_split, metrics)
    timings["total"] = time.perf_counter() - t0
    checkpoint = {**ident, "dataset": dataset, "image_shape": list(model.output_shape), "num_classes": k}
    if model.is_latent:
        checkpoint["latent_shape"] = list(model.data_shape)
    return {
        "kind": "hwaksan-evaluation",
        "model_kind": "image",
        "checkpoint": checkpoint,
        "sampler": {**cfg.spec.to_json(), "nfe": gen.nfe},
        "n": cfg.n,
        "seeds": cfg.seeds,
        "reference": {"dataset": dataset, "split": ref_split, "train_split": cfg.train_split},
        "metrics_requested": metrics,
        "metrics": result,
        "sweep": sweep,
        "warnings": warn_list,
        "samples": {"folder": str(gen.folder), "n": len(images), "reused": gen.reused},
        "files": files,
        "seconds": timings,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "_images": images[: min(100, cfg.n)],  # for the report's grid; dropped from the JSON
    }


def _draw(
    model: TrainedModel, spec: SampleSpec, n: int, out: Path, cfg: EvalConfig, ident: dict, resume: bool
):
    """``n`` samples of ``spec`` into the shards of ``out/samples/<spec>``."""
    return generate_samples(
        model, spec, n, out / "samples" / spec.folder_name(), checkpoint=ident,
        shard_size=cfg.shard_size, batch_size=cfg.batch_size, resume=resume, device=cfg.device,
        progress=cfg.progress,
    )  # fmt: skip


def _evaluate_sequence(
    model: TrainedModel, out: Path, cfg: EvalConfig, metrics: list[str], resume: bool, t0: float
) -> dict[str, Any]:
    """The clip / motion branch of :func:`evaluate_model` (:mod:`hwaksan.evaluation.sequence_eval`):
    the same shards and report layout as images, the modality's measures instead of features."""
    if cfg.sweep_samplers:
        raise MetricUnavailable("the NFE sweep measures image and 2-D models: drop --nfe-sweep")
    log = _Log(cfg.progress)
    model.to(cfg.device)
    ident = _identity(model)
    log(f"{model.path} (step {model.step}): {model.describe()}")
    start = time.perf_counter()
    gen = _draw(model, cfg.spec, cfg.n * cfg.seeds, out, cfg, ident, resume)
    timings = {"sampling": time.perf_counter() - start}
    if not torch.isfinite(gen.images).all():
        raise MetricUnavailable(f"the sampler produced non-finite values (see {gen.folder}): check the model")
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:  # stated in the report instead
        warnings.simplefilter("always", SmallSampleWarning)
        result = {
            m: sequence_metrics(
                model,
                gen.images,
                gen.labels,
                m,
                cfg.n,
                cfg.seeds,
                cache_dir=cfg.cache_dir,
                progress=cfg.progress,
            )
            for m in metrics
        }
    timings["metrics"] = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    k = model.num_classes
    save_preview(gen.images[: min(20, cfg.n)], out / "samples.png", model.modality, model.modality_params,
                 min(k, 10) if k and gen.labels is not None else None)  # fmt: skip
    warn_list = sorted({str(w.message) for w in caught if issubclass(w.category, SmallSampleWarning)})
    if gen.labels is None:
        warn_list.append("the samples are unconditional: no class accuracy")
    timings["total"] = time.perf_counter() - t0
    return {
        "kind": "hwaksan-evaluation",
        "model_kind": model.modality,
        "checkpoint": {
            **ident,
            "dataset": model.dataset,
            "image_shape": None,
            "data_shape": list(model.output_shape),
            "num_classes": k,
        },
        "sampler": {**cfg.spec.to_json(), "nfe": gen.nfe},
        "n": cfg.n,
        "seeds": cfg.seeds,
        "reference": {
            "dataset": model.dataset,
            "split": next(iter(result.values()))["reference"],
            "train_split": None,
        },
        "metrics_requested": metrics,
        "metrics": result,
        "sweep": [],
        "warnings": warn_list,
        "samples": {"folder": str(gen.folder), "n": len(gen.images), "reused": gen.reused},
        "files": {"samples": "samples.png"},
        "seconds": timings,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _sweep(cfg: EvalConfig, draw, main, dataset: str, ref_split: str, metrics) -> list:
    """Sample-quality metrics for every (sampler, steps) of the NFE sweep (one seed run each); the
    main setting's samples are reused when the sweep visits it."""
    n = cfg.sweep_n or cfg.n
    rows = []
    quality = [m for m in metrics if m in (*_FEATURE_METRICS, "accuracy")] or ["fd"]
    for sampler in cfg.sweep_samplers:
        for steps in cfg.sweep_steps:
            spec = replace(cfg.spec, sampler=sampler, steps=int(steps), options={})
            gen = draw(spec, n) if spec != cfg.spec or n > len(main.images) else main
            if gen is main:
                gen = replace(
                    main, images=main.images[:n], labels=None if main.labels is None else main.labels[:n]
                )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SmallSampleWarning)
                res = _feature_metrics(
                    gen.images, gen.labels, dataset, ref_split, cfg, 0, quality, [], gen.folder
                )
            row: dict[str, Any] = {"sampler": sampler, "steps": int(steps), "nfe": gen.nfe, "n": n}
            for key, entry in res.items():
                for field_name in ("fd", "precision", "recall", "accuracy"):
                    if field_name in entry:
                        row[f"{field_name}:{key}" if key != "accuracy" else "accuracy"] = entry[field_name]
            rows.append(row)
    return rows


def _evaluate_lowdim(model: TrainedModel, cfg: EvalConfig, metrics: list[str], t0: float) -> dict[str, Any]:
    """The 2-D branch of :func:`evaluate_model` (:mod:`hwaksan.evaluation.lowdim_eval`): no
    shards (2-D sampling takes seconds), the same report layout."""
    dataset = toy_dataset_of(model, cfg.dataset)
    spec = cfg.spec
    grid = spec.grid if isinstance(spec.grid, str) else torch.tensor(spec.grid, dtype=torch.float64)
    total = cfg.n * cfg.seeds
    start = time.perf_counter()
    x, nfe = lowdim_samples(model, total, sampler=spec.sampler, steps=spec.steps, grid=grid,
                            seed=spec.seed, options=spec.options)  # fmt: skip
    timings = {"sampling": time.perf_counter() - start}
    result = lowdim_metrics(x, dataset, metrics, cfg.n, cfg.seeds)
    sweep = []
    for sampler in cfg.sweep_samplers:
        for steps in cfg.sweep_steps:
            n = cfg.sweep_n or cfg.n
            xs, nfe_s = lowdim_samples(model, n, sampler=sampler, steps=int(steps), grid=grid,
                                       seed=spec.seed, options={})  # fmt: skip
            res = lowdim_metrics(xs, dataset, [m for m in metrics if m != "loglik"] or ["sw"], n, 1, False)
            row: dict[str, Any] = {"sampler": sampler, "steps": int(steps), "nfe": nfe_s, "n": n}
            row.update({m: e["metric"]["value"] for m, e in res.items()})
            sweep.append(row)
    timings["total"] = time.perf_counter() - t0
    warn_list = []
    if cfg.n < 1000:
        warn_list.append(
            f"{cfg.n} points per run: below 1000 the sliced Wasserstein and MMD estimates are noisy"
        )
    return {
        "kind": "hwaksan-evaluation",
        "model_kind": "2d",
        "checkpoint": {
            "path": None if model.path is None else str(model.path),
            "step": model.step,
            "dataset": dataset,
            "image_shape": None,
            "num_classes": 0,
        },  # fmt: skip
        "sampler": {**spec.to_json(), "nfe": nfe},
        "n": cfg.n,
        "seeds": cfg.seeds,
        "reference": {"dataset": dataset, "split": "fresh samples", "train_split": None},
        "metrics_requested": metrics,
        "metrics": result,
        "sweep": sweep,
        "warnings": warn_list,
        "samples": {"folder": None, "n": total, "reused": 0},
        "files": {},
        "seconds": timings,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "_points": x[: cfg.n],
    }
