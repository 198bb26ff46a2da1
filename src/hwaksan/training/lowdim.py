"""Training an MLP denoiser on a 2-D toy set (``hwaksan train --data NAME``, ``hwaksan demo``).

:func:`train_lowdim` builds the MLP and the :class:`~hwaksan.parameterizations.ModelDenoiser`,
trains it with :func:`hwaksan.training.simple.fit` (optionally with a minibatch coupling, OT-CFM of
Tong et al. 2024, or from another 2-D set as the source of a flow), writes ``OUT/model`` with
:func:`save_lowdim` so that :func:`hwaksan.io.artifact.load_trained` reads it back, and draws the
loss curve ``OUT/loss.png``.

Example::

    result = train_lowdim("runs/moons", data="moons", process="flow", prediction="velocity", steps=3000)
    samples = result.model.sample(2000, sampler="heun", steps=10, grid="uniform").x   # (2000, 2)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.toy import get_toy_dataset
from ..io.artifact import TrainedModel, load_trained, model_metadata
from ..io.checkpoint import save_tensors
from ..models.mlp import MLP
from ..parameterizations import ModelDenoiser
from ..plotting import plot_loss
from ..processes import make_process
from ..tasks.reflow import Source
from .simple import fit

__all__ = ["LowdimResult", "train_lowdim", "save_lowdim", "toy_source", "check_source"]


@dataclass
class LowdimResult:
    """What :func:`train_lowdim` returns.

    Attributes:
        model: the trained model, read back from its checkpoint (raw weights, eval mode).
        losses: the training loss of every step.
        seconds: wall time of the training.
        checkpoint: the checkpoint path (no suffix), ``OUT/model``.
    """

    model: TrainedModel
    losses: list[float]
    seconds: float
    checkpoint: Path


def toy_source(name: str | None) -> Source | None:
    """``source(n, generator)`` of a 2-D set by name; None for ``"gaussian"`` / None (the prior)."""
    if name in (None, "gaussian"):
        return None
    return get_toy_dataset(name).sample


def check_source(source: str | None, process: str) -> None:
    """A non-Gaussian source needs the flow interpolant (its ``x_t`` is not a Gaussian path).

    Raises:
        ValueError: one line naming the fix.
    """
    if source not in (None, "gaussian") and process != "flow":
        raise ValueError(f"--source {source} needs --process flow (got {process})")


def save_lowdim(
    path: str | Path,
    denoiser: ModelDenoiser,
    *,
    dataset: str | None,
    source: str | None = "gaussian",
    info: dict[str, Any] | None = None,
) -> Path:
    """Write a 2-D model's checkpoint ``PATH.safetensors`` + ``PATH.json`` (read by
    :func:`~hwaksan.io.artifact.load_trained`); returns the ``.safetensors`` path."""
    dim = int(denoiser.net.config["dim"])
    tensors = {f"model.{k}": v.detach().cpu() for k, v in denoiser.net.state_dict().items()}
    meta = model_metadata(
        denoiser, dataset=dataset, data_shape=(dim,), source=source or "gaussian", info=info
    )
    return save_tensors(path, tensors, meta)


def train_lowdim(
    out_dir: str | Path,
    *,
    data: str,
    process: str = "ddpm-linear",
    prediction: str = "v",
    weighting: str = "simple",
    steps: int = 3000,
    batch_size: int = 512,
    lr: float = 2e-3,
    width: int = 256,
    depth: int = 3,
    seed: int = 0,
    coupling: str | None = None,
    source: str | None = None,
    progress: bool = True,
) -> LowdimResult:
    """Train an MLP denoiser on the 2-D set ``data``; writes ``OUT/model`` and ``OUT/loss.png``.

    Args:
        out_dir: output folder (created).
        data: a name of :data:`hwaksan.data.toy.TOY_DATASETS`.
        process: a name of :data:`hwaksan.processes.PROCESSES` (``ddpm-*`` train on discrete times).
        prediction: what the network predicts (``eps``, ``x0``, ``v``, ``velocity``, ``edm``).
        weighting: the loss weighting (:mod:`hwaksan.losses`).
        steps, batch_size, lr: the optimisation.
        width, depth: the MLP's hidden width and residual blocks.
        seed: seed of the initialisation and of every batch.
        coupling: minibatch pairing of noise and data (``independent``, ``ot``, ``sinkhorn``).
        source: the distribution at ``t = 1`` (``gaussian``, or another 2-D set's name; needs
            ``process="flow"``).
        progress: show a progress bar.

    Raises:
        ValueError: a non-Gaussian source without the flow process (one line).
    """
    check_source(source, process)
    dataset = get_toy_dataset(data)
    net = MLP(dim=2, width=width, depth=depth)
    denoiser = ModelDenoiser(net, make_process(process), prediction=prediction, sigma_data=1.0)
    start = time.perf_counter()
    result = fit(
        denoiser,
        dataset.sample,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        weighting=weighting,
        t_dist="discrete" if process.startswith("ddpm") else "uniform",
        seed=seed,
        progress=progress,
        coupling=coupling,
        sample_source=toy_source(source),
    )
    seconds = time.perf_counter() - start
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = {"train_steps": steps, "seconds": seconds, "coupling": coupling or "independent"}
    save_lowdim(out / "model", denoiser, dataset=data, source=source, info=info)
    plot_loss(result.losses, out / "loss.png")
    return LowdimResult(load_trained(out / "model", ema=None), result.losses, seconds, out / "model")
