"""Training rectified flows on simulated pairs: reflow and one-step distillation (Liu, Gong & Liu 2022).

- :func:`simulate_pairs` runs a model's ODE map (:func:`hwaksan.tasks.reflow.push_forward`) from
  fixed source samples into resumable safetensors shards (:class:`hwaksan.training.pairs.PairShards`);
- :func:`train_on_pairs_2d` trains a 2-D flow on those pairs with :func:`hwaksan.training.simple.fit`;
- :func:`train_on_pairs_images` trains an image flow on them with the
  :class:`~hwaksan.training.trainer.Trainer` (a :class:`~hwaksan.training.pairs.PairedImageDataset`).

``t_dist="terminal"`` trains at ``t = t_max`` only: one-step distillation on the same pairs.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from ..io.artifact import TrainedModel, load_trained
from ..io.checkpoint import latest_checkpoint
from ..models.mlp import MLP
from ..parameterizations import ModelDenoiser
from ..processes import LinearInterpolant
from ..tasks.reflow import Source, push_forward, source_sample
from .config import Config, apply_overrides
from .ema import EMA
from .pairs import PairedImageDataset, PairShards, pair_sampler
from .simple import FitResult, fit
from .trainer import Trainer

__all__ = ["simulate_pairs", "train_on_pairs_2d", "train_on_pairs_images", "copy_teacher"]

INITS = ("auto", "teacher", "scratch")


def simulate_pairs(
    model: Any,
    folder: Path,
    n: int,
    *,
    shape: tuple[int, ...],
    source: Source | None = None,
    num_classes: int = 0,
    sampler: str = "heun",
    steps: int = 20,
    grid: str | torch.Tensor | None = None,
    seed: int = 0,
    shard_size: int = 1000,
    batch_size: int = 500,
    spec: dict[str, Any] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    max_shards: int | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, torch.Tensor] | None:
    """Simulate (or finish simulating) ``n`` pairs of ``model``'s ODE map into shards under
    ``folder`` and return them all: ``{"noise": x1, "sample": x0[, "labels"]}``.

    Args:
        model: a data-space denoiser with a ``.process``.
        folder: where the shards go (re-running continues an interrupted simulation).
        n: number of pairs.
        shape: per-sample data shape.
        source: the source distribution (None: the Gaussian prior).
        num_classes: pair ``i`` of a class-conditional model has label ``i % num_classes``.
        sampler, steps, grid, options: the deterministic sampler of the ODE map.
        seed: pair ``i`` starts from the source sample of seed ``seed + i`` (Gaussian source).
        shard_size, batch_size: pairs per shard file and per sampler call.
        spec: more settings recorded in the shards (a resumed simulation must match them).
        device: where to simulate.
        progress: show a progress bar.
        max_shards: stop after this many new shards (then None is returned).

    Returns:
        the pairs, shapes ``(n, *shape)`` (and labels ``(n,)``); None when ``max_shards`` stopped
        the simulation before the end.
    """
    grid_name = grid if isinstance(grid, str) or grid is None else [float(v) for v in grid]
    full_spec = {
        "sampler": sampler,
        "steps": steps,
        "grid": grid_name,
        "seed": seed,
        "shape": list(shape),
        "num_classes": num_classes,
        "options": options or {},
        **(spec or {}),
    }
    if source is not None:
        full_spec["batch_size"] = batch_size  # a custom source draws per batch
    shards = PairShards(folder, n, shard_size, full_spec)

    def make(start: int, count: int) -> dict[str, torch.Tensor]:
        out: dict[str, list[torch.Tensor]] = {"noise": [], "sample": [], "labels": []}
        for b0 in range(start, start + count, batch_size):
            nb = min(batch_size, start + count - b0)
            x1 = source_sample(nb, shape, seed + b0, source, device=device)
            cond = None
            if num_classes:
                cond = torch.arange(b0, b0 + nb, device=device) % num_classes
                out["labels"].append(cond.cpu())
            with torch.no_grad():
                res = push_forward(
                    model, x1, sampler=sampler, steps=steps, grid=grid, cond=cond, **(options or {})
                )
            out["noise"].append(x1.cpu())
            out["sample"].append(res.x.float().cpu())
        return {k: torch.cat(v) for k, v in out.items() if v}

    shards.fill(make, progress=progress, max_shards=max_shards)
    if shards.missing():
        return None
    return shards.load()


def copy_teacher(teacher: ModelDenoiser, init: str) -> bool:
    """Whether a student starts from ``teacher``'s weights: ``teacher`` always (it must be a velocity
    flow), ``scratch`` never, ``auto`` when the teacher is a velocity flow (Liu et al. 2022 start each
    reflow from the previous flow).

    Raises:
        ValueError: an unknown ``init``, or ``teacher`` for a teacher that predicts another quantity.
    """
    if init not in INITS:
        raise ValueError(f"--init must be auto, teacher or scratch, got {init!r}")
    is_flow = getattr(teacher.process, "name", "") == "flow" and teacher.prediction == "velocity"
    if init == "teacher" and not is_flow:
        raise ValueError(
            "--init teacher needs a velocity-predicting flow teacher (a diffusion model's weights predict "
            "another quantity): use --init scratch"
        )
    return init == "teacher" or (init == "auto" and is_flow)


def train_on_pairs_2d(
    teacher: ModelDenoiser,
    pairs: dict[str, torch.Tensor],
    *,
    steps: int,
    batch_size: int = 512,
    lr: float = 2e-3,
    seed: int = 0,
    t_dist: str = "uniform",
    init: str = "auto",
    progress: bool = True,
) -> tuple[ModelDenoiser, FitResult]:
    """Train a 2-D flow (same MLP as ``teacher``, linear interpolant, velocity) on fixed pairs.

    Args:
        teacher: the model the pairs came from (its MLP config, and weights with ``init``).
        pairs: ``{"sample": x0 (N, D), "noise": x1 (N, D)}``.
        steps, batch_size, lr, seed: the optimisation.
        t_dist: training times (``uniform``, ``u_shaped``, ...; ``terminal``: one-step distillation).
        init: see :func:`copy_teacher`.
        progress: show a progress bar.

    Returns:
        ``(student in eval mode, fit result)``.
    """
    net = MLP(**teacher.net.config)
    student = ModelDenoiser(net, LinearInterpolant(), "velocity", teacher.sigma_data)
    if copy_teacher(teacher, init):
        net.load_state_dict(teacher.net.state_dict())
    result = fit(
        student,
        pair_sampler(pairs["sample"].float(), pairs["noise"].float()),
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        t_dist=t_dist,
        seed=seed,
        progress=progress,
    )
    return student.eval(), result


def _student_config(teacher: TrainedModel, steps: int, t_dist: str, sample_steps: int) -> dict[str, Any]:
    """The teacher's training config with the flow objective of a rectified flow."""
    cfg = copy.deepcopy(teacher.config)
    cfg["diffusion"] = {
        "process": "flow",
        "process_args": {},
        "prediction": "velocity",
        "weighting": "simple",
        "t_dist": t_dist,
        "sigma_data": cfg.get("diffusion", {}).get("sigma_data", 0.5),
        "coupling": "independent",
    }
    cfg.setdefault("train", {})["steps"] = steps
    cfg["train"]["max_seconds"] = 0.0
    cfg["sample"] = {"sampler": "euler", "steps": sample_steps, "grid": "uniform", "n": 64, "seed": 0}
    return cfg


