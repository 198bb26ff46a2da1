"""Training checkpoints: a model artifact plus the state that resumes its run.

A training checkpoint is a model checkpoint (the JSON of :func:`hwaksan.io.artifact.model_metadata`,
the weights under ``model.``, the EMAs under ``ema.`` / ``ema1.`` / ...), so
:func:`hwaksan.io.artifact.load_trained` reads it, with the training state beside it:

- tensors: AdamW's per-parameter state (``optim.<param id>.<name>``), the global RNG
  (``rng.torch``, ``rng.cuda``), the per-step losses (``history.loss``) and what the trainer's
  extensions add under prefixes of their own;
- JSON: ``kind = "hwaksan-train"``, the step, the config, the world size, AdamW's
  hyper-parameters and scalar state, the LR scheduler's state.

:func:`save_training_state` and :func:`load_training_state` are the only readers and writers of
these keys; the trainer handles a :class:`TrainingState`.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CheckpointError, load_tensors, save_tensors

__all__ = ["TRAINING_KIND", "TrainingState", "save_training_state", "load_training_state"]

TRAINING_KIND = "hwaksan-train"

_OPTIM, _RNG, _CUDA_RNG, _LOSSES = "optim.", "rng.torch", "rng.cuda", "history.loss"


def _ema_prefix(i: int) -> str:
    return "ema." if i == 0 else f"ema{i}."


@dataclass
class TrainingState:
    """Everything a run needs to continue from a step.

    Attributes:
        step: optimiser steps done.
        config: the training config as a dict.
        model: the network's state dict.
        emas: one state dict per EMA decay, in the order of the decays.
        optimizer: the optimiser's ``state_dict()``.
        scheduler: the LR scheduler's ``state_dict()``.
        losses: the loss of every step so far.
        rng: torch's global CPU generator state.
        cuda_rng: the CUDA generator state of the training device, if any.
        world_size: processes of the run that wrote it.
        extra: other tensors (extensions' state, e.g. ``t_sampler.*``), by name.
    """

    step: int
    config: dict[str, Any]
    model: dict[str, torch.Tensor]
    emas: list[dict[str, torch.Tensor]]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    losses: list[float]
    rng: torch.Tensor
    cuda_rng: torch.Tensor | None = None
    world_size: int = 1
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


def _jsonable(obj: Any) -> Any:
    """``obj`` with tuples as lists, dropping what JSON cannot hold (checked by a dump)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            v = _jsonable(v)
            try:
                json.dumps(v)
            except TypeError:
                continue
            out[str(k)] = v
        return out
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def save_training_state(path: str | os.PathLike, state: TrainingState, model_meta: dict[str, Any]) -> Path:
    """Write ``state`` with the model description ``model_meta`` (from
    :func:`~hwaksan.io.artifact.model_metadata`) atomically; returns the ``.safetensors`` path."""
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in state.model.items()}
    for i, shadow in enumerate(state.emas):
        tensors.update({_ema_prefix(i) + k: v for k, v in shadow.items()})
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in state.optimizer["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{_OPTIM}{pid}.{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    tensors[_RNG] = state.rng
    if state.cuda_rng is not None:
        tensors[_CUDA_RNG] = state.cuda_rng
    tensors[_LOSSES] = torch.tensor(state.losses, dtype=torch.float64)
    clash = sorted(k for k in state.extra if k in tensors)
    if clash:
        raise ValueError(f"extension tensors {clash} collide with the training state's names")
    tensors.update(state.extra)
    meta = {
        **model_meta,
        "kind": TRAINING_KIND,
        "step": int(state.step),
        "config": state.config,
        "world_size": int(state.world_size),
        "optimizer": {
            "param_groups": _jsonable(state.optimizer["param_groups"]),
            "scalars": _jsonable(scalars),
            "param_ids": sorted(int(k) for k in state.optimizer["state"]),
        },
        "scheduler": _jsonable(state.scheduler),
    }
    return save_tensors(path, tensors, meta)


def load_training_state(path: str | os.PathLike) -> TrainingState:
    """Read a checkpoint written by :func:`save_training_state`.

    Raises:
        CheckpointError: the file is not a training checkpoint (a model without optimiser state
            cannot be resumed), or it is incomplete.
    """
    tensors, meta = load_tensors(path)
    if meta.get("kind") != TRAINING_KIND:
        raise CheckpointError(f"{path} is not a training checkpoint (no optimizer state): cannot resume")
    try:
        return _training_state(tensors, meta)
    except KeyError as err:
        raise CheckpointError(f"{path}: the training state lacks {err}: cannot resume") from None
    except (TypeError, ValueError, AttributeError, IndexError, RuntimeError) as err:
        why = " ".join(str(err).split()) or type(err).__name__
        raise CheckpointError(f"{path}: malformed training state ({why}): cannot resume") from None


def _training_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> TrainingState:
    """The :class:`TrainingState` of a checkpoint's tensors and JSON (raises KeyError, TypeError,
    ValueError, ... on a malformed one; :func:`load_training_state` names the file)."""
    n_ema = len(meta.get("ema_decays") or [])
    om = meta["optimizer"]
    state: dict[int, dict[str, Any]] = {
        int(pid): dict(om["scalars"].get(str(pid), {})) for pid in om["param_ids"]
    }
    groups = copy.deepcopy(om["param_groups"])
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise TypeError("optimizer.param_groups is not a list of objects")
    scheduler = meta["scheduler"]
    if not isinstance(scheduler, dict) or not isinstance(meta["config"], dict):
        raise TypeError("scheduler and config must be JSON objects")
    step, config = int(meta["step"]), meta["config"]
    rng, losses = tensors[_RNG], tensors[_LOSSES].tolist()
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    owned = {_RNG, _CUDA_RNG, _LOSSES}
    prefixes = ("model.", _OPTIM, *(_ema_prefix(i) for i in range(n_ema)))
    for key, value in tensors.items():
        if key.startswith(_OPTIM):
            _, pid, name = key.split(".", 2)
            state[int(pid)][name] = value
    return TrainingState(
        step=step,
        config=config,
        model={k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")},
        emas=[
            {k[len(_ema_prefix(i)) :]: v for k, v in tensors.items() if k.startswith(_ema_prefix(i))}
            for i in range(n_ema)
        ],
        optimizer={"state": state, "param_groups": groups},
        scheduler=scheduler,
        losses=losses,
        rng=rng,
        cuda_rng=tensors.get(_CUDA_RNG),
        world_size=int(meta.get("world_size") or 1),
        extra={k: v for k, v in tensors.items() if k not in owned and not k.startswith(prefixes)},
    )
