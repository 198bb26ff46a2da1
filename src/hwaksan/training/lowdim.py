"""Training an MLP denoiser on a 2-D toy set (``hwaksan train --data NAME``, ``hwaksan demo``).

:func:`train_lowdim` builds the MLP and the :class:`~hwaksan.parameterizations.ModelDenoiser`,
trains it with :func:`hwaksan.training.simple.fit` (optionally with a minibatch coupling, OT-CFM of
Tong et al. 2024, or from another 2-D set as the source of a flow), writes ``OUT/model`` with
:func:`save_lowdim` so that :func:`hwaksan.io.artifact.load_trained` reads it back, and draws the
loss curve ``OUT/loss.png``.

A run is a pure function of its :class:`LowdimConfig`: the initialisation is seeded by
``mix_seed(seed, INIT_STREAM)`` and every step's draws by ``fit``'s per-step generators. While it
trains, the run folder is locked (:class:`~hwaksan.io.runlock.RunLock`) and the full training
state (weights, EMA, AdamW, LR schedule, losses) is written atomically to
``OUT/checkpoints/step_NNNNNNN`` every ``checkpoint_every`` steps, at the end and on Ctrl-C, in
the format of :mod:`hwaksan.io.training_state` (so ``load_trained`` reads those too); ``resume=True``
continues from the newest one bit-identically.

Example::

    result = train_lowdim("runs/moons", data="moons", process="flow", prediction="velocity", steps=3000)
    samples = result.model.sample(2000, sampler="heun", steps=10, grid="uniform").x   # (2000, 2)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from ..data.toy import TOY_DATASETS, get_toy_dataset
from ..io.artifact import TrainedModel, load_trained, model_metadata
from ..io.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    prune_checkpoints,
    save_tensors,
)
from ..io.outputs import OutputError, check_output, record_output
from ..io.runlock import RunLock
from ..io.training_state import TrainingState, load_training_state, save_training_state
from ..losses import WEIGHTINGS
from ..models.mlp import MLP
from ..parameterizations import PREDICTIONS, ModelDenoiser
from ..plotting import plot_loss
from ..processes import COUPLINGS, PROCESSES, make_process
from ..tasks.reflow import Source
from ..utils import mix_seed
from .config import parse_override
from .simple import fit

__all__ = [
    "LowdimConfig",
    "LowdimResult",
    "TrainingInterrupted",
    "SET_KEYS",
    "INIT_STREAM",
    "train_lowdim",
    "save_lowdim",
    "toy_source",
    "check_source",
    "checkpoint_path",
]

#: random stream of the network initialisation (``mix_seed(seed, INIT_STREAM)``)
INIT_STREAM = 10

#: ``--set`` keys of 2-D training -> :class:`LowdimConfig` fields (the same names as the image
#: config's where there is one)
SET_KEYS: dict[str, str] = {
    "data.name": "data",
    "data.source": "source",
    "diffusion.process": "process",
    "diffusion.prediction": "prediction",
    "diffusion.weighting": "weighting",
    "diffusion.coupling": "coupling",
    "model.width": "width",
    "model.depth": "depth",
    "optim.lr": "lr",
    "optim.warmup": "warmup",
    "optim.weight_decay": "weight_decay",
    "ema.decay": "ema_decay",
    "train.steps": "steps",
    "train.batch_size": "batch_size",
    "train.seed": "seed",
    "train.checkpoint_every": "checkpoint_every",
    "train.keep_last": "keep_last",
}

#: keys a resumed run may change (they do not change the trained weights)
NON_BINDING_KEYS = frozenset({"train.checkpoint_every", "train.keep_last"})

_MODEL_FILES = ("model.safetensors", "model.json", "loss.png")


def _choice(key: str, value: Any, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{key} = {value!r} is not one of {', '.join(allowed)}")


def _at_least(key: str, value: float, lo: float) -> None:
    if value < lo:
        raise ValueError(f"{key} = {value!r} must be >= {lo}")


@dataclass(frozen=True)
class LowdimConfig:
    """Everything that defines a 2-D training run (the keys of :data:`SET_KEYS`).

    Raises:
        ValueError: a value out of range or not a known name (one line naming the key).
    """

    data: str = "8gaussians"
    source: str = "gaussian"
    process: str = "ddpm-linear"
    prediction: str = "v"
    weighting: str = "simple"
    coupling: str = "independent"
    width: int = 256
    depth: int = 3
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.0
    ema_decay: float = 0.995
    steps: int = 3000
    batch_size: int = 512
    seed: int = 0
    checkpoint_every: int = 500
    keep_last: int = 2

    def __post_init__(self) -> None:
        key = {field: dotted for dotted, field in SET_KEYS.items()}
        _choice(key["data"], self.data, TOY_DATASETS)
        _choice(key["source"], self.source, ("gaussian", *TOY_DATASETS))
        _choice(key["process"], self.process, PROCESSES)
        _choice(key["prediction"], self.prediction, PREDICTIONS)
        _choice(key["weighting"], self.weighting, WEIGHTINGS)
        _choice(key["coupling"], self.coupling, COUPLINGS)
        for name in ("width", "steps", "batch_size", "keep_last"):
            _at_least(key[name], getattr(self, name), 1)
        for name in ("depth", "warmup", "checkpoint_every", "seed", "weight_decay"):
            _at_least(key[name], getattr(self, name), 0)
        if not self.lr > 0:
            raise ValueError(f"optim.lr = {self.lr!r} must be > 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema.decay = {self.ema_decay!r} must be in [0, 1)")
        if self.seed >= 2**62:
            raise ValueError(f"train.seed = {self.seed} must be < 2**62")
        check_source(self.source, self.process)

    def flat(self) -> dict[str, Any]:
        """``{dotted key: value}`` over :data:`SET_KEYS`."""
        return {dotted: getattr(self, field) for dotted, field in SET_KEYS.items()}

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The nested tables ``{"data": {"name": ...}, "train": {"steps": ...}, ...}`` (written
        into every checkpoint as its ``config``)."""
        out: dict[str, dict[str, Any]] = {}
        for dotted, value in self.flat().items():
            table, name = dotted.split(".")
            out.setdefault(table, {})[name] = value
        return out

    def with_overrides(self, overrides: Iterable[str]) -> LowdimConfig:
        """This config with ``--set KEY=VALUE`` overrides applied.

        Raises:
            ValueError: a key that 2-D training does not take (the message lists those it takes),
                or a value of the wrong type.
        """
        changes: dict[str, Any] = {}
        for text in overrides:
            path, value = parse_override(text)
            key = ".".join(path)
            if key not in SET_KEYS:
                raise ValueError(
                    f"--set {key} does not apply to 2-D training, which takes {', '.join(SET_KEYS)} "
                    "(other keys need an image config: --config FILE)"
                )
            field = SET_KEYS[key]
            changes[field] = _coerce(key, value, type(getattr(self, field)))
        return dataclasses.replace(self, **changes)


