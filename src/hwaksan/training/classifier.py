"""Training image classifiers: clean ones for evaluation, noise-aware ones for classifier guidance.

A *noise-aware* classifier ``p_phi(y | x_t, t)`` (Dhariwal & Nichol 2021, sec. 4.1) is trained on
``x_t = alpha(t) x0 + sigma(t) eps`` from a process, with ``t`` drawn from one of the training time
distributions of :mod:`hwaksan.losses`, and sees its input exactly as a denoiser's network does
(:func:`classifier_inputs`: ``c_in x_t`` and ``c_noise``). A *clean* classifier (``process=None``) is
the usual supervised one; it backs the data-set-specific Frechet distance and the accuracy of
class-conditional samples.

Determinism: step ``k`` draws its batch, noise, times and augmentation from generators seeded by
``(seed, k)`` only, so the same seed gives the same weights on the same machine.

Checkpoints are safetensors + JSON, written and read by :mod:`hwaksan.io.classifier`.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.images import ImageDataset
from ..io import classifier as classifier_io
from ..io.classifier import ClassifierCheckpoint, classifier_metadata, load_classifier
from ..losses import T_DISTRIBUTIONS, sample_t
from ..models.classifier import Classifier
from ..parameterizations import input_scale, noise_level
from ..processes import Process
from ..utils import append_dims, mix_seed
from .optim import check_finite, make_optimizer, make_scheduler

__all__ = [
    "ClassifierResult",
    "classifier_inputs",
    "classifier_log_prob",
    "train_classifier",
    "classifier_accuracy",
    "save_classifier",
    "load_classifier",
    "ClassifierCheckpoint",
]

#: Random streams (the second part of ``mix_seed``): initialisation, training steps, evaluation.
_INIT, _STEP, _EVAL = 0, 1, 2


def classifier_inputs(
    process: Process | None, x_t: torch.Tensor, t: torch.Tensor | None, sigma_data: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What a (noise-aware) classifier sees for ``x_t (B, C, H, W)`` at times ``t (B,)``:
    ``(c_in x_t, c_noise)``, the same scaling as :class:`hwaksan.ModelDenoiser`. A clean classifier
    (``process=None``) sees ``(x, None)``."""
    if process is None:
        return x_t, None
    c_in = append_dims(input_scale(process, t, sigma_data), x_t.ndim).to(x_t.dtype)
    return c_in * x_t, noise_level(process, t).to(x_t.dtype)