def train_on_pairs_images(
    teacher: TrainedModel,
    pairs: dict[str, torch.Tensor],
    out: Path,
    *,
    steps: int,
    t_dist: str,
    init: str = "auto",
    init_from: ModelDenoiser | None = None,
    overrides: list[str] | None = None,
    sample_steps: int = 2,
    progress: bool = True,
) -> TrainedModel:
    """Train an image flow on fixed pairs with the :class:`Trainer` (resumable: a finished run is
    read back, an interrupted one continues).

    Args:
        teacher: the image model the pairs came from (its training config is the student's, with
            the flow objective; a pixel-space model).
        pairs: ``{"sample": x0, "noise": x1[, "labels"]}`` with ``x0, x1 (N, *data_shape)``.
        out: the student's run folder.
        steps: training steps.
        t_dist: training times (``terminal``: one-step distillation).
        init: see :func:`copy_teacher`.
        init_from: the model whose weights ``init`` copies (default: the teacher's; a later reflow
            round starts from the previous round's flow).
        overrides: ``KEY=VALUE`` config overrides (``train.batch_size=64``, ...).
        sample_steps: Euler steps of the run's sample grids.
        progress: show a progress bar.

    Returns:
        the student (first EMA), read from its last checkpoint.

    Raises:
        ValueError: a teacher without a training config, or a latent-diffusion teacher.
    """
    if teacher.config is None:
        raise ValueError(
            f"{teacher.path} records no training config: image reflow needs a run of hwaksan train"
        )
    teacher.requires("image reflow", image=True, pixel=True)
    cfg = _student_config(teacher, steps, t_dist, sample_steps)
    config = Config.from_dict(apply_overrides(cfg, list(overrides or [])))
    data = PairedImageDataset.from_pairs(pairs, teacher.dataset or "pairs", teacher.data_shape)
    final = out / "checkpoints" / f"step_{steps:07d}"
    if not final.with_name(final.name + ".json").exists():
        trainer = Trainer(config, out, progress=progress, data=data)
        resume = latest_checkpoint(out) is not None
        start = init_from if init_from is not None else teacher.denoiser
        if not resume and copy_teacher(start, init):
            trainer.net.load_state_dict(start.net.state_dict())
            trainer.ema = EMA(trainer.net, config.ema.decays)
        trainer.run(resume=resume)
    return load_trained(final)