def _coerce(key: str, value: Any, kind: type) -> Any:
    """``value`` as ``kind`` (int, float or str), refusing what does not convert exactly."""
    if kind is str and isinstance(value, str):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"--set {key} takes {'a' if kind is not int else 'an'} {kind.__name__}, got {value!r}")


@dataclass
class LowdimResult:
    """What :func:`train_lowdim` returns.

    Attributes:
        model: the trained model, read back from its checkpoint (raw weights, eval mode).
        losses: the training loss of every step (of the whole run when it was resumed).
        seconds: wall time of this call's training.
        checkpoint: the checkpoint path (no suffix), ``OUT/model``.
        resumed_from: the step this call started at (0: a fresh run).
    """

    model: TrainedModel
    losses: list[float]
    seconds: float
    checkpoint: Path
    resumed_from: int = 0


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a 2-D run; ``checkpoint`` is the newest complete checkpoint (None if none)."""

    def __init__(self, out_dir: Path, checkpoint: Path | None) -> None:
        super().__init__(str(out_dir))
        self.out_dir = out_dir
        self.checkpoint = checkpoint


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


def checkpoint_path(out_dir: str | Path, step: int) -> Path:
    """``OUT/checkpoints/step_NNNNNNN`` (no suffix), the training checkpoint of ``step``."""
    return Path(out_dir) / "checkpoints" / f"step_{step:07d}"


def _build(cfg: LowdimConfig) -> ModelDenoiser:
    """The MLP denoiser, initialised from ``mix_seed(seed, INIT_STREAM)`` (the global generator
    is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(mix_seed(cfg.seed, INIT_STREAM))
        net = MLP(dim=2, width=cfg.width, depth=cfg.depth)
    return ModelDenoiser(net, make_process(cfg.process), prediction=cfg.prediction, sigma_data=1.0)


def _mismatch(saved: Any, cfg: LowdimConfig) -> list[str]:
    """``key=checkpoint value (now value)`` for every binding key that differs."""
    saved = saved if isinstance(saved, dict) else {}
    out = []
    for key, now in cfg.flat().items():
        table, name = key.split(".")
        before = (saved.get(table) or {}).get(name) if isinstance(saved.get(table), dict) else None
        if key not in NON_BINDING_KEYS and before != now:
            out.append(f"{key}={before!r} (now {now!r})")
    return out


def _remove_run(out: Path) -> None:
    """Delete an earlier run's checkpoints (JSON first) and final model, and stale temporary files."""
    for _, old in list_checkpoints(out):
        for suffix in (".json", ".safetensors"):
            old.with_name(old.name + suffix).unlink(missing_ok=True)
    for name in ("model.json", "model.safetensors"):
        (out / name).unlink(missing_ok=True)


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary files of atomic writes that a killed run left behind (the lock is held: no
    other writer can own them)."""
    for folder in (out, out / "checkpoints"):
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp"):
                if tmp.name.startswith((".step_", ".model.")):
                    tmp.unlink(missing_ok=True)


def _start(out: Path, cfg: LowdimConfig, resume: bool | None, overwrite: bool) -> TrainingState | None:
    """Decide how the run starts (call with the lock held); check every file it will write.

    Returns the state to resume from, or None for a fresh run (an earlier run there removed).

    Raises:
        CheckpointError: ``resume`` without a checkpoint, or with one of other settings.
        OutputError: a fresh run into a folder that holds one, or an output that may not be written.
    """
    latest = latest_checkpoint(out)
    has_model = (out / "model.json").exists() or (out / "model.safetensors").exists()
    state = None
    if latest is not None and resume is not False:
        try:
            state = load_training_state(latest)
        except CheckpointError:
            if resume:
                raise
            state = None  # automatic (hwaksan demo): an unreadable run starts over
        diff = _mismatch(state.config, cfg) if state is not None else []
        if diff and resume:
            raise CheckpointError(
                f"cannot resume from {latest}: it was trained with {', '.join(diff)}; "
                "repeat the run's options, or start over with --overwrite"
            )
        if diff:  # automatic (hwaksan demo): other settings start over
            state = None
    if resume and state is None:
        what = " (the model there has no training state)" if has_model else ""
        raise CheckpointError(f"--resume: no checkpoint in {out / 'checkpoints'} to resume from{what}")
    for name in _MODEL_FILES:  # a resumed run owns the files of the run it continues
        check_output(out / name, overwrite=overwrite or state is not None)
    if state is None and (latest is not None or has_model):
        if resume is False and not overwrite:
            held = latest.name if latest is not None else "model"
            raise OutputError(
                f"{out} already holds a 2-D run ({held}): pass --resume to continue it, --overwrite "
                "to replace it, or choose another --out"
            )
        _remove_run(out)
    return state


def train_lowdim(
    out_dir: str | Path,
    config: LowdimConfig | None = None,
    *,
    resume: bool | None = False,
    overwrite: bool = False,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
    **options: Any,
) -> LowdimResult:
    """Train an MLP denoiser on a 2-D set; writes ``OUT/model``, ``OUT/loss.png`` and
    ``OUT/checkpoints/``.

    Args:
        out_dir: output folder (created; locked while the run trains).
        config: the run (default :class:`LowdimConfig`); ``options`` replace its fields, e.g.
            ``data="moons", steps=500`` (``coupling=None`` / ``source=None``: the defaults).
        resume: continue from the newest checkpoint in ``OUT/checkpoints`` (bit-identical to an
            uninterrupted run; the binding settings must match). None: resume when the folder
            holds a run of the same settings, else start over and replace it (``hwaksan demo``).
        overwrite: start over even though ``OUT`` holds a run, and replace output files that
            hwaksan did not write.
        progress: show a progress bar.
        callback: ``callback(steps_done, loss)`` after every step.

    Raises:
        ValueError: a setting out of range (one line).
        OutputError: ``OUT`` holds a run (without ``resume`` / ``overwrite``), or an output that
            cannot be written.
        RunLockedError: another process trains into ``OUT``.
        CheckpointError: nothing to resume, settings that differ from the checkpoint's, or a
            checkpoint that cannot be written.
        TrainingInterrupted: Ctrl-C (after writing a checkpoint of the last complete step).
        NonFiniteLossError: the loss became NaN or infinite.
    """
    for key in ("coupling", "source"):
        if key in options and options[key] is None:
            del options[key]
    cfg = dataclasses.replace(config or LowdimConfig(), **options)
    out = Path(out_dir)
    check_output(out / "model.json", overwrite=True)  # the folder: creatable, writable, not a file
    newest: list[Path | None] = [None]
    with RunLock(out, "hwaksan train"):
        try:
            state = _start(out, cfg, resume, overwrite)
            _remove_stale_temporaries(out)
            newest[0] = latest_checkpoint(out)
            denoiser = _build(cfg)
            meta = model_metadata(
                denoiser, dataset=cfg.data, data_shape=(2,), ema_decays=(cfg.ema_decay,), source=cfg.source
            )

            def save(st: TrainingState) -> None:
                path = checkpoint_path(out, st.step)
                try:
                    save_training_state(path, dataclasses.replace(st, config=cfg.to_dict()), meta)
                except (OSError, SafetensorError) as err:
                    reason = getattr(err, "strerror", None) or str(err)
                    raise CheckpointError(
                        f"cannot write the checkpoint {path}: {reason}; the newest complete checkpoint "
                        f"({newest[0] or 'none'}) is intact: free space, then continue with --resume"
                    ) from None
                newest[0] = path
                prune_checkpoints(out, cfg.keep_last)

            start = time.perf_counter()
            result = fit(
                denoiser,
                get_toy_dataset(cfg.data).sample,
                steps=cfg.steps,
                batch_size=cfg.batch_size,
                lr=cfg.lr,
                weight_decay=cfg.weight_decay,
                warmup=cfg.warmup,
                ema_decay=cfg.ema_decay,
                weighting=cfg.weighting,
                t_dist="discrete" if cfg.process.startswith("ddpm") else "uniform",
                seed=cfg.seed,
                progress=progress,
                coupling=cfg.coupling,
                sample_source=toy_source(cfg.source),
                resume=state,
                checkpoint_every=cfg.checkpoint_every,
                on_checkpoint=save,
                callback=callback,
            )
            seconds = time.perf_counter() - start
            info = {"train_steps": cfg.steps, "seconds": seconds, "coupling": cfg.coupling}
            save_lowdim(out / "model", denoiser, dataset=cfg.data, source=cfg.source, info=info)
            plot_loss(result.losses, out / "loss.png")
            record_output(*(out / name for name in _MODEL_FILES))
        except KeyboardInterrupt:
            raise TrainingInterrupted(out, newest[0]) from None
    return LowdimResult(
        load_trained(out / "model", ema=None),
        result.losses,
        seconds,
        out / "model",
        resumed_from=state.step if state is not None else 0,
    )