def classifier_log_prob(
    net: Classifier,
    process: Process | None,
    sigma_data: float = 0.5,
    *,
    model_process: Process | None = None,
):
    """``log_prob(x_t, t, y) -> (B,)`` = ``log p_phi(y | x_t)`` of a trained classifier, the callable
    :class:`hwaksan.guidance.ClassifierGuidance` differentiates.

    Args:
        net: a :class:`Classifier` (noise-aware, or clean: then it sees ``x_t`` as it is).
        process, sigma_data: what it was trained with (:func:`load_classifier` returns both; the
            checkpoint's ``sigma_data``); inputs are scaled by :func:`classifier_inputs`.
        model_process: the process of the guided denoiser when it differs from ``process``: its
            ``x_t`` is mapped to the classifier's process at the same noise level ``sigma~``
            (``x~ = x_t / alpha`` is the same for every Gaussian path), so an EDM-trained
            classifier guides a flow model too.

    Shapes: ``x_t (B, C, H, W)``, ``t (B,)`` float64 (the model's times), ``y (B,)`` long.
    """
    same = model_process is None or process is None or model_process.config() == process.config()

    def log_prob(x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t_c = t
        if not same:
            st = model_process.sigma_tilde(t)
            t_c = process.t_from_sigma_tilde(st)
            scale = process.alpha(t_c) / model_process.alpha(t)
            x_t = append_dims(scale, x_t.ndim).to(x_t.dtype) * x_t
        x_in, c_noise = classifier_inputs(process, x_t, t_c, sigma_data)
        param = next(net.parameters())
        logits = net(x_in.to(param.dtype), None if c_noise is None else c_noise.to(param.dtype))
        logp = torch.log_softmax(logits.float(), dim=-1)
        return logp.gather(1, y.reshape(-1, 1).to(logits.device)).squeeze(1).to(x_t.dtype)

    return log_prob


@dataclass
class ClassifierResult:
    """A trained classifier, its per-step losses and the validation accuracy (None without one)."""

    net: Classifier
    losses: list[float]
    val_accuracy: float | None
    seconds: float
    meta: dict[str, Any] = field(default_factory=dict)


def _shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``max_shift`` pixels (zero-padded with the background -1)."""
    if max_shift <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)  # (B, H)
    cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)  # (B, W)
    idx = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


@torch.enable_grad()  # callers that extract features (under no_grad) may train one on first use
def train_classifier(
    data: ImageDataset,
    *,
    net_args: dict[str, Any] | None = None,
    process: Process | None = None,
    t_dist: str = "uniform",
    sigma_data: float = 0.5,
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 1e-2,
    weight_decay: float = 0.05,
    max_shift: int | None = None,
    seed: int = 0,
    val: ImageDataset | None = None,
    progress: bool = True,
    max_seconds: float = 0.0,
) -> ClassifierResult:
    """Train a :class:`~hwaksan.models.classifier.Classifier` on labelled images.

    Args:
        data: labelled training images in [-1, 1].
        net_args: constructor arguments of the classifier (``in_channels`` and ``num_classes``
            come from the data).
        process: noise the inputs with this process (a noise-aware classifier); None: clean.
        t_dist: training time distribution (:data:`hwaksan.losses.T_DISTRIBUTIONS`) of the noise.
        sigma_data: data std assumed by the input scaling (as for the denoiser).
        steps, batch_size, lr, weight_decay: AdamW with a linear warm-up (5% of the steps) and a
            cosine decay to zero.
        max_shift: random translation augmentation in pixels (0: none; None: ``H // 14``, so 2
            pixels on 28x28 and none on 8x8).
        seed: everything random derives from it.
        val: held-out images for the reported accuracy (clean, or at noise levels drawn from
            ``t_dist`` for a noise-aware classifier, with a fixed seed).
        progress: show a progress bar.
        max_seconds: stop after this much wall time (0: no limit).

    Raises:
        ValueError: unlabelled data, or an unknown ``t_dist``.
        NonFiniteLossError: the loss became NaN (lower ``lr``).
    """
    if data.labels is None:
        raise ValueError(f"{data.name!r} has no labels: a classifier needs labelled data")
    if t_dist not in T_DISTRIBUTIONS:
        raise ValueError(f"unknown t_dist {t_dist!r}; choose one of {', '.join(T_DISTRIBUTIONS)}")
    k = data.num_classes or int(data.labels.max()) + 1
    if max_shift is None:
        max_shift = data.size[0] // 14
    args = {"in_channels": data.channels, "num_classes": k, "noise_aware": process is not None}
    args.update(net_args or {})
    torch.manual_seed(mix_seed(seed, _INIT))
    net = Classifier(**args)
    opt = make_optimizer(net.parameters(), lr=lr, weight_decay=weight_decay, fused=False)
    sched = make_scheduler(opt, steps, max(1, steps // 20))
    losses: list[float] = []
    start = time.perf_counter()
    n = len(data)
    bar = tqdm(range(steps), disable=not progress, desc="classifier", dynamic_ncols=True, file=sys.stderr)
    net.train()
    for step in bar:
        gen = torch.Generator().manual_seed(mix_seed(seed, _STEP, step))
        idx = torch.randint(0, n, (batch_size,), generator=gen)
        x, y = _shift(data.images[idx], max_shift, gen), data.labels[idx]
        t = None
        if process is not None:
            t = sample_t(process, batch_size, t_dist, gen)
            x = process.q_sample(x, t, torch.randn(x.shape, generator=gen))
        x_in, c_noise = classifier_inputs(process, x, t, sigma_data)
        loss = F.cross_entropy(net(x_in, c_noise), y)
        value = float(loss.detach())
        check_finite(value, f"classifier loss became {value} at step {step + 1}: lower lr (now {lr:g})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(value)
        if step % 25 == 0:
            bar.set_postfix(loss=f"{sum(losses[-25:]) / len(losses[-25:]):.4f}", refresh=False)
        if max_seconds and time.perf_counter() - start > max_seconds:
            break
    bar.close()
    net.eval()
    acc = None
    if val is not None and val.labels is not None:
        acc = classifier_accuracy(net, val, process=process, sigma_data=sigma_data, t_dist=t_dist, seed=seed)
    seconds = time.perf_counter() - start
    meta = classifier_metadata(
        net,
        process=process,
        sigma_data=sigma_data,
        t_dist=t_dist,
        dataset=data.name,
        image_shape=data.images.shape[1:],
        class_names=data.class_names,
        train={
            "steps": len(losses),
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "max_shift": max_shift,
            "seed": seed,
        },
        val_accuracy=acc,
        seconds=seconds,
    )
    return ClassifierResult(net, losses, acc, seconds, meta)


@torch.no_grad()
def classifier_accuracy(
    net: Classifier,
    data: ImageDataset,
    *,
    process: Process | None = None,
    sigma_data: float = 0.5,
    t: float | None = None,
    t_dist: str = "uniform",
    seed: int = 0,
    batch_size: int = 512,
) -> float:
    """Top-1 accuracy on labelled ``data``: clean for ``process=None``; else on ``x_t`` at time
    ``t`` (or at random times from ``t_dist`` when ``t`` is None), with noise from ``seed``."""
    if data.labels is None:
        raise ValueError(f"{data.name!r} has no labels")
    gen = torch.Generator().manual_seed(mix_seed(seed, _EVAL))
    correct = 0
    for i in range(0, len(data), batch_size):
        x, y = data.images[i : i + batch_size], data.labels[i : i + batch_size]
        tt = None
        if process is not None:
            if t is None:
                tt = sample_t(process, len(x), t_dist, gen)
            else:
                tt = torch.full((len(x),), float(t), dtype=torch.float64)
            x = process.q_sample(x, tt, torch.randn(x.shape, generator=gen))
        x_in, c_noise = classifier_inputs(process, x, tt, sigma_data)
        correct += int((net(x_in, c_noise).argmax(-1) == y).sum())
    return correct / len(data)


def save_classifier(path: str | os.PathLike, result: ClassifierResult) -> Path:
    """Write ``PATH.safetensors`` + ``PATH.json`` atomically (:func:`hwaksan.io.classifier.save_classifier`);
    returns the ``.safetensors`` path."""
    return classifier_io.save_classifier(path, result.net, result.losses, result.meta)
